//! Runs the bridge package's pytest suite (`python/tests`) in the managed
//! venv, so that `cargo test` is the one command that tests everything; and
//! again under every other CPython minor the bridge supports that this
//! machine has (pyenv's 3.12 and 3.13, and free-threaded builds), each in a
//! venv of its own, since the bridge must run on all of them.

mod common;

use std::path::{Path, PathBuf};

use common::pythons;
use snakepit::python_env::PythonEnv;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Near the 284 tests the suite holds; fewer passing means some did not run.
const MIN_PASSED: u32 = 250;

fn check(name: &str, env: &PythonEnv) {
    let passed = pythons::pytest(&env.python, &[], &python_dir(), &[]).passed;
    println!("Python {name}: {passed} passed");
    assert!(
        passed >= MIN_PASSED,
        "pytest on Python {name} ran only {passed} tests"
    );
}

#[test]
fn python_bridge_pytest_suite_passes() {
    check("default", &pythons::default_env());
}

#[test]
fn python_bridge_pytest_suite_passes_on_the_other_supported_pythons() {
    for (name, env) in pythons::other_envs() {
        check(&name, &env);
    }
}
