//! Ending the leftovers of host runs that died, and of workers that exited.
//!
//! Every worker carries `SNAKEPIT_RUN_ID=<run id>` and
//! `SNAKEPIT_WORKER_ID=<worker id>` in its environment, and its children
//! inherit both, even those that leave the worker's process group
//! (`setsid`, `start_new_session=True`). Workers die with their host
//! (parent-death signal), but their children do not. This module owns:
//!
//! - a small on-disk registry, one file per live host run, and the sweep at
//!   start that ends the processes of runs whose host is gone;
//! - [`end_processes`], the sweep by identity that a worker runs once it has
//!   exited (its run and worker id) and the runtime runs at shutdown (its
//!   run id): SIGTERM, a grace, then SIGKILL.
//!
//! The registry trusts nothing another user could have written: its
//! directory must be ours and not writable by group or others (else
//! [`UntrustedPath`]), an entry file is read only when it is a regular file
//! owned by our uid and not group/world-writable, and an entry is a versioned
//! bincode record of which only the known version is acted on.
//!
//! A sweep only ever signals a process owned by our own uid that carries, as
//! exact environment entries, the identity it looks for; for a recorded run,
//! only when the run's host is provably dead: its pid is gone, is a zombie,
//! or now belongs to a process with a different start time. Several hosts may
//! share one registry directory; a host that is alive, or whose liveness
//! cannot be judged from here (another pid namespace, an unreadable `/proc`),
//! is left alone. Each signal goes through a pidfd opened before the target
//! is re-checked, so a pid reused between the scan and the kill is never hit.
//!
//! Everything here is blocking std IO; async callers run it in
//! `spawn_blocking`.
//!
//! By concern: `trust.rs` checks who may have written a path, `registry.rs`
//! keeps the entry files (their bincode form in `record.rs`), `sweep.rs`
//! judges hosts and signals processes by identity, and `procfs.rs` reads
//! `/proc` and sends the signals.

use std::path::PathBuf;

mod procfs;
mod record;
mod registry;
mod sweep;
mod trust;

#[cfg(test)]
mod tests;

#[cfg(test)]
use record::RECORD_VERSION;
pub use registry::{ReapedRun, RegistryError, RunEntry, RunRegistry, SweepReport};
pub(crate) use sweep::end_strays;
pub use sweep::{end_processes, processes_with_run_id};
pub use trust::{Untrusted, UntrustedPath, check_trusted_dir, ensure_trusted_dir};

/// Environment variable naming snakepit's state directory.
const HOME_ENV: &str = "SNAKEPIT_HOME";

/// The default registry directory, shared by every host of this user
/// whatever its working directory:
///
/// 1. `$SNAKEPIT_HOME/run` when `SNAKEPIT_HOME` is set;
/// 2. `$XDG_RUNTIME_DIR/snakepit` (a per-user tmpfs, emptied at logout);
/// 3. `$XDG_STATE_HOME/snakepit/run`, else `$HOME/.local/state/snakepit/run`;
/// 4. `/tmp/snakepit-<uid>/run` when there is no `HOME` either.
///
/// Relative values are ignored, as the XDG base directory specification
/// asks. The registry creates the directory 0700 and refuses it when another
/// user owns it or group or others may write to it.
pub fn default_registry_dir() -> PathBuf {
    if let Some(home) = absolute_var(HOME_ENV) {
        return home.join("run");
    }
    if let Some(runtime) = absolute_var("XDG_RUNTIME_DIR") {
        return runtime.join("snakepit");
    }
    if let Some(state) = absolute_var("XDG_STATE_HOME") {
        return state.join("snakepit").join("run");
    }
    if let Some(home) = absolute_var("HOME") {
        return home
            .join(".local")
            .join("state")
            .join("snakepit")
            .join("run");
    }
    PathBuf::from(format!("/tmp/snakepit-{}", trust::effective_uid())).join("run")
}

/// The variable `name` as a path, when it is set to an absolute one.
fn absolute_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}
