//! Load through a gateway, counted per backend: a steady rate of requests to one URL (with a
//! `Host` header and extra headers of your choice), each answer attributed to the backend that
//! served it by the demo app's `x-fledge-track`, `x-fledge-pod` and `x-fledge-version` headers.
//! Used by `cargo run --example loadgen -- --url …` (and `make demo`, which measures the canary's
//! share per step with it) and included by tests (`tests/support/dataplane.rs`) to measure real
//! traffic splits. HTTP/1.1 over plain TCP, one connection per request
//! (`Connection: close`), loopback only.

#![allow(dead_code)] // the loadgen binary and each test use different parts

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where and what to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` to connect to (a loopback address).
    pub addr: String,
    /// Value of the `Host` header (what an HTTPRoute's `hostnames` match).
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

impl Target {
    /// A target from a URL such as `http://127.0.0.1:18000/api` (the gateway's `GATEWAY_URL`
    /// plus a path); the `Host` header defaults to the URL's authority.
    pub fn from_url(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        if !(host.starts_with("127.") || host == "localhost" || host == "[::1]") {
            return Err(format!("{url}: load goes to loopback addresses only"));
        }
        Ok(Target {
            addr: addr.to_owned(),
            host: addr.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
        })
    }

    /// The same target with this `Host` header.
    pub fn host(mut self, host: &str) -> Target {
        self.host = host.to_owned();
        self
    }

    /// The same target with one more request header.
    pub fn header(mut self, name: &str, value: &str) -> Target {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// One answer: status, headers (names lower-case) and body.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request; errors are connection failures and timeouts (10 s).
pub async fn get(target: &Target) -> std::io::Result<Response> {
    tokio::time::timeout(Duration::from_secs(10), get_inner(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 10s"))?
}

async fn get_inner(target: &Target) -> std::io::Result<Response> {
    let mut stream = tokio::net::TcpStream::connect(&target.addr).await?;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: fledge-loadgen\r\n",
        target.path, target.host
    );
    for (k, v) in &target.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// What a run of requests saw, per backend.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Split {
    /// Requests sent.
    pub sent: u64,
    /// Answers per `x-fledge-track` (answers without the header are not counted here).
    pub by_track: BTreeMap<String, u64>,
    /// Answers per `x-fledge-pod`.
    pub by_pod: BTreeMap<String, u64>,
    /// Answers per `x-fledge-version` (the app version that served them).
    pub by_version: BTreeMap<String, u64>,
    /// Answers per HTTP status.
    pub by_code: BTreeMap<u16, u64>,
    /// Requests with no answer (connection refused or reset, timeout).
    pub failed: u64,
}

impl Split {
    /// Answers that named a track.
    pub fn tracked(&self) -> u64 {
        self.by_track.values().sum()
    }

    /// Share (0–1) of the answers that named a track which came from `track`.
    pub fn share(&self, track: &str) -> f64 {
        let n = self.tracked();
        if n == 0 {
            return 0.0;
        }
        *self.by_track.get(track).unwrap_or(&0) as f64 / n as f64
    }

    /// Answers with status 200.
    pub fn ok(&self) -> u64 {
        *self.by_code.get(&200).unwrap_or(&0)
    }

    fn record(&mut self, r: &std::io::Result<Response>) {
        self.sent += 1;
        match r {
            Ok(r) => {
                *self.by_code.entry(r.status).or_default() += 1;
                if let Some(t) = r.header("x-fledge-track") {
                    *self.by_track.entry(t.to_owned()).or_default() += 1;
                }
                if let Some(p) = r.header("x-fledge-pod") {
                    *self.by_pod.entry(p.to_owned()).or_default() += 1;
                }
                if let Some(v) = r.header("x-fledge-version") {
                    *self.by_version.entry(v.to_owned()).or_default() += 1;
                }
            }
            Err(_) => self.failed += 1,
        }
    }
}

/// Sends `count` requests to `target` at a steady `rps` (open loop: a slow backend does not
/// slow the rate down) and counts the answers per backend.
pub async fn measure(target: &Target, rps: f64, count: u64) -> Split {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inflight = tokio::task::JoinSet::new();
    let mut split = Split::default();
    for _ in 0..count {
        tick.tick().await;
        let t = target.clone();
        inflight.spawn(async move { get(&t).await });
        while let Some(r) = inflight.try_join_next() {
            split.record(&r.unwrap_or_else(|e| Err(std::io::Error::other(e))));
        }
    }
    while let Some(r) = inflight.join_next().await {
        split.record(&r.unwrap_or_else(|e| Err(std::io::Error::other(e))));
    }
    split
}
