//! Buffers in a pool's shared memory.
//!
//! A local pool has a shared-memory arena (`max_shared_bytes`, 1 GiB by
//! default) that the host writes and its workers map read-only. Every
//! ndarray or bytes value of at least `shared_threshold_bytes` (64 KiB) that
//! a call sends is copied into it once, and the worker sees a read-only numpy
//! array over the mapping; an array whose data is in the arena already
//! (built here, or received from Python and sent on: Python's arrays arrive
//! in the worker's own arena and are mapped, not copied) is not copied at
//! all. Arrays coming back from Python arrive as [`bytes::Bytes`] over the
//! worker's arena, unmapped when the last clone is dropped.
//!
//! ```no_run
//! # async fn demo(snakepit: &snakepit::Snakepit) -> Result<(), snakepit::Error> {
//! use snakepit::{Ffi, NdArray, Value, shm};
//! let pool = snakepit.pool("default")?;
//! let mut buf = shm::buffer(pool, 8 * 1_000_000)?;
//! for (i, x) in buf.chunks_exact_mut(8).enumerate() {
//!     x.copy_from_slice(&(i as f64).to_le_bytes());
//! }
//! let array = Value::NdArray(NdArray {
//!     dtype: "float64".into(),
//!     shape: vec![1_000_000],
//!     data: buf.freeze(),
//! });
//! let _sum = snakepit.call("numpy", "sum", (array,), ()).await?;
//! # Ok(()) }
//! ```

use bytes::Bytes;

pub use snakepit_actors::{ArenaUsage, SharedBufferMut};

use crate::{Error, PoolHandle};

/// A writable buffer of `len` bytes in `pool`'s arena.
///
/// [`Error::Config`] when the pool has no shared memory (a remote pool, or
/// `max_shared_bytes = 0`), [`Error::SharedMemoryExhausted`] when its arena
/// is full.
pub fn buffer(pool: &PoolHandle, len: usize) -> Result<SharedBufferMut, Error> {
    pool.shared_buffer(len).unwrap_or_else(|| {
        Err(Error::Config(format!(
            "pool `{}` has no shared memory (a remote pool, or max_shared_bytes = 0)",
            pool.name()
        )))
    })
}

/// `data` copied into `pool`'s arena, or as it is when the pool has none.
pub fn bytes(pool: &PoolHandle, data: &[u8]) -> Result<Bytes, Error> {
    match pool.shared_buffer(data.len()) {
        Some(buf) => {
            let mut buf = buf?;
            buf.copy_from_slice(data);
            Ok(buf.freeze())
        }
        None => Ok(Bytes::copy_from_slice(data)),
    }
}

/// How much of `pool`'s arena is in use (`None`: it has none).
pub fn usage(pool: &PoolHandle) -> Option<ArenaUsage> {
    pool.shared_usage()
}
