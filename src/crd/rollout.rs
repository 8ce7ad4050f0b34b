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
    printcolumn = r#"{"name":"Step","type":"integer","jsonPath":".status.currentStep"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.actualWeight"}"#,
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
    "rule": "(has(self.setWeight) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.pause) ? 1 : 0) == 1",
    "message": "a step sets exactly one of setWeight, analysis, pause"
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
}

/// Observed state of a rollout. All state lives here, so a restarted agent resumes exactly where
/// it was.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the rollout is.
    #[serde(default)]
    pub phase: Phase,
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
    /// Index of the step being run (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// Canary weight the steps asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    /// Canary weight the traffic router reports it achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_weight: Option<i32>,
    /// Verdicts of the analysis steps run for the current canary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisSummary>,
    /// URL of the revert pull request opened after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_pull_request: Option<String>,
    /// Human-readable state, e.g. `canary 10% · analysis 98/100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Available`, `Progressing`, `Analysing`, `RolledBack`…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The newest desired template handed over by sync (written by field manager `fledge-sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<RolloutHandoff>,
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
    /// The desired PodTemplateSpec.
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

/// The outcome of one analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSummary {
    /// Step index.
    pub step: i32,
    /// Template used.
    pub template: String,
    /// `Pass`, `Marginal`, `Fail` or `Inconclusive`.
    pub verdict: String,
    /// Score 0–100.
    pub score: f64,
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
