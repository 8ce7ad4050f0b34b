//! `apply`: the cluster side of a sync. Resolves kinds through API discovery, keeps the live view
//! of the objects ConfigRepos manage (one label-selected watch per kind, [`LiveView`]),
//! server-side applies desired objects with field manager `fledge` in apply order (CRDs first,
//! then waits until they are Established), deletes pruned objects, and judges the health of what
//! is live.

mod health;
mod live;
mod manifest;

pub use health::{Health, health};
pub use live::{LiveView, OnChange};
pub use manifest::{Manifest, Seen, live_of_meta, managed_marker};

use crate::labels::FIELD_MANAGER;
use crate::render::kind_rank;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a CRD applied by a sync may take to be Established.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// Error categories (a fixed set: used as metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Conflict,
    Invalid,
    Forbidden,
    UnknownKind,
    Unavailable,
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Conflict => "conflict",
            Category::Invalid => "invalid",
            Category::Forbidden => "forbidden",
            Category::UnknownKind => "unknown_kind",
            Category::Unavailable => "unavailable",
            Category::Other => "other",
        }
    }
}

/// An error about one object, or about talking to the cluster.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApplyError {
    pub category: Category,
    pub message: String,
}

impl ApplyError {
    fn from_kube(e: &kube::Error) -> ApplyError {
        let category = match e {
            kube::Error::Api(s) if s.code == 409 => Category::Conflict,
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => Category::Invalid,
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => Category::Forbidden,
            kube::Error::Api(s) if s.code == 404 => Category::UnknownKind,
            kube::Error::Api(s) if s.code >= 500 || s.code == 429 => Category::Unavailable,
            kube::Error::HyperError(_) | kube::Error::Service(_) => Category::Unavailable,
            _ => Category::Other,
        };
        let message = match e {
            kube::Error::Api(s) if s.code == 409 => format!(
                "conflict with another field manager (set spec.force to take over): {}",
                s.message
            ),
            other => kube_message(other),
        };
        ApplyError { category, message }
    }
}

/// A kube error as one readable line: the API server's own message for API errors (the
/// `Display` of `kube::Error::Api` repeats it with a debug dump of the status).
pub fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether an error means the API server is unreachable (worth a retry, not a report per object).
pub fn is_unavailable(e: &ApplyError) -> bool {
    e.category == Category::Unavailable
}

/// A resolved kind.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// Cluster access with a discovery cache.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    kinds: Arc<Mutex<HashMap<(String, String, String), Resolved>>>,
    /// Concurrent requests per apply wave.
    pub concurrency: usize,
    /// How long an applied CRD may take to be Established ([`CRD_ESTABLISHED_TIMEOUT`]).
    pub crd_timeout: Duration,
}

/// Every expected object's result in index order: an object no worker reported (its worker
/// died) is a failure, never silently dropped.
fn complete(
    expected: &[usize],
    mut results: Vec<(usize, Result<Seen, ApplyError>)>,
) -> Vec<(usize, Result<Seen, ApplyError>)> {
    let reported: std::collections::BTreeSet<usize> = results.iter().map(|(i, _)| *i).collect();
    for i in expected.iter().filter(|i| !reported.contains(i)) {
        results.push((
            *i,
            Err(ApplyError {
                category: Category::Other,
                message: "the apply worker handling this object died (see the agent's log)".into(),
            }),
        ));
    }
    results.sort_by_key(|(i, _)| *i);
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect: a panicked apply worker's objects were dropped silently and prune went ahead.
    #[test]
    fn objects_of_a_dead_worker_are_failures_not_gaps() {
        let ok = |i| (i, Ok(Seen::of_meta(&kube::api::ObjectMeta::default(), "r")));
        let out = complete(&[0, 1, 2, 3], vec![ok(2), ok(0)]);
        let idx: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [0, 1, 2, 3]);
        for (i, r) in &out {
            assert_eq!(r.is_err(), *i == 1 || *i == 3, "object {i}");
        }
        let e = out[1].1.as_ref().unwrap_err();
        assert!(e.message.contains("worker") && e.category == Category::Other);
    }
}

fn split_api_version(api_version: &str) -> (String, String) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), api_version.to_owned()),
    }
}

impl Cluster {
    pub fn new(client: Client) -> Cluster {
        Cluster {
            client,
            kinds: Arc::default(),
            concurrency: 32,
            crd_timeout: CRD_ESTABLISHED_TIMEOUT,
        }
    }

    /// Forgets discovered kinds (after CRDs changed).
    pub async fn forget_kinds(&self) {
        self.kinds.lock().await.clear();
    }

    /// Resolves `apiVersion` + `kind` to a resource, through discovery (cached).
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, ApplyError> {
        let (group, version) = split_api_version(api_version);
        let key = (group.clone(), version.clone(), kind.to_owned());
        if let Some(r) = self.kinds.lock().await.get(&key) {
            return Ok(r.clone());
        }
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, caps)) => {
                let r = Resolved {
                    resource,
                    namespaced: caps.scope == Scope::Namespaced,
                };
                self.kinds.lock().await.insert(key, r.clone());
                Ok(r)
            }
            Err(e) => {
                let mut err = ApplyError::from_kube(&e);
                if err.category != Category::Unavailable {
                    err = ApplyError {
                        category: Category::UnknownKind,
                        message: format!(
                            "the cluster does not serve {api_version} {kind} (is its CRD installed?)"
                        ),
                    };
                }
                Err(err)
            }
        }
    }

    fn api(&self, r: &Resolved, namespace: &str) -> Api<DynamicObject> {
        if r.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &r.resource)
        } else {
            Api::all_with(self.client.clone(), &r.resource)
        }
    }

    /// Reads one object (for objects that may exist without fledge's label).
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, ApplyError> {
        let r = self.resolve(api_version, kind).await?;
        self.api(&r, namespace)
            .get_opt(name)
            .await
            .map_err(|e| ApplyError::from_kube(&e))
    }

    /// Server-side applies one object (its content hash is in the body as an annotation).
    /// Kinds without a health rule ask for the answer as metadata only: the server encodes less
    /// and the agent decodes less. A dry run always returns the whole object.
    pub async fn apply_one(
        &self,
        m: &Manifest,
        force: bool,
        dry_run: bool,
    ) -> Result<DynamicObject, ApplyError> {
        let r = self.resolve(&m.api_version, &m.key.kind).await?;
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        if force {
            pp = pp.force();
        }
        if dry_run {
            pp = pp.dry_run();
        }
        let api = self.api(&r, &m.key.namespace);
        let patch = Patch::Apply(m.body());
        if dry_run || health::has_rule(&m.key.kind) {
            api.patch(&m.key.name, &pp, &patch)
                .await
                .map_err(|e| ApplyError::from_kube(&e))
        } else {
            let meta = api
                .patch_metadata(&m.key.name, &pp, &patch)
                .await
                .map_err(|e| ApplyError::from_kube(&e))?;
            Ok(DynamicObject {
                types: Some(kube::api::TypeMeta {
                    api_version: m.api_version.clone(),
                    kind: m.key.kind.clone(),
                }),
                metadata: meta.metadata,
                data: Value::Null,
            })
        }
    }

    /// Applies `objects` (`(index, manifest, force)`) in waves of equal kind rank, each wave
    /// with bounded concurrency. CRDs are waited for (Established) before the next wave; a CRD
    /// that does not get there is a failure of that CRD. Every object gets a result: one whose
    /// worker died (a panic) is reported as failed, never silently dropped.
    pub async fn apply_all(
        &self,
        objects: Vec<(usize, Arc<Manifest>, bool)>,
        repo: &str,
        live: Option<&Arc<LiveView>>,
    ) -> Vec<(usize, Result<Seen, ApplyError>)> {
        let mut waves: BTreeMap<u8, Vec<(usize, Arc<Manifest>, bool)>> = BTreeMap::new();
        let expected: Vec<usize> = objects.iter().map(|o| o.0).collect();
        for o in objects {
            let rank = kind_rank(&o.1.key.group, &o.1.key.kind);
            waves.entry(rank).or_default().push(o);
        }
        let mut results = Vec::new();
        for (rank, wave) in waves {
            let (started, size) = (std::time::Instant::now(), wave.len());
            // A fixed pool of workers pulling from the wave: memory stays flat however many
            // objects there are (one future per worker, not one per object).
            let queue = Arc::new(std::sync::Mutex::new(wave.into_iter()));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..self.concurrency.max(1) {
                let (this, queue, repo, live) =
                    (self.clone(), queue.clone(), repo.to_owned(), live.cloned());
                workers.spawn(async move {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                        let Some((i, manifest, force)) = next else {
                            break;
                        };
                        let res = this.apply_one(&manifest, force, false).await;
                        let crd = res
                            .as_ref()
                            .ok()
                            .filter(|_| rank == 0)
                            .and_then(|o| o.metadata.name.clone());
                        let res = res.map(|o| {
                            let seen = Seen::of(&o, &repo);
                            if let Some(live) = &live {
                                live.record(&manifest.api_version, &o, &repo, &seen);
                            }
                            seen
                        });
                        drop(manifest);
                        done.push((i, res, crd));
                    }
                    done
                });
            }
            let mut crds = Vec::new();
            while let Some(finished) = workers.join_next().await {
                match finished {
                    Ok(list) => {
                        for (i, res, crd) in list {
                            crds.extend(crd.map(|c| (i, c)));
                            results.push((i, res));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "an apply worker died"),
                }
            }
            if !crds.is_empty() {
                let names: Vec<String> = crds.iter().map(|(_, n)| n.clone()).collect();
                let late = self.wait_established(&names, self.crd_timeout).await;
                for (i, name) in crds.iter().filter(|(_, n)| late.contains(n)) {
                    if let Some(slot) = results.iter_mut().find(|(j, _)| j == i) {
                        slot.1 = Err(ApplyError {
                            category: Category::Unavailable,
                            message: format!(
                                "CustomResourceDefinition {name} was not Established within {}s",
                                self.crd_timeout.as_secs()
                            ),
                        });
                    }
                }
                self.forget_kinds().await;
            }
            tracing::debug!(
                rank,
                objects = size,
                ms = started.elapsed().as_millis() as u64,
                "applied wave"
            );
        }
        complete(&expected, results)
    }

    /// Waits until the named CRDs are Established; returns those that were not in time.
    async fn wait_established(&self, names: &[String], timeout: Duration) -> Vec<String> {
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut late = Vec::new();
        for name in names {
            loop {
                let established = api
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.status)
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    });
                if established {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    late.push(name.clone());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        late
    }

    /// Deletes an object (background propagation). Absent objects are fine.
    pub async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApplyError> {
        let r = self.resolve(api_version, kind).await?;
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match self.api(&r, namespace).delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ApplyError::from_kube(&e)),
        }
    }
}
