//! A total order over [`Value`]s, for output that must not depend on
//! arrival order or hashing: the row window sorts fired groups by it, and
//! `dedup` breaks ties between held records with it.
//!
//! Values order by type first (null, bool, int, float, string, timestamp,
//! ip, list, map), then by value: floats by `f64::total_cmp`, lists and
//! maps element by element (a map's entries in their stored order, key
//! before value), a prefix before anything longer. Two values compare
//! equal only when they are the same value bit for bit, so sorting by this
//! order leaves no choice to the sort.

use std::cmp::Ordering;

use super::Value;

/// Rank of a value's variant, for ordering values of different types.
fn rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) => 2,
        Value::Float(_) => 3,
        Value::String(_) => 4,
        Value::Timestamp(_) => 5,
        Value::Ip(_) => 6,
        Value::List(_) => 7,
        Value::Map(_) => 8,
    }
}

/// A total order over values: by type (null first), then by value; floats
/// by `total_cmp`, lists and maps element by element.
pub(crate) fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Value::Ip(a), Value::Ip(b)) => a.cmp(b),
        (Value::List(a), Value::List(b)) => cmp_slices(a, b),
        (Value::Map(a), Value::Map(b)) => {
            for (x, y) in a.iter().zip(b) {
                let order = x
                    .key
                    .cmp(&y.key)
                    .then_with(|| cmp_values(&x.value, &y.value));
                if order != Ordering::Equal {
                    return order;
                }
            }
            a.len().cmp(&b.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// [`cmp_values`] over slices, lexicographically.
pub(crate) fn cmp_slices(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = cmp_values(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}
