//! A real OpenSSH server (Debian's `openssh-server`, installed by `tests/env/deps`) on
//! 127.0.0.1, owned by the test: its own config, host key, and an `authorized_keys` with a fresh
//! client key pair made by `ssh-keygen`. Logins run `git-shell`, which serves the bare
//! repositories under [`Sshd::repos`] (fetch and push). Dropping the value stops the server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd serving git.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub user: String,
    /// The client's private key (OpenSSH format), authorized on the server.
    pub client_key: String,
    /// The server's public host key line: `ssh-ed25519 AAAA…`.
    pub host_key: String,
}

/// A fresh ed25519 key pair `(private key text, public key line)` made by `ssh-keygen`.
pub fn keypair(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fledge-test", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen is installed (tests/env/deps)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = std::fs::read_to_string(&path).unwrap();
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let public = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    (private, public)
}

impl Sshd {
    /// Starts sshd on a free loopback port; panics (never skips) when it cannot.
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} missing: run tests/env/deps (installs openssh-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("repos")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        if is_root {
            // sshd's privilege separation directory (the package creates it at service start).
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let (host_private, host_key) = keypair(d, "host_ed25519");
        drop(host_private);
        let (client_key, client_pub) = keypair(d, "client_ed25519");
        std::fs::write(
            d.join("authorized_keys"),
            format!(
                "command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\",no-port-forwarding,no-pty,no-agent-forwarding,no-X11-forwarding {client_pub}\n"
            ),
        )
        .unwrap();
        for attempt in 0..5 {
            let port = super::free_port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                     AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                     AllowUsers {user}\nLogLevel VERBOSE\n",
                    host = d.join("host_ed25519").display(),
                    pid = d.join("sshd.pid").display(),
                    keys = d.join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(d.join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting sshd");
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        dir,
                        child,
                        port,
                        user,
                        client_key,
                        host_key,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "sshd attempt {attempt} on port {port} failed: {}",
                read(&d.join("sshd.log"))
            );
        }
        panic!("sshd did not start: {}", read(&d.join("sshd.log")));
    }

    /// Where the served bare repositories live.
    pub fn repos(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// `ssh://user@127.0.0.1:port/<repos>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            self.repos().join(name).display()
        )
    }

    /// A known_hosts line for this server.
    pub fn known_hosts(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_key)
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        read(&self.dir.path().join("sshd.log"))
    }
}

fn read(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
