//! Adopting a Deployment that already serves, as docs/migrating.md describes: the app (a
//! Deployment whose selector and pods lack `fledge.dev/track`, its Service and an HTTPRoute on the
//! env's gateway) was applied by hand and takes real traffic; then a config repo with the same
//! objects plus a Rollout is given to fledge. Taking it over restarts nothing and starts no canary
//! (every request in the meantime is answered by the same v1 pods); the first pod-template change
//! after that is a canary beside a baseline, promoted onto the adopted Deployment, whose selector
//! (immutable) stays as it was.

mod support;

use fledge::crd::{ConfigRepo, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::dataplane::{gateway, wait_serving};
use support::rollout::{rollout, rollout_where, track_labels, version};
use support::sync::{bundle, is, ns_file, setup, start_agent, status_where};
use support::traffic::{HEALTHY, Load, Seen, app_deployment, app_route, app_service};
use support::{Env, GitRemote};

const REPLICAS: u32 = 4;
const RPS: f64 = 50.0;
/// 25% is one canary and one baseline pod beside the four stable ones.
const STEPS: &str = "[{setWeight: 25}, {pause: {duration: 20s}}]";
const FILES: &str = "[ns.yaml, web.yaml, web-svc.yaml, web-route.yaml, web-rollout.yaml]";

/// `kubectl apply -f -` (client-side, as a person would) of `yaml` in namespace `ns`.
fn kubectl_apply(env: &Env, ns: &str, yaml: &str) {
    let mut child = env
        .kubectl()
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("running kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply failed");
}

/// The uids of the app's pods.
async fn pod_uids(client: &kube::Client, ns: &str) -> BTreeSet<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("listing pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_deployment_without_the_track_label_is_adopted_without_downtime() {
    let s = setup("adopt", "adopt").await;
    let host = format!("{}.test", s.ns);
    let (web, svc, route) = (
        app_deployment("web", REPLICAS, "v1", HEALTHY),
        app_service("web"),
        app_route("web", &host),
    );
    // Before fledge: applied by hand, serving through the gateway.
    kubectl_apply(&s.env, "default", &ns_file(&s.ns));
    for yaml in [&web, &svc, &route] {
        kubectl_apply(&s.env, &s.ns, yaml);
    }
    wait_serving(&s.client, &s.ns, "app=web", REPLICAS as usize).await;
    let load = Load::start(gateway(&s.env, &host, "/"), RPS);
    load.share_settles("all traffic on v1", 200, Duration::from_secs(60), |t| {
        t.version_share("v1") == 1.0
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let before = deployments.get("web").await.unwrap();
    assert_eq!(track_labels(&before), (None, None), "no track label yet");
    let pods_before = pod_uids(&s.client, &s.ns).await;
    let seen = Seen::deployments(&s.client, &s.ns);

    // fledge takes over: the same objects in git, and a Rollout for the Deployment.
    let adopted_at = Instant::now();
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&s.ns, FILES)),
        ("ns.yaml", ns_file(&s.ns)),
        ("web.yaml", web.clone()),
        ("web-svc.yaml", svc),
        ("web-route.yaml", route),
        ("web-rollout.yaml", rollout("web", STEPS)),
    ]);
    let _agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    // kubectl owns the hand-applied fields; `force` lets fledge take them over (without it the
    // route's apply is refused as a conflict with kubectl-client-side-apply, and Ready says so).
    let repo = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": s.repo, "labels": {"fledge.test/agent": s.id}},
        "spec": {"url": remote.url(), "path": ".", "interval": "2s", "force": true}
    });
    Api::<ConfigRepo>::all(s.client.clone())
        .patch(
            &s.repo,
            &PatchParams::apply("fledge-tests"),
            &Patch::Apply(&repo),
        )
        .await
        .unwrap();
    status_where(&s.client, &s.repo, "adopting sync", 90, |st| {
        is(st, "Ready", fledge::crd::ConditionStatus::True)
    })
    .await;
    let st = rollout_where(
        &s.client,
        &s.ns,
        "web",
        "the stable template adopted",
        60,
        |st| st.phase == Phase::Healthy && st.stable_template_hash.is_some(),
    )
    .await;
    // Adopted in place: same Deployment, same pods, no canary; every request answered by v1.
    let adopted = deployments.get("web").await.unwrap();
    assert_eq!(adopted.metadata.uid, before.metadata.uid);
    assert_eq!(
        adopted
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("fledge.dev/template-hash")),
        st.stable_template_hash.as_ref(),
        "{st:#?}"
    );
    assert_eq!(
        pod_uids(&s.client, &s.ns).await,
        pods_before,
        "no pod restarted"
    );
    assert!(seen.uids("web-canary").is_empty() && seen.uids("web-baseline").is_empty());
    load.share_settles(
        "v1 serving after the adoption",
        100,
        Duration::from_secs(30),
        |t| t.version_share("v1") == 1.0,
    )
    .await;
    let during = load.last(adopted_at, usize::MAX);
    assert!(during.len() >= 100, "the load ran through the adoption");
    let bad: Vec<_> = during
        .iter()
        .filter(|r| r.status != Some(200) || r.version.as_deref() != Some("v1"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests not served by v1: {:?}",
        bad.len(),
        during.len(),
        bad.first()
    );

    // The first change after adoption is a canary beside a baseline.
    let v2 = app_deployment("web", REPLICAS, "v2", HEALTHY);
    remote.commit(&[("web.yaml", v2)], &[], "web v2");
    rollout_where(&s.client, &s.ns, "web", "canary at 25%", 90, |st| {
        st.set_weight == Some(25) && st.actual_weight == Some(25)
    })
    .await;
    let canary = deployments.get("web-canary").await.unwrap();
    assert_eq!(version(&canary).as_deref(), Some("v2"));
    assert_eq!(
        track_labels(&canary),
        (Some("canary".into()), Some("canary".into()))
    );
    assert_eq!(
        version(&deployments.get("web-baseline").await.unwrap()).as_deref(),
        Some("v1")
    );
    load.share_settles(
        "v2 answering beside v1",
        200,
        Duration::from_secs(60),
        |t| t.version_share("v2") > 0.05 && t.version_share("v1") > 0.5,
    )
    .await;
    rollout_where(&s.client, &s.ns, "web", "promoted", 90, |st| {
        st.phase == Phase::Healthy
            && st
                .handoff
                .as_ref()
                .is_some_and(|h| st.stable_template_hash.as_deref() == Some(&h.template_hash))
    })
    .await;
    load.share_settles("all traffic on v2", 200, Duration::from_secs(60), |t| {
        t.version_share("v2") == 1.0
    })
    .await;
    let after = deployments.get("web").await.unwrap();
    assert_eq!(
        after.metadata.uid, before.metadata.uid,
        "the same Deployment"
    );
    assert_eq!(version(&after).as_deref(), Some("v2"));
    assert_eq!(
        after.spec.as_ref().map(|s| &s.selector),
        before.spec.as_ref().map(|s| &s.selector),
        "the selector is immutable and stays as it was"
    );
    assert_eq!(seen.uids("web-canary").len(), 1, "one canary");
}
