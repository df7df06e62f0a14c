//! The protocol's limits, in one place: how long its headers are and the
//! most a header's length fields can claim.
//!
//! These are properties of the format, not policy: a server refuses frames
//! far smaller than [`FRAME_PAYLOAD_BYTES_MAX`] (the `tcp` source's
//! `max_frame_bytes`, at most one write-ahead log record), and a client
//! may bound the detail it reads below [`ACK_DETAIL_BYTES_MAX`].

/// Bytes of a frame's magic and of an acknowledgement's magic.
pub const MAGIC_BYTES: usize = 4;
/// Bytes of a [`FrameHeader`](crate::FrameHeader): magic, version u8,
/// flags u8, reserved u16, batch id u64, payload length u32, CRC32C u32.
pub const FRAME_HEADER_BYTES: usize = 24;
/// Bytes of an [`AckHeader`](crate::AckHeader): magic, version u8, status
/// u8, retry-after u16, batch id u64, events u32, detail length u32.
pub const ACK_HEADER_BYTES: usize = 24;
/// The largest payload a frame header can claim: its length field is a
/// u32.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = u32::MAX as usize;
/// The largest detail an acknowledgement header can claim: its length
/// field is a u32.
pub const ACK_DETAIL_BYTES_MAX: usize = u32::MAX as usize;

// Each header is exactly the sum of its fields, in the order above.
const _: () = assert!(FRAME_HEADER_BYTES == MAGIC_BYTES + 1 + 1 + 2 + 8 + 4 + 4);
const _: () = assert!(ACK_HEADER_BYTES == MAGIC_BYTES + 1 + 1 + 2 + 8 + 4 + 4);
// The u32 length fields must fit a `usize`, or the maxima above would wrap.
const _: () = assert!(usize::BITS >= u32::BITS);
