//! `render`: a repository tree + a bundle path → the exact, deterministic set of objects the
//! cluster should have (`Desired`), each with provenance and a sha256 identity; or every error
//! found, each naming file and line. Pure: reads only through [`FileTree`], writes nothing.
//!
//! Two phases: *load* reads and parses every bundle and manifest reachable from the root bundle
//! (learning the scope of kinds defined by CRDs on the way); *evaluate* then applies namespaces
//! and patches bundle by bundle, innermost first, and checks the result.

mod bundle;
mod canonical;
mod error;
mod finish;
mod git;
mod load;
mod patch;
mod scalar;
mod scope;
mod tree;
mod validate;
mod yaml;

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod freeze_tests;
#[cfg(test)]
mod tests;

pub use bundle::{BUNDLE_API_VERSION, BUNDLE_FILE, BundleFreeze};
pub use canonical::{hash, kind_rank, write_canonical};
pub use error::{ErrorKind, RenderError, RenderErrors};
pub use git::GitTree;
pub use scope::{Scopes, discover};
pub use tree::{Entry, FileTree, FsTree, MemTree, join, resolve};
pub use validate::{
    is_dns_label, is_dns_subdomain, key_problem, label_value_problem, name_problem,
};

use crate::limits::RenderLimits;
use serde_json::Value;
use std::fmt;

/// Limits and context of one render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Files larger than this are refused (default 4 MiB, `limits.max_file_bytes`).
    pub max_file_bytes: u64,
    /// Renders with more objects than this are refused (default 50,000, `limits.max_objects`).
    pub max_objects: usize,
    /// Name of the ConfigRepo, written to the `fledge.dev/config-repo` label of every object.
    pub config_repo: Option<String>,
    /// Known scopes of kinds (built-in table by default; add discovery when a cluster is at hand).
    pub scopes: Scopes,
    /// The other budgets of a render (`max_file_bytes` and `max_objects` above take the
    /// smaller of the two).
    pub limits: RenderLimits,
    /// Namespace of a namespaced object that neither its file nor any bundle gives one:
    /// `default`, as `kubectl apply` does (the API server itself would refuse the object).
    pub default_namespace: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            max_file_bytes: 4 << 20,
            max_objects: 50_000,
            config_repo: None,
            scopes: Scopes::builtin(),
            limits: RenderLimits::default(),
            default_namespace: "default".into(),
        }
    }
}

/// Identity of an object in a cluster: `(group, kind, namespace, name)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gk = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        if self.namespace.is_empty() {
            write!(f, "{gk}/{}", self.name)
        } else {
            write!(f, "{gk} {}/{}", self.namespace, self.name)
        }
    }
}

/// One object of the desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedObject {
    pub key: ObjectKey,
    pub api_version: String,
    /// The object as it will be applied (fledge's label and annotation included).
    pub object: Value,
    /// Repository files that produced or patched the object, sorted.
    pub sources: Vec<String>,
    /// sha256 of the canonical JSON of `object`.
    pub hash: String,
}

/// The result of a successful render.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Objects in apply order (kind rank, namespace, name).
    pub objects: Vec<RenderedObject>,
    /// Number of files read (bundles and manifests).
    pub files: usize,
    /// The root bundle's `freeze` field (the andon cord pulled from git).
    pub freeze: Option<BundleFreeze>,
}

/// Renders the bundle at `path` (a directory holding `fledge.yaml`, the bundle file itself, or a
/// plain directory of manifests, taken as a bundle that includes it).
pub fn render(
    tree: &dyn FileTree,
    path: &str,
    opts: &RenderOptions,
) -> Result<Desired, RenderErrors> {
    let limits = opts.limits.clone();
    let mut loader = load::Loader::new(tree, opts, limits.clone());
    let root = loader.root(path)?;
    let root = loader.load_root(root);
    let load::Loader {
        mut errors,
        files,
        scopes,
        freeze,
        ..
    } = loader;
    let Some(root) = root else {
        return Err(finish_errors(errors));
    };
    let mut spend = patch::Spend {
        limits: &limits,
        ops_left: limits.max_patch_ops,
    };
    let objects = patch::evaluate(root, &scopes, &mut spend, &mut errors);
    let rendered = finish::finish(objects, &scopes, opts, &limits, &mut errors);
    if !errors.is_empty() {
        return Err(finish_errors(errors));
    }
    Ok(Desired {
        objects: rendered,
        files: files.len(),
        freeze,
    })
}

fn finish_errors(mut errors: Vec<RenderError>) -> RenderErrors {
    errors.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    errors.dedup();
    RenderErrors(errors)
}

/// Whether a value is an object fledge would accept from a manifest (identity validated as the
/// API server would). Used by `--name` style checks outside the renderer.
pub fn check_object(v: &Value) -> Result<(), ErrorKind> {
    validate::check_object(v, 1)
}
