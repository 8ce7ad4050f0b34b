//! The git rollback of the rollout controller (DESIGN §7, after the cluster is back on stable):
//! on [`Action::RequestGitRollback`](crate::rollout::Action) it finds the ConfigRepo the
//! Rollout came from (label `fledge.dev/config-repo`), builds and pushes the revert in that
//! repo's mirror with its credentials ([`crate::source::rollback`], blocking git on the blocking
//! pool with a timeout), then per `spec.rollback.mode` opens the revert pull request on the
//! forge (`pullRequest`), stops there (`push`), or does nothing (`none`). The result feeds
//! `Observations.git_rollback`, so the Rollout goes `RollbackPending` with the PR's URL.
//!
//! One task per Rollout, keyed like the analysis samplers: the rollout worker never waits on
//! git or the forge. Nothing is kept across restarts and nothing needs to be: every step looks
//! before it makes (the branch and its `Fledge-Rollback` trailer, then the open PR for the
//! branch), so a second run after a crash makes nothing new.
//!
//! Crash points: `rollback-after-push` (branch pushed, no PR yet) and `rollback-after-pr` (PR
//! open, result not yet reported, so no final commit status either).

use super::Agent;
use super::rollouts::Key;
use crate::crd::{ConfigRepo, RollbackMode, Rollout};
use crate::forge::report::{RevertReport, VerdictRow, render_revert_body};
use crate::forge::{self, ForgeTarget, NewPullRequest};
use crate::labels::CONFIG_REPO_LABEL;
use crate::rollout::{FailedRollout, FailureCause, GitRollbackObs};
use crate::source::rollback::{self as git_rollback, Identity, Mode, Request};
use crate::source::{self, Mirror};
use git2::Oid;
use kube::api::Api;
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::queue::Queue;

/// Longest the git part of a rollback (fetch, build, push) may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(150);
/// First wait before a failed rollback is tried again; doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Why a git rollback could not be made. Messages carry no credentials (git and forge errors are
/// redacted where they are made).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing says where or how to revert: reported, not retried quickly.
    #[error("git rollback not configured: {0}")]
    NotConfigured(String),
    #[error("reading ConfigRepo {repo}: {message}")]
    ConfigRepo { repo: String, message: String },
    #[error("credentials of ConfigRepo {repo}: {message}")]
    Credentials { repo: String, message: String },
    #[error("{0}")]
    Git(#[from] git_rollback::Error),
    #[error("git: {0}")]
    Blocking(#[from] source::BlockingError),
    #[error("{0}")]
    Source(#[from] source::SourceError),
    #[error("forge: {0}")]
    Forge(#[from] forge::Error),
}

/// What a finished rollback left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The revert pull request (`pullRequest` mode, unless the revert is on the branch already).
    pub pull_request: Option<String>,
    /// The branch carrying the rollback commit (`None` in mode `none`).
    pub branch: Option<String>,
}

enum State {
    Running,
    Finished(Result<Done, String>, Instant),
}

struct Run {
    failed_revision: String,
    state: Arc<Mutex<State>>,
    /// Failed attempts in a row (for the backoff).
    failures: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The git rollbacks in flight, one per Rollout.
pub struct Rollbacks {
    agent: Arc<Agent>,
    queue: Arc<Queue<Key>>,
    runs: Mutex<HashMap<Key, Run>>,
}

impl Rollbacks {
    pub fn new(agent: Arc<Agent>, queue: Arc<Queue<Key>>) -> Rollbacks {
        Rollbacks {
            agent,
            queue,
            runs: Mutex::default(),
        }
    }

    /// The finished rollback of `failed_revision` for `key`, as the engine observes it.
    pub fn observe(&self, key: &Key, failed_revision: Option<&str>) -> Option<GitRollbackObs> {
        let runs = self.runs.lock().ok()?;
        let run = runs
            .get(key)
            .filter(|r| Some(r.failed_revision.as_str()) == failed_revision)?;
        let state = run.state.lock().ok()?;
        match &*state {
            State::Finished(Ok(done), _) => Some(GitRollbackObs {
                failed_revision: run.failed_revision.clone(),
                pull_request: done.pull_request.clone(),
            }),
            _ => None,
        }
    }

    /// Whether the rollback of `failed_revision` for `key` has run to an end (made, or failed
    /// and waiting to be tried again): the final commit status waits for it.
    pub fn settled(&self, key: &Key, failed_revision: &str) -> bool {
        let Ok(runs) = self.runs.lock() else {
            return true;
        };
        runs.get(key)
            .filter(|r| r.failed_revision == failed_revision)
            .and_then(|r| {
                r.state
                    .lock()
                    .ok()
                    .map(|s| matches!(*s, State::Finished(..)))
            })
            .unwrap_or(false)
    }

    pub fn stop(&self, key: &Key) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(key);
        }
    }

    /// Makes sure the rollback of `failed` is under way: nothing to do while it runs or once it
    /// is made; after a failure, it starts again when its backoff has passed.
    pub fn ensure(&self, key: &Key, ro: &Rollout, failed: &FailedRollout) {
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let mut failures = 0;
        if let Some(run) = runs
            .get(key)
            .filter(|r| r.failed_revision == failed.failed_revision)
        {
            let Ok(state) = run.state.lock() else { return };
            match &*state {
                State::Running | State::Finished(Ok(_), _) => return,
                State::Finished(Err(_), at) => {
                    if at.elapsed() < backoff(run.failures) {
                        return;
                    }
                }
            }
            failures = run.failures + 1;
        }
        let state = Arc::new(Mutex::new(State::Running));
        let job = Job {
            agent: self.agent.clone(),
            repo: ro.labels().get(CONFIG_REPO_LABEL).cloned(),
            failed: failed.clone(),
        };
        let (st, queue, k) = (state.clone(), self.queue.clone(), key.clone());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let out = job.run().await;
            let elapsed_ms = started.elapsed().as_millis();
            let rollout = format!("{}/{}", k.0, k.1);
            let out = match out {
                Ok(done) => {
                    tracing::info!(rollout = %rollout, pull_request = ?done.pull_request, branch = ?done.branch, elapsed_ms, "git rollback made");
                    Ok(done)
                }
                Err(e) => {
                    tracing::warn!(rollout = %rollout, error = %e, "git rollback failed; trying again later");
                    job.report_failure(&e).await;
                    Err(e.to_string())
                }
            };
            if let Ok(mut s) = st.lock() {
                *s = State::Finished(out, Instant::now());
            }
            queue.push(&k, Duration::ZERO);
        });
        runs.insert(
            key.clone(),
            Run {
                failed_revision: failed.failed_revision.clone(),
                state,
                failures,
                task,
            },
        );
    }
}

/// Wait before attempt `failures + 1`.
fn backoff(failures: u32) -> Duration {
    RETRY_START
        .saturating_mul(1u32 << failures.min(10))
        .min(RETRY_MAX)
}

/// One rollback of one failed revision.
struct Job {
    agent: Arc<Agent>,
    repo: Option<String>,
    failed: FailedRollout,
}

impl Job {
    async fn run(&self) -> Result<Done, Error> {
        let client = self.agent.client.clone();
        let repo_name = self.repo.clone().ok_or_else(|| {
            Error::NotConfigured(
                "the Rollout has no fledge.dev/config-repo label (it was not applied by fledge)"
                    .into(),
            )
        })?;
        let repo = Api::<ConfigRepo>::all(client.clone())
            .get(&repo_name)
            .await
            .map_err(|e| Error::ConfigRepo {
                repo: repo_name.clone(),
                message: crate::apply::kube_message(&e),
            })?;
        let mode = match repo.spec.rollback.mode {
            RollbackMode::None => {
                return Ok(Done {
                    pull_request: None,
                    branch: None,
                });
            }
            RollbackMode::Push => Mode::Push,
            RollbackMode::PullRequest => Mode::PullRequest,
        };
        // Resolve the forge before pushing anything: a branch without its PR helps nobody.
        let target = match mode {
            Mode::PullRequest => Some(ForgeTarget::from_spec(&repo.spec)?.ok_or_else(|| {
                Error::NotConfigured(format!(
                    "ConfigRepo {repo_name} has no spec.forge: cannot open the revert pull request (set spec.forge, or spec.rollback.mode push or none)"
                ))
            })?),
            Mode::Push => None,
        };
        let req = self.request(&repo, mode)?;
        let outcome = self.push(&repo, &repo_name, req.clone()).await?;
        crate::failpoint::hit("rollback-after-push");
        let Some(target) = target else {
            return Ok(Done {
                pull_request: None,
                branch: Some(outcome.branch),
            });
        };
        if outcome.branch != req.branch_name() {
            // The rollback commit is on the tracked branch already (its PR was merged).
            return Ok(Done {
                pull_request: None,
                branch: Some(outcome.branch),
            });
        }
        let token = target
            .read_token(&client, &self.agent.opts.namespace)
            .await?;
        let forge = target.connect(token)?;
        if let Some(pr) = forge.find_open_pull_request(&outcome.branch).await? {
            self.announce_on_repo(&repo, &pr.html_url).await;
            return Ok(Done {
                pull_request: Some(pr.html_url),
                branch: Some(outcome.branch),
            });
        }
        let body = render_revert_body(&self.report(&req, &outcome, forge.as_ref()));
        let pr = forge
            .create_pull_request(&NewPullRequest {
                title: format!(
                    "Revert {}: canary of {}/{} failed on {}",
                    short(&self.failed.failed_revision),
                    self.failed.namespace,
                    self.failed.name,
                    self.agent.opts.cluster
                ),
                head: outcome.branch.clone(),
                base: repo.spec.branch.clone(),
                body,
            })
            .await?;
        crate::failpoint::hit("rollback-after-pr");
        self.announce_on_repo(&repo, &pr.html_url).await;
        Ok(Done {
            pull_request: Some(pr.html_url),
            branch: Some(outcome.branch),
        })
    }

    /// The git request for the failed revision.
    fn request(&self, repo: &ConfigRepo, mode: Mode) -> Result<Request, Error> {
        let f = &self.failed;
        let oid = |what: &str, rev: Option<&str>| {
            rev.and_then(|r| Oid::from_str(r).ok()).ok_or_else(|| {
                Error::NotConfigured(format!(
                    "the {what} revision of {}/{} is not a commit id: {rev:?}",
                    f.namespace, f.name
                ))
            })
        };
        // Unknown stable revision (the Deployment and its Rollout came in the same sync, so no
        // hand-off named it): resolved in the mirror as the failed commit's parent.
        let stable = match &f.stable_revision {
            Some(r) => oid("stable", Some(r))?,
            None => Oid::ZERO_SHA1,
        };
        Ok(Request {
            branch: repo.spec.branch.clone(),
            stable,
            failed: oid("failed", Some(&f.failed_revision))?,
            paths: f.provenance.iter().cloned().collect(),
            cluster: self.agent.opts.cluster.clone(),
            namespace: f.namespace.clone(),
            rollout: f.name.clone(),
            reason: f.reason.clone(),
            verdict: verdict_lines(f),
            identity: self
                .agent
                .opts
                .rollback_author
                .clone()
                .unwrap_or_else(Identity::fledge),
            mode,
        })
    }

    /// Builds and pushes the rollback in the repo's mirror (blocking git, with a timeout), and
    /// reads the subjects of the reverted commits for the PR.
    async fn push(
        &self,
        repo: &ConfigRepo,
        repo_name: &str,
        req: Request,
    ) -> Result<Pushed, Error> {
        let opts = self
            .agent
            .remote_options(&repo.spec)
            .await
            .map_err(|e| Error::Credentials {
                repo: repo_name.to_owned(),
                message: e.to_string(),
            })?;
        let (cache_dir, url) = (self.agent.opts.cache_dir.clone(), repo.spec.url.clone());
        let work = move || -> Result<Pushed, Error> {
            let mut req = req;
            let mirror = Mirror::open(&cache_dir, &url)?;
            if req.stable.is_zero() {
                req.stable = parent_of(&mirror, &opts, req.failed)?;
            }
            let outcome = git_rollback::rollback(&mirror, &opts, &req)?;
            let subjects = outcome
                .reverted
                .iter()
                .map(|oid| {
                    let subject = mirror
                        .repo()
                        .find_commit(*oid)
                        .ok()
                        .and_then(|c| {
                            c.summary_bytes()
                                .map(|s| String::from_utf8_lossy(s).into_owned())
                        })
                        .unwrap_or_default();
                    (oid.to_string(), subject)
                })
                .collect();
            Ok(Pushed {
                branch: outcome.branch,
                stable: req.stable.to_string(),
                reverted: subjects,
            })
        };
        source::blocking(GIT_TIMEOUT, work).await?
    }

    /// The input of the PR body.
    fn report(&self, req: &Request, pushed: &Pushed, forge: &dyn forge::Forge) -> RevertReport {
        let f = &self.failed;
        let stable = pushed.stable.clone();
        let mut r = RevertReport {
            cluster: req.cluster.clone(),
            namespace: f.namespace.clone(),
            rollout: f.name.clone(),
            failed_revision: f.failed_revision.clone(),
            stable_revision: stable.clone(),
            reason: f.reason.clone(),
            reverted: pushed.reverted.clone(),
            compare_url: Some(forge.compare_url(&stable, &f.failed_revision)),
            ..RevertReport::default()
        };
        if let FailureCause::AnalysisFailed(s) = f.verdict.cause() {
            r.score = Some(s.score);
            r.verdict = Some(format!("{:?}", s.verdict).to_lowercase());
            r.rows = s
                .metrics
                .iter()
                .map(|m| VerdictRow {
                    metric: m.name.clone(),
                    canary: m.canary,
                    baseline: m.baseline,
                    result: m.result.clone(),
                    score: None,
                })
                .collect();
        }
        r
    }

    /// Shows the open revert PR on the ConfigRepo too (an Event about it, the Rollout related):
    /// `kubectl describe configrepo` lists what waits for a merge.
    async fn announce_on_repo(&self, repo: &ConfigRepo, url: &str) {
        let f = &self.failed;
        let related = Api::<Rollout>::namespaced(self.agent.client.clone(), &f.namespace)
            .get_opt(&f.name)
            .await
            .ok()
            .flatten()
            .map(|ro| super::rollouts::object_ref(&ro));
        let note = super::EventNote {
            kind: super::EventKind::Warning,
            reason: "RollbackPending",
            action: "Rollback",
            related,
            message: format!(
                "{}/{}: the canary of {} failed; revert pull request {url}",
                f.namespace,
                f.name,
                short(&f.failed_revision)
            ),
        };
        use kube::Resource;
        self.agent.events.publish(&repo.object_ref(&()), note).await;
    }

    /// Says where the operator looks (an Event on the Rollout) why the rollback did not happen.
    async fn report_failure(&self, e: &Error) {
        let reason = match e {
            Error::NotConfigured(_) => "GitRollbackNotConfigured",
            _ => "GitRollbackFailed",
        };
        let message = format!(
            "{e}; revision {} stays rolled back in the cluster",
            short(&self.failed.failed_revision)
        );
        publish(&self.agent, &self.failed, reason, message).await;
    }
}

/// What was pushed: the branch and the reverted commits `(sha, subject)`, newest first.
struct Pushed {
    branch: String,
    /// The stable revision the revert goes back to.
    stable: String,
    reverted: Vec<(String, String)>,
}

/// The first parent of `failed` (fetched first when the mirror lacks it).
fn parent_of(mirror: &Mirror, opts: &source::RemoteOptions, failed: Oid) -> Result<Oid, Error> {
    if mirror.repo().find_commit(failed).is_err() {
        mirror.fetch_with(opts)?;
    }
    let commit = mirror.repo().find_commit(failed).map_err(|e| {
        Error::NotConfigured(format!(
            "the failed revision {failed} is not in the repository: {}",
            e.message()
        ))
    })?;
    commit.parent_id(0).map_err(|_| {
        Error::NotConfigured(format!(
            "the failed revision {failed} is the first commit: nothing to revert to"
        ))
    })
}

/// The verdict in a few lines, for the rollback commit's message.
fn verdict_lines(f: &FailedRollout) -> String {
    match f.verdict.cause() {
        FailureCause::AnalysisFailed(s) => {
            let mut out = format!(
                "analysis {} at step {}: score {:.0}/100",
                s.template, s.step, s.score
            );
            for m in &s.metrics {
                let v = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x}"));
                out.push_str(&format!(
                    "\n{}: canary {} baseline {} ({})",
                    m.name,
                    v(m.canary),
                    v(m.baseline),
                    m.result
                ));
            }
            out
        }
        FailureCause::ProgressDeadlineExceeded => "the canary never became available".into(),
        FailureCause::Aborted => "aborted by an operator".into(),
    }
}

fn short(rev: &str) -> &str {
    rev.get(..7).unwrap_or(rev)
}

async fn publish(agent: &Agent, f: &FailedRollout, reason: &'static str, message: String) {
    let client: Client = agent.client.clone();
    let Ok(Some(ro)) = Api::<Rollout>::namespaced(client, &f.namespace)
        .get_opt(&f.name)
        .await
    else {
        return;
    };
    agent
        .events
        .publish(
            &super::rollouts::object_ref(&ro),
            super::EventNote {
                kind: super::EventKind::Warning,
                reason,
                action: "Rollback",
                related: None,
                message,
            },
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_five_seconds_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(30), RETRY_MAX);
    }
}
