//! weir's native TCP ingest protocol: the bytes a client and the `tcp`
//! source exchange. `docs/protocol.md` ("TCP (native protocol)") is the
//! specification, with byte tables and the server's checks; this crate is
//! its one implementation, shared by the server (`weir-operators`) and the
//! load generator (`weir-loadgen`).
//!
//! # The exchange
//! 1. A client sends frames back to back, without waiting for earlier ones
//!    to be acknowledged (pipelining). A frame is a [`FrameHeader`] of
//!    [`FRAME_HEADER_BYTES`] followed by its payload: an rkyv 0.8 archive
//!    of `Vec<WireEvent>` ([`encode_payload`], [`encode_frame`]).
//! 2. The server answers every frame, in frame order, with an
//!    [`AckHeader`] of [`ACK_HEADER_BYTES`] followed by `detail_len` bytes
//!    of UTF-8 detail (why a frame was refused; usually none).
//!
//! # Invariants
//! - Every integer is little-endian, whatever the host.
//! - Both headers begin with a four-byte magic ([`FRAME_MAGIC`],
//!   [`ACK_MAGIC`]) and the protocol [`VERSION`]; a header with another
//!   magic or version is refused whole ([`HeaderError`], or `None` from
//!   [`AckHeader::decode`]).
//! - A frame header carries the CRC32C (Castagnoli) of its payload;
//!   [`encode_frame`] computes it, the server checks it before reading the
//!   archive.
//! - With [`FLAG_DEDUP`] a frame's batch id is also its deduplication key:
//!   a client that resends a frame whose acknowledgement it lost keeps the
//!   id, and the server adds the frame's events once.
//!
//! # Limits
//! What a header can express is in [`limits`]: the header lengths and the
//! largest payload or detail a header may claim. A server sets its own,
//! lower payload limit (the `tcp` source's `max_frame_bytes`), which this
//! crate does not know.
//!
//! # What this crate does not do
//! It reads and writes bytes in memory only: no sockets, no timeouts and no
//! validation of a payload's archive, which belong to the server (the `tcp`
//! source checks every archive with rkyv's validator through
//! [`ArchivedWireEvent`]) and to clients.

#![warn(missing_docs)]

mod ack;
mod event;
mod frame;
pub mod limits;

pub use ack::{AckHeader, AckStatus, ACK_MAGIC};
pub use event::{encode_payload, ArchivedWireEvent, WireEvent};
pub use frame::{encode_frame, FrameHeader, HeaderError, FLAG_DEDUP, FRAME_MAGIC};
pub use limits::{ACK_HEADER_BYTES, FRAME_HEADER_BYTES};

/// The protocol version this build speaks, in both headers.
pub const VERSION: u8 = 1;
