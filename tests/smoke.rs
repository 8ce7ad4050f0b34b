//! Smoke tests of the real control plane from `tests/env/` (run `tests/env/up` first; the README's
//! test command does): scheduling + kwok, fledge's CRDs with API-server validation, Prometheus.

mod support;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use std::time::Duration;
use support::{Env, TestNamespace, eventually};

#[tokio::test]
async fn deployment_gets_replicaset_and_ready_pods() {
    let env = Env::get();
    let client = env.client().await;
    let ns = TestNamespace::new(&client, &env, "smoke-deploy").await;
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}
            }
        }
    }))
    .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name);
    deployments
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();

    let rs_api = Api::<ReplicaSet>::namespaced(client.clone(), &ns.name);
    let rs = eventually(
        "a ReplicaSet for the Deployment",
        Duration::from_secs(30),
        || async {
            rs_api
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        },
    )
    .await;
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );

    let pods = Api::<Pod>::namespaced(client.clone(), &ns.name);
    let ready = eventually(
        "3 Ready pods scheduled on kwok nodes",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let ready: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .collect();
            (ready.len() == 3).then_some(ready)
        },
    )
    .await;
    for pod in &ready {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            node.starts_with("kwok-node-"),
            "pod scheduled by kube-scheduler onto a kwok node, got {node:?}"
        );
        assert!(
            pod.status.as_ref().unwrap().pod_ip.is_some(),
            "kwok gave the pod an IP"
        );
    }
    let available = eventually("Deployment available", Duration::from_secs(30), || async {
        let d = deployments.get("web").await.ok()?;
        let n = d.status?.available_replicas?;
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(available, 3);
}

#[tokio::test]
async fn crds_install_and_the_api_server_validates_rollouts() {
    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let ns = TestNamespace::new(&client, &env, "smoke-crd").await;
    let rollouts = Api::<fledge::crd::Rollout>::namespaced(client.clone(), &ns.name);

    let valid: fledge::crd::Rollout = serde_json::from_value(serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "shop-web"},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": "shop-web"},
            "service": "shop-web",
            "steps": [
                {"setWeight": 10},
                {"analysis": {"template": "http-golden", "warmup": "1m", "duration": "10m"}},
                {"pause": {}}
            ]
        }
    }))
    .unwrap();
    let created = rollouts
        .create(&PostParams::default(), &valid)
        .await
        .expect("a valid Rollout is accepted");
    // Defaults from the schema are filled in by the API server.
    assert!(created.spec.baseline);
    assert_eq!(created.spec.progress_deadline, "10m");
    assert!(created.spec.traffic.replicas.is_some());

    // Wrong type inside spec.steps: rejected by the structural schema.
    let wrong_type = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "bad-type"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "x"}, "service": "x",
                 "steps": [{"setWeight": "ten"}]}
    });
    let err = create_raw(&client, &ns.name, &wrong_type)
        .await
        .expect_err("wrong type must be rejected");
    assert!(
        err.contains("spec.steps[0].setWeight") && err.contains("Invalid"),
        "{err}"
    );

    // A step with two actions: rejected by the CEL rule.
    let two_actions = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "bad-step"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "x"}, "service": "x",
                 "steps": [{"setWeight": 10, "pause": {}}]}
    });
    let err = create_raw(&client, &ns.name, &two_actions)
        .await
        .expect_err("two actions in a step must be rejected");
    assert!(
        err.contains("exactly one of setWeight, analysis, pause"),
        "{err}"
    );

    // A weight out of range and a malformed duration.
    let out_of_range = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "bad-range"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "x"}, "service": "x",
                 "progressDeadline": "10 minutes", "steps": [{"setWeight": 150}]}
    });
    let err = create_raw(&client, &ns.name, &out_of_range)
        .await
        .expect_err("out of range must be rejected");
    assert!(
        err.contains("setWeight") && err.contains("progressDeadline"),
        "{err}"
    );

    // Printer columns serve phase, step, weight, age.
    let out = env
        .kubectl()
        .args(["get", "rollouts.fledge.dev", "-n", &ns.name])
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    for col in ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"] {
        assert!(
            header.contains(col),
            "kubectl get rollouts header {header:?} lacks {col}"
        );
    }
}

/// Creates a Rollout from raw JSON (so invalid shapes can be sent); returns the API error text.
async fn create_raw(
    client: &kube::Client,
    ns: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let api = Api::<kube::core::DynamicObject>::namespaced_with(
        client.clone(),
        ns,
        &kube::core::ApiResource::erase::<fledge::crd::Rollout>(&()),
    );
    let obj: kube::core::DynamicObject = serde_json::from_value(body.clone()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e}"))
}

#[tokio::test]
async fn prometheus_scrapes_a_target_served_by_the_test() {
    // A /metrics endpoint on 127.0.0.1 with a value only this test knows.
    let marker = std::process::id() as f64 + 0.5;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = format!("# TYPE fledge_smoke_marker gauge\nfledge_smoke_marker {marker}\n");
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(move || async move { body }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let prom = support::Prometheus::start(&[addr.to_string()], "1s").await;
    let url = format!("{}/api/v1/query?query=fledge_smoke_marker", prom.url);
    let answer = eventually(
        "Prometheus to have scraped the test target",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                let (status, body) = support::http_get(&url).await.ok()?;
                (status == 200 && body.contains(&format!("\"{marker}\""))).then_some(body)
            }
        },
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["data"]["result"][0]["metric"]["job"], "test");
    assert_eq!(
        json["data"]["result"][0]["metric"]["instance"],
        addr.to_string()
    );
}

#[tokio::test]
async fn the_env_runs_kubernetes_1_35() {
    let env = Env::get();
    let client = env.client().await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "35"), "{v:?}");
    assert!(v.git_version.starts_with("v1.35."), "{}", v.git_version);
    let out = std::process::Command::new(env.bin("kube-apiserver"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Kubernetes v1.35."));
}
