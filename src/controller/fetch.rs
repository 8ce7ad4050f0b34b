//! The first steps of a sync: fetch the ConfigRepo's git (when due) and render its bundle (when
//! the commit, the spec or the cluster's kinds changed). Git work runs on the blocking pool with
//! a timeout; a failing remote backs off exponentially with jitter. The render is cached with
//! every input it depends on: commit, spec and the discovered scopes.

use super::Agent;
use super::reconcile::SyncError;
use crate::apply::Manifest;
use crate::crd::{ConfigRepo, ConfigRepoSpec};
use crate::render::{BundleFreeze, FsTree, GitTree, RenderErrors, RenderOptions, Scopes};
use crate::source::{self, Auth, Mirror, RemoteOptions};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A render as the agent keeps it between reconciles: compact manifests in apply order, or the
/// render's errors.
pub type Rendered = Arc<Result<Vec<Arc<Manifest>>, RenderErrors>>;

/// Longest a fetch and render may take before the reconcile gives up on it (the git
/// operation's own deadline, [`source::DEFAULT_TIMEOUT`], comes first).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(150);
/// How long discovered scopes are trusted.
const SCOPES_TTL: Duration = Duration::from_secs(120);

/// The source side of a repo, kept between reconciles.
#[derive(Default)]
pub struct SourceCache {
    pub commit: Option<String>,
    pub fetched_at: Option<Instant>,
    pub spec: Option<ConfigRepoSpec>,
    pub scopes: Option<Scopes>,
    pub desired: Option<Rendered>,
    /// The `freeze` field of the cached render's root bundle (`by` filled in from the commit).
    pub freeze: Option<BundleFreeze>,
    /// The git freeze as last recorded by sync (`None`: not known since the agent started).
    pub git_frozen: Option<Option<crate::crd::Frozen>>,
    /// Fetches failed in a row (for the backoff).
    pub failures: u32,
}

/// What the fetch and render steps hand on.
pub struct Fetched {
    pub commit: String,
    pub rendered: Rendered,
    /// The root bundle's `freeze` field (the andon cord from git), when the render succeeded.
    pub freeze: Option<BundleFreeze>,
}

/// A render and its bundle's `freeze` field, as fetch hands them on.
type RenderedFreeze = (Rendered, Option<BundleFreeze>);

/// Converts a render into manifests, one object at a time (so the value trees are freed as the
/// compact bodies are made), keeping the bundle's `freeze` with the commit's `author`.
fn compact(
    rendered: Result<crate::render::Desired, RenderErrors>,
    author: Option<String>,
) -> RenderedFreeze {
    let mut freeze = None;
    let r = rendered.map(|d| {
        freeze = d.freeze.map(|mut f| {
            f.author = author;
            f
        });
        d.objects
            .into_iter()
            .map(|o| Arc::new(Manifest::from_rendered(o)))
            .collect()
    });
    (Arc::new(r), freeze)
}

/// A plain directory (not a git repository) named by the URL: rendered as it is (the dev loop).
fn local_dir(url: &str) -> Option<PathBuf> {
    let p = Path::new(url.strip_prefix("dir://").unwrap_or(url));
    (!source::is_remote(url) && p.is_dir() && git2::Repository::open_bare(p).is_err())
        .then(|| p.to_owned())
}

/// Delay after `failures` fetch failures in a row: 5 s doubling to 5 min, ±20% jitter.
pub fn fetch_backoff(failures: u32, jitter: f64) -> Duration {
    let base = 5.0 * 2f64.powi(failures.saturating_sub(1).min(6) as i32);
    Duration::from_secs_f64(base.min(300.0) * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

/// A number in [0, 1) that differs between calls (jitter; no need for a real RNG).
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

impl Agent {
    /// How to talk to the repo's remote: credentials and SSH host keys (`known_hosts`) from its
    /// Secret, and the git timeout. The Secret must live in the agent's namespace (or one
    /// allowed by `--secret-namespaces`): a ConfigRepo is cluster-scoped, and whoever may create
    /// one must not read every Secret of the cluster through the agent.
    pub(super) async fn remote_options(
        &self,
        spec: &ConfigRepoSpec,
    ) -> Result<RemoteOptions, SyncError> {
        let Some(r) = &spec.secret_ref else {
            return Ok(RemoteOptions::new(Auth::None).with_timeout(source::DEFAULT_TIMEOUT));
        };
        let ns = r
            .namespace
            .clone()
            .unwrap_or_else(|| self.opts.namespace.clone());
        if ns != self.opts.namespace && !self.opts.secret_namespaces.contains(&ns) {
            return Err(SyncError::Credentials(format!(
                "spec.secretRef names namespace {ns:?}; the agent reads Secrets only in its own namespace {:?} (allow more with --secret-namespaces)",
                self.opts.namespace
            )));
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), &ns)
            .get(&r.name)
            .await
            .map_err(|e| {
                SyncError::Credentials(format!(
                    "reading Secret {ns}/{}: {}",
                    r.name,
                    crate::apply::kube_message(&e)
                ))
            })?;
        let data = secret.data.unwrap_or_default();
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        let auth = if let Some(key) = &r.key {
            get(key).map(Auth::Token).ok_or_else(|| {
                SyncError::Credentials(format!("Secret {ns}/{} has no key {key}", r.name))
            })?
        } else if let Some(t) = get("token").or_else(|| get("password")) {
            Auth::Token(t)
        } else if let Some(k) = get("identity").or_else(|| get("ssh-privatekey")) {
            Auth::SshKey {
                private_key: k,
                passphrase: get("passphrase"),
            }
        } else {
            return Err(SyncError::Credentials(format!(
                "Secret {ns}/{} has neither token nor identity",
                r.name
            )));
        };
        let opts = RemoteOptions::new(auth).with_timeout(source::DEFAULT_TIMEOUT);
        // SSH remotes are refused without known_hosts: a host key must be checked.
        match get("known_hosts") {
            Some(text) => opts.with_known_hosts(&text).map_err(|e| {
                SyncError::Credentials(format!("Secret {ns}/{}: known_hosts: {e}", r.name))
            }),
            None => Ok(opts),
        }
    }

    /// The cluster's kind scopes (cached for a while). A discovery error is an error: rendering
    /// with the built-in table instead would fail on in-cluster CRDs and stick until the next
    /// commit.
    pub(super) async fn scopes(&self) -> Result<Scopes, SyncError> {
        let mut cached = self.scopes.lock().await;
        if let Some((at, s)) = &*cached
            && at.elapsed() < SCOPES_TTL
        {
            return Ok(s.clone());
        }
        let s = crate::render::discover(&self.client)
            .await
            .map_err(|e| SyncError::Discovery(e.to_string()))?;
        *cached = Some((Instant::now(), s.clone()));
        Ok(s)
    }

    /// Fetches (when due) and renders (when an input changed). A render error is not an error
    /// here: it is handed on (the sync reports it and applies nothing).
    pub(super) async fn fetch_and_render(
        &self,
        repo: &ConfigRepo,
        interval: Duration,
        force_fetch: bool,
    ) -> Result<Fetched, SyncError> {
        let name = repo.metadata.name.clone().unwrap_or_default();
        let spec = repo.spec.clone();
        let scopes = self.scopes().await?;
        let opts = RenderOptions {
            config_repo: Some(name.clone()),
            scopes: scopes.clone(),
            ..RenderOptions::default()
        };
        let mut cache = self.sources.lock().await.remove(&name).unwrap_or_default();
        let inputs_changed =
            cache.spec.as_ref() != Some(&spec) || cache.scopes.as_ref() != Some(&scopes);
        let due = force_fetch
            || cache.spec.as_ref() != Some(&spec)
            || cache.fetched_at.is_none_or(|t| t.elapsed() >= interval);
        let remote = if due {
            Some(self.remote_options(&spec).await)
        } else {
            None
        };
        let previous = cache
            .desired
            .clone()
            .filter(|_| !inputs_changed)
            .zip(cache.commit.clone());
        let (cache_dir, url, branch, path) = (
            self.opts.cache_dir.clone(),
            spec.url.clone(),
            spec.branch.clone(),
            spec.path.clone(),
        );
        let previous_commit = previous.as_ref().map(|(_, c)| c.clone());
        let work = move || -> Result<(String, Option<RenderedFreeze>), SyncError> {
            if let Some(dir) = local_dir(&url) {
                let tree = FsTree::new(&dir).map_err(|e| SyncError::Fetch {
                    message: format!("opening {}: {e}", dir.display()),
                    reason: source::Reason::NotFound,
                    failures: 0,
                })?;
                let r = compact(crate::render::render(&tree, &path, &opts), None);
                return Ok(("worktree".to_owned(), Some(r)));
            }
            let fetch_err = |e: source::SourceError| SyncError::Fetch {
                reason: e.reason.clone(),
                message: e.to_string(),
                failures: 0,
            };
            let mirror = Mirror::open(&cache_dir, &url).map_err(fetch_err)?;
            if let Some(remote) = remote {
                mirror.fetch_with(&remote?).map_err(fetch_err)?;
            }
            let commit = mirror.resolve(&branch).map_err(fetch_err)?;
            let commit_s = commit.to_string();
            if previous_commit.as_deref() == Some(commit_s.as_str()) {
                return Ok((commit_s, None));
            }
            let tree = GitTree::at(mirror.repo(), commit).map_err(|e| SyncError::Fetch {
                message: format!("reading commit {commit}: {}", e.message()),
                reason: source::Reason::Other,
                failures: 0,
            })?;
            let author = mirror
                .repo()
                .find_commit(commit)
                .ok()
                .and_then(|c| c.author().name().ok().map(str::to_owned));
            let r = compact(crate::render::render(&tree, &path, &opts), author);
            Ok((commit_s, Some(r)))
        };
        let result = match source::blocking(GIT_TIMEOUT, work).await {
            Err(e @ source::BlockingError::TimedOut(_)) => Err(SyncError::Fetch {
                message: format!("fetching and rendering: {e}"),
                reason: source::Reason::Timeout,
                failures: 0,
            }),
            Err(e) => Err(SyncError::Fetch {
                message: e.to_string(),
                reason: source::Reason::Other,
                failures: 0,
            }),
            Ok(r) => r,
        };
        cache.spec = Some(spec);
        let out = match result {
            Ok((commit, rendered)) => {
                if due {
                    cache.fetched_at = Some(Instant::now());
                }
                cache.failures = 0;
                let (rendered, freeze) = match rendered {
                    Some((r, f)) => (r, f),
                    None => (
                        previous.map(|(r, _)| r).expect("reused only when cached"),
                        cache.freeze.clone(),
                    ),
                };
                // A failed render is not kept: the next reconcile renders again (a transient
                // cause, such as a CRD not yet discovered, must not stick to the commit).
                if rendered.is_ok() {
                    cache.desired = Some(rendered.clone());
                    cache.scopes = Some(scopes);
                    cache.freeze = freeze.clone();
                } else {
                    cache.desired = None;
                }
                cache.commit = Some(commit.clone());
                Ok(Fetched {
                    commit,
                    freeze: freeze.filter(|_| rendered.is_ok()),
                    rendered,
                })
            }
            Err(e) => {
                cache.failures += 1;
                Err(e)
            }
        };
        let failures = cache.failures;
        self.sources.lock().await.insert(name, cache);
        if matches!(&out, Ok(f) if f.rendered.is_err()) {
            // Rediscover before the next render: a kind unknown now may be served by then.
            *self.scopes.lock().await = None;
        }
        out.map_err(|e| match e {
            SyncError::Fetch { .. } => e.with_failures(failures),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_remote_backs_off_exponentially_with_jitter() {
        let d = |n, j| fetch_backoff(n, j).as_secs_f64();
        assert!((d(1, 0.5) - 5.0).abs() < 1e-9);
        assert!((d(2, 0.5) - 10.0).abs() < 1e-9);
        assert!((d(4, 0.5) - 40.0).abs() < 1e-9);
        assert!((d(30, 0.5) - 300.0).abs() < 1e-9, "capped");
        assert!(d(3, 0.0) < d(3, 1.0), "jitter spreads retries");
        assert!(d(3, 0.0) >= 0.8 * 20.0 && d(3, 1.0) <= 1.2 * 20.0);
    }
}
