//! Shared memory for large arrays and bytes between the host and its local
//! workers.
//!
//! Two kinds of arena, each a sealed `memfd` of `max_shared_bytes` that
//! neither side can grow or shrink (so a mapping never faults past its end):
//!
//! - the **pool arena** ([`PoolArena`]): one per local pool, written by the
//!   host, inherited by every worker of the pool, which maps it read-only;
//! - the **worker arena** ([`WorkerArena`]): one per worker process, written
//!   by the worker; the host maps it read-only.
//!
//! A frame names a region of an arena (`SharedRegion`) instead of carrying
//! the bytes, and each region named is one reference the receiver gives back
//! with `ReleaseShared`. The host counts, per allocation of its arena, its
//! own owners (the [`Bytes`] over it) and each connection's references; an
//! allocation is free when both are gone, and a connection that closes gives
//! back all of its references at once, so a crashed worker leaks nothing.
//! Regions of a worker's arena become [`Bytes`] over the read-only mapping;
//! dropping the last one sends the reference back.
//!
//! Arenas rather than a `memfd` per array, by measurement: a fresh 64 MiB
//! segment costs about 27 ms to fill (every page is a fault) and 10 ms more
//! on its reader's first touch, while an arena's pages stay mapped in both
//! processes and a copy into it is one `memcpy` (about 5 ms).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use snakepit_proto::v1::{self, Frame, SharedArena, SharedRegion, value::Kind as V};
use tokio::sync::mpsc;

use crate::error::Error;

const PAGE: u64 = 4096;

/// A shared mapping of a whole arena; unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; who may write
// where is decided by the allocators above it.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize, writable: bool) -> io::Result<Self> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping of `len` bytes of a file of at least that
        // size (sealed against shrinking), at an address the kernel picks.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned null"),
            len,
        })
    }

    fn base(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// # Safety
    /// `offset + len` within the mapping.
    unsafe fn slice(&self, offset: u64, len: u64) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset as usize), len as usize) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it any more (every
        // slice of it holds an `Arc` of its owner).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A sealed memfd of `size` bytes: no one can grow it, shrink it or
/// change the seals, so mappings of it never fault past their end.
fn sealed_memfd(name: &str, size: u64) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).expect("no NUL in arena names");
    // SAFETY: plain syscalls on a fd we own.
    unsafe {
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) < 0 {
            return Err(io::Error::last_os_error());
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// First-fit allocation of page-rounded regions, with a count of
/// references on each.
#[derive(Debug)]
struct Allocator {
    /// Follows `in_use`, when the arena is a pool's.
    gauge: Option<metrics::Gauge>,
    capacity: u64,
    /// Free ranges by start; adjacent ones are merged.
    free: BTreeMap<u64, u64>,
    /// Allocations by start: (length, references).
    used: BTreeMap<u64, (u64, u64)>,
    in_use: u64,
}

impl Allocator {
    fn new(capacity: u64) -> Self {
        Self {
            gauge: None,
            capacity,
            free: BTreeMap::from([(0, capacity)]),
            used: BTreeMap::new(),
            in_use: 0,
        }
    }

    /// A region of at least `len` bytes with one reference, or `None`.
    fn alloc(&mut self, len: u64) -> Option<u64> {
        let want = len.max(1).div_ceil(PAGE) * PAGE;
        let (&start, &size) = self.free.iter().find(|(_, size)| **size >= want)?;
        self.free.remove(&start);
        if size > want {
            self.free.insert(start + want, size - want);
        }
        self.used.insert(start, (want, 1));
        self.in_use += want;
        self.report();
        Some(start)
    }

    /// The start of the allocation holding `[offset, offset + len)`.
    fn find(&self, offset: u64, len: u64) -> Option<u64> {
        let (&start, &(size, _)) = self.used.range(..=offset).next_back()?;
        (offset.checked_add(len)? <= start + size).then_some(start)
    }

    fn report(&self) {
        if let Some(gauge) = &self.gauge {
            gauge.set(self.in_use as f64);
        }
    }

    fn incref(&mut self, start: u64) {
        if let Some((_, refs)) = self.used.get_mut(&start) {
            *refs += 1;
        }
    }

    fn decref(&mut self, start: u64) {
        let Some((size, refs)) = self.used.get_mut(&start) else {
            return;
        };
        *refs -= 1;
        if *refs > 0 {
            return;
        }
        let size = *size;
        self.used.remove(&start);
        self.in_use -= size;
        self.report();
        let (mut start, mut size) = (start, size);
        if let Some((&prev, &prev_size)) = self.free.range(..start).next_back()
            && prev + prev_size == start
        {
            self.free.remove(&prev);
            start = prev;
            size += prev_size;
        }
        if let Some(next_size) = self.free.remove(&(start + size)) {
            size += next_size;
        }
        self.free.insert(start, size);
    }
}

/// How much of an arena is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaUsage {
    /// The arena's size (`max_shared_bytes`).
    pub capacity: u64,
    /// Bytes allocated (page-rounded).
    pub in_use: u64,
    /// Live allocations.
    pub allocations: usize,
}

/// A pool's arena: the host writes it, the pool's local workers read it.
pub struct PoolArena {
    fd: OwnedFd,
    map: Mapping,
    alloc: Mutex<Allocator>,
    threshold: u64,
}

impl std::fmt::Debug for PoolArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolArena")
            .field("usage", &self.usage())
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl PoolArena {
    /// A fresh arena of `capacity` bytes for pool `pool`; values of at least
    /// `threshold` bytes go in it.
    pub(crate) fn create(pool: &str, capacity: u64, threshold: u64) -> io::Result<Arc<Self>> {
        let fd = sealed_memfd(&format!("snakepit-pool-{pool}"), capacity)?;
        let map = Mapping::new(fd.as_raw_fd(), capacity as usize, true)?;
        use crate::telemetry::metric;
        metrics::gauge!(metric::SHARED_MEMORY_CAPACITY_BYTES, "pool" => pool.to_string())
            .set(capacity as f64);
        let mut alloc = Allocator::new(capacity);
        alloc.gauge = Some(metrics::gauge!(
            metric::SHARED_MEMORY_IN_USE_BYTES,
            "pool" => pool.to_string()
        ));
        alloc.report();
        Ok(Arc::new(Self {
            fd,
            map,
            alloc: Mutex::new(alloc),
            threshold,
        }))
    }

    /// The fd a worker inherits (mapped read-only there).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The arena's size.
    pub fn capacity(&self) -> u64 {
        self.map.len as u64
    }

    /// Values of at least this many bytes travel in the arena.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// How much is in use now.
    pub fn usage(&self) -> ArenaUsage {
        let a = self.alloc.lock().expect("arena lock");
        ArenaUsage {
            capacity: a.capacity,
            in_use: a.in_use,
            allocations: a.used.len(),
        }
    }

    /// A writable buffer of `len` bytes in the arena (zeroed or not: its
    /// previous contents are unspecified), for data built in place and then
    /// sent to any worker of the pool without a copy.
    pub fn buffer(self: &Arc<Self>, len: usize) -> Result<SharedBufferMut, Error> {
        let start = self.allocate(len as u64)?;
        Ok(SharedBufferMut {
            region: Some(HostRegion {
                arena: self.clone(),
                start,
                offset: start,
                len: len as u64,
            }),
        })
    }

    fn allocate(&self, len: u64) -> Result<u64, Error> {
        let mut a = self.alloc.lock().expect("arena lock");
        a.alloc(len).ok_or(Error::SharedMemoryExhausted {
            requested: len,
            capacity: a.capacity,
            in_use: a.in_use,
        })
    }

    /// A copy of `data` in the arena.
    fn copy_in(self: &Arc<Self>, data: &[u8]) -> Result<Bytes, Error> {
        let mut buf = self.buffer(data.len())?;
        buf.copy_from_slice(data);
        Ok(buf.freeze())
    }

    /// Where `data` lies in this arena, if it does: (allocation, offset).
    fn locate(&self, data: &[u8]) -> Option<(u64, u64)> {
        let addr = data.as_ptr() as usize;
        let base = self.map.base();
        if addr < base || addr + data.len() > base + self.map.len {
            return None;
        }
        let offset = (addr - base) as u64;
        let start = self
            .alloc
            .lock()
            .expect("arena lock")
            .find(offset, data.len() as u64)?;
        Some((start, offset))
    }

    /// Moves every ndarray and bytes value of `value` at or above the
    /// threshold into the arena (a copy, unless its bytes are there
    /// already), naming the region instead; `keep` gets the bytes, to hold
    /// them until the frame has been written.
    pub(crate) fn export(
        self: &Arc<Self>,
        value: &mut v1::Value,
        keep: &mut Vec<Bytes>,
    ) -> Result<(), Error> {
        let mut visit = |v: &mut v1::Value| -> Result<(), Error> {
            match v.kind.as_mut() {
                Some(V::Ndarray(nd)) if nd.data.len() as u64 >= self.threshold => {
                    let data = std::mem::take(&mut nd.data);
                    nd.shared = Some(self.share(data, keep)?);
                }
                Some(V::Bytes(b)) if b.len() as u64 >= self.threshold => {
                    let data = std::mem::take(b);
                    v.kind = Some(V::SharedBytes(self.share(data, keep)?));
                }
                _ => {}
            }
            Ok(())
        };
        snakepit_proto::frames::visit_value(value, &mut visit)
    }

    fn share(self: &Arc<Self>, data: Bytes, keep: &mut Vec<Bytes>) -> Result<SharedRegion, Error> {
        let data = match self.locate(&data) {
            Some(_) => data,
            None => self.copy_in(&data)?,
        };
        let offset = (data.as_ptr() as usize - self.map.base()) as u64;
        let region = SharedRegion {
            arena: SharedArena::Host as i32,
            offset,
            length: data.len() as u64,
        };
        keep.push(data);
        Ok(region)
    }
}

/// One reference on an allocation of a pool arena, and the part of it a
/// [`Bytes`] shows.
struct HostRegion {
    arena: Arc<PoolArena>,
    start: u64,
    offset: u64,
    len: u64,
}

impl AsRef<[u8]> for HostRegion {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: within an allocation this reference keeps alive; the host
        // writes it only through the `SharedBufferMut` that had it first.
        unsafe { self.arena.map.slice(self.offset, self.len) }
    }
}

impl Drop for HostRegion {
    fn drop(&mut self) {
        self.arena
            .alloc
            .lock()
            .expect("arena lock")
            .decref(self.start);
    }
}

/// A writable buffer in a pool's shared-memory arena (see
/// [`PoolHandle::shared_buffer`](crate::PoolHandle::shared_buffer)): fill
/// it, then [`freeze`](Self::freeze) it into [`Bytes`] that cross to any
/// worker of the pool without a copy (as an ndarray's data or as bytes).
pub struct SharedBufferMut {
    region: Option<HostRegion>,
}

impl std::fmt::Debug for SharedBufferMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBufferMut")
            .field("len", &self.len())
            .finish()
    }
}

impl SharedBufferMut {
    /// The buffer, read-only from now on; it stays in the arena while any
    /// clone of the bytes, or any worker given them, holds it.
    pub fn freeze(mut self) -> Bytes {
        Bytes::from_owner(self.region.take().expect("a buffer is frozen once"))
    }
}

impl std::ops::Deref for SharedBufferMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.region.as_ref().expect("live buffer").as_ref()
    }
}

impl std::ops::DerefMut for SharedBufferMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        let r = self.region.as_ref().expect("live buffer");
        // SAFETY: a fresh allocation whose only reference is this buffer,
        // which `&mut self` holds exclusively; workers map it read-only.
        unsafe {
            std::slice::from_raw_parts_mut(
                r.arena.map.ptr.as_ptr().add(r.offset as usize),
                r.len as usize,
            )
        }
    }
}

/// A worker's arena as the host maps it (read-only); its [`Bytes`] send
/// their references back through `releases` when dropped.
pub(crate) struct WorkerArena {
    map: Mapping,
    releases: mpsc::UnboundedSender<u64>,
}

/// A region of a worker's arena shown as [`Bytes`].
struct WorkerRegion {
    arena: Arc<WorkerArena>,
    offset: u64,
    len: u64,
}

impl AsRef<[u8]> for WorkerRegion {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: bounds checked when the region was received; the arena
        // cannot shrink (sealed) and stays mapped while this lives.
        unsafe { self.arena.map.slice(self.offset, self.len) }
    }
}

impl Drop for WorkerRegion {
    fn drop(&mut self) {
        // The worker is gone once the writer is: nothing to give back then.
        let _ = self.arena.releases.send(self.offset);
    }
}

/// A local worker's shared memory: the fds its process inherits, and what
/// its connection needs.
pub(crate) struct WorkerShm {
    /// The worker arena's fd, until the process is spawned.
    pub worker_fd: OwnedFd,
    pub conn: Arc<ConnShm>,
    /// What the connection's writer sends back.
    pub releases: mpsc::UnboundedReceiver<u64>,
}

impl WorkerShm {
    /// A fresh worker arena next to the pool's.
    pub fn create(pool: &Arc<PoolArena>, worker: &str) -> io::Result<Self> {
        let capacity = pool.capacity();
        let fd = sealed_memfd(&format!("snakepit-worker-{worker}"), capacity)?;
        let map = Mapping::new(fd.as_raw_fd(), capacity as usize, false)?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            worker_fd: fd,
            conn: Arc::new(ConnShm {
                pool: pool.clone(),
                worker: Arc::new(WorkerArena { map, releases: tx }),
                leases: Mutex::new(Leases::default()),
            }),
            releases: rx,
        })
    }
}

#[derive(Default)]
struct Leases {
    /// References this worker holds, by allocation start.
    held: HashMap<u64, u64>,
    closed: bool,
}

/// One connection's view of shared memory: the pool arena it reads, the
/// worker arena it writes, and the references the worker holds.
pub(crate) struct ConnShm {
    pool: Arc<PoolArena>,
    worker: Arc<WorkerArena>,
    leases: Mutex<Leases>,
}

impl ConnShm {
    /// Counts the pool-arena regions an outgoing request names as
    /// references of this worker (called as it is queued, while the
    /// request holds its bytes).
    pub fn count_out(&self, frame: &mut Frame) {
        if matches!(frame.kind, Some(v1::frame::Kind::Execute(_))) {
            let mut regions = Vec::new();
            let _ = snakepit_proto::frames::visit_values(frame, &mut |v: &mut v1::Value| {
                regions.extend(host_region(v));
                Ok::<(), ()>(())
            });
            self.lease(regions);
        }
    }

    /// Moves the large values of `value` (a host call's answer) into the
    /// pool arena, as references of this worker.
    pub fn export_leased(&self, value: &mut v1::Value) -> Result<(), Error> {
        let mut keep = Vec::new();
        self.pool.export(value, &mut keep)?;
        // Each kept bytes is one region the value names.
        let base = self.pool.map.base();
        self.lease(
            keep.iter()
                .map(|b| ((b.as_ptr() as usize - base) as u64, b.len() as u64))
                .collect(),
        );
        Ok(())
    }

    fn lease(&self, starts: Vec<(u64, u64)>) {
        if starts.is_empty() {
            return;
        }
        let mut leases = self.leases.lock().expect("leases lock");
        if leases.closed {
            return;
        }
        let mut alloc = self.pool.alloc.lock().expect("arena lock");
        for (offset, len) in starts {
            match alloc.find(offset, len) {
                Some(start) => {
                    alloc.incref(start);
                    *leases.held.entry(start).or_default() += 1;
                }
                None => tracing::error!(
                    offset,
                    len,
                    "A frame names a region of the pool's arena that is not allocated."
                ),
            }
        }
    }

    /// The worker gave back references to these regions of the pool arena.
    pub fn release_in(&self, offsets: &[u64]) -> Result<(), String> {
        let mut leases = self.leases.lock().expect("leases lock");
        let mut alloc = self.pool.alloc.lock().expect("arena lock");
        for &offset in offsets {
            let start = alloc
                .find(offset, 1)
                .filter(|s| leases.held.get(s).is_some_and(|n| *n > 0))
                .ok_or_else(|| {
                    format!("released shared region at {offset}, which it does not hold")
                })?;
            let n = leases.held.get_mut(&start).expect("checked");
            *n -= 1;
            if *n == 0 {
                leases.held.remove(&start);
            }
            alloc.decref(start);
        }
        Ok(())
    }

    /// Gives back every reference the worker held: its connection ended.
    pub fn close(&self) {
        let mut leases = self.leases.lock().expect("leases lock");
        leases.closed = true;
        let mut alloc = self.pool.alloc.lock().expect("arena lock");
        for (start, n) in leases.held.drain() {
            for _ in 0..n {
                alloc.decref(start);
            }
        }
    }

    /// Replaces the worker-arena regions an incoming frame names with the
    /// bytes they hold; a region of the wrong arena or out of bounds is a
    /// protocol violation.
    pub fn resolve_in(&self, frame: &mut Frame) -> Result<(), String> {
        snakepit_proto::frames::visit_values(frame, &mut |v: &mut v1::Value| {
            match v.kind.as_mut() {
                Some(V::Ndarray(nd)) => {
                    if let Some(r) = nd.shared.take() {
                        if !nd.data.is_empty() {
                            return Err("an ndarray with both inline and shared data".into());
                        }
                        nd.data = self.worker_bytes(&r)?;
                    }
                }
                Some(V::SharedBytes(r)) => {
                    let data = self.worker_bytes(r)?;
                    v.kind = Some(V::Bytes(data));
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn worker_bytes(&self, r: &SharedRegion) -> Result<Bytes, String> {
        if r.arena != SharedArena::Worker as i32 {
            return Err(format!(
                "a shared region of arena {} (a worker names only its own)",
                r.arena
            ));
        }
        let end = r.offset.checked_add(r.length);
        if end.is_none_or(|end| end > self.worker.map.len as u64) {
            return Err(format!(
                "a shared region [{}, +{}) past the end of the worker's arena ({} bytes)",
                r.offset, r.length, self.worker.map.len
            ));
        }
        Ok(Bytes::from_owner(WorkerRegion {
            arena: self.worker.clone(),
            offset: r.offset,
            len: r.length,
        }))
    }
}

/// The pool-arena region `v` names, if it names one: (offset, length).
fn host_region(v: &v1::Value) -> Option<(u64, u64)> {
    let r = match v.kind.as_ref() {
        Some(V::Ndarray(nd)) => nd.shared.as_ref(),
        Some(V::SharedBytes(r)) => Some(r),
        _ => None,
    }?;
    (r.arena == SharedArena::Host as i32).then_some((r.offset, r.length))
}

#[cfg(test)]
mod tests;
