//! The git source against real repositories made in the test: a bare "remote" and a clone that
//! pushes to it, read through fledge's mirror (file:// URLs), by branch, by old revision, after
//! new pushes (incremental fetch), with a symlink escaping the tree, and unreachable remotes.

use fledge::render::{self, RenderOptions};
use fledge::source::{self, Auth, GitTree, Mirror, Reason};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn fetch_async_runs_off_the_reactor() {
    let remote = Remote::new();
    let cache = tempfile::tempdir().unwrap();
    // A timer on the single worker keeps ticking while the blocking fetch runs elsewhere.
    let ticker = tokio::spawn(async {
        let mut ticks = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            ticks += 1;
        }
        ticks
    });
    let sha = source::fetch_async(cache.path().to_owned(), remote.url(), Auth::None, None)
        .await
        .unwrap();
    assert_eq!(sha, git(&remote.work, &["rev-parse", "HEAD"]));
    assert_eq!(ticker.await.unwrap(), 5);
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
fn a_large_directory_renders_from_git_about_as_fast_as_from_disk() {
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
    let best = |f: &dyn Fn() -> render::Desired| {
        (0..2)
            .map(|_| {
                let t = std::time::Instant::now();
                let d = f();
                (t.elapsed(), d)
            })
            .min_by_key(|(t, _)| *t)
            .unwrap()
    };
    let (disk, from_disk) = best(&|| {
        let tree = render::FsTree::new(dir.path()).unwrap();
        render::render(&tree, "big", &opts).unwrap()
    });
    let (commit, from_git) = best(&|| {
        let tree = GitTree::at(&repo, head).unwrap();
        render::render(&tree, "big", &opts).unwrap()
    });
    assert_eq!(from_git.objects.len(), 3000);
    assert_eq!(from_git.objects, from_disk.objects);
    println!("3,000 files in one directory: {disk:?} from disk, {commit:?} from git");
    assert!(
        commit <= disk * 5,
        "rendering from git took {commit:?} against {disk:?} from disk: is a tree parsed per file again?"
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
