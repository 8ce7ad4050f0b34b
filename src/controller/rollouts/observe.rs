//! Observe step of a rollout pass: reads the stable, canary and baseline Deployments (from the
//! controller's cache) and the analysis progress the samplers report into the engine's
//! [`Observations`]; a mesh router's achieved weights come from `router`.

use crate::crd::Rollout;
use crate::labels::TEMPLATE_HASH_ANNOTATION;
use crate::rollout::{
    AnalysisObs, Observations, REQUEST_ANNOTATION, StableObs, Track, WorkloadObs, replicas,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Client, ResourceExt};
use std::sync::Arc;

/// What one pass saw: the engine's observations and the stable Deployment itself (the canary
/// and baseline copy its selector).
pub struct Observed {
    pub obs: Observations,
    pub stable: Option<Deployment>,
}

/// Name of the workload of `track` for the stable Deployment `target`.
pub fn workload_name(target: &str, track: Track) -> String {
    match track {
        Track::Stable => target.to_owned(),
        other => format!("{target}-{}", other.as_str()),
    }
}

/// Reads the cluster for one pass: the Deployments from `deployment` (by name in the Rollout's
/// namespace; the controller's cache), a mesh router's route from the API server.
pub async fn observe(
    client: &Client,
    ro: &Rollout,
    deployment: impl Fn(&str) -> Option<Arc<Deployment>>,
    analysis: Option<AnalysisObs>,
) -> Result<Observed, kube::Error> {
    let ns = ro.namespace().unwrap_or_default();
    let target = &ro.spec.target_ref.name;
    let read = |name: &str| deployment(name).map(Arc::unwrap_or_clone);
    let stable = read(target);
    let canary = read(&workload_name(target, Track::Canary));
    let baseline = read(&workload_name(target, Track::Baseline));
    let stable_obs = stable.as_ref().map(stable_obs).unwrap_or_default();
    let canary_obs = canary.as_ref().map(workload_obs);
    let baseline_obs = baseline.as_ref().map(workload_obs);
    let router = match ro.spec.traffic.replicas {
        Some(_) => Some(replicas::achieved(
            stable.as_ref().map(available).unwrap_or(0),
            canary_obs.as_ref().map(|w| w.ready_replicas).unwrap_or(0),
            baseline_obs.as_ref().map(|w| w.ready_replicas).unwrap_or(0),
        )),
        // `istio`, `gatewayAPI`: the weights the route achieved.
        None => super::router::observe(client, ro).await?,
    };
    let obs = Observations {
        namespace: ns,
        name: ro.name_any(),
        generation: ro.metadata.generation,
        stable: stable_obs,
        canary: canary_obs,
        baseline: baseline_obs,
        router,
        analysis,
        metrics_backend: Default::default(),
        request: ro.annotations().get(REQUEST_ANNOTATION).cloned(),
        git_rollback: None,
        freeze: None,
    };
    Ok(Observed { obs, stable })
}

fn template_hash(d: &Deployment) -> Option<String> {
    d.annotations().get(TEMPLATE_HASH_ANNOTATION).cloned()
}

fn spec_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The controller has seen the current spec.
fn current(d: &Deployment) -> bool {
    let observed = d.status.as_ref().and_then(|s| s.observed_generation);
    observed.is_some() && observed >= d.metadata.generation
}

/// Available pods of the current template (0 while the Deployment controller lags).
fn available(d: &Deployment) -> i32 {
    let Some(s) = d.status.as_ref().filter(|_| current(d)) else {
        return 0;
    };
    s.available_replicas
        .unwrap_or(0)
        .min(s.updated_replicas.unwrap_or(0))
        .max(0)
}

/// The stable Deployment as the engine sees it.
pub fn stable_obs(d: &Deployment) -> StableObs {
    let replicas = spec_replicas(d);
    let s = d.status.clone().unwrap_or_default();
    let settled = current(d)
        && s.updated_replicas.unwrap_or(0) == replicas
        && s.available_replicas.unwrap_or(0) == replicas
        && s.replicas.unwrap_or(0) == replicas;
    StableObs {
        exists: true,
        template_hash: template_hash(d),
        template: d
            .spec
            .as_ref()
            .and_then(|s| serde_json::to_value(&s.template).ok()),
        replicas,
        available: settled,
    }
}

/// A canary or baseline Deployment as the engine sees it.
pub fn workload_obs(d: &Deployment) -> WorkloadObs {
    let deadline = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        });
    WorkloadObs {
        template_hash: template_hash(d),
        replicas: spec_replicas(d),
        ready_replicas: available(d),
        progress_deadline_exceeded: deadline,
    }
}
