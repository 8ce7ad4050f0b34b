//! Unit tests of the route arithmetic: the weight patch applied to realistic routes changes only
//! the weights of split rules, reading back gives the asked shares, sync's hold keeps them.

use super::*;

fn backends() -> Backends {
    Backends::of("web", "shop")
}

/// An HTTPRoute with a header-matched rule pinned to the canary (with a filter), a split rule
/// with a filter, a timeout and an unrelated backend, and an unrelated rule.
fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "generation": 3,
                     "annotations": {"team": "shop"}},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": "default"}],
            "hostnames": ["shop.test"],
            "rules": [
                {"matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"add": [{"name": "x-pinned", "value": "1"}]}}],
                 "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"set": [{"name": "x-via", "value": "gw"}]}}],
                 "timeouts": {"request": "5s"},
                 "backendRefs": [
                     {"name": "web-stable", "port": 80, "weight": 100},
                     {"name": "web-canary", "port": 80, "weight": 0},
                     {"name": "web-baseline", "port": 80, "weight": 0},
                     {"name": "legacy", "port": 8080, "weight": 7}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                 "backendRefs": [{"name": "admin", "port": 80}]}
            ]
        },
        "status": {"parents": [{"controllerName": "traefik.io/gateway-controller",
            "parentRef": {"name": "gw"},
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 3},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 3}]}]}
    })
}

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "hosts": ["web"],
            "http": [
                {"name": "split", "retries": {"attempts": 3},
                 "route": [
                     {"destination": {"host": "web-stable.shop.svc.cluster.local", "port": {"number": 80}}, "weight": 100},
                     {"destination": {"host": "web-canary", "port": {"number": 80}}},
                     {"destination": {"host": "web-baseline.shop"}, "weight": 0}]},
                {"name": "other", "route": [{"destination": {"host": "web-canary.elsewhere"}}]}
            ]
        }
    })
}

/// The route with every `weight` of the split rules' track entries removed.
fn without_track_weights(kind: RouteKind, mut v: Value) -> Value {
    let b = backends();
    let (rules_key, entries_key) = kind.lists();
    let list: Vec<(usize, Vec<usize>)> = splits(kind, &v, &b)
        .unwrap()
        .iter()
        .map(|s| (s.rule, s.refs.iter().flatten().copied().collect()))
        .collect();
    for (i, js) in list {
        for j in js {
            v["spec"][rules_key][i][entries_key][j]
                .as_object_mut()
                .unwrap()
                .remove("weight");
        }
    }
    v
}

fn patched(route: &Value, ops: Vec<Value>) -> Value {
    let mut out = route.clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

#[test]
fn the_weight_patch_changes_only_the_split_rules_track_weights() {
    let route = http_route();
    let ops = weight_patch(RouteKind::HttpRoute, &route, &backends(), weights(10, 10)).unwrap();
    // Every write is a weight of the split rule (rule 1), each guarded by a name test.
    let writes: Vec<&str> = ops
        .iter()
        .filter(|o| o["op"] == "add")
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        writes,
        [
            "/spec/rules/1/backendRefs/0/weight",
            "/spec/rules/1/backendRefs/1/weight",
            "/spec/rules/1/backendRefs/2/weight"
        ]
    );
    assert!(ops.iter().any(|o| o["op"] == "test"
        && o["path"] == "/spec/rules/1/backendRefs/1/name"
        && o["value"] == "web-canary"));
    let after = patched(&route, ops);
    assert_eq!(
        after.pointer("/spec/rules/1/backendRefs").unwrap(),
        &json!([
            {"name": "web-stable", "port": 80, "weight": 80},
            {"name": "web-canary", "port": 80, "weight": 10},
            {"name": "web-baseline", "port": 80, "weight": 10},
            {"name": "legacy", "port": 8080, "weight": 7}])
    );
    // Everything else byte for byte: the pinned rule, filters, timeouts, other rules, metadata.
    assert_eq!(
        serde_json::to_string(&without_track_weights(RouteKind::HttpRoute, after.clone())).unwrap(),
        serde_json::to_string(&without_track_weights(RouteKind::HttpRoute, route.clone())).unwrap()
    );
    assert_eq!(
        stored(RouteKind::HttpRoute, &after, &backends()),
        Ok(RouterObs {
            canary: 10,
            baseline: 10
        })
    );
    // Asking again: nothing to write.
    assert_eq!(
        weight_patch(RouteKind::HttpRoute, &after, &backends(), weights(10, 10)),
        Ok(vec![])
    );
}

#[test]
fn a_patch_against_a_reordered_route_fails_its_tests() {
    let route = http_route();
    let ops = weight_patch(RouteKind::HttpRoute, &route, &backends(), weights(50, 50)).unwrap();
    let mut moved = route.clone();
    moved["spec"]["rules"][1]["backendRefs"]
        .as_array_mut()
        .unwrap()
        .swap(0, 3);
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
    assert!(json_patch::patch(&mut moved, &patch).is_err());
}

#[test]
fn virtual_service_destinations_are_matched_by_host_in_the_namespace() {
    let vs = virtual_service();
    let b = backends();
    // The canary has no weight beside others: 0 for Istio.
    assert_eq!(
        stored(RouteKind::VirtualService, &vs, &b),
        Ok(RouterObs::default())
    );
    let ops = weight_patch(RouteKind::VirtualService, &vs, &b, weights(40, 40)).unwrap();
    assert!(ops.iter().all(|o| {
        o["path"]
            .as_str()
            .unwrap()
            .starts_with("/spec/http/0/route/")
    }));
    assert!(ops.iter().any(|o| o["op"] == "test"
        && o["path"] == "/spec/http/0/route/1/destination/host"
        && o["value"] == "web-canary"));
    let after = patched(&vs, ops);
    assert_eq!(
        achieved(RouteKind::VirtualService, &after, &b),
        Ok(RouterObs {
            canary: 40,
            baseline: 40
        })
    );
    assert_eq!(
        without_track_weights(RouteKind::VirtualService, after.clone()),
        without_track_weights(RouteKind::VirtualService, vs.clone())
    );
    // `web-canary.elsewhere` is another namespace's Service: rule 1 is not a split rule.
    assert_eq!(after["spec"]["http"][1], vs["spec"]["http"][1]);
}

#[test]
fn routes_that_cannot_be_split_say_why() {
    let b = backends();
    let mut no_split = http_route();
    no_split["spec"]["rules"][1]["backendRefs"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    assert!(matches!(
        weight_patch(RouteKind::HttpRoute, &no_split, &b, weights(10, 10)),
        Err(RouteError::NoSplitRule { .. })
    ));
    let mut no_baseline = http_route();
    no_baseline["spec"]["rules"][1]["backendRefs"]
        .as_array_mut()
        .unwrap()
        .remove(2);
    assert_eq!(
        weight_patch(RouteKind::HttpRoute, &no_baseline, &b, weights(10, 10)),
        Err(RouteError::Missing {
            rule: 1,
            service: "web-baseline".into(),
            weight: 10
        })
    );
    // Without a baseline the rule needs none.
    assert!(weight_patch(RouteKind::HttpRoute, &no_baseline, &b, weights(10, 0)).is_ok());
    let mut twice = http_route();
    twice["spec"]["rules"][1]["backendRefs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "web-canary", "port": 81}));
    assert!(matches!(
        stored(RouteKind::HttpRoute, &twice, &b),
        Err(RouteError::Duplicate { rule: 1, .. })
    ));
    // Two split rules storing different weights: reported, not averaged.
    let mut two = http_route();
    let mut second = two["spec"]["rules"][1].clone();
    second["backendRefs"][1]["weight"] = json!(30);
    two["spec"]["rules"].as_array_mut().unwrap().push(second);
    assert!(matches!(
        stored(RouteKind::HttpRoute, &two, &b),
        Err(RouteError::Disagree(_))
    ));
}

#[test]
fn an_http_route_achieves_nothing_until_the_gateway_accepts_its_generation() {
    let b = backends();
    let mut route = http_route();
    assert!(achieved(RouteKind::HttpRoute, &route, &b).is_ok());
    route["metadata"]["generation"] = json!(4);
    let e = achieved(RouteKind::HttpRoute, &route, &b).unwrap_err();
    assert!(e.to_string().contains("generation 3 of 4"), "{e}");
    assert!(matches!(e, RouteError::NotObserved(_)), "{e:?}");
    route["metadata"]["generation"] = json!(3);
    route["status"]["parents"][0]["conditions"][1]["status"] = json!("False");
    route["status"]["parents"][0]["conditions"][1]["reason"] = json!("BackendNotFound");
    let e = achieved(RouteKind::HttpRoute, &route, &b).unwrap_err();
    assert!(
        e.to_string()
            .contains("ResolvedRefs=False (BackendNotFound"),
        "{e}"
    );
    assert!(matches!(e, RouteError::NotAccepted(_)), "{e:?}");
    route["status"] = json!({});
    assert!(matches!(
        achieved(RouteKind::HttpRoute, &route, &b),
        Err(RouteError::NotObserved(_))
    ));
}

#[test]
fn sync_holds_the_live_weights_and_takes_everything_else_from_git() {
    let b = backends();
    let live = patched(
        &http_route(),
        weight_patch(RouteKind::HttpRoute, &http_route(), &b, weights(40, 40)).unwrap(),
    );
    // Git changed the split rule's filter and still says 100/0/0.
    let mut git = http_route();
    git["spec"]["rules"][1]["filters"][0]["requestHeaderModifier"]["set"][0]["value"] =
        json!("gw2");
    let mut held = git.clone();
    assert!(hold(RouteKind::HttpRoute, &mut held, &live, &b));
    assert_eq!(
        stored(RouteKind::HttpRoute, &held, &b),
        Ok(RouterObs {
            canary: 40,
            baseline: 40
        })
    );
    assert_eq!(
        held.pointer("/spec/rules/1/filters/0/requestHeaderModifier/set/0/value"),
        Some(&json!("gw2"))
    );
    assert_eq!(held["spec"]["rules"][1]["backendRefs"][3]["weight"], 7);
    assert_eq!(
        without_track_weights(RouteKind::HttpRoute, held.clone()),
        without_track_weights(RouteKind::HttpRoute, git.clone())
    );
    // Holding again changes nothing.
    assert!(!hold(RouteKind::HttpRoute, &mut held, &live, &b));
}
