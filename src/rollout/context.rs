//! What one pass of the engine reads, validated once: the parsed steps, the router, the
//! deadline, the hand-off; and the time helpers the status uses (whole-second RFC 3339).

use super::actions::Router;
use super::types::Observations;
use super::{RETRY_BACKOFF_MAX, RETRY_BACKOFF_START};
use crate::crd::{AnalysisStep, RolloutHandoff, RolloutSpec, SetCanaryScaleStep};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use std::time::Duration;

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

pub(super) fn validate<'a>(
    spec: &'a RolloutSpec,
) -> Result<(Vec<StepKind<'a>>, Router, Duration), String> {
    let router = match (
        &spec.traffic.replicas,
        &spec.traffic.istio,
        &spec.traffic.gateway_api,
    ) {
        (Some(_), None, None) => Router::Replicas,
        (None, Some(_), None) | (None, None, Some(_)) => Router::Mesh,
        _ => return Err("traffic: set exactly one of replicas, istio, gatewayAPI".into()),
    };
    let deadline = parse_duration("progressDeadline", &spec.progress_deadline)?;
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (i, s) in spec.steps.iter().enumerate() {
        let set = [
            s.set_weight.is_some(),
            s.set_canary_scale.is_some(),
            s.pause.is_some(),
            s.analysis.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            return Err(format!(
                "steps[{i}]: set exactly one of setWeight, setCanaryScale, pause, analysis"
            ));
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

pub(super) fn steps_hash(spec: &RolloutSpec) -> String {
    let bytes = serde_json::to_vec(&spec.steps).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// An RFC 3339 time with whole seconds, as stored in the status.
pub(super) fn fmt_time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
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

pub(super) fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}
