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
