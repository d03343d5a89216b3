//! The Python environment workers run in.
//!
//! On first use the host creates a virtual environment (by default `venv`
//! in the data directory, see [`data_dir`]) with the system `python3`,
//! installs the pinned dependencies and the bridge package embedded in this
//! binary, and writes a stamp. Later runs find the stamp and start at once; a
//! binary with a different bridge or different pins reinstalls what changed.
//! Concurrent bootstraps (parallel tests, two hosts) serialise on a file lock.
//!
//! Whoever can write to the venv, or to the directory holding it (its lock and
//! the bridge sources it installs from), runs code in every worker: both must
//! be owned by this process's uid and closed to group and others, or the start
//! is refused with [`Error::UntrustedPath`]. The holding directory is created
//! 0700 when missing.
//!
//! [`ensure_client`] does the same for the client package (`snakepit-client`,
//! embedded too) in a venv of its own (`client-venv` in the data directory):
//! the Python clients of `snakepit bench` run there, never workers.
//!
//! Pools that declare their own requirements or Python get environments of
//! their own: see [`crate::envs`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::Error;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/bridge_files.rs"));
    include!(concat!(env!("OUT_DIR"), "/client_files.rs"));
}

/// Oldest Python the bridge supports.
pub const MIN_PYTHON: (u32, u32) = (3, 11);

/// Where the environment lives and what builds it.
#[derive(Debug, Clone)]
pub struct PythonEnvConfig {
    /// Interpreter that creates the venv (`python3` from `PATH` by default,
    /// or `SNAKEPIT_PYTHON`).
    pub base_python: PathBuf,
    /// The venv directory.
    pub venv: PathBuf,
    /// Also install the test requirements (pytest).
    pub with_test_deps: bool,
}

/// snakepit's data directory, where its environments live, the same from
/// every working directory:
///
/// 1. `$SNAKEPIT_HOME` when set (the run registry then is `$SNAKEPIT_HOME/run`);
/// 2. `$XDG_DATA_HOME/snakepit`;
/// 3. `$HOME/.local/share/snakepit`;
/// 4. `/tmp/snakepit-<uid>` when there is no `HOME` either.
///
/// Relative values of the XDG variables and `HOME` are ignored. Nothing is
/// created here; [`ensure`] and [`crate::envs`] create it 0700 and refuse it
/// when another user owns it or group or others may write to it.
pub fn data_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(home) = std::env::var_os("SNAKEPIT_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    if let Some(data) = var("XDG_DATA_HOME") {
        return data.join("snakepit");
    }
    if let Some(home) = var("HOME") {
        return home.join(".local").join("share").join("snakepit");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    PathBuf::from(format!("/tmp/snakepit-{}", unsafe { libc::geteuid() }))
}

impl Default for PythonEnvConfig {
    fn default() -> Self {
        let home = data_dir();
        Self {
            base_python: std::env::var_os("SNAKEPIT_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("python3")),
            venv: home.join("venv"),
            with_test_deps: false,
        }
    }
}

impl PythonEnvConfig {
    /// Where [`ensure_client`] puts the client's venv: `client-venv` beside
    /// the workers' venv (in [`data_dir`]).
    pub fn client() -> Self {
        let default = Self::default();
        let venv = default.venv.with_file_name("client-venv");
        Self { venv, ..default }
    }
}

/// What an interpreter says about itself.
#[derive(Debug, Clone, Deserialize)]
pub struct PythonInfo {
    /// `sys.executable`.
    pub executable: String,
    /// `platform.python_version()`.
    pub version: String,
    /// Major and minor.
    pub version_info: (u32, u32),
    /// `platform.python_implementation()`.
    pub implementation: String,
    /// Whether the GIL is on (always true before 3.13).
    pub gil_enabled: bool,
    /// Whether this is a free-threaded build.
    pub free_threaded_build: bool,
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The venv's interpreter, what workers run.
    pub python: PathBuf,
    /// The venv directory.
    pub venv: PathBuf,
    /// Whether this call created or updated it.
    pub installed: bool,
}

const PROBE: &str = r#"
import json, platform, sys, sysconfig
gil = getattr(sys, "_is_gil_enabled", lambda: True)()
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "version_info": [sys.version_info[0], sys.version_info[1]],
    "implementation": platform.python_implementation(),
    "gil_enabled": bool(gil),
    "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}))
"#;

/// Asks `python` about itself; fails clearly when it is missing or too old.
pub fn probe(python: &Path) -> Result<PythonInfo, Error> {
    let out = Command::new(python).args(["-c", PROBE]).output().map_err(|e| {
        Error::Environment(format!(
            "cannot run `{}` ({e}); install Python {}.{} or newer, or point SNAKEPIT_PYTHON at one",
            python.display(),
            MIN_PYTHON.0,
            MIN_PYTHON.1
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Environment(format!(
            "`{}` failed to start: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info: PythonInfo = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::Environment(format!(
            "`{}` gave an unreadable answer: {e}",
            python.display()
        ))
    })?;
    if info.version_info < MIN_PYTHON {
        return Err(Error::Environment(format!(
            "`{}` is Python {}, but snakepit needs {}.{} or newer",
            python.display(),
            info.version,
            MIN_PYTHON.0,
            MIN_PYTHON.1
        )));
    }
    Ok(info)
}

fn file(name: &str) -> &'static [u8] {
    embedded::BRIDGE_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_default()
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:x}", h.finalize())
}

/// The stamp of the embedded bridge (all its files), and the stamp the pins
/// file must hold: the runtime pins, plus the test pins when asked for. A venv
/// that has the test pins also serves runs that do not need them. The
/// bridge's digest covers every embedded file, so it is computed once per
/// process rather than on every runtime start.
fn stamps(with_test_deps: bool) -> (String, String) {
    static BRIDGE: LazyLock<String> = LazyLock::new(|| {
        let mut bridge: Vec<&[u8]> = Vec::new();
        for (name, bytes) in embedded::BRIDGE_FILES {
            bridge.push(name.as_bytes());
            bridge.push(bytes);
        }
        digest(&bridge)
    });
    let base = format!("base:{}", digest(&[file("requirements.txt")]));
    let deps = if with_test_deps {
        format!("{base}\ntest:{}", digest(&[file("requirements-test.txt")]))
    } else {
        base
    };
    (BRIDGE.clone(), deps)
}

/// One stamp for the embedded bridge and its pinned dependencies: what an
/// environment built for a pool must be rebuilt for.
pub(crate) fn bridge_stamp() -> String {
    let (bridge, deps) = stamps(false);
    format!("{bridge}\n{deps}")
}

/// Writes the embedded bridge package (with its `requirements.txt`) under
/// `dir`, to install from.
pub(crate) fn unpack_bridge(dir: &Path) -> Result<(), Error> {
    unpack(embedded::BRIDGE_FILES, dir)
}

/// Makes sure the venv exists and holds this binary's bridge; returns it.
pub fn ensure(config: &PythonEnvConfig) -> Result<PythonEnv, Error> {
    let (bridge_stamp, deps_stamp) = stamps(config.with_test_deps);
    let bridge_file = |venv: &Path| venv.join(".snakepit-bridge-stamp");
    let deps_file = |venv: &Path| venv.join(".snakepit-deps-stamp");
    let fresh = |venv: &Path| {
        holds(&bridge_file(venv), &bridge_stamp) && holds(&deps_file(venv), &deps_stamp)
    };
    ensure_venv(config, fresh, |venv, python| {
        let parent = venv.parent().unwrap_or(Path::new("/"));
        let work = parent.join("bridge-src");
        unpack(embedded::BRIDGE_FILES, &work)?;
        let pip = |what: &str, args: &[&std::ffi::OsStr]| pip_install(python, what, args);
        let deps_file = deps_file(venv);
        if !holds(&deps_file, &deps_stamp) {
            eprintln!("snakepit: installing pinned Python dependencies");
            let mut args: Vec<std::ffi::OsString> =
                vec!["-r".into(), work.join("requirements.txt").into_os_string()];
            if config.with_test_deps {
                args.push("-r".into());
                args.push(work.join("requirements-test.txt").into_os_string());
            }
            let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            pip("install the pinned dependencies", &refs)?;
            std::fs::write(&deps_file, &deps_stamp).map_err(|e| io_err("write", &deps_file, e))?;
        }
        eprintln!("snakepit: installing the snakepit-bridge package");
        pip(
            "install snakepit-bridge",
            &[
                "--no-deps".as_ref(),
                "--force-reinstall".as_ref(),
                work.as_os_str(),
            ],
        )?;
        let bridge_file = bridge_file(venv);
        std::fs::write(&bridge_file, &bridge_stamp)
            .map_err(|e| io_err("write", &bridge_file, e))?;
        let _ = std::fs::remove_dir_all(&work);
        Ok(())
    })
}

/// Makes sure the client's venv (`config.venv`, see
/// [`PythonEnvConfig::client`]) exists and holds this binary's
/// `snakepit-client` with its dependencies; returns it. The same trust
/// checks, lock and stamps as [`ensure`].
pub fn ensure_client(config: &PythonEnvConfig) -> Result<PythonEnv, Error> {
    if !embedded::CLIENT_FILES
        .iter()
        .any(|(name, _)| *name == "pyproject.toml")
    {
        return Err(Error::Environment(
            "this binary was built without the client package (python/client)".into(),
        ));
    }
    let constraints = client_constraints();
    let mut parts: Vec<&[u8]> = vec![constraints.as_bytes()];
    for (name, bytes) in embedded::CLIENT_FILES {
        parts.push(name.as_bytes());
        parts.push(bytes);
    }
    let stamp = digest(&parts);
    let stamp_file = |venv: &Path| venv.join(".snakepit-client-stamp");
    let fresh = |venv: &Path| holds(&stamp_file(venv), &stamp);
    ensure_venv(config, fresh, |venv, python| {
        let parent = venv.parent().unwrap_or(Path::new("/"));
        let work = parent.join("client-src");
        unpack(embedded::CLIENT_FILES, &work)?;
        let pins = work.join("constraints.txt");
        std::fs::write(&pins, &constraints).map_err(|e| io_err("write", &pins, e))?;
        eprintln!("snakepit: installing the snakepit-client package and its dependencies");
        pip_install(
            python,
            "install snakepit-client",
            &[
                "--force-reinstall".as_ref(),
                "-c".as_ref(),
                pins.as_os_str(),
                work.as_os_str(),
            ],
        )?;
        let stamp_file = stamp_file(venv);
        std::fs::write(&stamp_file, &stamp).map_err(|e| io_err("write", &stamp_file, e))?;
        let _ = std::fs::remove_dir_all(&work);
        Ok(())
    })
}

/// The mechanism both venvs share. Refuses a venv, or a directory holding
/// it, that others may write; answers at once when the venv has its
/// interpreter and `fresh(venv)` holds; else takes the lock beside it (a
/// concurrent bootstrap may have finished the work meanwhile, so `fresh` is
/// asked again), creates the venv if it has no interpreter and runs
/// `install(venv, python)`, which writes the stamps that `fresh` reads.
fn ensure_venv(
    config: &PythonEnvConfig,
    fresh: impl Fn(&Path) -> bool,
    install: impl FnOnce(&Path, &Path) -> Result<(), Error>,
) -> Result<PythonEnv, Error> {
    let venv = absolute(&config.venv)?;
    let parent = venv.parent().unwrap_or(Path::new("/"));
    snakepit_actors::reaper::ensure_trusted_dir(parent, 0o700)?;
    if venv.exists() {
        snakepit_actors::reaper::check_trusted_dir(&venv)?;
    }
    let python = venv.join("bin").join("python");
    let ready = || python.exists() && fresh(&venv);
    let installed = if ready() {
        false
    } else {
        let lock_path = parent.join(".venv.lock");
        let lock = File::create(&lock_path).map_err(|e| io_err("create", &lock_path, e))?;
        lock.lock().map_err(|e| io_err("lock", &lock_path, e))?;
        if ready() {
            false
        } else {
            if !python.exists() {
                create_venv(&config.base_python, &venv)?;
            }
            install(&venv, &python)?;
            true
        }
    };
    Ok(PythonEnv {
        python,
        venv,
        installed,
    })
}

/// Whether the stamp file `path` holds every line of `stamp`.
fn holds(path: &Path, stamp: &str) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|have| stamp.lines().all(|want| have.lines().any(|l| l == want)))
}

/// The bridge's pins (`requirements.txt`, `requirements-test.txt`: the
/// client's dependencies are pinned there for its tests) as pip constraints,
/// so that the client's venv gets the versions the tests ran with.
fn client_constraints() -> String {
    let mut pins = String::new();
    for name in ["requirements.txt", "requirements-test.txt"] {
        let text = String::from_utf8_lossy(file(name));
        for line in text.lines().map(str::trim) {
            if line.contains("==") && !line.starts_with('#') && !line.starts_with('-') {
                pins.push_str(line);
                pins.push('\n');
            }
        }
    }
    pins
}

/// Creates a venv at `venv` with `base_python`, after checking that
/// interpreter; the new venv must pass the trust check.
fn create_venv(base_python: &Path, venv: &Path) -> Result<(), Error> {
    probe(base_python)?;
    eprintln!(
        "snakepit: creating the Python environment in {}",
        venv.display()
    );
    run(
        Command::new(base_python).arg("-m").arg("venv").arg(venv),
        "create the venv",
    )?;
    snakepit_actors::reaper::check_trusted_dir(venv)?;
    Ok(())
}

/// Writes embedded `files` under `dir` (emptied first), to install from.
fn unpack(files: &[(&str, &[u8])], dir: &Path) -> Result<(), Error> {
    let _ = std::fs::remove_dir_all(dir);
    for (name, bytes) in files {
        let dest = dir.join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).map_err(|e| io_err("create", &dest, e))?;
        std::fs::write(&dest, bytes).map_err(|e| io_err("write", &dest, e))?;
    }
    Ok(())
}

/// `python -m pip install -q ARGS`.
fn pip_install(python: &Path, what: &str, args: &[&std::ffi::OsStr]) -> Result<(), Error> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "-q"]);
    cmd.args(args);
    run(&mut cmd, what)
}

/// Versions of the packages that matter, as installed in `python`'s environment.
pub fn packages(python: &Path) -> Vec<(String, String)> {
    let script = r#"
import importlib.metadata as m, json
out = {}
for name in ("snakepit-bridge", "protobuf", "numpy", "pytest"):
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"#;
    let Ok(out) = Command::new(python).args(["-c", script]).output() else {
        return Vec::new();
    };
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("not installed").to_string()))
        .collect()
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd
        .output()
        .map_err(|e| Error::Environment(format!("could not {what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Environment(format!(
            "could not {what} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| io_err("resolve", path, e))
}

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Environment(format!("could not {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    // A venv, or the directory holding it, that others may write is refused
    // before anything in it is run or installed.
    #[test]
    fn venv_open_to_others_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let venv = dir.path().join("venv");
        std::fs::create_dir(&venv).expect("mkdir");
        std::fs::set_permissions(&venv, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let config = PythonEnvConfig {
            base_python: PathBuf::from("/nonexistent/python3"),
            venv: venv.clone(),
            with_test_deps: false,
        };
        let err = ensure(&config).expect_err("an open venv");
        assert!(
            matches!(&err, Error::UntrustedPath(u) if u.path == venv),
            "{err:?}"
        );

        std::fs::set_permissions(&venv, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = ensure(&config).expect_err("an open parent");
        assert!(
            matches!(&err, Error::UntrustedPath(u) if u.path == dir.path()),
            "{err:?}"
        );
        assert!(!dir.path().join(".venv.lock").exists(), "wrote into it");
    }
}
