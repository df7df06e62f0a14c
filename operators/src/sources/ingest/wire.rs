//! The native `tcp` ingest protocol's frames (`docs/protocol.md`).
//!
//! A client sends [`FrameHeader`] + payload frames; the payload is an rkyv
//! archive of `Vec<WireEvent>`. The server answers every frame, in order,
//! with an [`AckHeader`] followed by `detail_len` bytes of UTF-8 detail.

use rkyv::{Archive, Deserialize, Serialize};

/// One event as a client sends it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct WireEvent {
    /// The grouping key.
    pub key: String,
    /// Event time, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// When the client meant to send the event, in nanoseconds since the
    /// Unix epoch (0: unknown). End-to-end latencies start here.
    pub sent_ns: u64,
    /// The rest of the event, opaque to the ingest source.
    pub body: Vec<u8>,
}

/// First four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"WEIR";
/// First four bytes of every acknowledgement.
pub const ACK_MAGIC: [u8; 4] = *b"WACK";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes of a [`FrameHeader`].
pub const FRAME_HEADER_LEN: usize = 24;
/// Bytes of an [`AckHeader`].
pub const ACK_HEADER_LEN: usize = 24;
/// Frame flag: drop the frame if its batch id was accepted before (within
/// the source's dedup window).
pub const FLAG_DEDUP: u8 = 1;

/// A frame's header. Layout (little-endian): magic `WEIR`, version u8,
/// flags u8, reserved u16 (0), batch id u64, payload length u32, CRC32C of
/// the payload u32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Flags (`FLAG_*`).
    pub flags: u8,
    /// Chosen by the client, echoed in the ack; with [`FLAG_DEDUP`] also the
    /// deduplication key.
    pub batch_id: u64,
    /// Payload bytes.
    pub len: u32,
    /// CRC32C (Castagnoli) of the payload.
    pub crc: u32,
}

/// What is wrong with a frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The first four bytes are not `WEIR`.
    Magic([u8; 4]),
    /// A version this build does not speak.
    Version(u8),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Magic(bytes) => {
                write!(f, "bad frame magic {bytes:02x?} (expected \"WEIR\")")
            }
            HeaderError::Version(version) => {
                write!(
                    f,
                    "unsupported protocol version {version} (this server speaks {VERSION})"
                )
            }
        }
    }
}

impl FrameHeader {
    /// The header's 24 bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut bytes = [0u8; FRAME_HEADER_LEN];
        bytes[0..4].copy_from_slice(&FRAME_MAGIC);
        bytes[4] = VERSION;
        bytes[5] = self.flags;
        bytes[8..16].copy_from_slice(&self.batch_id.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.len.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }

    /// Reads a header.
    pub fn decode(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, HeaderError> {
        let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
        if magic != FRAME_MAGIC {
            return Err(HeaderError::Magic(magic));
        }
        if bytes[4] != VERSION {
            return Err(HeaderError::Version(bytes[4]));
        }
        Ok(FrameHeader {
            flags: bytes[5],
            batch_id: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")),
            crc: u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes")),
        })
    }
}

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

/// An acknowledgement's header. Layout (little-endian): magic `WACK`,
/// version u8, status u8, retry-after in milliseconds u16, batch id u64,
/// events accepted u32, detail length u32.
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
    /// The header's 24 bytes.
    pub fn encode(&self) -> [u8; ACK_HEADER_LEN] {
        let mut bytes = [0u8; ACK_HEADER_LEN];
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
    pub fn decode(bytes: &[u8; ACK_HEADER_LEN]) -> Option<AckHeader> {
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

/// Serializes `events` as a frame payload.
pub fn encode_payload(events: &[WireEvent]) -> rkyv::util::AlignedVec {
    rkyv::to_bytes::<rkyv::rancor::Error>(&events.to_vec())
        .expect("serializing to memory cannot fail")
}

/// A whole frame: header and payload.
pub fn encode_frame(flags: u8, batch_id: u64, events: &[WireEvent]) -> Vec<u8> {
    let payload = encode_payload(events);
    let header = FrameHeader {
        flags,
        batch_id,
        len: payload.len() as u32,
        crc: crc32c::crc32c(&payload),
    };
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(&payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let header = FrameHeader {
            flags: FLAG_DEDUP,
            batch_id: 7,
            len: 100,
            crc: 0xdead_beef,
        };
        assert_eq!(FrameHeader::decode(&header.encode()), Ok(header));
        let ack = AckHeader {
            status: AckStatus::Overloaded,
            retry_after_ms: 50,
            batch_id: 9,
            events: 0,
            detail_len: 3,
        };
        assert_eq!(AckHeader::decode(&ack.encode()), Some(ack));
        let mut bad = header.encode();
        bad[0] = b'X';
        assert!(matches!(
            FrameHeader::decode(&bad),
            Err(HeaderError::Magic(_))
        ));
    }
}
