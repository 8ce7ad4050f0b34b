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

use super::actions::{self, Router};
use super::request::{Request, Verb};
use super::types::*;
use super::{MAX_AUTO_RETRIES, RESYNC, RETRY_BACKOFF_MAX, RETRY_BACKOFF_START};
use crate::crd::{
    AnalysisRunStatus, AnalysisStep, PauseReason, Phase, RolloutHandoff, RolloutSpec,
    RolloutStatus, SetCanaryScaleStep, Teardown, TeardownCause, VerdictOutcome,
};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Transitions made at most in one pass (each one changes the phase or the step, so a pass
/// converges long before; the bound only guards against a bug looping).
const MAX_TRANSITIONS: usize = 64;

/// Most analysis summaries kept in the status.
const MAX_ANALYSES: usize = 16;

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

/// A validated step.
#[derive(Debug, Clone, Copy)]
pub(super) enum StepKind<'a> {
    Weight(i32),
    Scale(&'a SetCanaryScaleStep),
    Pause(Option<Duration>),
    Analysis {
        spec: &'a AnalysisStep,
        warmup: Duration,
        duration: Duration,
    },
}

/// Everything a pass reads, validated once.
pub(super) struct Cx<'a> {
    pub spec: &'a RolloutSpec,
    pub obs: &'a Observations,
    pub now: Timestamp,
    pub steps: Vec<StepKind<'a>>,
    pub steps_hash: String,
    pub router: Router,
    pub deadline: Duration,
    pub handoff: Option<&'a RolloutHandoff>,
    /// Replicas git asks for (else the stable Deployment's).
    pub replicas: i32,
}

fn parse_duration(field: &str, s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| format!("{field}: {e}"))
}

fn validate<'a>(spec: &'a RolloutSpec) -> Result<(Vec<StepKind<'a>>, Router, Duration), String> {
    let router = match (&spec.traffic.replicas, &spec.traffic.istio, &spec.traffic.gateway_api) {
        (Some(_), None, None) => Router::Replicas,
        (None, Some(_), None) | (None, None, Some(_)) => Router::Mesh,
        _ => return Err("traffic: set exactly one of replicas, istio, gatewayAPI".into()),
    };
    let deadline = parse_duration("progressDeadline", &spec.progress_deadline)?;
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (i, s) in spec.steps.iter().enumerate() {
        let set = [s.set_weight.is_some(), s.set_canary_scale.is_some(), s.pause.is_some(), s.analysis.is_some()];
        if set.iter().filter(|b| **b).count() != 1 {
            return Err(format!("steps[{i}]: set exactly one of setWeight, setCanaryScale, pause, analysis"));
        }
        steps.push(if let Some(w) = s.set_weight {
            if !(0..=100).contains(&w) {
                return Err(format!("steps[{i}].setWeight: {w} is not 0-100"));
            }
            StepKind::Weight(w)
        } else if let Some(sc) = &s.set_canary_scale {
            if router == Router::Replicas {
                return Err(format!(
                    "steps[{i}].setCanaryScale: not with the replicas router (the pod count is the weight)"
                ));
            }
            let n = [sc.replicas.is_some(), sc.weight.is_some(), sc.match_traffic_weight.is_some()];
            if n.iter().filter(|b| **b).count() != 1 {
                return Err(format!("steps[{i}].setCanaryScale: set exactly one field"));
            }
            StepKind::Scale(sc)
        } else if let Some(p) = &s.pause {
            let d = p.duration.as_deref().map(|d| parse_duration(&format!("steps[{i}].pause.duration"), d)).transpose()?;
            StepKind::Pause(d)
        } else if let Some(a) = &s.analysis {
            let warmup = a.warmup.as_deref().map(|d| parse_duration(&format!("steps[{i}].analysis.warmup"), d)).transpose()?;
            StepKind::Analysis {
                spec: a,
                warmup: warmup.unwrap_or_default(),
                duration: parse_duration(&format!("steps[{i}].analysis.duration"), &a.duration)?,
            }
        } else {
            return Err(format!("steps[{i}]: empty"));
        });
    }
    Ok((steps, router, deadline))
}

fn steps_hash(spec: &RolloutSpec) -> String {
    let bytes = serde_json::to_vec(&spec.steps).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// An RFC 3339 time with whole seconds, as stored in the status.
pub(super) fn fmt_time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

pub(super) fn parse_time(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse::<Timestamp>().ok())
}

pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Wait before automatic retry number `n + 1`.
pub(super) fn backoff(n: u32) -> Duration {
    RETRY_BACKOFF_START
        .saturating_mul(1u32 << n.min(16))
        .min(RETRY_BACKOFF_MAX)
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

/// One pass of the rollout engine. Pure: same inputs, same decision.
pub fn step(spec: &RolloutSpec, status: &RolloutStatus, obs: &Observations, now: Timestamp) -> Decision {
    let mut st = status.clone();
    if obs.generation.is_some() {
        st.observed_generation = obs.generation;
    }
    let (steps, router, deadline) = match validate(spec) {
        Ok(v) => v,
        Err(e) => {
            // Hold everything as it is; an invalid spec moves nothing.
            st.reason = Some(format!("invalid spec: {e}"));
            return Decision { status: st, actions: Vec::new(), requeue_after: None };
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
        replicas: handoff.and_then(|h| h.replicas).unwrap_or(obs.stable.replicas).max(0),
    };
    adopt_stable(&mut st, &cx);
    handle_request(&mut st, &cx);
    for _ in 0..MAX_TRANSITIONS {
        if !advance(&mut st, &cx) {
            break;
        }
    }
    actions::record_observed(&mut st, &cx);
    let actions = actions::derive(&st, &cx);
    let requeue_after = requeue_after(&st, &cx);
    Decision { status: st, actions, requeue_after }
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

fn handle_request(st: &mut RolloutStatus, cx: &Cx) {
    let Some(raw) = cx.obs.request.as_deref() else { return };
    if st.handled_request.as_deref() == Some(raw) {
        return;
    }
    // Recorded first: whatever follows, this value is never acted on again.
    st.handled_request = Some(raw.to_owned());
    let req = match Request::parse(raw) {
        Ok(r) => r,
        Err(e) => {
            st.reason = Some(format!("request {raw:?} ignored: {e}"));
            return;
        }
    };
    let paused_for = |st: &RolloutStatus, r| st.phase == Phase::Paused && st.pause_reason == Some(r);
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
            begin_teardown(st, TeardownCause::Aborted, format!("aborted by request {req}"));
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
        st.reason = Some(format!("request {req} ignored in phase {:?}{hint}", st.phase));
    }
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

fn next_step(st: &mut RolloutStatus, cx: &Cx) {
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

fn begin_teardown(st: &mut RolloutStatus, cause: TeardownCause, message: String) {
    st.phase = Phase::Aborted;
    st.pause_reason = None;
    st.analysis = None;
    if matches!(
        cause,
        TeardownCause::AnalysisFailed | TeardownCause::ProgressDeadlineExceeded | TeardownCause::Aborted
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
            begin_teardown(st, TeardownCause::RevertedInGit, "git is back on the stable template".into());
        } else {
            begin_teardown(
                st,
                TeardownCause::Superseded,
                format!("superseded by revision {}: restarting from the new template", short(&h.revision)),
            );
        }
        return true;
    }
    false
}

fn progressing(st: &mut RolloutStatus, cx: &Cx) -> bool {
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
    if cx.obs.canary.as_ref().is_some_and(|c| c.progress_deadline_exceeded) {
        let msg = format!("canary not available within progressDeadline {}", cx.spec.progress_deadline);
        begin_teardown(st, TeardownCause::ProgressDeadlineExceeded, msg);
        return true;
    }
    if st.pause_reason == Some(PauseReason::Manual) {
        return false;
    }
    let i = st.current_step.unwrap_or(0);
    let Some(kind) = usize::try_from(i).ok().and_then(|i| cx.steps.get(i)).copied() else {
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
        StepKind::Analysis { spec, warmup, duration } => analysis_step(st, cx, i, spec, warmup, duration),
    }
}

fn analysis_step(
    st: &mut RolloutStatus,
    cx: &Cx,
    i: i32,
    spec: &AnalysisStep,
    warmup: Duration,
    duration: Duration,
) -> bool {
    match st.pause_reason {
        Some(PauseReason::Marginal) => return false,
        Some(PauseReason::Inconclusive) => {
            let Some(run) = &st.analysis else { return false };
            let due = parse_time(run.retry_at.as_deref()).is_some_and(|t| cx.now >= t);
            if run.retries < MAX_AUTO_RETRIES && due && cx.obs.metrics_backend == BackendHealth::Up {
                retry_analysis(st, cx, false);
                return true;
            }
            return false;
        }
        _ => {}
    }
    let prefix = format!("{}-{i}-", st.attempt);
    let Some(run) = st.analysis.as_mut().filter(|r| r.step == i && r.run_id.starts_with(&prefix)) else {
        st.analysis = Some(AnalysisRunStatus {
            run_id: format!("{prefix}0"),
            step: i,
            template: spec.template.clone(),
            ..Default::default()
        });
        return true;
    };
    if run.start.is_none() {
        // The window opens once the canary (and baseline) serve at this step's weight.
        if !actions::settled(st, cx) {
            return false;
        }
        let start = add(cx.now, warmup);
        if let Some(run) = st.analysis.as_mut() {
            run.start = Some(fmt_time(start));
            run.end = Some(fmt_time(add(start, duration)));
        }
        return true;
    }
    let Some(obs) = cx.obs.analysis.as_ref().filter(|a| a.run_id == run.run_id) else { return false };
    let Some(result) = &obs.result else { return false };
    let run_id = run.run_id.clone();
    let summary = match result {
        AnalysisResult::Verdict(v) => summarize(i, &spec.template, &run_id, v),
        AnalysisResult::Unavailable { reason } => crate::crd::AnalysisSummary {
            step: i,
            template: spec.template.clone(),
            run_id: run_id.clone(),
            verdict: VerdictOutcome::Inconclusive,
            score: 0.0,
            reason: format!("analysis unavailable: {reason}"),
            metrics: Vec::new(),
        },
    };
    let reason = summary.reason.clone();
    st.last_score = Some(summary.score);
    st.analyses.retain(|a| a.run_id != run_id);
    st.analyses.push(summary.clone());
    if st.analyses.len() > MAX_ANALYSES {
        st.analyses.remove(0);
    }
    match summary.verdict {
        VerdictOutcome::Pass => next_step(st, cx),
        VerdictOutcome::Marginal => {
            st.phase = Phase::Paused;
            st.pause_reason = Some(PauseReason::Marginal);
            st.reason = Some(format!(
                "analysis marginal (score {:.0}): {reason}; promote or abort",
                summary.score
            ));
        }
        VerdictOutcome::Fail => {
            begin_teardown(st, TeardownCause::AnalysisFailed, format!("analysis failed: {reason}"))
        }
        VerdictOutcome::Inconclusive => inconclusive(st, cx, &reason),
    }
    true
}

fn inconclusive(st: &mut RolloutStatus, cx: &Cx, reason: &str) {
    st.phase = Phase::Paused;
    st.pause_reason = Some(PauseReason::Inconclusive);
    let next = match st.analysis.as_mut() {
        Some(run) if run.retries < MAX_AUTO_RETRIES => {
            let at = fmt_time(add(cx.now, backoff(run.retries)));
            run.retry_at = Some(at.clone());
            format!("automatic retry {}/{MAX_AUTO_RETRIES} at {at} once metrics answer", run.retries + 1)
        }
        Some(run) => {
            run.retry_at = None;
            "automatic retries used up; `fledge retry` to run it again".into()
        }
        None => "`fledge retry` to run it again".into(),
    };
    st.reason = Some(format!("analysis inconclusive ({reason}): traffic on stable, no rollback; {next}"));
}

/// Runs the current analysis step again with a new run (weights come back first).
fn retry_analysis(st: &mut RolloutStatus, cx: &Cx, manual: bool) {
    let i = st.current_step.unwrap_or(0);
    let prev = st.analysis.take();
    let tries = prev
        .as_ref()
        .and_then(|r| r.run_id.rsplit('-').next())
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(0, |n| n.saturating_add(1));
    let retries = match (&prev, manual) {
        (Some(r), false) => r.retries.saturating_add(1),
        _ => 0,
    };
    let template = match usize::try_from(i).ok().and_then(|i| cx.steps.get(i)) {
        Some(StepKind::Analysis { spec, .. }) => spec.template.clone(),
        _ => prev.map(|r| r.template).unwrap_or_default(),
    };
    st.analysis = Some(AnalysisRunStatus {
        run_id: format!("{}-{i}-{tries}", st.attempt),
        step: i,
        template,
        retries,
        ..Default::default()
    });
    st.phase = Phase::Progressing;
    st.pause_reason = None;
    st.reason = None;
    st.step_started_at = Some(fmt_time(cx.now));
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
        let rev = st.stable_revision.as_deref().map(short).unwrap_or("?").to_owned();
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
        Some(TeardownCause::Superseded) | Some(TeardownCause::RevertedInGit) | None => {
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
            let d = Duration::try_from(d).unwrap_or_default().max(Duration::from_secs(1));
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
