//! The loaded table: the index from key to row (one hash map per key type,
//! or per prefix length for CIDR) and the lookup of an input value.

use rustc_hash::FxHashMap;

use super::cidr::mask;
use crate::row::{ArchivedValue, Value};

/// The index from key to row.
#[derive(Debug)]
pub(super) enum Index {
    Str(FxHashMap<Box<str>, u32>),
    /// `int` and `timestamp` keys.
    Int(FxHashMap<i64, u32>),
    Bool([Option<u32>; 2]),
    Ip(FxHashMap<[u8; 16], u32>),
    /// (prefix length over 128 bits, network → row), longest first.
    Cidr(Vec<(u32, FxHashMap<u128, u32>)>),
}

/// A loaded table: the key index and each row's column values.
#[derive(Debug)]
pub(super) struct Table {
    pub(super) index: Index,
    pub(super) rows: Vec<Vec<Value>>,
}

impl Table {
    /// The row matching `key`, if any.
    #[inline]
    pub(super) fn lookup(&self, key: &ArchivedValue) -> Option<&[Value]> {
        let row = match (&self.index, key) {
            (Index::Str(map), ArchivedValue::String(text)) => map.get(text.as_str()).copied(),
            (Index::Int(map), ArchivedValue::Int(value) | ArchivedValue::Timestamp(value)) => {
                map.get(&value.to_native()).copied()
            }
            (Index::Bool(rows), ArchivedValue::Bool(value)) => rows[usize::from(*value)],
            (Index::Ip(map), ArchivedValue::Ip(ip)) => map.get(&ip.0).copied(),
            (Index::Cidr(lengths), ArchivedValue::Ip(ip)) => {
                let address = u128::from_be_bytes(ip.0);
                lengths
                    .iter()
                    .find_map(|(length, map)| map.get(&(address & mask(*length))).copied())
            }
            _ => None,
        }?;
        Some(&self.rows[row as usize])
    }
}
