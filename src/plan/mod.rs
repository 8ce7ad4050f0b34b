//! `plan`: desired objects + what is live + the inventory → what to create, update, leave alone
//! and prune, and whether the prune is allowed. Pure: the live view is gathered by `apply`.
//!
//! "Changed?" is answered without comparing YAML: the object's content hash (annotation written
//! at apply) says whether git changed it, and the generation/resourceVersion fledge recorded
//! after its last apply says whether someone else changed it (drift). Unchanged commit and
//! unchanged live objects therefore plan nothing, and the agent makes no write request.

use crate::crd::InventoryEntry;
use crate::render::{ObjectKey, RenderedObject};
use std::collections::{BTreeMap, BTreeSet};

/// What the plan needs of a desired object: a rendered object, or the compact form the agent
/// keeps between reconciles ([`crate::apply::Manifest`]).
pub trait Planned {
    fn key(&self) -> &ObjectKey;
    fn api_version(&self) -> &str;
    /// Content hash of the object as rendered.
    fn hash(&self) -> &str;
}

impl Planned for RenderedObject {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn api_version(&self) -> &str {
        &self.api_version
    }
    fn hash(&self) -> &str {
        &self.hash
    }
}

impl<T: Planned> Planned for std::sync::Arc<T> {
    fn key(&self) -> &ObjectKey {
        (**self).key()
    }
    fn api_version(&self) -> &str {
        (**self).api_version()
    }
    fn hash(&self) -> &str {
        (**self).hash()
    }
}

/// What matters about a live object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// `fledge.dev/content-hash` annotation.
    pub hash: Option<String>,
    /// `g<generation>` or `r<resourceVersion>`.
    pub marker: String,
    /// Annotated `fledge.dev/prune: disabled`.
    pub prune_disabled: bool,
    /// Carries this ConfigRepo's `fledge.dev/config-repo` label.
    pub labelled: bool,
}

/// Why an object is (re)applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not in the cluster.
    Create,
    /// Changed in git.
    Update,
    /// Changed or deleted by someone else since fledge applied it.
    Drift,
}

/// The plan of one reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Objects to apply, in render (apply) order, with why.
    pub apply: Vec<(usize, Change)>,
    /// Objects already as desired (indices into the desired objects).
    pub unchanged: Vec<usize>,
    /// Inventory members that left the render (and may be pruned).
    pub prune: Vec<InventoryEntry>,
    /// Inventory members that left the render but are protected (`fledge.dev/prune: disabled`)
    /// or no longer carry fledge's label (someone took them over).
    pub keep: Vec<InventoryEntry>,
}

impl Plan {
    pub fn count(&self, change: Change) -> usize {
        self.apply.iter().filter(|(_, c)| *c == change).count()
    }
    pub fn is_noop(&self) -> bool {
        self.apply.is_empty() && self.prune.is_empty()
    }
}

/// Key of an inventory entry.
pub fn entry_key(e: &InventoryEntry) -> ObjectKey {
    ObjectKey {
        group: e.group.clone(),
        kind: e.kind.clone(),
        namespace: e.namespace.clone(),
        name: e.name.clone(),
    }
}

/// Inventory entry of a desired object.
pub fn entry_of(o: &impl Planned, observed: String) -> InventoryEntry {
    let av = o.api_version();
    let version = av.rsplit('/').next().unwrap_or(av).to_owned();
    let key = o.key();
    InventoryEntry {
        group: key.group.clone(),
        version,
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        observed,
    }
}

/// Computes the plan.
pub fn plan(
    desired: &[impl Planned],
    live: &BTreeMap<ObjectKey, Live>,
    inventory: &[InventoryEntry],
) -> Plan {
    let recorded: BTreeMap<ObjectKey, &InventoryEntry> =
        inventory.iter().map(|e| (entry_key(e), e)).collect();
    let mut p = Plan::default();
    for (i, o) in desired.iter().enumerate() {
        match (live.get(o.key()), recorded.get(o.key())) {
            (None, Some(_)) => p.apply.push((i, Change::Drift)), // deleted behind our back
            (None, None) => p.apply.push((i, Change::Create)),
            (Some(l), _) if l.hash.as_deref() != Some(o.hash()) => {
                p.apply.push((i, Change::Update))
            }
            (Some(l), Some(e)) if !e.observed.is_empty() && e.observed != l.marker => {
                p.apply.push((i, Change::Drift))
            }
            (Some(_), None) => p.apply.push((i, Change::Update)), // ours by hash, not yet in inventory
            (Some(_), Some(_)) => p.unchanged.push(i),
        }
    }
    let wanted: BTreeSet<&ObjectKey> = desired.iter().map(|o| o.key()).collect();
    for e in inventory {
        let key = entry_key(e);
        if wanted.contains(&key) {
            continue;
        }
        match live.get(&key) {
            // Already gone: nothing to delete, just forget it.
            None => {}
            Some(l) if l.prune_disabled || !l.labelled => p.keep.push(e.clone()),
            Some(_) => p.prune.push(e.clone()),
        }
    }
    p
}

/// Whether the prune part of a plan may run.
#[derive(Debug, Clone, PartialEq)]
pub enum PruneDecision {
    /// Delete these.
    Allowed,
    /// Nothing to prune.
    Nothing,
    /// Pruning disabled by `spec.prune: false`.
    Disabled,
    /// The render is empty: never prune everything because of it.
    EmptyRender,
    /// More than `max_fraction` of the inventory would go.
    TooMany {
        count: usize,
        inventory: usize,
        max_fraction: f64,
    },
}

impl PruneDecision {
    /// Condition reason (stable, CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            PruneDecision::Allowed => "Pruned",
            PruneDecision::Nothing => "NothingToPrune",
            PruneDecision::Disabled => "PruneDisabled",
            PruneDecision::EmptyRender => "EmptyRenderRefused",
            PruneDecision::TooMany { .. } => "MassPruneRefused",
        }
    }
}

/// The prune guards (DESIGN §8): an empty render prunes nothing; pruning more than
/// `max_fraction` of the inventory in one reconcile is refused unless `allow_mass_prune`.
pub fn prune_decision(
    plan: &Plan,
    desired_count: usize,
    inventory_count: usize,
    enabled: bool,
    max_fraction: f64,
    allow_mass_prune: bool,
) -> PruneDecision {
    if plan.prune.is_empty() {
        return PruneDecision::Nothing;
    }
    if !enabled {
        return PruneDecision::Disabled;
    }
    if desired_count == 0 {
        return PruneDecision::EmptyRender;
    }
    let fraction = plan.prune.len() as f64 / inventory_count.max(1) as f64;
    if fraction > max_fraction && !allow_mass_prune {
        return PruneDecision::TooMany {
            count: plan.prune.len(),
            inventory: inventory_count,
            max_fraction,
        };
    }
    PruneDecision::Allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, hash: &str) -> RenderedObject {
        RenderedObject {
            key: ObjectKey {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: "n".into(),
                name: name.into(),
            },
            api_version: "v1".into(),
            object: serde_json::json!({}),
            sources: vec![],
            hash: hash.into(),
        }
    }

    fn live(hash: &str, marker: &str) -> Live {
        Live {
            hash: Some(hash.into()),
            marker: marker.into(),
            prune_disabled: false,
            labelled: true,
        }
    }

    fn inv(name: &str, observed: &str) -> InventoryEntry {
        InventoryEntry {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "n".into(),
            name: name.into(),
            observed: observed.into(),
        }
    }

    #[test]
    fn unchanged_commit_and_cluster_plan_nothing() {
        let d = vec![obj("a", "h1"), obj("b", "h2")];
        let l = BTreeMap::from([
            (d[0].key.clone(), live("h1", "r5")),
            (d[1].key.clone(), live("h2", "r6")),
        ]);
        let p = plan(&d, &l, &[inv("a", "r5"), inv("b", "r6")]);
        assert!(p.is_noop());
        assert_eq!(p.unchanged, [0, 1]);
    }

    #[test]
    fn git_changes_drift_deletions_and_new_objects() {
        let d = vec![
            obj("changed", "new"),
            obj("edited", "h"),
            obj("deleted", "h"),
            obj("fresh", "h"),
        ];
        let l = BTreeMap::from([
            (d[0].key.clone(), live("old", "r1")),
            (d[1].key.clone(), live("h", "r9")),
        ]);
        let p = plan(
            &d,
            &l,
            &[
                inv("changed", "r1"),
                inv("edited", "r2"),
                inv("deleted", "r3"),
            ],
        );
        assert_eq!(
            p.apply,
            [
                (0, Change::Update),
                (1, Change::Drift),
                (2, Change::Drift),
                (3, Change::Create)
            ]
        );
    }

    #[test]
    fn only_labelled_unprotected_inventory_members_are_pruned() {
        let gone = |n: &str| ObjectKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "n".into(),
            name: n.into(),
        };
        let mut protected = live("h", "r1");
        protected.prune_disabled = true;
        let mut taken = live("h", "r1");
        taken.labelled = false;
        let l = BTreeMap::from([
            (gone("old"), live("h", "r1")),
            (gone("protected"), protected),
            (gone("taken"), taken),
            (gone("unmanaged"), live("h", "r1")),
        ]);
        let p = plan(
            &[] as &[RenderedObject],
            &l,
            &[
                inv("old", "r1"),
                inv("protected", "r1"),
                inv("taken", "r1"),
                inv("vanished", "r1"),
            ],
        );
        assert_eq!(
            p.prune.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["old"]
        );
        assert_eq!(p.keep.len(), 2);
    }

    #[test]
    fn prune_guards() {
        let p = Plan {
            prune: vec![inv("a", ""), inv("b", "")],
            ..Plan::default()
        };
        assert_eq!(
            prune_decision(&p, 0, 2, true, 0.5, false),
            PruneDecision::EmptyRender
        );
        assert_eq!(
            prune_decision(&p, 0, 2, true, 0.5, true),
            PruneDecision::EmptyRender,
            "even with the annotation"
        );
        assert!(matches!(
            prune_decision(&p, 8, 10, true, 0.1, false),
            PruneDecision::TooMany {
                count: 2,
                inventory: 10,
                ..
            }
        ));
        assert_eq!(
            prune_decision(&p, 8, 10, true, 0.1, true),
            PruneDecision::Allowed
        );
        assert_eq!(
            prune_decision(&p, 8, 10, true, 0.5, false),
            PruneDecision::Allowed
        );
        assert_eq!(
            prune_decision(&p, 8, 10, false, 0.5, false),
            PruneDecision::Disabled
        );
        assert_eq!(
            prune_decision(&Plan::default(), 0, 0, true, 0.5, false),
            PruneDecision::Nothing
        );
    }
}
