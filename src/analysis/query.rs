//! Queries: the PromQL templates of an `AnalysisTemplate` with their variables filled in (values
//! escaped so they cannot change a query's structure), run as range queries over the analysis
//! window, once per track, with retries and exponential backoff. Produces one
//! [`Observation`] per metric.

pub use super::prometheus::{backoff_schedule, request_timeout};
use super::verdict::Observation;
use crate::crd::AnalysisTemplateSpec;
use crate::limits::AnalysisLimits;
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

/// Escapes a value for use inside a double-quoted PromQL string (label matcher). PromQL reads
/// Go string literals: `'` and `` ` `` need no escape inside double quotes (and `\'` is an
/// error there).
pub fn escape(value: &str) -> String {
    escape_in(value, '"')
}

fn escape_in(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Where a placeholder sits in a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside any string: only a declared `duration` or `number` may go here.
    Bare,
    Double,
    Single,
    Backtick,
    /// After `#` to the end of the line; placeholders here follow the `Bare` rule.
    Comment,
}

/// Is `v` a PromQL duration (`5m`, `1h30m`, `250ms`)?
fn is_duration(v: &str) -> bool {
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Is `v` a plain decimal number (`3`, `-0.25`, `1e-3`)?
fn is_number(v: &str) -> bool {
    v.len() <= 32
        && v.parse::<f64>().is_ok_and(f64::is_finite)
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// Fills `{{ name }}` placeholders from `vars`, by context: inside a double- or single-quoted
/// string the value is escaped as string content; inside a backtick string a value holding a
/// backtick is refused; outside strings the placeholder must declare its type,
/// `{{ name:duration }}` or `{{ name:number }}`, and the value must be one. A typed
/// placeholder is checked in any context. Unknown names are errors.
pub fn render_query(
    metric: &str,
    template: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let bad = |message: String| TemplateError::Invalid {
        field: "metrics",
        message: format!("metric {metric}: {message}"),
    };
    let mut out = String::with_capacity(template.len());
    let mut ctx = Context::Bare;
    let mut rest = template;
    loop {
        let Some(start) = rest.find("{{") else {
            scan(&mut ctx, rest);
            out.push_str(rest);
            break;
        };
        scan(&mut ctx, &rest[..start]);
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed {
                metric: metric.to_owned(),
            });
        };
        let inner = after[..end].trim();
        let (name, kind) = match inner.split_once(':') {
            Some((n, k)) => (n.trim(), Some(k.trim())),
            None => (inner, None),
        };
        let Some(value) = vars.get(name) else {
            return Err(TemplateError::UnknownVariable {
                metric: metric.to_owned(),
                var: name.to_owned(),
                known: vars.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let shown = crate::limits::escape_controls(value);
        match kind {
            None => {}
            Some("duration") if is_duration(value) => {}
            Some("number") if is_number(value) => {}
            Some(k @ ("duration" | "number")) => {
                return Err(bad(format!(
                    "value {shown:?} of {{{{{name}}}}} is not a {k}"
                )));
            }
            Some(k) => {
                return Err(bad(format!(
                    "{{{{{name}:{k}}}}}: unknown type {k:?} (use duration or number)"
                )));
            }
        }
        match (ctx, kind) {
            (Context::Bare | Context::Comment, None) => {
                return Err(bad(format!(
                    "{{{{{name}}}}} is used outside a quoted string, where a value could change the query; quote it, or declare it as {{{{{name}:duration}}}} or {{{{{name}:number}}}}"
                )));
            }
            (Context::Bare | Context::Comment, Some(_)) => out.push_str(value),
            (Context::Double, _) => out.push_str(&escape_in(value, '"')),
            (Context::Single, _) => out.push_str(&escape_in(value, '\'')),
            (Context::Backtick, _) => {
                if value.contains('`') {
                    return Err(bad(format!(
                        "value {shown:?} of {{{{{name}}}}} holds a backtick and is used in a backtick string"
                    )));
                }
                out.push_str(value);
            }
        }
        rest = &after[end + 2..];
    }
    if !matches!(ctx, Context::Bare | Context::Comment) {
        return Err(bad("unterminated string literal".into()));
    }
    Ok(out)
}

/// Advances the string context over literal query text.
fn scan(ctx: &mut Context, text: &str) {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        *ctx = match (*ctx, c) {
            (Context::Bare, '"') => Context::Double,
            (Context::Bare, '\'') => Context::Single,
            (Context::Bare, '`') => Context::Backtick,
            (Context::Bare, '#') => Context::Comment,
            (Context::Comment, '\n') => Context::Bare,
            (Context::Double | Context::Single, '\\') => {
                chars.next();
                *ctx
            }
            (Context::Double, '"') | (Context::Single, '\'') | (Context::Backtick, '`') => {
                Context::Bare
            }
            (c, _) => c,
        };
    }
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
    super::validate::validate(spec, None, None, &AnalysisLimits::default())?;
    let max_query = AnalysisLimits::default().max_query_bytes;
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
        if canary.len().max(baseline.as_ref().map_or(0, String::len)) > max_query {
            return Err(TemplateError::Invalid {
                field: "metrics",
                message: format!(
                    "metric {}: query is over {max_query} bytes after substitution",
                    m.name
                ),
            });
        }
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

/// Runs all queries (at most `parallel` at a time) and collects observations by metric name.
pub async fn observe(
    prometheus: &str,
    queries: &Queries,
    window: Window,
    retry: Retry,
    parallel: usize,
    limits: &AnalysisLimits,
) -> Result<BTreeMap<String, Observation>, String> {
    let client = prometheus_http_query::Client::try_from(prometheus).map_err(|e| {
        format!(
            "invalid Prometheus address: {}",
            super::prometheus::remote(&e.to_string())
        )
    })?;
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, canary, baseline)) in queries.iter().enumerate() {
        for (track, q) in [(0u8, Some(canary.clone())), (1u8, baseline.clone())] {
            let Some(q) = q else { continue };
            let (client, sem, limits) = (client.clone(), sem.clone(), limits.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (
                    i,
                    track,
                    super::prometheus::range(&client, &q, window, retry, &limits).await,
                )
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
        assert_eq!(
            render_query("m", "\"{{ v }}\"", &vars).unwrap(),
            r#""a\\\"\nb""#
        );
    }

    #[test]
    fn retries_stay_within_the_budgets() {
        let l = AnalysisLimits::default();
        let retry = |retries, backoff| Retry {
            retries,
            backoff,
            timeout: Duration::from_secs(10),
        };
        // A 1 ms backoff is raised to min_backoff; 100 retries are capped to max_retries.
        let w = backoff_schedule(&retry(100, Duration::from_millis(1)), &l);
        assert_eq!(w.len(), l.max_retries as usize);
        assert_eq!(w[0], l.min_backoff);
        // Just under and just over min_backoff.
        assert_eq!(
            backoff_schedule(&retry(1, l.min_backoff), &l)[0],
            l.min_backoff
        );
        let over = l.min_backoff + Duration::from_millis(1);
        assert_eq!(backoff_schedule(&retry(1, over), &l)[0], over);
        // Doubling stops at max_backoff.
        let w = backoff_schedule(&retry(3, l.max_backoff / 2), &l);
        assert_eq!(w, [l.max_backoff / 2, l.max_backoff, l.max_backoff]);
        assert_eq!(
            backoff_schedule(&retry(1, l.max_backoff * 10), &l),
            [l.max_backoff]
        );
        // The total stays within max_retry_time: exactly at it is allowed, a step over is not.
        let tight = AnalysisLimits {
            max_retry_time: Duration::from_secs(3),
            ..l.clone()
        };
        assert_eq!(
            backoff_schedule(&retry(5, Duration::from_secs(1)), &tight).len(),
            2
        );
        let tight = AnalysisLimits {
            max_retry_time: Duration::from_millis(2999),
            ..l.clone()
        };
        assert_eq!(
            backoff_schedule(&retry(5, Duration::from_secs(1)), &tight).len(),
            1
        );
        // The request timeout is the template's, at most request_timeout.
        let mut r = retry(0, Duration::ZERO);
        r.timeout = l.request_timeout;
        assert_eq!(request_timeout(&r, &l), l.request_timeout);
        r.timeout = l.request_timeout + Duration::from_secs(1);
        assert_eq!(request_timeout(&r, &l), l.request_timeout);
    }

    #[test]
    fn placeholders_are_escaped_by_context() {
        let vars = BTreeMap::from([
            ("v".to_owned(), "a'b`c\"d".to_owned()),
            ("w".to_owned(), "5m".to_owned()),
            ("n".to_owned(), "0.5".to_owned()),
            ("bad".to_owned(), "1m])) or vector(1) #".to_owned()),
        ]);
        let q = |t: &str| render_query("m", t, &vars);
        assert_eq!(q("x{a=\"{{v}}\"}").unwrap(), "x{a=\"a'b`c\\\"d\"}");
        assert_eq!(q("x{a='{{v}}'}").unwrap(), "x{a='a\\'b`c\"d'}");
        assert!(
            q("x{a=`{{v}}`}").is_err(),
            "a backtick value in a backtick string"
        );
        assert_eq!(
            q("rate(x[{{w:duration}}]) > {{n:number}}").unwrap(),
            "rate(x[5m]) > 0.5"
        );
        assert!(q("rate(x[{{w}}])").is_err(), "untyped outside quotes");
        assert!(q("rate(x[{{bad:duration}}])").is_err());
        assert!(q("x > {{bad:number}}").is_err());
        assert!(q("x # {{bad}}").is_err(), "comments follow the bare rule");
        assert!(q("x{a=\"unterminated}").is_err());
        // Quotes inside strings and escapes do not confuse the context.
        assert_eq!(
            q("x{a=\"\\\"'\", b=\"{{v}}\"}").unwrap(),
            "x{a=\"\\\"'\", b=\"a'b`c\\\"d\"}"
        );
    }

    #[test]
    fn query_length_budget() {
        let l = AnalysisLimits::default();
        let spec = |q: String| -> crate::crd::AnalysisTemplateSpec {
            serde_json::from_value(serde_json::json!({
                "prometheus": {"address": "http://p"},
                "metrics": [{"name": "m", "query": q, "threshold": {"max": 1}}]
            }))
            .expect("spec")
        };
        let params = Params::default();
        assert!(prepare(&spec("x".repeat(l.max_query_bytes)), &params).is_ok());
        assert!(prepare(&spec("x".repeat(l.max_query_bytes + 1)), &params).is_err());
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
