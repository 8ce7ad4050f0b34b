//! Disruptive end-to-end tests (their own test binary, so nothing else runs while the control
//! plane is restarted or rebuilt): an API server restart in the middle of a sync, disaster
//! recovery — a wiped, brand-new cluster rebuilt by `fledge run` from the same repository —
//! and leader election under SIGTERM and a leader whose API calls hang. The tests of this
//! binary take one lock each, so they run one at a time.

mod support;

use fledge::controller::{self, Agent, AgentOptions, LeaseConfig};
use fledge::crd::{ConditionStatus, ConfigRepo};
use fledge::server::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use support::{Env, GitRemote, TestNamespace, eventually, unique};
use tokio::sync::watch;

/// One test at a time: the first test restarts and rebuilds the control plane.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _serial = SERIAL.lock().await;
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
        rollout_workers: 4,
        cluster: "local".into(),
        dashboard_url: None,
        rollback_author: None,
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

// --- Leader election ------------------------------------------------------------------------

/// The Lease's holder (`None` when released), reading it from the API server.
async fn lease_holder(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("reading the Lease")
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// A `fledge run` process serving no ConfigRepo, its stderr in a file; killed when dropped.
struct AgentProcess {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl AgentProcess {
    fn start(env: &Env, agent_ns: &str, identity: &str) -> AgentProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
            .args(["run", "--install-crds=false", "--lease-duration=15s"])
            .args(["--namespace", agent_ns, "--identity", identity])
            .args([
                "--selector",
                &format!("fledge.test/agent={}", unique("none")),
            ])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--cache-dir"])
            .arg(dir.path().join("cache"))
            .env("KUBECONFIG", env.kubeconfig())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        AgentProcess { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The agent's `fledge_is_leader` gauge, `None` while it does not answer.
    async fn is_leader(&self) -> Option<bool> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let (_, text) = support::http_get(&url).await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("fledge_is_leader "))
            .map(|v| v.trim() == "1")
    }

    async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        support::http_get(&url)
            .await
            .is_ok_and(|(code, _)| code == 200)
    }

    fn terminate(&self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < timeout, "still running: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM to the leader (what Kubernetes sends a pod): it stops, gives the Lease up and exits
/// cleanly, and the standby takes over at its next attempt rather than after the lease
/// duration (15 s). Fails on the old code: it died of the signal with the Lease still its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_the_standby_takes_over() {
    let _serial = SERIAL.lock().await;
    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let agent_ns = TestNamespace::new(&client, &env, "sigterm").await;
    let ns = agent_ns.name.as_str();
    let mut a = AgentProcess::start(&env, ns, "agent-a");
    eventually(
        "agent-a to hold the Lease",
        Duration::from_secs(60),
        || async {
            (lease_holder(&client, ns, "fledge-leader").await.as_deref() == Some("agent-a"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(a.is_leader().await, Some(true), "{}", a.log());
    let b = AgentProcess::start(&env, ns, "agent-b");
    eventually("agent-b ready", Duration::from_secs(60), || async {
        b.ready().await.then_some(())
    })
    .await;
    assert_eq!(b.is_leader().await, Some(false), "{}", b.log());

    let t = std::time::Instant::now();
    a.terminate();
    let status = a.wait_exit(Duration::from_secs(60)).await;
    let exited = t.elapsed();
    assert!(
        status.success(),
        "agent-a on SIGTERM: {status}\n{}",
        a.log()
    );
    assert!(a.log().contains("released the leader Lease"), "{}", a.log());
    let holder = lease_holder(&client, ns, "fledge-leader").await;
    assert_ne!(
        holder.as_deref(),
        Some("agent-a"),
        "agent-a exited holding the Lease"
    );
    eventually("agent-b to take over", Duration::from_secs(60), || async {
        let held = lease_holder(&client, ns, "fledge-leader").await;
        (held.as_deref() == Some("agent-b") && b.is_leader().await == Some(true)).then_some(())
    })
    .await;
    eprintln!(
        "SIGTERM: the leader exited after {exited:?}; the standby led {:?} after the signal \
         (lease duration 15s)",
        t.elapsed()
    );
}

/// A TCP proxy in front of the API server that can partition its clients from it: while cut,
/// nothing is forwarded (calls hang); when healed, connections that saw the cut are closed
/// without forwarding what they held, as after a long partition.
struct Partition {
    port: u16,
    /// (cut, epoch): the epoch counts heals.
    state: watch::Sender<(bool, u64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn start(upstream: String) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, rx) = watch::channel((false, 0u64));
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (mut rx, upstream) = (rx.clone(), upstream.clone());
                tokio::spawn(async move {
                    let epoch = rx.borrow().1;
                    if !Self::open(&mut rx, epoch).await {
                        return;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let ((ri, wi), (ro, wo)) = (inbound.into_split(), outbound.into_split());
                    tokio::select! {
                        () = Self::pipe(ri, wo, rx.clone(), epoch) => {}
                        () = Self::pipe(ro, wi, rx, epoch) => {}
                    }
                });
            }
        });
        Partition { port, state, task }
    }

    /// Waits while cut; false when the connection saw a cut (it must close).
    async fn open(rx: &mut watch::Receiver<(bool, u64)>, epoch: u64) -> bool {
        rx.wait_for(|(cut, _)| !cut)
            .await
            .is_ok_and(|s| s.1 == epoch)
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut rx: watch::Receiver<(bool, u64)>,
        epoch: u64,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !Self::open(&mut rx, epoch).await || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn cut(&self) {
        self.state.send_modify(|s| s.0 = true);
    }

    fn heal(&self) {
        self.state.send_modify(|s| *s = (false, s.1 + 1));
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client of the env's API server, through `via` (a proxy port) when given, recording every
/// request it sends.
async fn client_via(env: &Env, via: Option<u16>) -> (kube::Client, support::RequestLog, String) {
    let kc = Kubeconfig::read_from(env.kubeconfig()).expect("reading the env's kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    let url = &config.cluster_url;
    let upstream = format!("{}:{}", url.host().unwrap(), url.port_u16().unwrap_or(443));
    if let Some(port) = via {
        config.cluster_url = format!("https://127.0.0.1:{port}").parse().unwrap();
    }
    let log: support::RequestLog = Default::default();
    let log2 = log.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let pq = req.uri().path_and_query().map(|p| p.to_string());
        log2.lock()
            .unwrap()
            .push((req.method().to_string(), pq.unwrap_or_default()));
        req
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build();
    (client, log, upstream)
}

/// Writes (leases and events left out) in `log` from entry `from` on.
fn writes_since(log: &support::RequestLog, from: usize) -> Vec<(String, String)> {
    let tail = log.lock().unwrap()[from..].to_vec();
    support::writes(&Arc::new(std::sync::Mutex::new(tail)))
}

fn lease_gets_since(log: &support::RequestLog, from: usize) -> usize {
    log.lock().unwrap()[from..]
        .iter()
        .filter(|(m, p)| m == "GET" && p.contains("/leases/"))
        .count()
}

/// An in-process agent, aborted when dropped.
struct InProcess {
    agent: Arc<Agent>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    fn start(client: kube::Client, agent_ns: &str, repo: &str, identity: &str) -> InProcess {
        let lease = LeaseConfig {
            duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(6),
            retry_period: Duration::from_secs(1),
            ..LeaseConfig::new(agent_ns, "fledge-leader", identity)
        };
        let opts = AgentOptions {
            namespace: agent_ns.into(),
            cache_dir: std::env::temp_dir().join(unique("cache")),
            lease: Some(lease),
            concurrency: 8,
            drift_debounce: Duration::from_millis(300),
            selector: Some(
                controller::LabelSelector::parse(&format!("fledge.test/agent={repo}"))
                    .expect("a valid selector"),
            ),
            secret_namespaces: Vec::new(),
            workers: 4,
            rollout_workers: 4,
            cluster: "local".into(),
            dashboard_url: None,
            rollback_author: None,
        };
        let agent = Agent::new(client, opts, Arc::new(Metrics::default()));
        let task = tokio::spawn(controller::run(agent.clone(), Arc::default()));
        InProcess { agent, task }
    }

    fn leads(&self) -> bool {
        self.agent.metrics.leader.get() == 1
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The leader is partitioned from the API server (every call it makes hangs). It must stand
/// down by its renew deadline — before the standby, waiting out the lease duration, takes over
/// — and write nothing once the partition heals. Fails on the old code: a hung Lease call kept
/// it "leader" with no timeout while the standby led too (split brain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_api_calls_hang_stands_down_before_the_standby_takes_over() {
    let _serial = SERIAL.lock().await;
    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let agent_ns = TestNamespace::new(&client, &env, "hang").await;
    let (ns, repo) = (unique("hang"), unique("hang"));
    let cm = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  value: {v}\n")
    };
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            format!(
                "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, cm.yaml]\n"
            ),
        ),
        (
            "ns.yaml",
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        ),
        ("cm.yaml", cm("one")),
    ]);
    let (_, _, upstream) = client_via(&env, None).await;
    let partition = Partition::start(upstream).await;
    let (a_client, a_log, _) = client_via(&env, Some(partition.port)).await;
    let (b_client, b_log, _) = client_via(&env, None).await;
    let a = InProcess::start(a_client, &agent_ns.name, &repo, "agent-a");
    eventually("agent-a to lead", Duration::from_secs(60), || async {
        a.leads().then_some(())
    })
    .await;
    let b = InProcess::start(b_client, &agent_ns.name, &repo, "agent-b");
    let body = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": repo, "labels": {"fledge.test/agent": repo}},
        "spec": {"url": remote.url(), "path": ".", "interval": "2s"}
    });
    let repos = Api::<ConfigRepo>::all(client.clone());
    repos
        .patch(
            &repo,
            &PatchParams::apply("fledge-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let value = || async { cms.get("shared").await.ok()?.data?.remove("value") };
    eventually("agent-a to sync", Duration::from_secs(120), || async {
        (value().await.as_deref() == Some("one") && ready(&client, &repo).await).then_some(())
    })
    .await;
    eventually("agent-b to stand by", Duration::from_secs(30), || async {
        (lease_gets_since(&b_log, 0) >= 2).then_some(())
    })
    .await;
    assert!(
        !b.leads() && writes_since(&b_log, 0).is_empty(),
        "the standby wrote"
    );

    // --- The partition: agent-a's calls hang. ---------------------------------------------
    partition.cut();
    let t = std::time::Instant::now();
    let mut a_stood_down = None;
    let b_took_over = eventually("agent-b to take over", Duration::from_secs(60), || {
        if a_stood_down.is_none() && !a.leads() {
            // The worker is dropped before the gauge reads 0: any request logged from here
            // on was sent after agent-a stood down.
            a_stood_down = Some((t.elapsed(), a_log.lock().unwrap().len()));
        }
        let (client, agent_ns) = (client.clone(), agent_ns.name.clone());
        async move {
            let held = lease_holder(&client, &agent_ns, "fledge-leader").await;
            (held.as_deref() == Some("agent-b")).then(|| t.elapsed())
        }
    })
    .await;
    assert!(
        !a.leads(),
        "split brain: agent-b holds the Lease while the partitioned agent-a still leads"
    );
    eprintln!(
        "partitioned leader: stood down after {:?}, the standby took over after \
         {b_took_over:?} (lease 10s, renew deadline 6s, retry 1s)",
        a_stood_down.map(|(t, _)| t)
    );
    eventually("agent-b to lead", Duration::from_secs(30), || async {
        b.leads().then_some(())
    })
    .await;
    remote.commit(&[("cm.yaml", cm("two"))], &[], "two");
    eventually(
        "agent-b to apply commit two",
        Duration::from_secs(120),
        || async { (value().await.as_deref() == Some("two")).then_some(()) },
    )
    .await;

    // --- The partition heals: agent-a tries the Lease again, stays standby, writes nothing.
    partition.heal();
    let healed_at = a_log.lock().unwrap().len();
    eventually(
        "agent-a to try the Lease again",
        Duration::from_secs(60),
        || async { (lease_gets_since(&a_log, healed_at) >= 3).then_some(()) },
    )
    .await;
    assert!(!a.leads(), "agent-a leads again after the partition");
    assert_eq!(
        lease_holder(&client, &agent_ns.name, "fledge-leader")
            .await
            .as_deref(),
        Some("agent-b")
    );
    let (_, stood_down_at) = a_stood_down.expect("agent-a stood down");
    let wrote = writes_since(&a_log, stood_down_at);
    assert!(
        wrote.is_empty(),
        "agent-a wrote after it stood down: {wrote:?}"
    );
    assert!(!writes_since(&b_log, 0).is_empty(), "the new leader wrote");
    drop((a, b));
    let _ = repos.delete(&repo, &Default::default()).await;
    let _ = env
        .kubectl()
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();
}
