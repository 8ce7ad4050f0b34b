//! Steady load on loopback, in two modes:
//!
//! - straight to demo-app instances:
//!   `cargo run --release --example loadgen -- --target 127.0.0.1:8080 --target 127.0.0.1:8081 --rps 20 --duration 5m`
//! - through a gateway, counting answers per backend (`x-fledge-track`, `x-fledge-pod`) and
//!   printing the split as JSON:
//!   `cargo run --example loadgen -- --url "$GATEWAY_URL/" --host shop.example --rps 200 --count 2000`

mod load;
mod split;

use clap::Parser;
use std::sync::atomic::Ordering;

/// Sends a steady rate of `GET` requests to demo-app instances or through a gateway (loopback only).
#[derive(Parser)]
struct Args {
    /// host:port of an instance; repeat for several.
    #[arg(
        long = "target",
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    targets: Vec<String>,
    /// Requests per second (to each target; or through the gateway with --url).
    #[arg(long, default_value_t = 20.0)]
    rps: f64,
    /// How long to run (Go duration), with --target.
    #[arg(long, default_value = "1m")]
    duration: String,
    /// URL to load through a gateway, e.g. `http://127.0.0.1:18000/api`; prints the split as JSON.
    #[arg(long)]
    url: Option<String>,
    /// `Host` header to send with --url (what the HTTPRoute's `hostnames` match).
    #[arg(long, requires = "url")]
    host: Option<String>,
    /// Extra request header `name: value` with --url; repeat for several.
    #[arg(long = "header", requires = "url")]
    headers: Vec<String>,
    /// Number of requests to send with --url.
    #[arg(long, default_value_t = 1000, requires = "url")]
    count: u64,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    if let Some(url) = &a.url {
        let mut target = split::Target::from_url(url).unwrap_or_else(|e| {
            eprintln!("--url {e}");
            std::process::exit(1)
        });
        if let Some(h) = &a.host {
            target = target.host(h);
        }
        for h in &a.headers {
            let Some((k, v)) = h.split_once(':') else {
                eprintln!("--header {h}: expected `name: value`");
                std::process::exit(1)
            };
            target = target.header(k.trim(), v.trim());
        }
        let split = split::measure(&target, a.rps, a.count).await;
        println!("{}", serde_json::to_string(&split).unwrap_or_default());
        return;
    }
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
