//! The sync engine end to end, against the real control plane from `tests/env/` and real git
//! repositories: initial sync of the config-repo-template, updates, prunes and their guards,
//! unmanaged objects, drift healing, bad commits, an unreachable remote, zero-write no-ops and
//! leader election. Agents run in-process, each scoped to its own ConfigRepos by a label.

mod support;

use fledge::controller::LeaseConfig;
use fledge::crd::{ConditionStatus, ConfigRepo};
use fledge::labels::CONFIG_REPO_LABEL;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use std::time::Duration;
use support::sync::{
    Setup, bundle, cm_file, cond, create_repo, is, managed_cms, ns_file, setup, start_agent,
    status_where,
};
use support::{GitRemote, eventually, writes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_the_template_updates_prunes_and_noops_without_writes() {
    let Setup {
        env,
        client,
        agent_ns,
        ns: app_ns,
        repo,
        id,
        _cleanup,
    } = setup("shop", "tmpl").await;
    let files = support::template_files(&app_ns);
    let files: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let remote = GitRemote::new(&files);
    let first = remote.git(&["rev-parse", "HEAD"]);
    let running = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), "clusters/staging").await;

    // Initial sync into an empty namespace: everything created, Deployment available via kwok.
    let s = status_where(
        &client,
        &repo,
        "Ready=True after the initial sync",
        90,
        |s| is(s, "Ready", ConditionStatus::True),
    )
    .await;
    assert_eq!(s.applied_commit.as_deref(), Some(first.as_str()));
    assert_eq!(s.inventory.len(), 6, "{s:#?}");
    assert_eq!(s.health.as_deref(), Some("Healthy"));
    let deploy = Api::<Deployment>::namespaced(client.clone(), &app_ns)
        .get("shop-web")
        .await
        .unwrap();
    assert_eq!(
        deploy.status.unwrap().available_replicas,
        Some(2),
        "staging patch: 2 replicas, both available"
    );
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &app_ns);
    assert_eq!(
        cms.get("shop-web-config").await.unwrap().data.unwrap()["LOG_LEVEL"],
        "debug"
    );
    assert_eq!(
        deploy.metadata.labels.unwrap()["fledge.dev/config-repo"],
        repo
    );

    // A no-op reconcile of an unchanged repo: zero write requests. Settled means a reconcile
    // that wrote nothing (the Deployment's status moves for a while after the first sync).
    eventually(
        "a reconcile that writes nothing",
        Duration::from_secs(30),
        || async {
            let before = writes(&running.log).len();
            running.agent.reconcile(&repo, true).await;
            (writes(&running.log).len() == before).then_some(())
        },
    )
    .await;
    let before = writes(&running.log);
    running.agent.reconcile(&repo, true).await;
    running.agent.reconcile(&repo, true).await;
    let after = writes(&running.log);
    assert_eq!(
        after.len(),
        before.len(),
        "no-op reconciles wrote: {:?}",
        &after[before.len()..]
    );

    // A commit changing a ConfigMap updates it.
    remote.commit(
        &[(
            "apps/shop-web/configmap.yaml",
            support::template_files(&app_ns)
                .into_iter()
                .find(|(p, _)| p == "apps/shop-web/configmap.yaml")
                .unwrap()
                .1
                .replace("http://checkout.shop.svc:8080", "http://checkout-v2:8080"),
        )],
        &[],
        "point at checkout v2",
    );
    eventually(
        "the ConfigMap updated from git",
        Duration::from_secs(30),
        || async {
            let cm = cms.get("shop-web-config").await.ok()?;
            (cm.data?["CHECKOUT_URL"] == "http://checkout-v2:8080").then_some(())
        },
    )
    .await;

    // A commit deleting a file prunes its object.
    let app_bundle = std::fs::read_to_string(remote.work().join("apps/shop-web/fledge.yaml"))
        .unwrap()
        .replace("  - service.yaml\n", "");
    let third = remote.commit(
        &[("apps/shop-web/fledge.yaml", app_bundle)],
        &["apps/shop-web/service.yaml"],
        "drop the service",
    );
    let s = status_where(&client, &repo, "the prune of the Service", 30, |s| {
        s.applied_commit.as_deref() == Some(third.as_str()) && s.objects.pruned == 1
    })
    .await;
    assert_eq!(s.inventory.len(), 5);
    let svcs = Api::<Service>::namespaced(client.clone(), &app_ns);
    eventually("the Service gone", Duration::from_secs(10), || async {
        svcs.get_opt("shop-web").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        cms.get_opt("shop-web-config").await.unwrap().is_some(),
        "the rest stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_guards_protect_against_mass_and_empty_prunes_and_unmanaged_objects() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("guard", "guard").await;
    let mut files = vec![
        ("fledge.yaml", bundle(&ns, "[ns.yaml, cms]")),
        ("ns.yaml", ns_file(&ns)),
    ];
    let names: Vec<String> = (0..10).map(|i| format!("cms/cm-{i}.yaml")).collect();
    for (i, n) in names.iter().enumerate() {
        files.push((n.as_str(), cm_file(&format!("cm-{i}"), "v1")));
    }
    let remote = GitRemote::new(&files);
    let _running = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 60, |s| {
        is(s, "Ready", ConditionStatus::True) && s.inventory.len() == 11
    })
    .await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);

    // An object fledge did not create, carrying fledge's label, and a managed one protected by
    // annotation: neither is ever deleted.
    let intruder: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "intruder", "labels": {"fledge.dev/config-repo": repo}}, "data": {"mine": "yes"}})).unwrap();
    cms.create(&PostParams::default(), &intruder).await.unwrap();
    let protect =
        serde_json::json!({"metadata": {"annotations": {"fledge.dev/prune": "disabled"}}});
    cms.patch("cm-9", &PatchParams::default(), &Patch::Merge(&protect))
        .await
        .unwrap();

    // Removing 9 of 11 objects (82% > 50%) is refused and deletes nothing.
    let removed: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    remote.commit(&[], &removed, "remove most config maps");
    let s = status_where(&client, &repo, "MassPruneRefused", 30, |s| {
        cond(s, "Pruned").is_some_and(|c| c.1 == "MassPruneRefused")
    })
    .await;
    assert!(is(&s, "Ready", ConditionStatus::False));
    assert!(
        cond(&s, "Pruned")
            .unwrap()
            .2
            .contains("fledge.dev/allow-mass-prune"),
        "{s:#?}"
    );
    assert_eq!(managed_cms(&cms).await, 10);

    // An empty render is refused too, whatever the annotation says.
    remote.commit(
        &[("fledge.yaml", bundle(&ns, "[]"))],
        &[],
        "empty the bundle",
    );
    status_where(&client, &repo, "EmptyRenderRefused", 30, |s| {
        cond(s, "Pruned").is_some_and(|c| c.1 == "EmptyRenderRefused")
    })
    .await;
    assert_eq!(managed_cms(&cms).await, 10);

    // With the annotation, the mass prune goes ahead: only unprotected managed objects go.
    remote.commit(
        &[("fledge.yaml", bundle(&ns, "[ns.yaml, cms]"))],
        &[],
        "restore the bundle",
    );
    let allow =
        serde_json::json!({"metadata": {"annotations": {"fledge.dev/allow-mass-prune": "true"}}});
    Api::<ConfigRepo>::all(client.clone())
        .patch(&repo, &PatchParams::default(), &Patch::Merge(&allow))
        .await
        .unwrap();
    status_where(&client, &repo, "the allowed prune", 30, |s| {
        is(s, "Ready", ConditionStatus::True) && s.objects.pruned == 8
    })
    .await;
    let left: Vec<String> = cms
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    assert_eq!(left, ["cm-0", "cm-9", "intruder"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_and_bad_commits_keep_the_last_good_state() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("drift", "drift").await;
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n".to_owned();
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, cm.yaml, svc.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("cm.yaml", cm_file("settings", "from-git")),
        ("svc.yaml", svc),
    ]);
    let _running = start_agent(
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
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let svcs = Api::<Service>::namespaced(client.clone(), &ns);

    // A kubectl-style edit and a deletion by hand are healed within seconds.
    let edit = serde_json::json!({"data": {"value": "edited-by-hand"}});
    cms.patch("settings", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("drift healed", Duration::from_secs(20), || async {
        let value = cms.get("settings").await.ok()?.data?["value"].clone();
        let svc = svcs.get_opt("web").await.ok()??;
        (value == "from-git" && svc.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    // Each repair is an event naming its object.
    eventually(
        "a DriftDetected event per object",
        Duration::from_secs(20),
        || async {
            let evs = support::sync::events_about(&client, &repo, "DriftDetected").await;
            let named = |n: &str| {
                evs.iter()
                    .any(|(r, note)| r == n && note.contains("re-applied from git"))
            };
            (named("settings") && named("web")).then_some(())
        },
    )
    .await;
    // The status counts the last reconcile's drift, not a running total: back to 0.
    status_where(
        &client,
        &repo,
        "Ready and no drift after the repairs",
        20,
        |s| is(s, "Ready", ConditionStatus::True) && s.drift_count == 0,
    )
    .await;

    // Removing fledge's label by hand takes the object out of the watched set; the watch still
    // tells the repo that owned it, and the label is put back.
    let unlabel = serde_json::json!({"metadata": {"labels": {CONFIG_REPO_LABEL: null}}});
    cms.patch("settings", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    eventually("label restored", Duration::from_secs(20), || async {
        let labels = cms.get("settings").await.ok()?.metadata.labels?;
        (labels.get(CONFIG_REPO_LABEL) == Some(&repo)).then_some(())
    })
    .await;

    // A commit that does not render: nothing applied or pruned, the error in the status.
    remote.commit(
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings\ndata: {value: broken}\n"
                .into(),
        )],
        &[],
        "broken yaml",
    );
    let s = status_where(&client, &repo, "RenderFailed", 30, |s| {
        is(s, "Rendered", ConditionStatus::False)
    })
    .await;
    assert!(
        s.errors
            .iter()
            .any(|e| e.object == "cm.yaml" && e.message.starts_with("cm.yaml:")),
        "{s:#?}"
    );
    assert!(
        cond(&s, "Ready")
            .unwrap()
            .2
            .contains("last good state stays applied")
    );
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["value"],
        "from-git"
    );
    assert!(svcs.get_opt("web").await.unwrap().is_some());

    // Fixed: back to normal.
    remote.commit(&[("cm.yaml", cm_file("settings", "fixed"))], &[], "fix");
    status_where(&client, &repo, "recovered", 30, |s| {
        is(s, "Ready", ConditionStatus::True) && is(s, "Rendered", ConditionStatus::True)
    })
    .await;
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["value"],
        "fixed"
    );

    // The remote goes away: Fetched=False, the cluster keeps its state; it comes back: recovers.
    let moved = remote.dir.path().join("moved.git");
    std::fs::rename(remote.bare(), &moved).unwrap();
    let s = status_where(&client, &repo, "Fetched=False", 30, |s| {
        is(s, "Fetched", ConditionStatus::False)
    })
    .await;
    assert!(
        cond(&s, "Fetched").unwrap().2.contains("not found"),
        "{s:#?}"
    );
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["value"],
        "fixed"
    );
    std::fs::rename(&moved, remote.bare()).unwrap();
    remote.commit(
        &[("cm.yaml", cm_file("settings", "after-outage"))],
        &[],
        "after the outage",
    );
    status_where(&client, &repo, "Fetched=True again", 30, |s| {
        is(s, "Fetched", ConditionStatus::True) && is(s, "Ready", ConditionStatus::True)
    })
    .await;
    eventually(
        "the new commit applied",
        Duration::from_secs(20),
        || async {
            (cms.get("settings").await.ok()?.data?["value"] == "after-outage").then_some(())
        },
    )
    .await;

    // An inventory that cannot be read (a damaged ConfigMap) stops the reconcile before
    // anything is applied: read as empty, the next inventory written would drop the objects
    // due for pruning. The status is pointed at it as the agent itself would (manager fledge).
    let inv_cms = Api::<ConfigMap>::namespaced(client.clone(), &agent_ns.name);
    let inv_name = fledge::controller::inventory::config_map_name(&repo);
    let damaged: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": inv_name}, "data": {"inventory": "not an entry\n"}
    }))
    .unwrap();
    inv_cms
        .create(&PostParams::default(), &damaged)
        .await
        .unwrap();
    let repos = Api::<ConfigRepo>::all(client.clone());
    let point = serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "status": {"inventoryConfigMap": inv_name}});
    let s = eventually(
        "Applied=False for the damaged inventory",
        Duration::from_secs(30),
        || async {
            let s = repos.get(&repo).await.ok()?.status?;
            if s.errors.iter().any(|e| e.object == "inventory") {
                return Some(s);
            }
            // A reconcile that read the repo before this pointer was set writes it away again.
            repos
                .patch_status(
                    &repo,
                    &PatchParams::apply("fledge").force(),
                    &Patch::Apply(&point),
                )
                .await
                .ok()?;
            None
        },
    )
    .await;
    let err = s.errors.iter().find(|e| e.object == "inventory").unwrap();
    assert!(
        err.message
            .contains(&format!("{}/{inv_name}", agent_ns.name))
            && err.message.contains("line 1: expected"),
        "{s:#?}"
    );
    assert!(is(&s, "Applied", ConditionStatus::False), "{s:#?}");
    let blocked = remote.commit(
        &[("cm.yaml", cm_file("settings", "while-inventory-damaged"))],
        &[],
        "a change while the inventory is damaged",
    );
    status_where(&client, &repo, "the new commit fetched", 30, |s| {
        s.fetched_commit.as_deref() == Some(blocked.as_str())
            && s.errors.iter().any(|e| e.object == "inventory")
    })
    .await;
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["value"],
        "after-outage",
        "nothing is applied while the inventory cannot be read"
    );
    // The damaged ConfigMap deleted: the agent goes on (pruning nothing this once) and records
    // a new inventory.
    inv_cms
        .delete(&inv_name, &DeleteParams::default())
        .await
        .unwrap();
    let s = status_where(
        &client,
        &repo,
        "recovered from the lost inventory",
        30,
        |s| is(s, "Ready", ConditionStatus::True) && s.inventory_config_map.is_none(),
    )
    .await;
    assert!(!s.inventory.is_empty(), "{s:#?}");
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["value"],
        "while-inventory-damaged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_one_leader_and_the_standby_takes_over() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("lead", "lead").await;
    let remote = GitRemote::new(&[
        ("fledge.yaml", bundle(&ns, "[ns.yaml, cm.yaml]")),
        ("ns.yaml", ns_file(&ns)),
        ("cm.yaml", cm_file("shared", "one")),
    ]);
    let lease = |who: &str| {
        Some(LeaseConfig::with_duration(
            &agent_ns.name,
            &format!("lease-{id}"),
            who,
            Duration::from_secs(4),
        ))
    };
    let selector = format!("fledge.test/agent={id}");
    let a = start_agent(&env, &agent_ns.name, &selector, lease("agent-a")).await;
    // a takes the lease first.
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        &agent_ns.name,
    );
    eventually(
        "agent-a holds the lease",
        Duration::from_secs(30),
        || async {
            let l = leases.get_opt(&format!("lease-{id}")).await.ok()??;
            (l.spec?.holder_identity.as_deref() == Some("agent-a")).then_some(())
        },
    )
    .await;
    let b = start_agent(&env, &agent_ns.name, &selector, lease("agent-b")).await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 60, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    // The standby keeps trying the lease: two more attempts after the sync, and it still wrote
    // nothing else.
    let attempts = || {
        b.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p.contains("/leases/"))
            .count()
    };
    let before = attempts();
    eventually(
        "two more lease attempts by the standby",
        Duration::from_secs(30),
        || async { (attempts() >= before + 2).then_some(()) },
    )
    .await;
    let (wa, wb) = (writes(&a.log), writes(&b.log));
    assert!(!wa.is_empty(), "the leader wrote");
    assert!(
        wb.is_empty(),
        "the standby wrote nothing but its lease attempts: {wb:?}"
    );
    let managers: Vec<String> = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("shared")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["fledge"]);

    // The leader dies; within the lease duration the standby takes over and syncs new commits.
    drop(a);
    let t = std::time::Instant::now();
    remote.commit(&[("cm.yaml", cm_file("shared", "two"))], &[], "two");
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    eventually(
        "the standby to take over and apply",
        Duration::from_secs(30),
        || async { (cms.get("shared").await.ok()?.data?["value"] == "two").then_some(()) },
    )
    .await;
    println!("the standby took over and applied in {:?}", t.elapsed());
    assert!(!writes(&b.log).is_empty(), "the new leader wrote");
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        &agent_ns.name,
    )
    .get(&format!("lease-{id}"))
    .await
    .unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("agent-b"),
        "the standby holds the Lease"
    );
}
