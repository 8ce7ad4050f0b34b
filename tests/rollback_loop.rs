//! The git rollback end to end, all real: the config repo lives in the env's Gitea, the agent
//! (`fledge run` as a process) fetches it over token-authenticated HTTP and is told of pushes
//! by Gitea's signed webhook; the canary's analysis asks a real Prometheus. In the full loop the
//! pods are served by real processes and real requests go through the gateway: a bad change (5%
//! errors) fails its canary on the app's own metrics → traffic back on stable (measured) → revert branch pushed and PR opened in Gitea with the
//! verdict table → the test merges the PR through Gitea's API → the Rollout is `Healthy` on
//! stable; commit statuses are read back from Gitea. Also: an agent killed (`abort`, as
//! `kill -9`) between push and PR and between PR and status finishes with one branch, one PR and
//! one final status; and a Prometheus stopped during the analysis gives an `error` status and no
//! git rollback at all.
//!
//! Statuses decided here: the bad commit gets `pending` (canary steps) then `failure` (linking the
//! PR); the merge commit of the revert gets `success` ("back on the stable template").

mod support;

use fledge::crd::{ConditionStatus, PauseReason, Phase, TeardownCause};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::dataplane::{gateway, wait_serving};
use support::gitea::{Gitea, GiteaRepo};
use support::rollout::{constant_template, deployment, fledge, rollout, rollout_where, version};
use support::sync::{Setup, bundle, is, ns_file, setup, status_where};
use support::traffic::{HEALTHY, Load, app_deployment, app_route, app_service, golden_template};
use support::{Env, eventually, free_port};

const FILES: &str = "[ns.yaml, golden.yaml, web.yaml, web-rollout.yaml]";
const SERVED_FILES: &str =
    "[ns.yaml, golden.yaml, web.yaml, web-svc.yaml, web-route.yaml, web-rollout.yaml]";
/// Stable pods of the served app: 10% is one canary and one baseline pod beside them.
const SERVED_REPLICAS: u32 = 8;
/// The served app's bad version: 5% of its answers are errors.
const FIVE_PERCENT_ERRORS: &[(&str, &str)] = &[
    ("LATENCY_MS", "20"),
    ("LATENCY_JITTER_MS", "0"),
    ("ERROR_RATE", "0.05"),
];
const TOKEN_SECRET: &str = "gitea-token";
const CLUSTER: &str = "loop-cluster";

/// Kills the agent process when dropped.
struct AgentProc(std::process::Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test's world: the app and agent namespaces, the Gitea repo (with v1 pushed) and the
/// ConfigRepo following it with the Gitea forge configured.
struct World {
    s: Setup,
    gitea: Gitea,
    gr: GiteaRepo,
    /// Served by real processes behind the gateway (else pods that only exist in the API).
    served: bool,
}

/// What the canary is judged on.
enum App<'a> {
    /// A constant query on `prometheus` (`> 0.01` fails): deterministic verdicts.
    Constant { prometheus: &'a str, value: f64 },
    /// The demo app's own metrics, scraped by the env's Prometheus; routed for `host`.
    Served { host: &'a str },
}

fn rollout_file() -> String {
    rollout(
        "web",
        "[{setWeight: 33}, {analysis: {template: golden, duration: 3s}}]",
    )
    .replace("gitRevert: false", "gitRevert: true")
}

/// Pushes v1 of `app` to a new Gitea repo, stores the token Secret and creates the ConfigRepo
/// (`interval`).
async fn world(prefix: &str, app: App<'_>, interval: &str) -> World {
    let s = setup(prefix, prefix).await;
    let gitea = Gitea::get();
    let gr = gitea.create_repo(prefix).await;
    let files: Vec<(&str, String)> = match app {
        App::Constant { prometheus, value } => vec![
            ("fledge.yaml", bundle(&s.ns, FILES)),
            ("ns.yaml", ns_file(&s.ns)),
            (
                "golden.yaml",
                constant_template("golden", prometheus, value, 0.01),
            ),
            ("web.yaml", deployment("web", 3, "v1")),
            ("web-rollout.yaml", rollout_file()),
        ],
        App::Served { host } => vec![
            ("fledge.yaml", bundle(&s.ns, SERVED_FILES)),
            ("ns.yaml", ns_file(&s.ns)),
            (
                "golden.yaml",
                golden_template("golden", s.env.prometheus_url()),
            ),
            (
                "web.yaml",
                app_deployment("web", SERVED_REPLICAS, "v1", HEALTHY),
            ),
            ("web-svc.yaml", app_service("web")),
            ("web-route.yaml", app_route("web", host)),
            (
                "web-rollout.yaml",
                rollout(
                    "web",
                    "[{setWeight: 10}, {analysis: {template: golden, warmup: 4s, duration: 30s}}]",
                )
                .replace("gitRevert: false", "gitRevert: true"),
            ),
        ],
    };
    let served = matches!(app, App::Served { .. });
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    gr.commit(&refs, "web v1");
    gr.push("main");
    gitea.wait_not_empty(&gr).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": TOKEN_SECRET},
        "stringData": {"token": gitea.token},
    }))
    .unwrap();
    Api::<Secret>::namespaced(s.client.clone(), &s.agent_ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let body = json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": s.repo, "labels": {"fledge.test/agent": s.id}},
        "spec": {
            "url": gr.clone_url, "path": ".", "interval": interval,
            "secretRef": {"name": TOKEN_SECRET},
            "forge": {"gitea": {"url": gitea.url, "owner": gr.owner, "repo": gr.name,
                                "tokenSecretRef": {"name": TOKEN_SECRET}}}
        }
    });
    Api::<fledge::crd::ConfigRepo>::all(s.client.clone())
        .patch(
            &s.repo,
            &PatchParams::apply("fledge-tests").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    World {
        s,
        gitea,
        gr,
        served,
    }
}

impl World {
    fn agent(&self, extra: &[&str], port: u16) -> AgentProc {
        let child = support::sync::agent_command(&self.s.env, &self.s.agent_ns.name, &self.s.id)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cluster",
                CLUSTER,
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawning fledge run");
        AgentProc(child)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.s.client.clone(), &self.s.ns)
    }

    /// The first sync is done and the stable Deployment runs v1 with all pods available.
    async fn synced(&self) {
        status_where(&self.s.client, &self.s.repo, "initial sync", 90, |st| {
            is(st, "Ready", ConditionStatus::True)
        })
        .await;
        let deployments = self.deployments();
        let replicas = if self.served {
            SERVED_REPLICAS as i32
        } else {
            3
        };
        eventually("stable available", Duration::from_secs(60), || async {
            let d = deployments.get("web").await.ok()?;
            (d.status?.available_replicas == Some(replicas)).then_some(())
        })
        .await;
        if self.served {
            wait_serving(&self.s.client, &self.s.ns, "app=web", replicas as usize).await;
        }
        rollout_where(
            &self.s.client,
            &self.s.ns,
            "web",
            "Healthy on v1",
            30,
            |st| st.phase == Phase::Healthy && st.stable_template_hash.is_some(),
        )
        .await;
    }

    /// The bad change: web v2 (its canary fails the analysis; served: 5% errors). Returns its
    /// sha.
    fn push_bad_change(&self) -> String {
        let web = if self.served {
            app_deployment("web", SERVED_REPLICAS, "v2", FIVE_PERCENT_ERRORS)
        } else {
            deployment("web", 3, "v2")
        };
        let sha = self.gr.commit(&[("web.yaml", &web)], "web v2");
        self.gr.push("main");
        sha
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.gr.owner, self.gr.name)
    }

    /// Names of the branches made by fledge's rollback.
    async fn rollback_branches(&self) -> Vec<String> {
        let v = self
            .gitea
            .api_ok("GET", &self.repo_path("/branches?limit=50"), None)
            .await;
        names(&v, "name")
            .into_iter()
            .filter(|n| n.starts_with("fledge/rollback/"))
            .collect()
    }

    /// Every pull request of the repository, open or not.
    async fn pulls(&self) -> Vec<Value> {
        let v = self
            .gitea
            .api_ok("GET", &self.repo_path("/pulls?state=all&limit=50"), None)
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// The statuses fledge posted on `sha`, oldest first: `(state, description, target_url)`.
    async fn statuses(&self, sha: &str) -> Vec<(String, String, String)> {
        let v = self
            .gitea
            .api_ok(
                "GET",
                &self.repo_path(&format!("/commits/{sha}/statuses?limit=50")),
                None,
            )
            .await;
        let mut list: Vec<(i64, (String, String, String))> = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["context"] == json!(format!("fledge/{CLUSTER}/{}/web", self.s.ns)))
            .map(|s| {
                let state = s["status"].as_str().or(s["state"].as_str()).unwrap_or("");
                let text = |k: &str| s[k].as_str().unwrap_or("").to_owned();
                (
                    s["id"].as_i64().unwrap_or(0),
                    (state.to_owned(), text("description"), text("target_url")),
                )
            })
            .collect();
        list.sort_by_key(|(id, _)| *id);
        list.into_iter().map(|(_, s)| s).collect()
    }
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b[key].as_str().map(str::to_owned))
        .collect()
}

fn states(list: &[(String, String, String)]) -> Vec<&str> {
    list.iter().map(|s| s.0.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_is_reverted_by_a_pull_request_that_merged_keeps_stable() {
    let host = support::unique("rbl") + ".test";
    let w = world("rbl", App::Served { host: &host }, "1h").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "the rollback loop's webhook secret";
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let port = free_port();
    let _agent = w.agent(
        &[
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--dashboard-url",
            "http://dashboard.example",
            "--rollback-author",
            "Release Bot <release-bot@example.com>",
        ],
        port,
    );
    w.synced().await;
    w.gitea
        .add_webhook(
            &w.gr,
            &format!("http://127.0.0.1:{port}/webhooks/gitea"),
            secret,
            &["push"],
        )
        .await;
    // Real requests through the gateway, every answer recorded: all on stable v1 first.
    let load = Load::start(gateway(&w.s.env, &host, "/"), 100.0);
    let all_stable_v1 = |t: &support::traffic::Tally| {
        t.track_share("stable") == 1.0 && t.version_share("v1") == 1.0
    };
    load.share_settles(
        "all traffic on stable v1",
        300,
        Duration::from_secs(60),
        all_stable_v1,
    )
    .await;

    // Merge a bad change: the ConfigRepo polls hourly, so only the webhook brings it in.
    let bad = w.push_bad_change();
    let (client, ns) = (&w.s.client, &w.s.ns);
    rollout_where(client, ns, "web", "the canary of v2 started", 60, |st| {
        st.canary_revision.as_deref() == Some(bad.as_str())
    })
    .await;
    // Abort (the analysis fails) → PR opened, timed from the first status showing the abort.
    let mut aborted_at = None;
    let mut rolled_back_at = None;
    let start = Instant::now();
    let st = loop {
        let st = rollout_where(client, ns, "web", "any status", 5, |_| true).await;
        let now = Instant::now();
        if st.teardown.is_some() && aborted_at.is_none() {
            aborted_at = Some(now);
        }
        if st.phase == Phase::RolledBack && rolled_back_at.is_none() {
            rolled_back_at = Some(now);
        }
        if st.phase == Phase::RollbackPending {
            rolled_back_at.get_or_insert(now);
            aborted_at.get_or_insert(now);
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no RollbackPending: {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pr_seen = Instant::now();
    eprintln!(
        "git rollback: abort to PR opened {} ms (RolledBack to PR {} ms)",
        (pr_seen - aborted_at.unwrap()).as_millis(),
        (pr_seen - rolled_back_at.unwrap()).as_millis()
    );
    assert_eq!(
        st.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::AnalysisFailed),
        "{st:#?}"
    );
    let pr_url = st
        .revert_pull_request
        .clone()
        .expect("the PR's URL in status");
    // The ConfigRepo shows it too.
    let evs = eventually(
        "the ConfigRepo's RollbackPending event",
        Duration::from_secs(20),
        || async {
            let evs = support::sync::events_about(client, &w.s.repo, "RollbackPending").await;
            (!evs.is_empty()).then_some(evs)
        },
    )
    .await;
    assert!(
        evs.iter()
            .any(|(related, note)| related == "web" && note.contains(&pr_url)),
        "{evs:?}"
    );
    // Traffic is back on stable (measured at the gateway): no canary, no baseline, stable on v1.
    load.share_settles(
        "all traffic back on stable v1",
        300,
        Duration::from_secs(60),
        all_stable_v1,
    )
    .await;
    let deployments = w.deployments();
    assert!(deployments.get_opt("web-canary").await.unwrap().is_none());
    assert!(deployments.get_opt("web-baseline").await.unwrap().is_none());
    assert_eq!(
        version(&deployments.get("web").await.unwrap()).as_deref(),
        Some("v1")
    );

    // In Gitea: one rollback branch, one open PR from it with the verdict.
    let branches = w.rollback_branches().await;
    assert_eq!(branches.len(), 1, "{branches:?}");
    assert!(
        branches[0].contains(&format!("{ns}-web-{}", &bad[..7])),
        "{branches:?}"
    );
    // The revert commit is by the author `--rollback-author` names.
    let head = w
        .gitea
        .api_ok(
            "GET",
            &w.repo_path(&format!("/commits?sha={}&limit=1", branches[0])),
            None,
        )
        .await;
    let author = &head[0]["commit"]["author"];
    assert_eq!(
        (&author["name"], &author["email"]),
        (&json!("Release Bot"), &json!("release-bot@example.com")),
        "{head:#}"
    );
    let pulls = w.pulls().await;
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    let pr = &pulls[0];
    assert_eq!(pr["html_url"], json!(pr_url));
    assert_eq!(pr["head"]["ref"], json!(branches[0]));
    let body = pr["body"].as_str().unwrap();
    for needle in [
        "| Metric | Canary | Baseline | Result | Score |",
        "| error-ratio |",
        "| high |",
        "**Verdict:** fail, score 0/100",
        CLUSTER,
        "analysis failed",
        "web v2",
        "/compare/",
        &format!("fledge retry {ns}/web"),
    ] {
        assert!(body.contains(needle), "PR body lacks {needle:?}:\n{body}");
    }
    assert!(body.len() < 65_536);
    // Statuses on the bad commit: pending while the canary ran, then failure linking the PR.
    let bad_statuses = eventually("the failure status", Duration::from_secs(30), || async {
        let s = w.statuses(&bad).await;
        (s.last().map(|s| s.0.as_str()) == Some("failure")).then_some(s)
    })
    .await;
    assert_eq!(states(&bad_statuses)[0], "pending", "{bad_statuses:?}");
    assert!(
        bad_statuses
            .iter()
            .any(|s| s.0 == "pending" && s.1.starts_with("canary 10%")),
        "{bad_statuses:?}"
    );
    let failure = bad_statuses.last().unwrap();
    assert!(
        failure.1.starts_with("rolled back: analysis failed"),
        "{failure:?}"
    );
    assert_eq!(failure.2, pr_url, "the failure links the revert PR");
    assert_eq!(
        states(&bad_statuses)
            .iter()
            .filter(|s| **s == "failure")
            .count(),
        1,
        "{bad_statuses:?}"
    );

    // Merge the PR through Gitea's API; the push webhook brings the merge in.
    let number = pr["number"].as_u64().unwrap();
    w.gitea.wait_mergeable(&w.gr, number).await;
    w.gitea
        .api_ok(
            "POST",
            &w.repo_path(&format!("/pulls/{number}/merge")),
            Some(json!({"Do": "merge"})),
        )
        .await;
    let merged_at = Instant::now();
    let merged = w
        .gitea
        .api_ok("GET", &w.repo_path(&format!("/pulls/{number}")), None)
        .await;
    let merge_sha = merged["merge_commit_sha"].as_str().unwrap().to_owned();
    status_where(client, &w.s.repo, "the merge applied", 30, |st| {
        st.applied_commit.as_deref() == Some(merge_sha.as_str())
    })
    .await;
    eprintln!(
        "git rollback: PR merged to applied via the webhook {} ms",
        merged_at.elapsed().as_millis()
    );
    let st = rollout_where(client, ns, "web", "Healthy after the merge", 30, |st| {
        st.phase == Phase::Healthy
    })
    .await;
    assert_eq!(st.revert_pull_request, None, "{st:#?}");
    assert_eq!(
        st.handoff.as_ref().map(|h| h.revision.as_str()),
        Some(merge_sha.as_str())
    );
    assert_eq!(
        st.stable_template_hash,
        st.handoff.as_ref().map(|h| h.template_hash.clone())
    );
    assert_eq!(
        version(&deployments.get("web").await.unwrap()).as_deref(),
        Some("v1"),
        "the cluster stays on stable"
    );
    assert!(deployments.get_opt("web-canary").await.unwrap().is_none());
    let merge_statuses = eventually(
        "the merge commit's status",
        Duration::from_secs(30),
        || async {
            let s = w.statuses(&merge_sha).await;
            (!s.is_empty()).then_some(s)
        },
    )
    .await;
    assert_eq!(states(&merge_statuses), ["success"], "{merge_statuses:?}");
    assert_eq!(
        merge_statuses[0].2,
        format!("http://dashboard.example/rollouts/{ns}/web")
    );
    // Every request during the canary went somewhere real, and stable v1 serves them all again.
    load.share_settles(
        "all traffic on stable v1 after the merge",
        300,
        Duration::from_secs(60),
        all_stable_v1,
    )
    .await;
    let answered = load.all();
    assert!(
        answered
            .iter()
            .any(|r| r.track.as_deref() == Some("canary")),
        "the canary took real traffic before it was stopped"
    );
    // Nothing new was made on the way: still one branch, one PR.
    assert_eq!(w.rollback_branches().await.len(), 1);
    assert_eq!(w.pulls().await.len(), 1);
}

/// The agent aborts at `point` during the git rollback of a failed canary (the caller restarts
/// it). Returns the world and the bad commit, for the caller's checks of the crash.
async fn crash_during_rollback(prefix: &str, point: &str) -> (World, String) {
    let env = Env::get();
    let w = world(
        prefix,
        App::Constant {
            prometheus: env.prometheus_url(),
            value: 0.5,
        },
        "2s",
    )
    .await;
    let mut bad = String::new();
    support::sync::run_until_failpoint(&w.s.env, &w.s.agent_ns.name, &w.s.id, point, async {
        w.synced().await;
        bad = w.push_bad_change();
    })
    .await;
    (w, bad)
}

/// After the restart: RollbackPending with exactly one branch, one PR, one failure status.
async fn finishes_with_one_of_each(w: &World, bad: &str) {
    let st = rollout_where(&w.s.client, &w.s.ns, "web", "RollbackPending", 90, |st| {
        st.phase == Phase::RollbackPending
    })
    .await;
    let pulls = w.pulls().await;
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(
        pulls[0]["html_url"].as_str(),
        st.revert_pull_request.as_deref()
    );
    assert_eq!(w.rollback_branches().await.len(), 1);
    let statuses = eventually("the failure status", Duration::from_secs(30), || async {
        let s = w.statuses(bad).await;
        (s.last().map(|s| s.0.as_str()) == Some("failure")).then_some(s)
    })
    .await;
    assert_eq!(
        states(&statuses)
            .iter()
            .filter(|s| **s == "failure")
            .count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_push_and_pr_makes_one_branch_and_one_pr() {
    let (w, bad) = crash_during_rollback("rbkp", "rollback-after-push").await;
    // The crash left the branch and nothing else.
    assert_eq!(w.rollback_branches().await.len(), 1);
    assert!(w.pulls().await.is_empty());
    let _agent = w.agent(&[], free_port());
    finishes_with_one_of_each(&w, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_pr_and_status_posts_one_final_status() {
    let (w, bad) = crash_during_rollback("rbkq", "rollback-after-pr").await;
    // The crash left the branch and the PR, and no final status yet.
    assert_eq!(w.rollback_branches().await.len(), 1);
    assert_eq!(w.pulls().await.len(), 1);
    let before = w.statuses(&bad).await;
    assert!(
        !states(&before).contains(&"failure"),
        "the failure waits for the PR: {before:?}"
    );
    let _agent = w.agent(&[], free_port());
    finishes_with_one_of_each(&w, &bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_stopped_during_the_analysis_is_an_error_and_no_git_rollback() {
    let mut prom = support::Prometheus::start(&[], "1s").await;
    // A passing analysis, as long as Prometheus answers.
    let w = world(
        "rbpr",
        App::Constant {
            prometheus: &prom.url,
            value: 0.001,
        },
        "2s",
    )
    .await;
    let _agent = w.agent(&[], free_port());
    w.synced().await;
    let bad = w.push_bad_change();
    let (client, ns) = (&w.s.client, &w.s.ns);
    rollout_where(client, ns, "web", "the analysis of v2 started", 90, |st| {
        st.canary_revision.as_deref() == Some(bad.as_str()) && st.analysis.is_some()
    })
    .await;
    prom.stop();
    let st = rollout_where(client, ns, "web", "inconclusive", 120, |st| {
        st.pause_reason == Some(PauseReason::Inconclusive)
    })
    .await;
    assert_eq!(st.phase, Phase::Paused, "{st:#?}");
    assert_eq!(
        st.teardown, None,
        "an inconclusive analysis is no failure: {st:#?}"
    );
    // Traffic back on stable: the canary serves nothing.
    let deployments = w.deployments();
    eventually(
        "the canary scaled to 0",
        Duration::from_secs(30),
        || async {
            let c = deployments.get_opt("web-canary").await.ok()?;
            c.is_none_or(|c| c.spec.and_then(|s| s.replicas) == Some(0))
                .then_some(())
        },
    )
    .await;
    let statuses = eventually("the error status", Duration::from_secs(30), || async {
        let s = w.statuses(&bad).await;
        (s.last().map(|s| s.0.as_str()) == Some("error")).then_some(s)
    })
    .await;
    let error = statuses.last().unwrap();
    assert!(
        error.1.starts_with("error: analysis inconclusive"),
        "{error:?}"
    );
    assert!(w.rollback_branches().await.is_empty(), "no revert branch");
    assert!(w.pulls().await.is_empty(), "no PR");

    // Prometheus is back (a new one; git points the template at it) and `fledge retry` runs
    // the step again: it passes and the canary is promoted.
    let prom2 = support::Prometheus::start(&[], "1s").await;
    w.gr.commit(
        &[(
            "golden.yaml",
            &constant_template("golden", &prom2.url, 0.001, 0.01),
        )],
        "prometheus moved",
    );
    w.gr.push("main");
    let templates: Api<fledge::crd::AnalysisTemplate> = Api::namespaced(client.clone(), ns);
    eventually("the template applied", Duration::from_secs(30), || async {
        let t = templates.get("golden").await.ok()?;
        (t.spec.prometheus.address == prom2.url).then_some(())
    })
    .await;
    let (ok, out, err) = fledge(&w.s.env, &["retry", &format!("{ns}/web")]);
    assert!(ok, "fledge retry: {out}{err}");
    rollout_where(client, ns, "web", "promoted after the retry", 120, |st| {
        st.phase == Phase::Healthy
            && st.stable_revision.is_some()
            && st.canary_revision.is_none()
            && st.stable_template_hash == st.handoff.as_ref().map(|h| h.template_hash.clone())
    })
    .await;
    assert_eq!(
        version(&deployments.get("web").await.unwrap()).as_deref(),
        Some("v2")
    );
    let statuses = eventually("the success status", Duration::from_secs(30), || async {
        let s = w.statuses(&bad).await;
        (s.last().map(|s| s.0.as_str()) == Some("success")).then_some(s)
    })
    .await;
    assert!(states(&statuses).contains(&"error"), "{statuses:?}");
    assert!(w.rollback_branches().await.is_empty());
}

/// The automatic retry (no `fledge retry`): Prometheus stops during the analysis, the step is
/// inconclusive (traffic on stable, `error` status, no git rollback); the same Prometheus address
/// answers again, and after the engine's first backoff (`RETRY_BACKOFF_START`, 60 s) the step
/// runs again by itself, passes, and the canary is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_back_at_its_address_has_the_step_retried_by_itself() {
    let port = free_port();
    let mut prom = support::Prometheus::start_on(port, &[], "1s").await;
    let w = world(
        "rbar",
        App::Constant {
            prometheus: &prom.url,
            value: 0.001,
        },
        "2s",
    )
    .await;
    let _agent = w.agent(&[], free_port());
    w.synced().await;
    let bad = w.push_bad_change();
    let (client, ns) = (&w.s.client, &w.s.ns);
    rollout_where(client, ns, "web", "the analysis of v2 started", 90, |st| {
        st.canary_revision.as_deref() == Some(bad.as_str()) && st.analysis.is_some()
    })
    .await;
    prom.stop();
    let st = rollout_where(client, ns, "web", "inconclusive", 120, |st| {
        st.pause_reason == Some(PauseReason::Inconclusive)
    })
    .await;
    assert_eq!(st.teardown, None, "{st:#?}");
    let inconclusive_at = Instant::now();
    eventually("the error status", Duration::from_secs(30), || async {
        let s = w.statuses(&bad).await;
        (s.last().map(|s| s.0.as_str()) == Some("error")).then_some(())
    })
    .await;

    // Back where it was; nobody runs `fledge retry`.
    let _prom = support::Prometheus::start_on(port, &[], "1s").await;
    let st = rollout_where(
        client,
        ns,
        "web",
        "promoted by the automatic retry",
        240,
        |st| {
            st.phase == Phase::Healthy
                && st.canary_revision.is_none()
                && st.stable_template_hash == st.handoff.as_ref().map(|h| h.template_hash.clone())
        },
    )
    .await;
    let waited = inconclusive_at.elapsed();
    eprintln!(
        "automatic retry: inconclusive to promoted in {} s",
        waited.as_secs()
    );
    assert!(
        waited >= fledge::rollout::RETRY_BACKOFF_START,
        "retried only after the backoff: {waited:?}"
    );
    assert!(st.handled_request.is_none(), "no request was made: {st:#?}");
    assert_eq!(
        version(&w.deployments().get("web").await.unwrap()).as_deref(),
        Some("v2")
    );
    eventually("the success status", Duration::from_secs(30), || async {
        let s = w.statuses(&bad).await;
        (s.last().map(|s| s.0.as_str()) == Some("success")).then_some(())
    })
    .await;
    assert!(w.rollback_branches().await.is_empty(), "no revert branch");
    assert!(w.pulls().await.is_empty(), "no PR");
}
