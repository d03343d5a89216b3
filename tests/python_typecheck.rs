//! `mypy --strict` on the bridge package (`python/snakepit_bridge`) and on
//! the README's adapter examples (`python/tests/typecheck/readme_examples.py`),
//! which must also still match the README's code line for line.
//!
//! mypy comes from `SNAKEPIT_MYPY_PYTHON` (an interpreter) or else `python3`,
//! with the pins of `python/requirements-typecheck.txt` (`.ci/run` installs
//! them). Without it the test is skipped, except in CI (`CI` set), where that
//! is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> PathBuf {
    root()
        .join("python")
        .join("tests")
        .join("typecheck")
        .join("readme_examples.py")
}

/// An interpreter that has mypy, or None (after failing in CI).
fn mypy_python() -> Option<PathBuf> {
    let python = std::env::var_os("SNAKEPIT_MYPY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let found = Command::new(&python)
        .args(["-m", "mypy", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "mypy is missing from {} and CI is set: .ci/run should have run \
         `python3 -m pip install -r python/requirements-typecheck.txt`",
        python.display()
    );
    println!(
        "skipped: no mypy in {} (`python3 -m pip install -r python/requirements-typecheck.txt`, \
         or point SNAKEPIT_MYPY_PYTHON at an interpreter that has it)",
        python.display()
    );
    None
}

/// Runs `python -m mypy args` in `dir` and fails unless it finds no issues.
fn mypy(python: &Path, dir: &Path, args: &[&Path]) {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mypy-cache");
    let started = Instant::now();
    let out = Command::new(python)
        .args(["-m", "mypy", "--no-color-output", "--cache-dir"])
        .arg(&cache)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run mypy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("Success: no issues found"),
        "mypy {args:?} in {} failed ({}):\n{stdout}\n{stderr}",
        dir.display(),
        out.status
    );
    println!("{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "mypy took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_bridge_package_and_the_readme_examples_pass_mypy_strict() {
    let Some(python) = mypy_python() else {
        return;
    };
    // From the repository root, as the README says (settings in mypy.ini).
    mypy(
        &python,
        &root(),
        &[
            Path::new("--strict"),
            Path::new("python/snakepit_bridge"),
            &examples(),
        ],
    );
    // From python/, with the package's own settings ([tool.mypy] in pyproject.toml).
    mypy(
        &python,
        &root().join("python"),
        &[Path::new("snakepit_bridge"), &examples()],
    );
}

/// The first ```python block after `heading` in `readme`, as lines.
fn block_after<'a>(readme: &'a str, heading: &str) -> Vec<&'a str> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("python/README.md has no {heading:?}"));
    let rest = &readme[start..];
    let open = rest.find("```python\n").expect("a python block") + "```python\n".len();
    let body = &rest[open..];
    let close = body.find("```").expect("the block ends");
    body[..close].lines().collect()
}

#[test]
fn the_readme_examples_file_holds_the_readme_s_adapter_examples() {
    let readme = std::fs::read_to_string(root().join("python").join("README.md")).unwrap();
    let examples = std::fs::read_to_string(examples()).unwrap();
    let lines: Vec<&str> = examples.lines().map(str::trim).collect();
    for heading in [
        "## Writing an adapter",
        "### Calling the host",
        "### Thread-safe adapters",
    ] {
        let mut at = 0;
        for line in block_after(&readme, heading)
            .into_iter()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let found = lines[at..].iter().position(|l| *l == line);
            let Some(offset) = found else {
                panic!(
                    "python/README.md's {heading:?} example has {line:?}, which \
                     python/tests/typecheck/readme_examples.py lacks (after line {at}): \
                     keep the two the same"
                );
            };
            at += offset + 1;
        }
    }
}
