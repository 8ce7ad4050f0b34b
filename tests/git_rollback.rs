//! The git rollback with real git: bare repositories on disk as remotes (and one served by a real
//! sshd), the rollback built in fledge's bare mirror and pushed, then read back with the git CLI.

mod support;

use fledge::source::rollback::{self, Identity, Mode, Request};
use fledge::source::{Auth, Mirror, RemoteOptions};
use git2::Oid;
use std::path::Path;
use support::{GitRemote, git};

const WEB: &str = "apps/web/deployment.yaml";
const API: &str = "apps/api/deployment.yaml";
const OTHER: &str = "apps/other/configmap.yaml";

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

fn configmap(v: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other, namespace: shop}}\ndata: {{v: \"{v}\"}}\n"
    )
}

fn remote() -> GitRemote {
    GitRemote::new(&[
        (WEB, deployment("web", "web:1")),
        (API, deployment("api", "api:1")),
        (OTHER, configmap("1")),
    ])
}

fn request(stable: &str, failed: &str, paths: &[&str], mode: Mode) -> Request {
    Request {
        branch: "main".into(),
        stable: Oid::from_str(stable).unwrap(),
        failed: Oid::from_str(failed).unwrap(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        cluster: "production".into(),
        namespace: "shop".into(),
        rollout: "web".into(),
        reason: "error rate 4.1% > 1%".into(),
        verdict: "score 12/100\nerror-rate: canary 4.1% baseline 0.2% (fail)".into(),
        identity: Identity {
            name: "fledge".into(),
            email: "fledge@example.invalid".into(),
        },
        mode,
    }
}

/// `git show <rev>:<path>` in the bare remote.
fn show(bare: &Path, rev: &str, path: &str) -> String {
    git(bare, &["show", &format!("{rev}:{path}")]) + "\n"
}

fn exists(bare: &Path, rev: &str, path: &str) -> bool {
    std::process::Command::new("git")
        .args(["cat-file", "-e", &format!("{rev}:{path}")])
        .current_dir(bare)
        .status()
        .unwrap()
        .success()
}

fn run(url: &str, opts: &RemoteOptions, req: &Request) -> rollback::Outcome {
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), url).unwrap();
    rollback::rollback(&mirror, opts, req).unwrap_or_else(|e| panic!("{e}"))
}

fn none() -> RemoteOptions {
    RemoteOptions::new(Auth::None)
}

#[test]
fn a_single_commit_is_reverted_on_a_fresh_branch() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let bad = r.commit(&[(WEB, deployment("web", "web:2"))], &[], "web: ship v2");
    let req = request(&stable, &bad, &[WEB], Mode::PullRequest);
    let out = run(&r.url(), &none(), &req);

    let branch = format!("fledge/rollback/shop-web-{}", &bad[..7]);
    assert_eq!(out.branch, branch);
    assert_eq!(out.reverted, vec![Oid::from_str(&bad).unwrap()]);
    assert!(!out.restore && !out.already_existed);
    let bare = r.bare();
    assert_eq!(git(&bare, &["rev-parse", &branch]), out.commit.to_string());
    assert_eq!(
        git(&bare, &["rev-parse", &format!("{branch}^")]),
        bad,
        "from the branch tip"
    );
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        bad,
        "the tracked branch is untouched"
    );
    assert_eq!(show(&bare, &branch, WEB), deployment("web", "web:1"));
    let msg = git(&bare, &["log", "-1", "--format=%B", &branch]);
    assert!(
        msg.starts_with("Revert \"web: ship v2\"\n\nThis reverts commit "),
        "{msg}"
    );
    for want in [
        "Cluster: production",
        "Rollout: shop/web",
        "Reason: error rate 4.1% > 1%",
        "error-rate: canary 4.1% baseline 0.2% (fail)",
    ] {
        assert!(msg.contains(want), "{want} missing in\n{msg}");
    }
    assert!(
        msg.trim_end()
            .ends_with(&format!("Fledge-Rollback: shop/web@{bad}")),
        "{msg}"
    );
    // git itself reads the trailer.
    let trailers = git(
        &bare,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Fledge-Rollback,valueonly)",
            &branch,
        ],
    );
    assert_eq!(trailers, format!("shop/web@{bad}"));
    let who = git(
        &bare,
        &["log", "-1", "--format=%an <%ae> / %cn <%ce>", &branch],
    );
    assert_eq!(
        who,
        "fledge <fledge@example.invalid> / fledge <fledge@example.invalid>"
    );
}

#[test]
fn several_commits_are_reverted_newest_first_and_unrelated_ones_kept() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let c1 = r.commit(&[(WEB, deployment("web", "web:2"))], &[], "web: v2");
    r.commit(&[(OTHER, configmap("2"))], &[], "other: v2 (unrelated)");
    let c3 = r.commit(
        &[(
            WEB,
            deployment("web", "web:2").replace("replicas: 2", "replicas: 5"),
        )],
        &[],
        "web: five replicas",
    );
    // After the failed revision, someone else changed another app.
    let c4 = r.commit(&[(API, deployment("api", "api:2"))], &[], "api: v2");
    let req = request(&stable, &c3, &[WEB], Mode::PullRequest);
    let out = run(&r.url(), &none(), &req);

    let oid = |s: &str| Oid::from_str(s).unwrap();
    assert_eq!(
        out.reverted,
        vec![oid(&c3), oid(&c1)],
        "newest first, unrelated c2 left out"
    );
    assert!(!out.restore);
    let bare = r.bare();
    let b = &out.branch;
    assert_eq!(
        git(&bare, &["rev-parse", &format!("{b}^")]),
        c4,
        "based on the tip"
    );
    assert_eq!(show(&bare, b, WEB), deployment("web", "web:1"));
    assert_eq!(
        show(&bare, b, OTHER),
        configmap("2"),
        "unrelated commit in the range kept"
    );
    assert_eq!(
        show(&bare, b, API),
        deployment("api", "api:2"),
        "later commit kept"
    );
    let changed = git(&bare, &["diff", "--name-only", &format!("{b}^"), b]);
    assert_eq!(changed, WEB);
    let msg = git(&bare, &["log", "-1", "--format=%B", b]);
    assert!(
        msg.starts_with("Revert 2 commits that failed shop/web\n"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("This reverts commit {c3}."))
            && msg.contains(&format!("This reverts commit {c1}."))
    );
    assert!(
        msg.contains("web: five replicas") && !msg.contains("unrelated"),
        "{msg}"
    );
}

#[test]
fn a_conflicting_revert_becomes_one_restore_commit() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let hpa = "apps/web/hpa.yaml";
    let bad = r.commit(
        &[(WEB, deployment("web", "web:2")), (hpa, configmap("hpa"))],
        &[],
        "web: v2 with an autoscaler",
    );
    // A later hotfix edits the very line the bad commit changed: its revert conflicts.
    let hotfix = r.commit(
        &[(WEB, deployment("web", "web:2-hotfix"))],
        &[],
        "web: hotfix",
    );
    let unrelated = r.commit(&[(OTHER, configmap("3"))], &[], "other: v3");
    let req = request(&stable, &bad, &[WEB, hpa], Mode::PullRequest);
    let out = run(&r.url(), &none(), &req);

    assert!(out.restore, "{out:?}");
    assert_eq!(out.reverted, vec![Oid::from_str(&bad).unwrap()]);
    let bare = r.bare();
    let b = &out.branch;
    assert_eq!(git(&bare, &["rev-parse", &format!("{b}^")]), unrelated);
    assert_eq!(
        show(&bare, b, WEB),
        deployment("web", "web:1"),
        "back to stable content"
    );
    assert!(
        !exists(&bare, b, hpa),
        "a file the stable revision lacked is removed"
    );
    assert_eq!(
        show(&bare, b, OTHER),
        configmap("3"),
        "nothing else touched"
    );
    let mut changed: Vec<String> = git(&bare, &["diff", "--name-only", &format!("{b}^"), b])
        .lines()
        .map(str::to_owned)
        .collect();
    changed.sort();
    assert_eq!(changed, vec![WEB.to_owned(), hpa.to_owned()]);
    let msg = git(&bare, &["log", "-1", "--format=%B", b]);
    assert!(
        msg.contains(&format!(
            "restores these files to their content at {stable}"
        )),
        "{msg}"
    );
    assert!(
        msg.trim_end()
            .ends_with(&format!("Fledge-Rollback: shop/web@{bad}")),
        "{msg}"
    );
    let _ = hotfix;
}

#[test]
fn a_second_run_reuses_the_rollback_and_pushes_nothing() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let bad = r.commit(&[(WEB, deployment("web", "web:2"))], &[], "web: v2");
    let req = request(&stable, &bad, &[WEB], Mode::PullRequest);
    let first = run(&r.url(), &none(), &req);
    let refs_before = git(&r.bare(), &["for-each-ref"]);

    // A restarted agent: a fresh mirror, same request.
    let again = run(&r.url(), &none(), &req);
    assert!(again.already_existed);
    assert_eq!(
        (again.branch.as_str(), again.commit),
        (first.branch.as_str(), first.commit)
    );
    assert_eq!(again.reverted, first.reverted);
    assert_eq!(
        git(&r.bare(), &["for-each-ref"]),
        refs_before,
        "nothing new on the remote"
    );

    // Even after main moved on.
    r.commit(&[(API, deployment("api", "api:2"))], &[], "api: v2");
    let third = run(&r.url(), &none(), &req);
    assert!(third.already_existed && third.commit == first.commit);

    // A branch of that name without fledge's trailer is never overwritten.
    let bad2 = r.commit(&[(WEB, deployment("web", "web:3"))], &[], "web: v3");
    let req2 = request(&bad, &bad2, &[WEB], Mode::PullRequest);
    r.git(&[
        "push",
        "-q",
        "origin",
        &format!("HEAD:refs/heads/{}", req2.branch_name()),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &r.url()).unwrap();
    let err = rollback::rollback(&mirror, &none(), &req2).unwrap_err();
    assert!(matches!(err, rollback::Error::BranchTaken { .. }), "{err}");
}

#[test]
fn push_mode_fast_forwards_the_tracked_branch_once() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let bad = r.commit(&[(WEB, deployment("web", "web:2"))], &[], "web: v2");
    let later = r.commit(&[(API, deployment("api", "api:2"))], &[], "api: v2");
    let req = request(&stable, &bad, &[WEB], Mode::Push);
    let out = run(&r.url(), &none(), &req);
    assert_eq!(out.branch, "main");
    let bare = r.bare();
    assert_eq!(git(&bare, &["rev-parse", "main"]), out.commit.to_string());
    assert_eq!(git(&bare, &["rev-parse", "main^"]), later, "fast forward");
    assert_eq!(show(&bare, "main", WEB), deployment("web", "web:1"));
    assert!(
        git(&bare, &["branch", "--list", "fledge/*"]).is_empty(),
        "no branch in push mode"
    );

    let again = run(&r.url(), &none(), &req);
    assert!(again.already_existed && again.commit == out.commit && again.branch == "main");
    assert_eq!(git(&bare, &["rev-parse", "main"]), out.commit.to_string());
}

#[test]
fn nothing_to_revert_is_an_error_not_an_empty_commit() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let bad = r.commit(&[(OTHER, configmap("2"))], &[], "other only");
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &r.url()).unwrap();
    let err = rollback::rollback(
        &mirror,
        &none(),
        &request(&stable, &bad, &[WEB], Mode::PullRequest),
    )
    .unwrap_err();
    assert!(
        matches!(err, rollback::Error::NothingToRevert { .. }),
        "{err}"
    );
    assert!(git(&r.bare(), &["branch", "--list", "fledge/*"]).is_empty());
}

#[test]
fn the_rollback_is_pushed_over_ssh_to_a_real_sshd() {
    let sshd = support::sshd::Sshd::start();
    let bare = sshd.repos().join("config.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"]);
    let write = |path: &str, content: String| {
        let p = w.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    write(WEB, deployment("web", "web:1"));
    git(w, &["add", "-A"]);
    git(w, &["commit", "-qm", "initial"]);
    let stable = git(w, &["rev-parse", "HEAD"]);
    write(WEB, deployment("web", "web:2"));
    git(w, &["commit", "-qam", "web: v2"]);
    let bad = git(w, &["rev-parse", "HEAD"]);
    git(
        w,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );

    let opts = RemoteOptions::new(Auth::SshKey {
        private_key: sshd.client_key.clone(),
        passphrase: None,
    })
    .with_known_hosts(&sshd.known_hosts())
    .unwrap();
    let req = request(&stable, &bad, &[WEB], Mode::PullRequest);
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &sshd.url("config.git")).unwrap();
    let out = rollback::rollback(&mirror, &opts, &req)
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert_eq!(
        git(&bare, &["rev-parse", &out.branch]),
        out.commit.to_string()
    );
    assert_eq!(show(&bare, &out.branch, WEB), deployment("web", "web:1"));

    // And again over SSH: found, nothing pushed.
    let again = rollback::rollback(&mirror, &opts, &req).unwrap();
    assert!(again.already_existed && again.commit == out.commit);
}

/// Push mode when the tracked branch moves between fetch and push: the remote refuses the stale
/// update, and the rollback is rebuilt on the new tip (never forced over the other commit).
/// The race is made by the remote's own pre-receive hook (real git-receive-pack behind sshd),
/// which moves `main` once, just before accepting the push.
#[test]
fn push_mode_redoes_the_rollback_when_the_branch_moved() {
    let sshd = support::sshd::Sshd::start();
    let bare = sshd.repos().join("config.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"]);
    let write = |path: &str, content: String| {
        let p = w.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    write(WEB, deployment("web", "web:1"));
    write(API, deployment("api", "api:1"));
    git(w, &["add", "-A"]);
    git(w, &["commit", "-qm", "initial"]);
    let stable = git(w, &["rev-parse", "HEAD"]);
    write(WEB, deployment("web", "web:2"));
    git(w, &["commit", "-qam", "web: v2"]);
    let bad = git(w, &["rev-parse", "HEAD"]);
    git(
        w,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    // The commit someone else lands meanwhile, parked on a side ref.
    write(API, deployment("api", "api:2"));
    git(w, &["commit", "-qam", "api: v2 (landed meanwhile)"]);
    let racer = git(w, &["rev-parse", "HEAD"]);
    git(
        w,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/test/racer"],
    );
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\ncat >/dev/null\n[ -e raced ] && exit 0\ntouch raced\n\
         env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
         git update-ref refs/heads/main refs/test/racer\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let opts = RemoteOptions::new(Auth::SshKey {
        private_key: sshd.client_key.clone(),
        passphrase: None,
    })
    .with_known_hosts(&sshd.known_hosts())
    .unwrap();
    let req = request(&stable, &bad, &[WEB], Mode::Push);
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &sshd.url("config.git")).unwrap();
    let out = rollback::rollback(&mirror, &opts, &req)
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    assert!(bare.join("raced").exists(), "the hook moved main");
    assert_eq!(git(&bare, &["rev-parse", "main"]), out.commit.to_string());
    assert_eq!(
        git(&bare, &["rev-parse", "main^"]),
        racer,
        "rebuilt on the new tip"
    );
    assert_eq!(show(&bare, "main", WEB), deployment("web", "web:1"));
    assert_eq!(
        show(&bare, "main", API),
        deployment("api", "api:2"),
        "the other commit kept"
    );
}

/// A pull request merged with a merge commit: the merge is what landed on the branch and is
/// reverted against its first parent; the commits inside it are not reverted a second time.
#[test]
fn a_merged_pull_request_is_reverted_as_its_merge_commit() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    r.git(&["checkout", "-qb", "feature"]);
    let write = |path: &str, content: String| std::fs::write(r.work().join(path), content).unwrap();
    write(WEB, deployment("web", "web:2"));
    r.git(&["commit", "-qam", "web: v2"]);
    write(
        WEB,
        deployment("web", "web:2").replace("replicas: 2", "replicas: 4"),
    );
    r.git(&["commit", "-qam", "web: four replicas"]);
    r.git(&["checkout", "-q", "main"]);
    r.commit(&[(OTHER, configmap("2"))], &[], "other: v2");
    r.git(&[
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge pull request #7 from feature",
        "feature",
    ]);
    r.git(&["push", "-q", "origin", "HEAD:main"]);
    let merge = r.git(&["rev-parse", "HEAD"]);
    let out = run(
        &r.url(),
        &none(),
        &request(&stable, &merge, &[WEB], Mode::PullRequest),
    );
    assert_eq!(out.reverted, vec![Oid::from_str(&merge).unwrap()]);
    assert!(!out.restore, "{out:?}");
    let bare = r.bare();
    assert_eq!(show(&bare, &out.branch, WEB), deployment("web", "web:1"));
    assert_eq!(show(&bare, &out.branch, OTHER), configmap("2"));
    let msg = git(&bare, &["log", "-1", "--format=%s", &out.branch]);
    assert_eq!(msg, "Revert \"Merge pull request #7 from feature\"");
}

/// `git http-backend` behind a small HTTP server on loopback that demands `token` as the Basic
/// password (401 otherwise), like a forge does; returns the port.
fn token_http_server(root: &Path, token: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = root.to_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = std::collections::HashMap::new();
                loop {
                    let mut l = String::new();
                    reader.read_line(&mut l).unwrap();
                    let l = l.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let mut body = Vec::new();
                if headers
                    .get("transfer-encoding")
                    .is_some_and(|v| v == "chunked")
                {
                    loop {
                        let mut size = String::new();
                        reader.read_line(&mut size).unwrap();
                        let n = usize::from_str_radix(size.trim(), 16).unwrap();
                        let mut chunk = vec![0; n + 2];
                        reader.read_exact(&mut chunk).unwrap();
                        body.extend_from_slice(&chunk[..n]);
                        if n == 0 {
                            break;
                        }
                    }
                } else if let Some(n) = headers.get("content-length") {
                    body.resize(n.parse().unwrap(), 0);
                    reader.read_exact(&mut body).unwrap();
                }
                use base64::Engine;
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("x-access-token:{token}"))
                );
                if headers.get("authorization") != Some(&want) {
                    let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap().to_owned();
                let target = parts.next().unwrap().to_owned();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let mut child = std::process::Command::new("git")
                    .arg("http-backend")
                    .env("GIT_PROJECT_ROOT", &root)
                    .env("GIT_HTTP_EXPORT_ALL", "1")
                    .env("REMOTE_USER", "x-access-token")
                    .env("REQUEST_METHOD", &method)
                    .env("PATH_INFO", path)
                    .env("QUERY_STRING", query)
                    .env(
                        "CONTENT_TYPE",
                        headers.get("content-type").cloned().unwrap_or_default(),
                    )
                    .env("CONTENT_LENGTH", body.len().to_string())
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(&body).unwrap();
                let out = child.wait_with_output().unwrap();
                let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n");
                let (head, rest) = match split {
                    Some(i) => (
                        String::from_utf8_lossy(&out.stdout[..i]).into_owned(),
                        &out.stdout[i + 4..],
                    ),
                    None => (String::new(), &out.stdout[..]),
                };
                let mut status = "200 OK".to_owned();
                let mut response_headers = String::new();
                for l in head.lines() {
                    match l.strip_prefix("Status: ") {
                        Some(s) => status = s.to_owned(),
                        None => response_headers.push_str(&format!("{l}\r\n")),
                    }
                }
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\n{response_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        rest.len()
                    )
                    .as_bytes(),
                );
                let _ = stream.write_all(rest);
            });
        }
    });
    port
}

/// The same rollback pushed over token-authenticated smart HTTP (`git http-backend`): the token
/// is the credential for fetch and push; a wrong token fails as an authentication error.
#[test]
fn the_rollback_is_pushed_over_http_with_a_token() {
    let r = remote();
    let stable = r.git(&["rev-parse", "HEAD"]);
    let bad = r.commit(&[(WEB, deployment("web", "web:2"))], &[], "web: v2");
    let port = token_http_server(r.dir.path(), "t0ken-s3cr3t");
    let url = format!("http://127.0.0.1:{port}/remote.git");
    let req = request(&stable, &bad, &[WEB], Mode::PullRequest);

    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &url).unwrap();
    let wrong = RemoteOptions::new(Auth::Token("wrong".into()));
    let err = rollback::rollback(&mirror, &wrong, &req).unwrap_err();
    assert!(err.to_string().contains("authentication failed"), "{err}");

    let opts = RemoteOptions::new(Auth::Token("t0ken-s3cr3t".into()));
    let out = rollback::rollback(&mirror, &opts, &req).unwrap_or_else(|e| panic!("{e}"));
    let bare = r.bare();
    assert_eq!(
        git(&bare, &["rev-parse", &out.branch]),
        out.commit.to_string()
    );
    assert_eq!(show(&bare, &out.branch, WEB), deployment("web", "web:1"));
    let again = rollback::rollback(&mirror, &opts, &req).unwrap();
    assert!(again.already_existed && again.commit == out.commit);
}
