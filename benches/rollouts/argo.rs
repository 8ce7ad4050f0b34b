//! The peer of `benches/rollouts.rs`: Argo Rollouts' controller (`rollouts-controller`, built
//! from the Go module proxy by `benches/setup-argo-rollouts`, with its own CRDs from the module's
//! `manifests/crds`) on the same N rollouts in the same control plane: the same pod template and
//! size, `setWeight: 50` then an analysis on the same Prometheus series, no traffic router (Argo's
//! basic canary scales ReplicaSets, as fledge's replicas router scales Deployments). Argo has no
//! baseline, so it runs N fewer workloads than fledge. The change is one `kubectl apply` of all N
//! new templates (fledge's is one git commit).

use super::{Outcome, cpu_of, kubectl, kubectl_apply, peak_rss_kib, percentile};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The controller's directory (`rollouts-controller`, `crds/`): built now under `cargo bench`,
/// only used when already built under `cargo test` (the build takes ~10 minutes on 2 cores).
pub fn installed(build: bool) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/setup-argo-rollouts");
    if !build {
        let cache = std::env::var("FLEDGE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(&std::env::var("HOME").unwrap()).join(".cache/fledge"));
        let text = std::fs::read_to_string(&script).ok()?;
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("ARGO_ROLLOUTS_VERSION="))?
            .split_whitespace()
            .next()?
            .to_owned();
        let dir = cache.join(format!("tools/argo-rollouts-{version}"));
        return dir.join("rollouts-controller").exists().then_some(dir);
    }
    let out = Command::new(script).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "setup-argo-rollouts failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn rollout(ns: &str, name: &str, version: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": format!("example.com/{name}:1"),
                "env": [{"name": "VERSION", "value": version}]}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "golden"}]}}]}}}})
}

fn objects(ns: &str, n: usize, version: &str, prometheus: &str) -> Vec<u8> {
    let mut items = vec![
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "golden", "namespace": ns},
        "spec": {"metrics": [{"name": "error-ratio", "interval": "2s", "count": 2, "successCondition": "result[0] <= 0.01",
            "provider": {"prometheus": {"address": prometheus, "query": "0 * max(up{job=\"apiserver\"})"}}}]}}),
    ];
    items.extend((0..n).map(|i| rollout(ns, &super::app_name(i), version)));
    json!({"apiVersion": "v1", "kind": "List", "items": items})
        .to_string()
        .into_bytes()
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn field<'a>(o: &'a DynamicObject, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(&o.data, |v, k| v.get(k))
}

/// Per rollout: new ReplicaSet seen available, and the step index seen moving past 0.
#[derive(Default)]
struct Seen {
    canary_ready: Option<Instant>,
    next_step: Option<Instant>,
}

async fn watch(
    client: Client,
    ns: String,
    old: HashSet<String>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    // Told once both watches have delivered their initial lists (the bench's clock starts then).
    let mut listed = Some(listed);
    let mut inits = 0;
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let mut sets = watcher::watcher(rs, watcher::Config::default()).boxed();
    let mut ros =
        watcher::watcher(api(&client, &ns, "Rollout"), watcher::Config::default()).boxed();
    loop {
        tokio::select! {
            Some(ev) = sets.next() => {
                let now = Instant::now();
                if matches!(ev, Ok(watcher::Event::InitDone)) {
                    inits += 1;
                    if inits == 2 && let Some(tx) = listed.take() { let _ = tx.send(()); }
                    continue;
                }
                let Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) = ev else { continue };
                if old.contains(&r.name_any()) { continue; }
                let owner = r.owner_references().iter().find(|o| o.kind == "Rollout").map(|o| o.name.clone());
                let want = r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let avail = r.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
                if let Some(owner) = owner && want >= 1 && avail >= want {
                    seen.lock().unwrap().entry(owner).or_default().canary_ready.get_or_insert(now);
                }
            }
            Some(ev) = ros.next() => {
                let now = Instant::now();
                if matches!(ev, Ok(watcher::Event::InitDone)) {
                    inits += 1;
                    if inits == 2 && let Some(tx) = listed.take() { let _ = tx.send(()); }
                    continue;
                }
                let Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) = ev else { continue };
                let step = field(&r, &["status", "currentStepIndex"]).and_then(Value::as_i64).unwrap_or(0);
                let progressing = field(&r, &["status", "stableRS"]) != field(&r, &["status", "currentPodHash"]);
                if progressing && step >= 1 {
                    seen.lock().unwrap().entry(r.name_any()).or_default().next_step.get_or_insert(now);
                }
            }
            else => break,
        }
    }
}

/// Polls every 2 s until every Rollout of `ns` is Healthy on a pod hash not in `old`.
async fn all_healthy(
    ros: &Api<DynamicObject>,
    n: usize,
    old: &HashMap<String, String>,
    secs: u64,
) -> Vec<DynamicObject> {
    let t = Instant::now();
    loop {
        if let Ok(l) = ros.list(&ListParams::default()).await {
            let done = l.items.len() == n
                && l.items.iter().all(|r| {
                    let hash = field(r, &["status", "currentPodHash"]).and_then(Value::as_str);
                    field(r, &["status", "phase"]).and_then(Value::as_str) == Some("Healthy")
                        && hash.is_some()
                        && field(r, &["status", "stableRS"]).and_then(Value::as_str) == hash
                        && old.get(&r.name_any()).map(String::as_str) != hash
                });
            if done {
                return l.items;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "Argo Rollouts: timed out after {secs} s"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Runs the peer on `n` rollouts; the namespace is deleted afterwards.
pub async fn run(
    dir: &Path,
    env: &BTreeMap<String, String>,
    client: &Client,
    id: &str,
    n: usize,
    secs: u64,
) -> Outcome {
    let crds = dir.join("crds");
    for f in [
        "rollout-crd.yaml",
        "analysis-template-crd.yaml",
        "analysis-run-crd.yaml",
        "experiment-crd.yaml",
        "cluster-analysis-template-crd.yaml",
    ] {
        kubectl_apply(env, &std::fs::read(crds.join(f)).unwrap());
    }
    let ns = format!("bench-argo-{id}");
    let prometheus = &env["FLEDGE_ENV_PROMETHEUS_URL"];
    kubectl_apply(
        env,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            .to_string()
            .as_bytes(),
    );
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let mut ctl = Command::new(dir.join("rollouts-controller"))
        .args([
            "--kubeconfig",
            &env["KUBECONFIG"],
            "--namespaced",
            "--namespace",
            &ns,
            "--leader-elect=false",
        ])
        .args([
            "--metricsPort",
            &free(),
            "--healthzPort",
            &free(),
            "--loglevel",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("FLEDGE_BENCH_PEER_LOG") {
            Some(f) => Stdio::from(std::fs::File::create(f).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .expect("starting rollouts-controller");
    kubectl_apply(env, &objects(&ns, n, "v1", prometheus));
    let ros = api(client, &ns, "Rollout");
    let t = Instant::now();
    let first = all_healthy(&ros, n, &HashMap::new(), secs).await;
    let initial = t.elapsed();
    let old: HashMap<String, String> = first
        .iter()
        .filter_map(|r| {
            Some((
                r.name_any(),
                field(r, &["status", "currentPodHash"])?
                    .as_str()?
                    .to_owned(),
            ))
        })
        .collect();
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let old_sets: HashSet<String> = rs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let (listed, initial_lists) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(watch(
        client.clone(),
        ns.clone(),
        old_sets,
        seen.clone(),
        listed,
    ));
    initial_lists.await.expect("the watches' initial lists");
    let cpu0 = cpu_of(ctl.id());
    let t = Instant::now();
    kubectl_apply(env, &objects(&ns, n, "v2", prometheus));
    all_healthy(&ros, n, &old, secs).await;
    let wall = t.elapsed();
    let cpu = cpu_of(ctl.id()) - cpu0;
    let rss = peak_rss_kib(ctl.id());
    watch.abort();
    let runs = api(client, &ns, "AnalysisRun")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let passed = runs
        .iter()
        .filter(|r| field(r, &["status", "phase"]).and_then(Value::as_str) == Some("Successful"))
        .count();
    let _ = ctl.kill();
    let _ = ctl.wait();
    let _ = kubectl(env)
        .args(["delete", "namespace", &ns, "--wait=true", "--timeout=600s"])
        .output();
    let mut lat: Vec<f64> = seen
        .lock()
        .unwrap()
        .values()
        .filter_map(|s| {
            Some(
                s.next_step?
                    .saturating_duration_since(s.canary_ready?)
                    .as_secs_f64(),
            )
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "  Argo Rollouts ({}), same {n} rollouts, no baseline:",
        dir.display()
    );
    println!(
        "    initial creation until all Healthy: {:.1} s",
        initial.as_secs_f64()
    );
    println!(
        "    change → all {n} promoted: {:.1} s wall; controller CPU {cpu:.2} s during the rollouts; peak RSS {:.1} MiB; AnalysisRuns Successful: {passed}",
        wall.as_secs_f64(),
        rss as f64 / 1024.0
    );
    println!(
        "    outside, canary ReplicaSet available → next step seen ({} rollouts): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    assert!(
        passed >= n,
        "every Argo rollout was judged by a successful AnalysisRun"
    );
    Outcome {
        wall,
        cpu,
        rss_kib: rss,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}
