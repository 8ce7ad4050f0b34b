//! Names fledge writes into the cluster: field manager, labels, annotations, condition reasons.
//! Kept in one place so that every module (and every test) agrees on them.

/// Field manager for every server-side apply fledge makes.
pub const FIELD_MANAGER: &str = "fledge";

/// API group of fledge's custom resources.
pub const GROUP: &str = "fledge.dev";

/// Label telling workloads apart: `stable`, `canary` or `baseline`.
pub const TRACK_LABEL: &str = "fledge.dev/track";

/// Label naming the `ConfigRepo` an object was applied from.
pub const CONFIG_REPO_LABEL: &str = "fledge.dev/config-repo";

/// Annotation holding the repository path(s) an object was rendered from.
pub const SOURCE_PATH_ANNOTATION: &str = "fledge.dev/source-path";

/// Annotation holding the sha256 of the object as rendered (its identity for "did it change").
pub const CONTENT_HASH_ANNOTATION: &str = "fledge.dev/content-hash";

/// Annotation that protects an object from pruning when set to `disabled`.
pub const PRUNE_ANNOTATION: &str = "fledge.dev/prune";

/// Annotation on a `ConfigRepo` that allows pruning more than `maxPruneFraction` in one go.
pub const ALLOW_MASS_PRUNE_ANNOTATION: &str = "fledge.dev/allow-mass-prune";

/// Annotation on a Deployment: sha256 of the pod template (`spec.template`) it runs. Sync and
/// the rollout engine compare it with git's to tell a template change from any other change.
pub const TEMPLATE_HASH_ANNOTATION: &str = "fledge.dev/template-hash";

/// Annotation choosing how an object is applied: `run-once` (applied, then left alone until git
/// changes it: gone from the cluster with the same content is done, not drift; Jobs behave so
/// without it).
pub const APPLY_POLICY_ANNOTATION: &str = "fledge.dev/apply-policy";

/// Field manager sync uses to record a template hand-off on a Rollout's status.
pub const HANDOFF_FIELD_MANAGER: &str = "fledge-sync";

/// Field manager of the rollout engine (canary, baseline, the stable template, route weights).
pub const ROLLOUT_FIELD_MANAGER: &str = "fledge-rollout";

/// Label selector (the `kube` syntax) for objects a ConfigRepo manages.
pub const MANAGED_SELECTOR: &str = CONFIG_REPO_LABEL;

/// Field manager of `fledge freeze`/`unfreeze` on `ConfigRepo.spec.freeze`, and of sync's early
/// write of `status.gitFreeze` (before anything of a freezing commit is applied).
pub const FREEZE_FIELD_MANAGER: &str = "fledge-freeze";
