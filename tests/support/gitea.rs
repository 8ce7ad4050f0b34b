//! Test helpers for the real Gitea `tests/env/up` starts (`GITEA_URL`, `GITEA_USER`,
//! `GITEA_TOKEN` in the env file): raw API calls, fresh repositories, pushes over
//! token-authenticated HTTP, and polls for Gitea's asynchronous moments (a repository reads as
//! empty for about a second after its first push; a pull request is `mergeable` only once
//! checked).

use super::{Env, eventually, git, unique};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The env's Gitea, as its admin user.
#[derive(Clone, Debug)]
pub struct Gitea {
    pub url: String,
    pub user: String,
    pub token: String,
    http: reqwest::Client,
}

/// A repository created for one test, with a local clone in a temporary directory.
pub struct GiteaRepo {
    pub name: String,
    pub owner: String,
    /// Clone URL without credentials.
    pub clone_url: String,
    work: tempfile::TempDir,
    push_url: String,
}

impl Gitea {
    /// The running env's Gitea. Panics (never skips) when it is not there.
    pub fn get() -> Gitea {
        let env = Env::get();
        fledge::install_crypto();
        Gitea {
            url: env.var("GITEA_URL").trim_end_matches('/').to_owned(),
            user: env.var("GITEA_USER").to_owned(),
            token: env.var("GITEA_TOKEN").to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// One API call under `/api/v1`; returns the status and the JSON answer (`Null` if none).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.url))
            .header("authorization", format!("token {}", self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("Gitea {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`Gitea::api`], asserting a 2xx answer.
    pub async fn api_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "Gitea {method} {path}: {status} {v}"
        );
        v
    }

    /// A new empty repository of the admin user with a local work tree on `main`.
    pub async fn create_repo(&self, prefix: &str) -> GiteaRepo {
        let name = unique(prefix);
        let v = self
            .api_ok(
                "POST",
                "/user/repos",
                Some(json!({"name": name, "private": false, "auto_init": false, "default_branch": "main"})),
            )
            .await;
        let clone_url = v["clone_url"].as_str().expect("clone_url").to_owned();
        let push_url = clone_url.replacen("://", &format!("://{}:{}@", self.user, self.token), 1);
        let work = tempfile::tempdir().expect("temp dir");
        git(work.path(), &["init", "-q", "-b", "main"]);
        GiteaRepo {
            name,
            owner: self.user.clone(),
            clone_url,
            work,
            push_url,
        }
    }

    /// Waits until the repository stops reading as empty after its first push.
    pub async fn wait_not_empty(&self, repo: &GiteaRepo) {
        let path = format!("/repos/{}/{}", repo.owner, repo.name);
        eventually(
            "the Gitea repository to read as not empty",
            Duration::from_secs(20),
            || async {
                let (_, v) = self.api("GET", &path, None).await;
                (v["empty"] == json!(false)).then_some(())
            },
        )
        .await
    }

    /// Waits until pull request `number` is `mergeable`.
    pub async fn wait_mergeable(&self, repo: &GiteaRepo, number: u64) {
        let path = format!("/repos/{}/{}/pulls/{number}", repo.owner, repo.name);
        eventually(
            "the pull request to be mergeable",
            Duration::from_secs(30),
            || async {
                let (_, v) = self.api("GET", &path, None).await;
                (v["mergeable"] == json!(true)).then_some(())
            },
        )
        .await
    }

    /// Adds a Gitea-type webhook for `events` posting JSON to `url`, signed with `secret`.
    pub async fn add_webhook(&self, repo: &GiteaRepo, url: &str, secret: &str, events: &[&str]) {
        self.api_ok(
            "POST",
            &format!("/repos/{}/{}/hooks", repo.owner, repo.name),
            Some(json!({
                "type": "gitea",
                "active": true,
                "events": events,
                "config": {"url": url, "content_type": "json", "secret": secret}
            })),
        )
        .await;
    }

    /// Opens a pull request from branch `head` into `base`; returns its number.
    pub async fn create_pull(&self, repo: &GiteaRepo, head: &str, base: &str, title: &str) -> u64 {
        let v = self
            .api_ok(
                "POST",
                &format!("/repos/{}/{}/pulls", repo.owner, repo.name),
                Some(json!({"title": title, "head": head, "base": base})),
            )
            .await;
        v["number"].as_u64().expect("the pull request's number")
    }

    /// Every commit status on `sha` (newest first, as Gitea lists them; Gitea calls the state
    /// `status`).
    pub async fn statuses(&self, repo: &GiteaRepo, sha: &str) -> Vec<Value> {
        let v = self
            .api_ok(
                "GET",
                &format!(
                    "/repos/{}/{}/commits/{sha}/statuses?limit=50",
                    repo.owner, repo.name
                ),
                None,
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Every comment on issue or pull request `number`, oldest first.
    pub async fn comments(&self, repo: &GiteaRepo, number: u64) -> Vec<Value> {
        let v = self
            .api_ok(
                "GET",
                &format!(
                    "/repos/{}/{}/issues/{number}/comments?limit=50",
                    repo.owner, repo.name
                ),
                None,
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// A forge client for `repo`.
    pub fn forge(&self, repo: &GiteaRepo) -> fledge::forge::gitea::Gitea {
        fledge::forge::gitea::Gitea::new(
            &self.url,
            &repo.owner,
            &repo.name,
            fledge::forge::Token::new(self.token.clone()),
        )
        .expect("Gitea forge client")
    }
}

impl GiteaRepo {
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// Writes `files` in the work tree, commits them on the current branch; returns the sha.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        for (path, content) in files {
            let p: PathBuf = self.work().join(path);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).expect("mkdir");
            }
            std::fs::write(&p, content).expect("write file");
        }
        git(self.work(), &["add", "-A"]);
        git(self.work(), &["commit", "-q", "-m", msg]);
        git(self.work(), &["rev-parse", "HEAD"])
    }

    /// Runs git in the work tree.
    pub fn git(&self, args: &[&str]) -> String {
        git(self.work(), args)
    }

    /// Pushes `branch` over HTTP with the token.
    pub fn push(&self, branch: &str) {
        let out = std::process::Command::new("git")
            .args([
                "push",
                "-q",
                &self.push_url,
                &format!("HEAD:refs/heads/{branch}"),
            ])
            .current_dir(self.work())
            .output()
            .expect("git is installed");
        assert!(
            out.status.success(),
            "git push {branch}: {}",
            String::from_utf8_lossy(&out.stderr).replace(&self.push_url, &self.clone_url)
        );
    }
}
