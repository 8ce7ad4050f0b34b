//! Hostile config repositories through the `fledge` binary (`validate` and `render`): the corpus
//! in `tests/fixtures/hostile/` (each case read from a work tree *and* from a git commit) plus
//! cases generated here at run time (symlink loops, big and many-document files, diamond
//! bundles, thousands of patches, a 700 MB git blob, malformed git trees). Every run must end
//! with the expected exit code and an error naming the file (and line), within a time limit
//! enforced by killing the child, and within 256 MiB of peak RSS (measured with `wait4`).

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{copy_tree, git};

/// Killed past this (generous for debug builds on a busy machine; release runs are far below).
const TIMEOUT: Duration = Duration::from_secs(60);
/// Peak resident memory allowed for one render.
const MAX_RSS_KIB: i64 = 256 * 1024;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    max_rss_kib: i64,
}

/// Runs `fledge args…` through [`rss_helper`]: a fresh process of this test binary that spawns
/// fledge, kills it past [`TIMEOUT`] and reaps it with `wait4` to learn its peak RSS. (Spawned
/// straight from this big test process, the child's `ru_maxrss` would include the parent's
/// memory, which Linux folds in at `exec`.)
fn fledge(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "rss_helper",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(HELPER_ARGS, serde_json::to_string(args).expect("args"))
        .env(HELPER_DIR, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("helper runs");
    assert!(status.success(), "rss helper failed for {args:?}");
    let read = |name: &str| {
        let mut s = String::new();
        let _ =
            std::fs::File::open(dir.path().join(name)).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let result = read("result");
    let mut parts = result.split_whitespace();
    let mut next = || parts.next().unwrap_or("").to_owned();
    let (code, rss, micros, killed) = (next(), next(), next(), next());
    let stderr = read("stderr");
    assert!(
        killed == "0",
        "fledge {args:?} ran over {TIMEOUT:?} and was killed; stderr:\n{stderr}"
    );
    Run {
        code: code.parse().ok(),
        stdout: read("stdout"),
        stderr,
        elapsed: Duration::from_micros(micros.parse().unwrap_or(0)),
        max_rss_kib: rss.parse().unwrap_or(i64::MAX),
    }
}

const HELPER_ARGS: &str = "FLEDGE_RSS_HELPER_ARGS";
const HELPER_DIR: &str = "FLEDGE_RSS_HELPER_DIR";

/// Not a test of its own: the helper process of [`fledge`] (does nothing unless started by it).
#[test]
fn rss_helper() {
    let (Ok(args), Ok(dir)) = (std::env::var(HELPER_ARGS), std::env::var(HELPER_DIR)) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("args");
    let dir = PathBuf::from(dir);
    let file = |name: &str| std::fs::File::create(dir.join(name)).expect("output file");
    // Reaped below with wait4 (for its rusage), not with Child::wait.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(&args)
        .env_remove("KUBECONFIG")
        .env(
            "FLEDGE_CACHE_DIR",
            std::env::temp_dir().join("fledge-test-mirrors"),
        )
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .expect("fledge runs");
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: pid is our child; status and usage point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed");
        if started.elapsed() > TIMEOUT && !killed {
            // SAFETY: pid is our child and has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    std::fs::write(
        dir.join("result"),
        format!(
            "{code} {} {} {}",
            usage.ru_maxrss,
            started.elapsed().as_micros(),
            u8::from(killed)
        ),
    )
    .expect("result written");
}

/// What a case expects.
#[derive(Debug, Default, Clone)]
struct Expect {
    exit: i32,
    /// Substrings stderr must hold (file:line of the error, message parts).
    errors: Vec<String>,
    /// Substrings stdout must hold (exit 0 cases, from `render`).
    stdout: Vec<String>,
    /// Substrings stderr must not hold.
    absent: Vec<String>,
    /// Beginnings no line of stderr may have (a forged line).
    forged: Vec<String>,
    /// Extra arguments (default `--path .`).
    args: Vec<String>,
    /// Run from the work tree only (the case cannot be committed as it is).
    disk_only: bool,
    /// Run from the git commit only.
    git_only: bool,
}

fn parse_expect(text: &str) -> Expect {
    let mut e = Expect {
        exit: 1,
        args: vec!["--path".into(), ".".into()],
        ..Default::default()
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("exit: ") {
            e.exit = v.trim().parse().expect("exit code");
        } else if let Some(v) = line.strip_prefix("error: ") {
            e.errors.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("stdout: ") {
            e.stdout.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("absent: ") {
            e.absent.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("forged: ") {
            e.forged.push(v.to_owned());
        } else if let Some(v) = line.strip_prefix("args: ") {
            e.args = v.split_whitespace().map(str::to_owned).collect();
        } else if line.trim() == "disk-only" {
            e.disk_only = true;
        }
    }
    e
}

/// Runs one case (a repository directory) in the modes it allows; returns problems found and
/// the worst (time, RSS) seen.
fn run_case(
    name: &str,
    repo: &Path,
    expect: &Expect,
    stats: &mut Vec<(String, Duration, i64)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let repo_s = repo.to_str().expect("temp paths are UTF-8");
    let mut modes: Vec<(&str, Vec<String>)> = Vec::new();
    if !expect.git_only {
        modes.push(("disk", vec![]));
    }
    if !expect.disk_only {
        if !repo.join(".git").exists() {
            git(repo, &["init", "-q"]);
            git(repo, &["add", "-A"]);
            git(repo, &["commit", "-qm", "case", "--allow-empty"]);
        }
        modes.push(("git", vec!["--rev".into(), "HEAD".into()]));
    }
    for (mode, extra) in modes {
        for cmd in ["validate", "render"] {
            let mut args = vec![cmd, repo_s];
            args.extend(expect.args.iter().map(String::as_str));
            args.extend(extra.iter().map(String::as_str));
            let run = fledge(&args);
            stats.push((format!("{name} {mode} {cmd}"), run.elapsed, run.max_rss_kib));
            let label = format!("{name} ({mode}, {cmd})");
            if run.code != Some(expect.exit) {
                problems.push(format!(
                    "{label}: exit {:?}, expected {}; stderr:\n{}",
                    run.code, expect.exit, run.stderr
                ));
            }
            if run.max_rss_kib > MAX_RSS_KIB {
                problems.push(format!(
                    "{label}: peak RSS {} KiB over {MAX_RSS_KIB} KiB",
                    run.max_rss_kib
                ));
            }
            for e in &expect.errors {
                if !run.stderr.contains(e.as_str()) {
                    problems.push(format!(
                        "{label}: stderr lacks {e:?}; stderr was:\n{}",
                        run.stderr
                    ));
                }
            }
            for a in &expect.absent {
                if run.stderr.contains(a.as_str()) {
                    problems.push(format!(
                        "{label}: stderr holds {a:?}; stderr was:\n{}",
                        run.stderr
                    ));
                }
            }
            for f in &expect.forged {
                if run.stderr.lines().any(|l| l.starts_with(f.as_str())) {
                    problems.push(format!(
                        "{label}: a line of stderr starts with {f:?}:\n{}",
                        run.stderr
                    ));
                }
            }
            if expect.exit != 0 && !run.stdout.is_empty() && cmd == "render" {
                problems.push(format!("{label}: printed objects despite errors"));
            }
            if cmd == "render" {
                for s in &expect.stdout {
                    if !run.stdout.contains(s.as_str()) {
                        problems.push(format!(
                            "{label}: stdout lacks {s:?}; stdout was:\n{}",
                            run.stdout
                        ));
                    }
                }
            }
            if expect.exit != 0 && run.stderr.contains("panicked") {
                problems.push(format!("{label}: panicked:\n{}", run.stderr));
            }
        }
    }
    problems
}

fn report(stats: &[(String, Duration, i64)]) {
    let slowest = stats.iter().max_by_key(|s| s.1);
    let biggest = stats.iter().max_by_key(|s| s.2);
    if let (Some(s), Some(b)) = (slowest, biggest) {
        eprintln!(
            "{} runs; slowest {} in {:?}; largest peak RSS {} at {} KiB",
            stats.len(),
            s.0,
            s.1,
            b.0,
            b.2
        );
    }
}

#[test]
fn hostile_corpus_is_refused_quickly_in_little_memory() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 30,
        "the corpus has {} cases, expected at least 30",
        dirs.len()
    );
    let mut problems = Vec::new();
    let mut stats = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let expect =
            parse_expect(&std::fs::read_to_string(dir.join("expect")).expect("expect file"));
        let repo = tempfile::tempdir().expect("tempdir");
        copy_tree(&dir.join("repo"), repo.path());
        problems.extend(run_case(&name, repo.path(), &expect, &mut stats));
    }
    report(&stats);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A temporary repository built by the test.
struct Repo(tempfile::TempDir);

impl Repo {
    fn new() -> Repo {
        Repo(tempfile::tempdir().expect("tempdir"))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Repo {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }
    fn symlink(&self, path: &str, target: &str) -> &Repo {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }
}

const BUNDLE: &str = "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\n";

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: ns\n")
}

fn expect(exit: i32, errors: &[&str]) -> Expect {
    Expect {
        exit,
        errors: errors.iter().map(|s| (*s).to_owned()).collect(),
        args: vec!["--path".into(), ".".into()],
        ..Default::default()
    }
}

#[test]
fn generated_hostile_repositories_are_refused_quickly_in_little_memory() {
    let mut cases: Vec<(&str, Repo, Expect)> = Vec::new();

    // 1. Directory symlinks that lead back up: to the parent, to the root, to itself.
    for (name, link, target) in [
        ("symlink-to-parent", "apps/sub/up", ".."),
        ("symlink-to-root", "apps/sub/root", "../.."),
        ("symlink-to-self", "apps/sub/me", "."),
        ("symlink-to-grandparent-deeper", "apps/a/b/c/up", "../../.."),
    ] {
        let r = Repo::new();
        r.write("fledge.yaml", format!("{BUNDLE}include: [apps]\n"))
            .write("apps/sub/x.yaml", cm("x"))
            .symlink(link, target);
        cases.push((name, r, expect(1, &[link, "symlink"])));
    }

    // 4. One 4 MiB file of many documents, each near the old per-document alias budget.
    {
        let doc = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n---\n";
        let mut text = String::new();
        while text.len() + doc.len() < 4 << 20 {
            text.push_str(doc);
        }
        let r = Repo::new();
        r.write("fledge.yaml", format!("{BUNDLE}include: [bomb.yaml]\n"))
            .write("bomb.yaml", text);
        cases.push((
            "alias-bombs-over-many-documents",
            r,
            expect(1, &["bomb.yaml:", "over the limit"]),
        ));
    }
    // The same spread over many files.
    {
        let r = Repo::new();
        let doc = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n---\n";
        r.write("fledge.yaml", format!("{BUNDLE}include: [bombs]\n"));
        for i in 0..40 {
            r.write(&format!("bombs/b{i:02}.yaml"), doc.repeat(100));
        }
        cases.push((
            "alias-bombs-over-many-files",
            r,
            expect(1, &["bombs/b", "over the limit"]),
        ));
    }

    // 5. Diamond bundles: l0 … l24, each including the next twice.
    {
        let r = Repo::new();
        for i in 0..25 {
            r.write(
                &format!("l{i}/fledge.yaml"),
                format!("{BUNDLE}include: [../l{n}, ../l{n}]\n", n = i + 1),
            );
        }
        r.write("l25/fledge.yaml", format!("{BUNDLE}include: [cm.yaml]\n"))
            .write("l25/cm.yaml", cm("leaf"))
            .write("fledge.yaml", format!("{BUNDLE}include: [l0]\n"));
        cases.push((
            "diamond-bundles",
            r,
            expect(1, &["l0/fledge.yaml:3", "included more than once"]),
        ));
    }
    // A file included twice is not a duplicate of itself.
    {
        let r = Repo::new();
        r.write(
            "fledge.yaml",
            format!("{BUNDLE}include:\n  - a.yaml\n  - ./a.yaml\n"),
        )
        .write("a.yaml", cm("a"));
        let mut e = expect(
            1,
            &["a.yaml: file is included more than once (first from fledge.yaml:4)"],
        );
        e.absent.push("duplicate object".into());
        cases.push(("file-included-twice", r, e));
    }

    // 6. Ten thousand patches: linear time.
    {
        let r = Repo::new();
        let mut bundle = format!("{BUNDLE}include: [cm.yaml]\npatches:\n");
        for i in 0..10_000 {
            bundle.push_str(&format!(
                "  - target: {{kind: ConfigMap, name: x}}\n    ops: [{{op: add, path: /data/k{i}, value: v}}]\n"
            ));
        }
        r.write("fledge.yaml", bundle)
            .write("cm.yaml", format!("{}data: {{}}\n", cm("x")));
        let mut e = expect(0, &[]);
        e.stdout.push("k9999: v".into());
        cases.push(("ten-thousand-patches", r, e));
    }
    // Over the patch-op budget.
    {
        let r = Repo::new();
        let mut ops = String::new();
        for i in 0..50_001 {
            ops.push_str(&format!(
                "      - {{op: add, path: /data/k{i}, value: v}}\n"
            ));
        }
        r.write("fledge.yaml", format!("{BUNDLE}include: [cm.yaml]\npatches:\n  - target: {{kind: ConfigMap, name: x}}\n    ops:\n{ops}"))
            .write("cm.yaml", format!("{}data: {{}}\n", cm("x")));
        cases.push((
            "too-many-patch-ops",
            r,
            expect(
                1,
                &[
                    "fledge.yaml:5",
                    "patch operations in the render over the limit of 50000",
                ],
            ),
        ));
    }

    // 13. Git and disk oddities.
    {
        let r = Repo::new();
        r.write("fledge.yaml", format!("{BUNDLE}include: [apps]\n"))
            .write("apps/ok.yaml", cm("ok"))
            .symlink("apps/gone.yaml", "missing.yaml");
        cases.push((
            "dangling-yaml-symlink",
            r,
            expect(1, &["apps/gone.yaml", "symlink target does not exist"]),
        ));
    }
    {
        let r = Repo::new();
        r.write("base/real.yaml", format!("{BUNDLE}include: [cm.yaml]\n"))
            .write("base/cm.yaml", cm("via-link"))
            .symlink("base/fledge.yaml", "real.yaml")
            .write("fledge.yaml", format!("{BUNDLE}include: [base]\n"));
        let mut e = expect(0, &[]);
        e.stdout.push("name: via-link".into());
        cases.push(("symlinked-bundle-file", r, e));
    }
    {
        use std::os::unix::ffi::OsStrExt;
        let r = Repo::new();
        r.write("fledge.yaml", format!("{BUNDLE}include: [apps]\n"))
            .write("apps/ok.yaml", cm("ok"));
        let bad = r
            .path()
            .join("apps")
            .join(std::ffi::OsStr::from_bytes(b"bad-\xff.yaml"));
        std::fs::write(bad, cm("hidden")).expect("write");
        cases.push(("non-utf8-file-name", r, expect(1, &["apps", "not UTF-8"])));
    }

    let mut problems = Vec::new();
    let mut stats = Vec::new();
    for (name, repo, e) in &cases {
        problems.extend(run_case(name, repo.path(), e, &mut stats));
    }
    report(&stats);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Writes a tree object with exactly these entries (mode, name bytes, id), duplicates allowed,
/// as a hostile server could push it.
fn raw_tree(repo: &git2::Repository, entries: &[(&str, &[u8], git2::Oid)]) -> git2::Oid {
    let mut data = Vec::new();
    for (mode, name, oid) in entries {
        data.extend_from_slice(mode.as_bytes());
        data.push(b' ');
        data.extend_from_slice(name);
        data.push(0);
        data.extend_from_slice(oid.as_bytes());
    }
    repo.odb()
        .and_then(|odb| odb.write(git2::ObjectType::Tree, &data))
        .expect("tree written")
}

fn commit_tree(repo: &git2::Repository, tree: git2::Oid) {
    let tree = repo.find_tree(tree).expect("tree");
    let sig = git2::Signature::now("t", "t@fledge.invalid").expect("signature");
    repo.commit(Some("HEAD"), &sig, &sig, "case", &tree, &[])
        .expect("commit");
}

fn git_case(build: impl FnOnce(&git2::Repository) -> git2::Oid) -> Repo {
    let r = Repo::new();
    let repo = git2::Repository::init(r.path()).expect("init");
    let tree = build(&repo);
    commit_tree(&repo, tree);
    r
}

fn git_only(exit: i32, errors: &[&str]) -> Expect {
    Expect {
        git_only: true,
        ..expect(exit, errors)
    }
}

#[test]
fn hostile_git_trees_are_refused_quickly_in_little_memory() {
    let mut cases: Vec<(&str, Repo, Expect)> = Vec::new();
    let bundle = |repo: &git2::Repository, text: &str| repo.blob(text.as_bytes()).expect("blob");

    // 7. A 700 MB symlink blob and a 700 MB file blob: refused from the object header.
    let big = |repo: &git2::Repository| {
        let mut w = repo.blob_writer(None).expect("writer");
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..700 {
            std::io::Write::write_all(&mut w, &chunk).expect("write");
        }
        w.commit().expect("blob")
    };
    // One repository holds the blob once; two bundles reach it as a symlink and as a file.
    let huge = git_case(|repo| {
        let blob = big(repo);
        let a = bundle(repo, &format!("{BUNDLE}include: [apps]\n"));
        let apps = raw_tree(repo, &[("120000", b"link.yaml", blob)]);
        let a = raw_tree(
            repo,
            &[("40000", b"apps", apps), ("100644", b"fledge.yaml", a)],
        );
        let b = bundle(repo, &format!("{BUNDLE}include: [big.yaml]\n"));
        let b = raw_tree(
            repo,
            &[("100644", b"big.yaml", blob), ("100644", b"fledge.yaml", b)],
        );
        raw_tree(repo, &[("40000", b"a", a), ("40000", b"b", b)])
    });
    let started = Instant::now();
    let mut problems = Vec::new();
    let mut stats = Vec::new();
    let mut link = git_only(
        1,
        &["a/apps/link.yaml", "symlink target is 734003200 bytes"],
    );
    link.args = vec!["--path".into(), "a".into()];
    problems.extend(run_case(
        "huge-symlink-blob",
        huge.path(),
        &link,
        &mut stats,
    ));
    let mut file = git_only(
        1,
        &["b/big.yaml: file is 734003200 bytes, over the limit of 4194304 bytes"],
    );
    file.args = vec!["--path".into(), "b".into()];
    problems.extend(run_case("huge-file-blob", huge.path(), &file, &mut stats));
    eprintln!(
        "700 MB blob cases (with writing the blob): {:?}",
        started.elapsed()
    );
    // 13. Duplicate entries, a non-UTF-8 name, a gitlink where an include is expected.
    cases.push((
        "duplicate-tree-entries",
        git_case(|repo| {
            let b = bundle(repo, &format!("{BUNDLE}include: [apps]\n"));
            let one = repo.blob(cm("one").as_bytes()).expect("blob");
            let two = repo.blob(cm("two").as_bytes()).expect("blob");
            let apps = raw_tree(
                repo,
                &[("100644", b"a.yaml", one), ("100644", b"a.yaml", two)],
            );
            raw_tree(
                repo,
                &[("40000", b"apps", apps), ("100644", b"fledge.yaml", b)],
            )
        }),
        git_only(1, &["apps", "lists \"a.yaml\" twice"]),
    ));
    cases.push((
        "non-utf8-name-in-git",
        git_case(|repo| {
            let b = bundle(repo, &format!("{BUNDLE}include: [apps]\n"));
            let one = repo.blob(cm("one").as_bytes()).expect("blob");
            let apps = raw_tree(repo, &[("100644", b"a\xff.yaml", one)]);
            raw_tree(
                repo,
                &[("40000", b"apps", apps), ("100644", b"fledge.yaml", b)],
            )
        }),
        git_only(1, &["apps", "not UTF-8"]),
    ));
    cases.push((
        "gitlink-as-include",
        git_case(|repo| {
            let b = bundle(repo, &format!("{BUNDLE}include:\n  - sub\n"));
            let commit =
                git2::Oid::from_str("1234567890123456789012345678901234567890").expect("oid");
            raw_tree(
                repo,
                &[("100644", b"fledge.yaml", b), ("160000", b"sub", commit)],
            )
        }),
        git_only(1, &["fledge.yaml:4", "submodule"]),
    ));
    cases.push((
        "gitlink-in-included-dir",
        git_case(|repo| {
            let b = bundle(repo, &format!("{BUNDLE}include: [apps]\n"));
            let one = repo.blob(cm("one").as_bytes()).expect("blob");
            let commit =
                git2::Oid::from_str("1234567890123456789012345678901234567890").expect("oid");
            let apps = raw_tree(
                repo,
                &[("100644", b"a.yaml", one), ("160000", b"vendor", commit)],
            );
            raw_tree(
                repo,
                &[("40000", b"apps", apps), ("100644", b"fledge.yaml", b)],
            )
        }),
        git_only(1, &["apps/vendor", "submodule"]),
    ));
    // 1. The ancestor symlink through git.
    cases.push((
        "git-symlink-to-ancestor",
        git_case(|repo| {
            let b = bundle(repo, &format!("{BUNDLE}include: [apps]\n"));
            let one = repo.blob(cm("one").as_bytes()).expect("blob");
            let up = repo.blob(b"..").expect("blob");
            let sub = raw_tree(repo, &[("100644", b"a.yaml", one), ("120000", b"up", up)]);
            let apps = raw_tree(repo, &[("40000", b"sub", sub)]);
            raw_tree(
                repo,
                &[("40000", b"apps", apps), ("100644", b"fledge.yaml", b)],
            )
        }),
        git_only(1, &["apps/sub/up", "symlink"]),
    ));

    for (name, repo, e) in &cases {
        problems.extend(run_case(name, repo.path(), e, &mut stats));
    }
    report(&stats);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
