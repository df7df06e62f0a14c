//! [`Staged`]: one shard's output of one epoch, as the `kafka` sink's
//! pre-commit logs it in the WAL and its commit publishes it.
//!
//! # Byte format (version 1, little-endian)
//! ```text
//! u8  version = 1
//! u32 length, bytes   the header: JSON of `Header`
//! records, to the end:
//!   u32 key length (u32::MAX: no key), key bytes
//!   u32 value length, value bytes
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_runtime::OperatorError;

const STAGED_FORMAT_VERSION: u8 = 1;

/// What a commit needs besides the records: where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Bootstrap servers.
    pub brokers: String,
    /// librdkafka properties.
    pub options: BTreeMap<String, String>,
    /// The topic.
    pub topic: String,
    /// librdkafka's `compression.type`.
    pub compression: String,
    /// Whether the epoch is published in a transaction, exactly once.
    pub exactly_once: bool,
    /// The producer's `transactional.id`, also the group that holds the
    /// last published epoch: `weir-PIPELINE-SINK-SHARD`.
    pub transactional_id: String,
    /// The sink's node name.
    pub sink: String,
    /// The shard that staged it.
    pub shard: u64,
    /// The epoch.
    pub epoch: u64,
    /// Records that follow.
    pub records: u64,
    /// With `[runtime] group`: the scale-out run that staged it, whose
    /// process transaction publishes it (`crate::scale_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupHeader>,
}

/// The scale-out run a staged epoch belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHeader {
    /// The consumer group.
    pub name: String,
    /// The run's id ([`crate::scale_out::GroupPlan`]).
    pub run: u64,
}

/// A decoded staged epoch: the header and the records' bytes.
#[derive(Debug)]
pub struct Staged<'a> {
    /// Where and how.
    pub header: Header,
    /// The encoded records (see the module docs).
    pub records: &'a [u8],
}

/// Appends one record to `out`.
pub fn push_record(out: &mut Vec<u8>, key: Option<&[u8]>, value: &[u8]) {
    match key {
        Some(key) => {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// The staged bytes of `header` and the encoded `records`.
pub fn encode(header: &Header, records: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a header serializes");
    let mut bytes = Vec::with_capacity(5 + json.len() + records.len());
    bytes.push(STAGED_FORMAT_VERSION);
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(records);
    bytes
}

/// Decodes what [`encode`] made.
pub fn decode(bytes: &[u8]) -> Result<Staged<'_>, OperatorError> {
    let bad = |what: String| OperatorError::invalid(format!("kafka sink pre-commit: {what}"));
    if bytes.first() != Some(&STAGED_FORMAT_VERSION) || bytes.len() < 5 {
        return Err(bad("unknown version or truncated".into()));
    }
    let length = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
    let json = bytes
        .get(5..5 + length)
        .ok_or_else(|| bad("truncated header".into()))?;
    let header: Header =
        serde_json::from_slice(json).map_err(|error| bad(format!("header: {error}")))?;
    Ok(Staged {
        header,
        records: &bytes[5 + length..],
    })
}

/// The records of `records` as (key, value), in order; an error if the
/// bytes are damaged.
pub fn records(mut records: &[u8]) -> impl Iterator<Item = Result<(Option<&[u8]>, &[u8]), String>> {
    std::iter::from_fn(move || {
        if records.is_empty() {
            return None;
        }
        let mut take = |count: usize| -> Result<&[u8], String> {
            if records.len() < count {
                return Err("a truncated record".into());
            }
            let (head, tail) = records.split_at(count);
            records = tail;
            Ok(head)
        };
        let mut next = || -> Result<(Option<&[u8]>, &[u8]), String> {
            let length = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
            let key = if length == u32::MAX {
                None
            } else {
                Some(take(length as usize)?)
            };
            let length = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
            let value = take(length as usize)?;
            Ok((key, value))
        };
        let result = next();
        if result.is_err() {
            records = &[];
        }
        Some(result)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_epochs_round_trip() {
        let header = Header {
            brokers: "127.0.0.1:9092".into(),
            options: BTreeMap::new(),
            topic: "out".into(),
            compression: "none".into(),
            exactly_once: true,
            transactional_id: "weir-p-out-0".into(),
            sink: "out".into(),
            shard: 0,
            epoch: 7,
            records: 2,
            group: Some(GroupHeader {
                name: "g".into(),
                run: 42,
            }),
        };
        let mut body = Vec::new();
        push_record(&mut body, Some(b"k"), b"{\"a\":1}");
        push_record(&mut body, None, b"");
        let bytes = encode(&header, &body);
        let staged = decode(&bytes).unwrap();
        assert_eq!(staged.header, header);
        let all: Vec<_> = records(staged.records).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            all,
            vec![(Some(&b"k"[..]), &b"{\"a\":1}"[..]), (None, &b""[..])]
        );
        assert!(records(&body[..body.len() - 1]).any(|r| r.is_err()));
        assert!(decode(&bytes[..3]).is_err());
    }
}
