//! N rollouts at once in the real control plane from `tests/env/` (start it first), driven by
//! `fledge run` as a process. One git repository holds N governed Deployments (kwok pods), their
//! Rollouts (`setWeight: 50`, then an analysis step judged by the env's real Prometheus on a
//! metric it really scrapes, `up{job="apiserver"}`) and the AnalysisTemplate. Once all N are
//! `Healthy`, one commit changes every pod template: N canaries and N baselines start at once,
//! are analysed and promoted. Reports the agent's CPU seconds and peak RSS (from /proc), the wall
//! time until all N are promoted, and the reconcile latency two ways:
//!
//! - inside: `fledge_rollout_reaction_seconds` (watch event observed → end of the pass it
//!   triggered), the histogram's increase over the rollouts;
//! - outside: per rollout, from the moment this process's own watch sees the canary and the
//!   baseline both available to the moment it sees the Rollout move to the next step; and from
//!   the stable Deployment seen rolled out on the new template to the canary seen deleted.
//!
//! Then the peer, Argo Rollouts' controller, on the same N rollouts (`rollouts/argo.rs`), and
//! the ratios.
//!
//! `cargo bench --bench rollouts` runs 200 rollouts and the peer (built if needed; a peer that
//! cannot be built fails the bench); the README's test command runs it so, after the tests.
//! Under `cargo test` it runs 4 (the peer only if already built: it says so when it is not).
//!
//! The targets (peak RSS ≤ 200 MiB, reaction p99 ≤ 1 s at 200 rollouts) get a line each,
//! `met` or `NOT met`. The RSS target is asserted: memory does not depend on how loaded the
//! machine is. The latency target is reported, not asserted: on a shared 2-core machine a
//! timing is a measurement, not a pass/fail test (the ratio to the peer is the robust figure).
//! `FLEDGE_BENCH_ROLLOUTS` overrides the count; `FLEDGE_BENCH_AGENT_LOG=<file>` and
//! `FLEDGE_BENCH_PEER_LOG=<file>` keep the logs; `FLEDGE_BENCH_AGENT_ARGS` adds arguments to
//! `fledge run` (e.g. `--rollout-workers 64`); `FLEDGE_BENCH_PEER=0` skips the peer (experiments
//! only: no ratio).

#[path = "rollouts/argo.rs"]
mod argo;

use fledge::crd::{Phase, Rollout, VerdictOutcome};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEMPLATE_HASH: &str = "fledge.dev/template-hash";
/// The memory target for the agent at 200 rollouts.
const RSS_TARGET_MIB: f64 = 200.0;

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// What one side measured, for the ratios.
pub struct Outcome {
    wall: Duration,
    cpu: f64,
    rss_kib: u64,
    /// Outside reaction, workloads available → next step seen.
    p50: f64,
    p99: f64,
}

fn env_vars() -> BTreeMap<String, String> {
    let state = std::env::var("FLEDGE_ENV_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&std::env::var("HOME").unwrap()).join(".cache/fledge/state"));
    let text = std::fs::read_to_string(state.join("env"))
        .expect("control plane not running: run tests/env/up");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn kubectl(env: &BTreeMap<String, String>) -> Command {
    let mut c = Command::new(Path::new(&env["FLEDGE_ENV_BIN"]).join("kubectl"));
    c.env("KUBECONFIG", &env["KUBECONFIG"]);
    c
}

fn kubectl_apply(env: &BTreeMap<String, String>, body: &[u8]) {
    let mut c = kubectl(env)
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "fledge",
            "--force-conflicts",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), body).unwrap();
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success(), "kubectl apply failed");
}

fn app_name(i: usize) -> String {
    format!("app-{i:04}")
}

fn deployment(name: &str, version: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: example.com/{name}:1\n        env:\n        - {{name: VERSION, value: \"{version}\"}}\n"
    )
}

/// The repository: namespace, AnalysisTemplate, N Deployments and their Rollouts.
fn write_repo(dir: &Path, ns: &str, n: usize, prometheus: &str) {
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::write(dir.join("fledge.yaml"), format!("apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, golden.yaml, apps]\n")).unwrap();
    std::fs::write(
        dir.join("ns.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
    )
    .unwrap();
    // A real series of the env's Prometheus (it scrapes the API server), times 0: every track
    // reads 0, under the threshold, so each analysis passes on data Prometheus really served.
    std::fs::write(dir.join("golden.yaml"), format!(
        "apiVersion: fledge.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: golden\nspec:\n  prometheus: {{address: \"{prometheus}\"}}\n  interval: 2s\n  minSamples: 2\n  metrics:\n  - name: error-ratio\n    critical: true\n    query: 'label_replace(0 * max(up{{job=\"apiserver\"}}), \"track\", \"{{{{track}}}}\", \"\", \"\")'\n    threshold: {{max: 0.01}}\n"
    )).unwrap();
    for i in 0..n {
        let name = app_name(i);
        std::fs::write(
            dir.join(format!("apps/{name}.yaml")),
            deployment(&name, "v1"),
        )
        .unwrap();
        std::fs::write(dir.join(format!("apps/{name}-rollout.yaml")), format!(
            "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  targetRef: {{kind: Deployment, name: {name}}}\n  service: {name}\n  traffic: {{replicas: {{}}}}\n  baseline: true\n  rollback: {{gitRevert: false}}\n  steps: [{{setWeight: 50}}, {{analysis: {{template: golden, duration: 4s}}}}]\n"
        )).unwrap();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@fledge.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// The agent's `/metrics` text ("" while it does not answer), by a plain HTTP/1.0 GET.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
        || s.read_to_string(&mut text).is_err()
    {
        return String::new();
    }
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// CPU seconds (user + system) a running process has used.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Cumulative bucket counts of the histogram `name` as `(le, count)`, of its series with exactly
/// the labels `labels` besides `le` (e.g. `method="PATCH"`, or "" for none).
fn buckets(text: &str, name: &str, labels: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    // What follows `le`'s closing quote: the other labels, if any, and the brace.
    let rest_of_labels = if labels.is_empty() {
        "}".to_owned()
    } else {
        format!(",{labels}}}")
    };
    text.lines()
        .filter_map(|l| {
            let (le, rest) = l.strip_prefix(&prefix)?.split_once('"')?;
            let rest = rest.strip_prefix(rest_of_labels.as_str())?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of a histogram's increase `after - before`, interpolated linearly inside the
/// bucket it falls in (as PromQL's `histogram_quantile`). Returns `(value, bucket upper bound)`.
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, c - b)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in &delta {
        if c >= rank {
            if le.is_infinite() {
                return (prev.0, le);
            }
            let within = if c > prev.1 {
                (rank - prev.1) / (c - prev.1)
            } else {
                1.0
            };
            return (prev.0 + (le - prev.0) * within, le);
        }
        prev = (le, c);
    }
    (f64::NAN, f64::NAN)
}

/// The histograms the report reads from the agent's `/metrics`: name, labels, what it measures.
const HISTOGRAMS: [(&str, &str, &str); 6] = [
    (
        "fledge_rollout_reaction_seconds",
        "",
        "watch event → end of its pass",
    ),
    (
        "fledge_rollout_queue_seconds",
        "",
        "watch event → its pass starts",
    ),
    (
        "fledge_rollout_decision_seconds",
        "",
        "watch event → status write of the decision sent",
    ),
    (
        "fledge_kube_request_seconds",
        "method=\"PATCH\"",
        "API server, PATCH sent → answered",
    ),
    (
        "fledge_kube_request_seconds",
        "method=\"POST\"",
        "API server, POST sent → answered",
    ),
    (
        "fledge_kube_request_seconds",
        "method=\"DELETE\"",
        "API server, DELETE sent → answered",
    ),
];

/// The bucket counts of every series in [`HISTOGRAMS`], in order, at one scrape.
struct Histograms(Vec<Vec<(f64, f64)>>);

impl Histograms {
    fn read(text: &str) -> Histograms {
        Histograms(
            HISTOGRAMS
                .iter()
                .map(|(name, labels, _)| buckets(text, name, labels))
                .collect(),
        )
    }
}

/// The total count of a histogram's buckets (its `+Inf` bucket).
fn count(b: &[(f64, f64)]) -> f64 {
    b.last().map_or(0.0, |(_, c)| *c)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What this process's watches saw of one rollout, each at the moment its event arrived.
#[derive(Default, Debug)]
struct Seen {
    canary_ready: Option<Instant>,
    baseline_ready: Option<Instant>,
    next_step: Option<Instant>,
    stable_done: Option<Instant>,
    canary_gone: Option<Instant>,
}

type Record = Arc<Mutex<HashMap<String, Seen>>>;

/// All pods of the current spec available (what the engine waits for).
fn rolled_out(d: &Deployment) -> bool {
    let (Some(spec), Some(s)) = (d.spec.as_ref(), d.status.as_ref()) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    s.observed_generation.is_some()
        && s.observed_generation >= d.metadata.generation
        && s.available_replicas.unwrap_or(0) >= want
        && s.updated_replicas.unwrap_or(0) >= want
        && s.replicas.unwrap_or(0) == want
}

async fn watch_deployments(api: Api<Deployment>, seen: Record, old: HashMap<String, String>) {
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        let (d, deleted) = match ev {
            Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => (d, false),
            Ok(watcher::Event::Delete(d)) => (d, true),
            _ => continue,
        };
        let name = d.name_any();
        let gone = deleted || d.metadata.deletion_timestamp.is_some();
        let mut seen = seen.lock().unwrap();
        if let Some(app) = name.strip_suffix("-canary") {
            let s = seen.entry(app.to_owned()).or_default();
            if gone {
                s.canary_gone.get_or_insert(now);
            } else if rolled_out(&d) {
                s.canary_ready.get_or_insert(now);
            }
        } else if let Some(app) = name.strip_suffix("-baseline") {
            if !gone && rolled_out(&d) {
                seen.entry(app.to_owned())
                    .or_default()
                    .baseline_ready
                    .get_or_insert(now);
            }
        } else if let Some(before) = old.get(&name) {
            let hash = d.annotations().get(TEMPLATE_HASH);
            if hash.is_some_and(|h| h != before) && rolled_out(&d) {
                seen.entry(name).or_default().stable_done.get_or_insert(now);
            }
        }
    }
}

async fn watch_rollouts(api: Api<Rollout>, seen: Record) {
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let now = Instant::now();
        let Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) = ev else {
            continue;
        };
        let st = r.status.unwrap_or_default();
        if st.canary_template_hash.is_some() && st.current_step.unwrap_or(0) >= 1 {
            seen.lock()
                .unwrap()
                .entry(r.metadata.name.unwrap_or_default())
                .or_default()
                .next_step
                .get_or_insert(now);
        }
    }
}

/// Polls (every 2 s, up to `secs`) until `done` holds for the listed Rollouts and Deployments.
async fn wait_for(
    what: &str,
    secs: u64,
    rollouts: &Api<Rollout>,
    deployments: &Api<Deployment>,
    done: impl Fn(&[Rollout], &[Deployment]) -> bool,
) -> (Vec<Rollout>, Vec<Deployment>) {
    let t = Instant::now();
    loop {
        let lp = kube::api::ListParams::default();
        if let (Ok(r), Ok(d)) = (rollouts.list(&lp).await, deployments.list(&lp).await)
            && done(&r.items, &d.items)
        {
            return (r.items, d.items);
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn client(env: &BTreeMap<String, String>) -> Client {
    fledge::install_crypto();
    let kc = kube::config::Kubeconfig::read_from(&env["KUBECONFIG"]).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("FLEDGE_BENCH_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 200 } else { 4 });
    let limit = if bench { 1200 } else { 300 };
    let env = env_vars();
    let fledge_bin = env!("CARGO_BIN_EXE_fledge");
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 0xffffff
    );
    let (ns, repo) = (format!("bench-ro-{id}"), format!("bench-ro-{id}"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    write_repo(&dir, &ns, n, &env["FLEDGE_ENV_PROMETHEUS_URL"]);
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "v1"]);

    // CRDs before anything refers to them (fledge run installs them too, idempotently).
    let crds = Command::new(fledge_bin).arg("crds").output().unwrap();
    kubectl_apply(&env, &crds.stdout);
    let _ = kubectl(&env)
        .args(["create", "namespace", "fledge-bench"])
        .output();
    let cr = serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "metadata": {"name": repo, "labels": {"fledge.bench": id}},
        "spec": {"url": format!("file://{}", dir.display()), "path": ".", "interval": "3s"}});
    kubectl_apply(&env, cr.to_string().as_bytes());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut agent = Command::new(fledge_bin)
        .args([
            "run",
            "--cache-dir",
            tmp.path().join("mirrors").to_str().unwrap(),
            "--leader-election",
            "false",
            "--selector",
            &format!("fledge.bench={id}"),
            "--namespace",
            "fledge-bench",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(
            std::env::var("FLEDGE_BENCH_AGENT_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("KUBECONFIG", &env["KUBECONFIG"])
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("FLEDGE_BENCH_AGENT_LOG") {
            Some(f) => Stdio::from(std::fs::File::create(f).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();

    let kube = client(&env).await;
    let rollouts: Api<Rollout> = Api::namespaced(kube.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), &ns);
    let t = Instant::now();
    let (_, ds) = wait_for(
        "the initial sync (every Rollout Healthy, every Deployment available)",
        limit,
        &rollouts,
        &deployments,
        |r, d| {
            r.len() == n
                && r.iter().all(|r| {
                    r.status.as_ref().is_some_and(|s| {
                        s.phase == Phase::Healthy && s.stable_template_hash.is_some()
                    })
                })
                && d.len() == n
                && d.iter().all(rolled_out)
        },
    )
    .await;
    let initial = t.elapsed();
    let old: HashMap<String, String> = ds
        .iter()
        .filter_map(|d| Some((d.name_any(), d.annotations().get(TEMPLATE_HASH)?.clone())))
        .collect();
    assert_eq!(
        old.len(),
        n,
        "every stable Deployment carries its template hash"
    );

    // Watches of this process, running before the change.
    let seen: Record = Arc::default();
    let watches = [
        tokio::spawn(watch_deployments(
            deployments.clone(),
            seen.clone(),
            old.clone(),
        )),
        tokio::spawn(watch_rollouts(rollouts.clone(), seen.clone())),
    ];
    let before = Histograms::read(&scrape(port));
    let cpu0 = cpu_of(agent.id());

    // One commit changes every pod template: N rollouts at once.
    for i in 0..n {
        let name = app_name(i);
        std::fs::write(
            dir.join(format!("apps/{name}.yaml")),
            deployment(&name, "v2"),
        )
        .unwrap();
    }
    git(&dir, &["commit", "-qam", "v2"]);
    let t = Instant::now();
    let (done, _) = wait_for(
        "every Rollout promoted (Healthy on the new template, canary and baseline gone)",
        limit,
        &rollouts,
        &deployments,
        |r, d| {
            d.len() == n
                && r.iter().all(|r| {
                    r.status.as_ref().is_some_and(|s| {
                        s.phase == Phase::Healthy
                            && s.handoff.as_ref().is_some_and(|h| {
                                s.stable_template_hash.as_deref() == Some(&h.template_hash)
                                    && old.get(&r.name_any()) != Some(&h.template_hash)
                            })
                    })
                })
        },
    )
    .await;
    let wall = t.elapsed();
    let cpu = cpu_of(agent.id()) - cpu0;
    let cpu_total = cpu_of(agent.id());
    let rss = peak_rss_kib(agent.id());
    let after = Histograms::read(&scrape(port));
    for w in watches {
        w.abort();
    }
    let _ = agent.kill();
    let _ = agent.wait();

    let passed = done
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.analyses.last())
                .is_some_and(|a| a.verdict == VerdictOutcome::Pass)
        })
        .count();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut to_next_step: Vec<f64> = seen
        .values()
        .filter_map(|s| {
            let ready = s.canary_ready?.max(s.baseline_ready?);
            Some(s.next_step?.saturating_duration_since(ready).as_secs_f64())
        })
        .collect();
    let mut to_cleanup: Vec<f64> = seen
        .values()
        .filter_map(|s| {
            Some(
                s.canary_gone?
                    .saturating_duration_since(s.stable_done?)
                    .as_secs_f64(),
            )
        })
        .collect();
    to_next_step.sort_by(f64::total_cmp);
    to_cleanup.sort_by(f64::total_cmp);
    let passes = count(&after.0[0]) - count(&before.0[0]);

    let _ = kubectl(&env)
        .args(["delete", "configrepo", &repo, "--wait=true"])
        .output();
    let _ = kubectl(&env)
        .args(["delete", "namespace", &ns, "--wait=true", "--timeout=600s"])
        .output();

    println!(
        "rollouts benchmark: {n} rollouts at once (replicas router, 2 stable pods each, setWeight 50 then a 4 s analysis on the env's Prometheus), fledge run"
    );
    println!(
        "  initial sync until all Healthy: {:.1} s",
        initial.as_secs_f64()
    );
    println!(
        "  commit → all {n} promoted: {:.1} s wall; agent CPU {cpu:.2} s during the rollouts ({cpu_total:.2} s since start); peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        rss as f64 / 1024.0
    );
    for (i, (name, labels, what)) in HISTOGRAMS.iter().enumerate() {
        let (b, a) = (&before.0[i], &after.0[i]);
        let (p50, le50) = bucket_quantile(b, a, 0.5);
        let (p99, le99) = bucket_quantile(b, a, 0.99);
        let name = if labels.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{labels}}}")
        };
        println!(
            "  {name} ({what}), {:.0} observed: p50 {p50:.3} s (bucket ≤ {le50}), p99 {p99:.3} s (bucket ≤ {le99})",
            count(a) - count(b)
        );
    }
    println!(
        "  outside, canary+baseline available → next step seen ({} rollouts): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        to_next_step.len(),
        percentile(&to_next_step, 0.5),
        percentile(&to_next_step, 0.99),
        to_next_step.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  outside, stable rolled out on the new template → canary deleted ({} rollouts): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        to_cleanup.len(),
        percentile(&to_cleanup, 0.5),
        percentile(&to_cleanup, 0.99),
        to_cleanup.last().copied().unwrap_or(f64::NAN)
    );
    println!("  analyses passed: {passed}/{n}");
    let (inside_p99, inside_le) = bucket_quantile(&before.0[0], &after.0[0], 0.99);
    let outside_p99 = percentile(&to_next_step, 0.99);
    let rss_mib = rss as f64 / 1024.0;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let scope = match (n, build) {
        (200, "release") => String::new(),
        _ => {
            format!(" [the targets are for 200 rollouts in a release build; this is {n}, {build}]")
        }
    };
    println!(
        "  targets: peak RSS ≤ {RSS_TARGET_MIB} MiB: {} ({rss_mib:.1} MiB); reaction p99 ≤ 1 s: inside {} ({inside_p99:.3} s, bucket ≤ {inside_le}), outside {} ({outside_p99:.3} s){scope}",
        met(rss_mib <= RSS_TARGET_MIB),
        met(inside_le <= 1.0),
        met(outside_p99 <= 1.0),
    );
    assert_eq!(passed, n, "every rollout was judged by a passing analysis");
    assert_eq!(
        to_next_step.len(),
        n,
        "every rollout's step change was seen"
    );
    assert_eq!(to_cleanup.len(), n, "every canary's deletion was seen");
    assert!(passes >= n as f64, "the reaction histogram counted passes");
    assert!(
        rss_mib <= RSS_TARGET_MIB,
        "the agent's peak RSS {rss_mib:.1} MiB is over the {RSS_TARGET_MIB} MiB target"
    );
    let ours = Outcome {
        wall,
        cpu,
        rss_kib: rss,
        p50: percentile(&to_next_step, 0.5),
        p99: percentile(&to_next_step, 0.99),
    };

    if std::env::var("FLEDGE_BENCH_PEER").as_deref() == Ok("0") {
        println!("  peer not run: FLEDGE_BENCH_PEER=0 (an experiment on fledge alone, no ratio)");
        return;
    }
    let Some(peer) = argo::installed(bench) else {
        assert!(
            !bench,
            "the peer is required under `cargo bench`: benches/setup-argo-rollouts failed (its error is above); FLEDGE_BENCH_PEER=0 runs fledge alone"
        );
        println!(
            "  peer not run: Argo Rollouts is not built (benches/setup-argo-rollouts builds it; `cargo bench` runs it)"
        );
        return;
    };
    let theirs = argo::run(&peer, &env, &kube, &id, n, limit).await;
    println!(
        "  ratios Argo Rollouts / fledge: wall {:.2}x, CPU {:.2}x, peak RSS {:.2}x, outside reaction p50 {:.2}x, p99 {:.2}x",
        theirs.wall.as_secs_f64() / ours.wall.as_secs_f64(),
        theirs.cpu / ours.cpu,
        theirs.rss_kib as f64 / ours.rss_kib as f64,
        theirs.p50 / ours.p50,
        theirs.p99 / ours.p99
    );
}
