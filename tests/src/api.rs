//! Typed clients of colocd's public API: one client per service sharing a
//! TLS channel verified against the cooperative's CA, with a bearer token
//! added to every call, and [`Remote`] for a colocd running elsewhere
//! (read from the CLI configuration `colocd init` writes).
//!
//! It only connects; starting a controller is [`crate::controller`]'s job
//! and test data is [`crate::fixtures`]'.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::alerts_client::AlertsClient;
use coloc_proto::controller::v1::apps_client::AppsClient;
use coloc_proto::controller::v1::audit_client::AuditClient;
use coloc_proto::controller::v1::health_client::HealthClient;
use coloc_proto::controller::v1::nodes_client::NodesClient;
use coloc_proto::controller::v1::sites_client::SitesClient;
use coloc_proto::controller::v1::storage_client::StorageClient;
use coloc_proto::controller::v1::tasks_client::TasksClient;
use coloc_proto::controller::v1::tenants_client::TenantsClient;
use coloc_proto::controller::v1::tokens_client::TokensClient;
use coloc_proto::controller::v1::users_client::UsersClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::{Context, Result};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Bearer>;

/// One client of every public service, sharing a channel and credential.
#[derive(Clone)]
pub struct Api {
    pub sites: SitesClient<Svc>,
    pub nodes: NodesClient<Svc>,
    pub tenants: TenantsClient<Svc>,
    pub users: UsersClient<Svc>,
    pub tokens: TokensClient<Svc>,
    pub audit: AuditClient<Svc>,
    pub storage: StorageClient<Svc>,
    pub apps: AppsClient<Svc>,
    pub tasks: TasksClient<Svc>,
    pub health: HealthClient<Svc>,
    pub alerts: AlertsClient<Svc>,
}

impl Api {
    pub fn new(channel: Channel, token: Option<&str>) -> Self {
        let b = Bearer(token.map(|t| format!("Bearer {t}").parse().expect("a token is ASCII")));
        Self {
            sites: SitesClient::with_interceptor(channel.clone(), b.clone()),
            nodes: NodesClient::with_interceptor(channel.clone(), b.clone()),
            tenants: TenantsClient::with_interceptor(channel.clone(), b.clone()),
            users: UsersClient::with_interceptor(channel.clone(), b.clone()),
            tokens: TokensClient::with_interceptor(channel.clone(), b.clone()),
            audit: AuditClient::with_interceptor(channel.clone(), b.clone()),
            storage: StorageClient::with_interceptor(channel.clone(), b.clone()),
            apps: AppsClient::with_interceptor(channel.clone(), b.clone()),
            tasks: TasksClient::with_interceptor(channel.clone(), b.clone()),
            health: HealthClient::with_interceptor(channel.clone(), b.clone()),
            alerts: AlertsClient::with_interceptor(channel, b),
        }
    }
}

/// A TLS endpoint for colocd at `url`, verified against the cooperative CA.
pub fn endpoint(url: &str, ca_pem: &str, identity: Option<Identity>) -> Result<Endpoint> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(coloc_proto::CONTROLLER_TLS_NAME);
    if let Some(id) = identity {
        tls = tls.identity(id);
    }
    Ok(Endpoint::from_shared(url.to_string())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10)))
}

/// A colocd elsewhere, reached with the CLI configuration `colocd init`
/// writes (`admin.toml`).
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub ca_pem: String,
    pub token: String,
}

impl Remote {
    pub fn from_admin_config(path: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct AdminToml {
            server: String,
            ca_file: PathBuf,
            token: String,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: AdminToml =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        let ca = if cfg.ca_file.is_relative() {
            path.parent().unwrap_or(Path::new(".")).join(&cfg.ca_file)
        } else {
            cfg.ca_file
        };
        Ok(Self {
            url: cfg.server,
            ca_pem: std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read {}", ca.display()))?,
            token: cfg.token,
        })
    }

    pub async fn api(&self) -> Result<Api> {
        let ch = endpoint(&self.url, &self.ca_pem, None)?.connect().await?;
        Ok(Api::new(ch, Some(&self.token)))
    }
}

/// Every node, following pages.
pub async fn all_nodes(api: &mut Api) -> Result<Vec<pb::Node>> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = api
            .nodes
            .list_nodes(pb::ListNodesRequest {
                site: String::new(),
                after,
                limit: 1000,
            })
            .await?
            .into_inner();
        out.extend(page.nodes);
        if page.next_after.is_empty() {
            return Ok(out);
        }
        after = page.next_after;
    }
}
