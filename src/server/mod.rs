//! `server`: the agent's HTTP endpoints — `/healthz` (process alive), `/readyz` (API server
//! reachable), `/metrics` (Prometheus text) — and the metrics themselves. Metric labels come
//! from fixed sets (error categories, states), never from error strings. The signed forge
//! webhooks live in [`webhooks`]; the agent merges them in:
//! `router(probes).merge(webhooks::router(secret, events_tx))`, and the read-only web UI in
//! [`dashboard`] the same way.

pub mod dashboard;
pub mod requests;
pub mod webhooks;

pub use requests::{count_request, kube_request_seconds, kube_requests};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoState {
    pub repo: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabel {
    pub repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoReason {
    pub repo: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutPhase {
    pub namespace: String,
    pub rollout: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepKindLabel {
    pub step_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconcile_duration: Family<ResultLabel, Histogram>,
    pub objects: Family<RepoState, Gauge>,
    pub drift: Family<RepoLabel, Counter>,
    pub prune_refusals: Family<RepoReason, Counter>,
    pub fetch_errors: Family<ReasonLabel, Counter>,
    pub apply_errors: Family<CategoryLabel, Counter>,
    pub leader: Gauge,
    /// 1 for each Rollout's current phase, 0 for the phases it had before.
    pub rollout_phase: Family<RolloutPhase, Gauge>,
    /// Rollouts aborted, by teardown cause (a fixed set).
    pub rollout_aborts: Family<ReasonLabel, Counter>,
    /// Seconds from a watch event about a Rollout or one of its Deployments (the moment the
    /// rollout controller queues the Rollout) to the end of the pass it triggered (status
    /// written, every action carried out). See docs/performance.md.
    pub rollout_reaction: Histogram,
    /// Seconds from that watch event to the start of the pass it triggered (the queue wait,
    /// including the rest of a pass over the same Rollout already running).
    pub rollout_queue_wait: Histogram,
    /// Seconds from that watch event to the moment its pass sent the status write recording
    /// the engine's next decision (passes whose decision changed the status only).
    pub rollout_decision: Histogram,
    /// Rollout workers taking Rollouts off the queue (`--rollout-workers` while leading, else 0).
    pub rollout_workers: Gauge,
    /// Seconds each rollout step ran, by kind (`setWeight`, `pause`, `analysis`,
    /// `setCanaryScale`), observed when the step ends.
    pub rollout_step_duration: Family<StepKindLabel, Histogram>,
    /// Analysis verdicts recorded in Rollout statuses, by result (`Pass`, `Marginal`, `Fail`,
    /// `Inconclusive`).
    pub rollout_verdicts: Family<ResultLabel, Counter>,
    /// 1 while a ConfigRepo is frozen (`fledge freeze` or `freeze` in its bundle), else 0.
    pub frozen: Family<RepoLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fledge");
        let reconcile_duration = Family::<ResultLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
        });
        let objects = Family::<RepoState, Gauge>::default();
        let drift = Family::<RepoLabel, Counter>::default();
        let prune_refusals = Family::<RepoReason, Counter>::default();
        let fetch_errors = Family::<ReasonLabel, Counter>::default();
        let apply_errors = Family::<CategoryLabel, Counter>::default();
        let leader = Gauge::default();
        let rollout_phase = Family::<RolloutPhase, Gauge>::default();
        let rollout_aborts = Family::<ReasonLabel, Counter>::default();
        let rollout_reaction = Histogram::new(REACTION_BUCKETS);
        let rollout_queue_wait = Histogram::new(REACTION_BUCKETS);
        let rollout_decision = Histogram::new(REACTION_BUCKETS);
        let rollout_workers = Gauge::default();
        let rollout_step_duration =
            Family::<StepKindLabel, Histogram>::new_with_constructor(|| {
                Histogram::new([
                    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ])
            });
        let rollout_verdicts = Family::<ResultLabel, Counter>::default();
        let frozen = Family::<RepoLabel, Gauge>::default();
        registry.register(
            "frozen",
            "1 while a ConfigRepo is frozen (the andon cord: fledge freeze, or freeze in its bundle)",
            frozen.clone(),
        );
        registry.register(
            "rollout_step_duration_seconds",
            "Seconds each rollout step ran, by step kind",
            rollout_step_duration.clone(),
        );
        registry.register(
            "rollout_analysis_verdicts",
            "Analysis verdicts of rollout steps, by result",
            rollout_verdicts.clone(),
        );
        registry.register(
            "rollout_reaction_seconds",
            "Seconds from a watch event about a Rollout or its workloads to the end of the pass it triggered",
            rollout_reaction.clone(),
        );
        registry.register(
            "rollout_queue_seconds",
            "Seconds from a watch event about a Rollout or its workloads to the start of the pass it triggered",
            rollout_queue_wait.clone(),
        );
        registry.register(
            "rollout_decision_seconds",
            "Seconds from a watch event about a Rollout or its workloads to the status write recording the decision it led to (sent)",
            rollout_decision.clone(),
        );
        registry.register(
            "rollout_workers",
            "Rollout workers taking Rollouts off the rollout controller's queue",
            rollout_workers.clone(),
        );
        registry.register(
            "rollout_phase",
            "1 for the phase each Rollout is in",
            rollout_phase.clone(),
        );
        registry.register(
            "rollout_aborts",
            "Rollouts aborted, by cause",
            rollout_aborts.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of ConfigRepo reconciles",
            reconcile_duration.clone(),
        );
        registry.register(
            "objects",
            "Managed objects by state after the last sync",
            objects.clone(),
        );
        registry.register(
            "drift",
            "Managed objects found changed or deleted by someone else",
            drift.clone(),
        );
        registry.register(
            "prune_refusals",
            "Prunes refused by a guard (empty render, mass prune)",
            prune_refusals.clone(),
        );
        registry.register(
            "git_fetch_errors",
            "Failed git fetches by reason",
            fetch_errors.clone(),
        );
        registry.register(
            "apply_errors",
            "Failed applies and deletes by category",
            apply_errors.clone(),
        );
        registry.register(
            "is_leader",
            "1 when this agent holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests sent to the Kubernetes API by method",
            kube_requests().clone(),
        );
        registry.register(
            "kube_request_seconds",
            "Seconds from sending a request (not a watch) to the Kubernetes API to its response head, by method",
            kube_request_seconds().clone(),
        );
        Metrics {
            registry,
            reconcile_duration,
            objects,
            drift,
            prune_refusals,
            fetch_errors,
            apply_errors,
            leader,
            rollout_phase,
            rollout_aborts,
            rollout_reaction,
            rollout_queue_wait,
            rollout_decision,
            rollout_workers,
            rollout_step_duration,
            rollout_verdicts,
            frozen,
        }
    }
}

/// Buckets of `fledge_rollout_reaction_seconds`: fine below a second, where the target is.
const REACTION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// Phases a Rollout can be in (labels of `fledge_rollout_phase`).
const ROLLOUT_PHASES: [&str; 7] = [
    "Healthy",
    "Progressing",
    "Paused",
    "Promoting",
    "Aborted",
    "RolledBack",
    "RollbackPending",
];

impl Metrics {
    /// Sets `fledge_rollout_phase{namespace, rollout, phase}`: 1 for `phase`, 0 for the others.
    pub fn set_rollout_phase(&self, namespace: &str, rollout: &str, phase: &str) {
        for p in ROLLOUT_PHASES {
            let label = RolloutPhase {
                namespace: namespace.into(),
                rollout: rollout.into(),
                phase: p.into(),
            };
            self.rollout_phase
                .get_or_create(&label)
                .set(i64::from(p == phase));
        }
    }

    /// Drops the `fledge_rollout_phase` series of a deleted Rollout.
    pub fn forget_rollout(&self, namespace: &str, rollout: &str) {
        for p in ROLLOUT_PHASES {
            self.rollout_phase.remove(&RolloutPhase {
                namespace: namespace.into(),
                rollout: rollout.into(),
                phase: p.into(),
            });
        }
    }

    /// Drops the `fledge_frozen` series of a deleted ConfigRepo (a deleted repo is neither
    /// frozen nor unfrozen; a stale 1 would keep a freeze alert firing).
    pub fn forget_repo(&self, repo: &str) {
        self.frozen.remove(&RepoLabel { repo: repo.into() });
    }

    /// Observes a finished step of kind `step_kind` that ran `seconds`.
    pub fn observe_rollout_step(&self, step_kind: &str, seconds: f64) {
        self.rollout_step_duration
            .get_or_create(&StepKindLabel {
                step_kind: step_kind.into(),
            })
            .observe(seconds);
    }

    /// Counts one analysis verdict (`Pass`, `Marginal`, `Fail`, `Inconclusive`).
    pub fn count_rollout_verdict(&self, result: &str) {
        self.rollout_verdicts
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts an abort; `cause` is a teardown cause (`AnalysisFailed`, `Aborted`, …).
    pub fn count_rollout_abort(&self, cause: &str) {
        self.rollout_aborts
            .get_or_create(&ReasonLabel {
                reason: cause.into(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Shared state of the HTTP endpoints.
#[derive(Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    /// Set once the API server answered.
    pub ready: Arc<AtomicBool>,
}

/// The router: `/healthz`, `/readyz`, `/metrics`.
pub fn router(probes: Probes) -> axum::Router {
    use axum::http::StatusCode;
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(
                |axum::extract::State(p): axum::extract::State<Probes>| async move {
                    if p.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                },
            ),
        )
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(p): axum::extract::State<Probes>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        p.metrics.encode(),
                    )
                },
            ),
        )
        .with_state(probes)
}

/// Serves the router on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, probes: Probes) -> std::io::Result<()> {
    axum::serve(listener, router(probes)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_use_fixed_names_and_count_requests() {
        let m = Metrics::default();
        count_request("PATCH");
        count_request("WEIRD");
        m.apply_errors
            .get_or_create(&CategoryLabel {
                category: "conflict".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("fledge_kube_requests_total{method=\"PATCH\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fledge_kube_requests_total{method=\"OTHER\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fledge_apply_errors_total{category=\"conflict\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_deleted_repo_leaves_no_frozen_series() {
        let m = Metrics::default();
        for repo in ["a", "b"] {
            m.frozen
                .get_or_create(&RepoLabel { repo: repo.into() })
                .set(1);
        }
        m.forget_repo("a");
        let text = m.encode();
        assert!(!text.contains("fledge_frozen{repo=\"a\"}"), "{text}");
        assert!(text.contains("fledge_frozen{repo=\"b\"} 1"), "{text}");
    }
}
