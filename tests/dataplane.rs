//! The env's data plane with real traffic: the pod runner serving the pods that opt in (and
//! following scale-downs, deletions and its own restart), Prometheus finding them through
//! Kubernetes service discovery, and Traefik splitting requests by HTTPRoute weights, matching
//! headers, applying request-header filters and balancing a Service's pods.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use std::time::Duration;
use support::dataplane::{self, PORT, Target, apply, demo_deployment, gateway, service};
use support::{Env, TestNamespace, eventually};

const NO_LATENCY: &[(&str, &str)] = &[("LATENCY_MS", "0"), ("LATENCY_JITTER_MS", "0")];

/// An HTTPRoute on the env's Gateway for `host` with the given rules.
fn route(name: &str, host: &str, rules: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "fledge-test", "namespace": "default"}],
            "hostnames": [host],
            "rules": rules,
        },
    })
}

fn backend(name: &str, weight: u32) -> serde_json::Value {
    serde_json::json!({"name": name, "port": 80, "weight": weight})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runner_follows_pods_and_survives_its_restart() {
    let env = Env::get();
    let client = env.client().await;
    let ns = TestNamespace::new(&client, &env, "dp-runner").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let d = demo_deployment("web", "web", "stable", 3, &[("VERSION", "v1")]);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    let pods = dataplane::wait_serving(&client, &ns.name, "app=web", 3).await;
    let mut pids = Vec::new();
    for (name, ip) in &pods {
        assert!(ip.starts_with("127."), "pod {name} has a loopback IP: {ip}");
        let r = dataplane::split::get(&Target::from_url(&format!("http://{ip}:{PORT}/")).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-fledge-track"), Some("stable"));
        assert_eq!(
            r.header("x-fledge-version"),
            Some("v1"),
            "VERSION from the pod's env"
        );
        pids.push(dataplane::demo_app_pid(&env, ip).expect("a demo-app process for the pod"));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "one process per pod: {pids:?}");

    // A restarted runner adopts the processes: same pids, still serving.
    let log = env.state_dir().join("logs/pod-runner.log");
    let starts = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("pod-runner: adopted"))
            .count()
    };
    let before = starts();
    env.restart("pod-runner");
    let starts = &starts;
    eventually(
        "the restarted pod runner read its records",
        Duration::from_secs(30),
        move || async move { (starts() > before).then_some(()) },
    )
    .await;
    let again = dataplane::wait_serving(&client, &ns.name, "app=web", 3).await;
    for (_, ip) in &again {
        let pid = dataplane::demo_app_pid(&env, ip).expect("still running");
        assert!(
            pids.contains(&pid),
            "the process on {ip} was adopted, not replaced"
        );
    }

    // Scale to 1: the two pods that go away lose their processes (stopped by the new runner).
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    let left = dataplane::wait_serving(&client, &ns.name, "app=web", 1).await;
    let gone: Vec<&String> = pods
        .iter()
        .map(|(_, ip)| ip)
        .filter(|ip| **ip != left[0].1)
        .collect();
    assert_eq!(gone.len(), 2);
    let (gone, env_ref) = (&gone, &env);
    eventually(
        "the scaled-down pods' processes stopped",
        Duration::from_secs(30),
        move || async move {
            gone.iter()
                .all(|ip| dataplane::demo_app_pid(env_ref, ip).is_none())
                .then_some(())
        },
    )
    .await;
    for ip in gone {
        let refused = std::net::TcpStream::connect((ip.as_str(), PORT)).is_err();
        assert!(refused, "nothing listens on {ip}:{PORT} any more");
    }
    assert!(dataplane::demo_app_pid(&env, &left[0].1).is_some());

    // Delete the Deployment: the last process stops.
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    let last = left[0].1.as_str();
    eventually(
        "the last process stopped",
        Duration::from_secs(60),
        move || async move {
            dataplane::demo_app_pid(env_ref, last)
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_served_pods() {
    let env = Env::get();
    let client = env.client().await;
    let ns = TestNamespace::new(&client, &env, "dp-prom").await;
    let d = demo_deployment("api", "api", "canary", 3, NO_LATENCY);
    Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let pods = dataplane::wait_serving(&client, &ns.name, "app=api", 3).await;
    for (_, ip) in &pods {
        let t = Target::from_url(&format!("http://{ip}:{PORT}/")).unwrap();
        let s = dataplane::measure(&t, 100.0, 20).await;
        assert_eq!(s.ok(), 20, "{s:?}");
    }

    let prom = env.prometheus_url().to_owned();
    let http = |path: String| {
        let url = format!("{prom}{path}");
        async move {
            let (code, body) = support::http_get(&url).await.ok()?;
            (code == 200).then(|| serde_json::from_str::<serde_json::Value>(&body).ok())?
        }
    };
    // Three healthy targets from Kubernetes SD, with the labels the relabelling makes.
    let (http, ns_name) = (&http, ns.name.as_str());
    let targets = eventually(
        "3 targets up from kubernetes_sd_configs",
        Duration::from_secs(60),
        move || {
            let ns = ns_name;
            async move {
                let v = http("/api/v1/targets?state=active".into()).await?;
                let ours: Vec<serde_json::Value> = v["data"]["activeTargets"]
                    .as_array()?
                    .iter()
                    .filter(|t| t["labels"]["namespace"] == ns)
                    .cloned()
                    .collect();
                (ours.len() == 3 && ours.iter().all(|t| t["health"] == "up")).then_some(ours)
            }
        },
    )
    .await;
    let mut target_pods: Vec<String> = targets
        .iter()
        .map(|t| {
            let l = &t["labels"];
            assert_eq!(l["job"], "kubernetes-pods", "{t}");
            assert_eq!(l["service"], "api", "{t}");
            assert_eq!(l["track"], "canary", "{t}");
            assert_eq!(
                t["discoveredLabels"]["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "true"
            );
            l["pod"].as_str().unwrap().to_owned()
        })
        .collect();
    target_pods.sort();
    let mut names: Vec<String> = pods.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(target_pods, names);

    // http_requests_total from each pod, with namespace, pod, service, track.
    let query = format!(
        "/api/v1/query?query=sum%20by%20(namespace,pod,service,track)(http_requests_total%7Bnamespace=%22{}%22,code=%22200%22%7D)",
        ns.name
    );
    let query = &query;
    let series = eventually(
        "http_requests_total from the 3 pods",
        Duration::from_secs(30),
        move || {
            let q = query.clone();
            async move {
                let v = http(q).await?;
                let r = v["data"]["result"].as_array()?.clone();
                // 20 requests each, plus the one of wait_serving.
                let counted = |s: &serde_json::Value| {
                    s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(20.0)
                };
                (r.len() == 3 && r.iter().all(counted)).then_some(r)
            }
        },
    )
    .await;
    for s in &series {
        assert_eq!(s["metric"]["service"], "api");
        assert_eq!(s["metric"]["track"], "canary");
        assert!(
            names.iter().any(|n| s["metric"]["pod"] == n.as_str()),
            "{s}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_weights_split_real_traffic() {
    let env = Env::get();
    let client = env.client().await;
    let ns = TestNamespace::new(&client, &env, "dp-weights").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    for track in ["stable", "canary"] {
        let d = demo_deployment(&format!("shop-{track}"), "shop", track, 1, NO_LATENCY);
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let sel = serde_json::json!({"app": "shop", "fledge.dev/track": track});
        apply(&client, &ns.name, service(&format!("shop-{track}"), sel)).await;
    }
    dataplane::wait_serving(&client, &ns.name, "app=shop", 2).await;
    let host = format!("shop.{}.test", ns.name);
    let rules = |stable: u32, canary: u32| serde_json::json!([{"backendRefs": [backend("shop-stable", stable), backend("shop-canary", canary)]}]);
    apply(&client, &ns.name, route("shop", &host, rules(90, 10))).await;
    let target = gateway(&env, &host, "/");
    dataplane::wait_split(
        "the route serving both backends",
        &target,
        100,
        Duration::from_secs(60),
        |s| s.by_track.len() == 2,
    )
    .await;

    let split = dataplane::measure(&target, 250.0, 2000).await;
    eprintln!("90/10: {split:?}");
    assert!(split.ok() >= 1990, "{split:?}");
    let canary = split.share("canary");
    assert!(
        (canary - 0.10).abs() <= 0.03,
        "canary share {canary:.3} for weight 10/100: {split:?}"
    );

    apply(&client, &ns.name, route("shop", &host, rules(50, 50))).await;
    let took = dataplane::wait_split(
        "50/50 honoured",
        &target,
        200,
        Duration::from_secs(15),
        |s| (s.share("canary") - 0.5).abs() <= 0.1,
    )
    .await;
    eprintln!("50/50 honoured after {took:?}");
    let split = dataplane::measure(&target, 250.0, 2000).await;
    eprintln!("50/50: {split:?}");
    assert!(split.ok() >= 1990, "{split:?}");
    let canary = split.share("canary");
    assert!(
        (canary - 0.50).abs() <= 0.03,
        "canary share {canary:.3} for weight 50/100: {split:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_header_match_and_request_header_filter() {
    let env = Env::get();
    let client = env.client().await;
    let ns = TestNamespace::new(&client, &env, "dp-headers").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    for track in ["stable", "canary"] {
        let d = demo_deployment(&format!("cart-{track}"), "cart", track, 1, NO_LATENCY);
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let sel = serde_json::json!({"app": "cart", "fledge.dev/track": track});
        apply(&client, &ns.name, service(&format!("cart-{track}"), sel)).await;
    }
    dataplane::wait_serving(&client, &ns.name, "app=cart", 2).await;
    let host = format!("cart.{}.test", ns.name);
    let rules = serde_json::json!([
        {
            "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
            "filters": [{"type": "RequestHeaderModifier",
                         "requestHeaderModifier": {"add": [{"name": "x-routed-by", "value": "canary-rule"}]}}],
            "backendRefs": [backend("cart-canary", 1)],
        },
        {"backendRefs": [backend("cart-stable", 1)]},
    ]);
    apply(&client, &ns.name, route("cart", &host, rules)).await;
    let plain = gateway(&env, &host, "/");
    let marked = gateway(&env, &host, "/").header("x-canary", "always");
    dataplane::wait_split(
        "the header route",
        &marked,
        20,
        Duration::from_secs(60),
        |s| s.share("canary") == 1.0,
    )
    .await;

    let with = dataplane::split::get(&marked).await.unwrap();
    assert_eq!(with.status, 200);
    assert_eq!(with.header("x-fledge-track"), Some("canary"));
    let echoed: serde_json::Value =
        serde_json::from_str(with.header("x-fledge-request-headers").unwrap()).unwrap();
    assert_eq!(
        echoed["x-routed-by"], "canary-rule",
        "the filter's header reached the backend: {echoed}"
    );
    assert_eq!(echoed["x-canary"], "always");

    let without = dataplane::split::get(&plain).await.unwrap();
    assert_eq!(without.header("x-fledge-track"), Some("stable"));
    let echoed: serde_json::Value =
        serde_json::from_str(without.header("x-fledge-request-headers").unwrap()).unwrap();
    assert!(
        echoed.get("x-routed-by").is_none(),
        "no filter on the default rule: {echoed}"
    );

    let s = dataplane::measure(&marked, 200.0, 200).await;
    assert_eq!((s.ok(), s.share("canary")), (200, 1.0), "{s:?}");
    let s = dataplane::measure(&plain, 200.0, 200).await;
    assert_eq!((s.ok(), s.share("stable")), (200, 1.0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_backend_balances_its_pods() {
    let env = Env::get();
    let client = env.client().await;
    let ns = TestNamespace::new(&client, &env, "dp-replicas").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    for (track, n) in [("stable", 3), ("canary", 1)] {
        let d = demo_deployment(&format!("pay-{track}"), "pay", track, n, NO_LATENCY);
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    apply(
        &client,
        &ns.name,
        service("pay", serde_json::json!({"app": "pay"})),
    )
    .await;
    dataplane::wait_serving(&client, &ns.name, "app=pay", 4).await;
    let host = format!("pay.{}.test", ns.name);
    let rules = serde_json::json!([{"backendRefs": [{"name": "pay", "port": 80}]}]);
    apply(&client, &ns.name, route("pay", &host, rules)).await;
    let target = gateway(&env, &host, "/");
    dataplane::wait_split(
        "the route reaching all 4 pods",
        &target,
        100,
        Duration::from_secs(60),
        |s| s.by_pod.len() == 4,
    )
    .await;

    let split = dataplane::measure(&target, 250.0, 2000).await;
    eprintln!("3 stable + 1 canary behind one Service: {split:?}");
    assert!(split.ok() >= 1990, "{split:?}");
    assert_eq!(split.by_pod.len(), 4, "{split:?}");
    let canary = split.share("canary");
    assert!(
        (canary - 0.25).abs() <= 0.04,
        "canary share {canary:.3} with 1 of 4 pods: {split:?}"
    );
}
