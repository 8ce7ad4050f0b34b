//! Analysis against a real Prometheus (Debian package) scraping demo-app instances on 127.0.0.1
//! while load runs: healthy, 5% errors, +200 ms latency, threshold-only, no data, Prometheus
//! stopped; and `fledge analyze` exit codes and JSON output.

mod support;

#[path = "../examples/demo-app/app.rs"]
mod demo_app;
#[path = "../examples/loadgen/load.rs"]
mod load;

use fledge::analysis::{
    self, MetricOutcome, Outcome, Verdict,
    query::{Params, Window},
};
use fledge::crd::AnalysisTemplateSpec;
use std::process::Command;
use std::time::Duration;

const GOLDEN: &str = r#"
prometheus: {address: "http://127.0.0.1:9"}
interval: 2s
minSamples: 5
metrics:
  - name: success-rate
    group: golden
    critical: true
    query: |
      sum(rate(http_requests_total{service="{{service}}",track="{{track}}",code!~"5.."}[5s]))
      / sum(rate(http_requests_total{service="{{service}}",track="{{track}}"}[5s]))
    threshold: {min: 0.99}
    compare: {fail: decrease, tolerance: 0.01}
  - name: latency-p99
    group: golden
    query: |
      histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="{{service}}",track="{{track}}"}[5s])))
    compare: {fail: increase, tolerance: 0.2}
groups: [{name: golden, weight: 100}]
score: {pass: 95, marginal: 75}
onError: {retries: 2, backoff: 100ms}
"#;

const THRESHOLD_ONLY: &str = r#"
prometheus: {address: "http://127.0.0.1:9"}
interval: 2s
minSamples: 5
metrics:
  - name: success-rate
    critical: true
    query: |
      sum(rate(http_requests_total{service="{{service}}",track="{{track}}",code!~"5.."}[5s]))
      / sum(rate(http_requests_total{service="{{service}}",track="{{track}}"}[5s]))
    threshold: {min: 0.99}
onError: {retries: 2, backoff: 100ms}
"#;

const NODATA: &str = r#"
prometheus: {address: "http://127.0.0.1:9"}
interval: 2s
minSamples: 5
metrics:
  - name: missing
    query: sum(rate(no_such_metric_total{service="{{service}}",track="{{track}}"}[5s]))
    compare: {fail: increase}
onError: {retries: 1, backoff: 100ms}
"#;

fn spec(yaml: &str) -> AnalysisTemplateSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

fn template_file(dir: &std::path::Path, name: &str, spec_yaml: &str) -> std::path::PathBuf {
    let indented: String = spec_yaml.lines().map(|l| format!("  {l}\n")).collect();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, format!("apiVersion: fledge.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: {name}}}\nspec:\n{indented}")).unwrap();
    path
}

/// Starts a demo-app instance on a free loopback port; returns `host:port`.
async fn instance(service: &str, track: &str, error_rate: f64, latency_ms: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = demo_app::Config {
        service: service.into(),
        track: track.into(),
        error_rate,
        latency_ms,
        latency_jitter_ms: 10,
    };
    tokio::spawn(demo_app::serve(listener, config));
    addr
}

fn params(service: &str) -> Params {
    Params {
        service: service.into(),
        namespace: "test".into(),
        canary_track: "canary".into(),
        baseline_track: "baseline".into(),
        ..Params::default()
    }
}

fn result(v: &Verdict, metric: &str) -> MetricOutcome {
    v.metrics.iter().find(|m| m.name == metric).unwrap().result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_real_canaries_through_prometheus() {
    // Three scenarios side by side, each a baseline and a canary.
    let mut targets = Vec::new();
    for (service, err, lat) in [
        ("healthy", 0.0, 50),
        ("errors", 0.05, 50),
        ("slow", 0.0, 250),
    ] {
        targets.push(instance(service, "baseline", 0.0, 50).await);
        targets.push(instance(service, "canary", err, lat).await);
    }
    let prom = support::Prometheus::start(&targets, "1s").await;
    let load_start = jiff::Timestamp::now().as_second();
    let stats = load::run(targets.clone(), 40.0, Duration::from_secs(26)).await;
    assert!(
        stats.ok.load(std::sync::atomic::Ordering::Relaxed) > 4000,
        "load ran: {stats:?}"
    );
    let end = load_start + 25;
    // Every target scraped after the window's end: the last samples are in.
    let scraped = format!("{}/api/v1/query?query=timestamp(up)", prom.url);
    support::eventually(
        "scrapes past the window",
        Duration::from_secs(30),
        || async {
            let (code, body) = support::http_get(&scraped).await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let stamps: Vec<f64> = v["data"]["result"]
                .as_array()?
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse().ok())
                .collect();
            (code == 200
                && stamps.len() == targets.len()
                && stamps.iter().all(|t| *t >= end as f64))
            .then_some(())
        },
    )
    .await;
    let window = Window {
        start: end - 18,
        end,
        interval: Duration::from_secs(2),
    };

    let golden = spec(GOLDEN);
    let judge = |t: AnalysisTemplateSpec, service: &'static str| {
        let url = prom.url.clone();
        async move {
            analysis::analyze(&t, "t", &params(service), &url, window)
                .await
                .unwrap()
        }
    };

    let healthy = judge(golden.clone(), "healthy").await;
    assert_eq!(
        healthy.outcome,
        Outcome::Pass,
        "{}",
        analysis::report::text(&healthy)
    );
    assert!(
        healthy
            .metrics
            .iter()
            .all(|m| m.canary.unwrap().n >= 5 && m.baseline.unwrap().n >= 5)
    );

    let errors = judge(golden.clone(), "errors").await;
    assert_eq!(
        errors.outcome,
        Outcome::Fail,
        "{}",
        analysis::report::text(&errors)
    );
    assert_eq!(result(&errors, "success-rate"), MetricOutcome::Low);
    assert_eq!(errors.score, 0.0, "critical metric failed");

    let slow = judge(golden.clone(), "slow").await;
    assert_eq!(
        slow.outcome,
        Outcome::Fail,
        "{}",
        analysis::report::text(&slow)
    );
    assert_eq!(result(&slow, "latency-p99"), MetricOutcome::High);
    assert_eq!(result(&slow, "success-rate"), MetricOutcome::Pass);

    // The same slow canary with a threshold-only template (no latency metric) passes: this is
    // why the comparison with a baseline matters.
    let slow_threshold = judge(spec(THRESHOLD_ONLY), "slow").await;
    assert_eq!(
        slow_threshold.outcome,
        Outcome::Pass,
        "{}",
        analysis::report::text(&slow_threshold)
    );

    let nodata = judge(spec(NODATA), "healthy").await;
    assert_eq!(result(&nodata, "missing"), MetricOutcome::Nodata);
    assert_eq!(nodata.outcome, Outcome::Inconclusive);

    // The CLI on the same past window: exit codes and JSON that parses as a Verdict.
    let dir = tempfile::tempdir().unwrap();
    let at = jiff::Timestamp::from_second(end).unwrap().to_string();
    let cli = |file: &std::path::Path, service: &str, output: &str| {
        Command::new(env!("CARGO_BIN_EXE_fledge"))
            .args(["analyze", "--template"])
            .arg(file)
            .args([
                "--prometheus",
                &prom.url,
                "--service",
                service,
                "--namespace",
                "test",
                "--duration",
                "18s",
                "--interval",
                "2s",
                "--at",
                &at,
                "--output",
                output,
            ])
            .output()
            .unwrap()
    };
    let golden_file = template_file(dir.path(), "golden", GOLDEN);
    let out = cli(&golden_file, "healthy", "json");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Verdict = serde_json::from_slice(&out.stdout).expect("--output json is a Verdict");
    assert_eq!(v.outcome, Outcome::Pass);
    assert_eq!(v.context["template"], "golden");
    let out = cli(&golden_file, "errors", "markdown");
    assert_eq!(out.status.code(), Some(2));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.contains("❌ Analysis: Fail")
            && md.contains("| **success-rate** (critical) | golden | `low` |"),
        "{md}"
    );
    let out = cli(&golden_file, "slow", "text");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("latency-p99"))
        .expect("a latency-p99 row");
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        ["latency-p99", "golden", "high"],
        "{text}"
    );
    let out = cli(
        &template_file(dir.path(), "nodata", NODATA),
        "healthy",
        "text",
    );
    assert_eq!(out.status.code(), Some(3), "Inconclusive exits 3");
    let bad = template_file(
        dir.path(),
        "bad",
        &GOLDEN.replace("{{service}}", "{{servce}}"),
    );
    let out = cli(&bad, "healthy", "text");
    assert_eq!(out.status.code(), Some(1), "unusable template exits 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variable {{servce}}"));
    let out = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args([
            "analyze",
            "--template",
            "/nonexistent.yaml",
            "--service",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stopped_during_the_window_is_inconclusive_never_pass() {
    let targets = vec![
        instance("stop", "baseline", 0.0, 20).await,
        instance("stop", "canary", 0.0, 20).await,
    ];
    let mut prom = support::Prometheus::start(&targets, "1s").await;
    let dir = tempfile::tempdir().unwrap();
    let file = template_file(dir.path(), "golden", GOLDEN);
    let load = tokio::spawn(load::run(targets.clone(), 20.0, Duration::from_secs(12)));
    // A live analysis (no --at): it waits for its window, during which Prometheus goes away.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(["analyze", "--template"])
        .arg(&file)
        .args([
            "--prometheus",
            &prom.url,
            "--service",
            "stop",
            "--duration",
            "8s",
            "--interval",
            "1s",
            "--output",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    prom.stop();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    load.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Verdict = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.outcome, Outcome::Inconclusive);
    for m in &v.metrics {
        assert_eq!(m.result, MetricOutcome::Error, "{m:?}");
        assert!(!m.errors.is_empty());
    }
}
