//! Environments of their own for pools that declare Python dependencies.
//!
//! A pool with `requirements`, a `requirements_file` or a `python` version
//! runs in a virtual environment built for exactly that: the interpreter
//! (its path and version), the sorted requirements, the requirements file's
//! contents and the embedded bridge with its pins. Their hash names the
//! environment (`<data>/envs/<hash>`, see [`envs_dir`]), so equal pools
//! share one, across pools, configurations and working directories, and a
//! change to any input builds a new one.
//!
//! An environment is built once: under a file lock beside it (concurrent
//! builders wait, then find it ready), in a temporary directory that is
//! renamed into place only when complete, so a half-built environment is
//! never used. `uv` builds it when it is on `PATH` (`uv venv`, `uv pip
//! install`), else the base interpreter's `venv` and `pip`. Each step is one
//! plain line on stderr. Every directory involved must be owned by this
//! process's uid and closed to group and others ([`Error::UntrustedPath`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snakepit_actors::PoolConfig;
use snakepit_actors::reaper::{check_trusted_dir, ensure_trusted_dir};

use crate::Error;
use crate::python_env::{self, data_dir, io_err};

/// Name of the record an environment keeps of what it was built from.
const RECORD_FILE: &str = "snakepit-env.json";
/// Touched whenever a runtime uses the environment.
const LAST_USED_FILE: &str = ".snakepit-last-used";
/// Prefix of the temporary directories environments are built in.
const BUILD_PREFIX: &str = ".build-";

/// Where pools' environments live: `envs` in [`data_dir`].
pub fn envs_dir() -> PathBuf {
    data_dir().join("envs")
}

/// Whether `pool` runs in an environment of its own: a local pool with
/// requirements, a requirements file, or a `python` that is a version or a
/// command name rather than an interpreter path.
pub fn has_own_env(pool: &PoolConfig) -> bool {
    if pool.remote {
        return false;
    }
    let python_spec = pool
        .python
        .as_deref()
        .is_some_and(|p| !p.to_string_lossy().contains('/'));
    python_spec || !pool.requirements.is_empty() || pool.requirements_file.is_some()
}

/// What one environment is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSpec {
    /// The interpreter the environment is created with (`sys.executable`).
    pub base_python: PathBuf,
    /// Its version (`3.12.1`).
    pub python_version: String,
    /// The requirements, trimmed, sorted and without duplicates.
    pub requirements: Vec<String>,
    /// The requirements file, when there is one.
    pub requirements_file: Option<PathBuf>,
    requirements_text: String,
}

impl EnvSpec {
    /// The environment `pool` needs; `None` when it runs in the runtime's
    /// (see [`has_own_env`]). Finds and probes the interpreter and reads the
    /// requirements file.
    pub fn for_pool(pool: &PoolConfig) -> Result<Option<EnvSpec>, Error> {
        if !has_own_env(pool) {
            return Ok(None);
        }
        let base = match &pool.python {
            Some(spec) => find_python(&spec.to_string_lossy())?,
            None => python_env::PythonEnvConfig::default().base_python,
        };
        let requirements_text = match &pool.requirements_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!(
                    "pool `{}`: cannot read requirements_file {}: {e}",
                    pool.name,
                    path.display()
                ))
            })?,
            None => String::new(),
        };
        Self::new(
            &base,
            &pool.requirements,
            pool.requirements_file.clone(),
            requirements_text,
        )
        .map(Some)
    }

    fn new(
        base: &Path,
        requirements: &[String],
        requirements_file: Option<PathBuf>,
        requirements_text: String,
    ) -> Result<Self, Error> {
        let info = python_env::probe(base)?;
        let mut requirements: Vec<String> =
            requirements.iter().map(|r| r.trim().to_string()).collect();
        requirements.sort();
        requirements.dedup();
        Ok(EnvSpec {
            base_python: PathBuf::from(info.executable),
            python_version: info.version,
            requirements,
            requirements_file,
            requirements_text,
        })
    }

    /// The environment's name: 16 hex digits of the SHA-256 of everything
    /// it is built from.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        let requirements = self.requirements.join("\n");
        let bridge = python_env::bridge_stamp();
        let parts: [&[u8]; 6] = [
            b"snakepit-env/1",
            self.base_python.as_os_str().as_encoded_bytes(),
            self.python_version.as_bytes(),
            requirements.as_bytes(),
            self.requirements_text.as_bytes(),
            bridge.as_bytes(),
        ];
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        format!("{:x}", h.finalize())[..16].to_string()
    }

    /// Where the environment is, built or not.
    pub fn dir(&self) -> PathBuf {
        envs_dir().join(self.hash())
    }
}

/// Finds the interpreter `spec` names: a path (used as given), a version
/// (`3.12`: `python3.12` on `PATH`, else the newest
/// `$PYENV_ROOT/versions/3.12[.N]`, `PYENV_ROOT` defaulting to
/// `~/.pyenv`), or a command on `PATH`. A candidate counts only when it runs
/// and reports that version.
pub fn find_python(spec: &str) -> Result<PathBuf, Error> {
    if spec.contains('/') {
        let path = PathBuf::from(spec);
        python_env::probe(&path)?;
        return Ok(path);
    }
    let is_version =
        !spec.is_empty() && spec.split('.').all(|p| p.parse::<u32>().is_ok()) && spec.len() <= 16;
    if !is_version {
        return on_path(spec)
            .filter(|p| python_env::probe(p).is_ok())
            .ok_or_else(|| Error::Environment(format!("no Python `{spec}` on PATH")));
    }
    let mut candidates: Vec<PathBuf> = on_path(&format!("python{spec}")).into_iter().collect();
    candidates.extend(pyenv_versions(spec));
    candidates
        .into_iter()
        .find(|p| {
            python_env::probe(p).is_ok_and(|info| {
                info.version == spec || info.version.starts_with(&format!("{spec}."))
            })
        })
        .ok_or_else(|| {
            Error::Environment(format!(
                "no Python {spec} found: neither `python{spec}` on PATH nor a pyenv version \
                 {spec}.* under {}; install one, or give the interpreter's path",
                pyenv_root().map_or("~/.pyenv".into(), |r| r.display().to_string())
            ))
        })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn pyenv_root() -> Option<PathBuf> {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
}

/// pyenv's interpreters of version `spec` (`3.12`, `3.12.1`), newest first;
/// builds with a suffix (`3.13.0t`) only when named exactly.
fn pyenv_versions(spec: &str) -> Vec<PathBuf> {
    let Some(root) = pyenv_root() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(root.join("versions")) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(spec)?;
            if !(rest.is_empty() || rest.starts_with('.')) {
                return None;
            }
            let numbers: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let python = e.path().join("bin").join("python");
            Some((numbers?, python))
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, p)| p).collect()
}

/// What an environment was built from, as it records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecord {
    /// Its hash (and directory name).
    pub hash: String,
    /// The interpreter it was created with.
    pub base_python: PathBuf,
    /// That interpreter's version.
    pub python_version: String,
    /// The requirements.
    pub requirements: Vec<String>,
    /// The requirements file, when there was one.
    pub requirements_file: Option<PathBuf>,
    /// `uv` or `pip`.
    pub installer: String,
    /// When it was built, seconds since the Unix epoch.
    pub created_unix: u64,
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct Env {
    /// Its directory.
    pub dir: PathBuf,
    /// Its interpreter, what the pool's workers run.
    pub python: PathBuf,
    /// What it was built from.
    pub record: EnvRecord,
    /// Whether this call built it.
    pub built: bool,
}

/// The environment `spec` names when it is built (nothing is built or
/// touched).
pub fn lookup(spec: &EnvSpec) -> Result<Option<Env>, Error> {
    let dir = spec.dir();
    if !dir.exists() {
        return Ok(None);
    }
    check_trusted_dir(&dir)?;
    Ok(read_ready(&dir).map(|record| Env {
        python: dir.join("bin").join("python"),
        dir,
        record,
        built: false,
    }))
}

/// Makes sure the environment `spec` names is built; returns it.
pub fn ensure(spec: &EnvSpec) -> Result<Env, Error> {
    let root = envs_dir();
    ensure_trusted_dir(&data_dir(), 0o700)?;
    ensure_trusted_dir(&root, 0o700)?;
    let hash = spec.hash();
    if let Some(env) = lookup(spec)? {
        touch(&env.dir);
        return Ok(env);
    }
    let lock_path = root.join(format!(".{hash}.lock"));
    let lock = File::create(&lock_path).map_err(|e| io_err("create", &lock_path, e))?;
    lock.lock().map_err(|e| io_err("lock", &lock_path, e))?;
    if let Some(env) = lookup(spec)? {
        touch(&env.dir);
        return Ok(env);
    }
    let dir = root.join(&hash);
    // Nothing else builds this hash while the lock is held: anything left
    // under these names is from a builder that died.
    let _ = std::fs::remove_dir_all(&dir);
    remove_builds(&root, &hash);
    let build = root.join(format!("{BUILD_PREFIX}{hash}-{}", std::process::id()));
    let result = build_env(spec, &hash, &build, &dir);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&build);
    }
    let record = result?;
    std::fs::rename(&build, &dir).map_err(|e| io_err("rename", &build, e))?;
    touch(&dir);
    Ok(Env {
        python: dir.join("bin").join("python"),
        dir,
        record,
        built: true,
    })
}

fn remove_builds(root: &Path, hash: &str) {
    let prefix = format!("{BUILD_PREFIX}{hash}-");
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One plain line per step on stderr.
struct Progress {
    hash: String,
    started: Instant,
    steps: usize,
    done: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        eprintln!(
            "snakepit: environment {} [{}/{}] {what}",
            self.hash, self.done, self.steps
        );
    }
}

fn uv() -> Option<PathBuf> {
    on_path("uv")
}

/// Builds the environment in `build`, to be renamed to `dest`.
fn build_env(spec: &EnvSpec, hash: &str, build: &Path, dest: &Path) -> Result<EnvRecord, Error> {
    let uv = uv();
    let mut progress = Progress {
        hash: hash.to_string(),
        started: Instant::now(),
        steps: 4,
        done: 0,
    };
    progress.step(&format!(
        "creating a venv with Python {} ({}) using {}",
        spec.python_version,
        spec.base_python.display(),
        if uv.is_some() { "uv" } else { "venv and pip" }
    ));
    let mut create = match &uv {
        Some(uv) => {
            let mut c = Command::new(uv);
            c.args(["venv", "-q", "--python"])
                .arg(&spec.base_python)
                .arg(build);
            c
        }
        None => {
            let mut c = Command::new(&spec.base_python);
            c.args(["-m", "venv"]).arg(build);
            c
        }
    };
    python_env::run(&mut create, "create the venv")?;
    check_trusted_dir(build)?;
    let python = build.join("bin").join("python");
    let install = |what: &str, args: &[&std::ffi::OsStr]| {
        let mut c = match &uv {
            Some(uv) => {
                let mut c = Command::new(uv);
                c.args(["pip", "install", "-q", "--python"]).arg(&python);
                c
            }
            None => {
                let mut c = Command::new(&python);
                c.args(["-m", "pip", "install", "--disable-pip-version-check", "-q"]);
                c
            }
        };
        c.args(args);
        python_env::run(&mut c, what)
    };
    let src = build.with_file_name(format!(
        "{}-src",
        build.file_name().unwrap_or_default().to_string_lossy()
    ));
    python_env::unpack_bridge(&src)?;
    let pins = src.join("requirements.txt");
    let mut args: Vec<std::ffi::OsString> = vec!["-r".into(), pins.into_os_string()];
    if let Some(file) = &spec.requirements_file {
        args.push("-r".into());
        args.push(file.clone().into_os_string());
    }
    args.extend(spec.requirements.iter().map(Into::into));
    let wanted: Vec<String> = spec
        .requirements
        .iter()
        .cloned()
        .chain(
            spec.requirements_file
                .iter()
                .map(|f| format!("-r {}", f.display())),
        )
        .collect();
    progress.step(&format!(
        "installing the bridge's dependencies{}",
        if wanted.is_empty() {
            String::new()
        } else {
            format!(" and {}", wanted.join(", "))
        }
    ));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let installed = install("install the environment's requirements", &refs);
    let installed = installed.and_then(|()| {
        progress.step("installing snakepit-bridge");
        install(
            "install snakepit-bridge",
            &["--no-deps".as_ref(), src.as_os_str()],
        )
    });
    let _ = std::fs::remove_dir_all(&src);
    installed?;
    progress.step("finishing");
    relocate_scripts(build, dest)?;
    let record = EnvRecord {
        hash: hash.to_string(),
        base_python: spec.base_python.clone(),
        python_version: spec.python_version.clone(),
        requirements: spec.requirements.clone(),
        requirements_file: spec.requirements_file.clone(),
        installer: if uv.is_some() { "uv" } else { "pip" }.into(),
        created_unix: unix_secs(SystemTime::now()),
    };
    let path = build.join(RECORD_FILE);
    let text = serde_json::to_string_pretty(&record).expect("a record serialises");
    std::fs::write(&path, text).map_err(|e| io_err("write", &path, e))?;
    eprintln!(
        "snakepit: environment {hash} ready in {:.1} s: {}",
        progress.started.elapsed().as_secs_f64(),
        dest.display()
    );
    Ok(record)
}

/// Points the scripts of `bin/` (console scripts' `#!` lines, `activate*`)
/// at `dest`, where the environment is renamed to; the interpreter finds
/// its prefix from where it runs and needs no change.
fn relocate_scripts(build: &Path, dest: &Path) -> Result<(), Error> {
    let from = build.as_os_str().as_encoded_bytes();
    let to = dest.as_os_str().as_encoded_bytes();
    let bin = build.join("bin");
    let entries = std::fs::read_dir(&bin).map_err(|e| io_err("read", &bin, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        let Ok(bytes) = std::fs::read(&path).map(|b| if is_file { b } else { Vec::new() }) else {
            continue;
        };
        if bytes.len() > 1 << 20 || !bytes.windows(from.len()).any(|w| w == from) {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(to);
            rest = &rest[at + from.len()..];
        }
        out.extend_from_slice(rest);
        std::fs::write(&path, out).map_err(|e| io_err("write", &path, e))?;
    }
    Ok(())
}

fn read_ready(dir: &Path) -> Option<EnvRecord> {
    if !dir.join("bin").join("python").exists() {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn touch(dir: &Path) {
    let path = dir.join(LAST_USED_FILE);
    if let Ok(file) = File::options().create(true).append(true).open(&path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A built environment found in [`envs_dir`].
#[derive(Debug, Clone)]
pub struct ListedEnv {
    /// Its directory.
    pub dir: PathBuf,
    /// What it was built from.
    pub record: EnvRecord,
    /// Bytes its files take.
    pub size_bytes: u64,
    /// When a runtime last used it (else when it was built).
    pub last_used: SystemTime,
}

/// The built environments, by hash. Half-built ones are not listed.
pub fn list() -> Result<Vec<ListedEnv>, Error> {
    let data = data_dir();
    if data.exists() {
        check_trusted_dir(&data)?;
    }
    let root = envs_dir();
    if !root.exists() {
        return Ok(Vec::new());
    }
    check_trusted_dir(&root)?;
    let entries = std::fs::read_dir(&root).map_err(|e| io_err("read", &root, e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') || !dir.is_dir() {
            continue;
        }
        let Some(record) = read_ready(&dir) else {
            continue;
        };
        let last_used = std::fs::metadata(dir.join(LAST_USED_FILE))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(record.created_unix));
        found.push(ListedEnv {
            size_bytes: dir_size(&dir),
            dir,
            record,
            last_used,
        });
    }
    found.sort_by(|a, b| a.record.hash.cmp(&b.record.hash));
    Ok(found)
}

/// Bytes the files under `dir` take (symlinks not followed).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Removes the environment `hash` under its lock (so never one being built
/// or checked); returns whether it was there.
pub fn remove(hash: &str) -> Result<bool, Error> {
    if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Config(format!(
            "{hash:?} is not an environment hash"
        )));
    }
    let root = envs_dir();
    check_trusted_dir(&root)?;
    let dir = root.join(hash);
    if !dir.exists() {
        return Ok(false);
    }
    let lock_path = root.join(format!(".{hash}.lock"));
    let lock = File::create(&lock_path).map_err(|e| io_err("create", &lock_path, e))?;
    lock.lock().map_err(|e| io_err("lock", &lock_path, e))?;
    std::fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, e))?;
    let _ = std::fs::remove_file(&lock_path);
    Ok(true)
}

/// Builds (or finds) the environment of every pool that has one of its own
/// and points the pool at its interpreter: `python` becomes the
/// environment's, and `requirements` / `requirements_file`, now satisfied,
/// are cleared.
pub async fn prepare_pools(pools: &mut [PoolConfig]) -> Result<(), Error> {
    for pool in pools.iter_mut().filter(|p| has_own_env(p)) {
        let snapshot = pool.clone();
        let env = tokio::task::spawn_blocking(move || {
            let spec = EnvSpec::for_pool(&snapshot)?.expect("the pool has an environment");
            ensure(&spec)
        })
        .await
        .map_err(|e| Error::Environment(format!("environment task failed: {e}")))?
        .map_err(|e| match e {
            Error::Environment(msg) => {
                Error::Environment(format!("pool `{}`'s environment: {msg}", pool.name))
            }
            other => other,
        })?;
        pool.python = Some(env.python);
        pool.requirements.clear();
        pool.requirements_file = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requirements: &[&str], file_text: &str) -> EnvSpec {
        let requirements: Vec<String> = requirements.iter().map(|r| r.to_string()).collect();
        EnvSpec::new(
            Path::new("python3"),
            &requirements,
            None,
            file_text.to_string(),
        )
        .expect("python3 runs")
    }

    #[test]
    fn the_hash_covers_the_requirements_but_not_their_order() {
        let a = spec(&["psutil", "attrs>=20"], "");
        let b = spec(&[" attrs>=20", "psutil", "psutil"], "");
        assert_eq!(a.requirements, ["attrs>=20", "psutil"]);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 16);
        assert_ne!(a.hash(), spec(&["psutil"], "").hash());
        assert_ne!(a.hash(), spec(&["psutil", "attrs>=20"], "rich\n").hash());
    }

    #[test]
    fn a_version_finds_an_interpreter_of_that_version_or_says_where_it_looked() {
        let found = find_python("3").expect("some Python 3");
        assert!(python_env::probe(&found).unwrap().version.starts_with("3."));
        let err = find_python("2.99").expect_err("no such Python");
        let msg = err.to_string();
        assert!(
            matches!(err, Error::Environment(_)) && msg.contains("python2.99"),
            "{msg}"
        );
        let err = find_python("no-such-python-here").expect_err("no such command");
        assert!(err.to_string().contains("on PATH"), "{err}");
    }

    #[test]
    fn which_pools_get_an_environment_of_their_own() {
        let mut pool = PoolConfig::named("p");
        assert!(!has_own_env(&pool));
        pool.python = Some("/usr/bin/python3".into());
        assert!(!has_own_env(&pool), "a path alone is used as it is");
        pool.python = Some("3.12".into());
        assert!(has_own_env(&pool));
        pool.python = None;
        pool.requirements = vec!["psutil".into()];
        assert!(has_own_env(&pool));
        pool.remote = true;
        assert!(
            !has_own_env(&pool),
            "a remote pool's environment is its agents'"
        );
    }
}
