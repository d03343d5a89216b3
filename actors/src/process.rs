//! Spawning and ending Python worker processes.
//!
//! Each worker runs in its own process group, with a parent-death signal, and
//! gets one end of a Unix socketpair as fd 3: nothing is bound on the
//! filesystem, and no other process can connect. Its stdout and stderr are
//! forwarded to `tracing` line by line, whatever their bytes (decoded
//! lossily, a line cut at 64 KiB); the last lines of stderr are kept so that
//! a worker that dies can say why.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::telemetry::{Telemetry, WorkerOutputTruncated};

/// The fd number the worker finds its connection on.
pub(crate) const WORKER_FD: i32 = 3;

/// The fd number of the pool's shared-memory arena in a worker.
pub(crate) const SHM_POOL_FD: i32 = 4;

/// The fd number of the worker's own shared-memory arena.
pub(crate) const SHM_WORKER_FD: i32 = 5;

/// Environment variable carrying the host's run id into every worker.
pub const RUN_ID_ENV: &str = "SNAKEPIT_RUN_ID";

/// Environment variable carrying the worker's id into its process, so that
/// the children it starts (even outside its process group) can be found and
/// ended with it.
pub const WORKER_ID_ENV: &str = "SNAKEPIT_WORKER_ID";

const STDERR_TAIL_LINES: usize = 40;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// When set, the host's environment is not inherited but for the
    /// variables these patterns name (exact, or a prefix ending in `*`) and
    /// `PATH`; `env` is set either way.
    pub env_passthrough: Option<Vec<String>>,
    pub worker_id: String,
    pub pool: String,
    /// Fds of the host the child gets, each at the number given (open until
    /// the spawn returns).
    pub inherit: Vec<(RawFd, RawFd)>,
}

/// Whether the host variable `name` passes into a worker under `patterns`
/// (`PATH` always does).
pub(crate) fn passes_through(name: &str, patterns: &[String]) -> bool {
    name == "PATH"
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
}

/// A running worker process and the host's end of its connection.
pub(crate) struct Spawned {
    pub child: Child,
    pub pid: u32,
    pub stream: UnixStream,
    pub stderr_tail: StderrTail,
}

/// The last lines a worker wrote to stderr.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().expect("stderr tail lock");
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, oldest first, joined.
    pub fn text(&self) -> String {
        let lines = self.0.lock().expect("stderr tail lock");
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(crate) fn spawn(spec: &SpawnSpec, telemetry: &Telemetry) -> io::Result<Spawned> {
    let (host, child_end) = std::os::unix::net::UnixStream::pair()?;
    let child_fd = child_end.as_raw_fd();
    let inherit = spec.inherit.clone();
    let parent_pid = std::process::id();

    let mut cmd = Command::new(&spec.program);
    if let Some(patterns) = &spec.env_passthrough {
        cmd.env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| {
                name.to_str()
                    .is_some_and(|name| passes_through(name, patterns))
            }));
    }
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("PYTHONUNBUFFERED", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (prctl, getppid, dup2, fcntl)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The host may have died between fork and prctl.
                if libc::getppid() as u32 != parent_pid {
                    return Err(io::Error::other("host exited while spawning"));
                }
            }
            // Every source is first moved above the targets, so that placing
            // one never closes another that sits on its number.
            let mut moves = [(child_fd, WORKER_FD); 4];
            let mut n = 1;
            for &(from, to) in inherit.iter().take(moves.len() - 1) {
                moves[n] = (from, to);
                n += 1;
            }
            for (from, _) in &mut moves[..n] {
                let high = libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, 64);
                if high < 0 {
                    return Err(io::Error::last_os_error());
                }
                *from = high;
            }
            // dup2 clears close-on-exec on the copy it makes.
            for &(from, to) in &moves[..n] {
                if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(child_end);
    let pid = child.id().unwrap_or_default();

    let stderr_tail = StderrTail::default();
    if let Some(out) = child.stdout.take() {
        forward_lines(out, Source::of(spec, "stdout", telemetry), None);
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(
            err,
            Source::of(spec, "stderr", telemetry),
            Some(stderr_tail.clone()),
        );
    }
    host.set_nonblocking(true)?;
    let stream = UnixStream::from_std(host)?;
    Ok(Spawned {
        child,
        pid,
        stream,
        stderr_tail,
    })
}

/// The longest line of worker output kept; the rest of a longer line is
/// counted and dropped, so output without newlines cannot grow the host.
pub(crate) const MAX_OUTPUT_LINE: usize = 64 * 1024;

/// Whose output a forwarder reads, and where it reports cut lines.
struct Source {
    pool: String,
    worker: String,
    stream: &'static str,
    telemetry: Telemetry,
}

impl Source {
    fn of(spec: &SpawnSpec, stream: &'static str, telemetry: &Telemetry) -> Self {
        Self {
            pool: spec.pool.clone(),
            worker: spec.worker_id.clone(),
            stream,
            telemetry: telemetry.clone(),
        }
    }
}

fn forward_lines(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    source: Source,
    tail: Option<StderrTail>,
) {
    tokio::spawn(async move {
        let mut lines = LineSplitter::default();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut pipe = pipe;
        loop {
            // Reads until EOF whatever the bytes are: a pipe the host stops
            // reading would make the worker's next print fail.
            let n = match pipe.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            lines.feed(&chunk[..n], |line, truncated| {
                emit_line(&source, tail.as_ref(), line, truncated)
            });
        }
        lines.finish(|line, truncated| emit_line(&source, tail.as_ref(), line, truncated));
    });
}

fn emit_line(source: &Source, tail: Option<&StderrTail>, line: String, truncated: u64) {
    tracing::info!(target: "snakepit::python", worker = %source.worker, stream = source.stream, "{line}");
    if truncated > 0 {
        WorkerOutputTruncated {
            pool: source.pool.clone(),
            worker: source.worker.clone(),
            stream: source.stream,
            bytes: truncated,
        }
        .emit(&source.telemetry);
    }
    if let Some(tail) = tail {
        tail.push(line);
    }
}

/// Splits a byte stream into lines of at most [`MAX_OUTPUT_LINE`] bytes,
/// decoded lossily (an undecodable byte becomes U+FFFD). A longer line is
/// cut: its first `MAX_OUTPUT_LINE` bytes are kept, the rest only counted
/// until the next newline.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
    /// Bytes of the current line dropped past the limit.
    truncated: u64,
}

impl LineSplitter {
    /// Feeds `bytes`, calling `emit(line, truncated_bytes)` per complete line.
    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(String, u64)) {
        while !bytes.is_empty() {
            let (part, rest, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = MAX_OUTPUT_LINE - self.line.len();
            let keep = part.len().min(room);
            self.line.extend_from_slice(&part[..keep]);
            self.truncated += (part.len() - keep) as u64;
            if ended {
                self.emit(&mut emit);
            }
            bytes = rest;
        }
    }

    /// Emits what is left after EOF.
    fn finish(&mut self, mut emit: impl FnMut(String, u64)) {
        if !self.line.is_empty() || self.truncated > 0 {
            self.emit(&mut emit);
        }
    }

    fn emit(&mut self, emit: &mut impl FnMut(String, u64)) {
        let mut line = &self.line[..];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let text = String::from_utf8_lossy(line).into_owned();
        emit(text, std::mem::take(&mut self.truncated));
        self.line.clear();
        if self.line.capacity() > 4 * 1024 {
            self.line.shrink_to(4 * 1024);
        }
    }
}

/// Sends `signal` to the whole process group led by `pgid`, so children the
/// tool started (multiprocessing, subprocess) go too.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    if pgid == 0 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// Sends `signal` to the process `pid` alone.
pub(crate) fn signal_process(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Whether any process we may signal is left in group `pgid`.
fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks; killpg has no memory-safety preconditions.
    pgid != 0 && unsafe { libc::killpg(pgid as libc::pid_t, 0) } == 0
}

async fn group_gone_within(pgid: u32, budget: std::time::Duration) -> bool {
    let until = tokio::time::Instant::now() + budget;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Ends what is left of a worker's process group after its leader exited:
/// the tool's children (multiprocessing, subprocess) get SIGTERM, then
/// SIGKILL if they are still there after `grace`. Returns once the group is
/// empty (or, for processes that will not go, after a bounded wait).
pub(crate) async fn end_group(pgid: u32, grace: std::time::Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, libc::SIGTERM);
    if group_gone_within(pgid, grace).await {
        return;
    }
    signal_group(pgid, libc::SIGKILL);
    group_gone_within(pgid, std::time::Duration::from_secs(1)).await;
}

/// Resident memory of process `pid` in bytes, as the OS reports it
/// (`/proc/<pid>/statm`); `None` where that is not available.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Not known (the process could not be waited for).
    Unknown,
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            _ => ExitStatus::Unknown,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s} ({})", signal_name(*s)),
            ExitStatus::Unknown => write!(f, "unknown exit status"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, |l, t| out.push((l, t)));
        }
        s.finish(|l, t| out.push((l, t)));
        out
    }

    #[test]
    fn undecodable_bytes_become_replacement_characters_and_reading_goes_on() {
        let lines = split(&[b"\xff\xfe\n", b"after\r\n", b"tail"]);
        assert_eq!(
            lines,
            vec![
                ("\u{fffd}\u{fffd}".to_string(), 0),
                ("after".to_string(), 0),
                ("tail".to_string(), 0)
            ]
        );
    }

    #[test]
    fn a_long_line_is_cut_and_the_rest_counted() {
        let big = vec![b'x'; MAX_OUTPUT_LINE + 1000];
        let lines = split(&[&big[..10], &big[10..], b"yy\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.len(), MAX_OUTPUT_LINE);
        assert_eq!(lines[0].1, 1002);
        assert_eq!(lines[1], ("next".to_string(), 0));
    }
}
