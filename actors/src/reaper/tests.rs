//! Tests of the registry and the sweep against real processes. Each test uses
//! its own registry directory and run ids, so tests running in parallel (in
//! this binary or another) never see each other's entries or processes.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

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
    Proc(child)
}

/// A pid that belonged to a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait true");
    pid
}

/// Writes an entry file by hand, as a host that has since died would have.
fn write_entry(dir: &Path, run_id: &str, host_pid: u32, host_start: u64) -> PathBuf {
    let path = dir.join(format!("{run_id}.run"));
    let text = format!(
        "run_id={run_id}\nhost_pid={host_pid}\nhost_start={host_start}\ncreated_unix_ms=1\n"
    );
    fs::write(&path, text).expect("write entry");
    path
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

// 1. Register, release, drop; the live run is never swept.
#[test]
fn register_writes_parseable_entry_and_release_or_drop_removes_it() {
    let dir = TempDir::new("register");
    // The registry creates its directory itself.
    let registry = RunRegistry::new(dir.path().join("nested").join("run"));
    let run_id = unique_id("register");

    let entry = registry.register(&run_id).expect("register");
    assert_eq!(entry.path(), registry.dir().join(format!("{run_id}.run")));
    assert_eq!(entry.run_id(), run_id);
    let text = fs::read_to_string(entry.path()).expect("read entry");
    let record = EntryRecord::parse(&text).expect("entry parses");
    assert_eq!(record.run_id, run_id);
    assert_eq!(record.host_pid, std::process::id());
    assert_eq!(record.host_start, own_start());
    assert!(record.created_unix_ms > 1_600_000_000_000, "{text}");
    for key in ["run_id=", "host_pid=", "host_start=", "created_unix_ms="] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "{key} missing: {text}"
        );
    }
    // Only the entry is left: the temp file was renamed into place.
    let names: Vec<_> = fs::read_dir(registry.dir())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let path = entry.path().to_owned();
    entry.release().expect("release");
    assert!(!path.exists(), "release leaves the file");

    let entry = registry.register(&run_id).expect("register again");
    let path = entry.path().to_owned();
    assert!(path.exists());
    drop(entry);
    assert!(!path.exists(), "drop leaves the file");
}

#[test]
fn sweep_leaves_the_live_current_run_alone() {
    let dir = TempDir::new("live");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("live");
    let entry = registry.register(&run_id).expect("register");
    let mut worker = sleeper(&[(RUN_ID_ENV, &run_id)]);

    let report = registry.sweep().expect("sweep");
    assert_eq!(report, SweepReport::default());
    assert!(entry.path().exists(), "live entry removed");
    assert!(worker.is_running(), "live run's process killed");
    entry.release().expect("release");
}

// 2. A dead run is reaped; a process of another run is not.
#[test]
fn sweep_reaps_a_dead_run_and_spares_a_decoy() {
    let dir = TempDir::new("dead");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("dead");
    let decoy_id = unique_id("decoy");
    let mut leftover = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let mut decoy = sleeper(&[(RUN_ID_ENV, &decoy_id)]);
    let host_pid = dead_pid();
    let path = write_entry(dir.path(), &run_id, host_pid, 0);

    let started = std::time::Instant::now();
    let report = registry.sweep().expect("sweep");
    // The killed sleep is a zombie until this test reaps it; the sweep must
    // count it as gone rather than wait out its deadline.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        report.runs,
        vec![ReapedRun {
            run_id: run_id.clone(),
            host_pid,
            pids: vec![leftover.pid()],
            survivors: vec![],
        }]
    );
    let status = leftover.0.wait().expect("wait leftover");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(!path.exists(), "entry of the dead run kept");
    assert!(decoy.is_running(), "decoy killed");
    assert_eq!(processes_with_run_id(&decoy_id), vec![decoy.pid()]);

    // A second sweep has nothing left to do.
    assert_eq!(
        registry.sweep().expect("sweep again"),
        SweepReport::default()
    );
    decoy.0.kill().expect("kill decoy");
    decoy.0.wait().expect("wait decoy");
}

// A leftover that leads a process group takes the group with it, including
// members that no longer carry the run id.
#[test]
fn sweep_kills_the_group_a_leftover_leads() {
    let dir = TempDir::new("group");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("group");
    let mut leader = Command::new("sh");
    leader
        .args([
            "-c",
            &format!("env -u {RUN_ID_ENV} sleep 30 & echo $!; wait"),
        ])
        .env(RUN_ID_ENV, &run_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut leader = Proc(leader.spawn().expect("spawn sh"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(leader.0.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read member pid");
    let member: u32 = line.trim().parse().expect("member pid");
    // The member carries no run id once `env -u` has exec'd sleep.
    wait_until("member execs sleep", || {
        fs::read(format!("/proc/{member}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
    });
    assert_eq!(processes_with_run_id(&run_id), vec![leader.pid()]);
    write_entry(dir.path(), &run_id, dead_pid(), 0);

    let report = registry.sweep().expect("sweep");
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.runs[0].pids, vec![leader.pid()]);
    leader.0.wait().expect("wait sh");
    // The member is reparented once sh dies, so it may be a zombie for a
    // moment before its new parent reaps it.
    wait_until("group member killed", || pid_gone(member));
}

// 3. A live pid with another start time is a reused pid: the run is dead.
#[test]
fn sweep_treats_a_reused_host_pid_as_dead() {
    let dir = TempDir::new("reused");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("reused");
    let path = write_entry(dir.path(), &run_id, std::process::id(), 1);

    let report = registry.sweep().expect("sweep");
    assert_eq!(
        report.runs,
        vec![ReapedRun {
            run_id,
            host_pid: std::process::id(),
            pids: vec![],
            survivors: vec![],
        }]
    );
    assert!(!path.exists(), "entry of the dead run kept");
}

// 4. Only the exact value matches.
#[test]
fn processes_with_run_id_matches_the_exact_value() {
    let run_id = unique_id("exact");
    let longer = format!("{run_id}-1");
    let suffix_key = format!("NOT_{RUN_ID_ENV}");
    let a = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let b = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let c = sleeper(&[(RUN_ID_ENV, &longer)]);
    let _d = sleeper(&[(&suffix_key, &run_id)]);
    let _e = sleeper(&[("OTHER", &format!("{RUN_ID_ENV}={run_id}x"))]);

    let mut expected = vec![a.pid(), b.pid()];
    expected.sort_unstable();
    assert_eq!(processes_with_run_id(&run_id), expected);
    assert_eq!(processes_with_run_id(&longer), vec![c.pid()]);
    let prefix = &run_id[..run_id.len() - 1];
    assert_eq!(processes_with_run_id(prefix), Vec::<u32>::new());
    assert_eq!(processes_with_run_id(""), Vec::<u32>::new());
}

// 5. A young malformed entry may be another host's; it stays.
#[test]
fn young_malformed_entry_is_left_in_place() {
    let dir = TempDir::new("malformed");
    let registry = RunRegistry::new(dir.path());
    let garbage = dir.path().join("garbage.run");
    fs::write(&garbage, "not an entry\n").expect("write");
    // Well formed, but naming another run than its file: as bad.
    let run_id = unique_id("mismatch");
    let mismatch = dir.path().join("other-name.run");
    fs::write(
        &mismatch,
        format!(
            "run_id={run_id}\nhost_pid={}\nhost_start=0\ncreated_unix_ms=1\n",
            dead_pid()
        ),
    )
    .expect("write");

    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
    assert!(garbage.exists(), "young malformed entry removed");
    assert!(mismatch.exists(), "young mismatched entry removed");
}

#[test]
fn old_malformed_entry_and_old_temp_file_are_removed() {
    let dir = TempDir::new("old");
    let registry = RunRegistry::new(dir.path());
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
    let garbage = dir.path().join("garbage.run");
    let temp = dir.path().join(".garbage.1.2.tmp");
    let unrelated = dir.path().join("notes.txt");
    for path in [&garbage, &temp, &unrelated] {
        fs::write(path, "host_pid=banana\n").expect("write");
        fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("age file");
    }

    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
    assert!(!garbage.exists(), "old malformed entry kept");
    assert!(!temp.exists(), "old temp file kept");
    assert!(
        unrelated.exists(),
        "a file that is not the registry's was removed"
    );
}

#[test]
fn missing_registry_dir_sweeps_to_nothing() {
    let dir = TempDir::new("missing");
    let registry = RunRegistry::new(dir.path().join("absent"));
    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
}

#[test]
fn register_rejects_run_ids_that_are_not_file_names() {
    let dir = TempDir::new("reject");
    let registry = RunRegistry::new(dir.path());
    for bad in [
        "",
        ".hidden",
        "a/b",
        "../up",
        "a\nb",
        "a=b",
        "a b",
        &"x".repeat(201),
    ] {
        let err = registry.register(bad).expect_err(bad);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
    }
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
}

#[test]
fn stat_parse_counts_fields_from_the_last_paren() {
    let raw =
        b"4242 (a) (b c) ) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
    assert_eq!(
        Stat::parse(raw),
        Some(Stat {
            state: b'S',
            start: 987654,
        })
    );
    let zombie = b"7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
    assert!(Stat::parse(zombie).expect("parse").is_gone());
    assert_eq!(Stat::parse(b"7 (x) S 1 2"), None);
    assert_eq!(Stat::parse(b"no parens at all"), None);
}

#[test]
fn entry_record_round_trips_and_rejects_duplicates() {
    let record = EntryRecord {
        run_id: "1234-abc".into(),
        host_pid: 1234,
        host_start: 99,
        created_unix_ms: 1_700_000_000_000,
        boot_id: Some("b".into()),
        pid_ns: Some("pid:[4026531836]".into()),
    };
    assert_eq!(EntryRecord::parse(&record.render()), Some(record.clone()));
    let doubled = format!("{}host_pid=1\n", record.render());
    assert_eq!(EntryRecord::parse(&doubled), None);
    let unknown = format!("{}future_key=1\n", record.render());
    assert_eq!(EntryRecord::parse(&unknown), Some(record));
}

// An entry from another pid namespace names a pid that means nothing here:
// even when that pid is dead here, the run is left alone.
#[test]
fn entry_from_another_pid_namespace_is_left_alone() {
    let dir = TempDir::new("pidns");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("pidns");
    let mut worker = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let path = write_entry(dir.path(), &run_id, dead_pid(), 0);
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str("pid_ns=pid:[1]\n");
    fs::write(&path, text).expect("write");

    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
    assert!(path.exists(), "entry of another namespace removed");
    assert!(
        worker.is_running(),
        "process of another namespace's run killed"
    );
}

// An entry from an earlier boot is dead even if its pid and start time
// happen to match a process now.
#[test]
fn entry_from_another_boot_is_dead() {
    let dir = TempDir::new("boot");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("boot");
    let mut host = sleeper(&[]);
    let raw = fs::read(format!("/proc/{}/stat", host.pid())).expect("read stat");
    let start = Stat::parse(&raw).expect("parse stat").start;
    let path = write_entry(dir.path(), &run_id, host.pid(), start);
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str("boot_id=00000000-0000-0000-0000-000000000000\n");
    fs::write(&path, text).expect("write");

    let report = registry.sweep().expect("sweep");
    assert_eq!(report.runs.len(), 1, "{report:?}");
    assert_eq!(report.runs[0].run_id, run_id);
    assert!(!path.exists(), "entry of an earlier boot kept");
    // The host pid itself is never signalled: only processes with the run id.
    assert!(host.is_running());
}
