//! `AnalysisTemplate`: the metrics, judges and scoring that gate a rollout step (or a
//! `fledge analyze` run from any pipeline).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How to judge a canary: Prometheus queries evaluated per track, judged against thresholds
/// (canary alone) and/or against the baseline (Mann–Whitney U with a Hodges–Lehmann interval),
/// then scored by weighted groups. A template holds no state, so it has no status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fledge.dev",
    doc = "Metrics, judges and scoring that gate a rollout step: thresholds on the canary and canary-versus-baseline comparisons over Prometheus queries.",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    plural = "analysistemplates",
    shortname = "fat",
    category = "fledge",
    namespaced,
    printcolumn = r#"{"name":"Interval","type":"string","jsonPath":".spec.interval"}"#,
    printcolumn = r#"{"name":"Pass","type":"number","jsonPath":".spec.score.pass"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// The Prometheus to query.
    pub prometheus: PrometheusSpec,
    /// One sample per track per interval (Go duration).
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub interval: String,
    /// A metric with fewer samples than this in either judged track is `nodata`.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 1))]
    pub min_samples: u32,
    /// Default values of user variables usable in queries as `{{name}}`; a rollout step or
    /// `fledge analyze --set` overrides them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The metrics to judge.
    #[schemars(length(min = 1))]
    pub metrics: Vec<MetricSpec>,
    /// Metric groups and their weights (summing to 100). Metrics without a group belong to
    /// `default`; when no groups are listed every group weighs the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupSpec>,
    /// Score thresholds.
    #[serde(default)]
    pub score: ScoreSpec,
    /// Retry policy for query errors. Errors are never a pass and never a metric failure.
    #[serde(default)]
    pub on_error: OnErrorSpec,
}

fn default_interval() -> String {
    "30s".into()
}
fn default_min_samples() -> u32 {
    5
}

/// Where Prometheus is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 1))]
    pub address: String,
    /// Timeout of one query (Go duration, default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub timeout: Option<String>,
}

/// One metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// Unique name of the metric in this template.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Group the metric scores in (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A failing critical metric fails the whole analysis (score 0).
    #[serde(default)]
    pub critical: bool,
    /// PromQL returning one value per evaluation. Variables: `{{service}}`, `{{namespace}}`,
    /// `{{track}}`, `{{revision}}` and the template's `vars`; values are escaped for use inside
    /// double-quoted label matchers.
    #[schemars(length(min = 1))]
    pub query: String,
    /// Judge each canary sample against fixed bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdSpec>,
    /// Judge canary samples against baseline samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSpec>,
}

/// Fixed bounds for canary samples.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdSpec {
    /// Samples below this fail (`low`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Samples above this fail (`high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How many samples may be out of bounds before the metric fails (default 0).
    #[serde(default)]
    pub failure_limit: u32,
}

/// Canary-versus-baseline comparison.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareSpec {
    /// Which direction of change is bad: `increase` (errors, latency), `decrease` (throughput,
    /// success rate) or `either`.
    pub fail: Direction,
    /// Relative change (0.1 = 10% of the baseline median) tolerated even when significant.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub tolerance: f64,
}

/// Direction of a change that counts as a failure.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

/// A weighted metric group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSpec {
    /// Group name, as used by metrics' `group`.
    pub name: String,
    /// Weight of the group in the score (all weights sum to 100).
    #[schemars(range(min = 0.0, max = 100.0))]
    pub weight: f64,
}

/// Score thresholds (0–100).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScoreSpec {
    /// Score at or above which the analysis passes.
    #[serde(default = "default_pass")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub pass: f64,
    /// Score below which the analysis fails; between `marginal` and `pass` it is marginal and
    /// waits for a human.
    #[serde(default = "default_marginal")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub marginal: f64,
}

impl Default for ScoreSpec {
    fn default() -> Self {
        Self {
            pass: default_pass(),
            marginal: default_marginal(),
        }
    }
}

fn default_pass() -> f64 {
    95.0
}
fn default_marginal() -> f64 {
    75.0
}

/// Retries of failed queries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnErrorSpec {
    /// Retries of one failed query before its sample counts as an error.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff between retries, doubled each time (Go duration).
    #[serde(default = "default_backoff")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub backoff: String,
}

impl Default for OnErrorSpec {
    fn default() -> Self {
        Self {
            retries: default_retries(),
            backoff: default_backoff(),
        }
    }
}

fn default_retries() -> u32 {
    3
}
fn default_backoff() -> String {
    "5s".into()
}
