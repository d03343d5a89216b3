//! Ending the leftovers of host runs that died.
//!
//! Every worker carries `SNAKEPIT_RUN_ID=<run id>` in its environment, and its
//! children inherit it. Workers die with their host (parent-death signal), but
//! their children do not: if the host is SIGKILLed, a worker's multiprocessing
//! or subprocess children live on. This module owns a small on-disk registry,
//! one file per live host run, and the sweep that ends the processes of runs
//! whose host is gone.
//!
//! The sweep only ever signals a process that carries, as an exact
//! environment entry, the run id of a recorded run whose host is provably
//! dead: its pid is gone, is a zombie, or now belongs to a process with a
//! different start time. Several hosts may share one registry directory; a
//! host that is alive, or whose liveness cannot be judged from here (another
//! pid namespace, an unreadable `/proc`), is left alone. Each signal goes
//! through a pidfd opened before the target is re-checked, so a pid reused
//! between the scan and the kill is never hit.
//!
//! Everything here is blocking std IO; async callers run it in
//! `spawn_blocking`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::process::RUN_ID_ENV;

#[cfg(test)]
mod tests;

/// Extension of a registry entry file.
const ENTRY_EXT: &str = "run";
/// Extension of a registry entry being written.
const TEMP_EXT: &str = "tmp";
/// Age after which an unparseable entry, or a temp file left by a host that
/// died mid-write, is deleted.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);
/// How long a sweep waits for the processes of one dead run to go.
const REAP_WAIT: Duration = Duration::from_secs(2);
/// How often it looks while waiting.
const REAP_POLL: Duration = Duration::from_millis(10);
/// How many times a sweep rescans for processes a dead run's leftovers forked
/// while they were being killed.
const REAP_ROUNDS: usize = 4;
/// Entry files are a few hundred bytes; anything bigger is not ours.
const MAX_ENTRY_BYTES: u64 = 4096;
/// Longest run id the registry accepts.
const MAX_RUN_ID_LEN: usize = 200;
/// Environment variable naming snakepit's state directory.
const HOME_ENV: &str = "SNAKEPIT_HOME";

/// The default registry directory: `$SNAKEPIT_HOME/run`, or `.snakepit/run`
/// (relative to the working directory) when `SNAKEPIT_HOME` is unset.
pub fn default_registry_dir() -> PathBuf {
    match std::env::var_os(HOME_ENV) {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("run"),
        _ => PathBuf::from(".snakepit").join("run"),
    }
}

/// Every live (non-zombie) process, other than the current one, whose
/// environment carries exactly `SNAKEPIT_RUN_ID=<run_id>`, sorted by pid.
///
/// A process whose environment cannot be read (another user's) is not
/// listed. Always empty on systems without `/proc`.
pub fn processes_with_run_id(run_id: &str) -> Vec<u32> {
    if run_id.is_empty() || run_id.contains('\0') {
        return Vec::new();
    }
    procfs::scan(&marker(run_id), std::process::id())
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// The on-disk registry of host runs: one small file per live run in a
/// directory that several hosts may share.
#[derive(Debug, Clone)]
pub struct RunRegistry {
    dir: PathBuf,
}

impl RunRegistry {
    /// A registry kept in `dir`. Nothing is touched until `register` or
    /// `sweep`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunRegistry { dir: dir.into() }
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records this host run as `<dir>/<run_id>.run`, creating the directory
    /// if needed. The file is written atomically (a temp file in the same
    /// directory, then a rename) and is removed again when the returned guard
    /// is released or dropped.
    ///
    /// A run id must be 1 to 200 characters from `[A-Za-z0-9._-]` and must
    /// not start with a dot; anything else is `InvalidInput`, since the id
    /// names a file.
    pub fn register(&self, run_id: &str) -> io::Result<RunEntry> {
        validate_run_id(run_id)?;
        let me = procfs::own_identity()?;
        let record = EntryRecord {
            run_id: run_id.to_owned(),
            host_pid: me.pid,
            host_start: me.start,
            created_unix_ms: unix_ms(SystemTime::now()),
            boot_id: me.boot_id,
            pid_ns: me.pid_ns,
        };
        fs::create_dir_all(&self.dir)?;
        let path = self.entry_path(run_id);
        write_atomically(&self.dir, &path, run_id, record.render().as_bytes())?;
        Ok(RunEntry {
            path,
            run_id: run_id.to_owned(),
            released: false,
        })
    }

    /// Reaps every recorded run whose host is gone: its pid does not exist,
    /// is a zombie, or belongs to a process with a different start time (pid
    /// reuse).
    ///
    /// For each such run, every process whose environment carries exactly
    /// `SNAKEPIT_RUN_ID=<run id>` gets SIGKILL (its whole process group too
    /// when it leads one), and the sweep waits up to 2 s for them to go
    /// (zombies count as gone). The entry is then deleted; if some process
    /// survived, the entry is kept so that the next sweep tries again.
    ///
    /// Runs of live hosts, including the current process's own, are never
    /// touched. Unparseable entries are deleted once they are an hour old.
    /// A missing registry directory is an empty report; only failing to list
    /// the directory is an error.
    pub fn sweep(&self) -> io::Result<SweepReport> {
        let mut report = SweepReport::default();
        let listing = match fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(e),
        };
        let mut names: Vec<String> = listing
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        let me = procfs::own_identity().ok();
        for name in names {
            let path = self.dir.join(&name);
            match classify(&name) {
                FileKind::Entry(run_id) => {
                    if let Some(run) = self.sweep_entry(&path, run_id, me.as_ref()) {
                        report.runs.push(run);
                    }
                }
                FileKind::Temp => {
                    if is_stale(&path) {
                        remove_if_present(&path);
                    }
                }
                FileKind::Other => {}
            }
        }
        Ok(report)
    }

    fn entry_path(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.{ENTRY_EXT}"))
    }

    /// Judges one entry file, and reaps its run when the host is dead.
    fn sweep_entry(&self, path: &Path, stem: &str, me: Option<&Identity>) -> Option<ReapedRun> {
        let record = match read_entry(path) {
            Ok(Some(record)) if record.run_id == stem => record,
            Ok(_) => {
                if is_stale(path) {
                    tracing::warn!(path = %path.display(), "removing malformed run registry entry");
                    remove_if_present(path);
                }
                return None;
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read run registry entry");
                }
                return None;
            }
        };
        if host_state(&record, me) != HostState::Dead {
            return None;
        }
        let (pids, survivors) = reap_run(&record.run_id);
        if !pids.is_empty() {
            tracing::warn!(
                run_id = %record.run_id,
                host_pid = record.host_pid,
                killed = ?pids,
                survivors = ?survivors,
                "killed leftover processes of a dead host run",
            );
        }
        if survivors.is_empty() {
            remove_if_present(path);
        }
        Some(ReapedRun {
            run_id: record.run_id,
            host_pid: record.host_pid,
            pids,
            survivors,
        })
    }
}

/// This host run's registry entry. Releasing or dropping it removes the
/// file.
#[derive(Debug)]
pub struct RunEntry {
    path: PathBuf,
    run_id: String,
    released: bool,
}

impl RunEntry {
    /// The run id it records.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The entry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the entry file. A file that is already gone is not an error.
    pub fn release(mut self) -> io::Result<()> {
        self.released = true;
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for RunEntry {
    fn drop(&mut self) {
        if !self.released {
            remove_if_present(&self.path);
        }
    }
}

/// What a sweep found: one item per dead run it dealt with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The dead runs, in entry-file name order.
    pub runs: Vec<ReapedRun>,
}

/// One dead host run and what became of its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapedRun {
    /// The run's id.
    pub run_id: String,
    /// The pid its host had.
    pub host_pid: u32,
    /// Processes carrying the run id that were sent SIGKILL, sorted.
    pub pids: Vec<u32>,
    /// Processes still there after the wait (or that refused the signal),
    /// sorted. When not empty, the entry is kept for the next sweep.
    pub survivors: Vec<u32>,
}

/// The contents of an entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryRecord {
    pub run_id: String,
    pub host_pid: u32,
    /// Start time of the host process in clock ticks after boot (field 22 of
    /// `/proc/<pid>/stat`).
    pub host_start: u64,
    pub created_unix_ms: u64,
    /// `/proc/sys/kernel/random/boot_id` when the entry was written. An entry
    /// from another boot is dead whatever its pid shows now.
    pub boot_id: Option<String>,
    /// The host's pid namespace (`/proc/self/ns/pid` link text). Its pid
    /// means nothing in another namespace, so such an entry is never judged.
    pub pid_ns: Option<String>,
}

impl EntryRecord {
    pub(crate) fn render(&self) -> String {
        let mut text = format!(
            "run_id={}\nhost_pid={}\nhost_start={}\ncreated_unix_ms={}\n",
            self.run_id, self.host_pid, self.host_start, self.created_unix_ms
        );
        if let Some(boot_id) = &self.boot_id {
            text.push_str(&format!("boot_id={boot_id}\n"));
        }
        if let Some(pid_ns) = &self.pid_ns {
            text.push_str(&format!("pid_ns={pid_ns}\n"));
        }
        text
    }

    /// Parses `key=value` lines. The four base keys are required, each key
    /// may appear once, and unknown keys are ignored.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut run_id = None;
        let mut host_pid = None;
        let mut host_start = None;
        let mut created_unix_ms = None;
        let mut boot_id = None;
        let mut pid_ns = None;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let (key, value) = line.split_once('=')?;
            let fresh = match key {
                "run_id" => set_once(&mut run_id, value.to_owned()),
                "host_pid" => set_once(&mut host_pid, value.parse::<u32>().ok()?),
                "host_start" => set_once(&mut host_start, value.parse::<u64>().ok()?),
                "created_unix_ms" => set_once(&mut created_unix_ms, value.parse::<u64>().ok()?),
                "boot_id" => set_once(&mut boot_id, value.to_owned()),
                "pid_ns" => set_once(&mut pid_ns, value.to_owned()),
                _ => true,
            };
            if !fresh {
                return None;
            }
        }
        let run_id = run_id?;
        validate_run_id(&run_id).ok()?;
        Some(EntryRecord {
            run_id,
            host_pid: host_pid?,
            host_start: host_start?,
            created_unix_ms: created_unix_ms?,
            boot_id,
            pid_ns,
        })
    }
}

/// Stores `value` unless the slot is already set; says whether it was empty.
fn set_once<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(value);
    true
}

/// Who the current process is, as entries record it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub pid: u32,
    pub start: u64,
    pub boot_id: Option<String>,
    pub pid_ns: Option<String>,
}

/// One process, identified across pid reuse by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProcId {
    pub pid: u32,
    pub start: u64,
}

/// The two fields of `/proc/<pid>/stat` the reaper needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: u8,
    pub start: u64,
}

impl Stat {
    /// Parses a `stat` line. The command name (field 2) is in parentheses
    /// and may itself hold spaces and parentheses, so fields are counted from
    /// the last `)`.
    pub(crate) fn parse(raw: &[u8]) -> Option<Stat> {
        let close = raw.iter().rposition(|&b| b == b')')?;
        let rest = std::str::from_utf8(&raw[close + 1..]).ok()?;
        let mut fields = rest.split_ascii_whitespace();
        // Field 3 is the state; field 22 is the start time, 19 fields on.
        let state = *fields.next()?.as_bytes().first()?;
        let start = fields.nth(18)?.parse().ok()?;
        Some(Stat { state, start })
    }

    /// Zombie, or dead and about to vanish: gone, for the reaper's purposes.
    pub(crate) fn is_gone(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostState {
    Alive,
    Dead,
    /// Cannot be told from here; treated like alive.
    Unknown,
}

fn host_state(record: &EntryRecord, me: Option<&Identity>) -> HostState {
    if let Some(me) = me {
        if record.host_pid == me.pid && record.host_start == me.start {
            return HostState::Alive;
        }
        if let (Some(theirs), Some(ours)) = (&record.boot_id, &me.boot_id)
            && theirs != ours
        {
            return HostState::Dead;
        }
        if let (Some(theirs), Some(ours)) = (&record.pid_ns, &me.pid_ns)
            && theirs != ours
        {
            return HostState::Unknown;
        }
    }
    match procfs::stat(record.host_pid) {
        Ok(stat) if stat.is_gone() || stat.start != record.host_start => HostState::Dead,
        Ok(_) => HostState::Alive,
        Err(e) if is_no_such_process(&e) => HostState::Dead,
        Err(_) => HostState::Unknown,
    }
}

/// Kills every process of a dead run. Returns the pids it signalled and
/// those still there at the end, both sorted.
fn reap_run(run_id: &str) -> (Vec<u32>, Vec<u32>) {
    let marker = marker(run_id);
    let own_pid = std::process::id();
    let deadline = Instant::now() + REAP_WAIT;
    let mut tried: Vec<ProcId> = Vec::new();
    let mut killed: Vec<ProcId> = Vec::new();
    let mut refused: Vec<u32> = Vec::new();
    for _ in 0..REAP_ROUNDS {
        let found: Vec<ProcId> = procfs::scan(&marker, own_pid)
            .into_iter()
            .filter(|p| !tried.contains(p))
            .collect();
        if found.is_empty() {
            break;
        }
        for p in found {
            tried.push(p);
            match procfs::kill_verified(p, &marker) {
                Signalled::Killed => killed.push(p),
                Signalled::Gone => {}
                Signalled::Refused => refused.push(p.pid),
            }
        }
        wait_gone(&killed, deadline);
        if Instant::now() >= deadline {
            break;
        }
    }
    let mut survivors: Vec<u32> = killed
        .iter()
        .filter(|p| procfs::is_alive(**p))
        .map(|p| p.pid)
        .chain(refused)
        .collect();
    survivors.sort_unstable();
    survivors.dedup();
    let mut pids: Vec<u32> = killed.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    (pids, survivors)
}

/// Waits until every process in `procs` is gone, or the deadline passes.
fn wait_gone(procs: &[ProcId], deadline: Instant) {
    loop {
        if !procs.iter().any(|p| procfs::is_alive(*p)) {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep(REAP_POLL.min(deadline - now));
    }
}

/// What became of one signal.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signalled {
    /// SIGKILL was delivered.
    Killed,
    /// The process had gone, or the pid now belongs to another process.
    Gone,
    /// The kernel refused (permissions).
    Refused,
}

/// The exact environment entry a run's processes carry.
fn marker(run_id: &str) -> Vec<u8> {
    format!("{RUN_ID_ENV}={run_id}").into_bytes()
}

fn validate_run_id(run_id: &str) -> io::Result<()> {
    let ok = !run_id.is_empty()
        && run_id.len() <= MAX_RUN_ID_LEN
        && !run_id.starts_with('.')
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "run id {run_id:?} is not 1-{MAX_RUN_ID_LEN} characters of [A-Za-z0-9._-] not starting with '.'"
            ),
        ))
    }
}

enum FileKind<'a> {
    /// `<run_id>.run`, with the stem.
    Entry(&'a str),
    /// `.<...>.tmp`, written by `register`.
    Temp,
    Other,
}

fn classify(name: &str) -> FileKind<'_> {
    if name.starts_with('.') {
        if name.ends_with(&format!(".{TEMP_EXT}")) {
            return FileKind::Temp;
        }
        return FileKind::Other;
    }
    match name.strip_suffix(&format!(".{ENTRY_EXT}")) {
        Some(stem) if !stem.is_empty() => FileKind::Entry(stem),
        _ => FileKind::Other,
    }
}

/// Reads and parses an entry file. `Ok(None)` means it is not a well-formed
/// entry (or not a regular file, or too big to be one).
fn read_entry(path: &Path) -> io::Result<Option<EntryRecord>> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() || meta.len() > MAX_ENTRY_BYTES {
        return Ok(None);
    }
    let mut text = String::new();
    let read = fs::File::open(path)?
        .take(MAX_ENTRY_BYTES)
        .read_to_string(&mut text);
    match read {
        Ok(_) => Ok(EntryRecord::parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `contents` to `path` through a temp file in `dir` and a rename, so
/// a reader sees either no file or the whole of it.
fn write_atomically(dir: &Path, path: &Path, run_id: &str, contents: &[u8]) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let temp = dir.join(format!(
        ".{run_id}.{}.{nanos}.{TEMP_EXT}",
        std::process::id()
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| io::Write::write_all(&mut file, contents))
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        remove_if_present(&temp);
    }
    written
}

/// A regular file last modified more than `STALE_AFTER` ago. Anything whose
/// age cannot be told is young.
fn is_stale(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .and_then(|meta| meta.modified().ok())
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

fn remove_if_present(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove run registry file");
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// `NotFound`, or `ESRCH` (a `/proc/<pid>` file whose process went while it
/// was being read).
fn is_no_such_process(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Reading `/proc` and sending signals.
#[cfg(target_os = "linux")]
mod procfs {
    use std::fs;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::{Identity, ProcId, Signalled, Stat, is_no_such_process};

    /// A pid the reaper may ever signal: never 0 or negative (which `kill`
    /// reads as "a whole group" or "everyone"), never init.
    fn is_signallable(pid: u32) -> bool {
        pid > 1 && i32::try_from(pid).is_ok()
    }

    pub(super) fn own_identity() -> io::Result<Identity> {
        let raw = fs::read("/proc/self/stat")?;
        let stat = Stat::parse(&raw).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unparseable /proc/self/stat")
        })?;
        let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && !s.contains('\n'));
        let pid_ns = fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|link| link.into_os_string().into_string().ok())
            .filter(|s| !s.is_empty() && !s.contains('\n'));
        Ok(Identity {
            pid: std::process::id(),
            start: stat.start,
            boot_id,
            pid_ns,
        })
    }

    pub(super) fn stat(pid: u32) -> io::Result<Stat> {
        let raw = fs::read(format!("/proc/{pid}/stat"))?;
        Stat::parse(&raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparseable stat"))
    }

    /// Still the same process (same start time), and not a zombie. A `stat`
    /// that cannot be read for another reason than the process being gone
    /// counts as alive.
    pub(super) fn is_alive(p: ProcId) -> bool {
        match stat(p.pid) {
            Ok(stat) => !stat.is_gone() && stat.start == p.start,
            Err(e) => !is_no_such_process(&e),
        }
    }

    /// Whether `/proc/<pid>/environ` holds exactly `marker` as one entry. An
    /// environment that cannot be read does not.
    fn environ_has(pid: u32, marker: &[u8]) -> bool {
        fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == marker))
    }

    /// Every live process but `skip` whose environment holds `marker`.
    pub(super) fn scan(marker: &[u8], skip: u32) -> Vec<ProcId> {
        let Ok(listing) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in listing.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == skip || !is_signallable(pid) || !environ_has(pid, marker) {
                continue;
            }
            match stat(pid) {
                Ok(stat) if !stat.is_gone() => found.push(ProcId {
                    pid,
                    start: stat.start,
                }),
                _ => {}
            }
        }
        found.sort_unstable();
        found
    }

    /// Sends SIGKILL to `p`, and to its process group when it leads one,
    /// after checking again that it is the same process and still carries
    /// `marker`.
    ///
    /// The pidfd is opened before the check, so if the pid is reused after
    /// it, the signal goes to the (dead) process that was checked rather than
    /// to the newcomer. Kernels without pidfds fall back to `kill`, leaving a
    /// window of a few microseconds.
    pub(super) fn kill_verified(p: ProcId, marker: &[u8]) -> Signalled {
        if p.pid == std::process::id() || !is_signallable(p.pid) {
            return Signalled::Gone;
        }
        let pid = p.pid as libc::pid_t;
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Signalled::Gone,
            Err(_) => None,
        };
        match stat(p.pid) {
            Ok(stat) if !stat.is_gone() && stat.start == p.start => {}
            _ => return Signalled::Gone,
        }
        if !environ_has(p.pid, marker) {
            return Signalled::Gone;
        }
        // SAFETY: getpgid, getpgrp, killpg and kill have no memory-safety
        // preconditions.
        let (pgid, own_group) = unsafe { (libc::getpgid(pid), libc::getpgrp()) };
        // Its group goes first, while the leader still holds the group id. A
        // group that holds the current process is never signalled as a whole.
        let group_killed =
            pgid == pid && pgid != own_group && unsafe { libc::killpg(pgid, libc::SIGKILL) } == 0;
        let direct = match &pidfd {
            Some(fd) => pidfd_send_signal(fd, libc::SIGKILL),
            None => {
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
        };
        match direct {
            Ok(()) => Signalled::Killed,
            Err(_) if group_killed => Signalled::Killed,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Signalled::Gone,
            Err(_) => Signalled::Refused,
        }
    }

    fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags, and returns a new fd
        // that nothing else owns.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: `fd` was just returned by the kernel and is owned here.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn pidfd_send_signal(fd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Without `/proc` nothing can be judged or found: the registry still
/// records runs, and a sweep leaves every entry alone.
#[cfg(not(target_os = "linux"))]
mod procfs {
    use std::io;

    use super::{Identity, ProcId, Signalled, Stat};

    pub(super) fn own_identity() -> io::Result<Identity> {
        Ok(Identity {
            pid: std::process::id(),
            start: 0,
            boot_id: None,
            pid_ns: None,
        })
    }

    pub(super) fn stat(_pid: u32) -> io::Result<Stat> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub(super) fn is_alive(_p: ProcId) -> bool {
        false
    }

    pub(super) fn scan(_marker: &[u8], _skip: u32) -> Vec<ProcId> {
        Vec::new()
    }

    pub(super) fn kill_verified(_p: ProcId, _marker: &[u8]) -> Signalled {
        Signalled::Gone
    }
}
