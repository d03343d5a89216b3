//! `snakepit exec` and `snakepit call` with `--server`: the built binary
//! against a real `snakepit serve` (its own process, loopback TCP or a Unix
//! socket). The output must be what the local mode prints for the same
//! command on the same pools: the same JSON on stdout, the same first error line on stderr,
//! the same exit codes; a wrong token fails clearly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Every command of these tests must end within this long.
const LIMIT: Duration = Duration::from_secs(30);

/// One worker of the showcase adapter, for the server.
const CONFIG: &str = r#"
[[pools]]
name = "default"
size = 1
adapter = "snakepit_bridge.showcase.ShowcaseAdapter"
"#;

const TOKEN: &str = "s3cret-token";

/// A `snakepit serve` child, ended (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `snakepit serve` on `listen` (`None`: a loopback TCP port the
    /// server picks) with the token file, and waits until it serves.
    fn start(unix: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("serve.toml");
        std::fs::write(&config, CONFIG).expect("write config");
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("write token");
        let listen = if unix {
            format!("unix:{}", dir.path().join("serve.sock").display())
        } else {
            "127.0.0.1:0".to_string()
        };
        let mut child = common::snakepit_command()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(&listen)
            .arg("--token-file")
            .arg(&token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run snakepit serve");
        let stderr = common::line_channel(child.stderr.take().expect("stderr"));
        let (addr, _) = common::wait_serving(&mut child, &stderr, LIMIT);
        Server { child, addr, dir }
    }

    /// The server's configuration, for the local run to compare with.
    fn config(&self) -> PathBuf {
        self.dir.path().join("serve.toml")
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn wrong_token_file(&self) -> PathBuf {
        let path = self.dir.path().join("wrong-token");
        std::fs::write(&path, "not-the-token\n").expect("write token");
        path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + LIMIT;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `snakepit args` from the package root, killed if it outlives `LIMIT`.
fn snakepit(args: &[&str]) -> Output {
    common::run_snakepit(args, LIMIT)
}

/// `snakepit args --server ADDR --token-file F`.
fn remote(server: &Server, token_file: &Path, args: &[&str]) -> Output {
    let token_file = token_file.to_str().expect("utf-8 path");
    let mut full = args.to_vec();
    full.extend(["--server", &server.addr, "--token-file", token_file]);
    snakepit(&full)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn first_stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_string()
}

/// The remote run printed and exited as the local one did.
fn assert_same(local: &Output, remote: &Output, what: &str) {
    let explain = || {
        format!(
            "{what}\nlocal:  {:?} {:?} {:?}\nremote: {:?} {:?} {:?}",
            local.status,
            stdout(local),
            String::from_utf8_lossy(&local.stderr),
            remote.status,
            stdout(remote),
            String::from_utf8_lossy(&remote.stderr)
        )
    };
    assert_eq!(local.status.code(), remote.status.code(), "{}", explain());
    assert_eq!(stdout(local), stdout(remote), "{}", explain());
    assert_eq!(
        first_stderr_line(local),
        first_stderr_line(remote),
        "{}",
        explain()
    );
}

#[test]
fn exec_and_call_print_over_tcp_what_they_print_locally() {
    let server = Server::start(false);
    let token = server.token_file();

    let out = remote(
        &server,
        &token,
        &["exec", "add", "--args", r#"{"a":2,"b":3}"#],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "5");

    let out = remote(&server, &token, &["call", "math", "sqrt", "16"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "4.0");

    for args in [
        &["exec", "add", "--args", r#"{"a":2,"b":3}"#][..],
        &["exec", "progress", "--args", r#"{"steps":3,"delay_ms":1}"#],
        &["exec", "fail", "--args", r#"{"message":"no luck"}"#],
        &["exec", "no_such_tool"],
        &["call", "math", "sqrt", "16"],
        &["call", "math", "sqrt", "-1"],
        &["call", "operator", "add", "[1, 2]", "[3]"],
    ] {
        // The local run on the server's pools (the same names in errors).
        let config = server.config();
        let mut local = args.to_vec();
        local.extend(["--config", config.to_str().expect("utf-8 path")]);
        let local = snakepit(&local);
        let remote = remote(&server, &token, args);
        assert_same(&local, &remote, &format!("snakepit {args:?}"));
    }
}

#[test]
fn exec_runs_over_a_unix_socket() {
    let server = Server::start(true);
    assert!(server.addr.starts_with("unix:"), "{}", server.addr);
    let out = remote(
        &server,
        &server.token_file(),
        &["exec", "add", "--args", r#"{"a":2,"b":3}"#],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "5");
}

#[test]
fn a_wrong_or_missing_token_fails_clearly() {
    let server = Server::start(false);
    let wrong = server.wrong_token_file();
    for (args, code) in [
        (&["exec", "add", "--args", r#"{"a":2,"b":3}"#][..], 1),
        (&["call", "math", "sqrt", "16"], 1),
    ] {
        let out = remote(&server, &wrong, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        let error = first_stderr_line(&out).to_lowercase();
        assert!(
            error.contains("token") || error.contains("unauthenticated"),
            "{args:?}: {error}"
        );

        let mut anonymous = args.to_vec();
        anonymous.extend(["--server", &server.addr]);
        let out = snakepit(&anonymous);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(
            first_stderr_line(&out).to_lowercase().contains("token"),
            "{out:?}"
        );
    }
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = format!("unix:{}", dir.path().join("nobody.sock").display());
    let out = snakepit(&["call", "math", "sqrt", "16", "--server", &target]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let error = first_stderr_line(&out);
    assert!(error.contains("cannot connect to"), "{error}");
}
