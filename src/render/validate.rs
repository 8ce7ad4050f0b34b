//! Checks of a manifest object: its shape (a mapping with apiVersion, kind and metadata.name)
//! and its identity (apiVersion, kind, name, namespace, label and annotation keys, label values)
//! as the API server validates them, so a name never reaches a request URL unchecked.

use super::error::ErrorKind;
use super::yaml;
use serde_json::Value;

/// RFC 1123 label: what Kubernetes accepts as a namespace name.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: lowercase labels joined by dots, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// RFC 1035 label (Service names): a DNS label starting with a letter.
fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A qualified name (label and annotation keys, label values without the empty case):
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Why a label or annotation key is invalid, if it is.
pub fn key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Some("the prefix must be a lowercase DNS subdomain");
    }
    if !is_qualified_part(name) {
        return Some(
            "the name part must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric",
        );
    }
    None
}

/// Why a label value is invalid, if it is.
pub fn label_value_problem(v: &str) -> Option<&'static str> {
    (!v.is_empty() && !is_qualified_part(v)).then_some(
        "must be empty or 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric",
    )
}

/// Why an object name is invalid for its kind, if it is (the API server's rules: path segment
/// names for RBAC, RFC 1035 labels for Services, RFC 1123 labels for Namespaces, RFC 1123
/// subdomains for everything else).
pub fn name_problem(kind: &str, name: &str) -> Option<&'static str> {
    if name == "." || name == ".." {
        return Some("may not be '.' or '..'");
    }
    if name.contains(['/', '%']) {
        return Some("may not contain '/' or '%'");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("may not contain spaces or control characters");
    }
    if name.len() > 253 {
        return Some("may be at most 253 characters");
    }
    match kind {
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => None,
        "Namespace" => (!is_dns_label(name))
            .then_some("must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63 characters)"),
        "Service" => (!is_dns1035_label(name)).then_some(
            "must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter, at most 63 characters)",
        ),
        _ => (!is_dns_subdomain(name)).then_some(
            "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.', at most 253 characters)",
        ),
    }
}

fn api_version_problem(av: &str) -> Option<&'static str> {
    let (group, version) = match av.split_once('/') {
        Some((g, v)) => (Some(g), v),
        None => (None, av),
    };
    if let Some(g) = group
        && !is_dns_subdomain(g)
    {
        return Some("the group must be a lowercase DNS subdomain");
    }
    (!is_dns_label(version)).then_some("the version must be a lowercase DNS label such as v1")
}

fn kind_problem(kind: &str) -> Option<&'static str> {
    let b = kind.as_bytes();
    (b.is_empty()
        || b.len() > 63
        || !b[0].is_ascii_alphabetic()
        || !b.iter().all(u8::is_ascii_alphanumeric))
    .then_some("must be letters and digits, starting with a letter, at most 63 characters")
}

fn invalid(field: &'static str, value: &str, why: &str) -> ErrorKind {
    ErrorKind::InvalidIdentity {
        field,
        value: serde_json::to_string(value).unwrap_or_default(),
        why: why.to_owned(),
    }
}

/// A manifest must be a mapping with valid apiVersion, kind and metadata.name, a valid
/// namespace if any, and labels and annotations that are maps of valid keys to strings.
pub fn check_object(v: &Value, doc: usize) -> Result<(), ErrorKind> {
    let Value::Object(map) = v else {
        return Err(ErrorKind::NotAnObject {
            doc,
            found: yaml::type_name(v),
        });
    };
    let mut strings = [""; 2];
    for (i, field) in ["apiVersion", "kind"].into_iter().enumerate() {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => strings[i] = s,
            _ => return Err(ErrorKind::MissingField { doc, field }),
        }
    }
    let [api_version, kind] = strings;
    if let Some(why) = api_version_problem(api_version) {
        return Err(invalid("apiVersion", api_version, why));
    }
    if let Some(why) = kind_problem(kind) {
        return Err(invalid("kind", kind, why));
    }
    let Some(Value::Object(meta)) = map.get("metadata") else {
        return Err(ErrorKind::MissingField {
            doc,
            field: "metadata.name",
        });
    };
    let name = match meta.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(ErrorKind::MissingField {
                doc,
                field: "metadata.name",
            });
        }
    };
    if let Some(why) = name_problem(kind, name) {
        return Err(invalid("metadata.name", name, why));
    }
    match meta.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if is_dns_label(ns) => {}
        Some(ns) => {
            return Err(ErrorKind::InvalidObject {
                doc,
                message: format!("metadata.namespace {ns} is not a valid namespace name"),
            });
        }
    }
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let Value::String(v) = v else {
                        return Err(ErrorKind::InvalidObject {
                            doc,
                            message: format!("metadata.{field} must map strings to strings"),
                        });
                    };
                    if let Some(why) = key_problem(k) {
                        let f = if field == "labels" {
                            "label key"
                        } else {
                            "annotation key"
                        };
                        return Err(invalid(f, k, why));
                    }
                    if field == "labels"
                        && let Some(why) = label_value_problem(v)
                    {
                        return Err(invalid("label value", v, why));
                    }
                }
            }
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

/// True for list kinds (`List`, `ConfigMapList`, …) holding `items`: they are expanded into
/// their items, as kubectl does.
pub fn is_list(v: &Value) -> bool {
    v.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && v.get("items").is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(av: &str, kind: &str, name: &str) -> Value {
        json!({"apiVersion": av, "kind": kind, "metadata": {"name": name}})
    }

    #[test]
    fn identities_are_validated_as_the_api_server_does() {
        for (av, kind, name) in [
            ("v1", "ConfigMap", "a/b"),
            ("v1", "ConfigMap", ".."),
            ("v1", "ConfigMap", "has space"),
            ("v1", "ConfigMap", "nul\u{0}"),
            ("v1", "ConfigMap", &"x".repeat(254)),
            ("v1", "ConfigMap", &"x".repeat(64)),
            (
                "v1",
                "ConfigMap",
                &format!("{0}.{0}.{0}.{1}", "x".repeat(63), "y".repeat(62)),
            ),
            ("v1", "ConfigMap", "UPPER"),
            ("v1/../../x", "ConfigMap", "ok"),
            ("v1", "Config Map!", "ok"),
            ("v1", "Service", "1abc"),
            ("v1", "Namespace", "a.b"),
        ] {
            assert!(
                check_object(&obj(av, kind, name), 1).is_err(),
                "{av} {kind} {name:?}"
            );
        }
        for (av, kind, name) in [
            ("v1", "ConfigMap", "a.b-c"),
            (
                "v1",
                "ConfigMap",
                &format!("{0}.{0}.{0}.{1}", "x".repeat(63), "y".repeat(61)),
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "system:aggregate-to-edit",
            ),
            ("apps/v1", "Deployment", "web"),
        ] {
            assert_eq!(
                check_object(&obj(av, kind, name), 1),
                Ok(()),
                "{av} {kind} {name:?}"
            );
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(key_problem("app.kubernetes.io/name"), None);
        assert_eq!(key_problem(&"k".repeat(63)), None);
        assert!(key_problem(&"k".repeat(64)).is_some());
        assert!(key_problem("a/b/c").is_some());
        assert!(key_problem("-x").is_some());
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem(&"v".repeat(63)), None);
        assert!(label_value_problem(&"v".repeat(64)).is_some());
        assert!(label_value_problem("a b").is_some());
    }
}
