//! The agent's dashboard in a real headless Chromium, against a live rollout in the real control
//! plane: the page served by `fledge run` at `/` loads without console errors, shows the
//! ConfigRepo and the Rollout, and follows the rollout's step and weight as they change (pushed
//! over server-sent events, no reload). A screenshot is kept as a test artifact.

mod support;

use fledge::crd::{ConditionStatus, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::path::PathBuf;
use std::time::Duration;
use support::browser::Browser;
use support::rollout::{deployment, fledge, rollout, rollout_where};
use support::sync::{Setup, agent_command, bundle, create_repo, is, ns_file, setup, status_where};
use support::{GitRemote, eventually, free_port, http_get};

/// Kills the agent process when the test ends (pass or panic).
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where test artifacts go: `$FLEDGE_TEST_ARTIFACTS`, else `<target>/tmp/artifacts`.
fn artifacts() -> PathBuf {
    std::env::var_os("FLEDGE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_live_rollout_in_a_real_browser() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("dash", "dash").await;
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            bundle(&ns, "[ns.yaml, web.yaml, web-rollout.yaml]"),
        ),
        ("ns.yaml", ns_file(&ns)),
        ("web.yaml", deployment("web", 3, "v1")),
        (
            "web-rollout.yaml",
            rollout(
                "web",
                "[{setWeight: 10}, {pause: {}}, {setWeight: 33}, {pause: {}}]",
            ),
        ),
    ]);
    let port = free_port();
    let _agent = Killed(
        agent_command(&env, &agent_ns.name, &id)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning fledge run"),
    );
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 90, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let (code, _) = eventually("the dashboard answers", Duration::from_secs(30), || async {
        http_get(&format!("{base}/api/state")).await.ok()
    })
    .await;
    assert_eq!(code, 200);

    let browser = Browser::start().await;
    browser.open(&format!("{base}/")).await;
    let row = format!("#rollout-{ns}-web");
    browser
        .wait_text(&format!("#repo-{repo}"), "the ConfigRepo row", 30, |t| {
            t.contains("Ready=True")
        })
        .await;
    browser
        .wait_text(&format!("{row} .phase"), "Healthy at first", 30, |t| {
            t.contains("Healthy")
        })
        .await;

    // A template change starts the rollout: the page follows it without a reload.
    browser
        .eval("window.__notReloaded = true; return true;")
        .await;
    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    rollout_where(&client, &ns, "web", "paused at 2/4", 90, |s| {
        s.phase == Phase::Paused && s.step_progress.as_deref() == Some("2/4")
    })
    .await;
    browser
        .wait_text(&format!("{row} .step"), "step 2/4 shown", 15, |t| {
            t == "2/4"
        })
        .await;
    let w10 = browser
        .wait_text(&format!("{row} .weight"), "weight 10 shown", 15, |t| {
            t.starts_with("10% / ")
        })
        .await;
    let shot = browser
        .screenshot(&artifacts().join("dashboard-step-2.png"))
        .await;
    eprintln!("screenshot: {}", shot.display());

    let (ok, _, err) = fledge(&env, &["promote", &format!("{ns}/web")]);
    assert!(ok, "{err}");
    rollout_where(&client, &ns, "web", "paused at 4/4", 90, |s| {
        s.phase == Phase::Paused && s.step_progress.as_deref() == Some("4/4")
    })
    .await;
    browser
        .wait_text(&format!("{row} .step"), "step 4/4 shown", 15, |t| {
            t == "4/4"
        })
        .await;
    let w33 = browser
        .wait_text(&format!("{row} .weight"), "weight 33 shown", 15, |t| {
            t.starts_with("33% / ")
        })
        .await;
    assert_ne!(w10, w33);
    assert_eq!(
        browser.eval("return window.__notReloaded === true;").await,
        serde_json::Value::Bool(true),
        "the page updated live, without a reload"
    );
    let shot = browser
        .screenshot(&artifacts().join("dashboard-step-4.png"))
        .await;
    eprintln!("screenshot: {}", shot.display());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1000,
        "a real image"
    );
    assert!(deployments.get_opt("web-canary").await.unwrap().is_some());

    // No console errors (a failed request, a script error or a CSP violation would show here).
    let console = browser.console().await;
    let errors: Vec<_> = console.iter().filter(|(l, _)| l == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Accessible markup: a language, one h1, captions and column headers on the tables.
    let a11y = browser
        .eval(
            "return [document.documentElement.lang, document.querySelectorAll('h1').length, \
             document.querySelectorAll('table#rollouts caption, table#repos caption').length, \
             document.querySelectorAll('th[scope=col]').length > 10, \
             document.getElementById('live').getAttribute('aria-live')];",
        )
        .await;
    assert_eq!(
        a11y,
        serde_json::json!(["en", 1, 2, true, "polite"]),
        "page structure"
    );

    // Where commit statuses link (`--dashboard-url`): the same page with this Rollout marked.
    browser.open(&format!("{base}/rollouts/{ns}/web")).await;
    browser
        .wait_text(
            &format!("{row} .step"),
            "the linked page shows the rollout",
            15,
            |t| t == "4/4",
        )
        .await;
    let marked = browser
        .eval("return Array.from(document.querySelectorAll('tr[aria-current]')).map(r => r.id);")
        .await;
    assert_eq!(marked, serde_json::json!([format!("rollout-{ns}-web")]));
    // The andon cord pulled: the repo's row says who froze it and why, live.
    let (ok, _, err) = support::rollout::fledge(
        &env,
        &[
            "freeze",
            &repo,
            "--reason",
            "dashboard check",
            "--by",
            "carol",
        ],
    );
    assert!(ok, "{err}");
    browser
        .wait_text(
            &format!("#repo-{repo} .frozen"),
            "the freeze shown",
            30,
            |t| t.contains("carol") && t.contains("dashboard check"),
        )
        .await;
    let console = browser.console().await;
    assert!(
        console.iter().all(|(l, _)| l != "SEVERE"),
        "console errors: {console:?}"
    );
}
