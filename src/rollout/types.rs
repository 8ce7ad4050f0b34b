//! The rollout engine's inputs and outputs: what the controller observed, the actions it must
//! carry out, and the typed hand-off to the git rollback.

use crate::analysis::Verdict;
use crate::crd::{AnalysisSummary, RolloutStatus, VerdictOutcome};
use std::collections::BTreeMap;
use std::time::Duration;

/// The three workloads of a rollout, told apart by the label `fledge.dev/track`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Track {
    /// The governed Deployment itself (keeps its name).
    Stable,
    /// `<name>-canary`: the new template.
    Canary,
    /// `<name>-baseline`: the stable template, fresh pods, same size as the canary.
    Baseline,
}

impl Track {
    /// Value of the `fledge.dev/track` label, and the suffix of the workload's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
            Track::Baseline => "baseline",
        }
    }
}

/// The stable (governed) Deployment as observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StableObs {
    /// The Deployment exists. Sync creates it; the engine waits until it does.
    pub exists: bool,
    /// Hash of the template applied to it (annotation `fledge.dev/template-hash`). `None` when
    /// unknown: the hand-off is then rolled out as a canary (the safe side).
    pub template_hash: Option<String>,
    /// Its live `spec.template`; the baseline is a fresh copy of it.
    pub template: Option<serde_json::Value>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Fully rolled out and available: `observedGeneration` current, updated and available
    /// replicas equal to `spec.replicas`.
    pub available: bool,
}

/// A canary or baseline Deployment as observed (absent: `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadObs {
    /// Hash of its template (annotation `fledge.dev/template-hash`).
    pub template_hash: Option<String>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas` of the current template (0 while an old template still runs).
    pub ready_replicas: i32,
    /// Its `Progressing` condition is `False` with reason `ProgressDeadlineExceeded` (the
    /// controller sets `spec.progressDeadlineSeconds` from [`Action::EnsureWorkload`]).
    pub progress_deadline_exceeded: bool,
}

/// Weights (percent of requests) the traffic router reports it achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterObs {
    pub canary: i32,
    pub baseline: i32,
}

/// The result of an analysis run, as the controller's sampler reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisResult {
    /// The verdict over the whole window.
    Verdict(Verdict),
    /// The analysis could not run at all (template missing or invalid, Prometheus unreachable
    /// past the retry budget). Treated as `Inconclusive`: never a failure, never a pass.
    Unavailable { reason: String },
}

/// Progress of the analysis run the controller is sampling.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisObs {
    /// The run (see [`AnalysisRequest::run_id`]); results for another run are ignored.
    pub run_id: String,
    /// Samples collected so far (per track).
    pub samples: u32,
    /// Per-metric results over the samples so far, while the window runs.
    pub metrics: Vec<crate::crd::MetricSummary>,
    /// Set once the run is complete.
    pub result: Option<AnalysisResult>,
}

/// Whether the metrics backend answers (the controller probes it while a rollout waits on an
/// inconclusive result).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendHealth {
    #[default]
    Unknown,
    Up,
    Down,
}

/// The git rollback as the forge reports it for the failed revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRollbackObs {
    /// Revision the rollback is for ([`FailedRollout::failed_revision`]).
    pub failed_revision: String,
    /// URL of the open revert pull request (`None` in `push` mode, or not opened yet).
    pub pull_request: Option<String>,
}

/// Everything the engine needs from outside, read fresh on every pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// The Rollout's namespace.
    pub namespace: String,
    /// The Rollout's name (the stable Deployment is `spec.targetRef.name`).
    pub name: String,
    /// The Rollout's `metadata.generation`.
    pub generation: Option<i64>,
    pub stable: StableObs,
    pub canary: Option<WorkloadObs>,
    pub baseline: Option<WorkloadObs>,
    /// Achieved weights; `None` when the router cannot say (route missing or unreadable). With the
    /// `replicas` router: [`crate::rollout::replicas::achieved`] over the ready pods.
    pub router: Option<RouterObs>,
    pub analysis: Option<AnalysisObs>,
    pub metrics_backend: BackendHealth,
    /// Raw value of the `fledge.dev/request` annotation.
    pub request: Option<String>,
    pub git_rollback: Option<GitRollbackObs>,
    /// The freeze of the ConfigRepo the Rollout came from (`None`: not frozen).
    pub freeze: Option<super::Freeze>,
}

/// What to sample and judge.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRequest {
    /// `<attempt>-<step>-<try>`: one sampler per id; repeated requests for a running id are no-ops.
    pub run_id: String,
    pub step: i32,
    /// AnalysisTemplate name, in the Rollout's namespace.
    pub template: String,
    /// Extra template variables from the step.
    pub vars: BTreeMap<String, String>,
    /// Judged window `[start, end)`; report the verdict once `end` has passed (earlier is allowed
    /// for a failure that cannot recover, e.g. a critical metric).
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
    pub canary_revision: String,
    pub stable_revision: Option<String>,
}

/// One idempotent "make it so". The controller may repeat or drop any of them; the engine asks
/// again until observations match.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create `<name>-<track>` if absent, else make its template (when the hash differs) and
    /// replicas equal to these. Labels `fledge.dev/track: <track>` in selector and pod template,
    /// annotation `fledge.dev/template-hash`, `spec.progressDeadlineSeconds`.
    EnsureWorkload {
        track: Track,
        template: serde_json::Value,
        template_hash: String,
        replicas: i32,
        progress_deadline_seconds: i32,
    },
    /// Set `spec.replicas` of an existing `<name>-<track>` (absent: nothing to do).
    ScaleWorkload { track: Track, replicas: i32 },
    /// Delete `<name>-<track>` if present (foreground or background, either is fine: the engine
    /// waits until it is gone from observations).
    DeleteWorkload { track: Track },
    /// Set the router's weights to exactly these (stable gets the rest). Only for the `istio` and
    /// `gatewayAPI` routers; owning just the weights (STYLE §7).
    SetWeight { canary: i32, baseline: i32 },
    /// Apply this template (and the hash annotation) to the stable Deployment, nothing else.
    PromoteStable {
        template: serde_json::Value,
        template_hash: String,
        revision: String,
    },
    /// Make sure this analysis is being sampled (and judged when its window ends).
    RunAnalysis(AnalysisRequest),
    /// Make sure the git rollback for this failure is under way (the forge looks up the branch
    /// `fledge/rollback/...` and never opens two pull requests for one failure).
    RequestGitRollback(FailedRollout),
}

/// The outcome of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write before carrying out the actions (unchanged: no write).
    pub status: RolloutStatus,
    pub actions: Vec<Action>,
    /// Call [`crate::rollout::step`] again after this long at the latest (a pause or an analysis
    /// window ending, a retry backoff).
    pub requeue_after: Option<Duration>,
}

/// What failed. Deliberately no variant for `Marginal` or `Inconclusive`.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureCause {
    /// An analysis verdict `Fail` (kept whole: the report goes into the revert PR).
    AnalysisFailed(AnalysisSummary),
    /// The canary never became available within `progressDeadline`.
    ProgressDeadlineExceeded,
    /// An operator ran `fledge abort`.
    Aborted,
}

/// A verdict that the rollout failed. It can only be built from a failed analysis, a missed
/// progress deadline or an operator's abort, so the git rollback (which takes only this) can
/// never be started by a marginal or inconclusive analysis (STYLE §2).
#[derive(Debug, Clone, PartialEq)]
pub struct FailedVerdict {
    cause: FailureCause,
}

impl FailedVerdict {
    /// From a recorded analysis summary; `None` unless its verdict is `Fail`.
    pub fn from_analysis(summary: &AnalysisSummary) -> Option<FailedVerdict> {
        (summary.verdict == VerdictOutcome::Fail).then(|| FailedVerdict {
            cause: FailureCause::AnalysisFailed(summary.clone()),
        })
    }
    /// The canary did not become available in time.
    pub fn progress_deadline_exceeded() -> FailedVerdict {
        FailedVerdict {
            cause: FailureCause::ProgressDeadlineExceeded,
        }
    }
    /// An operator aborted the rollout.
    pub fn aborted() -> FailedVerdict {
        FailedVerdict {
            cause: FailureCause::Aborted,
        }
    }
    pub fn cause(&self) -> &FailureCause {
        &self.cause
    }
}

/// The hand-off to the git rollback (forge issue): everything needed to find and revert the
/// offending commits, and to write the PR.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRollout {
    pub namespace: String,
    pub name: String,
    /// Revision of the stable template (the revert goes back to it).
    pub stable_revision: Option<String>,
    pub failed_revision: String,
    pub failed_template_hash: String,
    /// Repo files the failed Deployment was rendered from.
    pub provenance: Vec<String>,
    /// One line: why.
    pub reason: String,
    pub verdict: FailedVerdict,
}

/// Summary of an analysis verdict as recorded in the status.
pub fn summarize(step: i32, template: &str, run_id: &str, v: &Verdict) -> AnalysisSummary {
    use crate::analysis::Outcome;
    AnalysisSummary {
        step,
        template: template.to_owned(),
        run_id: run_id.to_owned(),
        verdict: match v.outcome {
            Outcome::Pass => VerdictOutcome::Pass,
            Outcome::Marginal => VerdictOutcome::Marginal,
            Outcome::Fail => VerdictOutcome::Fail,
            Outcome::Inconclusive => VerdictOutcome::Inconclusive,
        },
        score: if v.score.is_finite() { v.score } else { 0.0 },
        reason: v.reason.clone(),
        metrics: v
            .metrics
            .iter()
            .map(|m| crate::crd::MetricSummary {
                name: m.name.clone(),
                result: m.result.as_str().to_owned(),
                canary: m.canary.map(|s| s.median).filter(|x| x.is_finite()),
                baseline: m.baseline.map(|s| s.median).filter(|x| x.is_finite()),
            })
            .collect(),
    }
}
