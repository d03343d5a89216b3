//! Runs the gRPC client package's pytest suite (`python/client/tests`)
//! against this build's `snakepit serve`: the package is pip-installed into
//! the managed test venv (which proves it installs), and its tests start the
//! real binary on loopback. On the default Python and on every other
//! supported one this machine has, as `tests/python_suite.rs` does for the
//! bridge.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::pythons;
use snakepit::python_env::PythonEnv;

/// Tests the suite holds; fewer passing means some did not run.
const MIN_PASSED: u32 = 80;

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("client")
}

/// Copies the package's sources (not what a build left) to `to`, so that
/// installs for several venvs at once never share a build directory.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "build"
            || name == "__pycache__"
            || name.starts_with('.')
            || name.ends_with(".egg-info")
        {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_sources(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Installs the client package into `env` the way a user would (pip, from
/// its directory; its dependencies are already pinned there).
fn install_client(env: &PythonEnv) {
    let work = env.venv.with_extension("client-src");
    let _ = std::fs::remove_dir_all(&work);
    copy_sources(&client_dir(), &work);
    let out = Command::new(&env.python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(["--no-deps", "--no-build-isolation", "--force-reinstall"])
        .arg(&work)
        .output()
        .expect("run pip");
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        out.status.success(),
        "pip install python/client into {} failed:\n{}{}",
        env.venv.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs the client into `env` and runs its suite there: `python -P`,
/// so that the installed package is imported, not the source directory.
fn run_suite(env: &PythonEnv) -> pythons::Summary {
    install_client(env);
    let binary = Path::new(env!("CARGO_BIN_EXE_snakepit"));
    pythons::pytest(
        &env.python,
        &["-P"],
        &client_dir(),
        &[
            ("SNAKEPIT_BIN", binary),
            ("SNAKEPIT_REQUIRE_SERVER", Path::new("1")),
        ],
    )
}

fn check(name: &str, summary: pythons::Summary) {
    println!("Python {name}: {summary:?}");
    assert!(
        summary.passed >= MIN_PASSED,
        "the client suite on Python {name} passed only {} tests",
        summary.passed
    );
    assert_eq!(
        summary.skipped, 0,
        "the client suite on Python {name} skipped tests"
    );
}

#[test]
fn python_client_suite_passes_against_snakepit_serve() {
    check("default", run_suite(&pythons::default_env()));
}

#[test]
fn python_client_suite_passes_on_the_other_supported_pythons() {
    for (name, env) in pythons::other_envs() {
        check(&name, run_suite(&env));
    }
}
