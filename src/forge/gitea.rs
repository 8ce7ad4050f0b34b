//! Gitea and Forgejo behind the [`Forge`] trait, over their REST API under `/api/v1`, whose
//! paths and fields mirror GitHub's (statuses, pulls, issue comments). Differences handled here:
//! `Authorization: token …`, `limit` instead of `per_page` (at most 50 by default), a status's
//! state read back as `status`, and 409 Conflict when a pull request already exists.

use super::github::{CombinedJson, CommentJson, PullJson, compare_link, send_comment, status_body};
use super::http::{Rest, RetryPolicy};
use super::{
    Comment, CommitStatus, Error, Forge, ForgeKind, NewPullRequest, PullRequest, Result, Token,
};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Page size Gitea accepts by default (`[api] MAX_RESPONSE_ITEMS`).
const PAGE: usize = 50;

/// A Gitea or Forgejo repository.
pub struct Gitea {
    rest: Rest,
    owner: String,
    repo: String,
    web_url: String,
}

impl Gitea {
    /// `url`: the server's base URL (`https://gitea.example.com`, or with a sub-path).
    pub fn new(url: &str, owner: &str, repo: &str, token: Token) -> Result<Gitea> {
        if owner.is_empty() || repo.is_empty() {
            return Err(Error::Config("Gitea owner and repo must be set".into()));
        }
        let web_url = url.trim().trim_end_matches('/').to_owned();
        let rest = Rest::new(
            &format!("{web_url}/api/v1/"),
            "token",
            token,
            &[("accept", "application/json")],
            RetryPolicy::default(),
        )?;
        Ok(Gitea {
            rest,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            web_url,
        })
    }

    /// Replaces the retry policy.
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
impl Forge for Gitea {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Gitea
    }

    async fn latest_status(&self, sha: &str, context: &str) -> Result<Option<CommitStatus>> {
        let limit = PAGE.to_string();
        for page in 1..=20u32 {
            let page_s = page.to_string();
            let url = self.repo_url(
                &["commits", sha, "status"],
                &[("limit", &limit), ("page", &page_s)],
            );
            let resp = self.rest.call(Method::GET, &url, None).await?;
            // A commit without statuses reads as 404 on some versions.
            if resp.status == StatusCode::NOT_FOUND && page == 1 {
                return Ok(None);
            }
            let resp = self.rest.ok(&Method::GET, &url, resp)?;
            let combined: CombinedJson = self.rest.decode(&Method::GET, &url, &resp.body)?;
            let statuses = combined.statuses();
            let n = statuses.len();
            if let Some(s) = statuses.into_iter().find(|s| s.context == context) {
                return Ok(Some(s.into_status()));
            }
            if n < PAGE {
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
        let limit = PAGE.to_string();
        let url = self.repo_url(
            &["pulls"],
            &[("state", "open"), ("limit", &limit), ("page", "1")],
        );
        let pulls: Vec<PullJson> = self.rest.get_all(&url).await?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.git_ref == branch && p.state == "open")
            .map(PullRequest::from))
    }

    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest> {
        let url = self.repo_url(&["pulls"], &[]);
        let body = json!({"title": pr.title, "head": pr.head, "base": pr.base, "body": pr.body});
        let resp = self.rest.call(Method::POST, &url, Some(&body)).await?;
        if matches!(
            resp.status,
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
        ) && super::http::api_message(&resp.body).contains("already exists")
            && let Some(existing) = self.find_open_pull_request(&pr.head).await?
        {
            return Ok(existing);
        }
        let resp = self.rest.ok(&Method::POST, &url, resp)?;
        let pull: PullJson = self.rest.decode(&Method::POST, &url, &resp.body)?;
        Ok(pull.into())
    }

    async fn list_comments(&self, number: u64) -> Result<Vec<Comment>> {
        // Gitea answers with every comment at once; `Link` pages are followed if it ever pages.
        let n = number.to_string();
        let url = self.repo_url(&["issues", &n, "comments"], &[]);
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
