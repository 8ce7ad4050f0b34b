//! One reconcile of one ConfigRepo, as named steps: fetch → render → read inventory → observe →
//! plan → record intent (write-ahead inventory) → apply → hand off → prune → record inventory →
//! status. Each step is a function with a typed hand-off to the next and its own [`SyncError`]
//! variant; per-object failures are data in the step results. Events and metrics are produced
//! in one place ([`super::report`]) from the outcome, and the status is a pure function of it.

use super::Agent;
use super::fetch::{Fetched, fetch_backoff, jitter};
use super::status::{self, Outcome};
use super::steps::Synced;
use crate::crd::ConfigRepo;
use crate::labels::ALLOW_MASS_PRUNE_ANNOTATION;
use crate::plan::{self, Policy};
use crate::source;
use kube::api::{Api, Patch, PatchParams};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Why a sync stopped before its end. Nothing after the failed step ran: a sync that fails
/// before `apply` applies and prunes nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("invalid spec: {0}")]
    Spec(String),
    #[error("{0}")]
    Credentials(String),
    #[error("API discovery failed: {0}")]
    Discovery(String),
    #[error("{message}")]
    Fetch {
        message: String,
        reason: source::Reason,
        failures: u32,
    },
    #[error("reading the inventory: {0}")]
    Inventory(String),
    #[error("reading live objects: {0}")]
    Observe(crate::apply::ApplyError),
    #[error("recording the inventory: {0}")]
    RecordInventory(String),
    #[error("recording the freeze from git: {0}")]
    RecordFreeze(String),
    /// Frozen with `all` (the andon cord): fetched and rendered, nothing applied or pruned.
    #[error("{message}: nothing applied, nothing pruned")]
    Frozen { commit: String, message: String },
}

impl SyncError {
    pub(super) fn with_failures(self, n: u32) -> SyncError {
        match self {
            SyncError::Fetch {
                message, reason, ..
            } => SyncError::Fetch {
                message,
                reason,
                failures: n,
            },
            other => other,
        }
    }
}

/// Shortest interval accepted (a smaller one would spin).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Look again soon: the API server was unavailable, or the inventory could not be written.
const RETRY_SOON: Duration = Duration::from_secs(5);
/// Look again while workloads are still rolling out.
const WHILE_PROGRESSING: Duration = Duration::from_secs(3);

/// When to reconcile again after `outcome`.
pub fn requeue(outcome: &Result<Synced, SyncError>, interval: Duration) -> Duration {
    let next = match outcome {
        Err(SyncError::Fetch { failures, .. }) => fetch_backoff(*failures, jitter()),
        Err(SyncError::Spec(_)) => interval,
        Err(SyncError::Frozen { .. }) => interval,
        Err(_) => RETRY_SOON,
        Ok(s) if s.unavailable() => RETRY_SOON,
        Ok(s) if s.progressing() => WHILE_PROGRESSING,
        Ok(_) => interval,
    };
    next.min(interval.max(MIN_INTERVAL))
}

/// The ConfigRepo's interval; `0s` or an unparsable one is an error, not a silent default.
pub fn interval(repo: &ConfigRepo) -> Result<Duration, SyncError> {
    match crate::duration::parse(&repo.spec.interval) {
        Ok(d) if d >= MIN_INTERVAL => Ok(d),
        Ok(_) => Err(SyncError::Spec(format!(
            "spec.interval {:?} is shorter than 1s",
            repo.spec.interval
        ))),
        Err(e) => Err(SyncError::Spec(format!(
            "spec.interval {:?}: {e}",
            repo.spec.interval
        ))),
    }
}

/// The plan's policy from the ConfigRepo.
pub fn policy(repo: &ConfigRepo) -> Policy {
    Policy {
        self_heal: repo.spec.self_heal,
        force: repo.spec.force,
        prune: repo.spec.prune,
        max_prune_fraction: repo.spec.max_prune_fraction,
        allow_mass_prune: repo
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALLOW_MASS_PRUNE_ANNOTATION))
            .is_some_and(|v| v == "true"),
    }
}

impl Agent {
    /// Reconciles one ConfigRepo; returns when to look again (`None`: not ours, or gone).
    pub async fn reconcile(&self, name: &str, force_fetch: bool) -> Option<Duration> {
        let api = Api::<ConfigRepo>::all(self.client.clone());
        let repo = match api.get_opt(name).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.sources.lock().await.remove(name);
                return None;
            }
            Err(e) => {
                tracing::warn!(repo = name, error = %crate::apply::kube_message(&e), "reading ConfigRepo failed");
                return Some(RETRY_SOON);
            }
        };
        if !self.selected(&repo) {
            return None; // another agent's ConfigRepo
        }
        let start = Instant::now();
        let (outcome, mut next) = if repo.spec.suspend {
            (Outcome::Suspended, Duration::MAX)
        } else {
            let span = tracing::info_span!("reconcile", repo = %name);
            let result = self.sync(&repo, force_fetch).instrument(span).await;
            let next = requeue(&result, interval(&repo).unwrap_or(Duration::from_secs(60)));
            self.report(&repo, &result).await;
            let outcome = match result {
                // Stopped after the fetch: the status still records what was fetched.
                Err(SyncError::Frozen { commit, message }) => Outcome::StoppedAfterFetch {
                    error: SyncError::Frozen {
                        commit: commit.clone(),
                        message,
                    },
                    commit,
                },
                Err(
                    e @ (SyncError::Inventory(_)
                    | SyncError::Observe(_)
                    | SyncError::RecordInventory(_)
                    | SyncError::RecordFreeze(_)),
                ) => {
                    match self
                        .sources
                        .lock()
                        .await
                        .get(name)
                        .and_then(|c| c.commit.clone())
                    {
                        Some(commit) => Outcome::StoppedAfterFetch { commit, error: e },
                        None => Outcome::Synced(Err(e)),
                    }
                }
                other => Outcome::Synced(other),
            };
            (outcome, next)
        };
        let prev = repo.status.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let mut new = status::build(&prev, repo.metadata.generation, &outcome, now);
        if let Some(git) = self.git_frozen(name).await {
            new.git_freeze = git;
        }
        let now_s = now
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let freeze_spec = repo.spec.freeze.as_ref();
        super::freeze::record(
            &mut new,
            &prev,
            freeze_spec,
            repo.metadata.generation,
            &now_s,
        );
        self.announce_freeze(&repo, prev.frozen.as_ref(), new.frozen.as_ref())
            .await;
        if new != prev
            && let Err(e) = self.write_status(name, &new).await
        {
            tracing::warn!(repo = name, error = %e, "writing status failed");
            next = next.min(RETRY_SOON);
        }
        let ready = new
            .conditions
            .first()
            .is_some_and(|c| c.status == crate::crd::ConditionStatus::True);
        self.observe_duration(ready, start.elapsed());
        (next != Duration::MAX).then_some(next)
    }

    /// Writes the whole status with server-side apply (field manager `fledge`).
    pub(super) async fn write_status(
        &self,
        name: &str,
        status: &crate::crd::ConfigRepoStatus,
    ) -> Result<(), String> {
        let body = serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "status": status});
        Api::<ConfigRepo>::all(self.client.clone())
            .patch_status(
                name,
                &PatchParams::apply(crate::labels::FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
            .map_err(|e| crate::apply::kube_message(&e))
    }

    /// The sync pipeline, one step per line.
    async fn sync(&self, repo: &ConfigRepo, force_fetch: bool) -> Result<Synced, SyncError> {
        let interval = interval(repo)?;
        let Fetched {
            commit,
            rendered,
            freeze,
        } = self.fetch_and_render(repo, interval, force_fetch).await?;
        let found = rendered.as_ref().as_ref().ok().map(|_| freeze.as_ref());
        self.freeze_gate(repo, &commit, found).await?;
        let desired = match rendered.as_ref() {
            Ok(d) => d,
            Err(errors) => return Ok(Synced::render_failed(commit, errors.clone())),
        };
        let inventory = self.read_inventory(repo).await?;
        let live = self.observe(repo, desired, &inventory.entries).await?;
        let plan = plan::plan(desired, &live.view(), &inventory.entries, &policy(repo));
        self.record_intent(repo, desired, &plan, &inventory).await?;
        let applied = self.apply(repo, desired, &plan, &live).await;
        crate::failpoint::hit("after-apply");
        let handed = self.hand_off(&commit, desired, &plan).await;
        let pruned = self.prune(&plan, inventory.lost).await;
        let recorded = self
            .record_inventory(repo, desired, &plan, &inventory, &applied, &pruned)
            .await;
        Ok(Synced::new(
            commit,
            rendered.clone(),
            plan,
            applied,
            handed,
            pruned,
            recorded,
        ))
    }

    /// Whether the agent's selector matches `repo`.
    fn selected(&self, repo: &ConfigRepo) -> bool {
        self.opts
            .selector
            .as_ref()
            .is_none_or(|sel| sel.matches(&repo.metadata.labels.clone().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(interval: &str) -> ConfigRepo {
        let spec = serde_json::from_value(
            serde_json::json!({"url": "https://git.example/x", "path": ".", "interval": interval}),
        )
        .unwrap();
        ConfigRepo::new("r", spec)
    }

    /// Defect: an invalid interval silently became 60 s.
    #[test]
    fn an_invalid_interval_is_an_error_not_a_default() {
        assert_eq!(interval(&repo("30s")).unwrap(), Duration::from_secs(30));
        for bad in ["0s", "soon", "500ms"] {
            let e = interval(&repo(bad)).expect_err(bad);
            assert!(
                matches!(e, SyncError::Spec(_)) && e.to_string().contains("spec.interval"),
                "{e}"
            );
        }
    }

    #[test]
    fn requeue_backs_off_a_failing_remote_and_never_exceeds_the_interval() {
        let fetch = |failures| {
            Err(SyncError::Fetch {
                message: "x".into(),
                reason: source::Reason::Network,
                failures,
            })
        };
        let hour = Duration::from_secs(3600);
        assert!(requeue(&fetch(1), hour) < requeue(&fetch(4), hour));
        assert!(requeue(&fetch(9), Duration::from_secs(60)) <= Duration::from_secs(60));
        assert_eq!(
            requeue(&Err(SyncError::Inventory("x".into())), hour),
            RETRY_SOON
        );
    }
}
