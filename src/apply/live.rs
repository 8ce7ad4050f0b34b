//! The live view: one watch per managed kind (objects carrying `fledge.dev/config-repo`), each
//! keeping a small [`Seen`] per object instead of the object. Reconciles read the live view from
//! here instead of listing the cluster, so a no-op reconcile costs map lookups and no requests,
//! and memory stays at a few hundred bytes per managed object.
//!
//! Kinds with a health rule (Deployments, Jobs, …) are watched whole, since their health is in
//! their status; every other kind is watched as metadata only.
//!
//! The view can lag the cluster by a watch event. That is harmless: a stale entry at worst makes
//! the plan re-apply an object (server-side apply of the same content changes nothing), and the
//! event that brings the entry up to date also requeues the repo. Objects fledge applies are
//! recorded from the apply response at once; the watch echo of fledge's own write is recognised
//! by its resourceVersion and does not requeue anything.

use super::{ApplyError, Category, Seen, health};
use crate::labels::CONFIG_REPO_LABEL;
use crate::render::ObjectKey;
use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, ObjectMeta, PartialObjectMeta};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Called with a repo's name when one of its objects changed (or left it) outside fledge.
pub type OnChange = Arc<dyn Fn(&str) + Send + Sync>;

/// One managed object as the live view keeps it.
#[derive(Debug, Clone)]
struct Entry {
    repo: String,
    seen: Seen,
    rv: Option<u64>,
}

/// Where a kind's watch stands.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Listing the objects for the first time.
    Listing,
    /// The view holds every labelled object (it may lag by an event; see the module docs).
    Synced,
    /// The first list failed (forbidden, kind gone, server away); the watch keeps retrying.
    Failed { forbidden: bool, message: String },
}

/// The live objects of one kind, kept by its watch.
struct KindView {
    objects: RwLock<HashMap<(String, String), Entry>>,
    state: watch::Receiver<State>,
}

/// Watches of the managed kinds, started on first use.
pub struct LiveView {
    client: Client,
    on_change: OnChange,
    /// Each watched `(apiVersion, kind)`: its view and its watch task.
    kinds: Mutex<HashMap<(String, String), (Arc<KindView>, tokio::task::AbortHandle)>>,
    /// How long a read waits for a new watch's initial list.
    pub sync_timeout: Duration,
}

fn rv_of(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

fn name_of(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Whether `new` may replace `old`: not older by resourceVersion (when both are numbers, which
/// they are on etcd-backed servers; otherwise the newest report wins).
fn newer(new: Option<u64>, old: Option<u64>) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n >= o,
        _ => true,
    }
}

impl LiveView {
    pub fn new(client: Client, on_change: OnChange) -> LiveView {
        LiveView {
            client,
            on_change,
            kinds: Mutex::default(),
            sync_timeout: Duration::from_secs(60),
        }
    }

    /// Stops every watch and forgets what they saw (on losing leadership).
    pub fn clear(&self) {
        for (_, (_, task)) in self.kinds.lock().expect("live view lock").drain() {
            task.abort();
        }
    }

    /// The view of a kind already watched.
    fn existing(&self, api_version: &str, kind: &str) -> Option<Arc<KindView>> {
        let kinds = self.kinds.lock().expect("live view lock");
        let (view, _) = kinds.get(&(api_version.to_owned(), kind.to_owned()))?;
        Some(view.clone())
    }

    /// The view of a kind, its watch started if it is not running yet.
    fn view(&self, api_version: &str, kind: &str, resource: &ApiResource) -> Arc<KindView> {
        let mut kinds = self.kinds.lock().expect("live view lock");
        if let Some((view, _)) = kinds.get(&(api_version.to_owned(), kind.to_owned())) {
            return view.clone();
        }
        let (tx, rx) = watch::channel(State::Listing);
        let view = Arc::new(KindView {
            objects: RwLock::new(HashMap::new()),
            state: rx,
        });
        let (client, resource, on_change, kind_s) = (
            self.client.clone(),
            resource.clone(),
            self.on_change.clone(),
            kind.to_owned(),
        );
        let task_view = view.clone();
        let task = tokio::spawn(async move {
            let view = task_view;
            let cfg = watcher::Config::default().labels(CONFIG_REPO_LABEL);
            if health::has_rule(&kind_s) {
                let api: Api<DynamicObject> = Api::all_with(client, &resource);
                let stream = watcher::watcher(api, cfg).default_backoff().boxed();
                run(
                    stream,
                    &view,
                    &tx,
                    &on_change,
                    |o: &DynamicObject| &o.metadata,
                    |o: &DynamicObject, repo| Seen::of(o, repo),
                )
                .await;
            } else {
                let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
                let stream = watcher::watcher(api, cfg).default_backoff().boxed();
                run(
                    stream,
                    &view,
                    &tx,
                    &on_change,
                    |o: &PartialObjectMeta<DynamicObject>| &o.metadata,
                    |o: &PartialObjectMeta<DynamicObject>, repo| Seen::of_meta(&o.metadata, repo),
                )
                .await;
            }
        });
        kinds.insert(
            (api_version.to_owned(), kind.to_owned()),
            (view.clone(), task.abort_handle()),
        );
        view
    }

    /// The live objects labelled for `repo`, for each of `kinds` (`(apiVersion, kind)` with its
    /// resolved resource). Starts the watches not running yet and waits for their initial list.
    pub async fn read(
        &self,
        repo: &str,
        kinds: &[(String, String, ApiResource)],
    ) -> Result<BTreeMap<ObjectKey, Seen>, ApplyError> {
        let views: Vec<_> = kinds
            .iter()
            .map(|(av, kind, r)| (r.group.clone(), kind.clone(), self.view(av, kind, r)))
            .collect();
        let mut out = BTreeMap::new();
        for (group, kind, view) in views {
            // Wait for the first list, but not for a watch that cannot list (a kind the agent
            // may not watch would otherwise hold every reconcile for the whole timeout).
            let mut state = view.state.clone();
            let waited =
                tokio::time::timeout(self.sync_timeout, state.wait_for(|s| *s != State::Listing))
                    .await
                    .ok()
                    .and_then(|r| r.ok().map(|s| s.clone()));
            match waited {
                Some(State::Synced) => {}
                Some(State::Failed { forbidden, message }) => {
                    return Err(ApplyError {
                        category: if forbidden {
                            Category::Forbidden
                        } else {
                            Category::Unavailable
                        },
                        message: format!("watching {kind}: {message}"),
                    });
                }
                _ => {
                    return Err(ApplyError {
                        category: Category::Unavailable,
                        message: format!(
                            "the watch of {kind} has not listed its objects within {}s",
                            self.sync_timeout.as_secs()
                        ),
                    });
                }
            }
            let objects = view.objects.read().expect("live view lock");
            for ((namespace, name), e) in objects.iter() {
                if e.repo == repo {
                    let key = ObjectKey {
                        group: group.clone(),
                        kind: kind.clone(),
                        namespace: namespace.clone(),
                        name: name.clone(),
                    };
                    out.insert(key, e.seen.clone());
                }
            }
        }
        Ok(out)
    }

    /// Records what an apply returned, so the next read sees it without waiting for the watch.
    pub fn record(&self, api_version: &str, obj: &DynamicObject, repo: &str, seen: &Seen) {
        let kind = obj.types.as_ref().map_or("", |t| t.kind.as_str());
        let Some(view) = self.existing(api_version, kind) else {
            return; // not watched yet: the watch's initial list will see it
        };
        let rv = rv_of(&obj.metadata);
        let mut objects = view.objects.write().expect("live view lock");
        let key = name_of(&obj.metadata);
        if objects.get(&key).is_none_or(|e| newer(rv, e.rv)) {
            let (repo, seen) = (repo.to_owned(), seen.clone());
            objects.insert(key, Entry { repo, seen, rv });
        }
    }

    /// Forgets an object fledge deleted.
    pub fn forget(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        if let Some(view) = self.existing(api_version, kind) {
            view.objects
                .write()
                .expect("live view lock")
                .remove(&(namespace.to_owned(), name.to_owned()));
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Runs one kind's watch: keeps `view.objects` equal to the labelled objects, reports changes
/// made by others, and says when the initial list is complete.
async fn run<K, S>(
    mut stream: S,
    view: &KindView,
    state: &watch::Sender<State>,
    on_change: &OnChange,
    meta: impl Fn(&K) -> &ObjectMeta,
    seen_of: impl Fn(&K, &str) -> Seen,
) where
    S: futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    let repo_of = |m: &ObjectMeta| {
        m.labels
            .as_ref()
            .and_then(|l| l.get(CONFIG_REPO_LABEL))
            .cloned()
            .unwrap_or_default()
    };
    let entry = |obj: &K| {
        let m = meta(obj);
        let repo = repo_of(m);
        let seen = seen_of(obj, &repo);
        (
            name_of(m),
            Entry {
                repo,
                seen,
                rv: rv_of(m),
            },
        )
    };
    // A relist builds a fresh map, swapped in when complete (until then reads see the old one).
    let mut relist: Option<HashMap<(String, String), Entry>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
            Ok(watcher::Event::InitApply(obj)) => {
                if let Some(fresh) = relist.as_mut() {
                    let (key, e) = entry(&obj);
                    fresh.insert(key, e);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(fresh) = relist.take() {
                    let first = *state.borrow() != State::Synced;
                    let mut objects = view.objects.write().expect("live view lock");
                    // After a reconnect, report what changed while the watch was away.
                    let mut touched: Vec<String> = Vec::new();
                    if !first {
                        for (k, old) in objects.iter() {
                            match fresh.get(k) {
                                Some(new) if new.rv == old.rv && new.repo == old.repo => {}
                                Some(new) => touched.extend([old.repo.clone(), new.repo.clone()]),
                                None => touched.push(old.repo.clone()),
                            }
                        }
                        for (k, new) in fresh.iter() {
                            if !objects.contains_key(k) {
                                touched.push(new.repo.clone());
                            }
                        }
                    }
                    *objects = fresh;
                    drop(objects);
                    touched.sort();
                    touched.dedup();
                    for repo in touched.iter().filter(|r| !r.is_empty()) {
                        on_change(repo);
                    }
                }
                state.send_replace(State::Synced);
            }
            Ok(watcher::Event::Apply(obj)) => {
                let (key, e) = entry(&obj);
                let repo = e.repo.clone();
                let mut objects = view.objects.write().expect("live view lock");
                let previous = objects.get(&key).cloned();
                // fledge's own write, already recorded from the apply response: not a change.
                let echo = previous
                    .as_ref()
                    .is_some_and(|p| p.repo == repo && !newer_strict(e.rv, p.rv));
                if previous.as_ref().is_none_or(|p| newer(e.rv, p.rv)) {
                    objects.insert(key, e);
                }
                drop(objects);
                if !echo {
                    if let Some(p) = previous.filter(|p| p.repo != repo && !p.repo.is_empty()) {
                        on_change(&p.repo);
                    }
                    if !repo.is_empty() {
                        on_change(&repo);
                    }
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                let m = meta(&obj);
                let previous = view
                    .objects
                    .write()
                    .expect("live view lock")
                    .remove(&name_of(m));
                // A deleted object, or one whose label was removed (it left the selector): the
                // repo it belonged to must look again.
                let repo = previous.map(|p| p.repo).unwrap_or_else(|| repo_of(m));
                if !repo.is_empty() {
                    on_change(&repo);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "watch of managed objects failed; retrying");
                // Before the first complete list, readers learn why; after it, they keep using
                // the view (possibly stale) while the watch reconnects.
                if *state.borrow() != State::Synced {
                    let forbidden = matches!(
                        &e,
                        watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 403
                    );
                    state.send_replace(State::Failed {
                        forbidden,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}

/// `new` is strictly newer than `old` (unknown versions count as newer).
fn newer_strict(new: Option<u64>, old: Option<u64>) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n > o,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::TypeMeta;
    use std::collections::BTreeMap as Map;

    fn cm(name: &str, repo: Option<&str>, rv: u64) -> PartialObjectMeta<DynamicObject> {
        let labels = repo.map(|r| Map::from([(CONFIG_REPO_LABEL.to_owned(), r.to_owned())]));
        PartialObjectMeta {
            types: Some(TypeMeta {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
            }),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.to_string()),
                labels,
                ..ObjectMeta::default()
            },
            _phantom: Default::default(),
        }
    }

    /// Feeds `events` through a kind's watch loop; returns the objects it keeps, whether it said
    /// it is synced, and every repo it reported as changed.
    async fn feed(
        before: Vec<((String, String), Entry)>,
        synced_before: bool,
        events: Vec<watcher::Event<PartialObjectMeta<DynamicObject>>>,
    ) -> (Map<String, (String, Option<u64>)>, bool, Vec<String>) {
        let (objects, state, changed) =
            feed_results(before, synced_before, events.into_iter().map(Ok).collect()).await;
        (objects, state == State::Synced, changed)
    }

    async fn feed_results(
        before: Vec<((String, String), Entry)>,
        synced_before: bool,
        events: Vec<Result<watcher::Event<PartialObjectMeta<DynamicObject>>, watcher::Error>>,
    ) -> (Map<String, (String, Option<u64>)>, State, Vec<String>) {
        let (tx, rx) = watch::channel(if synced_before {
            State::Synced
        } else {
            State::Listing
        });
        let view = KindView {
            objects: RwLock::new(before.into_iter().collect()),
            state: rx,
        };
        let changed = Arc::new(Mutex::new(Vec::new()));
        let c = changed.clone();
        let on_change: OnChange = Arc::new(move |r: &str| c.lock().unwrap().push(r.to_owned()));
        let stream = futures_util::stream::iter(events);
        run(
            stream,
            &view,
            &tx,
            &on_change,
            |o: &PartialObjectMeta<DynamicObject>| &o.metadata,
            |o: &PartialObjectMeta<DynamicObject>, repo| Seen::of_meta(&o.metadata, repo),
        )
        .await;
        let objects = view
            .objects
            .read()
            .unwrap()
            .iter()
            .map(|((_, n), e)| (n.clone(), (e.repo.clone(), e.rv)))
            .collect();
        let changed = changed.lock().unwrap().clone();
        let state = view.state.borrow().clone();
        (objects, state, changed)
    }

    fn entry(name: &str, repo: &str, rv: u64) -> ((String, String), Entry) {
        let o = cm(name, Some(repo), rv);
        (
            ("ns".into(), name.into()),
            Entry {
                repo: repo.into(),
                seen: Seen::of_meta(&o.metadata, repo),
                rv: Some(rv),
            },
        )
    }

    #[tokio::test]
    async fn the_first_list_fills_the_view_and_reports_nothing() {
        let (objects, synced, changed) = feed(
            vec![],
            false,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", Some("r1"), 5)),
                watcher::Event::InitApply(cm("b", Some("r2"), 6)),
                watcher::Event::InitDone,
            ],
        )
        .await;
        assert!(synced);
        assert_eq!(objects["a"], ("r1".into(), Some(5)));
        assert_eq!(objects["b"], ("r2".into(), Some(6)));
        assert!(changed.is_empty(), "{changed:?}");
    }

    #[tokio::test]
    async fn the_echo_of_fledges_own_write_is_not_a_change_but_a_newer_write_is() {
        // Recorded from the apply response at rv 7: the watch brings rv 7 (the echo), then 9.
        let (objects, _, changed) = feed(
            vec![entry("a", "r1", 7)],
            true,
            vec![watcher::Event::Apply(cm("a", Some("r1"), 7))],
        )
        .await;
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(objects["a"].1, Some(7));
        let (objects, _, changed) = feed(
            vec![entry("a", "r1", 7)],
            true,
            vec![watcher::Event::Apply(cm("a", Some("r1"), 9))],
        )
        .await;
        assert_eq!(changed, vec!["r1"]);
        assert_eq!(objects["a"].1, Some(9));
    }

    #[tokio::test]
    async fn an_older_event_does_not_replace_a_newer_entry() {
        let (objects, _, _) = feed(
            vec![entry("a", "r1", 9)],
            true,
            vec![watcher::Event::Apply(cm("a", Some("r1"), 8))],
        )
        .await;
        assert_eq!(objects["a"].1, Some(9));
    }

    #[tokio::test]
    async fn moving_an_object_to_another_repo_tells_both() {
        let (objects, _, changed) = feed(
            vec![entry("a", "r1", 7)],
            true,
            vec![watcher::Event::Apply(cm("a", Some("r2"), 8))],
        )
        .await;
        assert_eq!(objects["a"].0, "r2");
        assert_eq!(changed, vec!["r1", "r2"]);
    }

    #[tokio::test]
    async fn removing_the_label_tells_the_repo_that_had_it() {
        // The object leaves the label selector: the watch reports a deletion of an object that
        // no longer carries the label.
        let (objects, _, changed) = feed(
            vec![entry("a", "r1", 7)],
            true,
            vec![watcher::Event::Delete(cm("a", None, 8))],
        )
        .await;
        assert!(objects.is_empty());
        assert_eq!(changed, vec!["r1"]);
    }

    #[tokio::test]
    async fn a_relist_after_a_reconnect_reports_what_changed_while_away() {
        let (objects, synced, changed) = feed(
            vec![
                entry("a", "r1", 7),
                entry("b", "r2", 7),
                entry("c", "r3", 7),
            ],
            true,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(cm("a", Some("r1"), 7)), // unchanged
                watcher::Event::InitApply(cm("b", Some("r2"), 12)), // edited
                // c deleted while away; d created
                watcher::Event::InitApply(cm("d", Some("r4"), 13)),
                watcher::Event::InitDone,
            ],
        )
        .await;
        assert!(synced);
        assert_eq!(
            objects.keys().cloned().collect::<Vec<_>>(),
            vec!["a", "b", "d"]
        );
        assert_eq!(changed, vec!["r2", "r3", "r4"]);
    }

    #[tokio::test]
    async fn a_watch_that_cannot_list_says_why_and_a_synced_one_keeps_its_view() {
        let (_, state, _) = feed_results(
            vec![],
            false,
            vec![
                Ok(watcher::Event::Init),
                Err(watcher::Error::NoResourceVersion),
            ],
        )
        .await;
        assert!(
            matches!(&state, State::Failed { forbidden: false, message } if message.contains("resourceVersion")),
            "{state:?}"
        );
        // Once synced, an error (the server restarting) leaves the view in use.
        let (objects, state, _) = feed_results(
            vec![entry("a", "r1", 7)],
            true,
            vec![Err(watcher::Error::NoResourceVersion)],
        )
        .await;
        assert_eq!(state, State::Synced);
        assert_eq!(objects.len(), 1);
    }
}
