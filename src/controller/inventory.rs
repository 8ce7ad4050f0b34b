//! The inventory of a ConfigRepo: the objects fledge applied for it, the only ones it may prune.
//! Small inventories live in the status; above [`IN_STATUS_MAX`] entries they live in a
//! ConfigMap in the agent's namespace (named in `status.inventoryConfigMap`), one entry per line.
//! The agent and `fledge plan` read it through [`read`].

use crate::crd::{ConfigRepoStatus, InventoryEntry};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;

/// Inventories larger than this live in a ConfigMap instead of the status.
pub const IN_STATUS_MAX: usize = 1000;

/// The ConfigMap key holding the entries.
const KEY: &str = "inventory";

/// The name of the ConfigMap holding `repo`'s inventory.
pub fn config_map_name(repo: &str) -> String {
    format!("fledge-inventory-{repo}")
}

/// One line per entry: `group|version|kind|namespace|name|observed`.
pub fn encode(entries: &[InventoryEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}|{}|{}|{}|{}|{}\n",
                e.group, e.version, e.kind, e.namespace, e.name, e.observed
            )
        })
        .collect()
}

/// Parses [`encode`]'s lines; a line that is not an entry is an error naming it (a damaged
/// inventory must not read as a smaller one: that would hide objects from prune forever).
pub fn decode(text: &str) -> Result<Vec<InventoryEntry>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('|').collect();
            if f.len() != 6 || f[1].is_empty() || f[2].is_empty() || f[4].is_empty() {
                return Err(format!(
                    "line {}: expected group|version|kind|namespace|name|observed, found {l:?}",
                    i + 1
                ));
            }
            Ok(InventoryEntry {
                group: f[0].into(),
                version: f[1].into(),
                kind: f[2].into(),
                namespace: f[3].into(),
                name: f[4].into(),
                observed: f[5].into(),
            })
        })
        .collect()
}

/// Why an inventory could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    /// The ConfigMap the status names does not exist.
    pub missing: bool,
    pub message: String,
}

/// A ConfigRepo's inventory (none before its first status), from its status or from the ConfigMap the status names (in
/// `namespace`, the agent's). Never reads as empty when it is not: a ConfigMap that cannot be
/// read, or is damaged, is an error.
pub async fn read(
    client: &Client,
    namespace: &str,
    status: Option<&ConfigRepoStatus>,
) -> Result<Vec<InventoryEntry>, ReadError> {
    let Some(status) = status else {
        return Ok(Vec::new());
    };
    let Some(name) = &status.inventory_config_map else {
        return Ok(status.inventory.clone());
    };
    let err = |missing, message| ReadError { missing, message };
    let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| {
            err(
                false,
                format!("reading inventory ConfigMap {namespace}/{name}: {e}"),
            )
        })?
        .ok_or_else(|| {
            err(
                true,
                format!("inventory ConfigMap {namespace}/{name} not found"),
            )
        })?;
    let text = cm.data.unwrap_or_default().remove(KEY).unwrap_or_default();
    decode(&text).map_err(|e| {
        err(
            false,
            format!("inventory ConfigMap {namespace}/{name}: {e}"),
        )
    })
}

/// The ConfigMap body holding `entries` for `repo`.
pub fn config_map(repo: &str, namespace: &str, entries: &[InventoryEntry]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(repo),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "fledge"},
        },
        "data": {KEY: encode(entries)}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(group: &str, kind: &str, ns: &str, name: &str) -> InventoryEntry {
        InventoryEntry {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            observed: "g1".into(),
        }
    }

    #[test]
    fn entries_survive_encode_and_decode() {
        let entries = vec![
            entry("", "ConfigMap", "shop", "settings"),
            entry("apps", "Deployment", "shop", "web"),
            entry("", "Namespace", "", "shop"),
        ];
        assert_eq!(decode(&encode(&entries)).unwrap(), entries);
        assert_eq!(decode("").unwrap(), Vec::new());
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_it() {
        let text = format!(
            "{}apps|v1|Deployment|shop\n",
            encode(&[entry("", "ConfigMap", "shop", "a")])
        );
        let e = decode(&text).unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("Deployment|shop"),
            "{e}"
        );
        assert!(
            decode("|v1||shop|x|g1\n").is_err(),
            "an empty kind is no entry"
        );
    }
}
