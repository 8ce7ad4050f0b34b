//! Unit tests of the rollout controller's request bodies (what the API server receives).

use super::*;
use crate::controller::tests::{Scenario, call};
use crate::rollout::Track;
use http::Method;
use serde_json::json;

fn rollout() -> Rollout {
    let mut ro: Rollout = serde_json::from_value(json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "service": "web",
                 "traffic": {"replicas": {}}, "steps": [{"setWeight": 33}]},
    }))
    .expect("a valid Rollout");
    ro.status = Some(RolloutStatus::default());
    ro
}

fn stable() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop",
                     "labels": {"app": "web", "fledge.dev/config-repo": "repo"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "x:1"}]}}},
    }))
    .expect("a valid Deployment")
}

#[test]
fn a_canary_carries_the_track_in_selector_and_pods_and_is_owned_by_the_rollout() {
    let template = json!({"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "app", "image": "x:2"}]}});
    let body = workload_body(
        &rollout(),
        &stable(),
        Track::Canary,
        &template,
        "h2",
        2,
        600,
    );
    assert_eq!(body["metadata"]["name"], "web-canary");
    assert_eq!(
        body["spec"]["selector"]["matchLabels"],
        json!({"app": "web", "fledge.dev/track": "canary"})
    );
    assert_eq!(
        body["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web", "fledge.dev/track": "canary"})
    );
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["image"],
        "x:2"
    );
    assert_eq!(body["spec"]["replicas"], 2);
    assert_eq!(body["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(
        body["metadata"]["annotations"]["fledge.dev/template-hash"],
        "h2"
    );
    assert_eq!(
        body["metadata"]["labels"],
        json!({"app": "web", "fledge.dev/track": "canary"}),
        "not labelled as sync's object"
    );
    let owner = &body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["name"].as_str(),
            owner["uid"].as_str()
        ),
        (Some("Rollout"), Some("web"), Some("u-1"))
    );
}

#[test]
fn the_status_write_never_carries_the_handoff_and_is_conditional_on_the_resource_version() {
    let ro = rollout();
    let st = RolloutStatus {
        handoff: Some(crate::crd::RolloutHandoff {
            template_hash: "h".into(),
            revision: "r".into(),
            provenance: vec![],
            template: json!({}),
            replicas: None,
        }),
        phase: Phase::Progressing,
        ..RolloutStatus::default()
    };
    let body = status_body(&ro, &st);
    assert_eq!(body["metadata"]["resourceVersion"], "42");
    assert_eq!(body["status"]["phase"], "Progressing");
    assert!(body["status"].get("handoff").is_none(), "{body}");
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";

fn apply_path(name: &str) -> String {
    format!("{DEPLOYMENTS}/{name}?&force=true&fieldManager=fledge-rollout")
}

#[tokio::test]
async fn the_executors_make_these_calls_and_absent_workloads_are_not_errors() {
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "x:2"}]}});
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    let (scenario, client) = Scenario::new(vec![
        call(
            Method::PATCH,
            &apply_path("web-baseline"),
            |b| {
                b["spec"]["selector"]["matchLabels"]["fledge.dev/track"] == "baseline"
                    && b["spec"]["replicas"] == 1
            },
            200,
            stable_json(),
        ),
        call(
            Method::PATCH,
            &format!("{DEPLOYMENTS}/web-canary?&fieldManager=fledge-rollout"),
            |b| *b == json!({"spec": {"replicas": 2}}),
            404,
            not_found.clone(),
        ),
        call(
            Method::DELETE,
            &format!("{DEPLOYMENTS}/web-canary?"),
            |b| b["propagationPolicy"] == "Background",
            404,
            not_found,
        ),
        call(
            Method::PATCH,
            &format!("{DEPLOYMENTS}/web?&fieldManager=fledge-rollout"),
            |b| {
                // A JSON patch of only the template (replaced whole), the hash and the track
                // label: replicas and selector stay sync's.
                let ops = b.as_array().cloned().unwrap_or_default();
                let op = |path: &str| ops.iter().find(|o| o["path"] == path).cloned();
                let allowed = [
                    "/metadata/annotations",
                    "/metadata/labels",
                    "/metadata/annotations/fledge.dev~1template-hash",
                    "/metadata/labels/fledge.dev~1track",
                    "/spec/template",
                ];
                ops.iter()
                    .all(|o| allowed.contains(&o["path"].as_str().unwrap_or("")))
                    && op("/spec/template").is_some_and(|o| {
                        o["op"] == "replace"
                            && o["value"]["spec"]["containers"][0]["image"] == "x:2"
                    })
                    && op("/metadata/annotations/fledge.dev~1template-hash")
                        .is_some_and(|o| o["value"] == "h2")
                    && op("/metadata/labels/fledge.dev~1track")
                        .is_some_and(|o| o["value"] == "stable")
            },
            200,
            stable_json(),
        ),
    ]);
    let (ro, stable) = (rollout(), stable());
    let exec = act::Executor {
        client,
        rollout: &ro,
        stable: Some(&stable),
    };
    let actions = [
        Action::EnsureWorkload {
            track: Track::Baseline,
            template: template.clone(),
            template_hash: "h1".into(),
            replicas: 1,
            progress_deadline_seconds: 600,
        },
        Action::ScaleWorkload {
            track: Track::Canary,
            replicas: 2,
        },
        Action::DeleteWorkload {
            track: Track::Canary,
        },
        Action::PromoteStable {
            template,
            template_hash: "h2".into(),
            revision: "abc".into(),
        },
    ];
    for a in &actions {
        exec.run(a).await.expect("carried out");
    }
    scenario.verify();
}

fn stable_json() -> serde_json::Value {
    serde_json::to_value(stable()).expect("serialisable")
}

#[test]
fn only_canary_and_baseline_creates_or_deletes_go_out_together() {
    let ensure = |track| Action::EnsureWorkload {
        track,
        template: json!({}),
        template_hash: "h".into(),
        replicas: 1,
        progress_deadline_seconds: 600,
    };
    let delete = |track| Action::DeleteWorkload { track };
    let scale = |track| Action::ScaleWorkload { track, replicas: 1 };
    assert!(paired(&ensure(Track::Canary), &ensure(Track::Baseline)));
    assert!(paired(&delete(Track::Baseline), &delete(Track::Canary)));
    // Scaling is ordered (capacity first), and different kinds are ordered.
    assert!(!paired(&scale(Track::Canary), &scale(Track::Baseline)));
    assert!(!paired(&ensure(Track::Canary), &delete(Track::Baseline)));
    assert!(!paired(&delete(Track::Canary), &delete(Track::Stable)));
    assert!(!paired(&delete(Track::Canary), &delete(Track::Canary)));
}
