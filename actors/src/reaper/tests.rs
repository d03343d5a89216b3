//! Tests of the registry and the sweep against real processes. Each test uses
//! its own registry directory and run ids, so tests running in parallel (in
//! this binary or another) never see each other's entries or processes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::procfs::Stat;
use super::record::{Decoded, EntryRecord};
use super::trust::effective_uid;
use super::*;
use crate::process::RUN_ID_ENV;

/// A run id no other test, or test binary, uses.
fn unique_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// A registry directory removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("snakepit-reaper-{}", unique_id(test)));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child killed and reaped on drop, so a failing test leaves nothing.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn is_running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep 30` in its own process group, carrying `env` (and no run id
/// inherited from the test runner's own environment).
fn sleeper(env: &[(&str, &str)]) -> Proc {
    let child = Command::new("sleep")
        .arg("30")
        .env_remove(RUN_ID_ENV)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sleep");
    wait_for_exec(child.id());
    Proc(child)
}

/// Waits (up to 5 s) until `pid`'s new environment is readable. `spawn`
/// returns once the exec has begun, but the kernel sets the new image's
/// environment a little later; on a busy machine a scan in that window
/// sees an empty one.
fn wait_for_exec(pid: u32) {
    let path = format!("/proc/{pid}/environ");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fs::read(&path).is_ok_and(|env| env.is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} did not finish its exec"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A pid that belonged to a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait true");
    pid
}

/// The record a host that has since died would have written.
fn record(run_id: &str, host_pid: u32, host_start: u64) -> EntryRecord {
    EntryRecord {
        version: RECORD_VERSION,
        run_id: run_id.to_owned(),
        host_pid,
        host_start,
        created_unix_ms: 1,
        boot_id: None,
        pid_ns: None,
    }
}

/// Writes `record` as the entry file of `run_id` (mode 0600, ours).
fn write_record(dir: &Path, run_id: &str, record: &EntryRecord) -> PathBuf {
    let path = dir.join(format!("{run_id}.run"));
    fs::write(&path, record.encode()).expect("write entry");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod entry");
    path
}

/// Writes an entry file by hand, as a host that has since died would have.
fn write_entry(dir: &Path, run_id: &str, host_pid: u32, host_start: u64) -> PathBuf {
    write_record(dir, run_id, &record(run_id, host_pid, host_start))
}

fn own_start() -> u64 {
    let raw = fs::read("/proc/self/stat").expect("read own stat");
    Stat::parse(&raw).expect("parse own stat").start
}

/// Whether `pid` is gone or a zombie (a group member the test cannot reap).
fn pid_gone(pid: u32) -> bool {
    match fs::read(format!("/proc/{pid}/stat")) {
        Ok(raw) => Stat::parse(&raw).is_none_or(|s| s.is_gone()),
        Err(_) => true,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

mod entries;
mod sweep;
