//! How the agent dials colocd: TLS settings and the gRPC client.
//!
//! The controller is always verified against the cooperative's CA, under
//! the name [`coloc_proto::CONTROLLER_TLS_NAME`] whatever address is
//! dialled (servers reach it by IP, by a NAT'd address, through a tunnel).
//! Enrollment dials without a client certificate; the session presents the
//! node's key and certificate. An [`Endpoint`] is built once per identity
//! and reused for every reconnection, so the CA and key are parsed once.

use std::time::Duration;

use coloc_proto::agent::v1::agent_service_client::AgentServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Why an endpoint could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("controller address {controller:?} is not usable")]
    Address {
        controller: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the CA is not usable: {reason}")]
    Ca { reason: String },
    #[error(
        "TLS settings refused (is the CA file a PEM certificate, and the node key/certificate intact?)"
    )]
    Settings(#[source] tonic::transport::Error),
}

/// A client of the node (key + certificate, both PEM).
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Builds the endpoint for `controller`, trusting `ca_pem` and presenting
/// `identity` when given.
pub fn endpoint(
    controller: &str,
    ca_pem: &[u8],
    identity: Option<&ClientIdentity>,
    connect_timeout: Duration,
) -> Result<Endpoint, TlsError> {
    check_ca_pem(ca_pem)?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(coloc_proto::CONTROLLER_TLS_NAME)
        .timeout(connect_timeout);
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    let endpoint = Endpoint::from_shared(controller.to_owned())
        .map_err(|source| TlsError::Address {
            controller: controller.to_owned(),
            source,
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // A controller that vanished without closing the connection (power
        // cut, NAT state lost) is noticed within a minute, not after TCP's
        // retransmission timeout of a quarter of an hour.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    endpoint.tls_config(tls).map_err(TlsError::Settings)
}

/// Checks that `pem` holds at least one parsable certificate, and only
/// certificates. The TLS library skips what it cannot parse, which would
/// turn a wrong CA file into an empty trust store and a confusing
/// handshake error at every connection; this says what is wrong instead.
/// Returns the number of certificates.
pub fn check_ca_pem(pem: &[u8]) -> Result<usize, TlsError> {
    coloc_proto::seed::check_ca_pem(pem).map_err(|e| TlsError::Ca {
        reason: match e {
            coloc_proto::domain::InvalidInput::Field { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// The generated client over `channel`, with coloc's message size limits.
pub fn client(channel: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel)
        .max_decoding_message_size(coloc_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(coloc_proto::MAX_MESSAGE_BYTES)
}
