//! Initial sync of N objects (60% ConfigMaps, 20% Services, 20% Deployments) into the real
//! control plane from `tests/env/` (start it first; the README's test command does), with
//! `fledge run` and with `kubectl apply --server-side -f` of the same rendered objects, side by
//! side in the same run. Each side syncs into an empty cluster on a quiet control plane:
//! kubectl's namespace is deleted before fledge starts. Then fledge's no-op reconciles, once the
//! repo is Ready. Reports wall times, their ratio, the control plane's CPU during each side,
//! fledge's peak RSS, and the requests each side made (fledge's own `fledge_kube_requests_total`;
//! kubectl's `-v=6` request log).
//!
//! `cargo bench --bench sync` runs 10,000 objects; under `cargo test` it runs 300.
//! `FLEDGE_BENCH_OBJECTS` overrides the size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn objects(dir: &Path, ns: &str, n: usize) {
    std::fs::create_dir_all(dir.join("objects")).unwrap();
    std::fs::write(dir.join("fledge.yaml"), format!("apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, objects]\n")).unwrap();
    std::fs::write(
        dir.join("ns.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
    )
    .unwrap();
    for i in 0..n.saturating_sub(1) {
        let name = format!("obj-{i:05}");
        let doc = match i % 5 {
            0 => format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: registry.example.com/{name}:1\n"
            ),
            1 => format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n"
            ),
            _ => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  index: \"{i}\"\n  payload: \"{}\"\n",
                "x".repeat(64)
            ),
        };
        std::fs::write(dir.join(format!("objects/{name}.yaml")), doc).unwrap();
    }
}

/// The agent's `/metrics` text ("" while it does not answer). A plain HTTP/1.0 GET from this
/// process: spawning curl ten times a second would cost the machine CPU during the timed window.
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
        || !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200")
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

/// CPU seconds used so far by each control-plane component (pids recorded by `tests/env/up`).
fn control_plane_cpu(env: &BTreeMap<String, String>) -> BTreeMap<String, f64> {
    let pids = Path::new(&env["FLEDGE_ENV_STATE"]).join("pids");
    [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]
    .iter()
    .filter_map(|c| {
        let pid = std::fs::read_to_string(pids.join(c))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(((*c).to_owned(), cpu_of(pid)))
    })
    .collect()
}

fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut total = 0.0;
    let parts: Vec<String> = after
        .iter()
        .map(|(c, a)| {
            let d = a - before.get(c).copied().unwrap_or(0.0);
            total += d;
            format!("{c} {d:.1}")
        })
        .collect();
    format!("{total:.1} s ({})", parts.join(", "))
}

/// Waits (up to 3 minutes) until the control plane is quiet: under 0.25 cores over 2 s. Each side
/// starts on a quiet server, not while the controller-manager still works through the other
/// side's Deployments.
fn wait_quiet(env: &BTreeMap<String, String>) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(180) {
        let a = control_plane_cpu(env);
        std::thread::sleep(Duration::from_secs(2));
        let b = control_plane_cpu(env);
        let used: f64 = b
            .iter()
            .map(|(c, v)| v - a.get(c).copied().unwrap_or(0.0))
            .sum();
        if used / 2.0 < 0.25 {
            break;
        }
    }
    t.elapsed()
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

fn status(env: &BTreeMap<String, String>, name: &str) -> serde_json::Value {
    let out = kubectl(env)
        .args(["get", "configrepo", name, "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("FLEDGE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000 } else { 300 });
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
    let tmp = tempfile::tempdir().unwrap();
    let (fledge_ns, kubectl_ns, repo) = (
        format!("bench-fledge-{id}"),
        format!("bench-kubectl-{id}"),
        format!("bench-{id}"),
    );
    let fledge_dir = tmp.path().join("fledge");
    let kubectl_dir = tmp.path().join("kubectl");
    objects(&fledge_dir, &fledge_ns, n);
    objects(&kubectl_dir, &kubectl_ns, n);
    // kubectl gets exactly what fledge would apply (rendered by fledge, same labels and all).
    let rendered = Command::new(fledge_bin)
        .args(["render", kubectl_dir.to_str().unwrap(), "--name", &repo])
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    std::fs::write(tmp.path().join("kubectl.yaml"), &rendered.stdout).unwrap();
    // Make sure the CRDs exist before timing (fledge run installs them too, idempotently).
    let crds = Command::new(fledge_bin).arg("crds").output().unwrap();
    let mut apply = kubectl(&env)
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "fledge",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(apply.stdin.as_mut().unwrap(), &crds.stdout).unwrap();
    drop(apply.stdin.take());
    apply.wait().unwrap();

    // kubectl side.
    let quiet_before = wait_quiet(&env);
    let cp0 = control_plane_cpu(&env);
    let t = Instant::now();
    // -v=6 logs one line per request, which is how kubectl's requests are counted; its CPU time
    // is sampled from /proc while it runs.
    let mut child = kubectl(&env)
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "kubectl-bench",
            "-v=6",
            "-f",
        ])
        .arg(tmp.path().join("kubectl.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut kubectl_cpu = 0.0;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        kubectl_cpu = cpu_of(child.id()).max(kubectl_cpu);
        std::thread::sleep(Duration::from_millis(20));
    };
    let kubectl_time = t.elapsed();
    let cp1 = control_plane_cpu(&env);
    let kubectl_server_cpu = cpu_delta(&cp0, &cp1);
    let log = reader.join().unwrap();
    assert!(
        exit.success(),
        "kubectl apply: {}",
        log.lines().last().unwrap_or("")
    );

    let kubectl_requests = log
        .lines()
        .filter(|l| l.contains("\"Response\" verb="))
        .count() as f64;

    // Both sides sync into an empty control plane: kubectl's objects go before fledge starts
    // (10,000 objects left in the cluster slow every later write: the garbage collector's graph,
    // the watch caches and etcd all grow).
    let cleared = Instant::now();
    let deleted = kubectl(&env)
        .args([
            "delete",
            "namespace",
            &kubectl_ns,
            "--wait=true",
            "--timeout=600s",
        ])
        .output()
        .unwrap();
    assert!(
        deleted.status.success(),
        "deleting {kubectl_ns}: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let cleared = cleared.elapsed();

    // fledge side: the agent process, from start until the ConfigRepo is Ready.
    // The agent follows a git repository (renders are cached per commit, as in production).
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@fledge.invalid",
            "commit",
            "-qm",
            "objects",
        ],
    ] {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(&fledge_dir)
                .status()
                .unwrap()
                .success()
        );
    }
    let cr = serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "metadata": {"name": repo, "labels": {"fledge.bench": id}},
        "spec": {"url": format!("file://{}", fledge_dir.display()), "path": ".", "interval": "3s"}});
    let mut c = kubectl(&env)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), cr.to_string().as_bytes()).unwrap();
    drop(c.stdin.take());
    c.wait().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quiet = wait_quiet(&env);
    let cp2 = control_plane_cpu(&env);
    let t = Instant::now();
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
        .env("KUBECONFIG", &env["KUBECONFIG"])
        .stdout(Stdio::null())
        // FLEDGE_BENCH_AGENT_LOG=<file> keeps the agent's log (its "synced" line has the time
        // each phase took).
        .stderr(match std::env::var_os("FLEDGE_BENCH_AGENT_LOG") {
            Some(f) => Stdio::from(std::fs::File::create(f).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();
    // Poll the agent's own /metrics (cheap) rather than spawning kubectl (which costs CPU on a
    // 2-core machine): synced when the sync of all objects reported no failures.
    let deadline = Instant::now() + Duration::from_secs(900);
    let synced = |text: &str| {
        let val = |state: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "fledge_objects{{repo=\"{repo}\",state=\"{state}\"}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        };
        // The gauges describe the newest reconcile: the one that created the objects, or a
        // later one that found them unchanged.
        let done = ["created", "updated", "unchanged"]
            .iter()
            .map(|s| val(s).unwrap_or(0))
            .sum::<i64>();
        val("desired") == Some(n as i64) && val("failed") == Some(0) && done == n as i64
    };
    while Instant::now() < deadline {
        if synced(&scrape(port)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let fledge_time = t.elapsed();
    let fledge_server_cpu = cpu_delta(&cp2, &control_plane_cpu(&env));
    let fledge_cpu = cpu_of(agent.id());
    std::thread::sleep(Duration::from_secs(1));
    let s = status(&env, &repo);
    assert_eq!(
        s["status"]["objects"]["desired"].as_i64(),
        Some(n as i64),
        "fledge synced: {s}"
    );

    // No-op reconciles are measured once the repo has settled: every Deployment rolled out and
    // Ready=True (while the controller-manager still works through the Deployments, health
    // changes and the status is rightly rewritten).
    let settle = Instant::now();
    loop {
        let s = status(&env, &repo);
        let ready = s["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .is_some_and(|c| c["status"] == "True");
        if ready {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(600),
            "not Ready after 10 minutes: {s}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let settle = settle.elapsed();
    // No-op reconciles: the interval is 3 s; watch 10 s of them.
    let metrics = |port: u16| -> (f64, f64, f64, f64) {
        let text = scrape(port);
        let get = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        let writes = ["PATCH", "POST", "PUT", "DELETE"]
            .iter()
            .map(|m| get(&format!("fledge_kube_requests_total{{method=\"{m}\"}}")))
            .sum::<f64>();
        (
            get("fledge_reconcile_duration_seconds_sum"),
            get("fledge_reconcile_duration_seconds_count"),
            get("fledge_kube_requests_total"),
            writes,
        )
    };
    let (_, _, fledge_requests, _) = metrics(port);
    std::thread::sleep(Duration::from_secs(4));
    let (sum0, count0, _, writes0) = metrics(port);
    std::thread::sleep(Duration::from_secs(10));
    let (sum1, count1, _, writes1) = metrics(port);
    let noop_writes = writes1 - writes0;
    let noop_reconciles = count1 - count0;
    let noop_avg = if noop_reconciles > 0.0 {
        (sum1 - sum0) / noop_reconciles
    } else {
        f64::NAN
    };
    let rss = peak_rss_kib(agent.id());
    let _ = agent.kill();
    let _ = agent.wait();
    // Leave the cluster as we found it (a deletion still running would slow what comes next).
    let _ = kubectl(&env)
        .args(["delete", "configrepo", &repo, "--wait=true"])
        .output();
    let _ = kubectl(&env)
        .args([
            "delete",
            "namespace",
            &fledge_ns,
            "--wait=true",
            "--timeout=600s",
        ])
        .output();

    println!(
        "sync benchmark: {n} objects (60% ConfigMaps, 20% Services, 20% Deployments) into the real control plane"
    );
    println!(
        "  kubectl apply --server-side  {:>8.2} s wall  {kubectl_cpu:>6.2} s CPU  {kubectl_requests:>7.0} requests",
        kubectl_time.as_secs_f64()
    );
    println!(
        "  fledge run (until synced)    {:>8.2} s wall  {fledge_cpu:>6.2} s CPU  {fledge_requests:>7.0} requests (process start, CRD install, discovery, status and event writes included)",
        fledge_time.as_secs_f64()
    );
    println!(
        "  waits for a quiet control plane: {:.0} s before kubectl; between the sides {:.0} s to delete kubectl's namespace, then {:.0} s",
        quiet_before.as_secs_f64(),
        cleared.as_secs_f64(),
        quiet.as_secs_f64()
    );
    println!("  control plane CPU during kubectl: {kubectl_server_cpu}");
    println!("  control plane CPU during fledge:  {fledge_server_cpu}");
    println!(
        "  ratio kubectl/fledge: {:.1}x",
        kubectl_time.as_secs_f64() / fledge_time.as_secs_f64()
    );
    println!("  fledge peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    println!(
        "  Ready (every Deployment rolled out) {:.0} s after synced",
        settle.as_secs_f64()
    );
    println!(
        "  no-op reconciles in 10 s: {noop_reconciles:.0}, average {:.1} ms ({:.2}% of the initial sync), write requests: {noop_writes:.0}",
        noop_avg * 1e3,
        100.0 * noop_avg / fledge_time.as_secs_f64()
    );
    assert_eq!(noop_writes, 0.0, "no-op reconciles must not write");
    assert!(
        noop_reconciles >= 1.0,
        "at least one no-op reconcile was observed"
    );
}
