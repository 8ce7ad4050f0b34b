//! The Helm chart `charts/fledge`, with helm built from the Go module proxy
//! (`tests/env/setup-helm`) and the real control plane from `tests/env/`: it lints, renders what
//! its values say, refuses bad values with a message naming the value, installs into the
//! cluster, and its ServiceAccount and RBAC are enough for the agent to sync a repository (the
//! agent runs here, authenticated with a token of the chart's ServiceAccount).

mod support;

use fledge::crd::{ConditionStatus, ConfigRepo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Env, GitRemote, unique};

const KUBE_VERSION: &str = "1.35.4";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/fledge")
}

/// helm, built once per version into ~/.cache/fledge/tools (fails loudly if it cannot be).
fn helm() -> Command {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let path = PATH.get_or_init(|| {
        let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/env/setup-helm");
        let out = Command::new(&setup)
            .stderr(Stdio::inherit())
            .output()
            .expect("running tests/env/setup-helm");
        assert!(out.status.success(), "tests/env/setup-helm failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    });
    let mut c = Command::new(path);
    // No user configuration or cache from the machine.
    let home = std::env::temp_dir().join("fledge-helm-home");
    c.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    c
}

/// `helm template` with `--set` values: Ok(objects) or Err(stderr).
fn template(release: &str, namespace: &str, sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut c = helm();
    c.args(["template", release]).arg(chart()).args([
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]);
    for s in sets {
        c.args(["--set", s]);
    }
    let out = c.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(text
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect())
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

/// The entry called `name` of a list of named entries (volumes, volume mounts).
fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e["name"] == name)
}

/// Metric names the agent exposes (`# TYPE` lines of a fresh registry), with the series names
/// Prometheus derives from them (`_total`, `_bucket`, `_count`, `_sum`).
fn exposed_metrics() -> std::collections::BTreeSet<String> {
    use fledge::server::*;
    // Families without a child are not encoded: give each one a child.
    let m = Metrics::default();
    let l = |s: &str| s.to_owned();
    m.reconcile_duration
        .get_or_create(&ResultLabel {
            result: l("success"),
        })
        .observe(1.0);
    m.objects
        .get_or_create(&RepoState {
            repo: l("r"),
            state: l("failed"),
        })
        .set(0);
    m.drift.get_or_create(&RepoLabel { repo: l("r") }).inc();
    m.prune_refusals
        .get_or_create(&RepoReason {
            repo: l("r"),
            reason: l("empty"),
        })
        .inc();
    m.fetch_errors
        .get_or_create(&ReasonLabel { reason: l("auth") })
        .inc();
    m.apply_errors
        .get_or_create(&CategoryLabel {
            category: l("conflict"),
        })
        .inc();
    m.set_rollout_phase("ns", "web", "Healthy");
    m.count_rollout_abort("AnalysisFailed");
    count_request("GET");
    kube_request_seconds()
        .get_or_create(&MethodLabel { method: l("GET") })
        .observe(0.1);
    let text = m.encode();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (w.next(), w.next(), w.next(), w.next())
        {
            names.insert(name.to_owned());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_count", "_sum"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                _ => {}
            }
        }
    }
    names
}

/// `fledge_…` metric names used in a PromQL expression.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("fledge_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool (Debian package prometheus; tests/env/deps installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_operations_kit_lints_and_its_alerts_fire_when_they_should() {
    let objects = template(
        "fledge",
        "fledge-system",
        &[
            "configRepo.spec.url=https://git.example/config.git",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.prometheusRule.labels.release=kps",
            "monitoring.grafanaDashboard.enabled=true",
        ],
    )
    .unwrap();
    let exposed = exposed_metrics();
    let dir = tempfile::tempdir().unwrap();

    // The PrometheusRule as rendered by the chart: promtool lints it and runs its unit tests
    // (charts/fledge/files/alerts_test.yaml: each alert fires on its input, and only then).
    let rule = find(&objects, "PrometheusRule").expect("a PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let groups = &rule["spec"]["groups"];
    let names: Vec<&str> = groups[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for want in [
        "FledgeRolloutAborted",
        "FledgeSyncFailing",
        "FledgeDriftRising",
        "FledgeLeaderMissing",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in groups[0]["rules"].as_array().unwrap() {
        for m in metrics_in(r["expr"].as_str().unwrap()) {
            assert!(
                exposed.contains(&m),
                "alert {} uses {m}, which the agent does not expose ({exposed:?})",
                r["alert"]
            );
        }
    }
    let rules = serde_json::json!({ "groups": groups });
    std::fs::write(dir.path().join("alerts.yaml"), rules.to_string()).unwrap();
    std::fs::copy(
        chart().join("files/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    let out = promtool(&["check", "rules", "alerts.yaml"], dir.path());
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{out}"
    );
    let out = promtool(&["test", "rules", "alerts_test.yaml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");

    // The Grafana dashboard: well-formed, unique panel ids, every query valid PromQL (checked
    // by promtool as recording rules) over metrics the agent exposes.
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    let dash: Value = serde_json::from_str(cm["data"]["fledge.json"].as_str().unwrap())
        .expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "fledge-agent");
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut record = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "panel {} gridPos.{k}", p["title"]);
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m");
            let used = metrics_in(&expr);
            assert!(
                !used.is_empty(),
                "panel {} queries no fledge metric",
                p["title"]
            );
            for m in used {
                assert!(
                    exposed.contains(&m),
                    "panel {} uses {m}, which the agent does not expose",
                    p["title"]
                );
            }
            record.push(serde_json::json!({"record": format!("panel:{}:{}", p["id"], t["refId"].as_str().unwrap()), "expr": expr}));
        }
    }
    assert!(panels.len() >= 10);
    let recs = serde_json::json!({"groups": [{"name": "dashboard", "rules": record}]});
    std::fs::write(dir.path().join("dashboard.yaml"), recs.to_string()).unwrap();
    promtool(&["check", "rules", "dashboard.yaml"], dir.path());
}

#[test]
fn the_charts_default_image_is_the_one_make_image_tags() {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/env/image"))
        .arg("--print-tag")
        .output()
        .expect("running tests/env/image --print-tag");
    assert!(out.status.success());
    let tagged = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(tagged, format!("fledge:{}", env!("CARGO_PKG_VERSION")));
    let objects = template(
        "fledge",
        "fledge-system",
        &["configRepo.spec.url=https://git.example/config.git"],
    )
    .unwrap();
    let deploy = find(&objects, "Deployment").expect("the agent Deployment");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"], tagged,
        "the chart's default image"
    );
}

#[test]
fn the_chart_lints_clean() {
    let out = helm()
        .args(["lint", "--strict"])
        .arg(chart())
        .args([
            "--set",
            "configRepo.spec.url=https://git.example.com/config.git",
        ])
        .args(["--kube-version", KUBE_VERSION])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helm lint --strict: {text}");
    assert!(text.contains("0 chart(s) failed"), "{text}");
}

#[test]
fn values_shape_the_manifests_and_bad_values_are_refused() {
    let url = "https://git.example.com/config.git";
    let objects = template(
        "prod",
        "fledge-system",
        &[
            &format!("configRepo.spec.url={url}"),
            "configRepo.spec.path=clusters/production",
            "agent.selector=shard=a",
            "agent.verbosity=1",
            "agent.cluster=eu-west-1",
            "agent.dashboardUrl=https://fledge.example.com",
            "agent.rollbackAuthor=Release Bot <release-bot@example.com>",
            "webhook.secretName=fledge-webhook",
        ],
    )
    .unwrap();

    let deploy = find(&objects, "Deployment").expect("a Deployment");
    assert_eq!(deploy["metadata"]["name"], "prod-fledge");
    assert_eq!(deploy["metadata"]["namespace"], "fledge-system");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "prod-fledge");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "fledge:0.1.0", "the tag defaults to appVersion");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "run",
        "--listen=0.0.0.0:8080",
        "--leader-election=true",
        "--selector=shard=a",
        "--install-crds=true",
        "-v",
        "--workers=4",
        "--rollout-workers=16",
        "--cluster=eu-west-1",
        "--dashboard=true",
        "--dashboard-url=https://fledge.example.com",
        "--rollback-author=Release Bot <release-bot@example.com>",
        "--webhook-secret-file=/etc/fledge/webhook/secret",
    ] {
        assert!(args.contains(&want), "{want} in {args:?}");
    }
    // The webhook secret file is the Secret's key, mounted read-only where the flag points.
    let mount = named(&c["volumeMounts"], "webhook").expect("the webhook Secret is mounted");
    assert_eq!(mount["mountPath"], "/etc/fledge/webhook");
    assert_eq!(mount["readOnly"], true);
    let volume = named(&pod["volumes"], "webhook").expect("a volume for the webhook Secret");
    assert_eq!(volume["secret"]["secretName"], "fledge-webhook");
    assert_eq!(volume["secret"]["items"][0]["key"], "secret");
    assert_eq!(volume["secret"]["items"][0]["path"], "secret");
    // The args parse: the binary accepts exactly these flags.
    let parsed = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "fledge {args:?}: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"FLEDGE_NAMESPACE"), "{env:?}");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);

    let repo = find(&objects, "ConfigRepo").expect("a ConfigRepo");
    assert_eq!(
        repo["metadata"]["name"], "production",
        "named from the path, as `fledge run --repo` names it"
    );
    assert_eq!(
        repo["metadata"]["labels"]["shard"], "a",
        "the agent's selector matches it"
    );
    assert_eq!(repo["spec"]["url"], url);
    assert_eq!(repo["spec"]["branch"], "main");
    let binding = find(&objects, "ClusterRoleBinding").expect("a ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "prod-fledge");
    assert_eq!(binding["subjects"][0]["namespace"], "fledge-system");
    assert!(find(&objects, "ServiceAccount").is_some());
    assert!(find(&objects, "Service").is_some());

    // Without a ConfigRepo the agent serves the ones created by hand.
    // Without a webhook Secret the webhooks are off: no flag, no volume. Without a dashboard URL
    // or a rollback author, fledge's defaults.
    let objects = template("prod", "fledge-system", &["configRepo.create=false"]).unwrap();
    assert!(find(&objects, "ConfigRepo").is_none());
    let pod = &find(&objects, "Deployment").expect("a Deployment")["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].to_string();
    for absent in [
        "--webhook-secret-file",
        "--dashboard-url",
        "--rollback-author",
    ] {
        assert!(!args.contains(absent), "{absent} in {args}");
    }
    assert!(args.contains("--cluster=local"), "{args}");
    assert!(
        !pod["volumes"].to_string().contains("webhook"),
        "{}",
        pod["volumes"]
    );

    // Bad values: refused, naming the value.
    let e = template("prod", "fledge-system", &[]).unwrap_err();
    assert!(e.contains("configRepo.spec.url is required"), "{e}");
    let e = template(
        "prod",
        "fledge-system",
        &[
            "configRepo.create=false",
            "agent.replicas=2",
            "agent.leaderElection=false",
        ],
    )
    .unwrap_err();
    assert!(e.contains("agent.leaderElection=true"), "{e}");
    let e = template(
        "prod",
        "fledge-system",
        &["configRepo.create=false", "serviceAccount.create=false"],
    )
    .unwrap_err();
    assert!(e.contains("serviceAccount.name is required"), "{e}");
}

/// The rendered chart applied to the real control plane; then the agent, authenticated as the
/// chart's ServiceAccount, syncs the ConfigRepo the chart created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_and_its_service_account_is_enough_to_sync() {
    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let release = unique("chart");
    let agent_ns = support::TestNamespace::new(&client, &env, "chart-agent").await;
    let agent_ns = agent_ns.name.clone();
    let app_ns = unique("chart-app");
    let id = unique("id");
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            format!(
                "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {app_ns}\ninclude: [ns.yaml, cm.yaml]\n"
            ),
        ),
        (
            "ns.yaml",
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {app_ns}}}\n"),
        ),
        (
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {from: chart}\n"
                .into(),
        ),
    ]);
    let objects = template(
        &release,
        &agent_ns,
        &[
            &format!("configRepo.spec.url={}", remote.url()),
            &format!("configRepo.name={release}"),
            "configRepo.spec.interval=2s",
            &format!("agent.selector=fledge.test/agent={id}"),
        ],
    )
    .unwrap();
    let cleanup = Cleanup {
        env: env.clone(),
        release: release.clone(),
        app_ns: app_ns.clone(),
    };
    let mut apply = env
        .kubectl()
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let docs: Vec<String> = objects
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    std::io::Write::write_all(
        apply.stdin.as_mut().unwrap(),
        docs.join("\n---\n").as_bytes(),
    )
    .unwrap();
    drop(apply.stdin.take());
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "applying the rendered chart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The Deployment rolls out (kwok runs its pod).
    let deploy = format!("deployment/{release}-fledge");
    let rolled = env
        .kubectl()
        .args([
            "rollout",
            "status",
            &deploy,
            "-n",
            &agent_ns,
            "--timeout=60s",
        ])
        .output()
        .unwrap();
    assert!(
        rolled.status.success(),
        "{deploy}: {}",
        String::from_utf8_lossy(&rolled.stderr)
    );

    // A kubeconfig holding a token of the chart's ServiceAccount, nothing else.
    let token = env
        .kubectl()
        .args([
            "create",
            "token",
            &format!("{release}-fledge"),
            "-n",
            &agent_ns,
        ])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let admin: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(env.kubeconfig()).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
            "current-context": "sa",
        })
        .to_string(),
    )
    .unwrap();
    // The API server sees the ServiceAccount: everything below runs with the chart's grants.
    let who = Command::new(env.bin("kubectl"))
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        format!("system:serviceaccount:{agent_ns}:{release}-fledge"),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );

    let port = support::free_port();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(["run", "--namespace", &agent_ns])
        .args(["--selector", &format!("fledge.test/agent={id}")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let _log = ShowLogIfPanicking(dir.path().join("agent.log"));
    let repos = Api::<ConfigRepo>::all(client.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some(exit) = agent.try_wait().unwrap() {
            panic!("the agent exited ({exit}) before the ConfigRepo was Ready");
        }
        let status = repos.get(&release).await.ok().and_then(|r| r.status);
        if let Some(s) = status.filter(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
        }) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the chart's ConfigRepo not Ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(ready.objects.desired, 2, "{ready:#?}");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &app_ns)
        .get("settings")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["from"], "chart");
    drop(cleanup);
}

/// Prints the agent's log when the test fails (RBAC errors show up there).
struct ShowLogIfPanicking(PathBuf);

impl Drop for ShowLogIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("--- agent log ---\n{log}--- end of agent log ---");
        }
    }
}

/// Removes what the test created outside the agent's namespace (all cluster-scoped).
struct Cleanup {
    env: Env,
    release: String,
    app_ns: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let name = format!("{}-fledge", self.release);
        for (kind, name) in [
            ("configrepo", &self.release),
            ("clusterrolebinding", &name),
            ("clusterrole", &name),
            ("namespace", &self.app_ns),
        ] {
            let _ = self
                .env
                .kubectl()
                .args(["delete", kind, name, "--wait=false", "--ignore-not-found"])
                .output();
        }
    }
}
