//! The cluster-facing steps of a sync, each a function with a typed result: read the inventory,
//! observe the live objects, record intent (write-ahead inventory), apply, hand template changes
//! of governed Deployments to the rollout engine, prune, record the inventory. The policy was
//! decided by the pure plan; these steps only carry it out.

use super::Agent;
use super::inventory;
use super::reconcile::SyncError;
use crate::apply::{self, ApplyError, Health, Manifest, Seen};
use crate::crd::{ConfigRepo, InventoryEntry, ObjectError, Rollout, RolloutHandoff};
use crate::labels::{FIELD_MANAGER, HANDOFF_FIELD_MANAGER, TEMPLATE_HASH_ANNOTATION};
use crate::plan::{self, Action, Live, Plan};
use crate::render::{ObjectKey, RenderErrors};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The inventory as read before the sync.
pub struct InventoryRead {
    pub entries: Vec<InventoryEntry>,
    /// The ConfigMap named by the status was deleted by hand: nothing is pruned this time.
    pub lost: bool,
}

/// The live objects of the repo, from the live view.
pub struct Observed {
    pub live: BTreeMap<ObjectKey, Seen>,
}

/// Hand-offs recorded at once. One at a time, a commit changing 200 templates took about 30 s to
/// hand them all off (two requests each); all at once (32), the rollout controller received 200
/// new rollouts within a second and its p99 reaction rose to about 2 s while each of them queued
/// for three writes. Four keeps the stream within what the controller absorbs (measured in
/// docs/performance.md, rollouts round 5).
const HANDOFF_CONCURRENCY: usize = 4;

impl Observed {
    /// The plan's view.
    pub fn view(&self) -> BTreeMap<ObjectKey, Live> {
        self.live
            .iter()
            .map(|(k, s)| (k.clone(), s.live.clone()))
            .collect()
    }
}

/// What applying did, per desired object.
#[derive(Default)]
pub struct ApplyResult {
    /// Each desired object's live state afterwards (`None`: not in the cluster).
    pub seen: Vec<Option<Seen>>,
    pub failed: Vec<(usize, ApplyError)>,
}

/// Template hand-offs recorded on Rollouts.
#[derive(Default)]
pub struct Handed {
    /// Rollouts that got a new hand-off in this sync.
    pub recorded: Vec<ObjectKey>,
    pub failed: Vec<ObjectError>,
}

/// What the prune step did.
pub struct Pruned {
    pub decision: plan::PruneDecision,
    pub deleted: BTreeSet<ObjectKey>,
    pub failed: Vec<ObjectError>,
    /// The inventory had been lost (its ConfigMap deleted by hand): nothing was due for pruning.
    pub skipped_lost_inventory: bool,
}

/// The inventory after the sync.
pub struct Recorded {
    pub entries: Vec<InventoryEntry>,
    pub config_map: Option<String>,
    pub error: Option<String>,
}

/// A sync that got past fetching: the render failed, or every step ran.
pub struct Synced {
    pub commit: String,
    pub result: Result<Done, RenderErrors>,
}

/// Every step's result of a complete sync.
pub struct Done {
    pub desired: Arc<Result<Vec<Arc<Manifest>>, RenderErrors>>,
    pub plan: Plan,
    pub applied: ApplyResult,
    pub handed: Handed,
    pub pruned: Pruned,
    pub recorded: Recorded,
}

impl Done {
    pub fn objects(&self) -> &[Arc<Manifest>] {
        match self.desired.as_ref() {
            Ok(d) => d,
            Err(_) => &[],
        }
    }

    /// The worst health of the desired objects, and those not healthy.
    pub fn health(&self) -> (Health, Vec<ObjectError>) {
        let mut worst = Health::Healthy;
        let mut unhealthy = Vec::new();
        for (o, seen) in self.objects().iter().zip(&self.applied.seen) {
            let Some(seen) = seen else { continue };
            let (h, why) = seen.health.clone();
            if h != Health::Healthy {
                unhealthy.push(ObjectError {
                    object: o.key.to_string(),
                    message: why,
                });
            }
            worst = worst.max(h);
        }
        (worst, unhealthy)
    }
}

impl Synced {
    pub fn render_failed(commit: String, errors: RenderErrors) -> Synced {
        Synced {
            commit,
            result: Err(errors),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        commit: String,
        desired: Arc<Result<Vec<Arc<Manifest>>, RenderErrors>>,
        plan: Plan,
        applied: ApplyResult,
        handed: Handed,
        pruned: Pruned,
        recorded: Recorded,
    ) -> Synced {
        Synced {
            commit,
            result: Ok(Done {
                desired,
                plan,
                applied,
                handed,
                pruned,
                recorded,
            }),
        }
    }

    /// The API server was unavailable for some request.
    pub fn unavailable(&self) -> bool {
        self.result.as_ref().is_ok_and(|d| {
            d.applied
                .failed
                .iter()
                .any(|(_, e)| apply::is_unavailable(e))
                || d.recorded.error.is_some()
        })
    }

    /// Some workload is still rolling out.
    pub fn progressing(&self) -> bool {
        self.result
            .as_ref()
            .is_ok_and(|d| d.health().0 == Health::Progressing)
    }
}

impl Agent {
    /// Step: the inventory (status or ConfigMap). Unreadable stops the sync before anything is
    /// applied: a new inventory written afterwards would lose the objects due for pruning.
    pub(super) async fn read_inventory(
        &self,
        repo: &ConfigRepo,
    ) -> Result<InventoryRead, SyncError> {
        match inventory::read(&self.client, &self.opts.namespace, repo.status.as_ref()).await {
            Ok(entries) => Ok(InventoryRead {
                entries,
                lost: false,
            }),
            Err(e) if e.missing => {
                tracing::warn!(error = %e, "inventory lost: pruning nothing this time");
                Ok(InventoryRead {
                    entries: Vec::new(),
                    lost: true,
                })
            }
            Err(e) => {
                self.count_error(apply::Category::Unavailable);
                Err(SyncError::Inventory(e.message))
            }
        }
    }

    /// Step: the live objects of the desired and inventoried kinds, from the live view's watches.
    /// Kinds the cluster does not serve are skipped (nothing of them can be live).
    pub(super) async fn observe(
        &self,
        repo: &ConfigRepo,
        desired: &[Arc<Manifest>],
        inventory: &[InventoryEntry],
    ) -> Result<Observed, SyncError> {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let mut kinds: BTreeSet<(String, String)> = desired
            .iter()
            .map(|o| (o.api_version.clone(), o.key.kind.clone()))
            .collect();
        kinds.extend(inventory.iter().map(|e| (e.api_version(), e.kind.clone())));
        let mut resolved = Vec::new();
        for (api_version, kind) in kinds {
            match self.cluster.resolve(&api_version, &kind).await {
                Ok(r) => resolved.push((api_version, kind, r.resource)),
                Err(e) if e.category == apply::Category::UnknownKind => {}
                Err(e) => {
                    self.count_error(e.category);
                    return Err(SyncError::Observe(e));
                }
            }
        }
        let live = self.live.read(&name, &resolved).await.map_err(|e| {
            self.count_error(e.category);
            SyncError::Observe(e)
        })?;
        Ok(Observed { live })
    }

    /// Step: record the objects about to be created before creating them (write-ahead), so a
    /// crash between create and the final inventory write leaves no orphan.
    pub(super) async fn record_intent(
        &self,
        repo: &ConfigRepo,
        desired: &[Arc<Manifest>],
        plan: &Plan,
        inventory: &InventoryRead,
    ) -> Result<(), SyncError> {
        let Some(ahead) = plan::write_ahead(desired, plan, &inventory.entries) else {
            return Ok(());
        };
        let name = repo.metadata.name.clone().unwrap_or_default();
        let config_map = self
            .write_inventory(&name, &ahead, &inventory.entries)
            .await
            .map_err(SyncError::RecordInventory)?;
        let mut status = repo.status.clone().unwrap_or_default();
        if status.inventory_config_map.is_some() && config_map.is_some() {
            return Ok(()); // the ConfigMap the status names now holds the intent
        }
        status.inventory = if config_map.is_some() {
            Vec::new()
        } else {
            ahead
        };
        status.inventory_config_map = config_map;
        self.write_status(&name, &status)
            .await
            .map_err(SyncError::RecordInventory)
    }

    /// Step: apply what the plan says, in apply order. A governed Deployment whose template is
    /// held is applied with its live template, a route a Rollout weighs with its live weights;
    /// a run-once object to recreate is deleted first.
    pub(super) async fn apply(
        &self,
        repo: &ConfigRepo,
        desired: &[Arc<Manifest>],
        plan: &Plan,
        observed: &Observed,
    ) -> ApplyResult {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let mut seen: Vec<Option<Seen>> = desired
            .iter()
            .map(|o| observed.live.get(&o.key).cloned())
            .collect();
        let mut failed = Vec::new();
        let mut batch = Vec::with_capacity(plan.apply.len());
        for (i, action) in &plan.apply {
            let m = &desired[*i];
            let prepared = match action {
                Action::HoldTemplate { .. } => self.holding_live_template(m).await,
                Action::HoldWeights { service, .. } => self.holding_live_weights(m, service).await,
                Action::Recreate => {
                    let k = &m.key;
                    self.cluster
                        .delete(&m.api_version, &k.kind, &k.namespace, &k.name)
                        .await
                        .map(|()| m.clone())
                }
                _ => Ok(m.clone()),
            };
            match prepared {
                // An object fledge has not applied yet may exist already (applied by hand or by
                // another tool, without fledge's label): `spec.force` takes it over too.
                Ok(body) => batch.push((
                    *i,
                    body,
                    action.force() || (repo.spec.force && matches!(action, Action::Create)),
                )),
                Err(e) => failed.push((*i, e)),
            }
        }
        for (i, res) in self.cluster.apply_all(batch, &name, Some(&self.live)).await {
            match res {
                Ok(s) => seen[i] = Some(s),
                Err(e) => {
                    self.count_error(e.category);
                    failed.push((i, e));
                }
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        ApplyResult { seen, failed }
    }

    /// A route a Rollout weighs as git has it, but with the weights it stores now.
    async fn holding_live_weights(
        &self,
        m: &Arc<Manifest>,
        service: &str,
    ) -> Result<Arc<Manifest>, ApplyError> {
        let k = &m.key;
        let live = self
            .cluster
            .get(&m.api_version, &k.kind, &k.namespace, &k.name)
            .await?;
        let Some(live) = live else {
            return Ok(m.clone()); // gone meanwhile: created as git has it
        };
        let live = serde_json::to_value(&live).unwrap_or_default();
        Ok(Arc::new(m.holding_weights(&live, service)))
    }

    /// A governed Deployment as git has it, but with the template that runs now.
    async fn holding_live_template(&self, m: &Arc<Manifest>) -> Result<Arc<Manifest>, ApplyError> {
        let k = &m.key;
        let live = self
            .cluster
            .get(&m.api_version, &k.kind, &k.namespace, &k.name)
            .await?;
        let Some(live) = live else {
            return Ok(m.clone()); // gone meanwhile: a new target is created directly
        };
        let template = live
            .data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_default();
        let hash = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
            .map(String::as_str);
        Ok(Arc::new(m.holding_template(template, hash)))
    }

    /// Step: record each held template on its Rollout (`status.handoff`, field manager
    /// `fledge-sync`), where the rollout engine picks it up. Recorded once per template; a
    /// template that runs already is recorded too when the Rollout names another one.
    /// [`HANDOFF_CONCURRENCY`] Rollouts at once.
    pub(super) async fn hand_off(
        &self,
        commit: &str,
        desired: &[Arc<Manifest>],
        plan: &Plan,
    ) -> Handed {
        use futures_util::StreamExt;
        let all: Vec<&plan::Handoff> = plan.handoffs.iter().chain(&plan.running).collect();
        // The futures made first, then run: a stream mapping over borrowed hand-offs is not
        // `Send` for every lifetime, which the spawned reconcile needs.
        let calls: Vec<_> = all
            .iter()
            .map(|h| self.hand_off_one(commit, &desired[h.index], h))
            .collect();
        let results: Vec<_> = futures_util::stream::iter(calls)
            .buffered(HANDOFF_CONCURRENCY)
            .collect()
            .await;
        let mut out = Handed::default();
        for (h, result) in all.into_iter().zip(results) {
            match result {
                Ok(true) => out.recorded.push(h.rollout.clone()),
                Ok(false) => {}
                Err(e) => out.failed.push(ObjectError {
                    object: h.rollout.to_string(),
                    message: format!(
                        "recording the template hand-off: {}",
                        apply::kube_message(&e)
                    ),
                }),
            }
        }
        out
    }

    /// Records one hand-off; `false` when its Rollout is gone or names this template already.
    async fn hand_off_one(
        &self,
        commit: &str,
        m: &Manifest,
        h: &plan::Handoff,
    ) -> Result<bool, kube::Error> {
        let api: Api<Rollout> = Api::namespaced(self.client.clone(), &h.rollout.namespace);
        let current = api.get_opt(&h.rollout.name).await?;
        let recorded = current
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .and_then(|s| s.handoff.as_ref())
            .map(|h| h.template_hash.clone());
        if current.is_none() || recorded.as_deref() == Some(h.template_hash.as_str()) {
            return Ok(false);
        }
        // The body parsed once for both the template and the replicas.
        let body = m.value();
        let handoff = RolloutHandoff {
            template_hash: h.template_hash.clone(),
            revision: commit.to_owned(),
            provenance: m.sources.clone(),
            template: body.pointer("/spec/template").cloned().unwrap_or_default(),
            replicas: body
                .pointer("/spec/replicas")
                .and_then(|v| v.as_i64())
                .map(|r| r as i32),
        };
        let body = serde_json::json!({
            "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
            "status": {"handoff": handoff},
        });
        api.patch_status(
            &h.rollout.name,
            &PatchParams::apply(HANDOFF_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        Ok(true)
    }

    /// Step: delete what left git, when the plan's prune guards allow it. Per-object apply
    /// failures do not stop it (the render is complete).
    pub(super) async fn prune(&self, plan: &Plan, inventory_lost: bool) -> Pruned {
        let mut out = Pruned {
            decision: plan.prune_decision.clone(),
            deleted: BTreeSet::new(),
            failed: Vec::new(),
            skipped_lost_inventory: inventory_lost,
        };
        if plan.prune_decision != plan::PruneDecision::Allowed {
            return out;
        }
        for e in &plan.prune {
            let av = e.api_version();
            match self
                .cluster
                .delete(&av, &e.kind, &e.namespace, &e.name)
                .await
            {
                Ok(()) => {
                    self.live.forget(&av, &e.kind, &e.namespace, &e.name);
                    out.deleted.insert(plan::entry_key(e));
                }
                Err(err) => {
                    self.count_error(err.category);
                    out.failed.push(ObjectError {
                        object: plan::entry_key(e).to_string(),
                        message: err.message,
                    });
                }
            }
        }
        out
    }

    /// Step: the inventory after this sync (in the status, or a ConfigMap when large).
    pub(super) async fn record_inventory(
        &self,
        repo: &ConfigRepo,
        desired: &[Arc<Manifest>],
        plan: &Plan,
        inventory: &InventoryRead,
        applied: &ApplyResult,
        pruned: &Pruned,
    ) -> Recorded {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let markers: Vec<Option<String>> = applied
            .seen
            .iter()
            .map(|s| s.as_ref().map(|s| s.live.marker.clone()))
            .collect();
        let entries =
            plan::next_inventory(desired, plan, &inventory.entries, &markers, &pruned.deleted);
        match self
            .write_inventory(&name, &entries, &inventory.entries)
            .await
        {
            Ok(config_map) => Recorded {
                entries,
                config_map,
                error: None,
            },
            Err(e) => Recorded {
                // The status keeps pointing at the write-ahead inventory, a superset.
                entries: inventory.entries.clone(),
                config_map: repo
                    .status
                    .as_ref()
                    .and_then(|s| s.inventory_config_map.clone()),
                error: Some(e),
            },
        }
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
                &PatchParams::apply(FIELD_MANAGER).force(),
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
}
