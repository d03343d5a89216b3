//! The Python interpreters the Python suites run on (the default one and
//! pyenv's 3.12 and 3.13, free-threaded builds included), and running
//! pytest with one of them. Used by `tests/python_suite.rs` (the bridge)
//! and `tests/python_client.rs` (the gRPC client package).

use std::path::{Path, PathBuf};
use std::process::Command;

use snakepit::python_env::{self, PythonEnv, PythonEnvConfig};

/// Minors checked besides the default interpreter's.
pub const OTHER_MINORS: [&str; 2] = ["3.12", "3.13"];

/// What a pytest run printed in its summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: u32,
    pub skipped: u32,
}

/// Runs `python -m pytest -q --strict-markers -p no:cacheprovider` (after
/// `python_flags`) in `dir` with `envs` set; fails the test when pytest
/// fails, and returns its counts.
pub fn pytest(python: &Path, python_flags: &[&str], dir: &Path, envs: &[(&str, &Path)]) -> Summary {
    let mut cmd = Command::new(python);
    cmd.args(python_flags)
        .args([
            "-m",
            "pytest",
            "-q",
            "--strict-markers",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(dir);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Show pytest's own summary in the cargo output.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "pytest with {} in {} failed ({}):\n{stdout}\n{stderr}",
        python.display(),
        dir.display(),
        out.status
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    let count = |label: &str| -> u32 {
        summary
            .split_whitespace()
            .zip(summary.split_whitespace().skip(1))
            .find(|(_, word)| word.trim_end_matches(',').starts_with(label))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0)
    };
    Summary {
        passed: count("passed"),
        skipped: count("skipped"),
    }
}

/// The managed venv of the default interpreter, with the test requirements.
pub fn default_env() -> PythonEnv {
    python_env::ensure(&PythonEnvConfig {
        with_test_deps: true,
        ..PythonEnvConfig::default()
    })
    .expect("bootstrap the venv with the test requirements")
}

/// A venv with the test requirements for each other supported Python this
/// machine has, by name (`3.12`, `3.13t`, ...). Fails when there is none,
/// unless `SNAKEPIT_ONLY_DEFAULT_PYTHON` says the default one is enough.
pub fn other_envs() -> Vec<(String, PythonEnv)> {
    let others = other_pythons();
    if others.is_empty() && std::env::var_os("SNAKEPIT_ONLY_DEFAULT_PYTHON").is_some() {
        println!("no other Python found, and SNAKEPIT_ONLY_DEFAULT_PYTHON is set");
        return Vec::new();
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
    others
        .into_iter()
        .map(|(name, base_python)| {
            let env = python_env::ensure(&PythonEnvConfig {
                base_python,
                venv: home.join(format!("venv-{name}")),
                with_test_deps: true,
            })
            .unwrap_or_else(|e| panic!("bootstrap a venv with Python {name}: {e}"));
            (name, env)
        })
        .collect()
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
