//! Conditions of a Rollout (`Progressing`, `Healthy`, `Paused`, `Aborted`), derived at the end of
//! every engine pass from the status the pass computed, for `kubectl describe` and for programs
//! that wait on a condition. Pure like the rest of the engine: a condition's
//! `lastTransitionTime` moves only when its `status` changes, so a pass with no news leaves the
//! status equal and writes nothing.

use super::context::fmt_time;
use crate::crd::{Condition, ConditionStatus, PauseReason, Phase, RolloutStatus};
use jiff::Timestamp;

/// The condition types, in the order they are written.
pub const TYPES: [&str; 4] = ["Progressing", "Healthy", "Paused", "Aborted"];

/// Rewrites `st.conditions` from the phase, pause reason and teardown of `st`.
pub(super) fn record(st: &mut RolloutStatus, now: Timestamp) {
    let message = st.reason.clone().unwrap_or_default();
    let torn = st.teardown.as_ref();
    let wanted = [
        match st.phase {
            Phase::Progressing => (true, "Stepping", st.message.clone().unwrap_or_default()),
            Phase::Paused => (true, "Paused", message.clone()),
            Phase::Promoting => (true, "Promoting", st.message.clone().unwrap_or_default()),
            Phase::Healthy => (false, "Idle", String::new()),
            Phase::Aborted | Phase::RolledBack | Phase::RollbackPending => {
                (false, "Aborted", message.clone())
            }
        },
        match st.phase {
            Phase::Healthy => (true, "Stable", st.message.clone().unwrap_or_default()),
            other => (false, phase_word(other), String::new()),
        },
        match (st.phase, st.pause_reason) {
            (Phase::Paused, Some(r)) => (true, pause_word(r), message.clone()),
            (Phase::Paused, None) => (true, "Paused", message.clone()),
            _ => (false, "NotPaused", String::new()),
        },
        match (st.phase, torn) {
            (Phase::Aborted | Phase::RolledBack | Phase::RollbackPending, Some(t)) => {
                (true, cause_word(t.cause), t.message.clone())
            }
            (Phase::Aborted | Phase::RolledBack | Phase::RollbackPending, None) => {
                (true, "Aborted", message)
            }
            _ => (false, "NotAborted", String::new()),
        },
    ];
    let old = std::mem::take(&mut st.conditions);
    st.conditions = TYPES
        .iter()
        .zip(wanted)
        .map(|(type_, (on, reason, message))| {
            let status = if on {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            let before = old.iter().find(|c| c.type_ == *type_);
            let last_transition_time = match before {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Some(fmt_time(now)),
            };
            Condition {
                type_: (*type_).to_owned(),
                status,
                reason: reason.to_owned(),
                message,
                last_transition_time,
                observed_generation: st.observed_generation,
            }
        })
        .collect();
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Healthy => "Stable",
        Phase::Progressing => "Progressing",
        Phase::Paused => "Paused",
        Phase::Promoting => "Promoting",
        Phase::Aborted => "Aborted",
        Phase::RolledBack => "RolledBack",
        Phase::RollbackPending => "RollbackPending",
    }
}

fn pause_word(r: PauseReason) -> &'static str {
    match r {
        PauseReason::PauseStep => "PauseStep",
        PauseReason::Marginal => "Marginal",
        PauseReason::Inconclusive => "Inconclusive",
        PauseReason::Manual => "Manual",
        PauseReason::Frozen => "Frozen",
    }
}

fn cause_word(c: crate::crd::TeardownCause) -> &'static str {
    use crate::crd::TeardownCause as C;
    match c {
        C::AnalysisFailed => "AnalysisFailed",
        C::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
        C::Aborted => "AbortedByRequest",
        C::Superseded => "Superseded",
        C::RevertedInGit => "RevertedInGit",
        C::Frozen => "Frozen",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Teardown, TeardownCause};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn get<'a>(st: &'a RolloutStatus, t: &str) -> &'a Condition {
        st.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn healthy_is_the_only_true_condition_of_a_healthy_rollout() {
        let mut st = RolloutStatus::default();
        record(&mut st, at("2026-01-01T00:00:00Z"));
        let on: Vec<&str> = st
            .conditions
            .iter()
            .filter(|c| c.status == ConditionStatus::True)
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(on, ["Healthy"]);
        assert_eq!(st.conditions.len(), TYPES.len());
    }

    #[test]
    fn an_analysis_failure_sets_aborted_with_its_cause_and_message() {
        let mut st = RolloutStatus {
            phase: Phase::RolledBack,
            teardown: Some(Teardown {
                cause: TeardownCause::AnalysisFailed,
                message: "error-ratio 0.05 > 0.01".into(),
            }),
            ..RolloutStatus::default()
        };
        record(&mut st, at("2026-01-01T00:00:00Z"));
        let a = get(&st, "Aborted");
        assert_eq!(
            (a.status, a.reason.as_str(), a.message.as_str()),
            (
                ConditionStatus::True,
                "AnalysisFailed",
                "error-ratio 0.05 > 0.01"
            )
        );
        assert_eq!(get(&st, "Healthy").status, ConditionStatus::False);
        assert_eq!(get(&st, "Progressing").status, ConditionStatus::False);
    }

    #[test]
    fn an_inconclusive_pause_names_its_reason() {
        let mut st = RolloutStatus {
            phase: Phase::Paused,
            pause_reason: Some(PauseReason::Inconclusive),
            reason: Some("metrics backend unreachable".into()),
            ..RolloutStatus::default()
        };
        record(&mut st, at("2026-01-01T00:00:00Z"));
        let p = get(&st, "Paused");
        assert_eq!(
            (p.status, p.reason.as_str(), p.message.as_str()),
            (
                ConditionStatus::True,
                "Inconclusive",
                "metrics backend unreachable"
            )
        );
        assert_eq!(get(&st, "Aborted").status, ConditionStatus::False);
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let mut st = RolloutStatus {
            phase: Phase::Progressing,
            ..RolloutStatus::default()
        };
        record(&mut st, at("2026-01-01T00:00:00Z"));
        let first = st.clone();
        // Same phase later: nothing changes, so nothing would be written.
        record(&mut st, at("2026-01-01T00:05:00Z"));
        assert_eq!(st, first);
        // Paused later: Paused moves, Progressing (still True) keeps its time.
        st.phase = Phase::Paused;
        st.pause_reason = Some(PauseReason::PauseStep);
        record(&mut st, at("2026-01-01T00:10:00Z"));
        assert_eq!(
            get(&st, "Paused").last_transition_time.as_deref(),
            Some("2026-01-01T00:10:00Z")
        );
        assert_eq!(
            get(&st, "Progressing").last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }
}
