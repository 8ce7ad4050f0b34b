//! The judges and the score: per-metric samples (canary, baseline) → per-metric results → a
//! [`Verdict`]. Pure functions over plain data.
//!
//! Rules: a metric is `nodata` with fewer than `minSamples` finite samples in a judged track; it
//! is `error` when any of its queries failed past the retry budget (and then the whole verdict is
//! `Inconclusive`: an error is never a pass and never a failure); a failed `critical` metric
//! scores 0; half or more of the metrics without data is `Inconclusive`, and so is a verdict
//! that the `nodata` metrics could still change (the score without them is below `pass`, the
//! score with them passing is not in the same band): too little data is never a failure.

use super::stats::{self, MannWhitney};
use crate::crd::{AnalysisTemplateSpec, CompareSpec, Direction, ThresholdSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Confidence level of the comparison interval.
pub const CONFIDENCE: f64 = 0.98;

/// The outcome of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricOutcome {
    /// Within bounds and not significantly worse than the baseline.
    Pass,
    /// Too high: above `threshold.max`, or a significant, material increase over the baseline.
    High,
    /// Too low: below `threshold.min`, or a significant, material decrease.
    Low,
    /// Not enough samples to judge.
    Nodata,
    /// Queries failed past the retry budget.
    Error,
}

impl MetricOutcome {
    pub fn failed(self) -> bool {
        matches!(self, MetricOutcome::High | MetricOutcome::Low)
    }
}

/// The outcome of an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Pass,
    Marginal,
    Fail,
    Inconclusive,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "Pass",
            Outcome::Marginal => "Marginal",
            Outcome::Fail => "Fail",
            Outcome::Inconclusive => "Inconclusive",
        })
    }
}

/// Summary of one track's samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let p95 = v[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
        let mean = v
            .iter()
            .map(|x| x / n as f64)
            .sum::<f64>()
            .clamp(-f64::MAX, f64::MAX);
        Some(Summary {
            n,
            median: stats::median(&mut v),
            p95,
            mean,
        })
    }
}

/// What was observed for one metric: finite samples per track, and query errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub canary: Vec<f64>,
    pub baseline: Vec<f64>,
    /// Query errors (after retries), deduplicated messages.
    pub errors: Vec<String>,
}

/// The threshold judge's findings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdResult {
    pub above_max: usize,
    pub below_min: usize,
    pub failure_limit: u32,
}

/// The result for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub group: String,
    pub critical: bool,
    pub result: MetricOutcome,
    /// Why, in one line.
    pub reason: String,
    pub canary: Option<Summary>,
    pub baseline: Option<Summary>,
    pub threshold: Option<ThresholdResult>,
    pub compare: Option<MannWhitney>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The score of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    pub name: String,
    pub weight: f64,
    pub passed: usize,
    pub total: usize,
    pub score: f64,
}

/// The judgement of a canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub outcome: Outcome,
    /// 0–100.
    pub score: f64,
    /// Why, in one line (e.g. `critical metric error-ratio high`).
    pub reason: String,
    pub metrics: Vec<MetricResult>,
    pub groups: Vec<GroupScore>,
    /// Context of the run (template, service, namespace, tracks, window); filled by the caller.
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.001 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn judge_threshold(
    t: &ThresholdSpec,
    canary: &[f64],
) -> (ThresholdResult, Option<(MetricOutcome, String)>) {
    let above = t
        .max
        .map_or(0, |max| canary.iter().filter(|v| **v > max).count());
    let below = t
        .min
        .map_or(0, |min| canary.iter().filter(|v| **v < min).count());
    let res = ThresholdResult {
        above_max: above,
        below_min: below,
        failure_limit: t.failure_limit,
    };
    let limit = t.failure_limit as usize;
    let fail = if above > limit && above >= below {
        Some((
            MetricOutcome::High,
            format!(
                "{above} of {} canary samples above max {}",
                canary.len(),
                fmt_num(t.max.unwrap_or(0.0))
            ),
        ))
    } else if below > limit {
        Some((
            MetricOutcome::Low,
            format!(
                "{below} of {} canary samples below min {}",
                canary.len(),
                fmt_num(t.min.unwrap_or(0.0))
            ),
        ))
    } else {
        None
    };
    (res, fail)
}

/// Canary vs baseline: significant (the 98% interval of the shift excludes 0) *and* material (the
/// estimated shift exceeds `tolerance` × the baseline median) in the bad direction.
fn judge_compare(
    c: &CompareSpec,
    mw: &MannWhitney,
    baseline_median: f64,
) -> Option<(MetricOutcome, String)> {
    let band = c.tolerance * baseline_median.abs();
    let up = mw.ci_low > 0.0 && mw.estimate > band;
    let down = mw.ci_high < 0.0 && -mw.estimate > band;
    let rel = if baseline_median != 0.0 {
        format!(" ({:+.1}%)", 100.0 * mw.estimate / baseline_median.abs())
    } else {
        String::new()
    };
    let msg = |dir: &str| {
        format!(
            "canary {dir} than baseline by {}{rel}, 98% CI [{}, {}], p={}",
            fmt_num(mw.estimate.abs()),
            fmt_num(mw.ci_low),
            fmt_num(mw.ci_high),
            fmt_num(mw.p_value)
        )
    };
    match c.fail {
        Direction::Increase | Direction::Either if up => Some((MetricOutcome::High, msg("higher"))),
        Direction::Decrease | Direction::Either if down => Some((MetricOutcome::Low, msg("lower"))),
        _ => None,
    }
}

/// Judges one metric.
pub fn judge_metric(
    spec: &crate::crd::MetricSpec,
    min_samples: usize,
    obs: &Observation,
) -> MetricResult {
    let canary: Vec<f64> = obs
        .canary
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let baseline: Vec<f64> = obs
        .baseline
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let mut r = MetricResult {
        name: spec.name.clone(),
        group: spec.group.clone().unwrap_or_else(|| "default".into()),
        critical: spec.critical,
        result: MetricOutcome::Pass,
        reason: String::new(),
        canary: Summary::of(&canary),
        baseline: Summary::of(&baseline),
        threshold: None,
        compare: None,
        errors: obs.errors.clone(),
    };
    if !obs.errors.is_empty() {
        r.result = MetricOutcome::Error;
        r.reason = format!("query failed: {}", obs.errors[0]);
        return r;
    }
    let min = min_samples.max(1);
    let needs_baseline = spec.compare.is_some();
    if canary.len() < min || (needs_baseline && baseline.len() < min) {
        r.result = MetricOutcome::Nodata;
        r.reason = if needs_baseline {
            format!(
                "{} canary and {} baseline samples, need {min} each",
                canary.len(),
                baseline.len()
            )
        } else {
            format!("{} canary samples, need {min}", canary.len())
        };
        return r;
    }
    let mut failure = None;
    if let Some(t) = &spec.threshold {
        let (res, fail) = judge_threshold(t, &canary);
        r.threshold = Some(res);
        failure = fail;
    }
    if let Some(c) = &spec.compare {
        let mw = stats::mann_whitney(&canary, &baseline, CONFIDENCE);
        r.compare = mw;
        if failure.is_none()
            && let (Some(mw), Some(b)) = (mw, r.baseline)
        {
            failure = judge_compare(c, &mw, b.median);
        }
    }
    if spec.threshold.is_none() && spec.compare.is_none() {
        r.reason = "no judge configured (set threshold or compare)".into();
        r.result = MetricOutcome::Nodata;
        return r;
    }
    match failure {
        Some((outcome, reason)) => {
            r.result = outcome;
            r.reason = reason;
        }
        None => {
            r.reason = match (&r.compare, r.baseline) {
                (Some(mw), Some(b)) if spec.compare.is_some() => format!(
                    "canary median {} vs baseline {}, shift {} within tolerance or not significant (p={})",
                    fmt_num(r.canary.map_or(0.0, |c| c.median)),
                    fmt_num(b.median),
                    fmt_num(mw.estimate),
                    fmt_num(mw.p_value)
                ),
                _ => format!("all {} canary samples within bounds", canary.len()),
            }
        }
    }
    r
}

/// Scores judged metrics into a verdict.
pub fn score(spec: &AnalysisTemplateSpec, metrics: Vec<MetricResult>) -> Verdict {
    // Group weights: as listed, or equal shares of 100 when no groups are listed.
    let mut names: Vec<String> = Vec::new();
    for m in &metrics {
        if !names.contains(&m.group) {
            names.push(m.group.clone());
        }
    }
    let weight_of = |g: &str| -> f64 {
        if spec.groups.is_empty() {
            100.0 / names.len().max(1) as f64
        } else {
            spec.groups
                .iter()
                .find(|s| s.name == g)
                .map_or(0.0, |s| s.weight)
        }
    };
    let mut groups: Vec<GroupScore> = names
        .iter()
        .map(|g| {
            let in_group: Vec<&MetricResult> = metrics.iter().filter(|m| &m.group == g).collect();
            let passed = in_group
                .iter()
                .filter(|m| m.result == MetricOutcome::Pass)
                .count();
            let weight = weight_of(g);
            GroupScore {
                name: g.clone(),
                weight,
                passed,
                total: in_group.len(),
                score: weight * passed as f64 / in_group.len().max(1) as f64,
            }
        })
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let total_weight: f64 = groups.iter().map(|g| g.weight).sum();
    let raw: f64 = groups.iter().map(|g| g.score).sum();
    // The score if every `nodata` metric had passed: what more data could make of it at best.
    let best_raw: f64 = groups
        .iter()
        .map(|g| {
            let nodata = metrics
                .iter()
                .filter(|m| m.group == g.name && m.result == MetricOutcome::Nodata)
                .count();
            g.weight * (g.passed + nodata) as f64 / g.total.max(1) as f64
        })
        .sum();
    let band = |score: f64| {
        if score >= spec.score.pass {
            Outcome::Pass
        } else if score >= spec.score.marginal {
            Outcome::Marginal
        } else {
            Outcome::Fail
        }
    };
    // Normalise to 0-100 even if weights do not sum to 100 (0 without weight or when not finite).
    let normalise = |raw: f64| {
        let s = if total_weight > 0.0 {
            (100.0 * raw / total_weight).clamp(0.0, 100.0)
        } else {
            0.0
        };
        if s.is_finite() { s } else { 0.0 }
    };
    let mut score = normalise(raw);
    let best = normalise(best_raw);

    let errors: Vec<&MetricResult> = metrics
        .iter()
        .filter(|m| m.result == MetricOutcome::Error)
        .collect();
    let nodata = metrics
        .iter()
        .filter(|m| m.result == MetricOutcome::Nodata)
        .count();
    let critical_failed: Vec<&MetricResult> = metrics
        .iter()
        .filter(|m| m.critical && m.result.failed())
        .collect();
    let (outcome, reason) = if metrics.is_empty() {
        (Outcome::Inconclusive, "no metrics".to_owned())
    } else if !errors.is_empty() {
        let names: Vec<String> = errors.iter().map(|m| m.name.clone()).collect();
        (
            Outcome::Inconclusive,
            format!("queries failed for {}", list(names)),
        )
    } else if let Some(m) = critical_failed.first() {
        score = 0.0;
        (
            Outcome::Fail,
            format!(
                "critical metric {} {}: {}",
                m.name,
                outcome_word(m.result),
                m.reason
            ),
        )
    } else if nodata * 2 >= metrics.len() {
        (
            Outcome::Inconclusive,
            format!("{nodata} of {} metrics have no data", metrics.len()),
        )
    } else if score >= spec.score.pass {
        (
            Outcome::Pass,
            format!("score {} ≥ {}", fmt_num(score), fmt_num(spec.score.pass)),
        )
    } else if band(best) != band(score) {
        let names: Vec<String> = metrics
            .iter()
            .filter(|m| m.result == MetricOutcome::Nodata)
            .map(|m| m.name.clone())
            .collect();
        (
            Outcome::Inconclusive,
            format!(
                "too little data: {} {} no data; score {} without, {} if {} passed",
                list(names),
                if nodata == 1 { "has" } else { "have" },
                fmt_num(score),
                fmt_num(best),
                if nodata == 1 { "it" } else { "they" },
            ),
        )
    } else {
        let failing: Vec<String> = metrics
            .iter()
            .filter(|m| m.result != MetricOutcome::Pass)
            .map(|m| format!("{} {}", m.name, outcome_word(m.result)))
            .collect();
        (
            band(score),
            format!("score {} ({})", fmt_num(score), list(failing)),
        )
    };
    Verdict {
        outcome,
        score,
        reason,
        metrics,
        groups,
        context: BTreeMap::new(),
    }
}

/// `a, b, c, d, e and 7 more`: short enough for a one-line reason.
fn list(items: Vec<String>) -> String {
    const SHOWN: usize = 5;
    if items.len() <= SHOWN {
        return items.join(", ");
    }
    format!(
        "{} and {} more",
        items[..SHOWN].join(", "),
        items.len() - SHOWN
    )
}

fn outcome_word(o: MetricOutcome) -> &'static str {
    match o {
        MetricOutcome::Pass => "pass",
        MetricOutcome::High => "high",
        MetricOutcome::Low => "low",
        MetricOutcome::Nodata => "nodata",
        MetricOutcome::Error => "error",
    }
}

impl MetricOutcome {
    pub fn as_str(self) -> &'static str {
        outcome_word(self)
    }
}

/// Judges every metric of `spec` from `observations` (by metric name) and scores them.
pub fn judge(spec: &AnalysisTemplateSpec, observations: &BTreeMap<String, Observation>) -> Verdict {
    let empty = Observation::default();
    let results = spec
        .metrics
        .iter()
        .map(|m| {
            judge_metric(
                m,
                spec.min_samples as usize,
                observations.get(&m.name).unwrap_or(&empty),
            )
        })
        .collect();
    score(spec, results)
}
