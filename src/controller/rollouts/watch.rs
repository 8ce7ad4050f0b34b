//! The rollout controller's loop: the watches of Rollouts and Deployments that keep its caches
//! and queue Rollouts, and the workers that take them off the queue for a pass
//! ([`Rollouts::reconcile`]). Started per leadership term by [`run`].

use super::{AFTER_CONFLICT, AFTER_ERROR, Error, Rollouts, freeze};
use crate::controller::Agent;
use crate::crd::Rollout;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Runs the rollout controller while this agent leads (dropped with the leadership term):
/// watches of Rollouts and Deployments feeding the queue and, once both caches hold their
/// initial lists, `agent.opts.rollout_workers` workers.
///
/// The caches' readiness is awaited here, once, not by each worker: kube's
/// `Store::wait_until_ready` keeps the waker of only the last task that polled it (a oneshot
/// receiver behind a mutex), so of several workers each awaiting it, one woke and the others
/// slept for good: the controller ran one pass at a time whatever `--rollout-workers` said.
pub async fn run(agent: Arc<Agent>) {
    let (rollouts, rollouts_writer) = reflector::store();
    let (deployments, deployments_writer) = reflector::store();
    let ctl = Rollouts::new(agent.clone(), rollouts, deployments);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch_rollouts(ctl.clone(), rollouts_writer));
    tasks.spawn(ctl.statuses.clone().run());
    tasks.spawn(watch_deployments(ctl.clone(), deployments_writer));
    tasks.spawn(freeze::watch(ctl.clone()));
    if ctl.rollouts.wait_until_ready().await.is_err()
        || ctl.deployments.wait_until_ready().await.is_err()
    {
        return;
    }
    for _ in 0..agent.opts.rollout_workers.max(1) {
        tasks.spawn(worker(ctl.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// Every change of a Rollout (spec, status, request annotation) updates the cache and queues it.
async fn watch_rollouts(ctl: Arc<Rollouts>, mut cache: reflector::store::Writer<Rollout>) {
    let api: Api<Rollout> = Api::all(ctl.client());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        if let Ok(ev) = &ev {
            cache.apply_watcher_event(ev);
        }
        match ev {
            Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                let key = (r.namespace().unwrap_or_default(), r.name_any());
                if let Ok(mut t) = ctl.targets.lock() {
                    t.insert(
                        (key.0.clone(), r.spec.target_ref.name.clone()),
                        key.1.clone(),
                    );
                }
                ctl.push_observed(&key, Duration::ZERO);
            }
            Ok(watcher::Event::Delete(r)) => {
                let key = (r.namespace().unwrap_or_default(), r.name_any());
                if let Ok(mut t) = ctl.targets.lock() {
                    t.remove(&(key.0.clone(), r.spec.target_ref.name.clone()));
                }
                ctl.queue.remove(&key);
                ctl.take_observed(&key);
                ctl.samplers.stop(&key);
                ctl.rollbacks.stop(&key);
                ctl.statuses.forget(&key);
                ctl.agent.metrics.forget_rollout(&key.0, &key.1);
            }
            Ok(_) => {}
            // Retried by the stream's backoff.
            Err(e) => tracing::warn!(error = %e, "Rollout watch failed; retrying"),
        }
    }
}

/// A change of a stable, canary or baseline Deployment updates the cache and queues its Rollout.
async fn watch_deployments(ctl: Arc<Rollouts>, mut cache: reflector::store::Writer<Deployment>) {
    let api: Api<Deployment> = Api::all(ctl.client());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        // Only what a pass reads is kept: managed fields are most of an object's size.
        let ev = ev.map(|e| e.modify(|d| d.metadata.managed_fields = None));
        if let Ok(ev) = &ev {
            cache.apply_watcher_event(ev);
        }
        let d = match ev {
            Ok(watcher::Event::Apply(d) | watcher::Event::Delete(d)) => d,
            Ok(_) => continue,
            // Retried by the stream's backoff.
            Err(e) => {
                tracing::warn!(error = %e, "Deployment watch failed; retrying");
                continue;
            }
        };
        let ns = d.namespace().unwrap_or_default();
        let owner = d
            .owner_references()
            .iter()
            .find(|o| o.kind == "Rollout" && o.api_version.starts_with("fledge.dev/"))
            .map(|o| o.name.clone());
        let target = ctl
            .targets
            .lock()
            .ok()
            .and_then(|t| t.get(&(ns.clone(), d.name_any())).cloned());
        for name in owner.into_iter().chain(target) {
            ctl.push_observed(&(ns.clone(), name), Duration::from_millis(100));
        }
    }
}

/// One worker: takes due Rollouts off the queue, one key at a time (started once both caches
/// hold their initial lists). A pass that panics is reported and retried later; it never takes
/// the worker down. Counted in `fledge_rollout_workers` while it runs.
async fn worker(ctl: Arc<Rollouts>) {
    let _running = Running::count(&ctl.agent.metrics.rollout_workers);
    loop {
        let key = ctl.queue.pop().await;
        let observed = ctl.take_observed(&key);
        let started = Instant::now();
        let (c, k) = (ctl.clone(), key.clone());
        let result = tokio::spawn(async move { c.reconcile(&k).await }).await;
        tracing::debug!(
            rollout = %format!("{}/{}", key.0, key.1),
            outcome = match &result {
                Ok(Ok(p)) if p.decided.is_some() => "decided",
                Ok(Ok(_)) => "unchanged",
                Ok(Err(Error::Stale)) => "stale",
                Ok(Err(_)) => "error",
                Err(_) => "panic",
            },
            waited_ms = observed.map(|at| (started - at).as_millis() as u64),
            pass_ms = started.elapsed().as_millis() as u64,
            "pass"
        );
        match (&result, observed) {
            (Ok(Ok(pass)), Some(at)) => {
                let m = &ctl.agent.metrics;
                m.rollout_queue_wait.observe((started - at).as_secs_f64());
                if let Some(decided) = pass.decided {
                    m.rollout_decision.observe((decided - at).as_secs_f64());
                }
                m.rollout_reaction.observe(at.elapsed().as_secs_f64());
            }
            // The pass did not finish its work: the observation waits for the one that does.
            (_, Some(at)) => ctl.note_observed(&key, at),
            (_, None) => {}
        }
        let next = match result {
            Ok(Ok(pass)) => pass.next,
            Ok(Err(Error::Stale)) => None,
            Ok(Err(Error::WriteStatus(kube::Error::Api(e)))) if e.code == 409 => {
                // Someone (sync's hand-off, a request) wrote the Rollout since it was read: the
                // pass is void; look again at once with fresh data.
                tracing::debug!(rollout = %format!("{}/{}", key.0, key.1), "stale status write refused; observing again");
                Some(AFTER_CONFLICT)
            }
            Ok(Err(e)) => {
                tracing::warn!(rollout = %format!("{}/{}", key.0, key.1), error = %e, "rollout pass failed; retrying");
                Some(AFTER_ERROR)
            }
            Err(e) => {
                tracing::error!(rollout = %format!("{}/{}", key.0, key.1), error = %e, "rollout pass panicked; retrying later");
                Some(Duration::from_secs(30))
            }
        };
        ctl.queue.done(&key);
        if let Some(next) = next {
            ctl.push(&key, next);
        }
    }
}

/// One running worker in `fledge_rollout_workers`, counted from [`Running::count`] until dropped
/// (with its task, when the leadership term ends).
struct Running(prometheus_client::metrics::gauge::Gauge);

impl Running {
    fn count(gauge: &prometheus_client::metrics::gauge::Gauge) -> Running {
        gauge.inc();
        Running(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}
