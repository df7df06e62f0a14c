//! The payload of the coordinator's `EPOCH_COMMIT` records: whether the run
//! completed with this epoch, and each shard's durable LSN when it was
//! committed.
//!
//! Layout (little-endian), `docs/wal-format.md` §11: the magic `WEC1`, a
//! flags byte (bit 0: final, the run completed; other bits zero), the shard
//! count u32, then one u64 per shard: an LSN below which every record of
//! that shard's log was durable when the epoch committed.
//!
//! The LSNs let recovery prove that nothing durable is missing from a shard
//! log: a log that ends below the LSN a commit named has lost records
//! (a deleted newest segment, a whole log gone), which the log alone cannot
//! always show (`docs/wal-format.md` §8).
//!
//! Older builds wrote an empty payload, or `final` for the final epoch of a
//! completed run; both still decode, without LSNs (no check then).

/// Opens every commit payload of this layout.
const MAGIC: [u8; 4] = *b"WEC1";

/// Flag bit: this epoch ended a completed run.
const FLAG_FINAL: u8 = 1;

/// The payload of the final epoch's commit record in older builds.
const OLD_FINAL_MARK: &[u8] = b"final";

/// What a commit record says besides its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitRecord {
    /// The run completed with this epoch (end of input, not a stop).
    pub(crate) complete: bool,
    /// Per shard: every LSN below this was durable in its log when the
    /// epoch committed. `None` in records of older builds.
    pub(crate) shard_lsns: Option<Vec<u64>>,
}

impl CommitRecord {
    /// Encodes the record's payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let lsns = self.shard_lsns.as_deref().unwrap_or(&[]);
        let mut bytes = Vec::with_capacity(9 + 8 * lsns.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.push(if self.complete { FLAG_FINAL } else { 0 });
        bytes.extend_from_slice(&(lsns.len() as u32).to_le_bytes());
        for lsn in lsns {
            bytes.extend_from_slice(&lsn.to_le_bytes());
        }
        bytes
    }

    /// Decodes a payload, of this layout or of an older build; `None` if
    /// it is neither.
    pub(crate) fn decode(payload: &[u8]) -> Option<CommitRecord> {
        if payload.is_empty() || payload == OLD_FINAL_MARK {
            return Some(CommitRecord {
                complete: !payload.is_empty(),
                shard_lsns: None,
            });
        }
        let rest = payload.strip_prefix(&MAGIC)?;
        let (&flags, rest) = rest.split_first()?;
        if flags & !FLAG_FINAL != 0 {
            return None;
        }
        let (count, rest) = rest.split_first_chunk::<4>()?;
        let count = u32::from_le_bytes(*count) as usize;
        if rest.len() != count.checked_mul(8)? {
            return None;
        }
        let lsns = rest
            .chunks_exact(8)
            .map(|lsn| u64::from_le_bytes(lsn.try_into().expect("8 bytes")))
            .collect();
        Some(CommitRecord {
            complete: flags & FLAG_FINAL != 0,
            shard_lsns: Some(lsns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for complete in [false, true] {
            let record = CommitRecord {
                complete,
                shard_lsns: Some(vec![0, 7, u64::MAX]),
            };
            assert_eq!(CommitRecord::decode(&record.encode()), Some(record));
        }
    }

    #[test]
    fn older_payloads_decode_without_lsns() {
        let old = |complete| CommitRecord {
            complete,
            shard_lsns: None,
        };
        assert_eq!(CommitRecord::decode(b""), Some(old(false)));
        assert_eq!(CommitRecord::decode(b"final"), Some(old(true)));
    }

    #[test]
    fn damaged_payloads_are_refused() {
        let record = CommitRecord {
            complete: false,
            shard_lsns: Some(vec![3, 4]),
        };
        let bytes = record.encode();
        assert_eq!(CommitRecord::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(CommitRecord::decode(b"fin"), None);
        let mut flags = bytes.clone();
        flags[4] = 0x80;
        assert_eq!(CommitRecord::decode(&flags), None);
    }
}
