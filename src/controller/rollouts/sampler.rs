//! Analysis runs of the rollout controller: one task per `run_id`, which waits until the judged
//! window has ended and then evaluates the AnalysisTemplate over the whole window with range
//! queries ([`crate::analysis::run::analyze`], one sample per `interval` per track). The result
//! feeds `Observations.analysis`. Nothing is kept across restarts: a restarted agent gets the
//! same `RunAnalysis` again from the status and re-queries the same window.

use super::Key;
use crate::analysis::analyze;
use crate::analysis::query::{Params, Window};
use crate::controller::queue::Queue;
use crate::crd::{AnalysisTemplate, Rollout};
use crate::duration;
use crate::rollout::{AnalysisObs, AnalysisRequest, AnalysisResult, BackendHealth, Track};
use kube::api::Api;
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Run {
    run_id: String,
    start: jiff::Timestamp,
    interval: Arc<Mutex<Option<Duration>>>,
    result: Arc<Mutex<Option<AnalysisResult>>>,
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
        let result = run.result.lock().ok()?.clone();
        let interval = run.interval.lock().ok().and_then(|i| *i);
        let elapsed = jiff::Timestamp::now()
            .duration_since(run.start)
            .as_secs()
            .max(0) as u64;
        let samples = interval
            .filter(|i| !i.is_zero())
            .map(|i| (elapsed / i.as_secs().max(1)) as u32)
            .unwrap_or(0);
        Some(AnalysisObs {
            run_id: run.run_id.clone(),
            samples,
            result,
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
        let result = Arc::new(Mutex::new(None));
        let interval = Arc::new(Mutex::new(None));
        let job = Job {
            client: self.client.clone(),
            namespace: key.0.clone(),
            service: ro.spec.service.clone(),
            req: req.clone(),
        };
        let (res, iv, queue, k) = (
            result.clone(),
            interval.clone(),
            self.queue.clone(),
            key.clone(),
        );
        let task = tokio::spawn(async move {
            let out = job.evaluate(&iv).await;
            tracing::info!(rollout = %format!("{}/{}", k.0, k.1), run = %job.req.run_id, result = ?result_name(&out), "analysis finished");
            if let Ok(mut r) = res.lock() {
                *r = Some(out);
            }
            queue.push(&k, Duration::ZERO);
        });
        runs.insert(
            key.clone(),
            Run {
                run_id: req.run_id.clone(),
                start: req.start,
                interval,
                result,
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
}

impl Job {
    /// Waits for the end of the window, then queries and judges it.
    async fn evaluate(&self, interval_out: &Mutex<Option<Duration>>) -> AnalysisResult {
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
        if let Ok(mut i) = interval_out.lock() {
            *i = Some(interval);
        }
        let wait = self.req.end.duration_since(jiff::Timestamp::now());
        if wait.is_positive() {
            let wait = Duration::from_millis(wait.as_millis().max(0) as u64);
            tokio::time::sleep(wait).await;
        }
        let params = Params {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            canary_track: Track::Canary.as_str().into(),
            baseline_track: Track::Baseline.as_str().into(),
            revision: self.req.canary_revision.clone(),
            vars: self.req.vars.clone(),
        };
        let window = Window {
            start: self.req.start.as_second(),
            end: self.req.end.as_second(),
            interval,
        };
        match analyze(
            &template.spec,
            &template.name_any(),
            &params,
            &template.spec.prometheus.address,
            window,
        )
        .await
        {
            Ok(v) => AnalysisResult::Verdict(v),
            Err(e) => unavailable(e.to_string()),
        }
    }
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
