//! The andon cord in the engine: while the governing ConfigRepo is frozen
//! ([`Observations::freeze`]) no new rollout starts, and a canary in flight pauses where it is
//! (`Paused`, reason `Frozen`, weights unchanged) or, in `abort` mode, is taken down without a
//! failure verdict (no failed hash, no git revert). An analysis that fails while frozen is still
//! acted on (the canary is taken down, as unfrozen); a passing one waits for the unfreeze. The unfreeze resumes only what the freeze
//! paused (not a human's pause or a marginal verdict) and starts held changes. Called from
//! `machine.rs` before the normal transitions of `idle` and `progressing`.

use super::AnalysisResult;
use super::context::{Cx, short};
use super::machine::begin_teardown;
use crate::analysis::Outcome;
use crate::crd::{FreezeMode, PauseReason, Phase, RolloutHandoff, RolloutStatus, TeardownCause};

/// The freeze of the Rollout's ConfigRepo, as the controller observed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freeze {
    pub mode: FreezeMode,
    /// Who and why, one line (`by alice (cli): incident 4711`), shown in `status.reason`.
    pub note: String,
}

/// What the freeze gate decided for a rollout in flight.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// Not frozen (or a change the freeze lets through): the normal transitions run.
    Open,
    /// Frozen: nothing else moves this pass; `true` if the status changed.
    Hold(bool),
}

/// The reason a frozen rollout shows.
fn frozen_reason(f: &Freeze) -> String {
    format!("frozen {}", f.note)
}

/// In flight (`Progressing` or `Paused`): pause, abort, or resume after the unfreeze.
pub(super) fn in_flight(st: &mut RolloutStatus, cx: &Cx) -> Gate {
    let Some(f) = &cx.obs.freeze else {
        if st.pause_reason == Some(PauseReason::Frozen) {
            st.phase = Phase::Progressing;
            st.pause_reason = None;
            st.reason = None;
            return Gate::Hold(true);
        }
        return Gate::Open;
    };
    // Git went back to the stable template: taking the canary down is the way out, let it.
    if cx
        .handoff
        .is_some_and(|h| Some(&h.template_hash) == st.stable_template_hash.as_ref())
        && cx.handoff.map(|h| &h.template_hash) != st.canary_template_hash.as_ref()
    {
        return Gate::Open;
    }
    if f.mode == FreezeMode::Abort {
        begin_teardown(
            st,
            TeardownCause::Frozen,
            format!("aborted: {}", frozen_reason(f)),
        );
        return Gate::Hold(true);
    }
    // A canary that failed its analysis meanwhile is taken down as it would be unfrozen: the
    // cord stops the line, it never keeps a bad canary in traffic.
    if failed_analysis(st, cx) {
        if st.pause_reason == Some(PauseReason::Frozen) {
            st.phase = Phase::Progressing;
            st.pause_reason = None;
        }
        return Gate::Open;
    }
    // A human's pause, a marginal or an inconclusive verdict already hold it; the freeze
    // leaves them as they are (the unfreeze does not end them either).
    let held_already = st.phase == Phase::Paused
        && matches!(
            st.pause_reason,
            Some(PauseReason::Manual | PauseReason::Marginal | PauseReason::Inconclusive)
        );
    if held_already {
        return Gate::Hold(false);
    }
    let reason = Some(frozen_reason(f));
    if st.phase == Phase::Paused && st.pause_reason == Some(PauseReason::Frozen) {
        let changed = st.reason != reason;
        st.reason = reason;
        return Gate::Hold(changed);
    }
    st.phase = Phase::Paused;
    st.pause_reason = Some(PauseReason::Frozen);
    st.reason = reason;
    Gate::Hold(true)
}

/// The running analysis of `st` came back with a `Fail` verdict.
fn failed_analysis(st: &RolloutStatus, cx: &Cx) -> bool {
    let Some(run) = &st.analysis else {
        return false;
    };
    cx.obs
        .analysis
        .as_ref()
        .filter(|a| a.run_id == run.run_id)
        .and_then(|a| a.result.as_ref())
        .is_some_and(|r| matches!(r, AnalysisResult::Verdict(v) if v.outcome == Outcome::Fail))
}

/// Idle with a new template handed off: while frozen, hold it (`true` if the status changed).
pub(super) fn hold_start(st: &mut RolloutStatus, cx: &Cx, h: &RolloutHandoff) -> Option<bool> {
    let f = cx.obs.freeze.as_ref()?;
    let reason = Some(format!(
        "revision {} held: {}",
        short(&h.revision),
        frozen_reason(f)
    ));
    let changed = st.reason != reason;
    st.reason = reason;
    Some(changed)
}
