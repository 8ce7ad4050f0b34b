//! Act step of a rollout pass: the executors of the engine's workload actions against the API
//! server. Each is "make it so" and safe to repeat: server-side apply as `fledge-rollout`
//! (canary and baseline), a JSON patch replacing the stable's pod template whole (promotion), a
//! replicas-only merge patch for scaling, and delete-if-present.

use super::observe::workload_name;
use crate::crd::Rollout;
use crate::labels::{ROLLOUT_FIELD_MANAGER, TEMPLATE_HASH_ANNOTATION, TRACK_LABEL};
use crate::rollout::{Action, Track};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// Why an action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("the stable Deployment {0} is missing; waiting for sync to create it")]
    NoStable(String),
    #[error("{action} {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The promotion of `template` onto the stable Deployment: a JSON patch that replaces
/// `spec.template` whole and stamps the template hash and the stable track. Whole, not merged:
/// fields git removed from the template (held until now under sync's server-side apply) must
/// not survive into the promoted pods.
fn promotion_patch(
    stable: Option<&Deployment>,
    template: &Value,
    template_hash: &str,
) -> json_patch::Patch {
    let meta = stable.map(|d| &d.metadata);
    let mut ops = Vec::new();
    if meta.is_none_or(|m| m.annotations.is_none()) {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    if meta.is_none_or(|m| m.labels.is_none()) {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
    }
    let escaped = |k: &str| k.replace('~', "~0").replace('/', "~1");
    ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", escaped(TEMPLATE_HASH_ANNOTATION)), "value": template_hash}));
    ops.push(json!({"op": "add", "path": format!("/metadata/labels/{}", escaped(TRACK_LABEL)), "value": Track::Stable.as_str()}));
    ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
    serde_json::from_value(Value::Array(ops)).expect("JSON patch operations")
}

/// Carries out the workload actions of one Rollout.
pub struct Executor<'a> {
    pub client: Client,
    pub rollout: &'a Rollout,
    /// The stable Deployment as observed in this pass.
    pub stable: Option<&'a Deployment>,
}

impl Executor<'_> {
    fn api(&self) -> Api<Deployment> {
        Api::namespaced(
            self.client.clone(),
            &self.rollout.namespace().unwrap_or_default(),
        )
    }

    fn name(&self, track: Track) -> String {
        workload_name(&self.rollout.spec.target_ref.name, track)
    }

    /// Carries out one workload action (`RunAnalysis`, `SetWeight` and `RequestGitRollback`
    /// are the controller's; they are no-ops here).
    pub async fn run(&self, action: &Action) -> Result<(), ActError> {
        let api = self.api();
        let err = |action: &'static str, name: &str| {
            let name = name.to_owned();
            move |source| ActError::Api {
                action,
                name,
                source,
            }
        };
        match action {
            Action::EnsureWorkload {
                track,
                template,
                template_hash,
                replicas,
                progress_deadline_seconds,
            } => {
                let stable = self
                    .stable
                    .ok_or_else(|| ActError::NoStable(self.name(Track::Stable)))?;
                let name = self.name(*track);
                let body = workload_body(
                    self.rollout,
                    stable,
                    *track,
                    template,
                    template_hash,
                    *replicas,
                    *progress_deadline_seconds,
                );
                api.patch(
                    &name,
                    &PatchParams::apply(ROLLOUT_FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .map_err(err("applying", &name))?;
            }
            Action::ScaleWorkload { track, replicas } => {
                let name = self.name(*track);
                let params = PatchParams {
                    field_manager: Some(ROLLOUT_FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                let body = json!({"spec": {"replicas": replicas}});
                match api.patch(&name, &params, &Patch::Merge(&body)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(err("scaling", &name)(e)),
                }
            }
            Action::DeleteWorkload { track } => {
                let name = self.name(*track);
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(err("deleting", &name)(e)),
                }
            }
            Action::PromoteStable {
                template,
                template_hash,
                revision,
            } => {
                let name = self.name(Track::Stable);
                tracing::info!(deployment = %name, %revision, "promoting the canary template to stable");
                let patch = promotion_patch(self.stable, template, template_hash);
                let params = PatchParams {
                    field_manager: Some(ROLLOUT_FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                api.patch(&name, &params, &Patch::Json::<()>(patch))
                    .await
                    .map_err(err("promoting", &name))?;
            }
            Action::SetWeight { .. } | Action::RunAnalysis(_) | Action::RequestGitRollback(_) => {}
        }
        Ok(())
    }
}

/// The server-side apply body of `<target>-<track>`: the stable Deployment's selector plus the
/// track label (selector and pod labels), the given template and replicas, the template-hash
/// annotation, `progressDeadlineSeconds`, owned by the Rollout (garbage-collected with it).
pub fn workload_body(
    ro: &Rollout,
    stable: &Deployment,
    track: Track,
    template: &Value,
    template_hash: &str,
    replicas: i32,
    progress_deadline_seconds: i32,
) -> Value {
    let name = workload_name(&ro.spec.target_ref.name, track);
    let mut selector = stable
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.selector).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    selector["matchLabels"][TRACK_LABEL] = Value::String(track.as_str().into());
    let mut template = if template.is_object() {
        template.clone()
    } else {
        json!({})
    };
    template["metadata"]["labels"][TRACK_LABEL] = Value::String(track.as_str().into());
    let owner = ro.controller_owner_ref(&()).map(|o| {
        json!({
            "apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid,
            "controller": true, "blockOwnerDeletion": true,
        })
    });
    let mut labels = stable.labels().clone();
    labels.remove(crate::labels::CONFIG_REPO_LABEL); // not sync's: never pruned as its object
    labels.insert(TRACK_LABEL.into(), track.as_str().into());
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ro.namespace(),
            "labels": labels,
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": template,
            "progressDeadlineSeconds": progress_deadline_seconds,
        },
    })
}
