//! fledge's container image, built here by `tests/env/image` (what `make image` runs) with buildah
//! from the Containerfile: its base comes from Debian's packages (debootstrap), the runtime stage
//! is `scratch` with the binary, the libraries it links and CA certificates. The image runs as a
//! non-root user, its entrypoint is the binary, the binary in it runs, and it has no shell. Also:
//! `make install`'s script puts a `kubectl-fledge` link beside the binary and kubectl runs it as
//! a plugin.

mod support;

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// buildah as root (through sudo when the tests do not run as root), with the storage settings
/// tests/env/image uses.
fn buildah(args: &[&str]) -> String {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    let root_user = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let mut c = if root_user {
        Command::new("buildah")
    } else {
        let mut c = Command::new("sudo");
        c.arg("buildah");
        c
    };
    let out = c
        .args(args)
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .expect("running buildah (Debian package buildah; tests/env/deps installs it)");
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the test's image (and its working containers) when the test ends.
struct Image(String);
impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("buildah")
            .args(["rmi", "--force", &self.0])
            .env("STORAGE_DRIVER", "vfs")
            .output();
    }
}

#[test]
fn the_image_builds_here_runs_as_non_root_and_has_no_shell() {
    let tag = format!("fledge:test-{}", std::process::id());
    let out = Command::new(root().join("tests/env/image"))
        .args(["--binary", env!("CARGO_BIN_EXE_fledge"), "--tag", &tag])
        .output()
        .expect("running tests/env/image");
    assert!(
        out.status.success(),
        "tests/env/image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = Image(tag.clone());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), tag);

    let inspect = buildah(&["inspect", "--type", "image", &image.0]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/fledge"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["run"]), "{config}");

    let ctr = buildah(&["from", "--quiet", &image.0]);
    let version = buildah(&[
        "run",
        "--isolation",
        "chroot",
        &ctr,
        "--",
        "/usr/local/bin/fledge",
        "--version",
    ]);
    assert_eq!(version, format!("fledge {}", env!("CARGO_PKG_VERSION")));
    // Nothing to run a shell with, and the CA bundle is there.
    let mount = buildah(&["mount", &ctr]);
    let fs = Path::new(&mount);
    for absent in [
        "bin/sh",
        "usr/bin/sh",
        "bin/bash",
        "usr/bin/apt",
        "usr/bin/dpkg",
    ] {
        assert!(!fs.join(absent).exists(), "{absent} is in the image");
    }
    let ca = std::fs::read_to_string(fs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        ca.matches("BEGIN CERTIFICATE").count() > 50,
        "a real CA bundle"
    );
    assert!(
        std::fs::read_to_string(fs.join("etc/passwd"))
            .unwrap()
            .contains(":65532:65532:")
    );
    buildah(&["umount", &ctr]);
    buildah(&["rm", &ctr]);
}

#[test]
fn the_install_script_links_the_kubectl_plugin() {
    let env = support::Env::get();
    let prefix = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("tests/env/install"))
        .args(["--binary", env!("CARGO_BIN_EXE_fledge")])
        .arg("--prefix")
        .arg(prefix.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = std::fs::read_link(prefix.path().join("bin/kubectl-fledge")).unwrap();
    assert_eq!(link, Path::new("fledge"));
    let path = format!(
        "{}:{}",
        prefix.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = || {
        let mut c = Command::new(env.bin("kubectl"));
        c.env("PATH", &path).env("KUBECONFIG", env.kubeconfig());
        c
    };
    let out = kubectl().args(["plugin", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("kubectl-fledge"),
        "kubectl plugin list: {list}"
    );
    let out = kubectl().args(["fledge", "status"]).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl fledge status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
