//! One analysis run: validate the template, query the window, judge, attach context.

use super::query::{self, Params, Retry, TemplateError, Window};
use super::verdict::{self, Verdict};
use crate::crd::AnalysisTemplateSpec;
use crate::duration;
use crate::limits::AnalysisLimits;
use std::time::Duration;

/// Why an analysis could not run at all (as opposed to an `Inconclusive` verdict).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("template: {0}")]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Prometheus(String),
}

/// Retry policy from the template's `onError` and `prometheus.timeout`.
pub fn retry_policy(spec: &AnalysisTemplateSpec) -> Result<Retry, TemplateError> {
    let backoff = duration::parse(&spec.on_error.backoff).map_err(|e| TemplateError::Invalid {
        field: "onError.backoff",
        message: e.to_string(),
    })?;
    let timeout = match &spec.prometheus.timeout {
        Some(t) => duration::parse(t).map_err(|e| TemplateError::Invalid {
            field: "prometheus.timeout",
            message: e.to_string(),
        })?,
        None => Duration::from_secs(10),
    };
    Ok(Retry {
        retries: spec.on_error.retries,
        backoff,
        timeout,
    })
}

/// Queries `prometheus` over `window` and judges the canary.
pub async fn analyze(
    spec: &AnalysisTemplateSpec,
    template_name: &str,
    params: &Params,
    prometheus: &str,
    window: Window,
) -> Result<Verdict, RunError> {
    let limits = AnalysisLimits::default();
    let length = Duration::from_secs(window.end.saturating_sub(window.start).max(0) as u64);
    super::validate::validate(spec, Some(window.interval), Some(length), &limits)?;
    let queries = query::prepare(spec, params)?;
    let retry = retry_policy(spec)?;
    let observations = query::observe(prometheus, &queries, window, retry, 16, &limits)
        .await
        .map_err(RunError::Prometheus)?;
    let mut v = verdict::judge(spec, &observations);
    let fmt_ts = |t: i64| {
        jiff::Timestamp::from_second(t)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    v.context
        .insert("template".into(), template_name.to_owned());
    v.context.insert("service".into(), params.service.clone());
    v.context
        .insert("namespace".into(), params.namespace.clone());
    v.context.insert(
        "tracks".into(),
        format!("{} vs {}", params.canary_track, params.baseline_track),
    );
    v.context.insert(
        "window".into(),
        format!(
            "{} .. {} every {}",
            fmt_ts(window.start),
            fmt_ts(window.end),
            duration::format(window.interval)
        ),
    );
    Ok(v)
}
