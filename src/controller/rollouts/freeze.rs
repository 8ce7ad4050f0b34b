//! The andon cord's gate in the rollout controller: reads the freeze of the ConfigRepo a Rollout
//! came from (label `fledge.dev/config-repo`; `spec.freeze` from `fledge freeze`, else
//! `status.gitFreeze` from the bundle) into [`Observations::freeze`](crate::rollout::Observations),
//! the engine's input. A watch of ConfigRepos keeps the freezes (and each repo's labels, for the
//! agent's `--selector`) cached and, when one changes,
//! queues that repository's Rollouts at once (so a freeze pauses them, and an unfreeze resumes
//! them and starts held changes, without waiting for a resync).

use super::Rollouts;
use crate::crd::{ConfigRepo, Rollout, effective};
use crate::labels::CONFIG_REPO_LABEL;
use crate::rollout::Freeze;
use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The freeze of a ConfigRepo as the engine sees it.
pub fn freeze_of(repo: &ConfigRepo) -> Option<Freeze> {
    let git = repo.status.as_ref().and_then(|s| s.git_freeze.as_ref());
    effective(repo.spec.freeze.as_ref(), git).map(|f| Freeze {
        mode: f.mode,
        note: f.message,
    })
}

/// Freezes by ConfigRepo name, kept by [`watch`]; read straight from the API until the watch
/// delivered its first list (a restarted agent must not start a frozen change).
#[derive(Default)]
pub struct Freezes {
    by_repo: Mutex<HashMap<String, Freeze>>,
    /// Each ConfigRepo's labels (the agent's `--selector` is matched against them).
    labels: Mutex<HashMap<String, BTreeMap<String, String>>>,
    synced: AtomicBool,
}

impl Freezes {
    /// The freeze governing `ro` (`None`: not frozen, or not from a ConfigRepo).
    pub async fn of(&self, client: &Client, ro: &Rollout) -> Result<Option<Freeze>, kube::Error> {
        let Some(repo) = ro.labels().get(CONFIG_REPO_LABEL) else {
            return Ok(None);
        };
        if self.synced.load(Ordering::Acquire) {
            return Ok(self.by_repo.lock().ok().and_then(|m| m.get(repo).cloned()));
        }
        let api: Api<ConfigRepo> = Api::all(client.clone());
        Ok(api.get_opt(repo).await?.as_ref().and_then(freeze_of))
    }

    /// The labels of ConfigRepo `repo` (`None`: no such repo), from the watch once it has
    /// delivered its first list, else from the API.
    pub async fn labels_of(
        &self,
        client: &Client,
        repo: &str,
    ) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
        if self.synced.load(Ordering::Acquire) {
            return Ok(self.labels.lock().ok().and_then(|m| m.get(repo).cloned()));
        }
        let api: Api<ConfigRepo> = Api::all(client.clone());
        Ok(api.get_opt(repo).await?.map(|r| r.labels().clone()))
    }

    fn set_labels(&self, repo: &str, labels: Option<BTreeMap<String, String>>) {
        if let Ok(mut m) = self.labels.lock() {
            match labels {
                Some(l) => m.insert(repo.to_owned(), l),
                None => m.remove(repo),
            };
        }
    }

    /// Records `repo`'s freeze; `true` if it changed.
    fn set(&self, repo: &str, f: Option<Freeze>) -> bool {
        let Ok(mut m) = self.by_repo.lock() else {
            return false;
        };
        if m.get(repo) == f.as_ref() {
            return false;
        }
        match f {
            Some(f) => m.insert(repo.to_owned(), f),
            None => m.remove(repo),
        };
        true
    }
}

/// Watches ConfigRepos; a changed freeze queues the repository's Rollouts.
pub async fn watch(ctl: Arc<Rollouts>) {
    let api: Api<ConfigRepo> = Api::all(ctl.client());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let (name, freeze) = match ev {
            Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                ctl.freezes
                    .set_labels(&r.name_any(), Some(r.labels().clone()));
                (r.name_any(), freeze_of(&r))
            }
            Ok(watcher::Event::Delete(r)) => {
                ctl.freezes.set_labels(&r.name_any(), None);
                (r.name_any(), None)
            }
            Ok(watcher::Event::InitDone) => {
                ctl.freezes.synced.store(true, Ordering::Release);
                continue;
            }
            Ok(watcher::Event::Init) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ConfigRepo watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !ctl.freezes.set(&name, freeze) {
            continue;
        }
        // The repository's Rollouts, from the controller's cache of them.
        for r in ctl.rollouts.state() {
            if r.labels().get(CONFIG_REPO_LABEL) == Some(&name) {
                ctl.push(
                    &(r.namespace().unwrap_or_default(), r.name_any()),
                    Duration::ZERO,
                );
            }
        }
    }
}
