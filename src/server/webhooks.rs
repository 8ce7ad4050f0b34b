//! `server::webhooks`: the forge webhooks that make a push apply within seconds instead of at
//! the next poll. `/webhooks/github` (`X-Hub-Signature-256: sha256=<hex>`, SHA-256 only: the
//! SHA-1 header is never looked at) and `/webhooks/gitea` (`X-Gitea-Signature: <hex>`), both
//! HMAC-SHA256 over the raw body, checked with a constant-time compare **before** anything is
//! parsed. No secret configured → no endpoint (404). Missing or bad signature → 401, nothing
//! done. Bodies over 1 MiB → 413. Replayed delivery IDs are ignored (bounded memory). Unknown
//! events → 202. A verified `push` or `pull_request` becomes a [`WebhookEvent`] handed to the
//! agent through a bounded channel without waiting: the answer goes out at once and the fetch
//! runs after it.
//!
//! The secret comes from a Secret mounted as a file: [`WebhookSecret::from_file`] (the agent's
//! `--webhook-secret-file`); the same secret serves both endpoints.

use crate::forge::ForgeKind;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Largest webhook body accepted (GitHub caps payloads at 25 MB; pushes fledge needs are small).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Delivery IDs remembered for replay detection.
const SEEN_CAPACITY: usize = 10_000;

/// The shared webhook secret. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl WebhookSecret {
    /// `None` for an empty secret (an empty secret would make the endpoint unauthenticated).
    pub fn new(secret: impl AsRef<[u8]>) -> Option<WebhookSecret> {
        let s = secret.as_ref();
        (!s.is_empty()).then(|| WebhookSecret(Arc::from(s)))
    }

    /// Reads the secret from a file (a mounted Secret key); one trailing newline is dropped.
    /// An empty file gives `Ok(None)`: the endpoints stay off.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Option<WebhookSecret>> {
        let mut bytes = std::fs::read(path)?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        Ok(WebhookSecret::new(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// `true` when `signature_hex` is the HMAC-SHA256 of `body` (compared in constant time).
    pub fn verify(&self, body: &[u8], signature_hex: &str) -> bool {
        let Some(expected) = decode_hex(signature_hex.trim()) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }

    /// `sha256=<hex>` for `body`, as GitHub sends it (for tests and for signing).
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A verified event for the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookEvent {
    Push(PushEvent),
    PullRequest(PullRequestEvent),
}

impl WebhookEvent {
    /// The URLs of the repository the event is about (clone, ssh, web).
    pub fn repo_urls(&self) -> &[String] {
        match self {
            WebhookEvent::Push(p) => &p.repo_urls,
            WebhookEvent::PullRequest(p) => &p.repo_urls,
        }
    }

    /// `true` when the event is about the repository `url` (a ConfigRepo's `spec.url`), by
    /// [`same_repo`].
    pub fn is_for_repo(&self, url: &str) -> bool {
        self.repo_urls().iter().any(|u| same_repo(u, url))
    }
}

/// A push to a branch or tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEvent {
    pub forge: ForgeKind,
    /// The forge's delivery ID.
    pub delivery: String,
    /// `clone_url`, `ssh_url`, `git_url`, `html_url` of the repository (those present).
    pub repo_urls: Vec<String>,
    /// The full ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// The commit the ref points to now (all zeros when the ref was deleted).
    pub after: String,
}

impl PushEvent {
    /// The branch name when the ref is a branch.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }
}

/// What happened to a pull request (only the actions that change its head are passed on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullRequestAction {
    Opened,
    /// New commits on the head (GitHub `synchronize`, Gitea `synchronized`).
    Synchronize,
    Reopened,
}

/// A pull request whose head needs a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequestEvent {
    pub forge: ForgeKind,
    pub delivery: String,
    pub action: PullRequestAction,
    pub number: u64,
    pub head_sha: String,
    /// Head branch name (no `refs/heads/`).
    pub head_ref: String,
    pub base_ref: String,
    /// URLs of the base repository (the one the pull request targets).
    pub repo_urls: Vec<String>,
}

/// `true` when two repository URLs name the same repository: scheme, user, port, a trailing
/// `.git` or `/` and the host's case are ignored; `git@host:path` equals `ssh://git@host/path`.
pub fn same_repo(a: &str, b: &str) -> bool {
    let (a, b) = (repo_key(a), repo_key(b));
    !a.is_empty() && a == b
}

fn repo_key(url: &str) -> String {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        // scp-like `user@host:path`
        None => match url.split_once(':') {
            Some((host, path)) if !host.contains('/') => format!("{host}/{path}"),
            _ => url.to_owned(),
        },
    };
    let rest = rest.rsplit_once('@').map_or(rest.as_str(), |(_, h)| h);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.is_empty() || path.is_empty() {
        return String::new();
    }
    format!("{host}/{path}")
}

#[derive(Deserialize)]
struct RepoJson {
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    ssh_url: Option<String>,
    #[serde(default)]
    git_url: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

impl RepoJson {
    fn urls(self) -> Vec<String> {
        [self.clone_url, self.ssh_url, self.git_url, self.html_url]
            .into_iter()
            .flatten()
            .filter(|u| !u.is_empty())
            .collect()
    }
}

#[derive(Deserialize)]
struct PushJson {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    repository: RepoJson,
}

#[derive(Deserialize)]
struct PrBranchJson {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    sha: String,
}

#[derive(Deserialize)]
struct PrJson {
    head: PrBranchJson,
    base: PrBranchJson,
}

#[derive(Deserialize)]
struct PullRequestJson {
    action: String,
    number: u64,
    pull_request: PrJson,
    repository: RepoJson,
}

/// Parses a verified body. `Ok(None)`: an event or action fledge does not act on.
fn parse_event(
    forge: ForgeKind,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Result<Option<WebhookEvent>, serde_json::Error> {
    match event {
        "push" => {
            let p: PushJson = serde_json::from_slice(body)?;
            Ok(Some(WebhookEvent::Push(PushEvent {
                forge,
                delivery: delivery.to_owned(),
                repo_urls: p.repository.urls(),
                git_ref: p.git_ref,
                after: p.after,
            })))
        }
        "pull_request" => {
            let p: PullRequestJson = serde_json::from_slice(body)?;
            let action = match p.action.as_str() {
                "opened" => PullRequestAction::Opened,
                "synchronize" | "synchronized" => PullRequestAction::Synchronize,
                "reopened" => PullRequestAction::Reopened,
                _ => return Ok(None),
            };
            Ok(Some(WebhookEvent::PullRequest(PullRequestEvent {
                forge,
                delivery: delivery.to_owned(),
                action,
                number: p.number,
                head_sha: p.pull_request.head.sha,
                head_ref: p.pull_request.head.git_ref,
                base_ref: p.pull_request.base.git_ref,
                repo_urls: p.repository.urls(),
            })))
        }
        _ => Ok(None),
    }
}

/// Delivery IDs already handled, oldest dropped first.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// `false` when `id` was seen before.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }

    fn forget(&mut self, id: &str) {
        if self.set.remove(id) {
            self.order.retain(|x| x != id);
        }
    }
}

struct Hooks {
    secret: WebhookSecret,
    sink: mpsc::Sender<WebhookEvent>,
    seen: Mutex<Seen>,
}

/// Per-forge header names.
struct Headers {
    forge: ForgeKind,
    signature: &'static str,
    /// Prefix of the signature value (`sha256=` on GitHub, none on Gitea).
    prefix: &'static str,
    event: &'static str,
    delivery: &'static str,
}

const GITHUB: Headers = Headers {
    forge: ForgeKind::GitHub,
    signature: "x-hub-signature-256",
    prefix: "sha256=",
    event: "x-github-event",
    delivery: "x-github-delivery",
};

const GITEA: Headers = Headers {
    forge: ForgeKind::Gitea,
    signature: "x-gitea-signature",
    prefix: "",
    event: "x-gitea-event",
    delivery: "x-gitea-delivery",
};

/// The webhook routes, to merge into the agent's router. `secret: None` → no routes (the paths
/// answer 404). Verified `push` and `pull_request` events go to `sink`.
pub fn router(secret: Option<WebhookSecret>, sink: mpsc::Sender<WebhookEvent>) -> axum::Router {
    let Some(secret) = secret else {
        return axum::Router::new();
    };
    let hooks = Arc::new(Hooks {
        secret,
        sink,
        seen: Mutex::new(Seen::default()),
    });
    axum::Router::new()
        .route(
            "/webhooks/github",
            axum::routing::post(|State(h): State<Arc<Hooks>>, req: Request| async move {
                handle(&h, &GITHUB, req).await
            }),
        )
        .route(
            "/webhooks/gitea",
            axum::routing::post(|State(h): State<Arc<Hooks>>, req: Request| async move {
                handle(&h, &GITEA, req).await
            }),
        )
        .with_state(hooks)
}

fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(hooks: &Hooks, h: &Headers, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    // 1. A signature must be there before the body is even read.
    let Some(signature) = header_str(&parts.headers, h.signature)
        .and_then(|s| s.trim().strip_prefix(h.prefix))
        .map(str::to_owned)
    else {
        tracing::warn!(forge = %h.forge, "webhook without signature refused");
        return answer(StatusCode::UNAUTHORIZED, "missing signature\n");
    };
    // 2. The raw body, within the limit.
    let declared = header_str(&parts.headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    };
    // 3. Verify before parsing anything.
    if !hooks.secret.verify(&body, &signature) {
        tracing::warn!(forge = %h.forge, "webhook with a bad signature refused");
        return answer(StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    // 4. Replays.
    let delivery: String = header_str(&parts.headers, h.delivery)
        .unwrap_or("")
        .chars()
        .take(128)
        .collect();
    if !delivery.is_empty() {
        let fresh = hooks
            .seen
            .lock()
            .map(|mut s| s.insert(&delivery))
            .unwrap_or(true);
        if !fresh {
            tracing::info!(forge = %h.forge, delivery = %delivery, "replayed webhook delivery ignored");
            return answer(StatusCode::OK, "duplicate delivery ignored\n");
        }
    }
    let forget = || {
        if let Ok(mut s) = hooks.seen.lock() {
            s.forget(&delivery);
        }
    };
    // 5. The event.
    let event_name = header_str(&parts.headers, h.event).unwrap_or("");
    if event_name == "ping" {
        return answer(StatusCode::OK, "pong\n");
    }
    let event = match parse_event(h.forge, event_name, &delivery, &body) {
        Ok(Some(e)) => e,
        Ok(None) => return answer(StatusCode::ACCEPTED, "event ignored\n"),
        Err(e) => {
            tracing::warn!(forge = %h.forge, event = event_name, error = %e, "webhook body does not parse");
            forget();
            return answer(StatusCode::BAD_REQUEST, "body does not parse\n");
        }
    };
    // 6. Hand over without waiting; the agent fetches after this answer.
    match hooks.sink.try_send(event) {
        Ok(()) => {
            tracing::info!(forge = %h.forge, event = event_name, delivery = %delivery, "webhook accepted");
            answer(StatusCode::ACCEPTED, "accepted\n")
        }
        Err(e) => {
            forget();
            let full = matches!(e, mpsc::error::TrySendError::Full(_));
            tracing::warn!(forge = %h.forge, full, "webhook event dropped: agent not taking events");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "busy, retry later\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_test_vector() {
        let s = WebhookSecret::new("It's a Secret to Everybody").unwrap();
        let sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(s.sign(b"Hello, World!"), format!("sha256={sig}"));
        assert!(s.verify(b"Hello, World!", sig));
        assert!(!s.verify(b"Hello, World?", sig));
        assert!(!s.verify(b"Hello, World!", &sig[..62]));
        assert!(!s.verify(b"Hello, World!", "zz"));
        assert_eq!(format!("{s:?}"), "WebhookSecret(<redacted>)");
        assert!(WebhookSecret::new("").is_none());
    }

    #[test]
    fn repo_urls_match_across_forms() {
        assert!(same_repo(
            "https://github.com/Acme/config.git",
            "https://GITHUB.com/Acme/config"
        ));
        assert!(same_repo(
            "git@github.com:acme/config.git",
            "ssh://git@github.com/acme/config"
        ));
        assert!(same_repo(
            "http://127.0.0.1:3000/fledge/config.git",
            "http://token@127.0.0.1:3000/fledge/config/"
        ));
        assert!(!same_repo(
            "https://github.com/acme/config",
            "https://github.com/acme/other"
        ));
        assert!(!same_repo("", ""));
    }

    #[test]
    fn seen_is_bounded() {
        let mut s = Seen::default();
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        for i in 0..SEEN_CAPACITY {
            s.insert(&i.to_string());
        }
        assert_eq!(s.order.len(), SEEN_CAPACITY);
        assert!(s.insert("a"), "the oldest id was forgotten");
    }
}
