//! Enrollment: turning a join token into the node's certificate, once.
//!
//! On first start the agent generates an ECDSA P-256 key (it never leaves
//! the node), sends a CSR with the join token to `AgentService.Enroll`
//! over TLS without a client certificate (the controller is verified
//! against the configured CA), and stores key, certificate, the returned
//! CA and the node's identity in the state directory. `node.crt` is written
//! last: its presence next to `node.key` is what "enrolled" means, so a
//! crash halfway leaves a node that simply enrolls again.
//!
//! Retry policy, made explicit in [`EnrollError::retry`]: failures a retry
//! can cure by itself (controller down, network, overload) back off
//! exponentially from `backoff_initial`; failures that need a person (token
//! invalid, expired or already used, CA file wrong, state directory not
//! writable, no token configured) are logged at error and retried at the
//! maximum backoff, because the sysadmin may fix the seed while the agent
//! runs (the token file is read again on every attempt).

use std::path::{Path, PathBuf};

use coloc_proto::agent::v1::{EnrollRequest, EnrollResponse, NodeFacts};
use coloc_proto::domain::{InvalidInput, NodeName, SiteName};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde::{Deserialize, Serialize};

use crate::backoff::{Backoff, Retry};
use crate::config::{AgentConfig, ConfigError};
use crate::durable;
use crate::facts;
use crate::host::Host;
use crate::shutdown::Shutdown;
use crate::status::{Persist, StatusHub, unix_ms_now};
use crate::tls::{self, ClientIdentity, TlsError};
use coloc_proto::error_chain;

pub const KEY_FILE: &str = "node.key";
pub const CERT_FILE: &str = "node.crt";
pub const CA_FILE: &str = "ca.pem";
pub const NODE_FILE: &str = "node.toml";

/// How long one Enroll call may take, connection included.
const ENROLL_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "the node is not enrolled and no join token is configured (set join_token or join_token_file)"
    )]
    NoToken,
    #[error("cannot read the join token")]
    Token(#[source] ConfigError),
    #[error("cannot read the CA certificate")]
    Ca(#[source] ConfigError),
    #[error("cannot set up TLS to the controller")]
    Tls(#[source] TlsError),
    #[error("cannot reach the controller")]
    Connect(#[source] tonic::transport::Error),
    #[error("the controller did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the controller refused enrollment ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("the controller's enrollment answer is unusable: {reason}")]
    Response { reason: String },
    #[error("cannot generate the node key or CSR")]
    KeyGen(#[source] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid node identity file")]
    NodeFile {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path} names an invalid node or site")]
    NodeFileName {
        path: PathBuf,
        #[source]
        source: InvalidInput,
    },
}

impl EnrollError {
    /// Whether waiting can cure this failure, or a person has to act.
    pub fn retry(&self) -> Retry {
        match self {
            EnrollError::Connect(_) | EnrollError::Timeout(_) => Retry::Soon,
            EnrollError::Refused { code, .. } => Retry::for_code(*code),
            EnrollError::NoToken
            | EnrollError::Token(_)
            | EnrollError::Ca(_)
            | EnrollError::Tls(_)
            | EnrollError::Response { .. }
            | EnrollError::KeyGen(_)
            | EnrollError::Write { .. }
            | EnrollError::Read { .. }
            | EnrollError::NodeFile { .. }
            | EnrollError::NodeFileName { .. } => Retry::Slowly,
        }
    }
}

/// The node's identity, as stored after enrollment.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub node_name: NodeName,
    /// Empty when `node.toml` was lost (the certificate still works).
    pub site: String,
    pub client: ClientIdentity,
    /// The CA the controller returned, kept as a fallback trust root.
    pub ca_pem: Option<String>,
}

/// `node.toml`: who this node is, for people and for restarts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    node_name: String,
    site: String,
    enrolled_unix_ms: u64,
}

/// Reads the identity stored in `state_dir`; `None` when the node is not
/// enrolled (key or certificate missing). A renewal interrupted by a
/// crash is repaired first ([`crate::renewal::recover`]).
pub fn load_identity(state_dir: &Path) -> Result<Option<NodeIdentity>, EnrollError> {
    // A certificate renewal a crash interrupted is finished or forgotten
    // first, so that key and certificate belong together.
    if state_dir.is_dir() {
        crate::renewal::recover(state_dir).map_err(|source| EnrollError::Write {
            path: state_dir.to_path_buf(),
            source,
        })?;
    }
    let key_path = state_dir.join(KEY_FILE);
    let cert_path = state_dir.join(CERT_FILE);
    if !(key_path.is_file() && cert_path.is_file()) {
        return Ok(None);
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| EnrollError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let key_pem = read(&key_path)?;
    let cert_pem = read(&cert_path)?;
    let node_path = state_dir.join(NODE_FILE);
    let node: NodeFile =
        toml::from_str(&read(&node_path)?).map_err(|source| EnrollError::NodeFile {
            path: node_path.clone(),
            source,
        })?;
    let node_name = NodeName::new(node.node_name).map_err(|source| EnrollError::NodeFileName {
        path: node_path.clone(),
        source,
    })?;
    if !node.site.is_empty() {
        SiteName::new(node.site.as_str()).map_err(|source| EnrollError::NodeFileName {
            path: node_path.clone(),
            source,
        })?;
    }
    let ca_path = state_dir.join(CA_FILE);
    let ca_pem = match std::fs::read_to_string(&ca_path) {
        Ok(pem) => Some(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(EnrollError::Read {
                path: ca_path,
                source,
            });
        }
    };
    Ok(Some(NodeIdentity {
        node_name,
        site: node.site,
        client: ClientIdentity { cert_pem, key_pem },
        ca_pem,
    }))
}

/// A fresh key and the CSR that asks for `node_name`.
fn key_and_csr(node_name: &NodeName) -> Result<(String, String), EnrollError> {
    let key = KeyPair::generate().map_err(EnrollError::KeyGen)?;
    let mut params =
        CertificateParams::new(vec![node_name.to_string()]).map_err(EnrollError::KeyGen)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name.as_str());
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(EnrollError::KeyGen)?;
    Ok((key.serialize_pem(), csr))
}

/// One enrollment attempt: key, CSR, the Enroll call, then the files.
pub async fn enroll_once(
    config: &AgentConfig,
    facts: NodeFacts,
) -> Result<NodeIdentity, EnrollError> {
    let token = config
        .join_token
        .as_ref()
        .ok_or(EnrollError::NoToken)?
        .read()
        .map_err(EnrollError::Token)?;
    let ca = config.ca.read().map_err(EnrollError::Ca)?;
    let endpoint = tls::endpoint(
        &config.controller,
        &ca,
        None,
        config.session.connect_timeout,
    )
    .map_err(EnrollError::Tls)?;
    let (key_pem, csr_pem) = key_and_csr(&config.node_name)?;
    let request = EnrollRequest {
        join_token: token,
        node_name: config.node_name.to_string(),
        csr_pem,
        facts: Some(facts),
    };
    let call = async {
        let channel = endpoint.connect().await.map_err(EnrollError::Connect)?;
        let mut request = tonic::Request::new(request);
        request.set_timeout(ENROLL_CALL_TIMEOUT);
        tls::client(channel)
            .enroll(request)
            .await
            .map_err(|status| EnrollError::Refused {
                code: status.code(),
                message: status.message().chars().take(500).collect(),
            })
    };
    let response = tokio::time::timeout(ENROLL_CALL_TIMEOUT, call)
        .await
        .map_err(|_| EnrollError::Timeout(ENROLL_CALL_TIMEOUT))??
        .into_inner();
    let identity = accept_response(config, response, key_pem)?;
    let state_dir = config.state_dir.clone();
    let to_store = identity.clone();
    tokio::task::spawn_blocking(move || store_identity(&state_dir, &to_store))
        .await
        .map_err(|e| EnrollError::Write {
            path: config.state_dir.clone(),
            source: std::io::Error::other(e),
        })??;
    Ok(identity)
}

/// Checks the controller's answer before anything is written.
fn accept_response(
    config: &AgentConfig,
    response: EnrollResponse,
    key_pem: String,
) -> Result<NodeIdentity, EnrollError> {
    let bad = |reason: String| EnrollError::Response { reason };
    if response.node_name != config.node_name.as_str() {
        return Err(bad(format!(
            "it enrolled node {:?}, this node asked to be {:?}",
            response.node_name.chars().take(80).collect::<String>(),
            config.node_name.as_str()
        )));
    }
    let site = SiteName::new(response.site.as_str())
        .map_err(|e| bad(format!("site: {e}")))?
        .to_string();
    if !response.certificate_pem.contains("BEGIN CERTIFICATE") {
        return Err(bad("no PEM certificate".into()));
    }
    if !response.ca_certificate_pem.contains("BEGIN CERTIFICATE") {
        return Err(bad("no PEM CA certificate".into()));
    }
    let client = ClientIdentity {
        cert_pem: response.certificate_pem,
        key_pem,
    };
    // Building the mutual-TLS settings parses the certificate and pairs it
    // with the key: a certificate that does not fit is caught here, before
    // it replaces nothing on disk.
    tls::endpoint(
        &config.controller,
        response.ca_certificate_pem.as_bytes(),
        Some(&client),
        config.session.connect_timeout,
    )
    .map_err(|e| {
        bad(format!(
            "certificate unusable with the node key: {}",
            error_chain(&e)
        ))
    })?;
    Ok(NodeIdentity {
        node_name: config.node_name.clone(),
        site,
        client,
        ca_pem: Some(response.ca_certificate_pem),
    })
}

/// Writes the identity files, certificate last.
pub fn store_identity(state_dir: &Path, identity: &NodeIdentity) -> Result<(), EnrollError> {
    let write = |name: &str, bytes: &[u8], mode: u32| {
        let path = state_dir.join(name);
        durable::write_atomic(&path, bytes, mode)
            .map_err(|source| EnrollError::Write { path, source })
    };
    durable::ensure_private_dir(state_dir).map_err(|source| EnrollError::Write {
        path: state_dir.to_path_buf(),
        source,
    })?;
    write(KEY_FILE, identity.client.key_pem.as_bytes(), 0o600)?;
    if let Some(ca) = &identity.ca_pem {
        write(CA_FILE, ca.as_bytes(), 0o644)?;
    }
    let node = NodeFile {
        node_name: identity.node_name.to_string(),
        site: identity.site.clone(),
        enrolled_unix_ms: unix_ms_now(),
    };
    let text = toml::to_string(&node).map_err(|e| EnrollError::Write {
        path: state_dir.join(NODE_FILE),
        source: std::io::Error::other(e),
    })?;
    write(NODE_FILE, text.as_bytes(), 0o644)?;
    write(CERT_FILE, identity.client.cert_pem.as_bytes(), 0o644)
}

/// Returns the stored identity, enrolling first if needed; retries until
/// it succeeds. `None` only when `shutdown` fires first.
pub async fn ensure_enrolled(
    config: &AgentConfig,
    host: &Host,
    status: &StatusHub,
    mut shutdown: Shutdown,
) -> Option<NodeIdentity> {
    let node = config.node_name.clone();
    let mut backoff = Backoff::new(config.session.backoff_initial, config.session.backoff_max);
    let mut first_attempt = true;
    loop {
        let state_dir = config.state_dir.clone();
        let stored = tokio::task::spawn_blocking(move || load_identity(&state_dir)).await;
        let result = match stored {
            Ok(Ok(Some(identity))) if identity.node_name == config.node_name => {
                status.update(Persist::Yes, |s| {
                    s.enrolled = true;
                    s.site = identity.site.clone();
                });
                return Some(identity);
            }
            Ok(Ok(Some(identity))) => {
                tracing::error!(
                    node = %node,
                    enrolled_as = %identity.node_name,
                    "the state directory holds the identity of another node; enrolling again under the configured name (this needs a join token)"
                );
                enroll_once(config, facts::gather_facts(host, &node).await).await
            }
            Ok(Ok(None)) => {
                if first_attempt {
                    tracing::info!(node = %node, controller = %config.controller, "enrolling");
                }
                enroll_once(config, facts::gather_facts(host, &node).await).await
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(EnrollError::Read {
                path: config.state_dir.clone(),
                source: std::io::Error::other(e),
            }),
        };
        first_attempt = false;
        let error = match result {
            Ok(identity) => {
                tracing::info!(message_id = crate::logging::ids::ENROLLED, node = %node, site = %identity.site, "enrolled");
                status.update(Persist::Yes, |s| {
                    s.enrolled = true;
                    s.site = identity.site.clone();
                    s.last_error = None;
                });
                return Some(identity);
            }
            Err(e) => e,
        };
        let message = error_chain(&error);
        let delay = match error.retry() {
            Retry::Soon => {
                let delay = backoff.next_delay();
                tracing::warn!(node = %node, error = %message, retry_in_ms = delay.as_millis() as u64, "enrollment failed, retrying");
                delay
            }
            Retry::Slowly => {
                let delay = backoff.slow_delay();
                tracing::error!(node = %node, error = %message, retry_in_ms = delay.as_millis() as u64, "enrollment failed and needs the sysadmin; retrying slowly");
                delay
            }
        };
        status.update(Persist::Yes, |s| s.last_error = Some(message));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return None,
        }
    }
}
