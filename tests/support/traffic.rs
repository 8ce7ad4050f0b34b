//! Helpers of the rollout tests with real traffic (`tests/rollout_traffic.rs`): the config repo
//! of a served app (Deployment of the demo app, its Service, an HTTPRoute on the env's Gateway,
//! an AnalysisTemplate against the env's Prometheus, the Rollout), and a steady load through the
//! gateway that records every answer so request shares can be measured over any stretch of it.
#![allow(dead_code)]

use super::dataplane::split::{self, Target};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The demo app's settings of a healthy version: 20 ms, no jitter, no errors.
pub const HEALTHY: &[(&str, &str)] = &[
    ("LATENCY_MS", "20"),
    ("LATENCY_JITTER_MS", "0"),
    ("ERROR_RATE", "0"),
];

/// A Deployment `name` of the demo app (pods labelled `app: <name>`, served by the pod runner,
/// scraped by the env's Prometheus) with `replicas` pods, `VERSION=<version>` and `env`.
pub fn app_deployment(name: &str, replicas: u32, version: &str, env: &[(&str, &str)]) -> String {
    let mut vars = format!("        - {{name: VERSION, value: \"{version}\"}}\n");
    for (k, v) in env {
        vars.push_str(&format!("        - {{name: {k}, value: \"{v}\"}}\n"));
    }
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations:
        fledge.dev/serve: demo-app
        prometheus.io/scrape: \"true\"
        prometheus.io/port: \"8080\"
    spec:
      containers:
      - name: app
        image: fledge.dev/demo-app:test
        ports: [{{name: http, containerPort: 8080}}]
        env:
{vars}"
    )
}

/// A Service `name` in front of every pod of app `name` (no track in the selector: the replicas
/// router splits by pod counts behind it).
pub fn app_service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    )
}

/// An HTTPRoute `name` on the env's Gateway (`default/fledge-test`) for `host`, to Service
/// `name` port 80.
pub fn app_route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\nspec:\n  parentRefs: [{{name: fledge-test, namespace: default}}]\n  hostnames: [\"{host}\"]\n  rules:\n  - backendRefs: [{{name: {name}, port: 80}}]\n"
    )
}

/// The rate window of the template's queries. Long enough for ~100 canary requests at 10%
/// of the tests' load, so 5% errors show in every sample.
const RATE: &str = "10s";

/// An AnalysisTemplate `name` against `prometheus` over the demo app's own metrics, sampled
/// every 2 s:
/// - `error-ratio` (critical): 5xx share of the canary's requests, at most 1%;
/// - `latency-p99`: the canary's p99 latency at most 1 s (a threshold-only gate);
/// - `latency-p99-vs-baseline` (critical): the canary's p99 not higher than the baseline's by
///   more than 100% (Mann–Whitney over the samples). The p99 of 20 ms requests
///   moves between 25 and 75 ms on the shared 2-core test machine, for canary and baseline alike;
///   +200 ms is ten times that.
pub fn golden_template(name: &str, prometheus: &str) -> String {
    let sel = r#"namespace="{{namespace}}",service="{{service}}",track="{{track}}""#;
    let p99 = format!(
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{RATE}])))"
    );
    format!(
        "apiVersion: fledge.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: {name}
spec:
  prometheus: {{address: \"{prometheus}\"}}
  interval: 2s
  minSamples: 4
  onError: {{retries: 2, backoff: 200ms}}
  metrics:
  - name: error-ratio
    critical: true
    query: '(sum(rate(http_requests_total{{{sel},code=~\"5..\"}}[{RATE}])) or vector(0)) / sum(rate(http_requests_total{{{sel}}}[{RATE}]))'
    threshold: {{max: 0.01}}
  - name: latency-p99
    query: '{p99}'
    threshold: {{max: 1.0}}
  - name: latency-p99-vs-baseline
    critical: true
    query: '{p99}'
    compare: {{fail: increase, tolerance: 1.0}}
"
    )
}

/// One answer (or failure) of the load.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request was sent.
    pub sent: Instant,
    /// HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// `x-fledge-track` of the answer (absent: the gateway answered itself, e.g. 502).
    pub track: Option<String>,
    /// `x-fledge-version` of the answer.
    pub version: Option<String>,
}

/// Counts over a stretch of the load.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub requests: u64,
    /// Requests not answered by a demo app (no answer, or no `x-fledge-track`).
    pub not_served: u64,
    pub by_track: BTreeMap<String, u64>,
    pub by_version: BTreeMap<String, u64>,
    pub by_code: BTreeMap<u16, u64>,
}

impl Tally {
    fn of<'a>(records: impl Iterator<Item = &'a Record>) -> Tally {
        let mut t = Tally::default();
        for r in records {
            t.requests += 1;
            if let Some(s) = r.status {
                *t.by_code.entry(s).or_default() += 1;
            }
            match (&r.track, &r.version) {
                (Some(track), version) => {
                    *t.by_track.entry(track.clone()).or_default() += 1;
                    let v = version.clone().unwrap_or_default();
                    *t.by_version.entry(v).or_default() += 1;
                }
                (None, _) => t.not_served += 1,
            }
        }
        t
    }

    fn served(&self) -> u64 {
        self.requests - self.not_served
    }

    /// Share (0–1) of the served requests that `track` answered.
    pub fn track_share(&self, track: &str) -> f64 {
        *self.by_track.get(track).unwrap_or(&0) as f64 / self.served().max(1) as f64
    }

    /// Share (0–1) of the served requests that pods of `version` answered.
    pub fn version_share(&self, version: &str) -> f64 {
        *self.by_version.get(version).unwrap_or(&0) as f64 / self.served().max(1) as f64
    }
}

/// A steady open-loop load on a target for as long as it lives, every answer recorded.
pub struct Load {
    records: Arc<Mutex<Vec<Record>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Load {
    /// Starts `rps` requests a second to `target`.
    pub fn start(target: Target, rps: f64) -> Load {
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let out = records.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (t, out) = (target.clone(), out.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let r = split::get(&t).await.ok();
                    let header =
                        |name: &str| r.as_ref().and_then(|r| r.header(name)).map(str::to_owned);
                    let record = Record {
                        sent,
                        status: r.as_ref().map(|r| r.status),
                        track: header("x-fledge-track"),
                        version: header("x-fledge-version"),
                    };
                    if let Ok(mut o) = out.lock() {
                        o.push(record);
                    }
                });
            }
        });
        Load { records, task }
    }

    /// The last `n` answers to requests sent at or after `from` (fewer when there are not that
    /// many yet), in the order they were sent.
    pub fn last(&self, from: Instant, n: usize) -> Vec<Record> {
        let mut v: Vec<Record> = self
            .records
            .lock()
            .map(|r| r.iter().filter(|r| r.sent >= from).cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|r| r.sent);
        let skip = v.len().saturating_sub(n);
        v.split_off(skip)
    }

    /// Waits until the last `n` answers to requests sent from now on, all served by a demo app,
    /// satisfy `check`; returns their tally. A share that has not settled yet (pods still
    /// starting, the gateway still on old endpoints) is measured again on newer answers, never
    /// accepted with a wider tolerance. Panics with the last tally after `timeout`.
    pub async fn share_settles(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        check: impl Fn(&Tally) -> bool,
    ) -> Tally {
        let from = Instant::now();
        let mut last = Tally::default();
        while from.elapsed() < timeout {
            let window = self.last(from, n);
            if window.len() == n {
                last = Tally::of(window.iter());
                if last.not_served == 0 && check(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("timed out after {timeout:?} waiting for {what}; last {n} answers: {last:?}")
    }
}

impl Load {
    /// Every answer so far.
    pub fn all(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// What was seen of one Deployment name: its uids and the largest `spec.replicas`.
type SeenName = (std::collections::BTreeSet<String>, i32);

/// Every Deployment ever seen in a namespace while it lives (a watch, so short-lived objects
/// count too): per name, the uids and the largest `spec.replicas`.
pub struct Seen {
    by_name: Arc<Mutex<BTreeMap<String, SeenName>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Seen {
    /// Starts watching the Deployments of `ns`.
    pub fn deployments(client: &kube::Client, ns: &str) -> Seen {
        use futures_util::StreamExt;
        use k8s_openapi::api::apps::v1::Deployment;
        use kube::runtime::watcher;
        let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), ns);
        let by_name: Arc<Mutex<BTreeMap<_, _>>> = Arc::default();
        let out = by_name.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let d = match ev {
                    Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => d,
                    _ => continue,
                };
                let (Some(name), Some(uid)) = (d.metadata.name.clone(), d.metadata.uid.clone())
                else {
                    continue;
                };
                let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                if let Ok(mut m) = out.lock() {
                    let e: &mut SeenName = m.entry(name).or_default();
                    e.0.insert(uid);
                    e.1 = e.1.max(replicas);
                }
            }
        });
        Seen { by_name, task }
    }

    /// The uids seen for Deployment `name`.
    pub fn uids(&self, name: &str) -> Vec<String> {
        self.by_name
            .lock()
            .ok()
            .and_then(|m| m.get(name).map(|e| e.0.iter().cloned().collect()))
            .unwrap_or_default()
    }

    /// The largest `spec.replicas` seen for Deployment `name` (0: never seen).
    pub fn max_replicas(&self, name: &str) -> i32 {
        self.by_name
            .lock()
            .ok()
            .and_then(|m| m.get(name).map(|e| e.1))
            .unwrap_or(0)
    }
}

/// Every status Rollout `ns/name` had while this lives (a watch: each write is seen, however
/// short-lived), in order.
pub struct StatusLog {
    seen: Arc<Mutex<Vec<fledge::crd::RolloutStatus>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusLog {
    pub fn start(client: &kube::Client, ns: &str, name: &str) -> StatusLog {
        use futures_util::StreamExt;
        use kube::runtime::watcher;
        let api: kube::Api<fledge::crd::Rollout> = kube::Api::namespaced(client.clone(), ns);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let seen: Arc<Mutex<Vec<_>>> = Arc::default();
        let out = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, config).boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) = ev
                    && let Ok(mut o) = out.lock()
                {
                    o.push(r.status.unwrap_or_default());
                }
            }
        });
        StatusLog { seen, task }
    }

    /// The statuses seen so far.
    pub fn all(&self) -> Vec<fledge::crd::RolloutStatus> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
