//! `controller`: the agent. Holds the leader Lease, keeps a queue of ConfigRepos, reconciles
//! each on its interval, when its spec changes, and when one of its managed objects is changed
//! by someone else (the live view's watches), and stands down when it loses the Lease. Signed
//! webhooks fetch a pushed ConfigRepo at once and plan pull requests ([`prcheck`]).

mod commit_status;
mod events;
mod fetch;
mod freeze;
pub mod inventory;
mod leader;
pub mod prcheck;
pub mod queue;
mod reconcile;
mod report;
mod rollback;
pub mod rollouts;
pub mod selector;
pub mod status;
mod steps;
#[cfg(test)]
mod tests;

pub use events::{Events, Kind as EventKind, Note as EventNote};
pub use fetch::{GIT_TIMEOUT, fetch_backoff};
pub use leader::LeaseConfig;
pub use reconcile::{SyncError, interval, policy, requeue};
pub use selector::LabelSelector;

use crate::apply::{Cluster, LiveView, OnChange};
use crate::crd::ConfigRepo;
use crate::render::Scopes;
use crate::server::Metrics;
use futures_util::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use queue::Queue;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};

/// Settings of the agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Namespace of the agent: its Lease, Secrets without a namespace, inventory ConfigMaps.
    pub namespace: String,
    /// Where repository mirrors live.
    pub cache_dir: PathBuf,
    /// Leader election; `None` runs as the only agent.
    pub lease: Option<LeaseConfig>,
    /// Concurrent requests while applying.
    pub concurrency: usize,
    /// Delay before reconciling after a managed object changed (coalesces bursts).
    pub drift_debounce: Duration,
    /// Only ConfigRepos matching this label selector (shard agents, or isolate tests).
    pub selector: Option<LabelSelector>,
    /// Namespaces besides the agent's own where a ConfigRepo's `secretRef` may point.
    pub secret_namespaces: Vec<String>,
    /// ConfigRepos reconciled at once (each key by one worker at a time).
    pub workers: usize,
    /// Rollout passes at once (each Rollout by one worker at a time; a pass mostly waits on
    /// the API server, so many are cheap).
    pub rollout_workers: usize,
    /// Name of this cluster on the forge: status contexts (`fledge/<cluster>/<ns>/<rollout>`,
    /// `fledge/plan/<cluster>`), plan comments, revert commits and pull requests.
    pub cluster: String,
    /// Base URL of a dashboard; commit statuses link to `<url>/rollouts/<ns>/<name>`.
    pub dashboard_url: Option<String>,
    /// Author and committer of rollback commits (`None`: fledge's own).
    pub rollback_author: Option<crate::source::rollback::Identity>,
}

/// The agent: shared by its tasks.
pub struct Agent {
    pub client: Client,
    pub cluster: Cluster,
    pub opts: AgentOptions,
    pub metrics: Arc<Metrics>,
    events: Events,
    sources: Mutex<HashMap<String, fetch::SourceCache>>,
    scopes: Mutex<Option<(Instant, Scopes)>>,
    queue: Arc<Queue<String>>,
    /// Watches of the managed kinds: the live view reconciles plan against.
    pub live: Arc<LiveView>,
    /// Generation last reconciled per repo (status-only updates do not requeue).
    generations: Mutex<HashMap<String, Option<i64>>>,
    /// Repos whose next reconcile must fetch (spec changed, webhook).
    force_fetch: Mutex<BTreeSet<String>>,
    /// Pull requests whose plan check runs (the newest head of each).
    pr_checks: prcheck::Checks,
}

impl Agent {
    pub fn new(client: Client, opts: AgentOptions, metrics: Arc<Metrics>) -> Arc<Agent> {
        let identity = opts.lease.as_ref().map(|l| l.identity.clone());
        let events = Events::new(client.clone(), identity);
        let mut cluster = Cluster::new(client.clone());
        cluster.concurrency = opts.concurrency;
        let queue: Arc<Queue<String>> = Arc::default();
        // A managed object changed outside fledge (drift, or a workload's status moved): look
        // again after the debounce, which coalesces bursts.
        let (q, debounce) = (queue.clone(), opts.drift_debounce);
        let on_change: OnChange = Arc::new(move |repo: &str| q.push(&repo.to_owned(), debounce));
        Arc::new(Agent {
            live: Arc::new(LiveView::new(client.clone(), on_change)),
            client,
            cluster,
            opts,
            metrics,
            events,
            sources: Mutex::default(),
            scopes: Mutex::default(),
            queue,
            generations: Mutex::default(),
            force_fetch: Mutex::default(),
            pr_checks: prcheck::Checks::default(),
        })
    }

    /// Asks for a reconcile of `repo` soon, fetching git first (webhooks, CLI).
    pub async fn trigger(&self, repo: &str) {
        self.force_fetch.lock().await.insert(repo.to_owned());
        self.queue.push(&repo.to_owned(), Duration::ZERO);
    }
}

/// Acts on verified webhook deliveries: a push to a ConfigRepo's branch fetches it at once; a
/// pull request into a ConfigRepo's branch gets its plan check ([`prcheck`]), in the background.
pub async fn on_webhooks(
    agent: Arc<Agent>,
    mut rx: tokio::sync::mpsc::Receiver<crate::server::webhooks::WebhookEvent>,
) {
    use crate::server::webhooks::WebhookEvent;
    while let Some(ev) = rx.recv().await {
        let repos = match Api::<ConfigRepo>::all(agent.client.clone())
            .list(&Default::default())
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %crate::apply::kube_message(&e), "listing ConfigRepos for a webhook failed");
                continue;
            }
        };
        for r in repos {
            let name = r.metadata.name.clone().unwrap_or_default();
            if !ev.is_for_repo(&r.spec.url) {
                continue;
            }
            match &ev {
                WebhookEvent::Push(push) if push.branch() == Some(r.spec.branch.as_str()) => {
                    tracing::info!(repo = %name, delivery = %push.delivery, "push webhook: fetching now");
                    agent.trigger(&name).await;
                }
                WebhookEvent::Push(_) => {}
                // A pull request into another branch does not change what this ConfigRepo
                // applies; one served by another agent (--selector) is that agent's to check.
                WebhookEvent::PullRequest(pr)
                    if pr.base_ref == r.spec.branch && agent.serves(&r) && !r.spec.suspend =>
                {
                    tracing::info!(repo = %name, pr = pr.number, head = %pr.head_sha, delivery = %pr.delivery, "pull request webhook: plan check");
                    prcheck::enqueue(&agent, &name, pr.clone());
                }
                WebhookEvent::PullRequest(_) => {}
            }
        }
    }
}

impl Agent {
    /// Whether this agent serves `repo` (its `--selector`, if any, matches the labels).
    fn serves(&self, repo: &ConfigRepo) -> bool {
        self.opts
            .selector
            .as_ref()
            .is_none_or(|s| s.matches(&repo.metadata.labels.clone().unwrap_or_default()))
    }
}

/// Runs the agent's work while it is the leader.
async fn work(agent: Arc<Agent>) {
    let repos: Api<ConfigRepo> = Api::all(agent.client.clone());
    let watch_agent = agent.clone();
    let repo_watch = tokio::spawn(async move {
        let cfg = match &watch_agent.opts.selector {
            Some(sel) => watcher::Config::default().labels(&sel.to_query()),
            None => watcher::Config::default(),
        };
        let mut stream = watcher::watcher(repos, cfg).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                    let name = r.metadata.name.clone().unwrap_or_default();
                    let mut gens = watch_agent.generations.lock().await;
                    if gens.get(&name) != Some(&r.metadata.generation) {
                        gens.insert(name.clone(), r.metadata.generation);
                        drop(gens);
                        watch_agent.force_fetch.lock().await.insert(name.clone());
                        watch_agent.queue.push(&name, Duration::ZERO);
                    }
                }
                Ok(watcher::Event::Delete(r)) => {
                    let name = r.metadata.name.clone().unwrap_or_default();
                    watch_agent.generations.lock().await.remove(&name);
                    watch_agent.queue.remove(&name);
                    watch_agent.metrics.forget_repo(&name);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ConfigRepo watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    let _repo_watch = AbortOnDrop(repo_watch);
    // The rollout controller: its own queue and workers, so analysis never blocks sync.
    let _rollouts = AbortOnDrop(tokio::spawn(rollouts::run(agent.clone())));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..agent.opts.workers.max(1) {
        workers.spawn(worker(agent.clone()));
    }
    while workers.join_next().await.is_some() {}
}

/// Delay before a ConfigRepo whose reconcile panicked is tried again.
const AFTER_PANIC: Duration = Duration::from_secs(30);

/// One reconcile worker: takes due ConfigRepos off the shared queue, one key at a time. A
/// reconcile that panics is reported and retried later; it never takes the worker down.
async fn worker(agent: Arc<Agent>) {
    loop {
        let name = agent.queue.pop().await;
        let force = agent.force_fetch.lock().await.remove(&name);
        let (a, n) = (agent.clone(), name.clone());
        let next = match tokio::spawn(async move { a.reconcile(&n, force).await }).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(repo = %name, error = %e, "reconcile panicked; retrying later");
                Some(AFTER_PANIC)
            }
        };
        agent.queue.done(&name);
        if let Some(next) = next {
            agent.queue.push(&name, next);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the agent until the task is dropped: leader election, then reconciling while leader.
pub async fn run(agent: Arc<Agent>, ready: Arc<AtomicBool>) {
    // Readiness: the API server answers.
    loop {
        if agent.client.apiserver_version().await.is_ok() {
            ready.store(true, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (tx, mut rx) = watch::channel(agent.opts.lease.is_none());
    // Without leader election the sender simply stays here (a dropped sender would read as
    // "leadership lost").
    let _lease = agent.opts.lease.clone().map(|cfg| {
        AbortOnDrop(tokio::spawn(leader::run(
            agent.client.clone(),
            cfg,
            tx.clone(),
        )))
    });
    let _tx = tx;
    loop {
        while !*rx.borrow_and_update() {
            agent.metrics.leader.set(0);
            if rx.changed().await.is_err() {
                return;
            }
        }
        agent.metrics.leader.set(1);
        tracing::info!("leading: reconciling ConfigRepos");
        let worker = AbortOnDrop(tokio::spawn(work(agent.clone())));
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        tracing::warn!("lost leadership: standing by");
        drop(worker);
        agent.live.clear();
        agent.generations.lock().await.clear();
    }
}
