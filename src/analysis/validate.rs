//! The one validation of an `AnalysisTemplate`, used by the CLI (`fledge analyze`) and the agent
//! alike: the CRD schema's rules (which the CLI would otherwise skip) plus the rules that keep a
//! template able to fail: `score.pass > 0`, every metric judged (a threshold with `min` or
//! `max`, or a comparison), positive group weights, tolerance ≥ 0, a positive duration and an
//! interval no longer than it, and retries within the budgets of [`crate::limits`].

use super::query::TemplateError;
use crate::crd::AnalysisTemplateSpec;
use crate::limits::AnalysisLimits;
use std::collections::BTreeSet;
use std::time::Duration;

fn invalid(field: &'static str, message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        field,
        message: message.into(),
    }
}

fn duration(field: &'static str, s: &str) -> Result<Duration, TemplateError> {
    crate::duration::parse(s).map_err(|e| invalid(field, e.to_string()))
}

/// Checks `spec` for an analysis of `window` (the CLI's `--duration`, the step's length for the
/// agent; `None` when not known yet) judged every `interval` (`None`: the template's).
pub fn validate(
    spec: &AnalysisTemplateSpec,
    interval: Option<Duration>,
    window: Option<Duration>,
    limits: &AnalysisLimits,
) -> Result<(), TemplateError> {
    if spec.prometheus.address.trim().is_empty() {
        return Err(invalid("prometheus.address", "must not be empty"));
    }
    if let Some(t) = &spec.prometheus.timeout
        && duration("prometheus.timeout", t)?.is_zero()
    {
        return Err(invalid("prometheus.timeout", "must be positive"));
    }
    let interval = match interval {
        Some(i) => i,
        None => duration("interval", &spec.interval)?,
    };
    if interval < Duration::from_secs(1) {
        return Err(invalid("interval", "must be at least 1s"));
    }
    if let Some(w) = window {
        if w.is_zero() {
            return Err(invalid("duration", "must be positive"));
        }
        if interval > w {
            return Err(invalid(
                "interval",
                format!(
                    "{} is longer than the analysis duration {}",
                    crate::duration::format(interval),
                    crate::duration::format(w)
                ),
            ));
        }
    }
    if spec.min_samples < 1 {
        return Err(invalid("minSamples", "must be at least 1"));
    }
    if spec.metrics.is_empty() {
        return Err(invalid("metrics", "at least one metric is needed"));
    }
    let s = &spec.score;
    if !(s.pass.is_finite() && s.pass > 0.0 && s.pass <= 100.0) {
        return Err(invalid(
            "score.pass",
            format!(
                "{} must be above 0 and at most 100 (at 0 nothing can fail)",
                s.pass
            ),
        ));
    }
    if !(s.marginal.is_finite() && s.marginal >= 0.0 && s.marginal <= 100.0) {
        return Err(invalid("score.marginal", "must be between 0 and 100"));
    }
    if s.marginal > s.pass {
        return Err(invalid("score", "marginal must not exceed pass"));
    }
    let mut groups = BTreeSet::new();
    for g in &spec.groups {
        if g.name.is_empty() || !groups.insert(g.name.as_str()) {
            return Err(invalid(
                "groups",
                format!("group name {:?} is empty or used twice", g.name),
            ));
        }
        if !(g.weight.is_finite() && g.weight > 0.0 && g.weight <= 100.0) {
            return Err(invalid(
                "groups",
                format!(
                    "group {:?}: weight {} must be above 0 and at most 100",
                    g.name, g.weight
                ),
            ));
        }
    }
    let mut names = BTreeSet::new();
    for m in &spec.metrics {
        if m.name.is_empty() {
            return Err(invalid("metrics", "a metric has an empty name"));
        }
        if !names.insert(m.name.as_str()) {
            return Err(TemplateError::DuplicateMetric(m.name.clone()));
        }
        if m.query.trim().is_empty() {
            return Err(invalid(
                "metrics",
                format!("metric {:?}: empty query", m.name),
            ));
        }
        if !spec.groups.is_empty() {
            let g = m.group.clone().unwrap_or_else(|| "default".into());
            if !groups.contains(g.as_str()) {
                return Err(TemplateError::UnknownGroup {
                    metric: m.name.clone(),
                    group: g,
                });
            }
        }
        if m.threshold.is_none() && m.compare.is_none() {
            return Err(invalid(
                "metrics",
                format!(
                    "metric {:?} has neither threshold nor compare, so it can never fail",
                    m.name
                ),
            ));
        }
        if let Some(t) = &m.threshold {
            if t.min.is_none() && t.max.is_none() {
                return Err(invalid(
                    "metrics",
                    format!(
                        "metric {:?}: threshold needs min or max, or it can never fail",
                        m.name
                    ),
                ));
            }
            if t.min.iter().chain(&t.max).any(|v| !v.is_finite()) {
                return Err(invalid(
                    "metrics",
                    format!("metric {:?}: threshold must be finite", m.name),
                ));
            }
            if let (Some(lo), Some(hi)) = (t.min, t.max)
                && lo > hi
            {
                return Err(invalid(
                    "metrics",
                    format!("metric {:?}: threshold min {lo} is above max {hi}", m.name),
                ));
            }
        }
        if let Some(c) = &m.compare
            && !(c.tolerance.is_finite() && c.tolerance >= 0.0)
        {
            return Err(invalid(
                "metrics",
                format!(
                    "metric {:?}: compare.tolerance {} must be 0 or more",
                    m.name, c.tolerance
                ),
            ));
        }
    }
    if spec.on_error.retries > limits.max_retries {
        return Err(invalid(
            "onError.retries",
            format!(
                "{} is over the limit of {}",
                spec.on_error.retries, limits.max_retries
            ),
        ));
    }
    duration("onError.backoff", &spec.on_error.backoff)?;
    Ok(())
}
