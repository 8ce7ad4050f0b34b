//! The analysis gate of a step: open the window once the canary serves at the step's weight,
//! ask the sampler for a verdict, and act on it. `Pass` goes on, `Marginal` waits for a human,
//! `Fail` tears down, `Inconclusive` (or no analysis at all) takes traffic away and retries with
//! bounded backoff — never a failure, never a git rollback.

use super::context::{Cx, StepKind, add, backoff, fmt_time, parse_time};
use super::machine::{begin_teardown, next_step};
use super::types::*;
use super::{MAX_AUTO_RETRIES, actions};
use crate::crd::{
    AnalysisRunStatus, AnalysisStep, PauseReason, Phase, RolloutStatus, TeardownCause,
    VerdictOutcome,
};
use std::time::Duration;

/// Most analysis summaries kept in the status.
const MAX_ANALYSES: usize = 16;

pub(super) fn analysis_step(
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
            let Some(run) = &st.analysis else {
                return false;
            };
            let due = parse_time(run.retry_at.as_deref()).is_some_and(|t| cx.now >= t);
            if run.retries < MAX_AUTO_RETRIES && due && cx.obs.metrics_backend == BackendHealth::Up
            {
                retry_analysis(st, cx, false);
                return true;
            }
            return false;
        }
        _ => {}
    }
    let prefix = format!("{}-{i}-", st.attempt);
    let Some(run) = st
        .analysis
        .as_mut()
        .filter(|r| r.step == i && r.run_id.starts_with(&prefix))
    else {
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
    let Some(obs) = cx.obs.analysis.as_ref().filter(|a| a.run_id == run.run_id) else {
        return false;
    };
    let Some(result) = &obs.result else {
        return false;
    };
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
        VerdictOutcome::Fail => begin_teardown(
            st,
            TeardownCause::AnalysisFailed,
            format!("analysis failed: {reason}"),
        ),
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
            format!(
                "automatic retry {}/{MAX_AUTO_RETRIES} at {at} once metrics answer",
                run.retries + 1
            )
        }
        Some(run) => {
            run.retry_at = None;
            "automatic retries used up; `fledge retry` to run it again".into()
        }
        None => "`fledge retry` to run it again".into(),
    };
    st.reason = Some(format!(
        "analysis inconclusive ({reason}): traffic on stable, no rollback; {next}"
    ));
}

/// Runs the current analysis step again with a new run (weights come back first).
pub(super) fn retry_analysis(st: &mut RolloutStatus, cx: &Cx, manual: bool) {
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
