//! The bridge package in an environment without numpy (numpy is its optional
//! `numpy` extra): in a venv holding only protobuf and pytest, at the pinned
//! versions, `python/tests/test_without_numpy.py` starts real workers, calls
//! tools, and sees an ndarray argument refused with an error naming the extra.
//!
//! The venv is made with the `python3` on PATH, once per set of pins, under
//! Cargo's temporary directory for integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The `name==version` line of `name` in a requirements file of python/.
fn pin(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(python_dir().join(file)).expect("read the requirements");
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{name}==")))
        .unwrap_or_else(|| panic!("python/{file} pins no {name}"))
        .to_owned()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A venv with protobuf and pytest and nothing else, made on first use.
fn bare_venv() -> PathBuf {
    let pins = [
        pin("requirements.txt", "protobuf"),
        pin("requirements-test.txt", "pytest"),
    ];
    let name = format!("venv-without-numpy-{}", pins.join("-").replace("==", "-"));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = venv.join("bin").join("python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        );
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(&pins),
            "pip install protobuf and pytest",
        );
        std::fs::write(&ready, pins.join("\n")).expect("mark the venv ready");
    }
    python
}

#[test]
fn workers_serve_tools_without_numpy_and_refuse_arrays_naming_the_extra() {
    let python = bare_venv();
    let probe = Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .expect("run the venv's python");
    assert!(
        !probe.status.success(),
        "numpy is importable in {}",
        python.display()
    );
    let stdout = run(
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "-q",
                "--strict-markers",
                "-p",
                "no:cacheprovider",
                "tests/test_without_numpy.py",
            ])
            .current_dir(python_dir()),
        "pytest tests/test_without_numpy.py without numpy",
    );
    println!("{stdout}");
    assert!(stdout.contains("7 passed"), "{stdout}");
}
