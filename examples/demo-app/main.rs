//! `cargo run --release --example demo-app -- --listen 127.0.0.1:8080 --service shop-web --track canary --error-rate 0.05`

mod app;

use clap::Parser;

/// A small HTTP service with Prometheus metrics whose error rate and latency you choose.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Value of the `service` label.
    #[arg(long, default_value = "demo")]
    service: String,
    /// Value of the `track` label (stable, canary, baseline).
    #[arg(long, default_value = "stable")]
    track: String,
    /// Probability (0-1) that `GET /` answers 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Latency of `GET /` in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Uniform jitter (±) added to the latency, in milliseconds.
    #[arg(long, default_value_t = 5)]
    latency_jitter_ms: u64,
    /// Name of the pod this instance stands for (answers carry it in `x-fledge-pod`).
    #[arg(long, default_value = "")]
    pod: String,
    /// Version of the app (answers carry it in `x-fledge-version`).
    #[arg(long, default_value = "")]
    version: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    if !(0.0..=1.0).contains(&a.error_rate) {
        eprintln!("--error-rate must be between 0 and 1");
        std::process::exit(1);
    }
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    eprintln!(
        "demo-app {}/{} listening on http://{}",
        a.service,
        a.track,
        listener.local_addr()?
    );
    app::serve_as(
        listener,
        app::Config {
            service: a.service,
            track: a.track,
            error_rate: a.error_rate,
            latency_ms: a.latency_ms,
            latency_jitter_ms: a.latency_jitter_ms,
        },
        app::Identity {
            pod: a.pod,
            version: a.version,
        },
    )
    .await
}
