//! An open-loop load generator: a steady request rate to each target, regardless of how slowly
//! the target answers (so a slow canary does not get less traffic). HTTP/1.1 GET over plain TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts of what the generator saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub failed: AtomicU64,
}

async fn get(addr: &str) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(256);
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Sends `rps` requests per second to each of `targets` (`host:port`) for `duration`.
pub async fn run(targets: Vec<String>, rps: f64, duration: Duration) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let mut handles = Vec::new();
    for target in targets {
        let stats = stats.clone();
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps.max(0.1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = tokio::time::Instant::now() + duration;
            let mut inflight = tokio::task::JoinSet::new();
            while tokio::time::Instant::now() < end {
                tick.tick().await;
                let (t, s) = (target.clone(), stats.clone());
                inflight.spawn(async move {
                    match get(&t).await {
                        Ok(200) => s.ok.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => s.errors.fetch_add(1, Ordering::Relaxed),
                        Err(_) => s.failed.fetch_add(1, Ordering::Relaxed),
                    };
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    stats
}
