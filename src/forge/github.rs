//! GitHub (and GitHub Enterprise through `apiUrl`) behind the [`Forge`] trait, over GitHub's
//! REST API v3 (`X-GitHub-Api-Version: 2022-11-28`). Plain HTTP rather than octocrab: the
//! client must see `Retry-After` and `Link` headers of answers (secondary rate limits, paging
//! through every comment), which octocrab's typed calls do not expose, and Gitea shares the
//! same core.

use super::http::{Rest, RetryPolicy};
use super::{
    Comment, CommitStatus, Error, Forge, ForgeKind, NewPullRequest, PullRequest, Result,
    StatusState, Token,
};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

/// `api.github.com`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// A GitHub repository.
pub struct GitHub {
    rest: Rest,
    owner: String,
    repo: String,
    web_url: String,
}

#[derive(Deserialize)]
pub(crate) struct StatusJson {
    #[serde(alias = "status")]
    pub state: StatusState,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
    #[serde(default)]
    pub context: String,
}

#[derive(Deserialize)]
pub(crate) struct CombinedJson {
    /// Gitea answers `null` for a commit without statuses.
    #[serde(default)]
    statuses: Option<Vec<StatusJson>>,
}

impl CombinedJson {
    pub fn statuses(self) -> Vec<StatusJson> {
        self.statuses.unwrap_or_default()
    }
}

impl StatusJson {
    pub fn into_status(self) -> CommitStatus {
        CommitStatus {
            context: self.context,
            state: self.state,
            description: self.description.unwrap_or_default(),
            target_url: self.target_url.filter(|u| !u.is_empty()),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct BranchJson {
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub sha: String,
}

#[derive(Deserialize)]
pub(crate) struct PullJson {
    pub number: u64,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub state: String,
    pub head: BranchJson,
    pub base: BranchJson,
}

impl From<PullJson> for PullRequest {
    fn from(p: PullJson) -> Self {
        PullRequest {
            number: p.number,
            html_url: p.html_url,
            head_ref: p.head.git_ref,
            head_sha: p.head.sha,
            base_ref: p.base.git_ref,
            state: p.state,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CommentJson {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: String,
}

/// Creates (`POST` to an issue's comments) or edits (`PATCH` of a comment) a comment: the same
/// request and answer on GitHub and Gitea.
pub(crate) async fn send_comment(
    rest: &Rest,
    method: Method,
    url: &reqwest::Url,
    body: &str,
) -> Result<Comment> {
    let c: CommentJson = rest
        .json(method, url, Some(&json!({ "body": body })))
        .await?;
    Ok(c.into())
}

/// The web page comparing `base` with `head` (`<web>/<owner>/<repo>/compare/<base>...<head>` on
/// both forges).
pub(crate) fn compare_link(web: &str, owner: &str, repo: &str, base: &str, head: &str) -> String {
    format!("{web}/{owner}/{repo}/compare/{base}...{head}")
}

impl From<CommentJson> for Comment {
    fn from(c: CommentJson) -> Self {
        Comment {
            id: c.id,
            body: c.body.unwrap_or_default(),
            html_url: c.html_url,
        }
    }
}

/// The JSON body of a status post (shared with Gitea, whose API takes the same fields).
pub(crate) fn status_body(status: &CommitStatus) -> serde_json::Value {
    let mut body = json!({
        "state": status.state,
        "description": status.description,
        "context": status.context,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = json!(url);
    }
    body
}

/// The web URL for an API URL: `api.github.com` → `github.com`; Enterprise `…/api/v3` → `…`.
fn web_url(api: &reqwest::Url) -> String {
    let mut web = api.clone();
    if web.host_str() == Some("api.github.com") {
        let _ = web.set_host(Some("github.com"));
    }
    let path = web.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v3").unwrap_or(path).to_owned();
    web.set_path(&path);
    web.as_str().trim_end_matches('/').to_owned()
}

impl GitHub {
    /// `api_url`: `https://api.github.com` or an Enterprise `https://host/api/v3`.
    pub fn new(api_url: &str, owner: &str, repo: &str, token: Token) -> Result<GitHub> {
        if owner.is_empty() || repo.is_empty() {
            return Err(Error::Config("GitHub owner and repo must be set".into()));
        }
        let rest = Rest::new(
            api_url,
            "Bearer",
            token,
            &[
                ("accept", "application/vnd.github+json"),
                ("x-github-api-version", "2022-11-28"),
            ],
            RetryPolicy::default(),
        )?;
        let web_url = web_url(rest.base());
        Ok(GitHub {
            rest,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            web_url,
        })
    }

    /// Replaces the retry policy (tests use short waits).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.rest = self.rest.with_retry(retry);
        self
    }

    fn repo_url(&self, rest: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
        let mut segments = vec!["repos", self.owner.as_str(), self.repo.as_str()];
        segments.extend_from_slice(rest);
        self.rest.url(&segments, query)
    }
}

#[async_trait]
impl Forge for GitHub {
    fn kind(&self) -> ForgeKind {
        ForgeKind::GitHub
    }

    async fn latest_status(&self, sha: &str, context: &str) -> Result<Option<CommitStatus>> {
        // The combined status lists the latest status of every context, 100 per page.
        for page in 1..=10u32 {
            let page_s = page.to_string();
            let url = self.repo_url(
                &["commits", sha, "status"],
                &[("per_page", "100"), ("page", &page_s)],
            );
            let combined: CombinedJson = self.rest.json(Method::GET, &url, None).await?;
            let statuses = combined.statuses();
            let n = statuses.len();
            if let Some(s) = statuses.into_iter().find(|s| s.context == context) {
                return Ok(Some(s.into_status()));
            }
            if n < 100 {
                break;
            }
        }
        Ok(None)
    }

    async fn post_status(&self, sha: &str, status: &CommitStatus) -> Result<()> {
        let url = self.repo_url(&["statuses", sha], &[]);
        let _: serde_json::Value = self
            .rest
            .json(Method::POST, &url, Some(&status_body(status)))
            .await?;
        Ok(())
    }

    async fn find_open_pull_request(&self, branch: &str) -> Result<Option<PullRequest>> {
        let head = format!("{}:{branch}", self.owner);
        let url = self.repo_url(
            &["pulls"],
            &[("state", "open"), ("head", &head), ("per_page", "100")],
        );
        let pulls: Vec<PullJson> = self.rest.get_all(&url).await?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.git_ref == branch)
            .map(PullRequest::from))
    }

    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest> {
        let url = self.repo_url(&["pulls"], &[]);
        let body = json!({"title": pr.title, "head": pr.head, "base": pr.base, "body": pr.body});
        let resp = self.rest.call(Method::POST, &url, Some(&body)).await?;
        if resp.status == StatusCode::UNPROCESSABLE_ENTITY
            && super::http::api_message(&resp.body).contains("already exists")
            && let Some(existing) = self.find_open_pull_request(&pr.head).await?
        {
            return Ok(existing);
        }
        let resp = self.rest.ok(&Method::POST, &url, resp)?;
        let pull: PullJson = self.rest.decode(&Method::POST, &url, &resp.body)?;
        Ok(pull.into())
    }

    async fn list_comments(&self, number: u64) -> Result<Vec<Comment>> {
        let n = number.to_string();
        let url = self.repo_url(&["issues", &n, "comments"], &[("per_page", "100")]);
        let comments: Vec<CommentJson> = self.rest.get_all(&url).await?;
        Ok(comments.into_iter().map(Comment::from).collect())
    }

    async fn create_comment(&self, number: u64, body: &str) -> Result<Comment> {
        let n = number.to_string();
        let url = self.repo_url(&["issues", &n, "comments"], &[]);
        send_comment(&self.rest, Method::POST, &url, body).await
    }

    async fn edit_comment(&self, comment_id: u64, body: &str) -> Result<Comment> {
        let id = comment_id.to_string();
        let url = self.repo_url(&["issues", "comments", &id], &[]);
        send_comment(&self.rest, Method::PATCH, &url, body).await
    }

    fn compare_url(&self, base: &str, head: &str) -> String {
        compare_link(&self.web_url, &self.owner, &self.repo, base, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls_of_github_and_enterprise() {
        let gh = GitHub::new(DEFAULT_API_URL, "o", "r", Token::new("t")).unwrap();
        assert_eq!(
            gh.compare_url("abc", "def"),
            "https://github.com/o/r/compare/abc...def"
        );
        let ghe =
            GitHub::new("https://ghe.example.com/api/v3/", "o", "r", Token::new("t")).unwrap();
        assert_eq!(
            ghe.compare_url("main", "fledge/rollback/x"),
            "https://ghe.example.com/o/r/compare/main...fledge/rollback/x"
        );
    }
}
