//! Wiring: data directory layout, `init`, and the one TLS endpoint that
//! serves agents, the public API, gRPC health and reflection, with its
//! limits: message sizes, streams per connection, the TLS handshake's
//! time, and (from [`crate::transport`]) connections and call deadlines.
//!
//! Data directory (mode 0700):
//! `colocd.toml`, `colocd.db` (+ WAL files), `ca.pem`, `ca.key`,
//! `server.pem`, `server.key`, `admin.toml` (the first admin's CLI
//! configuration, mode 0600).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coloc_proto::MAX_MESSAGE_BYTES;
use coloc_proto::agent::v1::agent_service_server::AgentServiceServer;
use coloc_proto::controller::v1::alerts_server::AlertsServer;
use coloc_proto::controller::v1::apps_server::AppsServer;
use coloc_proto::controller::v1::audit_server::AuditServer;
use coloc_proto::controller::v1::health_server::HealthServer;
use coloc_proto::controller::v1::nodes_server::NodesServer;
use coloc_proto::controller::v1::sites_server::SitesServer;
use coloc_proto::controller::v1::storage_server::StorageServer;
use coloc_proto::controller::v1::tasks_server::TasksServer;
use coloc_proto::controller::v1::tenants_server::TenantsServer;
use coloc_proto::controller::v1::tokens_server::TokensServer;
use coloc_proto::controller::v1::users_server::UsersServer;
use coloc_proto::domain::{Role, UserName};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;

use crate::agents::{AgentApi, SessionRegistry};
use crate::alerts::outbox::StoreOutbox;
use crate::api::alerts::AlertsApi;
use crate::api::apps::AppsApi;
use crate::api::audit::AuditApi;
use crate::api::credentials::TokensApi;
use crate::api::fleet::{NodesApi, SitesApi};
use crate::api::health::HealthApi;
use crate::api::storage::StorageApi;
use crate::api::tasks::TasksApi;
use crate::api::tenancy::{TenantsApi, UsersApi};
use crate::auth::{self, API_TOKEN_PREFIX};
use crate::background::{self, TaskBoard};
use crate::ca::{self, CertificateAuthority};
use crate::catalog::{Catalog, CatalogError};
use crate::config::{CONFIG_FILE, ControllerConfig};
use crate::context::Ctx;
use crate::health::HealthBook;
use crate::health::fleet::CtxFleet;
use crate::limiter::Limiters;
use crate::metrics::{Metrics, RpcMetricsLayer};
use crate::notify::Notifier;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ApiTokenRecord, AuditFields, AuditOutcome, AuditRecord, ConnState, InstanceFilter,
    InstanceState, Store, UserRecord,
};
use crate::time::Clock;
use crate::tls::{self, ServerCertificate};
use crate::transport::{ConnectionLimits, DeadlineLayer, capped_incoming};

pub const DB_FILE: &str = "colocd.db";

/// Largest request the public API decodes. Its biggest requests are a
/// user certificate's CSR (16 KiB) and a label change naming nodes one by
/// one (this fits some 3,900 names); anything near the limit is a mistake
/// or an attack, refused before a handler or the audit log sees it.
/// Answers keep [`MAX_MESSAGE_BYTES`] (listings are paged within it), and
/// so does the agent service both ways: a node's report of its volumes
/// and apps is larger than any request a person sends.
pub const MAX_PUBLIC_REQUEST_BYTES: usize = 256 * 1024;
/// HTTP/2 streams one connection may have open at once: the CLI makes one
/// call at a time, an agent holds its session and a few calls; 100 is the
/// floor RFC 9113 recommends.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;
pub const ADMIN_CONFIG_FILE: &str = "admin.toml";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0} already holds a colocd configuration; refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    #[error("{path} has no colocd configuration; run `colocd init --data-dir {path}` first")]
    NotInitialized { path: PathBuf },
    #[error("cannot prepare {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start alert notifications")]
    Notify(#[from] crate::notify::NotifyError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot load the app catalog from {source_name}")]
    Catalog {
        source_name: String,
        #[source]
        source: CatalogError,
    },
    #[error(
        "the app catalog ({source_name}) lacks apps that instances use: {apps}; \
         put them back or remove those instances first"
    )]
    CatalogLacksApps { source_name: String, apps: String },
    #[error("invalid admin name")]
    AdminName(#[from] coloc_proto::domain::InvalidInput),
    #[error("{user} {why}: `colocd admin-token` gives tokens to enabled admins only")]
    NotAnEnabledAdmin { user: String, why: &'static str },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed")]
    Serve(#[source] tonic::transport::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub config: ControllerConfig,
    pub admin: String,
    /// Lifetime of the first admin token.
    pub admin_token_ttl_secs: i64,
}

#[derive(Debug, Clone)]
pub struct InitOutput {
    pub admin_token: String,
    pub admin_config: PathBuf,
    pub ca_fingerprint: String,
}

/// `colocd init`: creates the data directory, database, CA, server
/// certificate and the first admin with a token.
pub async fn init(
    data_dir: &Path,
    opts: InitOptions,
    clock: Arc<dyn Clock>,
) -> Result<InitOutput, ServerError> {
    let admin = UserName::new(opts.admin)?;
    let config_path = data_dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(ServerError::AlreadyInitialized(data_dir.to_owned()));
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(data_dir))?;
    }
    let now = clock.now();
    let ca = CertificateAuthority::create(data_dir, "cooperative", now)?;
    let server = ca.issue_server(&opts.config.tls_names, now)?;
    ca::write_server_identity(data_dir, &server)?;
    let store = SqliteStore::open(&data_dir.join(DB_FILE))?;
    store
        .create_user(UserRecord {
            name: admin.clone(),
            tenant: None,
            role: Role::Admin,
            display_name: "first admin (colocd init)".into(),
            created_unix: now,
            node_grants: Vec::new(),
            disabled_unix: None,
        })
        .await?;
    let (secret, _) = mint_root_token(
        &store,
        clock.as_ref(),
        &admin,
        now + opts.admin_token_ttl_secs,
        RootAudit {
            actor: "colocd-init",
            description: "created by colocd init",
            action: "user.create",
            target: format!("user:{admin}"),
            detail: |id| format!("first admin, token {id}"),
        },
    )
    .await?;
    let admin_config = data_dir.join(ADMIN_CONFIG_FILE);
    let listen = opts.config.listen;
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    let text = format!(
        "# CLI configuration for the first admin, written by colocd init.\n\
         # Use with: coloc --config {}\n\
         server = \"https://{host}:{}\"\n\
         ca_file = \"{}\"\n\
         token = \"{secret}\"\n",
        admin_config.display(),
        listen.port(),
        ca::CA_CERT_FILE,
    );
    write_file(&admin_config, &text, 0o600)?;
    // The configuration goes last: its presence marks a finished init.
    write_file(&config_path, &opts.config.to_toml(), 0o600)?;
    Ok(InitOutput {
        admin_token: secret,
        admin_config,
        ca_fingerprint: ca.fingerprint(),
    })
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// A colocd serving in this process (used by `colocd serve`, tests and
/// benchmarks).
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `[metrics]` is configured.
    pub metrics_addr: Option<SocketAddr>,
    pub ctx: Ctx,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), ServerError>>,
    metrics_server: Option<JoinHandle<Result<(), crate::metrics::MetricsError>>>,
    background: background::Driver,
}

impl Running {
    /// Stops accepting, ends sessions, flushes heartbeats.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.ctx.sessions.close_all();
        let mut server = self.server;
        // Graceful shutdown waits for open connections; agents close theirs
        // once their session ends, but a wedged peer must not hold us.
        let served = match tokio::time::timeout(Duration::from_secs(10), &mut server).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => {
                tracing::error!(error = %join, "server task panicked");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("connections still open after 10 s; closing them");
                server.abort();
                Ok(())
            }
        };
        if let Some(m) = self.metrics_server {
            match m.await {
                Ok(Err(err)) => tracing::error!(error = %err, "metrics endpoint failed"),
                Err(join) => tracing::error!(error = %join, "metrics endpoint task panicked"),
                Ok(Ok(())) => {}
            }
        }
        self.background.join().await;
        // What the limits counted in windows still open would be lost.
        if let Err(err) = background::refusal_summaries::write_summaries(&self.ctx, true).await {
            tracing::error!(error = %err, "cannot write the last refusal summaries");
        }
        served
    }

    /// Resolves when the server stops by itself (an error).
    pub fn is_finished(&self) -> bool {
        self.server.is_finished()
    }
}

/// The configured catalog (or the built-in one). Every app an instance
/// still uses must be in it: colocd would otherwise be unable to tell the
/// instance's node what to run, so it refuses to start instead.
async fn load_catalog(
    config: &ControllerConfig,
    data_dir: &Path,
    store: &dyn Store,
) -> Result<Catalog, ServerError> {
    let dir = config.catalog_path(data_dir);
    let source_name = match &dir {
        Some(d) => d.display().to_string(),
        None => "the catalog built into colocd".to_string(),
    };
    let catalog = match &dir {
        Some(d) => Catalog::from_dir(d),
        None => Catalog::builtin(),
    }
    .map_err(|source| ServerError::Catalog {
        source_name: source_name.clone(),
        source,
    })?;
    let mut missing: Vec<String> = store
        .list_instances(InstanceFilter::default())
        .await?
        .into_iter()
        .filter(|i| i.state != InstanceState::Removed && catalog.get(i.app.as_str()).is_none())
        .map(|i| format!("{} ({}/{} on node {})", i.app, i.tenant, i.app, i.node))
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(ServerError::CatalogLacksApps {
            source_name,
            apps: missing.join(", "),
        });
    }
    tracing::info!(catalog = %source_name, apps = catalog.apps().count(), "app catalog loaded");
    Ok(catalog)
}

/// colocd's server certificate from the data directory. A pair that cannot
/// serve (a key that does not fit its certificate after a crash between
/// the two writes of a renewal, a file lost) is replaced by a new one
/// signed now with the configured names: colocd's own CA can always sign
/// it again, and the clients check the CA, not this certificate.
fn server_certificate(
    data_dir: &Path,
    ca: &CertificateAuthority,
    config: &ControllerConfig,
    now: i64,
) -> Result<ServerCertificate, ServerError> {
    let identity = match ca::read_server_identity(data_dir) {
        Ok((identity, _)) => identity,
        Err(e) => {
            tracing::warn!(error = %coloc_proto::error_chain(&e), "colocd's server certificate is unusable; signing a new one");
            let identity = ca.issue_server(&config.tls_names, now)?;
            ca::write_server_identity(data_dir, &identity)?;
            identity
        }
    };
    Ok(ServerCertificate::new(&identity)?)
}

/// Opens the data directory and starts serving on `listen` (or the
/// configured address when None; port 0 picks a free port).
/// What `colocd admin-token` made.
#[derive(Debug, Clone)]
pub struct AdminTokenOutput {
    pub token: String,
    pub id: String,
    pub expires_unix: i64,
}

/// `colocd admin-token`: a new root token for an enabled admin, minted by
/// colocd itself (no minter), as `colocd init` mints the first one.
///
/// Every credential people mint expires with the one it was minted with,
/// so everything descends from such a root and dies with it; this is how
/// the cooperative gets a fresh root before (or after) the last one
/// expires, or after it was revoked. Only whoever can read the data
/// directory (root on colocd's host, who holds the CA key anyway) can run
/// it, and it is audited. It may run while colocd serves: SQLite
/// serializes the writes.
pub async fn admin_token(
    data_dir: &Path,
    user: &str,
    ttl_secs: i64,
    clock: Arc<dyn Clock>,
) -> Result<AdminTokenOutput, ServerError> {
    if !data_dir.join(CONFIG_FILE).exists() {
        return Err(ServerError::NotInitialized {
            path: data_dir.to_owned(),
        });
    }
    let name = UserName::new(user.to_string())?;
    let store = SqliteStore::open(&data_dir.join(DB_FILE))?;
    let refuse = |why| ServerError::NotAnEnabledAdmin {
        user: format!("user {name}"),
        why,
    };
    let admin = match store.get_user(&name).await {
        Ok(u) => u,
        Err(crate::store::StoreError::NotFound { .. }) => return Err(refuse("does not exist")),
        Err(e) => return Err(e.into()),
    };
    if admin.role != Role::Admin {
        return Err(refuse("is not an admin"));
    }
    if admin.disabled_unix.is_some() {
        return Err(refuse("is disabled"));
    }
    let now = clock.now();
    let expires_unix = now + ttl_secs;
    let (secret, id) = mint_root_token(
        &store,
        clock.as_ref(),
        &name,
        expires_unix,
        RootAudit {
            actor: "colocd-admin-token",
            description: "created by colocd admin-token",
            action: "token.create",
            target: String::new(),
            detail: |_| format!("root token for admin {name}, minted by colocd on its host"),
        },
    )
    .await?;
    Ok(AdminTokenOutput {
        token: secret,
        id,
        expires_unix,
    })
}

pub async fn start(
    data_dir: &Path,
    listen: Option<SocketAddr>,
    clock: Arc<dyn Clock>,
) -> Result<Running, ServerError> {
    let config_path = data_dir.join(CONFIG_FILE);
    if !config_path.exists() {
        return Err(ServerError::NotInitialized {
            path: data_dir.to_owned(),
        });
    }
    let config = ControllerConfig::load(&config_path)?;
    let ca = CertificateAuthority::load(data_dir)?;
    let server_cert = Arc::new(server_certificate(data_dir, &ca, &config, clock.now())?);
    // colocd's own RPC and store latency, for `/metrics`.
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data_dir.join(DB_FILE))?.with_metrics(metrics.clone()));
    let catalog = load_catalog(&config, data_dir, store.as_ref()).await?;
    // The last known health of every node, until each reports again.
    let health = HealthBook::default();
    health.restore(store.load_node_health().await?);

    // Sessions did not survive the restart: whoever was connected is now
    // disconnected until it dials back.
    let now = clock.now();
    for n in store.list_nodes(None).await? {
        if n.conn_state == ConnState::Connected {
            store
                .set_conn_state(&n.name, ConnState::Disconnected, now)
                .await?;
        }
    }

    let addr = listen.unwrap_or(config.listen);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen { addr, source })?;

    let connections =
        ConnectionLimits::new(config.max_connections, config.max_connections_per_address);
    let ctx = Ctx {
        store,
        ca: Arc::new(ca),
        clock,
        limits: Arc::new(Limiters::new(&config)),
        config: Arc::new(config),
        sessions: Arc::new(SessionRegistry::new(now)),
        catalog: Arc::new(catalog),
        tasks: Arc::new(TaskBoard::default()),
        server_cert: server_cert.clone(),
        health: Arc::new(health),
    };

    // The Prometheus endpoint, when [metrics] is configured: its token
    // file is read and its address bound now, so that a mistake stops
    // colocd before it serves.
    let metrics_listener = match &ctx.config.metrics {
        Some(mc) => {
            let token = mc.bearer_token(data_dir)?;
            let listener = TcpListener::bind(mc.listen).await.map_err(|source| {
                crate::metrics::MetricsError::Bind {
                    listen: mc.listen,
                    source,
                }
            })?;
            Some((listener, token))
        }
        None => None,
    };

    // Alert notifications, when [notify] names a target: its files (the
    // SMTP password, tokens, CAs) are read now, so that a mistake stops
    // colocd before it serves.
    let notifier = if ctx.config.notify.has_targets() {
        let outbox = Arc::new(StoreOutbox::new(ctx.store.clone(), ctx.clock.clone()));
        Some(Notifier::new(&ctx.config.notify, outbox)?)
    } else {
        None
    };

    // The handshake is colocd's own (crate::tls), so that a renewed server
    // certificate is presented without restarting the listener.
    let acceptor = tls::acceptor(server_cert, ctx.ca.cert_pem(), ctx.clock.clone())?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AgentServiceServer<AgentApi>>()
        .await;
    health_reporter.set_serving::<NodesServer<NodesApi>>().await;
    health_reporter.set_serving::<SitesServer<SitesApi>>().await;
    health_reporter
        .set_serving::<TenantsServer<TenantsApi>>()
        .await;
    health_reporter.set_serving::<UsersServer<UsersApi>>().await;
    health_reporter
        .set_serving::<TokensServer<TokensApi>>()
        .await;
    health_reporter.set_serving::<AuditServer<AuditApi>>().await;
    health_reporter
        .set_serving::<StorageServer<StorageApi>>()
        .await;
    health_reporter.set_serving::<AppsServer<AppsApi>>().await;
    health_reporter.set_serving::<TasksServer<TasksApi>>().await;
    health_reporter
        .set_serving::<HealthServer<HealthApi>>()
        .await;
    health_reporter
        .set_serving::<AlertsServer<AlertsApi>>()
        .await;
    // Reflection answers anyone, like health: it describes the contracts
    // published in the repository and nothing of the data
    // (docs/DECISIONS.md, "Who may call reflection"). Both versions, for
    // clients that only speak v1alpha (Python's grpcio-reflection, older
    // grpcurl).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(coloc_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_err = |e| ServerError::Io {
        path: PathBuf::from("reflection"),
        source: std::io::Error::other(e),
    };
    let reflection_v1 = reflection().build_v1().map_err(reflection_err)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;

    macro_rules! limited {
        ($server:ident, $api:expr, $max_request:expr) => {
            $server::new($api)
                .max_decoding_message_size($max_request)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        };
        ($server:ident, $api:expr) => {
            limited!($server, $api, MAX_PUBLIC_REQUEST_BYTES)
        };
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let router = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .layer(DeadlineLayer)
        .layer(RpcMetricsLayer::new(metrics.clone()))
        .add_service(health_service)
        .add_service(
            reflection_v1
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            reflection_v1alpha
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(limited!(
            AgentServiceServer,
            AgentApi(ctx.clone()),
            MAX_MESSAGE_BYTES
        ))
        .add_service(limited!(SitesServer, SitesApi(ctx.clone())))
        .add_service(limited!(NodesServer, NodesApi(ctx.clone())))
        .add_service(limited!(TenantsServer, TenantsApi(ctx.clone())))
        .add_service(limited!(UsersServer, UsersApi(ctx.clone())))
        .add_service(limited!(TokensServer, TokensApi(ctx.clone())))
        .add_service(limited!(AuditServer, AuditApi(ctx.clone())))
        .add_service(limited!(StorageServer, StorageApi(ctx.clone())))
        .add_service(limited!(AppsServer, AppsApi(ctx.clone())))
        .add_service(limited!(TasksServer, TasksApi(ctx.clone())))
        .add_service(limited!(HealthServer, HealthApi(ctx.clone())))
        .add_service(limited!(AlertsServer, AlertsApi(ctx.clone())));

    let mut stop = shutdown_rx.clone();
    // Connections are capped before their handshake (crate::transport),
    // then the handshake is colocd's own (crate::tls).
    let incoming = tls::incoming(Box::pin(capped_incoming(listener, connections)), acceptor);
    let server = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.changed().await;
            })
            .await
            .map_err(ServerError::Serve)
    });
    let (metrics_addr, metrics_server) = match metrics_listener {
        Some((listener, token)) => {
            let at = listener.local_addr().ok();
            let mut stop = shutdown_rx.clone();
            let source = Arc::new(CtxFleet(ctx.clone()));
            let serving = crate::metrics::serve_listener(
                listener,
                token,
                source,
                metrics.clone(),
                async move {
                    let _ = stop.changed().await;
                },
            );
            tracing::info!(addr = ?at, "metrics served on /metrics");
            (at, Some(tokio::spawn(serving)))
        }
        None => (None, None),
    };
    let mut tasks = background::colocd_tasks(&ctx, data_dir);
    tasks.extend(notifier.map(Notifier::task_definition));
    let background =
        background::Driver::start(ctx.tasks.clone(), ctx.clock.clone(), tasks, shutdown_rx);
    tracing::info!(%addr, ca = %ctx.ca.fingerprint(), "colocd serving");
    Ok(Running {
        addr,
        metrics_addr,
        ctx,
        shutdown: shutdown_tx,
        server,
        metrics_server,
        background,
    })
}

/// How a token colocd mints on its own host is written in the audit log.
struct RootAudit<D: FnOnce(&str) -> String> {
    actor: &'static str,
    description: &'static str,
    action: &'static str,
    /// Empty: the token itself (`token:<id>`).
    target: String,
    /// The entry's detail, given the new token's id.
    detail: D,
}

/// A root token for `user` (minted by no credential: `colocd init` and
/// `colocd admin-token` run on colocd's host with its data directory),
/// stored and audited; returns the secret and the token's id.
async fn mint_root_token<D: FnOnce(&str) -> String>(
    store: &SqliteStore,
    clock: &dyn Clock,
    user: &UserName,
    expires_unix: i64,
    audit: RootAudit<D>,
) -> Result<(String, String), ServerError> {
    let (secret, id) = auth::new_secret(API_TOKEN_PREFIX, "tok-");
    store
        .create_api_token(ApiTokenRecord {
            id: id.clone(),
            user: user.clone(),
            description: audit.description.into(),
            secret_hash: auth::hash_secret(&secret),
            created_unix: clock.now(),
            expires_unix,
            revoked_unix: None,
            minted_by: None,
        })
        .await?;
    let target = if audit.target.is_empty() {
        format!("token:{id}")
    } else {
        audit.target
    };
    store
        .append_audit(AuditRecord::new(AuditFields {
            at_unix_ms: clock.now_ms(),
            actor: audit.actor.into(),
            action: audit.action.into(),
            target,
            tenant: None,
            outcome: AuditOutcome::Allowed,
            detail: (audit.detail)(&id),
        }))
        .await?;
    Ok((secret, id))
}
