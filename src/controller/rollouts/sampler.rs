//! Analysis runs of the rollout controller: one task per `run_id`, which samples the judged
//! window while it runs and judges it once it has ended ([`crate::analysis::run::analyze`]:
//! range queries, one sample per `interval` per track). The result feeds `Observations.analysis`.
//!
//! While the window runs, every `interval` the part of it already past is evaluated again (same
//! start, so the same sample times as the final evaluation): the real sample counts and the
//! per-metric results so far go to the status (`analysis.samples`, `analysis.metrics`), and a verdict that more samples cannot change — a critical
//! metric out of its threshold bounds more often than its `failureLimit` — ends the run early,
//! so a bad canary stops taking traffic at once instead of at the window's end. A query error
//! in such an evaluation is no verdict at all: the run goes on, and only the final evaluation
//! (with the template's retries) can turn errors into `Inconclusive`.
//!
//! A window whose final evaluation is `Inconclusive` only for too few samples is extended by one
//! interval and judged again, at most three times: a new canary's first scrapes can come seconds
//! after it started serving, and the last scrapes of a loaded Prometheus may not be in yet.
//!
//! Nothing is kept across restarts: a restarted agent gets the same `RunAnalysis` again from the
//! status and samples the same window again.

use super::Key;
use crate::analysis::query::{Params, Window};
use crate::analysis::{MetricOutcome, Outcome, Verdict, analyze};
use crate::controller::queue::Queue;
use crate::crd::{AnalysisTemplate, AnalysisTemplateSpec, MetricSummary, Rollout};
use crate::duration;
use crate::rollout::{
    AnalysisObs, AnalysisRequest, AnalysisResult, BackendHealth, Track, summarize,
};
use kube::api::Api;
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a run reports while it goes: samples per track and per-metric results so far, then the
/// result.
#[derive(Debug, Default)]
struct Progress {
    samples: u32,
    metrics: Vec<MetricSummary>,
    result: Option<AnalysisResult>,
}

struct Run {
    run_id: String,
    progress: Arc<Mutex<Progress>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The analysis runs in flight, one per Rollout.
pub struct Samplers {
    client: Client,
    queue: Arc<Queue<Key>>,
    runs: Mutex<HashMap<Key, Run>>,
}

impl Samplers {
    pub fn new(client: Client, queue: Arc<Queue<Key>>) -> Samplers {
        Samplers {
            client,
            queue,
            runs: Mutex::default(),
        }
    }

    /// Progress of the run of `key`, if any.
    pub fn progress(&self, key: &Key) -> Option<AnalysisObs> {
        let runs = self.runs.lock().ok()?;
        let run = runs.get(key)?;
        let p = run.progress.lock().ok()?;
        Some(AnalysisObs {
            run_id: run.run_id.clone(),
            samples: p.samples,
            metrics: p.metrics.clone(),
            result: p.result.clone(),
        })
    }

    /// Stops the run of `key`.
    pub fn stop(&self, key: &Key) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(key);
        }
    }

    /// Makes sure `req` is being evaluated (a run with the same id already is: nothing to do).
    pub fn ensure(&self, key: &Key, ro: &Rollout, req: &AnalysisRequest) {
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        if runs.get(key).is_some_and(|r| r.run_id == req.run_id) {
            return;
        }
        let progress: Arc<Mutex<Progress>> = Arc::default();
        let job = Job {
            client: self.client.clone(),
            namespace: key.0.clone(),
            service: ro.spec.service.clone(),
            req: req.clone(),
            progress: progress.clone(),
            queue: self.queue.clone(),
            key: key.clone(),
        };
        let task = tokio::spawn(async move {
            let out = job.evaluate().await;
            tracing::info!(rollout = %format!("{}/{}", job.key.0, job.key.1), run = %job.req.run_id, result = ?result_name(&out), "analysis finished");
            if let Ok(mut p) = job.progress.lock() {
                p.result = Some(out);
            }
            job.queue.push(&job.key, Duration::ZERO);
        });
        runs.insert(
            key.clone(),
            Run {
                run_id: req.run_id.clone(),
                progress,
                task,
            },
        );
    }
}

fn result_name(r: &AnalysisResult) -> String {
    match r {
        AnalysisResult::Verdict(v) => format!("{:?} {:.1}", v.outcome, v.score),
        AnalysisResult::Unavailable { reason } => format!("unavailable: {reason}"),
    }
}

/// One analysis run.
struct Job {
    client: Client,
    namespace: String,
    service: String,
    req: AnalysisRequest,
    progress: Arc<Mutex<Progress>>,
    queue: Arc<Queue<Key>>,
    key: Key,
}

impl Job {
    /// Samples the window while it runs (ending early on a verdict that cannot change), then
    /// judges all of it.
    async fn evaluate(&self) -> AnalysisResult {
        let api: Api<AnalysisTemplate> = Api::namespaced(self.client.clone(), &self.namespace);
        let template = match api.get_opt(&self.req.template).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return unavailable(format!(
                    "AnalysisTemplate {}/{} not found",
                    self.namespace, self.req.template
                ));
            }
            Err(e) => return unavailable(format!("reading the AnalysisTemplate: {e}")),
        };
        let interval = match duration::parse(&template.spec.interval) {
            Ok(i) if !i.is_zero() => i,
            Ok(_) => return unavailable("AnalysisTemplate interval is 0".into()),
            Err(e) => return unavailable(format!("AnalysisTemplate interval: {e}")),
        };
        let name = template.name_any();
        if let Some(v) = self
            .sample_while_running(&template.spec, &name, interval)
            .await
        {
            return AnalysisResult::Verdict(v);
        }
        sleep_until(self.req.end).await;
        // A window short of data is extended, one interval at a time, up to `EXTENSIONS` times,
        // before it stands as `Inconclusive`: a new canary's first scrapes can come seconds after
        // it started serving (service discovery, scrape interval, two points for a rate), and the
        // newest samples of a loaded Prometheus may not be in yet. Judging the same window again
        // would only fix the second.
        let mut end = self.req.end;
        let mut extended = 0;
        loop {
            match self
                .judge(&template.spec, &name, self.window(end, interval))
                .await
            {
                Ok(v) if extended < EXTENSIONS && short_of_data(&v) => {
                    extended += 1;
                    end = end.checked_add(interval).unwrap_or(end);
                    tracing::info!(rollout = %format!("{}/{}", self.key.0, self.key.1), run = %self.req.run_id,
                        samples = ?samples(&template.spec, &v), until = %end, "too few samples by the window's end; extending it by one interval");
                    sleep_until(end).await;
                }
                Ok(mut v) => {
                    if extended > 0 {
                        v.context.insert(
                            "window".into(),
                            format!(
                                "extended {extended} interval(s) to {end}: too few samples by {}",
                                self.req.end
                            ),
                        );
                    }
                    return AnalysisResult::Verdict(v);
                }
                Err(e) => return unavailable(e.to_string()),
            }
        }
    }

    /// Every `interval` until the window ends: judges the part of the window that is at least
    /// one interval old (a late scrape could still change younger samples), records the sample
    /// counts, and returns a verdict that more samples cannot change. Errors only skip a round.
    async fn sample_while_running(
        &self,
        spec: &AnalysisTemplateSpec,
        name: &str,
        interval: Duration,
    ) -> Option<Verdict> {
        // No retries here: a failed round is simply followed by the next one.
        let mut spec = spec.clone();
        spec.on_error.retries = 0;
        let step = jiff::SignedDuration::try_from(interval).ok()?;
        let mut next = self.req.start.checked_add(step.checked_mul(2)?).ok()?;
        while next < self.req.end {
            sleep_until(next).await;
            let upto = next.checked_sub(step).ok()?;
            let judged = self.judge(&spec, name, self.window(upto, interval)).await;
            // The next round one interval on; rounds slower than that are not made up for.
            let now = jiff::Timestamp::now();
            while next <= now {
                next = next.checked_add(step).ok()?;
            }
            let Ok(v) = judged else {
                continue;
            };
            if let Some(n) = samples(&spec, &v) {
                let metrics = summarize(self.req.step, name, &self.req.run_id, &v).metrics;
                self.report(n, metrics);
            }
            if decided(&v) {
                let mut v = v;
                v.context.insert(
                    "decided".into(),
                    format!("early, on the samples up to {upto}: a critical threshold was breached more often than its failureLimit"),
                );
                return Some(v);
            }
        }
        None
    }

    /// Records the sample count and the per-metric results so far, and asks for a pass when
    /// they changed, so the status shows them.
    fn report(&self, n: u32, metrics: Vec<MetricSummary>) {
        let changed = match self.progress.lock() {
            Ok(mut p) if p.samples != n || p.metrics != metrics => {
                p.samples = n;
                p.metrics = metrics;
                true
            }
            _ => false,
        };
        if changed {
            self.queue.push(&self.key, Duration::ZERO);
        }
    }

    /// The judged window from the request's start to `end`.
    fn window(&self, end: jiff::Timestamp, interval: Duration) -> Window {
        Window {
            start: self.req.start.as_second(),
            end: end.as_second(),
            interval,
        }
    }

    async fn judge(
        &self,
        spec: &AnalysisTemplateSpec,
        name: &str,
        window: Window,
    ) -> Result<Verdict, crate::analysis::RunError> {
        let params = Params {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            canary_track: Track::Canary.as_str().into(),
            baseline_track: Track::Baseline.as_str().into(),
            revision: self.req.canary_revision.clone(),
            vars: self.req.vars.clone(),
        };
        analyze(spec, name, &params, &spec.prometheus.address, window).await
    }
}

/// How many intervals a window short of data is extended by, at most.
const EXTENSIONS: u32 = 3;

/// Whether a verdict is `Inconclusive` only for too few samples (no query failed): a late
/// scrape can still change it.
fn short_of_data(v: &Verdict) -> bool {
    v.outcome == Outcome::Inconclusive
        && !v.metrics.is_empty()
        && v.metrics.iter().all(|m| m.result != MetricOutcome::Error)
        && v.metrics.iter().any(|m| m.result == MetricOutcome::Nodata)
}

/// Sleeps until `t` (returns at once when it has passed).
async fn sleep_until(t: jiff::Timestamp) {
    let wait = t.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(Duration::from_millis(wait.as_millis().max(0) as u64)).await;
    }
}

/// Samples per track so far: the fewest any judged track of any metric has (`None` when every
/// metric's queries failed).
fn samples(spec: &AnalysisTemplateSpec, v: &Verdict) -> Option<u32> {
    let compared = |name: &str| {
        spec.metrics
            .iter()
            .any(|m| m.name == name && m.compare.is_some())
    };
    v.metrics
        .iter()
        .filter(|m| m.result != MetricOutcome::Error)
        .map(|m| {
            let canary = m.canary.map_or(0, |s| s.n);
            match compared(&m.name) {
                true => canary.min(m.baseline.map_or(0, |s| s.n)),
                false => canary,
            }
        })
        .min()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Whether a verdict over part of the window is final: it fails, no query failed, and the
/// critical metric it names is out of its threshold bounds more often than its `failureLimit`
/// (more samples only add breaches; a comparison could still change, so it never ends a run).
fn decided(v: &Verdict) -> bool {
    if v.outcome != Outcome::Fail || v.metrics.iter().any(|m| m.result == MetricOutcome::Error) {
        return false;
    }
    let named = v.metrics.iter().find(|m| m.critical && m.result.failed());
    named.is_some_and(|m| {
        m.threshold
            .is_some_and(|t| t.above_max.max(t.below_min) > t.failure_limit as usize)
    })
}

fn unavailable(reason: String) -> AnalysisResult {
    AnalysisResult::Unavailable { reason }
}

/// Whether the Prometheus of AnalysisTemplate `ns/template` answers a trivial query (asked while
/// a rollout waits on an inconclusive result, before an automatic retry).
pub async fn probe(client: &Client, ns: &str, template: &str) -> BackendHealth {
    let api: Api<AnalysisTemplate> = Api::namespaced(client.clone(), ns);
    let Ok(Some(t)) = api.get_opt(template).await else {
        return BackendHealth::Down;
    };
    let Ok(prom) = prometheus_http_query::Client::try_from(t.spec.prometheus.address.as_str())
    else {
        return BackendHealth::Down;
    };
    let query = prom.query("vector(1)").get();
    match tokio::time::timeout(Duration::from_secs(5), query).await {
        Ok(Ok(_)) => BackendHealth::Up,
        _ => BackendHealth::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Observation, judge};
    use std::collections::BTreeMap;

    /// `errors`: critical threshold (max 0.01, one breach allowed); `latency`: critical
    /// comparison; `cpu`: non-critical threshold. Four samples needed per track.
    fn spec() -> AnalysisTemplateSpec {
        serde_saphyr::from_str(
            "prometheus: {address: 'http://127.0.0.1:9'}\nminSamples: 4\nmetrics:\n\
             - {name: errors, critical: true, query: q, threshold: {max: 0.01, failureLimit: 1}}\n\
             - {name: latency, critical: true, query: q, compare: {fail: increase, tolerance: 0.1}}\n\
             - {name: cpu, query: q, threshold: {max: 1}}\n",
        )
        .unwrap()
    }

    fn verdict(errors: &[f64], latency: (&[f64], &[f64]), cpu: &[f64]) -> Verdict {
        let o = |c: &[f64], b: &[f64]| Observation {
            canary: c.to_vec(),
            baseline: b.to_vec(),
            errors: vec![],
        };
        let map = BTreeMap::from([
            ("errors".to_owned(), o(errors, &[])),
            ("latency".to_owned(), o(latency.0, latency.1)),
            ("cpu".to_owned(), o(cpu, &[])),
        ]);
        judge(&spec(), &map)
    }

    const LOW: &[f64] = &[0.02, 0.02, 0.02, 0.02, 0.02];
    const FLAT: &[f64] = &[0.5, 0.5, 0.5, 0.5, 0.5];

    #[test]
    fn a_critical_threshold_breached_past_its_failure_limit_decides_early() {
        let v = verdict(&[0.0, 0.05, 0.0, 0.05, 0.0], (LOW, LOW), FLAT);
        assert_eq!(v.outcome, Outcome::Fail, "{v:#?}");
        assert!(decided(&v));
        // Within the failure limit (one breach): not decided, whatever the rest says.
        let v = verdict(&[0.0, 0.05, 0.0, 0.0, 0.0], (LOW, LOW), FLAT);
        assert!(!decided(&v), "{v:#?}");
    }

    #[test]
    fn a_failed_comparison_never_decides_early() {
        // More samples could make the shift insignificant or within tolerance.
        let high = &[0.2, 0.21, 0.2, 0.22, 0.2, 0.21];
        let v = verdict(
            &[0.0; 5],
            (high, &[0.02, 0.021, 0.02, 0.022, 0.02, 0.021]),
            FLAT,
        );
        assert_eq!(v.outcome, Outcome::Fail, "{v:#?}");
        assert!(!decided(&v), "{v:#?}");
    }

    #[test]
    fn too_few_samples_a_query_error_or_a_non_critical_breach_never_decide_early() {
        // Three samples, two breaching: nodata until the fourth.
        let v = verdict(&[0.05, 0.05, 0.0], (LOW, LOW), FLAT);
        assert!(!decided(&v), "{v:#?}");
        // A breach beside a failed query: the verdict is Inconclusive, not Fail.
        let mut map = BTreeMap::from([(
            "errors".to_owned(),
            Observation {
                canary: vec![0.05, 0.05, 0.05, 0.05],
                ..Default::default()
            },
        )]);
        map.insert(
            "latency".into(),
            Observation {
                errors: vec!["canary: HTTP 503".into()],
                ..Default::default()
            },
        );
        map.insert(
            "cpu".into(),
            Observation {
                canary: FLAT.to_vec(),
                ..Default::default()
            },
        );
        let v = judge(&spec(), &map);
        assert!(!decided(&v), "{v:#?}");
        // A non-critical threshold breached: the score may still fail, but it is not final.
        let v = verdict(&[0.0; 5], (LOW, LOW), &[2.0, 2.0, 2.0, 2.0, 2.0]);
        assert_eq!(v.outcome, Outcome::Fail, "{v:#?}");
        assert!(!decided(&v), "{v:#?}");
    }

    #[test]
    fn only_an_inconclusive_for_too_few_samples_is_judged_again() {
        // Three samples of four needed: a late scrape can still make it.
        let v = verdict(&[0.0; 3], (&[0.02; 3], &[0.02; 3]), &[0.5; 3]);
        assert_eq!(v.outcome, Outcome::Inconclusive, "{v:#?}");
        assert!(short_of_data(&v));
        // Enough samples: whatever the outcome, it stands.
        assert!(!short_of_data(&verdict(&[0.0; 5], (LOW, LOW), FLAT)));
        assert!(!short_of_data(&verdict(&[0.05; 5], (LOW, LOW), FLAT)));
        // A failed query: the backend's trouble, not lateness (the template's retries handle it).
        let map = BTreeMap::from([(
            "errors".to_owned(),
            Observation {
                errors: vec!["canary: HTTP 503".into()],
                ..Default::default()
            },
        )]);
        let v = judge(&spec(), &map);
        assert_eq!(v.outcome, Outcome::Inconclusive, "{v:#?}");
        assert!(!short_of_data(&v));
    }

    #[test]
    fn samples_are_the_fewest_of_any_judged_track() {
        // errors: 5 canary; latency: 6 canary but 4 baseline; cpu: 5.
        let v = verdict(
            &[0.0; 5],
            (&[0.02; 6], &[0.02; 4]),
            &[0.5, 0.5, 0.5, 0.5, 0.5],
        );
        assert_eq!(samples(&spec(), &v), Some(4));
        // A metric whose queries failed does not count; all of them failed: unknown.
        let failed = || Observation {
            errors: vec!["canary: timeout".into()],
            ..Default::default()
        };
        let mut map = BTreeMap::from([
            ("errors".to_owned(), failed()),
            ("latency".to_owned(), failed()),
        ]);
        map.insert(
            "cpu".into(),
            Observation {
                canary: FLAT.to_vec(),
                ..Default::default()
            },
        );
        assert_eq!(samples(&spec(), &judge(&spec(), &map)), Some(5));
        map.insert("cpu".into(), failed());
        assert_eq!(samples(&spec(), &judge(&spec(), &map)), None);
    }
}
