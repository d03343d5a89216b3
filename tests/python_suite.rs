//! Runs the bridge package's pytest suite (`python/tests`) in the managed
//! venv, so that `cargo test` is the one command that tests everything; and
//! again under every other CPython minor the bridge supports that this
//! machine has (pyenv's 3.12 and 3.13, and free-threaded builds), each in a
//! venv of its own, since the bridge must run on all of them.

use std::path::{Path, PathBuf};
use std::process::Command;

use snakepit::python_env::{self, PythonEnvConfig};

/// Minors checked besides the default interpreter's.
const OTHER_MINORS: [&str; 2] = ["3.12", "3.13"];

/// Runs pytest with `python` from `python/`; returns how many tests passed.
fn pytest(python: &Path) -> u32 {
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let out = Command::new(python)
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
        "pytest with {} failed ({}):\n{stdout}\n{stderr}",
        python.display(),
        out.status
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, word)| word.starts_with("passed"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn python_bridge_pytest_suite_passes() {
    let env = python_env::ensure(&PythonEnvConfig {
        with_test_deps: true,
        ..PythonEnvConfig::default()
    })
    .expect("bootstrap the venv with the test requirements");
    let passed = pytest(&env.python);
    assert!(passed >= 50, "pytest ran only {passed} tests");
}

/// Where pyenv keeps its interpreters.
fn pyenv_versions() -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))?;
    Some(root.join("versions"))
}

/// The newest patch release of each of `OTHER_MINORS` that pyenv holds, and
/// of its free-threaded build (`3.13.0t`) when there is one.
fn other_pythons() -> Vec<(String, PathBuf)> {
    let Some(dir) = pyenv_versions() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut versions: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let patch = |v: &str| -> u32 {
        v.trim_end_matches('t')
            .rsplit('.')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    };
    versions.sort_by_key(|v| patch(v));
    let mut found = Vec::new();
    for minor in OTHER_MINORS {
        for suffix in ["", "t"] {
            let newest = versions.iter().rev().find(|v| {
                v.strip_prefix(minor).is_some_and(|rest| {
                    rest.starts_with('.') && rest.ends_with('t') == (suffix == "t")
                })
            });
            if let Some(v) = newest {
                let python = dir.join(v).join("bin").join("python3");
                if python.exists() {
                    found.push((format!("{minor}{suffix}"), python));
                }
            }
        }
    }
    found
}

#[test]
fn python_bridge_pytest_suite_passes_on_the_other_supported_pythons() {
    let others = other_pythons();
    if others.is_empty() && std::env::var_os("SNAKEPIT_ONLY_DEFAULT_PYTHON").is_some() {
        println!("no other Python found, and SNAKEPIT_ONLY_DEFAULT_PYTHON is set");
        return;
    }
    assert!(
        !others.is_empty(),
        "no Python {OTHER_MINORS:?} found under pyenv; install one, or set \
         SNAKEPIT_ONLY_DEFAULT_PYTHON=1 to test the default interpreter alone"
    );
    let home = PythonEnvConfig::default()
        .venv
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for (name, base_python) in others {
        let env = python_env::ensure(&PythonEnvConfig {
            base_python,
            venv: home.join(format!("venv-{name}")),
            with_test_deps: true,
        })
        .unwrap_or_else(|e| panic!("bootstrap a venv with Python {name}: {e}"));
        let passed = pytest(&env.python);
        println!("Python {name}: {passed} passed");
        assert!(
            passed >= 50,
            "pytest on Python {name} ran only {passed} tests"
        );
    }
}
