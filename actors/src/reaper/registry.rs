//! The on-disk registry of host runs: one entry file per live run,
//! written atomically and read back only when it passes the trust checks.
//! The runtime registers its run and sweeps at start; the sweep's judgement
//! of a host and its signals live in `sweep.rs`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::procfs::{self, Identity};
use super::record::{Decoded, EntryRecord, validate_run_id};
use super::record::{MAX_ENTRY_BYTES, MAX_RUN_ID_LEN, RECORD_VERSION};
use super::sweep::{HostState, host_state, reap_run};
use super::trust::{
    Untrusted, UntrustedPath, check_owner_and_mode, check_trusted_dir, ensure_trusted_dir,
};

/// Extension of a registry entry file.
const ENTRY_EXT: &str = "run";
/// Extension of a registry entry being written.
const TEMP_EXT: &str = "tmp";
/// Age after which an unparseable entry, or a temp file left by a host that
/// died mid-write, is deleted.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);
/// Mode of a registry directory the registry creates.
const REGISTRY_DIR_MODE: u32 = 0o700;
/// Mode of an entry file.
const ENTRY_FILE_MODE: u32 = 0o600;

/// What can go wrong with the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry directory is open to another user: nothing in it is
    /// trusted, and nothing is written to it.
    #[error(transparent)]
    Untrusted(#[from] UntrustedPath),
    /// The run id cannot name an entry file.
    #[error(
        "run id {0:?} is not 1-{MAX_RUN_ID_LEN} characters of [A-Za-z0-9._-] not starting with '.'"
    )]
    InvalidRunId(String),
    /// Reading or writing the registry failed.
    #[error("run registry {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// The on-disk registry of host runs: one small file per live run in a
/// directory that several hosts of the same user may share.
#[derive(Debug, Clone)]
pub struct RunRegistry {
    dir: PathBuf,
}

impl RunRegistry {
    /// A registry kept in `dir`. Nothing is touched until `prepare`,
    /// `register` or `sweep`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunRegistry { dir: dir.into() }
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (mode 0700) if needed, and checks that it is
    /// ours and closed to group and others. A directory that cannot be
    /// created or read is an `Io` error (the runtime starts without a
    /// registry); only one someone else could write is `Untrusted`.
    pub fn prepare(&self) -> Result<(), RegistryError> {
        ensure_trusted_dir(&self.dir, REGISTRY_DIR_MODE).map_err(|err| match err.reason {
            Untrusted::Inaccessible(why) => RegistryError::Io {
                path: err.path,
                source: io::Error::other(why),
            },
            _ => RegistryError::Untrusted(err),
        })
    }

    /// Records this host run as `<dir>/<run_id>.run`, preparing the directory
    /// first. The file (mode 0600) is written atomically (a temp file in the
    /// same directory, fsync, then a rename) and is removed again when the
    /// returned guard is released or dropped.
    ///
    /// A run id must be 1 to 200 characters from `[A-Za-z0-9._-]` and must
    /// not start with a dot, since it names a file.
    pub fn register(&self, run_id: &str) -> Result<RunEntry, RegistryError> {
        validate_run_id(run_id)?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RegistryError::Io { path, source }
        };
        let me = procfs::own_identity().map_err(io_err(Path::new("/proc/self")))?;
        let record = EntryRecord {
            version: RECORD_VERSION,
            run_id: run_id.to_owned(),
            host_pid: me.pid,
            host_start: me.start,
            created_unix_ms: unix_ms(SystemTime::now()),
            boot_id: me.boot_id,
            pid_ns: me.pid_ns,
        };
        self.prepare()?;
        let path = self.entry_path(run_id);
        write_atomically(&self.dir, &path, run_id, &record.encode()).map_err(io_err(&path))?;
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
    /// For each such run, every process of our uid whose environment carries
    /// exactly `SNAKEPIT_RUN_ID=<run id>` gets SIGKILL (its whole process
    /// group too when it leads one), and the sweep waits up to 2 s for them
    /// to go (zombies count as gone). The entry is then deleted; if some
    /// process survived, the entry is kept so that the next sweep tries again.
    ///
    /// Runs of live hosts, including the current process's own, are never
    /// touched. Entry files that another user owns or may write, and records
    /// of another version, are ignored (with a warning) and kept. Unparseable
    /// entries are deleted once they are an hour old. A missing registry
    /// directory is an empty report; one open to others is refused.
    pub fn sweep(&self) -> Result<SweepReport, RegistryError> {
        let mut report = SweepReport::default();
        match fs::symlink_metadata(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
            _ => check_trusted_dir(&self.dir)?,
        }
        let listing = fs::read_dir(&self.dir).map_err(|source| RegistryError::Io {
            path: self.dir.clone(),
            source,
        })?;
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
            Ok(EntryRead::Record(record)) if record.run_id == stem => record,
            Ok(EntryRead::Untrusted(reason)) => {
                tracing::warn!(path = %path.display(), %reason, "ignoring a run registry entry that another user could have written");
                return None;
            }
            Ok(EntryRead::UnknownVersion(version)) => {
                tracing::warn!(path = %path.display(), version, known = RECORD_VERSION, "ignoring a run registry entry of an unknown version");
                return None;
            }
            Ok(EntryRead::Record(_) | EntryRead::Malformed) => {
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

/// What reading an entry file found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EntryRead {
    Record(EntryRecord),
    /// Another user owns the file or may write to it: never acted on.
    Untrusted(Untrusted),
    UnknownVersion(u32),
    /// Not a well-formed entry (or too big to be one).
    Malformed,
}

/// Opens (never following a symlink, never blocking on a FIFO), checks and
/// decodes an entry file. The checks run on the opened file, so a file
/// swapped after them is not the one read.
fn read_entry(path: &Path) -> io::Result<EntryRead> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(EntryRead::Untrusted(Untrusted::WrongType));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(EntryRead::Untrusted(Untrusted::WrongType));
    }
    if let Err(reason) = check_owner_and_mode(&meta) {
        return Ok(EntryRead::Untrusted(reason));
    }
    if meta.len() > MAX_ENTRY_BYTES {
        return Ok(EntryRead::Malformed);
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(match EntryRecord::decode(&bytes) {
        Decoded::Record(record) => EntryRead::Record(record),
        Decoded::UnknownVersion(version) => EntryRead::UnknownVersion(version),
        Decoded::Malformed => EntryRead::Malformed,
    })
}

/// Writes `contents` to `path` through a temp file (mode 0600) in `dir`,
/// fsynced, then a rename, so a reader sees either no file or the whole of
/// it, even after a crash.
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
        .mode(ENTRY_FILE_MODE)
        .open(&temp)
        .and_then(|mut file| {
            io::Write::write_all(&mut file, contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        remove_if_present(&temp);
        return written;
    }
    // The rename itself is durable once the directory is synced.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
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
