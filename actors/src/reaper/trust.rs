//! Whether a path is ours alone: owned by our effective uid and not writable
//! by group or others. The registry checks its directory and each entry file
//! with it; the venv code checks its directories.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A path snakepit would act on, found open to someone else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing {}: {reason}", path.display())]
pub struct UntrustedPath {
    /// The directory or file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: Untrusted,
}

/// Why a path is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// Another user owns it.
    #[error("it is owned by uid {owner}, not by this process's uid {ours}")]
    Owner {
        /// Its owner.
        owner: u32,
        /// The current process's effective uid.
        ours: u32,
    },
    /// Its group or others may write to it.
    #[error("its mode {mode:04o} lets group or others write to it")]
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// It is not a directory (or, for an entry, not a regular file).
    #[error("it is not of the expected file type")]
    WrongType,
    /// It could not be created or inspected.
    #[error("it cannot be created or inspected: {0}")]
    Inaccessible(String),
}

/// Checks that `path` is a directory owned by our effective uid that group
/// and others cannot write to.
pub fn check_trusted_dir(path: &Path) -> Result<(), UntrustedPath> {
    let untrusted = |reason| UntrustedPath {
        path: path.to_owned(),
        reason,
    };
    let meta = fs::metadata(path).map_err(|e| untrusted(Untrusted::Inaccessible(e.to_string())))?;
    if !meta.is_dir() {
        return Err(untrusted(Untrusted::WrongType));
    }
    check_owner_and_mode(&meta).map_err(untrusted)
}

/// Creates `path` (and missing parents) with `mode` when it does not exist,
/// then checks it as [`check_trusted_dir`] does. An existing directory keeps
/// its mode: one that is too open is refused, not repaired.
pub fn ensure_trusted_dir(path: &Path, mode: u32) -> Result<(), UntrustedPath> {
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
    {
        return Err(UntrustedPath {
            path: path.to_owned(),
            reason: Untrusted::Inaccessible(e.to_string()),
        });
    }
    check_trusted_dir(path)
}

pub(super) fn check_owner_and_mode(meta: &fs::Metadata) -> Result<(), Untrusted> {
    let ours = effective_uid();
    if meta.uid() != ours {
        return Err(Untrusted::Owner {
            owner: meta.uid(),
            ours,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable { mode });
    }
    Ok(())
}

pub(super) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
