//! The compact form of a desired object the agent keeps between reconciles ([`Manifest`]), and
//! the plan's view of a live object ([`Seen`], [`live_of_meta`]), including the drift marker: a
//! hash of the fields fledge owns, read from the object's `managedFields`.

use super::health::{self, Health};
use crate::labels::{
    APPLY_POLICY_ANNOTATION, CONFIG_REPO_LABEL, CONTENT_HASH_ANNOTATION, FIELD_MANAGER,
    PRUNE_ANNOTATION, ROLLOUT_FIELD_MANAGER, TEMPLATE_HASH_ANNOTATION, TRACK_LABEL,
};
use crate::plan::{Live, Planned, RouteHold};
use crate::render::{ObjectKey, RenderedObject};
use crate::rollout::routes::{Backends, RouteKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::DynamicObject;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// A desired object as the agent keeps it between reconciles: what the plan needs (identity,
/// content hash, pod-template hash, the Deployment a Rollout governs), the files it came from
/// (the git rollback needs them), and the compact JSON body (annotations included) that apply
/// sends. A tenth of the memory of the rendered value tree, which matters at 10,000 objects.
#[derive(Debug)]
pub struct Manifest {
    pub key: ObjectKey,
    pub api_version: String,
    pub hash: String,
    /// sha256 of a Deployment's `spec.template`.
    pub template_hash: Option<String>,
    /// For a fledge Rollout: the Deployment it governs.
    pub rollout_target: Option<String>,
    /// For a fledge Rollout with a mesh router: the route it sets weights on.
    pub rollout_route: Option<RouteHold>,
    /// Applied once, then left alone until git changes it (Jobs, `fledge.dev/apply-policy: run-once`).
    pub run_once: bool,
    /// Repository files the object was rendered from.
    pub sources: Vec<String>,
    body: Box<RawValue>,
}

fn is_deployment(key: &ObjectKey) -> bool {
    key.group == "apps" && key.kind == "Deployment"
}

impl Manifest {
    /// Consumes a rendered object.
    pub fn from_rendered(o: RenderedObject) -> Manifest {
        let RenderedObject {
            key,
            api_version,
            mut object,
            hash,
            sources,
        } = o;
        let template_hash = is_deployment(&key)
            .then(|| object.pointer("/spec/template").map(crate::render::hash))
            .flatten();
        let rollout_target = (key.group == crate::labels::GROUP && key.kind == "Rollout")
            .then(|| {
                object
                    .pointer("/spec/targetRef/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .flatten();
        let rollout_route = rollout_target.as_ref().and_then(|_| route_hold(&object));
        let policy = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLY_POLICY_ANNOTATION))
            .and_then(Value::as_str);
        let run_once = policy == Some("run-once") || (key.group == "batch" && key.kind == "Job");
        let annotations = &mut object["metadata"]["annotations"];
        annotations[CONTENT_HASH_ANNOTATION] = Value::String(hash.clone());
        if let Some(th) = &template_hash {
            annotations[TEMPLATE_HASH_ANNOTATION] = Value::String(th.clone());
        }
        let body = serde_json::value::to_raw_value(&object).expect("a JSON value serializes");
        Manifest {
            key,
            api_version,
            hash,
            template_hash,
            rollout_target,
            rollout_route,
            run_once,
            sources,
            body,
        }
    }

    /// A copy of a rendered object.
    pub fn of(o: &RenderedObject) -> Manifest {
        Manifest::from_rendered(o.clone())
    }

    /// The JSON sent to the API server.
    pub fn body(&self) -> &RawValue {
        &self.body
    }

    /// The body as a value tree.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.body.get()).unwrap_or(Value::Null)
    }

    /// This Deployment with another pod template (the live one, held while a rollout decides):
    /// every other field as in git, the template and its hash annotation as given, and the
    /// content hash of a held template ([`crate::plan::held_hash`]) unless it is git's own.
    pub fn holding_template(&self, template: Value, template_hash: Option<&str>) -> Manifest {
        let mut v = self.value();
        v["spec"]["template"] = template;
        let hash = match template_hash.is_some() && template_hash == self.template_hash.as_deref() {
            true => self.hash.clone(),
            false => crate::plan::held_hash(&self.hash, template_hash),
        };
        let annotations = &mut v["metadata"]["annotations"];
        annotations[CONTENT_HASH_ANNOTATION] = Value::String(hash.clone());
        match template_hash {
            Some(th) => annotations[TEMPLATE_HASH_ANNOTATION] = Value::String(th.into()),
            None => {
                if let Some(a) = annotations.as_object_mut() {
                    a.remove(TEMPLATE_HASH_ANNOTATION);
                }
            }
        }
        Manifest {
            key: self.key.clone(),
            api_version: self.api_version.clone(),
            hash,
            template_hash: template_hash.map(str::to_owned),
            rollout_target: None,
            rollout_route: None,
            run_once: false,
            sources: self.sources.clone(),
            body: serde_json::value::to_raw_value(&v).expect("a JSON value serializes"),
        }
    }

    /// This route (HTTPRoute or VirtualService) as in git, but with the weights `live` stores
    /// for the track Services of `service` in its split rules ([`crate::rollout::routes::hold`]).
    /// Not a route: unchanged.
    pub fn holding_weights(&self, live: &Value, service: &str) -> Manifest {
        let mut v = self.value();
        let backends = Backends::of(service, &self.key.namespace);
        if let Some(kind) = RouteKind::of(&self.key.group, &self.key.kind) {
            crate::rollout::routes::hold(kind, &mut v, live, &backends);
        }
        Manifest {
            key: self.key.clone(),
            api_version: self.api_version.clone(),
            hash: self.hash.clone(),
            template_hash: None,
            rollout_target: None,
            rollout_route: None,
            run_once: false,
            sources: self.sources.clone(),
            body: serde_json::value::to_raw_value(&v).expect("a JSON value serializes"),
        }
    }
}

/// The route a rendered Rollout sets weights on (`spec.traffic.gatewayAPI.httpRoute` or
/// `spec.traffic.istio.virtualService`), with its `spec.service`.
fn route_hold(rollout: &Value) -> Option<RouteHold> {
    let service = rollout.pointer("/spec/service")?.as_str()?.to_owned();
    let (kind, name) = if let Some(n) = rollout.pointer("/spec/traffic/gatewayAPI/httpRoute") {
        (RouteKind::HttpRoute, n)
    } else {
        (
            RouteKind::VirtualService,
            rollout.pointer("/spec/traffic/istio/virtualService")?,
        )
    };
    Some(RouteHold {
        kind,
        name: name.as_str()?.to_owned(),
        service,
    })
}

impl Planned for Manifest {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
    fn api_version(&self) -> &str {
        &self.api_version
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn template_hash(&self) -> Option<&str> {
        self.template_hash.as_deref()
    }
    fn rollout_target(&self) -> Option<&str> {
        self.rollout_target.as_deref()
    }
    fn run_once(&self) -> bool {
        self.run_once
    }
    fn rollout_route(&self) -> Option<&RouteHold> {
        self.rollout_route.as_ref()
    }
}

/// What a sync keeps of a live object: the plan's view (drift marker included) and the health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub live: Live,
    pub health: (Health, String),
}

impl Seen {
    /// A live object known by its metadata only (kinds without a health rule: present is healthy).
    pub fn of_meta(meta: &kube::api::ObjectMeta, repo: &str) -> Seen {
        Seen {
            live: live_of_meta(meta, repo),
            health: (Health::Healthy, String::new()),
        }
    }

    /// A whole live object: its health judged when its kind has a rule.
    pub fn of(obj: &DynamicObject, repo: &str) -> Seen {
        let kind = obj.types.as_ref().map_or("", |t| t.kind.as_str());
        let mut seen = Seen::of_meta(&obj.metadata, repo);
        if health::has_rule(kind)
            && let Ok(v) = serde_json::to_value(obj)
        {
            seen.health = health::health(&v);
        }
        seen
    }
}

/// The drift marker: `m` + a hash of the fields fledge's server-side applies own (its
/// `managedFields` entry). Someone changing one of those fields takes it over, so the hash
/// moves; fields fledge does not own (an HPA's `replicas` when git has none, an added
/// annotation, a restart stamp) leave it as it was. Empty when fledge owns nothing there.
///
/// Fields the rollout controller (`fledge-rollout`) owns count as fledge's: it is fledge too.
/// That matters for a route a Rollout weighs: its rule list is atomic, so the router's weight
/// patch moves the whole `spec.rules` from sync's entry to the rollout controller's. Counted
/// together, nothing moved and sync sees no drift (a `kubectl edit` still moves it away from
/// both). Without a rollout controller entry the hash is what it always was. Its
/// `fledge.dev/track` label on a promoted stable Deployment is left out (sync never owned it).
pub fn managed_marker(meta: &kube::api::ObjectMeta) -> String {
    let main = |e: &&ManagedFieldsEntry| e.subresource.as_deref().unwrap_or("").is_empty();
    let mut rollout_fields = Value::Null;
    for e in meta.managed_fields.iter().flatten().filter(main) {
        if e.manager.as_deref() == Some(ROLLOUT_FIELD_MANAGER)
            && let Some(f) = &e.fields_v1
        {
            merge_fields(&mut rollout_fields, &f.0);
        }
    }
    // The track label the rollout controller puts on a stable Deployment it promotes is its own
    // bookkeeping, not a field of git's that sync owned: gaining it is no drift.
    if let Some(meta) = rollout_fields
        .pointer_mut("/f:metadata")
        .and_then(Value::as_object_mut)
        && let Some(labels) = meta.get_mut("f:labels").and_then(Value::as_object_mut)
    {
        labels.remove(&format!("f:{TRACK_LABEL}"));
        if labels.is_empty() {
            meta.remove("f:labels");
        }
    }
    let mut h = Sha256::new();
    let mut any = false;
    for e in meta.managed_fields.iter().flatten().filter(main) {
        let ours =
            e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply");
        if let (true, Some(fields)) = (ours, &e.fields_v1) {
            let mut fields = fields.0.clone();
            if !any {
                merge_fields(&mut fields, &rollout_fields);
            }
            any = true;
            h.update(e.api_version.as_deref().unwrap_or("").as_bytes());
            h.update(b"\n");
            h.update(
                serde_json::to_string(&fields)
                    .unwrap_or_default()
                    .as_bytes(),
            );
        }
    }
    if !any {
        return String::new();
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(17);
    out.push('m');
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Deep union of two `fieldsV1` trees into `into`.
fn merge_fields(into: &mut Value, from: &Value) {
    match (into, from) {
        (_, Value::Null) => {}
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge_fields(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot @ Value::Null, v) => *slot = v.clone(),
        _ => {}
    }
}

/// The plan's view of a live object, from its metadata.
pub fn live_of_meta(meta: &kube::api::ObjectMeta, repo: &str) -> Live {
    let annotations = meta.annotations.as_ref();
    Live {
        hash: annotations
            .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
            .cloned(),
        marker: managed_marker(meta),
        template_hash: annotations
            .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
            .cloned(),
        prune_disabled: annotations
            .and_then(|a| a.get(PRUNE_ANNOTATION))
            .is_some_and(|v| v == "disabled"),
        labelled: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(CONFIG_REPO_LABEL))
            .is_some_and(|v| v == repo),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use kube::api::ObjectMeta;

    fn entry(manager: &str, op: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            api_version: Some("apps/v1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn the_marker_moves_only_with_fledges_own_fields() {
        let ours = serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}});
        let base = managed_marker(&meta(vec![entry("fledge", "Apply", ours.clone())]));
        assert!(base.starts_with('m') && base.len() == 17, "{base}");
        // An HPA scaling replicas fledge does not own, an annotation added by kubectl: other
        // managers' entries change, fledge's does not.
        let scaled = managed_marker(&meta(vec![
            entry("fledge", "Apply", ours.clone()),
            entry(
                "kube-controller-manager",
                "Update",
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
            ),
            entry(
                "kubectl-annotate",
                "Update",
                serde_json::json!({"f:metadata": {"f:annotations": {"f:x": {}}}}),
            ),
        ]));
        assert_eq!(base, scaled);
        // kubectl edit of a field fledge owns takes it over: fledge's set shrinks.
        let edited = managed_marker(&meta(vec![
            entry(
                "fledge",
                "Apply",
                serde_json::json!({"f:spec": {"f:template": {}}}),
            ),
            entry(
                "kubectl-edit",
                "Update",
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]));
        assert_ne!(base, edited);
        assert_eq!(managed_marker(&ObjectMeta::default()), "");
    }

    #[test]
    fn the_rollout_controllers_fields_count_as_fledges() {
        let rules = serde_json::json!({"f:spec": {"f:hostnames": {}, "f:rules": {}}});
        let applied = managed_marker(&meta(vec![entry("fledge", "Apply", rules.clone())]));
        // The router's weight patch moves the atomic `rules` list to `fledge-rollout`.
        let weighed = managed_marker(&meta(vec![
            entry(
                "fledge",
                "Apply",
                serde_json::json!({"f:spec": {"f:hostnames": {}}}),
            ),
            entry(
                "fledge-rollout",
                "Update",
                serde_json::json!({"f:spec": {"f:rules": {}}}),
            ),
            entry(
                "traefik",
                "Update",
                serde_json::json!({"f:status": {"f:parents": {}}}),
            ),
        ]));
        assert_eq!(applied, weighed);
        // kubectl edit of the rules takes them from both: drift.
        let edited = managed_marker(&meta(vec![
            entry(
                "fledge",
                "Apply",
                serde_json::json!({"f:spec": {"f:hostnames": {}}}),
            ),
            entry(
                "kubectl-edit",
                "Update",
                serde_json::json!({"f:spec": {"f:rules": {}}}),
            ),
        ]));
        assert_ne!(applied, edited);
        // The track label the rollout controller adds when it promotes is not sync's field.
        let template = serde_json::json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:template": {}}});
        let synced = managed_marker(&meta(vec![entry("fledge", "Apply", template.clone())]));
        let promoted = managed_marker(&meta(vec![
            entry("fledge", "Apply", template),
            entry(
                "fledge-rollout",
                "Apply",
                serde_json::json!({"f:metadata": {"f:labels": {"f:fledge.dev/track": {}}}, "f:spec": {"f:template": {}}}),
            ),
        ]));
        assert_eq!(synced, promoted);
        // The rollout controller alone is not sync owning anything.
        assert_eq!(
            managed_marker(&meta(vec![entry("fledge-rollout", "Update", rules)])),
            ""
        );
    }

    fn rendered(api_version: &str, kind: &str, mut object: Value) -> RenderedObject {
        object["apiVersion"] = api_version.into();
        object["kind"] = kind.into();
        object["metadata"] = serde_json::json!({"name": "web", "namespace": "n"});
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        RenderedObject {
            key: ObjectKey {
                group: group.into(),
                kind: kind.into(),
                namespace: "n".into(),
                name: "web".into(),
            },
            api_version: api_version.into(),
            hash: crate::render::hash(&object),
            object,
            sources: vec!["apps/web/deployment.yaml".into()],
        }
    }

    #[test]
    fn deployments_carry_their_template_hash_and_rollouts_their_target() {
        let d = rendered(
            "apps/v1",
            "Deployment",
            serde_json::json!({"spec": {"replicas": 2, "template": {"metadata": {"labels": {"a": "b"}}}}}),
        );
        let m = Manifest::of(&d);
        let th = m
            .template_hash
            .clone()
            .expect("a Deployment has a template hash");
        assert_eq!(
            m.value()["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION],
            Value::String(th.clone())
        );
        let held = m.holding_template(serde_json::json!({"metadata": {}}), Some("old"));
        assert_eq!(
            held.value()["spec"]["template"],
            serde_json::json!({"metadata": {}})
        );
        assert_eq!(held.value()["spec"]["replicas"], 2);
        assert_eq!(held.template_hash.as_deref(), Some("old"));
        let r = rendered(
            "fledge.dev/v1alpha1",
            "Rollout",
            serde_json::json!({"spec": {"targetRef": {"kind": "Deployment", "name": "web"}}}),
        );
        assert_eq!(Manifest::of(&r).rollout_target.as_deref(), Some("web"));
        let j = rendered("batch/v1", "Job", serde_json::json!({}));
        assert!(Manifest::of(&j).run_once);
    }

    #[test]
    fn a_rollout_names_the_route_it_weighs_and_sync_holds_its_weights() {
        let r = rendered(
            "fledge.dev/v1alpha1",
            "Rollout",
            serde_json::json!({"spec": {"targetRef": {"kind": "Deployment", "name": "web"},
                "service": "web", "traffic": {"gatewayAPI": {"httpRoute": "web-route"}}}}),
        );
        let hold = Manifest::of(&r).rollout_route.expect("a mesh router");
        assert_eq!(
            (hold.kind, hold.name.as_str(), hold.service.as_str()),
            (RouteKind::HttpRoute, "web-route", "web")
        );
        let rules = |s: u32, c: u32| {
            serde_json::json!({"spec": {"rules": [{"filters": [{"type": "X"}], "backendRefs": [
                {"name": "web-stable", "weight": s}, {"name": "web-canary", "weight": c}]}]}})
        };
        let route = Manifest::of(&rendered(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            rules(100, 0),
        ));
        let live = rules(60, 40);
        let held = route.holding_weights(&live, "web").value();
        assert_eq!(held["spec"], live["spec"]);
        assert_eq!(
            held["metadata"]["annotations"][CONTENT_HASH_ANNOTATION],
            Value::String(route.hash.clone())
        );
    }
}
