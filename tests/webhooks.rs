//! The signed webhook endpoints, served on 127.0.0.1 by `server::webhooks::router`: GitHub's
//! documented test vector, valid, invalid, missing and SHA-1-only signatures, replayed
//! deliveries, oversize bodies, unknown events, no secret (endpoint off), and real deliveries
//! from the env's Gitea (a repository webhook pointing at the test server, then a push and a
//! pull request).

mod support;

use fledge::server::webhooks::{
    self, MAX_BODY_BYTES, PullRequestAction, WebhookEvent, WebhookSecret,
};
use serde_json::json;
use std::time::Duration;
use support::gitea::Gitea;
use tokio::sync::mpsc;

const SECRET: &str = "It's a Secret to Everybody";

struct Server {
    url: String,
    events: mpsc::Receiver<WebhookEvent>,
    http: reqwest::Client,
}

async fn serve(secret: Option<&str>) -> Server {
    fledge::install_crypto();
    let (tx, events) = mpsc::channel(16);
    let app = webhooks::router(secret.and_then(WebhookSecret::new), tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url,
        events,
        http: reqwest::Client::new(),
    }
}

impl Server {
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request to the test server");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// POSTs `body` with chunked transfer encoding (no Content-Length) over a raw connection.
    async fn post_chunked(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        for chunk in body.chunks(64 * 1024) {
            let head = format!("{:x}\r\n", chunk.len());
            // The server may answer and close before everything is sent.
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(chunk).await.is_err()
                || stream.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Nothing was handed to the agent.
    fn assert_no_event(&mut self) {
        assert!(self.events.try_recv().is_err(), "an event was sent");
    }
}

fn sign(body: &[u8]) -> String {
    WebhookSecret::new(SECRET).unwrap().sign(body)
}

fn push_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0000000000000000000000000000000000000001",
        "repository": {
            "id": 1, "name": "config", "full_name": "acme/config",
            "html_url": "https://github.com/acme/config",
            "clone_url": "https://github.com/acme/config.git",
            "git_url": "git://github.com/acme/config.git",
            "ssh_url": "git@github.com:acme/config.git"
        },
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "commits": []
    }))
    .unwrap()
}

#[tokio::test]
async fn github_documented_test_vector_verifies() {
    let mut s = serve(Some(SECRET)).await;
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(b"Hello, World!"), sig);
    // Signed correctly, not an event fledge acts on: accepted and ignored.
    let (status, text) = s
        .post(
            "/webhooks/github",
            &[("x-hub-signature-256", sig), ("x-github-event", "zen")],
            "Hello, World!",
        )
        .await;
    assert_eq!((status, text.as_str()), (202, "event ignored\n"));
    s.assert_no_event();
}

#[tokio::test]
async fn valid_push_is_handed_over_and_answered_at_once() {
    let mut s = serve(Some(SECRET)).await;
    let body = push_body();
    let sig = sign(&body);
    let (status, _) = s
        .post(
            "/webhooks/github",
            &[
                ("x-hub-signature-256", &sig),
                ("x-github-event", "push"),
                ("x-github-delivery", "d-1"),
            ],
            body,
        )
        .await;
    assert_eq!(status, 202);
    let WebhookEvent::Push(p) = s.events.try_recv().expect("a push event") else {
        panic!("not a push")
    };
    assert_eq!(p.branch(), Some("main"));
    assert_eq!(p.after, "0000000000000000000000000000000000000001");
    assert_eq!(p.delivery, "d-1");
    assert_eq!(p.forge, fledge::forge::ForgeKind::GitHub);
    let ev = WebhookEvent::Push(p);
    assert!(ev.is_for_repo("https://github.com/acme/config"));
    assert!(ev.is_for_repo("ssh://git@github.com/acme/config.git"));
    assert!(!ev.is_for_repo("https://github.com/acme/other"));
}

#[tokio::test]
async fn pull_request_actions_that_change_the_head_are_handed_over() {
    let mut s = serve(Some(SECRET)).await;
    let pr = |action: &str| {
        serde_json::to_vec(&json!({
            "action": action, "number": 42,
            "pull_request": {"number": 42, "state": "open",
                "head": {"ref": "feature", "sha": "abc123", "label": "acme:feature"},
                "base": {"ref": "main", "sha": "def456"}},
            "repository": {"clone_url": "https://github.com/acme/config.git", "html_url": "https://github.com/acme/config"}
        }))
        .unwrap()
    };
    for (i, action) in ["opened", "synchronize", "reopened", "closed", "labeled"]
        .iter()
        .enumerate()
    {
        let body = pr(action);
        let sig = sign(&body);
        let delivery = format!("pr-{i}");
        let (status, _) = s
            .post(
                "/webhooks/github",
                &[
                    ("x-hub-signature-256", &sig),
                    ("x-github-event", "pull_request"),
                    ("x-github-delivery", &delivery),
                ],
                body,
            )
            .await;
        assert_eq!(status, 202, "{action}");
    }
    let mut got = Vec::new();
    while let Ok(WebhookEvent::PullRequest(p)) = s.events.try_recv() {
        assert_eq!(
            (
                p.number,
                p.head_sha.as_str(),
                p.head_ref.as_str(),
                p.base_ref.as_str()
            ),
            (42, "abc123", "feature", "main")
        );
        got.push(p.action);
    }
    assert_eq!(
        got,
        [
            PullRequestAction::Opened,
            PullRequestAction::Synchronize,
            PullRequestAction::Reopened
        ]
    );
}

#[tokio::test]
async fn bad_missing_and_sha1_signatures_are_refused_and_do_nothing() {
    let mut s = serve(Some(SECRET)).await;
    let body = push_body();
    let other = WebhookSecret::new("another secret").unwrap().sign(&body);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-hub-signature-256", other.as_str())],
        vec![("x-hub-signature-256", "sha256=")],
        vec![(
            "x-hub-signature-256",
            "sha256=zz57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        )],
        vec![],
        // SHA-1 is never accepted, even when correct for another algorithm's header.
        vec![(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )],
    ];
    for mut headers in cases {
        headers.push(("x-github-event", "push"));
        let (status, _) = s.post("/webhooks/github", &headers, body.clone()).await;
        assert_eq!(status, 401, "{headers:?}");
    }
    // A body changed after signing.
    let sig = sign(&body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, _) = s
        .post(
            "/webhooks/github",
            &[("x-hub-signature-256", &sig), ("x-github-event", "push")],
            tampered,
        )
        .await;
    assert_eq!(status, 401);
    // Gitea's header carries bare hex; a GitHub-style header on the Gitea endpoint is not enough.
    let (status, _) = s
        .post(
            "/webhooks/gitea",
            &[("x-hub-signature-256", &sig), ("x-gitea-event", "push")],
            body.clone(),
        )
        .await;
    assert_eq!(status, 401);
    s.assert_no_event();
}

#[tokio::test]
async fn replayed_deliveries_are_ignored() {
    let mut s = serve(Some(SECRET)).await;
    let body = push_body();
    let sig = sign(&body);
    let headers = [
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    assert_eq!(
        s.post("/webhooks/github", &headers, body.clone()).await.0,
        202
    );
    assert_eq!(
        s.post("/webhooks/github", &headers, body.clone()).await,
        (200, "duplicate delivery ignored\n".to_owned())
    );
    assert!(s.events.try_recv().is_ok());
    s.assert_no_event();
    // Gitea's delivery header is honoured the same way.
    let gitea_sig = sig.trim_start_matches("sha256=").to_owned();
    let headers = [
        ("x-gitea-signature", gitea_sig.as_str()),
        ("x-gitea-event", "push"),
        ("x-gitea-delivery", "g-1"),
    ];
    assert_eq!(
        s.post("/webhooks/gitea", &headers, body.clone()).await.0,
        202
    );
    assert_eq!(s.post("/webhooks/gitea", &headers, body).await.0, 200);
    assert!(s.events.try_recv().is_ok());
    s.assert_no_event();
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let mut s = serve(Some(SECRET)).await;
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    let sig = sign(&body);
    let (status, _) = s
        .post(
            "/webhooks/github",
            &[("x-hub-signature-256", &sig), ("x-github-event", "push")],
            body,
        )
        .await;
    assert_eq!(status, 413);
    // Streamed without a length: the limit still holds.
    let big = vec![b' '; MAX_BODY_BYTES + 10];
    let sig = sign(&big);
    let status = s
        .post_chunked(
            "/webhooks/github",
            &[("x-hub-signature-256", &sig), ("x-github-event", "push")],
            &big,
        )
        .await;
    assert_eq!(status, 413);
    // Exactly at the limit is read (and then refused only because it is not JSON).
    let ok = vec![b' '; MAX_BODY_BYTES];
    let sig = sign(&ok);
    let (status, _) = s
        .post(
            "/webhooks/github",
            &[("x-hub-signature-256", &sig), ("x-github-event", "push")],
            ok,
        )
        .await;
    assert_eq!(status, 400);
    s.assert_no_event();
}

#[tokio::test]
async fn no_secret_means_no_endpoint() {
    let mut s = serve(None).await;
    let body = push_body();
    let sig = sign(&body);
    for path in ["/webhooks/github", "/webhooks/gitea"] {
        let (status, _) = s
            .post(
                path,
                &[("x-hub-signature-256", &sig), ("x-github-event", "push")],
                body.clone(),
            )
            .await;
        assert_eq!(status, 404, "{path}");
    }
    s.assert_no_event();
}

/// Real deliveries: the env's Gitea signs and posts `push` and `pull_request` events to the
/// test server on 127.0.0.1 (deliveries may arrive in any order).
#[tokio::test]
async fn real_gitea_deliveries_are_verified() {
    let secret = "gitea-webhook-secret-for-tests";
    let mut s = serve(Some(secret)).await;
    let gitea = Gitea::get();
    let repo = gitea.create_repo("hooks").await;
    gitea
        .add_webhook(
            &repo,
            &format!("{}/webhooks/gitea", s.url),
            secret,
            &["push", "pull_request"],
        )
        .await;
    let sha = repo.commit(&[("clusters/prod/fledge.yaml", "resources: []\n")], "init");
    repo.push("main");
    gitea.wait_not_empty(&repo).await;
    repo.git(&["checkout", "-q", "-b", "feature"]);
    let head = repo.commit(&[("clusters/prod/a.yaml", "kind: ConfigMap\n")], "change");
    repo.push("feature");
    let pr = gitea
        .api_ok(
            "POST",
            &format!("/repos/{}/{}/pulls", repo.owner, repo.name),
            Some(json!({"title": "change", "head": "feature", "base": "main"})),
        )
        .await;

    let (mut push_main, mut opened, mut synced) = (false, false, false);
    let mut pushed_again = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(push_main && opened && synced) {
        // A second push to the pull request's branch, once it is open.
        if opened && pushed_again.is_none() {
            let sha = repo.commit(
                &[("clusters/prod/a.yaml", "kind: Secret\n")],
                "change again",
            );
            repo.push("feature");
            pushed_again = Some(sha);
        }
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "Gitea deliveries did not arrive (push main: {push_main}, PR opened: {opened}, synchronized: {synced})"
                )
            })
            .expect("channel open");
        assert!(ev.is_for_repo(&repo.clone_url), "{ev:?}");
        match ev {
            WebhookEvent::Push(p) if p.branch() == Some("main") => {
                assert_eq!(p.after, sha);
                assert_eq!(p.forge, fledge::forge::ForgeKind::Gitea);
                assert!(!p.delivery.is_empty());
                push_main = true;
            }
            WebhookEvent::Push(p) => assert_eq!(p.branch(), Some("feature")),
            WebhookEvent::PullRequest(p) => {
                assert_eq!(Some(p.number), pr["number"].as_u64());
                assert_eq!(
                    (p.head_ref.as_str(), p.base_ref.as_str()),
                    ("feature", "main")
                );
                match p.action {
                    PullRequestAction::Opened => {
                        assert_eq!(p.head_sha, head);
                        opened = true;
                    }
                    PullRequestAction::Synchronize => {
                        assert_eq!(Some(&p.head_sha), pushed_again.as_ref());
                        synced = true;
                    }
                    other => panic!("unexpected action {other:?}"),
                }
            }
        }
    }
}
