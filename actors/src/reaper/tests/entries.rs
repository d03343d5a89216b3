//! The registry's files: registering and releasing, records and their
//! versions, malformed and forged entries, and a directory open to others.

use super::*;

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

// A registry directory that cannot be created (here: under a regular file)
// is an I/O error, which the runtime logs and starts without, not a
// directory someone else controls.
#[test]
fn registry_dir_that_cannot_be_created_is_an_io_error() {
    let dir = TempDir::new("no-mkdir");
    let file = dir.path().join("a-file");
    fs::write(&file, b"").expect("write");
    let registry = RunRegistry::new(file.join("run"));
    let err = registry.prepare().expect_err("prepare");
    assert!(matches!(err, RegistryError::Io { .. }), "{err:?}");
}
