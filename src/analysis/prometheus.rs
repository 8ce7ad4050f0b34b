//! One Prometheus range query, read as a hostile backend could answer it: the body within a byte
//! budget, any non-2xx status, `warnings`, a non-`success` status, an unparsable body, more than
//! one series or too many samples, and non-finite samples are errors, never data; retries follow
//! a capped backoff schedule within a total time budget.

use super::query::{Retry, Window};
use crate::limits::AnalysisLimits;
use std::time::Duration;

/// Runs one range query with retries; `Ok(values)` (possibly empty: no series) or the last error.
/// Backoff is raised to [`AnalysisLimits::min_backoff`], doubles up to `max_backoff`, and the
/// retries stop at `max_retries` or `max_retry_time`, whichever comes first.
pub(super) async fn range(
    client: &prometheus_http_query::Client,
    q: &str,
    w: Window,
    retry: Retry,
    limits: &AnalysisLimits,
) -> Result<Vec<f64>, String> {
    let started = tokio::time::Instant::now();
    let timeout = request_timeout(&retry, limits);
    let waits = backoff_schedule(&retry, limits);
    let mut last = String::new();
    for attempt in 0..=waits.len() {
        if attempt > 0 {
            let wait = waits[attempt - 1];
            if started.elapsed() + wait > limits.max_retry_time {
                last.push_str(" (retry time budget spent)");
                break;
            }
            tokio::time::sleep(wait).await;
        }
        match tokio::time::timeout(timeout, fetch(client, q, w, timeout, limits)).await {
            Err(_) => last = format!("no complete answer within {timeout:?}"),
            Ok(Err(Fetch::Retry(e))) => last = e,
            Ok(Err(Fetch::Final(e))) => return Err(e),
            Ok(Ok(values)) => return Ok(values),
        }
    }
    Err(last)
}

/// Time allowed for one request: the template's timeout, at most the budget's.
pub fn request_timeout(retry: &Retry, limits: &AnalysisLimits) -> Duration {
    retry
        .timeout
        .min(limits.request_timeout)
        .max(Duration::from_millis(1))
}

/// The waits before each retry: the template's backoff raised to `min_backoff`, doubling up to
/// `max_backoff`, at most `max_retries` of them, and no more than `max_retry_time` in total.
pub fn backoff_schedule(retry: &Retry, limits: &AnalysisLimits) -> Vec<Duration> {
    let mut waits = Vec::new();
    let mut wait = retry.backoff.clamp(limits.min_backoff, limits.max_backoff);
    let mut total = Duration::ZERO;
    for _ in 0..retry.retries.min(limits.max_retries) {
        if total + wait > limits.max_retry_time {
            break;
        }
        total += wait;
        waits.push(wait);
        wait = wait.saturating_mul(2).min(limits.max_backoff);
    }
    waits
}

/// Why a query failed: worth retrying (transport, 5xx, timeouts) or not (a bad answer).
enum Fetch {
    Retry(String),
    Final(String),
}

#[derive(serde::Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(serde::Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct Series {
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    histograms: Option<serde_json::Value>,
}

/// Remote text as it may be printed: first 300 characters, control characters escaped.
pub(super) fn remote(text: &str) -> String {
    let cut: String = text.chars().take(300).collect();
    crate::limits::escape_controls(&cut).into_owned()
}

/// One request: the body is read up to the budget; any non-2xx status, a body that does not
/// parse, `status` other than `success`, any `warnings`, a result that is not one range vector
/// of finite samples, is an error.
async fn fetch(
    client: &prometheus_http_query::Client,
    q: &str,
    w: Window,
    timeout: Duration,
    limits: &AnalysisLimits,
) -> Result<Vec<f64>, Fetch> {
    let mut response = client
        .query_range(q, w.start, w.end, w.interval.as_secs_f64().max(1.0))
        .timeout(timeout.as_millis() as i64)
        .get_raw()
        .await
        .map_err(|e| Fetch::Retry(remote(&e.to_string())))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Fetch::Retry(format!("reading the answer: {}", remote(&e.to_string()))))?
    {
        if body.len() + chunk.len() > limits.max_response_bytes {
            return Err(Fetch::Final(format!(
                "answer is over the limit of {} bytes",
                limits.max_response_bytes
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: Result<Answer, _> = serde_json::from_slice(&body);
    if !status.is_success() {
        let detail = match &answer {
            Ok(Answer {
                error: Some(e),
                error_type,
                ..
            }) => format!(
                "{}: {}",
                remote(error_type.as_deref().unwrap_or("error")),
                remote(e)
            ),
            _ => remote(&String::from_utf8_lossy(&body[..body.len().min(300)])),
        };
        let message = format!("HTTP {}: {detail}", status.as_u16());
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            Fetch::Retry(message)
        } else {
            Fetch::Final(message)
        });
    }
    let answer = answer.map_err(|e| Fetch::Final(format!("answer is not Prometheus JSON: {e}")))?;
    if answer.status != "success" {
        return Err(Fetch::Final(format!(
            "Prometheus status {:?}: {}",
            remote(&answer.status),
            remote(answer.error.as_deref().unwrap_or("no error message"))
        )));
    }
    if let Some(w) = answer.warnings.first() {
        return Err(Fetch::Final(format!(
            "Prometheus warned ({} warning(s)), the data may be partial: {}",
            answer.warnings.len(),
            remote(w)
        )));
    }
    let Some(data) = answer.data else {
        return Err(Fetch::Final("answer has no data".into()));
    };
    if data.result_type != "matrix" {
        return Err(Fetch::Final(format!(
            "query returned a {}, not a range vector",
            remote(&data.result_type)
        )));
    }
    let series = match data.result.as_slice() {
        [] => return Ok(vec![]),
        [one] => one,
        many => {
            return Err(Fetch::Final(format!(
                "query returned {} series; aggregate it to one (e.g. sum(...))",
                many.len()
            )));
        }
    };
    let series: Series = serde_json::from_value(series.clone())
        .map_err(|e| Fetch::Final(format!("series is not Prometheus JSON: {e}")))?;
    if series.histograms.is_some() {
        return Err(Fetch::Final(
            "query returned histogram samples, not numbers".into(),
        ));
    }
    if series.values.len() > limits.max_samples {
        return Err(Fetch::Final(format!(
            "query returned {} samples, over the limit of {}",
            series.values.len(),
            limits.max_samples
        )));
    }
    let mut values = Vec::with_capacity(series.values.len());
    for (_, v) in &series.values {
        match v.parse::<f64>() {
            Ok(f) if f.is_finite() => values.push(f),
            _ => {
                return Err(Fetch::Final(format!(
                    "query returned the sample {:?}, not a finite number",
                    remote(v)
                )));
            }
        }
    }
    Ok(values)
}
