//! The sync core against the real control plane: the seam to the rollout engine (a governed
//! Deployment's template is held and handed over, recorded on its Rollout), drift judged on the
//! fields fledge owns, run-once Jobs, prune after a failed apply, `selfHeal: false`, a render
//! that failed on an unknown kind recovering once the kind exists, and the write-ahead
//! inventory surviving a crash between apply and the inventory write. Each of these was a
//! defect or a missing piece of the old sync; the tests fail on the old code.

mod support;

use fledge::crd::{ConditionStatus, ConfigRepo, Rollout};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use std::time::Duration;
use support::sync::{
    Setup, bundle, cm_file, cond, create_repo, events_about, is, ns_file, setup, start_agent,
    status_where,
};
use support::{GitRemote, eventually, writes};

fn deployment(name: &str, replicas: Option<u32>, version: &str) -> String {
    let replicas = replicas
        .map(|r| format!("  replicas: {r}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n{replicas}  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: example.com/{name}:1\n        env:\n        - {{name: VERSION, value: \"{version}\"}}\n"
    )
}

fn rollout(name: &str) -> String {
    format!(
        "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  targetRef: {{kind: Deployment, name: {name}}}\n  service: {name}\n  steps:\n  - setWeight: 10\n  - pause: {{}}\n"
    )
}

fn env_version(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .as_ref()
        .unwrap()[0]
        .value
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_governed_template_change_is_held_and_handed_to_the_rollout_engine() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("seam", "seam").await;
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            bundle(&ns, "[ns.yaml, web.yaml, web-rollout.yaml, api.yaml]"),
        ),
        ("ns.yaml", ns_file(&ns)),
        ("web.yaml", deployment("web", Some(2), "v1")),
        ("web-rollout.yaml", rollout("web")),
        ("api.yaml", deployment("api", Some(1), "v1")),
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
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let rollouts = Api::<Rollout>::namespaced(client.clone(), &ns);
    // A new target is created directly, with its template: nothing to protect yet.
    assert_eq!(env_version(&deployments.get("web").await.unwrap()), "v1");
    let handoff = |r: Rollout| r.status.and_then(|s| s.handoff);
    // Nothing to roll out: no hand-off yet, or (once sync has seen the Deployment running git's
    // template) one naming exactly the running template, which records the stable revision.
    let running = deployments
        .get("web")
        .await
        .unwrap()
        .metadata
        .annotations
        .and_then(|a| a.get("fledge.dev/template-hash").cloned());
    let first = handoff(rollouts.get("web").await.unwrap());
    assert!(
        first
            .as_ref()
            .is_none_or(|h| Some(&h.template_hash) == running.as_ref()),
        "{first:?} vs running {running:?}"
    );

    // The template (and the replicas) change in git: the replicas apply at once, the template
    // is held and handed over on the Rollout's status.
    let commit = remote.commit(
        &[("web.yaml", deployment("web", Some(3), "v2"))],
        &[],
        "web v2",
    );
    let h = eventually("the hand-off recorded", Duration::from_secs(30), || async {
        handoff(rollouts.get("web").await.ok()?).filter(|h| h.revision == commit)
    })
    .await;
    assert_eq!(h.provenance, ["web.yaml"]);
    assert_eq!(h.replicas, Some(3));
    assert_eq!(
        h.template
            .pointer("/spec/containers/0/env/0/value")
            .and_then(|v| v.as_str()),
        Some("v2")
    );
    let s = status_where(&client, &repo, "applied with the template held", 30, |s| {
        s.applied_commit.as_deref() == Some(commit.as_str())
            && is(s, "Ready", ConditionStatus::True)
    })
    .await;
    assert!(
        cond(&s, "Applied")
            .unwrap()
            .2
            .contains("go out as a canary"),
        "{s:#?}"
    );
    let web = deployments.get("web").await.unwrap();
    assert_eq!(
        web.spec.as_ref().unwrap().replicas,
        Some(3),
        "other fields apply at once"
    );
    assert_eq!(env_version(&web), "v1", "the live template is held");
    let evs = events_about(&client, &repo, "HandedOff").await;
    assert!(evs.iter().any(|(r, _)| r == "web"), "{evs:?}");

    // Drift repair of the governed Deployment never changes its template.
    deployments
        .patch(
            "web",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    eventually("replicas repaired", Duration::from_secs(20), || async {
        (deployments.get("web").await.ok()?.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    assert_eq!(env_version(&deployments.get("web").await.unwrap()), "v1");

    // A commit that adds a Rollout and changes its Deployment's template in one go: the Rollout
    // of the same render governs it, so the template does not ship directly.
    let both = remote.commit(
        &[
            (
                "fledge.yaml",
                bundle(
                    &ns,
                    "[ns.yaml, web.yaml, web-rollout.yaml, api.yaml, api-rollout.yaml]",
                ),
            ),
            ("api.yaml", deployment("api", Some(1), "v2")),
            ("api-rollout.yaml", rollout("api")),
        ],
        &[],
        "api gets a rollout and v2",
    );
    eventually("the api hand-off", Duration::from_secs(30), || async {
        handoff(rollouts.get("api").await.ok()?).filter(|h| h.revision == both)
    })
    .await;
    assert_eq!(env_version(&deployments.get("api").await.unwrap()), "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_fledge_does_not_own_are_not_drift_and_cost_no_writes() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("own", "own").await;
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, web.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("web.yaml", deployment("web", None, "v1")), // replicas left to an autoscaler
    ]);
    let running = start_agent(
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
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let settle = || async {
        // Two reconciles after everything the watches saw: any reaction has happened by then.
        running.agent.reconcile(&repo, false).await;
        running.agent.reconcile(&repo, false).await;
    };
    settle().await;
    let before = writes(&running.log);

    // What an HPA, `kubectl annotate` and `kubectl rollout restart` do.
    let kubectl = |args: &[&str]| {
        let out = env.kubectl().args(args).args(["-n", &ns]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    kubectl(&["scale", "deployment/web", "--replicas=4"]);
    kubectl(&["annotate", "deployment/web", "team=shop"]);
    kubectl(&["rollout", "restart", "deployment/web"]);
    eventually(
        "the watches saw the changes",
        Duration::from_secs(10),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.spec?.replicas == Some(4)).then_some(())
        },
    )
    .await;
    settle().await;
    let after = writes(&running.log);
    // The ConfigRepo's status may follow the Deployment's health (a restart rolls it out);
    // the Deployment itself must not be written.
    let object_writes: Vec<_> = after[before.len()..]
        .iter()
        .filter(|(_, p)| !p.contains("/configrepos/"))
        .collect();
    assert!(
        object_writes.is_empty(),
        "fledge re-applied after changes to fields it does not own: {object_writes:?}"
    );
    assert!(
        events_about(&client, &repo, "DriftDetected")
            .await
            .is_empty()
    );
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(4)
    );

    // A field fledge owns, changed by hand, is drift: repaired, and the event names the object.
    kubectl(&["set", "env", "deployment/web", "VERSION=hacked"]);
    eventually("drift repaired", Duration::from_secs(20), || async {
        (env_version(&deployments.get("web").await.ok()?) == "v1").then_some(())
    })
    .await;
    let evs = events_about(&client, &repo, "DriftDetected").await;
    assert!(
        evs.iter()
            .any(|(r, n)| r == "web" && n.contains("re-applied from git")),
        "{evs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_removed_by_its_ttl_is_not_run_again_until_git_changes_it() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("job", "job").await;
    let job = |arg: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  ttlSecondsAfterFinished: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: m\n        image: example.com/migrate:1\n        args: [\"{arg}\"]\n"
        )
    };
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, job.yaml, cm.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("job.yaml", job("up")),
        ("cm.yaml", cm_file("settings", "x")),
    ]);
    let running = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    eventually(
        "the Job ran and its TTL removed it",
        Duration::from_secs(60),
        || async {
            let s = client_status(&client, &repo).await?;
            (s.applied_commit.is_some() && jobs.get_opt("migrate").await.ok()?.is_none())
                .then_some(())
        },
    )
    .await;
    let job_writes = |log: &support::RequestLog| {
        writes(log)
            .into_iter()
            .filter(|(_, path)| path.contains("/jobs"))
            .count()
    };
    let created = job_writes(&running.log);
    for _ in 0..3 {
        running.agent.reconcile(&repo, true).await;
    }
    assert_eq!(
        job_writes(&running.log),
        created,
        "the finished Job was applied again"
    );
    assert!(jobs.get_opt("migrate").await.unwrap().is_none());
    let s = status_where(&client, &repo, "Ready", 20, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    assert!(
        s.inventory.iter().any(|e| e.name == "migrate"),
        "the run stays recorded: {s:#?}"
    );
    assert!(
        events_about(&client, &repo, "DriftDetected")
            .await
            .is_empty()
    );

    // Git changes the Job: it runs again.
    remote.commit(&[("job.yaml", job("up-again"))], &[], "migrate again");
    eventually(
        "the changed Job applied",
        Duration::from_secs(30),
        || async { (job_writes(&running.log) > created).then_some(()) },
    )
    .await;
}

async fn client_status(client: &kube::Client, repo: &str) -> Option<fledge::crd::ConfigRepoStatus> {
    Api::<ConfigRepo>::all(client.clone())
        .get(repo)
        .await
        .ok()?
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_does_not_stop_the_prune_and_the_status_says_why() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("prn", "prn").await;
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            bundle(&ns, "[ns.yaml, a.yaml, b.yaml, c.yaml]"),
        ),
        ("ns.yaml", ns_file(&ns)),
        ("a.yaml", cm_file("a", "1")),
        ("b.yaml", cm_file("b", "1")),
        ("c.yaml", cm_file("c", "1")),
    ]);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 60, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    let bad_svc =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports: [{port: 99999}]\n";
    remote.commit(
        &[
            (
                "fledge.yaml",
                bundle(&ns, "[ns.yaml, b.yaml, c.yaml, bad.yaml]"),
            ),
            ("bad.yaml", bad_svc.into()),
        ],
        &["a.yaml"],
        "drop a, add a Service the API server refuses",
    );
    let s = status_where(
        &client,
        &repo,
        "a pruned despite the failed Service",
        30,
        |s| s.objects.pruned == 1 && is(s, "Applied", ConditionStatus::False),
    )
    .await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    eventually("a gone", Duration::from_secs(10), || async {
        cms.get_opt("a").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(is(&s, "Pruned", ConditionStatus::True), "{s:#?}");
    assert!(
        s.errors
            .iter()
            .any(|e| e.object.contains("Service") && e.object.ends_with("/bad")),
        "{s:#?}"
    );
    assert_eq!(s.objects.failed, 1, "{s:#?}");
    let evs = events_about(&client, &repo, "ApplyFailed").await;
    assert!(
        evs.iter().any(|(r, n)| r == "bad" && n.contains("99999")),
        "the event names the object: {evs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_heal_off_leaves_an_object_deleted_by_hand_deleted() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("noheal", "noheal").await;
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, a.yaml, b.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("a.yaml", cm_file("a", "1")),
        ("b.yaml", cm_file("b", "1")),
    ]);
    let running = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    Api::<ConfigRepo>::all(client.clone())
        .patch(&repo, &PatchParams::apply("fledge-tests-heal"), &Patch::Apply(serde_json::json!({
            "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "spec": {"selfHeal": false}})))
        .await
        .unwrap();
    status_where(&client, &repo, "initial sync", 60, |s| {
        is(s, "Ready", ConditionStatus::True) && s.inventory.len() == 3
    })
    .await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    for _ in 0..3 {
        running.agent.reconcile(&repo, true).await;
    }
    assert!(
        cms.get_opt("a").await.unwrap().is_none(),
        "selfHeal: false re-created an object deleted by hand"
    );
    let s = client_status(&client, &repo).await.unwrap();
    assert!(
        s.inventory.iter().any(|e| e.name == "a"),
        "still recorded: {s:#?}"
    );
    assert_eq!(s.drift_count, 1, "{s:#?}");
    // A change in git still applies.
    remote.commit(&[("b.yaml", cm_file("b", "2"))], &[], "b 2");
    eventually("b updated", Duration::from_secs(30), || async {
        (cms.get("b").await.ok()?.data?["value"] == "2").then_some(())
    })
    .await;
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_failed_for_an_unknown_kind_recovers_when_the_kind_appears() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("disc", "disc").await;
    let group = format!("{}.fledge.test", support::unique("g"));
    let cr =
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {{size: 1}}\n");
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, w.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("w.yaml", cr),
    ]);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let s = status_where(
        &client,
        &repo,
        "RenderFailed for the unknown kind",
        60,
        |s| is(s, "Rendered", ConditionStatus::False),
    )
    .await;
    assert!(s.errors.iter().any(|e| e.object == "w.yaml"), "{s:#?}");
    // The kind's CRD arrives out of band (another team's chart): the same commit now renders.
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &format!("widgets.{group}"),
        &PatchParams::apply("fledge-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap();
    let _crd_cleanup = DeleteCrd(env.clone(), format!("widgets.{group}"));
    status_where(
        &client,
        &repo,
        "the same commit rendered and applied",
        60,
        |s| is(s, "Ready", ConditionStatus::True),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_apply_and_the_inventory_write_orphans_nothing() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("crash", "crash").await;
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, a.yaml, b.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("a.yaml", cm_file("a", "1")),
        ("b.yaml", cm_file("b", "1")),
    ]);
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    // The agent as a process, killed right after its first apply (before the inventory write).
    support::sync::run_until_failpoint(&env, &agent_ns.name, &id, "after-apply", async {}).await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    assert!(
        cms.get_opt("a").await.unwrap().is_some(),
        "the crash came after the apply"
    );
    let s = client_status(&client, &repo).await.unwrap_or_default();
    assert!(
        s.inventory.iter().any(|e| e.name == "a"),
        "the objects were recorded before they were created: {s:#?}"
    );

    // git drops `a`; a restarted agent prunes it: nothing was orphaned by the crash.
    remote.commit(
        &[("fledge.yaml", bundle(&ns, "[ns.yaml, b.yaml]"))],
        &["a.yaml"],
        "drop a",
    );
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    eventually(
        "a pruned after the restart",
        Duration::from_secs(60),
        || async { cms.get_opt("a").await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// Deletes a CRD when dropped.
struct DeleteCrd(support::Env, String);

impl Drop for DeleteCrd {
    fn drop(&mut self) {
        let _ = self
            .0
            .kubectl()
            .args([
                "delete",
                "crd",
                &self.1,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
    }
}

/// Defect: a ConfigRepo (cluster-scoped) could name a Secret in any namespace, so whoever may
/// create a ConfigRepo could make the agent read any Secret of the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_ref_outside_the_agents_namespace_is_refused() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("sref", "sref").await;
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml]")),
        ("ns.yaml", ns_file(&ns)),
    ]);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    let body = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": repo, "labels": {"fledge.test/agent": id}},
        "spec": {"url": remote.url(), "path": ".", "interval": "2s",
                 "secretRef": {"name": "admin-token", "namespace": "kube-system"}}
    });
    Api::<ConfigRepo>::all(client.clone())
        .patch(
            &repo,
            &PatchParams::apply("fledge-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    let s = status_where(&client, &repo, "Fetched=False", 30, |s| {
        is(s, "Fetched", ConditionStatus::False)
    })
    .await;
    let msg = cond(&s, "Fetched").unwrap().2;
    assert!(
        msg.contains("\"kube-system\"") && msg.contains("--secret-namespaces"),
        "{msg}"
    );
    assert!(s.applied_commit.is_none(), "nothing applied: {s:#?}");
}

/// Defect: waiting for a CRD to be Established timed out silently, and the CRD counted as
/// applied. A CRD whose kind is already taken in its group is never Established.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_that_is_never_established_is_a_failure_of_that_crd() {
    use fledge::apply::{Cluster, Manifest};
    use fledge::render::{self, MemTree, RenderOptions};
    let env = support::Env::get();
    let client = env.client().await;
    let group = format!("{}.fledge.test", support::unique("g"));
    let crd = |plural: &str, kind: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: {plural}, singular: {}, kind: {kind}}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n",
            plural.trim_end_matches('s')
        )
    };
    let tree = MemTree::default()
        .with(
            "fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [a.yaml, b.yaml]\n",
        )
        .with("a.yaml", crd("widgets", "Widget"))
        .with("b.yaml", crd("gadgets", "Widget")); // the same kind: one of them cannot have it
    let desired = render::render(&tree, ".", &RenderOptions::default()).unwrap();
    let mut cluster = Cluster::new(client.clone());
    cluster.crd_timeout = Duration::from_secs(3);
    let objects = desired
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (i, std::sync::Arc::new(Manifest::of(o)), false))
        .collect();
    let results = cluster.apply_all(objects, "crd-test", None).await;
    let _a = DeleteCrd(env.clone(), format!("widgets.{group}"));
    let _b = DeleteCrd(env.clone(), format!("gadgets.{group}"));
    let by_name: Vec<(String, bool, String)> = results
        .iter()
        .map(|(i, r)| {
            let name = desired.objects[*i].key.name.clone();
            (
                name,
                r.is_ok(),
                r.as_ref()
                    .err()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    // The two are applied at once, so either may claim the kind first: exactly one is refused.
    let failed: Vec<_> = by_name.iter().filter(|(_, ok, _)| !ok).collect();
    assert_eq!(failed.len(), 1, "{by_name:?}");
    assert!(
        failed[0].2.contains("was not Established within 3s"),
        "{by_name:?}"
    );
}
