//! Unit tests of the router's requests against a scripted API server: the weight write is one
//! JSON patch of weights only, as `fledge-rollout`; nothing is written when the route already
//! stores the weights; the track Services copy the Service's ports and selector.

use super::*;
use crate::controller::tests::{Scenario, call};
use http::Method;

const ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web-route";

fn rollout() -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "service": "web",
                 "traffic": {"gatewayAPI": {"httpRoute": "web-route"}}, "steps": [{"setWeight": 10}]},
    }))
    .expect("a valid Rollout")
}

fn route(stable: i64, canary: i64, baseline: i64) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web-route", "namespace": "shop", "generation": 1},
        "spec": {"rules": [
            {"matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
             "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}]},
            {"filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"add": [{"name": "x-a", "value": "b"}]}}],
             "backendRefs": [
                {"name": "web-stable", "port": 80, "weight": stable},
                {"name": "web-canary", "port": 80, "weight": canary},
                {"name": "web-baseline", "port": 80, "weight": baseline}]}]},
        "status": {"parents": [{"controllerName": "gw", "conditions": [
            {"type": "Accepted", "status": "True", "observedGeneration": 1},
            {"type": "ResolvedRefs", "status": "True", "observedGeneration": 1}]}]},
    })
}

#[tokio::test]
async fn set_weight_patches_only_the_split_rules_weights_as_the_rollout_controller() {
    let ops_ok = |b: &Value| {
        let Some(ops) = b.as_array() else {
            return false;
        };
        let writes: Vec<(&str, &Value)> = ops
            .iter()
            .filter(|o| o["op"] != "test")
            .map(|o| (o["path"].as_str().unwrap_or(""), &o["value"]))
            .collect();
        writes
            == [
                ("/spec/rules/1/backendRefs/0/weight", &json!(80)),
                ("/spec/rules/1/backendRefs/1/weight", &json!(10)),
                ("/spec/rules/1/backendRefs/2/weight", &json!(10)),
            ]
            && ops.iter().filter(|o| o["op"] == "test").count() == 6
            && ops.iter().all(|o| o["op"] == "test" || o["op"] == "add")
    };
    let (s, client) = Scenario::new(vec![
        call(Method::GET, ROUTE, |_| true, 200, route(100, 0, 0)),
        call(
            Method::PATCH,
            &format!("{ROUTE}?&fieldManager=fledge-rollout"),
            ops_ok,
            200,
            route(80, 10, 10),
        ),
        // Asked again with the weights stored: read, nothing written.
        call(Method::GET, ROUTE, |_| true, 200, route(80, 10, 10)),
    ]);
    let ro = rollout();
    assert_eq!(
        set_weight(&client, &ro, 10, 10).await.unwrap(),
        Written::Patched
    );
    assert_eq!(
        set_weight(&client, &ro, 10, 10).await.unwrap(),
        Written::Unchanged(None)
    );
    s.verify();
}

#[tokio::test]
async fn a_route_without_a_split_rule_is_an_error_naming_the_route() {
    let mut r = route(100, 0, 0);
    r["spec"]["rules"][1]["backendRefs"][0]["name"] = json!("other");
    let (s, client) = Scenario::new(vec![call(Method::GET, ROUTE, |_| true, 200, r)]);
    let e = set_weight(&client, &rollout(), 10, 10).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("HTTPRoute web-route: no rule lists both web-stable and web-canary"),
        "{e}"
    );
    s.verify();
}

#[test]
fn track_services_copy_ports_and_selector_and_add_the_track() {
    let mut ro = rollout();
    ro.metadata.uid = Some("u-1".into());
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
    }))
    .unwrap();
    let body = track_service(&ro, &svc, "web-canary", "canary");
    assert_eq!(
        body["spec"],
        json!({"selector": {"app": "web", "fledge.dev/track": "canary"},
               "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]})
    );
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
    let live: Service = serde_json::from_value(body.clone()).unwrap();
    assert!(matches(&live, &body));
}
