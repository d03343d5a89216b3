//! What a sweep ends: dead runs and their groups, never a live run, another
//! run, another uid's process, or a run of another pid namespace.

use super::*;

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
