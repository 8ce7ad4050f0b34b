//! Helpers of the rollout end-to-end tests: the files of a governed Deployment and its Rollout,
//! reading the three workloads, waiting on a Rollout's status, and the `fledge` CLI.
#![allow(dead_code)]

use super::Env;
use fledge::crd::{Rollout, RolloutStatus};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::Api;
use std::time::Duration;

/// The initial sync is done and the stable Deployment runs v1 with all pods available.
pub async fn synced(client: &kube::Client, repo: &str, deployments: &Api<Deployment>) {
    super::sync::status_where(client, repo, "initial sync", 90, |s| {
        super::sync::is(s, "Ready", fledge::crd::ConditionStatus::True)
    })
    .await;
    super::eventually("stable available", Duration::from_secs(60), || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.available_replicas == Some(3)).then_some(())
    })
    .await;
}

/// A Deployment `name` with `replicas` pods whose container has `VERSION=<version>`.
pub fn deployment(name: &str, replicas: u32, version: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: example.com/{name}:1\n        env:\n        - {{name: VERSION, value: \"{version}\"}}\n"
    )
}

/// A Rollout of Deployment `name` with the `replicas` router and these steps (YAML flow list).
pub fn rollout(name: &str, steps: &str) -> String {
    format!(
        "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  targetRef: {{kind: Deployment, name: {name}}}\n  service: {name}\n  traffic: {{replicas: {{}}}}\n  baseline: true\n  rollback: {{gitRevert: false}}\n  steps: {steps}\n"
    )
}

/// `VERSION` of a Deployment's first container.
pub fn version(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .first()?
        .value
        .clone()
}

/// The `fledge.dev/track` label of the Deployment, in its selector and in its pod template.
pub fn track_labels(d: &Deployment) -> (Option<String>, Option<String>) {
    let spec = d.spec.as_ref();
    let sel = spec
        .and_then(|s| s.selector.match_labels.as_ref())
        .and_then(|l| l.get("fledge.dev/track").cloned());
    let pods = spec
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get("fledge.dev/track").cloned());
    (sel, pods)
}

/// Polls the Rollout's status until `pred` holds; panics with the last status after `secs`.
pub async fn rollout_where(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    secs: u64,
    pred: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let mut last = None;
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if let Ok(r) = api.get(name).await {
                let s = r.status.unwrap_or_default();
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last status: {last:#?}"))
}

/// Runs the `fledge` binary against the env; returns (success, stdout, stderr).
pub fn fledge(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .args(args)
        .output()
        .expect("running fledge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An AnalysisTemplate `name` against `prometheus` with one critical threshold metric whose
/// query is `value` for every track (`label_replace(vector(value), "track", "{{track}}")`): a
/// real Prometheus answers it without any scraped data.
pub fn constant_template(name: &str, prometheus: &str, value: f64, max: f64) -> String {
    format!(
        "apiVersion: fledge.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: {name}\nspec:\n  prometheus: {{address: \"{prometheus}\"}}\n  interval: 1s\n  minSamples: 2\n  metrics:\n  - name: error-ratio\n    critical: true\n    query: 'label_replace(vector({value}), \"track\", \"{{{{track}}}}\", \"\", \"\")'\n    threshold: {{max: {max}}}\n"
    )
}

/// The reasons and notes of the Events about Rollout `ns/name`.
pub async fn rollout_events(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Rollout"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}
