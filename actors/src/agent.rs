//! The node agent's workers (`snakepit agent`): Python processes on this
//! machine that a host, reached over the agent's link
//! (`proto/snakepit/v1/agent.proto`), uses as members of a remote pool.
//!
//! The agent does not speak the worker protocol: the host's worker actor
//! does, end to end, heartbeats included. The agent owns the processes —
//! it spawns them as the host would (same command line, environment,
//! process group, parent-death signal, run id for the reaper), relays each
//! one's bytes under its window, reports its start and its end (after its
//! last bytes, and after the rest of its group is ended), and kills it when
//! asked. The link itself (dialing, TLS, token, reconnecting) is the
//! `snakepit` crate's; this module is given the host's messages and a
//! channel for its own.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use snakepit_proto::framing;
use snakepit_proto::v1::{self, agent_message::Kind, frame, host_message};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc};

use crate::config::PoolConfig;
use crate::error::{Error, ExitStatus};
use crate::process;
use crate::reaper::{RunEntry, end_strays};
use crate::runtime::reap_and_register;
use crate::telemetry::Telemetry;
use crate::worker::spawn_spec;

/// How long the rest of a worker's process group gets between SIGTERM and
/// SIGKILL once the worker exited.
const GROUP_TERM_GRACE: Duration = Duration::from_secs(1);

/// How long after a worker's exit its last bytes may take to be relayed.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// Largest `WorkerData` the agent sends.
const CHUNK: usize = 256 * 1024;

/// Exits within [`CRASH_WINDOW`] that make an agent's workers crash-looping.
const CRASH_LOOP: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(60);

/// The agent's run: its id in every worker's environment, and its entry in
/// the run registry, so that the reaper of the agent's next start ends what
/// a killed agent left behind.
pub struct AgentRun {
    run_id: String,
    entry: Option<RunEntry>,
    telemetry: Telemetry,
}

impl AgentRun {
    /// Ends the leftovers of dead earlier runs (of agents or hosts sharing
    /// `registry_dir`) and records this one.
    pub async fn start(
        run_id: String,
        registry_dir: Option<PathBuf>,
        telemetry: Telemetry,
    ) -> Result<Self, Error> {
        let entry = reap_and_register(registry_dir, &run_id, &telemetry).await?;
        Ok(Self {
            run_id,
            entry,
            telemetry,
        })
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Ends every process that still carries the run's id and removes its
    /// registry entry.
    pub async fn finish(mut self) {
        end_strays(self.run_id.clone(), None, GROUP_TERM_GRACE, &self.telemetry).await;
        if let Some(entry) = self.entry.take()
            && let Err(err) = entry.release()
        {
            tracing::warn!(error = %err, "Could not remove this run's registry entry.");
        }
    }
}

/// The Python workers of one agent link. Cheap to clone.
#[derive(Clone)]
pub struct AgentWorkers {
    shared: Arc<Shared>,
}

struct Shared {
    pool: Arc<PoolConfig>,
    python: PathBuf,
    run_id: String,
    telemetry: Telemetry,
    to_host: mpsc::UnboundedSender<v1::AgentMessage>,
    window: u64,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    workers: HashMap<String, Local>,
    /// When workers ended without the host asking, for `crash_looping`.
    crashes: VecDeque<Instant>,
}

/// One worker process of the agent.
struct Local {
    pid: u32,
    /// Host → worker bytes.
    input: Input,
    /// Agent → host window.
    window: Arc<Semaphore>,
    hello: Arc<AtomicBool>,
    /// The host asked for its end.
    stopping: Arc<AtomicBool>,
}

impl AgentWorkers {
    /// Workers of `pool` (the agent's configuration of it), spawned with
    /// `python`, reporting to the host through `to_host`; `window` is the
    /// link's per-worker window in bytes.
    pub fn new(
        pool: Arc<PoolConfig>,
        python: PathBuf,
        run: &AgentRun,
        to_host: mpsc::UnboundedSender<v1::AgentMessage>,
        window: u64,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                python,
                run_id: run.run_id.clone(),
                telemetry: run.telemetry.clone(),
                to_host,
                window: window.max(CHUNK as u64),
                table: Mutex::new(Table::default()),
            }),
        }
    }

    /// Workers running now.
    pub fn running(&self) -> usize {
        self.table().workers.len()
    }

    /// Workers whose first frame was `Hello`.
    pub fn ready(&self) -> usize {
        self.table()
            .workers
            .values()
            .filter(|w| w.hello.load(Ordering::Relaxed))
            .count()
    }

    /// Whether its workers keep dying on their own (five within a minute).
    pub fn crash_looping(&self) -> bool {
        let mut table = self.table();
        while table
            .crashes
            .front()
            .is_some_and(|t| t.elapsed() > CRASH_WINDOW)
        {
            table.crashes.pop_front();
        }
        table.crashes.len() >= CRASH_LOOP
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.shared.table.lock().expect("agent table lock")
    }

    /// A heartbeat for the host, with each worker's resident memory.
    pub fn heartbeat(&self, seq: u64) -> v1::AgentMessage {
        let rss_bytes = self
            .table()
            .workers
            .iter()
            .filter_map(|(id, w)| Some((id.clone(), process::resident_bytes(w.pid)?)))
            .collect();
        agent(Kind::Heartbeat(v1::Heartbeat { seq, rss_bytes }))
    }

    /// Acts on one of the host's messages; an error is a broken link.
    pub fn handle(&self, message: v1::HostMessage) -> Result<(), String> {
        let Some(kind) = message.kind else {
            return Err("an empty message from the host".into());
        };
        match kind {
            host_message::Kind::Registered(_) => {
                return Err("a second Registered from the host".into());
            }
            host_message::Kind::Spawn(spawn) => self.spawn(spawn),
            host_message::Kind::Data(data) => {
                if let Some(w) = self.table().workers.get(&data.worker) {
                    w.input.write(data.data);
                }
            }
            host_message::Kind::Stop(stop) => self.stop(&stop),
            host_message::Kind::Credit(credit) => {
                if let Some(w) = self.table().workers.get(&credit.worker) {
                    let room =
                        (self.shared.window as usize).saturating_sub(w.window.available_permits());
                    w.window.add_permits((credit.bytes as usize).min(room));
                }
            }
            host_message::Kind::Heartbeat(_) => {}
        }
        Ok(())
    }

    fn spawn(&self, spawn: v1::SpawnWorker) {
        let shared = &self.shared;
        let exited = |detail: String| {
            agent(Kind::Exited(v1::WorkerExited {
                worker: spawn.worker.clone(),
                code: -1,
                signal: 0,
                detail,
            }))
        };
        if spawn.pool != shared.pool.name {
            let detail = format!(
                "this agent serves pool `{}`, not `{}`",
                shared.pool.name, spawn.pool
            );
            let _ = shared.to_host.send(exited(detail));
            return;
        }
        if self.table().workers.contains_key(&spawn.worker) {
            let _ = shared
                .to_host
                .send(exited(format!("worker {} runs already", spawn.worker)));
            return;
        }
        let spec = spawn_spec(&shared.pool, &shared.python, &shared.run_id, &spawn.worker);
        let spawned = match process::spawn(&spec, &shared.telemetry) {
            Ok(spawned) => spawned,
            Err(err) => {
                let detail = format!("could not run {}: {err}", spec.program.display());
                let _ = shared.to_host.send(exited(detail));
                return;
            }
        };
        let pid = spawned.pid;
        let stream = Arc::new(spawned.stream);
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        let input = Input {
            stream: stream.clone(),
            backlog: input_tx,
            queued: Arc::new(AtomicUsize::new(0)),
            credit: Arc::new(Credit {
                worker: Arc::from(spawn.worker.as_str()),
                to_host: shared.to_host.clone(),
                uncredited: AtomicU64::new(0),
                at: (shared.window / 2).max(1),
            }),
        };
        let window = Arc::new(Semaphore::new(shared.window as usize));
        let hello = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(AtomicBool::new(false));
        let worker: Arc<str> = Arc::from(spawn.worker.as_str());
        let _ = shared.to_host.send(agent(Kind::Started(v1::WorkerStarted {
            worker: spawn.worker.clone(),
            pid,
        })));
        let reader = tokio::spawn(relay_out(
            stream.clone(),
            worker.clone(),
            shared.to_host.clone(),
            window.clone(),
            hello.clone(),
            shared.pool.max_frame_bytes,
        ));
        tokio::spawn(relay_in(
            stream,
            input_rx,
            input.queued.clone(),
            input.credit.clone(),
        ));
        self.table().workers.insert(
            spawn.worker.clone(),
            Local {
                pid,
                input,
                window,
                hello,
                stopping: stopping.clone(),
            },
        );
        let me = self.clone();
        let mut child = spawned.child;
        let stderr = spawned.stderr_tail;
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => ExitStatus::from(status),
                Err(_) => ExitStatus::Unknown,
            };
            // Its last bytes go first (the error that explains its end).
            let _ = tokio::time::timeout(EXIT_SETTLE, reader).await;
            process::end_group(pid, GROUP_TERM_GRACE).await;
            let (code, signal) = match status {
                ExitStatus::Code(c) => (c, 0),
                ExitStatus::Signal(s) => (-1, s),
                ExitStatus::Unknown => (-1, 0),
            };
            let text = stderr.text();
            let detail = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!("last stderr line: {l}"))
                .unwrap_or_default();
            {
                let mut table = me.table();
                table.workers.remove(&*worker);
                if !stopping.load(Ordering::Relaxed) {
                    table.crashes.push_back(Instant::now());
                }
            }
            let _ = me.shared.to_host.send(agent(Kind::Exited(v1::WorkerExited {
                worker: worker.to_string(),
                code,
                signal,
                detail,
            })));
        });
    }

    fn stop(&self, stop: &v1::StopWorker) {
        let table = self.table();
        let Some(w) = table.workers.get(&stop.worker) else {
            return;
        };
        w.stopping.store(true, Ordering::Relaxed);
        let pid = w.pid;
        if stop.kill {
            process::signal_process(pid, libc::SIGKILL);
            return;
        }
        // It was told to shut down in its own protocol; make sure of it.
        let grace = Duration::from_millis(stop.grace_ms);
        let me = self.clone();
        let worker = stop.worker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace + Duration::from_millis(500)).await;
            if me
                .table()
                .workers
                .get(&worker)
                .is_some_and(|w| w.pid == pid)
            {
                process::signal_process(pid, libc::SIGKILL);
            }
        });
    }

    /// Waits until every worker has ended, for `grace` at most; then kills
    /// the rest and waits for their ends to be reported.
    pub async fn wait_idle(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill_all().await;
    }

    /// Kills every worker (its whole group) and waits until each one's end
    /// is reported (2 s at most).
    pub async fn kill_all(&self) {
        for w in self.table().workers.values() {
            w.stopping.store(true, Ordering::Relaxed);
            process::signal_group(w.pid, libc::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn agent(kind: Kind) -> v1::AgentMessage {
    v1::AgentMessage { kind: Some(kind) }
}

/// The way into one worker's socket. The link's task writes what the host
/// sent straight to the socket when nothing waits before it; what the
/// socket cannot take now waits, in order, for the worker's writer task.
struct Input {
    stream: Arc<UnixStream>,
    backlog: mpsc::UnboundedSender<Bytes>,
    /// Chunks in `backlog` not yet written.
    queued: Arc<AtomicUsize>,
    credit: Arc<Credit>,
}

impl Input {
    fn write(&self, mut data: Bytes) {
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.stream.try_write(&data) {
                Ok(n) => {
                    self.credit.written(n);
                    if n == data.len() {
                        return;
                    }
                    data.advance(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The worker is gone: its exit is reported by its wait task.
                Err(_) => return,
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.backlog.send(data);
    }
}

/// Bytes written to a worker and not yet credited to the host, credited in
/// batches of half the window (a small call costs no credit message).
struct Credit {
    worker: Arc<str>,
    to_host: mpsc::UnboundedSender<v1::AgentMessage>,
    uncredited: AtomicU64,
    at: u64,
}

impl Credit {
    fn written(&self, n: usize) {
        let total = self.uncredited.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
        if total < self.at {
            return;
        }
        let bytes = self.uncredited.swap(0, Ordering::AcqRel);
        if bytes > 0 {
            let _ = self.to_host.send(agent(Kind::Credit(v1::WorkerCredit {
                worker: self.worker.to_string(),
                bytes,
            })));
        }
    }
}

/// Worker → host: its bytes, under its window. Notes whether its first
/// frame is `Hello`.
async fn relay_out(
    read: Arc<UnixStream>,
    worker: Arc<str>,
    to_host: mpsc::UnboundedSender<v1::AgentMessage>,
    window: Arc<Semaphore>,
    hello: Arc<AtomicBool>,
    max_frame_bytes: usize,
) {
    let mut first = Some(BytesMut::new());
    let mut buf = vec![0u8; CHUNK];
    loop {
        if read.readable().await.is_err() {
            return;
        }
        let n = match read.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        if let Some(head) = &mut first {
            head.extend_from_slice(&data);
            match framing::decode(head, max_frame_bytes) {
                Ok(Some(frame)) => {
                    let is_hello = matches!(frame.kind, Some(frame::Kind::Hello(_)));
                    hello.store(is_hello, Ordering::Relaxed);
                    first = None;
                }
                Ok(None) => {}
                Err(_) => first = None,
            }
        }
        let Ok(permit) = window.acquire_many(data.len() as u32).await else {
            return;
        };
        permit.forget();
        let message = agent(Kind::Data(v1::WorkerData {
            worker: worker.to_string(),
            data,
        }));
        if to_host.send(message).is_err() {
            return;
        }
    }
}

/// Host → worker: writes what the socket could not take at once (see
/// [`Input`]), in order, and credits it.
async fn relay_in(
    stream: Arc<UnixStream>,
    mut backlog: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    credit: Arc<Credit>,
) {
    while let Some(data) = backlog.recv().await {
        let mut at = 0;
        while at < data.len() {
            if stream.writable().await.is_err() {
                return;
            }
            match stream.try_write(&data[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        credit.written(data.len());
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}
