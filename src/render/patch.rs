//! Phase 2 of a render, *evaluate*: bundle by bundle, innermost first, applies the bundle's
//! RFC 6902 patches and then its default namespace (so a patch that makes an object namespaced
//! still gets the default). Every operation is checked against the budgets *before* it runs:
//! the depth it creates and the bytes it adds, so `copy` cannot double an object to gigabytes
//! and patches cannot nest deeper than the YAML parser allows.

use super::Scopes;
use super::error::{ErrorKind, RenderError};
use super::load::{Item, LoadedBundle};
use super::validate::check_object;
use super::yaml;
use crate::limits::RenderLimits;
use json_patch::PatchOperation;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// An object during evaluation.
#[derive(Debug, Clone)]
pub(super) struct Obj {
    pub value: Value,
    /// Size of `value` (see [`yaml::size`]), once known.
    pub size: Option<u64>,
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
                size: None,
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
            && scopes.namespaced(group_of(str_at(v, &["apiVersion"])), str_at(v, &["kind"]))
                == Some(true)
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
                let size = obj.size.get_or_insert_with(|| yaml::size(&obj.value));
                let mut new_size = *size;
                let valid = |v: &Value| {
                    check_object(v, 0).map_err(|kind| {
                        format!(
                            "result is not a valid object: {}",
                            kind.to_string().trim_start_matches("document 0: ")
                        )
                    })
                };
                match apply_ops(&mut obj.value, &ops, spend.limits, &mut new_size, &valid) {
                    Ok(()) => {
                        obj.size = Some(new_size);
                        obj.sources.insert(bundle.path.clone());
                        let after = ident(&obj.value);
                        if after != before {
                            if let Some(list) = index.get_mut(&before) {
                                list.retain(|j| j != i);
                            }
                            index.entry(after).or_default().push(*i);
                        }
                    }
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

/// Applies `ops` to `doc` in place, one by one, refusing before it runs any operation that
/// would nest deeper than `max_depth` or grow the object past `max_object_bytes`; `size` is the
/// object's size, kept up to date. All or nothing: on any failure the operations already applied
/// are undone, from an undo log whose cost is that of the values replaced (no copy of the whole
/// object, so many small patches on a big object stay linear).
pub(super) fn apply_ops(
    doc: &mut Value,
    ops: &[PatchOperation],
    limits: &RenderLimits,
    size: &mut u64,
    check: &dyn Fn(&Value) -> Result<(), String>,
) -> Result<(), String> {
    let mut undo: Vec<PatchOperation> = Vec::new();
    let mut snapshot: Option<(Value, usize, u64)> = None;
    let start_size = *size;
    let result = (|| {
        for (n, op) in ops.iter().enumerate() {
            let number = n + 1;
            let (path, placed, replaced): (&str, Option<&Value>, Option<&Value>) = match op {
                PatchOperation::Add(o) => (
                    o.path.as_str(),
                    Some(&o.value),
                    existing_key(doc, o.path.as_str()),
                ),
                PatchOperation::Replace(o) => (
                    o.path.as_str(),
                    Some(&o.value),
                    doc.pointer(o.path.as_str()),
                ),
                PatchOperation::Copy(o) => (
                    o.path.as_str(),
                    doc.pointer(o.from.as_str()),
                    existing_key(doc, o.path.as_str()),
                ),
                PatchOperation::Move(o) => (o.path.as_str(), doc.pointer(o.from.as_str()), None),
                PatchOperation::Remove(o) => ("", None, doc.pointer(o.path.as_str())),
                PatchOperation::Test(_) => ("", None, None),
            };
            let mut new_size = *size;
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
            let inverse = inverse_of(doc, op);
            if matches!(op, PatchOperation::Move(_)) && snapshot.is_none() {
                // Moves are undone from a copy of the object as it was before the first of them.
                snapshot = Some((doc.clone(), undo.len(), *size));
            }
            json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| {
                format!(
                    "operation {number} failed at path {:?}: {}",
                    e.path.as_str(),
                    e.kind
                )
            })?;
            undo.extend(inverse);
            *size = new_size;
        }
        check(doc)
    })();
    if result.is_err() {
        let keep = match snapshot {
            Some((before, keep, size_then)) => {
                *doc = before;
                *size = size_then;
                keep
            }
            None => undo.len(),
        };
        for op in undo[..keep].iter().rev() {
            let _ = json_patch::patch(doc, std::slice::from_ref(op));
        }
        *size = start_size;
    }
    result
}

/// The value an `add` or `copy` to `path` replaces: only an existing key of a mapping (into a
/// list, they insert).
fn existing_key<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    if parent_is_array(doc, path) {
        None
    } else {
        doc.pointer(path)
    }
}

/// `path` with a final `-` resolved to the index it means in the current document.
fn resolved(doc: &Value, path: &str) -> String {
    match path.rsplit_once('/') {
        Some((parent, "-")) => match doc.pointer(parent) {
            Some(Value::Array(a)) => format!("{parent}/{}", a.len()),
            _ => path.to_owned(),
        },
        _ => path.to_owned(),
    }
}

/// The operations that undo `op`, computed before it runs (`Move` is undone from a snapshot).
fn inverse_of(doc: &Value, op: &PatchOperation) -> Vec<PatchOperation> {
    let make = |v: Value| -> Vec<PatchOperation> {
        serde_json::from_value::<json_patch::Patch>(Value::Array(vec![v]))
            .map(|p| p.0)
            .unwrap_or_default()
    };
    match op {
        PatchOperation::Add(json_patch::AddOperation { path, .. })
        | PatchOperation::Copy(json_patch::CopyOperation { path, .. }) => {
            let path = path.as_str();
            match existing_key(doc, path) {
                Some(old) => make(serde_json::json!({"op": "replace", "path": path, "value": old})),
                None => make(serde_json::json!({"op": "remove", "path": resolved(doc, path)})),
            }
        }
        PatchOperation::Replace(o) => match doc.pointer(o.path.as_str()) {
            Some(old) => {
                make(serde_json::json!({"op": "replace", "path": o.path.as_str(), "value": old}))
            }
            None => vec![],
        },
        PatchOperation::Remove(o) => match doc.pointer(o.path.as_str()) {
            Some(old) => {
                make(serde_json::json!({"op": "add", "path": o.path.as_str(), "value": old}))
            }
            None => vec![],
        },
        PatchOperation::Move(_) | PatchOperation::Test(_) => vec![],
    }
}

fn parent_is_array(doc: &Value, path: &str) -> bool {
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    doc.pointer(parent).is_some_and(Value::is_array)
}
