//! `snakepit new adapter`: the generated package runs through `snakepit exec`
//! exactly as the command prints it, its configuration holds only paths
//! relative to itself (the package still runs once moved), its pytest tests
//! pass, and bad names and existing directories are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every command of these tests must end within this long.
const LIMIT: Duration = Duration::from_secs(45);

/// Runs `program args` from the package root, killing it if it outlives
/// `LIMIT`.
fn run(program: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("wait for the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the child");
            panic!(
                "{} {args:?} took more than {LIMIT:?}\nstdout: {}\nstderr: {}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect the child")
}

fn snakepit(args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_snakepit")), args)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Writes an adapter package named `name` into a new temporary directory.
fn generate(name: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir_str = dir.path().to_str().expect("a UTF-8 temporary path");
    let mut args = vec!["new", "adapter", name, "--dir", dir_str];
    args.extend_from_slice(extra);
    let stdout = assert_ok(&snakepit(&args), "snakepit new adapter");
    let root = dir.path().canonicalize().unwrap().join(name);
    for file in [
        "__init__.py",
        "adapter.py",
        "tests/test_adapter.py",
        "snakepit.toml",
        "README.md",
    ] {
        assert!(
            root.join(file).is_file(),
            "{file} missing; stdout:\n{stdout}"
        );
    }
    (dir, root, stdout)
}

/// Checks the printed `exec` and test commands, then runs the `exec` ones
/// (in parallel) and checks what the tools print.
fn exec_printed_commands(root: &Path, stdout: &str) {
    let config = root.join("snakepit.toml");
    let config = config.to_str().unwrap();
    let exe = env!("CARGO_BIN_EXE_snakepit");
    let test = format!(
        "\"$({exe} --config {config} env python)\" -m pytest {}",
        root.join("tests").display()
    );
    assert!(
        stdout.lines().any(|l| l.trim() == test),
        "missing `{test}` in:\n{stdout}"
    );
    // The commands as printed; the temporary path needs no shell quoting.
    let greet_args = r#"{"name": "world"}"#;
    let count_args = r#"{"n": 3}"#;
    for (tool, args) in [("greet", greet_args), ("count", count_args)] {
        let printed = format!("{exe} exec --config {config} {tool} --args '{args}'");
        assert!(
            stdout.lines().any(|l| l.trim() == printed),
            "missing `{printed}` in:\n{stdout}"
        );
    }
    let config = config.to_string();
    let greet = {
        let config = config.clone();
        std::thread::spawn(move || {
            snakepit(&["exec", "--config", &config, "greet", "--args", greet_args])
        })
    };
    let count = snakepit(&["exec", "--config", &config, "count", "--args", count_args]);
    let greet = greet.join().unwrap();
    assert_eq!(assert_ok(&greet, "exec greet").trim(), r#""Hello, world!""#);
    let lines: Vec<String> = assert_ok(&count, "exec count")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        lines,
        [
            r#"{"count":1,"of":3}"#,
            r#"{"count":2,"of":3}"#,
            r#"{"count":3,"of":3}"#
        ]
    );
}

/// The generated configuration names no absolute path: the package's parent
/// is `..`, which loads as the directory holding the package.
fn assert_relative_config(root: &Path) {
    let text = std::fs::read_to_string(root.join("snakepit.toml")).unwrap();
    assert!(text.contains(r#"python_path = [".."]"#), "{text}");
    let parent = root.parent().unwrap().to_str().unwrap();
    assert!(!text.contains(parent), "an absolute path in:\n{text}");
    let config = snakepit::config::Config::load(&root.join("snakepit.toml")).unwrap();
    let path = &config.pools[0].python_path;
    assert_eq!(path.len(), 1, "{path:?}");
    assert_eq!(path[0].canonicalize().unwrap(), root.parent().unwrap());
}

/// Runs the generated pytest tests with the managed venv's interpreter, when
/// it has pytest.
fn run_generated_tests(root: &Path) {
    // The command as `new` printed it: the pool's own environment (which
    // its `requirements` give pytest) runs the package's tests.
    let exe = env!("CARGO_BIN_EXE_snakepit");
    let config = root.join("snakepit.toml");
    let test = format!(
        "\"$({exe} --config {} env python)\" -m pytest -q {}",
        config.display(),
        root.join("tests").display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&test)
        .current_dir(root)
        .output()
        .expect("run sh");
    let stdout = assert_ok(&out, "the generated tests, as printed");
    assert!(stdout.contains("passed"), "{stdout}");
}

#[test]
fn new_adapter_writes_a_package_whose_tools_run_through_exec() {
    let (_dir, root, stdout) = generate("demo_adapter", &[]);
    let adapter = std::fs::read_to_string(root.join("adapter.py")).unwrap();
    assert!(
        adapter.contains("class DemoAdapter(BaseAdapter):"),
        "{adapter}"
    );
    let config = std::fs::read_to_string(root.join("snakepit.toml")).unwrap();
    assert!(config.contains(r#"profile = "process""#), "{config}");
    assert!(
        stdout.contains(&format!("-m pytest {}", root.join("tests").display())),
        "{stdout}"
    );
    assert_relative_config(&root);
    exec_printed_commands(&root, &stdout);
    run_generated_tests(&root);

    // Moved elsewhere, the package still runs from its configuration.
    let moved = tempfile::tempdir().unwrap();
    let new_root = moved.path().canonicalize().unwrap().join("demo_adapter");
    std::fs::rename(&root, &new_root).unwrap();
    let config = new_root.join("snakepit.toml");
    let out = snakepit(&[
        "exec",
        "--config",
        config.to_str().unwrap(),
        "greet",
        "--args",
        r#"{"name": "moved"}"#,
    ]);
    assert_eq!(
        assert_ok(&out, "exec after a move").trim(),
        r#""Hello, moved!""#
    );
}

#[test]
fn new_thread_safe_adapter_runs_in_the_thread_profile() {
    let (_dir, root, stdout) = generate("ts_demo", &["--thread-safe"]);
    let adapter = std::fs::read_to_string(root.join("adapter.py")).unwrap();
    for expected in [
        "from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter",
        "class TsDemoAdapter(ThreadSafeAdapter):",
        "__thread_safe__ = True",
        "with self.acquire_lock():",
        "@thread_safe_method",
    ] {
        assert!(
            adapter.contains(expected),
            "missing {expected:?}:\n{adapter}"
        );
    }
    let config = snakepit::config::Config::load(&root.join("snakepit.toml")).unwrap();
    let pool = &config.pools[0];
    assert_eq!(pool.profile, snakepit::Profile::Thread);
    assert_eq!(pool.threads_per_worker, 4);
    assert_eq!(pool.adapter, "ts_demo.adapter.TsDemoAdapter");
    assert_relative_config(&root);
    exec_printed_commands(&root, &stdout);
    run_generated_tests(&root);
}

#[test]
fn new_adapter_rejects_names_python_cannot_import() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap();
    for (name, expected) in [
        ("my-adapter", "not a valid Python identifier"),
        ("1st", "not a valid Python identifier"),
        ("class", "is a Python keyword"),
        ("snakepit_bridge", "would hide the bridge"),
    ] {
        let out = snakepit(&["new", "adapter", name, "--dir", dir_str]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{name} was accepted: {stdout}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn new_adapter_refuses_to_overwrite_an_existing_directory() {
    let (dir, root, _) = generate("twice", &[]);
    let adapter = root.join("adapter.py");
    std::fs::write(&adapter, "# edited by hand\n").unwrap();
    let out = snakepit(&[
        "new",
        "adapter",
        "twice",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("already exists; refusing to overwrite it"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&adapter).unwrap(),
        "# edited by hand\n"
    );
}
