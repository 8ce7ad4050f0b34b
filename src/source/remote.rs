//! Talking to a remote: the options of one operation (credentials, SSH host keys, timeout), the
//! libgit2 callbacks that enforce them, push, and [`blocking`], the async wrapper that keeps
//! libgit2 off the reactor.
//!
//! Rules enforced here for every fetch and push:
//! - credentials go only to the configured scheme, host and port (never after a redirect);
//! - SSH host keys are checked against `known_hosts`; without one, SSH is refused unless the
//!   caller opted out explicitly ([`HostKeyPolicy::InsecureAcceptAny`]);
//! - an operation ends at its deadline: checked in every callback, and libgit2's socket
//!   connect/read/write timeouts end a silent server;
//! - every error text is redacted ([`super::redact_text`]).

use super::known_hosts::{HostKeyError, KnownHosts, ParseError, fingerprint, key_type_of};
use super::redact::redact_text;
use super::{Auth, Reason, SourceError, redact};
use git2::{CertificateCheckStatus, ErrorClass, ErrorCode, RemoteCallbacks};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Default deadline of one fetch or push.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a TCP connection (shorter when the operation's timeout is shorter).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How the SSH host key of a remote is checked.
#[derive(Clone, Debug, Default)]
pub enum HostKeyPolicy {
    /// Refuse every SSH host: no `known_hosts` was configured. The safe default.
    #[default]
    RequireKnownHosts,
    /// Accept only keys listed here (the Secret's `known_hosts`).
    Known(KnownHosts),
    /// Accept any host key: an explicit opt-out (trusted networks, tests). Never the default.
    InsecureAcceptAny,
}

/// Everything one fetch or push needs besides the URL.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    pub auth: Auth,
    pub host_keys: HostKeyPolicy,
    /// Deadline of the whole operation.
    pub timeout: Duration,
}

impl RemoteOptions {
    /// `auth`, no known hosts (SSH refused), [`DEFAULT_TIMEOUT`].
    pub fn new(auth: Auth) -> RemoteOptions {
        RemoteOptions {
            auth,
            host_keys: HostKeyPolicy::RequireKnownHosts,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Host keys from a `known_hosts` text (the Secret's `known_hosts` key).
    pub fn with_known_hosts(mut self, text: &str) -> Result<RemoteOptions, ParseError> {
        self.host_keys = HostKeyPolicy::Known(KnownHosts::parse(text)?);
        Ok(self)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> RemoteOptions {
        self.timeout = timeout;
        self
    }

    /// What the command line uses: host keys from the file `$FLEDGE_GIT_KNOWN_HOSTS`, else
    /// `~/.ssh/known_hosts` (as `ssh` would); neither readable → SSH refused.
    pub fn from_user_env(auth: Auth) -> RemoteOptions {
        let path = std::env::var_os("FLEDGE_GIT_KNOWN_HOSTS")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".ssh").join("known_hosts"))
            });
        let known = path
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| KnownHosts::parse(&t).ok());
        let mut opts = RemoteOptions::new(auth);
        if let Some(k) = known {
            opts.host_keys = HostKeyPolicy::Known(k);
        }
        opts
    }

    /// Secret values to remove from any text printed about this operation.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            Auth::None => vec![],
            Auth::Token(t) => vec![t.as_str()],
            Auth::SshKey {
                private_key,
                passphrase,
            } => {
                let mut v = vec![private_key.as_str()];
                v.extend(passphrase.as_deref());
                v
            }
        }
    }
}

/// Scheme, host and port of a remote URL (scp-like `user@host:path` is ssh on port 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parses the endpoint of `url`; `None` when it names no network host (a local path) or does
/// not parse.
pub fn endpoint(url: &str) -> Option<Endpoint> {
    let (scheme, authority) = match url.split_once("://") {
        Some((s, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            (s.to_ascii_lowercase(), &rest[..end])
        }
        None => {
            // scp-like: [user@]host:path, host without '/'.
            let (hostpart, _) = url.split_once(':')?;
            let hostpart = hostpart.rsplit_once('@').map_or(hostpart, |(_, h)| h);
            if hostpart.is_empty() || hostpart.contains('/') {
                return None;
            }
            return Some(Endpoint {
                scheme: "ssh".into(),
                host: hostpart.to_ascii_lowercase(),
                port: 22,
            });
        }
    };
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        "ssh" | "git+ssh" | "ssh+git" => 22,
        "git" => 9418,
        _ => return None,
    };
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => default_port,
    };
    if host.is_empty() {
        return None;
    }
    let scheme = if scheme.contains("ssh") {
        "ssh".into()
    } else {
        scheme
    };
    Some(Endpoint {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Sets libgit2's socket timeouts (process-wide in libgit2: use one timeout for the process).
fn set_socket_timeouts(timeout: Duration) {
    let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: these options only store an integer in libgit2's global settings, read when a
    // socket is opened; no pointer is passed.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(
            timeout.min(CONNECT_TIMEOUT)
        ));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms(timeout));
    }
}

/// What the callbacks found; read after the operation to explain its failure.
#[derive(Default)]
pub(crate) struct CallbackState {
    /// Why the operation was stopped by us (refused credentials, host key, deadline).
    pub refusal: Option<(Reason, String)>,
    /// Refs the remote refused on push, with its message.
    pub rejected: Vec<(String, String)>,
}

/// The callbacks of one operation on `url` with `opts`; `state` records refusals.
pub(crate) fn callbacks<'a>(
    url: &str,
    opts: &'a RemoteOptions,
    state: Rc<RefCell<CallbackState>>,
) -> RemoteCallbacks<'a> {
    set_socket_timeouts(opts.timeout);
    let deadline = Instant::now() + opts.timeout;
    let configured = endpoint(url);
    let port = configured.as_ref().map_or(22, |e| e.port);
    let url = url.to_owned();
    let mut cb = RemoteCallbacks::new();

    let st = state.clone();
    let timeout = opts.timeout;
    let mut tries = 0;
    cb.credentials(move |cb_url, user, allowed| {
        let refuse = |reason: Reason, msg: String| {
            st.borrow_mut().refusal = Some((reason.clone(), msg.clone()));
            Err(git2::Error::new(ErrorCode::Auth, ErrorClass::Net, msg))
        };
        if Instant::now() > deadline {
            return refuse(Reason::Timeout, format!("timed out after {timeout:?}"));
        }
        let asked = endpoint(cb_url);
        if configured.is_none() || asked != configured {
            return refuse(
                Reason::Auth,
                format!(
                    "refusing to send credentials to {} (they are configured for {}; redirected?)",
                    redact(cb_url),
                    redact(&url)
                ),
            );
        }
        tries += 1;
        if tries > 3 {
            return refuse(
                Reason::Auth,
                "authentication failed: credentials rejected".into(),
            );
        }
        match &opts.auth {
            Auth::Token(t) if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) => {
                git2::Cred::userpass_plaintext("x-access-token", t)
            }
            Auth::SshKey {
                private_key,
                passphrase,
            } if allowed.contains(git2::CredentialType::SSH_KEY) => {
                git2::Cred::ssh_key_from_memory(
                    user.unwrap_or("git"),
                    None,
                    private_key,
                    passphrase.as_deref(),
                )
            }
            Auth::SshKey { .. } if allowed.contains(git2::CredentialType::USERNAME) => {
                git2::Cred::username(user.unwrap_or("git"))
            }
            _ => refuse(
                Reason::Auth,
                "authentication required but no usable credentials configured".into(),
            ),
        }
    });

    let st = state.clone();
    cb.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 (OpenSSL) verifies the certificate chain and the host name.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let refuse = |e: HostKeyError| {
            let msg = e.to_string();
            st.borrow_mut().refusal = Some((Reason::HostKey, msg.clone()));
            Err(git2::Error::new(
                ErrorCode::Certificate,
                ErrorClass::Ssh,
                msg,
            ))
        };
        let Some(key) = hostkey.hostkey() else {
            return refuse(HostKeyError::NoKey {
                host: host.to_owned(),
            });
        };
        match &opts.host_keys {
            HostKeyPolicy::InsecureAcceptAny => Ok(CertificateCheckStatus::CertificateOk),
            HostKeyPolicy::Known(k) => match k.check(host, port, key) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(e) => refuse(e),
            },
            HostKeyPolicy::RequireKnownHosts => refuse(HostKeyError::NotConfigured {
                host: super::known_hosts::host_name(host, port),
                key_type: key_type_of(key),
                fingerprint: fingerprint(key),
            }),
        }
    });

    let st = state.clone();
    cb.transfer_progress(move |_| {
        if Instant::now() > deadline {
            st.borrow_mut().refusal =
                Some((Reason::Timeout, format!("timed out after {timeout:?}")));
            return false;
        }
        true
    });
    let st = state.clone();
    cb.sideband_progress(move |_| {
        if Instant::now() > deadline {
            st.borrow_mut().refusal =
                Some((Reason::Timeout, format!("timed out after {timeout:?}")));
            return false;
        }
        true
    });
    let st = state;
    cb.push_update_reference(move |refname, status| {
        if let Some(msg) = status {
            st.borrow_mut()
                .rejected
                .push((refname.to_owned(), msg.to_owned()));
        }
        Ok(())
    });
    cb
}

/// Turns a libgit2 error of `action` on `url` into a redacted [`SourceError`], preferring the
/// reason our callbacks recorded.
pub(crate) fn error(
    action: &'static str,
    url: &str,
    opts: &RemoteOptions,
    state: &CallbackState,
    e: &git2::Error,
) -> SourceError {
    let secrets = opts.secrets();
    let (reason, detail) = match &state.refusal {
        Some((reason, msg)) => (reason.clone(), msg.clone()),
        None if e.code() == ErrorCode::Timeout || e.message().contains("timed out") => {
            (Reason::Timeout, e.message().to_owned())
        }
        None => (super::classify(e), e.message().to_owned()),
    };
    SourceError {
        action,
        remote: redact(url),
        reference: None,
        reason,
        detail: redact_text(&detail, &secrets),
    }
}

/// Why the remote refused a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRejection {
    /// The branch moved on the remote (not a fast-forward): fetch and try again.
    NotFastForward,
    /// Any other refusal (protected branch, hook), with the remote's message (redacted).
    Other(String),
}

/// Pushes `refspecs` (`<oid or ref>:refs/heads/<branch>`, no `+`: never forced) to `url`.
/// `Ok(None)`: pushed; `Ok(Some(_))`: the remote refused a ref.
pub fn push(
    repo: &git2::Repository,
    url: &str,
    opts: &RemoteOptions,
    refspecs: &[String],
) -> Result<Option<PushRejection>, SourceError> {
    let state = Rc::new(RefCell::new(CallbackState::default()));
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| error("pushing to", url, opts, &state.borrow(), &e))?;
    let mut po = git2::PushOptions::new();
    po.remote_callbacks(callbacks(url, opts, state.clone()));
    match remote.push(refspecs, Some(&mut po)) {
        Ok(()) => {}
        Err(e) => {
            let msg = e.message().to_ascii_lowercase();
            if state.borrow().refusal.is_none()
                && (msg.contains("non-fast-forward") || msg.contains("fetch first"))
            {
                return Ok(Some(PushRejection::NotFastForward));
            }
            return Err(error("pushing to", url, opts, &state.borrow(), &e));
        }
    }
    let state = state.borrow();
    Ok(state.rejected.first().map(|(_, msg)| {
        let m = msg.to_ascii_lowercase();
        if m.contains("fast-forward") || m.contains("fetch first") || m.contains("stale") {
            PushRejection::NotFastForward
        } else {
            PushRejection::Other(redact_text(msg, &opts.secrets()))
        }
    }))
}

/// Why [`blocking`] did not return the closure's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockingError {
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("the git task failed: {0}")]
    Panicked(String),
}

/// Runs blocking git work `f` on tokio's blocking pool and waits at most `timeout` for it, so
/// the reactor never runs libgit2 and a hung remote never holds the caller. On timeout the
/// closure keeps its thread until libgit2's own deadline (give it the same `timeout` through
/// [`RemoteOptions::timeout`]) ends it.
pub async fn blocking<T, F>(timeout: Duration, f: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BlockingError::Panicked(e.to_string())),
        Err(_) => Err(BlockingError::TimedOut(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = |s: &str, h: &str, p: u16| Endpoint {
            scheme: s.into(),
            host: h.into(),
            port: p,
        };
        assert_eq!(
            endpoint("https://u:p@Host.example/x"),
            Some(e("https", "host.example", 443))
        );
        assert_eq!(
            endpoint("https://host.example:443/x"),
            Some(e("https", "host.example", 443))
        );
        assert_eq!(
            endpoint("http://127.0.0.1:8080"),
            Some(e("http", "127.0.0.1", 8080))
        );
        assert_eq!(
            endpoint("ssh://git@[::1]:2222/r.git"),
            Some(e("ssh", "::1", 2222))
        );
        assert_eq!(
            endpoint("git@github.com:org/r.git"),
            Some(e("ssh", "github.com", 22))
        );
        assert_eq!(endpoint("/srv/git/r.git"), None);
        assert_eq!(endpoint("file:///srv/git/r.git"), None);
        assert_eq!(endpoint("https://host:notaport/x"), None);
        assert_ne!(endpoint("https://host/x"), endpoint("http://host/x"));
        assert_ne!(
            endpoint("http://127.0.0.1/x"),
            endpoint("http://127.0.0.2/x")
        );
    }
}
