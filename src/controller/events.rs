//! Kubernetes Events for ConfigRepos and Rollouts (`events.k8s.io/v1`). Each event names the
//! object it is about (`related`) and carries its current message: repeats of the *same*
//! message about the same object become a series (count and last time), while a new message is
//! a new event — `kubectl describe` never shows a failure fixed minutes ago as fresh.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The API server refuses notes longer than this (bytes).
const MAX_NOTE: usize = 1024;
/// A repeat within this time joins the series; later it is a new event.
const SERIES_WINDOW: Duration = Duration::from_secs(30 * 60);

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Warning,
}

/// One event to publish.
#[derive(Debug, Clone)]
pub struct Note {
    pub kind: Kind,
    /// CamelCase reason (`Applied`, `ApplyFailed`, `DriftDetected`, …).
    pub reason: &'static str,
    /// What was done (`Sync`, `Prune`, `Rollout`, …).
    pub action: &'static str,
    /// The object the event is about, when it is not the regarding object itself.
    pub related: Option<ObjectReference>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: (Option<String>, Option<String>, Option<String>),
    kind: Kind,
    reason: &'static str,
    related: Option<(Option<String>, Option<String>, Option<String>)>,
    message: String,
}

fn ref_key(r: &ObjectReference) -> (Option<String>, Option<String>, Option<String>) {
    (r.kind.clone(), r.namespace.clone(), r.name.clone())
}

/// Publishes events, keeping series of identical repeats.
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    sent: Mutex<HashMap<Key, (String, String, i32, Instant)>>,
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl Events {
    pub fn new(client: Client, instance: Option<String>) -> Events {
        Events {
            client,
            controller: "fledge.dev/agent".into(),
            instance: instance.unwrap_or_else(|| "fledge".into()),
            sent: Mutex::default(),
        }
    }

    /// Publishes `note` about `regarding`. Failures are logged, never fatal.
    pub async fn publish(&self, regarding: &ObjectReference, note: Note) {
        if let Err(e) = self.try_publish(regarding, note).await {
            tracing::debug!(error = %e, "publishing an event failed");
        }
    }

    async fn try_publish(
        &self,
        regarding: &ObjectReference,
        note: Note,
    ) -> Result<(), kube::Error> {
        let message = truncate(&crate::limits::escape_controls(&note.message), MAX_NOTE);
        let key = Key {
            regarding: ref_key(regarding),
            kind: note.kind,
            reason: note.reason,
            related: note.related.as_ref().map(ref_key),
            message: message.clone(),
        };
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let now = jiff::Timestamp::now();
        let mut sent = self.sent.lock().await;
        sent.retain(|_, (_, _, _, at)| at.elapsed() < SERIES_WINDOW);
        if let Some((ns, name, count, at)) = sent.get_mut(&key) {
            *count += 1;
            *at = Instant::now();
            let series = serde_json::json!({"series": EventSeries {
                count: *count,
                last_observed_time: MicroTime(now),
            }});
            let (ns, name) = (ns.clone(), name.clone());
            drop(sent);
            Api::<K8sEvent>::namespaced(self.client.clone(), &ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await?;
            return Ok(());
        }
        let base = regarding.name.clone().unwrap_or_else(|| "fledge".into());
        let name = format!("{base}.{:x}", now.as_nanosecond());
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(note.action.into()),
            reason: Some(note.reason.into()),
            note: Some(message),
            regarding: Some(regarding.clone()),
            related: note.related,
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match note.kind {
                    Kind::Normal => "Normal",
                    Kind::Warning => "Warning",
                }
                .into(),
            ),
            ..K8sEvent::default()
        };
        sent.insert(key, (namespace, name, 1, Instant::now()));
        drop(sent);
        api.create(&PostParams::default(), &event).await?;
        Ok(())
    }
}

/// A reference to an object by apiVersion, kind, namespace and name.
pub fn reference(api_version: &str, key: &crate::render::ObjectKey) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(key.kind.clone()),
        namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
        name: Some(key.name.clone()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_NOTE);
        assert!(t.len() <= MAX_NOTE && t.ends_with("..."), "{}", t.len());
        assert_eq!(truncate("short", MAX_NOTE), "short");
    }
}
