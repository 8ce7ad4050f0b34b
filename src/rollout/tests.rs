//! Transitions of the pure state machine, one behaviour per test.

use super::sim::{Routing, handoff, six_steps, template};
use super::*;
use crate::analysis::{Outcome, Verdict};
use crate::crd::*;
use jiff::{SignedDuration, Timestamp};

pub(super) fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time")
}
pub(super) fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

pub(super) fn wl(v: &str, replicas: i32) -> WorkloadObs {
    WorkloadObs {
        template_hash: Some(template(v).1),
        replicas,
        ready_replicas: replicas,
        progress_deadline_exceeded: false,
    }
}

/// Stable v1 at 10 replicas, nothing else.
pub(super) fn obs() -> Observations {
    let (t, h) = template("v1");
    Observations {
        namespace: "shop".into(),
        name: "web".into(),
        stable: StableObs {
            exists: true,
            template_hash: Some(h),
            template: Some(t),
            replicas: 10,
            available: true,
        },
        router: Some(RouterObs::default()),
        metrics_backend: BackendHealth::Up,
        ..Default::default()
    }
}

pub(super) fn healthy(handoff_v: &str) -> RolloutStatus {
    RolloutStatus {
        handoff: Some(handoff(handoff_v)),
        stable_template_hash: Some(template("v1").1),
        stable_revision: Some("rev-v1".into()),
        ..Default::default()
    }
}

/// A status at step `i` of the six-step mesh rollout of v2, canary and baseline serving the
/// step's weight.
pub(super) fn at_step(i: i32) -> (RolloutSpec, RolloutStatus, Observations) {
    let spec = six_steps(Routing::Mesh);
    let mut st = step(&spec, &healthy("v2"), &obs(), t0()).status;
    st.current_step = Some(i);
    st.step_started_at = Some("2027-01-15T08:00:00Z".into());
    let w = if i >= 2 { 33 } else { 10 };
    let pods = replicas::mesh_pods(10, w);
    let mut o = obs();
    o.canary = Some(wl("v2", pods));
    o.baseline = Some(wl("v1", pods));
    o.router = Some(RouterObs {
        canary: w,
        baseline: w,
    });
    (spec, st, o)
}

pub(super) fn verdict(outcome: Outcome, score: f64) -> AnalysisResult {
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
pub(super) fn judged(
    result: AnalysisResult,
) -> (RolloutSpec, RolloutStatus, Observations, Decision) {
    let (spec, st, mut o) = at_step(1);
    let now = Timestamp::from_second(
        st.step_started_at
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map_or(0, |t| t.as_second()),
    )
    .expect("t");
    let d = step(&spec, &st, &o, now);
    let run = d.status.analysis.clone().expect("analysis run");
    assert!(run.start.is_some(), "window opens once settled");
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::RunAnalysis(r) if r.run_id == run.run_id))
    );
    o.analysis = Some(AnalysisObs {
        run_id: run.run_id.clone(),
        samples: 20,
        metrics: Vec::new(),
        result: Some(result),
    });
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
    assert_eq!(
        step(&spec, &d.status, &obs(), at(60)).status,
        d.status,
        "status is a fixed point"
    );
}

#[test]
fn a_new_template_starts_a_canary_beside_a_fresh_baseline() {
    let spec = six_steps(Routing::Mesh);
    let d = step(&spec, &healthy("v2"), &obs(), t0());
    assert_eq!(d.status.phase, Phase::Progressing);
    assert_eq!((d.status.attempt, d.status.current_step), (1, Some(0)));
    assert_eq!(d.status.canary_template_hash.as_deref(), Some("hash-v2"));
    assert_eq!(d.status.step_progress.as_deref(), Some("1/6"));
    let tracks: Vec<_> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::EnsureWorkload {
                track,
                template_hash,
                replicas,
                ..
            } => Some((*track, template_hash.clone(), *replicas)),
            _ => None,
        })
        .collect();
    assert_eq!(
        tracks,
        vec![
            (Track::Canary, "hash-v2".into(), 1),
            (Track::Baseline, "hash-v1".into(), 1)
        ]
    );
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. })),
        "no traffic before pods serve"
    );
}

#[test]
fn weight_is_set_once_pods_serve_and_the_step_ends_when_the_router_reports_it() {
    let (spec, st, mut o) = at_step(0);
    o.router = Some(RouterObs::default());
    let d = step(&spec, &st, &o, at(10));
    assert_eq!(
        d.actions,
        vec![Action::SetWeight {
            canary: 10,
            baseline: 10
        }]
    );
    assert_eq!(d.status.current_step, Some(0));
    o.router = Some(RouterObs {
        canary: 10,
        baseline: 10,
    });
    let d = step(&spec, &d.status, &o, at(20));
    assert_eq!(d.status.current_step, Some(1));
    assert_eq!(d.status.actual_weight, Some(10));
}

#[test]
fn a_timed_pause_ends_at_its_start_plus_duration_and_a_restart_does_not_reset_it() {
    let (spec, st, o) = at_step(4);
    let start: Timestamp = st
        .step_started_at
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("start");
    let d = step(&spec, &st, &o, start + SignedDuration::from_secs(240));
    assert_eq!(
        (d.status.phase, d.status.pause_reason),
        (Phase::Paused, Some(PauseReason::PauseStep))
    );
    assert_eq!(
        d.status.step_started_at, st.step_started_at,
        "start time kept"
    );
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(30)));
    // "Restart": same persisted status, later.
    let d = step(&spec, &d.status, &o, start + SignedDuration::from_secs(300));
    assert_eq!(d.status.current_step, Some(5));
    assert_eq!(
        d.status.pause_reason,
        Some(PauseReason::PauseStep),
        "the next, indefinite pause"
    );
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
    assert!(
        d.status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("unknown verb"))
    );
    o.request = Some("abort@2".into());
    let d = step(&spec, &d.status, &o, t0());
    assert_eq!(d.status.phase, Phase::Healthy);
    assert!(
        d.status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("ignored"))
    );
    assert_eq!(Request::parse("promote@"), Err(RequestError::Nonce));
    assert_eq!(Request::parse("promote"), Err(RequestError::Shape));
    assert_eq!(
        Request::parse("promote-full@x.1").map(|r| r.verb),
        Ok(Verb::PromoteFull)
    );
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
    assert_eq!(
        (d.status.phase, d.status.pause_reason),
        (Phase::Paused, Some(PauseReason::Marginal))
    );
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let later = step(&spec, &d.status, &o, at(100_000));
    assert_eq!(later.status.phase, Phase::Paused, "waits indefinitely");
}

#[test]
fn a_failed_analysis_puts_traffic_on_stable_before_anything_is_removed() {
    let (spec, _, mut o, d) = judged(verdict(Outcome::Fail, 10.0));
    assert_eq!(d.status.phase, Phase::Aborted);
    assert_eq!(d.status.failed_template_hash.as_deref(), Some("hash-v2"));
    assert_eq!(
        d.actions,
        vec![Action::SetWeight {
            canary: 0,
            baseline: 0
        }]
    );
    o.router = Some(RouterObs::default());
    let d = step(&spec, &d.status, &o, at(10));
    assert_eq!(
        d.actions,
        vec![
            Action::DeleteWorkload {
                track: Track::Canary
            },
            Action::DeleteWorkload {
                track: Track::Baseline
            }
        ]
    );
    o.canary = None;
    o.baseline = None;
    o.analysis = None;
    let d = step(&spec, &d.status, &o, at(20));
    assert_eq!(d.status.phase, Phase::RolledBack);
    let [Action::RequestGitRollback(f)] = d.actions.as_slice() else {
        panic!("{:?}", d.actions)
    };
    assert_eq!(f.failed_template_hash, "hash-v2");
    assert_eq!(f.provenance, vec!["apps/web/deployment.yaml".to_owned()]);
    assert!(
        matches!(f.verdict.cause(), FailureCause::AnalysisFailed(s) if s.verdict == VerdictOutcome::Fail)
    );
    // The forge reports the PR: pending, and no second request.
    o.git_rollback = Some(GitRollbackObs {
        failed_revision: f.failed_revision.clone(),
        pull_request: Some("https://pr/1".into()),
    });
    let d = step(&spec, &d.status, &o, at(30));
    assert_eq!(d.status.phase, Phase::RollbackPending);
    assert_eq!(
        d.status.revert_pull_request.as_deref(),
        Some("https://pr/1")
    );
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
    for result in [
        verdict(Outcome::Inconclusive, 0.0),
        AnalysisResult::Unavailable {
            reason: "503".into(),
        },
    ] {
        let (spec, _, mut o, d) = judged(result);
        assert_eq!(
            (d.status.phase, d.status.pause_reason),
            (Phase::Paused, Some(PauseReason::Inconclusive))
        );
        assert_eq!(
            d.actions,
            vec![Action::SetWeight {
                canary: 0,
                baseline: 0
            }],
            "weight 0 and nothing deleted"
        );
        assert_eq!(d.status.failed_template_hash, None);
        let retry_at: Timestamp = d
            .status
            .analysis
            .as_ref()
            .and_then(|r| r.retry_at.as_deref())
            .and_then(|s| s.parse().ok())
            .expect("retry");
        o.router = Some(RouterObs::default());
        // Not before the backoff, not while the backend is down.
        let early = step(
            &spec,
            &d.status,
            &o,
            retry_at - SignedDuration::from_secs(1),
        );
        assert_eq!(early.status.pause_reason, Some(PauseReason::Inconclusive));
        assert!(early.actions.is_empty());
        o.metrics_backend = BackendHealth::Down;
        assert_eq!(
            step(&spec, &d.status, &o, retry_at).status.pause_reason,
            Some(PauseReason::Inconclusive)
        );
        o.metrics_backend = BackendHealth::Up;
        let retried = step(&spec, &d.status, &o, retry_at);
        assert_eq!(retried.status.phase, Phase::Progressing);
        let run = retried.status.analysis.clone().expect("run");
        assert_eq!(
            (run.run_id.as_str(), run.retries, run.start.is_none()),
            ("1-1-1", 1, true)
        );
        assert!(
            retried.actions.contains(&Action::SetWeight {
                canary: 10,
                baseline: 10
            }),
            "traffic comes back first"
        );
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
            o.router = Some(RouterObs {
                canary: 10,
                baseline: 10,
            });
            st = step(&spec, &st, &o, now).status;
            let run = st.analysis.clone().expect("run");
            o.analysis = Some(AnalysisObs {
                run_id: run.run_id,
                samples: 0,
                metrics: Vec::new(),
                result: Some(verdict(Outcome::Inconclusive, 0.0)),
            });
            st = step(&spec, &st, &o, now + SignedDuration::from_secs(3600)).status;
            o.router = Some(RouterObs::default());
        }
        d = Decision {
            status: st,
            actions: vec![],
            requeue_after: None,
        };
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
    for (v, ok) in [
        (VerdictOutcome::Pass, false),
        (VerdictOutcome::Marginal, false),
        (VerdictOutcome::Inconclusive, false),
        (VerdictOutcome::Fail, true),
    ] {
        let s = AnalysisSummary {
            verdict: v,
            ..Default::default()
        };
        assert_eq!(FailedVerdict::from_analysis(&s).is_some(), ok, "{v:?}");
    }
}
