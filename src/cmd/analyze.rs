//! `fledge analyze`.

use anyhow::{Context, bail};
use fledge::analysis::{
    self, Outcome,
    query::{Params, Window},
    report,
};
use fledge::cli::{AnalyzeArgs, ReportFormat};
use fledge::crd::AnalysisTemplate;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for a verdict.
pub fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Pass => ExitCode::SUCCESS,
        Outcome::Fail => ExitCode::from(2),
        Outcome::Marginal | Outcome::Inconclusive => ExitCode::from(3),
    }
}

fn load_template(path: &std::path::Path) -> anyhow::Result<AnalysisTemplate> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).map_err(|e| {
        let line = e
            .location()
            .map(|l| format!(":{}", l.line()))
            .unwrap_or_default();
        anyhow::anyhow!(
            "{}{line}: invalid YAML: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or("")
        )
    })?;
    docs.retain(|d| !d.is_null());
    if docs.len() != 1 {
        bail!(
            "{}: holds {} YAML documents; a template file holds exactly one",
            path.display(),
            docs.len()
        );
    }
    let value = docs.remove(0);
    if value["kind"] != "AnalysisTemplate" {
        bail!(
            "{}: expected kind AnalysisTemplate, found {}",
            path.display(),
            value["kind"]
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: not a valid AnalysisTemplate", path.display()))
}

pub fn analyze_cmd(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let template = load_template(&args.template)?;
    let spec = &template.spec;
    let prometheus = args
        .prometheus
        .clone()
        .unwrap_or_else(|| spec.prometheus.address.clone());
    let interval = match args.interval {
        Some(i) => i,
        None => fledge::duration::parse(&spec.interval)
            .with_context(|| format!("{}: spec.interval", args.template.display()))?,
    };
    if interval < Duration::from_secs(1) {
        bail!("--interval must be at least 1s");
    }
    // The one validation the agent runs too, with this run's interval and duration.
    analysis::validate(
        spec,
        Some(interval),
        Some(args.duration),
        &fledge::limits::AnalysisLimits::default(),
    )
    .with_context(|| format!("{}", args.template.display()))?;
    let params = Params {
        service: args.service.clone(),
        namespace: args.namespace.clone(),
        canary_track: args.canary_track.clone(),
        baseline_track: args.baseline_track.clone(),
        revision: args.revision.clone(),
        vars: args.set.iter().cloned().collect(),
    };
    // Template problems are usage errors: find them before waiting for a window.
    analysis::query::prepare(spec, &params)
        .with_context(|| format!("{}", args.template.display()))?;
    analysis::retry_policy(spec).with_context(|| format!("{}", args.template.display()))?;
    let secs = args.duration.as_secs() as i64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let verdict = rt.block_on(async {
        let end = match &args.at {
            Some(at) => at
                .parse::<jiff::Timestamp>()
                .with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?
                .as_second(),
            None => {
                let start = jiff::Timestamp::now().as_second();
                wait_for_window(args.duration, interval).await;
                start + secs
            }
        };
        let window = Window {
            start: end - secs,
            end,
            interval,
        };
        let name = template
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| args.template.display().to_string());
        analysis::analyze(spec, &name, &params, &prometheus, window)
            .await
            .map_err(anyhow::Error::from)
    })?;
    match args.output {
        ReportFormat::Text => print!("{}", report::text(&verdict)),
        ReportFormat::Json => println!("{}", report::json(&verdict)),
        ReportFormat::Markdown => {
            print!("{}", report::markdown(&verdict, report::GITHUB_BODY_LIMIT))
        }
    }
    Ok(exit_code(verdict.outcome))
}

/// Waits for the window to pass (plus one short scrape lag), with a live progress line on a TTY.
async fn wait_for_window(window: Duration, interval: Duration) {
    let lag = interval.min(Duration::from_secs(5));
    let total = window + lag;
    let start = tokio::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= total {
            break;
        }
        if tty {
            let frac = elapsed.as_secs_f64() / total.as_secs_f64();
            let bar: String = (0..30)
                .map(|i| {
                    if (i as f64) < frac * 30.0 {
                        '█'
                    } else {
                        '·'
                    }
                })
                .collect();
            eprint!(
                "\ranalysing {bar} {:>4}s / {}s",
                elapsed.as_secs(),
                total.as_secs()
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_secs(1).min(total - elapsed)).await;
    }
    if tty {
        eprint!("\r{:60}\r", "");
    }
}
