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

    // In the status.
    set_status(serde_json::json!({"inventory": [entry("kept"), entry("gone-from-status")]})).await;
    let (code, out) = plan_in(&agent_ns.name);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("- delete ConfigMap {ns}/gone-from-status"))
            && out.contains("Plan: 1 to create, 0 to update, 1 to delete, 0 unchanged."),
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
}
