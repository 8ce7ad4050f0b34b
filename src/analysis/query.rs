//! Queries: the PromQL templates of an `AnalysisTemplate` with their variables filled in (values
//! escaped so they cannot change a query's structure), run as range queries over the analysis
//! window, once per track, with retries and exponential backoff. Produces one
//! [`Observation`] per metric.

use super::verdict::Observation;
use crate::crd::AnalysisTemplateSpec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A template problem: the template cannot be run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("metric {metric}: unknown variable {{{{{var}}}}} in query (known: {known})")]
    UnknownVariable {
        metric: String,
        var: String,
        known: String,
    },
    #[error("metric {metric}: unclosed {{{{ in query")]
    Unclosed { metric: String },
    #[error("metric name {0:?} is used twice")]
    DuplicateMetric(String),
    #[error("metric {metric}: group {group:?} is not listed in groups")]
    UnknownGroup { metric: String, group: String },
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Escapes a value for use inside a double-quoted PromQL string (label matcher).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '`' => out.push_str("\\`"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{{ name }}` placeholders from `vars` (values escaped). Unknown names are errors.
pub fn render_query(
    metric: &str,
    template: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed {
                metric: metric.to_owned(),
            });
        };
        let name = after[..end].trim();
        match vars.get(name) {
            Some(v) => out.push_str(&escape(v)),
            None => {
                return Err(TemplateError::UnknownVariable {
                    metric: metric.to_owned(),
                    var: name.to_owned(),
                    known: vars.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Who is judged.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub service: String,
    pub namespace: String,
    pub canary_track: String,
    pub baseline_track: String,
    pub revision: String,
    /// User variables (override the template's `vars`).
    pub vars: BTreeMap<String, String>,
}

impl Params {
    /// The variables of one track.
    pub fn vars_for(&self, spec: &AnalysisTemplateSpec, track: &str) -> BTreeMap<String, String> {
        let mut v = spec.vars.clone();
        v.extend(self.vars.clone());
        v.insert("service".into(), self.service.clone());
        v.insert("namespace".into(), self.namespace.clone());
        v.insert("track".into(), track.to_owned());
        v.insert("revision".into(), self.revision.clone());
        v
    }
}

/// The time window judged: `[start, end]` in Unix seconds, one sample per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub interval: Duration,
}

/// Retry policy for failed queries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub retries: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

/// The queries of one analysis, validated: (metric name, canary query, baseline query or None).
pub type Queries = Vec<(String, String, Option<String>)>;

/// Checks the template and renders every query for both tracks.
pub fn prepare(spec: &AnalysisTemplateSpec, params: &Params) -> Result<Queries, TemplateError> {
    let mut seen = std::collections::BTreeSet::new();
    let canary_vars = params.vars_for(spec, &params.canary_track);
    let baseline_vars = params.vars_for(spec, &params.baseline_track);
    let mut out = Vec::new();
    for m in &spec.metrics {
        if !seen.insert(m.name.clone()) {
            return Err(TemplateError::DuplicateMetric(m.name.clone()));
        }
        if !spec.groups.is_empty() {
            let g = m.group.clone().unwrap_or_else(|| "default".into());
            if !spec.groups.iter().any(|s| s.name == g) {
                return Err(TemplateError::UnknownGroup {
                    metric: m.name.clone(),
                    group: g,
                });
            }
        }
        let canary = render_query(&m.name, &m.query, &canary_vars)?;
        let baseline = m
            .compare
            .as_ref()
            .map(|_| render_query(&m.name, &m.query, &baseline_vars))
            .transpose()?;
        out.push((m.name.clone(), canary, baseline));
    }
    if spec.score.marginal > spec.score.pass {
        return Err(TemplateError::Invalid {
            field: "score",
            message: "marginal must not exceed pass".into(),
        });
    }
    Ok(out)
}

/// Runs one range query with retries; `Ok(values)` (possibly empty: no series) or the last error.
async fn range(
    client: &prometheus_http_query::Client,
    q: &str,
    w: Window,
    retry: Retry,
) -> Result<Vec<f64>, String> {
    let mut backoff = retry.backoff;
    let mut last = String::new();
    for attempt in 0..=retry.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        let fut = client
            .query_range(q, w.start, w.end, w.interval.as_secs_f64().max(1.0))
            .timeout(retry.timeout.as_millis() as i64)
            .get();
        match tokio::time::timeout(retry.timeout + Duration::from_secs(1), fut).await {
            Err(_) => last = format!("timed out after {:?}", retry.timeout),
            Ok(Err(e)) => last = e.to_string(),
            Ok(Ok(res)) => {
                let Some(matrix) = res.data().as_matrix() else {
                    return Err("query did not return a range vector".into());
                };
                return match matrix.as_slice() {
                    [] => Ok(vec![]),
                    [series] => Ok(series.samples().iter().map(|s| s.value()).collect()),
                    many => Err(format!(
                        "query returned {} series; aggregate it to one (e.g. sum(...))",
                        many.len()
                    )),
                };
            }
        }
    }
    Err(last)
}

/// Runs all queries (at most `parallel` at a time) and collects observations by metric name.
pub async fn observe(
    prometheus: &str,
    queries: &Queries,
    window: Window,
    retry: Retry,
    parallel: usize,
) -> Result<BTreeMap<String, Observation>, String> {
    let client = prometheus_http_query::Client::try_from(prometheus)
        .map_err(|e| format!("invalid Prometheus address {prometheus:?}: {e}"))?;
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, canary, baseline)) in queries.iter().enumerate() {
        for (track, q) in [(0u8, Some(canary.clone())), (1u8, baseline.clone())] {
            let Some(q) = q else { continue };
            let (client, sem) = (client.clone(), sem.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, track, range(&client, &q, window, retry).await)
            });
        }
    }
    let mut out: BTreeMap<String, Observation> = queries
        .iter()
        .map(|(n, _, _)| (n.clone(), Observation::default()))
        .collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, track, result) = joined.map_err(|e| format!("query task failed: {e}"))?;
        let obs = out
            .get_mut(&queries[i].0)
            .expect("every metric has an entry");
        match result {
            Ok(values) if track == 0 => obs.canary = values,
            Ok(values) => obs.baseline = values,
            Err(e) => {
                let which = if track == 0 { "canary" } else { "baseline" };
                let msg = format!("{which}: {e}");
                if !obs.errors.contains(&msg) {
                    obs.errors.push(msg);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_break_out_of_a_label_matcher() {
        let vars = BTreeMap::from([(
            "service".to_owned(),
            r#"web"} or vector(1) or up{x=""#.to_owned(),
        )]);
        let q = render_query("m", r#"rate(x{service="{{service}}"}[1m])"#, &vars).unwrap();
        assert_eq!(
            q,
            r#"rate(x{service="web\"} or vector(1) or up{x=\""}[1m])"#
        );
        let vars = BTreeMap::from([("v".to_owned(), "a\\\"\nb".to_owned())]);
        assert_eq!(render_query("m", "{{ v }}", &vars).unwrap(), r#"a\\\"\nb"#);
    }

    #[test]
    fn unknown_variables_and_unclosed_braces_are_errors() {
        let vars = BTreeMap::from([("service".to_owned(), "web".to_owned())]);
        let e = render_query("m", "x{a=\"{{nope}}\"}", &vars).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metric m: unknown variable {{nope}} in query (known: service)"
        );
        assert!(matches!(
            render_query("m", "x{{service", &vars),
            Err(TemplateError::Unclosed { .. })
        ));
    }
}
