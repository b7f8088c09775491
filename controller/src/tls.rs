//! colocd's TLS: the server certificate it presents, replaceable while it
//! serves; how client certificates are checked; and the stream of
//! accepted TLS connections that tonic serves.
//!
//! tonic's own TLS settings are fixed when the server starts, so colocd
//! could only take a renewed server certificate by restarting its
//! listener, which would end every agent's session. Instead colocd does
//! the TLS handshake itself (tokio-rustls, the library tonic uses) with a
//! certificate resolver it can swap: a renewal is used from the next
//! handshake on, and connections already open keep the certificate they
//! were opened with. tonic then serves HTTP/2 on the accepted streams as
//! before; it still sees the peer's certificates (`Request::peer_certs`),
//! since tokio-rustls' stream tells it.
//!
//! Client certificates are optional at this layer (enrollment and
//! token-authenticated calls come without one; each handler decides what
//! it requires) and must chain to the cooperative's CA. Their validity is
//! checked at colocd's clock ([`crate::time`], which issued them), never
//! earlier than the system's (so moving colocd's clock back, as tests do
//! to replay a date, does not make certificates already issued look not
//! yet valid). In production both are the system clock.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::ca::{self, CaError, CertInfo, ServerIdentity};
use crate::time::Clock;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{what} is not usable for TLS")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("the CA certificate is not usable to check client certificates")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn der_of(pem_text: &str, tag: &str, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let unreadable = |reason: String| TlsError::Ca(CaError::Unreadable { what, reason });
    let block = pem::parse(pem_text).map_err(|e| unreadable(e.to_string()))?;
    if block.tag() != tag {
        return Err(unreadable(format!(
            "a {} PEM block, not {tag}",
            block.tag()
        )));
    }
    Ok(block.into_contents())
}

/// The certificate and key rustls presents, with what colocd knows of the
/// certificate. The key is checked to belong to the certificate first.
fn certified_key(identity: &ServerIdentity) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let info = ca::check_server_identity(identity)?;
    let cert = CertificateDer::from(der_of(
        &identity.cert_pem,
        "CERTIFICATE",
        "colocd's server certificate",
    )?);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der_of(
        &identity.key_pem,
        "PRIVATE KEY",
        "colocd's server key",
    )?));
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::Rustls {
            what: "colocd's server key",
            source,
        })?;
    Ok((Arc::new(CertifiedKey::new(vec![cert], signing)), info))
}

/// colocd's server certificate, replaced in place by a renewal.
pub struct ServerCertificate {
    current: RwLock<(Arc<CertifiedKey>, CertInfo)>,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("info", &self.info())
            .finish()
    }
}

impl ServerCertificate {
    pub fn new(identity: &ServerIdentity) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(certified_key(identity)?),
        })
    }

    /// What the certificate presented now says.
    pub fn info(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// Presents `identity` from the next handshake on; connections already
    /// open are not touched. Refused (and nothing changed) if it is not
    /// usable.
    pub fn replace(&self, identity: &ServerIdentity) -> Result<CertInfo, TlsError> {
        let next = certified_key(identity)?;
        let info = next.1.clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(info)
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// The time TLS checks certificates at: colocd's clock, never earlier
/// than the system's.
#[derive(Debug)]
struct ColocdTime(Arc<dyn Clock>);

impl TimeProvider for ColocdTime {
    fn current_time(&self) -> Option<UnixTime> {
        let system = UnixTime::now().as_secs();
        let colocd = u64::try_from(self.0.now()).unwrap_or(0);
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            system.max(colocd),
        )))
    }
}

/// The TLS settings of colocd's endpoint: `cert` presented, client
/// certificates optional and checked against `ca_pem`, HTTP/2 only.
pub fn acceptor(
    cert: Arc<ServerCertificate>,
    ca_pem: &str,
    clock: Arc<dyn Clock>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(der_of(
            ca_pem,
            "CERTIFICATE",
            "the CA certificate",
        )?))
        .map_err(|source| TlsError::Rustls {
            what: "the CA certificate",
            source,
        })?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(TlsError::Verifier)?;
    let mut config =
        rustls::ServerConfig::builder_with_details(provider, Arc::new(ColocdTime(clock)))
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: "the TLS protocol versions",
                source,
            })?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted TCP connections in, finished TLS connections out. Handshakes
/// run on their own tasks, so one slow client delays nobody; one that
/// fails or takes longer than [`HANDSHAKE_TIMEOUT`] is dropped (and
/// logged at debug, as tonic does). Dropping the stream (the server
/// stopping) drops the listener and aborts the handshakes under way.
pub struct TlsIncoming<S, IO> {
    tcp: S,
    tcp_done: bool,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<TlsStream<IO>>>,
}

/// TLS over the connections `tcp` yields (a listener, possibly wrapped).
pub fn incoming<S, IO>(tcp: S, acceptor: TlsAcceptor) -> TlsIncoming<S, IO> {
    TlsIncoming {
        tcp,
        tcp_done: false,
        acceptor,
        handshakes: JoinSet::new(),
    }
}

async fn handshake<IO>(acceptor: TlsAcceptor, io: IO) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(
                timeout_secs = HANDSHAKE_TIMEOUT.as_secs(),
                "TLS handshake not finished in time"
            );
            None
        }
    }
}

impl<S, IO, E> Stream for TlsIncoming<S, IO>
where
    S: Stream<Item = Result<IO, E>> + Unpin,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<TlsStream<IO>, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Every connection accepted so far starts its handshake.
        while !this.tcp_done {
            match Pin::new(&mut this.tcp).poll_next(cx) {
                Poll::Ready(Some(Ok(io))) => {
                    this.handshakes.spawn(handshake(this.acceptor.clone(), io));
                }
                // tonic logs it and goes on accepting.
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Ready(None) => this.tcp_done = true,
                Poll::Pending => break,
            }
        }
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(tls)))) => return Poll::Ready(Some(Ok(tls))),
                Poll::Ready(Some(Ok(None))) => {}
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(%error, "TLS handshake task ended abnormally");
                }
                // Nothing under way: wait for the next connection (the
                // listener has the waker), or end with the listener.
                Poll::Ready(None) if this.tcp_done => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CertificateAuthority;
    use crate::time::OffsetClock;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_certificate_is_replaced_in_place_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(dir.path(), "t", NOW).unwrap();
        let first = ca.issue_server(&["ctl.example".into()], NOW).unwrap();
        let cert = ServerCertificate::new(&first).unwrap();
        let before = cert.info();
        assert!(before.names.contains(&"ctl.example".to_string()));
        assert_eq!(before.not_after_unix, NOW + ca::SERVER_CERT_TTL_SECS);

        let renewed = ca.sign_server(before.names.clone(), NOW + 1000).unwrap();
        let after = cert.replace(&renewed).unwrap();
        assert_eq!(after.names, before.names);
        assert_eq!(cert.info(), after);
        assert!(after.not_after_unix > before.not_after_unix);

        // A key from another pair is refused; what is presented stays.
        let other = ca.issue_server(&[], NOW).unwrap();
        let mixed = ServerIdentity {
            cert_pem: renewed.cert_pem.clone(),
            key_pem: other.key_pem,
        };
        let err = cert.replace(&mixed).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert_eq!(cert.info(), after);
    }

    #[test]
    fn tls_time_is_colocd_s_clock_but_never_behind_the_system() {
        let clock = Arc::new(OffsetClock::default());
        let time = ColocdTime(clock.clone());
        let system = UnixTime::now().as_secs();
        let now = |t: &ColocdTime| t.current_time().unwrap().as_secs();
        assert!(now(&time) >= system);
        clock.advance_secs(86_400);
        assert!(now(&time) >= system + 86_400);
        clock.advance_secs(-10 * 86_400);
        let behind = now(&time);
        assert!((system..system + 60).contains(&behind), "{behind}");
    }

    #[test]
    fn the_acceptor_takes_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(dir.path(), "t", NOW).unwrap();
        let cert = Arc::new(ServerCertificate::new(&ca.issue_server(&[], NOW).unwrap()).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(OffsetClock::default());
        assert!(acceptor(cert.clone(), ca.cert_pem(), clock.clone()).is_ok());
        let Err(err) = acceptor(cert, "garbage", clock) else {
            panic!("a CA that is not a PEM certificate was taken");
        };
        assert!(err.to_string().contains("CA certificate"), "{err}");
    }
}
