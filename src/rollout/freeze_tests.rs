//! The freeze input of the engine (the andon cord): held starts, paused canaries, abort without
//! a git revert, and what the unfreeze resumes.

use super::sim::handoff;
use super::tests::{at_step, healthy, obs, t0, wl};
use super::*;
use crate::crd::*;

fn frozen(mode: FreezeMode) -> Option<Freeze> {
    Some(Freeze {
        mode,
        note: "by alice (cli): incident 4711".into(),
    })
}

fn canary_actions(d: &Decision) -> usize {
    d.actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::EnsureWorkload {
                    track: Track::Canary,
                    ..
                } | Action::PromoteStable { .. }
            )
        })
        .count()
}

#[test]
fn a_frozen_repo_holds_a_new_template_until_the_unfreeze() {
    let spec = super::sim::six_steps(super::sim::Routing::Mesh);
    let mut o = obs();
    o.freeze = frozen(FreezeMode::Pause);
    let d = step(&spec, &healthy("v2"), &o, t0());
    assert_eq!(d.status.phase, Phase::Healthy);
    assert_eq!(canary_actions(&d), 0, "{:?}", d.actions);
    let reason = d.status.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("held") && reason.contains("by alice (cli): incident 4711"),
        "{reason}"
    );
    // Stable: a second frozen pass changes nothing.
    assert_eq!(step(&spec, &d.status, &o, t0()).status, d.status);
    o.freeze = None;
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(d.status.phase, Phase::Progressing);
    assert_eq!(d.status.current_step, Some(0));
    assert_eq!(canary_actions(&d), 1);
}

#[test]
fn a_canary_in_flight_pauses_where_it_is_and_the_unfreeze_resumes_it() {
    let (spec, st, mut o) = at_step(0);
    o.freeze = frozen(FreezeMode::Pause);
    let d = step(&spec, &st, &o, t0());
    assert_eq!(d.status.phase, Phase::Paused);
    assert_eq!(d.status.pause_reason, Some(PauseReason::Frozen));
    assert_eq!(
        d.status.current_step,
        Some(0),
        "settled, but does not move on"
    );
    assert_eq!(d.status.set_weight, Some(10), "traffic stays where it is");
    assert!(
        !d.actions.iter().any(
            |a| matches!(a, Action::SetWeight { canary, .. } if *canary != 10)
                || matches!(a, Action::DeleteWorkload { .. })
        ),
        "{:?}",
        d.actions
    );
    // A new template meanwhile does not supersede the paused canary.
    let mut st2 = d.status.clone();
    st2.handoff = Some(handoff("v3"));
    let d3 = step(&spec, &st2, &o, t0());
    assert_eq!(d3.status.phase, Phase::Paused);
    assert_eq!(d3.status.canary_revision, d.status.canary_revision);
    assert!(d3.status.teardown.is_none());
    // Unfreeze: the step goes on (setWeight settled → the analysis step).
    o.freeze = None;
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(d.status.phase, Phase::Progressing);
    assert_eq!(d.status.pause_reason, None);
    assert_eq!(d.status.current_step, Some(1));
}

#[test]
fn the_unfreeze_leaves_a_human_pause_alone() {
    let (spec, mut st, mut o) = at_step(0);
    st.phase = Phase::Paused;
    st.pause_reason = Some(PauseReason::Manual);
    o.freeze = frozen(FreezeMode::Pause);
    let d = step(&spec, &st, &o, t0());
    assert_eq!(d.status.pause_reason, Some(PauseReason::Manual));
    o.freeze = None;
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(
        (d.status.phase, d.status.pause_reason),
        (Phase::Paused, Some(PauseReason::Manual))
    );
}

#[test]
fn abort_mode_takes_the_canary_down_without_a_git_revert_and_starts_again_after_unfreeze() {
    let (spec, st, mut o) = at_step(0);
    let attempt = st.attempt;
    o.freeze = frozen(FreezeMode::Abort);
    let d = step(&spec, &st, &o, t0());
    assert_eq!(d.status.phase, Phase::Aborted);
    let td = d.status.teardown.clone().expect("teardown");
    assert_eq!(td.cause, TeardownCause::Frozen);
    assert!(td.message.contains("incident 4711"), "{}", td.message);
    assert_eq!(d.status.failed_template_hash, None, "not a verdict");
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { canary: 0, .. }))
    );
    // Canary and baseline gone: Healthy on stable, the change held while frozen.
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(d.status.phase, Phase::Healthy);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::RequestGitRollback(_)))
    );
    assert_eq!(canary_actions(&d), 0);
    o.freeze = None;
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(d.status.phase, Phase::Progressing);
    assert_eq!(d.status.attempt, attempt + 1, "from the first step again");
}

#[test]
fn git_back_on_stable_still_tears_down_a_frozen_canary() {
    let (spec, mut st, mut o) = at_step(0);
    o.freeze = frozen(FreezeMode::Pause);
    st = step(&spec, &st, &o, t0()).status;
    st.handoff = Some(handoff("v1"));
    o.canary = Some(wl("v2", 1));
    let d = step(&spec, &st, &o, t0());
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(
        d.status.teardown.map(|t| t.cause),
        Some(TeardownCause::RevertedInGit)
    );
}

#[test]
fn a_failed_analysis_during_a_freeze_still_takes_the_canary_down() {
    use crate::analysis::Outcome;
    for (outcome, taken_down) in [(Outcome::Fail, true), (Outcome::Pass, false)] {
        let (spec, st, mut o, _) = super::tests::judged(super::tests::verdict(outcome, 50.0));
        let result = o.analysis.take();
        let now = st
            .step_started_at
            .as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .expect("step started")
            + jiff::SignedDuration::from_secs(11 * 60 + 1);
        // Frozen while the analysis runs: paused where it is.
        o.freeze = frozen(FreezeMode::Pause);
        let paused = step(&spec, &st, &o, now);
        assert_eq!(paused.status.pause_reason, Some(PauseReason::Frozen));
        // Then the verdict comes in.
        o.analysis = result;
        let d = step(&spec, &paused.status, &o, now);
        let cause = d.status.teardown.as_ref().map(|t| t.cause);
        if taken_down {
            assert_eq!(
                cause,
                Some(TeardownCause::AnalysisFailed),
                "{:#?}",
                d.status
            );
        } else {
            assert_eq!(cause, None, "{:#?}", d.status);
            assert_eq!(d.status.pause_reason, Some(PauseReason::Frozen));
            assert_eq!(
                d.status.current_step, paused.status.current_step,
                "waits for the unfreeze"
            );
        }
    }
}
