//! The bundle file (`fledge.yaml`) schema, read from a parsed YAML document so that every part
//! (namespace, each include, each patch) keeps the line the parser saw it on.

use super::error::ErrorKind;
use super::yaml::Document;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// File name of a bundle.
pub const BUNDLE_FILE: &str = "fledge.yaml";
/// apiVersion of a bundle.
pub const BUNDLE_API_VERSION: &str = "fledge.dev/v1alpha1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct BundleSpec {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub patches: Vec<PatchSpec>,
    /// The andon cord from git; validated by [`BundleFreeze::from_value`].
    #[serde(default)]
    pub freeze: Option<Value>,
}

/// Longest `freeze.reason` accepted.
pub const MAX_FREEZE_REASON: usize = 512;
/// Longest `freeze.by` accepted.
pub const MAX_FREEZE_BY: usize = 128;

/// The `freeze` field of the root bundle: the andon cord pulled from git (a pull request can
/// pull it). While present, no new rollout starts; in-flight canaries pause (or abort with
/// `abort: true`); plain configuration still syncs unless `all: true`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BundleFreeze {
    /// Why (required, one line).
    pub reason: String,
    /// Who; the agent uses the commit's author when absent.
    #[serde(default)]
    pub by: Option<String>,
    /// Abort in-flight canaries (no git revert) instead of pausing them.
    #[serde(default)]
    pub abort: bool,
    /// Hold plain configuration too (apply nothing, prune nothing).
    #[serde(default)]
    pub all: bool,
    /// Author of the commit the bundle was read from (filled in by the agent, never from YAML):
    /// who froze it when `by` is left out.
    #[serde(skip)]
    pub author: Option<String>,
}

impl BundleFreeze {
    /// Reads and validates the `freeze` value of a bundle; the error says what is wrong.
    pub fn from_value(v: &Value) -> Result<BundleFreeze, String> {
        if !v.is_object() {
            return Err(
                "freeze must be a mapping with reason (required), by, abort and all".into(),
            );
        }
        let f: BundleFreeze = serde_json::from_value(v.clone())
            .map_err(|e| format!("freeze: {}", clean_serde(&e.to_string())))?;
        let reason = f.reason.trim();
        if reason.is_empty() {
            return Err("freeze.reason must say why the line is stopped".into());
        }
        if reason.chars().count() > MAX_FREEZE_REASON {
            return Err(format!(
                "freeze.reason is longer than {MAX_FREEZE_REASON} characters"
            ));
        }
        if reason.chars().any(char::is_control) {
            return Err("freeze.reason must be one line without control characters".into());
        }
        if let Some(by) = &f.by {
            let by = by.trim();
            if by.is_empty() || by.chars().count() > MAX_FREEZE_BY {
                return Err(format!(
                    "freeze.by must be a name of 1 to {MAX_FREEZE_BY} characters (or left out: the commit's author)"
                ));
            }
            if by.chars().any(char::is_control) {
                return Err("freeze.by must not hold control characters".into());
            }
        }
        Ok(BundleFreeze {
            reason: reason.to_owned(),
            by: f.by.map(|b| b.trim().to_owned()),
            ..f
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PatchSpec {
    pub target: TargetSpec,
    pub ops: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TargetSpec {
    #[serde(default)]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
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

/// A bundle as read, with the lines of its parts.
#[derive(Debug)]
pub(super) struct Bundle {
    pub spec: BundleSpec,
    /// Line of the bundle's `namespace` value.
    pub namespace_line: Option<usize>,
    /// Line of each include entry.
    pub include_lines: Vec<usize>,
    /// Line of each patch's target.
    pub patch_lines: Vec<usize>,
    /// Line of the `freeze` field.
    pub freeze_line: Option<usize>,
}

impl Bundle {
    /// The implicit bundle of a directory without `fledge.yaml`: it includes the directory.
    pub fn implicit() -> Bundle {
        Bundle {
            spec: BundleSpec {
                api_version: BUNDLE_API_VERSION.into(),
                kind: "Bundle".into(),
                metadata: None,
                namespace: None,
                include: vec![".".into()],
                patches: vec![],
                freeze: None,
            },
            namespace_line: None,
            include_lines: vec![1],
            patch_lines: vec![],
            freeze_line: None,
        }
    }

    /// Reads a bundle from the documents of its file: exactly one document, a mapping with the
    /// bundle's fields and no others.
    pub fn from_documents(mut docs: Vec<Document>) -> Result<Bundle, (Option<usize>, ErrorKind)> {
        let invalid = |line: usize, m: String| (Some(line), ErrorKind::InvalidBundle(m));
        if docs.len() != 1 {
            let line = docs.get(1).map(|d| d.line).unwrap_or(1);
            return Err(invalid(
                line,
                format!(
                    "a bundle file holds exactly one YAML document, found {}",
                    docs.len()
                ),
            ));
        }
        let doc = docs.remove(0);
        if let Value::Object(map) = &doc.value {
            for key in map.keys() {
                if !matches!(
                    key.as_str(),
                    "apiVersion"
                        | "kind"
                        | "metadata"
                        | "namespace"
                        | "include"
                        | "patches"
                        | "freeze"
                ) {
                    return Err(invalid(
                        doc.line_of(&format!("/{key}")),
                        format!(
                            "unknown field {key:?}; a bundle has apiVersion, kind, metadata, namespace, include, patches and freeze"
                        ),
                    ));
                }
            }
        }
        let spec: BundleSpec = match serde_json::from_value(doc.value.clone()) {
            Ok(s) => s,
            Err(e) => {
                let at = first_bad_part(&doc.value);
                return Err(invalid(doc.line_of(&at), clean_serde(&e.to_string())));
            }
        };
        Ok(Bundle {
            namespace_line: spec.namespace.as_ref().map(|_| doc.line_of("/namespace")),
            include_lines: (0..spec.include.len())
                .map(|i| doc.line_of(&format!("/include/{i}")))
                .collect(),
            freeze_line: spec.freeze.as_ref().map(|_| doc.line_of("/freeze")),
            patch_lines: (0..spec.patches.len())
                .map(|i| doc.line_of(&format!("/patches/{i}/target")))
                .collect(),
            spec,
        })
    }
}

/// The JSON pointer of the first part of a bundle whose shape is wrong, to find its line.
fn first_bad_part(v: &Value) -> String {
    for key in ["include", "patches"] {
        match v.get(key) {
            None | Some(Value::Array(_)) | Some(Value::Null) => {}
            Some(_) => return format!("/{key}"),
        }
    }
    if let Some(Value::Array(items)) = v.get("include")
        && let Some(i) = items.iter().position(|i| !i.is_string())
    {
        return format!("/include/{i}");
    }
    if let Some(Value::Array(patches)) = v.get("patches") {
        for (i, p) in patches.iter().enumerate() {
            let ok = p.get("target").is_some_and(|t| {
                t.get("kind").is_some_and(Value::is_string)
                    && t.get("name").is_some_and(Value::is_string)
            }) && p.get("ops").is_some_and(Value::is_array);
            if !ok {
                return format!("/patches/{i}");
            }
        }
    }
    String::new()
}

/// serde's messages without their trailing position (we give the line ourselves).
fn clean_serde(m: &str) -> String {
    m.split(" at line ").next().unwrap_or(m).to_owned()
}
