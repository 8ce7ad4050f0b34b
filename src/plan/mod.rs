//! `plan`: desired objects + what is live + the inventory + the ConfigRepo's policy → typed
//! actions (create, update, repair drift, hold a governed Deployment's pod template and hand it
//! to the rollout engine, prune — with the prune guards' decision). Pure: the live view is
//! gathered by `apply`, and the agent and `fledge plan` both call [`plan`], so the PR check and
//! the agent always agree. [`report`] turns a plan into the text and lists both show.
//!
//! "Changed?" is answered without comparing YAML: the object's content hash (annotation written
//! at apply) says whether git changed it, and a hash of the fields fledge owns (its
//! `managedFields` entry, recorded after its last apply) says whether someone else changed them
//! (drift). Fields fledge does not own — `replicas` under an HPA, an annotation added with
//! `kubectl annotate`, `kubectl rollout restart` — are not drift.

mod prune;
pub mod report;
#[cfg(test)]
mod tests;

pub use prune::{PruneDecision, prune_decision};

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
    /// Hash of a Deployment's pod template (`spec.template`); `None` for other kinds.
    fn template_hash(&self) -> Option<&str>;
    /// For a fledge `Rollout`: the name of the Deployment it governs.
    fn rollout_target(&self) -> Option<&str>;
    /// Applied once and then left alone until git changes it (a Job, or
    /// `fledge.dev/apply-policy: create-only`): gone from the cluster with the same content is
    /// done, not drift.
    fn run_once(&self) -> bool;
    /// For a fledge `Rollout` with a mesh router: the route it sets weights on.
    fn rollout_route(&self) -> Option<&RouteHold> {
        None
    }
}

/// The route (HTTPRoute or VirtualService) a Rollout sets weights on, and the Service whose
/// track Services (`<service>-stable|canary|baseline`) it weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHold {
    pub kind: crate::rollout::routes::RouteKind,
    pub name: String,
    pub service: String,
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
    fn template_hash(&self) -> Option<&str> {
        None
    }
    fn rollout_target(&self) -> Option<&str> {
        None
    }
    fn run_once(&self) -> bool {
        false
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
    fn template_hash(&self) -> Option<&str> {
        (**self).template_hash()
    }
    fn rollout_target(&self) -> Option<&str> {
        (**self).rollout_target()
    }
    fn run_once(&self) -> bool {
        (**self).run_once()
    }
    fn rollout_route(&self) -> Option<&RouteHold> {
        (**self).rollout_route()
    }
}

/// What matters about a live object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// `fledge.dev/content-hash` annotation.
    pub hash: Option<String>,
    /// Hash of the fields fledge owns (`m…`), see [`crate::apply::managed_marker`].
    pub marker: String,
    /// `fledge.dev/template-hash` annotation of a Deployment: the pod template it runs.
    pub template_hash: Option<String>,
    /// Annotated `fledge.dev/prune: disabled`.
    pub prune_disabled: bool,
    /// Carries this ConfigRepo's `fledge.dev/config-repo` label.
    pub labelled: bool,
}

/// The ConfigRepo's policy, as the plan applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Repair drift (`spec.selfHeal`).
    pub self_heal: bool,
    /// Take fields over from other field managers on every apply (`spec.force`).
    pub force: bool,
    /// Delete what left git (`spec.prune`).
    pub prune: bool,
    /// Largest share of the inventory one reconcile may delete (`spec.maxPruneFraction`).
    pub max_prune_fraction: f64,
    /// The ConfigRepo is annotated `fledge.dev/allow-mass-prune: "true"`.
    pub allow_mass_prune: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            self_heal: true,
            force: false,
            prune: true,
            max_prune_fraction: 0.5,
            allow_mass_prune: false,
        }
    }
}

/// Why and how an object is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not in the cluster: create it (a governed Deployment that does not exist yet too:
    /// nothing to protect — bootstrap, disaster recovery).
    Create,
    /// Changed in git. `force` takes fields over from other managers (`spec.force`).
    Update { force: bool },
    /// Changed or deleted outside fledge; git wins, so the apply takes the fields back.
    RepairDrift,
    /// A Deployment governed by the Rollout `rollout` whose pod template differs from what runs:
    /// apply every other field (forced when it repairs drift) but keep the live template. The
    /// new template goes to the rollout engine through a [`Handoff`].
    HoldTemplate { rollout: String, force: bool },
    /// A run-once object (Job) changed in git: delete it and create it again.
    Recreate,
    /// A route a Rollout `rollout` sets weights on, changed in git (or repairing drift,
    /// `repair`): apply git's route with the weights the live route stores for the track Services
    /// of `service`, so sync never moves a rollout's traffic. Forced: the rollout controller owns
    /// the route's atomic rule list after its last weight change.
    HoldWeights {
        rollout: String,
        service: String,
        repair: bool,
    },
}

impl Action {
    /// Whether the apply takes fields over from other field managers.
    pub fn force(&self) -> bool {
        match self {
            Action::Update { force } | Action::HoldTemplate { force, .. } => *force,
            Action::RepairDrift | Action::HoldWeights { .. } => true,
            Action::Create | Action::Recreate => false,
        }
    }
}

/// A governed Deployment's new pod template, for the rollout engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// Index of the Deployment in the desired objects.
    pub index: usize,
    /// Namespace and name of the Rollout governing it.
    pub rollout: ObjectKey,
    pub template_hash: String,
}

/// The plan of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Objects to apply, in render (apply) order, with why and how.
    pub apply: Vec<(usize, Action)>,
    /// Pod-template changes of governed Deployments, for the rollout engine.
    pub handoffs: Vec<Handoff>,
    /// Governed Deployments whose template in git is the one running: recorded on the Rollout
    /// too when it names another (git came back to the running template, e.g. a merged revert),
    /// so the engine sees it. Not a change: the plan is empty without them.
    pub running: Vec<Handoff>,
    /// Objects already as desired (indices into the desired objects).
    pub unchanged: Vec<usize>,
    /// Objects changed outside git that are left alone (`selfHeal: false`).
    pub drift_kept: Vec<usize>,
    /// Run-once objects that ran and were removed (a finished Job deleted by its TTL).
    pub completed: Vec<usize>,
    /// Inventory members that left the render (and may be pruned).
    pub prune: Vec<InventoryEntry>,
    /// Inventory members that left the render but are protected (`fledge.dev/prune: disabled`)
    /// or no longer carry fledge's label (someone took them over).
    pub keep: Vec<InventoryEntry>,
    /// Whether [`Plan::prune`] may run (the prune guards).
    pub prune_decision: PruneDecision,
}

impl Plan {
    /// Number of applies of one kind (`Create`, `Update`, …), by discriminant.
    pub fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.apply.iter().filter(|(_, a)| f(a)).count()
    }
    pub fn creates(&self) -> usize {
        self.count(|a| matches!(a, Action::Create))
    }
    /// Updates of any kind (git change, drift repair, held template, recreate).
    pub fn updates(&self) -> usize {
        self.apply.len() - self.creates()
    }
    /// Drift found: repaired or kept.
    pub fn drift(&self) -> usize {
        self.drift_kept.len()
            + self.count(|a| {
                matches!(
                    a,
                    Action::RepairDrift
                        | Action::HoldTemplate { force: true, .. }
                        | Action::HoldWeights { repair: true, .. }
                )
            })
    }
    pub fn is_noop(&self) -> bool {
        self.apply.is_empty()
            && self.handoffs.is_empty()
            && (self.prune.is_empty() || self.prune_decision != PruneDecision::Allowed)
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

/// Separates the drift marker from the applied content hash in a run-once object's entry.
const RUN_ONCE_SEPARATOR: char = '#';

/// Inventory entry of a desired object, `observed` being its drift marker after the apply.
/// Run-once objects also remember the content they ran with.
pub fn entry_of(o: &impl Planned, observed: String) -> InventoryEntry {
    let av = o.api_version();
    let version = av.rsplit('/').next().unwrap_or(av).to_owned();
    let key = o.key();
    let observed = if o.run_once() {
        format!("{observed}{RUN_ONCE_SEPARATOR}{}", o.hash())
    } else {
        observed
    };
    InventoryEntry {
        group: key.group.clone(),
        version,
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        observed,
    }
}

/// The drift marker an entry recorded (without a run-once object's content hash).
fn recorded_marker(e: &InventoryEntry) -> &str {
    e.observed
        .split_once(RUN_ONCE_SEPARATOR)
        .map_or(e.observed.as_str(), |(m, _)| m)
}

/// The content hash a run-once object ran with.
fn recorded_hash(e: &InventoryEntry) -> Option<&str> {
    e.observed.split_once(RUN_ONCE_SEPARATOR).map(|(_, h)| h)
}

/// Whether the recorded marker is one this version compares (older agents recorded
/// generations, which every HPA scale moved: those are not evidence of drift).
fn comparable(marker: &str) -> bool {
    marker.starts_with('m')
}

/// The content hash sync stamps on a governed Deployment it applied from git's content `hash`
/// while holding the live pod template `held` (another than git's): never equal to `hash`, so
/// once the rollout controller promotes git's template, the next sync applies git's Deployment
/// as it is (an update, not drift) and owns exactly its fields again.
pub fn held_hash(hash: &str, held: Option<&str>) -> String {
    let held = held.unwrap_or("none");
    format!("{hash}.held-{}", &held[..held.len().min(16)])
}

/// Deployments governed by a Rollout of the same render: Deployment key → Rollout key.
pub fn governed(desired: &[impl Planned]) -> BTreeMap<ObjectKey, ObjectKey> {
    desired
        .iter()
        .filter_map(|o| {
            let target = o.rollout_target()?;
            let k = o.key();
            let deployment = ObjectKey {
                group: "apps".into(),
                kind: "Deployment".into(),
                namespace: k.namespace.clone(),
                name: target.to_owned(),
            };
            Some((deployment, k.clone()))
        })
        .collect()
}

/// Routes a Rollout of the same render sets weights on: route key → (Rollout, Service).
pub fn governed_routes(desired: &[impl Planned]) -> BTreeMap<ObjectKey, (ObjectKey, String)> {
    desired
        .iter()
        .filter_map(|o| {
            let r = o.rollout_route()?;
            let k = o.key();
            let route = ObjectKey {
                group: r.kind.group().into(),
                kind: r.kind.kind().into(),
                namespace: k.namespace.clone(),
                name: r.name.clone(),
            };
            Some((route, (k.clone(), r.service.clone())))
        })
        .collect()
}

/// Computes the plan.
pub fn plan(
    desired: &[impl Planned],
    live: &BTreeMap<ObjectKey, Live>,
    inventory: &[InventoryEntry],
    policy: &Policy,
) -> Plan {
    let recorded: BTreeMap<ObjectKey, &InventoryEntry> =
        inventory.iter().map(|e| (entry_key(e), e)).collect();
    let governors = governed(desired);
    let routes = governed_routes(desired);
    let mut p = Plan {
        apply: Vec::new(),
        handoffs: Vec::new(),
        running: Vec::new(),
        unchanged: Vec::new(),
        drift_kept: Vec::new(),
        completed: Vec::new(),
        prune: Vec::new(),
        keep: Vec::new(),
        prune_decision: PruneDecision::Nothing,
    };
    for (i, o) in desired.iter().enumerate() {
        let entry = recorded.get(o.key()).copied();
        let drifted = |l: &Live| {
            entry.is_some_and(|e| {
                let m = recorded_marker(e);
                comparable(m) && m != l.marker
            })
        };
        let Some(l) = live.get(o.key()) else {
            match entry {
                // Unknown, or recorded ahead of a create that never happened.
                None => p.apply.push((i, Action::Create)),
                Some(e) if recorded_marker(e).is_empty() => p.apply.push((i, Action::Create)),
                // Ran, finished and removed (a Job's TTL): done until git changes it.
                Some(e) if o.run_once() && recorded_hash(e) == Some(o.hash()) => {
                    p.completed.push(i)
                }
                Some(e) if o.run_once() && recorded_hash(e).is_some() => {
                    p.apply.push((i, Action::Create))
                }
                // Deleted behind our back.
                Some(_) if policy.self_heal => p.apply.push((i, Action::RepairDrift)),
                Some(_) => p.drift_kept.push(i),
            }
            continue;
        };
        let changed = l.hash.as_deref() != Some(o.hash());
        let drift = drifted(l);
        // A route a Rollout weighs: applied with its live weights held.
        if let Some((rollout, service)) = routes.get(o.key()) {
            let hold = |repair| Action::HoldWeights {
                rollout: rollout.name.clone(),
                service: service.clone(),
                repair,
            };
            if changed {
                p.apply.push((i, hold(false)));
            } else if drift && policy.self_heal {
                p.apply.push((i, hold(true)));
            } else if drift {
                p.drift_kept.push(i);
            } else {
                p.unchanged.push(i);
            }
            continue;
        }
        // A governed Deployment already running git's template (e.g. a merged revert): recorded,
        // so a Rollout still naming another template (RollbackPending) learns git moved on.
        if let (Some(rollout), Some(th)) = (governors.get(o.key()), o.template_hash())
            && l.template_hash.as_deref() == Some(th)
        {
            p.running.push(Handoff {
                index: i,
                rollout: rollout.clone(),
                template_hash: th.to_owned(),
            });
        }
        // A governed Deployment running another template: hold it, hand the new one over. Held,
        // it carries git's content with the live template, stamped with the held hash.
        if let (Some(rollout), Some(th)) = (governors.get(o.key()), o.template_hash())
            && l.template_hash.as_deref() != Some(th)
        {
            let changed =
                l.hash.as_deref() != Some(held_hash(o.hash(), l.template_hash.as_deref()).as_str());
            p.handoffs.push(Handoff {
                index: i,
                rollout: rollout.clone(),
                template_hash: th.to_owned(),
            });
            let name = rollout.name.clone();
            if changed {
                p.apply.push((
                    i,
                    Action::HoldTemplate {
                        rollout: name,
                        force: policy.force,
                    },
                ));
            } else if drift && policy.self_heal {
                p.apply.push((
                    i,
                    Action::HoldTemplate {
                        rollout: name,
                        force: true,
                    },
                ));
            } else if drift {
                p.drift_kept.push(i);
            } else {
                p.unchanged.push(i);
            }
            continue;
        }
        if changed {
            let action = if o.run_once() && entry.is_some() {
                Action::Recreate
            } else {
                Action::Update {
                    force: policy.force,
                }
            };
            p.apply.push((i, action));
        } else if drift && policy.self_heal {
            p.apply.push((i, Action::RepairDrift));
        } else if drift {
            p.drift_kept.push(i);
        } else {
            p.unchanged.push(i);
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
    p.prune_decision = prune_decision(&p, desired.len(), inventory.len(), policy);
    p
}

/// The inventory to record before anything is applied (write-ahead): the current inventory plus
/// every object the plan is about to create, so a crash between create and the final inventory
/// write orphans nothing. `None` when it would not change.
pub fn write_ahead(
    desired: &[impl Planned],
    plan: &Plan,
    inventory: &[InventoryEntry],
) -> Option<Vec<InventoryEntry>> {
    let known: BTreeSet<ObjectKey> = inventory.iter().map(entry_key).collect();
    let mut out = inventory.to_vec();
    for (i, _) in &plan.apply {
        let o = &desired[*i];
        if !known.contains(o.key()) {
            out.push(entry_of(o, String::new()));
        }
    }
    if out.len() == inventory.len() {
        return None;
    }
    out.sort();
    Some(out)
}

/// The inventory after the reconcile: every desired object that is live (with its new marker),
/// objects whose drift is left alone or that completed (with what was recorded before, so they
/// are neither re-created nor forgotten), creates that failed (recorded ahead, marker empty), and
/// the objects due for pruning that were not deleted.
pub fn next_inventory(
    desired: &[impl Planned],
    plan: &Plan,
    inventory: &[InventoryEntry],
    markers: &[Option<String>],
    pruned: &BTreeSet<ObjectKey>,
) -> Vec<InventoryEntry> {
    let recorded: BTreeMap<ObjectKey, &InventoryEntry> =
        inventory.iter().map(|e| (entry_key(e), e)).collect();
    let applied: BTreeSet<usize> = plan.apply.iter().map(|(i, _)| *i).collect();
    let mut out = Vec::with_capacity(desired.len());
    for (i, o) in desired.iter().enumerate() {
        match (&markers[i], recorded.get(o.key())) {
            (Some(m), _) => out.push(entry_of(o, m.clone())),
            (None, Some(e)) => out.push((*e).clone()),
            (None, None) if applied.contains(&i) => out.push(entry_of(o, String::new())),
            (None, None) => {}
        }
    }
    for e in &plan.prune {
        if !pruned.contains(&entry_key(e)) {
            out.push(e.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}
