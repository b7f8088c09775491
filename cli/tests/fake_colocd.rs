//! The `coloc` binary against a small in-process stand-in for colocd: real
//! TLS (a test CA, a server certificate named `colocd` served on
//! 127.0.0.1), real gRPC, just enough behaviour to check what the CLI
//! sends (bearer token, client certificate, CSR) and how it reports each
//! kind of answer. The full controller is tested with the CLI elsewhere.
//! Tenants and storage live in [`storage`], their CLI tests in
//! [`storage_cli`]; apps and requests in [`apps`], their CLI tests in
//! [`apps_cli`].

// Under fake_colocd/ so that cargo does not take them for test binaries.
#[path = "fake_colocd/apps.rs"]
mod apps;
#[path = "fake_colocd/apps_cli.rs"]
mod apps_cli;
#[path = "fake_colocd/storage.rs"]
mod storage;
#[path = "fake_colocd/storage_cli.rs"]
mod storage_cli;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::apps_server::AppsServer;
use coloc_proto::controller::v1::nodes_server::{Nodes, NodesServer};
use coloc_proto::controller::v1::sites_server::{Sites, SitesServer};
use coloc_proto::controller::v1::storage_server::StorageServer;
use coloc_proto::controller::v1::tenants_server::TenantsServer;
use coloc_proto::controller::v1::tokens_server::{Tokens, TokensServer};
use coloc_proto::controller::v1::users_server::{Users, UsersServer};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

const ADMIN_TOKEN: &str = "cat_admin";
const MEMBER_TOKEN: &str = "cat_member";

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for the server, named `colocd`.
    fn server_identity(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["colocd".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[derive(Default)]
struct State {
    sites: Vec<pb::Site>,
    /// DER of issued client certificates, to recognise them on later calls.
    issued: HashMap<Vec<u8>, String>,
    /// CSRs seen, with the user they were for.
    csr_subjects: Vec<(String, String)>,
    tenants: Vec<pb::Tenant>,
    pools: Vec<pb::Pool>,
    volumes: Vec<pb::Volume>,
    /// Volumes created so far, for their ids.
    next_volume: u64,
    /// Tenants, Storage and Apps calls received, by method name, in order.
    calls: Vec<&'static str>,
    apps: apps::AppsState,
}

#[derive(Clone)]
struct Fake {
    ca: Arc<Ca>,
    state: Arc<Mutex<State>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Admin,
    Member,
}

impl Fake {
    /// Who is calling, the way colocd decides it: token first, else a
    /// client certificate this CA issued.
    fn caller<T>(&self, req: &Request<T>) -> Result<(String, Role), Status> {
        if let Some(value) = req.metadata().get("authorization") {
            let value = value
                .to_str()
                .map_err(|_| Status::unauthenticated("bad header"))?;
            return match value.strip_prefix("Bearer ") {
                Some(ADMIN_TOKEN) => Ok(("root".into(), Role::Admin)),
                Some(MEMBER_TOKEN) => Ok(("mia".into(), Role::Member)),
                _ => Err(Status::unauthenticated("unknown or expired token")),
            };
        }
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
            && let Some(user) = self.state.lock().unwrap().issued.get(leaf.as_ref())
        {
            return Ok((user.clone(), Role::Admin));
        }
        Err(Status::unauthenticated("no credentials"))
    }

    fn admin<T>(&self, req: &Request<T>) -> Result<String, Status> {
        match self.caller(req)? {
            (name, Role::Admin) => Ok(name),
            (name, Role::Member) => Err(Status::permission_denied(format!(
                "user {name} is a member and cannot do this"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Sites for Fake {
    async fn create_site(
        &self,
        req: Request<pb::CreateSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        self.admin(&req)?;
        let r = req.into_inner();
        if r.country != "FR" {
            return Err(Status::invalid_argument(
                "country: only FR is accepted by the cooperative's policy",
            ));
        }
        let mut state = self.state.lock().unwrap();
        if state.sites.iter().any(|s| s.name == r.name) {
            return Err(Status::already_exists(format!("site {} exists", r.name)));
        }
        let site = pb::Site {
            name: r.name,
            country: r.country,
            city: r.city,
            description: r.description,
            created_unix: 1_767_225_600,
        };
        state.sites.push(site.clone());
        Ok(Response::new(site))
    }

    async fn list_sites(
        &self,
        req: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        self.caller(&req)?;
        let sites = self.state.lock().unwrap().sites.clone();
        Ok(Response::new(pb::ListSitesResponse { sites }))
    }
}

fn sample_node(name: &str) -> pb::Node {
    pb::Node {
        name: name.into(),
        site: "paris-1".into(),
        status: pb::NodeStatus::Ready as i32,
        connected: true,
        last_seen_unix: 1_767_229_200,
        desired_generation: 2,
        applied_generation: 2,
        facts: Some(coloc_proto::agent::v1::NodeFacts {
            hostname: name.into(),
            cpu_count: 4,
            memory_bytes: 8 * 1024 * 1024 * 1024,
            disks: vec![coloc_proto::agent::v1::Disk {
                name: "nvme0n1".into(),
                model: "QEMU NVMe Ctrl".into(),
                serial: "COLOC0001".into(),
                size_bytes: 20 * 1024 * 1024 * 1024,
                transport: "nvme".into(),
                rotational: false,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Nodes for Fake {
    async fn create_join_token(
        &self,
        _: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn list_join_tokens(
        &self,
        _: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn get_node(
        &self,
        req: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        self.caller(&req)?;
        let name = req.into_inner().name;
        if name == "n1" {
            Ok(Response::new(sample_node("n1")))
        } else {
            Err(Status::not_found(format!("no node named {name}")))
        }
    }
    async fn drain_node(
        &self,
        _: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn ping_node(
        &self,
        _: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::PingNodeResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn refresh_node_facts(
        &self,
        _: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn get_controller_stats(
        &self,
        _: Request<pb::GetControllerStatsRequest>,
    ) -> Result<Response<pb::ControllerStats>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn set_node_labels(
        &self,
        req: Request<pb::SetNodeLabelsRequest>,
    ) -> Result<Response<pb::SetNodeLabelsResponse>, Status> {
        self.admin(&req)?;
        let r = req.into_inner();
        let names = if r.nodes.is_empty() {
            vec!["n1".to_string(), "n2".to_string()]
        } else {
            r.nodes
        };
        let updated = names
            .iter()
            .map(|n| pb::NodeGeneration {
                name: n.clone(),
                desired_generation: sample_node(n).desired_generation + 1,
            })
            .collect();
        Ok(Response::new(pb::SetNodeLabelsResponse { updated }))
    }
}

#[tonic::async_trait]
impl Users for Fake {
    async fn create_user(
        &self,
        _: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn list_users(
        &self,
        _: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn grant_node(
        &self,
        _: Request<pb::GrantNodeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn revoke_node_grant(
        &self,
        _: Request<pb::GrantNodeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let (name, role) = self.caller(&req)?;
        Ok(Response::new(pb::User {
            name,
            tenant: if role == Role::Member {
                "asso-x".into()
            } else {
                String::new()
            },
            role: match role {
                Role::Admin => pb::Role::Admin as i32,
                Role::Member => pb::Role::Member as i32,
            },
            ..Default::default()
        }))
    }
    async fn issue_user_certificate(
        &self,
        req: Request<pb::IssueUserCertificateRequest>,
    ) -> Result<Response<pb::IssueUserCertificateResponse>, Status> {
        self.admin(&req)?;
        let r = req.into_inner();
        let mut csr = CertificateSigningRequestParams::from_pem(&r.csr_pem)
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let cn = match csr.params.distinguished_name.get(&DnType::CommonName) {
            Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
            other => return Err(Status::invalid_argument(format!("CSR CN: {other:?}"))),
        };
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = csr.signed_by(&self.ca.issuer).unwrap();
        let mut state = self.state.lock().unwrap();
        state.issued.insert(cert.der().to_vec(), r.user.clone());
        state.csr_subjects.push((r.user, cn));
        Ok(Response::new(pb::IssueUserCertificateResponse {
            certificate_pem: cert.pem(),
            ca_certificate_pem: self.ca.pem(),
            fingerprint: "00ff".into(),
            expires_unix: 1_774_915_200,
        }))
    }
}

#[tonic::async_trait]
impl Tokens for Fake {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let (caller, _) = self.caller(&req)?;
        let r = req.into_inner();
        Ok(Response::new(pb::ApiToken {
            id: "tok_1".into(),
            user: if r.user.is_empty() { caller } else { r.user },
            description: r.description,
            secret: "cat_fresh_secret".into(),
            created_unix: 1_767_225_600,
            expires_unix: 1_767_225_600 + i64::try_from(r.ttl_secs).unwrap(),
            revoked: false,
        }))
    }
    async fn list_tokens(
        &self,
        _: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn revoke_token(
        &self,
        _: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// A running fake colocd and a scratch HOME for the CLI.
struct Fixture {
    server: String,
    ca_file: PathBuf,
    home: tempfile::TempDir,
    state: Arc<Mutex<State>>,
}

impl Fixture {
    async fn start() -> Fixture {
        let ca = Arc::new(Ca::new("coloc test CA"));
        let (cert, key) = ca.server_identity();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(ca.pem()))
            .client_auth_optional(true);
        let mut seeded = State::default();
        storage::seed(&mut seeded);
        apps::seed(&mut seeded);
        let state = Arc::new(Mutex::new(seeded));
        let fake = Fake {
            ca: ca.clone(),
            state: state.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(SitesServer::new(fake.clone()))
            .add_service(NodesServer::new(fake.clone()))
            .add_service(UsersServer::new(fake.clone()))
            .add_service(TenantsServer::new(fake.clone()))
            .add_service(StorageServer::new(fake.clone()))
            .add_service(AppsServer::new(fake.clone()))
            .add_service(TokensServer::new(fake));
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        let home = tempfile::tempdir().unwrap();
        let ca_file = home.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Fixture {
            // Dialled by address; the certificate names `colocd` only.
            server: format!("https://{addr}"),
            ca_file,
            home,
            state,
        }
    }

    /// Runs coloc with an empty environment plus `env`.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        // The binary under test, started as a user would (clippy.toml).
        #[allow(clippy::disallowed_methods)]
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_coloc"));
        cmd.env_clear().env("HOME", self.home.path()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
            .await
            .expect("coloc finished within a minute")
            .expect("run coloc")
    }

    /// Runs coloc with server, CA and `token` in the environment.
    async fn as_token(&self, token: &str, args: &[&str]) -> Output {
        self.run(
            args,
            &[
                ("COLOC_SERVER", &self.server),
                ("COLOC_CA_FILE", self.ca_file.to_str().unwrap()),
                ("COLOC_TOKEN", token),
            ],
        )
        .await
    }

    async fn as_admin(&self, args: &[&str]) -> Output {
        self.as_token(ADMIN_TOKEN, args).await
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_sends_the_bearer_token() {
    let f = Fixture::start().await;
    let me = json(&f.as_admin(&["whoami", "--json"]).await);
    assert_eq!(me["name"], "root");
    assert_eq!(me["role"], "admin");

    let o = f.as_token(MEMBER_TOKEN, &["whoami"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("mia") && text.contains("member") && text.contains("asso-x"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_exits_3() {
    let f = Fixture::start().await;
    let o = f.as_token("cat_wrong", &["whoami"]).await;
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        stderr(&o).trim_end(),
        "coloc: not authenticated: check your token (unknown or expired token)"
    );

    // No credential anywhere: colocd refuses, and the message says where
    // one would come from.
    let o = f
        .run(
            &["whoami"],
            &[
                ("COLOC_SERVER", &f.server),
                ("COLOC_CA_FILE", f.ca_file.to_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("COLOC_TOKEN"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_round_trip_with_json_and_tables() {
    let f = Fixture::start().await;
    let site = json(
        &f.as_admin(&[
            "--json",
            "site",
            "create",
            "paris-1",
            "--country",
            "fr",
            "--city",
            "Paris",
        ])
        .await,
    );
    assert_eq!(site["name"], "paris-1");
    assert_eq!(site["country"], "FR");

    let again = f
        .as_admin(&["site", "create", "paris-1", "--country", "FR"])
        .await;
    assert_eq!(again.status.code(), Some(6));
    assert_eq!(stderr(&again).trim_end(), "coloc: site paris-1 exists");

    let refused = f
        .as_admin(&["site", "create", "berlin-1", "--country", "DE"])
        .await;
    assert_eq!(refused.status.code(), Some(7));
    assert!(stderr(&refused).contains("only FR"), "{}", stderr(&refused));

    let list = json(&f.as_admin(&["site", "list", "--json"]).await);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["city"], "Paris");

    let o = f.as_admin(&["site", "list"]).await;
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().starts_with("NAME     COUNTRY  CITY"),
        "{text}"
    );
    assert!(lines.next().unwrap().contains("2026-01-01 00:00"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_denied_with_exit_4() {
    let f = Fixture::start().await;
    let o = f
        .as_token(
            MEMBER_TOKEN,
            &["site", "create", "lyon-1", "--country", "FR"],
        )
        .await;
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        stderr(&o).trim_end(),
        "coloc: permission denied: user mia is a member and cannot do this"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_show_and_not_found() {
    let f = Fixture::start().await;
    let o = f.as_admin(&["node", "show", "n1"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "ready (connected)",
        "QEMU NVMe Ctrl",
        "COLOC0001",
        "20.0 GiB",
        "8.0 GiB",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let o = f.as_admin(&["node", "show", "n9"]).await;
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(stderr(&o).trim_end(), "coloc: no node named n9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_reach_every_node_with_all() {
    let f = Fixture::start().await;
    let nodes = json(
        &f.as_admin(&["node", "label", "--all", "tier=gold", "--json"])
            .await,
    );
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .all(|n| n["desired_generation"].as_u64().is_some())
    );
    assert_eq!(nodes[0]["name"], "n1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_secret_alone_on_stdout() {
    let f = Fixture::start().await;
    let o = f
        .as_admin(&["token", "create", "--description", "backup", "--ttl", "7d"])
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "cat_fresh_secret\n");
    assert!(stderr(&o).contains("shown only once"), "{}", stderr(&o));
    assert!(stderr(&o).contains("2026-01-08 00:00"), "{}", stderr(&o));

    let t = json(&f.as_admin(&["token", "create", "--json"]).await);
    assert_eq!(t["secret"], "cat_fresh_secret");
    assert_eq!(t["user"], "root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_cert_then_authenticate_with_it() {
    let f = Fixture::start().await;
    let out_dir = f.home.path().join("certs");
    let o = f
        .as_admin(&[
            "user",
            "cert",
            "alice",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--ttl",
            "30d",
        ])
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        f.state.lock().unwrap().csr_subjects,
        [("alice".to_string(), "alice".to_string())]
    );
    let key = out_dir.join("alice.key");
    let crt = out_dir.join("alice.crt");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The written pair authenticates on its own, token-less.
    let me = json(
        &f.run(
            &[
                "whoami",
                "--json",
                "--cert",
                crt.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
            &[
                ("COLOC_SERVER", &f.server),
                ("COLOC_CA_FILE", f.ca_file.to_str().unwrap()),
            ],
        )
        .await,
    );
    assert_eq!(me["name"], "alice");

    // A second run does not clobber the key.
    let o = f
        .as_admin(&[
            "user",
            "cert",
            "alice",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ])
        .await;
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert_eq!(f.state.lock().unwrap().csr_subjects.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_and_its_precedence() {
    let f = Fixture::start().await;
    // The layout `colocd init` leaves: admin.toml next to ca.pem, with a
    // relative ca_file, found through COLOC_CONFIG.
    let data = f.home.path().join("colocd");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(&f.ca_file, data.join("ca.pem")).unwrap();
    let admin_toml = data.join("admin.toml");
    write_private(
        &admin_toml,
        &format!(
            "server = \"{}\"\nca_file = \"ca.pem\"\ntoken = \"{ADMIN_TOKEN}\"\n",
            f.server
        ),
    );
    let config_env = [("COLOC_CONFIG", admin_toml.to_str().unwrap())];
    let me = json(&f.run(&["whoami", "--json"], &config_env).await);
    assert_eq!(me["name"], "root");

    // The environment beats the file...
    let mut env = config_env.to_vec();
    env.push(("COLOC_TOKEN", MEMBER_TOKEN));
    let me = json(&f.run(&["whoami", "--json"], &env).await);
    assert_eq!(me["name"], "mia");

    // ...and a flag beats the environment.
    let o = f
        .run(&["whoami", "--json", "--token", "cat_wrong"], &env)
        .await;
    assert_eq!(o.status.code(), Some(3));

    // The default location under HOME is read when nothing names a file.
    let default_dir = f.home.path().join(".config/coloc");
    std::fs::create_dir_all(&default_dir).unwrap();
    std::fs::copy(&f.ca_file, default_dir.join("ca.pem")).unwrap();
    write_private(
        &default_dir.join("config.toml"),
        &format!(
            "server = \"{}\"\nca_file = \"ca.pem\"\ntoken_file = \"token\"\n",
            f.server
        ),
    );
    write_private(&default_dir.join("token"), &format!("{MEMBER_TOKEN}\n"));
    let me = json(&f.run(&["whoami", "--json"], &[]).await);
    assert_eq!(me["name"], "mia");
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_from_another_ca_is_unavailable() {
    let f = Fixture::start().await;
    let other = Ca::new("someone else's CA");
    let other_ca = f.home.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.pem()).unwrap();
    let o = f
        .run(
            &["whoami"],
            &[
                ("COLOC_SERVER", &f.server),
                ("COLOC_CA_FILE", other_ca.to_str().unwrap()),
                ("COLOC_TOKEN", ADMIN_TOKEN),
            ],
        )
        .await;
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot reach colocd at"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
