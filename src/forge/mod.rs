//! `forge`: the last step of the pipeline, where fledge reports back to the repository's host —
//! commit statuses on the commit being rolled out, the plan comment on pull requests, and the
//! revert pull request after a failed canary. One [`Forge`] trait, two implementations over
//! plain REST: [`github::GitHub`] (GitHub and GitHub Enterprise) and [`gitea::Gitea`] (Gitea and
//! Forgejo, whose `/api/v1` mirrors GitHub's paths). [`report`] renders the Markdown and the
//! status descriptions as pure functions.
//!
//! Tokens never appear in errors or logs ([`Token`]'s `Debug` is redacted, and remote text is
//! cleaned by [`clean_remote_text`]); credentials go only to the configured API host (no
//! redirects are followed, and `Link` pages on another origin are refused).

pub mod gitea;
pub mod github;
mod http;
pub mod report;

use crate::crd::{ConfigRepoSpec, SecretRef};
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

pub use http::RetryPolicy;

/// Errors of forge calls. Every message is free of credentials and control characters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The forge configuration is unusable (bad URL, both forges set, …).
    #[error("forge configuration: {0}")]
    Config(String),
    /// The request did not get an answer (connection refused, timeout, TLS).
    #[error("{method} {path}: {message}")]
    Transport {
        method: &'static str,
        path: String,
        message: String,
    },
    /// The forge answered with an error status.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    /// Rate limited, and waiting longer than the retry budget allows.
    #[error("{method} {path}: rate limited by the forge (retry after {}s)", .retry_after.as_secs())]
    RateLimited {
        method: &'static str,
        path: String,
        retry_after: Duration,
    },
    /// The token Secret cannot be read or lacks the key.
    #[error("forge token: {0}")]
    Token(String),
    /// An answer that is not what the API documents (bad JSON, too large, too many pages).
    #[error("{method} {path}: unexpected answer: {message}")]
    Decode {
        method: &'static str,
        path: String,
        message: String,
    },
}

impl Error {
    /// A fixed category for metric labels (never the message).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Token(_) => "token",
            Error::Transport { .. } => "transport",
            Error::Api { status: 401, .. } | Error::Api { status: 403, .. } => "auth",
            Error::Api { status: 404, .. } => "not_found",
            Error::Api { .. } => "api",
            Error::RateLimited { .. } => "rate_limited",
            Error::Decode { .. } => "decode",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An API token. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Token {
        Token(value.into().trim().to_owned())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Which kind of forge a repository lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForgeKind {
    GitHub,
    Gitea,
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForgeKind::GitHub => "github",
            ForgeKind::Gitea => "gitea",
        })
    }
}

/// State of a commit status (the names both forges use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// Longest commit status description GitHub accepts (it answers 422 beyond).
pub const MAX_STATUS_DESCRIPTION: usize = 140;

/// One commit status. `description` is cut to [`MAX_STATUS_DESCRIPTION`] characters by
/// [`CommitStatus::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub context: String,
    pub state: StatusState,
    pub description: String,
    pub target_url: Option<String>,
}

impl CommitStatus {
    pub fn new(context: impl Into<String>, state: StatusState, description: &str) -> Self {
        CommitStatus {
            context: context.into(),
            state,
            description: report::cut_description(description),
            target_url: None,
        }
    }
    pub fn with_target_url(mut self, url: Option<String>) -> Self {
        self.target_url = url.filter(|u| !u.is_empty());
        self
    }
}

/// What [`Forge::set_status`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusOutcome {
    /// A new status was posted.
    Posted,
    /// The latest status of the context was already identical; nothing was posted.
    Unchanged,
}

/// An open pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub state: String,
}

/// A pull request to open: `head` branch into `base` branch of the same repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    pub head: String,
    pub base: String,
    pub body: String,
}

/// An issue or pull-request comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub html_url: String,
}

/// The operations fledge needs from a forge. Implementations are cheap to share (`Arc<dyn
/// Forge>`); every call is bounded in time, pages and bytes, and waits out rate limits only
/// within its [`RetryPolicy`].
#[async_trait]
pub trait Forge: Send + Sync {
    fn kind(&self) -> ForgeKind;

    /// The latest status of `context` on `sha` (from the combined status, which holds the
    /// latest status per context).
    async fn latest_status(&self, sha: &str, context: &str) -> Result<Option<CommitStatus>>;

    /// Posts a status without looking at earlier ones. Prefer [`Forge::set_status`].
    async fn post_status(&self, sha: &str, status: &CommitStatus) -> Result<()>;

    /// Posts `status` on `sha` unless the latest status of the same context is identical
    /// (state, description and target URL): repeated reconciles do not pile up statuses
    /// against the forge's per-context limit.
    async fn set_status(&self, sha: &str, status: &CommitStatus) -> Result<StatusOutcome> {
        let mut status = status.clone();
        status.description = report::cut_description(&status.description);
        if self.latest_status(sha, &status.context).await?.as_ref() == Some(&status) {
            return Ok(StatusOutcome::Unchanged);
        }
        self.post_status(sha, &status).await?;
        Ok(StatusOutcome::Posted)
    }

    /// The open pull request whose head is `branch` of this repository, if any.
    async fn find_open_pull_request(&self, branch: &str) -> Result<Option<PullRequest>>;

    /// Opens a pull request. When one is already open for the same head, that one is returned
    /// (the forge's "already exists" answer is followed by a lookup), so retries are safe.
    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest>;

    /// All comments of issue or pull request `number`, following every page.
    async fn list_comments(&self, number: u64) -> Result<Vec<Comment>>;

    async fn create_comment(&self, number: u64, body: &str) -> Result<Comment>;

    async fn edit_comment(&self, comment_id: u64, body: &str) -> Result<Comment>;

    /// Web URL comparing `base...head` (commits or branches).
    fn compare_url(&self, base: &str, head: &str) -> String;
}

/// What [`upsert_comment`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upserted {
    Created(Comment),
    Edited(Comment),
    /// The comment already had exactly this body.
    Unchanged(Comment),
}

/// Creates or edits the one comment on `number` whose body starts with `marker` (the hidden
/// HTML comment of [`report::plan_marker`]): every page of comments is read, so a marker is
/// found however long the discussion. `body` must start with `marker`.
pub async fn upsert_comment(
    forge: &dyn Forge,
    number: u64,
    marker: &str,
    body: &str,
) -> Result<Upserted> {
    if !body.starts_with(marker) {
        return Err(Error::Config(
            "the comment body must start with its marker".into(),
        ));
    }
    let comments = forge.list_comments(number).await?;
    match comments
        .into_iter()
        .find(|c| c.body.trim_start().starts_with(marker))
    {
        Some(c) if c.body == body => Ok(Upserted::Unchanged(c)),
        Some(c) => Ok(Upserted::Edited(forge.edit_comment(c.id, body).await?)),
        None => Ok(Upserted::Created(forge.create_comment(number, body).await?)),
    }
}

/// Key of the token in `tokenSecretRef` (and in `secretRef` for an inferred GitHub) when the
/// reference names none.
pub const DEFAULT_TOKEN_KEY: &str = "token";

/// Where a repository's forge is and how to reach it, resolved from a ConfigRepo spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgeTarget {
    pub kind: ForgeKind,
    /// API base: `https://api.github.com`, `https://ghe.example/api/v3`, `https://gitea.example`.
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    /// Secret holding the API token (default key `token`).
    pub token_secret_ref: Option<SecretRef>,
}

impl ForgeTarget {
    /// Resolves `spec.forge`; when unset, infers GitHub from a `github.com` repository URL (owner
    /// and repository from the URL, token from `spec.secretRef`). `Ok(None)`: no forge.
    pub fn from_spec(spec: &ConfigRepoSpec) -> Result<Option<ForgeTarget>> {
        let forge = spec.forge.as_ref();
        match (
            forge.and_then(|f| f.github.as_ref()),
            forge.and_then(|f| f.gitea.as_ref()),
        ) {
            (Some(_), Some(_)) => Err(Error::Config(
                "set only one of spec.forge.github and spec.forge.gitea".into(),
            )),
            (Some(gh), None) => Ok(Some(ForgeTarget {
                kind: ForgeKind::GitHub,
                api_url: gh
                    .api_url
                    .clone()
                    .unwrap_or_else(|| github::DEFAULT_API_URL.into()),
                owner: gh.owner.clone(),
                repo: gh.repo.clone(),
                token_secret_ref: Some(gh.token_secret_ref.clone()),
            })),
            (None, Some(gt)) => Ok(Some(ForgeTarget {
                kind: ForgeKind::Gitea,
                api_url: gt.url.clone(),
                owner: gt.owner.clone(),
                repo: gt.repo.clone(),
                token_secret_ref: Some(gt.token_secret_ref.clone()),
            })),
            (None, None) => Ok(infer_github(&spec.url).map(|(owner, repo)| ForgeTarget {
                kind: ForgeKind::GitHub,
                api_url: github::DEFAULT_API_URL.into(),
                owner,
                repo,
                token_secret_ref: spec.secret_ref.clone(),
            })),
        }
    }

    /// Reads the API token from `tokenSecretRef` (key [`DEFAULT_TOKEN_KEY`] unless the reference
    /// names one; the Secret's namespace defaults to `default_namespace`, the agent's).
    pub async fn read_token(
        &self,
        client: &kube::Client,
        default_namespace: &str,
    ) -> Result<Token> {
        use k8s_openapi::api::core::v1::Secret;
        let r = self.token_secret_ref.as_ref().ok_or_else(|| {
            Error::Token(format!(
                "no Secret holds the token for the {} forge",
                self.kind
            ))
        })?;
        let ns = r.namespace.as_deref().unwrap_or(default_namespace);
        let key = r.key.as_deref().unwrap_or(DEFAULT_TOKEN_KEY);
        let secret = kube::Api::<Secret>::namespaced(client.clone(), ns)
            .get(&r.name)
            .await
            .map_err(|e| {
                Error::Token(format!(
                    "reading Secret {ns}/{}: {}",
                    r.name,
                    clean_remote_text(&crate::apply::kube_message(&e), 300, None)
                ))
            })?;
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| Error::Token(format!("Secret {ns}/{} has no key {key}", r.name)))?;
        Ok(Token::new(value))
    }

    /// A client for this target with `token`.
    pub fn connect(&self, token: Token) -> Result<Box<dyn Forge>> {
        Ok(match self.kind {
            ForgeKind::GitHub => Box::new(github::GitHub::new(
                &self.api_url,
                &self.owner,
                &self.repo,
                token,
            )?),
            ForgeKind::Gitea => Box::new(gitea::Gitea::new(
                &self.api_url,
                &self.owner,
                &self.repo,
                token,
            )?),
        })
    }
}

/// `(owner, repo)` when `url` is a github.com repository (https, ssh or scp-like form).
pub fn infer_github(url: &str) -> Option<(String, String)> {
    let rest = if let Some(r) = url.strip_prefix("git@github.com:") {
        r
    } else {
        let after_scheme = url.split_once("://")?.1;
        let after_user = after_scheme
            .rsplit_once('@')
            .map_or(after_scheme, |(_, h)| h);
        let (host, path) = after_user.split_once('/')?;
        let host = host.split(':').next().unwrap_or(host);
        if !host.eq_ignore_ascii_case("github.com") && !host.eq_ignore_ascii_case("www.github.com")
        {
            return None;
        }
        path
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let mut parts = rest.split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (parts.next().is_none() && ok(owner) && ok(repo)).then(|| (owner.to_owned(), repo.to_owned()))
}

/// Remote text made safe to print: control characters escaped (`\n`, `\u{1b}`), cut to `max`
/// characters, and `secret` (when given) replaced by `<redacted>`.
pub fn clean_remote_text(text: &str, max: usize, secret: Option<&str>) -> String {
    let text = match secret {
        Some(s) if s.len() >= 4 => text.replace(s, "<redacted>"),
        _ => text.to_owned(),
    };
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
