//! Phase 1 of a render, *load*: reads and parses every bundle and manifest reachable from the
//! root bundle, each file at most once, within the render's budgets (file sizes checked before
//! reading, YAML nodes and documents, bundles, directory entries), learning the scope of kinds
//! defined by CRDs on the way.

use super::bundle::{BUNDLE_API_VERSION, BUNDLE_FILE, Bundle, BundleFreeze, PatchSpec};
use super::error::{ErrorKind, RenderError};
use super::tree::{self, Entry, FileTree, join, resolve_with};
use super::validate::{check_object, is_dns_label, is_list};
use super::yaml::{self, Budget};
use super::{RenderOptions, Scopes};
use crate::limits::RenderLimits;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A manifest document as read.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub value: Value,
    pub file: String,
    pub line: usize,
}

#[derive(Debug)]
pub(super) enum Item {
    Object(Raw),
    Bundle(LoadedBundle),
}

#[derive(Debug)]
pub(super) struct LoadedBundle {
    /// Path of the bundle file.
    pub path: String,
    pub namespace: Option<String>,
    pub items: Vec<Item>,
    pub patches: Vec<PatchSpec>,
    /// Line of each patch's target in the bundle file.
    pub patch_lines: Vec<usize>,
}

/// Where the root bundle comes from.
pub(super) enum Root {
    File(String),
    Implicit(String),
}

/// Where an include comes from, for messages: the bundle and the line of the entry.
#[derive(Clone, Copy)]
struct Origin<'s> {
    bundle: &'s str,
    line: Option<usize>,
}

pub(super) struct Loader<'a> {
    pub tree: &'a dyn FileTree,
    pub opts: &'a RenderOptions,
    pub limits: RenderLimits,
    pub errors: Vec<RenderError>,
    /// Files read, each with where it was first included from.
    pub files: BTreeMap<String, String>,
    pub scopes: Scopes,
    pub objects: usize,
    pub budget: Budget,
    bundles: usize,
    dir_entries: usize,
    input_bytes: u64,
    /// Directories being walked (resolved), against symlinks that lead back up.
    walking: BTreeSet<String>,
    /// The root bundle's `freeze` field.
    pub freeze: Option<BundleFreeze>,
}

impl<'a> Loader<'a> {
    pub fn new(tree: &'a dyn FileTree, opts: &'a RenderOptions, limits: RenderLimits) -> Self {
        Loader {
            tree,
            opts,
            budget: Budget::new(&limits),
            limits,
            errors: Vec::new(),
            files: BTreeMap::new(),
            scopes: opts.scopes.clone(),
            objects: 0,
            bundles: 0,
            dir_entries: 0,
            input_bytes: 0,
            walking: BTreeSet::new(),
            freeze: None,
        }
    }

    fn err(&mut self, path: &str, line: Option<usize>, kind: ErrorKind) {
        self.errors
            .push(RenderError::at_line(self.tree.display(path), line, kind));
    }

    fn resolve(&self, path: &str) -> Result<(String, Entry), RenderError> {
        resolve_with(self.tree, path, self.limits.max_symlink_hops)
    }

    pub fn root(&mut self, path: &str) -> Result<Root, RenderError> {
        let normal = join("", path).map_err(|k| RenderError::at(path, k))?;
        let (resolved, entry) = self.resolve(&normal)?;
        match entry {
            Entry::Dir => {
                let bundle = join(&resolved, BUNDLE_FILE).map_err(|k| RenderError::at(path, k))?;
                let (bundle, entry) = self.resolve(&bundle)?;
                Ok(if matches!(entry, Entry::File { .. }) {
                    Root::File(bundle)
                } else {
                    Root::Implicit(resolved)
                })
            }
            Entry::File { .. } => Ok(Root::File(resolved)),
            Entry::Other(what) => Err(RenderError::at(
                self.tree.display(&normal),
                ErrorKind::Skipped(format!("is {what}, not a bundle or a directory")),
            )),
            _ => Err(RenderError::at(
                self.tree.display(&normal),
                ErrorKind::NotFound,
            )),
        }
    }

    /// Reads a file once per render, after checking its size against the budgets.
    fn read_text(&mut self, path: &str, from: Origin<'_>) -> Option<String> {
        let origin = match from.line {
            Some(l) => format!("{}:{l}", self.tree.display(from.bundle)),
            None => self.tree.display(from.bundle),
        };
        if let Some(first) = self.files.get(path) {
            let kind = ErrorKind::IncludedTwice(first.clone());
            self.err(path, None, kind);
            return None;
        }
        self.files.insert(path.to_owned(), origin);
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
        let limit = self.opts.max_file_bytes.min(self.limits.max_file_bytes);
        if size > limit {
            self.err(path, None, ErrorKind::FileTooLarge { size, limit });
            return None;
        }
        if self.input_bytes + size > self.limits.max_total_input_bytes {
            self.err(
                path,
                None,
                ErrorKind::Limit {
                    what: "bytes of files read in the render",
                    limit: self.limits.max_total_input_bytes,
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
        self.input_bytes += bytes.len() as u64;
        if bytes.len() as u64 > limit {
            let size = bytes.len() as u64;
            self.err(path, None, ErrorKind::FileTooLarge { size, limit });
            return None;
        }
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

    pub fn load_root(&mut self, root: Root) -> Option<LoadedBundle> {
        self.load_bundle(
            root,
            Origin {
                bundle: "",
                line: None,
            },
            &mut Vec::new(),
        )
    }

    fn load_bundle(
        &mut self,
        root: Root,
        from: Origin<'_>,
        stack: &mut Vec<String>,
    ) -> Option<LoadedBundle> {
        self.bundles += 1;
        if self.bundles > self.limits.max_bundles {
            if self.bundles == self.limits.max_bundles + 1 {
                self.err(
                    from.bundle,
                    from.line,
                    ErrorKind::Limit {
                        what: "bundles loaded in the render",
                        limit: self.limits.max_bundles as u64,
                    },
                );
            }
            return None;
        }
        let (path, bundle) = match root {
            Root::Implicit(dir) => (
                join(&dir, BUNDLE_FILE).unwrap_or_default(),
                Bundle::implicit(),
            ),
            Root::File(path) => {
                let text = self.read_text(&path, from)?;
                let (docs, errors) = yaml::parse_documents(&text, &mut self.budget);
                if let Some(e) = errors.into_iter().next() {
                    let kind = match e.kind {
                        ErrorKind::Yaml(m) => ErrorKind::InvalidBundle(m),
                        other => other,
                    };
                    self.err(&path, e.line, kind);
                    return None;
                }
                match Bundle::from_documents(docs) {
                    Ok(b) => (path, b),
                    Err((line, kind)) => {
                        self.err(&path, line, kind);
                        return None;
                    }
                }
            }
        };
        let spec = &bundle.spec;
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
            self.err(
                &path,
                bundle.namespace_line,
                ErrorKind::InvalidBundle(format!("namespace {ns:?} is not a valid namespace name")),
            );
        }
        if let Some(v) = &spec.freeze {
            // The cord belongs to the cluster's bundle: a nested (base) bundle pulling it would
            // freeze every cluster that includes it, unseen.
            let found = if stack.is_empty() {
                BundleFreeze::from_value(v)
            } else {
                Err("freeze is read only from the root bundle (the cluster's fledge.yaml), not from an included one".into())
            };
            match found {
                Ok(f) => self.freeze = Some(f),
                Err(m) => self.err(&path, bundle.freeze_line, ErrorKind::InvalidBundle(m)),
            }
        }
        if stack.len() >= self.limits.max_bundle_depth {
            self.err(
                &path,
                None,
                ErrorKind::TooDeep(self.limits.max_bundle_depth),
            );
            return None;
        }
        stack.push(path.clone());
        let dir = tree::parent(&path).to_owned();
        let mut items = Vec::new();
        for (i, include) in bundle.spec.include.iter().enumerate() {
            let line = bundle.include_lines.get(i).copied();
            self.include(&path, &dir, include, line, &mut items, stack);
        }
        stack.pop();
        let Bundle {
            spec, patch_lines, ..
        } = bundle;
        Some(LoadedBundle {
            path,
            namespace: spec.namespace,
            items,
            patches: spec.patches,
            patch_lines,
        })
    }

    fn include(
        &mut self,
        path: &str,
        dir: &str,
        include: &str,
        line: Option<usize>,
        items: &mut Vec<Item>,
        stack: &mut Vec<String>,
    ) {
        let from = Origin { bundle: path, line };
        let joined = match join(dir, include) {
            Ok(j) => j,
            Err(k) => return self.err(path, line, k),
        };
        let (resolved, entry) = match self.resolve(&joined) {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return self.err(path, line, ErrorKind::IncludeNotFound(include.to_owned()));
            }
            Err(mut e) => {
                // Name the bundle and line that asked for it, and the link or the odd path.
                e.kind = match e.kind {
                    ErrorKind::PathEscape { path: target, why } => ErrorKind::PathEscape {
                        path: format!("{include} (via symlink {} -> {target})", e.path),
                        why,
                    },
                    ErrorKind::SymlinkLoop => ErrorKind::SymlinkLoop,
                    other => ErrorKind::Skipped(format!(
                        "include {include:?}: {}: {other}",
                        crate::limits::escape_controls(&e.path)
                    )),
                };
                e.path = self.tree.display(path);
                e.line = line;
                return self.errors.push(e);
            }
        };
        match entry {
            Entry::Missing => self.err(path, line, ErrorKind::IncludeNotFound(include.to_owned())),
            Entry::Dir => self.include_dir(&resolved, from, items, stack, 0),
            Entry::File { .. } if resolved == BUNDLE_FILE || resolved.ends_with("/fledge.yaml") => {
                self.nested(&resolved, from, items, stack)
            }
            Entry::File { .. } if is_yaml(&resolved) => self.load_manifests(&resolved, from, items),
            Entry::File { .. } => self.err(
                path,
                line,
                ErrorKind::InvalidBundle(format!("include {include:?} is not a .yaml or .yml file")),
            ),
            Entry::Other(what) => self.err(
                path,
                line,
                ErrorKind::Skipped(format!(
                    "include {include:?} is {what}, not a file or directory; fledge does not follow it"
                )),
            ),
            Entry::Symlink { .. } => self.err(path, line, ErrorKind::SymlinkLoop),
        }
    }

    fn nested(
        &mut self,
        bundle: &str,
        from: Origin<'_>,
        items: &mut Vec<Item>,
        stack: &mut Vec<String>,
    ) {
        if let Some(pos) = stack.iter().position(|b| b == bundle) {
            let mut chain: Vec<String> =
                stack[pos..].iter().map(|b| self.tree.display(b)).collect();
            chain.push(self.tree.display(bundle));
            self.err(from.bundle, from.line, ErrorKind::Cycle(chain.join(" -> ")));
            return;
        }
        if let Some(b) = self.load_bundle(Root::File(bundle.to_owned()), from, stack) {
            items.push(Item::Bundle(b));
        }
    }

    /// Includes a directory: a nested bundle when it holds `fledge.yaml` (a file or a symlink to
    /// one), else its YAML files, recursively, in sorted order (hidden entries skipped).
    fn include_dir(
        &mut self,
        dir: &str,
        from: Origin<'_>,
        items: &mut Vec<Item>,
        stack: &mut Vec<String>,
        depth: usize,
    ) {
        let bundle = if dir.is_empty() {
            BUNDLE_FILE.to_owned()
        } else {
            format!("{dir}/{BUNDLE_FILE}")
        };
        match self.tree.entry(&bundle) {
            Ok(Entry::Missing) => {}
            Ok(Entry::File { .. }) => return self.nested(&bundle, from, items, stack),
            Ok(Entry::Symlink { .. }) => match self.resolve(&bundle) {
                Ok((target, Entry::File { .. })) => {
                    return self.nested(&target, from, items, stack);
                }
                Ok(_) => {
                    let kind = ErrorKind::Skipped(format!(
                        "{BUNDLE_FILE} is a symlink that does not lead to a file"
                    ));
                    return self.err(&bundle, None, kind);
                }
                Err(e) => return self.errors.push(e),
            },
            Ok(Entry::Dir | Entry::Other(_)) => {
                let kind = ErrorKind::Skipped(format!("{BUNDLE_FILE} is not a file"));
                return self.err(&bundle, None, kind);
            }
            Err(e) => return self.err(&bundle, None, ErrorKind::Io(e)),
        }
        if depth >= self.limits.max_depth {
            return self.err(dir, None, ErrorKind::TooDeep(self.limits.max_depth));
        }
        if !self.walking.insert(dir.to_owned()) {
            let kind = ErrorKind::Skipped(
                "directory is reached again through a symlink while it is being included (a symlink to an ancestor)".into(),
            );
            return self.err(dir, None, kind);
        }
        let mut names = match self.tree.list(dir) {
            Ok(n) => n,
            Err(e) => {
                self.walking.remove(dir);
                return self.err(dir, None, ErrorKind::Io(e));
            }
        };
        names.sort();
        for name in names {
            self.dir_entries += 1;
            if self.dir_entries > self.limits.max_dir_entries {
                let kind = ErrorKind::Limit {
                    what: "directory entries walked in the render",
                    limit: self.limits.max_dir_entries as u64,
                };
                self.err(dir, None, kind);
                break;
            }
            if name.starts_with('.') {
                continue;
            }
            let child = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let (resolved, entry) = match self.resolve(&child) {
                Ok(r) => r,
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            match entry {
                Entry::Dir => {
                    let ancestor = resolved.is_empty()
                        || dir == resolved
                        || dir.starts_with(&format!("{resolved}/"));
                    if self.walking.contains(&resolved) || ancestor {
                        let kind = ErrorKind::Skipped(format!(
                            "symlink leads back to {:?}, an ancestor or a directory being included (a loop)",
                            self.tree.display(&resolved)
                        ));
                        self.err(&child, None, kind);
                        continue;
                    }
                    self.include_dir(&resolved, from, items, stack, depth + 1)
                }
                Entry::File { .. } if is_yaml(&resolved) => {
                    self.load_manifests(&resolved, from, items)
                }
                Entry::Missing if is_yaml(&child) => {
                    let kind = ErrorKind::Skipped("symlink target does not exist".into());
                    self.err(&child, None, kind);
                }
                Entry::Other(what) => {
                    let kind = ErrorKind::Skipped(format!(
                        "is {what}; fledge does not follow it (include specific paths instead)"
                    ));
                    self.err(&child, None, kind);
                }
                _ => {}
            }
        }
        self.walking.remove(dir);
    }

    fn load_manifests(&mut self, path: &str, from: Origin<'_>, items: &mut Vec<Item>) {
        if self.budget.exhausted() {
            return;
        }
        let Some(text) = self.read_text(path, from) else {
            return;
        };
        let (docs, errors) = yaml::parse_documents(&text, &mut self.budget);
        for e in errors {
            self.err(path, e.line, e.kind);
        }
        for doc in docs {
            // Lists (and lists in lists) are expanded into their items.
            let mut todo = vec![(doc.value, doc.line)];
            while let Some((value, line)) = todo.pop() {
                if is_list(&value) {
                    match expand_list(value, doc.index) {
                        Ok(values) => todo.extend(values.into_iter().rev().map(|v| (v, line))),
                        Err(kind) => self.err(path, Some(line), kind),
                    }
                    continue;
                }
                self.object(path, doc.index, line, value, items);
            }
        }
    }

    fn object(&mut self, path: &str, doc: usize, line: usize, value: Value, items: &mut Vec<Item>) {
        if let Err(kind) = check_object(&value, doc) {
            return self.err(path, Some(line), kind);
        }
        self.objects += 1;
        let limit = self.opts.max_objects.min(self.limits.max_objects);
        if self.objects > limit {
            if self.objects == limit + 1 {
                let kind = ErrorKind::TooManyObjects {
                    count: self.objects,
                    limit,
                };
                self.err(path, Some(line), kind);
            }
            return;
        }
        if value["kind"] == "CustomResourceDefinition"
            && let Err(message) = self.scopes.learn_crd(&value)
        {
            let kind = ErrorKind::InvalidObject { doc, message };
            return self.err(path, Some(line), kind);
        }
        items.push(Item::Object(Raw {
            value,
            file: path.to_owned(),
            line,
        }));
    }
}

/// The items of a list object. Its own metadata would be dropped by kubectl, so a namespace or
/// labels on the list itself are refused rather than silently ignored.
fn expand_list(value: Value, doc: usize) -> Result<Vec<Value>, ErrorKind> {
    let Value::Object(mut map) = value else {
        return Ok(vec![]);
    };
    let has_meta = map
        .get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.iter().any(|(_, v)| !v.is_null()));
    if has_meta {
        return Err(ErrorKind::InvalidObject {
            doc,
            message: "a List's own metadata (namespace, labels, ...) is ignored by kubectl; set it on the items".into(),
        });
    }
    match map.remove("items") {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) | None => Ok(vec![]),
        Some(other) => Err(ErrorKind::InvalidObject {
            doc,
            message: format!("List items is {}, expected a list", yaml::type_name(&other)),
        }),
    }
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}
