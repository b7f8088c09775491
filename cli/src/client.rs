//! The connection to colocd: one TLS channel verified against the
//! cooperative's CA under the name `colocd`, the bearer token attached to
//! every call, and a typed client per service. Turning a failed call into
//! a [`Failure`] goes through [`Api::fail`] so every message names the
//! server and the credential in use; what colocd says about the caller's
//! association on any answer (an expired membership, a freeze, a
//! suspension) is printed on stderr by [`Api::show_notices`].

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

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
use coloc_proto::{CONTROLLER_TLS_NAME, MAX_MESSAGE_BYTES, TENANT_NOTICE_HEADER, error_chain};
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::config::{Credential, Settings};
use crate::error::{CredentialKind, Exit, Failure, StatusContext, from_status};
use crate::output::clean;

/// For the TCP connection, and again for the whole connection (TCP, TLS
/// and HTTP/2 handshakes): tonic's own limit covers TCP only, and a server
/// that accepts and then says nothing would otherwise hold the CLI forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every call here is a small unary request; a minute means colocd is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Adds `authorization: Bearer <token>` to every call when a token is used.
#[derive(Clone)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Service = InterceptedService<Channel, BearerAuth>;

/// A connected colocd.
pub struct Api {
    channel: Channel,
    auth: BearerAuth,
    context: StatusContext,
    /// Notices already printed: a command making several calls says each
    /// once.
    notices_shown: Mutex<BTreeSet<String>>,
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// Reads a PEM file and checks it holds the expected block, because the
/// TLS layer silently skips anything else and then fails with a vaguer
/// handshake error (an empty trust store, a missing identity).
fn read_pem(what: &str, path: &std::path::Path, label: &str) -> Result<Vec<u8>, Failure> {
    let bytes = read_file(what, path)?;
    let has_block = String::from_utf8_lossy(&bytes)
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(label));
    if !has_block {
        return Err(Failure::usage(format!(
            "{what} {} holds no PEM {label}",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Builds the header value, refusing tokens that cannot travel in one.
fn bearer(token: &str, origin: &str) -> Result<MetadataValue<Ascii>, Failure> {
    let refuse = || {
        Failure::usage(format!(
            "the token from {origin} contains characters no token has (spaces, control characters, non-ASCII)"
        ))
    };
    // Header values tolerate bytes no token contains; refuse them here
    // rather than send something colocd can only reject.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse());
    }
    format!("Bearer {token}").parse().map_err(|_| refuse())
}

impl Api {
    /// Reads the CA and credential files and opens the TLS connection.
    pub async fn connect(settings: &Settings) -> Result<Api, Failure> {
        let ca = read_pem("CA certificate", &settings.ca_file, "CERTIFICATE")?;
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(CONTROLLER_TLS_NAME);
        let (auth, credential) = match &settings.credential {
            Some(Credential::Token { token, origin }) => (
                BearerAuth(Some(bearer(token, origin)?)),
                CredentialKind::Token,
            ),
            Some(Credential::TokenFile { path, origin }) => {
                let bytes = read_file("token file", path)?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    Failure::usage(format!("token file {} is not text", path.display()))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(Failure::usage(format!(
                        "token file {} (from {origin}) is empty",
                        path.display()
                    )));
                }
                (
                    BearerAuth(Some(bearer(token, origin)?)),
                    CredentialKind::Token,
                )
            }
            Some(Credential::Certificate { cert, key, .. }) => {
                let cert = read_pem("client certificate", cert, "CERTIFICATE")?;
                let key = read_pem("client key", key, "PRIVATE KEY")?;
                tls = tls.identity(Identity::from_pem(cert, key));
                (BearerAuth(None), CredentialKind::Certificate)
            }
            None => (BearerAuth(None), CredentialKind::None),
        };
        let context = StatusContext {
            server: settings.server.clone(),
            credential,
        };
        let endpoint = Endpoint::from_shared(settings.server.clone())
            .map_err(|e| {
                Failure::usage(format!(
                    "server {:?} is not a valid URL: {}",
                    settings.server,
                    error_chain(&e)
                ))
            })?
            .user_agent(concat!("coloc/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| Failure::generic(error_chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tls_config(tls)
            .map_err(|e| {
                Failure::usage(format!(
                    "cannot set up TLS (check the CA, certificate and key files): {}",
                    error_chain(&e)
                ))
            })?;
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await;
        let connected = connecting.map_err(|_| {
            Failure::new(
                Exit::Unavailable,
                format!(
                    "cannot reach colocd at {}: no answer within {} s (connection and TLS handshake)",
                    settings.server,
                    CONNECT_TIMEOUT.as_secs()
                ),
            )
        })?;
        let channel = connected.map_err(|e| {
            let mut detail = error_chain(&e);
            if detail.contains("certificate") || detail.contains("Certificate") {
                detail.push_str(
                    " (is --ca-file the cooperative's CA, and the client certificate valid?)",
                );
            }
            Failure::new(
                Exit::Unavailable,
                format!("cannot reach colocd at {}: {detail}", settings.server),
            )
        })?;
        Ok(Api {
            channel,
            auth,
            context,
            notices_shown: Mutex::default(),
        })
    }

    /// Prints on stderr, once each, the notices colocd attached to an
    /// answer or a refusal ([`TENANT_NOTICE_HEADER`]), except one the
    /// refusal's own message already says (`said`).
    pub fn show_notices(&self, metadata: &MetadataMap, said: &str) {
        let new = new_notices(
            metadata,
            said,
            &mut self.notices_shown.lock().unwrap_or_else(|e| e.into_inner()),
        );
        for notice in new {
            eprintln!("coloc: notice: {notice}");
        }
    }

    /// The sentence and exit code for a failed call.
    pub fn fail(&self, status: Status) -> Failure {
        from_status(&status, &self.context)
    }

    fn intercepted(&self) -> Service {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }
}

/// The notices in `metadata` not yet in `shown` (added to it) nor said
/// by `said`, escaped for the terminal.
fn new_notices(metadata: &MetadataMap, said: &str, shown: &mut BTreeSet<String>) -> Vec<String> {
    metadata
        .get_all(TENANT_NOTICE_HEADER)
        .iter()
        .map(|v| clean(&String::from_utf8_lossy(v.as_bytes())).into_owned())
        .filter(|n| !n.is_empty() && !said.contains(n.as_str()))
        .filter(|n| shown.insert(n.clone()))
        .collect()
}

/// One typed client per service, each over the shared channel with the
/// credential attached and colocd's message size limit both ways; the
/// generated clients share no trait that would let a function build them.
macro_rules! service_clients {
    ($($name:ident: $client:ident),* $(,)?) => {
        impl Api {
            $(
                pub fn $name(&self) -> $client<Service> {
                    $client::new(self.intercepted())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES)
                }
            )*
        }
    };
}

service_clients! {
    sites: SitesClient,
    nodes: NodesClient,
    tenants: TenantsClient,
    storage: StorageClient,
    apps: AppsClient,
    users: UsersClient,
    tokens: TokensClient,
    audit: AuditClient,
    tasks: TasksClient,
    health: HealthClient,
    alerts: AlertsClient,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_must_hold_the_right_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = read_pem("CA certificate", &path, "CERTIFICATE").unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(
            err.message.contains("holds no PEM CERTIFICATE"),
            "{}",
            err.message
        );
        std::fs::write(
            &path,
            "-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_pem("client key", &path, "PRIVATE KEY").is_ok());
        assert!(read_pem("CA certificate", &path, "CERTIFICATE").is_err());
        let missing = dir.path().join("missing.pem");
        assert!(
            read_pem("CA certificate", &missing, "CERTIFICATE")
                .unwrap_err()
                .message
                .contains("cannot read")
        );
    }

    #[test]
    fn notices_are_printed_once_and_not_twice_with_a_refusal() {
        let mut m = MetadataMap::new();
        let expired = "the membership of association asso-x has expired";
        m.append(TENANT_NOTICE_HEADER, expired.parse().unwrap());
        m.append(TENANT_NOTICE_HEADER, "frozen".parse().unwrap());
        m.append(TENANT_NOTICE_HEADER, "the admins' notice".parse().unwrap());
        let mut shown = BTreeSet::new();
        assert_eq!(
            new_notices(&m, "association asso-x is frozen", &mut shown),
            [expired, "the admins' notice"]
        );
        assert!(
            new_notices(&m, "", &mut shown).len() == 1,
            "only 'frozen' is new"
        );
        assert!(new_notices(&m, "", &mut shown).is_empty());
        assert!(new_notices(&MetadataMap::new(), "", &mut BTreeSet::new()).is_empty());
    }

    #[test]
    fn bearer_header() {
        let v = bearer("cat_abc", "test").unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer cat_abc");
        assert!(bearer("a\nb", "test").is_err());
        assert!(bearer("é", "test").is_err());
        assert!(bearer("a b", "test").is_err());
    }

    #[test]
    fn interceptor_sets_authorization() {
        let mut auth = BearerAuth(Some(bearer("t1", "test").unwrap()));
        let req = auth.call(Request::new(())).unwrap();
        assert_eq!(
            req.metadata()
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            "Bearer t1"
        );
        let mut none = BearerAuth(None);
        let req = none.call(Request::new(())).unwrap();
        assert!(req.metadata().get("authorization").is_none());
    }
}
