//! The git source against real repositories made in the test: a bare "remote" and a clone that
//! pushes to it, read through fledge's mirror (file:// URLs), by branch, by old revision, after
//! new pushes (incremental fetch), with a symlink escaping the tree, and unreachable remotes;
//! credentials kept to their host across a redirect, redacted errors, and a stalling remote that
//! must time out without holding the async reactor (servers written here, on loopback).

use fledge::render::{self, RenderOptions};
use fledge::source::{self, Auth, GitTree, Mirror, Reason, RemoteOptions};
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{copy_tree, git};

struct Remote {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Remote {
    /// A bare remote seeded with the config-repo-template through a clone.
    fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare"]);
        git(dir.path(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("config-repo-template"),
            &work,
        );
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "initial config"]);
        git(&work, &["push", "-q", "origin", "HEAD:main"]);
        Remote {
            _dir: dir,
            bare,
            work,
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    fn commit_replicas(&self, replicas: u32, msg: &str) -> String {
        let path = self.work.join("clusters/production/fledge.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let re = text
            .lines()
            .map(|l| {
                if l.contains("path: /spec/replicas") {
                    format!("      - {{op: replace, path: /spec/replicas, value: {replicas}}}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, re + "\n").unwrap();
        git(&self.work, &["commit", "-qam", msg]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

fn replicas_at(mirror: &Mirror, rev: &str) -> i64 {
    let commit = mirror.resolve(rev).unwrap();
    let tree = GitTree::at(mirror.repo(), commit).unwrap();
    let desired = render::render(&tree, "clusters/production", &RenderOptions::default()).unwrap();
    let d = desired
        .objects
        .iter()
        .find(|o| o.key.kind == "Deployment")
        .unwrap();
    d.object["spec"]["replicas"].as_i64().unwrap()
}

#[test]
fn renders_a_branch_an_old_revision_and_new_pushes_incrementally() {
    let remote = Remote::new();
    let first = git(&remote.work, &["rev-parse", "HEAD"]);
    let cache = tempfile::tempdir().unwrap();

    let mirror = Mirror::open(cache.path(), &remote.url()).unwrap();
    let initial = mirror.fetch(&Auth::None).unwrap();
    assert!(initial.received_objects >= 10, "{initial:?}");
    assert_eq!(
        mirror.resolve("HEAD").unwrap().to_string(),
        first,
        "default branch followed"
    );
    assert_eq!(replicas_at(&mirror, "main"), 6);

    // A branch with a different value.
    git(&remote.work, &["checkout", "-qb", "bigger"]);
    remote.commit_replicas(9, "bigger");
    git(&remote.work, &["push", "-q", "origin", "bigger"]);
    git(&remote.work, &["checkout", "-q", "main"]);

    // A new commit on main.
    let second = remote.commit_replicas(7, "scale production to 7");
    git(&remote.work, &["push", "-q", "origin", "main"]);

    // Same cache dir: the same mirror is reused and only the new objects travel.
    let mirror = Mirror::open(cache.path(), &remote.url()).unwrap();
    let again = mirror.fetch(&Auth::None).unwrap();
    // Two new commits touching one file each: a few objects, a fraction of the first transfer.
    assert!(
        again.received_objects < initial.received_objects
            && again.received_bytes < initial.received_bytes / 2,
        "incremental: {again:?} vs first {initial:?}"
    );
    assert_eq!(mirror.resolve("main").unwrap().to_string(), second);
    assert_eq!(replicas_at(&mirror, "main"), 7);
    assert_eq!(replicas_at(&mirror, "bigger"), 9);
    assert_eq!(
        replicas_at(&mirror, &first),
        6,
        "older revision still readable"
    );

    // A fetch with nothing new transfers nothing.
    let idle = mirror.fetch(&Auth::None).unwrap();
    assert_eq!(idle.received_objects, 0);
}

#[test]
fn the_cli_reads_urls_at_revisions() {
    let remote = Remote::new();
    let first = git(&remote.work, &["rev-parse", "HEAD"]);
    remote.commit_replicas(8, "eight");
    git(&remote.work, &["push", "-q", "origin", "main"]);
    let cache = tempfile::tempdir().unwrap();
    let run = |rev: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fledge"));
        c.args([
            "render",
            &remote.url(),
            "--path",
            "clusters/production",
            "-o",
            "json",
            "--cache-dir",
        ])
        .arg(cache.path());
        if let Some(r) = rev {
            c.args(["--rev", r]);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "Deployment")
            .unwrap()["spec"]["replicas"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(run(None), 8);
    assert_eq!(run(Some(&first)), 6);
    assert_eq!(run(Some(&first[..10])), 6, "short sha");
}

#[test]
fn a_symlink_in_the_git_tree_pointing_outside_is_refused() {
    let remote = Remote::new();
    std::os::unix::fs::symlink(
        "../../../../../etc/passwd",
        remote.work.join("apps/shop-web/passwd.yaml"),
    )
    .unwrap();
    let bundle = remote.work.join("apps/shop-web/fledge.yaml");
    let text = std::fs::read_to_string(&bundle)
        .unwrap()
        .replace("  - rollout.yaml\n", "  - rollout.yaml\n  - passwd.yaml\n");
    std::fs::write(&bundle, text).unwrap();
    git(&remote.work, &["add", "-A"]);
    git(&remote.work, &["commit", "-qm", "sneaky"]);
    git(&remote.work, &["push", "-q", "origin", "main"]);
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &remote.url()).unwrap();
    mirror.fetch(&Auth::None).unwrap();
    let tree = GitTree::at(mirror.repo(), mirror.resolve("main").unwrap()).unwrap();
    let err = render::render(&tree, "clusters/production", &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apps/shop-web/fledge.yaml:9:")
            && err.contains("symlink points outside the repository"),
        "{err}"
    );
}

#[test]
fn unreachable_remotes_fail_clearly_without_leaking_credentials() {
    let cache = tempfile::tempdir().unwrap();
    let missing = "file:///nonexistent/fledge/remote.git";
    let err = Mirror::open(cache.path(), missing)
        .unwrap()
        .fetch(&Auth::None)
        .unwrap_err();
    assert_eq!(err.reason, Reason::NotFound, "{err}");
    assert!(
        err.to_string()
            .starts_with("fetching file:///nonexistent/fledge/remote.git: not found"),
        "{err}"
    );

    // A closed port on loopback: network error; the token in the URL never shows.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://user:s3cr3t-token@127.0.0.1:{port}/org/repo.git");
    let err = Mirror::open(cache.path(), &url)
        .unwrap()
        .fetch(&Auth::Token("another-s3cr3t".into()))
        .unwrap_err();
    assert_eq!(err.reason, Reason::Network, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("https://127.0.0.1:{port}/org/repo.git")),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t"), "credential leaked: {msg}");
    assert!(!format!("{:?}", Auth::Token("another-s3cr3t".into())).contains("s3cr3t"));

    // Through the CLI: exit 1 and the remote named.
    let out = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(["validate", missing, "--path", "x", "--cache-dir"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("fetching file:///nonexistent/fledge/remote.git: not found")
    );
}

#[test]
fn an_unknown_revision_names_the_ref() {
    let remote = Remote::new();
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path(), &remote.url()).unwrap();
    mirror.fetch(&Auth::None).unwrap();
    let err = mirror.resolve("no-such-branch").unwrap_err().to_string();
    assert!(
        err.contains("(ref no-such-branch)") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn the_watcher_signals_changes_and_render_watch_re_renders() {
    let dir = tempfile::tempdir().unwrap();
    let cm = |n: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}, namespace: dev}}\n")
    };
    std::fs::write(dir.path().join("a.yaml"), cm("a")).unwrap();

    let (_w, rx) = source::watch(dir.path(), Duration::from_millis(100)).unwrap();
    std::fs::write(dir.path().join("b.yaml"), cm("b")).unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("a change is signalled");

    // The CLI's inner dev loop.
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(["render", dir.path().to_str().unwrap(), "--watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("rendered 2 objects"), "{first}");
    std::fs::write(dir.path().join("c.yaml"), cm("c")).unwrap();
    let second = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(second.contains("rendered 3 objects"), "{second}");
}

/// Regression guard for a quadratic read: libgit2 does not cache large tree objects, and looking
/// each file up by path re-parsed its 3,000-entry directory every time (a 5,000-file directory
/// took 20x longer from git than from disk). Reading the same directory from a commit must stay
/// within a small factor of reading it from the work tree, and give the same objects.
#[test]
fn a_large_directory_from_git_parses_each_tree_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..3000 {
        std::fs::write(
            big.join(format!("cm-{i:05}.yaml")),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  namespace: big\ndata:\n  i: \"{i}\"\n"),
        )
        .unwrap();
    }
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(
        dir.path(),
        &["commit", "-qm", "3,000 files in one directory"],
    );
    let repo = git2::Repository::open(dir.path()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap().id();
    let opts = RenderOptions::default();
    let t = std::time::Instant::now();
    let from_disk =
        render::render(&render::FsTree::new(dir.path()).unwrap(), "big", &opts).unwrap();
    let disk = t.elapsed();
    let t = std::time::Instant::now();
    let tree = GitTree::at(&repo, head).unwrap();
    let from_git = render::render(&tree, "big", &opts).unwrap();
    let commit = t.elapsed();
    assert_eq!(from_git.objects.len(), 3000);
    assert_eq!(from_git.objects, from_disk.objects);
    println!("3,000 files in one directory: {disk:?} from disk, {commit:?} from git");
    // Counted, not timed: each directory's tree object is parsed once (root and `big`), not
    // once per file looked up in it.
    assert!(
        tree.trees_parsed() <= 2,
        "{} tree objects parsed for 3,000 files in one directory: is a tree parsed per file again?",
        tree.trees_parsed()
    );
}

/// A bare remote created with another default branch than the one pushed has a HEAD that points
/// to nothing: the error says so and names the branches there are.
#[test]
fn a_remote_whose_head_points_nowhere_names_its_branches() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("config.git");
    git(
        dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "--initial-branch=master",
            bare.to_str().unwrap(),
        ],
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(
        work.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one"]);
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bare.display());
    let mirror = Mirror::open(cache.path(), &url).unwrap();
    mirror.fetch(&Auth::None).unwrap();
    let err = mirror.resolve("HEAD").unwrap_err().to_string();
    assert!(
        err.contains("HEAD points to no commit") && err.contains("branches main"),
        "{err}"
    );
    // Naming the branch works.
    assert!(mirror.resolve("main").is_ok());
}

/// A tiny HTTP server on `ip` answering every request with `respond(request head)`; returns its
/// port and the request heads it saw.
fn http_server(
    ip: &str,
    respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (log, respond) = (log.clone(), respond.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    buf.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let answer = respond(&head);
                log.lock().unwrap().push(head);
                let _ = stream.write_all(&answer);
            });
        }
    });
    (port, seen)
}

fn authorizations(seen: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .flat_map(|h| h.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .collect()
}

const UNAUTHORIZED: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Issue 11 #16: 127.0.0.1 redirected to 127.0.0.2, which answered 401 and received the token.
/// Credentials go only to the configured scheme, host and port.
#[test]
fn the_token_never_follows_a_redirect_to_another_host() {
    let token = "s3cr3t-token-abc";
    let (other, other_seen) = http_server("127.0.0.2", |_| UNAUTHORIZED.to_vec());
    let (configured, _) = http_server("127.0.0.1", move |_| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:{other}/org/repo.git/info/refs?service=git-upload-pack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{configured}/org/repo.git");
    let err = Mirror::open(cache.path(), &url)
        .unwrap()
        .fetch_with(&RemoteOptions::new(Auth::Token(token.into())))
        .unwrap_err();
    assert!(
        !other_seen.lock().unwrap().is_empty(),
        "the redirect was followed (else this test proves nothing)"
    );
    assert_eq!(
        authorizations(&other_seen),
        Vec::<String>::new(),
        "token sent to the other host"
    );
    assert_eq!(err.reason, Reason::Auth, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("refusing to send credentials to http://127.0.0.2"),
        "{msg}"
    );
    assert!(!msg.contains(token), "{msg}");

    // Control: the same server, configured, does receive the token (so the check above can fail).
    let direct = format!("http://127.0.0.2:{other}/org/repo.git");
    let _ = Mirror::open(cache.path(), &direct)
        .unwrap()
        .fetch_with(&RemoteOptions::new(Auth::Token(token.into())))
        .unwrap_err();
    assert!(
        !authorizations(&other_seen).is_empty(),
        "the configured host gets the token"
    );
}

/// Error text from libgit2 and from the remote is redacted and has control characters escaped.
#[test]
fn remote_error_text_is_redacted_and_escaped() {
    // A smart-HTTP server that answers with an error line carrying a newline and an escape.
    let (port, _) = http_server("127.0.0.1", |_| {
        let pkt = |s: &str| format!("{:04x}{s}", s.len() + 4);
        let body = format!(
            "{}0000{}",
            pkt("# service=git-upload-pack\n"),
            pkt("ERR denied\nerror: forged line \u{1b}[2J token=s3cr3t-abc")
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://user:pw-s3cr3t@127.0.0.1:{port}/org/repo.git?private_token=q-s3cr3t");
    let err = Mirror::open(cache.path(), &url)
        .unwrap()
        .fetch_with(&RemoteOptions::new(Auth::Token("s3cr3t-abc".into())))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("denied"),
        "the remote's message is kept: {msg}"
    );
    assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
    assert!(!msg.contains("s3cr3t"), "{msg}");

    // URLs libgit2 cannot even parse keep their credentials out of the message too.
    for bad in [
        "https://user:p@ss-s3cr3t@[::1/x",
        "http//user:pa/ss-s3cr3t@host/x",
        "user:pw-s3cr3t@host:path\u{7}",
    ] {
        let msg = match Mirror::open(cache.path(), bad).and_then(|m| m.fetch(&Auth::None)) {
            Ok(_) => panic!("{bad} fetched"),
            Err(e) => e.to_string(),
        };
        assert!(!msg.contains("s3cr3t") && !msg.contains('\u{7}'), "{msg:?}");
    }
}

/// A remote that accepts the connection and never answers: the fetch ends with a timeout.
#[test]
fn a_stalling_remote_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s); // accepted, never answered
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/org/repo.git");
    let start = std::time::Instant::now();
    let err = Mirror::open(cache.path(), &url)
        .unwrap()
        .fetch_with(&RemoteOptions::new(Auth::None).with_timeout(Duration::from_secs(2)))
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.reason, Reason::Timeout, "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// The agent's path for blocking git work: [`source::blocking`] / [`source::fetch_async_with`].
/// On a current-thread runtime a ticking task must keep ticking while a fetch to a stalling
/// remote runs; if libgit2 ran on the reactor, no tick would happen until it returned. (Checked:
/// with `blocking` running the closure inline, this test fails with 0 ticks.)
#[tokio::test(flavor = "current_thread")]
async fn git_work_never_blocks_the_reactor() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    tokio::task::yield_now().await;
    let cache = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let before = ticks.load(std::sync::atomic::Ordering::SeqCst);
    let err = source::fetch_async_with(
        cache.path().to_owned(),
        format!("http://127.0.0.1:{port}/org/repo.git"),
        RemoteOptions::new(Auth::None).with_timeout(Duration::from_millis(1500)),
        None,
    )
    .await
    .unwrap_err();
    let during = ticks.load(std::sync::atomic::Ordering::SeqCst) - before;
    let took = start.elapsed();
    ticker.abort();
    assert_eq!(err.reason, Reason::Timeout, "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // ~150 ticks in 1.5 s; a third of that is plenty to tell from 0.
    assert!(
        during >= 50,
        "only {during} ticks in {took:?}: git blocked the reactor"
    );

    // The wrapper itself gives up at its timeout even when the closure does not.
    let started = std::time::Instant::now();
    let r = source::blocking(Duration::from_millis(200), || {
        std::thread::sleep(Duration::from_secs(2));
    })
    .await;
    assert_eq!(
        r,
        Err(source::BlockingError::TimedOut(Duration::from_millis(200)))
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // And a successful fetch still comes back with the commit.
    let remote = Remote::new();
    let sha = source::fetch_async_with(
        cache.path().to_owned(),
        remote.url(),
        RemoteOptions::new(Auth::None),
        None,
    )
    .await
    .unwrap();
    assert_eq!(sha, git(&remote.work, &["rev-parse", "HEAD"]));
}

/// The sync's fetch and a git rollback's fetch of one mirror may run at once (a restarted
/// agent does both within moments): both must succeed, not one fail on the other's ref lock.
#[test]
fn two_fetches_of_one_mirror_at_once_both_succeed() {
    let remote = Remote::new();
    let cache = tempfile::tempdir().unwrap();
    let url = remote.url();
    Mirror::open(cache.path(), &url)
        .unwrap()
        .fetch(&Auth::None)
        .unwrap();
    let mut failures = Vec::new();
    for round in 0..30u32 {
        // A new commit on the remote, so that both fetches update refs/heads/main.
        remote.commit_replicas(round + 2, &format!("round {round}"));
        git(&remote.work, &["push", "-q", "origin", "HEAD:main"]);
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let fetches: Vec<_> = (0..2)
            .map(|_| {
                let (dir, url, start) = (cache.path().to_owned(), url.clone(), start.clone());
                std::thread::spawn(move || {
                    let mirror = Mirror::open(&dir, &url).unwrap();
                    start.wait();
                    mirror.fetch(&Auth::None).map(|_| ())
                })
            })
            .collect();
        for f in fetches {
            if let Err(e) = f.join().unwrap() {
                failures.push(format!("round {round}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
