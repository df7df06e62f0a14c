//! The `kafka` source's position: where each of its partitions stands.
//!
//! # Byte format (version 1, little-endian)
//! ```text
//! u8  version = 1
//! u32 partitions
//! per partition:
//!   u16 length, bytes  topic (UTF-8)
//!   i32 partition
//!   i64 next offset     the offset of the next record to read
//!   i64 max event time  the largest event time read (i64::MIN: none)
//! ```

use weir_runtime::OperatorError;

const POSITION_FORMAT_VERSION: u8 = 1;

/// One partition's place in a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub next_offset: i64,
    /// The largest event time read from it, if any.
    pub max_ts: Option<i64>,
}

/// Encodes `partitions`; see the module docs.
pub fn encode(partitions: &[PartitionPosition]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + partitions.len() * 32);
    bytes.push(POSITION_FORMAT_VERSION);
    bytes.extend_from_slice(&(partitions.len() as u32).to_le_bytes());
    for part in partitions {
        let topic = part.topic.as_bytes();
        bytes.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        bytes.extend_from_slice(topic);
        bytes.extend_from_slice(&part.partition.to_le_bytes());
        bytes.extend_from_slice(&part.next_offset.to_le_bytes());
        bytes.extend_from_slice(&part.max_ts.unwrap_or(i64::MIN).to_le_bytes());
    }
    bytes
}

/// Decodes what [`encode`] made; an error says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Vec<PartitionPosition>, OperatorError> {
    let bad = |what: &str| {
        OperatorError::invalid(format!(
            "kafka source position of {} bytes: {what}",
            bytes.len()
        ))
    };
    let mut rest = bytes;
    let mut take = |count: usize| -> Result<&[u8], OperatorError> {
        if rest.len() < count {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(count);
        rest = tail;
        Ok(head)
    };
    if take(1)? != [POSITION_FORMAT_VERSION] {
        return Err(bad("unknown version"));
    }
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
    let mut partitions = Vec::new();
    for _ in 0..count {
        let length = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes"));
        let topic = std::str::from_utf8(take(usize::from(length))?)
            .map_err(|_| bad("a topic that is not UTF-8"))?
            .to_owned();
        let partition = i32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        let next_offset = i64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let max_ts = i64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        partitions.push(PartitionPosition {
            topic,
            partition,
            next_offset,
            max_ts: (max_ts != i64::MIN).then_some(max_ts),
        });
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_damage_is_refused() {
        let partitions = vec![
            PartitionPosition {
                topic: "logs".into(),
                partition: 3,
                next_offset: 1_000_001,
                max_ts: Some(1_764_000_000_000),
            },
            PartitionPosition {
                topic: "audit".into(),
                partition: 0,
                next_offset: 0,
                max_ts: None,
            },
        ];
        let bytes = encode(&partitions);
        assert_eq!(decode(&bytes).unwrap(), partitions);
        assert!(decode(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        assert!(decode(&[9]).unwrap_err().to_string().contains("version"));
    }
}
