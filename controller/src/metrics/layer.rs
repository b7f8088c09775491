//! The gRPC layer that feeds `colocd_rpc_duration_seconds`: every call's
//! time to its response headers (for the agent session, a stream that
//! lives as long as the node, that is the time to accept it), with the
//! call's status code when the answer carries it in its headers (tonic's
//! trailers-only errors) and OK otherwise.
//!
//! Only calls to services colocd serves are observed: a path a client
//! made up is answered UNIMPLEMENTED by tonic and not recorded, so that
//! nobody can grow the label sets (the registry caps them anyway).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tonic::codegen::{Service, http};

use super::Metrics;
use super::registry::grpc_path;

/// Wraps every call of the router; see the module.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> RpcMetricsLayer {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let answer = call.await;
            if let Ok(response) = &answer {
                let code = status_code(response.headers());
                if code != Code::Unimplemented
                    && let Some((service, method)) = grpc_path(&path)
                {
                    metrics.observe_rpc(service, method, code, started.elapsed());
                }
            }
            answer
        })
    }
}

/// The `grpc-status` of a trailers-only answer; OK when the headers do
/// not carry one (the status then comes in the trailers, after a body).
fn status_code(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_comes_from_the_headers_or_is_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), Code::Ok);
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        assert_eq!(status_code(&headers), Code::PermissionDenied);
        headers.insert("grpc-status", http::HeaderValue::from_static("garbage"));
        assert_eq!(status_code(&headers), Code::Ok);
    }

    /// A service answering every call at once, with `grpc-status` in
    /// its headers when given.
    #[derive(Clone)]
    struct Answer(Option<&'static str>);

    impl Service<http::Request<()>> for Answer {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<()>, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut response = http::Response::new(());
            if let Some(s) = self.0 {
                response
                    .headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(s));
            }
            std::future::ready(Ok(response))
        }
    }

    #[tokio::test]
    async fn calls_are_observed_by_service_and_method_and_made_up_paths_are_not() {
        use tower_layer::Layer;
        let metrics = Arc::new(Metrics::new());
        let layer = RpcMetricsLayer::new(metrics.clone());
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        for (status, path) in [
            (None, "/coloc.controller.v1.Nodes/ListNodes"),
            (Some("16"), "/coloc.controller.v1.Nodes/GetNode"),
            (Some("12"), "/coloc.controller.v1.Nodes/MadeUp"),
        ] {
            layer
                .layer(Answer(status))
                .call(request(path))
                .await
                .unwrap();
        }
        let text = super::super::render(&super::super::FleetSnapshot::default(), &metrics);
        assert!(
            text.contains(r#"method="ListNodes""#) && text.contains(r#"code="OK""#),
            "{text}"
        );
        assert!(
            text.contains(r#"method="GetNode""#) && text.contains(r#"code="Unauthenticated""#),
            "{text}"
        );
        assert!(!text.contains("MadeUp"), "{text}");
    }
}
