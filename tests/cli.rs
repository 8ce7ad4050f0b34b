//! The CLI skeleton: version, help, completions, and usage errors.

use std::process::Command;

fn fledge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

#[test]
fn version_and_help() {
    let out = fledge(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("fledge {}", env!("CARGO_PKG_VERSION"))
    );
    let help = String::from_utf8(fledge(&["--help"]).stdout).unwrap();
    for cmd in [
        "run",
        "plan",
        "render",
        "validate",
        "analyze",
        "crds",
        "completions",
        "--kubeconfig",
        "--log-format",
        "--verbose",
    ] {
        assert!(help.contains(cmd), "--help lacks {cmd}:\n{help}");
    }
}

#[test]
fn completions_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = fledge(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("fledge") && text.contains("analyze"),
            "{shell} completions mention the commands"
        );
    }
    let out = fledge(&["completions", "cobol"]);
    assert_eq!(out.status.code(), Some(2), "unknown shell is a usage error");
}

#[test]
fn usage_errors_explain_themselves() {
    let out = fledge(&["analyze", "--template", "t.yaml"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--service"));
    let out = fledge(&["--log-format", "xml", "crds"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: text, json"));
}
