//! Acknowledgements, server to client: an [`AckHeader`] and the UTF-8
//! detail it announces (`docs/protocol.md`, "Acknowledgement").
//!
//! Layout of the header, little-endian: magic `WACK` (4 bytes), version
//! u8, status u8, retry-after in milliseconds u16, batch id u64, events
//! accepted u32, detail length u32; [`ACK_HEADER_BYTES`] in all. The server
//! acknowledges frames in the order it received them.

use crate::limits::ACK_HEADER_BYTES;
use crate::VERSION;

/// First four bytes of every acknowledgement.
pub const ACK_MAGIC: [u8; 4] = *b"WACK";

/// How the server answered a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AckStatus {
    /// The frame's events are durable in the WAL and will be processed
    /// exactly once.
    Durable = 0,
    /// The batch id was accepted before; nothing new was logged.
    Duplicate = 1,
    /// The frame is invalid (detail says why); nothing was accepted and the
    /// server closes the connection after this ack.
    Rejected = 2,
    /// The pipeline is backed up; nothing was accepted. Retry after
    /// `retry_after_ms`.
    Overloaded = 3,
    /// The source is shutting down; nothing was accepted.
    Unavailable = 4,
}

impl AckStatus {
    /// The status of a wire byte.
    pub fn from_u8(byte: u8) -> Option<AckStatus> {
        Some(match byte {
            0 => AckStatus::Durable,
            1 => AckStatus::Duplicate,
            2 => AckStatus::Rejected,
            3 => AckStatus::Overloaded,
            4 => AckStatus::Unavailable,
            _ => return None,
        })
    }
}

/// An acknowledgement's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckHeader {
    /// The outcome.
    pub status: AckStatus,
    /// With [`AckStatus::Overloaded`]: when to retry.
    pub retry_after_ms: u16,
    /// The frame's batch id.
    pub batch_id: u64,
    /// Events this frame added (0 unless [`AckStatus::Durable`]).
    pub events: u32,
    /// Bytes of UTF-8 detail that follow the header.
    pub detail_len: u32,
}

impl AckHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; ACK_HEADER_BYTES] {
        let mut bytes = [0u8; ACK_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&ACK_MAGIC);
        bytes[4] = VERSION;
        bytes[5] = self.status as u8;
        bytes[6..8].copy_from_slice(&self.retry_after_ms.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.batch_id.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.events.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.detail_len.to_le_bytes());
        bytes
    }

    /// Reads a header; `None` if it is not an acknowledgement.
    pub fn decode(bytes: &[u8; ACK_HEADER_BYTES]) -> Option<AckHeader> {
        if bytes[0..4] != ACK_MAGIC || bytes[4] != VERSION {
            return None;
        }
        Some(AckHeader {
            status: AckStatus::from_u8(bytes[5])?,
            retry_after_ms: u16::from_le_bytes([bytes[6], bytes[7]]),
            batch_id: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            events: u32::from_le_bytes(bytes[16..20].try_into().ok()?),
            detail_len: u32::from_le_bytes(bytes[20..24].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_header_round_trips() {
        let ack = AckHeader {
            status: AckStatus::Overloaded,
            retry_after_ms: 50,
            batch_id: 9,
            events: 0,
            detail_len: 3,
        };
        assert_eq!(AckHeader::decode(&ack.encode()), Some(ack));
        let mut unknown = ack.encode();
        unknown[5] = 5;
        assert_eq!(AckHeader::decode(&unknown), None);
        let mut bad = ack.encode();
        bad[0] = b'X';
        assert_eq!(AckHeader::decode(&bad), None);
    }

    /// The header's bytes, field by field, as `docs/protocol.md` lays
    /// them out: a change here is a change of the protocol.
    #[test]
    fn an_ack_header_has_the_documented_bytes() {
        let ack = AckHeader {
            status: AckStatus::Rejected,
            retry_after_ms: 0x0102,
            batch_id: 0x0102_0304_0506_0708,
            events: 0x1122_3344,
            detail_len: 0xaabb_ccdd,
        };
        let expected: [u8; ACK_HEADER_BYTES] = [
            b'W', b'A', b'C', b'K', 1, 2, 0x02, 0x01, // magic, version, status, retry
            8, 7, 6, 5, 4, 3, 2, 1, // batch id
            0x44, 0x33, 0x22, 0x11, // events
            0xdd, 0xcc, 0xbb, 0xaa, // detail length
        ];
        assert_eq!(ack.encode(), expected);
    }
}
