//! Shared helpers for the integration tests: pools of real Python workers,
//! telemetry waits with timeouts, fixture paths.
#![allow(dead_code)]

pub mod pythons;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use snakepit::telemetry::OrphansReaped;
use snakepit::{Event, PoolConfig, Snakepit, Telemetry};
use tokio::sync::broadcast;

/// Absolute path of `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A showcase pool of `size` workers named `name`.
pub fn showcase(name: &str, size: usize) -> PoolConfig {
    let mut cfg = PoolConfig::named(name);
    cfg.size = size;
    // Restarts in tests should be quick.
    cfg.restart.backoff_initial = std::time::Duration::from_millis(20);
    cfg.restart.backoff_max = std::time::Duration::from_millis(200);
    cfg
}

/// A pool running `adapter` from `tests/fixtures`.
pub fn fixture_pool(name: &str, adapter: &str, size: usize) -> PoolConfig {
    let mut cfg = showcase(name, size);
    cfg.adapter = adapter.to_string();
    cfg.python_path = vec![fixtures_dir()];
    cfg
}

/// A started runtime with one pool, plus a telemetry receiver subscribed
/// before the first worker was spawned.
pub struct Started {
    pub sp: Snakepit,
    pub events: broadcast::Receiver<Event>,
}

pub async fn start(cfg: PoolConfig) -> Started {
    try_start(cfg).await.expect("runtime starts")
}

pub async fn try_start(cfg: PoolConfig) -> Result<Started, snakepit::Error> {
    let telemetry = Telemetry::new();
    let events = telemetry.subscribe();
    let sp = Snakepit::builder()
        .telemetry(telemetry)
        .pool(cfg)
        .start()
        .await?;
    Ok(Started { sp, events })
}

/// Waits (at most `timeout`) for an event matching `pred`, skipping others.
pub async fn wait_event<F>(
    rx: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    mut pred: F,
) -> Event
where
    F: FnMut(&Event) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("telemetry closed"),
            Err(_) => panic!("no matching event within {timeout:?}"),
        }
    }
}

/// Polls `status()` (50 × 20 ms at most) until `pred` holds; panics otherwise.
pub async fn poll_status<F>(pool: &snakepit::PoolHandle, pred: F) -> snakepit::PoolStatus
where
    F: FnMut(&snakepit::PoolStatus) -> bool,
{
    poll_status_within(pool, Duration::from_secs(1), pred).await
}

/// Polls `status()` (every 20 ms, `within / 20 ms` times at most) until
/// `pred` holds; panics otherwise.
pub async fn poll_status_within<F>(
    pool: &snakepit::PoolHandle,
    within: Duration,
    mut pred: F,
) -> snakepit::PoolStatus
where
    F: FnMut(&snakepit::PoolStatus) -> bool,
{
    const EVERY: Duration = Duration::from_millis(20);
    let mut last = None;
    for _ in 0..within.as_millis().div_ceil(EVERY.as_millis()).max(1) {
        let st = pool.status().await.expect("status");
        if pred(&st) {
            return st;
        }
        last = Some(st);
        tokio::time::sleep(EVERY).await;
    }
    panic!("pool status never matched within {within:?}; last: {last:?}");
}

/// `add(a, b)` on `pool`, as an i64.
pub async fn add(pool: &snakepit::PoolHandle, a: i64, b: i64) -> i64 {
    let v = pool
        .execute(snakepit::Call::new("add").kwarg("a", a).kwarg("b", b))
        .await
        .expect("add succeeds");
    i64::try_from(v).expect("add returns an int")
}

/// Whether process `pid` is alive (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
    }
}

/// `value[key]` for a `dict` result; panics naming what is missing.
pub fn field<'a>(value: &'a snakepit::Value, key: &str) -> &'a snakepit::Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {value:?}"))
}

/// Field `index` of `/proc/<pid>/stat`, numbered from 1 as in proc(5); only
/// fields from 3 (state) on, those after the parenthesised command name.
pub fn stat_field(pid: u32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .nth(index.checked_sub(3)?)
        .map(str::to_string)
}

/// The live processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 4).is_some_and(|ppid| ppid == parent.to_string()))
        .filter(|&pid| pid_alive(pid))
        .collect()
}

/// `key` in the environment process `pid` started with.
pub fn read_env(pid: u32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|e| std::str::from_utf8(e).ok())
        .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("the process's statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages in statm");
    // SAFETY: sysconf has no memory-safety preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Waits until process `pid` (`what`, for the panic) is gone; panics if it
/// is still alive after `within`.
pub async fn wait_gone(pid: u32, within: Duration, what: &str) {
    let until = Instant::now() + within;
    while pid_alive(pid) {
        assert!(
            Instant::now() < until,
            "{what} (pid {pid}) still alive after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (1 s at most) for the reaper's report on the dead run `run_id`.
pub async fn wait_orphans_reaped(
    events: &mut broadcast::Receiver<Event>,
    run_id: &str,
) -> OrphansReaped {
    let Event::OrphansReaped(reaped) = wait_event(
        events,
        Duration::from_secs(1),
        |e| matches!(e, Event::OrphansReaped(r) if r.run_id == run_id),
    )
    .await
    else {
        unreachable!()
    };
    reaped
}

/// The built `snakepit` binary.
pub fn snakepit_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_snakepit"))
}

/// A `snakepit` command run from the package root, its stdin closed.
pub fn snakepit_command() -> std::process::Command {
    let mut command = std::process::Command::new(snakepit_binary());
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::null());
    command
}

/// The lines of `from`, read to its end on a thread of their own: the child
/// writing them never blocks on a full pipe, even after the receiver is gone.
pub fn line_channel(
    from: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for the ready line of `snakepit serve` among `stderr`'s lines (see
/// [`line_channel`]): the address it serves on, and every line before it.
/// Kills `child` and panics when none comes within `within`.
pub fn wait_serving(
    child: &mut std::process::Child,
    stderr: &std::sync::mpsc::Receiver<String>,
    within: Duration,
) -> (String, Vec<String>) {
    let until = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) => match line.strip_prefix("snakepit: serving on ") {
                Some(addr) => return (addr.trim().to_string(), seen),
                None => seen.push(line),
            },
            Err(_) => {
                let _ = child.kill();
                panic!("snakepit serve did not say it serves within {within:?}: {seen:#?}");
            }
        }
    }
}

/// `snakepit args` from the package root, killed if it outlives `limit`.
/// Its output goes to files, not pipes: a command may print more than a
/// pipe holds (megabytes of generated code) while nobody reads it yet.
pub fn run_snakepit(args: &[&str], limit: Duration) -> std::process::Output {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = snakepit_command()
        .args(args)
        .stdout(std::fs::File::create(&out).expect("a stdout file"))
        .stderr(std::fs::File::create(&err).expect("a stderr file"))
        .spawn()
        .expect("run snakepit");
    let deadline = Instant::now() + limit;
    let read = |path: &std::path::Path| std::fs::read(path).expect("the command's output");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for snakepit") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "snakepit {args:?} took more than {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&read(&out)),
                String::from_utf8_lossy(&read(&err))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// The JSON report `snakepit chaos --json` printed, and the run's status and
/// output to quote in assertion messages.
pub fn chaos_report(out: &std::process::Output) -> (serde_json::Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {ctx}"));
    (report, ctx)
}

/// The count at `path` (a JSON pointer) of a chaos report.
pub fn count(report: &serde_json::Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {path} in {report:#}"))
}

/// `GET path` from the HTTP server at `addr`: the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

/// The value of the one sample of `metric` in a Prometheus text `body`
/// whose labels contain all of `labels`.
pub fn metric_sample(body: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue; // a longer metric name
        }
        let (series, value) = rest.rsplit_once(' ')?;
        if labels.iter().all(|l| series.contains(l)) {
            assert!(
                found.is_none(),
                "several samples match {metric} {labels:?}:\n{body}"
            );
            found = Some(value.trim().parse().expect("a number"));
        }
    }
    found
}

/// `snakepit exec ARGS` from the package root: (success, stdout, stderr).
pub fn exec(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snakepit"))
        .arg("exec")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the snakepit binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
