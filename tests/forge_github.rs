//! The GitHub forge against a wiremock server answering with GitHub's documented payloads
//! (docs.github.com REST examples, trimmed to the fields fledge reads plus a few it ignores).
//! Each scenario names the calls it expects — method, path, query and body — and fails on a
//! missing call (`expect(n)`) or an extra one (a catch-all that expects none).

use fledge::forge::github::GitHub;
use fledge::forge::report::{PlanComment, plan_marker, render_plan_comment};
use fledge::forge::{
    CommitStatus, Error, Forge, NewPullRequest, RetryPolicy, StatusOutcome, StatusState, Token,
    Upserted, upsert_comment,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wiremock::matchers::{any, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_test_token_0123456789";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

async fn server() -> MockServer {
    let server = MockServer::start().await;
    // Any request no scenario expects fails the test when the server is dropped.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .with_priority(u8::MAX)
        .expect(0)
        .named("unexpected request")
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> GitHub {
    GitHub::new(&server.uri(), "octocat", "Hello-World", Token::new(TOKEN))
        .unwrap()
        .with_retry(RetryPolicy {
            max_attempts: 3,
            max_wait: Duration::from_secs(5),
            total_wait: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        })
}

fn status_json(state: &str, description: &str, context: &str, target: Option<&str>) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/octocat/Hello-World/statuses/{SHA}"),
        "avatar_url": "https://github.com/images/error/hubot_happy.gif",
        "id": 1, "node_id": "MDY6U3RhdHVzMQ==",
        "state": state, "description": description, "target_url": target, "context": context,
        "created_at": "2012-07-20T01:19:13Z", "updated_at": "2012-07-20T01:19:13Z",
        "creator": {"login": "octocat", "id": 1, "type": "User", "site_admin": false}
    })
}

fn combined_json(statuses: Vec<Value>) -> Value {
    json!({
        "state": "success", "statuses": statuses, "sha": SHA, "total_count": 1,
        "repository": {"id": 1296269, "name": "Hello-World", "full_name": "octocat/Hello-World"},
        "commit_url": format!("https://api.github.com/repos/octocat/Hello-World/{SHA}"),
        "url": format!("https://api.github.com/repos/octocat/Hello-World/{SHA}/status")
    })
}

fn pull_json(number: u64, head: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/octocat/Hello-World/pulls/{number}"),
        "id": 1, "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
        "html_url": format!("https://github.com/octocat/Hello-World/pull/{number}"),
        "number": number, "state": "open", "locked": false, "title": "Amazing new feature",
        "user": {"login": "octocat", "id": 1},
        "body": "Please pull these awesome changes in!",
        "draft": false, "merged": false,
        "head": {"label": format!("octocat:{head}"), "ref": head, "sha": SHA,
                 "user": {"login": "octocat", "id": 1},
                 "repo": {"id": 1296269, "name": "Hello-World", "full_name": "octocat/Hello-World"}},
        "base": {"label": "octocat:main", "ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5f",
                 "user": {"login": "octocat", "id": 1},
                 "repo": {"id": 1296269, "name": "Hello-World", "full_name": "octocat/Hello-World"}},
        "author_association": "OWNER"
    })
}

fn comment_json(id: u64, body: &str) -> Value {
    json!({
        "id": id, "node_id": "MDEyOklzc3VlQ29tbWVudDE=",
        "url": format!("https://api.github.com/repos/octocat/Hello-World/issues/comments/{id}"),
        "html_url": format!("https://github.com/octocat/Hello-World/issues/1347#issuecomment-{id}"),
        "body": body, "user": {"login": "octocat", "id": 1},
        "created_at": "2011-04-14T16:00:49Z", "updated_at": "2011-04-14T16:00:49Z",
        "issue_url": "https://api.github.com/repos/octocat/Hello-World/issues/1347",
        "author_association": "COLLABORATOR"
    })
}

const CONTEXT: &str = "fledge/prod/shop/web";

#[tokio::test]
async fn status_is_posted_when_the_latest_differs() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/octocat/Hello-World/commits/{SHA}/status"
        )))
        .and(query_param("per_page", "100"))
        .and(query_param("page", "1"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .respond_with(ResponseTemplate::new(200).set_body_json(combined_json(vec![
            status_json("pending", "canary 10%", CONTEXT, None),
            status_json("success", "ok", "ci/other", None),
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .and(body_json(json!({
            "state": "pending",
            "description": "canary 33% · analysis 98/100",
            "context": CONTEXT,
            "target_url": "https://fledge.example/rollouts/shop/web"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(status_json(
            "pending",
            "canary 33% · analysis 98/100",
            CONTEXT,
            Some("https://fledge.example/rollouts/shop/web"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let status = CommitStatus::new(
        CONTEXT,
        StatusState::Pending,
        "canary 33% · analysis 98/100",
    )
    .with_target_url(Some("https://fledge.example/rollouts/shop/web".into()));
    let gh = client(&server);
    assert_eq!(
        gh.set_status(SHA, &status).await.unwrap(),
        StatusOutcome::Posted
    );
}

#[tokio::test]
async fn identical_status_is_not_posted_again() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/octocat/Hello-World/commits/{SHA}/status"
        )))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(combined_json(vec![status_json(
                "failure",
                "rolled back: error rate 4.1% > 1%",
                CONTEXT,
                None,
            )])),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let status = CommitStatus::new(
        CONTEXT,
        StatusState::Failure,
        "rolled back: error rate 4.1% > 1%",
    );
    let gh = client(&server);
    assert_eq!(
        gh.set_status(SHA, &status).await.unwrap(),
        StatusOutcome::Unchanged
    );
}

#[tokio::test]
async fn long_descriptions_are_cut_to_140_characters() {
    let server = server().await;
    let reason = "latency-p99 0.912s > 0.5s and error-ratio 0.041 > 0.01 on every one of the last ten samples taken from the canary while the baseline stayed flat";
    let expected = fledge::forge::report::cut_description(&format!("rolled back: {reason}"));
    assert!(expected.chars().count() <= 140 && expected.ends_with('…'));
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/octocat/Hello-World/commits/{SHA}/status"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(combined_json(vec![])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .and(body_json(
            json!({"state": "failure", "description": expected, "context": CONTEXT}),
        ))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(status_json("failure", "x", CONTEXT, None)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let status = CommitStatus::new(
        CONTEXT,
        StatusState::Failure,
        &format!("rolled back: {reason}"),
    );
    client(&server).set_status(SHA, &status).await.unwrap();
}

#[tokio::test]
async fn pull_request_is_created_and_found_by_branch() {
    let server = server().await;
    let branch = "fledge/rollback/shop-web-6dcb09b";
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(body_json(json!({
            "title": "Revert \"web: v2\"", "head": branch, "base": "main", "body": "the report"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(pull_json(1347, branch)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(query_param("state", "open"))
        .and(query_param("head", format!("octocat:{branch}").as_str()))
        .and(query_param("per_page", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([pull_json(1347, branch)])))
        .expect(1)
        .mount(&server)
        .await;
    let gh = client(&server);
    let pr = gh
        .create_pull_request(&NewPullRequest {
            title: "Revert \"web: v2\"".into(),
            head: branch.into(),
            base: "main".into(),
            body: "the report".into(),
        })
        .await
        .unwrap();
    assert_eq!(pr.number, 1347);
    assert_eq!(
        pr.html_url,
        "https://github.com/octocat/Hello-World/pull/1347"
    );
    assert_eq!(
        (pr.head_ref.as_str(), pr.base_ref.as_str()),
        (branch, "main")
    );
    let found = gh.find_open_pull_request(branch).await.unwrap();
    assert_eq!(found, Some(pr));
}

#[tokio::test]
async fn existing_pull_request_is_looked_up_after_422() {
    let server = server().await;
    let branch = "fledge/rollback/shop-web-6dcb09b";
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom",
                        "message": format!("A pull request already exists for octocat:{branch}.")}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(query_param("head", format!("octocat:{branch}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([pull_json(7, branch)])))
        .expect(1)
        .mount(&server)
        .await;
    let pr = client(&server)
        .create_pull_request(&NewPullRequest {
            title: "t".into(),
            head: branch.into(),
            base: "main".into(),
            body: "b".into(),
        })
        .await
        .unwrap();
    assert_eq!(pr.number, 7);
}

/// 250 comments over three pages (GitHub's `Link` headers); the plan comment is on the last
/// page, so it is found and edited, not duplicated.
#[tokio::test]
async fn plan_comment_upsert_pages_through_every_comment() {
    let server = server().await;
    let marker = plan_marker("prod");
    let old_body = format!("{marker}\nold plan");
    let base = format!(
        "{}/repos/octocat/Hello-World/issues/1347/comments",
        server.uri()
    );
    for page in 1..=3u64 {
        let ids = match page {
            1 => 1..=100,
            2 => 101..=200,
            _ => 201..=250,
        };
        let comments: Vec<Value> = ids
            .map(|id| {
                if id == 240 {
                    comment_json(id, &old_body)
                } else {
                    comment_json(
                        id,
                        &format!("comment {id} mentions fledge-plan but not first"),
                    )
                }
            })
            .collect();
        let mut links = vec![format!("<{base}?per_page=100&page=3>; rel=\"last\"")];
        if page < 3 {
            links.insert(
                0,
                format!("<{base}?per_page=100&page={}>; rel=\"next\"", page + 1),
            );
        }
        let mut m = Mock::given(method("GET"))
            .and(path("/repos/octocat/Hello-World/issues/1347/comments"))
            .and(query_param("per_page", "100"));
        m = if page == 1 {
            m.and(wiremock::matchers::query_param_is_missing("page"))
        } else {
            m.and(query_param("page", page.to_string().as_str()))
        };
        m.respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", links.join(", ").as_str())
                .set_body_json(comments),
        )
        .expect(2)
        .mount(&server)
        .await;
    }
    let plan = PlanComment {
        cluster: "prod".into(),
        head_sha: SHA.into(),
        create: 1,
        plan: "+ ConfigMap shop/settings".into(),
        ..Default::default()
    };
    let new_body = render_plan_comment(&plan);
    Mock::given(method("PATCH"))
        .and(path("/repos/octocat/Hello-World/issues/comments/240"))
        .and(body_json(json!({ "body": new_body })))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment_json(240, &new_body)))
        .expect(1)
        .mount(&server)
        .await;
    let gh = client(&server);
    let all = gh.list_comments(1347).await.unwrap();
    assert_eq!(all.len(), 250);
    assert_eq!(all.last().map(|c| c.id), Some(250));
    match upsert_comment(&gh, 1347, &marker, &new_body).await.unwrap() {
        Upserted::Edited(c) => assert_eq!((c.id, c.body.as_str()), (240, new_body.as_str())),
        other => panic!("expected an edit, got {other:?}"),
    }
}

#[tokio::test]
async fn plan_comment_is_created_when_no_marker_exists() {
    let server = server().await;
    let marker = plan_marker("prod");
    let body = format!("{marker}\nplan");
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/issues/5/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([comment_json(1, "LGTM")])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/issues/5/comments"))
        .and(body_json(json!({ "body": body })))
        .respond_with(ResponseTemplate::new(201).set_body_json(comment_json(2, &body)))
        .expect(1)
        .mount(&server)
        .await;
    let gh = client(&server);
    assert!(matches!(
        upsert_comment(&gh, 5, &marker, &body).await.unwrap(),
        Upserted::Created(c) if c.id == 2
    ));
}

#[tokio::test]
async fn secondary_rate_limit_is_waited_out_then_retried() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .set_body_json(json!({
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
                })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(status_json("success", "promoted", CONTEXT, None)),
        )
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    let start = Instant::now();
    client(&server)
        .post_status(
            SHA,
            &CommitStatus::new(CONTEXT, StatusState::Success, "promoted"),
        )
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited Retry-After"
    );
}

#[tokio::test]
async fn rate_limit_beyond_the_budget_fails_fast_without_spinning() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/octocat/Hello-World/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let start = Instant::now();
    let err = client(&server)
        .post_status(
            SHA,
            &CommitStatus::new(CONTEXT, StatusState::Success, "promoted"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(3600)),
        "{err}"
    );
    assert_eq!(err.category(), "rate_limited");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn errors_carry_no_token_and_no_control_characters() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/issues/9/comments"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": format!("Bad credentials {TOKEN}\u{1b}[2J"),
            "documentation_url": "https://docs.github.com/rest"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server).create_comment(9, "x").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(
        text.contains("HTTP 401") && text.contains("Bad credentials <redacted>"),
        "{text}"
    );
    assert_eq!(err.category(), "auth");
}

#[tokio::test]
async fn enterprise_api_url_and_compare_links() {
    let server = server().await;
    Mock::given(method("PATCH"))
        .and(path("/api/v3/repos/octocat/Hello-World/issues/comments/3"))
        .and(body_json(json!({"body": "edited"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(comment_json(3, "edited")))
        .expect(1)
        .mount(&server)
        .await;
    let ghe = GitHub::new(
        &format!("{}/api/v3", server.uri()),
        "octocat",
        "Hello-World",
        Token::new(TOKEN),
    )
    .unwrap();
    assert_eq!(ghe.edit_comment(3, "edited").await.unwrap().body, "edited");
    assert_eq!(
        ghe.compare_url("aaaa", "bbbb"),
        format!("{}/octocat/Hello-World/compare/aaaa...bbbb", server.uri())
    );
    let gh = GitHub::new(
        "https://api.github.com",
        "octocat",
        "Hello-World",
        Token::new(TOKEN),
    )
    .unwrap();
    assert_eq!(
        gh.compare_url("main", "fledge/rollback/x"),
        "https://github.com/octocat/Hello-World/compare/main...fledge/rollback/x"
    );
}

/// The token goes only to the configured API origin: a redirect is not followed, and a `Link`
/// page on another origin is refused, so the other server never sees a request.
#[tokio::test]
async fn credentials_never_leave_the_configured_origin() {
    let server = server().await;
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(0)
        .named("another origin")
        .mount(&elsewhere)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/steal", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/issues/1/comments"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!("<{}/steal?page=2>; rel=\"next\"", elsewhere.uri()).as_str(),
                )
                .set_body_json(json!([comment_json(1, "x")])),
        )
        .expect(1)
        .mount(&server)
        .await;
    let gh = client(&server);
    let err = gh.find_open_pull_request("b").await.unwrap_err();
    assert!(matches!(err, Error::Api { status: 302, .. }), "{err}");
    let err = gh.list_comments(1).await.unwrap_err();
    assert!(err.to_string().contains("another origin"), "{err}");
}
