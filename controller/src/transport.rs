//! What one TCP port lets anyone hold: connections and the time a call
//! may take. The limits on what calls may carry (message sizes, streams
//! per connection) are settings of the server, in [`crate::server`].
//!
//! - **Connections** ([`capped_incoming`]): at most `max_connections` at
//!   once, counted from accept to close (TLS handshake included). When
//!   all are taken colocd stops accepting, so further clients wait in the
//!   kernel's backlog rather than being refused: an agent reconnecting
//!   after a restart gets in as soon as a slot frees. One address (an
//!   IPv4 address or an IPv6 /64, [`Peer`]) may hold at most
//!   `max_connections_per_address`; further connections from it are
//!   closed as they come, so one client cannot take every slot.
//! - **Deadlines** ([`DeadlineLayer`]): a call gets [`CALL_DEADLINE`] to
//!   produce its answer, from its first byte (so a request body sent
//!   slowly is cut too). What counts is the time to the response's
//!   headers: a stream's body is never cut, so the agent session, once
//!   opened, lives as long as the node. Calls that wait for a node get
//!   more than the node is given (`RollbackVolume`); the session's own
//!   handler bounds the wait for the node's Hello.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use coloc_proto::agent::v1::agent_service_server;
use coloc_proto::controller::v1::storage_server;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::codegen::{Service, http};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::agents::registry::{REQUEST_TIMEOUT, ROLLBACK_TIMEOUT};
use crate::limiter::Peer;

/// The time a call has to answer: longer than colocd waits for a node's
/// answer ([`REQUEST_TIMEOUT`]), so a call waiting on a node fails with
/// that node's name rather than this deadline.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
const _: () = assert!(CALL_DEADLINE.as_secs() >= REQUEST_TIMEOUT.as_secs() + 10);

/// The deadline of the call at `path` (`/package.Service/Method`); None
/// for the agent session, which is a stream for as long as the node is
/// connected.
pub fn deadline_for(path: &str) -> Option<Duration> {
    match path.trim_start_matches('/').split_once('/') {
        Some((agent_service_server::SERVICE_NAME, "Session")) => None,
        Some((storage_server::SERVICE_NAME, "RollbackVolume")) => {
            Some(ROLLBACK_TIMEOUT + CALL_DEADLINE)
        }
        _ => Some(CALL_DEADLINE),
    }
}

/// Gives every call its [`deadline_for`]; past it the caller gets
/// `DEADLINE_EXCEEDED` and the handler is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower_layer::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let deadline = deadline_for(req.uri().path());
        let call = self.inner.call(req);
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return call.await;
            };
            match tokio::time::timeout(deadline, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "colocd gave up on this call after {} s",
                    deadline.as_secs()
                ))
                .into_http()),
            }
        })
    }
}

/// How many connections colocd holds, in all and per address.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    max_per_address: u32,
    per_address: Mutex<HashMap<Peer, u32>>,
    /// When a refused connection was last logged, and how many since.
    refused_log: Mutex<(Option<Instant>, u64)>,
}

impl ConnectionLimits {
    pub fn new(max_connections: u32, max_per_address: u32) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max_connections as usize)),
            max_per_address,
            per_address: Mutex::new(HashMap::new()),
            refused_log: Mutex::new((None, 0)),
        })
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|&n| n as usize)
            .sum()
    }

    /// A slot for one more connection from `peer`, if it has one left.
    fn claim(self: &Arc<Self>, peer: Peer) -> Option<AddressSlot> {
        let mut counts = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(peer).or_insert(0);
        if *n >= self.max_per_address {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            limits: self.clone(),
            peer,
        })
    }

    fn release(&self, peer: Peer) {
        let mut counts = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&peer);
            }
        }
    }

    /// Logs refused connections at most every ten seconds, with a count,
    /// so that a flood does not become a flood of log lines.
    fn note_refused(&self, peer: Peer) {
        let mut log = self
            .refused_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        log.1 += 1;
        let due = log
            .0
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                address = %peer,
                refused = log.1,
                max_per_address = self.max_per_address,
                "connections refused: too many from one address"
            );
            *log = (Some(Instant::now()), 0);
        }
    }
}

/// One connection's share of its address's allowance, given back on drop.
#[derive(Debug)]
struct AddressSlot {
    limits: Arc<ConnectionLimits>,
    peer: Peer,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.limits.release(self.peer);
    }
}

/// An accepted TCP connection holding its place under both limits until
/// it is dropped (closed by either side).
#[derive(Debug)]
pub struct CappedConn {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    _slot: AddressSlot,
}

/// The connections of `listener`, within `limits`.
pub fn capped_incoming(
    listener: TcpListener,
    limits: Arc<ConnectionLimits>,
) -> impl Stream<Item = io::Result<CappedConn>> {
    futures::stream::unfold((listener, limits), |(listener, limits)| async move {
        loop {
            // A slot first: when none is free, nothing more is accepted.
            let permit = limits.total.clone().acquire_owned().await.ok()?;
            let (tcp, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: pause rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = Peer::of(Some(addr));
            let Some(slot) = limits.claim(peer) else {
                limits.note_refused(peer);
                continue;
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let conn = CappedConn {
                tcp,
                _permit: permit,
                _slot: slot,
            };
            return Some((Ok(conn), (listener, limits)));
        }
    })
}

impl Connected for CappedConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for CappedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use futures::StreamExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpSocket;
    use tower_layer::Layer;

    use super::*;

    #[test]
    fn every_call_has_a_deadline_but_the_agent_session() {
        assert_eq!(
            deadline_for("/coloc.controller.v1.Nodes/GetNode"),
            Some(CALL_DEADLINE)
        );
        assert_eq!(
            deadline_for("/coloc.agent.v1.AgentService/Enroll"),
            Some(CALL_DEADLINE)
        );
        assert_eq!(deadline_for("/coloc.agent.v1.AgentService/Session"), None);
        assert_eq!(
            deadline_for("/coloc.controller.v1.Storage/RollbackVolume"),
            Some(ROLLBACK_TIMEOUT + CALL_DEADLINE)
        );
        assert_eq!(deadline_for("/nonsense"), Some(CALL_DEADLINE));
        assert_eq!(deadline_for(""), Some(CALL_DEADLINE));
    }

    /// A handler that never answers.
    #[derive(Clone)]
    struct Hung;

    impl Service<http::Request<()>> for Hung {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            Box::pin(futures::future::pending())
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        let mut svc = DeadlineLayer.layer(Hung);
        let started = tokio::time::Instant::now();
        let answer = svc
            .call(request("/coloc.controller.v1.Nodes/GetNode"))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), CALL_DEADLINE);
        let status = Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("30 s"), "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_agent_session_is_never_cut() {
        let mut svc = DeadlineLayer.layer(Hung);
        let session = svc.call(request("/coloc.agent.v1.AgentService/Session"));
        let waited = tokio::time::timeout(Duration::from_secs(24 * 3600), session).await;
        assert!(waited.is_err(), "still waiting a day later");
    }

    /// A client connection from `ip` (any 127.x address is loopback).
    async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Whether the server closed `client` (reads EOF or a reset).
    async fn closed(client: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), client.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn connections_are_capped_in_all_and_per_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits::new(3, 2);
        let mut incoming = Box::pin(capped_incoming(listener, limits.clone()));

        let _a1 = connect_from([127, 0, 0, 1], addr).await;
        let _a2 = connect_from([127, 0, 0, 1], addr).await;
        let first = incoming.next().await.unwrap().unwrap();
        let second = incoming.next().await.unwrap().unwrap();
        assert_eq!(limits.open(), 2);
        assert_eq!(
            first.connect_info().remote_addr.map(|a| a.ip()),
            Some([127, 0, 0, 1].into())
        );

        // A third from the same address is closed as it comes; another
        // address still gets in.
        let mut a3 = connect_from([127, 0, 0, 1], addr).await;
        let _b1 = connect_from([127, 0, 0, 2], addr).await;
        let third = incoming.next().await.unwrap().unwrap();
        assert!(closed(&mut a3).await, "the address's third connection");
        assert_eq!(
            third.connect_info().remote_addr.map(|a| a.ip()),
            Some([127, 0, 0, 2].into())
        );
        assert_eq!(limits.open(), 3);

        // All three slots taken: the next client waits, it is not refused.
        let _c1 = connect_from([127, 0, 0, 3], addr).await;
        let waiting = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(waiting.is_err(), "accepted past the cap");
        drop(second);
        let fourth = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("accepted once a slot freed")
            .unwrap()
            .unwrap();
        assert_eq!(
            fourth.connect_info().remote_addr.map(|a| a.ip()),
            Some([127, 0, 0, 3].into())
        );
        drop((first, third, fourth));
        assert_eq!(limits.open(), 0);
    }
}
