//! Unit tests of the planner: every policy decision, without a cluster.

use super::*;

#[derive(Debug, Clone)]
struct Obj {
    key: ObjectKey,
    hash: String,
    template: Option<String>,
    target: Option<String>,
    run_once: bool,
}

impl Planned for Obj {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn api_version(&self) -> &str {
        if self.key.group.is_empty() {
            "v1"
        } else {
            "apps/v1"
        }
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn template_hash(&self) -> Option<&str> {
        self.template.as_deref()
    }
    fn rollout_target(&self) -> Option<&str> {
        self.target.as_deref()
    }
    fn run_once(&self) -> bool {
        self.run_once
    }
}

fn key(group: &str, kind: &str, name: &str) -> ObjectKey {
    ObjectKey {
        group: group.into(),
        kind: kind.into(),
        namespace: "n".into(),
        name: name.into(),
    }
}

fn obj(name: &str, hash: &str) -> Obj {
    Obj {
        key: key("", "ConfigMap", name),
        hash: hash.into(),
        template: None,
        target: None,
        run_once: false,
    }
}

fn deployment(name: &str, hash: &str, template: &str) -> Obj {
    Obj {
        key: key("apps", "Deployment", name),
        hash: hash.into(),
        template: Some(template.into()),
        target: None,
        run_once: false,
    }
}

fn rollout(name: &str, target: &str) -> Obj {
    Obj {
        key: key("fledge.dev", "Rollout", name),
        hash: "r".into(),
        template: None,
        target: Some(target.into()),
        run_once: false,
    }
}

fn job(name: &str, hash: &str) -> Obj {
    Obj {
        key: key("batch", "Job", name),
        hash: hash.into(),
        template: None,
        target: None,
        run_once: true,
    }
}

fn live(hash: &str, marker: &str) -> Live {
    Live {
        hash: Some(hash.into()),
        marker: marker.into(),
        template_hash: None,
        prune_disabled: false,
        labelled: true,
    }
}

fn live_t(hash: &str, marker: &str, template: &str) -> Live {
    Live {
        template_hash: Some(template.into()),
        ..live(hash, marker)
    }
}

fn inv(o: &Obj, observed: &str) -> InventoryEntry {
    entry_of(o, observed.into())
}

fn inv_name(name: &str, observed: &str) -> InventoryEntry {
    inv(&obj(name, "x"), observed)
}

fn no_heal() -> Policy {
    Policy {
        self_heal: false,
        ..Policy::default()
    }
}

#[test]
fn unchanged_commit_and_cluster_plan_nothing() {
    let d = vec![obj("a", "h1"), obj("b", "h2")];
    let l = BTreeMap::from([
        (d[0].key.clone(), live("h1", "m5")),
        (d[1].key.clone(), live("h2", "m6")),
    ]);
    let p = plan(
        &d,
        &l,
        &[inv(&d[0], "m5"), inv(&d[1], "m6")],
        &Policy::default(),
    );
    assert!(p.is_noop());
    assert_eq!(p.unchanged, [0, 1]);
    assert_eq!(p.drift(), 0);
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
        (d[0].key.clone(), live("old", "m1")),
        (d[1].key.clone(), live("h", "m9")),
    ]);
    let i = [inv(&d[0], "m1"), inv(&d[1], "m2"), inv(&d[2], "m3")];
    let p = plan(&d, &l, &i, &Policy::default());
    assert_eq!(
        p.apply,
        [
            (0, Action::Update { force: false }),
            (1, Action::RepairDrift),
            (2, Action::RepairDrift),
            (3, Action::Create)
        ]
    );
    assert!(p.apply[1].1.force(), "drift repair takes the fields back");
    let forced = plan(
        &d,
        &l,
        &i,
        &Policy {
            force: true,
            ..Policy::default()
        },
    );
    assert_eq!(forced.apply[0].1, Action::Update { force: true });
}

/// Defect: with selfHeal off, an object deleted by hand dropped out of the inventory and the next
/// reconcile planned it as a create.
#[test]
fn self_heal_off_never_recreates_an_object_deleted_by_hand() {
    let d = vec![obj("deleted", "h"), obj("edited", "h")];
    let l = BTreeMap::from([(d[1].key.clone(), live("h", "m9"))]);
    let i = vec![inv(&d[0], "m1"), inv(&d[1], "m2")];
    let p = plan(&d, &l, &i, &no_heal());
    assert!(p.apply.is_empty(), "{:?}", p.apply);
    assert_eq!(p.drift_kept, [0, 1]);
    assert_eq!(p.drift(), 2);
    // The next inventory still names the deleted object, with what was recorded before...
    let markers = vec![None, Some("m9".to_owned())];
    let next = next_inventory(&d, &p, &i, &markers, &BTreeSet::new());
    assert!(next.contains(&i[0]), "{next:?}");
    // ... so the reconcile after it plans the same, not a create.
    let again = plan(&d, &l, &next, &no_heal());
    assert!(
        again.apply.is_empty(),
        "second reconcile re-created it: {:?}",
        again.apply
    );
}

#[test]
fn a_write_ahead_entry_without_an_object_is_created() {
    let d = vec![obj("a", "h")];
    let p = plan(&d, &BTreeMap::new(), &[inv(&d[0], "")], &no_heal());
    assert_eq!(p.apply, [(0, Action::Create)]);
}

#[test]
fn fields_fledge_does_not_own_are_not_drift() {
    // An HPA scale or `kubectl annotate` changes the object but not fledge's managed fields,
    // so the marker stays: nothing to do.
    let d = vec![deployment("web", "h", "t1")];
    let l = BTreeMap::from([(d[0].key.clone(), live_t("h", "m1", "t1"))]);
    let p = plan(&d, &l, &[inv(&d[0], "m1")], &Policy::default());
    assert!(p.is_noop(), "{p:?}");
}

#[test]
fn markers_of_older_agents_are_not_evidence_of_drift() {
    let d = vec![obj("a", "h")];
    let l = BTreeMap::from([(d[0].key.clone(), live("h", "m1"))]);
    let p = plan(&d, &l, &[inv(&d[0], "g7")], &Policy::default());
    assert_eq!(p.unchanged, [0]);
}

#[test]
fn a_governed_template_change_is_held_and_handed_over() {
    let d = vec![deployment("web", "new", "t2"), rollout("web", "web")];
    let l = BTreeMap::from([
        (d[0].key.clone(), live_t("old", "m1", "t1")),
        (d[1].key.clone(), live("r", "m2")),
    ]);
    let p = plan(
        &d,
        &l,
        &[inv(&d[0], "m1"), inv(&d[1], "m2")],
        &Policy::default(),
    );
    assert_eq!(
        p.apply,
        [(
            0,
            Action::HoldTemplate {
                rollout: "web".into(),
                force: false
            }
        )]
    );
    assert_eq!(
        p.handoffs,
        [Handoff {
            index: 0,
            rollout: d[1].key.clone(),
            template_hash: "t2".into()
        }]
    );
    // Once the rest is applied (the held content hash recorded) the hand-off stays, nothing is
    // applied.
    let held = held_hash("new", Some("t1"));
    let l2 = BTreeMap::from([
        (d[0].key.clone(), live_t(&held, "m3", "t1")),
        (d[1].key.clone(), live("r", "m2")),
    ]);
    let p2 = plan(
        &d,
        &l2,
        &[inv(&d[0], "m3"), inv(&d[1], "m2")],
        &Policy::default(),
    );
    assert!(p2.apply.is_empty());
    assert_eq!(p2.handoffs.len(), 1);
    // Drift on the held Deployment is repaired without touching the template.
    let p3 = plan(
        &d,
        &l2,
        &[inv(&d[0], "m1"), inv(&d[1], "m2")],
        &Policy::default(),
    );
    assert_eq!(
        p3.apply,
        [(
            0,
            Action::HoldTemplate {
                rollout: "web".into(),
                force: true
            }
        )]
    );
}

/// Defect: after a promotion, sync still owned the fields of the template it had held, so an
/// env var git removed stayed on the stable Deployment, and a field git added moved the drift
/// marker (reported as drift). The held content hash makes the next sync apply git's Deployment.
#[test]
fn after_a_promotion_git_is_applied_as_an_update_not_drift() {
    let d = vec![deployment("web", "new", "t2"), rollout("web", "web")];
    // Promoted: the live template is git's, the content hash still the held one, and the
    // rollout controller's fields moved the marker.
    let l = BTreeMap::from([
        (
            d[0].key.clone(),
            live_t(&held_hash("new", Some("t1")), "m9", "t2"),
        ),
        (d[1].key.clone(), live("r", "m2")),
    ]);
    let p = plan(
        &d,
        &l,
        &[inv(&d[0], "m3"), inv(&d[1], "m2")],
        &Policy::default(),
    );
    assert_eq!(p.apply, [(0, Action::Update { force: false })], "{p:?}");
    assert!(p.drift_kept.is_empty() && p.handoffs.is_empty(), "{p:?}");
    assert_eq!(p.running.len(), 1);
    // Held hashes name the held template and never equal git's.
    assert_ne!(held_hash("new", Some("t1")), "new");
    assert_ne!(held_hash("new", Some("t1")), held_hash("new", Some("t3")));
}

#[test]
fn a_rollout_added_in_the_same_commit_governs_its_deployment() {
    // The Rollout is new (not live yet): its Deployment's template still must not ship directly.
    let d = vec![deployment("web", "new", "t2"), rollout("web", "web")];
    let l = BTreeMap::from([(d[0].key.clone(), live_t("old", "m1", "t1"))]);
    let p = plan(&d, &l, &[inv(&d[0], "m1")], &Policy::default());
    assert!(matches!(p.apply[0].1, Action::HoldTemplate { .. }));
    assert_eq!(p.apply[1], (1, Action::Create));
    assert_eq!(p.handoffs.len(), 1);
}

#[test]
fn git_back_on_the_running_template_is_no_change_but_is_told_to_the_rollout() {
    // A merged revert: git's template is the one that runs (the failed one never left the
    // canary). Nothing to apply, but the Rollout must learn that git moved.
    let d = vec![deployment("web", "h", "t1"), rollout("web", "web")];
    let l = BTreeMap::from([(d[0].key.clone(), live_t("h", "m1", "t1"))]);
    let p = plan(&d, &l, &[inv(&d[0], "m1")], &Policy::default());
    assert!(
        p.handoffs.is_empty() && p.apply.iter().all(|(i, _)| *i != 0),
        "{p:?}"
    );
    assert_eq!(p.running.len(), 1);
    assert_eq!(p.running[0].template_hash, "t1");
}

#[test]
fn a_new_governed_deployment_is_created_directly() {
    let d = vec![deployment("web", "h", "t1"), rollout("web", "web")];
    let p = plan(&d, &BTreeMap::new(), &[], &Policy::default());
    assert_eq!(p.apply, [(0, Action::Create), (1, Action::Create)]);
    assert!(p.handoffs.is_empty());
}

#[test]
fn an_ungoverned_deployment_ships_its_template_directly() {
    let d = vec![deployment("web", "new", "t2"), rollout("other", "other")];
    let l = BTreeMap::from([(d[0].key.clone(), live_t("old", "m1", "t1"))]);
    let p = plan(&d, &l, &[inv(&d[0], "m1")], &Policy::default());
    assert_eq!(p.apply[0], (0, Action::Update { force: false }));
    assert!(p.handoffs.is_empty());
}

/// Defect: a Job deleted by its TTL after finishing was re-created forever.
#[test]
fn a_finished_job_removed_by_its_ttl_is_done_until_git_changes_it() {
    let d = vec![job("migrate", "h1")];
    let i = vec![inv(&d[0], "m1")];
    assert_eq!(i[0].observed, "m1#h1");
    let p = plan(&d, &BTreeMap::new(), &i, &Policy::default());
    assert!(p.apply.is_empty(), "{:?}", p.apply);
    assert_eq!(p.completed, [0]);
    let next = next_inventory(&d, &p, &i, &[None], &BTreeSet::new());
    assert_eq!(next, i, "the record of the run is kept");
    // Git changes the Job: it runs again.
    let changed = vec![job("migrate", "h2")];
    let p = plan(&changed, &BTreeMap::new(), &i, &Policy::default());
    assert_eq!(p.apply, [(0, Action::Create)]);
    // Still present and changed in git: recreated (a Job's template is immutable).
    let l = BTreeMap::from([(d[0].key.clone(), live("h1", "m1"))]);
    let p = plan(&changed, &l, &i, &Policy::default());
    assert_eq!(p.apply, [(0, Action::Recreate)]);
}

#[test]
fn only_labelled_unprotected_inventory_members_are_pruned() {
    let mut protected = live("h", "m1");
    protected.prune_disabled = true;
    let mut taken = live("h", "m1");
    taken.labelled = false;
    let k = |n: &str| key("", "ConfigMap", n);
    let l = BTreeMap::from([
        (k("old"), live("h", "m1")),
        (k("protected"), protected),
        (k("taken"), taken),
        (k("unmanaged"), live("h", "m1")),
    ]);
    let i = [
        inv_name("old", "m1"),
        inv_name("protected", "m1"),
        inv_name("taken", "m1"),
        inv_name("vanished", "m1"),
    ];
    let mut policy = Policy::default();
    policy.allow_mass_prune = true;
    let p = plan(&[] as &[Obj], &l, &i, &policy);
    assert_eq!(
        p.prune.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["old"]
    );
    assert_eq!(p.keep.len(), 2);
    assert_eq!(p.prune_decision, PruneDecision::EmptyRender);
}

#[test]
fn prune_guards() {
    let p = Plan {
        prune: vec![inv_name("a", ""), inv_name("b", "")],
        ..plan(&[] as &[Obj], &BTreeMap::new(), &[], &Policy::default())
    };
    let pol = |prune, max, allow| Policy {
        prune,
        max_prune_fraction: max,
        allow_mass_prune: allow,
        ..Policy::default()
    };
    assert_eq!(
        prune_decision(&p, 0, 2, &pol(true, 0.5, false)),
        PruneDecision::EmptyRender
    );
    assert_eq!(
        prune_decision(&p, 0, 2, &pol(true, 0.5, true)),
        PruneDecision::EmptyRender,
        "even with the annotation"
    );
    assert!(matches!(
        prune_decision(&p, 8, 10, &pol(true, 0.1, false)),
        PruneDecision::TooMany {
            count: 2,
            inventory: 10,
            ..
        }
    ));
    assert_eq!(
        prune_decision(&p, 8, 10, &pol(true, 0.1, true)),
        PruneDecision::Allowed
    );
    assert_eq!(
        prune_decision(&p, 8, 10, &pol(true, 0.5, false)),
        PruneDecision::Allowed
    );
    assert_eq!(
        prune_decision(&p, 8, 10, &pol(false, 0.5, false)),
        PruneDecision::Disabled
    );
    let empty = plan(&[] as &[Obj], &BTreeMap::new(), &[], &Policy::default());
    assert_eq!(
        prune_decision(&empty, 0, 0, &pol(true, 0.5, false)),
        PruneDecision::Nothing
    );
}

#[test]
fn write_ahead_records_creates_before_they_happen() {
    let d = vec![obj("old", "h"), obj("new", "h")];
    let l = BTreeMap::from([(d[0].key.clone(), live("h", "m1"))]);
    let i = vec![inv(&d[0], "m1")];
    let p = plan(&d, &l, &i, &Policy::default());
    let ahead = write_ahead(&d, &p, &i).expect("a create is recorded ahead");
    assert_eq!(ahead.len(), 2);
    assert!(
        ahead
            .iter()
            .any(|e| e.name == "new" && e.observed.is_empty())
    );
    // Nothing new to create: nothing to write ahead.
    let p = plan(&d[..1], &l, &i, &Policy::default());
    assert_eq!(write_ahead(&d[..1], &p, &i), None);
}

#[test]
fn next_inventory_keeps_failed_creates_and_unpruned_members() {
    let d = vec![obj("ok", "h"), obj("failed", "h")];
    let gone = inv_name("gone", "m7");
    let live_gone = BTreeMap::from([(entry_key(&gone), live("x", "m7"))]);
    let mut policy = Policy::default();
    policy.allow_mass_prune = true;
    let p = plan(&d, &live_gone, std::slice::from_ref(&gone), &policy);
    assert_eq!(p.prune.len(), 1);
    let markers = vec![Some("m1".to_owned()), None];
    let kept = next_inventory(&d, &p, &[gone.clone()], &markers, &BTreeSet::new());
    let names: Vec<&str> = kept.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["failed", "gone", "ok"]);
    let pruned = BTreeSet::from([entry_key(&gone)]);
    let after = next_inventory(&d, &p, &[gone], &markers, &pruned);
    assert!(after.iter().all(|e| e.name != "gone"));
}

/// A test object that may be a Rollout weighing a route.
struct Routed(Obj, Option<RouteHold>);

impl Planned for Routed {
    fn key(&self) -> &ObjectKey {
        self.0.key()
    }
    fn api_version(&self) -> &str {
        self.0.api_version()
    }
    fn hash(&self) -> &str {
        self.0.hash()
    }
    fn template_hash(&self) -> Option<&str> {
        self.0.template_hash()
    }
    fn rollout_target(&self) -> Option<&str> {
        self.0.rollout_target()
    }
    fn run_once(&self) -> bool {
        false
    }
    fn rollout_route(&self) -> Option<&RouteHold> {
        self.1.as_ref()
    }
}

#[test]
fn a_route_a_rollout_weighs_is_applied_with_its_live_weights_held() {
    use crate::rollout::routes::RouteKind;
    let route = |hash: &str| Obj {
        key: key("gateway.networking.k8s.io", "HTTPRoute", "web"),
        ..obj("web", hash)
    };
    let hold = RouteHold {
        kind: RouteKind::HttpRoute,
        name: "web".into(),
        service: "web".into(),
    };
    let d = vec![
        Routed(route("new"), None),
        Routed(rollout("web", "web"), Some(hold)),
    ];
    let held = |repair| {
        vec![(
            0,
            Action::HoldWeights {
                rollout: "web".into(),
                service: "web".into(),
                repair,
            },
        )]
    };
    let at = |hash: &str, marker: &str| {
        BTreeMap::from([
            (d[0].key().clone(), live(hash, marker)),
            (d[1].key().clone(), live("r", "m9")),
        ])
    };
    let inventory = [inv(&d[0].0, "m1"), inv(&d[1].0, "m9")];
    // Changed in git: applied, weights held, forced (the router owns the atomic rule list).
    let p = plan(&d, &at("old", "m1"), &inventory, &Policy::default());
    assert_eq!(p.apply, held(false));
    assert!(p.apply[0].1.force());
    assert_eq!(p.drift(), 0);
    // Changed outside git (fledge's fields taken by someone else): repaired, weights held.
    let p = plan(&d, &at("new", "m2"), &inventory, &Policy::default());
    assert_eq!(p.apply, held(true));
    assert_eq!(p.drift(), 1);
    let p = plan(&d, &at("new", "m2"), &inventory, &no_heal());
    assert_eq!((p.apply.len(), p.drift_kept.as_slice()), (0, &[0][..]));
    // Unchanged: nothing applied (the router's weight writes are not drift, see managed_marker).
    let p = plan(&d, &at("new", "m1"), &inventory, &Policy::default());
    assert_eq!((p.apply.len(), p.unchanged.as_slice()), (0, &[0, 1][..]));
    // The same route without a Rollout weighing it is a plain update.
    let alone = vec![Routed(route("new"), None)];
    let p = plan(
        &alone,
        &at("old", "m1"),
        &inventory[..1],
        &Policy::default(),
    );
    assert_eq!(p.apply, [(0, Action::Update { force: false })]);
}
