//! `controller::prcheck`: the plan check of pull requests, run after a verified `pull_request`
//! webhook (opened, synchronize, reopened) into the branch a ConfigRepo tracks. The pull
//! request's head (`refs/pull/<n>/head`, else its head branch) is fetched into the ConfigRepo's
//! mirror, the ConfigRepo's path is rendered at the head commit, planned against the live
//! cluster with the one planner, and described by the report `fledge plan` prints. fledge then
//! posts the status `fledge/plan/<cluster>` on the head commit (`success` with the counts,
//! `failure` when the head does not render or the API server would refuse an object, `error`
//! when fledge could not find out) and **one** comment, found by its hidden marker and edited in
//! place on every new head. Secret values never appear: only key names.
//!
//! Checks run in the background (the webhook has answered already), one at a time per pull
//! request. Heads that arrive while one runs replace each other: only the newest is checked
//! next, and a result is posted only while its head is still the newest known — both by this
//! agent (the events it received) and by the forge (the pull request's ref, fetched with the
//! head: deliveries can arrive out of order).

use super::Agent;
use crate::apply::Manifest;
use crate::crd::{ConfigRepo, Frozen};
use crate::forge::report::{PlanComment, StatusText, plan_marker, render_plan_comment};
use crate::forge::{self, CommitStatus, Forge, ForgeTarget, StatusState, Upserted};
use crate::plan::report::{self, Report};
use crate::render::{GitTree, RenderErrors, RenderOptions};
use crate::server::webhooks::PullRequestEvent;
use crate::source::{self, Mirror};
use git2::Oid;
use kube::api::Api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The pull requests being checked: `(ConfigRepo, number)` → the newest head received. A key
/// is present exactly while a check task runs for it.
#[derive(Default)]
pub struct Checks(Mutex<HashMap<(String, u64), PullRequestEvent>>);

impl Checks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), PullRequestEvent>> {
        // A poisoned map only means a check panicked while holding it; the map stays usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `sha` is still the newest head received for the pull request.
    fn is_latest(&self, repo: &str, number: u64, sha: &str) -> bool {
        self.lock()
            .get(&(repo.to_owned(), number))
            .is_none_or(|ev| ev.head_sha == sha)
    }
}

/// Queues the plan check of `ev` for ConfigRepo `repo`: starts a task, or hands the new head to
/// the one already running for this pull request.
pub fn enqueue(agent: &Arc<Agent>, repo: &str, ev: PullRequestEvent) {
    let key = (repo.to_owned(), ev.number);
    {
        let mut running = agent.pr_checks.lock();
        if let Some(newest) = running.get_mut(&key) {
            tracing::info!(repo, pr = ev.number, head = %ev.head_sha, "plan check queued behind the running one");
            *newest = ev;
            return;
        }
        running.insert(key.clone(), ev.clone());
    }
    let agent = agent.clone();
    tokio::spawn(async move {
        let mut ev = ev;
        loop {
            let (a, r, e) = (agent.clone(), key.0.clone(), ev.clone());
            // A panicking check must not leave the pull request marked as running forever.
            if let Err(e) = tokio::spawn(async move { check(&a, &r, &e).await }).await {
                tracing::error!(repo = %key.0, pr = key.1, error = %e, "plan check panicked");
            }
            let mut running = agent.pr_checks.lock();
            match running.get(&key) {
                Some(newest) if newest.head_sha != ev.head_sha => ev = newest.clone(),
                _ => {
                    running.remove(&key);
                    return;
                }
            }
        }
    });
}

/// The status context of the plan check on `cluster`.
pub fn status_context(cluster: &str) -> String {
    format!("fledge/plan/{cluster}")
}

/// What planning a head gave.
enum Outcome {
    /// The forge's pull request ref is past this head: a newer event is (or was) handled.
    Stale,
    Planned {
        comment: PlanComment,
        state: StatusState,
        description: String,
    },
}

/// Runs one check and logs what happened; errors are reported, never raised.
async fn check(agent: &Agent, repo: &str, ev: &PullRequestEvent) {
    if let Err(e) = run(agent, repo, ev).await {
        tracing::warn!(repo, pr = ev.number, head = %ev.head_sha, error = %e, "plan check not posted");
    }
}

async fn run(agent: &Agent, name: &str, ev: &PullRequestEvent) -> Result<(), forge::Error> {
    let Some(repo) = Api::<ConfigRepo>::all(agent.client.clone())
        .get_opt(name)
        .await
        .map_err(|e| forge::Error::Config(crate::apply::kube_message(&e)))?
    else {
        return Ok(());
    };
    let Some(target) = ForgeTarget::from_spec(&repo.spec)? else {
        tracing::info!(
            repo = name,
            pr = ev.number,
            "no forge configured (spec.forge): plan check skipped"
        );
        return Ok(());
    };
    if let Some(ns) = target
        .token_secret_ref
        .as_ref()
        .and_then(|r| r.namespace.as_deref())
        && ns != agent.opts.namespace
        && !agent.opts.secret_namespaces.iter().any(|n| n == ns)
    {
        return Err(forge::Error::Token(format!(
            "the token Secret is in namespace {ns:?}; the agent reads Secrets only in {:?} (allow more with --secret-namespaces)",
            agent.opts.namespace
        )));
    }
    let token = target
        .read_token(&agent.client, &agent.opts.namespace)
        .await?;
    let forge = target.connect(token)?;
    let context = status_context(&agent.opts.cluster);
    let (comment, state, description) = match plan_head(agent, &repo, ev).await {
        Ok(Outcome::Stale) => {
            tracing::info!(repo = name, pr = ev.number, head = %ev.head_sha, "pull request head moved on: result not posted");
            return Ok(());
        }
        Ok(Outcome::Planned {
            comment,
            state,
            description,
        }) => (Some(comment), state, description),
        Err(reason) => (
            None,
            StatusState::Error,
            forge::report::status_description(&StatusText::Error { reason }),
        ),
    };
    if !agent.pr_checks.is_latest(name, ev.number, &ev.head_sha) {
        tracing::info!(repo = name, pr = ev.number, head = %ev.head_sha, "a newer head arrived: result not posted");
        return Ok(());
    }
    let status = CommitStatus::new(&context, state, &description);
    let outcome = publish(
        forge.as_ref(),
        ev.number,
        &ev.head_sha,
        &status,
        comment.as_ref(),
    )
    .await?;
    tracing::info!(repo = name, pr = ev.number, head = %ev.head_sha, state = ?state, comment = ?outcome.map(|o| kind(&o)), "plan check posted");
    Ok(())
}

fn kind(u: &Upserted) -> &'static str {
    match u {
        Upserted::Created(_) => "created",
        Upserted::Edited(_) => "edited",
        Upserted::Unchanged(_) => "unchanged",
    }
}

/// Posts the result of a plan check: `status` on `sha`, then the plan comment on pull request
/// `number` (created, or the one with the cluster's marker edited in place). No comment when
/// fledge could not plan (the status says why).
pub async fn publish(
    forge: &dyn Forge,
    number: u64,
    sha: &str,
    status: &CommitStatus,
    comment: Option<&PlanComment>,
) -> forge::Result<Option<Upserted>> {
    forge.set_status(sha, status).await?;
    let Some(comment) = comment else {
        return Ok(None);
    };
    let body = render_plan_comment(comment);
    let marker = plan_marker(&comment.cluster);
    forge::upsert_comment(forge, number, &marker, &body)
        .await
        .map(Some)
}

/// What the blocking git work found at the head.
enum Head {
    Stale,
    Rendered(Result<Vec<Arc<Manifest>>, RenderErrors>),
}

/// Fetches and renders the head, plans it against the cluster, and describes the result.
/// `Err`: why fledge could not find out (fetch, cluster), for an `error` status.
async fn plan_head(
    agent: &Agent,
    repo: &ConfigRepo,
    ev: &PullRequestEvent,
) -> Result<Outcome, String> {
    let name = repo.metadata.name.clone().unwrap_or_default();
    let spec = &repo.spec;
    let scopes = agent.scopes().await.map_err(|e| e.to_string())?;
    let remote = agent
        .remote_options(spec)
        .await
        .map_err(|e| e.to_string())?;
    let opts = RenderOptions {
        config_repo: Some(name.clone()),
        scopes,
        ..RenderOptions::default()
    };
    let (cache_dir, url, path) = (
        agent.opts.cache_dir.clone(),
        spec.url.clone(),
        spec.path.clone(),
    );
    let (number, sha, head_ref) = (ev.number, ev.head_sha.clone(), ev.head_ref.clone());
    let work = move || {
        fetch_and_render(
            &cache_dir, &url, &remote, number, &sha, &head_ref, &path, &opts,
        )
    };
    let head = source::blocking(super::GIT_TIMEOUT, work)
        .await
        .map_err(|e| format!("fetching the pull request: {e}"))??;
    let desired = match head {
        Head::Stale => return Ok(Outcome::Stale),
        Head::Rendered(Err(errors)) => return Ok(render_failed(&agent.opts.cluster, ev, &errors)),
        Head::Rendered(Ok(d)) => d,
    };
    let (inventory, policy) = report::inputs(&agent.client, &name, &agent.opts.namespace)
        .await
        .map_err(|e| e.to_string())?;
    let live = report::read_live(
        &agent.cluster,
        &name,
        &desired,
        &inventory,
        agent.opts.concurrency,
    )
    .await
    .map_err(|e| e.to_string())?;
    let p = crate::plan::plan(&desired, &live.view, &inventory, &policy);
    let r = Report::new(&agent.cluster, &desired, &live, &p, false).await;
    let frozen = repo.status.as_ref().and_then(|s| s.frozen.as_ref());
    Ok(planned(&agent.opts.cluster, ev, &r, frozen))
}

/// What the plan comment says of a freeze in effect: who, why, since when, and what merging
/// this pull request does meanwhile.
fn frozen_note(f: &Frozen) -> String {
    let merged = match f.all {
        true => "merged now, nothing of this plan is applied until the unfreeze",
        false => {
            "merged now, a template change waits for the unfreeze (no canary starts); plain configuration still syncs"
        }
    };
    format!("{}; {merged}", f.summary())
}

/// The blocking part: fetch the head into the mirror, check it is still the head, render it.
#[allow(clippy::too_many_arguments)]
fn fetch_and_render(
    cache_dir: &std::path::Path,
    url: &str,
    remote: &source::RemoteOptions,
    number: u64,
    sha: &str,
    head_ref: &str,
    path: &str,
    opts: &RenderOptions,
) -> Result<Head, String> {
    let want = Oid::from_str(sha).map_err(|_| format!("the head commit {sha:?} is not a sha"))?;
    let mirror = Mirror::open(cache_dir, url).map_err(|e| e.to_string())?;
    let local = format!("refs/fledge/pull/{number}");
    let tip = mirror
        .fetch_ref(remote, &format!("refs/pull/{number}/head"), &local)
        .map_err(|e| e.to_string())?;
    let repo = mirror.repo();
    if let Some(tip) = tip
        && tip != want
        && repo.graph_descendant_of(tip, want).unwrap_or(false)
    {
        return Ok(Head::Stale);
    }
    if repo.find_commit(want).is_err() {
        // The forge has not moved its pull request ref yet (or does not serve one): the head
        // branch of a pull request from the same repository has the commit.
        let branch = format!("refs/heads/{head_ref}");
        if git2::Reference::is_valid_name(&branch) {
            mirror
                .fetch_ref(remote, &branch, &local)
                .map_err(|e| e.to_string())?;
        }
    }
    if repo.find_commit(want).is_err() {
        return Err(format!(
            "the head commit {sha} is neither on refs/pull/{number}/head nor on branch {head_ref:?}"
        ));
    }
    let tree =
        GitTree::at(repo, want).map_err(|e| format!("reading commit {sha}: {}", e.message()))?;
    let rendered = crate::render::render(&tree, path, opts).map(|d| {
        d.objects
            .into_iter()
            .map(|o| Arc::new(Manifest::from_rendered(o)))
            .collect()
    });
    Ok(Head::Rendered(rendered))
}

/// A head that does not render: `failure`, and the errors (each with `file:line`) in the comment.
fn render_failed(cluster: &str, ev: &PullRequestEvent, errors: &RenderErrors) -> Outcome {
    let first = errors
        .0
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let reason = match errors.0.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more)", n - 1),
    };
    Outcome::Planned {
        comment: PlanComment {
            cluster: cluster.to_owned(),
            head_sha: ev.head_sha.clone(),
            render_error: Some(errors.to_string()),
            ..PlanComment::default()
        },
        state: StatusState::Failure,
        description: forge::report::status_description(&StatusText::PlanFailed { reason }),
    }
}

/// A planned head: `success` with the counts, or `failure` when the API server would refuse
/// an object (the plan cannot be applied as it is).
fn planned(cluster: &str, ev: &PullRequestEvent, r: &Report, frozen: Option<&Frozen>) -> Outcome {
    let canaries: Vec<String> = r
        .canary
        .iter()
        .map(|c| {
            format!(
                "{} through Rollout {}",
                c["object"].as_str().unwrap_or_default(),
                c["rollout"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let mut plan = r.text.clone();
    plan.push_str(&r.summary);
    plan.push('\n');
    let (state, description) = if r.refused.is_empty() {
        let text = StatusText::Plan {
            changes: r.changes(),
            canaries: canaries.len(),
        };
        (
            StatusState::Success,
            forge::report::status_description(&text),
        )
    } else {
        plan.push_str(&format!(
            "{} object(s) would be refused by the API server.\n",
            r.refused.len()
        ));
        (
            StatusState::Failure,
            format!(
                "{} object(s) would be refused by the API server",
                r.refused.len()
            ),
        )
    };
    Outcome::Planned {
        comment: PlanComment {
            cluster: cluster.to_owned(),
            head_sha: ev.head_sha.clone(),
            create: r.create.len(),
            update: r.update.len(),
            delete: r.delete.len(),
            unchanged: r.unchanged,
            canaries,
            plan,
            render_error: None,
            refused: r.refused.len(),
            frozen: frozen.map(frozen_note),
        },
        state,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn commit(dir: &Path, file: &str, text: &str) -> String {
        std::fs::write(dir.join(file), text).unwrap();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", file]);
        git(dir, &["rev-parse", "HEAD"])
    }

    fn head(
        remote: &Path,
        cache: &Path,
        number: u64,
        sha: &str,
        branch: &str,
    ) -> Result<Head, String> {
        let opts = RenderOptions::default();
        let auth = source::RemoteOptions::new(source::Auth::None);
        fetch_and_render(
            cache,
            &remote.display().to_string(),
            &auth,
            number,
            sha,
            branch,
            ".",
            &opts,
        )
    }

    /// A real repository whose `refs/pull/1/head` moves from `a` to its child `b`: `b` renders,
    /// `a` is stale (never posted over `b`), a commit only on a head branch is found through the
    /// branch, and a commit nowhere is an error naming both places looked at.
    #[test]
    fn the_head_is_fetched_by_pull_ref_and_an_older_head_is_stale() {
        let work = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let w = work.path();
        git(w, &["init", "-q", "-b", "main"]);
        let cm = |v: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: d\ndata:\n  v: \"{v}\"\n"
            )
        };
        commit(w, "cm.yaml", &cm("1"));
        git(w, &["checkout", "-q", "-b", "change"]);
        let a = commit(w, "cm.yaml", &cm("2"));
        let b = commit(w, "cm.yaml", &cm("3"));
        git(w, &["update-ref", "refs/pull/1/head", &b]);

        match head(w, cache.path(), 1, &b, "change").unwrap() {
            Head::Rendered(Ok(objects)) => {
                assert_eq!(objects.len(), 1);
                assert!(objects[0].value().to_string().contains("\"3\""));
            }
            _ => panic!("the newest head renders"),
        }
        assert!(matches!(
            head(w, cache.path(), 1, &a, "change").unwrap(),
            Head::Stale
        ));

        // No pull ref at all (PR 2): the head branch has the commit.
        let c = commit(w, "cm.yaml", "data: [unclosed\n");
        match head(w, cache.path(), 2, &c, "change").unwrap() {
            Head::Rendered(Err(errors)) => {
                assert!(errors.to_string().starts_with("cm.yaml:"), "{errors}")
            }
            _ => panic!("a broken head is a render error"),
        }
        let nowhere = "0123456789012345678901234567890123456789";
        let err = head(w, cache.path(), 3, nowhere, "gone")
            .err()
            .expect("not found");
        assert!(
            err.contains("refs/pull/3/head") && err.contains("\"gone\""),
            "{err}"
        );
    }
}
