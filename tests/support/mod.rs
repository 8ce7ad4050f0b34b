//! Test support for tests that run against the real control plane started by `tests/env/up`.
//!
//! `Env::get()` finds the running env (or panics with how to start it: tests that need the
//! control plane never skip), gives `kube::Client`s, fresh namespaces that delete themselves,
//! and test-owned Prometheus servers.
#![allow(dead_code)] // each test binary uses a different part of this module
pub mod sshd;

pub mod sync;

pub mod rollout;

pub mod gitea;

pub mod dataplane;

pub mod browser;

pub mod traffic;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const NOT_RUNNING: &str =
    "control plane not running: run tests/env/up (the README's test command does this for you)";

/// The running test environment, as described by the env file `tests/env/up` writes.
#[derive(Clone, Debug)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Location of the env file: `$FLEDGE_ENV_STATE/env`, default `~/.cache/fledge/state/env`.
    pub fn file() -> PathBuf {
        let state = std::env::var_os("FLEDGE_ENV_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").expect("HOME is not set");
                Path::new(&home).join(".cache/fledge/state")
            });
        state.join("env")
    }

    /// The running env. Panics (never skips) when it is not there.
    pub fn get() -> Env {
        let file = Self::file();
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{NOT_RUNNING} ({}: {e})", file.display()));
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Env { vars }
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}", Self::file().display()))
    }

    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    /// Path of a binary of the env (`kubectl`, `kube-apiserver`, …).
    pub fn bin(&self, name: &str) -> PathBuf {
        Path::new(self.var("FLEDGE_ENV_BIN")).join(name)
    }

    pub fn prometheus_url(&self) -> &str {
        self.var("FLEDGE_ENV_PROMETHEUS_URL")
    }

    /// A client for the env's API server. Panics when the API server does not answer.
    pub async fn client(&self) -> Client {
        fledge::install_crypto();
        let kc = Kubeconfig::read_from(self.kubeconfig()).expect("reading the env's kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig of the env is valid");
        let client = Client::try_from(config).expect("building a client");
        client
            .apiserver_version()
            .await
            .unwrap_or_else(|e| panic!("{NOT_RUNNING} (API server does not answer: {e})"));
        client
    }

    /// `kubectl` with the env's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin("kubectl"));
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd
    }
}

/// A unique suffix for names created by tests (pid + counter + time, base 36).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}-{}",
        radix36((std::process::id() as u128) << 40 ^ (t & 0xff_ffff_ffff) ^ (n as u128) << 20)
    )
    .chars()
    .take(40)
    .collect()
}

fn radix36(mut v: u128) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while v > 0 {
        out.push(digits[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A namespace created for one test and deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    env: Env,
}

impl TestNamespace {
    pub async fn new(client: &Client, env: &Env, prefix: &str) -> TestNamespace {
        let name = unique(prefix);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"fledge.dev/test": "true"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace {
            name,
            env: env.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Deleting is asynchronous in Kubernetes anyway; fire the request and move on.
        let _ = self
            .env
            .kubectl()
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `f` until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Installs (server-side apply) fledge's CRDs and waits until they are Established.
pub async fn install_crds(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let pp = PatchParams::apply("fledge-tests").force();
    for crd in fledge::crd::all() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
    }
    for crd in fledge::crd::all() {
        let name = crd.metadata.name.clone().unwrap();
        eventually(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// Deletes an object if present (used by tests that share cluster-scoped names).
pub async fn delete_if_present<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// A Prometheus server owned by one test: its own port, data dir and scrape config.
/// Killed when dropped.
pub struct Prometheus {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`) every `scrape_interval` under job `test`,
    /// and waits until it is ready.
    pub async fn start(targets: &[String], scrape_interval: &str) -> Prometheus {
        Self::start_on(free_port(), targets, scrape_interval).await
    }

    /// [`Prometheus::start`] on this port (e.g. again where a stopped one was).
    pub async fn start_on(port: u16, targets: &[String], scrape_interval: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let targets_json = serde_json::to_string(targets).unwrap();
        let config = format!(
            "global: {{scrape_interval: {scrape_interval}, evaluation_interval: {scrape_interval}}}\n\
             scrape_configs:\n- job_name: test\n  static_configs: [{{targets: {targets_json}}}]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "starting prometheus (install Debian's prometheus package; tests/env/build does)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let mut p = Prometheus {
            url,
            child,
            _dir: dir,
        };
        let ready = format!("{}/-/ready", p.url);
        eventually("prometheus ready", Duration::from_secs(30), || {
            let ready = ready.clone();
            async move {
                http_get(&ready)
                    .await
                    .ok()
                    .filter(|(s, _)| *s == 200)
                    .map(|_| ())
            }
        })
        .await;
        assert!(p.child.try_wait().unwrap().is_none(), "prometheus exited");
        p
    }

    /// Stops the server (e.g. to test unreachable Prometheus).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn prometheus_binary() -> PathBuf {
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    PathBuf::from("prometheus")
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Minimal HTTP/1.0 GET over a plain TCP connection (loopback test servers only).
/// Returns status code and body.
pub async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    // HTTP/1.0: the server answers with a plain body (no chunked encoding) and closes.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Every request a client made: (method, path and query).
pub type RequestLog = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

impl Env {
    /// A client that records every request it sends (to count writes).
    pub async fn counting_client(&self) -> (Client, RequestLog) {
        fledge::install_crypto();
        let kc = Kubeconfig::read_from(self.kubeconfig()).expect("reading the env's kubeconfig");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        let log: RequestLog = Default::default();
        let log2 = log.clone();
        let layer =
            tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                log2.lock().unwrap().push((req.method().to_string(), pq));
                req
            });
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("client builder")
            .with_layer(&layer)
            .build();
        (client, log)
    }
}

/// Write requests (not GET/LIST/WATCH) in `log`, leaving out Lease renewals and Events.
pub fn writes(log: &RequestLog) -> Vec<(String, String)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(m, p)| {
            m != "GET"
                && !p.contains("/leases/")
                && !p.contains("/leases?")
                && !p.contains("/events")
        })
        .cloned()
        .collect()
}

/// Runs git in `dir` (with a test identity), asserting success; returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=fledge-test",
            "-c",
            "user.email=test@fledge.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Copies a directory tree, keeping symlinks as symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let ft = entry.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if ft.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A bare git "remote" and a clone that pushes to it.
pub struct GitRemote {
    pub dir: tempfile::TempDir,
}

impl GitRemote {
    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
    pub fn url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work(), args)
    }

    /// A remote holding `files` in its first commit.
    pub fn new(files: &[(&str, String)]) -> GitRemote {
        let dir = tempfile::tempdir().unwrap();
        let g = GitRemote { dir };
        std::fs::create_dir_all(g.bare()).unwrap();
        std::fs::create_dir_all(g.work()).unwrap();
        let run = |cwd: &Path, args: &[&str]| {
            let out = Command::new("git")
                .args(["-c", "init.defaultBranch=main"])
                .args(args)
                .current_dir(cwd)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&g.bare(), &["init", "-q", "--bare"]);
        run(&g.work(), &["init", "-q"]);
        run(
            &g.work(),
            &["remote", "add", "origin", g.bare().to_str().unwrap()],
        );
        g.commit(files, &[], "initial");
        g
    }

    /// Writes `files`, removes `remove`, commits and pushes. Returns the new commit.
    pub fn commit(&self, files: &[(&str, String)], remove: &[&str], msg: &str) -> String {
        for (path, content) in files {
            let p = self.work().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        for path in remove {
            let _ = std::fs::remove_file(self.work().join(path));
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", msg, "--allow-empty"]);
        self.git(&["push", "-q", "origin", "HEAD:main"]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// The config-repo-template's files, with the app namespace `shop` renamed to `ns`.
pub fn template_files(ns: &str) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config-repo-template");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    for (_, text) in &mut out {
        *text = text
            .replace("namespace: shop", &format!("namespace: {ns}"))
            .replace("  name: shop\n", &format!("  name: {ns}\n"));
    }
    out
}
