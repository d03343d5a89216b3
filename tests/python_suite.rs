//! Runs the bridge package's pytest suite (`python/tests`) in the managed
//! venv, so that `cargo test` is the one command that tests everything.

use std::process::Command;

use snakepit::python_env::{self, PythonEnvConfig};

#[test]
fn python_bridge_pytest_suite_passes() {
    let env = python_env::ensure(&PythonEnvConfig {
        with_test_deps: true,
        ..PythonEnvConfig::default()
    })
    .expect("bootstrap the venv with the test requirements");
    let python_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let out = Command::new(&env.python)
        .args([
            "-m",
            "pytest",
            "-q",
            "--strict-markers",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&python_dir)
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Show pytest's own summary in the cargo output.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "pytest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    let passed: u32 = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, word)| word.starts_with("passed"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 50, "pytest ran only {passed} tests: {summary}");
}
