//! The andon cord on the sync side of a reconcile. After fetch and render: the bundle's `freeze`
//! field becomes `status.gitFreeze`, written at once (before anything of the commit is applied
//! or handed off, so the rollout controller holds a template change frozen in the same commit);
//! a freeze with `all` stops the sync there (fetched and rendered, nothing applied or pruned).
//! At the end: `status.frozen` (the freeze in effect: `spec.freeze` from `fledge freeze`, else
//! git's), the `Frozen` condition, `Frozen`/`Unfrozen` events and the `fledge_frozen` metric.
//! The rollout side is `rollouts/freeze.rs`.

use super::Agent;
use super::events::{Kind, Note};
use super::reconcile::SyncError;
use crate::crd::{
    Condition, ConditionStatus, ConfigRepo, ConfigRepoStatus, FreezeMode, FreezeSource, FreezeSpec,
    Frozen, effective,
};
use crate::labels::FREEZE_FIELD_MANAGER;
use crate::render::BundleFreeze;
use crate::server::RepoLabel;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};

/// Condition type present while frozen.
pub const FROZEN_CONDITION: &str = "Frozen";

fn now_string() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The git freeze of a render. Without `by`, who froze it is the author of the commit it was
/// first seen in (a later commit by someone else does not change it), and `since` stays while
/// the freeze is the same one.
pub fn git_frozen(
    prev: Option<&Frozen>,
    found: Option<&BundleFreeze>,
    now: &str,
) -> Option<Frozen> {
    let f = found?;
    let same = |p: &&Frozen| {
        p.source == FreezeSource::Git
            && p.reason == f.reason
            && p.all == f.all
            && (p.mode == FreezeMode::Abort) == f.abort
    };
    let by =
        f.by.clone()
            .or_else(|| prev.filter(same).map(|p| p.by.clone()))
            .or_else(|| f.author.clone())
            .unwrap_or_else(|| "git".into());
    let spec = FreezeSpec {
        reason: f.reason.clone(),
        by,
        since: None,
        abort: f.abort,
        all: f.all,
    };
    let mut new = Frozen::from_spec(&spec, FreezeSource::Git, Some(now.to_owned()));
    if let Some(p) = prev.filter(|p| p.same_as(&new)) {
        new.since = p.since.clone();
    }
    Some(new)
}

/// What a freeze does, for the condition and the event.
fn effect(f: &Frozen) -> &'static str {
    match (f.mode, f.all) {
        (FreezeMode::Pause, false) => {
            "no new rollout starts, canaries in flight pause; plain configuration still syncs"
        }
        (FreezeMode::Abort, false) => {
            "no new rollout starts, canaries in flight are aborted (no git revert); plain configuration still syncs"
        }
        (FreezeMode::Pause, true) => {
            "nothing is applied or pruned, no new rollout starts, canaries in flight pause"
        }
        (FreezeMode::Abort, true) => {
            "nothing is applied or pruned, no new rollout starts, canaries in flight are aborted (no git revert)"
        }
    }
}

/// Records the freeze in effect in `s` (built from `prev`): `frozen` and, while frozen, the
/// `Frozen` condition. Deterministic: `since` and the transition time stay while the freeze does.
pub fn record(
    s: &mut ConfigRepoStatus,
    prev: &ConfigRepoStatus,
    cli: Option<&FreezeSpec>,
    generation: Option<i64>,
    now: &str,
) {
    let mut eff = effective(cli, s.git_freeze.as_ref());
    if let Some(e) = eff.as_mut()
        && e.since.is_none()
    {
        e.since = prev
            .frozen
            .as_ref()
            .filter(|p| p.same_as(e))
            .and_then(|p| p.since.clone())
            .or_else(|| Some(now.to_owned()));
    }
    s.conditions.retain(|c| c.type_ != FROZEN_CONDITION);
    if let Some(e) = &eff {
        let last = prev
            .conditions
            .iter()
            .find(|c| c.type_ == FROZEN_CONDITION)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.to_owned());
        s.conditions.push(Condition {
            type_: FROZEN_CONDITION.into(),
            status: ConditionStatus::True,
            reason: match e.source {
                FreezeSource::Cli => "FrozenByCli".into(),
                FreezeSource::Git => "FrozenInGit".into(),
            },
            message: format!("frozen {}: {}", e.message, effect(e)),
            last_transition_time: Some(last),
            observed_generation: generation,
        });
    }
    s.frozen = eff;
}

impl Agent {
    /// The git freeze after this fetch (`found`: the render's `freeze`; `None` when the render
    /// failed, which keeps the last known one), written to `status.gitFreeze` before the sync
    /// goes on when it changed. Then stops a sync frozen with `all`.
    pub(super) async fn freeze_gate(
        &self,
        repo: &ConfigRepo,
        commit: &str,
        found: Option<Option<&BundleFreeze>>,
    ) -> Result<(), SyncError> {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let prev = repo.status.as_ref().and_then(|s| s.git_freeze.clone());
        let git = match found {
            None => prev.clone(),
            Some(found) => git_frozen(prev.as_ref(), found, &now_string()),
        };
        if git != prev {
            let body = serde_json::json!({"status": {"gitFreeze": git}});
            let pp = PatchParams {
                field_manager: Some(FREEZE_FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            Api::<ConfigRepo>::all(self.client.clone())
                .patch_status(&name, &pp, &Patch::Merge(&body))
                .await
                .map_err(|e| SyncError::RecordFreeze(crate::apply::kube_message(&e)))?;
        }
        if let Some(c) = self.sources.lock().await.get_mut(&name) {
            c.git_frozen = Some(git.clone());
        }
        match effective(repo.spec.freeze.as_ref(), git.as_ref()) {
            Some(f) if f.all => Err(SyncError::Frozen {
                commit: commit.to_owned(),
                message: format!("frozen {}", f.message),
            }),
            _ => Ok(()),
        }
    }

    /// The git freeze sync last recorded for `name`, if known since the agent started.
    pub(super) async fn git_frozen(&self, name: &str) -> Option<Option<Frozen>> {
        self.sources
            .lock()
            .await
            .get(name)
            .and_then(|c| c.git_frozen.clone())
    }

    /// `Frozen`/`Unfrozen` events when the freeze in effect changed, and the metric.
    pub(super) async fn announce_freeze(
        &self,
        repo: &ConfigRepo,
        before: Option<&Frozen>,
        after: Option<&Frozen>,
    ) {
        let name = repo.metadata.name.clone().unwrap_or_default();
        self.metrics
            .frozen
            .get_or_create(&RepoLabel { repo: name })
            .set(i64::from(after.is_some()));
        let note = match (before, after) {
            (b, Some(a)) if b.is_none_or(|b| !b.same_as(a)) => Note {
                kind: Kind::Normal,
                reason: "Frozen",
                action: "Freeze",
                related: None,
                message: format!("frozen {}: {}", a.message, effect(a)),
            },
            (Some(b), None) => Note {
                kind: Kind::Normal,
                reason: "Unfrozen",
                action: "Freeze",
                related: None,
                message: format!(
                    "unfrozen (was frozen {}): held changes start, paused canaries resume",
                    b.message
                ),
            },
            _ => return,
        };
        self.events.publish(&repo.object_ref(&()), note).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_git_freeze_keeps_its_since_while_it_stays_the_same() {
        let f = BundleFreeze {
            reason: "release train".into(),
            by: Some("bob".into()),
            abort: false,
            all: false,
            author: None,
        };
        let a = git_frozen(None, Some(&f), "2026-01-01T00:00:00Z").unwrap();
        let b = git_frozen(Some(&a), Some(&f), "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(b.since.as_deref(), Some("2026-01-01T00:00:00Z"));
        let other = BundleFreeze {
            all: true,
            ..f.clone()
        };
        let c = git_frozen(Some(&a), Some(&other), "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(c.since.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(git_frozen(Some(&a), None, "x"), None);
        // Without `by`: the author of the commit that added it, kept over later commits.
        let anon = |author: &str| BundleFreeze {
            by: None,
            author: Some(author.into()),
            ..f.clone()
        };
        let first = git_frozen(None, Some(&anon("carol")), "t1").unwrap();
        assert_eq!(first.by, "carol");
        let later = git_frozen(Some(&first), Some(&anon("dave")), "t2").unwrap();
        assert_eq!(
            (later.by.as_str(), later.since.as_deref()),
            ("carol", Some("t1"))
        );
    }

    #[test]
    fn the_status_says_who_froze_it_and_drops_the_condition_on_unfreeze() {
        let cli = FreezeSpec {
            reason: "incident 4711".into(),
            by: "alice".into(),
            ..Default::default()
        };
        let prev = ConfigRepoStatus::default();
        let mut s = prev.clone();
        record(&mut s, &prev, Some(&cli), Some(3), "2026-01-01T00:00:00Z");
        let f = s.frozen.clone().unwrap();
        assert_eq!((f.source, f.by.as_str()), (FreezeSource::Cli, "alice"));
        assert_eq!(f.since.as_deref(), Some("2026-01-01T00:00:00Z"));
        let c = s.conditions.iter().find(|c| c.type_ == "Frozen").unwrap();
        assert_eq!(c.reason, "FrozenByCli");
        assert!(
            c.message.contains("by alice (cli): incident 4711"),
            "{}",
            c.message
        );
        // The same freeze later: nothing moves (the status is deterministic).
        let mut again = s.clone();
        record(&mut again, &s, Some(&cli), Some(3), "2026-01-05T00:00:00Z");
        assert_eq!(again, s);
        let mut off = s.clone();
        record(&mut off, &s, None, Some(4), "2026-01-06T00:00:00Z");
        assert_eq!(off.frozen, None);
        assert!(off.conditions.iter().all(|c| c.type_ != "Frozen"));
    }
}
