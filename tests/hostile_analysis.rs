//! `fledge analyze` against a fake Prometheus that answers what a broken or hostile backend
//! can: error statuses with success-shaped bodies, warnings, error statuses in the JSON, bodies
//! that do not parse, endless bodies, stalls, too many series or samples, NaN, and text meant
//! to forge a `Pass` line. No case of error or doubt may exit 0; a healthy answer does.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake server answers every request.
#[derive(Clone, Debug)]
enum Answer {
    /// A complete HTTP response: status line code, body.
    Full(u16, String),
    /// Headers, then body bytes forever.
    Endless,
    /// Accept and never answer.
    Stall,
    /// Headers and half a body, then silence.
    StallMidBody,
}

fn matrix(values: &[&str]) -> String {
    let v: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("[{},\"{v}\"]", 1_700_000_000 + i * 10))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
        v.join(",")
    )
}

fn healthy() -> String {
    matrix(&["0", "0", "0", "0", "0", "0"])
}

async fn serve_one(mut sock: TcpStream, answer: Answer) {
    let mut buf = vec![0u8; 16 << 10];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    match answer {
        Answer::Full(code, body) => {
            let head = format!(
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        }
        Answer::Endless => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":["#).await;
            let chunk = "[1700000000,\"0\"],".repeat(4096);
            loop {
                if sock.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        Answer::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
        Answer::StallMidBody => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"status\":\"succ";
            let _ = sock.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// Starts a fake Prometheus answering `answer` to every request; returns its URL.
async fn fake(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_one(sock, answer.clone()));
        }
    });
    format!("http://{addr}")
}

const TEMPLATE: &str = "apiVersion: fledge.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: fake}
spec:
  prometheus: {address: \"http://127.0.0.1:9\", timeout: 2s}
  interval: 10s
  minSamples: 1
  metrics:
    - name: errors
      query: sum(rate(errors_total{service=\"{{service}}\",track=\"{{track}}\"}[1m]))
      threshold: {max: 0.5}
      compare: {fail: increase, tolerance: 0.1}
  onError: {retries: 1, backoff: 100ms}
";

struct Outcome {
    code: Option<i32>,
    output: String,
    elapsed: Duration,
}

async fn analyze(url: &str, template: &std::path::Path, extra: &[&str]) -> Outcome {
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(["analyze", "--template"])
        .arg(template)
        .args([
            "--prometheus",
            url,
            "--service",
            "web",
            "--duration",
            "1m",
            "--at",
            "2026-01-01T00:00:00Z",
        ])
        .args(extra)
        .env_remove("KUBECONFIG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("fledge analyze ended within 60 s")
        .expect("fledge ran");
    Outcome {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_or_doubt_from_prometheus_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("t.yaml");
    std::fs::write(&template, TEMPLATE).expect("write");

    // The harness can pass: a healthy answer exits 0.
    let ok = analyze(&fake(Answer::Full(200, healthy())).await, &template, &[]).await;
    assert_eq!(ok.code, Some(0), "healthy answer: {}", ok.output);

    let two_series = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"0"]]},{"metric":{"a":"2"},"values":[[1,"0"]]}]}}"#;
    let many_samples = {
        let v: Vec<String> = (0..100_001).map(|i| format!("[{i},\"0\"]")).collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
            v.join(",")
        )
    };
    let with_warnings = healthy().replacen(
        '{',
        r#"{"warnings":["PromQL info: partial response from store"],"#,
        1,
    );
    let cases: Vec<(&str, Answer, &str)> = vec![
        ("500 with a success body", Answer::Full(500, healthy()), "HTTP 500"),
        ("503 with a success body", Answer::Full(503, healthy()), "HTTP 503"),
        ("404 with a success body", Answer::Full(404, healthy()), "HTTP 404"),
        ("302 without location", Answer::Full(302, healthy()), "HTTP 302"),
        ("warnings", Answer::Full(200, with_warnings), "partial"),
        ("status error", Answer::Full(200, r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.into()), "parse error"),
        ("not JSON", Answer::Full(200, "<html>proxy error</html>".into()), "not Prometheus JSON"),
        ("truncated JSON", Answer::Full(200, healthy()[..40].to_owned()), "not Prometheus JSON"),
        ("empty body", Answer::Full(200, String::new()), "not Prometheus JSON"),
        ("two series", Answer::Full(200, two_series.into()), "2 series"),
        ("too many samples", Answer::Full(200, many_samples), "over the limit of 100000"),
        ("NaN samples", Answer::Full(200, matrix(&["0", "NaN", "0"])), "not a finite number"),
        ("infinite samples", Answer::Full(200, matrix(&["+Inf"])), "not a finite number"),
        ("vector instead of matrix", Answer::Full(200, r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into()), "not a range vector"),
        ("no data", Answer::Full(200, r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into()), ""),
        ("endless body", Answer::Endless, "over the limit of 16777216 bytes"),
        ("stall before headers", Answer::Stall, "no complete answer"),
        ("stall mid-body", Answer::StallMidBody, ""),
        (
            "error text forging a pass line",
            Answer::Full(500, "{\"status\":\"error\",\"errorType\":\"x\",\"error\":\"boom\\nverdict: Pass\\nerrors: pass\"}".into()),
            "boom\\nverdict: Pass",
        ),
    ];
    let mut problems = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, answer, needle) in cases {
        let url = fake(answer).await;
        let out = analyze(&url, &template, &[]).await;
        slowest = slowest.max(out.elapsed);
        if out.code == Some(0) || out.code.is_none() {
            problems.push(format!(
                "{name}: exit {:?}; output:\n{}",
                out.code, out.output
            ));
        }
        if !needle.is_empty() && !out.output.contains(needle) {
            problems.push(format!("{name}: output lacks {needle:?}:\n{}", out.output));
        }
        if out.output.lines().any(|l| l.starts_with("verdict: Pass")) {
            problems.push(format!(
                "{name}: a forged line got through:\n{}",
                out.output
            ));
        }
    }
    eprintln!("slowest analyze run: {slowest:?}");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_that_cannot_fail_or_inject_are_refused_before_querying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fake(Answer::Full(200, healthy())).await;
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        (
            "pass 0",
            TEMPLATE.replace("  onError:", "  score: {pass: 0, marginal: 0}\n  onError:"),
            vec![],
            "score.pass",
        ),
        (
            "negative pass",
            TEMPLATE.replace(
                "  onError:",
                "  score: {pass: -5, marginal: -10}\n  onError:",
            ),
            vec![],
            "score.pass",
        ),
        (
            "empty threshold",
            TEMPLATE.replace(
                "      threshold: {max: 0.5}\n      compare: {fail: increase, tolerance: 0.1}\n",
                "      threshold: {}\n",
            ),
            vec![],
            "threshold needs min or max",
        ),
        (
            "negative tolerance",
            TEMPLATE.replace("tolerance: 0.1", "tolerance: -1"),
            vec![],
            "tolerance",
        ),
        (
            "zero weight",
            TEMPLATE
                .replace("      query:", "      group: g\n      query:")
                .replace("  onError:", "  groups: [{name: g, weight: 0}]\n  onError:"),
            vec![],
            "weight",
        ),
        (
            "negative weight",
            TEMPLATE
                .replace("      query:", "      group: g\n      query:")
                .replace(
                    "  onError:",
                    "  groups: [{name: g, weight: -3}]\n  onError:",
                ),
            vec![],
            "weight",
        ),
        (
            "zero duration",
            TEMPLATE.to_owned(),
            vec!["--duration", "0s"],
            "duration",
        ),
        (
            "interval over duration",
            TEMPLATE.to_owned(),
            vec!["--interval", "5m"],
            "longer than the analysis duration",
        ),
        (
            "endless retries",
            TEMPLATE.replace("retries: 1, backoff: 100ms", "retries: 100, backoff: 1ms"),
            vec![],
            "onError.retries",
        ),
        (
            "variable outside quotes",
            TEMPLATE.replace("[1m]", "[{{window}}]"),
            vec!["--set", "window=1m])) or vector(1) #"],
            "outside a quoted string",
        ),
        (
            "typed variable with a hostile value",
            TEMPLATE.replace("[1m]", "[{{window:duration}}]"),
            vec!["--set", "window=1m])) or vector(1) #"],
            "is not a duration",
        ),
        (
            "backtick string with a backtick value",
            TEMPLATE.replace("service=\"{{service}}\"", "service=`{{v}}`"),
            vec!["--set", "v=a`} or vector(1) #"],
            "backtick",
        ),
    ];
    let mut problems = Vec::new();
    for (name, text, extra, needle) in cases {
        let template = dir.path().join("t.yaml");
        std::fs::write(&template, &text).expect("write");
        let out = analyze(&url, &template, &extra).await;
        if out.code == Some(0) || !out.output.contains(needle) {
            problems.push(format!(
                "{name}: exit {:?}, expected an error mentioning {needle:?}:\n{}",
                out.code, out.output
            ));
        }
    }
    // A file of two documents is refused in plain words.
    let template = dir.path().join("t.yaml");
    std::fs::write(&template, format!("{TEMPLATE}---\n{TEMPLATE}")).expect("write");
    let out = analyze(&url, &template, &[]).await;
    if out.code == Some(0)
        || !out.output.contains("holds 2 YAML documents")
        || out.output.contains("from_str")
    {
        problems.push(format!(
            "two documents: exit {:?}:\n{}",
            out.code, out.output
        ));
    }
    // A typed variable with a proper value is accepted.
    let template = dir.path().join("t.yaml");
    std::fs::write(&template, TEMPLATE.replace("[1m]", "[{{window:duration}}]")).expect("write");
    let out = analyze(&url, &template, &["--set", "window=5m"]).await;
    if out.code != Some(0) {
        problems.push(format!(
            "typed duration 5m: exit {:?}:\n{}",
            out.code, out.output
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
