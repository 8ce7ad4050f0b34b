//! What the pod runner wants running (`want`: one demo-app command line per opted-in pod) and
//! the processes it runs (`Procs`: start, stop, adopt after a restart, restart when one dies).

use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pod annotation that opts a pod in, and the one value it knows.
pub const SERVE_ANNOTATION: &str = "fledge.dev/serve";
pub const SERVE_DEMO_APP: &str = "demo-app";
/// kwok manages the nodes with this annotation (tests/env/up creates them).
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// Port the demo app listens on when the pod declares none.
const DEFAULT_PORT: i32 = 8080;
/// A process that exited is not started again sooner than this.
const RESTART_BACKOFF: Duration = Duration::from_secs(2);

/// One process to run: the demo app for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub uid: String,
    /// `namespace/name`, for logs.
    pub pod: String,
    /// The demo app's arguments; a change means a new process.
    pub args: Vec<String>,
}

pub fn is_kwok_node(n: &Node) -> bool {
    n.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KWOK_NODE_ANNOTATION))
        .is_some_and(|v| v == "fake")
}

/// The process `pod` should have, if it opted in, runs on a kwok node, is Running and not
/// being deleted, and has a loopback IP.
pub fn want(pod: &Pod, kwok_nodes: &[String]) -> Option<Want> {
    let meta = &pod.metadata;
    let annotations = meta.annotations.as_ref()?;
    if annotations.get(SERVE_ANNOTATION).map(String::as_str) != Some(SERVE_DEMO_APP) {
        return None;
    }
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let node = spec.node_name.as_ref()?;
    if !kwok_nodes.contains(node) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: std::net::Ipv4Addr = status.pod_ip.as_ref()?.parse().ok()?;
    if !ip.is_loopback() {
        return None; // never listen anywhere but on loopback
    }
    let container = spec.containers.first()?;
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .map_or(DEFAULT_PORT, |p| p.container_port);
    let labels = meta.labels.clone().unwrap_or_default();
    let label = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).cloned());
    let service = label(&["app", "app.kubernetes.io/name"]).unwrap_or_default();
    let track = label(&["fledge.dev/track", "track"]).unwrap_or_else(|| "stable".into());
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let mut args = vec![
        "--listen".to_owned(),
        format!("{ip}:{port}"),
        "--service".into(),
        service,
        "--track".into(),
        track,
        "--pod".into(),
        name.clone(),
    ];
    let env: BTreeMap<&str, &str> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
        .collect();
    for (var, flag) in [
        ("ERROR_RATE", "--error-rate"),
        ("LATENCY_MS", "--latency-ms"),
        ("LATENCY_JITTER_MS", "--latency-jitter-ms"),
        ("VERSION", "--version"),
    ] {
        if let Some(v) = env.get(var) {
            args.push(flag.to_owned());
            args.push((*v).to_owned());
        }
    }
    Some(Want {
        uid: meta.uid.clone()?,
        pod: format!("{namespace}/{name}"),
        args,
    })
}

/// A running demo app.
struct Proc {
    pid: u32,
    pod: String,
    args: Vec<String>,
    /// `None` for a process adopted from an earlier runner (not our child: no exit status).
    child: Option<Child>,
}

/// The processes of this runner, recorded in `dir/<uid>.json`.
pub struct Procs {
    demo_app: PathBuf,
    dir: PathBuf,
    running: BTreeMap<String, Proc>,
    exited: HashMap<String, Instant>,
}

impl Procs {
    /// Takes over the processes an earlier runner recorded in `dir` that still run the same
    /// command line (a recycled pid does not); forgets the others.
    pub fn adopt(demo_app: PathBuf, dir: PathBuf) -> Procs {
        let mut running = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let record: Option<serde_json::Value> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let parsed = record.as_ref().and_then(|r| {
                let pid = u32::try_from(r.get("pid")?.as_u64()?).ok()?;
                let pod = r.get("pod")?.as_str()?.to_owned();
                let args: Vec<String> = serde_json::from_value(r.get("args")?.clone()).ok()?;
                Some((pid, pod, args))
            });
            let uid = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match parsed {
                Some((pid, pod, args)) if runs(pid, &demo_app, &args) => {
                    running.insert(
                        uid,
                        Proc {
                            pid,
                            pod,
                            args,
                            child: None,
                        },
                    );
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Procs {
            demo_app,
            dir,
            running,
            exited: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// The uids of the pods whose process runs.
    pub fn serving(&self) -> std::collections::HashSet<String> {
        self.running.keys().cloned().collect()
    }

    /// Makes the running processes those of `want`: stops the processes of pods that are gone
    /// or changed (first, so a new pod can take a freed IP), notices processes that died, and
    /// starts what is missing.
    pub fn reconcile(&mut self, want: &BTreeMap<String, Want>, log: fn(&str)) {
        let uids: Vec<String> = self.running.keys().cloned().collect();
        for uid in uids {
            let stale = want
                .get(&uid)
                .is_none_or(|w| w.args != self.running[&uid].args);
            if stale {
                if let Some(mut p) = self.running.remove(&uid) {
                    stop(&mut p);
                    let _ = std::fs::remove_file(self.record(&uid));
                    log(&format!("stopped {} (pid {})", p.pod, p.pid));
                }
                continue;
            }
            let p = self.running.get_mut(&uid).expect("listed above");
            let exit = match p.child.as_mut() {
                Some(c) => c.try_wait().ok().flatten().map(|s| s.to_string()),
                None => (!runs(p.pid, &self.demo_app, &p.args)).then(|| "exited".to_owned()),
            };
            if let Some(status) = exit {
                log(&format!("{} (pid {}) {status}", p.pod, p.pid));
                self.running.remove(&uid);
                let _ = std::fs::remove_file(self.record(&uid));
                self.exited.insert(uid, Instant::now());
            }
        }
        for (uid, w) in want {
            if self.running.contains_key(uid) {
                continue;
            }
            if self
                .exited
                .get(uid)
                .is_some_and(|t| t.elapsed() < RESTART_BACKOFF)
            {
                continue;
            }
            match self.start(uid, w) {
                Ok(p) => {
                    log(&format!(
                        "started {} (pid {}): {}",
                        w.pod,
                        p.pid,
                        w.args.join(" ")
                    ));
                    self.running.insert(uid.clone(), p);
                }
                Err(e) => {
                    log(&format!("starting {}: {e}", w.pod));
                    self.exited.insert(uid.clone(), Instant::now());
                }
            }
        }
        self.exited.retain(|uid, _| want.contains_key(uid));
    }

    fn record(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    fn start(&self, uid: &str, w: &Want) -> std::io::Result<Proc> {
        let log_path = self.dir.join(format!("{}.log", w.pod.replace('/', "_")));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        let child = Command::new(&self.demo_app)
            .args(&w.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: a Ctrl-C meant for the runner does not reach it.
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        let record = serde_json::json!({"pid": pid, "pod": w.pod, "args": w.args});
        std::fs::write(self.record(uid), record.to_string())?;
        Ok(Proc {
            pid,
            pod: w.pod.clone(),
            args: w.args.clone(),
            child: Some(child),
        })
    }
}

/// Process `pid` is alive (not a zombie) and runs `demo_app` with `args`.
fn runs(pid: u32, demo_app: &Path, args: &[String]) -> bool {
    if is_zombie_or_gone(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut expected = demo_app.as_os_str().as_encoded_bytes().to_vec();
    for a in args {
        expected.push(0);
        expected.extend_from_slice(a.as_bytes());
    }
    expected.push(0);
    cmdline == expected
}

/// SIGTERM, then SIGKILL after 2 s; reaps our own children.
fn stop(p: &mut Proc) {
    let pid = p.pid as libc::pid_t;
    // SAFETY: kill(2) with a pid we started (or adopted after checking its command line).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let gone = match p.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => is_zombie_or_gone(p.pid),
        };
        if gone {
            return;
        }
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if let Some(c) = p.child.as_mut() {
                let _ = c.wait();
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No process `pid`, or only its zombie (the state is the first field after the command name
/// in parentheses).
fn is_zombie_or_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}
