//! On-disk encoding: segment header, record framing and checksums.
//!
//! Everything is explicit little-endian; see `docs/wal-format.md` for the
//! byte layout. Decoding never reads outside the slice it is given and never
//! panics on any input: every length is checked before it is used.

use crate::crc::HEAD_LEN;
use crate::limits::{MAX_PAYLOAD_BYTES, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Magic bytes at offset 0 of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"WEIRWAL\0";
/// Format version written by this code; other versions are refused.
pub const FORMAT_VERSION: u32 = 1;

/// A log sequence number: the position of a record in one shard's log.
/// LSNs start at 0 and are dense (every record consumes exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lsn {}", self.0)
    }
}

/// The type of a record. 0 is never valid (zeroed space), 255 is the
/// internal seal record that ends a full segment; everything else is the
/// caller's to assign (the named constants are the runtime's kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordType(u8);

impl RecordType {
    /// Journaled non-replayable input (HTTP / TCP ingest).
    pub const INPUT: Self = Self(1);
    /// Source positions of an epoch commit.
    pub const SOURCE_POSITIONS: Self = Self(2);
    /// Operator state of an epoch commit.
    pub const OPERATOR_STATE: Self = Self(3);
    /// Sink pre-commit of an epoch.
    pub const SINK_PRECOMMIT: Self = Self(4);
    /// Epoch commit marker.
    pub const EPOCH_COMMIT: Self = Self(5);
    /// A leading part of a record too large for one WAL record: the parts
    /// follow in order, the last one under the record's own type.
    pub const CONTINUED: Self = Self(6);
    /// What changed in an operator's state during an epoch (an incremental
    /// snapshot): recovery applies them, in epoch order, to the operator's
    /// last base (`OPERATOR_BASE`).
    pub const OPERATOR_CHANGES: Self = Self(7);
    /// The whole state of an operator that snapshots incrementally, at a
    /// base epoch or the first epoch of a run.
    pub const OPERATOR_BASE: Self = Self(8);
    /// An epoch's changes of an operator whose base is swept (written a
    /// slice per epoch), followed by a slice of that base: a flags byte
    /// (bit 0: a sweep begins here, bit 1: the sweep is complete here),
    /// then the operator's bytes. Recovery applies these like changes.
    pub const OPERATOR_SWEEP: Self = Self(9);
    /// Where a run started after recovering the epoch it names.
    pub const RESTART: Self = Self(16);
    /// A sink commit that completed (the pre-commit's epoch).
    pub const SINK_COMMITTED: Self = Self(17);
    /// Internal: seals a full segment. Never returned to callers by readers.
    pub(crate) const SEAL: Self = Self(255);

    /// A caller-defined type. Panics (programmer error) on 0 or 255, which
    /// are reserved.
    pub const fn new(v: u8) -> Self {
        assert!(v != 0 && v != 255, "record types 0 and 255 are reserved");
        Self(v)
    }

    /// The raw byte stored on disk.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Whether this is the internal seal type.
    pub(crate) const fn is_seal(self) -> bool {
        self.0 == 255
    }
}

/// One record to append in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Record type.
    pub kind: RecordType,
    /// Epoch.
    pub epoch: u64,
    /// Payload.
    pub payload: &'a [u8],
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Shard that owns the log.
    pub shard: u32,
    /// Segment number (dense, increasing by one per roll).
    pub segment: u64,
    /// Random salt; every record in this segment carries it.
    pub salt: u32,
    /// LSN of the first record in this segment.
    pub first_lsn: Lsn,
    /// Maximum size of this segment file in bytes.
    pub segment_bytes: u64,
    /// The file was recycled (an earlier segment's file, overwritten in
    /// place): bytes after this segment's last record may be an earlier
    /// segment's, which the salt tells apart (`docs/wal-format.md` §12).
    pub recycled: bool,
}

/// Bit of the header's flags word (bytes 28..32): the file was recycled.
pub const HEADER_RECYCLED: u32 = 1;

/// Why a segment header did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short,
    /// Magic bytes differ.
    BadMagic,
    /// CRC over the header does not match.
    BadCrc,
    /// A format version this code does not read.
    Version(u32),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short => write!(f, "segment header is truncated"),
            Self::BadMagic => write!(f, "segment header has bad magic"),
            Self::BadCrc => write!(f, "segment header CRC mismatch"),
            Self::Version(v) => write!(f, "unsupported format version {v}"),
        }
    }
}

impl SegmentHeader {
    /// Encodes the header into its [`SEGMENT_HEADER_LEN`] bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.to_le_bytes());
        b[24..28].copy_from_slice(&self.salt.to_le_bytes());
        let flags = if self.recycled { HEADER_RECYCLED } else { 0 };
        b[28..32].copy_from_slice(&flags.to_le_bytes());
        b[32..40].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.segment_bytes.to_le_bytes());
        // 48..60 reserved, zero.
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header from the start of `b`.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderProblem> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderProblem::Short);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        if crc32c::crc32c(&b[..60]) != le_u32(b, 60) {
            return Err(HeaderProblem::BadCrc);
        }
        let version = le_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        Ok(Self {
            shard: le_u32(b, 12),
            segment: le_u64(b, 16),
            salt: le_u32(b, 24),
            first_lsn: Lsn(le_u64(b, 32)),
            segment_bytes: le_u64(b, 40),
            recycled: le_u32(b, 28) & HEADER_RECYCLED != 0,
        })
    }
}

/// Bytes a record with `payload_len` bytes of payload occupies, padding
/// included.
pub const fn frame_len(payload_len: usize) -> u64 {
    let raw = (RECORD_HEADER_LEN + payload_len) as u64;
    raw.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// The header fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Record type.
    pub kind: RecordType,
    /// Epoch the record belongs to (caller-defined).
    pub epoch: u64,
    /// Log sequence number (for a seal: the LSN the next segment starts at).
    pub lsn: Lsn,
    /// Every record with an LSN below this was durable when this record was
    /// staged. Lets recovery tell a torn tail from mid-log corruption.
    pub durable_below: Lsn,
    /// Salt of the segment the record was written to.
    pub salt: u32,
}

/// Appends the framed record (header, payload, zero padding) to `out`.
pub fn encode_record(out: &mut Vec<u8>, h: &RecordHeader, payload: &[u8]) {
    let start = out.len();
    let total = frame_len(payload.len()) as usize;
    out.resize(start + total, 0);
    encode_record_into(&mut out[start..start + total], h, payload);
}

/// Writes the framed record into `b`, which must be exactly
/// `frame_len(payload.len())` bytes; every byte is written (padding zeroed).
pub fn encode_record_into(b: &mut [u8], h: &RecordHeader, payload: &[u8]) {
    encode_record_parts_into(b, h, &[payload]);
}

/// [`encode_record_into`] with the payload given in parts, copied into `b`
/// one after the other (no joined copy of the payload is ever made).
pub fn encode_record_parts_into(b: &mut [u8], h: &RecordHeader, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    assert!(len <= MAX_PAYLOAD_BYTES, "payload over the limit");
    assert_eq!(b.len() as u64, frame_len(len), "frame length");
    b[4..RECORD_HEADER_LEN].copy_from_slice(&encode_head(h, len));
    let mut at = RECORD_HEADER_LEN;
    for part in parts {
        b[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    b[at..].fill(0); // padding
                     // One CRC pass over header and payload, now contiguous in `b`.
    let crc = crc32c::crc32c(&b[4..at]);
    b[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Header bytes 4..40 of a record with `payload_len` bytes of payload:
/// everything its CRC covers before the payload.
pub(crate) fn encode_head(h: &RecordHeader, payload_len: usize) -> [u8; HEAD_LEN] {
    let mut b = [0u8; HEAD_LEN];
    b[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    b[4..12].copy_from_slice(&h.lsn.0.to_le_bytes());
    b[12..20].copy_from_slice(&h.epoch.to_le_bytes());
    b[20..28].copy_from_slice(&h.durable_below.0.to_le_bytes());
    b[28..32].copy_from_slice(&h.salt.to_le_bytes());
    b[32] = h.kind.0;
    // 33..36: flags, reserved — zero.
    b
}

/// Writes a frame with a precomputed `crc` (of `head` then `payload`) into
/// `b`, which must be exactly `frame_len(payload.len())` bytes.
pub(crate) fn write_frame(b: &mut [u8], crc: u32, head: &[u8; HEAD_LEN], payload: &[u8]) {
    assert!(payload.len() <= MAX_PAYLOAD_BYTES, "payload over the limit");
    assert_eq!(b.len() as u64, frame_len(payload.len()), "frame length");
    let end = RECORD_HEADER_LEN + payload.len();
    b[0..4].copy_from_slice(&crc.to_le_bytes());
    b[4..RECORD_HEADER_LEN].copy_from_slice(head);
    b[RECORD_HEADER_LEN..end].copy_from_slice(payload);
    b[end..].fill(0); // padding
}

/// What was found at one record position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A valid record with this segment's salt.
    Record(RecordHeader, &'a [u8]),
    /// The header bytes are all zero: unwritten space.
    Zero,
    /// A record that checks out but carries another salt: left over from an
    /// earlier use of the file.
    Stale,
    /// Anything else: partial, torn or corrupted bytes.
    Bad(BadReason),
}

/// Why the bytes at a position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadReason {
    /// The header or the payload runs past the end of the data.
    Truncated,
    /// The length field exceeds [`MAX_PAYLOAD_BYTES`].
    BadLength,
    /// The CRC does not match.
    BadCrc,
    /// Reserved bits set or type 0.
    BadFields,
    /// A checksummed record whose LSN is not the next one expected.
    WrongLsn,
}

impl std::fmt::Display for BadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Truncated => "record runs past the end of the segment",
            Self::BadLength => "record length out of range",
            Self::BadCrc => "record CRC mismatch",
            Self::BadFields => "record has invalid type or reserved bits",
            Self::WrongLsn => "record LSN out of sequence",
        })
    }
}

/// Parses the record at `off` in `data` (a whole segment file), expecting
/// `salt`. Never reads outside `data`.
pub fn parse_record(data: &[u8], off: usize, salt: u32) -> Parsed<'_> {
    let Some(h) = data.get(off..).and_then(|d| d.get(..RECORD_HEADER_LEN)) else {
        let rest = data.get(off..).unwrap_or(&[]);
        return if rest.iter().all(|&b| b == 0) {
            Parsed::Zero
        } else {
            Parsed::Bad(BadReason::Truncated)
        };
    };
    if h.iter().all(|&b| b == 0) {
        return Parsed::Zero;
    }
    let len = le_u32(h, 4) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Parsed::Bad(BadReason::BadLength);
    }
    let body_start = off + RECORD_HEADER_LEN;
    let Some(payload) = data.get(body_start..).and_then(|d| d.get(..len)) else {
        return Parsed::Bad(BadReason::Truncated);
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[4..]), payload);
    if crc != le_u32(h, 0) {
        return Parsed::Bad(BadReason::BadCrc);
    }
    if h[36] == 0 || h[37] != 0 || h[38] != 0 || h[39] != 0 {
        return Parsed::Bad(BadReason::BadFields);
    }
    let header = RecordHeader {
        kind: RecordType(h[36]),
        epoch: le_u64(h, 16),
        lsn: Lsn(le_u64(h, 8)),
        durable_below: Lsn(le_u64(h, 24)),
        salt: le_u32(h, 32),
    };
    if header.salt != salt {
        return Parsed::Stale;
    }
    Parsed::Record(header, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = SegmentHeader {
            shard: 3,
            segment: 9,
            salt: 0xdead_beef,
            first_lsn: Lsn(77),
            segment_bytes: 1 << 20,
            recycled: false,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let r = SegmentHeader {
            recycled: true,
            ..h
        };
        assert_eq!(SegmentHeader::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn record_roundtrip_and_padding() {
        let mut v = Vec::new();
        let h = RecordHeader {
            kind: RecordType::INPUT,
            epoch: 4,
            lsn: Lsn(5),
            durable_below: Lsn(2),
            salt: 42,
        };
        encode_record(&mut v, &h, b"hello");
        assert_eq!(v.len() as u64, frame_len(5));
        assert_eq!(v.len() % 8, 0);
        assert_eq!(parse_record(&v, 0, 42), Parsed::Record(h, b"hello"));
        assert_eq!(parse_record(&v, 0, 43), Parsed::Stale);
        v[41] ^= 1;
        assert_eq!(parse_record(&v, 0, 42), Parsed::Bad(BadReason::BadCrc));
    }

    #[test]
    fn a_record_framed_from_parts_is_the_record_of_their_join() {
        let h = RecordHeader {
            kind: RecordType::OPERATOR_CHANGES,
            epoch: 9,
            lsn: Lsn(12),
            durable_below: Lsn(3),
            salt: 7,
        };
        let mut joined = Vec::new();
        encode_record(&mut joined, &h, b"identity|changes and a slice");
        let mut parts = vec![0xAA; joined.len()];
        encode_record_parts_into(&mut parts, &h, &[b"identity|", b"", b"changes and a slice"]);
        assert_eq!(parts, joined, "padding included");
        assert_eq!(
            parse_record(&parts, 0, 7),
            Parsed::Record(h, b"identity|changes and a slice")
        );
    }
}
