//! A shard's free list of batch buffers, and the gauge that counts buffers.
//!
//! The pool is shard-local (no locks). A buffer taken from one shard's pool
//! may end up in another shard's pool after it crossed a ring: with hash
//! partitioning traffic flows both ways, so pools stay balanced. A pool never
//! holds more than [`POOL_BUFFERS_MAX`] buffers; extra ones are freed.
//!
//! The gauge is touched only when a buffer is allocated or freed, never per
//! batch in steady state, so it costs nothing on the data path while giving
//! tests and metrics the number of buffers alive (a bound on memory).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::RawBatch;
use crate::limits::POOL_BUFFERS_MAX;

/// Counts batch buffers alive across a runtime.
#[derive(Debug, Default)]
pub struct BufferGauge {
    live: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicU64,
}

impl BufferGauge {
    pub(crate) fn allocated(&self) {
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(live, Ordering::Relaxed);
        self.allocations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn freed(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Buffers alive now (pooled, in rings, or being filled or read).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Most buffers alive at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Buffers allocated so far.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }
}

/// A shard-local free list of batch buffers.
#[derive(Debug)]
pub struct BufferPool {
    free: RefCell<Vec<RawBatch>>,
    gauge: Arc<BufferGauge>,
}

impl BufferPool {
    /// An empty pool whose buffers are counted by `gauge`.
    pub fn new(gauge: Arc<BufferGauge>) -> BufferPool {
        BufferPool {
            free: RefCell::new(Vec::with_capacity(POOL_BUFFERS_MAX)),
            gauge,
        }
    }

    /// An empty buffer: a recycled one if any, else a new one.
    pub fn take(&self) -> RawBatch {
        match self.free.borrow_mut().pop() {
            Some(batch) => batch,
            None => RawBatch::new(self.gauge.clone()),
        }
    }

    /// Returns a buffer for reuse (or frees it when the pool is full).
    pub fn recycle(&self, mut batch: RawBatch) {
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_BUFFERS_MAX {
            batch.clear();
            free.push(batch);
        }
    }
}
