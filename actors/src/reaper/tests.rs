//! Tests of the registry and the sweep against real processes. Each test uses
//! its own registry directory and run ids, so tests running in parallel (in
//! this binary or another) never see each other's entries or processes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
    let bytes = fs::read(entry.path()).expect("read entry");
    let Decoded::Record(record) = EntryRecord::decode(&bytes) else {
        panic!("entry does not decode: {bytes:?}");
    };
    assert_eq!(record.version, RECORD_VERSION);
    assert_eq!(record.run_id, run_id);
    assert_eq!(record.host_pid, std::process::id());
    assert_eq!(record.host_start, own_start());
    assert!(record.created_unix_ms > 1_600_000_000_000, "{record:?}");
    // Private: the directory it made is 0700, the entry 0600.
    let mode = |p: &Path| fs::metadata(p).expect("stat").mode() & 0o777;
    assert_eq!(mode(registry.dir()), 0o700);
    assert_eq!(mode(entry.path()), 0o600);
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
    fs::write(&garbage, [1, 0xff, 0xff]).expect("write");
    // Well formed, but naming another run than its file: as bad.
    let run_id = unique_id("mismatch");
    let mismatch = write_record(dir.path(), "other-name", &record(&run_id, dead_pid(), 0));

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
        fs::write(path, [1, 3, b'a']).expect("write");
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
        assert!(
            matches!(&err, RegistryError::InvalidRunId(id) if id == bad),
            "{bad:?}: {err:?}"
        );
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
            pgrp: 4242,
            start: 987654,
        })
    );
    let zombie = b"7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
    assert!(Stat::parse(zombie).expect("parse").is_gone());
    assert_eq!(Stat::parse(b"7 (x) S 1 2"), None);
    assert_eq!(Stat::parse(b"no parens at all"), None);
}

#[test]
fn entry_record_round_trips_through_bincode() {
    let record = EntryRecord {
        version: RECORD_VERSION,
        run_id: "1234-abc".into(),
        host_pid: 1234,
        host_start: 99,
        created_unix_ms: 1_700_000_000_000,
        boot_id: Some("b".into()),
        pid_ns: Some("pid:[4026531836]".into()),
    };
    let bytes = record.encode();
    assert_eq!(
        bytes[0], RECORD_VERSION as u8,
        "the version leads: {bytes:?}"
    );
    assert_eq!(EntryRecord::decode(&bytes), Decoded::Record(record.clone()));
    // Trailing bytes, or a run id that cannot name a file: not a record.
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(EntryRecord::decode(&longer), Decoded::Malformed);
    let bad_id = EntryRecord {
        run_id: "../up".into(),
        ..record
    };
    assert_eq!(EntryRecord::decode(&bad_id.encode()), Decoded::Malformed);
}

#[test]
fn truncated_and_garbage_records_decode_as_malformed() {
    let bytes = record("trunc", 42, 7).encode();
    for len in 0..bytes.len() {
        assert_eq!(
            EntryRecord::decode(&bytes[..len]),
            Decoded::Malformed,
            "prefix of {len} bytes"
        );
    }
    // A string length far beyond the file, and raw noise.
    assert_eq!(
        EntryRecord::decode(&[1, 0xfc, 0xff, 0xff, 0xff, 0x7f]),
        Decoded::Malformed
    );
    assert_eq!(EntryRecord::decode(b"\x01\xff\xfe\xfd"), Decoded::Malformed);
}

// Garbage and truncated files in the registry are skipped without panic, and
// the sweep still reaps the well-formed dead run next to them.
#[test]
fn sweep_skips_garbage_and_truncated_entries() {
    let dir = TempDir::new("garbage");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("garbage");
    let mut survivor = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let full = record(&run_id, dead_pid(), 0).encode();
    let truncated = dir.path().join(format!("{run_id}.run"));
    fs::write(&truncated, &full[..full.len() - 3]).expect("write");
    fs::write(dir.path().join("noise.run"), [0xff; 64]).expect("write");
    fs::write(dir.path().join("empty.run"), []).expect("write");

    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
    assert!(survivor.is_running(), "a truncated entry was acted on");

    let dead_id = unique_id("garbage-dead");
    let mut leftover = sleeper(&[(RUN_ID_ENV, &dead_id)]);
    write_entry(dir.path(), &dead_id, dead_pid(), 0);
    let report = registry.sweep().expect("sweep");
    assert_eq!(report.runs.len(), 1, "{report:?}");
    assert_eq!(report.runs[0].pids, vec![leftover.pid()]);
    leftover.0.wait().expect("wait leftover");
    assert!(survivor.is_running());
}

// A record of a version this build does not know is never acted on, nor
// removed: it may be a newer host's.
#[test]
fn entry_of_an_unknown_version_is_ignored() {
    let dir = TempDir::new("version");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("version");
    let mut worker = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let future = EntryRecord {
        version: RECORD_VERSION + 1,
        ..record(&run_id, dead_pid(), 0)
    };
    assert_eq!(
        EntryRecord::decode(&future.encode()),
        Decoded::UnknownVersion(RECORD_VERSION + 1)
    );
    let path = write_record(dir.path(), &run_id, &future);

    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
    assert!(worker.is_running(), "an unknown version was acted on");
    assert!(path.exists(), "an unknown version was removed");
}

/// A forged entry of a live process's run, naming a dead host: the sweep
/// must leave both alone when the file is not trustworthy.
fn forged_entry_is_ignored(test: &str, tamper: impl FnOnce(&Path)) {
    let dir = TempDir::new(test);
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id(test);
    let mut victim = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let path = write_entry(dir.path(), &run_id, dead_pid(), 0);
    tamper(&path);

    assert_eq!(registry.sweep().expect("sweep"), SweepReport::default());
    assert!(victim.is_running(), "a forged entry got a process killed");
    assert!(path.exists(), "another user's file was removed");
}

#[test]
fn forged_entry_writable_by_others_is_ignored() {
    forged_entry_is_ignored("world-writable", |path| {
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).expect("chmod");
    });
}

#[test]
fn forged_entry_owned_by_another_uid_is_ignored() {
    if effective_uid() != 0 {
        eprintln!("skipped: chown to another uid needs root");
        return;
    }
    forged_entry_is_ignored("foreign-owner", |path| {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown");
    });
}

#[test]
fn forged_entry_behind_a_symlink_is_ignored() {
    let elsewhere = TempDir::new("symlink-target");
    forged_entry_is_ignored("symlink", |path| {
        let target = elsewhere.path().join("entry");
        fs::rename(path, &target).expect("move entry");
        std::os::unix::fs::symlink(&target, path).expect("symlink");
    });
}

// The sweep only ever signals processes of our own uid, even when they carry
// a dead run's id.
#[test]
fn sweep_never_signals_a_process_of_another_uid() {
    if effective_uid() != 0 {
        eprintln!("skipped: starting a process as another uid needs root");
        return;
    }
    let dir = TempDir::new("other-uid");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("other-uid");
    let mut foreign = Command::new("sleep");
    foreign
        .arg("30")
        .env(RUN_ID_ENV, &run_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .uid(65534)
        .gid(65534);
    let mut foreign = Proc(foreign.spawn().expect("spawn sleep as nobody"));
    let mut ours = sleeper(&[(RUN_ID_ENV, &run_id)]);
    write_entry(dir.path(), &run_id, dead_pid(), 0);

    let report = registry.sweep().expect("sweep");
    assert_eq!(report.runs.len(), 1, "{report:?}");
    assert_eq!(report.runs[0].pids, vec![ours.pid()]);
    ours.0.wait().expect("wait ours");
    assert!(foreign.is_running(), "another uid's process was signalled");
    assert_eq!(processes_with_run_id(&run_id), Vec::<u32>::new());
}

#[test]
fn registry_dir_open_to_others_is_refused() {
    let dir = TempDir::new("open-dir");
    let open = dir.path().join("run");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    let registry = RunRegistry::new(&open);
    let run_id = unique_id("open-dir");
    let mut victim = sleeper(&[(RUN_ID_ENV, &run_id)]);
    write_entry(&open, &run_id, dead_pid(), 0);

    for err in [
        registry.prepare().expect_err("prepare"),
        registry.sweep().expect_err("sweep"),
        registry
            .register(&unique_id("open-dir"))
            .expect_err("register"),
    ] {
        assert!(
            matches!(
                &err,
                RegistryError::Untrusted(UntrustedPath {
                    path,
                    reason: Untrusted::Writable { mode: 0o777 },
                }) if path == &open
            ),
            "{err:?}"
        );
    }
    assert!(victim.is_running());
    assert_eq!(
        fs::read_dir(&open).expect("list").count(),
        1,
        "wrote into it"
    );

    if effective_uid() == 0 {
        fs::set_permissions(&open, fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&open, Some(65534), None).expect("chown");
        let err = registry.sweep().expect_err("sweep of a foreign dir");
        assert!(
            matches!(
                &err,
                RegistryError::Untrusted(UntrustedPath {
                    reason: Untrusted::Owner { owner: 65534, .. },
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(victim.is_running());
    }
}

// An entry from another pid namespace names a pid that means nothing here:
// even when that pid is dead here, the run is left alone.
#[test]
fn entry_from_another_pid_namespace_is_left_alone() {
    let dir = TempDir::new("pidns");
    let registry = RunRegistry::new(dir.path());
    let run_id = unique_id("pidns");
    let mut worker = sleeper(&[(RUN_ID_ENV, &run_id)]);
    let path = write_record(
        dir.path(),
        &run_id,
        &EntryRecord {
            pid_ns: Some("pid:[1]".into()),
            ..record(&run_id, dead_pid(), 0)
        },
    );

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
    let path = write_record(
        dir.path(),
        &run_id,
        &EntryRecord {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..record(&run_id, host.pid(), start)
        },
    );

    let report = registry.sweep().expect("sweep");
    assert_eq!(report.runs.len(), 1, "{report:?}");
    assert_eq!(report.runs[0].run_id, run_id);
    assert!(!path.exists(), "entry of an earlier boot kept");
    // The host pid itself is never signalled: only processes with the run id.
    assert!(host.is_running());
}
