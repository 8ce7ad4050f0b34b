//! The demo workload: `GET /` answers 200 (or 500 with probability `error_rate`) after
//! `latency_ms ± jitter_ms`; `/metrics` exposes `http_requests_total{service,track,code}` and the
//! `http_request_duration_seconds{service,track}` histogram in Prometheus format; `/healthz`.
//! Any other path is answered like `/`, so routes with path matches reach it. Every answer says
//! who served it (`x-fledge-track`, `x-fledge-pod`, `x-fledge-version`) and echoes the request's
//! headers as JSON in `x-fledge-request-headers` (a gateway's header filters are visible).
//! Used by `cargo run --example demo-app`, by the env's pod runner, and included by tests.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Behaviour of one instance.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: String,
    pub track: String,
    /// Probability (0–1) that a request answers 500.
    pub error_rate: f64,
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
}

/// Who an instance is, for the headers of its answers (the pod runner sets it from the pod).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub pod: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    track: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrackLabels {
    service: String,
    track: String,
}

struct State {
    config: Config,
    identity: Identity,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<TrackLabels, Histogram>,
    rng: AtomicU64,
}

impl State {
    /// xorshift64*: small, fast, good enough for jitter and error injection.
    fn random(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Latency buckets fine enough to tell 50 ms from 250 ms at the 99th percentile.
const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
];

/// The axum router of one instance that says who it is in its answers.
pub fn router_for(config: Config, identity: Identity) -> axum::Router {
    let mut registry = Registry::default();
    let requests = Family::<RequestLabels, Counter>::default();
    let durations =
        Family::<TrackLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
    registry.register("http_requests", "HTTP requests served", requests.clone());
    registry.register(
        "http_request_duration_seconds",
        "HTTP request latency",
        durations.clone(),
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let state = Arc::new(State {
        config,
        identity,
        registry,
        requests,
        durations,
        rng: AtomicU64::new(seed),
    });
    axum::Router::new()
        .route("/", axum::routing::get(handle))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(handle)
        .with_state(state)
}

async fn handle(
    axum::extract::State(s): axum::extract::State<Arc<State>>,
    request_headers: axum::http::HeaderMap,
) -> impl axum::response::IntoResponse {
    let c = &s.config;
    let jitter = if c.latency_jitter_ms > 0 {
        (s.random() * 2.0 - 1.0) * c.latency_jitter_ms as f64
    } else {
        0.0
    };
    let delay = (c.latency_ms as f64 + jitter).max(0.0);
    let start = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
    let fail = s.random() < c.error_rate;
    let code = if fail { 500 } else { 200 };
    s.requests
        .get_or_create(&RequestLabels {
            service: c.service.clone(),
            track: c.track.clone(),
            code: code.to_string(),
        })
        .inc();
    s.durations
        .get_or_create(&TrackLabels {
            service: c.service.clone(),
            track: c.track.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    let (status, body) = if fail {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "injected error\n",
        )
    } else {
        (axum::http::StatusCode::OK, "hello from the demo app\n")
    };
    let echo: serde_json::Map<String, serde_json::Value> = request_headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in [
        ("x-fledge-track", c.track.clone()),
        ("x-fledge-pod", s.identity.pod.clone()),
        ("x-fledge-version", s.identity.version.clone()),
        (
            "x-fledge-request-headers",
            serde_json::Value::Object(echo).to_string(),
        ),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    (status, headers, body)
}

async fn metrics(
    axum::extract::State(s): axum::extract::State<Arc<State>>,
) -> impl axum::response::IntoResponse {
    let mut body = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut body, &s.registry);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Serves one instance on `listener` until the process ends.
#[allow(dead_code)] // the binary serves named instances
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> std::io::Result<()> {
    serve_as(listener, config, Identity::default()).await
}

/// Serves one instance that says who it is until the process ends.
#[allow(dead_code)] // tests that include this file serve anonymous instances
pub async fn serve_as(
    listener: tokio::net::TcpListener,
    config: Config,
    identity: Identity,
) -> std::io::Result<()> {
    axum::serve(listener, router_for(config, identity)).await
}
