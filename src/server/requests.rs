//! Metrics of the agent's own requests to the Kubernetes API: a client layer (installed by
//! `fledge run`'s client, see `kube_client` in `main.rs`) counts every request by method
//! (`fledge_kube_requests_total`) and times every request that is not a watch, from the moment
//! it is sent to the moment the API server's response head arrives
//! (`fledge_kube_request_seconds`). The latter separates "the API server was slow" from "fledge
//! was slow to act" when reading the rollout controller's latencies (docs/performance.md).

use super::MethodLabel;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

/// Buckets of `fledge_kube_request_seconds`.
const REQUEST_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Requests this process sent to the Kubernetes API, by HTTP method.
pub fn kube_requests() -> &'static Family<MethodLabel, Counter> {
    static REQUESTS: OnceLock<Family<MethodLabel, Counter>> = OnceLock::new();
    REQUESTS.get_or_init(Family::default)
}

/// Seconds from sending a request (not a watch) to its response head, by HTTP method.
pub fn kube_request_seconds() -> &'static Family<MethodLabel, Histogram> {
    static SECONDS: OnceLock<Family<MethodLabel, Histogram>> = OnceLock::new();
    SECONDS.get_or_init(|| Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS)))
}

fn method_label(method: &str) -> MethodLabel {
    let method = match method {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => method,
        _ => "OTHER",
    };
    MethodLabel {
        method: method.into(),
    }
}

/// Counts one request to the Kubernetes API.
pub fn count_request(method: &str) {
    kube_requests().get_or_create(&method_label(method)).inc();
}

/// The client layer: counts each request and times those that are not watches.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMetricsLayer;

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> RequestMetrics<S> {
        RequestMetrics { inner }
    }
}

/// The service [`RequestMetricsLayer`] wraps around the client's stack.
#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for RequestMetrics<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.method().as_str().to_owned();
        count_request(&method);
        let watch = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let started = Instant::now();
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            if !watch {
                kube_request_seconds()
                    .get_or_create(&method_label(&method))
                    .observe(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    fn count(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn times_requests_but_not_watches() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t", "t", kube_request_seconds().clone());
        let encode = |r: &prometheus_client::registry::Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).unwrap();
            s
        };
        let series = "t_count{method=\"DELETE\"}";
        let before = count(&encode(&registry), series);
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let mut svc = tower::Layer::layer(&RequestMetricsLayer, inner);
        let req = |uri: &str| {
            http::Request::builder()
                .method("DELETE")
                .uri(uri)
                .body(())
                .unwrap()
        };
        svc.ready().await.unwrap();
        svc.call(req("/api/v1/namespaces/a/pods/b")).await.unwrap();
        svc.ready().await.unwrap();
        svc.call(req("/api/v1/pods?watch=true&resourceVersion=1"))
            .await
            .unwrap();
        let text = encode(&registry);
        assert_eq!(count(&text, series) - before, 1.0, "{text}");
        let sum = count(&text, "t_sum{method=\"DELETE\"}");
        assert!(sum >= 0.02, "the 20 ms request was timed: {text}");
    }
}
