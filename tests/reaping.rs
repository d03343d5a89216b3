//! Children that leave their worker's process group (`start_new_session=True`,
//! `os.setsid()`) are still ended with it: they carry the worker's run and
//! worker id, and the worker sweeps by both once it has exited, the runtime by
//! its run id at shutdown, and the next host by a dead run's id at start.
//! Every child here is a real `sleep 600` started by a real worker.
//!
//! The host-crash test runs its host with a private registry directory, so
//! other runtimes of this binary never sweep its run.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    fixture_pool, pid_alive, read_env, stat_field, wait_event, wait_gone, wait_orphans_reaped,
};
use snakepit::{Call, Event, PoolConfig, Snakepit, Telemetry};
use snakepit_actors::{RUN_ID_ENV, WORKER_ID_ENV};

fn leaver(name: &str, size: usize) -> PoolConfig {
    fixture_pool(name, "session_leaver.SessionLeaver", size)
}

/// Calls `spawn_detached`; returns (child pid, worker pid).
async fn spawn_detached(pool: &snakepit::PoolHandle) -> (u32, u32) {
    let v = pool
        .execute(Call::new("spawn_detached"))
        .await
        .expect("spawn_detached");
    let pids: Vec<i64> = v.extract().expect("a list of two ints");
    (pids[0] as u32, pids[1] as u32)
}

/// `key` in the environment of `pid`; looks for up to a second, since a
/// process that has just exec'd may not show its environment yet.
fn env_of(pid: u32, key: &str) -> Option<String> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let found = read_env(pid, key);
        if found.is_some() || Instant::now() >= until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills `pid` with SIGKILL when dropped, so a failing test leaves no sleeper.
struct Cleanup(Vec<u32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid_alive(pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

// (a) kill -9 of a worker ends the child it started in a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_ends_its_children_in_another_session() {
    let s = common::start(leaver("leaver-kill", 1)).await;
    let pool = s.sp.default_pool().clone();
    let (child, worker) = spawn_detached(&pool).await;
    let _cleanup = Cleanup(vec![child]);
    // The session is field 6 of /proc/<pid>/stat.
    assert_ne!(
        stat_field(child, 6),
        stat_field(worker, 6),
        "the child left"
    );
    assert_eq!(env_of(child, RUN_ID_ENV).as_deref(), Some(s.sp.run_id()));
    assert!(env_of(child, WORKER_ID_ENV).is_some());

    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGKILL) }, 0);
    wait_gone(child, Duration::from_secs(3), "the killed worker's child").await;
    s.sp.shutdown().await;
}

// (c) A worker's exit ends its own children only: a sibling's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_spares_a_siblings_children() {
    let s = common::start(leaver("leaver-sibling", 2)).await;
    let pool = s.sp.default_pool().clone();
    // Two calls at once land on the two workers.
    let mut by_worker = std::collections::BTreeMap::<u32, Vec<u32>>::new();
    let mut all = Cleanup(Vec::new());
    for _ in 0..20 {
        let (a, b) = tokio::join!(spawn_detached(&pool), spawn_detached(&pool));
        for (child, worker) in [a, b] {
            all.0.push(child);
            by_worker.entry(worker).or_default().push(child);
        }
        if by_worker.len() == 2 {
            break;
        }
    }
    assert_eq!(by_worker.len(), 2, "calls never reached both workers");
    let mut workers = by_worker.into_iter();
    let (victim, victim_children) = workers.next().unwrap();
    let (_sibling, sibling_children) = workers.next().unwrap();

    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let mut events = s.sp.subscribe();
    for &child in &victim_children {
        wait_gone(child, Duration::from_secs(3), "the killed worker's child").await;
    }
    // The victim's replacement is up only after its sweep is over.
    wait_event(&mut events, Duration::from_secs(10), |e| {
        matches!(e, Event::WorkerReady(_))
    })
    .await;
    for &child in &sibling_children {
        assert!(pid_alive(child), "a sibling's child {child} was ended");
    }
    s.sp.shutdown().await;
}

// (b) A graceful shutdown ends them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_children_in_another_session() {
    let s = common::start(leaver("leaver-shutdown", 1)).await;
    let (child, _) = spawn_detached(s.sp.default_pool()).await;
    let _cleanup = Cleanup(vec![child]);
    let run_id = s.sp.run_id().to_string();
    let shut = Instant::now();
    s.sp.shutdown().await;
    wait_gone(
        child,
        Duration::from_secs(3).saturating_sub(shut.elapsed()),
        "the child after shutdown",
    )
    .await;
    assert_eq!(
        snakepit_actors::processes_with_run_id(&run_id),
        Vec::<u32>::new()
    );
}

// (d) A host killed with SIGKILL: its workers die with it, their children in
// another session do not, and the next start reaps them by the dead run's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_start_reaps_children_in_another_session_of_a_killed_host() {
    let home = std::env::temp_dir().join(format!("snakepit-reaping-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("config.toml");
    let venv = snakepit::python_env::PythonEnvConfig::default().venv;
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(
        f,
        "[python]\nvenv = {:?}\n\n[[pools]]\nname = \"leaver\"\nsize = 1\nadapter = \"session_leaver.SessionLeaver\"\npython_path = [{:?}]",
        venv.display().to_string(),
        common::fixtures_dir().display().to_string()
    )
    .unwrap();
    drop(f);

    let mut host = common::snakepit_command()
        .args(["exec", "--config"])
        .arg(&config)
        .args(["spawn_detached_and_sleep", "--args", r#"{"seconds": 120}"#])
        .env("SNAKEPIT_HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host_pid = host.id();

    // The child is the `sleep 600` carrying the host's worker as its parent.
    let until = Instant::now() + Duration::from_secs(60);
    let child = loop {
        assert!(Instant::now() < until, "the host never got its child up");
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c == b"sleep\x00600\x00")
                    && read_env(pid, "SNAKEPIT_HOME").as_deref() == home.to_str()
            });
        if let Some(pid) = found {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _cleanup = Cleanup(vec![child]);
    let run_id = env_of(child, RUN_ID_ENV).expect("the child carries the run id");
    // Its parent (field 4 of /proc/<pid>/stat), read while it is still the worker.
    let worker: u32 = stat_field(child, 4)
        .and_then(|ppid| ppid.parse().ok())
        .expect("the child's parent, the worker");

    host.kill().unwrap(); // SIGKILL
    host.wait().unwrap();
    wait_gone(worker, Duration::from_secs(2), "the killed host's worker").await;
    assert!(pid_alive(child), "expected the child to outlive its host");

    let telemetry = Telemetry::new();
    let mut events = telemetry.subscribe();
    let sp = Snakepit::builder()
        .telemetry(telemetry)
        .run_registry(home.join("run"))
        .pool(common::showcase("after-leaver", 1))
        .start()
        .await
        .unwrap();
    let reaped = wait_orphans_reaped(&mut events, &run_id).await;
    assert_eq!(reaped.host_pid, host_pid);
    assert!(reaped.pids.contains(&child), "reaped: {:?}", reaped.pids);
    assert!(!pid_alive(child));
    sp.shutdown().await;
    let _ = std::fs::remove_dir_all(&home);
}

// A registry directory others may write is refused at start, with a typed
// error, before any worker runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_a_registry_dir_open_to_others() {
    use std::os::unix::fs::PermissionsExt;

    let dir = std::env::temp_dir().join(format!("snakepit-open-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let started = Snakepit::builder()
        .run_registry(&dir)
        .pool(common::showcase("refused", 1))
        .start()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    match started {
        Err(snakepit::Error::UntrustedPath(untrusted)) => {
            assert_eq!(untrusted.path, dir);
            assert_eq!(
                untrusted.reason,
                snakepit_actors::Untrusted::Writable { mode: 0o777 }
            );
        }
        Err(other) => panic!("expected UntrustedPath, got {other:?}"),
        Ok(sp) => {
            sp.shutdown().await;
            panic!("a runtime started with a registry directory open to others");
        }
    }
}
