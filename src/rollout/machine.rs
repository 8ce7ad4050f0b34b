//! The transitions: `(spec, status, observations, now) → next status`. The actions are derived
//! afterwards from the *new* status alone (`actions.rs`), so a crash after the status write
//! and before any action loses nothing: the next pass derives the same actions again.
//!
//! Phases and what moves them:
//!
//! ```text
//! Healthy ──new template──► Progressing ⇄ Paused ──last step / promote-full──► Promoting ──► Healthy
//!    ▲                        │  (failed analysis, deadline, abort)               (stable on the
//!    │                        ▼                                                    canary template,
//!    └──git back on stable── Aborted ──canary+baseline gone──► RolledBack ──PR──► RollbackPending
//!                         (superseded: restart)
//! ```

use super::RESYNC;
use super::actions;
use super::context::{Cx, StepKind, add, fmt_time, parse_time, short, steps_hash, validate};
use super::gate::{analysis_step, retry_analysis};
use super::request::{Request, Verb};
use super::types::*;
use crate::crd::{
    PauseReason, Phase, RolloutHandoff, RolloutSpec, RolloutStatus, Teardown, TeardownCause,
};
use jiff::Timestamp;
use std::time::Duration;

/// Transitions made at most in one pass (each one changes the phase or the step, so a pass
/// converges long before; the bound only guards against a bug looping).
const MAX_TRANSITIONS: usize = 64;

/// A rollout's progress: `(attempt, phase order, current step)`. It never decreases, whatever
/// happens (tests check it after every pass, crashes included).
pub type Progress = (i64, u8, i32);

/// The progress of a status.
pub fn progress(st: &RolloutStatus) -> Progress {
    let rank = match st.phase {
        Phase::Progressing | Phase::Paused => 1,
        Phase::Promoting | Phase::Aborted => 2,
        Phase::RolledBack => 3,
        Phase::RollbackPending => 4,
        Phase::Healthy => 5,
    };
    (st.attempt, rank, st.current_step.unwrap_or(-1))
}

/// One pass of the rollout engine. Pure: same inputs, same decision.
pub fn step(
    spec: &RolloutSpec,
    status: &RolloutStatus,
    obs: &Observations,
    now: Timestamp,
) -> Decision {
    let mut st = status.clone();
    if obs.generation.is_some() {
        st.observed_generation = obs.generation;
    }
    let (steps, router, deadline) = match validate(spec) {
        Ok(v) => v,
        Err(e) => {
            // Hold everything as it is; an invalid spec moves nothing.
            st.reason = Some(format!("invalid spec: {e}"));
            return Decision {
                status: st,
                actions: Vec::new(),
                requeue_after: None,
            };
        }
    };
    let handoff = status.handoff.as_ref();
    let cx = Cx {
        spec,
        obs,
        now,
        steps,
        steps_hash: steps_hash(spec),
        router,
        deadline,
        handoff,
        replicas: handoff
            .and_then(|h| h.replicas)
            .unwrap_or(obs.stable.replicas)
            .max(0),
    };
    adopt_stable(&mut st, &cx);
    let ignored = handle_request(&mut st, &cx);
    for _ in 0..MAX_TRANSITIONS {
        if !advance(&mut st, &cx) {
            break;
        }
    }
    if let Some(note) = ignored {
        st.reason = Some(match st.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note,
        });
    }
    actions::record_observed(&mut st, &cx);
    super::conditions::record(&mut st, now);
    let actions = actions::derive(&st, &cx);
    let requeue_after = requeue_after(&st, &cx);
    Decision {
        status: st,
        actions,
        requeue_after,
    }
}

/// While nothing is in flight, the stable hash follows the live Deployment.
fn adopt_stable(st: &mut RolloutStatus, cx: &Cx) {
    if st.phase != Phase::Healthy {
        return;
    }
    if let Some(live) = &cx.obs.stable.template_hash
        && st.stable_template_hash.as_ref() != Some(live)
    {
        st.stable_template_hash = Some(live.clone());
        st.stable_revision = cx
            .handoff
            .filter(|h| &h.template_hash == live)
            .map(|h| h.revision.clone());
    }
}

fn in_flight(st: &RolloutStatus) -> bool {
    matches!(st.phase, Phase::Progressing | Phase::Paused)
}

/// Acts on a new request; returns a note when it was ignored (added to `reason` after the
/// transitions of this pass, so that it is not overwritten by them).
fn handle_request(st: &mut RolloutStatus, cx: &Cx) -> Option<String> {
    let raw = cx.obs.request.as_deref()?;
    if st.handled_request.as_deref() == Some(raw) {
        return None;
    }
    // Recorded first: whatever follows, this value is never acted on again.
    st.handled_request = Some(raw.to_owned());
    let req = match Request::parse(raw) {
        Ok(r) => r,
        Err(e) => return Some(format!("request {raw:?} ignored: {e}")),
    };
    let paused_for =
        |st: &RolloutStatus, r| st.phase == Phase::Paused && st.pause_reason == Some(r);
    let awaiting_judgement =
        paused_for(st, PauseReason::Inconclusive) || paused_for(st, PauseReason::Marginal);
    let at_pause_step = paused_for(st, PauseReason::PauseStep);
    let paused_by_hand = paused_for(st, PauseReason::Manual);
    let ignored = match req.verb {
        Verb::Promote if in_flight(st) => {
            next_step(st, cx);
            false
        }
        Verb::PromoteFull if in_flight(st) => {
            go_promoting(st, cx);
            false
        }
        Verb::Abort if in_flight(st) => {
            begin_teardown(
                st,
                TeardownCause::Aborted,
                format!("aborted by request {req}"),
            );
            false
        }
        Verb::Retry if awaiting_judgement => {
            retry_analysis(st, cx, true);
            false
        }
        Verb::Retry
            if matches!(st.phase, Phase::RolledBack | Phase::RollbackPending)
                && st.failed_template_hash.is_some()
                && cx.handoff.map(|h| &h.template_hash) == st.failed_template_hash.as_ref() =>
        {
            st.failed_template_hash = None;
            st.failed_revision = None;
            if let Some(h) = cx.handoff {
                start_rollout(st, cx, h);
            }
            false
        }
        Verb::Pause if st.phase == Phase::Progressing || at_pause_step => {
            st.phase = Phase::Paused;
            st.pause_reason = Some(PauseReason::Manual);
            st.reason = Some(format!("paused by request {req}"));
            false
        }
        Verb::Resume if paused_by_hand => {
            st.phase = Phase::Progressing;
            st.pause_reason = None;
            st.reason = None;
            false
        }
        Verb::Resume if at_pause_step => {
            next_step(st, cx);
            false
        }
        _ => true,
    };
    if ignored {
        let hint = if st.phase == Phase::Promoting && req.verb == Verb::Abort {
            ": promotion is under way; revert the change in git to undo it"
        } else {
            ""
        };
        return Some(format!(
            "request {req} ignored in phase {:?}{hint}",
            st.phase
        ));
    }
    None
}

/// Makes at most one transition; `true` if it did.
fn advance(st: &mut RolloutStatus, cx: &Cx) -> bool {
    match st.phase {
        Phase::Healthy | Phase::RolledBack | Phase::RollbackPending => idle(st, cx),
        Phase::Progressing | Phase::Paused => progressing(st, cx),
        Phase::Promoting => promoting(st, cx),
        Phase::Aborted => tearing_down(st, cx),
    }
}

fn idle(st: &mut RolloutStatus, cx: &Cx) -> bool {
    let Some(h) = cx.handoff else { return false };
    if !cx.obs.stable.exists {
        return false;
    }
    let hash = &h.template_hash;
    if st.stable_template_hash.as_ref() == Some(hash) {
        if st.phase != Phase::Healthy {
            to_healthy(st, Some("git is back on the stable template".into()));
            return true;
        }
        if st.stable_revision.is_none() {
            st.stable_revision = Some(h.revision.clone());
            return true;
        }
        return false;
    }
    if st.failed_template_hash.as_ref() == Some(hash) {
        // The failed template is not tried again until git changes it (or `retry`).
        if st.phase == Phase::RolledBack
            && let Some(g) = &cx.obs.git_rollback
            && Some(&g.failed_revision) == st.failed_revision.as_ref()
            && g.pull_request.is_some()
        {
            st.phase = Phase::RollbackPending;
            st.revert_pull_request = g.pull_request.clone();
            return true;
        }
        return false;
    }
    if let Some(changed) = super::freeze::hold_start(st, cx, h) {
        return changed;
    }
    start_rollout(st, cx, h);
    true
}

fn start_rollout(st: &mut RolloutStatus, cx: &Cx, h: &RolloutHandoff) {
    st.attempt += 1;
    st.canary_template_hash = Some(h.template_hash.clone());
    st.canary_revision = Some(h.revision.clone());
    st.failed_template_hash = None;
    st.failed_revision = None;
    st.steps_hash = Some(cx.steps_hash.clone());
    st.analyses.clear();
    st.analysis = None;
    st.teardown = None;
    st.revert_pull_request = None;
    st.pause_reason = None;
    st.reason = None;
    st.last_score = None;
    if cx.steps.is_empty() || cx.replicas == 0 {
        go_promoting(st, cx);
    } else {
        st.phase = Phase::Progressing;
        st.current_step = Some(0);
        st.step_started_at = Some(fmt_time(cx.now));
    }
}

fn go_promoting(st: &mut RolloutStatus, cx: &Cx) {
    st.phase = Phase::Promoting;
    st.pause_reason = None;
    st.analysis = None;
    st.current_step = Some(i32::try_from(cx.steps.len()).unwrap_or(i32::MAX));
    st.step_started_at = Some(fmt_time(cx.now));
}

pub(super) fn next_step(st: &mut RolloutStatus, cx: &Cx) {
    let next = st.current_step.unwrap_or(0).saturating_add(1);
    if usize::try_from(next).map_or(true, |n| n >= cx.steps.len()) {
        go_promoting(st, cx);
        return;
    }
    st.current_step = Some(next);
    st.step_started_at = Some(fmt_time(cx.now));
    st.phase = Phase::Progressing;
    st.pause_reason = None;
    st.analysis = None;
    st.reason = None;
}

pub(super) fn begin_teardown(st: &mut RolloutStatus, cause: TeardownCause, message: String) {
    st.phase = Phase::Aborted;
    st.pause_reason = None;
    st.analysis = None;
    if matches!(
        cause,
        TeardownCause::AnalysisFailed
            | TeardownCause::ProgressDeadlineExceeded
            | TeardownCause::Aborted
    ) {
        st.failed_template_hash = st.canary_template_hash.clone();
        st.failed_revision = st.canary_revision.clone();
    }
    st.reason = Some(message.clone());
    st.teardown = Some(Teardown { cause, message });
}

fn to_healthy(st: &mut RolloutStatus, reason: Option<String>) {
    st.phase = Phase::Healthy;
    st.canary_template_hash = None;
    st.canary_revision = None;
    st.failed_template_hash = None;
    st.failed_revision = None;
    st.steps_hash = None;
    st.current_step = None;
    st.step_started_at = None;
    st.pause_reason = None;
    st.analysis = None;
    st.teardown = None;
    st.revert_pull_request = None;
    st.reason = reason;
}

/// Checks that apply to a canary in flight before its step runs; `true` if one fired.
fn interrupted(st: &mut RolloutStatus, cx: &Cx) -> bool {
    let Some(h) = cx.handoff else { return false };
    if Some(&h.template_hash) != st.canary_template_hash.as_ref() {
        if Some(&h.template_hash) == st.stable_template_hash.as_ref() {
            begin_teardown(
                st,
                TeardownCause::RevertedInGit,
                "git is back on the stable template".into(),
            );
        } else {
            begin_teardown(
                st,
                TeardownCause::Superseded,
                format!(
                    "superseded by revision {}: restarting from the new template",
                    short(&h.revision)
                ),
            );
        }
        return true;
    }
    false
}

fn progressing(st: &mut RolloutStatus, cx: &Cx) -> bool {
    if let super::freeze::Gate::Hold(changed) = super::freeze::in_flight(st, cx) {
        return changed;
    }
    if interrupted(st, cx) {
        return true;
    }
    if st.steps_hash.as_deref() != Some(cx.steps_hash.as_str()) {
        st.attempt += 1;
        st.steps_hash = Some(cx.steps_hash.clone());
        st.current_step = Some(0);
        st.step_started_at = Some(fmt_time(cx.now));
        st.phase = Phase::Progressing;
        st.pause_reason = None;
        st.analysis = None;
        st.reason = Some("the step list changed: steps start over".into());
        if cx.steps.is_empty() {
            go_promoting(st, cx);
        }
        return true;
    }
    if cx
        .obs
        .canary
        .as_ref()
        .is_some_and(|c| c.progress_deadline_exceeded)
    {
        let msg = format!(
            "canary not available within progressDeadline {}",
            cx.spec.progress_deadline
        );
        begin_teardown(st, TeardownCause::ProgressDeadlineExceeded, msg);
        return true;
    }
    if st.pause_reason == Some(PauseReason::Manual) {
        return false;
    }
    let i = st.current_step.unwrap_or(0);
    let Some(kind) = usize::try_from(i)
        .ok()
        .and_then(|i| cx.steps.get(i))
        .copied()
    else {
        go_promoting(st, cx);
        return true;
    };
    let Some(started) = parse_time(st.step_started_at.as_deref()) else {
        st.step_started_at = Some(fmt_time(cx.now));
        return true;
    };
    match kind {
        StepKind::Weight(_) | StepKind::Scale(_) => {
            if actions::settled(st, cx) {
                next_step(st, cx);
                return true;
            }
            false
        }
        StepKind::Pause(d) => {
            if d.is_some_and(|d| cx.now >= add(started, d)) {
                next_step(st, cx);
                return true;
            }
            if st.phase != Phase::Paused || st.pause_reason != Some(PauseReason::PauseStep) {
                st.phase = Phase::Paused;
                st.pause_reason = Some(PauseReason::PauseStep);
                st.reason = Some(match d {
                    Some(d) => format!("pause step: until {}", fmt_time(add(started, d))),
                    None => "pause step: waiting for promote".into(),
                });
                return true;
            }
            false
        }
        StepKind::Analysis {
            spec,
            warmup,
            duration,
        } => analysis_step(st, cx, i, spec, warmup, duration),
    }
}

fn promoting(st: &mut RolloutStatus, cx: &Cx) -> bool {
    let canary = st.canary_template_hash.clone();
    if st.stable_template_hash != canary {
        let live = cx.obs.stable.template_hash.as_ref();
        if live == canary.as_ref() {
            if cx.obs.stable.available {
                st.stable_template_hash = canary;
                st.stable_revision = st.canary_revision.clone();
                return true;
            }
            return false;
        }
        // Stable not touched yet: a newer template still supersedes the promotion.
        return interrupted(st, cx);
    }
    if cx.obs.canary.is_none() && cx.obs.baseline.is_none() {
        let rev = st
            .stable_revision
            .as_deref()
            .map(short)
            .unwrap_or("?")
            .to_owned();
        to_healthy(st, Some(format!("promoted {rev}")));
        return true;
    }
    false
}

fn tearing_down(st: &mut RolloutStatus, cx: &Cx) -> bool {
    if cx.obs.canary.is_some() || cx.obs.baseline.is_some() {
        return false;
    }
    let cause = st.teardown.as_ref().map(|t| t.cause);
    st.canary_template_hash = None;
    st.canary_revision = None;
    st.current_step = None;
    st.step_started_at = None;
    st.steps_hash = None;
    match cause {
        Some(TeardownCause::Superseded | TeardownCause::RevertedInGit | TeardownCause::Frozen)
        | None => {
            let reason = st.reason.take();
            to_healthy(st, reason);
        }
        Some(_) => st.phase = Phase::RolledBack,
    }
    true
}

/// When to call `step` again at the latest.
fn requeue_after(st: &RolloutStatus, cx: &Cx) -> Option<Duration> {
    if matches!(st.phase, Phase::Healthy | Phase::RollbackPending) {
        return None;
    }
    let mut next = RESYNC;
    let mut until = |t: Option<Timestamp>| {
        if let Some(t) = t {
            let d = cx.now.duration_until(t);
            let d = Duration::try_from(d)
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            next = next.min(d);
        }
    };
    if let Some(run) = &st.analysis {
        until(parse_time(run.end.as_deref()));
        until(parse_time(run.retry_at.as_deref()));
    }
    if let Some(i) = st.current_step.and_then(|i| usize::try_from(i).ok())
        && let Some(StepKind::Pause(Some(d))) = cx.steps.get(i)
        && let Some(started) = parse_time(st.step_started_at.as_deref())
    {
        until(Some(add(started, *d)));
    }
    Some(next)
}
