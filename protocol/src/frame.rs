//! Frames, client to server: a [`FrameHeader`] and the payload it
//! describes (`docs/protocol.md`, "Frame").
//!
//! Layout of the header, little-endian: magic `WEIR` (4 bytes), version u8,
//! flags u8, reserved u16 (0), batch id u64, payload length u32, CRC32C of
//! the payload u32; [`FRAME_HEADER_BYTES`] in all.

use crate::event::{encode_payload, WireEvent};
use crate::limits::{FRAME_HEADER_BYTES, FRAME_PAYLOAD_BYTES_MAX};
use crate::VERSION;

/// First four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"WEIR";
/// Frame flag: drop the frame if its batch id was accepted before (within
/// the source's dedup window).
pub const FLAG_DEDUP: u8 = 1;

/// A frame's header.
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
    /// The header's bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut bytes = [0u8; FRAME_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&FRAME_MAGIC);
        bytes[4] = VERSION;
        bytes[5] = self.flags;
        bytes[8..16].copy_from_slice(&self.batch_id.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.len.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }

    /// Reads a header.
    pub fn decode(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, HeaderError> {
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

/// A whole frame: header and payload.
///
/// # Panics
/// If the payload is larger than a header can claim
/// ([`FRAME_PAYLOAD_BYTES_MAX`]): no server accepts such a frame, so
/// building one is a programmer error.
pub fn encode_frame(flags: u8, batch_id: u64, events: &[WireEvent]) -> Vec<u8> {
    let payload = encode_payload(events);
    assert!(
        payload.len() <= FRAME_PAYLOAD_BYTES_MAX,
        "a frame payload of {} bytes is more than a header can claim",
        payload.len()
    );
    let header = FrameHeader {
        flags,
        batch_id,
        len: payload.len() as u32,
        crc: crc32c::crc32c(&payload),
    };
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(&payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_header_round_trips() {
        let header = FrameHeader {
            flags: FLAG_DEDUP,
            batch_id: 7,
            len: 100,
            crc: 0xdead_beef,
        };
        assert_eq!(FrameHeader::decode(&header.encode()), Ok(header));
        let mut bad = header.encode();
        bad[0] = b'X';
        assert!(matches!(
            FrameHeader::decode(&bad),
            Err(HeaderError::Magic(_))
        ));
        let mut newer = header.encode();
        newer[4] = VERSION + 1;
        assert_eq!(
            FrameHeader::decode(&newer),
            Err(HeaderError::Version(VERSION + 1))
        );
    }

    /// The header's bytes, field by field, as `docs/protocol.md` lays
    /// them out: a change here is a change of the protocol.
    #[test]
    fn a_frame_header_has_the_documented_bytes() {
        let header = FrameHeader {
            flags: FLAG_DEDUP,
            batch_id: 0x0102_0304_0506_0708,
            len: 0x1122_3344,
            crc: 0xaabb_ccdd,
        };
        let expected: [u8; FRAME_HEADER_BYTES] = [
            b'W', b'E', b'I', b'R', 1, 1, 0, 0, // magic, version, flags, reserved
            8, 7, 6, 5, 4, 3, 2, 1, // batch id
            0x44, 0x33, 0x22, 0x11, // payload length
            0xdd, 0xcc, 0xbb, 0xaa, // CRC32C
        ];
        assert_eq!(header.encode(), expected);
    }

    #[test]
    fn a_frame_carries_its_payload_length_and_checksum() {
        let events = [WireEvent {
            key: "key".into(),
            ts_ms: 1,
            sent_ns: 2,
            body: b"body".to_vec(),
        }];
        let frame = encode_frame(0, 9, &events);
        let (head, payload) = frame.split_at(FRAME_HEADER_BYTES);
        let header = FrameHeader::decode(head.try_into().unwrap()).unwrap();
        assert_eq!(header.len as usize, payload.len());
        assert_eq!(header.crc, crc32c::crc32c(payload));
        assert_eq!(payload, &encode_payload(&events)[..]);
        assert_eq!((header.flags, header.batch_id), (0, 9));
    }
}
