//! Length-prefixed framing: a big-endian `u32` length, then one encoded
//! [`crate::v1::Frame`]. Used by the local transport on both ends.
//!
//! A frame whose announced length exceeds the limit is rejected from its
//! header alone, so a hostile or broken peer cannot make us allocate it.

use bytes::{Buf, BufMut, BytesMut};
use prost::Message;

use crate::v1::Frame;

/// Default largest frame, in bytes (64 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than the configured limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the frame body in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not a valid `Frame`.
    #[error("undecodable frame of {size} bytes: {source}")]
    Malformed {
        /// Size of the frame body in bytes.
        size: usize,
        /// What prost said.
        #[source]
        source: prost::DecodeError,
    },
}

/// Appends `frame` to `dst` with its length prefix.
pub fn encode(frame: &Frame, dst: &mut BytesMut, limit: usize) -> Result<(), FrameError> {
    let size = frame.encoded_len();
    if size > limit || size > u32::MAX as usize {
        return Err(FrameError::TooLarge { size, limit });
    }
    dst.reserve(HEADER_BYTES + size);
    dst.put_u32(size as u32);
    frame
        .encode(dst)
        .expect("buffer was reserved for the whole frame");
    Ok(())
}

/// Takes one whole frame off the front of `src`, if one is there.
///
/// Returns `Ok(None)` when more bytes are needed. After an error the stream is
/// unusable: the caller closes the connection.
pub fn decode(src: &mut BytesMut, limit: usize) -> Result<Option<Frame>, FrameError> {
    if src.len() < HEADER_BYTES {
        return Ok(None);
    }
    let size = u32::from_be_bytes(src[..HEADER_BYTES].try_into().expect("4 bytes")) as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if src.len() < HEADER_BYTES + size {
        src.reserve(HEADER_BYTES + size - src.len());
        return Ok(None);
    }
    src.advance(HEADER_BYTES);
    let body = src.split_to(size).freeze();
    Frame::decode(body)
        .map(Some)
        .map_err(|source| FrameError::Malformed { size, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Ping, frame::Kind};

    fn ping(id: u64) -> Frame {
        Frame {
            id,
            kind: Some(Kind::Ping(Ping { sent_unix_nanos: 7 })),
        }
    }

    #[test]
    fn round_trips_several_frames_split_anywhere() {
        let mut wire = BytesMut::new();
        for id in 1..=3 {
            encode(&ping(id), &mut wire, 1024).unwrap();
        }
        let bytes = wire.freeze();
        // Feed the bytes one at a time: every split point must work.
        let mut buf = BytesMut::new();
        let mut ids = Vec::new();
        for b in bytes.iter() {
            buf.put_u8(*b);
            while let Some(frame) = decode(&mut buf, 1024).unwrap() {
                ids.push(frame.id);
            }
        }
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_oversized_header_without_the_body() {
        let mut buf = BytesMut::new();
        buf.put_u32(10_000);
        let err = decode(&mut buf, 1024).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 10_000,
                limit: 1024
            }
        ));
    }

    #[test]
    fn rejects_garbage() {
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.put_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(FrameError::Malformed { size: 3, .. })
        ));
    }

    #[test]
    fn refuses_to_encode_past_the_limit() {
        let mut buf = BytesMut::new();
        let err = encode(&ping(1), &mut buf, 2).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { limit: 2, .. }));
        assert!(buf.is_empty());
    }
}
