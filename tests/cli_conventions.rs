//! The command line's conventions, on the real binary: global flags before
//! or after the subcommand, `SNAKEPIT_CONFIG`, the exit codes (1 a failed
//! call, 2 usage, 3 environment, 128+N after signal N), no ANSI escapes or
//! redrawn frames when stderr is not a terminal, completions, the manual
//! page and `--json`.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{line_channel, run_snakepit, snakepit_command, wait_serving};

/// Every command of these tests ends within this long.
const LIMIT: Duration = Duration::from_secs(60);

/// A configuration of one showcase worker in a pool named `conventions`,
/// which only this file declares (the embedded default has `default`).
fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("conventions.toml");
    std::fs::write(&path, "[[pools]]\nname = \"conventions\"\nsize = 1\n")
        .expect("write the configuration");
    path
}

/// `snakepit args` with `envs` set and `SNAKEPIT_CONFIG` unset unless
/// `envs` sets it.
fn snakepit(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = snakepit_command();
    command
        .env_remove("SNAKEPIT_CONFIG")
        .envs(envs.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_output(command.spawn().expect("run snakepit"), args)
}

fn wait_output(mut child: Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("wait for snakepit").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect snakepit");
            panic!("snakepit {args:?} took more than {LIMIT:?}: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect snakepit")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn global_flags_go_before_or_after_the_subcommand_and_the_config_comes_from_the_env() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = config_file(dir.path());
    let config = config.to_str().expect("a UTF-8 path");
    let add = [
        "exec",
        "add",
        "--pool",
        "conventions",
        "--args",
        r#"{"a":2,"b":3}"#,
    ];
    let before = [&["--config", config, "--log-level", "warn"][..], &add].concat();
    let after = [&add[..], &["--config", config, "--log-level", "warn"]].concat();
    let runs = [
        (before, vec![]),
        (after, vec![]),
        (add.to_vec(), vec![("SNAKEPIT_CONFIG", config)]),
    ];
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(args, envs)| s.spawn(move || snakepit(args, envs)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((args, envs), out) in runs.iter().zip(&outs) {
        assert!(out.status.success(), "{args:?} {envs:?}: {out:?}");
        assert_eq!(stdout(out), "5", "{args:?} {envs:?}");
    }
    // The pool exists only in the file: without it, the pool is unknown.
    let out = snakepit(&add, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conventions"),
        "{out:?}"
    );
}

#[test]
fn exit_codes_tell_a_failed_call_from_usage_and_environment_errors() {
    let out = snakepit(&["exec", "fail", "--args", r#"{"message":"no luck"}"#], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no luck"),
        "{out:?}"
    );

    for args in [
        &["nosuchcommand"][..],
        &["exec"],
        &["exec", "add", "--args", "{"],
        &["call", "math", "sqrt", "--kwargs", "[1]"],
        &["--log-level", "a[[", "exec", "add"],
        &["completions", "nosuchshell"],
    ] {
        let out = snakepit(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }

    let dir = tempfile::tempdir().expect("a temp dir");
    let missing = dir.path().join("missing.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[pools]]\nname = \"x\"\nno_such_key = 1\n").unwrap();
    let unimportable = dir.path().join("unimportable.toml");
    std::fs::write(
        &unimportable,
        "[[pools]]\nname = \"x\"\nsize = 1\nadapter = \"no_such_module.Adapter\"\n",
    )
    .unwrap();
    for (config, envs) in [
        (&missing, vec![]),
        (&bad, vec![]),
        (&unimportable, vec![]),
        (
            &missing,
            vec![("SNAKEPIT_CONFIG", missing.to_str().unwrap())],
        ),
    ] {
        let mut args = vec!["exec", "add"];
        if envs.is_empty() {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        let out = snakepit(&args, &envs);
        assert_eq!(out.status.code(), Some(3), "{args:?} {envs:?}: {out:?}");
    }
}

#[test]
fn redirected_stderr_gets_no_ansi_escapes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let err_path = dir.path().join("err");
    let err = std::fs::File::create(&err_path).expect("create err");
    // Debug logs, so that there is log output to colour; NO_COLOR unset: a
    // file is not a terminal, which is enough.
    let mut command = snakepit_command();
    command
        .env_remove("SNAKEPIT_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("SNAKEPIT_LOG_FORMAT")
        .env("SNAKEPIT_LOG", "debug")
        .args(["exec", "fail", "--args", r#"{"message":"no luck"}"#])
        .stdout(Stdio::piped())
        .stderr(err);
    let out = wait_output(command.spawn().expect("run snakepit"), &["exec", "fail"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = std::fs::read_to_string(&err_path).expect("read err");
    assert!(err.contains("DEBUG"), "no debug log to check: {err}");
    assert!(err.contains("no luck"), "{err}");
    assert!(!err.contains('\x1b'), "an escape in stderr: {err:?}");
}

/// A child whose stderr lines arrive on a channel, killed if the test fails.
struct Running {
    child: Child,
    stderr: Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = snakepit_command()
            .env_remove("SNAKEPIT_CONFIG")
            .env_remove("NO_COLOR")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run snakepit");
        let stderr = line_channel(child.stderr.take().expect("stderr"));
        Self { child, stderr }
    }

    /// Sends `signal` and waits for the exit; the status and the stdout.
    fn stop(&mut self, signal: i32) -> (Option<i32>, String) {
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after signal {signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read stdout");
        (status.code(), out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_signal_ends_serve_and_demo_with_128_plus_its_number() {
    let mut serve = Running::start(&["serve", "--listen", "127.0.0.1:0"]);
    wait_serving(&mut serve.child, &serve.stderr, LIMIT);
    let mut demo = Running::start(&["demo", "--linger", "60", "--metrics-addr", "127.0.0.1:0"]);
    let (code, _) = serve.stop(libc::SIGINT);
    let said: Vec<String> = serve.stderr.try_iter().collect();
    assert_eq!(code, Some(130), "serve's stderr: {said:?}");

    // The demo's stdout says when it lingers; read it on a thread.
    let lines = line_channel(demo.child.stdout.take().expect("stdout"));
    let until = Instant::now() + LIMIT;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the demo never lingered: {seen:#?}"));
        if line.starts_with("Lingering") {
            break;
        }
        seen.push(line);
    }
    // SAFETY: signalling our own child by its pid.
    assert_eq!(
        unsafe { libc::kill(demo.child.id() as i32, libc::SIGTERM) },
        0
    );
    let status = demo.child.wait().expect("wait for the demo");
    assert_eq!(status.code(), Some(143), "{status:?}");
    // The streaming step's progress bar is not drawn into a pipe.
    let stderr: Vec<String> = demo.stderr.try_iter().collect();
    assert!(
        stderr
            .iter()
            .all(|l| !l.contains('\r') && !l.contains('\x1b')),
        "{stderr:#?}"
    );
    assert!(seen.iter().any(|l| l.contains("chunks in")), "{seen:#?}");
}

#[test]
fn completions_and_the_manual_page_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_snakepit(&["completions", shell], LIMIT);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["exec", "serve", "demo", "completions", "config"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = run_snakepit(&["man"], LIMIT);
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH snakepit 1"), "{page}");
    assert!(page.contains("completions"), "{page}");
    assert!(page.contains(r#".SH "EXIT STATUS""#), "{page}");
    assert!(page.contains("SNAKEPIT_CONFIG"), "{page}");

    let dir = tempfile::tempdir().expect("a temp dir");
    let out = run_snakepit(&["man", "--dir", dir.path().to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{out:?}");
    for page in ["snakepit.1", "snakepit-exec.1", "snakepit-new-adapter.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.starts_with(".ie"), "{page}: {text}");
    }

    let out = run_snakepit(&["--help"], LIMIT);
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Exit codes:",
        "143 after SIGTERM",
        "--log-level",
        "SNAKEPIT_CONFIG",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }
}

#[test]
fn json_output_parses() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let dir_str = dir.path().to_str().expect("a UTF-8 path");
    let out = run_snakepit(
        &["new", "adapter", "json_demo", "--dir", dir_str, "--json"],
        LIMIT,
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("new adapter --json prints JSON");
    let root = dir.path().canonicalize().unwrap().join("json_demo");
    assert_eq!(report["package"], root.to_str().unwrap());
    assert_eq!(report["class"], "JsonDemoAdapter");
    assert_eq!(report["files"].as_array().map(Vec::len), Some(5));
    for file in report["files"].as_array().unwrap() {
        assert!(Path::new(file.as_str().unwrap()).is_file(), "{file}");
    }
    let test = report["commands"]["test"].as_str().unwrap();
    assert!(
        test.ends_with(&format!("-m pytest {}", root.join("tests").display())),
        "{test}"
    );
}

#[test]
fn status_shows_the_configured_pools_as_a_table_or_json() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = config_file(dir.path());
    let config = config.to_str().expect("a UTF-8 path");
    let out = snakepit(&["--config", config, "status", "--json"], &[]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    let pools = report["pools"].as_array().expect("a list of pools");
    assert_eq!(pools.len(), 1, "{report}");
    let pool = &pools[0];
    assert_eq!(pool["name"], "conventions");
    assert_eq!(
        (pool["size"].as_u64(), pool["workers_up"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(pool["workers"][0]["ready"], true, "{report}");
    assert!(pool["workers"][0]["pid"].as_u64().is_some(), "{report}");
    let tools: Vec<_> = pool["tools"].as_array().unwrap().iter().collect();
    assert!(tools.iter().any(|t| *t == "add"), "{report}");
    // The table says the same; an unknown pool is a failure.
    let out = snakepit(&["status", "--config", config], &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        table.contains("pool conventions: 1/1 workers up"),
        "{table}"
    );
    let out = snakepit(&["status", "--config", config, "--pool", "nope"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
