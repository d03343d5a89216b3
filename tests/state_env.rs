//! State in the user's directories and environments per pool, through the
//! real `snakepit` binary: a fresh `HOME` with no `SNAKEPIT_HOME`, run from
//! empty directories. The tests of this file share one `HOME` (so the
//! managed venv is built once) and run one at a time, so that the timings
//! they assert are not another test's pip install.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The shared home, emptied when the first test of this run asks for it. It
/// lives at a fixed place in cargo's scratch directory (statics are never
/// dropped, so a temporary directory would outlive every run): each run
/// starts fresh and at most one copy stays on disk.
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("state_env-home");
        if home.exists() {
            std::fs::remove_dir_all(&home).expect("empty the shared home");
        }
        std::fs::create_dir_all(&home).expect("shared home");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        home
    })
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `snakepit ARGS` with `home` as `HOME`, its XDG runtime directory under
/// it, no `SNAKEPIT_HOME` nor other XDG variables, in `cwd`.
fn command_in(home: &Path, cwd: &Path, args: &[&str]) -> Command {
    let runtime = home.join("xdg-runtime");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut command = Command::new(common::snakepit_binary());
    command
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("SNAKEPIT_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_STATE_HOME")
        .stdin(std::process::Stdio::null());
    command
}

/// Runs [`command_in`] to its end.
fn snakepit_in(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    command_in(home, cwd, args).output().expect("run snakepit")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).expect("read dir").next().is_none()
}

fn data_dir(home: &Path) -> PathBuf {
    home.join(".local").join("share").join("snakepit")
}

#[test]
fn doctor_builds_under_xdg_data_creates_nothing_in_cwd_and_is_reused_elsewhere() {
    let _one = one_at_a_time();
    let home = home();
    let first = tempfile::tempdir().expect("cwd");
    let out = snakepit_in(home, first.path(), &["doctor", "--json"]);
    assert_ok(&out, "the first doctor");
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report:#}");
    let venv = data_dir(home).join("venv");
    assert_eq!(report["default_env"]["path"], venv.to_str().unwrap());
    assert_eq!(report["pools"][0]["adapter_imports"], true, "{report:#}");
    assert_eq!(report["pools"][0]["workers_up"], 2, "{report:#}");
    assert!(venv.join("bin").join("python").exists());
    assert!(
        empty(first.path()),
        "doctor wrote into its working directory"
    );
    let registry = home.join("xdg-runtime").join("snakepit");
    assert!(
        registry.is_dir(),
        "the run registry is under XDG_RUNTIME_DIR"
    );
    let mode = std::fs::metadata(data_dir(home))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the data dir is private: {mode:o}");

    let stamp = venv.join(".snakepit-bridge-stamp");
    let built = std::fs::metadata(&stamp).unwrap().modified().unwrap();
    let second = tempfile::tempdir().expect("cwd");
    let started = Instant::now();
    let out = snakepit_in(home, second.path(), &["doctor", "--json"]);
    let took = started.elapsed();
    assert_ok(&out, "the second doctor");
    let report = json(&out);
    assert_eq!(report["default_env"]["installed_now"], false, "{report:#}");
    assert_eq!(report["pools"][0]["env_state"], "ready", "{report:#}");
    assert_eq!(
        std::fs::metadata(&stamp).unwrap().modified().unwrap(),
        built,
        "the venv was reinstalled"
    );
    assert!(
        took < Duration::from_secs(5),
        "the second doctor took {took:?}"
    );
    assert!(
        empty(second.path()),
        "doctor wrote into its working directory"
    );
}

#[test]
fn a_pool_with_requirements_gets_its_own_environment_listed_and_pruned() {
    let _one = one_at_a_time();
    let home = home();
    let project = tempfile::tempdir().expect("project");
    std::fs::write(
        project.path().join("ps_adapter.py"),
        "import psutil\n\
         from snakepit_bridge import BaseAdapter, tool\n\n\
         class PsAdapter(BaseAdapter):\n    \
             @tool\n    \
             def pid_exists(self, pid: int) -> bool:\n        \
                 return psutil.pid_exists(pid)\n",
    )
    .unwrap();
    std::fs::write(project.path().join("requirements.txt"), "psutil\n").unwrap();
    let config = project.path().join("snakepit.toml");
    std::fs::write(
        &config,
        format!(
            "[[pools]]\nname = \"ps\"\nsize = 1\nadapter = \"ps_adapter.PsAdapter\"\n\
             python_path = [{:?}]\nrequirements_file = \"requirements.txt\"\n",
            project.path()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let cwd = tempfile::tempdir().expect("cwd");
    let pid = std::process::id().to_string();
    let args = format!("{{\"pid\": {pid}}}");
    let exec = ["exec", "--config", config, "pid_exists", "--args", &args];

    // Two builders at once: one builds, the other waits for it and reuses it.
    let started = Instant::now();
    let build = ["env", "build", "--config", config];
    let builders: Vec<_> = (0..2)
        .map(|_| {
            command_in(home, cwd.path(), &build)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a builder")
        })
        .collect();
    let outs: Vec<Output> = builders
        .into_iter()
        .map(|b| b.wait_with_output().expect("builder"))
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "building took {:?}",
        started.elapsed()
    );
    for out in &outs {
        assert_ok(out, "env build");
    }
    let states: Vec<String> = outs.iter().map(|o| text(&o.stdout)).collect();
    assert_eq!(
        states.iter().filter(|s| s.ends_with("(built)\n")).count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| s.ends_with("(ready)\n")).count(),
        1,
        "{states:?}"
    );
    let builder = outs
        .iter()
        .find(|o| text(&o.stdout).ends_with("(built)\n"))
        .unwrap();
    let stderr = text(&builder.stderr);
    assert!(stderr.contains("[1/4] creating a venv"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escapes on a redirected stderr: {stderr:?}"
    );
    assert!(
        empty(cwd.path()),
        "env build wrote into its working directory"
    );

    let out = snakepit_in(home, cwd.path(), &exec);
    assert_ok(&out, "exec in the built environment");
    assert_eq!(text(&out.stdout).trim(), "true");
    assert!(!text(&out.stderr).contains("[1/4]"), "rebuilt");

    let out = snakepit_in(home, cwd.path(), &exec);
    assert_ok(&out, "exec again");
    assert!(!text(&out.stderr).contains("[1/4]"), "rebuilt");

    let out = snakepit_in(
        home,
        cwd.path(),
        &["env", "list", "--json", "--config", config],
    );
    assert_ok(&out, "env list");
    let listed = json(&out);
    let envs = listed["envs"].as_array().expect("envs");
    assert_eq!(envs.len(), 1, "{listed:#}");
    assert_eq!(envs[0]["pools"], serde_json::json!(["ps"]));
    assert!(envs[0]["size_bytes"].as_u64().unwrap() > 1_000_000);
    let hash = envs[0]["hash"].as_str().unwrap().to_string();
    let dir = data_dir(home).join("envs").join(&hash);
    assert_eq!(envs[0]["path"], dir.to_str().unwrap());

    let out = snakepit_in(home, cwd.path(), &["env", "python", "--config", config]);
    assert_ok(&out, "env python");
    let python = text(&out.stdout).trim().to_string();
    assert_eq!(Path::new(&python), dir.join("bin").join("python"));
    let imports = Command::new(&python)
        .args(["-c", "import psutil, snakepit_bridge"])
        .status()
        .unwrap();
    assert!(imports.success());

    let out = snakepit_in(home, cwd.path(), &["doctor", "--json", "--config", config]);
    assert_ok(&out, "doctor on the pool");
    let report = json(&out);
    assert_eq!(report["pools"][0]["env_kind"], "own", "{report:#}");
    assert_eq!(report["pools"][0]["env_hash"], hash.as_str());
    assert_eq!(report["pools"][0]["adapter_imports"], true);

    // In use by the configuration, or used today: kept.
    let out = snakepit_in(home, cwd.path(), &["env", "prune", "--config", config]);
    assert_ok(&out, "prune with the config");
    assert!(text(&out.stdout).contains("nothing to remove"));
    let out = snakepit_in(home, cwd.path(), &["env", "prune", "--older-than", "1"]);
    assert_ok(&out, "prune old ones");
    assert!(text(&out.stdout).contains("nothing to remove"));
    assert!(dir.exists());
    // The embedded default does not use it: removed, and said so.
    let out = snakepit_in(home, cwd.path(), &["env", "prune"]);
    assert_ok(&out, "prune");
    assert!(text(&out.stdout).contains(&format!("removed {hash}")));
    assert!(!dir.exists());
    let out = snakepit_in(home, cwd.path(), &["env", "list", "--json"]);
    assert_eq!(json(&out)["envs"], serde_json::json!([]));
}

#[test]
fn a_state_dir_open_to_the_group_is_refused() {
    let home = tempfile::tempdir().expect("home");
    let data = data_dir(home.path());
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o775)).unwrap();
    let cwd = tempfile::tempdir().expect("cwd");
    for args in [&["doctor"][..], &["env", "list"]] {
        let out = snakepit_in(home.path(), cwd.path(), args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("refusing {}", data.display()))
                && stderr.contains("lets group or others write"),
            "{args:?}: {stderr}"
        );
        assert!(!data.join("venv").exists(), "built in an untrusted dir");
    }
}

/// The value of `name` in the environment of process `pid`.
fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Kills what it holds when the test ends, passed or not.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn a_host_killed_in_one_directory_is_reaped_by_a_host_started_in_another() {
    let _one = one_at_a_time();
    let home = home();
    let project = tempfile::tempdir().expect("project");
    let config = project.path().join("leaver.toml");
    std::fs::write(
        &config,
        format!(
            "[[pools]]\nname = \"leaver\"\nsize = 1\nadapter = \"session_leaver.SessionLeaver\"\n\
             python_path = [{:?}]\n",
            common::fixtures_dir()
        ),
    )
    .unwrap();
    let first = tempfile::tempdir().expect("cwd");
    let mut host = command_in(
        home,
        first.path(),
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "spawn_detached_and_sleep",
            "--args",
            r#"{"seconds": 120}"#,
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start the host");
    let mut host_guard = KillOnDrop(vec![host.id()]);
    let until = Instant::now() + Duration::from_secs(120);
    let child = loop {
        assert!(Instant::now() < until, "the host never got its child up");
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c == b"sleep\x00600\x00")
                    && env_of(pid, "HOME").as_deref() == home.to_str()
            });
        if let Some(pid) = found {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _child_guard = KillOnDrop(vec![child]);
    host.kill().expect("SIGKILL the host");
    host.wait().expect("reap the host");
    host_guard.0.clear();
    assert!(alive(child), "the detached child outlives its host");

    let second = tempfile::tempdir().expect("cwd");
    let out = snakepit_in(
        home,
        second.path(),
        &["exec", "add", "--args", r#"{"a": 2, "b": 3}"#],
    );
    assert_ok(&out, "the next host");
    assert_eq!(text(&out.stdout).trim(), "5");
    let until = Instant::now() + Duration::from_secs(5);
    while alive(child) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(child), "the killed host's leftover was not reaped");
    assert!(empty(first.path()) && empty(second.path()));
}

#[test]
fn doctor_names_the_pool_whose_adapter_does_not_import() {
    let _one = one_at_a_time();
    let home = home();
    let project = tempfile::tempdir().expect("project");
    let config = project.path().join("broken.toml");
    std::fs::write(
        &config,
        "[[pools]]\nname = \"fine\"\nsize = 1\n\n\
         [[pools]]\nname = \"broken\"\nsize = 1\nadapter = \"no_such_module.Adapter\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let cwd = tempfile::tempdir().expect("cwd");
    let out = snakepit_in(home, cwd.path(), &["doctor", "--json", "--config", config]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let pools = report["pools"].as_array().unwrap();
    assert_eq!(pools[0]["adapter_imports"], true, "{report:#}");
    assert_eq!(pools[1]["adapter_imports"], false, "{report:#}");
    let error = pools[1]["error"].as_str().unwrap();
    assert!(
        error.contains("No module named 'no_such_module'"),
        "{error}"
    );
    let out = snakepit_in(home, cwd.path(), &["doctor", "--config", config]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: pool `broken`: adapter `no_such_module.Adapter` does not import"),
        "{stderr}"
    );
    assert!(!stderr.contains("pool `fine`"), "{stderr}");
}

/// Whether `python --version` says 3.11 or newer.
fn recent_python(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
        .status()
        .is_ok_and(|s| s.success())
}

// As systemd runs a service of a non-root user: working directory `/`, a
// bare environment. Needs root (to drop to `nobody` with setpriv) and a
// system Python 3.11+ that user can run; elsewhere it says so and passes.
#[test]
fn a_non_root_user_runs_a_tool_from_the_root_directory() {
    let system_python = Path::new("/usr/bin/python3");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() || !recent_python(system_python) {
        eprintln!("skipped: needs root, /usr/bin/setpriv and /usr/bin/python3 >= 3.11");
        return;
    }
    let nobody = 65534;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("snakepit");
    std::fs::copy(common::snakepit_binary(), &binary).expect("copy the binary");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(nobody), Some(nobody)).expect("chown");
    let out = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
        ])
        .arg(format!("HOME={}", home.display()))
        .arg(format!("SNAKEPIT_PYTHON={}", system_python.display()))
        .arg(&binary)
        .args(["exec", "add", "--args", r#"{"a": 2, "b": 3}"#])
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run as nobody");
    assert_ok(&out, "exec as nobody from /");
    assert_eq!(text(&out.stdout).trim(), "5");
    assert!(
        data_dir(&home)
            .join("venv")
            .join("bin")
            .join("python")
            .exists()
    );
    assert!(home.join(".local/state/snakepit/run").is_dir());
    assert!(!Path::new("/.snakepit").exists());
}

#[test]
fn a_failed_build_leaves_nothing_behind_and_says_why() {
    let _one = one_at_a_time();
    let home = home();
    let project = tempfile::tempdir().expect("project");
    let config = project.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[pools]]\nname = \"bad\"\nsize = 1\n\
         requirements = [\"snakepit-no-such-package-anywhere==0.0.1\"]\n",
    )
    .unwrap();
    let cwd = tempfile::tempdir().expect("cwd");
    let out = snakepit_in(
        home,
        cwd.path(),
        &["env", "build", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pool `bad`: could not install the environment's requirements"),
        "{stderr}"
    );
    assert!(
        stderr.contains("snakepit-no-such-package-anywhere"),
        "{stderr}"
    );
    let envs = data_dir(home).join("envs");
    let left: Vec<String> = std::fs::read_dir(&envs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    let listed = json(&snakepit_in(home, cwd.path(), &["env", "list", "--json"]));
    let hashes: Vec<&str> = listed["envs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap())
        .collect();
    assert!(
        left.iter().all(|name| hashes.contains(&name.as_str())),
        "left behind: {left:?} (built: {hashes:?})"
    );
}
