//! The table of batch ids a source instance accepted recently, for
//! deduplication (`docs/protocol.md`, "Deduplication"): an id is
//! remembered until its expiry (`dedup_window_ms` after acceptance), and
//! at most `dedup_max_ids` are kept, the oldest forgotten first. The table
//! is part of the source's logged position.

use std::collections::{HashMap, VecDeque};

/// Batch ids accepted recently, in acceptance order.
#[derive(Debug, Default)]
pub(super) struct DedupTable {
    expiry: HashMap<u64, u64>,
    /// (id, expiry in ms since the Unix epoch), oldest first: what the
    /// source's position logs.
    pub(super) order: VecDeque<(u64, u64)>,
}

impl DedupTable {
    pub(super) fn expire(&mut self, now_ms: u64, max: usize) {
        while let Some(&(id, expires)) = self.order.front() {
            if expires > now_ms && self.order.len() <= max {
                break;
            }
            self.order.pop_front();
            if self.expiry.get(&id) == Some(&expires) {
                self.expiry.remove(&id);
            }
        }
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.expiry.contains_key(&id)
    }

    pub(super) fn insert(&mut self, id: u64, expires: u64) {
        self.expiry.insert(id, expires);
        self.order.push_back((id, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_forgets_by_age_and_by_count() {
        let mut table = DedupTable::default();
        table.insert(1, 100);
        table.insert(2, 200);
        table.insert(3, 300);
        table.expire(150, 10);
        assert!(!table.contains(1) && table.contains(2) && table.contains(3));
        table.expire(150, 1);
        assert!(!table.contains(2) && table.contains(3));
    }
}
