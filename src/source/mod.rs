//! `source`: repository settings → a commit and its tree, read straight from git objects (no
//! work tree). Remote repositories are mirrored (bare) under a cache directory, one per URL, and
//! fetched incrementally. Also: the git rollback ([`rollback`]), pushing, and a file watcher for
//! local work trees (the inner dev loop).
//!
//! libgit2 is blocking: async callers use [`blocking`] (or [`fetch_async`]), which run it on
//! `spawn_blocking` with a timeout. Credentials go only to the configured host, SSH host keys
//! are checked against `known_hosts` ([`RemoteOptions`]), and everything printed is redacted
//! ([`redact`], [`redact_text`]).

mod known_hosts;
mod redact;
mod remote;
pub mod rollback;
mod watch;

pub use known_hosts::{HostKeyError, KnownHosts, ParseError as KnownHostsError, fingerprint};
pub use redact::{REDACTED, escape_control, redact, redact_text};
pub use remote::{
    BlockingError, CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, HostKeyPolicy, PushRejection,
    RemoteOptions, blocking, endpoint, push,
};
pub use watch::watch;

use git2::{ErrorClass, ErrorCode, FetchOptions, Oid, Repository};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Credentials for a remote. Never logged or shown: [`redact`] URLs before printing them.
/// SSH host keys are checked separately ([`RemoteOptions::host_keys`]).
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTPS token (sent as the password, user `x-access-token`), only to the configured host.
    Token(String),
    /// SSH private key in PEM/OpenSSH format, with optional passphrase.
    SshKey {
        private_key: String,
        passphrase: Option<String>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Token(_) => "Token(<redacted>)",
            Auth::SshKey { .. } => "SshKey(<redacted>)",
        })
    }
}

/// Why a source operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Auth,
    NotFound,
    Network,
    /// The operation passed its deadline (a hung or very slow remote).
    Timeout,
    /// The SSH server's host key is unknown, mismatching or revoked, or no known_hosts is set.
    HostKey,
    Other,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Auth => "authentication failed",
            Reason::NotFound => "not found",
            Reason::Network => "network error",
            Reason::Timeout => "timed out",
            Reason::HostKey => "host key verification failed",
            Reason::Other => "git error",
        })
    }
}

/// A source error naming the remote (credentials removed), the ref and why. `detail` is
/// redacted and has its control characters escaped when the error is made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} {remote}{}: {reason}: {detail}", reference.as_ref().map(|r| format!(" (ref {r})")).unwrap_or_default())]
pub struct SourceError {
    pub action: &'static str,
    pub remote: String,
    pub reference: Option<String>,
    pub reason: Reason,
    pub detail: String,
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

fn classify(e: &git2::Error) -> Reason {
    let msg = e.message().to_ascii_lowercase();
    if e.code() == ErrorCode::Auth
        || msg.contains("authentication")
        || msg.contains("401")
        || msg.contains("403")
        || msg.contains("credentials")
    {
        Reason::Auth
    } else if e.code() == ErrorCode::NotFound
        || msg.contains("not found")
        || msg.contains("does not appear to be a git repository")
        || msg.contains("could not find repository")
        || msg.contains("failed to resolve path")
        || msg.contains("no such file or directory")
        || msg.contains("404")
    {
        Reason::NotFound
    } else if e.code() == ErrorCode::Timeout || msg.contains("timed out") {
        Reason::Timeout
    } else if e.code() == ErrorCode::Certificate && e.class() == ErrorClass::Ssh {
        Reason::HostKey
    } else if matches!(
        e.class(),
        ErrorClass::Net | ErrorClass::Ssl | ErrorClass::Http | ErrorClass::Ssh | ErrorClass::Os
    ) {
        Reason::Network
    } else {
        Reason::Other
    }
}

/// A libgit2 error about `url` that happened outside a remote operation, redacted.
fn local_error(
    action: &'static str,
    url: &str,
    reference: Option<&str>,
    e: &git2::Error,
) -> SourceError {
    SourceError {
        action,
        remote: redact(url),
        reference: reference.map(escape_control),
        reason: classify(e),
        detail: redact_text(e.message(), &[]),
    }
}

/// Whether `s` names a remote (URL or scp-like `user@host:path`) rather than a local path.
pub fn is_remote(s: &str) -> bool {
    s.contains("://") || (s.contains('@') && s.contains(':') && !Path::new(s).exists())
}

/// Default cache directory for mirrors: `$FLEDGE_CACHE_DIR`, else `~/.cache/fledge/repos`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FLEDGE_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("fledge").join("repos")
}

/// What one fetch transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    pub received_objects: usize,
    pub received_bytes: usize,
}

/// A bare local mirror of one remote.
pub struct Mirror {
    url: String,
    path: PathBuf,
    repo: Repository,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("url", &redact(&self.url))
            .field("path", &self.path)
            .finish()
    }
}

/// The lock of the mirror at `path` in this process, held while it is created and while it
/// fetches: two tasks creating a new mirror at once (the sync's fetch and a git rollback right
/// after a restart) would both `init_bare` it, and the second fail on the first's
/// `config.lock`; two fetching at once race on the same ref locks (`refs/heads/main.lock`).
fn mirror_lock(path: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<PathBuf, std::sync::Arc<std::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(path.to_owned()).or_default().clone()
}

impl Mirror {
    /// Opens (or creates) the mirror of `url` under `cache_dir`.
    pub fn open(cache_dir: &Path, url: &str) -> Result<Mirror> {
        let err = |e: git2::Error| SourceError {
            reason: Reason::Other,
            ..local_error("opening mirror of", url, None, &e)
        };
        let digest = Sha256::digest(url.as_bytes());
        let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let readable: String = redact(url)
            .rsplit(['/', ':'])
            .find(|s| !s.is_empty())
            .unwrap_or("repo")
            .trim_end_matches(".git")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        let path = cache_dir.join(format!("{readable}-{id}.git"));
        std::fs::create_dir_all(cache_dir).map_err(|e| SourceError {
            action: "creating cache directory for",
            remote: redact(url),
            reference: None,
            reason: Reason::Other,
            detail: escape_control(&format!("{}: {e}", cache_dir.display())),
        })?;
        let repo = {
            let one = mirror_lock(&path);
            let _one = one.lock().unwrap_or_else(|e| e.into_inner());
            match Repository::open_bare(&path) {
                Ok(r) => r,
                Err(_) => Repository::init_bare(&path).map_err(err)?,
            }
        };
        Ok(Mirror {
            url: url.to_owned(),
            path,
            repo,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches all branches and tags (incrementally: only missing objects are transferred) and
    /// records the remote's default branch as the mirror's HEAD. SSH host keys are checked
    /// against the user's known_hosts ([`RemoteOptions::from_user_env`]); the agent passes the
    /// Secret's through [`Mirror::fetch_with`].
    pub fn fetch(&self, auth: &Auth) -> Result<FetchStats> {
        self.fetch_with(&RemoteOptions::from_user_env(auth.clone()))
    }

    /// [`Mirror::fetch`] with explicit credentials, host keys and deadline; one fetch per
    /// mirror at a time in this process (see [`mirror_lock`]).
    pub fn fetch_with(&self, opts: &RemoteOptions) -> Result<FetchStats> {
        let one = mirror_lock(&self.path);
        let _one = one.lock().unwrap_or_else(|e| e.into_inner());
        let state = Rc::new(RefCell::new(remote::CallbackState::default()));
        let fail = |e: git2::Error| remote::error("fetching", &self.url, opts, &state.borrow(), &e);
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(fail)?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(remote::callbacks(&self.url, opts, state.clone()));
        fo.download_tags(git2::AutotagOption::All);
        fo.prune(git2::FetchPrune::On);
        remote
            .fetch(
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                Some(&mut fo),
                None,
            )
            .map_err(fail)?;
        let stats = remote.stats();
        let stats = FetchStats {
            received_objects: stats.received_objects(),
            received_bytes: stats.received_bytes(),
        };
        if let Ok(buf) = remote.default_branch()
            && let Ok(name) = buf.as_str()
        {
            let _ = self.repo.set_head(name);
        }
        Ok(stats)
    }

    /// Fetches the one remote ref `src` (e.g. a pull request's `refs/pull/7/head`) into the
    /// local ref `dst`, forced (a pull request's head moves by force pushes too). Branches, tags
    /// and `FETCH_HEAD` are left alone, so this may run beside [`Mirror::fetch_with`] on the
    /// same mirror. `Ok(None)`: the remote has no such ref.
    pub fn fetch_ref(&self, opts: &RemoteOptions, src: &str, dst: &str) -> Result<Option<Oid>> {
        let state = Rc::new(RefCell::new(remote::CallbackState::default()));
        let fail = |e: git2::Error| remote::error("fetching", &self.url, opts, &state.borrow(), &e);
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(fail)?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(remote::callbacks(&self.url, opts, state.clone()));
        fo.download_tags(git2::AutotagOption::None);
        fo.prune(git2::FetchPrune::Off);
        fo.update_fetchhead(false);
        remote
            .fetch(&[format!("+{src}:{dst}")], Some(&mut fo), None)
            .map_err(fail)?;
        match self.repo.find_reference(dst) {
            Ok(r) => Ok(Some(r.peel_to_commit().map_err(fail)?.id())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(fail(e)),
        }
    }

    /// Resolves a branch, tag, commit sha or `HEAD` to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Oid> {
        resolve_rev(&self.repo, rev).map_err(|e| {
            let mut detail = e.message().to_owned();
            // A remote whose HEAD names a branch it does not have (a bare repository created
            // with another default branch than the one pushed): say which branches there are.
            if rev == "HEAD" {
                let branches: Vec<String> = self
                    .repo
                    .branches(Some(git2::BranchType::Local))
                    .map(|it| {
                        it.filter_map(|b| b.ok()?.0.name().ok()?.map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if !branches.is_empty() {
                    detail = format!(
                        "the remote's HEAD points to no commit; it has the branches {}: name one (--rev, --branch or spec.branch)",
                        branches.join(", ")
                    );
                }
            }
            SourceError {
                detail: redact_text(&detail, &[]),
                ..local_error("resolving", &self.url, Some(rev), &e)
            }
        })
    }
}

/// Resolves `rev` (branch name first, then any revspec) to a commit id.
pub fn resolve_rev(repo: &Repository, rev: &str) -> std::result::Result<Oid, git2::Error> {
    if let Ok(r) = repo.find_reference(&format!("refs/heads/{rev}"))
        && let Ok(c) = r.peel_to_commit()
    {
        return Ok(c.id());
    }
    let obj = repo.revparse_single(rev)?;
    Ok(obj.peel_to_commit()?.id())
}

/// Opens a local repository (bare or with a work tree).
pub fn open_local(path: &Path) -> Result<Repository> {
    Repository::open(path)
        .map_err(|e| local_error("opening", &path.display().to_string(), None, &e))
}

/// Fetches `url` into its mirror and resolves `rev` (default: the remote's default branch),
/// on the blocking thread pool, within `opts.timeout` (host keys from the user's known_hosts).
/// Returns the commit id.
pub async fn fetch_async(
    cache_dir: PathBuf,
    url: String,
    auth: Auth,
    rev: Option<String>,
) -> Result<String> {
    fetch_async_with(cache_dir, url, RemoteOptions::from_user_env(auth), rev).await
}

/// [`fetch_async`] with explicit options: what the agent calls.
pub async fn fetch_async_with(
    cache_dir: PathBuf,
    url: String,
    opts: RemoteOptions,
    rev: Option<String>,
) -> Result<String> {
    let remote = redact(&url);
    // A little longer than libgit2's own deadline, so its (more precise) error wins.
    let limit = opts.timeout + Duration::from_secs(1);
    blocking(limit, move || {
        let mirror = Mirror::open(&cache_dir, &url)?;
        mirror.fetch_with(&opts)?;
        Ok(mirror
            .resolve(rev.as_deref().unwrap_or("HEAD"))?
            .to_string())
    })
    .await
    .unwrap_or_else(|e| {
        Err(SourceError {
            action: "fetching",
            remote,
            reference: None,
            reason: match e {
                BlockingError::TimedOut(_) => Reason::Timeout,
                BlockingError::Panicked(_) => Reason::Other,
            },
            detail: e.to_string(),
        })
    })
}

/// The tree of one commit, as the renderer reads it (hardened: budgets, odd entries refused).
pub use crate::render::GitTree;
