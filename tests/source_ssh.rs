//! Git over SSH against a real OpenSSH server on loopback (`tests/support/sshd.rs`): fetch with a
//! key, the host key checked against known_hosts (plain and hashed entries, `[host]:port`),
//! a wrong or missing host key refused with the host and fingerprint named, and the explicit
//! opt-out.

mod support;

use fledge::source::{Auth, HostKeyPolicy, Mirror, Reason, RemoteOptions};
use std::process::Command;
use support::git;
use support::sshd::{Sshd, keypair};

/// A bare repository served by `sshd` with one commit; returns its sha.
fn served_repo(sshd: &Sshd, name: &str) -> String {
    let bare = sshd.repos().join(name);
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q"]);
    std::fs::write(
        work.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: dev}\n",
    )
    .unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-qm", "one"]);
    git(
        work.path(),
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    git(work.path(), &["rev-parse", "HEAD"])
}

fn key(sshd: &Sshd) -> Auth {
    Auth::SshKey {
        private_key: sshd.client_key.clone(),
        passphrase: None,
    }
}

fn fingerprint_of(public_line: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.pub");
    std::fs::write(&p, format!("{public_line}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[test]
fn ssh_fetch_with_the_right_host_key_is_accepted() {
    let sshd = Sshd::start();
    let sha = served_repo(&sshd, "config.git");
    let cache = tempfile::tempdir().unwrap();
    let opts = RemoteOptions::new(key(&sshd))
        .with_known_hosts(&sshd.known_hosts())
        .unwrap();
    let mirror = Mirror::open(cache.path(), &sshd.url("config.git")).unwrap();
    let stats = mirror
        .fetch_with(&opts)
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert!(stats.received_objects >= 3, "{stats:?}");
    assert_eq!(mirror.resolve("main").unwrap().to_string(), sha);

    // A hashed entry (`ssh-keygen -H`) for `[127.0.0.1]:port` is accepted as well.
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, sshd.known_hosts()).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-Hf")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(out.status.success());
    let hashed = std::fs::read_to_string(&kh).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let cache = tempfile::tempdir().unwrap();
    Mirror::open(cache.path(), &sshd.url("config.git"))
        .unwrap()
        .fetch_with(
            &RemoteOptions::new(key(&sshd))
                .with_known_hosts(&hashed)
                .unwrap(),
        )
        .unwrap();
}

#[test]
fn a_wrong_or_missing_host_key_is_refused() {
    let sshd = Sshd::start();
    served_repo(&sshd, "config.git");
    let url = sshd.url("config.git");
    let host = format!("[127.0.0.1]:{}", sshd.port);
    let server_fp = fingerprint_of(&sshd.host_key);
    let cache = tempfile::tempdir().unwrap();
    let fetch = |opts: &RemoteOptions| Mirror::open(cache.path(), &url).unwrap().fetch_with(opts);

    // Another key for this host: a mismatch, naming the host and the presented fingerprint.
    let dir = tempfile::tempdir().unwrap();
    let (_, impostor) = keypair(dir.path(), "other");
    let opts = RemoteOptions::new(key(&sshd))
        .with_known_hosts(&format!("{host} {impostor}\n"))
        .unwrap();
    let err = fetch(&opts).unwrap_err();
    assert_eq!(err.reason, Reason::HostKey, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("does not match") && msg.contains(&host) && msg.contains(&server_fp),
        "{msg}"
    );

    // The right key but for the default port only: this host is unknown.
    let opts = RemoteOptions::new(key(&sshd))
        .with_known_hosts(&format!("127.0.0.1 {}\n", sshd.host_key))
        .unwrap();
    let err = fetch(&opts).unwrap_err();
    assert_eq!(err.reason, Reason::HostKey, "{err}");
    assert!(err.to_string().contains("not in known_hosts"), "{err}");

    // No known_hosts at all: refused by default, saying how to fix it.
    let err = fetch(&RemoteOptions::new(key(&sshd))).unwrap_err();
    assert_eq!(err.reason, Reason::HostKey, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no known_hosts configured") && msg.contains(&server_fp),
        "{msg}"
    );

    // The explicit opt-out connects.
    let mut opts = RemoteOptions::new(key(&sshd));
    opts.host_keys = HostKeyPolicy::InsecureAcceptAny;
    fetch(&opts).unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
}

#[test]
fn an_unauthorized_key_fails_as_auth_without_leaking_it() {
    let sshd = Sshd::start();
    served_repo(&sshd, "config.git");
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = keypair(dir.path(), "stranger");
    let cache = tempfile::tempdir().unwrap();
    let opts = RemoteOptions::new(Auth::SshKey {
        private_key: stranger.clone(),
        passphrase: None,
    })
    .with_known_hosts(&sshd.known_hosts())
    .unwrap();
    let err = Mirror::open(cache.path(), &sshd.url("config.git"))
        .unwrap()
        .fetch_with(&opts)
        .unwrap_err();
    assert_eq!(err.reason, Reason::Auth, "{err}");
    let body = stranger.lines().nth(1).unwrap();
    assert!(!err.to_string().contains(body));
}
