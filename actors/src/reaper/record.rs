//! The bincode record in an entry file, its version, and the run ids that
//! may name one.

use serde::{Deserialize, Serialize};

use super::registry::RegistryError;

/// Entry files are well under a hundred bytes; anything bigger is not ours.
pub(super) const MAX_ENTRY_BYTES: u64 = 4096;
/// Longest run id the registry accepts.
pub(super) const MAX_RUN_ID_LEN: usize = 200;
/// The version of [`EntryRecord`](record::EntryRecord) this build writes
/// and acts on. An entry of any other version is left alone.
pub(crate) const RECORD_VERSION: u32 = 1;

/// The contents of an entry file: a bincode record (standard configuration)
/// whose first field is its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryRecord {
    /// [`RECORD_VERSION`] when written by this build.
    pub version: u32,
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

/// What the bytes of an entry file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    Record(EntryRecord),
    /// A record of a version this build does not know; never acted on.
    UnknownVersion(u32),
    Malformed,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_ENTRY_BYTES as usize }>()
}

impl EntryRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode_config())
            .expect("an entry record always encodes")
    }

    /// Decodes a whole file: the version first, then, only for the known
    /// version, the record, which must fill the file exactly and name a
    /// valid run id.
    pub(crate) fn decode(bytes: &[u8]) -> Decoded {
        let Ok((version, _)) = bincode::serde::decode_from_slice::<u32, _>(bytes, bincode_config())
        else {
            return Decoded::Malformed;
        };
        if version != RECORD_VERSION {
            return Decoded::UnknownVersion(version);
        }
        match bincode::serde::decode_from_slice::<EntryRecord, _>(bytes, bincode_config()) {
            Ok((record, used))
                if used == bytes.len() && validate_run_id(&record.run_id).is_ok() =>
            {
                Decoded::Record(record)
            }
            _ => Decoded::Malformed,
        }
    }
}

pub(super) fn validate_run_id(run_id: &str) -> Result<(), RegistryError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= MAX_RUN_ID_LEN
        && !run_id.starts_with('.')
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidRunId(run_id.to_owned()))
    }
}
