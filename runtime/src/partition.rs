//! How an edge spreads records over the consumer's shards.
//!
//! Hash partitioning sends a key to the shard that owns it: the key's 64-bit
//! hash is mixed (so keys with few varying bits still spread) and mapped onto
//! the consumer's instances with a multiply-shift range reduction. The owner
//! of a key depends only on the key and the number of instances, so it is the
//! same on every run and from every producer shard.

use std::sync::Arc;

use crate::record::Record;

/// Computes the partitioning key of a record.
pub type KeyFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// The partitioning of one edge.
pub enum Partition<T> {
    /// To the consumer instance on the same shard (or to the single instance
    /// of a consumer with a parallelism of one).
    Forward,
    /// To the shard that owns the record's key.
    Hash(KeyFn<T>),
    /// A copy to every consumer instance.
    Broadcast,
    /// To consumer instances in turn, record by record.
    RoundRobin,
}

impl<T: Record> Partition<T> {
    /// Hash partitioning by `key`.
    pub fn hash(key: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Partition<T> {
        Partition::Hash(Arc::new(key))
    }

    /// The partitioning's kind, without its key function.
    pub fn kind(&self) -> PartitionKind {
        match self {
            Partition::Forward => PartitionKind::Forward,
            Partition::Hash(_) => PartitionKind::Hash,
            Partition::Broadcast => PartitionKind::Broadcast,
            Partition::RoundRobin => PartitionKind::RoundRobin,
        }
    }
}

impl<T> Clone for Partition<T> {
    fn clone(&self) -> Self {
        match self {
            Partition::Forward => Partition::Forward,
            Partition::Hash(key) => Partition::Hash(key.clone()),
            Partition::Broadcast => Partition::Broadcast,
            Partition::RoundRobin => Partition::RoundRobin,
        }
    }
}

impl<T> std::fmt::Debug for Partition<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Partition::Forward => "Forward",
            Partition::Hash(_) => "Hash",
            Partition::Broadcast => "Broadcast",
            Partition::RoundRobin => "RoundRobin",
        };
        f.write_str(name)
    }
}

/// A partitioning without its key function, for planning and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// See [`Partition::Forward`].
    Forward,
    /// See [`Partition::Hash`].
    Hash,
    /// See [`Partition::Broadcast`].
    Broadcast,
    /// See [`Partition::RoundRobin`].
    RoundRobin,
}

/// The index (among `instances`) of the instance that owns `key_hash`.
#[inline]
pub fn owner_of(key_hash: u64, instances: usize) -> usize {
    debug_assert!(instances > 0);
    ((u128::from(mix(key_hash)) * instances as u128) >> 64) as usize
}

/// Fibonacci hashing: one multiply by 2^64 / φ. The range reduction in
/// [`owner_of`] keeps the product's high bits, which depend on every bit of
/// the key, so even sequential keys spread evenly.
#[inline]
fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_in_range_and_spreads() {
        let mut counts = [0usize; 3];
        for key in 0..30_000u64 {
            counts[owner_of(key, 3)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }
}
