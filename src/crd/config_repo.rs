//! `ConfigRepo`: which repository, branch and path a cluster follows, and how fledge syncs it.

use super::common::{Condition, SecretRef};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A config repository this cluster follows. fledge fetches `url` at `branch`, renders the bundle
/// at `path` and keeps the cluster equal to it: applying changes, pruning what git removed and
/// healing drift. Workload changes covered by a `Rollout` go out progressively.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fledge.dev",
    doc = "A config repository this cluster follows: fledge keeps the cluster equal to the bundle at spec.path on spec.branch of spec.url.",
    version = "v1alpha1",
    kind = "ConfigRepo",
    plural = "configrepos",
    shortname = "repo",
    category = "fledge",
    status = "ConfigRepoStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url","priority":1}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.path"}"#,
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.appliedCommit"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Frozen","type":"string","jsonPath":".status.frozen.message"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRepoSpec {
    /// Repository URL: `https://…`, `ssh://…`, `git@host:org/repo.git`, `file://…` or a path on
    /// the agent's file system.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Branch to follow.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Directory inside the repository holding this cluster's `fledge.yaml` bundle, e.g.
    /// `clusters/production`.
    #[schemars(length(min = 1))]
    pub path: String,
    /// How often to poll the repository (Go duration, e.g. `1m`). Webhooks trigger a fetch
    /// sooner.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = crate::duration::PATTERN))]
    pub interval: String,
    /// Credentials for the repository: a Secret with `token` (https) or `identity` (ssh private
    /// key) and optionally `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Delete objects that fledge applied earlier and that are no longer in the repository.
    #[serde(default = "default_true")]
    pub prune: bool,
    /// Largest fraction of the inventory (0–1) that one reconcile may prune. Larger prunes are
    /// refused unless the ConfigRepo is annotated `fledge.dev/allow-mass-prune: "true"`.
    #[serde(default = "default_max_prune_fraction")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_prune_fraction: f64,
    /// Re-apply managed objects when someone else changes or deletes them.
    #[serde(default = "default_true")]
    pub self_heal: bool,
    /// Take ownership of fields other field managers own (server-side apply `force`).
    #[serde(default)]
    pub force: bool,
    /// Stop reconciling this repository until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Where pull requests and commit statuses go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeSpec>,
    /// What fledge does in git when a canary fails.
    #[serde(default)]
    pub rollback: RepoRollbackSpec,
    /// The andon cord, pulled with `fledge freeze` (written by its own field manager
    /// `fledge-freeze`, so re-applying the ConfigRepo does not lift it): no new rollout starts,
    /// in-flight canaries pause (or abort), plain configuration still syncs unless `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<super::FreezeSpec>,
}

fn default_branch() -> String {
    "main".into()
}
fn default_interval() -> String {
    "1m".into()
}
fn default_true() -> bool {
    true
}
fn default_max_prune_fraction() -> f64 {
    0.5
}

/// The forge hosting the repository: set exactly one of `github` or `gitea`. When `forge` is
/// unset and `url` is on `github.com`, GitHub is used with the owner and repository from the URL
/// and the token of `secretRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForgeSpec {
    /// GitHub or GitHub Enterprise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubForge>,
    /// Gitea or Forgejo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitea: Option<GiteaForge>,
}

/// A Gitea or Forgejo repository fledge reports to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GiteaForge {
    /// Base URL of the Gitea or Forgejo server, e.g. `https://gitea.example.com` (the API is
    /// under `/api/v1`).
    #[schemars(length(min = 1))]
    pub url: String,
    /// Owner (user or organisation) of the repository.
    #[schemars(length(min = 1))]
    pub owner: String,
    /// Repository name.
    #[schemars(length(min = 1))]
    pub repo: String,
    /// Secret key holding the API token (default key `token`).
    pub token_secret_ref: SecretRef,
}

/// A GitHub repository fledge reports to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitHubForge {
    /// Owner (user or organisation) of the repository.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// Secret key holding the API token (default key `token`).
    pub token_secret_ref: SecretRef,
    /// API base URL, for GitHub Enterprise (default `https://api.github.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Git rollback behaviour for the whole repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoRollbackSpec {
    /// `pullRequest` (default): push a revert branch and open a pull request; `push`: push the
    /// revert straight to the tracked branch; `none`: roll back in the cluster only.
    #[serde(default)]
    pub mode: RollbackMode,
}

/// How a failed canary is reverted in git.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RollbackMode {
    #[default]
    PullRequest,
    Push,
    None,
}

/// Observed state of a ConfigRepo. Deterministic: the same cluster and commit give the same
/// status, so writing it does not trigger another reconcile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRepoStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Commit last fetched from the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_commit: Option<String>,
    /// Commit whose render was last applied completely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// Objects fledge manages for this repository: the only ones it may prune.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// Name of the ConfigMap holding the inventory when it is too large for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_config_map: Option<String>,
    /// Object counts by state after the last reconcile.
    #[serde(default)]
    pub objects: ObjectCounts,
    /// Managed objects the last reconcile found changed or deleted outside git (the running
    /// total is the `fledge_drift_total` metric).
    #[serde(default)]
    pub drift_count: i64,
    /// Aggregated health of the managed objects: `Healthy`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The first errors of the last reconcile, each naming its object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ObjectError>,
    /// The freeze in effect (`fledge freeze`, or the bundle's `freeze` field): who, why, since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<super::Frozen>,
    /// The `freeze` field of the bundle at the fetched commit (kept while git is unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_freeze: Option<super::Frozen>,
    /// `Ready`, `Fetched`, `Rendered`, `Applied`, `Healthy`, and `Frozen` while frozen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One managed object.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// API group (empty for the core group).
    #[serde(default)]
    pub group: String,
    /// API version the object was applied with.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What fledge last saw of the object after applying it: `m` + a hash of the fields fledge
    /// owns (its managedFields entry); someone changing one of those fields is drift. Empty
    /// while a create is recorded ahead of the create. Run-once objects (Jobs) add `#` and the
    /// content hash they ran with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub observed: String,
}

impl InventoryEntry {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Object counts by state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCounts {
    /// Objects in the render.
    #[serde(default)]
    pub desired: i64,
    /// Created by the last reconcile.
    #[serde(default)]
    pub created: i64,
    /// Updated by the last reconcile.
    #[serde(default)]
    pub updated: i64,
    /// Already as desired.
    #[serde(default)]
    pub unchanged: i64,
    /// Pruned by the last reconcile.
    #[serde(default)]
    pub pruned: i64,
    /// Failed to apply or prune.
    #[serde(default)]
    pub failed: i64,
}

/// An error about one object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectError {
    /// `kind/namespace/name` of the object, or the file for render errors.
    pub object: String,
    /// What went wrong.
    pub message: String,
}
