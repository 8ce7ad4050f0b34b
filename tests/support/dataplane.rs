//! The env's data plane for tests: workloads the pod runner serves (`demo_deployment`), their
//! processes (`demo_app_pid`), load through the Gateway counted per backend (`gateway`,
//! `measure`, the loadgen's `split` module), and HTTPRoutes applied server-side.
//!
//! ```ignore
//! let split = dataplane::measure(&dataplane::gateway(&env, "shop.test", "/"), 200.0, 2000).await;
//! assert!((split.share("canary") - 0.10).abs() <= 0.03, "{split:?}");
//! ```

#[path = "../../examples/loadgen/split.rs"]
pub mod split;

use super::{Env, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
pub use split::{Split, Target, measure};
use std::path::PathBuf;
use std::time::Duration;

/// The port the demo app listens on in the pods `demo_deployment` makes.
pub const PORT: u16 = 8080;

impl Env {
    /// `GATEWAY_URL`: Traefik's listener for the Gateway `default/fledge-test`.
    pub fn gateway_url(&self) -> &str {
        self.var("GATEWAY_URL")
    }

    /// The env's state dir (pids, logs, the pod runner's records).
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(self.var("FLEDGE_ENV_STATE"))
    }

    /// `tests/env/restart NAME` for this env; panics when it fails.
    pub fn restart(&self, name: &str) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/env/restart");
        let status = std::process::Command::new(script)
            .arg(name)
            .env("FLEDGE_ENV_STATE", self.state_dir())
            .status()
            .expect("running tests/env/restart");
        assert!(status.success(), "tests/env/restart {name} failed");
    }
}

/// Requests to `path` through the env's gateway with `Host: host`.
pub fn gateway(env: &Env, host: &str, path: &str) -> Target {
    Target::from_url(&format!("{}{path}", env.gateway_url()))
        .expect("GATEWAY_URL is a loopback http URL")
        .host(host)
}

/// A Deployment of the demo app that the pod runner serves and Prometheus scrapes: pods labelled
/// `app: <app>` and `fledge.dev/track: <track>`, container port 8080, the given env (e.g.
/// `("ERROR_RATE", "0.05")`).
pub fn demo_deployment(
    name: &str,
    app: &str,
    track: &str,
    replicas: i32,
    env: &[(&str, &str)],
) -> Deployment {
    let env: Vec<serde_json::Value> = env
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    let labels = serde_json::json!({"app": app, "fledge.dev/track": track});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "fledge.dev/serve": "demo-app",
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": PORT.to_string(),
                    },
                },
                "spec": {"containers": [{
                    "name": "app",
                    "image": "fledge.dev/demo-app:test",
                    "ports": [{"name": "http", "containerPort": PORT}],
                    "env": env,
                }]},
            },
        },
    }))
    .expect("a valid Deployment")
}

/// Server-side applies `obj` (any kind, `apiVersion`/`kind` set) in `ns` as the tests' manager.
pub async fn apply(client: &Client, ns: &str, obj: serde_json::Value) {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion").to_owned();
    let kind = obj["kind"].as_str().expect("kind").to_owned();
    let name = obj["metadata"]["name"].as_str().expect("name").to_owned();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
    api.patch(
        &name,
        &PatchParams::apply("fledge-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {kind} {ns}/{name}: {e}"));
}

/// A ClusterIP Service `name` selecting `selector`, port 80 to the demo app's port.
pub fn service(name: &str, selector: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": PORT}]},
    })
}

/// The Running pods matching `selector` in `ns` that have an IP: (name, IP).
pub async fn running_pods(client: &Client, ns: &str, selector: &str) -> Vec<(String, String)> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("listing pods");
    pods.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status?;
            (status.phase.as_deref() == Some("Running"))
                .then_some(())
                .and(Some((p.metadata.name?, status.pod_ip?)))
        })
        .collect()
}

/// Waits until exactly `n` pods match `selector` and each answers `GET /` on its IP as itself
/// (`x-fledge-pod`); returns them as (name, IP).
pub async fn wait_serving(
    client: &Client,
    ns: &str,
    selector: &str,
    n: usize,
) -> Vec<(String, String)> {
    eventually(
        &format!("{n} pods {selector} in {ns} served by the pod runner"),
        Duration::from_secs(60),
        move || async move {
            let pods = running_pods(client, ns, selector).await;
            if pods.len() != n {
                return None;
            }
            for (name, ip) in &pods {
                let t = Target::from_url(&format!("http://{ip}:{PORT}/")).ok()?;
                let r = split::get(&t).await.ok()?;
                if r.header("x-fledge-pod") != Some(name.as_str()) {
                    return None;
                }
            }
            Some(pods)
        },
    )
    .await
}

/// The pid of the demo app the pod runner runs on `ip` (from /proc: the command line of every
/// demo app of this env starts with `$FLEDGE_ENV_STATE/bin/demo-app`).
pub fn demo_app_pid(env: &Env, ip: &str) -> Option<u32> {
    let exe = env.state_dir().join("bin/demo-app");
    let listen = format!("{ip}:{PORT}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first() == Some(&exe.as_os_str().as_encoded_bytes())
            && args
                .windows(2)
                .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

/// Waits until a batch of `batch` requests to `target` all answer 200 and `check` accepts the
/// split; returns the time that took. For "the gateway has the new configuration" without a
/// fixed sleep.
pub async fn wait_split(
    what: &str,
    target: &Target,
    batch: u64,
    timeout: Duration,
    check: impl Fn(&Split) -> bool,
) -> Duration {
    let start = std::time::Instant::now();
    let check = &check;
    eventually(what, timeout, move || async move {
        let s = measure(target, 200.0, batch).await;
        (s.ok() == batch && check(&s)).then_some(())
    })
    .await;
    start.elapsed()
}
