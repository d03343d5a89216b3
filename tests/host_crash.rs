//! The host itself killed with SIGKILL: its workers die with it (parent-death
//! signal) within two seconds, and the children they started, which have no
//! such signal, are ended by the next host's sweep of the run registry.
//!
//! One test in its own binary, so that no other runtime sweeps the registry
//! while it runs.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{children_of, pid_alive, read_env, showcase, wait_gone, wait_orphans_reaped};
use snakepit::{Snakepit, Telemetry};
use snakepit_actors::{RUN_ID_ENV, processes_with_run_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_host_leaves_no_python_behind() {
    let fixtures = common::fixtures_dir();
    let config =
        std::env::temp_dir().join(format!("snakepit-host-crash-{}.toml", std::process::id()));
    let mut f = std::fs::File::create(&config).unwrap();
    writeln!(
        f,
        "[[pools]]\nname = \"orphans\"\nsize = 2\nadapter = \"orphan_maker.OrphanMaker\"\npython_path = [{:?}]",
        fixtures.display().to_string()
    )
    .unwrap();
    drop(f);

    let mut host = common::snakepit_command()
        .args(["exec", "--config"])
        .arg(&config)
        .args(["spawn_and_sleep", "--args", r#"{"seconds": 120}"#])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host_pid = host.id();

    // Wait for both workers and the child one of them started.
    let until = Instant::now() + Duration::from_secs(60);
    let (workers, grandchild) = loop {
        assert!(
            Instant::now() < until,
            "the host never got its workers and their child up"
        );
        let workers = children_of(host_pid);
        let grandchildren: Vec<u32> = workers.iter().flat_map(|&w| children_of(w)).collect();
        if workers.len() == 2 && grandchildren.len() == 1 {
            break (workers, grandchildren[0]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run_id = read_env(workers[0], RUN_ID_ENV).expect("workers carry the run id");
    assert_eq!(
        read_env(grandchild, RUN_ID_ENV).as_deref(),
        Some(run_id.as_str())
    );

    host.kill().unwrap(); // SIGKILL
    host.wait().unwrap();
    let killed = Instant::now();
    for &worker in &workers {
        let left = Duration::from_secs(2).saturating_sub(killed.elapsed());
        wait_gone(worker, left, "a worker of the killed host").await;
    }
    // The child has no parent-death signal: it is still there, until the next
    // host sweeps the registry.
    assert!(
        pid_alive(grandchild),
        "expected the child to outlive its worker"
    );

    let telemetry = Telemetry::new();
    let mut events = telemetry.subscribe();
    let sp = Snakepit::builder()
        .telemetry(telemetry)
        .pool(showcase("after", 1))
        .start()
        .await
        .unwrap();
    let reaped = wait_orphans_reaped(&mut events, &run_id).await;
    assert_eq!(reaped.host_pid, host_pid);
    assert!(
        reaped.pids.contains(&grandchild),
        "reaped: {:?}",
        reaped.pids
    );
    assert!(reaped.survivors.is_empty());
    assert!(!pid_alive(grandchild));
    assert_eq!(processes_with_run_id(&run_id), Vec::<u32>::new());
    sp.shutdown().await;
    let _ = std::fs::remove_file(&config);
}
