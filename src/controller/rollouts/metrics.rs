//! Metrics of a rollout pass: what a status transition `before → after` adds to the step
//! duration histogram and the verdict counter. Pure, so the controller's bookkeeping is unit
//! tested without an API server; the controller feeds the result to [`crate::server::Metrics`].

use crate::crd::{Phase, RolloutStatus, Step, VerdictOutcome};
use jiff::Timestamp;

/// What one status transition contributes to the metrics.
#[derive(Debug, Default, PartialEq)]
pub struct Transition {
    /// A step ended: its kind and how long it ran (seconds).
    pub step_ended: Option<(&'static str, f64)>,
    /// Verdicts recorded by the transition (new `analyses` entries), by result.
    pub verdicts: Vec<&'static str>,
}

/// The kind of a step, as the label `step_kind`.
pub fn step_kind(s: &Step) -> &'static str {
    if s.set_weight.is_some() {
        "setWeight"
    } else if s.analysis.is_some() {
        "analysis"
    } else if s.pause.is_some() {
        "pause"
    } else if s.set_canary_scale.is_some() {
        "setCanaryScale"
    } else {
        "unknown"
    }
}

fn stepping(p: Phase) -> bool {
    matches!(p, Phase::Progressing | Phase::Paused)
}

/// The metrics of `before → after` for a Rollout whose steps are `steps`, at `now`.
pub fn transition(
    steps: &[Step],
    before: &RolloutStatus,
    after: &RolloutStatus,
    now: Timestamp,
) -> Transition {
    let mut t = Transition::default();
    // A step ends when another one starts, the steps start over, or the rollout leaves them.
    if stepping(before.phase)
        && let Some(i) = before.current_step
        && (after.current_step != Some(i)
            || after.attempt != before.attempt
            || !stepping(after.phase))
        && let Some(started) = before
            .step_started_at
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok())
    {
        let kind = usize::try_from(i)
            .ok()
            .and_then(|i| steps.get(i))
            .map_or("unknown", step_kind);
        let secs = now.duration_since(started).as_secs_f64().max(0.0);
        t.step_ended = Some((kind, secs));
    }
    t.verdicts = after
        .analyses
        .iter()
        .filter(|a| !before.analyses.iter().any(|b| b.run_id == a.run_id))
        .map(|a| match a.verdict {
            VerdictOutcome::Pass => "Pass",
            VerdictOutcome::Marginal => "Marginal",
            VerdictOutcome::Fail => "Fail",
            VerdictOutcome::Inconclusive => "Inconclusive",
        })
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AnalysisSummary;

    fn steps() -> Vec<Step> {
        serde_json::from_value(serde_json::json!([
            {"setWeight": 10}, {"analysis": {"template": "golden", "duration": "1m"}}, {"pause": {}}
        ]))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn summary(run: &str, verdict: VerdictOutcome) -> AnalysisSummary {
        AnalysisSummary {
            run_id: run.into(),
            verdict,
            ..AnalysisSummary::default()
        }
    }

    #[test]
    fn the_next_step_ends_the_previous_one_with_its_kind_and_duration() {
        let before = RolloutStatus {
            phase: Phase::Progressing,
            current_step: Some(1),
            step_started_at: Some("2026-01-01T00:00:00Z".into()),
            ..RolloutStatus::default()
        };
        let mut after = before.clone();
        after.current_step = Some(2);
        after.analyses = vec![summary("1-1-0", VerdictOutcome::Pass)];
        let t = transition(&steps(), &before, &after, at("2026-01-01T00:01:05Z"));
        assert_eq!(t.step_ended, Some(("analysis", 65.0)));
        assert_eq!(t.verdicts, ["Pass"]);
    }

    #[test]
    fn an_abort_ends_the_step_and_counts_the_failing_verdict_once() {
        let before = RolloutStatus {
            phase: Phase::Progressing,
            current_step: Some(1),
            step_started_at: Some("2026-01-01T00:00:00Z".into()),
            analyses: vec![summary("1-1-0", VerdictOutcome::Inconclusive)],
            ..RolloutStatus::default()
        };
        let mut after = before.clone();
        after.phase = Phase::Aborted;
        after.analyses.push(summary("1-1-1", VerdictOutcome::Fail));
        let t = transition(&steps(), &before, &after, at("2026-01-01T00:00:30Z"));
        assert_eq!(t.step_ended, Some(("analysis", 30.0)));
        assert_eq!(
            t.verdicts,
            ["Fail"],
            "the earlier verdict is not counted again"
        );
    }

    #[test]
    fn a_pause_within_the_same_step_ends_nothing() {
        let before = RolloutStatus {
            phase: Phase::Progressing,
            current_step: Some(2),
            step_started_at: Some("2026-01-01T00:00:00Z".into()),
            ..RolloutStatus::default()
        };
        let mut after = before.clone();
        after.phase = Phase::Paused;
        let t = transition(&steps(), &before, &after, at("2026-01-01T00:00:01Z"));
        assert_eq!(t, Transition::default());
    }
}
