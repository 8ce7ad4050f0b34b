//! One reconcile of one ConfigRepo: fetch → render → read live → plan → apply → prune →
//! health → status. Each step's result lands in [`Findings`]; a failed step stops the pipeline
//! before anything is applied or pruned.

use super::status::{self, Applied, Findings};
use super::{Agent, inventory};
use crate::apply::{self, Health, Manifest};
use crate::crd::{ConfigRepo, ConfigRepoSpec, InventoryEntry, ObjectError};
use crate::labels::ALLOW_MASS_PRUNE_ANNOTATION;
use crate::plan::{self, Change, PruneDecision};
use crate::render::{Desired, FsTree, GitTree, RenderErrors, RenderOptions, Scopes};

/// A render as the agent keeps it between reconciles: compact manifests in apply order, or the
/// render's errors.
pub type Rendered = Arc<Result<Vec<Arc<Manifest>>, RenderErrors>>;

/// Converts a render into manifests, one object at a time (so the value trees are freed as the
/// compact bodies are made).
fn compact(rendered: Result<Desired, RenderErrors>) -> Result<Vec<Arc<Manifest>>, RenderErrors> {
    rendered.map(|d| {
        d.objects
            .into_iter()
            .map(|o| Arc::new(Manifest::from_rendered(o)))
            .collect()
    })
}
use crate::server::{CategoryLabel, ReasonLabel, RepoLabel, RepoReason, RepoState};
use crate::source::{self, Auth, Mirror};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The source side of a repo, kept between reconciles.
#[derive(Default)]
pub struct SourceCache {
    pub commit: Option<String>,
    pub fetched_at: Option<Instant>,
    pub spec: Option<ConfigRepoSpec>,
    pub desired: Option<Rendered>,
}

fn local_dir(url: &str) -> Option<PathBuf> {
    let p = Path::new(url.strip_prefix("dir://").unwrap_or(url));
    (!source::is_remote(url) && p.is_dir() && git2::Repository::open_bare(p).is_err())
        .then(|| p.to_owned())
}

impl Agent {
    async fn auth(&self, spec: &ConfigRepoSpec) -> Result<Auth, String> {
        let Some(r) = &spec.secret_ref else {
            return Ok(Auth::None);
        };
        let ns = r
            .namespace
            .clone()
            .unwrap_or_else(|| self.opts.namespace.clone());
        let secret = Api::<Secret>::namespaced(self.client.clone(), &ns)
            .get(&r.name)
            .await
            .map_err(|e| {
                format!(
                    "reading Secret {ns}/{}: {}",
                    r.name,
                    apply::kube_message(&e)
                )
            })?;
        let data = secret.data.unwrap_or_default();
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        if let Some(key) = &r.key {
            return get(key)
                .map(Auth::Token)
                .ok_or_else(|| format!("Secret {ns}/{} has no key {key}", r.name));
        }
        if let Some(t) = get("token").or_else(|| get("password")) {
            return Ok(Auth::Token(t));
        }
        if let Some(k) = get("identity").or_else(|| get("ssh-privatekey")) {
            return Ok(Auth::SshKey {
                private_key: k,
                passphrase: get("passphrase"),
            });
        }
        Err(format!(
            "Secret {ns}/{} has neither token nor identity",
            r.name
        ))
    }

    async fn scopes(&self) -> Scopes {
        let mut cached = self.scopes.lock().await;
        if let Some((at, s)) = &*cached
            && at.elapsed() < Duration::from_secs(120)
        {
            return s.clone();
        }
        match crate::render::discover(&self.client).await {
            Ok(s) => {
                *cached = Some((Instant::now(), s.clone()));
                s
            }
            Err(_) => Scopes::builtin(),
        }
    }

    /// Fetches (when due) and renders (when the commit changed). Returns the commit and render.
    async fn fetch_and_render(
        &self,
        repo: &ConfigRepo,
        force_fetch: bool,
    ) -> Result<(String, Rendered), String> {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let spec = repo.spec.clone();
        let interval = crate::duration::parse(&spec.interval).unwrap_or(Duration::from_secs(60));
        let opts = RenderOptions {
            config_repo: Some(name.clone()),
            scopes: self.scopes().await,
            ..RenderOptions::default()
        };
        let cache = self.sources.lock().await.remove(&name).unwrap_or_default();
        let spec_changed = cache.spec.as_ref() != Some(&spec);

        if let Some(dir) = local_dir(&spec.url) {
            // A local work tree: render as it is, every time (cheap; the dev loop).
            let path = spec.path.clone();
            let desired = tokio::task::spawn_blocking(move || {
                let tree =
                    FsTree::new(&dir).map_err(|e| format!("opening {}: {e}", dir.display()))?;
                Ok::<_, String>(compact(crate::render::render(&tree, &path, &opts)))
            })
            .await
            .map_err(|e| e.to_string())??;
            let commit = "worktree".to_owned();
            let desired = Arc::new(desired);
            self.sources.lock().await.insert(
                name,
                SourceCache {
                    commit: Some(commit.clone()),
                    fetched_at: Some(Instant::now()),
                    spec: Some(spec),
                    desired: Some(desired.clone()),
                },
            );
            return Ok((commit, desired));
        }

        let due =
            force_fetch || spec_changed || cache.fetched_at.is_none_or(|t| t.elapsed() >= interval);
        let auth = if due {
            Some(self.auth(&spec).await)
        } else {
            None
        };
        let cache_dir = self.opts.cache_dir.clone();
        let (url, branch, path) = (spec.url.clone(), spec.branch.clone(), spec.path.clone());
        let previous_commit = cache.commit.clone();
        let previous = cache.desired.clone().filter(|_| !spec_changed);
        let result = tokio::task::spawn_blocking(move || -> Result<(String, Option<Result<Vec<Arc<Manifest>>, RenderErrors>>), (String, Option<source::Reason>)> {
            let mirror = Mirror::open(&cache_dir, &url).map_err(|e| (e.to_string(), Some(e.reason.clone())))?;
            if let Some(auth) = auth {
                let auth = auth.map_err(|e| (e, Some(source::Reason::Auth)))?;
                mirror.fetch(&auth).map_err(|e| (e.to_string(), Some(e.reason.clone())))?;
            }
            let commit = mirror.resolve(&branch).map_err(|e| (e.to_string(), Some(e.reason.clone())))?;
            let commit_s = commit.to_string();
            if previous.is_some() && previous_commit.as_deref() == Some(commit_s.as_str()) {
                return Ok((commit_s, None));
            }
            let tree = GitTree::at(mirror.repo(), commit).map_err(|e| (format!("reading commit {commit}: {}", e.message()), None))?;
            Ok((commit_s, Some(compact(crate::render::render(&tree, &path, &opts)))))
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut cache = SourceCache {
            commit: cache.commit,
            fetched_at: cache.fetched_at,
            spec: Some(spec),
            desired: cache.desired,
        };
        let out = match result {
            Ok((commit, rendered)) => {
                if due {
                    cache.fetched_at = Some(Instant::now());
                }
                if let Some(r) = rendered {
                    cache.desired = Some(Arc::new(r));
                }
                cache.commit = Some(commit.clone());
                Ok((commit, cache.desired.clone().expect("rendered or reused")))
            }
            Err((msg, reason)) => {
                let reason = match reason {
                    Some(source::Reason::Auth) => "auth",
                    Some(source::Reason::NotFound) => "not_found",
                    Some(source::Reason::Network) => "network",
                    _ => "other",
                };
                self.metrics
                    .fetch_errors
                    .get_or_create(&ReasonLabel {
                        reason: reason.into(),
                    })
                    .inc();
                Err(msg)
            }
        };
        self.sources.lock().await.insert(name, cache);
        out
    }

    /// Stores a large inventory in a ConfigMap; returns its name (None: keep it in the status).
    async fn write_inventory(
        &self,
        repo: &str,
        inv: &[InventoryEntry],
        previous: &[InventoryEntry],
    ) -> Result<Option<String>, String> {
        if inv.len() <= inventory::IN_STATUS_MAX {
            return Ok(None);
        }
        let name = inventory::config_map_name(repo);
        if inv == previous {
            return Ok(Some(name));
        }
        let cm = inventory::config_map(repo, &self.opts.namespace, inv);
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.opts.namespace)
            .patch(
                &name,
                &PatchParams::apply(crate::labels::FIELD_MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await
            .map_err(|e| {
                format!(
                    "writing inventory ConfigMap {name}: {}",
                    apply::kube_message(&e)
                )
            })?;
        Ok(Some(name))
    }

    async fn event(&self, repo: &ConfigRepo, type_: EventType, reason: &str, note: String) {
        let reference = repo.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "publishing event failed");
        }
    }

    /// Reconciles one ConfigRepo; returns when to look again.
    pub async fn reconcile(&self, name: &str, force_fetch: bool) -> Duration {
        let api = Api::<ConfigRepo>::all(self.client.clone());
        let repo = match api.get_opt(name).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.sources.lock().await.remove(name);
                return Duration::MAX;
            }
            Err(e) => {
                tracing::warn!(repo = name, error = %e, "reading ConfigRepo failed");
                return Duration::from_secs(5);
            }
        };
        if !self.selected(&repo) {
            return Duration::MAX; // another agent's ConfigRepo
        }
        let interval =
            crate::duration::parse(&repo.spec.interval).unwrap_or(Duration::from_secs(60));
        let prev = repo.status.clone().unwrap_or_default();
        let mut f = Findings {
            generation: repo.metadata.generation,
            ..Findings::default()
        };
        let mut requeue = interval;
        let start = Instant::now();
        if repo.spec.suspend {
            f.suspended = true;
        } else {
            let span = tracing::info_span!("reconcile", repo = %name);
            requeue = self
                .sync(&repo, &mut f, force_fetch)
                .instrument(span)
                .await
                .unwrap_or(interval)
                .min(interval);
        }
        let new = status::build(&prev, &f);
        if new != prev {
            let body = serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "status": new});
            if let Err(e) = api
                .patch_status(
                    name,
                    &PatchParams::apply(crate::labels::FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                tracing::warn!(repo = name, error = %e, "writing status failed");
                requeue = requeue.min(Duration::from_secs(5));
            }
        }
        let ok = new
            .conditions
            .first()
            .is_some_and(|c| c.status == crate::crd::ConditionStatus::True);
        let result = if ok { "success" } else { "error" };
        self.metrics
            .reconcile_duration
            .get_or_create(&crate::server::ResultLabel {
                result: result.into(),
            })
            .observe(start.elapsed().as_secs_f64());
        requeue
    }

    /// The sync pipeline. Returns an earlier requeue when something is in progress or failed.
    async fn sync(
        &self,
        repo: &ConfigRepo,
        f: &mut Findings,
        force_fetch: bool,
    ) -> Option<Duration> {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let spec = &repo.spec;

        // 1. fetch + render
        let t0 = Instant::now();
        let (commit, rendered) = match self.fetch_and_render(repo, force_fetch).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(repo = %name, error = %e, "fetch failed");
                if previous(repo, "Fetched")
                    .is_none_or(|c| c.status != crate::crd::ConditionStatus::False)
                {
                    self.event(repo, EventType::Warning, "FetchFailed", e.clone())
                        .await;
                }
                f.fetched = Some(Err(e));
                return Some(Duration::from_secs(10));
            }
        };
        f.fetched = Some(Ok(commit.clone()));
        let desired = match rendered.as_ref() {
            Ok(d) => d,
            Err(errs) => {
                let list: Vec<ObjectError> = errs
                    .0
                    .iter()
                    .map(|e| ObjectError {
                        object: e.path.clone(),
                        message: e.to_string(),
                    })
                    .collect();
                if previous(repo, "Rendered")
                    .is_none_or(|c| c.status != crate::crd::ConditionStatus::False)
                {
                    self.event(
                        repo,
                        EventType::Warning,
                        "RenderFailed",
                        format!("{}: nothing applied, nothing pruned", errs.0[0]),
                    )
                    .await;
                }
                f.rendered = Some(Err(list));
                return None;
            }
        };
        f.rendered = Some(Ok(desired.len()));

        // 2. live view
        let t_fetched = t0.elapsed();
        let status = repo.status.as_ref();
        let inventory = match inventory::read(&self.client, &self.opts.namespace, status).await {
            Ok(inv) => inv,
            // Deleted by hand: nothing is pruned this time (the objects keep their label)
            // and the apply below records a new inventory of what git has.
            Err(e) if e.missing => {
                tracing::warn!(repo = %name, error = %e, "inventory lost: pruning nothing this time");
                Vec::new()
            }
            Err(e) => {
                // Without the inventory nothing may be applied: the new inventory written
                // afterwards would lose the objects that are due for pruning.
                self.count_error(apply::Category::Unavailable);
                return nothing_applied(f, &commit, desired.len(), "inventory", e.message);
            }
        };
        let mut kinds: BTreeSet<(String, String)> = desired
            .iter()
            .map(|o| (o.api_version.clone(), o.key.kind.clone()))
            .collect();
        for e in &inventory {
            let av = e.api_version();
            kinds.insert((av, e.kind.clone()));
        }
        let live = match self.read_live(&name, kinds).await {
            Ok(l) => l,
            Err(e) => {
                self.count_error(e.category);
                let message = format!("reading live objects: {e}");
                return nothing_applied(f, &commit, desired.len(), "cluster", message);
            }
        };
        let live_view = live
            .iter()
            .map(|(k, seen)| (k.clone(), seen.live.clone()))
            .collect();

        // 3. plan
        let p = plan::plan(desired, &live_view, &inventory);
        let drift: Vec<usize> = p
            .apply
            .iter()
            .filter(|(_, c)| *c == Change::Drift)
            .map(|(i, _)| *i)
            .collect();
        f.drift = drift.len();
        if !drift.is_empty() {
            self.metrics
                .drift
                .get_or_create(&RepoLabel { repo: name.clone() })
                .inc_by(drift.len() as u64);
            let names: Vec<String> = drift
                .iter()
                .take(5)
                .map(|i| desired[*i].key.to_string())
                .collect();
            let verb = if spec.self_heal {
                "re-applying"
            } else {
                "selfHeal is off, leaving"
            };
            self.event(
                repo,
                EventType::Warning,
                "DriftDetected",
                format!(
                    "{} object(s) changed outside git ({verb}): {}",
                    drift.len(),
                    names.join(", ")
                ),
            )
            .await;
        }
        // Healing drift means git wins over whoever edited the object, so it takes the fields
        // back (force); ordinary changes respect other field managers unless spec.force.
        let to_apply: Vec<(usize, Arc<Manifest>, bool)> = p
            .apply
            .iter()
            .filter(|(_, c)| spec.self_heal || *c != Change::Drift)
            .map(|(i, c)| (*i, desired[*i].clone(), spec.force || *c == Change::Drift))
            .collect();

        // 4. apply
        let t_live = t0.elapsed();
        let mut seen: Vec<Option<apply::Seen>> =
            desired.iter().map(|o| live.get(&o.key).cloned()).collect();
        drop(live);
        let mut failed = Vec::new();
        let applied_any = !to_apply.is_empty();
        let mut unavailable = false;
        for (i, res) in self
            .cluster
            .apply_all(to_apply, &name, Some(&self.live))
            .await
        {
            match res {
                Ok(s) => seen[i] = Some(s),
                Err(e) => {
                    self.count_error(e.category);
                    unavailable |= apply::is_unavailable(&e);
                    failed.push(ObjectError {
                        object: desired[i].key.to_string(),
                        message: e.message,
                    });
                }
            }
        }
        let created = p.count(Change::Create);
        let updated = p.count(Change::Update)
            + if spec.self_heal {
                p.count(Change::Drift)
            } else {
                0
            };
        if applied_any {
            let ok = created + updated - failed.len().min(created + updated);
            self.event(
                repo,
                EventType::Normal,
                "Applied",
                format!(
                    "applied {ok} object(s) ({created} to create, {updated} to update) from {}",
                    &commit[..commit.len().min(12)]
                ),
            )
            .await;
        }
        if !failed.is_empty() {
            self.event(
                repo,
                EventType::Warning,
                "ApplyFailed",
                format!(
                    "{} object(s) failed; first: {}: {}",
                    failed.len(),
                    failed[0].object,
                    failed[0].message
                ),
            )
            .await;
        }

        // 5. prune (only after a clean apply)
        let t_applied = t0.elapsed();
        let allow_mass = repo
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALLOW_MASS_PRUNE_ANNOTATION))
            .is_some_and(|v| v == "true");
        let decision = if failed.is_empty() {
            plan::prune_decision(
                &p,
                desired.len(),
                inventory.len(),
                spec.prune,
                spec.max_prune_fraction,
                allow_mass,
            )
        } else if p.prune.is_empty() {
            PruneDecision::Nothing
        } else {
            PruneDecision::Disabled
        };
        let mut pruned = 0;
        let mut prune_failed = Vec::new();
        let mut kept_in_inventory: Vec<InventoryEntry> = Vec::new();
        match &decision {
            PruneDecision::Allowed => {
                for e in &p.prune {
                    let av = e.api_version();
                    match self
                        .cluster
                        .delete(&av, &e.kind, &e.namespace, &e.name)
                        .await
                    {
                        Ok(()) => {
                            self.live.forget(&av, &e.kind, &e.namespace, &e.name);
                            pruned += 1
                        }
                        Err(err) => {
                            self.count_error(err.category);
                            prune_failed.push(ObjectError {
                                object: plan::entry_key(e).to_string(),
                                message: err.message,
                            });
                            kept_in_inventory.push(e.clone());
                        }
                    }
                }
                if pruned > 0 {
                    let names: Vec<String> = p
                        .prune
                        .iter()
                        .take(5)
                        .map(|e| plan::entry_key(e).to_string())
                        .collect();
                    self.event(
                        repo,
                        EventType::Normal,
                        "Pruned",
                        format!(
                            "deleted {pruned} object(s) no longer in git: {}",
                            names.join(", ")
                        ),
                    )
                    .await;
                }
            }
            PruneDecision::EmptyRender | PruneDecision::TooMany { .. } => {
                self.metrics
                    .prune_refusals
                    .get_or_create(&RepoReason {
                        repo: name.clone(),
                        reason: decision.reason().into(),
                    })
                    .inc();
                let was_refused =
                    previous(repo, "Pruned").is_some_and(|c| c.reason == decision.reason());
                if !was_refused {
                    self.event(
                        repo,
                        EventType::Warning,
                        "PruneRefused",
                        format!(
                            "refused to delete {} object(s): {}",
                            p.prune.len(),
                            decision.reason()
                        ),
                    )
                    .await;
                }
                kept_in_inventory.extend(p.prune.iter().cloned());
            }
            _ => kept_in_inventory.extend(p.prune.iter().cloned()),
        }

        // 6. inventory and health
        let mut inv: Vec<InventoryEntry> = desired
            .iter()
            .enumerate()
            // What is live is managed; what failed to be created is not (yet).
            .filter_map(|(i, o)| {
                seen[i]
                    .as_ref()
                    .map(|s| plan::entry_of(o, s.live.marker.clone()))
            })
            .collect();
        inv.extend(kept_in_inventory);
        inv.sort();
        inv.dedup();
        let cm = match self.write_inventory(&name, &inv, &inventory).await {
            Ok(cm) => cm,
            Err(e) => {
                failed.push(ObjectError {
                    object: "inventory".into(),
                    message: e,
                });
                None
            }
        };
        if cm.is_some() {
            f.inventory = Some(Vec::new());
        } else {
            f.inventory = Some(inv);
        }
        f.inventory_config_map = cm;
        let mut worst = Health::Healthy;
        let mut unhealthy = Vec::new();
        for (i, o) in desired.iter().enumerate() {
            let Some(seen) = &seen[i] else { continue };
            let (h, why) = seen.health.clone();
            if h != Health::Healthy {
                unhealthy.push(ObjectError {
                    object: o.key.to_string(),
                    message: why,
                });
            }
            worst = worst.max(h);
        }
        let states = [
            ("desired", desired.len()),
            ("created", created),
            ("updated", updated),
            ("unchanged", p.unchanged.len()),
            ("pruned", pruned),
            ("failed", failed.len() + prune_failed.len()),
        ];
        for (state, n) in states {
            self.metrics
                .objects
                .get_or_create(&RepoState {
                    repo: name.clone(),
                    state: state.into(),
                })
                .set(n as i64);
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let (fetch_ms, live_ms, apply_ms, total_ms) = (
            ms(t_fetched),
            ms(t_live - t_fetched),
            ms(t_applied - t_live),
            ms(t0.elapsed()),
        );
        if applied_any || pruned > 0 {
            tracing::info!(
                commit = &commit[..commit.len().min(12)],
                created,
                updated,
                unchanged = p.unchanged.len(),
                pruned,
                failed = failed.len() + prune_failed.len(),
                fetch_ms,
                live_ms,
                apply_ms,
                total_ms,
                "synced"
            );
        } else {
            tracing::debug!(
                unchanged = p.unchanged.len(),
                fetch_ms,
                live_ms,
                total_ms,
                "nothing to do"
            );
        }
        f.health = Some((worst, unhealthy));
        f.prune = Some((decision, pruned, prune_failed));
        f.applied = Some(Applied {
            commit,
            desired: desired.len(),
            created,
            updated,
            unchanged: p.unchanged.len(),
            noop: !applied_any && pruned == 0 && failed.is_empty(),
            failed,
        });
        if unavailable {
            Some(Duration::from_secs(5))
        } else if worst == Health::Progressing {
            Some(Duration::from_secs(3))
        } else {
            None
        }
    }
}

impl Agent {
    /// The live objects of `repo` among `kinds` (`(apiVersion, kind)`), from the live view's
    /// watches. Kinds the cluster does not serve are skipped (nothing of them can be live).
    async fn read_live(
        &self,
        repo: &str,
        kinds: BTreeSet<(String, String)>,
    ) -> Result<std::collections::BTreeMap<crate::render::ObjectKey, apply::Seen>, apply::ApplyError>
    {
        let mut resolved = Vec::new();
        for (api_version, kind) in kinds {
            match self.cluster.resolve(&api_version, &kind).await {
                Ok(r) => resolved.push((api_version, kind, r.resource)),
                Err(e) if e.category == apply::Category::UnknownKind => {}
                Err(e) => return Err(e),
            }
        }
        self.live.read(repo, &resolved).await
    }

    /// Whether the agent's selector (`k=v,k2=v2`, or `k` for "has label k") matches `repo`.
    fn selected(&self, repo: &ConfigRepo) -> bool {
        let Some(sel) = &self.opts.selector else {
            return true;
        };
        let labels = repo.metadata.labels.clone().unwrap_or_default();
        sel.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .all(|term| match term.split_once('=') {
                Some((k, v)) => labels
                    .get(k.trim_end_matches('='))
                    .is_some_and(|l| l == v.trim_start_matches('=')),
                None => labels.contains_key(term),
            })
    }
}

impl Agent {
    fn count_error(&self, category: apply::Category) {
        self.metrics
            .apply_errors
            .get_or_create(&CategoryLabel {
                category: category.as_str().into(),
            })
            .inc();
    }
}

/// Records a sync stopped before anything was applied (the cluster or the inventory could not
/// be read) and asks to look again soon.
fn nothing_applied(
    f: &mut Findings,
    commit: &str,
    desired: usize,
    object: &str,
    message: String,
) -> Option<Duration> {
    f.applied = Some(Applied {
        commit: commit.to_owned(),
        desired,
        failed: vec![ObjectError {
            object: object.into(),
            message,
        }],
        ..Applied::default()
    });
    Some(Duration::from_secs(5))
}

/// The condition of `type_` in the status the reconcile started from.
fn previous<'r>(repo: &'r ConfigRepo, type_: &str) -> Option<&'r crate::crd::Condition> {
    repo.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}
