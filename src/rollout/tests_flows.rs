//! More transitions: operator requests, promotion, supersede, step-list and replicas changes,
//! routers, invalid specs, and a property test that the status never goes backwards.

use super::sim::{Routing, handoff, six_steps};
use super::tests::{at, at_step, healthy, judged, obs, t0, verdict, wl};
use super::*;
use crate::analysis::Outcome;
use crate::crd::*;
use jiff::SignedDuration;
use proptest::prelude::*;

#[test]
fn manual_abort_while_paused_tears_down_and_hands_over_an_abort_verdict() {
    let (spec, st, mut o) = at_step(5);
    let st = step(&spec, &st, &o, at(0)).status;
    o.request = Some("abort@x".into());
    let d = step(&spec, &st, &o, at(10));
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(
        d.status.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::Aborted)
    );
    assert_eq!(
        d.actions,
        vec![Action::SetWeight {
            canary: 0,
            baseline: 0
        }]
    );
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(20));
    let [Action::RequestGitRollback(f)] = d.actions.as_slice() else {
        panic!("{:?}", d.actions)
    };
    assert_eq!(f.verdict.cause(), &FailureCause::Aborted);
}

#[test]
fn pause_and_resume_hold_the_rollout_where_it_is() {
    let (spec, st, mut o) = at_step(0);
    o.request = Some("pause@1".into());
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(
        (d.status.phase, d.status.pause_reason),
        (Phase::Paused, Some(PauseReason::Manual))
    );
    assert_eq!(d.status.current_step, Some(0), "settled, but held");
    assert!(d.actions.is_empty());
    o.request = Some("resume@2".into());
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(d.status.current_step, Some(1));
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let (spec, st, mut o) = at_step(1);
    o.request = Some("promote-full@1".into());
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.phase, Phase::Promoting);
    assert_eq!(d.status.step_progress.as_deref(), Some("6/6"));
    assert!(
        matches!(d.actions.as_slice(), [Action::PromoteStable { template_hash, .. }] if template_hash == "hash-v2")
    );
}

#[test]
fn promotion_applies_waits_then_moves_traffic_and_removes_canary_and_baseline() {
    let (spec, st, mut o) = at_step(5);
    o.request = Some("promote@1".into());
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.phase, Phase::Promoting);
    // Applied, not yet available: wait, no second apply.
    o.stable.template_hash = Some("hash-v2".into());
    o.stable.available = false;
    let d = step(&spec, &d.status, &o, at(10));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(d.status.stable_template_hash.as_deref(), Some("hash-v1"));
    // An abort now is refused: the stable is already changing.
    o.request = Some("abort@2".into());
    let d = step(&spec, &d.status, &o, at(15));
    assert_eq!(d.status.phase, Phase::Promoting);
    o.stable.available = true;
    let d = step(&spec, &d.status, &o, at(20));
    assert_eq!(d.status.stable_template_hash.as_deref(), Some("hash-v2"));
    assert_eq!(
        d.actions,
        vec![Action::SetWeight {
            canary: 0,
            baseline: 0
        }]
    );
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(30));
    assert_eq!(d.actions.len(), 2);
    o.canary = None;
    o.baseline = None;
    let d = step(&spec, &d.status, &o, at(40));
    assert_eq!(d.status.phase, Phase::Healthy);
    assert_eq!(
        d.status.stable_revision.as_deref(),
        Some("rev-v2-0123456789abcdef")
    );
    assert_eq!(
        (d.status.canary_template_hash.clone(), d.status.current_step),
        (None, None)
    );
}

#[test]
fn a_new_template_mid_rollout_aborts_and_restarts_without_blame() {
    let (spec, mut st, mut o) = at_step(3);
    st.handoff = Some(handoff("v3"));
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(
        d.status.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::Superseded)
    );
    assert_eq!(d.status.failed_template_hash, None);
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(
        (d.status.phase, d.status.attempt, d.status.current_step),
        (Phase::Progressing, 2, Some(0))
    );
    assert_eq!(d.status.canary_template_hash.as_deref(), Some("hash-v3"));
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::RequestGitRollback(_)))
    );
}

#[test]
fn git_going_back_to_stable_mid_rollout_ends_healthy() {
    let (spec, mut st, mut o) = at_step(1);
    st.handoff = Some(handoff("v1"));
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(
        d.status.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::RevertedInGit)
    );
    o.canary = None;
    o.baseline = None;
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(d.status.phase, Phase::Healthy);
    assert!(d.actions.is_empty());
}

#[test]
fn a_changed_step_list_starts_the_steps_over() {
    let (mut spec, st, o) = at_step(3);
    spec.steps.remove(4);
    let d = step(&spec, &st, &o, at(0));
    assert_eq!((d.status.attempt, d.status.current_step), (2, Some(0)));
    assert_eq!(
        d.status.canary_template_hash.as_deref(),
        Some("hash-v2"),
        "same canary"
    );
    assert!(progress(&d.status) > progress(&st));
}

#[test]
fn a_replicas_only_change_rescales_canary_and_baseline() {
    let (spec, mut st, o) = at_step(2);
    let mut h = handoff("v2");
    h.replicas = Some(30);
    st.handoff = Some(h);
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(
        d.actions,
        vec![
            Action::ScaleWorkload {
                track: Track::Canary,
                replicas: 10
            },
            Action::ScaleWorkload {
                track: Track::Baseline,
                replicas: 10
            },
        ]
    );
}

#[test]
fn the_replicas_router_scales_pods_and_never_sets_weights() {
    let spec = six_steps(Routing::Replicas);
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    let mut o = obs();
    o.canary = Some(wl("v2", 1));
    o.baseline = Some(wl("v1", 1));
    o.router = Some(replicas::achieved(10, 1, 1));
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(
        d.status.current_step,
        Some(1),
        "10% step settled with one pod each"
    );
    assert_eq!(
        (d.status.set_weight, d.status.actual_weight),
        (Some(10), Some(8))
    );
    assert_eq!(
        d.status.weight.as_deref(),
        Some("10/8"),
        "the Weight column"
    );
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. }))
    );
}

#[test]
fn a_canary_past_its_progress_deadline_fails() {
    let (spec, st, mut o) = at_step(0);
    if let Some(c) = o.canary.as_mut() {
        c.progress_deadline_exceeded = true;
    }
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(
        d.status.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::ProgressDeadlineExceeded)
    );
    assert_eq!(d.status.failed_template_hash.as_deref(), Some("hash-v2"));
}

#[test]
fn no_steps_promotes_at_once() {
    let mut spec = six_steps(Routing::Mesh);
    spec.steps.clear();
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    assert_eq!(d.status.phase, Phase::Promoting);
    assert!(matches!(
        d.actions.as_slice(),
        [Action::PromoteStable { .. }]
    ));
}

#[test]
fn retry_after_a_rollback_runs_the_failed_template_again() {
    let (spec, _, mut o, d) = judged(verdict(Outcome::Fail, 0.0));
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let rolled = step(&spec, &d.status, &o, at(10)).status;
    assert_eq!(rolled.phase, Phase::RolledBack);
    o.request = Some("retry@1".into());
    let d = step(&spec, &rolled, &o, at(20));
    assert_eq!((d.status.phase, d.status.attempt), (Phase::Progressing, 2));
    assert_eq!(d.status.failed_template_hash, None);
}

#[test]
fn an_invalid_spec_moves_nothing() {
    let (mut spec, st, o) = at_step(1);
    spec.steps[1].set_weight = Some(5);
    let d = step(&spec, &st, &o, at(0));
    assert!(d.actions.is_empty());
    assert_eq!(d.status.current_step, st.current_step);
    assert!(
        d.status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("steps[1]"))
    );
    let mut spec = six_steps(Routing::Replicas);
    spec.steps[0] = Step {
        set_weight: None,
        analysis: None,
        pause: None,
        set_canary_scale: Some(SetCanaryScaleStep {
            replicas: Some(2),
            ..Default::default()
        }),
    };
    assert!(
        step(&spec, &healthy("v2"), &obs(), t0())
            .status
            .reason
            .is_some_and(|r| r.contains("setCanaryScale"))
    );
}

#[test]
fn set_canary_scale_sizes_pods_independently_of_weight() {
    let mut spec = six_steps(Routing::Mesh);
    spec.steps.insert(
        0,
        Step {
            set_weight: None,
            analysis: None,
            pause: None,
            set_canary_scale: Some(SetCanaryScaleStep {
                replicas: Some(4),
                ..Default::default()
            }),
        },
    );
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    assert!(d.actions.iter().any(|a| matches!(
        a,
        Action::EnsureWorkload {
            track: Track::Canary,
            replicas: 4,
            ..
        }
    )));
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. }))
    );
}

#[test]
fn the_unknown_stable_hash_is_rolled_out_as_a_canary() {
    let spec = six_steps(Routing::Mesh);
    let mut o = obs();
    o.stable.template_hash = None;
    let mut st = healthy("v2");
    st.stable_template_hash = None;
    assert_eq!(step(&spec, &st, &o, t0()).status.phase, Phase::Progressing);
}

fn arb_obs() -> impl Strategy<Value = (u8, u8, u8, u8, u8, u8)> {
    (0u8..4, 0u8..4, 0u8..6, 0u8..8, 0u8..6, 0u8..3)
}

proptest! {
    /// Whatever the cluster says, in whatever order, the status never goes backwards and a pass
    /// over its own output changes nothing more without news.
    #[test]
    fn progress_never_decreases(seq in proptest::collection::vec(arb_obs(), 1..60), mesh: bool) {
        let routing = if mesh { Routing::Mesh } else { Routing::Replicas };
        let spec = six_steps(routing);
        let mut st = healthy("v2");
        let mut now = t0();
        for (k, (c, b, r, a, req, tpl)) in seq.into_iter().enumerate() {
            let mut o = obs();
            let pods = [0, 1, 4, 10][c as usize];
            o.canary = (c > 0).then(|| wl(["v2", "v2", "v3", "v2"][c as usize], pods));
            o.baseline = (b > 0).then(|| wl("v1", [0, 1, 4, 10][b as usize]));
            o.router = Some(RouterObs { canary: [0, 10, 33, 0, 10, 33][r as usize], baseline: [0, 10, 33, 0, 0, 10][r as usize] });
            if let Some(run) = &st.analysis {
                let result = match a {
                    0 => None,
                    1 => Some(verdict(Outcome::Pass, 100.0)),
                    2 => Some(verdict(Outcome::Fail, 0.0)),
                    3 => Some(verdict(Outcome::Marginal, 80.0)),
                    4 => Some(verdict(Outcome::Inconclusive, 0.0)),
                    5 => Some(AnalysisResult::Unavailable { reason: "x".into() }),
                    _ => None,
                };
                o.analysis = Some(AnalysisObs { run_id: run.run_id.clone(), samples: 3, metrics: Vec::new(), result });
            }
            o.request = ["", "promote", "abort", "retry", "pause", "resume"].get(req as usize)
                .filter(|v| !v.is_empty()).map(|v| format!("{v}@{k}"));
            if tpl == 2 && k % 7 == 0 {
                st.handoff = Some(handoff(if k % 2 == 0 { "v3" } else { "v1" }));
            }
            now += SignedDuration::from_secs(90);
            let d = step(&spec, &st, &o, now);
            prop_assert!(progress(&d.status) >= progress(&st), "{:?} -> {:?}", progress(&st), progress(&d.status));
            let again = step(&spec, &d.status, &o, now);
            prop_assert_eq!(progress(&again.status), progress(&d.status));
            for a in &d.actions {
                if let Action::RequestGitRollback(f) = a {
                    prop_assert!(!matches!(f.verdict.cause(), FailureCause::AnalysisFailed(s) if s.verdict != VerdictOutcome::Fail));
                }
            }
            st = d.status;
        }
    }
}

/// Every request verb in every phase: what it does, or that it is ignored (and recorded).
#[test]
fn every_request_in_every_phase() {
    use PauseReason as R;
    use Phase as P;
    type Case = (&'static str, RolloutSpec, RolloutStatus, Observations);
    let mut cases: Vec<Case> = Vec::new();
    let (spec, st, o) = at_step(0);
    cases.push(("progressing", spec.clone(), st.clone(), o.clone()));
    let mut paused = o.clone();
    paused.request = Some("pause@p".into());
    cases.push((
        "manual pause",
        spec,
        step(&six_steps(Routing::Mesh), &st, &paused, t0()).status,
        paused,
    ));
    let (spec, st, o) = at_step(5);
    let gate = step(&spec, &st, &o, t0()).status;
    cases.push(("pause step", spec.clone(), gate.clone(), o.clone()));
    let mut promote = o.clone();
    promote.request = Some("promote@p".into());
    cases.push((
        "promoting",
        spec,
        step(&six_steps(Routing::Mesh), &gate, &promote, t0()).status,
        promote,
    ));
    for (name, v) in [
        ("marginal", Outcome::Marginal),
        ("inconclusive", Outcome::Inconclusive),
        ("aborted", Outcome::Fail),
    ] {
        let (spec, _, o, d) = judged(verdict(v, 50.0));
        cases.push((name, spec, d.status, o));
    }
    let (spec, _, mut o, d) = judged(verdict(Outcome::Fail, 0.0));
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let rolled = step(&spec, &d.status, &o, t0()).status;
    cases.push(("rolled back", spec.clone(), rolled.clone(), o.clone()));
    o.git_rollback = rolled.failed_revision.clone().map(|r| GitRollbackObs {
        failed_revision: r,
        pull_request: Some("u".into()),
    });
    let pending = step(&spec, &rolled, &o, t0()).status;
    assert_eq!(pending.phase, P::RollbackPending);
    cases.push(("rollback pending", spec, pending, o));
    cases.push(("healthy", six_steps(Routing::Mesh), healthy("v1"), obs()));

    // Expected (phase, pause reason) per verb; `None` = ignored.
    type Want = Option<(Phase, Option<PauseReason>)>;
    #[rustfmt::skip]
    let table: [(&str, [Want; 6]); 10] = [
        //                 promote                      promote-full            abort                   retry                         pause                         resume
        ("progressing",     [Some((P::Progressing, None)), Some((P::Promoting, None)), Some((P::Aborted, None)), None,                          Some((P::Paused, Some(R::Manual))), None]),
        ("manual pause",    [Some((P::Progressing, None)), Some((P::Promoting, None)), Some((P::Aborted, None)), None,                          None,                          Some((P::Progressing, None))]),
        ("pause step",      [Some((P::Promoting, None)),   Some((P::Promoting, None)), Some((P::Aborted, None)), None,                          Some((P::Paused, Some(R::Manual))), Some((P::Promoting, None))]),
        ("promoting",       [None, None, None, None, None, None]),
        ("marginal",        [Some((P::Progressing, None)), Some((P::Promoting, None)), Some((P::Aborted, None)), Some((P::Progressing, None)), None,                          None]),
        ("inconclusive",    [Some((P::Progressing, None)), Some((P::Promoting, None)), Some((P::Aborted, None)), Some((P::Progressing, None)), None,                          None]),
        ("aborted",         [None, None, None, None, None, None]),
        ("rolled back",     [None, None, None, Some((P::Progressing, None)), None, None]),
        ("rollback pending",[None, None, None, Some((P::Progressing, None)), None, None]),
        ("healthy",         [None, None, None, None, None, None]),
    ];
    let verbs = [
        "promote",
        "promote-full",
        "abort",
        "retry",
        "pause",
        "resume",
    ];
    let mut checked = 0;
    for (name, spec, st, o) in &cases {
        let row = table
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
            .expect("row");
        for (verb, want) in verbs.iter().zip(row) {
            let mut o = o.clone();
            let value = format!("{verb}@t");
            o.request = Some(value.clone());
            let d = step(spec, st, &o, t0());
            assert_eq!(
                d.status.handled_request.as_deref(),
                Some(value.as_str()),
                "{name}/{verb}: recorded"
            );
            assert!(
                progress(&d.status) >= progress(st),
                "{name}/{verb}: backwards"
            );
            match want {
                Some((phase, reason)) => {
                    assert_eq!(
                        (d.status.phase, d.status.pause_reason),
                        (*phase, *reason),
                        "{name}/{verb}"
                    );
                    assert!(
                        !d.status.reason.as_deref().unwrap_or("").contains("ignored"),
                        "{name}/{verb}"
                    );
                }
                None => {
                    assert_eq!(
                        (d.status.phase, d.status.pause_reason),
                        (st.phase, st.pause_reason),
                        "{name}/{verb}: ignored"
                    );
                    assert!(
                        d.status
                            .reason
                            .as_deref()
                            .is_some_and(|r| r.contains("ignored")),
                        "{name}/{verb}: says so"
                    );
                }
            }
            // Acted on once: the same value again changes nothing more.
            let again = step(spec, &d.status, &o, t0());
            assert_eq!(again.status.handled_request, d.status.handled_request);
            assert_eq!(
                progress(&again.status),
                progress(&d.status),
                "{name}/{verb}: twice"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 60);
}
