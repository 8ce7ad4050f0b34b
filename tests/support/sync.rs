//! Helpers of the sync end-to-end tests: an in-process agent scoped to the test's ConfigRepos by
//! a label, ConfigRepo creation, waiting on the status, and the files of small test bundles.
#![allow(dead_code)]

use super::{Env, RequestLog, TestNamespace, unique};
use fledge::controller::{self, Agent, AgentOptions, LabelSelector, LeaseConfig};
use fledge::crd::{ConditionStatus, ConfigRepo, ConfigRepoStatus};
use fledge::server::Metrics;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub struct Running {
    pub agent: Arc<Agent>,
    pub task: tokio::task::JoinHandle<()>,
    pub log: RequestLog,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_agent(
    env: &Env,
    agent_ns: &str,
    selector: &str,
    lease: Option<LeaseConfig>,
) -> Running {
    agent_logs();
    let (client, log) = env.counting_client().await;
    let opts = AgentOptions {
        namespace: agent_ns.into(),
        cache_dir: std::env::temp_dir().join(format!("fledge-e2e-{}", unique("cache"))),
        lease,
        concurrency: 16,
        drift_debounce: Duration::from_millis(300),
        selector: Some(LabelSelector::parse(selector).expect("a valid selector")),
        secret_namespaces: Vec::new(),
        workers: 4,
        rollout_workers: 4,
        cluster: "local".into(),
        dashboard_url: None,
        rollback_author: None,
    };
    let agent = Agent::new(client, opts, Arc::new(Metrics::default()));
    let task = tokio::spawn(controller::run(
        agent.clone(),
        Arc::new(AtomicBool::new(false)),
    ));
    Running { agent, task, log }
}

/// The in-process agent's logs (level `info`, or `RUST_LOG`) go to the test's captured output:
/// a failing test shows what the agent did.
pub fn agent_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fledge=info"));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .try_init();
}

pub async fn create_repo(client: &Client, name: &str, selector_value: &str, url: &str, path: &str) {
    let body = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": name, "labels": {"fledge.test/agent": selector_value}},
        "spec": {"url": url, "path": path, "interval": "2s"}
    });
    Api::<ConfigRepo>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("fledge-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
}

pub async fn status_where(
    client: &Client,
    name: &str,
    what: &str,
    secs: u64,
    pred: impl Fn(&ConfigRepoStatus) -> bool,
) -> ConfigRepoStatus {
    let api = Api::<ConfigRepo>::all(client.clone());
    let mut last = None;
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if let Ok(r) = api.get(name).await {
                let s = r.status.unwrap_or_default();
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last status: {last:#?}"))
}

pub fn cond(s: &ConfigRepoStatus, t: &str) -> Option<(ConditionStatus, String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

pub fn is(s: &ConfigRepoStatus, t: &str, status: ConditionStatus) -> bool {
    cond(s, t).is_some_and(|c| c.0 == status)
}

/// What every test here starts with: fledge's CRDs, a namespace for the agent, unique names for
/// the app namespace (`ns`), the ConfigRepo and the agent selector (`id`), and their deletion
/// afterwards.
pub struct Setup {
    pub env: Env,
    pub client: Client,
    pub agent_ns: TestNamespace,
    pub ns: String,
    pub repo: String,
    pub id: String,
    pub _cleanup: Cleanup,
}

pub async fn setup(ns_prefix: &str, repo_prefix: &str) -> Setup {
    let env = Env::get();
    let client = env.client().await;
    super::install_crds(&client).await;
    let agent_ns = TestNamespace::new(&client, &env, "agent").await;
    let (ns, repo, id) = (unique(ns_prefix), unique(repo_prefix), unique("a"));
    let _cleanup = Cleanup {
        env: env.clone(),
        repo: repo.clone(),
        app_ns: ns.clone(),
    };
    Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    }
}

/// Names of the objects created for one test, deleted afterwards.
pub struct Cleanup {
    env: Env,
    repo: String,
    app_ns: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self
            .env
            .kubectl()
            .args([
                "delete",
                "configrepo",
                &self.repo,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
        let _ = self
            .env
            .kubectl()
            .args([
                "delete",
                "namespace",
                &self.app_ns,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
    }
}

/// How many of the test's `cm-*` ConfigMaps exist.
pub async fn managed_cms(cms: &Api<ConfigMap>) -> usize {
    let list = cms.list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .filter(|c| c.metadata.name.as_deref().unwrap_or("").starts_with("cm-"))
        .count()
}

pub fn cm_file(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

pub fn ns_file(ns: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
}

pub fn bundle(ns: &str, include: &str) -> String {
    format!("apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: {include}\n")
}

/// The Events fledge published about ConfigRepo `repo` with `reason`: `(related object name,
/// note)`, newest last.
pub async fn events_about(client: &Client, repo: &str, reason: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!("regarding.name={repo}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out: Vec<_> = list
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| {
            let related = e.related.and_then(|r| r.name).unwrap_or_default();
            (
                e.event_time.map(|t| t.0),
                related,
                e.note.unwrap_or_default(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, r, n)| (r, n)).collect()
}

/// `fledge run` as a process for this test's agent namespace and selector (no leader election,
/// CRDs already installed, its own mirror cache); the caller adds flags and spawns it.
pub fn agent_command(env: &Env, agent_ns: &str, id: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"));
    c.args(["run", "--leader-election=false", "--install-crds=false"])
        .args([
            "--namespace",
            agent_ns,
            "--selector",
            &format!("fledge.test/agent={id}"),
        ])
        .arg("--cache-dir")
        .arg(std::env::temp_dir().join(unique("agent-cache")))
        .arg("--kubeconfig")
        .arg(env.kubeconfig());
    c
}

/// `fledge run` as a process, for crash tests: it aborts (as `kill -9` would end it) at the
/// failpoint given, while `after` runs; returns once it has, with its stderr. Fails the test
/// when the agent did not reach the failpoint within 90 s.
pub async fn run_until_failpoint(
    env: &Env,
    agent_ns: &str,
    id: &str,
    point: &str,
    after: impl std::future::Future<Output = ()>,
) -> String {
    let mut child = agent_command(env, agent_ns, id)
        .args(["--listen", "127.0.0.1:0"])
        .env("FLEDGE_FAILPOINTS", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning fledge run");
    after.await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("waiting for fledge run").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).expect("reading its stderr");
    }
    assert!(
        stderr.contains(&format!("failpoint {point} reached")),
        "the agent did not crash at {point}: {stderr}"
    );
    stderr
}
