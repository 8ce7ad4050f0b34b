//! The last step of a render, *finish*: checks each object's scope against its namespace,
//! refuses duplicates, adds fledge's label and provenance annotation, hashes, orders for apply,
//! and holds the render's output budget; plus the output formats of [`Desired`].

use super::canonical::{hash, kind_rank};
use super::error::{ErrorKind, RenderError};
use super::patch::{Obj, group_of, str_at};
use super::{Desired, ObjectKey, RenderOptions, RenderedObject, Scopes};
use crate::labels::{CONFIG_REPO_LABEL, SOURCE_PATH_ANNOTATION};
use crate::limits::RenderLimits;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub(super) fn finish(
    objects: Vec<Obj>,
    scopes: &Scopes,
    opts: &RenderOptions,
    limits: &RenderLimits,
    errors: &mut Vec<RenderError>,
) -> Vec<RenderedObject> {
    let mut output_bytes = 0u64;
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(objects.len());
    for mut obj in objects {
        let api_version = str_at(&obj.value, &["apiVersion"]).to_owned();
        let group = group_of(&api_version).to_owned();
        let kind = str_at(&obj.value, &["kind"]).to_owned();
        let name = str_at(&obj.value, &["metadata", "name"]).to_owned();
        let mut namespace = str_at(&obj.value, &["metadata", "namespace"]).to_owned();
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
            // A namespaced object nobody gave a namespace goes where kubectl would put it.
            Some(true) if namespace.is_empty() => {
                namespace = opts.default_namespace.clone();
                obj.value["metadata"]["namespace"] = Value::String(namespace.clone());
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
        output_bytes += super::yaml::size(&obj.value);
        if output_bytes > limits.max_output_bytes {
            errors.push(at(ErrorKind::Limit {
                what: "bytes of rendered objects",
                limit: limits.max_output_bytes,
            }));
            return Vec::new();
        }
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
