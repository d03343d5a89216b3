//! A remote worker's byte stream on the host: what its connection writes
//! goes to the agent as `WorkerData` while the worker's window has room;
//! what the agent sends is read back in order, and credited once read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use metrics::Counter;
use snakepit_proto::framing::HEADER_BYTES;
use snakepit_proto::v1::{self, host_message::Kind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::PollSemaphore;

/// Largest `WorkerData` the host sends.
const CHUNK: usize = 256 * 1024;

/// Counts the length-prefixed frames in a byte stream fed in pieces.
#[derive(Debug, Default)]
pub(crate) struct FrameCounter {
    header: [u8; HEADER_BYTES],
    have: usize,
    body_left: usize,
}

impl FrameCounter {
    /// Feeds the next bytes; returns how many frames they completed.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut frames = 0;
        while !data.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(data.len());
                self.body_left -= take;
                data = &data[take..];
                frames += u64::from(self.body_left == 0);
                continue;
            }
            let take = (HEADER_BYTES - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == HEADER_BYTES {
                self.have = 0;
                self.body_left = u32::from_be_bytes(self.header) as usize;
                frames += u64::from(self.body_left == 0);
            }
        }
        frames
    }
}

/// The worker's connection writes here.
pub(crate) struct RemoteWrite {
    worker: Arc<str>,
    to_agent: mpsc::UnboundedSender<v1::HostMessage>,
    window: PollSemaphore,
    window_bytes: usize,
    counter: FrameCounter,
    frames: Counter,
}

impl RemoteWrite {
    pub fn new(
        worker: Arc<str>,
        to_agent: mpsc::UnboundedSender<v1::HostMessage>,
        window: Arc<Semaphore>,
        window_bytes: u64,
        frames: Counter,
    ) -> Self {
        Self {
            worker,
            to_agent,
            window: PollSemaphore::new(window),
            window_bytes: (window_bytes as usize).max(1),
            counter: FrameCounter::default(),
            frames,
        }
    }
}

impl AsyncWrite for RemoteWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(CHUNK).min(self.window_bytes);
        let Some(permit) = ready!(self.window.poll_acquire_many(cx, n as u32)) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        // The agent gives the bytes back with `Credit` once written.
        permit.forget();
        let data = Bytes::copy_from_slice(&buf[..n]);
        let frames = self.counter.feed(&data);
        let message = v1::HostMessage {
            kind: Some(Kind::Data(v1::WorkerData {
                worker: self.worker.to_string(),
                data,
            })),
        };
        if self.to_agent.send(message).is_err() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        self.frames.increment(frames);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The worker's connection reads here; at the end of the agent's data (the
/// worker or its link ended) it reads end of file.
///
/// Bytes read are credited back in batches of half the window, as HTTP/2
/// does its window updates: a small call costs no credit message at all.
pub(crate) struct RemoteRead {
    data: mpsc::UnboundedReceiver<Bytes>,
    current: Bytes,
    /// Bytes of `current` to count as read once it is read to the end.
    current_len: u64,
    /// Read and not yet credited.
    uncredited: u64,
    /// Credit once `uncredited` reaches this.
    credit_at: u64,
    unread: Arc<AtomicU64>,
    worker: Arc<str>,
    to_agent: mpsc::UnboundedSender<v1::HostMessage>,
}

impl RemoteRead {
    pub fn new(
        data: mpsc::UnboundedReceiver<Bytes>,
        unread: Arc<AtomicU64>,
        worker: Arc<str>,
        to_agent: mpsc::UnboundedSender<v1::HostMessage>,
        window_bytes: u64,
    ) -> Self {
        Self {
            data,
            current: Bytes::new(),
            current_len: 0,
            uncredited: 0,
            credit_at: (window_bytes / 2).max(1),
            unread,
            worker,
            to_agent,
        }
    }

    /// `current` was read to its end.
    fn credit(&mut self) {
        let bytes = std::mem::take(&mut self.current_len);
        if bytes == 0 {
            return;
        }
        self.unread.fetch_sub(bytes, Ordering::Relaxed);
        self.uncredited += bytes;
        if self.uncredited < self.credit_at {
            return;
        }
        let bytes = std::mem::take(&mut self.uncredited);
        let _ = self.to_agent.send(v1::HostMessage {
            kind: Some(Kind::Credit(v1::WorkerCredit {
                worker: self.worker.to_string(),
                bytes,
            })),
        });
    }
}

impl AsyncRead for RemoteRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            self.credit();
            match ready!(self.data.poll_recv(cx)) {
                Some(chunk) => {
                    self.current_len = chunk.len() as u64;
                    self.current = chunk;
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current[..n]);
        self.current.advance(n);
        if self.current.is_empty() {
            self.credit();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_any_split() {
        let mut bytes = Vec::new();
        for body in [&b"abc"[..], b"", &[7u8; 300]] {
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(body);
        }
        for split in 1..bytes.len() {
            let mut counter = FrameCounter::default();
            let frames: u64 = bytes.chunks(split).map(|c| counter.feed(c)).sum();
            assert_eq!(frames, 3, "pieces of {split}");
        }
    }
}
