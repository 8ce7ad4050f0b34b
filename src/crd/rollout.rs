//! `Rollout`: how changes to one Deployment's pod template go out (steps, traffic, analysis) and
//! where that rollout stands.

use super::common::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Progressive delivery for one Deployment. The Deployment stays a plain Deployment in git; when
/// its pod template changes, fledge runs the new template as `<name>-canary` beside a fresh
/// `<name>-baseline` of the stable template, steps traffic up, and gates each step on metrics.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fledge.dev",
    doc = "Progressive delivery for one Deployment: canary beside a fresh baseline, traffic stepped up, each step gated by metrics, failures reverted in git.",
    version = "v1alpha1",
    kind = "Rollout",
    plural = "rollouts",
    shortname = "fro",
    category = "fledge",
    namespaced,
    status = "RolloutStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.stepProgress"}"#,
    printcolumn = r#"{"name":"Weight","type":"string","description":"Canary weight, set/actual (percent)","jsonPath":".status.weight"}"#,
    printcolumn = r#"{"name":"Score","type":"number","description":"Score of the newest analysis","jsonPath":".status.lastScore"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason","priority":1}"#,
    printcolumn = r#"{"name":"Stable","type":"string","jsonPath":".status.stableRevision","priority":1}"#,
    printcolumn = r#"{"name":"Canary","type":"string","jsonPath":".status.canaryRevision","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The workload this rollout governs.
    pub target_ref: TargetRef,
    /// Name of the Service in front of the workload (its selector must not pin the track).
    #[schemars(length(min = 1))]
    pub service: String,
    /// How traffic is split between stable, canary and baseline.
    #[serde(default)]
    pub traffic: TrafficSpec,
    /// Run a fresh copy of the stable template beside the canary, same size, so metrics compare
    /// like with like (same age, warm-up and traffic share).
    #[serde(default = "default_true")]
    pub baseline: bool,
    /// How long the canary may take to become available before the rollout fails (Go duration).
    #[serde(default = "default_progress_deadline")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub progress_deadline: String,
    /// Steps run in order for every new pod template. Without steps the change is promoted at once.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What happens in git when the rollout fails.
    #[serde(default)]
    pub rollback: RolloutRollbackSpec,
}

fn default_true() -> bool {
    true
}
fn default_progress_deadline() -> String {
    "10m".into()
}

/// Reference to the governed workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Kind of the workload; only `Deployment` is supported.
    pub kind: TargetKind,
    /// Name of the workload, in the Rollout's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Workload kinds a Rollout can govern.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TargetKind {
    Deployment,
}

/// Traffic router. Exactly one of the fields is set; `replicas` is the default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.replicas) ? 1 : 0) + (has(self.istio) ? 1 : 0) + (has(self.gatewayAPI) ? 1 : 0) == 1",
    "message": "set exactly one of replicas, istio, gatewayAPI"
}]))]
pub struct TrafficSpec {
    /// Split by pod counts behind the one Service: weight ≈ canary pods / all pods. Works on any
    /// cluster, with coarse steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasTraffic>,
    /// Split with an Istio VirtualService over `<name>-stable`, `-canary` and `-baseline` Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTraffic>,
    /// Split with Gateway API HTTPRoute `backendRefs` weights.
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiTraffic>,
}

impl Default for TrafficSpec {
    fn default() -> Self {
        Self {
            replicas: Some(ReplicasTraffic {}),
            istio: None,
            gateway_api: None,
        }
    }
}

/// Replica-count traffic splitting (no settings).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ReplicasTraffic {}

/// Istio traffic splitting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTraffic {
    /// Name of the VirtualService whose route weights fledge sets.
    pub virtual_service: String,
}

/// Gateway API traffic splitting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiTraffic {
    /// Name of the HTTPRoute whose `backendRefs` weights fledge sets.
    #[serde(rename = "httpRoute")]
    pub http_route: String,
}

/// One step of a rollout. Exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.setWeight) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) == 1",
    "message": "a step sets exactly one of setWeight, analysis, pause, setCanaryScale"
}]))]
pub struct Step {
    /// Percentage of traffic (0–100) sent to the canary (and as much to the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    /// Judge the canary with an AnalysisTemplate before going on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
    /// Wait: for `duration`, or until `fledge promote` when no duration is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Size the canary (and the baseline) independently of its traffic weight. Only with the
    /// `istio` or `gatewayAPI` routers: with the `replicas` router the pod count *is* the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScaleStep>,
}

/// A `setCanaryScale` step. Exactly one field is set; it stays in force for the following steps
/// until the next `setCanaryScale`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.replicas) ? 1 : 0) + (has(self.weight) ? 1 : 0) + (has(self.matchTrafficWeight) ? 1 : 0) == 1",
    "message": "setCanaryScale sets exactly one of replicas, weight, matchTrafficWeight"
}]))]
pub struct SetCanaryScaleStep {
    /// Run exactly this many canary pods (and as many baseline pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Run this percentage (0–100) of the Deployment's replicas as canary pods, rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<i32>,
    /// Go back to the default: the canary's pod count follows its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// An analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStep {
    /// Name of the AnalysisTemplate, in the Rollout's namespace.
    #[schemars(length(min = 1))]
    pub template: String,
    /// Time to let the canary warm up before samples count (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub warmup: Option<String>,
    /// Length of the analysis window (Go duration).
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub duration: String,
    /// Values for the template's variables, in addition to service, namespace, track, revision.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<String, String>,
}

/// A pause step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to wait (Go duration). Without it, the rollout waits for `fledge promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub duration: Option<String>,
}

/// Git rollback for this rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRollbackSpec {
    /// Revert the offending commits in git (per the ConfigRepo's rollback mode) after a failure.
    #[serde(default = "default_true")]
    pub git_revert: bool,
}

impl Default for RolloutRollbackSpec {
    fn default() -> Self {
        Self { git_revert: true }
    }
}

/// Where a rollout is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Stable is the desired template; nothing in flight.
    #[default]
    Healthy,
    /// A canary is running through the steps.
    Progressing,
    /// Waiting at a pause step or a marginal verdict for a human.
    Paused,
    /// Applying the canary template to stable.
    Promoting,
    /// Stopped by a failure or `fledge abort`; traffic is going back to stable.
    Aborted,
    /// Traffic is on stable, canary and baseline are gone, and git rollback has been started.
    RolledBack,
    /// Rolled back in the cluster; the revert pull request in git is open.
    RollbackPending,
}

/// What sync handed to the rollout engine: the desired pod template of the target from git.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutHandoff {
    /// sha256 (hex) of the canonical JSON of the desired `spec.template`.
    pub template_hash: String,
    /// Git commit the template comes from.
    pub revision: String,
    /// Repo files the Deployment was rendered from (for the git rollback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provenance: Vec<String>,
    /// The desired PodTemplateSpec (x-kubernetes-preserve-unknown-fields).
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: serde_json::Value,
    /// Desired replicas from git, if set there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Why a rollout is paused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PauseReason {
    /// At a `pause` step: until its duration has passed, or until `promote` without one.
    PauseStep,
    /// An analysis scored between `marginal` and `pass`: a human decides (`promote` or `abort`).
    Marginal,
    /// An analysis could not judge the canary (metrics backend down past its retry budget, or too
    /// little data). Traffic is on stable; the step is retried with backoff or on `retry`.
    Inconclusive,
    /// Paused by `fledge pause`; `resume` continues.
    Manual,
    /// The ConfigRepo is frozen (`fledge freeze`, or `freeze` in the bundle); the unfreeze
    /// continues. Traffic stays where it was.
    Frozen,
}

/// Why the canary is being (or was) taken down.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TeardownCause {
    /// An analysis failed the canary.
    AnalysisFailed,
    /// The canary did not become available within `progressDeadline`.
    ProgressDeadlineExceeded,
    /// `fledge abort`.
    Aborted,
    /// Git changed the template again mid-rollout; the rollout restarts from the new template.
    Superseded,
    /// Git went back to the stable template mid-rollout; nothing to roll out any more.
    RevertedInGit,
    /// The ConfigRepo was frozen with `abort`: not a verdict on the canary (no git revert); the
    /// change goes out again after the unfreeze.
    Frozen,
}

/// The canary's teardown in progress (or done): traffic to stable first, then canary and
/// baseline removed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Teardown {
    /// Why.
    pub cause: TeardownCause,
    /// One line for humans, e.g. the failing metric.
    pub message: String,
}

/// The analysis of the current step: its window and how far it got.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// Identity of the run, `<attempt>-<step>-<try>`: the controller keeps one sampler per id.
    pub run_id: String,
    /// Step index of the analysis.
    pub step: i32,
    /// AnalysisTemplate used.
    pub template: String,
    /// Start of the judged window (when the canary served at the step's weight, plus warm-up),
    /// RFC 3339. Unset until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End of the judged window, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Samples collected so far (per track, as reported by the sampler).
    #[serde(default)]
    pub samples: u32,
    /// Per-metric results over the samples so far (canary and baseline medians), updated every
    /// interval while the window runs; the verdict comes at the window's end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSummary>,
    /// Automatic retries made after inconclusive results.
    #[serde(default)]
    pub retries: u32,
    /// When the next automatic retry may start (after an inconclusive result), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// Observed state of a rollout. All state lives here, so a restarted agent resumes exactly where
/// it was. Times are written only when something starts, never on every pass.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The newest desired template handed over by sync (written by field manager `fledge-sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<RolloutHandoff>,
    /// Where the rollout is.
    #[serde(default)]
    pub phase: Phase,
    /// Why the rollout is paused (with phase `Paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// One line on why the rollout is where it is (pause, abort, failure, ignored request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Counts the times the steps started from the first one (a new template, a changed step
    /// list, a retry). `(attempt, phase order, currentStep)` never decreases.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: i64,
    /// Git commit of the stable template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Git commit of the canary template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// Hash of the stable pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_template_hash: Option<String>,
    /// Hash of the canary pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_template_hash: Option<String>,
    /// Template hash that failed; not tried again until git changes the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_template_hash: Option<String>,
    /// Git commit of the template that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<String>,
    /// Hash of the step list the current rollout runs; a changed list starts the steps over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_hash: Option<String>,
    /// Index of the step being run (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// The step being run as `k/n` (1-based), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_progress: Option<String>,
    /// When the current step started (RFC 3339); a pause ends at this time plus its duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// Canary weight the steps asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    /// Canary weight the traffic router reports it achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_weight: Option<i32>,
    /// Canary weight as `set/actual` percent (e.g. `10/8`), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    /// Baseline weight asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_baseline_weight: Option<i32>,
    /// Baseline weight the traffic router reports it achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_baseline_weight: Option<i32>,
    /// The analysis of the current step, while it runs or waits for a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunStatus>,
    /// Score (0–100) of the newest analysis verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_score: Option<f64>,
    /// Verdicts of the analysis steps run for the current canary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisSummary>,
    /// The canary's teardown: why traffic went back to stable and canary and baseline go away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<Teardown>,
    /// The last `fledge.dev/request` annotation value (`<verb>@<nonce>`) acted on; a request is
    /// acted on once, when its value differs from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
    /// URL of the revert pull request opened after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_pull_request: Option<String>,
    /// Human-readable state, e.g. `canary 10% · analysis 98/100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Available`, `Progressing`, `Analysing`, `RolledBack`…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The outcome of an analysis, as recorded in the status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VerdictOutcome {
    /// Score at or above `pass`.
    Pass,
    /// Score between `marginal` and `pass`: a human decides.
    Marginal,
    /// Score below `marginal`, or a critical metric failed.
    Fail,
    /// The canary could not be judged (backend errors, too little data).
    #[default]
    Inconclusive,
}

/// The outcome of one analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSummary {
    /// Step index.
    pub step: i32,
    /// Template used.
    pub template: String,
    /// The run this verdict came from (see `analysis.runId`).
    #[serde(default)]
    pub run_id: String,
    /// `Pass`, `Marginal`, `Fail` or `Inconclusive`.
    pub verdict: VerdictOutcome,
    /// Score 0–100.
    pub score: f64,
    /// Why, in one line (e.g. `critical metric error-ratio high`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Per-metric results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSummary>,
}

/// One metric's result within an analysis summary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    /// Metric name.
    pub name: String,
    /// `pass`, `high`, `low`, `nodata` or `error`.
    pub result: String,
    /// Median of the canary samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<f64>,
    /// Median of the baseline samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
}
