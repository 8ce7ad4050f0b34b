//! `render`: a repository tree + a bundle path → the exact, deterministic set of objects the
//! cluster should have (`Desired`), each with provenance and a sha256 identity; or every error
//! found, each naming file and line. Pure: reads only through [`FileTree`], writes nothing.
//!
//! Two phases: *load* reads and parses every bundle and manifest reachable from the root bundle
//! (learning the scope of kinds defined by CRDs on the way); *evaluate* then applies namespaces
//! and patches bundle by bundle, innermost first, and checks the result.

mod canonical;
mod error;
mod scope;
mod tree;
mod yaml;

#[cfg(test)]
mod tests;

pub use canonical::{hash, kind_rank, write_canonical};
pub use error::{ErrorKind, RenderError, RenderErrors};
pub use scope::{Scopes, discover};
pub use tree::{Entry, FileTree, FsTree, MemTree, join, resolve};

use crate::labels::{CONFIG_REPO_LABEL, SOURCE_PATH_ANNOTATION};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// File name of a bundle.
pub const BUNDLE_FILE: &str = "fledge.yaml";
/// apiVersion of a bundle.
pub const BUNDLE_API_VERSION: &str = "fledge.dev/v1alpha1";
const MAX_DEPTH: usize = 32;

/// Limits and context of one render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Files larger than this are refused (default 4 MiB).
    pub max_file_bytes: u64,
    /// Renders with more objects than this are refused (default 50,000).
    pub max_objects: usize,
    /// Name of the ConfigRepo, written to the `fledge.dev/config-repo` label of every object.
    pub config_repo: Option<String>,
    /// Known scopes of kinds (built-in table by default; add discovery when a cluster is at hand).
    pub scopes: Scopes,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            max_file_bytes: 4 << 20,
            max_objects: 50_000,
            config_repo: None,
            scopes: Scopes::builtin(),
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
}

/// Renders the bundle at `path` (a directory holding `fledge.yaml`, the bundle file itself, or a
/// plain directory of manifests, taken as a bundle that includes it).
pub fn render(
    tree: &dyn FileTree,
    path: &str,
    opts: &RenderOptions,
) -> Result<Desired, RenderErrors> {
    let mut loader = Loader {
        tree,
        opts,
        errors: Vec::new(),
        files: BTreeSet::new(),
        scopes: opts.scopes.clone(),
        objects: 0,
    };
    let root = loader.root(path)?;
    let root = loader.load_bundle(root, &mut Vec::new());
    let Loader {
        mut errors,
        files,
        scopes,
        ..
    } = loader;
    let Some(root) = root else {
        return Err(RenderErrors(errors));
    };
    let objects = evaluate(root, &scopes, &mut errors);
    let rendered = finish(objects, &scopes, opts, &mut errors);
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        errors.dedup();
        return Err(RenderErrors(errors));
    }
    Ok(Desired {
        objects: rendered,
        files: files.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Phase 1: load

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BundleSpec {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<Value>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    patches: Vec<PatchSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchSpec {
    target: TargetSpec,
    ops: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TargetSpec {
    #[serde(default)]
    api_version: Option<String>,
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(av) = &self.api_version {
            write!(f, " ({av})")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

/// A manifest document as read.
#[derive(Debug, Clone)]
struct Raw {
    value: Value,
    file: String,
    line: usize,
}

#[derive(Debug)]
enum Item {
    Object(Raw),
    Bundle(LoadedBundle),
}

#[derive(Debug)]
struct LoadedBundle {
    /// Path of the bundle file.
    path: String,
    /// Text of the bundle file (to find lines of patches).
    text: String,
    namespace: Option<String>,
    items: Vec<Item>,
    patches: Vec<PatchSpec>,
}

/// Where the root bundle comes from.
enum Root {
    File(String),
    Implicit(String),
}

struct Loader<'a> {
    tree: &'a dyn FileTree,
    opts: &'a RenderOptions,
    errors: Vec<RenderError>,
    files: BTreeSet<String>,
    scopes: Scopes,
    objects: usize,
}

impl Loader<'_> {
    fn err(&mut self, path: &str, line: Option<usize>, kind: ErrorKind) {
        self.errors
            .push(RenderError::at_line(self.tree.display(path), line, kind));
    }

    fn root(&mut self, path: &str) -> Result<Root, RenderError> {
        let normal = join("", path).map_err(|k| RenderError::at(path, k))?;
        let (resolved, entry) = resolve(self.tree, &normal)?;
        match entry {
            Entry::Dir => {
                let bundle = join(&resolved, BUNDLE_FILE).map_err(|k| RenderError::at(path, k))?;
                let (bundle, entry) = resolve(self.tree, &bundle)?;
                Ok(if matches!(entry, Entry::File { .. }) {
                    Root::File(bundle)
                } else {
                    Root::Implicit(resolved)
                })
            }
            Entry::File { .. } => Ok(Root::File(resolved)),
            _ => Err(RenderError::at(
                self.tree.display(&normal),
                ErrorKind::NotFound,
            )),
        }
    }

    fn read_text(&mut self, path: &str) -> Option<String> {
        let size = match self.tree.entry(path) {
            Ok(Entry::File { size }) => size,
            Ok(_) => {
                self.err(path, None, ErrorKind::NotFound);
                return None;
            }
            Err(e) => {
                self.err(path, None, ErrorKind::Io(e));
                return None;
            }
        };
        if size > self.opts.max_file_bytes {
            self.err(
                path,
                None,
                ErrorKind::FileTooLarge {
                    size,
                    limit: self.opts.max_file_bytes,
                },
            );
            return None;
        }
        let bytes = match self.tree.read(path) {
            Ok(b) => b,
            Err(e) => {
                self.err(path, None, ErrorKind::Io(e));
                return None;
            }
        };
        if bytes.len() as u64 > self.opts.max_file_bytes {
            self.err(
                path,
                None,
                ErrorKind::FileTooLarge {
                    size: bytes.len() as u64,
                    limit: self.opts.max_file_bytes,
                },
            );
            return None;
        }
        self.files.insert(path.to_owned());
        match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
                self.err(path, Some(line), ErrorKind::NotUtf8(at));
                None
            }
        }
    }

    fn load_bundle(&mut self, root: Root, stack: &mut Vec<String>) -> Option<LoadedBundle> {
        let (path, spec, text) = match root {
            Root::Implicit(dir) => {
                let spec = BundleSpec {
                    api_version: BUNDLE_API_VERSION.into(),
                    kind: "Bundle".into(),
                    metadata: None,
                    namespace: None,
                    include: vec![".".into()],
                    patches: vec![],
                };
                (
                    join(&dir, BUNDLE_FILE).unwrap_or_default(),
                    spec,
                    String::new(),
                )
            }
            Root::File(path) => {
                let text = self.read_text(&path)?;
                match yaml::parse_one::<BundleSpec>(&text) {
                    Ok(spec) => (path, spec, text),
                    Err(e) => {
                        self.err(
                            &path,
                            e.line,
                            ErrorKind::InvalidBundle(kind_message(&e.kind)),
                        );
                        return None;
                    }
                }
            }
        };
        if spec.api_version != BUNDLE_API_VERSION || spec.kind != "Bundle" {
            self.err(
                &path,
                Some(1),
                ErrorKind::InvalidBundle(format!(
                    "expected apiVersion {BUNDLE_API_VERSION} and kind Bundle, found {} {}",
                    spec.api_version, spec.kind
                )),
            );
            return None;
        }
        if let Some(ns) = &spec.namespace
            && !is_dns_label(ns)
        {
            let line = find_line(&text, "namespace:", 0);
            self.err(
                &path,
                line,
                ErrorKind::InvalidBundle(format!("namespace {ns:?} is not a valid namespace name")),
            );
        }
        if stack.len() >= MAX_DEPTH {
            self.err(&path, None, ErrorKind::TooDeep(MAX_DEPTH));
            return None;
        }
        stack.push(path.clone());
        let dir = tree::parent(&path).to_owned();
        let mut items = Vec::new();
        for include in &spec.include {
            let line = find_include_line(&text, include);
            let joined = match join(&dir, include) {
                Ok(j) => j,
                Err(k) => {
                    self.err(&path, line, k);
                    continue;
                }
            };
            let (resolved, entry) = match resolve(self.tree, &joined) {
                Ok(r) => r,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.err(&path, line, ErrorKind::IncludeNotFound(include.clone()));
                    continue;
                }
                Err(mut e) => {
                    if matches!(
                        e.kind,
                        ErrorKind::PathEscape { .. } | ErrorKind::SymlinkLoop
                    ) {
                        // Name the bundle that asked for it, and the link.
                        e.kind = match e.kind {
                            ErrorKind::PathEscape { path: target, why } => ErrorKind::PathEscape {
                                path: format!("{include} (via symlink {} -> {target})", e.path),
                                why,
                            },
                            k => k,
                        };
                        e.path = self.tree.display(&path);
                        e.line = line;
                    }
                    self.errors.push(e);
                    continue;
                }
            };
            match entry {
                Entry::Missing => {
                    self.err(&path, line, ErrorKind::IncludeNotFound(include.clone()))
                }
                Entry::Dir => self.include_dir(&resolved, &path, line, &mut items, stack),
                Entry::File { .. } => {
                    if resolved.rsplit('/').next() == Some(BUNDLE_FILE) {
                        self.nested(&resolved, &path, line, &mut items, stack);
                    } else if is_yaml(&resolved) {
                        self.load_manifests(&resolved, &mut items);
                    } else {
                        self.err(
                            &path,
                            line,
                            ErrorKind::InvalidBundle(format!(
                                "include {include:?} is not a .yaml or .yml file"
                            )),
                        );
                    }
                }
                Entry::Symlink { .. } => self.err(&path, line, ErrorKind::SymlinkLoop),
            }
        }
        stack.pop();
        Some(LoadedBundle {
            path,
            text,
            namespace: spec.namespace,
            items,
            patches: spec.patches,
        })
    }

    fn nested(
        &mut self,
        bundle: &str,
        parent: &str,
        line: Option<usize>,
        items: &mut Vec<Item>,
        stack: &mut Vec<String>,
    ) {
        if let Some(pos) = stack.iter().position(|b| b == bundle) {
            let mut chain: Vec<String> =
                stack[pos..].iter().map(|b| self.tree.display(b)).collect();
            chain.push(self.tree.display(bundle));
            self.err(parent, line, ErrorKind::Cycle(chain.join(" -> ")));
            return;
        }
        if let Some(b) = self.load_bundle(Root::File(bundle.to_owned()), stack) {
            items.push(Item::Bundle(b));
        }
    }

    /// Includes a directory: a nested bundle when it holds `fledge.yaml`, else its YAML files,
    /// recursively, in sorted order (hidden entries skipped).
    fn include_dir(
        &mut self,
        dir: &str,
        parent: &str,
        line: Option<usize>,
        items: &mut Vec<Item>,
        stack: &mut Vec<String>,
    ) {
        let bundle = if dir.is_empty() {
            BUNDLE_FILE.to_owned()
        } else {
            format!("{dir}/{BUNDLE_FILE}")
        };
        if matches!(self.tree.entry(&bundle), Ok(Entry::File { .. })) {
            self.nested(&bundle, parent, line, items, stack);
            return;
        }
        let mut names = match self.tree.list(dir) {
            Ok(n) => n,
            Err(e) => {
                self.err(dir, None, ErrorKind::Io(e));
                return;
            }
        };
        names.sort();
        for name in names {
            if name.starts_with('.') {
                continue;
            }
            let child = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let (resolved, entry) = match resolve(self.tree, &child) {
                Ok(r) => r,
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            match entry {
                Entry::Dir => self.include_dir(&resolved, parent, line, items, stack),
                Entry::File { .. } if is_yaml(&resolved) => self.load_manifests(&resolved, items),
                _ => {}
            }
        }
    }

    fn load_manifests(&mut self, path: &str, items: &mut Vec<Item>) {
        let Some(text) = self.read_text(path) else {
            return;
        };
        let (docs, errors) = yaml::parse_documents(&text);
        for e in errors {
            self.err(path, e.line, e.kind);
        }
        for doc in docs {
            let values = match doc.value {
                Value::Object(ref map)
                    if map.get("kind").and_then(Value::as_str) == Some("List") =>
                {
                    match map.get("items") {
                        Some(Value::Array(items)) => items.clone(),
                        Some(Value::Null) | None => vec![],
                        Some(other) => {
                            self.err(
                                path,
                                Some(doc.line),
                                ErrorKind::InvalidObject {
                                    doc: doc.index,
                                    message: format!(
                                        "List items is {}, expected a list",
                                        yaml::type_name(other)
                                    ),
                                },
                            );
                            continue;
                        }
                    }
                }
                v => vec![v],
            };
            for value in values {
                if let Err(kind) = check_object(&value, doc.index) {
                    self.err(path, Some(doc.line), kind);
                    continue;
                }
                self.objects += 1;
                if self.objects > self.opts.max_objects {
                    if self.objects == self.opts.max_objects + 1 {
                        self.err(
                            path,
                            Some(doc.line),
                            ErrorKind::TooManyObjects {
                                count: self.objects,
                                limit: self.opts.max_objects,
                            },
                        );
                    }
                    continue;
                }
                if value["kind"] == "CustomResourceDefinition" {
                    self.scopes.learn_crd(&value);
                }
                items.push(Item::Object(Raw {
                    value,
                    file: path.to_owned(),
                    line: doc.line,
                }));
            }
        }
    }
}

fn kind_message(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::Yaml(m) => m.clone(),
        other => other.to_string(),
    }
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// RFC 1123 label: what Kubernetes accepts as a namespace name.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// 1-based line of the `nth` line containing `needle`, if any.
fn find_line(text: &str, needle: &str, nth: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// 1-based line of an `include` entry: the first line at or after the `include:` key that
/// mentions it.
fn find_include_line(text: &str, include: &str) -> Option<usize> {
    let start = text
        .lines()
        .position(|l| l.trim_start().starts_with("include"))?;
    text.lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| l.contains(include))
        .map(|(i, _)| i + 1)
}

/// A manifest must be a mapping with string apiVersion and kind and a non-empty metadata.name.
fn check_object(v: &Value, doc: usize) -> Result<(), ErrorKind> {
    let Value::Object(map) = v else {
        return Err(ErrorKind::NotAnObject {
            doc,
            found: yaml::type_name(v),
        });
    };
    for field in ["apiVersion", "kind"] {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                return Err(ErrorKind::MissingField {
                    doc,
                    field: if field == "kind" {
                        "kind"
                    } else {
                        "apiVersion"
                    },
                });
            }
        }
    }
    match map.get("metadata") {
        Some(Value::Object(meta)) => match meta.get("name") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                return Err(ErrorKind::MissingField {
                    doc,
                    field: "metadata.name",
                });
            }
        },
        _ => {
            return Err(ErrorKind::MissingField {
                doc,
                field: "metadata.name",
            });
        }
    }
    if let Some(ns) = map["metadata"].get("namespace")
        && !ns.is_null()
        && !ns.as_str().is_some_and(is_dns_label)
    {
        return Err(ErrorKind::InvalidObject {
            doc,
            message: format!("metadata.namespace {ns} is not a valid namespace name"),
        });
    }
    for field in ["labels", "annotations"] {
        match map["metadata"].get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
            Some(_) => {
                return Err(ErrorKind::InvalidObject {
                    doc,
                    message: format!("metadata.{field} must map strings to strings"),
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 2: evaluate

/// An object during evaluation.
#[derive(Debug, Clone)]
struct Obj {
    value: Value,
    sources: BTreeSet<String>,
    file: String,
    line: usize,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// Consumes the loaded bundle, so each object exists once in memory (a render of 10,000 objects
/// would otherwise hold every object two or three times at its peak).
fn evaluate(mut bundle: LoadedBundle, scopes: &Scopes, errors: &mut Vec<RenderError>) -> Vec<Obj> {
    let mut objects = Vec::new();
    for item in std::mem::take(&mut bundle.items) {
        match item {
            Item::Object(raw) => objects.push(Obj {
                sources: BTreeSet::from([raw.file.clone()]),
                file: raw.file,
                line: raw.line,
                value: raw.value,
            }),
            Item::Bundle(inner) => objects.extend(evaluate(inner, scopes, errors)),
        }
    }
    if let Some(ns) = &bundle.namespace {
        for obj in &mut objects {
            let group = group_of(str_at(&obj.value, &["apiVersion"])).to_owned();
            let kind = str_at(&obj.value, &["kind"]).to_owned();
            let has_ns = !str_at(&obj.value, &["metadata", "namespace"]).is_empty();
            if !has_ns && scopes.namespaced(&group, &kind) == Some(true) {
                obj.value["metadata"]["namespace"] = Value::String(ns.clone());
            }
        }
    }
    for (index, patch) in bundle.patches.iter().enumerate() {
        let index = index + 1;
        let line = find_line(&bundle.text, "target", index - 1);
        let target = &patch.target;
        let matches: Vec<usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                str_at(&o.value, &["kind"]) == target.kind
                    && str_at(&o.value, &["metadata", "name"]) == target.name
                    && target
                        .api_version
                        .as_deref()
                        .is_none_or(|av| str_at(&o.value, &["apiVersion"]) == av)
                    && target
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| str_at(&o.value, &["metadata", "namespace"]) == ns)
            })
            .map(|(i, _)| i)
            .collect();
        let err = |kind| RenderError::at_line(bundle.path.clone(), line, kind);
        match matches.as_slice() {
            [] => errors.push(err(ErrorKind::PatchNoMatch {
                index,
                target: target.to_string(),
            })),
            [i] => {
                let ops: Result<json_patch::Patch, _> =
                    serde_json::from_value(Value::Array(patch.ops.clone()));
                let ops = match ops {
                    Ok(ops) => ops,
                    Err(e) => {
                        errors.push(err(ErrorKind::PatchFailed {
                            index,
                            target: target.to_string(),
                            message: format!("invalid operation: {e}"),
                        }));
                        continue;
                    }
                };
                let obj = &mut objects[*i];
                let mut patched = obj.value.clone();
                match json_patch::patch(&mut patched, &ops) {
                    Ok(()) => match check_object(&patched, 0) {
                        Ok(()) => {
                            obj.value = patched;
                            obj.sources.insert(bundle.path.clone());
                        }
                        Err(kind) => errors.push(err(ErrorKind::PatchFailed {
                            index,
                            target: target.to_string(),
                            message: format!(
                                "result is not a valid object: {}",
                                kind.to_string().trim_start_matches("document 0: ")
                            ),
                        })),
                    },
                    Err(e) => errors.push(err(ErrorKind::PatchFailed {
                        index,
                        target: target.to_string(),
                        message: e.to_string(),
                    })),
                }
            }
            many => {
                let examples = many
                    .iter()
                    .take(3)
                    .map(|i| format!("{}:{}", objects[*i].file, objects[*i].line))
                    .collect::<Vec<_>>()
                    .join(", ");
                errors.push(err(ErrorKind::PatchAmbiguous {
                    index,
                    target: target.to_string(),
                    count: many.len(),
                    examples,
                }));
            }
        }
    }
    objects
}

fn finish(
    objects: Vec<Obj>,
    scopes: &Scopes,
    opts: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<RenderedObject> {
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(objects.len());
    for mut obj in objects {
        let api_version = str_at(&obj.value, &["apiVersion"]).to_owned();
        let group = group_of(&api_version).to_owned();
        let kind = str_at(&obj.value, &["kind"]).to_owned();
        let name = str_at(&obj.value, &["metadata", "name"]).to_owned();
        let namespace = str_at(&obj.value, &["metadata", "namespace"]).to_owned();
        let at = |kind| RenderError::at_line(obj.file.clone(), Some(obj.line), kind);
        match scopes.namespaced(&group, &kind) {
            None if namespace.is_empty() => {
                errors.push(at(ErrorKind::UnknownScope {
                    group_version: api_version.clone(),
                    kind: kind.clone(),
                    name: name.clone(),
                }));
                continue;
            }
            Some(false) if !namespace.is_empty() => {
                errors.push(at(ErrorKind::NamespaceOnClusterScoped {
                    kind: kind.clone(),
                    name: name.clone(),
                    namespace,
                }));
                continue;
            }
            _ => {}
        }
        let key = ObjectKey {
            group,
            kind,
            namespace,
            name,
        };
        let origin = format!("{}:{}", obj.file, obj.line);
        if let Some(other) = seen.get(&key) {
            errors.push(at(ErrorKind::Duplicate {
                key: key.to_string(),
                other: other.clone(),
            }));
            continue;
        }
        seen.insert(key.clone(), origin);

        let meta = obj.value["metadata"]
            .as_object_mut()
            .expect("checked: metadata is a mapping");
        if let Some(repo) = &opts.config_repo {
            string_map(meta, "labels")
                .insert(CONFIG_REPO_LABEL.into(), Value::String(repo.clone()));
        }
        let sources: Vec<String> = obj.sources.iter().cloned().collect();
        string_map(meta, "annotations").insert(
            SOURCE_PATH_ANNOTATION.into(),
            Value::String(sources.join(",")),
        );
        let hash = hash(&obj.value);
        out.push(RenderedObject {
            key,
            api_version,
            object: obj.value,
            sources,
            hash,
        });
    }
    out.sort_by(|a, b| {
        (
            kind_rank(&a.key.group, &a.key.kind),
            &a.key.namespace,
            &a.key.name,
            &a.key.group,
            &a.key.kind,
        )
            .cmp(&(
                kind_rank(&b.key.group, &b.key.kind),
                &b.key.namespace,
                &b.key.name,
                &b.key.group,
                &b.key.kind,
            ))
    });
    out
}

fn string_map<'m>(meta: &'m mut Map<String, Value>, field: &str) -> &'m mut Map<String, Value> {
    let slot = meta
        .entry(field.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

// ---------------------------------------------------------------------------------------------
// Output

impl Desired {
    /// A multi-document YAML stream of the objects, in order.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&o.object).unwrap_or_default());
        }
        out
    }

    /// One `v1` `List` holding the objects, as pretty JSON.
    pub fn to_json(&self) -> String {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {},
            "items": self.objects.iter().map(|o| &o.object).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&list).unwrap_or_default()
    }
}
