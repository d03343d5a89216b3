//! Remote workers: a host (this test process, embedding snakepit, or the
//! `snakepit serve` binary) and node agents (`snakepit agent`, separate
//! processes) on loopback. Calls, streams, strict sessions, refs and host
//! tools across two agents; kill -9 of a worker and of an agent; a
//! partition made by a TCP proxy that stops forwarding without closing;
//! SIGTERM drains; a wrong token.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::{line_channel, pid_alive, snakepit_command, stat_field, wait_event};
use serde_json::json;
use snakepit::server::Token;
use snakepit::telemetry::ExitCause;
use snakepit::{
    Affinity, AttachConfig, Error, Event, Ffi, HostArgs, HostCallContext, HostTool, PoolConfig,
    Snakepit, Telemetry, Value,
};
use tokio::sync::broadcast;

/// The links' liveness timeout in these tests (heartbeat a fifth of it).
const LIVENESS: Duration = Duration::from_millis(1000);
/// Slack over it for a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(700);
const WAIT: Duration = Duration::from_secs(20);

struct Host {
    sp: Snakepit,
    events: broadcast::Receiver<Event>,
    /// Where agents dial: `http://127.0.0.1:PORT`.
    url: String,
}

fn remote_pool(name: &str, size: usize) -> PoolConfig {
    let mut cfg = common::showcase(name, size);
    cfg.remote = true;
    cfg.call_timeout = std::time::Duration::from_millis(20_000);
    cfg
}

async fn host(pools: Vec<PoolConfig>, token: Option<&str>) -> Host {
    let telemetry = Telemetry::new();
    let events = telemetry.subscribe();
    let mut attach =
        AttachConfig::new("127.0.0.1:0".parse().unwrap()).liveness(LIVENESS / 5, LIVENESS);
    if let Some(token) = token {
        attach = attach.token(Token::new(token).unwrap());
    }
    let mut builder = Snakepit::builder().telemetry(telemetry).attach(attach);
    for pool in pools {
        builder = builder.pool(pool);
    }
    let sp = builder.start().await.expect("the host starts");
    let url = format!("http://{}", sp.attach_addr().await.expect("listens"));
    Host { sp, events, url }
}

/// An agent process; killed when dropped.
struct Agent {
    child: Child,
    stderr: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line of its stderr that holds `text`.
    fn wait_line(&mut self, text: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match self
                .stderr
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("the agent never said `{text}`: {seen:#?}"),
            }
        }
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for its exit; its status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the agent did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter the tests' host uses, for the agents' `[python]`.
fn python() -> PathBuf {
    common::pythons::default_env().python
}

/// Starts `snakepit agent` for `pool` with `workers` workers at `url`.
fn agent(url: &str, pool: &str, workers: u32, id: &str, extra: &[&str]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[python]\ninterpreter = {:?}\n\n[[pools]]\nname = {pool:?}\nadapter = {:?}\n",
            python(),
            snakepit::SHOWCASE_ADAPTER
        ),
    )
    .unwrap();
    let workers = workers.to_string();
    let mut command = snakepit_command();
    command
        .args(["agent", "--connect", url, "--pool", pool, "--workers"])
        .arg(&workers)
        .args(["--agent-id", id, "--config"])
        .arg(&config)
        .args(extra)
        .env("SNAKEPIT_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the agent");
    let stderr = line_channel(child.stderr.take().unwrap());
    Agent {
        child,
        stderr,
        _dir: dir,
    }
}

/// Starts an agent and waits until it attached.
fn attached(url: &str, pool: &str, workers: u32, id: &str) -> Agent {
    let mut a = agent(url, pool, workers, id, &[]);
    a.wait_line("snakepit: agent attached", WAIT);
    a
}

async fn ready(sp: &Snakepit, pool: &str, n: usize) -> snakepit::PoolStatus {
    common::poll_status_within(sp.pool(pool).unwrap(), WAIT, |s| s.workers_up == n).await
}

/// The pool `gpu` has `workers` ready and answers a call.
async fn serves(h: &Host, workers: usize) {
    ready(&h.sp, "gpu", workers).await;
    assert_eq!(
        h.sp.execute("add", json!({"a": 2, "b": 3})).await.unwrap(),
        Value::Int(5)
    );
}

/// The agents the pool's ready workers run on.
fn agents_of(status: &snakepit::PoolStatus) -> BTreeSet<String> {
    status
        .workers
        .iter()
        .filter(|w| w.ready)
        .filter_map(|w| w.agent.clone())
        .collect()
}

fn parent_of(pid: u32) -> u32 {
    stat_field(pid, 4).and_then(|p| p.parse().ok()).unwrap_or(0)
}

fn int(v: Value) -> i64 {
    i64::try_from(v).expect("an int")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_streams_sessions_refs_and_host_tools_run_across_two_agents() {
    let mut pool = remote_pool("gpu", 4);
    pool.affinity = Affinity::StrictQueue;
    let h = host(vec![pool], None).await;
    h.sp.register_host_tool(HostTool::new(
        "double",
        |_ctx: HostCallContext, args: HostArgs| async move {
            let n = i64::try_from(args.require("n")?.clone()).unwrap_or(0);
            Ok(Value::Int(n * 2))
        },
    ))
    .unwrap();
    let a = attached(&h.url, "gpu", 2, "node-a");
    let b = attached(&h.url, "gpu", 2, "node-b");
    let status = ready(&h.sp, "gpu", 4).await;
    assert!(status.remote);
    assert_eq!(
        agents_of(&status),
        BTreeSet::from(["node-a".to_string(), "node-b".to_string()]),
        "both agents run workers: {status:?}"
    );
    for w in &status.workers {
        let pid = w.pid.expect("a remote worker has its pid");
        let agent_pid = if w.agent.as_deref() == Some("node-a") {
            a.pid()
        } else {
            b.pid()
        };
        assert_eq!(
            parent_of(pid),
            agent_pid,
            "{} is a child of its agent",
            w.id
        );
        assert!(w.id.ends_with(&format!("@{}", w.agent.as_deref().unwrap())));
    }

    // Calls, in parallel, land on both agents' workers.
    let calls = (0..64).map(|i| {
        let sp = h.sp.clone();
        async move { sp.execute("add", json!({"a": i, "b": 1})).await }
    });
    let sums = futures::future::join_all(calls).await;
    for (i, sum) in sums.into_iter().enumerate() {
        assert_eq!(sum.expect("a remote call"), Value::Int(i as i64 + 1));
    }
    let done = h.sp.pool("gpu").unwrap().status().await.unwrap();
    let busy: BTreeSet<_> = done
        .workers
        .iter()
        .filter(|w| w.completed > 0)
        .filter_map(|w| w.agent.clone())
        .collect();
    assert_eq!(busy.len(), 2, "calls ran on both agents: {done:?}");

    // A stream, in order.
    use futures::StreamExt;
    let chunks: Vec<_> =
        h.sp.execute_stream("progress", json!({"steps": 20, "delay_ms": 1}))
            .await
            .unwrap()
            .collect()
            .await;
    assert_eq!(chunks.len(), 20);
    for (i, c) in chunks.into_iter().enumerate() {
        assert_eq!(c.expect("a chunk").seq, i as u64);
    }

    // A strict session keeps its state on one remote worker.
    let session = h.sp.new_session().await.unwrap();
    for n in 1..=5 {
        assert_eq!(
            int(session.execute("tally", json!({"n": 1})).await.unwrap()),
            n
        );
    }
    let pid: i64 = int(session.call("os", "getpid", (), ()).await.unwrap());
    let parent = parent_of(pid as u32);
    assert!(
        parent == a.pid() || parent == b.pid(),
        "the session's worker is an agent's child"
    );

    // A ref lives on a remote worker; its id names the agent.
    let path = match session
        .call("pathlib", "Path", ["/tmp/x.txt"], ())
        .await
        .unwrap()
    {
        Value::Ref(r) => r,
        other => panic!("expected a ref, got {other:?}"),
    };
    assert!(path.id.contains("@node-"), "{}", path.id);
    let name: String = String::try_from(session.attr(&path, "name").await.unwrap()).unwrap();
    assert_eq!(name, "x.txt");
    let upper = session
        .method(&path, "with_suffix", [".csv"], ())
        .await
        .unwrap();
    assert!(matches!(upper, Value::Ref(_)));

    // Python calls a host tool back over the link.
    let doubled = session
        .execute("ask_host", json!({"name": "double", "kwargs": {"n": 21}}))
        .await
        .unwrap();
    assert_eq!(doubled, Value::Int(42));
    session.release().await.unwrap();
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_started_again_by_its_agent_and_no_call_is_lost() {
    let mut h = host(vec![remote_pool("gpu", 2)], None).await;
    let a = attached(&h.url, "gpu", 3, "node-a");
    let status = ready(&h.sp, "gpu", 2).await;
    let victim = status.workers[0].clone();
    let pid = victim.pid.unwrap();
    assert_eq!(parent_of(pid), a.pid());

    // Load while the worker dies: every call is answered, typed.
    let load: Vec<_> = (0..40)
        .map(|i| {
            let sp = h.sp.clone();
            tokio::spawn(async move {
                let call = sp.execute("sleep", json!({"ms": 20 + i % 5}));
                tokio::time::timeout(Duration::from_secs(15), call).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut crashed = 0;
    for task in load {
        match task.await.unwrap().expect("no call hangs") {
            Ok(_) => {}
            Err(Error::WorkerCrashed { worker, .. }) => {
                assert_eq!(worker, victim.id);
                crashed += 1;
            }
            Err(other) => panic!("an untyped failure: {other:?}"),
        }
    }
    // Only the calls sent to the killed worker fail: the one it ran and
    // those pipelined behind it.
    let sent = 1 + PoolConfig::default().pipeline_depth as usize;
    assert!(
        crashed <= sent,
        "{crashed} calls failed, more than the {sent} on the killed worker"
    );
    wait_event(&mut h.events, WAIT, |e| {
        matches!(e, Event::WorkerExited(x) if x.worker == victim.id && x.cause == ExitCause::Crashed)
    })
    .await;
    let again = wait_event(&mut h.events, WAIT, |e| {
        matches!(e, Event::WorkerReady(r) if r.worker.ends_with("@node-a") && r.worker != victim.id)
    })
    .await;
    let Event::WorkerReady(again) = again else {
        unreachable!()
    };
    assert_ne!(again.pid, pid);
    assert_eq!(
        parent_of(again.pid),
        a.pid(),
        "the agent started the new worker"
    );
    serves(&h, 2).await;
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_fails_its_calls_typed_within_the_liveness_timeout() {
    let mut pool = remote_pool("gpu", 2);
    pool.affinity = Affinity::StrictQueue;
    let mut h = host(vec![pool], None).await;
    let mut a = attached(&h.url, "gpu", 2, "node-a");
    let status = ready(&h.sp, "gpu", 2).await;
    let pids: Vec<u32> = status.workers.iter().filter_map(|w| w.pid).collect();
    let session = h.sp.new_session().await.unwrap();
    assert_eq!(
        int(session.execute("tally", json!({"n": 1})).await.unwrap()),
        1
    );

    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let sp = h.sp.clone();
            tokio::spawn(async move { sp.execute("sleep", json!({"ms": 5000})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    a.signal(libc::SIGKILL);
    for task in in_flight {
        let result = tokio::time::timeout(LIVENESS + SLACK, task)
            .await
            .expect("answered within the liveness timeout")
            .unwrap();
        match result {
            Err(Error::WorkerCrashed { detail, .. }) => {
                let detail = detail.unwrap_or_default();
                assert!(
                    detail.contains("node-a"),
                    "the error names the agent: {detail}"
                );
            }
            Err(Error::PoolDegraded { .. }) => {}
            other => panic!("expected a typed failure, got {other:?}"),
        }
    }
    assert!(killed.elapsed() < LIVENESS + SLACK);
    for pid in pids {
        common::wait_gone(pid, Duration::from_secs(2), "the dead agent's worker").await;
    }
    let detached = wait_event(&mut h.events, WAIT, |e| {
        matches!(e, Event::AgentDetached(_))
    })
    .await;
    let Event::AgentDetached(d) = detached else {
        unreachable!()
    };
    assert_eq!(d.detached.agent, "node-a");
    a.wait_exit(Duration::from_secs(1));

    // No agent: the next call fails at once, typed.
    let t0 = Instant::now();
    match h.sp.execute("add", json!({"a": 2, "b": 3})).await {
        Err(Error::PoolDegraded { last_error, .. }) => {
            assert!(last_error.unwrap_or_default().contains("no node agent"));
        }
        other => panic!("expected PoolDegraded, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert!(h.sp.pool("gpu").unwrap().status().await.unwrap().degraded);

    // A new agent makes it work again; the strict session's state went
    // with the dead agent's worker, and it says so.
    let _b = attached(&h.url, "gpu", 2, "node-b");
    serves(&h, 2).await;
    match session.execute("tally", json!({"n": 1})).await {
        Err(Error::SessionWorkerUnavailable { worker, .. }) => {
            assert!(worker.ends_with("@node-a"), "{worker}")
        }
        other => panic!("expected SessionWorkerUnavailable, got {other:?}"),
    }
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agents_slots_move_at_once_to_spare_seats_and_calls_wait_for_them() {
    let mut h = host(vec![remote_pool("gpu", 2)], None).await;
    let mut a = attached(&h.url, "gpu", 2, "node-a");
    let status = ready(&h.sp, "gpu", 2).await;
    assert_eq!(agents_of(&status), BTreeSet::from(["node-a".to_string()]));
    // A spare: its seats wait.
    let _b = attached(&h.url, "gpu", 2, "node-b");
    // An idempotent call in flight on the agent about to die runs again on
    // the spare; one that is not fails typed.
    let call = |idempotent: bool| {
        let pool = h.sp.pool("gpu").unwrap().clone();
        tokio::spawn(async move {
            let call = snakepit::Call::new("sleep").kwarg("ms", 400);
            pool.execute(call.idempotent(idempotent)).await
        })
    };
    let (again, once) = (call(true), call(false));
    common::poll_status_within(h.sp.pool("gpu").unwrap(), WAIT, |s| s.in_flight == 2).await;
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(2));
    assert_eq!(
        again.await.unwrap().expect("retried on the spare"),
        Value::Int(400)
    );
    match once.await.unwrap() {
        Err(Error::WorkerCrashed { detail, .. }) => {
            assert!(detail.unwrap_or_default().contains("node-a"))
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    // Once the pool knows the workers are gone (a call sent to one in the
    // instant before would fail WorkerCrashed, as for a local crash).
    for _ in 0..2 {
        wait_event(
            &mut h.events,
            WAIT,
            |e| matches!(e, Event::WorkerExited(x) if x.worker.ends_with("@node-a")),
        )
        .await;
    }
    // Calls made while the slots move are queued, not refused: a seat is free.
    let calls = (0..8).map(|i| {
        let sp = h.sp.clone();
        async move { sp.execute("add", json!({"a": i, "b": 1})).await }
    });
    for (i, sum) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(sum.expect("served by the spare"), Value::Int(i as i64 + 1));
    }
    let status = ready(&h.sp, "gpu", 2).await;
    assert_eq!(agents_of(&status), BTreeSet::from(["node-b".to_string()]));
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_larger_than_the_window_cross_the_link_both_ways() {
    let h = host(vec![remote_pool("gpu", 2)], None).await;
    let _a = attached(&h.url, "gpu", 2, "node-w");
    ready(&h.sp, "gpu", 2).await;
    // 12 MiB each way, and 20 MB from Python alone, on both workers at
    // once: more than the 8 MiB window, so the credits must flow.
    let text = "x".repeat(12 << 20);
    let calls = (0..2).map(|_| {
        let sp = h.sp.clone();
        let text = text.clone();
        async move {
            let echoed = sp.execute("echo", json!({ "message": text })).await;
            let bytes = sp.execute("random_bytes", json!({"n": 20_000_000})).await;
            (echoed, bytes)
        }
    });
    for (echoed, bytes) in futures::future::join_all(calls).await {
        match echoed.expect("a 12 MiB echo") {
            Value::Str(s) => assert_eq!(s.len(), text.len()),
            other => panic!("expected the text back, got {:?}", other.type_name()),
        }
        match bytes.expect("20 MB of bytes") {
            Value::Bytes(b) => assert_eq!(b.len(), 20_000_000),
            other => panic!("expected bytes, got {:?}", other.type_name()),
        }
    }
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_reading_does_not_hold_up_the_others() {
    let h = host(vec![remote_pool("gpu", 2)], None).await;
    let _a = attached(&h.url, "gpu", 2, "node-f");
    ready(&h.sp, "gpu", 2).await;
    let pool = h.sp.pool("gpu").unwrap().clone();
    // One worker is busy for a moment; the other is frozen and gets a
    // payload larger than its window: it cannot read it.
    let sp = h.sp.clone();
    let busy = tokio::spawn(async move { sp.execute("sleep", json!({"ms": 300})).await });
    let status = common::poll_status_within(&pool, WAIT, |s| s.in_flight == 1).await;
    let frozen = status
        .workers
        .iter()
        .find(|w| w.in_flight == 0)
        .expect("an idle worker")
        .clone();
    let pid = frozen.pid.unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let sp = h.sp.clone();
    let big = "y".repeat(20 << 20);
    let stuck = tokio::spawn(async move { sp.execute("echo", json!({ "message": big })).await });
    common::poll_status_within(&pool, WAIT, |s| {
        s.workers
            .iter()
            .any(|w| w.id == frozen.id && w.in_flight == 1)
    })
    .await;
    assert_eq!(busy.await.unwrap().unwrap(), Value::Int(300));

    // The other worker keeps answering at once, over the same link.
    let t0 = Instant::now();
    for i in 0..50 {
        let sum = h.sp.execute("add", json!({"a": i, "b": 1})).await.unwrap();
        assert_eq!(sum, Value::Int(i + 1));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "50 calls took {:?} beside a stalled worker",
        t0.elapsed()
    );
    assert!(
        !stuck.is_finished(),
        "the frozen worker cannot have answered"
    );

    // Thawed, it reads the rest: the window's credits flow again.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    match stuck.await.unwrap().expect("the stalled call completes") {
        Value::Str(s) => assert_eq!(s.len(), 20 << 20),
        other => panic!("expected the text back, got {}", other.type_name()),
    }
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_only_an_agent_with_a_certificate_of_the_ca_attaches() {
    let dir = tempfile::tempdir().unwrap();
    let tls = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(tls("host.pem"), certified.cert.pem()).unwrap();
    std::fs::write(tls("host.key"), certified.signing_key.serialize_pem()).unwrap();
    let (ca, client_pem, client_key) = {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["agent".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    };
    std::fs::write(tls("ca.pem"), ca).unwrap();
    std::fs::write(tls("agent.pem"), client_pem).unwrap();
    std::fs::write(tls("agent.key"), client_key).unwrap();

    let telemetry = Telemetry::new();
    let attach = AttachConfig::new("127.0.0.1:0".parse().unwrap())
        .liveness(LIVENESS / 5, LIVENESS)
        .tls(tls("host.pem"), tls("host.key"))
        .client_ca(tls("ca.pem"));
    let sp = Snakepit::builder()
        .telemetry(telemetry)
        .attach(attach)
        .pool(remote_pool("gpu", 1))
        .start()
        .await
        .unwrap();
    let port = sp.attach_addr().await.unwrap().to_string();
    let url = format!("https://localhost:{}", port.rsplit_once(':').unwrap().1);
    let server_ca = tls("host.pem");

    // Without a certificate of the CA the handshake fails: it never attaches.
    let mut stranger = agent(&url, "gpu", 1, "node-s", &["--ca", &server_ca]);
    // (TLS 1.3 refuses the missing certificate after the handshake: the
    // call fails, not the connect.)
    let warned = stranger.wait_line("dialing again", WAIT);
    stranger.wait_line("dialing again", WAIT);
    assert!(
        stranger.child.try_wait().unwrap().is_none(),
        "it keeps dialing"
    );
    assert!(sp.agents().is_empty(), "{warned}");
    drop(stranger);

    let mut a = agent(
        &url,
        "gpu",
        1,
        "node-m",
        &[
            "--ca",
            &server_ca,
            "--cert",
            &tls("agent.pem"),
            "--key",
            &tls("agent.key"),
        ],
    );
    a.wait_line("snakepit: agent attached", WAIT);
    ready(&sp, "gpu", 1).await;
    assert_eq!(
        sp.execute("add", json!({"a": 2, "b": 3})).await.unwrap(),
        Value::Int(5)
    );
    sp.shutdown().await;
}

/// A TCP proxy that forwards until told to stop, and then holds every byte
/// (and every new connection) without closing anything: a partition.
struct Proxy {
    addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let f = f.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    while f.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, f.clone()));
                    pump(sr, cw, f).await;
                });
            }
        });
        Self { addr, frozen }
    }

    fn freeze(&self, yes: bool) {
        self.frozen.store(yes, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`; once frozen, holds everything forever (this
/// connection stays frozen even if the proxy resumes).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Keep both ends open, move nothing.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_found_within_the_liveness_timeout_and_the_agent_comes_back() {
    let mut h = host(vec![remote_pool("gpu", 2)], None).await;
    let proxy = Proxy::start(&h.url).await;
    let mut a = agent(&format!("http://{}", proxy.addr), "gpu", 2, "node-p", &[]);
    a.wait_line("snakepit: agent attached", WAIT);
    ready(&h.sp, "gpu", 2).await;

    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let sp = h.sp.clone();
            tokio::spawn(async move { sp.execute("sleep", json!({"ms": 8000})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.freeze(true);
    let frozen = Instant::now();
    for task in in_flight {
        let result = tokio::time::timeout(LIVENESS + SLACK + Duration::from_millis(300), task)
            .await
            .expect("a partition is found within the liveness timeout, not the call timeout")
            .unwrap();
        assert!(
            matches!(result, Err(Error::WorkerCrashed { .. })),
            "typed: {result:?}"
        );
    }
    let detached = wait_event(&mut h.events, WAIT, |e| {
        matches!(e, Event::AgentDetached(_))
    })
    .await;
    let Event::AgentDetached(d) = detached else {
        unreachable!()
    };
    assert_eq!(d.detached.cause, "timeout", "{:?}", d.detached);
    assert!(frozen.elapsed() < LIVENESS + SLACK + Duration::from_millis(300));
    match h.sp.execute("add", json!({"a": 1, "b": 1})).await {
        Err(Error::PoolDegraded { .. }) => {}
        other => panic!("expected PoolDegraded while partitioned, got {other:?}"),
    }

    // The network heals: the agent dials again, registers fresh.
    proxy.freeze(false);
    let back = wait_event(
        &mut h.events,
        WAIT,
        |e| matches!(e, Event::AgentAttached(x) if x.agent.id == "node-p"),
    )
    .await;
    let Event::AgentAttached(back) = back else {
        unreachable!()
    };
    assert!(back.agent.reconnects >= 1, "{:?}", back.agent);
    serves(&h, 2).await;
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_agent_and_its_calls_complete() {
    let mut h = host(vec![remote_pool("gpu", 2)], None).await;
    let mut a = attached(&h.url, "gpu", 2, "node-d");
    let status = ready(&h.sp, "gpu", 2).await;
    let ids: BTreeSet<String> = status.workers.iter().map(|w| w.id.clone()).collect();
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let sp = h.sp.clone();
            tokio::spawn(async move { sp.execute("sleep", json!({"ms": 800})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.signal(libc::SIGTERM);
    a.wait_line("snakepit: agent draining", WAIT);
    for task in in_flight {
        assert_eq!(
            task.await.unwrap().expect("a drained call completes"),
            Value::Int(800)
        );
    }
    a.wait_line("snakepit: agent drained", WAIT);
    assert!(a.wait_exit(Duration::from_secs(5)).success());
    let mut causes = Vec::new();
    while causes.len() < ids.len() {
        let e = wait_event(
            &mut h.events,
            WAIT,
            |e| matches!(e, Event::WorkerExited(x) if ids.contains(&x.worker)),
        )
        .await;
        if let Event::WorkerExited(x) = e {
            causes.push(x.cause);
        }
    }
    assert!(
        causes.iter().all(|c| *c == ExitCause::Drained),
        "drained, not failed: {causes:?}"
    );
    h.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_counted() {
    let mut h = host(vec![remote_pool("gpu", 1)], Some("s3cret")).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let mut a = agent(
        &h.url,
        "gpu",
        1,
        "node-x",
        &["--token-file", wrong.to_str().unwrap()],
    );
    let status = a.wait_exit(WAIT);
    assert!(!status.success());
    let said = a.wait_line("error:", WAIT);
    assert!(said.contains("Unauthenticated"), "{said}");
    let refused = wait_event(&mut h.events, WAIT, |e| {
        matches!(e, Event::GrpcUnauthenticated(_))
    })
    .await;
    let Event::GrpcUnauthenticated(r) = refused else {
        unreachable!()
    };
    assert_eq!((r.method, r.reason), ("Attach", "invalid"));
    assert!(h.sp.agents().is_empty());

    let right = dir.path().join("right");
    std::fs::write(&right, "s3cret\n").unwrap();
    let mut ok = agent(
        &h.url,
        "gpu",
        1,
        "node-y",
        &["--token-file", right.to_str().unwrap()],
    );
    ok.wait_line("snakepit: agent attached", WAIT);
    ready(&h.sp, "gpu", 1).await;
    h.sp.shutdown().await;
}

#[test]
fn the_serve_binary_runs_calls_on_an_agents_workers() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let port = free_port();
    let api = free_port();
    let host_toml = dir.path().join("host.toml");
    std::fs::write(
        &host_toml,
        format!(
            "[python]\ninterpreter = {:?}\n\n[server]\nlisten = \"127.0.0.1:{api}\"\n\n\
             [remote]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\n\
             liveness_timeout_ms = 1000\nheartbeat_ms = 200\n\n\
             [[pools]]\nname = \"gpu\"\nsize = 2\nremote = true\n",
            python(),
            token
        ),
    )
    .unwrap();
    let mut serve = snakepit_command()
        .args(["serve", "--config"])
        .arg(&host_toml)
        .env("SNAKEPIT_HOME", dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let serve_err = line_channel(serve.stderr.take().unwrap());
    let (addr, _) = common::wait_serving(&mut serve, &serve_err, WAIT);
    let url = format!("http://127.0.0.1:{port}");
    let token_arg = token.to_str().unwrap().to_string();
    let mut a = agent(&url, "gpu", 2, "node-s", &["--token-file", &token_arg]);
    a.wait_line("snakepit: agent attached", WAIT);
    let exec = || {
        common::run_snakepit(
            &[
                "exec",
                "--server",
                &addr,
                "add",
                "--args",
                r#"{"a":2,"b":3}"#,
            ],
            Duration::from_secs(20),
        )
    };
    // The agent's workers start after it attached: try until one answers.
    let prints_5_once_ready = || {
        let until = Instant::now() + WAIT;
        let out = loop {
            let out = exec();
            if out.status.success() || Instant::now() > until {
                break out;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5", "{out:?}");
    };
    prints_5_once_ready();
    // Its workers are the agent's children, not the host's.
    let agent_children = common::children_of(a.pid());
    assert_eq!(agent_children.len(), 2, "{agent_children:?}");
    assert!(common::children_of(serve.id()).is_empty());

    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(1));
    let t0 = Instant::now();
    let failed = exec();
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("degraded")
            || String::from_utf8_lossy(&failed.stderr).contains("crashed"),
        "{failed:?}"
    );
    assert!(t0.elapsed() < LIVENESS + Duration::from_secs(2));
    for pid in agent_children {
        assert!(
            !pid_alive(pid) || {
                std::thread::sleep(Duration::from_secs(2));
                !pid_alive(pid)
            }
        );
    }

    let mut b = agent(&url, "gpu", 2, "node-t", &["--token-file", &token_arg]);
    b.wait_line("snakepit: agent attached", WAIT);
    prints_5_once_ready();
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_health_port_reflects_its_link_and_workers() {
    let h = host(vec![remote_pool("gpu", 1)], None).await;
    let health = format!("127.0.0.1:{}", free_port());
    let health_addr: std::net::SocketAddr = health.parse().unwrap();
    // First it dials a port nobody listens on: alive, not ready.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut lonely = agent(&nowhere, "gpu", 1, "node-h", &["--health-addr", &health]);
    let until = Instant::now() + WAIT;
    while std::net::TcpStream::connect(&health).is_err() {
        assert!(Instant::now() < until, "the health port never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(common::http_get(health_addr, "/healthz").await.0, 200);
    assert_eq!(common::http_get(health_addr, "/readyz").await.0, 503);
    assert_eq!(common::http_get(health_addr, "/nope").await.0, 404);
    lonely.signal(libc::SIGTERM);
    assert!(
        lonely.wait_exit(WAIT).success(),
        "a SIGTERM while dialing ends it"
    );
    drop(lonely);

    let mut a = agent(&h.url, "gpu", 1, "node-h", &["--health-addr", &health]);
    a.wait_line("snakepit: agent attached", WAIT);
    ready(&h.sp, "gpu", 1).await;
    let until = Instant::now() + WAIT;
    while common::http_get(health_addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < until, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, metrics) = common::http_get(health_addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("snakepit_agent_link_up 1"), "{metrics}");
    assert!(
        metrics.contains("snakepit_agent_local_workers{state=\"ready\"} 1"),
        "{metrics}"
    );
    a.signal(libc::SIGTERM);
    a.wait_line("snakepit: agent draining", WAIT);
    assert!(a.wait_exit(WAIT).success());
    h.sp.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
