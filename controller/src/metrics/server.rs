//! The `/metrics` endpoint: plain HTTP/1.1 on its own listen address
//! (Prometheus scrapes colocd, since the nodes dial out and may sit
//! behind NAT), optionally behind a bearer token. A render is kept for
//! [`CACHE_FOR`] and taken by one caller at a time, so that a burst of
//! scrapes (two Prometheus replicas, a curious sysadmin) costs one
//! snapshot and one render.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::MetricsError;
use super::registry::Metrics;
use super::render::render;
use super::snapshot::FleetSource;
use super::text::CONTENT_TYPE as EXPOSITION;

/// How long one render answers scrapes.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// Connections served at once; more are closed as they come (a scraper
/// needs one).
pub const MAX_CONNECTIONS: usize = 32;

/// A client has this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen`, then serves until `shutdown` completes.
pub async fn serve(
    listen: SocketAddr,
    token: Option<String>,
    source: Arc<dyn FleetSource>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), MetricsError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| MetricsError::Bind { listen, source })?;
    serve_listener(listener, token, source, metrics, shutdown).await
}

/// Serves on a listener already bound (tests bind port 0).
pub async fn serve_listener(
    listener: TcpListener,
    token: Option<String>,
    source: Arc<dyn FleetSource>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), MetricsError> {
    let endpoint = Arc::new(Endpoint {
        token: token.map(|t| digest(t.as_bytes())),
        source,
        metrics,
        cache: Mutex::new(None),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "metrics endpoint listening");
    }
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: keep serving the
                // rest of colocd, try again shortly.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics endpoint: too many connections, closing");
            continue;
        };
        let endpoint = Arc::clone(&endpoint);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoint = Arc::clone(&endpoint);
                async move { Ok::<_, Infallible>(Endpoint::handle(&endpoint, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: connection ended");
            }
            drop(permit);
        });
    }
    // Scrapes are idempotent reads: end the ones in flight.
    connections.shutdown().await;
    Ok(())
}

struct Cached {
    at: Instant,
    body: Bytes,
}

struct Endpoint {
    /// SHA-256 of the expected token; comparing digests makes the
    /// comparison's time independent of the token's length too.
    token: Option<[u8; 32]>,
    source: Arc<dyn FleetSource>,
    metrics: Arc<Metrics>,
    cache: Mutex<Option<Cached>>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal in time independent of where the first difference is.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl Endpoint {
    async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/metrics" {
            return response(
                StatusCode::NOT_FOUND,
                "not found: metrics are at /metrics\n",
            );
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = response(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        if !self.authorized(&req) {
            let mut resp = response(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"colocd metrics\""),
            );
            return resp;
        }
        match self.rendered().await {
            Ok(body) => {
                let body = if req.method() == Method::HEAD {
                    Bytes::new()
                } else {
                    body
                };
                let mut resp = response(StatusCode::OK, body);
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
                resp
            }
            Err(message) => response(StatusCode::SERVICE_UNAVAILABLE, message),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(value) = req.headers().get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110).
        let Some((scheme, token)) = value.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        constant_time_eq(&digest(token), expected)
    }

    /// The cached render, or a new one. The lock is held while rendering
    /// so that scrapes arriving meanwhile wait for this render instead
    /// of starting their own. The render is dropped once stale rather
    /// than kept until the next scrape: for ten thousand nodes it is over
    /// a hundred megabytes.
    async fn rendered(self: &Arc<Self>) -> Result<Bytes, String> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && c.at.elapsed() < CACHE_FOR
        {
            return Ok(c.body.clone());
        }
        let snapshot = self.source.snapshot().await.map_err(|e| {
            tracing::warn!(error = %coloc_proto::error_chain(&e), "metrics endpoint: no snapshot");
            "colocd could not take a snapshot of the fleet; see its log\n".to_string()
        })?;
        let metrics = Arc::clone(&self.metrics);
        // Ten thousand nodes take a good fraction of a second: off the
        // async workers.
        let text = tokio::task::spawn_blocking(move || render(&snapshot, &metrics))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "metrics endpoint: render failed");
                "colocd could not render the metrics; see its log\n".to_string()
            })?;
        let body = Bytes::from(text);
        let at = Instant::now();
        *cache = Some(Cached {
            at,
            body: body.clone(),
        });
        let endpoint = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(CACHE_FOR).await;
            if let Some(endpoint) = endpoint.upgrade() {
                let mut cache = endpoint.cache.lock().await;
                if cache.as_ref().is_some_and(|c| c.at == at) {
                    *cache = None;
                }
            }
        });
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snapshot::{FleetSnapshot, SnapshotError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl FleetSource for Counting {
        async fn snapshot(&self) -> Result<FleetSnapshot, SnapshotError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(FleetSnapshot::default())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_render_answers_for_a_second_then_is_dropped() {
        let source = Arc::new(Counting::default());
        let endpoint = Arc::new(Endpoint {
            token: None,
            source: Arc::clone(&source) as Arc<dyn FleetSource>,
            metrics: Arc::new(Metrics::new()),
            cache: Mutex::new(None),
        });
        let first = endpoint.rendered().await.unwrap();
        let second = endpoint.rendered().await.unwrap();
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
        assert_eq!(first, second);
        assert!(
            std::str::from_utf8(&first)
                .unwrap()
                .contains("colocd_sessions 0\n")
        );

        tokio::time::sleep(CACHE_FOR + Duration::from_millis(1)).await;
        assert!(
            endpoint.cache.lock().await.is_none(),
            "a stale render is dropped"
        );
        endpoint.rendered().await.unwrap();
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        assert!(constant_time_eq(&digest(b"abc"), &digest(b"abc")));
        assert!(!constant_time_eq(&digest(b"abc"), &digest(b"abd")));
        assert!(!constant_time_eq(&digest(b"abc"), &digest(b"abcd")));
    }
}
