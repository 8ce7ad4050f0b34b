//! The rollout controller: drives every Rollout through the pure engine ([`crate::rollout::step`])
//! on the same keyed work queue as sync ([`Queue`]), one `(namespace, name)` per worker at a
//! time, while this agent leads. A pass is a pipeline: observe the cluster → step → write the
//! status (server-side apply as `fledge-rollout`, compare-and-set on `resourceVersion`; a stale
//! write ends the pass) → carry out the actions in order → requeue. All state is in
//! `Rollout.status`, so a restarted agent resumes where it was.
//!
//! A pass reads Rollouts and Deployments from caches the controller's two watches keep
//! (reflector stores; Deployments without `managedFields`), not from the API server: with
//! hundreds of rollouts in flight, a pass costs only its writes. A cache may lag a write by a
//! moment; that is safe because the status write is a compare-and-set (a stale Rollout is
//! refused, and a pass that would start from the version this controller itself just replaced
//! waits for the watch instead), and every workload action is "make it so". Workers start once
//! both caches hold their initial lists.
//!
//! Crash points (`FLEDGE_FAILPOINTS`, see [`crate::failpoint`]): `rollout-after-status` (a status
//! written, its actions not yet carried out), `rollout-after-canary` (the canary applied) and
//! `rollout-after-promote` (the stable Deployment given the canary template).
//!
//! Submodules: `watch` runs the watches and workers, `observe` reads the cluster into
//! [`Observations`], `act` carries out the
//! [`Action`]s, `router` is the `gatewayAPI`/`istio` traffic router (track Services, route
//! weights, achieved weights), `sampler` runs the analyses, `freeze` reads the ConfigRepo's
//! freeze (the andon cord) into the observations. Beside them, `super::rollback` makes
//! the git rollback a failure asks for, and `super::commit_status` shows each pass on the commit.

mod act;
mod freeze;
mod metrics;
mod observe;
mod router;
mod sampler;
#[cfg(test)]
mod tests;
mod watch;

use super::commit_status::{self, CommitStatuses};
use super::rollback::Rollbacks;
use super::{Agent, EventKind, EventNote};
use crate::crd::{PauseReason, Phase, Rollout, RolloutStatus, TeardownCause};
use crate::labels::{CONFIG_REPO_LABEL, ROLLOUT_FIELD_MANAGER};
use crate::rollout::routes::RouteError;
use crate::rollout::{self, Action, Decision};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub use act::{ActError, workload_body};
pub use sampler::Samplers;

use super::queue::Queue;

/// A Rollout's key in the queue: `(namespace, name)`.
pub type Key = (String, String);

/// Why a pass ended early. Each pipeline step has its own variant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cached Rollout is older than a write already made; waiting for the watch")]
    Stale,
    #[error("observing the cluster: {0}")]
    Observe(#[source] kube::Error),
    #[error("writing the status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error("{0}")]
    Act(#[from] ActError),
    #[error("traffic router: {0}")]
    Router(#[from] router::RouterError),
}

/// What a pass that ended well reports to its worker.
#[derive(Debug, Default)]
pub struct Pass {
    /// When to look again (`None`: on the next watch event).
    pub next: Option<Duration>,
    /// When the pass sent the status write recording the engine's decision (`None`: the
    /// decision changed nothing). `fledge_rollout_decision_seconds` stops there.
    pub decided: Option<Instant>,
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Delay before a Rollout whose pass failed (API error) is tried again.
const AFTER_ERROR: Duration = Duration::from_secs(5);

/// Delay before a Rollout whose route weights were just set is observed again.
const ROUTE_SETTLE: Duration = Duration::from_secs(1);

/// Delay before a Rollout whose status write lost a compare-and-set is observed again.
const AFTER_CONFLICT: Duration = Duration::from_millis(200);

/// The rollout controller of one leadership term.
pub struct Rollouts {
    agent: Arc<Agent>,
    queue: Arc<Queue<Key>>,
    samplers: Samplers,
    rollbacks: Rollbacks,
    statuses: Arc<CommitStatuses>,
    freezes: freeze::Freezes,
    /// Stable Deployment `(namespace, name)` → Rollout names targeting it (watch routing).
    targets: Mutex<HashMap<Key, String>>,
    /// When a watch event about each queued Rollout was first observed and not yet acted on
    /// (`fledge_rollout_reaction_seconds` starts there).
    observed: Mutex<HashMap<Key, Instant>>,
    /// Rollouts as the Rollout watch last delivered them.
    rollouts: Store<Rollout>,
    /// Deployments as the Deployment watch last delivered them (without `managedFields`).
    deployments: Store<Deployment>,
    /// Per Rollout, a `resourceVersion` known to be outdated (its last status write replaced it,
    /// or a write over it was refused as stale): a cached copy still at that version is skipped.
    replaced: Mutex<HashMap<Key, String>>,
    /// Phase and step Events, posted in order by one background task so a pass does not wait
    /// on them (they are informational; the status is the record).
    events: tokio::sync::mpsc::UnboundedSender<(ObjectReference, EventNote)>,
}

impl Rollouts {
    /// A controller for `agent` with an empty queue, reading the given caches.
    pub fn new(
        agent: Arc<Agent>,
        rollouts: Store<Rollout>,
        deployments: Store<Deployment>,
    ) -> Arc<Rollouts> {
        let queue: Arc<Queue<Key>> = Arc::default();
        let (events, mut posts) = tokio::sync::mpsc::unbounded_channel();
        let poster = agent.clone();
        // Ends when the controller (the sender) is dropped with its leadership term.
        tokio::spawn(async move {
            while let Some((regarding, note)) = posts.recv().await {
                poster.events.publish(&regarding, note).await;
            }
        });
        Arc::new(Rollouts {
            events,
            rollouts,
            deployments,
            replaced: Mutex::default(),
            samplers: Samplers::new(agent.client.clone(), queue.clone()),
            rollbacks: Rollbacks::new(agent.clone(), queue.clone()),
            statuses: CommitStatuses::new(agent.clone()),
            freezes: freeze::Freezes::default(),
            agent,
            queue,
            targets: Mutex::default(),
            observed: Mutex::default(),
        })
    }

    fn client(&self) -> Client {
        self.agent.client.clone()
    }

    /// Asks for a pass over `key` after `delay`.
    pub fn push(&self, key: &Key, delay: Duration) {
        self.queue.push(key, delay);
    }

    /// A watch event about `key` was observed now: queues it after `delay` and starts the
    /// reaction clock (the earliest unhandled observation counts).
    fn push_observed(&self, key: &Key, delay: Duration) {
        self.note_observed(key, Instant::now());
        self.push(key, delay);
    }

    fn note_observed(&self, key: &Key, at: Instant) {
        if let Ok(mut o) = self.observed.lock() {
            let slot = o.entry(key.clone()).or_insert(at);
            *slot = (*slot).min(at);
        }
    }

    /// The pending observation of `key`, taken by the pass that starts now (events observed
    /// during the pass start a new clock, measured by the next pass).
    fn take_observed(&self, key: &Key) -> Option<Instant> {
        self.observed.lock().ok()?.remove(key)
    }

    /// One pass over a Rollout: when to look again, and when it sent its status write.
    pub async fn reconcile(&self, key: &Key) -> Result<Pass> {
        let (ns, name) = key;
        let api: Api<Rollout> = Api::namespaced(self.client(), ns);
        let Some(ro) = self.rollouts.get(&ObjectRef::new(name).within(ns)) else {
            self.samplers.stop(key);
            self.rollbacks.stop(key);
            self.statuses.forget(key);
            return Ok(Pass::default());
        };
        if self.is_replaced(key, &ro) {
            // The watch has not delivered the newer version yet; it will, and that queues the
            // next pass.
            return Err(Error::Stale);
        }
        if !self.governs(&ro).await {
            return Ok(Pass::default());
        }
        let status = ro.status.clone().unwrap_or_default();
        let cached = |n: &str| self.deployments.get(&ObjectRef::new(n).within(ns));
        let mut obs = observe::observe(&self.client(), &ro, cached, self.samplers.progress(key))
            .await
            .map_err(Error::Observe)?;
        // Waiting on an inconclusive result: ask whether the metrics backend answers again.
        if status.pause_reason == Some(PauseReason::Inconclusive)
            && let Some(run) = &status.analysis
        {
            obs.obs.metrics_backend = sampler::probe(&self.client(), ns, &run.template).await;
        }
        obs.obs.freeze = (self.freezes.of(&self.client(), &ro).await).map_err(Error::Observe)?;
        obs.obs.git_rollback = self
            .rollbacks
            .observe(key, status.failed_revision.as_deref());
        let now = jiff::Timestamp::now();
        let decision = rollout::step(&ro.spec, &status, &obs.obs, now);
        let mut decided = None;
        if decision.status != status {
            decided = Some(Instant::now());
            let written = match self.write_status(&api, &ro, &decision.status).await {
                Ok(w) => w,
                Err(e) => {
                    // Refused as stale: a newer version exists and the watch will deliver it;
                    // until then, passes over the cached (stale) copy are skipped.
                    if matches!(&e, Error::WriteStatus(kube::Error::Api(a)) if a.code == 409)
                        && let (Ok(mut r), Some(rv)) = (self.replaced.lock(), ro.resource_version())
                    {
                        r.insert(key.clone(), rv);
                    }
                    return Err(e);
                }
            };
            // A write that changed nothing keeps the version; the cache is current then.
            if let (Ok(mut r), Some(rv)) = (self.replaced.lock(), ro.resource_version())
                && written.resource_version().as_ref() != Some(&rv)
            {
                r.insert(key.clone(), rv);
            }
            crate::failpoint::hit("rollout-after-status");
            self.record_transition(&ro, &status, &decision.status, now);
            self.announce(&ro, &status, &decision.status);
        }
        // Every pass, not only on a change: a restarted agent reports every Rollout at once.
        self.agent
            .metrics
            .set_rollout_phase(ns, name, phase_name(decision.status.phase));
        self.carry_out(&ro, &obs, &decision).await?;
        self.post_status(key, &ro, &status, &decision);
        Ok(Pass {
            next: Some(next_pass(&decision)),
            decided,
        })
    }

    /// Whether the cached `ro` is the version this controller's last status write replaced.
    fn is_replaced(&self, key: &Key, ro: &Rollout) -> bool {
        let Ok(mut r) = self.replaced.lock() else {
            return false;
        };
        match r.get(key) {
            Some(rv) if ro.resource_version().as_ref() == Some(rv) => true,
            Some(_) => {
                r.remove(key);
                false
            }
            None => false,
        }
    }

    /// Asks for the commit status of this pass (posted in the background; never fails a pass).
    /// A failure waits for the git rollback the same pass asked for, so that it links the PR.
    fn post_status(&self, key: &Key, ro: &Rollout, before: &RolloutStatus, decision: &Decision) {
        let st = &decision.status;
        let git_pending = decision.actions.iter().any(|a| {
            matches!(a, Action::RequestGitRollback(f)
                if !self.rollbacks.settled(key, &f.failed_revision))
        });
        let post = commit_status::desired(
            &self.statuses.context(key),
            before,
            st,
            git_pending,
            self.statuses.dashboard(key).as_deref(),
        );
        let repo = ro.labels().get(CONFIG_REPO_LABEL).map(String::as_str);
        self.statuses.update(key, repo, post);
    }

    /// Whether this agent drives `ro`: with a ConfigRepo selector, only Rollouts applied from a
    /// ConfigRepo it selects (label `fledge.dev/config-repo`).
    async fn governs(&self, ro: &Rollout) -> bool {
        let Some(sel) = &self.agent.opts.selector else {
            return true;
        };
        let Some(repo) = ro.labels().get(CONFIG_REPO_LABEL) else {
            return false;
        };
        match self.freezes.labels_of(&self.client(), repo).await {
            Ok(Some(labels)) => sel.matches(&labels),
            _ => false,
        }
    }

    /// Writes the engine's status: server-side apply as `fledge-rollout`, without `handoff`
    /// (sync's), with the read `resourceVersion` as precondition so a stale pass fails.
    async fn write_status(
        &self,
        api: &Api<Rollout>,
        ro: &Rollout,
        status: &RolloutStatus,
    ) -> Result<Rollout> {
        let body = status_body(ro, status);
        api.patch_status(
            &ro.name_any(),
            &PatchParams::apply(ROLLOUT_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::WriteStatus)
    }

    /// Step durations and verdicts of a written transition.
    fn record_transition(
        &self,
        ro: &Rollout,
        before: &RolloutStatus,
        after: &RolloutStatus,
        now: jiff::Timestamp,
    ) {
        let t = metrics::transition(&ro.spec.steps, before, after, now);
        if let Some((kind, secs)) = t.step_ended {
            self.agent.metrics.observe_rollout_step(kind, secs);
        }
        for v in t.verdicts {
            self.agent.metrics.count_rollout_verdict(v);
        }
    }

    /// Events and abort counts for a phase change.
    fn announce(&self, ro: &Rollout, before: &RolloutStatus, after: &RolloutStatus) {
        let phase_changed = before.phase != after.phase;
        let step_changed = before.current_step != after.current_step;
        if !phase_changed && !step_changed {
            return;
        }
        if phase_changed {
            let torn = |p: Phase| {
                matches!(
                    p,
                    Phase::Aborted | Phase::RolledBack | Phase::RollbackPending
                )
            };
            let failure = after.teardown.as_ref().filter(|t| {
                !matches!(
                    t.cause,
                    TeardownCause::Superseded | TeardownCause::RevertedInGit
                )
            });
            if let Some(t) = failure.filter(|_| torn(after.phase) && !torn(before.phase)) {
                self.agent
                    .metrics
                    .count_rollout_abort(&format!("{:?}", t.cause));
            }
        }
        let kind = match after.phase {
            Phase::Aborted | Phase::RolledBack | Phase::RollbackPending => EventKind::Warning,
            _ => EventKind::Normal,
        };
        let message = format!(
            "{} (step {}){}",
            phase_name(after.phase),
            after.step_progress.as_deref().unwrap_or("-"),
            after
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let note = EventNote {
            kind,
            reason: phase_reason(after.phase, phase_changed),
            action: "Rollout",
            related: None,
            message,
        };
        let _ = self.events.send((object_ref(ro), note));
    }

    /// Carries out the actions in order; the first failure ends the pass (the next pass derives
    /// the remaining ones again).
    async fn carry_out(
        &self,
        ro: &Rollout,
        obs: &observe::Observed,
        decision: &Decision,
    ) -> Result<()> {
        let ns = ro.namespace().unwrap_or_default();
        let key = (ns.clone(), ro.name_any());
        let exec = act::Executor {
            client: self.client(),
            rollout: ro,
            stable: obs.stable.as_ref(),
        };
        let mut actions = decision.actions.iter().peekable();
        while let Some(action) = actions.next() {
            tracing::debug!(rollout = %format!("{ns}/{}", key.1), action = ?action_name(action), "carrying out");
            // Canary and baseline are independent: the engine's pair of creates (or deletes)
            // goes out at once, one round trip instead of two.
            if let Some(pair) = actions.next_if(|next| paired(action, next)) {
                tracing::debug!(rollout = %format!("{ns}/{}", key.1), action = ?action_name(pair), "carrying out (with the previous)");
                let (a, b) = tokio::join!(exec.run(action), exec.run(pair));
                a?;
                b?;
                after(action);
                after(pair);
                continue;
            }
            match action {
                Action::RunAnalysis(req) => self.samplers.ensure(&key, ro, req),
                Action::RequestGitRollback(failed) => self.rollbacks.ensure(&key, ro, failed),
                Action::SetWeight { canary, baseline } => {
                    let written = router::set_weight(&self.client(), ro, *canary, *baseline).await;
                    // Look again soon: the gateway reports on the new generation within moments.
                    self.push(&key, ROUTE_SETTLE);
                    let (reason, message) = match &written {
                        Ok(router::Written::Unchanged(Some(why)))
                            if !matches!(why, RouteError::NotObserved(_)) =>
                        {
                            ("RouteNotAchieved", why.to_string())
                        }
                        Err(e) => ("RouterFailed", e.to_string()),
                        Ok(_) => ("", String::new()),
                    };
                    if !reason.is_empty() {
                        let note = EventNote {
                            kind: EventKind::Warning,
                            reason,
                            action: "SetWeight",
                            related: None,
                            message: format!(
                                "canary {canary}%, baseline {baseline}% not achieved: {message}"
                            ),
                        };
                        let _ = self.events.send((object_ref(ro), note));
                    }
                    written?;
                }
                other => exec.run(other).await?,
            }
            after(action);
        }
        Ok(())
    }
}

/// The crash points after a carried-out action (`FLEDGE_FAILPOINTS`, see the module docs).
fn after(action: &Action) {
    match action {
        Action::EnsureWorkload {
            track: rollout::Track::Canary,
            ..
        } => crate::failpoint::hit("rollout-after-canary"),
        Action::PromoteStable { .. } => crate::failpoint::hit("rollout-after-promote"),
        _ => {}
    }
}

/// Whether `b`, right after `a` in a decision, may be carried out together with it: creates or
/// deletes of two different workloads (canary and baseline), which nothing orders.
fn paired(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (Action::EnsureWorkload { track: x, .. }, Action::EnsureWorkload { track: y, .. })
        | (Action::DeleteWorkload { track: x }, Action::DeleteWorkload { track: y }) => {
            x != y && *x != rollout::Track::Stable && *y != rollout::Track::Stable
        }
        _ => false,
    }
}

/// When to look again after a pass: the engine's wish, at most [`rollout::RESYNC`] while
/// something is in flight.
fn next_pass(d: &Decision) -> Duration {
    let idle = matches!(d.status.phase, Phase::Healthy) && d.actions.is_empty();
    match d.requeue_after {
        Some(t) => t.min(rollout::RESYNC),
        None if idle => Duration::from_secs(300),
        None => rollout::RESYNC,
    }
}

/// The server-side apply body of a status write: everything but `handoff`, with the read
/// `resourceVersion` as precondition.
pub fn status_body(ro: &Rollout, status: &RolloutStatus) -> serde_json::Value {
    let mut st = status.clone();
    st.handoff = None;
    serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": ro.name_any(),
            "namespace": ro.namespace(),
            "resourceVersion": ro.resource_version(),
        },
        "status": st,
    })
}

/// The reference events about `ro` carry.
pub(super) fn object_ref(ro: &Rollout) -> ObjectReference {
    ObjectReference {
        api_version: Some(Rollout::api_version(&()).into_owned()),
        kind: Some("Rollout".into()),
        namespace: ro.namespace(),
        name: Some(ro.name_any()),
        uid: ro.uid(),
        ..ObjectReference::default()
    }
}

/// The phase as written in the status (`Healthy`, `Progressing`, …).
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Healthy => "Healthy",
        Phase::Progressing => "Progressing",
        Phase::Paused => "Paused",
        Phase::Promoting => "Promoting",
        Phase::Aborted => "Aborted",
        Phase::RolledBack => "RolledBack",
        Phase::RollbackPending => "RollbackPending",
    }
}

fn phase_reason(p: Phase, phase_changed: bool) -> &'static str {
    if !phase_changed {
        return "StepStarted";
    }
    match p {
        Phase::Healthy => "RolloutHealthy",
        Phase::Progressing => "RolloutProgressing",
        Phase::Paused => "RolloutPaused",
        Phase::Promoting => "RolloutPromoting",
        Phase::Aborted => "RolloutAborted",
        Phase::RolledBack => "RolloutRolledBack",
        Phase::RollbackPending => "RollbackPending",
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::EnsureWorkload { .. } => "EnsureWorkload",
        Action::ScaleWorkload { .. } => "ScaleWorkload",
        Action::DeleteWorkload { .. } => "DeleteWorkload",
        Action::SetWeight { .. } => "SetWeight",
        Action::PromoteStable { .. } => "PromoteStable",
        Action::RunAnalysis(_) => "RunAnalysis",
        Action::RequestGitRollback(_) => "RequestGitRollback",
    }
}

pub use watch::run;
