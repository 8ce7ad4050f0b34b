//! The mesh traffic routers end to end, with the route delivered by sync from a git repo and the
//! rollout driven by the in-process agent: the `gatewayAPI` router's weights read back at every
//! step and the request split measured through the real Traefik gateway to served pods, the
//! route's filters, header matches and unrelated rule unchanged byte for byte, a git change of
//! the route mid-rollout applied without moving traffic (and no sync loop on the route); the
//! `istio` router (CRD only, no Istio data plane here) read back at every step through an abort.

mod support;

use fledge::crd::{ConditionStatus, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::time::Duration;
use support::dataplane::{self, Target, demo_deployment, gateway};
use support::rollout::{deployment, fledge, rollout_where};
use support::sync::{
    Setup, bundle, cm_file, create_repo, is, ns_file, setup, start_agent, status_where,
};
use support::{GitRemote, eventually};

const FILES: &str = "[ns.yaml, cm.yaml, web.yaml, svc.yaml, route.yaml, web-rollout.yaml]";
const TRACKS: [&str; 3] = ["web-stable", "web-canary", "web-baseline"];

/// The served Deployment `web` (pods labelled `fledge.dev/track: stable`) running `version`.
fn web(version: &str) -> String {
    let d = demo_deployment(
        "web",
        "web",
        "stable",
        2,
        &[
            ("VERSION", version),
            ("LATENCY_MS", "0"),
            ("LATENCY_JITTER_MS", "0"),
        ],
    );
    serde_json::to_string(&d).unwrap()
}

fn svc() -> String {
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": dataplane::PORT}]},
    })
    .to_string()
}

/// An HTTPRoute on the env's Gateway: a header-matched rule pinned to the canary (with a
/// filter), the split rule (a filter, stable/canary/baseline at 100/0/0), and an unrelated rule.
fn http_route(host: &str, via: &str) -> Value {
    let backend = |name: &str, w: u32| json!({"name": name, "port": 80, "weight": w});
    let add = |name: &str, value: &str| {
        json!([{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"add": [{"name": name, "value": value}]}}])
    };
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "annotations": {"team": "shop"}},
        "spec": {
            "parentRefs": [{"name": "fledge-test", "namespace": "default"}],
            "hostnames": [host],
            "rules": [
                {"matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
                 "filters": add("x-pinned", "canary"),
                 "backendRefs": [backend("web-canary", 1)]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "filters": add("x-via", via),
                 "backendRefs": [backend("web-stable", 100), backend("web-canary", 0), backend("web-baseline", 0)]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                 "filters": add("x-admin", "yes"),
                 "backendRefs": [backend("web", 1)]},
            ],
        },
    })
}

fn rollout(traffic: &str, steps: &str) -> String {
    format!(
        "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: web\nspec:\n  targetRef: {{kind: Deployment, name: web}}\n  service: web\n  traffic: {traffic}\n  baseline: true\n  rollback: {{gitRevert: false}}\n  steps: {steps}\n"
    )
}

fn route_api(client: &kube::Client, ns: &str, group: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn read(api: &Api<DynamicObject>, name: &str) -> Value {
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// `(rules, backends, name pointer)` of a route kind.
fn lists(route: &Value) -> (&'static str, &'static str, &'static str) {
    match route["kind"].as_str() {
        Some("VirtualService") => ("http", "route", "/destination/host"),
        _ => ("rules", "backendRefs", "/name"),
    }
}

/// The track Service an entry names (a VirtualService host may be `web-stable.<ns>.svc…`).
fn track_of<'a>(entry: &'a Value, name: &str) -> &'a str {
    let n = entry.pointer(name).and_then(Value::as_str).unwrap_or("");
    n.split('.').next().unwrap_or("")
}

/// Stored weights of the split rule (index 1) for stable, canary and baseline.
fn weights(route: &Value) -> [i64; 3] {
    let (rules, backends, name) = lists(route);
    let list = route["spec"][rules][1][backends].as_array().unwrap();
    TRACKS.map(|t| {
        list.iter()
            .find(|b| track_of(b, name) == t)
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    })
}

/// Everything of the route the user wrote and fledge must not touch: the whole spec with only
/// the split rule's three track weights removed, and the labels and annotations, serialized.
fn untouched(route: &Value) -> String {
    let (rules, backends, name) = lists(route);
    let mut spec = route["spec"].clone();
    for b in spec[rules][1][backends].as_array_mut().unwrap() {
        if TRACKS.contains(&track_of(b, name)) {
            b.as_object_mut().unwrap().remove("weight");
        }
    }
    serde_json::to_string(&json!({
        "labels": route["metadata"]["labels"],
        "annotations": route["metadata"]["annotations"],
        "spec": spec,
    }))
    .unwrap()
}

/// Measures 2000 requests and checks the shares of stable, canary, baseline within ±5 points.
async fn split_follows(target: &Target, want: [f64; 3]) -> dataplane::Split {
    let close = |s: &dataplane::Split, slack: f64| {
        ["stable", "canary", "baseline"]
            .iter()
            .zip(want)
            .all(|(t, w)| (s.share(t) - w).abs() <= slack)
    };
    // The gateway reloads its configuration shortly after it reports the generation.
    dataplane::wait_split(
        "the gateway following the weights",
        target,
        200,
        Duration::from_secs(30),
        |s| close(s, 0.1),
    )
    .await;
    let split = dataplane::measure(target, 250.0, 2000).await;
    eprintln!("weights {want:?}: {split:?}");
    assert!(split.ok() >= 1990, "{split:?}");
    assert!(
        close(&split, 0.05),
        "measured split off the weights {want:?}: {split:?}"
    );
    split
}

/// The field managers owning the route's `spec.rules` (main resource, not status).
async fn rules_owners(api: &Api<DynamicObject>) -> Vec<String> {
    let r = api.get("web").await.unwrap();
    r.metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.subresource.is_none())
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:rules"))
                .is_some()
        })
        .filter_map(|e| e.manager)
        .collect()
}

async fn deployment_gone(api: &Api<Deployment>, name: &str) -> bool {
    api.get_opt(name).await.ok().flatten().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_router_steps_real_traffic_and_keeps_the_route() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("rogw", "rogw").await;
    let host = format!("web.{ns}.test");
    let steps = "[{setWeight: 10}, {pause: {}}, {setWeight: 40}, {pause: {}}]";
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, FILES)),
        ("ns.yaml", ns_file(&ns)),
        ("cm.yaml", cm_file("cm-unrelated", "1")),
        ("web.yaml", web("v1")),
        ("svc.yaml", svc()),
        ("route.yaml", http_route(&host, "gw").to_string()),
        (
            "web-rollout.yaml",
            rollout("{gatewayAPI: {httpRoute: web}}", steps),
        ),
    ]);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 90, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    dataplane::wait_serving(&client, &ns, "app=web", 2).await;
    let routes = route_api(&client, &ns, "gateway.networking.k8s.io", "HTTPRoute");
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);

    // The router made the track Services from `web`: its ports, its selector plus the track.
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let stable_svc = eventually("the track Services", Duration::from_secs(60), || async {
        for t in TRACKS {
            services.get_opt(t).await.ok()??;
        }
        services.get_opt("web-stable").await.ok()?
    })
    .await;
    let spec = stable_svc.spec.unwrap();
    assert_eq!(
        serde_json::to_value(spec.selector).unwrap(),
        json!({"app": "web", "fledge.dev/track": "stable"})
    );
    assert_eq!(spec.ports.unwrap()[0].port, 80);

    let target = gateway(&env, &host, "/");
    dataplane::wait_split(
        "all traffic on stable",
        &target,
        100,
        Duration::from_secs(60),
        |s| s.share("stable") == 1.0,
    )
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [100, 0, 0]);
    let user_fields = untouched(&route);

    // Step 1: canary and baseline at 10 % each, read back and measured at the gateway.
    remote.commit(&[("web.yaml", web("v2"))], &[], "web v2");
    let st = rollout_where(&client, &ns, "web", "paused at 10%", 120, |s| {
        s.phase == Phase::Paused && s.current_step == Some(1) && s.actual_weight == Some(10)
    })
    .await;
    assert_eq!(st.actual_baseline_weight, Some(10), "{st:#?}");
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [80, 10, 10]);
    assert_eq!(
        untouched(&route),
        user_fields,
        "only the three weights changed"
    );
    let split = split_follows(&target, [0.8, 0.1, 0.1]).await;
    assert_eq!(
        split.by_pod.len(),
        4,
        "2 stable + 1 canary + 1 baseline pod served: {split:?}"
    );
    // The header rule pinned to the canary, with its filter, and the unrelated rule still work.
    let pinned = dataplane::split::get(&gateway(&env, &host, "/").header("x-canary", "always"))
        .await
        .unwrap();
    assert_eq!(pinned.header("x-fledge-track"), Some("canary"));
    assert!(
        pinned
            .header("x-fledge-request-headers")
            .unwrap()
            .contains("x-pinned")
    );
    let admin = dataplane::split::get(&gateway(&env, &host, "/admin"))
        .await
        .unwrap();
    assert_eq!(admin.status, 200);
    assert!(
        admin
            .header("x-fledge-request-headers")
            .unwrap()
            .contains("x-admin")
    );

    // Git changes the split rule's filter mid-rollout: sync applies it, with the weights held.
    let sha = remote.commit(
        &[("route.yaml", http_route(&host, "gw2").to_string())],
        &[],
        "route: x-via gw2",
    );
    status_where(&client, &repo, "the route change applied", 60, |s| {
        s.applied_commit.as_deref() == Some(sha.as_str())
    })
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(
        weights(&route),
        [80, 10, 10],
        "sync kept the rollout's weights"
    );
    let via = route.pointer("/spec/rules/1/filters/0/requestHeaderModifier/add/0/value");
    assert_eq!(via, Some(&json!("gw2")));
    let user_fields = untouched(&route);
    // The next commits leave the route alone: no drift seen in the router's weights, no loop.
    let generation = route["metadata"]["generation"].clone();
    let sha = remote.commit(
        &[("cm.yaml", cm_file("cm-unrelated", "2"))],
        &[],
        "unrelated",
    );
    status_where(&client, &repo, "an unrelated commit applied", 60, |s| {
        s.applied_commit.as_deref() == Some(sha.as_str())
    })
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(
        route["metadata"]["generation"], generation,
        "sync did not write the route again"
    );
    assert_eq!(weights(&route), [80, 10, 10]);

    // Step 3: 40 % each.
    let (ok, out, err) = fledge(&env, &["promote", &format!("{ns}/web")]);
    assert!(ok, "{out}{err}");
    rollout_where(&client, &ns, "web", "paused at 40%", 120, |s| {
        s.phase == Phase::Paused && s.current_step == Some(3) && s.actual_weight == Some(40)
    })
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [20, 40, 40]);
    assert_eq!(untouched(&route), user_fields);
    split_follows(&target, [0.2, 0.4, 0.4]).await;
    // Sync does not take the router's weight write for drift: after another applied commit the
    // rule list is still the rollout controller's alone (a repair would have re-applied it).
    let sha = remote.commit(
        &[("cm.yaml", cm_file("cm-unrelated", "3"))],
        &[],
        "unrelated 2",
    );
    status_where(&client, &repo, "another commit applied", 60, |s| {
        s.applied_commit.as_deref() == Some(sha.as_str())
    })
    .await;
    let owners = rules_owners(&routes).await;
    assert_eq!(
        owners,
        ["fledge-rollout"],
        "sync left the weighed route alone"
    );
    assert_eq!(weights(&read(&routes, "web").await), [20, 40, 40]);

    // Promotion: stable runs v2, all traffic back on it, canary and baseline gone.
    let (ok, out, err) = fledge(&env, &["promote", &format!("{ns}/web")]);
    assert!(ok, "{out}{err}");
    rollout_where(&client, &ns, "web", "promoted and Healthy", 180, |s| {
        s.phase == Phase::Healthy
            && s.handoff.as_ref().is_some_and(|h| {
                s.stable_template_hash.as_deref() == Some(h.template_hash.as_str())
            })
    })
    .await;
    eventually(
        "canary and baseline gone",
        Duration::from_secs(60),
        || async {
            (deployment_gone(&deployments, "web-canary").await
                && deployment_gone(&deployments, "web-baseline").await)
                .then_some(())
        },
    )
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [100, 0, 0]);
    assert_eq!(untouched(&route), user_fields);
    let split = split_follows(&target, [1.0, 0.0, 0.0]).await;
    assert_eq!(split.by_pod.len(), 2, "{split:?}");
    let answer = dataplane::split::get(&target).await.unwrap();
    assert_eq!(answer.header("x-fledge-version"), Some("v2"));
}

/// A VirtualService over the track Services, with retries, a header match and another route.
fn virtual_service(ns: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "labels": {"team": "shop"}},
        "spec": {
            "hosts": [format!("web.{ns}.svc.cluster.local")],
            "http": [
                {"name": "pinned", "match": [{"headers": {"x-canary": {"exact": "always"}}}],
                 "route": [{"destination": {"host": "web-canary"}}]},
                {"name": "split", "retries": {"attempts": 3, "perTryTimeout": "2s"},
                 "headers": {"request": {"add": {"x-via": "mesh"}}},
                 "route": [
                     {"destination": {"host": format!("web-stable.{ns}.svc.cluster.local"), "port": {"number": 80}}, "weight": 100},
                     {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 0},
                     {"destination": {"host": "web-baseline", "port": {"number": 80}}, "weight": 0}]},
                {"name": "legacy", "route": [{"destination": {"host": "legacy.other.svc.cluster.local"}}]},
            ],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_router_sets_weights_and_aborts_back_to_stable_keeping_the_route() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("rois", "rois").await;
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, FILES)),
        ("ns.yaml", ns_file(&ns)),
        ("cm.yaml", cm_file("cm-unrelated", "1")),
        ("web.yaml", deployment("web", 3, "v1")),
        ("svc.yaml", svc()),
        ("route.yaml", virtual_service(&ns).to_string()),
        (
            "web-rollout.yaml",
            rollout(
                "{istio: {virtualService: web}}",
                "[{setWeight: 20}, {pause: {}}]",
            ),
        ),
    ]);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 90, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    let routes = route_api(&client, &ns, "networking.istio.io", "VirtualService");
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    rollout_where(&client, &ns, "web", "Healthy", 60, |s| {
        s.phase == Phase::Healthy
    })
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [100, 0, 0]);
    let user_fields = untouched(&route);

    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let st = rollout_where(&client, &ns, "web", "paused at 20%", 120, |s| {
        s.phase == Phase::Paused && s.current_step == Some(1) && s.actual_weight == Some(20)
    })
    .await;
    assert_eq!(st.actual_baseline_weight, Some(20), "{st:#?}");
    assert_eq!(st.weight.as_deref(), Some("20/20"), "set/actual");
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [60, 20, 20]);
    assert_eq!(
        untouched(&route),
        user_fields,
        "only the three weights changed"
    );

    let (ok, out, err) = fledge(&env, &["abort", &format!("{ns}/web")]);
    assert!(ok, "{out}{err}");
    rollout_where(&client, &ns, "web", "RolledBack", 120, |s| {
        s.phase == Phase::RolledBack
    })
    .await;
    eventually(
        "canary and baseline gone",
        Duration::from_secs(60),
        || async {
            (deployment_gone(&deployments, "web-canary").await
                && deployment_gone(&deployments, "web-baseline").await)
                .then_some(())
        },
    )
    .await;
    let route = read(&routes, "web").await;
    assert_eq!(weights(&route), [100, 0, 0], "all traffic back on stable");
    assert_eq!(untouched(&route), user_fields);
}
