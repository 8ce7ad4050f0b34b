//! `fledge render` / `fledge validate` through the binary: the bad-input corpus in
//! `tests/fixtures/render/` (each case read from a work tree *and* from a git commit), the
//! config-repo-template, output formats and exit codes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{copy_tree, git};

fn fledge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fledge"));
    c.env_remove("KUBECONFIG").env(
        "FLEDGE_CACHE_DIR",
        std::env::temp_dir().join("fledge-test-mirrors"),
    );
    c
}

struct Case {
    name: String,
    args: Vec<String>,
    errors: Vec<String>,
    repo: tempfile::TempDir,
}

fn load_case(dir: &Path) -> Case {
    let expect = std::fs::read_to_string(dir.join("expect")).unwrap();
    let repo = tempfile::tempdir().unwrap();
    copy_tree(&dir.join("repo"), repo.path());
    let mut args = vec!["--path".to_owned(), ".".to_owned()];
    let mut errors = Vec::new();
    for line in expect.lines() {
        if let Some(a) = line.strip_prefix("args: ") {
            args = a.split_whitespace().map(str::to_owned).collect();
        } else if let Some(g) = line.strip_prefix("generate: ") {
            let (file, size) = g.split_once(' ').unwrap();
            let size: usize = size.parse().unwrap();
            let mut content = b"# padding\n".repeat(size / 10);
            content.resize(size, b'#');
            std::fs::write(repo.path().join(file), content).unwrap();
        } else if let Some(e) = line.strip_prefix("error: ") {
            errors.push(e.to_owned());
        }
    }
    Case {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        args,
        errors,
        repo,
    }
}

fn check(case: &Case, mode: &str, out: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!(
            "{} ({mode}): exit {:?}, expected 1; stderr:\n{stderr}",
            case.name,
            out.status.code()
        ));
    }
    if !out.stdout.is_empty() {
        problems.push(format!(
            "{} ({mode}): printed objects despite errors",
            case.name
        ));
    }
    for e in &case.errors {
        if !stderr.contains(e.as_str()) {
            problems.push(format!(
                "{} ({mode}): stderr lacks {e:?}; stderr was:\n{stderr}",
                case.name
            ));
        }
    }
    problems
}

#[test]
fn bad_input_corpus_fails_with_errors_naming_file_and_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 40,
        "the corpus has {} cases, expected at least 40",
        dirs.len()
    );
    let mut problems = Vec::new();
    for dir in &dirs {
        let case = load_case(dir);
        let repo = case.repo.path().to_str().unwrap();
        // 1. The work tree as it is, through validate and render.
        let out = fledge()
            .arg("validate")
            .arg(repo)
            .args(&case.args)
            .output()
            .unwrap();
        problems.extend(check(&case, "validate", &out));
        let out = fledge()
            .arg("render")
            .arg(repo)
            .args(&case.args)
            .output()
            .unwrap();
        problems.extend(check(&case, "render", &out));
        // 2. The same files committed to git and read from the commit's tree.
        git(case.repo.path(), &["init", "-q"]);
        git(case.repo.path(), &["add", "-A"]);
        git(case.repo.path(), &["commit", "-qm", "case"]);
        let out = fledge()
            .arg("validate")
            .arg(repo)
            .args(["--rev", "HEAD"])
            .args(&case.args)
            .output()
            .unwrap();
        problems.extend(check(&case, "git", &out));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-repo-template")
}

#[test]
fn config_repo_template_renders_cleanly_for_both_clusters() {
    for cluster in ["staging", "production"] {
        let out = fledge()
            .args([
                "validate",
                template().to_str().unwrap(),
                "--path",
                &format!("clusters/{cluster}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cluster}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "rendered 6 objects from 8 files"
        );
    }
    // clusters/local is what `make demo` runs on the local env: the same app plus an HTTPRoute
    // on the env's gateway and its own fast AnalysisTemplate instead of ../../analysis.
    let out = fledge()
        .args([
            "validate",
            template().to_str().unwrap(),
            "--path",
            "clusters/local",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "local: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "rendered 7 objects from 9 files"
    );
    let out = fledge()
        .args([
            "render",
            template().to_str().unwrap(),
            "--path",
            "clusters/production",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ConfigMap",
            "Service",
            "Deployment",
            "AnalysisTemplate",
            "Rollout"
        ],
        "apply order"
    );
    let deploy = items.iter().find(|i| i["kind"] == "Deployment").unwrap();
    assert_eq!(deploy["spec"]["replicas"], 6, "production patch applied");
    assert_eq!(deploy["metadata"]["namespace"], "shop");
    // The template's Rollout and AnalysisTemplate are valid fledge resources.
    for kind in ["Rollout", "AnalysisTemplate"] {
        let obj = items.iter().find(|i| i["kind"] == kind).unwrap().clone();
        match kind {
            "Rollout" => {
                drop(serde_json::from_value::<fledge::crd::Rollout>(obj).expect("valid Rollout"))
            }
            _ => drop(
                serde_json::from_value::<fledge::crd::AnalysisTemplate>(obj)
                    .expect("valid AnalysisTemplate"),
            ),
        }
    }
}

#[test]
fn yaml_output_is_a_stream_of_the_same_objects() {
    let yaml = fledge()
        .args([
            "render",
            template().to_str().unwrap(),
            "--path",
            "clusters/staging",
        ])
        .output()
        .unwrap();
    let json = fledge()
        .args([
            "render",
            template().to_str().unwrap(),
            "--path",
            "clusters/staging",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(yaml.status.success() && json.status.success());
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&String::from_utf8(yaml.stdout).unwrap()).unwrap();
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(&docs, list["items"].as_array().unwrap());
    // Twice the same bytes.
    let again = fledge()
        .args([
            "render",
            template().to_str().unwrap(),
            "--path",
            "clusters/staging",
        ])
        .output()
        .unwrap();
    assert_eq!(
        serde_saphyr::to_string(&docs).unwrap(),
        serde_saphyr::to_string(
            &serde_saphyr::from_multiple::<serde_json::Value>(
                &String::from_utf8(again.stdout).unwrap()
            )
            .unwrap()
        )
        .unwrap()
    );
}

#[test]
fn missing_repo_is_a_usage_error() {
    let out = fledge()
        .args(["validate", "/nonexistent/fledge-repo", "--path", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/fledge-repo: no such directory, and not a git URL")
    );
}
