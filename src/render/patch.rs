//! Phase 2 of a render, *evaluate*: bundle by bundle, innermost first, applies the bundle's
//! RFC 6902 patches and then its default namespace (so a patch that makes an object namespaced
//! still gets the default). Every operation is checked against the budgets *before* it runs:
//! the depth it creates and the bytes it adds, so `copy` cannot double an object to gigabytes
//! and patches cannot nest deeper than the YAML parser allows.

use super::error::{ErrorKind, RenderError};
use super::load::{Item, LoadedBundle};
use super::validate::check_object;
use super::yaml;
use super::Scopes;
use crate::limits::RenderLimits;
use json_patch::PatchOperation;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// An object during evaluation.
#[derive(Debug, Clone)]
pub(super) struct Obj {
    pub value: Value,
    pub sources: BTreeSet<String>,
    pub file: String,
    pub line: usize,
}

pub(super) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

pub(super) fn str_at<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// What evaluation may still spend.
pub(super) struct Spend<'l> {
    pub limits: &'l RenderLimits,
    pub ops_left: usize,
}

/// Consumes the loaded bundle, so each object exists once in memory.
pub(super) fn evaluate(
    mut bundle: LoadedBundle,
    scopes: &Scopes,
    spend: &mut Spend<'_>,
    errors: &mut Vec<RenderError>,
) -> Vec<Obj> {
    let mut objects = Vec::new();
    for item in std::mem::take(&mut bundle.items) {
        match item {
            Item::Object(raw) => objects.push(Obj {
                sources: BTreeSet::from([raw.file.clone()]),
                file: raw.file,
                line: raw.line,
                value: raw.value,
            }),
            Item::Bundle(inner) => objects.extend(evaluate(inner, scopes, spend, errors)),
        }
    }
    let default_ns = bundle.namespace.as_deref();
    let effective_ns = |v: &Value| -> String {
        let ns = str_at(v, &["metadata", "namespace"]);
        if ns.is_empty()
            && let Some(d) = default_ns
            && scopes.namespaced(
                group_of(str_at(v, &["apiVersion"])),
                str_at(v, &["kind"]),
            ) == Some(true)
        {
            return d.to_owned();
        }
        ns.to_owned()
    };
    // Objects by (kind, name), kept current as patches rename objects.
    let mut index: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        index.entry(ident(&o.value)).or_default().push(i);
    }
    for (n, patch) in bundle.patches.iter().enumerate() {
        let number = n + 1;
        let line = bundle.patch_lines.get(n).copied();
        let target = &patch.target;
        let err = |kind| RenderError::at_line(bundle.path.clone(), line, kind);
        let failed = |message: String| {
            err(ErrorKind::PatchFailed {
                index: number,
                target: target.to_string(),
                message,
            })
        };
        if patch.ops.len() > spend.ops_left {
            spend.ops_left = 0;
            errors.push(err(ErrorKind::Limit {
                what: "patch operations in the render",
                limit: spend.limits.max_patch_ops as u64,
            }));
            break;
        }
        spend.ops_left -= patch.ops.len();
        let candidates = index
            .get(&(target.kind.clone(), target.name.clone()))
            .cloned()
            .unwrap_or_default();
        let matches: Vec<usize> = candidates
            .into_iter()
            .filter(|i| {
                let v = &objects[*i].value;
                target
                    .api_version
                    .as_deref()
                    .is_none_or(|av| str_at(v, &["apiVersion"]) == av)
                    && target
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| effective_ns(v) == ns)
            })
            .collect();
        match matches.as_slice() {
            [] => errors.push(err(ErrorKind::PatchNoMatch {
                index: number,
                target: target.to_string(),
            })),
            [i] => {
                let ops: json_patch::Patch =
                    match serde_json::from_value(Value::Array(patch.ops.clone())) {
                        Ok(ops) => ops,
                        Err(e) => {
                            errors.push(failed(format!("invalid operation: {e}")));
                            continue;
                        }
                    };
                let obj = &mut objects[*i];
                let before = ident(&obj.value);
                match apply_ops(&obj.value, &ops, spend.limits) {
                    Ok(patched) => match check_object(&patched, 0) {
                        Ok(()) => {
                            obj.value = patched;
                            obj.sources.insert(bundle.path.clone());
                            let after = ident(&obj.value);
                            if after != before {
                                if let Some(list) = index.get_mut(&before) {
                                    list.retain(|j| j != i);
                                }
                                index.entry(after).or_default().push(*i);
                            }
                        }
                        Err(kind) => errors.push(failed(format!(
                            "result is not a valid object: {}",
                            kind.to_string().trim_start_matches("document 0: ")
                        ))),
                    },
                    Err(message) => errors.push(failed(message)),
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
                    index: number,
                    target: target.to_string(),
                    count: many.len(),
                    examples,
                }));
            }
        }
    }
    if let Some(ns) = default_ns {
        for obj in &mut objects {
            let ns_now = effective_ns(&obj.value);
            if str_at(&obj.value, &["metadata", "namespace"]).is_empty() && ns_now == ns {
                obj.value["metadata"]["namespace"] = Value::String(ns.to_owned());
            }
        }
    }
    objects
}

fn ident(v: &Value) -> (String, String) {
    (
        str_at(v, &["kind"]).to_owned(),
        str_at(v, &["metadata", "name"]).to_owned(),
    )
}

/// Number of reference tokens of a JSON pointer (`/a/b` is 2).
fn segments(pointer: &str) -> usize {
    pointer.matches('/').count()
}

/// Applies `ops` to a copy of `value`, one by one, refusing before it runs any operation that
/// would nest deeper than `max_depth` or grow the object past `max_object_bytes`.
pub(super) fn apply_ops(
    value: &Value,
    ops: &[PatchOperation],
    limits: &RenderLimits,
) -> Result<Value, String> {
    let mut doc = value.clone();
    let mut size = yaml::size(&doc);
    for (n, op) in ops.iter().enumerate() {
        let number = n + 1;
        // (where the new nodes go, the subtree placed there, what it replaces)
        let (path, placed, replaced): (&str, Option<&Value>, Option<&Value>) = match op {
            PatchOperation::Add(o) => (o.path.as_str(), Some(&o.value), doc.pointer(o.path.as_str()).filter(|_| !parent_is_array(&doc, o.path.as_str()))),
            PatchOperation::Replace(o) => (o.path.as_str(), Some(&o.value), doc.pointer(o.path.as_str())),
            PatchOperation::Copy(o) => (o.path.as_str(), doc.pointer(o.from.as_str()), doc.pointer(o.path.as_str()).filter(|_| !parent_is_array(&doc, o.path.as_str()))),
            PatchOperation::Move(o) => (o.path.as_str(), doc.pointer(o.from.as_str()), None),
            PatchOperation::Remove(_) | PatchOperation::Test(_) => ("", None, None),
        };
        let mut new_size = size;
        if let Some(v) = placed {
            let depth = segments(path) + yaml::depth(v);
            if depth > limits.max_depth {
                return Err(format!(
                    "operation {number} would nest the object {depth} levels deep, over the limit of {}",
                    limits.max_depth
                ));
            }
            if !matches!(op, PatchOperation::Move(_)) {
                new_size += yaml::size(v);
            }
            if new_size > limits.max_object_bytes {
                return Err(format!(
                    "operation {number} would grow the object past the limit of {} bytes",
                    limits.max_object_bytes
                ));
            }
        }
        if let Some(r) = replaced {
            new_size = new_size.saturating_sub(yaml::size(r));
        }
        if let PatchOperation::Remove(o) = op
            && let Some(r) = doc.pointer(o.path.as_str())
        {
            new_size = new_size.saturating_sub(yaml::size(r));
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op))
            .map_err(|e| format!("operation {number}: {}", e.kind))?;
        size = new_size;
    }
    Ok(doc)
}

fn parent_is_array(doc: &Value, path: &str) -> bool {
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    doc.pointer(parent).is_some_and(Value::is_array)
}
