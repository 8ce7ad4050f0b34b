//! The crash matrix: every scenario is run once without a crash, then once per crash point
//! (before and after every status write and every action); each crashed run must end where the
//! uncrashed one did, with no workload orphaned, no side effect doubled and the status never
//! going backwards.
//!
//! Mutation-checked: a controller loop that carries out the actions *before* writing the status
//! (the order STYLE §6 forbids) passes every uncrashed scenario but fails this matrix (superseded
//! rollout, replicas router, crash after event 46: stable ends on the superseded template).

use super::sim::*;
use crate::crd::{PauseReason, Phase, RolloutStatus};

const MAX_TICKS: usize = 3000;

fn at_gate(s: &RolloutStatus) -> bool {
    s.phase == Phase::Paused
        && s.pause_reason == Some(PauseReason::PauseStep)
        && s.current_step == Some(5)
}
fn at_marginal(s: &RolloutStatus) -> bool {
    s.phase == Phase::Paused && s.pause_reason == Some(PauseReason::Marginal)
}
fn at_second_weight(s: &RolloutStatus) -> bool {
    s.attempt == 1 && s.current_step == Some(2)
}

struct Scenario {
    name: &'static str,
    verdicts: Vec<Scripted>,
    script: Script,
    phase: Phase,
    stable: &'static str,
    canaries: u32,
    promotions: u32,
    rollbacks: u32,
    broken_canary: bool,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "promote",
            verdicts: vec![Scripted::Pass, Scripted::Pass],
            script: Script {
                triggers: vec![(at_gate, Trigger::Request("promote@1"))],
            },
            phase: Phase::Healthy,
            stable: "hash-v2",
            canaries: 1,
            promotions: 1,
            rollbacks: 0,
            broken_canary: false,
        },
        Scenario {
            name: "failed analysis",
            verdicts: vec![Scripted::Pass, Scripted::Fail],
            script: Script { triggers: vec![] },
            phase: Phase::RollbackPending,
            stable: "hash-v1",
            canaries: 1,
            promotions: 0,
            rollbacks: 1,
            broken_canary: false,
        },
        Scenario {
            name: "manual abort while paused",
            verdicts: vec![Scripted::Pass, Scripted::Pass],
            script: Script {
                triggers: vec![(at_gate, Trigger::Request("abort@1"))],
            },
            phase: Phase::RollbackPending,
            stable: "hash-v1",
            canaries: 1,
            promotions: 0,
            rollbacks: 1,
            broken_canary: false,
        },
        Scenario {
            name: "inconclusive then retried",
            verdicts: vec![
                Scripted::Pass,
                Scripted::Inconclusive,
                Scripted::Unavailable,
                Scripted::Pass,
            ],
            script: Script {
                triggers: vec![(at_gate, Trigger::Request("promote@1"))],
            },
            phase: Phase::Healthy,
            stable: "hash-v2",
            canaries: 1,
            promotions: 1,
            rollbacks: 0,
            broken_canary: false,
        },
        Scenario {
            name: "marginal, promoted by a human",
            verdicts: vec![Scripted::Pass, Scripted::Marginal],
            script: Script {
                triggers: vec![
                    (at_marginal, Trigger::Request("promote@m")),
                    (at_gate, Trigger::Request("promote@1")),
                ],
            },
            phase: Phase::Healthy,
            stable: "hash-v2",
            canaries: 1,
            promotions: 1,
            rollbacks: 0,
            broken_canary: false,
        },
        Scenario {
            name: "superseded mid-rollout",
            verdicts: vec![Scripted::Pass, Scripted::Pass, Scripted::Pass],
            script: Script {
                triggers: vec![
                    (at_second_weight, Trigger::NewTemplate("v3")),
                    (at_gate, Trigger::Request("promote@1")),
                ],
            },
            phase: Phase::Healthy,
            stable: "hash-v3",
            canaries: 2,
            promotions: 1,
            rollbacks: 0,
            broken_canary: false,
        },
        Scenario {
            name: "canary never available",
            verdicts: vec![],
            script: Script { triggers: vec![] },
            phase: Phase::RollbackPending,
            stable: "hash-v1",
            canaries: 1,
            promotions: 0,
            rollbacks: 1,
            broken_canary: true,
        },
    ]
}

fn world(routing: Routing, s: &Scenario) -> World {
    let mut w = World::new(routing, s.verdicts.clone());
    w.canary_broken = s.broken_canary;
    w
}

fn check_end(name: &str, w: &World, s: &Scenario) {
    assert!(w.violations.is_empty(), "{name}: {:?}", w.violations);
    assert_eq!(
        w.status.phase, s.phase,
        "{name}: phase ({:?})",
        w.status.reason
    );
    assert_eq!(w.stable.hash, s.stable, "{name}: stable template");
    assert!(
        w.canary.is_none() && w.baseline.is_none(),
        "{name}: orphaned workload"
    );
    assert_eq!(
        w.counters.creates.get("canary").copied().unwrap_or(0),
        s.canaries,
        "{name}: canaries"
    );
    assert_eq!(
        w.counters.creates.get("baseline").copied().unwrap_or(0),
        s.canaries,
        "{name}: baselines"
    );
    assert_eq!(
        w.counters.deletes.get("canary").copied().unwrap_or(0),
        s.canaries,
        "{name}"
    );
    assert_eq!(w.counters.promotions, s.promotions, "{name}: promotions");
    assert_eq!(
        w.counters.rollbacks_opened, s.rollbacks,
        "{name}: git rollbacks"
    );
    assert_eq!(
        w.weights_set,
        super::RouterObs::default(),
        "{name}: traffic back on stable"
    );
}

#[test]
fn scenarios_end_where_they_should_without_crashes() {
    for routing in [Routing::Replicas, Routing::Mesh] {
        for s in scenarios() {
            let spec = six_steps(routing);
            let w = run(&spec, world(routing, &s), &s.script, None, MAX_TICKS);
            check_end(&format!("{} ({routing:?})", s.name), &w, &s);
        }
    }
}

#[test]
fn crash_before_and_after_every_action_changes_nothing() {
    let mut crash_points = 0usize;
    for routing in [Routing::Replicas, Routing::Mesh] {
        for s in scenarios() {
            let spec = six_steps(routing);
            let clean = run(&spec, world(routing, &s), &s.script, None, MAX_TICKS);
            let name = format!("{} ({routing:?})", s.name);
            check_end(&name, &clean, &s);
            for k in 0..clean.events {
                for after in [false, true] {
                    let w = run(
                        &spec,
                        world(routing, &s),
                        &s.script,
                        Some((k, after)),
                        MAX_TICKS,
                    );
                    let at = format!(
                        "{name}, crash {} event {k}",
                        if after { "after" } else { "before" }
                    );
                    check_end(&at, &w, &s);
                    assert_eq!(
                        w.counters, clean.counters,
                        "{at}: side effects differ from the uncrashed run"
                    );
                    assert_eq!(w.prs, clean.prs, "{at}");
                    assert_eq!(
                        w.status.failed_template_hash, clean.status.failed_template_hash,
                        "{at}"
                    );
                    assert_eq!(
                        w.status.stable_template_hash, clean.status.stable_template_hash,
                        "{at}"
                    );
                    crash_points += 1;
                }
            }
        }
    }
    println!("crash points exercised: {crash_points}");
    assert!(crash_points >= 2500, "only {crash_points} crash points");
}
