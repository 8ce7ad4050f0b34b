//! Events, metrics and log lines of a sync, produced in one place from the steps' outcome. Each
//! event names its object and carries the current message; failures that persist are reported
//! when they start (and as a series while they repeat), not re-announced as new every pass.

use super::Agent;
use super::events::{self, Kind, Note};
use super::reconcile::SyncError;
use super::steps::{Done, Synced};
use crate::apply::Category;
use crate::crd::{ConditionStatus, ConfigRepo};
use crate::plan::{Action, PruneDecision};
use crate::server::{CategoryLabel, ReasonLabel, RepoLabel, RepoReason, RepoState, ResultLabel};
use crate::source;
use kube::Resource;

/// Per-object events at most per reconcile (the rest are counted in a summary).
const MAX_OBJECT_EVENTS: usize = 10;

fn note(kind: Kind, reason: &'static str, action: &'static str, message: String) -> Note {
    Note {
        kind,
        reason,
        action,
        related: None,
        message,
    }
}

impl Agent {
    pub(super) fn count_error(&self, category: Category) {
        self.metrics
            .apply_errors
            .get_or_create(&CategoryLabel {
                category: category.as_str().into(),
            })
            .inc();
    }

    /// Whether the condition `type_` was already False before this reconcile.
    fn was_failing(repo: &ConfigRepo, type_: &str) -> bool {
        repo.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .is_some_and(|c| c.status == ConditionStatus::False)
    }

    /// Reports a sync's outcome: events, metrics and the log line.
    pub(super) async fn report(&self, repo: &ConfigRepo, outcome: &Result<Synced, SyncError>) {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let me = repo.object_ref(&());
        match outcome {
            // The andon cord with `all`: not a failure (the freeze's own events say it).
            Err(SyncError::Frozen { commit, message }) => {
                tracing::info!(commit = %short(commit), "{message}: nothing applied, nothing pruned");
            }
            Err(e) => {
                if let SyncError::Fetch { reason, .. } = e {
                    let reason = match reason {
                        source::Reason::Auth => "auth",
                        source::Reason::NotFound => "not_found",
                        source::Reason::Network => "network",
                        source::Reason::Timeout => "timeout",
                        source::Reason::HostKey => "host_key",
                        _ => "other",
                    };
                    self.metrics
                        .fetch_errors
                        .get_or_create(&ReasonLabel {
                            reason: reason.into(),
                        })
                        .inc();
                }
                tracing::warn!(error = %e, "sync stopped before applying anything");
                let type_ = match e {
                    SyncError::Fetch { .. } | SyncError::Credentials(_) | SyncError::Spec(_) => {
                        "Fetched"
                    }
                    _ => "Applied",
                };
                if !Self::was_failing(repo, type_) {
                    let n = note(
                        Kind::Warning,
                        "SyncFailed",
                        "Sync",
                        format!("{e}; nothing applied, nothing pruned"),
                    );
                    self.events.publish(&me, n).await;
                }
            }
            Ok(Synced {
                commit,
                result: Err(render),
            }) => {
                let first = render.0.first().map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(commit = %short(commit), errors = render.0.len(), first = %first, "render failed: nothing applied, nothing pruned");
                if !Self::was_failing(repo, "Rendered") {
                    let msg = format!(
                        "{} render error(s) in {}; first: {first}; nothing applied, nothing pruned",
                        render.0.len(),
                        short(commit)
                    );
                    self.events
                        .publish(&me, note(Kind::Warning, "RenderFailed", "Render", msg))
                        .await;
                }
            }
            Ok(Synced {
                commit,
                result: Ok(done),
            }) => self.report_done(repo, &name, commit, done).await,
        }
    }

    async fn report_done(&self, repo: &ConfigRepo, name: &str, commit: &str, d: &Done) {
        let me = repo.object_ref(&());
        let objects = d.objects();
        let (plan, failed) = (&d.plan, &d.applied.failed);
        let drift: Vec<usize> = plan
            .apply
            .iter()
            .filter(|(_, a)| {
                matches!(
                    a,
                    Action::RepairDrift
                        | Action::HoldTemplate { force: true, .. }
                        | Action::HoldWeights { repair: true, .. }
                )
            })
            .map(|(i, _)| *i)
            .chain(plan.drift_kept.iter().copied())
            .collect();
        for i in &drift {
            let action = plan.apply.iter().find(|(j, _)| j == i).map(|(_, a)| a);
            tracing::debug!(object = %objects[*i].key, ?action, "drift");
        }
        if !drift.is_empty() {
            self.metrics
                .drift
                .get_or_create(&RepoLabel {
                    repo: name.to_owned(),
                })
                .inc_by(drift.len() as u64);
        }
        for i in drift.iter().take(MAX_OBJECT_EVENTS) {
            let o = &objects[*i];
            let verb = if plan.drift_kept.contains(i) {
                "left as it is (selfHeal is off)"
            } else {
                "re-applied from git"
            };
            let mut n = note(
                Kind::Warning,
                "DriftDetected",
                "Sync",
                format!("{} changed outside git: {verb}", o.key),
            );
            n.related = Some(events::reference(&o.api_version, &o.key));
            self.events.publish(&me, n).await;
        }
        for (i, e) in failed.iter().take(MAX_OBJECT_EVENTS) {
            let o = &objects[*i];
            tracing::warn!(object = %o.key, category = e.category.as_str(), error = %e.message, "apply failed");
            let mut n = note(
                Kind::Warning,
                "ApplyFailed",
                "Apply",
                format!("{}: {}", o.key, e.message),
            );
            n.related = Some(events::reference(&o.api_version, &o.key));
            self.events.publish(&me, n).await;
        }
        let applied_ok = plan.apply.len().saturating_sub(failed.len());
        if applied_ok > 0 {
            let msg = format!(
                "applied {applied_ok} object(s) from {} ({} created, {} updated)",
                short(commit),
                plan.creates(),
                plan.updates()
            );
            self.events
                .publish(&me, note(Kind::Normal, "Applied", "Apply", msg))
                .await;
        }
        for r in &d.handed.recorded {
            let mut n = note(
                Kind::Normal,
                "HandedOff",
                "Sync",
                format!(
                    "pod template of {} goes out as a canary (commit {})",
                    r,
                    short(commit)
                ),
            );
            n.related = Some(events::reference("fledge.dev/v1alpha1", r));
            self.events.publish(&me, n).await;
        }
        let p = &d.pruned;
        if !p.deleted.is_empty() {
            let names: Vec<String> = p.deleted.iter().take(5).map(|k| k.to_string()).collect();
            let msg = format!(
                "deleted {} object(s) no longer in git: {}",
                p.deleted.len(),
                names.join(", ")
            );
            self.events
                .publish(&me, note(Kind::Normal, "Pruned", "Prune", msg))
                .await;
        }
        for e in p.failed.iter().take(MAX_OBJECT_EVENTS) {
            let msg = format!("deleting {}: {}", e.object, e.message);
            self.events
                .publish(&me, note(Kind::Warning, "PruneFailed", "Prune", msg))
                .await;
        }
        if p.decision.refused() {
            self.metrics
                .prune_refusals
                .get_or_create(&RepoReason {
                    repo: name.to_owned(),
                    reason: p.decision.reason().into(),
                })
                .inc();
            if !Self::was_failing(repo, "Pruned") {
                let msg = p.decision.explain(plan.prune.len());
                self.events
                    .publish(&me, note(Kind::Warning, "PruneRefused", "Prune", msg))
                    .await;
            }
        }
        let counts = [
            ("desired", objects.len()),
            ("created", plan.creates()),
            ("updated", plan.updates()),
            ("unchanged", plan.unchanged.len()),
            ("pruned", p.deleted.len()),
            ("failed", failed.len() + p.failed.len()),
        ];
        for (state, n) in counts {
            self.metrics
                .objects
                .get_or_create(&RepoState {
                    repo: name.to_owned(),
                    state: state.into(),
                })
                .set(n as i64);
        }
        if plan.is_noop() && failed.is_empty() {
            tracing::debug!(unchanged = plan.unchanged.len(), "nothing to do");
        } else {
            tracing::info!(
                commit = %short(commit),
                created = plan.creates(),
                updated = plan.updates(),
                unchanged = plan.unchanged.len(),
                handed_off = d.handed.recorded.len(),
                pruned = p.deleted.len(),
                prune = %p.decision.reason(),
                failed = failed.len() + p.failed.len(),
                "synced"
            );
        }
        if p.decision == PruneDecision::Disabled && !plan.prune.is_empty() {
            tracing::debug!(
                due = plan.prune.len(),
                "pruning is disabled (spec.prune: false)"
            );
        }
    }

    /// Records the reconcile's duration by result.
    pub(super) fn observe_duration(&self, ready: bool, elapsed: std::time::Duration) {
        let result = if ready { "success" } else { "error" };
        self.metrics
            .reconcile_duration
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
