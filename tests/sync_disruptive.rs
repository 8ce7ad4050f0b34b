//! Disruptive end-to-end tests (their own test binary, so nothing else runs while the control
//! plane is restarted or rebuilt): an API server restart in the middle of a sync, and disaster
//! recovery — a wiped, brand-new cluster rebuilt by `fledge run` from the same repository.

mod support;

use fledge::controller::{self, Agent, AgentOptions};
use fledge::crd::{ConditionStatus, ConfigRepo};
use fledge::server::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::{Env, GitRemote, TestNamespace, eventually, unique};

fn env_script(name: &str, args: &[&str], extra_env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/env")
        .join(name);
    let out = std::process::Command::new(&path)
        .args(args)
        .envs(extra_env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/env/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn ready(client: &kube::Client, name: &str) -> bool {
    Api::<ConfigRepo>::all(client.clone())
        .get(name)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_after_an_api_server_restart_and_rebuilds_an_empty_cluster() {
    // --- 1. The API server restarts in the middle of a large sync. ---------------------------
    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let agent_ns = TestNamespace::new(&client, &env, "agent").await;
    let (ns, repo) = (unique("restart"), unique("restart"));
    const N: usize = 1500;
    let mut files = vec![
        (
            "fledge.yaml".to_owned(),
            format!(
                "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, cms]\n"
            ),
        ),
        (
            "ns.yaml".to_owned(),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        ),
    ];
    for i in 0..N {
        files.push((format!("cms/cm-{i:04}.yaml"), format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\ndata:\n  i: \"{i}\"\n")));
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let remote = GitRemote::new(&refs);
    let opts = AgentOptions {
        namespace: agent_ns.name.clone(),
        cache_dir: std::env::temp_dir().join(unique("cache")),
        lease: None,
        concurrency: 8,
        drift_debounce: Duration::from_millis(500),
        selector: Some(
            controller::LabelSelector::parse(&format!("fledge.test/agent={repo}"))
                .expect("a valid selector"),
        ),
        secret_namespaces: Vec::new(),
        workers: 4,
    };
    let agent = Agent::new(client.clone(), opts, Arc::new(Metrics::default()));
    let task = tokio::spawn(controller::run(agent, Arc::new(AtomicBool::new(false))));
    let body = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": repo, "labels": {"fledge.test/agent": repo}},
        "spec": {"url": remote.url(), "path": ".", "interval": "5s", "maxPruneFraction": 1.0}
    });
    Api::<ConfigRepo>::all(client.clone())
        .patch(
            &repo,
            &PatchParams::apply("fledge-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("fledge.dev/config-repo={repo}"));
    let started = eventually(
        "the sync to be under way",
        Duration::from_secs(60),
        || async {
            let n = cms.list(&lp).await.ok()?.items.len();
            (n > 0).then_some(n)
        },
    )
    .await;
    assert!(
        started < N,
        "the restart must hit the middle of the sync (already {started} of {N})"
    );
    tokio::task::spawn_blocking(|| {
        env_script("restart", &["kube-apiserver"], &[("RESTART_DOWNTIME", "2")])
    })
    .await
    .unwrap();
    eventually(
        "convergence after the restart",
        Duration::from_secs(180),
        || async {
            let n = cms.list(&lp).await.ok()?.items.len();
            (n == N && ready(&client, &repo).await).then_some(())
        },
    )
    .await;
    task.abort();
    let _ = env
        .kubectl()
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();

    // --- 2. Disaster recovery: a wiped cluster, rebuilt from the same repo by `fledge run`. ----
    let app_ns = unique("shop");
    let files = support::template_files(&app_ns);
    let refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let remote = GitRemote::new(&refs);
    tokio::task::spawn_blocking(|| {
        env_script("down", &[], &[]);
        env_script("up", &[], &[]);
    })
    .await
    .unwrap();
    let env = Env::get();
    let client = env.client().await;
    assert!(
        Api::<ConfigRepo>::all(client.clone())
            .list(&Default::default())
            .await
            .is_err(),
        "a new, empty cluster: not even fledge's CRDs"
    );
    let port = support::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args([
            "run",
            "--repo",
            &remote.url(),
            "--path",
            "clusters/production",
            "--name",
            "production",
            "--interval",
            "5s",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--cache-dir"])
        .arg(std::env::temp_dir().join(unique("dr-cache")))
        .env("KUBECONFIG", env.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rebuilt = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if ready(&client, "production").await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let deploy = Api::<Deployment>::namespaced(client.clone(), &app_ns)
        .get("shop-web")
        .await;
    let metrics = support::http_get(&format!("http://127.0.0.1:{port}/metrics")).await;
    let health = support::http_get(&format!("http://127.0.0.1:{port}/healthz")).await;
    let readyz = support::http_get(&format!("http://127.0.0.1:{port}/readyz")).await;
    let _ = child.kill();
    let _ = child.wait();
    rebuilt.expect("the new cluster converged (Ready=True)");
    assert_eq!(
        deploy.unwrap().status.unwrap().available_replicas,
        Some(6),
        "production: 6 replicas available"
    );
    let (code, text) = metrics.unwrap();
    assert_eq!(code, 200);
    assert!(
        text.contains("fledge_objects{repo=\"production\",state=\"desired\"} 6"),
        "{text}"
    );
    assert!(text.contains("fledge_is_leader 1"));
    assert!(text.contains("fledge_reconcile_duration_seconds_bucket"));
    assert_eq!(health.unwrap().0, 200);
    assert_eq!(readyz.unwrap().0, 200);
}
