//! `server::dashboard`: the agent's read-only web UI at `/` — ConfigRepos (commit, conditions,
//! drift, last errors) and Rollouts (phase, step k/n, set and actual weight, the analysis with
//! per-metric canary/baseline values and score, the revert pull request, commit links). It sits
//! beside the probes and webhooks on the agent's listener and only reads: one list of
//! ConfigRepos and one of Rollouts at most once a second ([`Snapshots`]), shared by every open
//! page, pushed to the page as server-sent events (`/api/events`) and served whole at
//! `/api/state`. The page ([`PAGE`]) has no external assets (works offline) and writes text
//! with `textContent` only, so nothing from the cluster is ever parsed as markup. Repository
//! URLs are shown redacted and every link points at `http(s)` forge pages.

use crate::crd::{ConfigRepo, Rollout};
use crate::forge::{ForgeKind, ForgeTarget};
use crate::labels::CONFIG_REPO_LABEL;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json};
use futures_util::Stream;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The page: HTML with its style and script inline.
pub const PAGE: &str = include_str!("dashboard.html");

/// How often the state is read from the API server (and pushed to open pages when it changed).
pub const REFRESH: Duration = Duration::from_secs(1);

/// What the page shows, as served at `/api/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardState {
    pub repos: Vec<RepoView>,
    pub rollouts: Vec<RolloutView>,
    /// Why the last read failed (the previous state is kept and shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoView {
    pub name: String,
    /// The repository URL without credentials.
    pub url: String,
    pub branch: String,
    pub fetched_commit: Option<String>,
    pub applied_commit: Option<String>,
    pub commit_url: Option<String>,
    pub health: Option<String>,
    pub drift_count: i64,
    pub objects: i64,
    pub conditions: Vec<ConditionView>,
    pub errors: Vec<String>,
    /// The freeze in effect: who, why, since when (`None`: not frozen).
    pub frozen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub reason: Option<String>,
    /// `k/n` of the current step.
    pub step: Option<String>,
    pub set_weight: Option<i32>,
    pub actual_weight: Option<i32>,
    pub last_score: Option<f64>,
    pub canary_revision: Option<String>,
    pub canary_commit_url: Option<String>,
    pub stable_revision: Option<String>,
    pub revert_pull_request: Option<String>,
    /// The analysis in flight: template and samples so far.
    pub analysis: Option<String>,
    /// The latest recorded verdict.
    pub verdict: Option<VerdictView>,
    pub started: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictView {
    pub step: i32,
    pub template: String,
    pub outcome: String,
    pub score: f64,
    pub reason: String,
    pub metrics: Vec<MetricView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    pub result: String,
    pub canary: Option<f64>,
    pub baseline: Option<f64>,
}

/// The web page of a commit on the repository's forge, when the ConfigRepo names one.
pub fn commit_url(repo: &ConfigRepo, sha: &str) -> Option<String> {
    let t = ForgeTarget::from_spec(&repo.spec).ok()??;
    let web = match t.kind {
        ForgeKind::Gitea => t.api_url.trim_end_matches('/').to_owned(),
        ForgeKind::GitHub => {
            let api = t.api_url.trim_end_matches('/');
            if api == "https://api.github.com" {
                "https://github.com".to_owned()
            } else {
                // GitHub Enterprise: `https://host/api/v3` → `https://host`.
                api.trim_end_matches("/api/v3").to_owned()
            }
        }
    };
    let ok = web.starts_with("https://") || web.starts_with("http://");
    let sha_ok = !sha.is_empty() && sha.chars().all(|c| c.is_ascii_hexdigit());
    (ok && sha_ok).then(|| format!("{web}/{}/{}/commit/{sha}", t.owner, t.repo))
}

fn repo_view(r: &ConfigRepo) -> RepoView {
    let st = r.status.clone().unwrap_or_default();
    let esc = |s: &str| crate::limits::escape_controls(s).into_owned();
    RepoView {
        name: r.name_any(),
        url: crate::source::redact(&r.spec.url),
        branch: r.spec.branch.clone(),
        commit_url: st.applied_commit.as_deref().and_then(|c| commit_url(r, c)),
        fetched_commit: st.fetched_commit.clone(),
        applied_commit: st.applied_commit.clone(),
        health: st.health.clone(),
        drift_count: st.drift_count,
        objects: st.inventory.len() as i64,
        conditions: st
            .conditions
            .iter()
            .map(|c| ConditionView {
                type_: c.type_.clone(),
                status: format!("{:?}", c.status),
                reason: c.reason.clone(),
                message: esc(&c.message),
            })
            .collect(),
        errors: st
            .errors
            .iter()
            .map(|e| esc(&format!("{}: {}", e.object, e.message)))
            .collect(),
        frozen: st.frozen.as_ref().map(|f| esc(&f.summary())),
    }
}

fn rollout_view(ro: &Rollout, repos: &BTreeMap<String, &ConfigRepo>) -> RolloutView {
    let st = ro.status.clone().unwrap_or_default();
    let repo = ro
        .labels()
        .get(CONFIG_REPO_LABEL)
        .and_then(|n| repos.get(n));
    let verdict = st.analyses.last().map(|a| VerdictView {
        step: a.step,
        template: a.template.clone(),
        outcome: format!("{:?}", a.verdict),
        score: a.score,
        reason: crate::limits::escape_controls(&a.reason).into_owned(),
        metrics: a
            .metrics
            .iter()
            .map(|m| MetricView {
                name: m.name.clone(),
                result: m.result.clone(),
                canary: m.canary,
                baseline: m.baseline,
            })
            .collect(),
    });
    RolloutView {
        namespace: ro.namespace().unwrap_or_default(),
        name: ro.name_any(),
        phase: crate::controller::rollouts::phase_name(st.phase).to_owned(),
        reason: st
            .reason
            .as_deref()
            .map(|r| crate::limits::escape_controls(r).into_owned()),
        step: st.step_progress.clone(),
        set_weight: st.set_weight,
        actual_weight: st.actual_weight,
        last_score: st.last_score,
        canary_commit_url: st
            .canary_revision
            .as_deref()
            .and_then(|c| repo.and_then(|r| commit_url(r, c))),
        canary_revision: st.canary_revision.clone(),
        stable_revision: st.stable_revision.clone(),
        revert_pull_request: st
            .revert_pull_request
            .clone()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        analysis: st
            .analysis
            .as_ref()
            .map(|a| format!("{} · {} samples", a.template, a.samples)),
        verdict,
        started: st.step_started_at.clone(),
    }
}

/// Builds the page's state from the listed objects (pure; sorted by name).
pub fn state_of(repos: &[ConfigRepo], rollouts: &[Rollout]) -> DashboardState {
    let by_name: BTreeMap<String, &ConfigRepo> = repos.iter().map(|r| (r.name_any(), r)).collect();
    let mut rollouts: Vec<RolloutView> =
        rollouts.iter().map(|r| rollout_view(r, &by_name)).collect();
    rollouts.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    DashboardState {
        repos: by_name.values().map(|r| repo_view(r)).collect(),
        rollouts,
        error: None,
    }
}

/// The latest state, read at most once per [`REFRESH`] whatever the number of open pages.
pub struct Snapshots {
    client: Client,
    last: tokio::sync::Mutex<(Option<Instant>, DashboardState)>,
}

impl Snapshots {
    pub fn new(client: Client) -> Arc<Snapshots> {
        Arc::new(Snapshots {
            client,
            last: tokio::sync::Mutex::new((None, DashboardState::default())),
        })
    }

    /// The state, re-read when older than [`REFRESH`]. A failed read keeps the last state and
    /// says why.
    pub async fn get(&self) -> DashboardState {
        let mut last = self.last.lock().await;
        if last.0.is_some_and(|t| t.elapsed() < REFRESH) {
            return last.1.clone();
        }
        let repos = Api::<ConfigRepo>::all(self.client.clone());
        let rollouts = Api::<Rollout>::all(self.client.clone());
        let lp = ListParams::default();
        match tokio::try_join!(repos.list(&lp), rollouts.list(&lp)) {
            Ok((r, ro)) => last.1 = state_of(&r.items, &ro.items),
            Err(e) => {
                last.1.error = Some(format!(
                    "reading the cluster: {}",
                    crate::limits::escape_controls(&e.to_string())
                ))
            }
        }
        last.0 = Some(Instant::now());
        last.1.clone()
    }
}

/// The routes: `/` and `/rollouts/<ns>/<name>` (the page; the latter marks that Rollout), `/api/state` (JSON), `/api/events` (server-sent events, one
/// `state` event whenever the state changed, checked every [`REFRESH`]).
pub fn router(client: Client) -> axum::Router {
    let snaps = Snapshots::new(client);
    axum::Router::new()
        .route("/", axum::routing::get(page))
        // Commit statuses link here (`--dashboard-url`): the same page, that Rollout's row marked.
        .route("/rollouts/{namespace}/{name}", axum::routing::get(page))
        .route("/api/state", axum::routing::get(state))
        .route("/api/events", axum::routing::get(events))
        .with_state(snaps)
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

async fn state(State(s): State<Arc<Snapshots>>) -> Json<DashboardState> {
    Json(s.get().await)
}

async fn events(
    State(s): State<Arc<Snapshots>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((s, None::<String>), |(s, prev)| async move {
        loop {
            let body = serde_json::to_string(&s.get().await).unwrap_or_default();
            if prev.as_deref() != Some(body.as_str()) {
                let ev = Event::default().event("state").data(body.clone());
                return Some((Ok(ev), (s, Some(body))));
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ConfigRepoSpec;

    fn repo(forge: serde_json::Value) -> ConfigRepo {
        let spec: ConfigRepoSpec = serde_json::from_value(serde_json::json!({
            "url": "https://user:hunter2@git.example/o/r.git", "path": ".", "forge": forge
        }))
        .unwrap();
        ConfigRepo::new("shop", spec)
    }

    #[test]
    fn commit_links_point_at_the_forge_and_only_for_hex_revisions() {
        let gitea = repo(
            serde_json::json!({"gitea": {"url": "http://127.0.0.1:3000/", "owner": "o", "repo": "r", "tokenSecretRef": {"name": "t"}}}),
        );
        assert_eq!(
            commit_url(&gitea, "abc123").as_deref(),
            Some("http://127.0.0.1:3000/o/r/commit/abc123")
        );
        assert_eq!(commit_url(&gitea, "abc\"><script>"), None);
        let ghe = repo(
            serde_json::json!({"github": {"owner": "o", "repo": "r", "tokenSecretRef": {"name": "t"}, "apiUrl": "https://ghe.example/api/v3"}}),
        );
        assert_eq!(
            commit_url(&ghe, "abc").as_deref(),
            Some("https://ghe.example/o/r/commit/abc")
        );
        let gh = repo(
            serde_json::json!({"github": {"owner": "o", "repo": "r", "tokenSecretRef": {"name": "t"}}}),
        );
        assert_eq!(
            commit_url(&gh, "abc").as_deref(),
            Some("https://github.com/o/r/commit/abc")
        );
        let bad = repo(
            serde_json::json!({"gitea": {"url": "javascript:alert(1)", "owner": "o", "repo": "r", "tokenSecretRef": {"name": "t"}}}),
        );
        assert_eq!(commit_url(&bad, "abc"), None);
    }

    #[test]
    fn the_state_never_shows_credentials_and_escapes_control_characters() {
        let mut r = repo(serde_json::Value::Null);
        r.status = Some(serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "FetchFailed", "message": "bad\u{1b}[31m"}]
        })).unwrap());
        let s = state_of(&[r], &[]);
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert_eq!(
            s.repos[0].url,
            crate::source::redact("https://user:hunter2@git.example/o/r.git")
        );
        assert!(
            !s.repos[0].conditions[0].message.contains('\u{1b}'),
            "{json}"
        );
        assert_eq!(s.repos[0].frozen, None);
        // Frozen: who, why and since when, control characters escaped.
        let mut r = repo(serde_json::Value::Null);
        r.status = Some(serde_json::from_value(serde_json::json!({
            "frozen": {"source": "cli", "by": "carol", "reason": "x", "since": "2026-11-30T21:00:00Z",
                       "mode": "pause", "message": "by carol (cli): x\u{1b}[31m"}
        })).unwrap());
        let s = state_of(&[r], &[]);
        assert_eq!(
            s.repos[0].frozen.as_deref(),
            Some("by carol (cli): x\\u{1b}[31m since 2026-11-30T21:00:00Z")
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!PAGE.contains(external), "the page loads {external}…");
        }
        assert!(
            !PAGE.contains("innerHTML"),
            "the page must write text, never markup"
        );
        assert!(PAGE.contains("<html lang=\"en\">"));
    }
}
