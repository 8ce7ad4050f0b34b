//! `fledge plan` against the real control plane: creates, no changes, updates as a diff from a
//! server-side dry run, deletes from the ConfigRepo's inventory, and exit codes.

mod support;

use fledge::apply::{Cluster, Manifest};
use fledge::render::{self, FsTree, RenderOptions};
use std::process::Command;
use support::{Env, unique};

fn plan(env: &Env, dir: &std::path::Path, name: &str, json: bool) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fledge"));
    c.args([
        "plan",
        "--repo",
        dir.to_str().unwrap(),
        "--path",
        ".",
        "--name",
        name,
    ])
    .env("KUBECONFIG", env.kubeconfig());
    if json {
        c.args(["-o", "json"]);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_creates_then_nothing_then_a_diff() {
    let env = Env::get();
    let client = env.client().await;
    let (ns, name) = (unique("plan"), unique("plan"));
    let dir = tempfile::tempdir().unwrap();
    let write = |value: &str| {
        std::fs::write(dir.path().join("fledge.yaml"), format!("apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, cm.yaml]\n")).unwrap();
        std::fs::write(
            dir.path().join("ns.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("cm.yaml"), format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata:\n  value: \"{value}\"\n  other: same\n")).unwrap();
    };
    write("v1");
    let (code, out) = plan(&env, dir.path(), &name, false);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("+ create ConfigMap {ns}/settings"))
            && out.contains(&format!("+ create Namespace/{ns}")),
        "{out}"
    );
    assert!(
        out.contains("Plan: 2 to create, 0 to update, 0 to delete, 0 unchanged."),
        "{out}"
    );

    // Apply what the agent would apply.
    let opts = RenderOptions {
        config_repo: Some(name.clone()),
        ..RenderOptions::default()
    };
    let desired = render::render(&FsTree::new(dir.path()).unwrap(), ".", &opts).unwrap();
    let cluster = Cluster::new(client.clone());
    let objects = desired
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (i, std::sync::Arc::new(Manifest::of(o)), false))
        .collect();
    for (_, r) in cluster.apply_all(objects, &name, None).await {
        r.unwrap();
    }
    let (code, out) = plan(&env, dir.path(), &name, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Plan: 0 to create, 0 to update, 0 to delete, 2 unchanged."),
        "{out}"
    );

    write("v2");
    let (code, out) = plan(&env, dir.path(), &name, false);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("~ update ConfigMap {ns}/settings")),
        "{out}"
    );
    assert!(
        out.contains("-  value: v1") && out.contains("+  value: v2"),
        "the diff names the changed line: {out}"
    );
    assert!(
        !out.contains("+  other"),
        "unchanged lines are context only: {out}"
    );
    assert!(
        !out.contains("\x1b["),
        "no colours when stdout is not a terminal"
    );
    let (code, out) = plan(&env, dir.path(), &name, true);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["update"][0]["object"],
        format!("ConfigMap {ns}/settings")
    );
    assert_eq!(json["unchanged"], 1);

    // A broken bundle: exit 1, nothing planned.
    std::fs::write(dir.path().join("cm.yaml"), "kind: [\n").unwrap();
    let (code, out) = plan(&env, dir.path(), &name, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cm.yaml:") && out.contains("nothing would be applied or pruned"),
        "{out}"
    );
    let _ = env
        .kubectl()
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();
}

/// Deletes come from the ConfigRepo's inventory wherever the agent keeps it: in the status, or
/// (above 1,000 entries) in a ConfigMap in the agent's namespace, which `--namespace` names. A
/// ConfigMap that is missing or damaged is an error, never an empty inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_deletes_from_the_inventory_in_the_status_or_its_config_map() {
    use fledge::controller::inventory;
    use fledge::crd::{ConfigRepo, InventoryEntry};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let agent_ns = support::TestNamespace::new(&client, &env, "plan-agent").await;
    let (ns, name) = (unique("plan-inv"), unique("plan-inv"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fledge.yaml"),
        format!(
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [cm.yaml]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {a: b}\n",
    )
    .unwrap();
    let repos = Api::<ConfigRepo>::all(client.clone());
    let spec = serde_json::from_value(
        serde_json::json!({"url": dir.path().to_str().unwrap(), "path": "."}),
    )
    .unwrap();
    repos
        .create(&PostParams::default(), &ConfigRepo::new(&name, spec))
        .await
        .unwrap();
    let entry = |n: &str| InventoryEntry {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: ns.clone(),
        name: n.into(),
        observed: "r1".into(),
    };
    let set_status = |status: serde_json::Value| {
        let (repos, name) = (repos.clone(), name.clone());
        async move {
            repos
                .patch_status(
                    &name,
                    &PatchParams::apply("fledge-tests").force(),
                    &Patch::Apply(serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "status": status})),
                )
                .await
                .unwrap();
        }
    };
    let plan_in = |namespace: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_fledge"))
            .args([
                "plan",
                "--repo",
                dir.path().to_str().unwrap(),
                "--name",
                &name,
            ])
            .args(["--namespace", namespace])
            .env("KUBECONFIG", env.kubeconfig())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };

    // The objects due for deletion exist, labelled for this repo (gone objects are just
    // forgotten: nothing to delete).
    env.kubectl()
        .args(["create", "namespace", &ns])
        .output()
        .unwrap();
    for n in ["gone-from-status", "gone-from-configmap"] {
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": n, "namespace": ns, "labels": {fledge::labels::CONFIG_REPO_LABEL: name}}});
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
            .await
            .unwrap();
    }

    // In the status.
    set_status(serde_json::json!({"inventory": [entry("kept"), entry("gone-from-status")]})).await;
    let (code, out) = plan_in(&agent_ns.name);
    assert_eq!(code, 2, "{out}");
    // `kept` is recorded but not live: deleted behind the agent's back, so it is repaired.
    assert!(
        out.contains(&format!("- delete ConfigMap {ns}/gone-from-status"))
            && out.contains(&format!("~ repair ConfigMap {ns}/kept"))
            && out.contains("Plan: 0 to create, 1 to update, 1 to delete, 0 unchanged."),
        "{out}"
    );

    // In a ConfigMap of the agent's namespace.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &agent_ns.name);
    let cm = inventory::config_map(
        &name,
        &agent_ns.name,
        &[entry("kept"), entry("gone-from-configmap")],
    );
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    set_status(serde_json::json!({"inventoryConfigMap": inventory::config_map_name(&name)})).await;
    let (code, out) = plan_in(&agent_ns.name);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("- delete ConfigMap {ns}/gone-from-configmap"))
            && !out.contains("gone-from-status")
            && !out.contains(&format!("- delete ConfigMap {ns}/kept")),
        "{out}"
    );

    // Looked for in the wrong namespace: an error that says where it looked, not "0 to delete".
    let (code, out) = plan_in("no-such-agent-namespace");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "inventory ConfigMap no-such-agent-namespace/{} not found",
            inventory::config_map_name(&name)
        )) && out.contains("--namespace"),
        "{out}"
    );

    // Damaged: an error naming the line.
    cms.patch(
        &inventory::config_map_name(&name),
        &PatchParams::apply("fledge-tests").force(),
        &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"inventory": "|v1|ConfigMap|x\n"}})),
    )
    .await
    .unwrap();
    let (code, out) = plan_in(&agent_ns.name);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 1: expected group|version|kind"), "{out}");
    assert!(
        !out.contains("Plan:"),
        "no plan from a damaged inventory: {out}"
    );

    support::delete_if_present(&repos, &name).await;
    let _ = env
        .kubectl()
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();
}

fn plan_dir(env: &Env, repo: &str, name: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(["plan", "--repo", repo, "--path", ".", "--name", name])
        .args(extra)
        .env("KUBECONFIG", env.kubeconfig())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Defects: Secret values were printed in clear (and plan text becomes PR comments); a bundle
/// holding a CRD and objects of it failed on a fresh cluster; creates were not dry-run, so an
/// object the API server refuses showed as a clean `+ create`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_hides_secret_values_plans_new_kinds_and_dry_runs_creates() {
    let env = Env::get();
    let client = env.client().await;
    let (ns, name) = (unique("plan-sec"), unique("plan-sec"));
    let group = format!("{}.fledge.test", unique("g"));
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, text: String| std::fs::write(dir.path().join(f), text).unwrap();
    w(
        "fledge.yaml",
        format!(
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, secret.yaml, crd.yaml, widget.yaml]\n"
        ),
    );
    w(
        "ns.yaml",
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
    );
    w("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2-in-git, user: admin-in-git}\n".into());
    w(
        "crd.yaml",
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: widgets.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n"
        ),
    );
    w(
        "widget.yaml",
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {{size: 1}}\n"),
    );
    let repo = dir.path().to_str().unwrap().to_owned();
    let (code, out) = plan_dir(&env, &repo, &name, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        !out.contains("hunter2-in-git") && !out.contains("admin-in-git"),
        "a Secret value leaked: {out}"
    );
    assert!(
        out.contains("+ key password") && out.contains("+ key user"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "+ create Widget.{group} {ns}/w (its CRD is in this bundle"
        )),
        "{out}"
    );
    assert!(out.contains("Plan: 4 to create"), "{out}");

    // The Secret exists; git changes one value: only the key name shows.
    env.kubectl()
        .args(["create", "namespace", &ns])
        .output()
        .unwrap();
    let out = env
        .kubectl()
        .args([
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=old-live-value",
            "--from-literal=user=admin-in-git",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, out) = plan_dir(&env, &repo, &name, &[]);
    assert!(out.contains(&format!("~ update Secret {ns}/db")), "{out}");
    assert!(out.contains("~ key password (value changed)"), "{out}");
    assert!(
        !out.contains("old-live-value")
            && !out.contains("hunter2-in-git")
            && !out.contains("b2xkLWxpdmUtdmFsdWU="),
        "{out}"
    );

    // A Service the API server refuses: the dry run of the create says so, exit 1.
    w(
        "fledge.yaml",
        format!(
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: {ns}\ninclude: [ns.yaml, svc.yaml]\n"
        ),
    );
    w(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports: [{port: 99999}]\n"
            .into(),
    );
    let (code, out) = plan_dir(&env, &repo, &name, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "! create Service {ns}/bad: the API server refuses it"
        )) && out.contains("99999"),
        "{out}"
    );
    let _ = env
        .kubectl()
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();
    drop(client);
}

/// `fledge plan` and the agent make the same create/update/prune decisions: the plan's counts,
/// taken just before the agent reconciles the same commit, equal what the agent reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_agent_agree_on_creates_updates_and_prunes() {
    use fledge::crd::{ConfigRepo, ConfigRepoStatus};
    use kube::api::{Api, Patch, PatchParams};
    use support::sync::{bundle, cm_file, ns_file, start_agent, status_where};

    let env = Env::get();
    let client = env.client().await;
    support::install_crds(&client).await;
    let agent_ns = support::TestNamespace::new(&client, &env, "agree").await;
    let (ns, name, id) = (unique("agree"), unique("agree"), unique("a"));
    let files = |cms: &[(&str, &str)]| {
        let mut f = vec![("ns.yaml".to_owned(), ns_file(&ns))];
        let mut inc = vec!["ns.yaml".to_owned()];
        for (n, v) in cms {
            f.push((format!("{n}.yaml"), cm_file(n, v)));
            inc.push(format!("{n}.yaml"));
        }
        f.push((
            "fledge.yaml".into(),
            bundle(&ns, &format!("[{}]", inc.join(", "))),
        ));
        f
    };
    let refs = |f: &[(String, String)]| {
        f.iter()
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect::<Vec<_>>()
    };
    let initial = refs(&files(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]));
    let borrowed: Vec<(&str, String)> = initial
        .iter()
        .map(|(p, c)| (p.as_str(), c.clone()))
        .collect();
    let remote = support::GitRemote::new(&borrowed);
    // The agent reconciles only when told (a long interval), so plan sees the same state.
    let running = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    let agent_counts =
        |s: &ConfigRepoStatus| (s.objects.created, s.objects.updated, s.objects.pruned);
    let plan_counts = || {
        let (code, out) = plan_dir(
            &env,
            &remote.url(),
            &name,
            &["-o", "json", "--namespace", &agent_ns.name],
        );
        assert!(code == 0 || code == 2, "{out}");
        let j: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let n = |k: &str| j[k].as_array().map_or(0, |a| a.len()) as i64;
        (n("create"), n("update"), n("delete"))
    };
    let scenarios: Vec<(&str, Vec<(String, String)>, Vec<&str>)> = vec![
        ("initial", Vec::new(), Vec::new()),
        (
            "one changed",
            refs(&files(&[("a", "2"), ("b", "1"), ("c", "1"), ("d", "1")])),
            Vec::new(),
        ),
        (
            "one removed, one added",
            refs(&files(&[("a", "2"), ("b", "1"), ("c", "1"), ("e", "1")])),
            vec!["d.yaml"],
        ),
    ];
    let mut created_repo = false;
    for (what, change, remove) in scenarios {
        let commit = if change.is_empty() {
            remote.git(&["rev-parse", "HEAD"])
        } else {
            let c: Vec<(&str, String)> = change
                .iter()
                .map(|(p, t)| (p.as_str(), t.clone()))
                .collect();
            remote.commit(&c, &remove, what)
        };
        let planned = plan_counts();
        if !created_repo {
            let body = serde_json::json!({
                "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
                "metadata": {"name": name, "labels": {"fledge.test/agent": id}},
                "spec": {"url": remote.url(), "path": ".", "interval": "1h"}
            });
            Api::<ConfigRepo>::all(client.clone())
                .patch(
                    &name,
                    &PatchParams::apply("fledge-tests").force(),
                    &Patch::Apply(&body),
                )
                .await
                .unwrap();
            created_repo = true;
        } else {
            running.agent.reconcile(&name, true).await;
        }
        let s = status_where(&client, &name, what, 60, |s| {
            s.applied_commit.as_deref() == Some(commit.as_str())
        })
        .await;
        assert_eq!(
            planned,
            agent_counts(&s),
            "{what}: plan (create, update, delete) vs agent; {s:#?}"
        );
        assert!(
            planned != (0, 0, 0),
            "{what}: a scenario that changes nothing proves nothing"
        );
    }
    support::delete_if_present(&Api::<ConfigRepo>::all(client.clone()), &name).await;
    let _ = env
        .kubectl()
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();
}
