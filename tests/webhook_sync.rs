//! A push to the config repo in a real Gitea is applied through Gitea's signed webhook delivery
//! to the agent (`fledge run --webhook-secret-file`), not through polling: the ConfigRepo's
//! interval is an hour, so only the webhook can bring the new commit in. Prints the time from
//! push to applied (docs/performance.md).

mod support;

use fledge::crd::ConditionStatus;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use std::time::{Duration, Instant};
use support::gitea::Gitea;
use support::sync::{Setup, bundle, cm_file, is, ns_file, setup, status_where};
use support::{eventually, free_port};

/// Kills the agent process when the test ends.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_applied_through_the_signed_gitea_webhook() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("hook", "hook").await;
    let gitea = Gitea::get();
    let gr = gitea.create_repo("hook").await;
    gr.commit(
        &[
            ("fledge.yaml", &bundle(&ns, "[ns.yaml, cm.yaml]")),
            ("ns.yaml", &ns_file(&ns)),
            ("cm.yaml", &cm_file("settings", "v1")),
        ],
        "first",
    );
    gr.push("main");
    gitea.wait_not_empty(&gr).await;

    let dir = tempfile::tempdir().unwrap();
    let secret = "a webhook secret for this test";
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let port = free_port();
    let child = support::sync::agent_command(&env, &agent_ns.name, &id)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--webhook-secret-file")
        .arg(&secret_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let _agent = Agent(child);
    let body = serde_json::json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": repo, "labels": {"fledge.test/agent": id}},
        "spec": {"url": gr.clone_url, "path": ".", "interval": "1h"}
    });
    Api::<fledge::crd::ConfigRepo>::all(client.clone())
        .patch(
            &repo,
            &PatchParams::apply("fledge-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    status_where(&client, &repo, "initial sync", 90, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;

    gitea
        .add_webhook(
            &gr,
            &format!("http://127.0.0.1:{port}/webhooks/gitea"),
            secret,
            &["push"],
        )
        .await;
    gr.commit(&[("cm.yaml", &cm_file("settings", "v2"))], "v2");
    let pushed = Instant::now();
    gr.push("main");
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    eventually(
        "the pushed commit applied (only the webhook can bring it in)",
        Duration::from_secs(30),
        || async { (cms.get("settings").await.ok()?.data?["value"] == "v2").then_some(()) },
    )
    .await;
    eprintln!(
        "push to applied via the Gitea webhook: {} ms",
        pushed.elapsed().as_millis()
    );
}
