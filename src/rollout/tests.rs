//! Transitions of the pure state machine, one behaviour per test.

use super::sim::{Routing, handoff, six_steps, template};
use super::*;
use crate::analysis::{Outcome, Verdict};
use crate::crd::*;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time")
}
fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn wl(v: &str, replicas: i32) -> WorkloadObs {
    WorkloadObs { template_hash: Some(template(v).1), replicas, ready_replicas: replicas, progress_deadline_exceeded: false }
}

/// Stable v1 at 10 replicas, nothing else.
fn obs() -> Observations {
    let (t, h) = template("v1");
    Observations {
        namespace: "shop".into(),
        name: "web".into(),
        stable: StableObs { exists: true, template_hash: Some(h), template: Some(t), replicas: 10, available: true },
        router: Some(RouterObs::default()),
        metrics_backend: BackendHealth::Up,
        ..Default::default()
    }
}

fn healthy(handoff_v: &str) -> RolloutStatus {
    RolloutStatus {
        handoff: Some(handoff(handoff_v)),
        stable_template_hash: Some(template("v1").1),
        stable_revision: Some("rev-v1".into()),
        ..Default::default()
    }
}

/// A status at step `i` of the six-step mesh rollout of v2, canary and baseline serving the
/// step's weight.
fn at_step(i: i32) -> (RolloutSpec, RolloutStatus, Observations) {
    let spec = six_steps(Routing::Mesh);
    let mut st = step(&spec, &healthy("v2"), &obs(), t0()).status;
    st.current_step = Some(i);
    st.step_started_at = Some("2027-01-15T08:00:00Z".into());
    let w = if i >= 2 { 33 } else { 10 };
    let pods = replicas::mesh_pods(10, w);
    let mut o = obs();
    o.canary = Some(wl("v2", pods));
    o.baseline = Some(wl("v1", pods));
    o.router = Some(RouterObs { canary: w, baseline: w });
    (spec, st, o)
}

fn verdict(outcome: Outcome, score: f64) -> AnalysisResult {
    AnalysisResult::Verdict(Verdict {
        outcome,
        score,
        reason: format!("{outcome}"),
        metrics: vec![],
        groups: vec![],
        context: Default::default(),
    })
}

/// Runs an analysis step until its window is open and answers it with `result`.
fn judged(result: AnalysisResult) -> (RolloutSpec, RolloutStatus, Observations, Decision) {
    let (spec, st, mut o) = at_step(1);
    let now = Timestamp::from_second(st.step_started_at.as_deref().and_then(|s| s.parse::<Timestamp>().ok()).map_or(0, |t| t.as_second())).expect("t");
    let d = step(&spec, &st, &o, now);
    let run = d.status.analysis.clone().expect("analysis run");
    assert!(run.start.is_some(), "window opens once settled");
    assert!(d.actions.iter().any(|a| matches!(a, Action::RunAnalysis(r) if r.run_id == run.run_id)));
    o.analysis = Some(AnalysisObs { run_id: run.run_id.clone(), samples: 20, result: Some(result) });
    let now = now + SignedDuration::from_secs(11 * 60 + 1);
    let d2 = step(&spec, &d.status, &o, now);
    (spec, d.status, o, d2)
}

#[test]
fn nothing_to_do_when_git_and_stable_agree() {
    let spec = six_steps(Routing::Mesh);
    let d = step(&spec, &healthy("v1"), &obs(), t0());
    assert_eq!(d.status.phase, Phase::Healthy);
    assert!(d.actions.is_empty());
    assert_eq!(step(&spec, &d.status, &obs(), at(60)).status, d.status, "status is a fixed point");
}

#[test]
fn a_new_template_starts_a_canary_beside_a_fresh_baseline() {
    let spec = six_steps(Routing::Mesh);
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    assert_eq!(d.status.phase, Phase::Progressing);
    assert_eq!((d.status.attempt, d.status.current_step), (1, Some(0)));
    assert_eq!(d.status.canary_template_hash.as_deref(), Some("hash-v2"));
    assert_eq!(d.status.step_progress.as_deref(), Some("1/6"));
    let tracks: Vec<_> = d.actions.iter().filter_map(|a| match a {
        Action::EnsureWorkload { track, template_hash, replicas, .. } => Some((*track, template_hash.clone(), *replicas)),
        _ => None,
    }).collect();
    assert_eq!(tracks, vec![(Track::Canary, "hash-v2".into(), 1), (Track::Baseline, "hash-v1".into(), 1)]);
    assert!(!d.actions.iter().any(|a| matches!(a, Action::SetWeight { .. })), "no traffic before pods serve");
}

#[test]
fn weight_is_set_once_pods_serve_and_the_step_ends_when_the_router_reports_it() {
    let (spec, st, mut o) = at_step(0);
    o.router = Some(RouterObs::default());
    let d = step(&spec, &st, &o, at(10));
    assert_eq!(d.actions, vec![Action::SetWeight { canary: 10, baseline: 10 }]);
    assert_eq!(d.status.current_step, Some(0));
    o.router = Some(RouterObs { canary: 10, baseline: 10 });
    let d = step(&spec, &d.status, &o, at(20));
    assert_eq!(d.status.current_step, Some(1));
    assert_eq!(d.status.actual_weight, Some(10));
}

#[test]
fn a_timed_pause_ends_at_its_start_plus_duration_and_a_restart_does_not_reset_it() {
    let (spec, st, o) = at_step(4);
    let start: Timestamp = st.step_started_at.as_deref().and_then(|s| s.parse().ok()).expect("start");
    let d = step(&spec, &st, &o, start + SignedDuration::from_secs(240));
    assert_eq!((d.status.phase, d.status.pause_reason), (Phase::Paused, Some(PauseReason::PauseStep)));
    assert_eq!(d.status.step_started_at, st.step_started_at, "start time kept");
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(30)));
    // "Restart": same persisted status, later.
    let d = step(&spec, &d.status, &o, start + SignedDuration::from_secs(300));
    assert_eq!(d.status.current_step, Some(5));
    assert_eq!(d.status.pause_reason, Some(PauseReason::PauseStep), "the next, indefinite pause");
}

#[test]
fn a_request_is_acted_on_exactly_once() {
    let (spec, st, mut o) = at_step(5);
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.pause_reason, Some(PauseReason::PauseStep));
    o.request = Some("promote@n1".into());
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(d.status.phase, Phase::Promoting);
    assert_eq!(d.status.handled_request.as_deref(), Some("promote@n1"));
    // Same annotation again (e.g. after a restart): nothing new.
    let again = step(&spec, &d.status, &o, at(20));
    assert_eq!(again.status.handled_request, d.status.handled_request);
    assert_eq!(again.status.phase, Phase::Promoting);
}

#[test]
fn a_malformed_or_inapplicable_request_is_recorded_and_ignored() {
    let spec = six_steps(Routing::Mesh);
    let mut o = obs();
    o.request = Some("explode@1".into());
    let d = step(&spec, &healthy("v1"), &o, t0());
    assert_eq!(d.status.handled_request.as_deref(), Some("explode@1"));
    assert!(d.status.reason.as_deref().is_some_and(|r| r.contains("unknown verb")));
    o.request = Some("abort@2".into());
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(d.status.phase, Phase::Healthy);
    assert!(d.status.reason.as_deref().is_some_and(|r| r.contains("ignored")));
    assert_eq!(Request::parse("promote@"), Err(RequestError::Nonce));
    assert_eq!(Request::parse("promote"), Err(RequestError::Shape));
    assert_eq!(Request::parse("promote-full@x.1").map(|r| r.verb), Ok(Verb::PromoteFull));
}

#[test]
fn a_passing_analysis_moves_on() {
    let (_, _, _, d) = judged(verdict(Outcome::Pass, 99.0));
    assert_eq!(d.status.current_step, Some(2));
    assert_eq!(d.status.last_score, Some(99.0));
    assert_eq!(d.status.analyses.len(), 1);
}

#[test]
fn a_marginal_analysis_pauses_for_a_human_with_traffic_kept() {
    let (spec, _, o, d) = judged(verdict(Outcome::Marginal, 80.0));
    assert_eq!((d.status.phase, d.status.pause_reason), (Phase::Paused, Some(PauseReason::Marginal)));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let later = step(&spec, &d.status, &o, at(100_000));
    assert_eq!(later.status.phase, Phase::Paused, "waits indefinitely");
}

#[test]
fn a_failed_analysis_puts_traffic_on_stable_before_anything_is_removed() {
    let (spec, _, mut o, d) = judged(verdict(Outcome::Fail, 10.0));
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(d.status.failed_template_hash.as_deref(), Some("hash-v2"));
    assert_eq!(d.actions, vec![Action::SetWeight { canary: 0, baseline: 0 }]);
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(d.actions, vec![Action::DeleteWorkload { track: Track::Canary }, Action::DeleteWorkload { track: Track::Baseline }]);
    o.canary = None;
    o.baseline = None;
    o.analysis = None;
    let d = step(&spec, &d.status, &o, at(20));
    assert_eq!(d.status.phase, Phase::RolledBack);
    let [Action::RequestGitRollback(f)] = d.actions.as_slice() else { panic!("{:?}", d.actions) };
    assert_eq!(f.failed_template_hash, "hash-v2");
    assert_eq!(f.provenance, vec!["apps/web/deployment.yaml".to_owned()]);
    assert!(matches!(f.verdict.cause(), FailureCause::AnalysisFailed(s) if s.verdict == VerdictOutcome::Fail));
    // The forge reports the PR: pending, and no second request.
    o.git_rollback = Some(GitRollbackObs { failed_revision: f.failed_revision.clone(), pull_request: Some("https://pr/1".into()) });
    let d = step(&spec, &d.status, &o, at(30));
    assert_eq!(d.status.phase, Phase::RollbackPending);
    assert_eq!(d.status.revert_pull_request.as_deref(), Some("https://pr/1"));
    assert!(d.actions.is_empty());
    // The failed template is not tried again...
    let d = step(&spec, &d.status, &o, at(40));
    assert_eq!(d.status.phase, Phase::RollbackPending);
    // ...until git changes it.
    let mut st = d.status.clone();
    st.handoff = Some(handoff("v3"));
    let d = step(&spec, &st, &o, at(50));
    assert_eq!((d.status.phase, d.status.attempt), (Phase::Progressing, 2));
    assert_eq!(d.status.canary_template_hash.as_deref(), Some("hash-v3"));
}

#[test]
fn no_git_rollback_without_git_revert() {
    let (mut spec, _, mut o, d) = judged(verdict(Outcome::Fail, 10.0));
    spec.rollback.git_revert = false;
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(20));
    assert_eq!(d.status.phase, Phase::RolledBack);
    assert!(d.actions.is_empty());
}

#[test]
fn inconclusive_takes_traffic_away_keeps_pods_and_never_rolls_back() {
    for result in [verdict(Outcome::Inconclusive, 0.0), AnalysisResult::Unavailable { reason: "503".into() }] {
        let (spec, _, mut o, d) = judged(result);
        assert_eq!((d.status.phase, d.status.pause_reason), (Phase::Paused, Some(PauseReason::Inconclusive)));
        assert_eq!(d.actions, vec![Action::SetWeight { canary: 0, baseline: 0 }], "weight 0 and nothing deleted");
        assert_eq!(d.status.failed_template_hash, None);
        let retry_at: Timestamp = d.status.analysis.as_ref().and_then(|r| r.retry_at.as_deref()).and_then(|s| s.parse().ok()).expect("retry");
        o.router = Some(RouterObs::default());
        // Not before the backoff, not while the backend is down.
        let early = step(&spec, &d.status, &o, retry_at - SignedDuration::from_secs(1));
        assert_eq!(early.status.pause_reason, Some(PauseReason::Inconclusive));
        assert!(early.actions.is_empty());
        o.metrics_backend = BackendHealth::Down;
        assert_eq!(step(&spec, &d.status, &o, retry_at).status.pause_reason, Some(PauseReason::Inconclusive));
        o.metrics_backend = BackendHealth::Up;
        let retried = step(&spec, &d.status, &o, retry_at);
        assert_eq!(retried.status.phase, Phase::Progressing);
        let run = retried.status.analysis.clone().expect("run");
        assert_eq!((run.run_id.as_str(), run.retries, run.start.is_none()), ("1-1-1", 1, true));
        assert!(retried.actions.contains(&Action::SetWeight { canary: 10, baseline: 10 }), "traffic comes back first");
    }
}

#[test]
fn automatic_retries_are_bounded() {
    let (spec, _, mut o, mut d) = judged(verdict(Outcome::Inconclusive, 0.0));
    o.router = Some(RouterObs::default());
    let mut now = at(0);
    for _ in 0..20 {
        now += SignedDuration::from_secs(3600);
        let mut st = step(&spec, &d.status, &o, now).status;
        if st.phase == Phase::Progressing {
            // Open the window at once and answer inconclusive again.
            o.router = Some(RouterObs { canary: 10, baseline: 10 });
            st = step(&spec, &st, &o, now).status;
            let run = st.analysis.clone().expect("run");
            o.analysis = Some(AnalysisObs { run_id: run.run_id, samples: 0, result: Some(verdict(Outcome::Inconclusive, 0.0)) });
            st = step(&spec, &st, &o, now + SignedDuration::from_secs(3600)).status;
            o.router = Some(RouterObs::default());
        }
        d = Decision { status: st, actions: vec![], requeue_after: None };
    }
    let run = d.status.analysis.clone().expect("run");
    assert_eq!(run.retries, MAX_AUTO_RETRIES);
    assert_eq!(run.retry_at, None);
    assert_eq!(d.status.pause_reason, Some(PauseReason::Inconclusive));
    o.request = Some("retry@1".into());
    let d = step(&spec, &d.status, &o, now);
    assert_eq!(d.status.phase, Phase::Progressing, "`retry` still works");
    assert_eq!(d.status.analysis.map(|r| r.retries), Some(0));
}

#[test]
fn failed_verdicts_come_only_from_failures() {
    for (v, ok) in [(VerdictOutcome::Pass, false), (VerdictOutcome::Marginal, false), (VerdictOutcome::Inconclusive, false), (VerdictOutcome::Fail, true)] {
        let s = AnalysisSummary { verdict: v, ..Default::default() };
        assert_eq!(FailedVerdict::from_analysis(&s).is_some(), ok, "{v:?}");
    }
}

#[test]
fn manual_abort_while_paused_tears_down_and_hands_over_an_abort_verdict() {
    let (spec, st, mut o) = at_step(5);
    let st = step(&spec, &st, &o, at(0)).status;
    o.request = Some("abort@x".into());
    let d = step(&spec, &st, &o, at(10));
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(d.status.teardown.as_ref().map(|t| t.cause), Some(TeardownCause::Aborted));
    assert_eq!(d.actions, vec![Action::SetWeight { canary: 0, baseline: 0 }]);
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(20));
    let [Action::RequestGitRollback(f)] = d.actions.as_slice() else { panic!("{:?}", d.actions) };
    assert_eq!(f.verdict.cause(), &FailureCause::Aborted);
}

#[test]
fn pause_and_resume_hold_the_rollout_where_it_is() {
    let (spec, st, mut o) = at_step(0);
    o.request = Some("pause@1".into());
    let d = step(&spec, &st, &o, at(0));
    assert_eq!((d.status.phase, d.status.pause_reason), (Phase::Paused, Some(PauseReason::Manual)));
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
    assert!(matches!(d.actions.as_slice(), [Action::PromoteStable { template_hash, .. }] if template_hash == "hash-v2"));
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
    assert_eq!(d.actions, vec![Action::SetWeight { canary: 0, baseline: 0 }]);
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(30));
    assert_eq!(d.actions.len(), 2);
    o.canary = None;
    o.baseline = None;
    let d = step(&spec, &d.status, &o, at(40));
    assert_eq!(d.status.phase, Phase::Healthy);
    assert_eq!(d.status.stable_revision.as_deref(), Some("rev-v2-0123456789abcdef"));
    assert_eq!((d.status.canary_template_hash.clone(), d.status.current_step), (None, None));
}

#[test]
fn a_new_template_mid_rollout_aborts_and_restarts_without_blame() {
    let (spec, mut st, mut o) = at_step(3);
    st.handoff = Some(handoff("v3"));
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(d.status.teardown.as_ref().map(|t| t.cause), Some(TeardownCause::Superseded));
    assert_eq!(d.status.failed_template_hash, None);
    o.canary = None;
    o.baseline = None;
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!((d.status.phase, d.status.attempt, d.status.current_step), (Phase::Progressing, 2, Some(0)));
    assert_eq!(d.status.canary_template_hash.as_deref(), Some("hash-v3"));
    assert!(!d.actions.iter().any(|a| matches!(a, Action::RequestGitRollback(_))));
}

#[test]
fn git_going_back_to_stable_mid_rollout_ends_healthy() {
    let (spec, mut st, mut o) = at_step(1);
    st.handoff = Some(handoff("v1"));
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.teardown.as_ref().map(|t| t.cause), Some(TeardownCause::RevertedInGit));
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
    assert_eq!(d.status.canary_template_hash.as_deref(), Some("hash-v2"), "same canary");
    assert!(progress(&d.status) > progress(&st));
}

#[test]
fn a_replicas_only_change_rescales_canary_and_baseline() {
    let (spec, mut st, o) = at_step(2);
    let mut h = handoff("v2");
    h.replicas = Some(30);
    st.handoff = Some(h);
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.actions, vec![
        Action::ScaleWorkload { track: Track::Canary, replicas: 10 },
        Action::ScaleWorkload { track: Track::Baseline, replicas: 10 },
    ]);
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
    assert_eq!(d.status.current_step, Some(1), "10% step settled with one pod each");
    assert_eq!((d.status.set_weight, d.status.actual_weight), (Some(10), Some(8)));
    assert_eq!(d.status.weight.as_deref(), Some("10/8"), "the Weight column");
    assert!(!d.actions.iter().any(|a| matches!(a, Action::SetWeight { .. })));
}

#[test]
fn a_canary_past_its_progress_deadline_fails() {
    let (spec, st, mut o) = at_step(0);
    if let Some(c) = o.canary.as_mut() {
        c.progress_deadline_exceeded = true;
    }
    let d = step(&spec, &st, &o, at(0));
    assert_eq!(d.status.teardown.as_ref().map(|t| t.cause), Some(TeardownCause::ProgressDeadlineExceeded));
    assert_eq!(d.status.failed_template_hash.as_deref(), Some("hash-v2"));
}

#[test]
fn no_steps_promotes_at_once() {
    let mut spec = six_steps(Routing::Mesh);
    spec.steps.clear();
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    assert_eq!(d.status.phase, Phase::Promoting);
    assert!(matches!(d.actions.as_slice(), [Action::PromoteStable { .. }]));
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
    assert!(d.status.reason.as_deref().is_some_and(|r| r.contains("steps[1]")));
    let mut spec = six_steps(Routing::Replicas);
    spec.steps[0] = Step { set_weight: None, analysis: None, pause: None, set_canary_scale: Some(SetCanaryScaleStep { replicas: Some(2), ..Default::default() }) };
    assert!(step(&spec, &healthy("v2"), &obs(), t0()).status.reason.is_some_and(|r| r.contains("setCanaryScale")));
}

#[test]
fn set_canary_scale_sizes_pods_independently_of_weight() {
    let mut spec = six_steps(Routing::Mesh);
    spec.steps.insert(0, Step { set_weight: None, analysis: None, pause: None, set_canary_scale: Some(SetCanaryScaleStep { replicas: Some(4), ..Default::default() }) });
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    assert!(d.actions.iter().any(|a| matches!(a, Action::EnsureWorkload { track: Track::Canary, replicas: 4, .. })));
    assert!(!d.actions.iter().any(|a| matches!(a, Action::SetWeight { .. })));
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
                o.analysis = Some(AnalysisObs { run_id: run.run_id.clone(), samples: 3, result });
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
