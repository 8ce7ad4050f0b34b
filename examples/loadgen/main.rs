//! `cargo run --release --example loadgen -- --target 127.0.0.1:8080 --target 127.0.0.1:8081 --rps 20 --duration 5m`

mod load;

use clap::Parser;
use std::sync::atomic::Ordering;

/// Sends a steady rate of `GET /` to several demo-app instances (loopback addresses only).
#[derive(Parser)]
struct Args {
    /// host:port of an instance; repeat for several.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Requests per second to each target.
    #[arg(long, default_value_t = 20.0)]
    rps: f64,
    /// How long to run (Go duration).
    #[arg(long, default_value = "1m")]
    duration: String,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    for t in &a.targets {
        let host = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
        if !(host.starts_with("127.") || host == "localhost" || host == "[::1]") {
            eprintln!("refusing to load {t}: loadgen targets loopback addresses only");
            std::process::exit(1);
        }
    }
    let duration = fledge::duration::parse(&a.duration).unwrap_or_else(|e| {
        eprintln!("--duration: {e}");
        std::process::exit(1)
    });
    let stats = load::run(a.targets, a.rps, duration).await;
    println!(
        "ok {} · 5xx {} · connection failures {}",
        stats.ok.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
}
