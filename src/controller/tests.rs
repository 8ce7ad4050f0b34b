//! Unit tests of the reconcile steps against a scripted API server: each scenario names the
//! calls it expects (method, path with query, and what the body must say) and fails on a
//! missing, extra or different call. Kubernetes behaviour itself is tested against the real
//! control plane (tests/sync_*.rs); these pin down which requests each step makes. The rollout
//! controller's executor tests (`rollouts/tests.rs`) reuse the scripted server.

use super::steps::InventoryRead;
use super::{Agent, AgentOptions};
use crate::apply::Manifest;
use crate::crd::{ConfigRepo, ConfigRepoSpec, InventoryEntry};
use crate::plan::{self, Live, Policy};
use crate::render::{ObjectKey, RenderedObject};
use crate::server::Metrics;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One expected call and the answer to it.
pub(super) struct Call {
    method: Method,
    path: String,
    /// Checks the request body.
    body: Box<dyn Fn(&Value) -> bool + Send>,
    status: u16,
    answer: Value,
}

pub(super) fn call(
    method: Method,
    path: &str,
    body: impl Fn(&Value) -> bool + Send + 'static,
    status: u16,
    answer: Value,
) -> Call {
    Call {
        method,
        path: path.into(),
        body: Box::new(body),
        status,
        answer,
    }
}

/// A scripted API server: calls must come in the given order.
#[derive(Clone)]
pub(super) struct Scenario {
    calls: Arc<Mutex<Vec<Call>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Scenario {
    pub(super) fn new(calls: Vec<Call>) -> (Scenario, kube::Client) {
        let s = Scenario {
            calls: Arc::new(Mutex::new(calls.into_iter().rev().collect())),
            errors: Arc::default(),
        };
        let me = s.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let next = me.calls.lock().unwrap().pop();
                let (status, answer) = match next {
                    None => {
                        me.errors
                            .lock()
                            .unwrap()
                            .push(format!("unexpected call {} {path}", parts.method));
                        (500, json!({}))
                    }
                    Some(c) => {
                        if c.method != parts.method || c.path != path {
                            me.errors.lock().unwrap().push(format!(
                                "expected {} {}, got {} {path}",
                                c.method, c.path, parts.method
                            ));
                        } else if !(c.body)(&body) {
                            me.errors
                                .lock()
                                .unwrap()
                                .push(format!("{} {path}: unexpected body {body}", c.method));
                        }
                        (c.status, c.answer)
                    }
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                )
            }
        });
        (s, kube::Client::new(service, "default"))
    }

    /// Fails the test on a wrong, extra or missing call.
    pub(super) fn verify(&self) {
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "{errors:#?}");
        let left = self.calls.lock().unwrap();
        let missing: Vec<String> = left
            .iter()
            .map(|c| format!("{} {}", c.method, c.path))
            .collect();
        assert!(missing.is_empty(), "calls not made: {missing:?}");
    }
}

fn agent(client: kube::Client) -> Arc<Agent> {
    let opts = AgentOptions {
        namespace: "fledge-system".into(),
        cache_dir: std::env::temp_dir(),
        lease: None,
        concurrency: 1,
        drift_debounce: Duration::from_millis(10),
        selector: None,
        secret_namespaces: Vec::new(),
        workers: 1,
        rollout_workers: 1,
        cluster: "test".into(),
        dashboard_url: None,
        rollback_author: None,
    };
    Agent::new(client, opts, Arc::new(Metrics::default()))
}

fn manifest(api_version: &str, kind: &str, name: &str, object: Value) -> Arc<Manifest> {
    let mut object = object;
    object["apiVersion"] = api_version.into();
    object["kind"] = kind.into();
    object["metadata"] = json!({"name": name, "namespace": "shop"});
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    Arc::new(Manifest::from_rendered(RenderedObject {
        key: ObjectKey {
            group: group.into(),
            kind: kind.into(),
            namespace: "shop".into(),
            name: name.into(),
        },
        api_version: api_version.into(),
        hash: crate::render::hash(&object),
        object,
        sources: vec![format!("apps/{name}.yaml")],
    }))
}

fn repo() -> ConfigRepo {
    let spec: ConfigRepoSpec =
        serde_json::from_value(json!({"url": "https://git.example/x", "path": "."})).unwrap();
    let mut r = ConfigRepo::new("shop", spec);
    r.status = Some(Default::default());
    r
}

const STATUS_PATH: &str =
    "/apis/fledge.dev/v1alpha1/configrepos/shop/status?&force=true&fieldManager=fledge";

#[tokio::test]
async fn record_intent_writes_the_creates_into_the_inventory_before_anything_is_applied() {
    let desired = vec![manifest(
        "v1",
        "ConfigMap",
        "a",
        json!({"data": {"x": "1"}}),
    )];
    let p = plan::plan(&desired, &BTreeMap::new(), &[], &Policy::default());
    let (scenario, client) = Scenario::new(vec![call(
        Method::PATCH,
        STATUS_PATH,
        |b| {
            let inv = &b["status"]["inventory"];
            inv.as_array().is_some_and(|a| a.len() == 1)
                && inv[0]["name"] == "a"
                && inv[0]["kind"] == "ConfigMap"
                // Recorded ahead of the create: no marker yet.
                && inv[0].get("observed").is_none_or(|o| o == "")
        },
        200,
        json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "metadata": {"name": "shop"}, "spec": {"url": "x", "path": "."}}),
    )]);
    let a = agent(client);
    let inv = InventoryRead {
        entries: vec![],
        lost: false,
    };
    a.record_intent(&repo(), &desired, &p, &inv)
        .await
        .expect("recorded");
    scenario.verify();
}

#[tokio::test]
async fn record_intent_writes_nothing_when_nothing_is_created() {
    let desired = vec![manifest(
        "v1",
        "ConfigMap",
        "a",
        json!({"data": {"x": "1"}}),
    )];
    let entry: InventoryEntry = plan::entry_of(&desired[0], "m1".into());
    let live = BTreeMap::from([(
        desired[0].key.clone(),
        Live {
            hash: Some("old".into()),
            marker: "m1".into(),
            template_hash: None,
            prune_disabled: false,
            labelled: true,
        },
    )]);
    let p = plan::plan(
        &desired,
        &live,
        std::slice::from_ref(&entry),
        &Policy::default(),
    );
    let (scenario, client) = Scenario::new(vec![]);
    let a = agent(client);
    let inv = InventoryRead {
        entries: vec![entry],
        lost: false,
    };
    a.record_intent(&repo(), &desired, &p, &inv)
        .await
        .expect("nothing to record");
    scenario.verify();
}

fn governed() -> (Vec<Arc<Manifest>>, plan::Plan) {
    let desired = vec![
        manifest(
            "apps/v1",
            "Deployment",
            "web",
            json!({"spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "web:2"}]}}}}),
        ),
        manifest(
            "fledge.dev/v1alpha1",
            "Rollout",
            "web",
            json!({"spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "service": "web"}}),
        ),
    ];
    let live_of = |h: &str, t: Option<&str>| Live {
        hash: Some(h.into()),
        marker: "m1".into(),
        template_hash: t.map(str::to_owned),
        prune_disabled: false,
        labelled: true,
    };
    let live = BTreeMap::from([
        (
            desired[0].key.clone(),
            live_of(
                &plan::held_hash(&desired[0].hash, Some("old-template")),
                Some("old-template"),
            ),
        ),
        (desired[1].key.clone(), live_of(&desired[1].hash, None)),
    ]);
    let inv: Vec<InventoryEntry> = desired
        .iter()
        .map(|m| plan::entry_of(m, "m1".into()))
        .collect();
    let p = plan::plan(&desired, &live, &inv, &Policy::default());
    (desired, p)
}

#[tokio::test]
async fn hand_off_records_the_template_on_the_rollout_with_its_own_field_manager() {
    let (desired, p) = governed();
    assert!(p.apply.is_empty() && p.handoffs.len() == 1, "{p:?}");
    let th = desired[0].template_hash.clone().unwrap();
    let rollout = json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "service": "web"}});
    let th2 = th.clone();
    let (scenario, client) = Scenario::new(vec![
        call(
            Method::GET,
            "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/web",
            |_| true,
            200,
            rollout.clone(),
        ),
        call(
            Method::PATCH,
            "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/web/status?&force=true&fieldManager=fledge-sync",
            move |b| {
                let h = &b["status"]["handoff"];
                h["templateHash"] == th2.as_str()
                    && h["revision"] == "c0ffee"
                    && h["provenance"] == json!(["apps/web.yaml"])
                    && h["replicas"] == 2
                    && h["template"]["spec"]["containers"][0]["image"] == "web:2"
                    && b["status"].as_object().is_some_and(|s| s.len() == 1)
            },
            200,
            rollout,
        ),
    ]);
    let handed = agent(client).hand_off("c0ffee", &desired, &p).await;
    scenario.verify();
    assert_eq!(handed.recorded.len(), 1);
}

#[tokio::test]
async fn a_hand_off_already_recorded_is_not_written_again() {
    let (desired, p) = governed();
    let th = desired[0].template_hash.clone().unwrap();
    let rollout = json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "service": "web"},
        "status": {"handoff": {"templateHash": th, "revision": "older", "template": {}}}});
    let (scenario, client) = Scenario::new(vec![call(
        Method::GET,
        "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/web",
        |_| true,
        200,
        rollout,
    )]);
    let handed = agent(client).hand_off("c0ffee", &desired, &p).await;
    scenario.verify();
    assert!(handed.recorded.is_empty() && handed.failed.is_empty());
}

#[tokio::test]
async fn prune_deletes_only_what_the_plan_allows() {
    let gone = InventoryEntry {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: "shop".into(),
        name: "old".into(),
        observed: "m1".into(),
    };
    let live = BTreeMap::from([(
        plan::entry_key(&gone),
        Live {
            hash: None,
            marker: "m1".into(),
            template_hash: None,
            prune_disabled: false,
            labelled: true,
        },
    )]);
    let keep = manifest("v1", "ConfigMap", "keep", json!({}));
    let inv = vec![gone.clone(), plan::entry_of(&keep, "m2".into())];
    let p = plan::plan(std::slice::from_ref(&keep), &live, &inv, &Policy::default());
    // Discovery of v1 ConfigMap, then the delete.
    let (scenario, client) = Scenario::new(vec![
        call(
            Method::GET,
            "/api/v1",
            |_| true,
            200,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap", "verbs": ["get", "delete", "patch"]}]}),
        ),
        call(
            Method::DELETE,
            "/api/v1/namespaces/shop/configmaps/old?",
            |b| b["propagationPolicy"] == "Background",
            200,
            json!({"kind": "Status", "status": "Success"}),
        ),
    ]);
    let pruned = agent(client).prune(&p, false).await;
    scenario.verify();
    assert_eq!(pruned.deleted.len(), 1);
    // Prune turned off: no call at all.
    let off = plan::plan(
        std::slice::from_ref(&keep),
        &live,
        &inv,
        &Policy {
            prune: false,
            ..Policy::default()
        },
    );
    let (scenario, client) = Scenario::new(vec![]);
    let pruned = agent(client).prune(&off, false).await;
    scenario.verify();
    assert!(pruned.deleted.is_empty());
    assert_eq!(pruned.decision, plan::PruneDecision::Disabled);
}
