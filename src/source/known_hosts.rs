//! SSH host-key checking: a `known_hosts` text (OpenSSH format, from the repository Secret's
//! `known_hosts` key) and the decision for the key a server presents. Plain and hashed
//! (`|1|salt|hash`) host names, patterns with `*`, `?` and `!`, the `[host]:port` form for
//! non-standard ports, and `@revoked` lines are understood; `@cert-authority` lines are ignored
//! (host certificates are not supported, so such a host is refused as unknown).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Parsed `known_hosts` entries.
#[derive(Clone, Default)]
pub struct KnownHosts {
    entries: Vec<HostEntry>,
}

#[derive(Clone)]
struct HostEntry {
    revoked: bool,
    hosts: Hosts,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Clone)]
enum Hosts {
    Patterns(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl std::fmt::Debug for KnownHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownHosts({} entries)", self.entries.len())
    }
}

/// A host-key check that did not pass; the message names the host and the key's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    #[error(
        "host key of {host} is not in known_hosts ({key_type} {fingerprint}); add it to the Secret's known_hosts (e.g. from `ssh-keyscan`) after checking the fingerprint"
    )]
    Unknown {
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error(
        "host key of {host} does not match known_hosts: the server presented {key_type} {fingerprint} (possible man-in-the-middle, or the server's key changed)"
    )]
    Mismatch {
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error("host key of {host} ({key_type} {fingerprint}) is marked @revoked in known_hosts")]
    Revoked {
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error(
        "no known_hosts configured: refusing SSH to {host} (presented {key_type} {fingerprint}); add `known_hosts` to the Secret, or opt out of host-key checking explicitly"
    )]
    NotConfigured {
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error("the SSH server {host} presented no usable host key")]
    NoKey { host: String },
}

/// An invalid line in a `known_hosts` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("known_hosts line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// The OpenSSH fingerprint of a key blob: `SHA256:` + unpadded base64 of its SHA-256.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(key)))
}

/// The name a host is looked up under: `host` on port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Parses `text`; blank lines and `#` comments are skipped, a malformed line is an error.
    pub fn parse(text: &str) -> Result<KnownHosts, ParseError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let err = |reason| ParseError {
                line: i + 1,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().ok_or(err("empty line"))?;
            let mut revoked = false;
            if let Some(marker) = first.strip_prefix('@') {
                match marker {
                    "revoked" => revoked = true,
                    "cert-authority" => continue,
                    _ => return Err(err("unknown marker (expected @revoked or @cert-authority)")),
                }
                first = fields.next().ok_or(err("missing host names"))?;
            }
            let key_type = fields.next().ok_or(err("missing key type"))?.to_owned();
            let key_b64 = fields.next().ok_or(err("missing key"))?;
            let key = STANDARD
                .decode(key_b64)
                .map_err(|_| err("the key is not valid base64"))?;
            let hosts = if let Some(hashed) = first.strip_prefix("|1|") {
                let (salt, hash) = hashed
                    .split_once('|')
                    .ok_or(err("hashed host name is not |1|salt|hash"))?;
                Hosts::Hashed {
                    salt: STANDARD
                        .decode(salt)
                        .map_err(|_| err("bad salt in hashed host name"))?,
                    hash: STANDARD
                        .decode(hash)
                        .map_err(|_| err("bad hash in hashed host name"))?,
                }
            } else {
                Hosts::Patterns(first.split(',').map(str::to_ascii_lowercase).collect())
            };
            entries.push(HostEntry {
                revoked,
                hosts,
                key_type,
                key,
            });
        }
        Ok(KnownHosts { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides on the key blob `key` (SSH wire format) presented by `host`:`port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Result<(), HostKeyError> {
        let name = host_name(&host.to_ascii_lowercase(), port);
        let key_type = key_type_of(key);
        let fp = fingerprint(key);
        let matching: Vec<&HostEntry> = self.entries.iter().filter(|e| e.matches(&name)).collect();
        if matching.iter().any(|e| e.revoked && e.key == key) {
            return Err(HostKeyError::Revoked {
                host: name,
                key_type,
                fingerprint: fp,
            });
        }
        if matching.iter().any(|e| !e.revoked && e.key == key) {
            return Ok(());
        }
        // A known host with another key of the same type is a mismatch; keys of other types
        // only say the server offered a type we hold no key for.
        if matching
            .iter()
            .any(|e| !e.revoked && e.key_type == key_type)
        {
            Err(HostKeyError::Mismatch {
                host: name,
                key_type,
                fingerprint: fp,
            })
        } else {
            Err(HostKeyError::Unknown {
                host: name,
                key_type,
                fingerprint: fp,
            })
        }
    }
}

/// The algorithm name at the start of an SSH key blob (`ssh-ed25519`, …).
pub fn key_type_of(key: &[u8]) -> String {
    key.get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| key.get(4..4usize.saturating_add(n)))
        .map(|t| super::redact::escape_control(&String::from_utf8_lossy(t)))
        .unwrap_or_else(|| "unknown-key-type".to_owned())
}

impl HostEntry {
    fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut hit = false;
                for p in patterns {
                    if let Some(neg) = p.strip_prefix('!') {
                        if glob(neg.as_bytes(), name.as_bytes()) {
                            return false;
                        }
                    } else if glob(p.as_bytes(), name.as_bytes()) {
                        hit = true;
                    }
                }
                hit
            }
        }
    }
}

/// `*` (any run) and `?` (one character) wildcard match, iterative (no recursion).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut v = (kind.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind.as_bytes());
        v.extend_from_slice(body);
        v
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn plain_hashed_ported_patterns_and_revoked() {
        let good = blob("ssh-ed25519", b"good");
        let other = blob("ssh-ed25519", b"other");
        let rsa = blob("ssh-rsa", b"rsa");
        let text = format!(
            "# comment\n\n\
             git.example.com,10.0.0.1 ssh-ed25519 {g}\n\
             {h} ssh-ed25519 {g}\n\
             [ported.example]:2222 ssh-ed25519 {g} comment here\n\
             *.wild.example,!bad.wild.example ssh-ed25519 {g}\n\
             @revoked git.example.com ssh-rsa {r}\n\
             @cert-authority *.example.com ssh-ed25519 {o}\n",
            g = STANDARD.encode(&good),
            o = STANDARD.encode(&other),
            r = STANDARD.encode(&rsa),
            h = hashed("[127.0.0.1]:2200", b"0123456789abcdef0123"),
        );
        let kh = KnownHosts::parse(&text).unwrap();
        assert_eq!(kh.check("git.example.com", 22, &good), Ok(()));
        assert_eq!(kh.check("GIT.example.com", 22, &good), Ok(()));
        assert_eq!(kh.check("10.0.0.1", 22, &good), Ok(()));
        assert_eq!(kh.check("127.0.0.1", 2200, &good), Ok(()));
        assert_eq!(kh.check("ported.example", 2222, &good), Ok(()));
        assert_eq!(kh.check("a.wild.example", 22, &good), Ok(()));
        // Port matters: the same host on another port is not known.
        assert!(matches!(
            kh.check("127.0.0.1", 22, &good),
            Err(HostKeyError::Unknown { .. })
        ));
        assert!(matches!(
            kh.check("ported.example", 22, &good),
            Err(HostKeyError::Unknown { .. })
        ));
        assert!(matches!(
            kh.check("bad.wild.example", 22, &good),
            Err(HostKeyError::Unknown { .. })
        ));
        let err = kh.check("git.example.com", 22, &other).unwrap_err();
        assert!(matches!(err, HostKeyError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains(&fingerprint(&other)), "{err}");
        assert!(err.to_string().contains("git.example.com"), "{err}");
        assert!(matches!(
            kh.check("git.example.com", 22, &rsa),
            Err(HostKeyError::Revoked { .. })
        ));
        // cert-authority lines are not trusted as host keys.
        assert!(kh.check("x.example.com", 22, &other).is_err());
    }

    #[test]
    fn malformed_lines_name_their_number() {
        let err = KnownHosts::parse("host ssh-ed25519 AAAA\nhost ssh-ed25519 !!!\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(KnownHosts::parse("host\n").is_err());
        assert!(KnownHosts::parse("@weird host ssh-ed25519 AAAA\n").is_err());
    }

    #[test]
    fn fingerprints_match_openssh() {
        // `ssh-keygen -lf` of this public key prints this fingerprint.
        let key = STANDARD
            .decode("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
            .unwrap();
        assert_eq!(key_type_of(&key), "ssh-ed25519");
        assert_eq!(
            fingerprint(&key),
            "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*.x.*", b"a.x.b"));
        assert!(!glob(b"*.x", b"a.y"));
    }
}
