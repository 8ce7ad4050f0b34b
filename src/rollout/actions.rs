//! From a status (already transitioned) and the observations to the actions that make the
//! cluster match it. Every action is derived from the *written* status, never remembered, so
//! repeating a pass after a crash asks for the same things again, and nothing twice once it is
//! done (an action is only asked for while the observation differs).

use super::context::{Cx, StepKind, parse_time};
use super::replicas;
use super::types::*;
use crate::crd::{PauseReason, Phase, RolloutStatus, TeardownCause};

/// How traffic is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Router {
    /// Pods are the weights (one Service over all tracks).
    Replicas,
    /// `istio` or `gatewayAPI`: weights set on a route.
    Mesh,
}

/// What the current step wants: weights and pod counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Desired {
    pub canary_weight: i32,
    pub baseline_weight: i32,
    pub canary_pods: i32,
    pub baseline_pods: i32,
}

/// Weights and pods for a rollout in flight at its current step.
pub(super) fn desired(st: &RolloutStatus, cx: &Cx) -> Desired {
    let i = st
        .current_step
        .and_then(|i| usize::try_from(i).ok())
        .unwrap_or(0);
    let upto = || cx.steps.iter().take(i.saturating_add(1)).rev();
    let step_weight = upto()
        .find_map(|s| match s {
            StepKind::Weight(w) => Some(*w),
            _ => None,
        })
        .unwrap_or(0);
    let scale = upto().find_map(|s| match s {
        StepKind::Scale(sc) => Some(*sc),
        _ => None,
    });
    let exposed =
        !(st.phase == Phase::Paused && st.pause_reason == Some(PauseReason::Inconclusive));
    let w = if exposed { step_weight } else { 0 };
    let r = cx.replicas;
    let baseline = cx.spec.baseline;
    match cx.router {
        Router::Replicas => {
            let c = replicas::canary_pods(r, w, baseline);
            let shares = replicas::achieved(r, c, if baseline { c } else { 0 });
            Desired {
                canary_weight: w,
                baseline_weight: if baseline { shares.baseline.min(w) } else { 0 },
                canary_pods: c,
                baseline_pods: if baseline { c } else { 0 },
            }
        }
        Router::Mesh => {
            let (cw, bw) = replicas::mesh_weights(w, baseline);
            // Pods follow the step's weight even while traffic is off (inconclusive): kept warm.
            let c = match scale {
                Some(sc) if sc.replicas.is_some() => sc.replicas.unwrap_or(0).max(0),
                Some(sc) if sc.weight.is_some() => replicas::mesh_pods(r, sc.weight.unwrap_or(0)),
                _ => replicas::mesh_pods(r, step_weight),
            };
            Desired {
                canary_weight: cw,
                baseline_weight: bw,
                canary_pods: c,
                baseline_pods: if baseline { c } else { 0 },
            }
        }
    }
}

fn baseline_hash(st: &RolloutStatus, cx: &Cx) -> String {
    st.stable_template_hash
        .clone()
        .or_else(|| cx.obs.stable.template_hash.clone())
        .unwrap_or_else(|| "unknown-stable".into())
}

fn ready(w: Option<&WorkloadObs>, hash: Option<&str>, pods: i32) -> bool {
    w.is_some_and(|w| {
        w.template_hash.as_deref() == hash && w.replicas == pods && w.ready_replicas >= pods
    })
}

/// The current step's workloads run at their size and the router reports the asked weights.
pub(super) fn settled(st: &RolloutStatus, cx: &Cx) -> bool {
    let d = desired(st, cx);
    let canary_ok = ready(
        cx.obs.canary.as_ref(),
        st.canary_template_hash.as_deref(),
        d.canary_pods,
    );
    let baseline_ok = if cx.spec.baseline {
        ready(
            cx.obs.baseline.as_ref(),
            Some(&baseline_hash(st, cx)),
            d.baseline_pods,
        )
    } else {
        cx.obs.baseline.is_none()
    };
    let traffic_ok = match cx.router {
        Router::Replicas => true,
        Router::Mesh => {
            cx.obs.router
                == Some(RouterObs {
                    canary: d.canary_weight,
                    baseline: d.baseline_weight,
                })
        }
    };
    canary_ok && baseline_ok && traffic_ok
}

/// The actions for a status.
pub(super) fn derive(st: &RolloutStatus, cx: &Cx) -> Vec<Action> {
    let mut out = Vec::new();
    match st.phase {
        Phase::Progressing | Phase::Paused => in_flight(st, cx, &mut out),
        Phase::Promoting => {
            if st.stable_template_hash != st.canary_template_hash {
                promote(st, cx, &mut out);
            } else {
                teardown(cx, &mut out);
            }
        }
        Phase::Aborted | Phase::Healthy | Phase::RollbackPending => teardown(cx, &mut out),
        Phase::RolledBack => {
            teardown(cx, &mut out);
            git_rollback(st, cx, &mut out);
        }
    }
    out
}

fn ensure(
    out: &mut Vec<Action>,
    cx: &Cx,
    track: Track,
    template: &serde_json::Value,
    hash: &str,
    replicas: i32,
) {
    let live = match track {
        Track::Canary => cx.obs.canary.as_ref(),
        Track::Baseline => cx.obs.baseline.as_ref(),
        Track::Stable => return,
    };
    match live {
        Some(w) if w.template_hash.as_deref() == Some(hash) => {
            if w.replicas != replicas {
                out.push(Action::ScaleWorkload { track, replicas });
            }
        }
        _ => out.push(Action::EnsureWorkload {
            track,
            template: template.clone(),
            template_hash: hash.to_owned(),
            replicas,
            progress_deadline_seconds: i32::try_from(cx.deadline.as_secs()).unwrap_or(i32::MAX),
        }),
    }
}

fn in_flight(st: &RolloutStatus, cx: &Cx, out: &mut Vec<Action>) {
    let Some(h) = cx
        .handoff
        .filter(|h| Some(&h.template_hash) == st.canary_template_hash.as_ref())
    else {
        return;
    };
    let d = desired(st, cx);
    let lowering = cx
        .obs
        .router
        .is_some_and(|r| d.canary_weight <= r.canary && d.baseline_weight <= r.baseline);
    let weights = || {
        if cx.router == Router::Mesh
            && cx.obs.router
                != Some(RouterObs {
                    canary: d.canary_weight,
                    baseline: d.baseline_weight,
                })
        {
            Some(Action::SetWeight {
                canary: d.canary_weight,
                baseline: d.baseline_weight,
            })
        } else {
            None
        }
    };
    // Less traffic first, then pods; more pods first, and traffic only once they serve.
    if lowering {
        out.extend(weights());
    }
    ensure(
        out,
        cx,
        Track::Canary,
        &h.template,
        &h.template_hash,
        d.canary_pods,
    );
    if cx.spec.baseline {
        if let Some(t) = &cx.obs.stable.template {
            ensure(
                out,
                cx,
                Track::Baseline,
                t,
                &baseline_hash(st, cx),
                d.baseline_pods,
            );
        }
    } else if cx.obs.baseline.is_some() && cx.obs.router.is_some_and(|r| r.baseline == 0) {
        out.push(Action::DeleteWorkload {
            track: Track::Baseline,
        });
    }
    let pods_ready = ready(
        cx.obs.canary.as_ref(),
        Some(&h.template_hash),
        d.canary_pods,
    ) && (!cx.spec.baseline
        || ready(
            cx.obs.baseline.as_ref(),
            Some(&baseline_hash(st, cx)),
            d.baseline_pods,
        ));
    if !lowering && pods_ready {
        out.extend(weights());
    }
    if st.phase == Phase::Progressing
        && let Some(run) = &st.analysis
        && let (Some(start), Some(end)) = (
            parse_time(run.start.as_deref()),
            parse_time(run.end.as_deref()),
        )
        && !cx
            .obs
            .analysis
            .as_ref()
            .is_some_and(|a| a.run_id == run.run_id && a.result.is_some())
        && let Some(StepKind::Analysis { spec, .. }) =
            usize::try_from(run.step).ok().and_then(|i| cx.steps.get(i))
    {
        out.push(Action::RunAnalysis(AnalysisRequest {
            run_id: run.run_id.clone(),
            step: run.step,
            template: spec.template.clone(),
            vars: spec.vars.clone(),
            start,
            end,
            canary_revision: st.canary_revision.clone().unwrap_or_default(),
            stable_revision: st.stable_revision.clone(),
        }));
    }
}

fn promote(st: &RolloutStatus, cx: &Cx, out: &mut Vec<Action>) {
    if cx.obs.stable.template_hash.as_ref() == st.canary_template_hash.as_ref() {
        return; // applied; waiting for it to be available
    }
    if let Some(h) = cx
        .handoff
        .filter(|h| Some(&h.template_hash) == st.canary_template_hash.as_ref())
    {
        out.push(Action::PromoteStable {
            template: h.template.clone(),
            template_hash: h.template_hash.clone(),
            revision: h.revision.clone(),
        });
    }
}

/// All traffic to stable first; canary and baseline removed once none reaches them.
fn teardown(cx: &Cx, out: &mut Vec<Action>) {
    let present: Vec<(Track, &WorkloadObs)> = [
        (Track::Canary, &cx.obs.canary),
        (Track::Baseline, &cx.obs.baseline),
    ]
    .into_iter()
    .filter_map(|(t, w)| w.as_ref().map(|w| (t, w)))
    .collect();
    if present.is_empty() {
        return;
    }
    let traffic_off = match cx.router {
        Router::Replicas => {
            for (track, w) in &present {
                if w.replicas != 0 {
                    out.push(Action::ScaleWorkload {
                        track: *track,
                        replicas: 0,
                    });
                }
            }
            present
                .iter()
                .all(|(_, w)| w.replicas == 0 && w.ready_replicas == 0)
        }
        Router::Mesh => {
            let off = cx.obs.router == Some(RouterObs::default());
            if !off {
                out.push(Action::SetWeight {
                    canary: 0,
                    baseline: 0,
                });
            }
            off
        }
    };
    if traffic_off {
        for (track, _) in present {
            out.push(Action::DeleteWorkload { track });
        }
    }
}

fn git_rollback(st: &RolloutStatus, cx: &Cx, out: &mut Vec<Action>) {
    if !cx.spec.rollback.git_revert {
        return;
    }
    let (Some(failed_hash), Some(failed_rev), Some(td)) =
        (&st.failed_template_hash, &st.failed_revision, &st.teardown)
    else {
        return;
    };
    // Git moved on already (a new template): that is rolled out instead, nothing to revert.
    let Some(h) = cx.handoff.filter(|h| &h.template_hash == failed_hash) else {
        return;
    };
    if cx
        .obs
        .git_rollback
        .as_ref()
        .is_some_and(|g| &g.failed_revision == failed_rev)
    {
        return;
    }
    let verdict = match td.cause {
        TeardownCause::AnalysisFailed => st
            .analyses
            .iter()
            .rev()
            .find_map(FailedVerdict::from_analysis),
        TeardownCause::ProgressDeadlineExceeded => {
            Some(FailedVerdict::progress_deadline_exceeded())
        }
        TeardownCause::Aborted => Some(FailedVerdict::aborted()),
        TeardownCause::Superseded | TeardownCause::RevertedInGit | TeardownCause::Frozen => None,
    };
    let Some(verdict) = verdict else { return };
    out.push(Action::RequestGitRollback(FailedRollout {
        namespace: cx.obs.namespace.clone(),
        name: cx.obs.name.clone(),
        stable_revision: st.stable_revision.clone(),
        failed_revision: failed_rev.clone(),
        failed_template_hash: failed_hash.clone(),
        provenance: h.provenance.clone(),
        reason: td.message.clone(),
        verdict,
    }));
}

/// Fields that mirror observations or derive from the state (weights, `k/n`, the message).
pub(super) fn record_observed(st: &mut RolloutStatus, cx: &Cx) {
    let n = cx.steps.len();
    let (set, actual) = match st.phase {
        Phase::Progressing | Phase::Paused => {
            let d = desired(st, cx);
            (Some((d.canary_weight, d.baseline_weight)), cx.obs.router)
        }
        Phase::Promoting if st.stable_template_hash != st.canary_template_hash => {
            (st.set_weight.zip(st.set_baseline_weight), cx.obs.router)
        }
        Phase::Promoting | Phase::Aborted => (Some((0, 0)), cx.obs.router),
        _ => (None, None),
    };
    st.set_weight = set.map(|s| s.0);
    st.set_baseline_weight = set.map(|s| s.1);
    st.actual_weight = actual.map(|a| a.canary);
    st.actual_baseline_weight = actual.map(|a| a.baseline);
    st.weight = st.set_weight.map(|s| match st.actual_weight {
        Some(a) => format!("{s}/{a}"),
        None => format!("{s}/?"),
    });
    st.step_progress = match (st.phase, st.current_step) {
        (Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::Aborted, Some(i))
            if n > 0 =>
        {
            Some(format!(
                "{}/{n}",
                usize::try_from(i).unwrap_or(0).saturating_add(1).min(n)
            ))
        }
        _ => None,
    };
    if let Some(run) = st.analysis.as_mut()
        && let Some(a) = cx.obs.analysis.as_ref().filter(|a| a.run_id == run.run_id)
    {
        run.samples = a.samples;
        run.metrics = a.metrics.clone();
    }
    st.message = Some(message(st));
}

fn message(st: &RolloutStatus) -> String {
    let rev = |r: &Option<String>| {
        r.as_deref()
            .map(|r| r.get(..7).unwrap_or(r).to_owned())
            .unwrap_or_else(|| "?".into())
    };
    match st.phase {
        Phase::Healthy => format!("stable {}", rev(&st.stable_revision)),
        Phase::Progressing | Phase::Paused => {
            let mut m = format!(
                "canary {} {}% (actual {})",
                rev(&st.canary_revision),
                st.set_weight.unwrap_or(0),
                st.actual_weight.map_or("?".into(), |w| format!("{w}%"))
            );
            if let Some(p) = &st.step_progress {
                m.push_str(&format!(" · step {p}"));
            }
            if let Some(run) = &st.analysis {
                m.push_str(&format!(" · analysis {} samples", run.samples));
            }
            if st.phase == Phase::Paused {
                m.push_str(" · paused");
            }
            m
        }
        Phase::Promoting => format!("promoting {}", rev(&st.canary_revision)),
        Phase::Aborted => format!("aborting: {}", st.reason.as_deref().unwrap_or("")),
        Phase::RolledBack => format!("rolled back {}", rev(&st.failed_revision)),
        Phase::RollbackPending => format!(
            "rolled back {}; revert PR {}",
            rev(&st.failed_revision),
            st.revert_pull_request.as_deref().unwrap_or("?")
        ),
    }
}
