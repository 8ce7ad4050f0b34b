//! The cost of judging.
//!
//! 1. A 100-metric template over a 30-minute window at 10 s intervals against a real Prometheus
//!    (Debian package), queries included: 200 range queries of 181 points. The data is written
//!    with `promtool tsdb create-blocks-from openmetrics` before Prometheus starts.
//! 2. The judge alone (Mann–Whitney U with its 98% interval and the Hodges–Lehmann estimate) over
//!    two 10,000-sample series, side by side with R's
//!    `wilcox.test(x, y, conf.int = TRUE, conf.level = 0.98, exact = FALSE)` on the same data.
//!
//! `cargo bench --bench analysis` runs 5 rounds; under `cargo test` (the README's test command)
//! the same sizes run once.

use fledge::analysis::{
    self,
    query::{Params, Window},
    stats,
};
use fledge::crd::AnalysisTemplateSpec;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
}

fn series(n: usize, center: f64, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| center * (1.0 + 0.3 * (lcg(&mut s) - 0.5)) + 0.01 * (lcg(&mut s) * 10.0).floor())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Prom(Child);
impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_with_data(
    dir: &std::path::Path,
    metrics: usize,
    start: i64,
    end: i64,
    step: i64,
) -> (Prom, String) {
    let mut om = String::new();
    let _ = writeln!(om, "# TYPE bench_value gauge");
    let mut seed = 7u64;
    for m in 0..metrics {
        for track in ["canary", "baseline"] {
            let mut t = start;
            while t <= end {
                let v = 100.0 + m as f64 + 5.0 * lcg(&mut seed);
                let _ = writeln!(
                    om,
                    "bench_value{{metric=\"m{m}\",track=\"{track}\"}} {v} {t}"
                );
                t += step;
            }
        }
    }
    om.push_str("# EOF\n");
    std::fs::write(dir.join("data.om"), om).unwrap();
    let data = dir.join("data");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.join("data.om"))
        .arg(&data)
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.join("prometheus.yml"),
        "global: {scrape_interval: 1m}\nscrape_configs: []\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && Command::new("curl")
                .args(["-sf", &format!("{url}/-/ready")])
                .output()
                .is_ok_and(|o| o.status.success())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (Prom(child), url)
}

fn template(metrics: usize) -> AnalysisTemplateSpec {
    let mut yaml =
        String::from("prometheus: {address: x}\ninterval: 10s\nminSamples: 5\nmetrics:\n");
    for m in 0..metrics {
        let _ = writeln!(
            yaml,
            "- {{name: m{m}, query: 'sum(bench_value{{metric=\"m{m}\",track=\"{{{{track}}}}\"}})', threshold: {{max: 1000}}, compare: {{fail: increase, tolerance: 0.1}}}}"
        );
    }
    serde_saphyr::from_str(&yaml).unwrap()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    // The sizes in both modes; `cargo bench` repeats, `cargo test` runs once.
    let (metrics, minutes, judge_n) = (100, 30, 10_000);
    let rounds = if bench { 5 } else { 1 };

    // 1. Through Prometheus.
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now().as_second();
    let end = now - 3 * 3600; // well before the head block
    let start = end - minutes * 60;
    let (_prom, url) = prometheus_with_data(dir.path(), metrics, start - 600, end + 600, 10);
    let spec = template(metrics);
    let params = Params {
        service: "bench".into(),
        namespace: "bench".into(),
        canary_track: "canary".into(),
        baseline_track: "baseline".into(),
        ..Params::default()
    };
    let window = Window {
        start,
        end,
        interval: Duration::from_secs(10),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let v = rt
            .block_on(analysis::analyze(&spec, "bench", &params, &url, window))
            .unwrap();
        times.push(t.elapsed());
        assert_eq!(v.metrics.len(), metrics);
        let n = v.metrics[0].canary.expect("samples").n;
        assert_eq!(n as i64, minutes * 6 + 1, "one sample per 10 s");
    }
    times.sort();
    println!(
        "analysis through Prometheus: {metrics} metrics x 2 tracks, {minutes} min window at 10 s ({} points per query), {rounds} rounds",
        minutes * 6 + 1
    );
    println!(
        "  median {:.1} ms  (runs: {:?} ms)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );

    // 2. The judge alone, and R on the same data.
    let x = series(judge_n, 1.05, 1);
    let y = series(judge_n, 1.0, 2);
    let reps = if bench { 5 } else { 1 };
    let t = Instant::now();
    let mut last = None;
    for _ in 0..reps {
        last = stats::mann_whitney(&x, &y, 0.98);
    }
    let ours = t.elapsed() / reps;
    let mw = last.unwrap();
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|f| format!("{f:.17e}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::write(dir.path().join("x.txt"), fmt(&x)).unwrap();
    std::fs::write(dir.path().join("y.txt"), fmt(&y)).unwrap();
    let script = format!(
        "x <- scan('{d}/x.txt', quiet=TRUE); y <- scan('{d}/y.txt', quiet=TRUE)\n\
         t <- system.time(for (i in 1:{reps}) r <- wilcox.test(x, y, conf.int=TRUE, conf.level=0.98, exact=FALSE, correct=TRUE))[['elapsed']]\n\
         cat(sprintf('%.17g %.17g %.17g %.17g\\n', t / {reps}, r$p.value, r$conf.int[1], r$estimate))\n",
        d = dir.path().display()
    );
    let r = Command::new("Rscript").args(["-e", &script]).output();
    println!(
        "judge alone: Mann-Whitney U + 98% CI + Hodges-Lehmann over {judge_n} vs {judge_n} samples"
    );
    println!(
        "  fledge  {:.1} ms per judgement (estimate {:.6}, CI [{:.6}, {:.6}], p {:.3e})",
        ours.as_secs_f64() * 1e3,
        mw.estimate,
        mw.ci_low,
        mw.ci_high,
        mw.p_value
    );
    match r {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let f: Vec<f64> = text
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            println!(
                "  R       {:.1} ms per judgement (estimate {:.6}, CI low {:.6}, p {:.3e})",
                f[0] * 1e3,
                f[3],
                f[2],
                f[1]
            );
            println!("  ratio R/fledge: {:.1}x", f[0] / ours.as_secs_f64());
            assert!(
                (f[3] - mw.estimate).abs() <= 1e-6 * f[3].abs().max(1e-9),
                "same estimate as R"
            );
        }
        _ => println!("  R not available (install r-base-core for the side-by-side figure)"),
    }
}
