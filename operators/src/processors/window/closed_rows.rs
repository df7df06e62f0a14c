//! Rows of closed windows waiting to be emitted (and the records a
//! watermark releases from `dedup`).
//!
//! A window that closes over many keys produces its rows at once; the
//! operator queues them here and hands them to the runtime one batch per
//! `Processor::drain` call, so the runtime can wait for room in the rings
//! between batches. The queue keeps its memory for the next window.

use weir_runtime::{Emitter, Record};

/// A queue of output rows, emitted a batch at a time.
#[derive(Debug)]
pub struct ClosedRows<T> {
    rows: Vec<T>,
    emitted: usize,
}

impl<T: Record> Default for ClosedRows<T> {
    fn default() -> Self {
        ClosedRows::new()
    }
}

impl<T: Record> ClosedRows<T> {
    /// An empty queue.
    pub fn new() -> Self {
        ClosedRows {
            rows: Vec::new(),
            emitted: 0,
        }
    }

    /// Queues `rows`; returns them, to be ordered in place if needed.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = T>) -> &mut [T] {
        let first = self.rows.len();
        self.rows.extend(rows);
        &mut self.rows[first..]
    }

    /// Rows queued and not yet emitted.
    pub fn pending(&self) -> &[T] {
        &self.rows[self.emitted..]
    }

    /// Whether every queued row was emitted.
    pub fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }

    /// Replaces the queue (restoring a snapshot).
    pub fn replace(&mut self, rows: Vec<T>) {
        self.rows = rows;
        self.emitted = 0;
    }

    /// Emits up to one batch of rows; returns whether more remain.
    pub fn drain_into(&mut self, out: &mut Emitter<T>) -> bool {
        let end = self.rows.len().min(self.emitted + out.batch_records_max());
        out.push_all(&self.rows[self.emitted..end]);
        self.emitted = end;
        if end < self.rows.len() {
            return true;
        }
        self.rows.clear();
        self.emitted = 0;
        false
    }

    /// Takes every pending row out (tests).
    #[cfg(test)]
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        let rows = self.rows.split_off(self.emitted);
        self.replace(Vec::new());
        rows
    }
}
