//! The pull-request plan check. Against the real Gitea, the real control plane and the agent
//! (`fledge run` with a webhook secret and `--cluster`): a ConfigRepo on a Gitea repository with
//! a forge spec and a token Secret, Gitea's signed `pull_request` deliveries to the agent, and
//! pull requests opened through Gitea's API. A change (ConfigMap, Secret, a Deployment governed
//! by a Rollout) gets the status `fledge/plan/<cluster>` on its head and exactly one comment
//! with the marker, naming the changes, the canary and the Secret's key names only; a second
//! push edits that same comment; a broken YAML file fails the status and the comment names
//! `file:line`.
//!
//! And GitHub's request shapes for posting a plan check (wiremock answering GitHub's documented
//! payloads): the status, then the comment lookup through every page and the edit of the one
//! comment with the marker.

mod support;

use fledge::controller::prcheck::{publish, status_context};
use fledge::crd::ConditionStatus;
use fledge::forge::report::{PlanComment, plan_marker, render_plan_comment};
use fledge::forge::{CommitStatus, StatusState, Token, Upserted};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;
use support::gitea::{Gitea, GiteaRepo};
use support::rollout::{deployment, rollout};
use support::sync::{Setup, bundle, cm_file, is, ns_file, setup, status_where};
use support::{eventually, free_port};

const CLUSTER: &str = "plan-test";
const FILES: &str = "[ns.yaml, cm.yaml, db.yaml, web.yaml, web-rollout.yaml]";
/// Secret values in git: none of them (nor their base64) may reach Gitea.
const MAIN_PASSWORD: &str = "main-password-value-41";
const PR_PASSWORD: &str = "pr-password-value-97";
const PR_API_KEY: &str = "pr-api-key-value-13";

fn secret_file(pairs: &[(&str, &str)]) -> String {
    let data: String = pairs
        .iter()
        .map(|(k, v)| format!("  {k}: \"{v}\"\n"))
        .collect();
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n{data}")
}

/// Kills the agent process when the test ends.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The plan status of `sha`, once there: `(state, description)`.
async fn plan_status(gitea: &Gitea, repo: &GiteaRepo, sha: &str) -> (String, String) {
    let context = status_context(CLUSTER);
    eventually(
        &format!("the plan status on {sha}"),
        Duration::from_secs(60),
        || async {
            let all = gitea.statuses(repo, sha).await;
            let s = all.iter().find(|s| s["context"] == json!(context))?;
            Some((
                s["status"].as_str().unwrap_or_default().to_owned(),
                s["description"].as_str().unwrap_or_default().to_owned(),
            ))
        },
    )
    .await
}

/// The comments with the plan marker, once one mentions `sha` (its head): `(id, body)` each.
async fn plan_comments(gitea: &Gitea, repo: &GiteaRepo, pr: u64, sha: &str) -> Vec<(u64, String)> {
    let marker = plan_marker(CLUSTER);
    eventually(
        &format!("the plan comment for {sha}"),
        Duration::from_secs(60),
        || async {
            let ours: Vec<(u64, String)> = gitea
                .comments(repo, pr)
                .await
                .iter()
                .filter_map(|c| Some((c["id"].as_u64()?, c["body"].as_str()?.to_owned())))
                .filter(|(_, b)| b.starts_with(&marker))
                .collect();
            ours.iter()
                .any(|(_, b)| b.contains(&sha[..12]))
                .then_some(ours)
        },
    )
    .await
}

fn assert_no_secret_values(body: &str) {
    use base64::Engine as _;
    for v in [MAIN_PASSWORD, PR_PASSWORD, PR_API_KEY] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(v);
        assert!(
            !body.contains(v) && !body.contains(&b64),
            "secret value {v} leaked into the comment:\n{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_gets_one_plan_comment_edited_on_each_push_and_a_status() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("pc", "pc").await;
    let gitea = Gitea::get();
    let gr = gitea.create_repo("plan").await;
    gr.commit(
        &[
            ("fledge.yaml", &bundle(&ns, FILES)),
            ("ns.yaml", &ns_file(&ns)),
            ("cm.yaml", &cm_file("settings", "v1")),
            ("db.yaml", &secret_file(&[("password", MAIN_PASSWORD)])),
            ("web.yaml", &deployment("web", 2, "v1")),
            ("web-rollout.yaml", &rollout("web", "[{setWeight: 50}]")),
        ],
        "first",
    );
    gr.push("main");
    gitea.wait_not_empty(&gr).await;

    // The forge token, in the agent's namespace.
    let token: Secret = serde_json::from_value(json!({
        "metadata": {"name": "gitea-token"},
        "stringData": {"token": gitea.token}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &agent_ns.name)
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hook_secret = "the plan check's webhook secret";
    let secret_file_path = dir.path().join("secret");
    std::fs::write(&secret_file_path, hook_secret).unwrap();
    let port = free_port();
    let child = support::sync::agent_command(&env, &agent_ns.name, &id)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--cluster", CLUSTER])
        .arg("--webhook-secret-file")
        .arg(&secret_file_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let _agent = Agent(child);
    let body = json!({
        "apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo",
        "metadata": {"name": repo, "labels": {"fledge.test/agent": id}},
        "spec": {
            "url": gr.clone_url, "path": ".", "interval": "1h",
            "forge": {"gitea": {
                "url": gitea.url, "owner": gr.owner, "repo": gr.name,
                "tokenSecretRef": {"name": "gitea-token"}
            }}
        }
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
            hook_secret,
            &["pull_request"],
        )
        .await;

    // A pull request changing a ConfigMap, a Secret and the governed Deployment's template.
    gr.git(&["checkout", "-q", "-b", "change"]);
    let head1 = gr.commit(
        &[
            ("cm.yaml", &cm_file("settings", "v2")),
            (
                "db.yaml",
                &secret_file(&[("password", PR_PASSWORD), ("api-key", PR_API_KEY)]),
            ),
            ("web.yaml", &deployment("web", 2, "v2")),
        ],
        "settings v2, new db credentials, web v2",
    );
    gr.push("change");
    let opened = std::time::Instant::now();
    let pr = gitea.create_pull(&gr, "change", "main", "web v2").await;

    let (state, description) = plan_status(&gitea, &gr, &head1).await;
    eprintln!(
        "pull request opened to plan status read back: {} ms",
        opened.elapsed().as_millis()
    );
    assert_eq!(
        (state.as_str(), description.as_str()),
        ("success", "3 objects change · 1 as canary")
    );
    let comments = plan_comments(&gitea, &gr, pr, &head1).await;
    assert_eq!(comments.len(), 1, "exactly one plan comment: {comments:?}");
    let (first_id, first_body) = comments[0].clone();
    for expected in [
        format!("~ update ConfigMap {ns}/settings"),
        "+  value: v2".to_owned(),
        format!("~ update Secret {ns}/db"),
        "~ key password (value changed)".to_owned(),
        "+ key api-key".to_owned(),
        format!("Deployment.apps {ns}/web through Rollout {ns}/web"),
        "goes out as a canary".to_owned(),
        "canary pod template (stable → git)".to_owned(),
        "**0 to create, 3 to update, 0 to delete**".to_owned(),
    ] {
        assert!(
            first_body.contains(&expected),
            "{expected:?} missing from the comment:\n{first_body}"
        );
    }
    // The canary's template change is shown: VERSION v1 → v2 in the Deployment's template.
    let canary = first_body
        .split("canary pod template (stable → git)")
        .nth(1)
        .unwrap_or_default();
    let changed = |sign: &str, v: &str| {
        canary.lines().any(|l| {
            let t = l.trim_start();
            t.starts_with(sign) && t.trim_end().ends_with(&format!("value: {v}"))
        })
    };
    assert!(changed("-", "v1") && changed("+", "v2"), "{first_body}");
    // Only that: fields the API server fills in (imagePullPolicy, dnsPolicy, …) are no change.
    let diff_lines: Vec<&str> = canary
        .lines()
        .skip(1)
        // The template diff's lines are indented by four spaces, then the diff's sign.
        .map_while(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with('-') || l.starts_with('+'))
        .collect();
    assert_eq!(
        diff_lines.len(),
        2,
        "only VERSION changed: {diff_lines:#?}\n{first_body}"
    );
    assert_no_secret_values(&first_body);
    // Only a plan: the cluster still runs main.
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns);
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["value"],
        "v1"
    );

    // The repository is frozen, then a second push to the pull request: the same comment is
    // edited (and says who froze it, why, and what a merge does meanwhile), the status is on the
    // new head.
    let (ok, _, err) = support::rollout::fledge(
        &env,
        &[
            "freeze",
            &repo,
            "--reason",
            "release train 42",
            "--by",
            "alice",
        ],
    );
    assert!(ok, "{err}");
    status_where(&client, &repo, "frozen", 60, |s| s.frozen.is_some()).await;
    let head2 = gr.commit(&[("cm.yaml", &cm_file("settings", "v3"))], "settings v3");
    let pushed = std::time::Instant::now();
    gr.push("change");
    let (state, description) = plan_status(&gitea, &gr, &head2).await;
    let comments = plan_comments(&gitea, &gr, pr, &head2).await;
    eprintln!(
        "second push to the edited plan comment read back: {} ms",
        pushed.elapsed().as_millis()
    );
    assert_eq!(
        (state.as_str(), description.as_str()),
        ("success", "3 objects change · 1 as canary")
    );
    assert_eq!(comments.len(), 1, "still one plan comment: {comments:?}");
    let (id2, body2) = &comments[0];
    assert_eq!(*id2, first_id, "the comment is edited, not replaced");
    assert_ne!(*body2, first_body);
    assert!(
        body2.contains("+  value: v3") && !body2.contains(&head1[..12]),
        "{body2}"
    );
    let frozen = body2
        .lines()
        .find(|l| l.starts_with("**Frozen:**"))
        .unwrap_or_else(|| panic!("the freeze is said: {body2}"));
    for expected in ["alice", "release train 42", "waits for the unfreeze"] {
        assert!(frozen.contains(expected), "{expected:?} missing: {frozen}");
    }
    assert!(!first_body.contains("**Frozen:**"), "{first_body}");
    assert_no_secret_values(body2);
    let all = gitea.comments(&gr, pr).await;
    assert_eq!(all.len(), 1, "no other comment was added: {all:?}");

    // A pull request with a broken YAML file: failure, and the comment names file:line.
    gr.git(&["checkout", "-q", "main"]);
    gr.git(&["checkout", "-q", "-b", "broken"]);
    let broken = gr.commit(
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: [unclosed\n",
        )],
        "broken settings",
    );
    gr.push("broken");
    let pr2 = gitea
        .create_pull(&gr, "broken", "main", "broken settings")
        .await;
    let (state, description) = plan_status(&gitea, &gr, &broken).await;
    assert_eq!(state, "failure", "{description}");
    assert!(
        description.starts_with("render failed: cm.yaml:"),
        "{description}"
    );
    let comments = plan_comments(&gitea, &gr, pr2, &broken).await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = &comments[0].1;
    let at = body.find("cm.yaml:").expect("the comment names the file");
    assert!(
        body[at + "cm.yaml:".len()..].starts_with(|c: char| c.is_ascii_digit()),
        "the comment names the line: {body}"
    );
    assert!(body.contains("does not render"), "{body}");
}

// --- GitHub's request shapes (wiremock) ---

use wiremock::matchers::{any, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

fn comment_json(id: u64, body: &str) -> Value {
    json!({
        "id": id, "node_id": "MDEyOklzc3VlQ29tbWVudDE=",
        "url": format!("https://api.github.com/repos/octocat/Hello-World/issues/comments/{id}"),
        "html_url": format!("https://github.com/octocat/Hello-World/pull/7#issuecomment-{id}"),
        "body": body, "user": {"login": "octocat", "id": 1},
        "created_at": "2011-04-14T16:00:49Z", "updated_at": "2011-04-14T16:00:49Z",
        "issue_url": "https://api.github.com/repos/octocat/Hello-World/issues/7",
        "author_association": "COLLABORATOR"
    })
}

async fn github() -> MockServer {
    let server = MockServer::start().await;
    // Any request not expected below fails the test when the server is dropped.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .with_priority(u8::MAX)
        .expect(0)
        .named("unexpected request")
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> fledge::forge::github::GitHub {
    fledge::forge::github::GitHub::new(
        &server.uri(),
        "octocat",
        "Hello-World",
        Token::new("ghp_plan_check_token"),
    )
    .unwrap()
}

/// The status: the combined status is read first (nothing of this context yet), then posted.
async fn expect_status(server: &MockServer, state: &str, description: &str) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/octocat/Hello-World/commits/{SHA}/status"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "state": "pending", "statuses": [], "sha": SHA, "total_count": 0,
            "repository": {"id": 1296269, "name": "Hello-World", "full_name": "octocat/Hello-World"}
        })))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .and(body_json(json!({
            "state": state, "description": description, "context": "fledge/plan/prod"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 1, "state": state, "description": description, "context": "fledge/plan/prod",
            "target_url": null, "created_at": "2012-07-20T01:19:13Z"
        })))
        .expect(1)
        .mount(server)
        .await;
}

/// 150 comments on two pages with the plan comment (id 140) on the second: the status is
/// posted, every page is read, and comment 140 is edited — not a new one created.
#[tokio::test]
async fn github_plan_check_finds_its_comment_on_page_two_and_edits_it() {
    let server = github().await;
    expect_status(&server, "success", "3 objects change · 1 as canary").await;
    let marker = plan_marker("prod");
    let base = format!(
        "{}/repos/octocat/Hello-World/issues/7/comments",
        server.uri()
    );
    for page in 1..=2u64 {
        let ids = if page == 1 { 1..=100 } else { 101..=150 };
        let comments: Vec<Value> = ids
            .map(|id| match id {
                140 => comment_json(id, &format!("{marker}\n### fledge plan (old)")),
                _ => comment_json(id, &format!("review comment {id} quoting {marker}")),
            })
            .collect();
        let mut links = vec![format!("<{base}?per_page=100&page=2>; rel=\"last\"")];
        if page == 1 {
            links.insert(0, format!("<{base}?per_page=100&page=2>; rel=\"next\""));
        }
        let m = Mock::given(method("GET"))
            .and(path("/repos/octocat/Hello-World/issues/7/comments"))
            .and(query_param("per_page", "100"));
        let m = if page == 1 {
            m.and(wiremock::matchers::query_param_is_missing("page"))
        } else {
            m.and(query_param("page", "2"))
        };
        m.respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", links.join(", ").as_str())
                .set_body_json(comments),
        )
        .expect(1)
        .mount(&server)
        .await;
    }
    let comment = PlanComment {
        cluster: "prod".into(),
        head_sha: SHA.into(),
        update: 3,
        canaries: vec!["Deployment shop/web through Rollout shop/web".into()],
        plan: "~ update ConfigMap shop/settings\n  -  value: v1\n  +  value: v2\n".into(),
        ..Default::default()
    };
    let body = render_plan_comment(&comment);
    Mock::given(method("PATCH"))
        .and(path("/repos/octocat/Hello-World/issues/comments/140"))
        .and(body_json(json!({ "body": body })))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment_json(140, &body)))
        .expect(1)
        .mount(&server)
        .await;
    let status = CommitStatus::new(
        status_context("prod"),
        StatusState::Success,
        "3 objects change · 1 as canary",
    );
    let gh = client(&server);
    match publish(&gh, 7, SHA, &status, Some(&comment)).await.unwrap() {
        Some(Upserted::Edited(c)) => assert_eq!(c.id, 140),
        other => panic!("expected comment 140 edited, got {other:?}"),
    }
}

/// When fledge could not plan (an `error` status), only the status is posted: no comment call.
#[tokio::test]
async fn github_plan_check_error_posts_only_the_status() {
    let server = github().await;
    let description = "error: reading ConfigRepo shop: connection refused";
    expect_status(&server, "error", description).await;
    let status = CommitStatus::new(status_context("prod"), StatusState::Error, description);
    let gh = client(&server);
    assert_eq!(publish(&gh, 7, SHA, &status, None).await.unwrap(), None);
}
