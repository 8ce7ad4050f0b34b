//! Commit statuses of the rollout controller: the state of a rollout shown on the commit being
//! rolled out, under the context `fledge/<cluster>/<ns>/<rollout>` — `pending` with the step,
//! weight and score (`canary 33% · analysis 98/100`), `success` once promoted, `failure` once
//! rolled back (the reason; the revert PR as target), `error` on infrastructure trouble (an
//! inconclusive analysis). Last step of a rollout pass, after the status write.
//!
//! What to post is a pure function of the Rollout's status ([`desired`]). Posting happens on a
//! task of its own, one post at a time, newest wish per Rollout: a slow or failing forge never
//! holds the rollout worker and never breaks a rollout (failures are logged and tried again with
//! backoff, waiting out `Retry-After`). Identical posts are skipped twice over: here (the last
//! post per Rollout) and by [`crate::forge::Forge::set_status`] (the forge's latest status of
//! the context), so a restarted agent does not pile up statuses either.

use super::Agent;
use super::rollouts::Key;
use crate::crd::{ConfigRepo, PauseReason, Phase, RolloutStatus, TeardownCause};
use crate::forge::report::{StatusText, status_description};
use crate::forge::{self, CommitStatus, ForgeTarget, StatusState};
use kube::api::Api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// First wait after a failed post; doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// One status to post on one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    pub sha: String,
    pub status: CommitStatus,
    /// Post only if the forge's latest status of the context is `pending` (a rollout that
    /// ended while no agent was there to say so), never over nothing or a final state.
    pub only_over_pending: bool,
}

/// The status of a rollout for its commit, from the status before and after a pass; `None`:
/// nothing to say (or keep saying what was said). `hold_failure`: the git rollback is still
/// under way, so the final `failure` (which links the revert PR) waits for it.
pub fn desired(
    context: &str,
    before: &RolloutStatus,
    st: &RolloutStatus,
    hold_failure: bool,
    dashboard: Option<&str>,
) -> Option<Post> {
    let post = |sha: &Option<String>, state, text: String| {
        sha.as_ref().map(|sha| Post {
            sha: sha.clone(),
            status: CommitStatus::new(context, state, &text)
                .with_target_url(dashboard.map(str::to_owned)),
            only_over_pending: false,
        })
    };
    let weight = u32::try_from(st.set_weight.unwrap_or(0)).unwrap_or(0);
    let score = st.last_score.map(|s| s.clamp(0.0, 100.0).round() as u32);
    match st.phase {
        Phase::Progressing => post(
            &st.canary_revision,
            StatusState::Pending,
            status_description(&StatusText::Canary { weight, score }),
        ),
        Phase::Paused => match st.pause_reason {
            Some(PauseReason::Inconclusive) => post(
                &st.canary_revision,
                StatusState::Error,
                status_description(&StatusText::Error {
                    reason: st
                        .reason
                        .clone()
                        .unwrap_or_else(|| "analysis inconclusive".into()),
                }),
            ),
            // The andon cord: pending, saying who froze it and why (the reason says both).
            Some(PauseReason::Frozen) => post(
                &st.canary_revision,
                StatusState::Pending,
                format!(
                    "canary {weight}% · paused: {}",
                    st.reason.as_deref().unwrap_or("frozen")
                ),
            ),
            Some(PauseReason::Marginal) => post(
                &st.canary_revision,
                StatusState::Pending,
                format!(
                    "canary {weight}% · analysis marginal {}/100: promote or abort",
                    score.unwrap_or(0)
                ),
            ),
            _ => post(
                &st.canary_revision,
                StatusState::Pending,
                status_description(&StatusText::Paused { weight }),
            ),
        },
        Phase::Promoting => post(
            &st.canary_revision,
            StatusState::Pending,
            "canary passed · promoting".into(),
        ),
        Phase::Aborted | Phase::RolledBack | Phase::RollbackPending => {
            let td = st.teardown.as_ref()?;
            match td.cause {
                TeardownCause::Superseded => post(
                    &st.canary_revision,
                    StatusState::Error,
                    format!("not rolled out: {}", td.message),
                ),
                TeardownCause::RevertedInGit => None,
                // Not a verdict: the change goes out again after the unfreeze.
                TeardownCause::Frozen => post(
                    &st.canary_revision,
                    StatusState::Pending,
                    format!("canary taken down, not rolled out yet: {}", td.message),
                ),
                // The verdict is final once traffic is back on stable (and git has been asked
                // to agree): one `failure` per failed revision, not one per phase.
                _ if hold_failure || st.phase == Phase::Aborted => None,
                _ => {
                    let mut p = post(
                        &st.failed_revision,
                        StatusState::Failure,
                        status_description(&StatusText::RolledBack {
                            reason: td.message.clone(),
                        }),
                    )?;
                    if let Some(pr) = &st.revert_pull_request {
                        p.status.target_url = Some(pr.clone());
                    }
                    Some(p)
                }
            }
        }
        // Healthy with a template git asks for that is not on stable: held by a freeze.
        Phase::Healthy
            if st.handoff.as_ref().is_some_and(|h| {
                Some(&h.template_hash) != st.stable_template_hash.as_ref()
                    && st.stable_template_hash.is_some()
            }) =>
        {
            post(
                &st.handoff.as_ref().map(|h| h.revision.clone()),
                StatusState::Pending,
                format!(
                    "waiting: {}",
                    st.reason.as_deref().unwrap_or("held by a freeze")
                ),
            )
        }
        Phase::Healthy => match before.phase {
            Phase::Promoting => post(
                &st.stable_revision,
                StatusState::Success,
                status_description(&StatusText::Promoted),
            ),
            // Git came back to the stable template (the revert merged): the commit that did it
            // is what now runs.
            Phase::RolledBack | Phase::RollbackPending | Phase::Aborted
                if st.handoff.as_ref().map(|h| &h.template_hash)
                    == st.stable_template_hash.as_ref() =>
            {
                post(
                    &st.handoff.as_ref().map(|h| h.revision.clone()),
                    StatusState::Success,
                    "back on the stable template: nothing to roll out".into(),
                )
            }
            _ => {
                let mut p = post(
                    &st.stable_revision,
                    StatusState::Success,
                    status_description(&StatusText::Promoted),
                )?;
                p.only_over_pending = true;
                Some(p)
            }
        },
    }
}

#[derive(Default)]
struct Slot {
    /// ConfigRepo the Rollout came from (its forge gets the statuses).
    repo: Option<String>,
    next: Option<Post>,
    posted: Option<Post>,
    retry_at: Option<Instant>,
    failures: u32,
}

/// The commit statuses of every Rollout, posted by one background task.
pub struct CommitStatuses {
    agent: Arc<Agent>,
    slots: Mutex<HashMap<Key, Slot>>,
    wake: Notify,
}

impl CommitStatuses {
    pub fn new(agent: Arc<Agent>) -> Arc<CommitStatuses> {
        Arc::new(CommitStatuses {
            agent,
            slots: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// The context of a Rollout's statuses.
    pub fn context(&self, key: &Key) -> String {
        format!("fledge/{}/{}/{}", self.agent.opts.cluster, key.0, key.1)
    }

    /// Where a status links: the dashboard's page of the Rollout, when one is configured.
    pub fn dashboard(&self, key: &Key) -> Option<String> {
        self.agent
            .opts
            .dashboard_url
            .as_deref()
            .map(|d| format!("{}/rollouts/{}/{}", d.trim_end_matches('/'), key.0, key.1))
    }

    /// Asks for `post` to be the Rollout's status (unless it is already, or is waiting).
    /// `only_over_pending` posts are asked for once per agent run.
    pub fn update(&self, key: &Key, repo: Option<&str>, post: Option<Post>) {
        let Some(post) = post else { return };
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let slot = slots.entry(key.clone()).or_default();
        slot.repo = repo.map(str::to_owned);
        if post.only_over_pending && (slot.posted.is_some() || slot.next.is_some()) {
            return;
        }
        if slot.posted.as_ref() == Some(&post) || slot.next.as_ref() == Some(&post) {
            return;
        }
        slot.next = Some(post);
        slot.retry_at = None;
        slot.failures = 0;
        drop(slots);
        self.wake.notify_one();
    }

    pub fn forget(&self, key: &Key) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(key);
        }
    }

    /// Posts what is asked, one at a time, until dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let (due, next_at) = self.pick();
            let Some((key, repo, post)) = due else {
                let wait = next_at.map_or(Duration::from_secs(60), |t| {
                    t.saturating_duration_since(Instant::now())
                });
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                continue;
            };
            let result = self.post(repo.as_deref(), &post).await;
            self.done(&key, &post, result);
        }
    }

    /// A post that is due, or when the next one will be.
    #[allow(clippy::type_complexity)]
    fn pick(&self) -> (Option<(Key, Option<String>, Post)>, Option<Instant>) {
        let Ok(slots) = self.slots.lock() else {
            return (None, None);
        };
        let now = Instant::now();
        let mut next_at: Option<Instant> = None;
        for (key, slot) in slots.iter() {
            let Some(post) = &slot.next else { continue };
            match slot.retry_at {
                Some(t) if t > now => next_at = Some(next_at.map_or(t, |n| n.min(t))),
                _ => return (Some((key.clone(), slot.repo.clone(), post.clone())), None),
            }
        }
        (None, next_at)
    }

    fn done(&self, key: &Key, post: &Post, result: Result<(), forge::Error>) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let Some(slot) = slots.get_mut(key) else {
            return;
        };
        match result {
            Ok(()) => {
                if slot.next.as_ref() == Some(post) {
                    slot.next = None;
                }
                slot.posted = Some(post.clone());
                slot.failures = 0;
                slot.retry_at = None;
            }
            Err(e) => {
                let wait = match &e {
                    forge::Error::RateLimited { retry_after, .. } => *retry_after,
                    _ => RETRY_START
                        .saturating_mul(1u32 << slot.failures.min(10))
                        .min(RETRY_MAX),
                };
                tracing::warn!(rollout = %format!("{}/{}", key.0, key.1), sha = %post.sha, error = %e, retry_in_s = wait.as_secs(), "posting the commit status failed; trying again later");
                slot.failures = slot.failures.saturating_add(1);
                if slot.next.as_ref() == Some(post) {
                    slot.retry_at = Some(Instant::now() + wait);
                }
            }
        }
    }

    /// Posts one status on the forge of ConfigRepo `repo`. No forge configured: nothing to do.
    async fn post(&self, repo: Option<&str>, post: &Post) -> Result<(), forge::Error> {
        let Some(repo) = repo else { return Ok(()) };
        let client = self.agent.client.clone();
        let cr = match Api::<ConfigRepo>::all(client.clone()).get_opt(repo).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(forge::Error::Config(format!(
                    "reading ConfigRepo {repo}: {}",
                    crate::apply::kube_message(&e)
                )));
            }
        };
        let Some(target) = ForgeTarget::from_spec(&cr.spec)? else {
            return Ok(());
        };
        let token = target
            .read_token(&client, &self.agent.opts.namespace)
            .await?;
        let forge = target.connect(token)?;
        if post.only_over_pending {
            let latest = forge.latest_status(&post.sha, &post.status.context).await?;
            if latest.is_none_or(|s| s.state != StatusState::Pending) {
                return Ok(());
            }
        }
        let outcome = forge.set_status(&post.sha, &post.status).await?;
        tracing::debug!(repo, sha = %post.sha, state = ?post.status.state, ?outcome, "commit status");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RolloutHandoff, Teardown};

    const CTX: &str = "fledge/prod/shop/web";

    fn progressing(weight: i32, score: Option<f64>) -> RolloutStatus {
        RolloutStatus {
            phase: Phase::Progressing,
            canary_revision: Some("c0ffee".into()),
            set_weight: Some(weight),
            last_score: score,
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn a_canary_step_is_pending_with_weight_and_score() {
        let st = progressing(33, Some(98.4));
        let p = desired(CTX, &st, &st, false, Some("https://dash/x")).unwrap();
        assert_eq!(p.sha, "c0ffee");
        assert_eq!(p.status.state, StatusState::Pending);
        assert_eq!(p.status.description, "canary 33% · analysis 98/100");
        assert_eq!(p.status.context, CTX);
        assert_eq!(p.status.target_url.as_deref(), Some("https://dash/x"));
    }

    #[test]
    fn a_freeze_is_pending_and_says_who_and_why_never_a_failure() {
        let mut st = progressing(50, None);
        st.phase = Phase::Paused;
        st.pause_reason = Some(PauseReason::Frozen);
        st.reason = Some("frozen by alice (cli): incident 4711".into());
        let p = desired(CTX, &st, &st, false, None).unwrap();
        assert_eq!(p.status.state, StatusState::Pending);
        assert_eq!(
            p.status.description,
            "canary 50% · paused: frozen by alice (cli): incident 4711"
        );
        // Abort mode: pending on the canary's commit, not a failure.
        let mut ab = st.clone();
        ab.phase = Phase::Aborted;
        ab.pause_reason = None;
        ab.teardown = Some(Teardown {
            cause: TeardownCause::Frozen,
            message: "aborted: frozen by alice (cli): incident 4711".into(),
        });
        let p = desired(CTX, &st, &ab, false, None).unwrap();
        assert_eq!(
            (p.sha.as_str(), p.status.state),
            ("c0ffee", StatusState::Pending)
        );
        assert!(
            p.status.description.contains("alice"),
            "{}",
            p.status.description
        );
        // Held: a Healthy rollout whose hand-off is not on stable waits, pending, on its commit.
        let held = RolloutStatus {
            phase: Phase::Healthy,
            stable_template_hash: Some("h1".into()),
            handoff: Some(RolloutHandoff {
                template_hash: "h2".into(),
                revision: "beef".into(),
                provenance: vec![],
                template: serde_json::json!({}),
                replicas: None,
            }),
            reason: Some("revision beef held: frozen by bob (git): release".into()),
            ..RolloutStatus::default()
        };
        let p = desired(CTX, &held, &held, false, None).unwrap();
        assert_eq!(
            (p.sha.as_str(), p.status.state),
            ("beef", StatusState::Pending)
        );
        assert!(
            p.status
                .description
                .contains("frozen by bob (git): release")
        );
    }

    #[test]
    fn an_inconclusive_analysis_is_an_error_and_never_a_failure() {
        let mut st = progressing(0, None);
        st.phase = Phase::Paused;
        st.pause_reason = Some(PauseReason::Inconclusive);
        st.reason = Some("analysis inconclusive (prometheus unreachable)".into());
        let p = desired(CTX, &st, &st, false, None).unwrap();
        assert_eq!(p.status.state, StatusState::Error);
        assert!(p.status.description.contains("unreachable"), "{p:?}");
    }

    #[test]
    fn a_rollback_fails_the_commit_once_git_is_done_linking_the_pr() {
        let mut st = RolloutStatus {
            phase: Phase::RolledBack,
            failed_revision: Some("bad".into()),
            teardown: Some(Teardown {
                cause: TeardownCause::AnalysisFailed,
                message: "analysis failed: error-ratio high ".repeat(10),
            }),
            ..RolloutStatus::default()
        };
        assert_eq!(desired(CTX, &st, &st, true, None), None, "held for git");
        st.phase = Phase::Aborted;
        assert_eq!(
            desired(CTX, &st, &st, false, None),
            None,
            "still tearing down"
        );
        st.phase = Phase::RolledBack;
        let p = desired(CTX, &st, &st, false, None).unwrap();
        assert_eq!(
            (p.sha.as_str(), p.status.state),
            ("bad", StatusState::Failure)
        );
        assert!(p.status.description.chars().count() <= 140);
        st.phase = Phase::RollbackPending;
        st.revert_pull_request = Some("https://forge/pr/1".into());
        let p = desired(CTX, &st, &st, false, Some("https://dash")).unwrap();
        assert_eq!(p.status.target_url.as_deref(), Some("https://forge/pr/1"));
    }

    #[test]
    fn promotion_succeeds_and_a_merged_revert_succeeds_on_its_own_commit() {
        let before = RolloutStatus {
            phase: Phase::Promoting,
            ..RolloutStatus::default()
        };
        let after = RolloutStatus {
            phase: Phase::Healthy,
            stable_revision: Some("good".into()),
            ..RolloutStatus::default()
        };
        let p = desired(CTX, &before, &after, false, None).unwrap();
        assert_eq!(
            (p.sha.as_str(), p.status.state, p.only_over_pending),
            ("good", StatusState::Success, false)
        );
        let idle = desired(CTX, &after, &after, false, None).unwrap();
        assert!(
            idle.only_over_pending,
            "a quiet Healthy only concludes a pending status"
        );

        let before = RolloutStatus {
            phase: Phase::RollbackPending,
            ..RolloutStatus::default()
        };
        let after = RolloutStatus {
            phase: Phase::Healthy,
            stable_template_hash: Some("h1".into()),
            stable_revision: Some("good".into()),
            handoff: Some(RolloutHandoff {
                revision: "merge".into(),
                template_hash: "h1".into(),
                provenance: Vec::new(),
                template: serde_json::Value::Null,
                replicas: None,
            }),
            ..RolloutStatus::default()
        };
        let p = desired(CTX, &before, &after, false, None).unwrap();
        assert_eq!(
            (p.sha.as_str(), p.status.state),
            ("merge", StatusState::Success)
        );
    }
}
