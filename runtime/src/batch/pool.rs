//! A shard's free list of batch buffers, and the gauge that counts buffers.
//!
//! The pool is shard-local (no locks). Every buffer has a home shard, the
//! one that allocated it. A buffer read on another shard goes home through a
//! small SPSC return ring (one per ordered pair of shards), so each shard
//! keeps a stable population of buffers however the traffic between shards
//! is skewed; a pool that merely kept what it read would overflow on one
//! side and allocate on the other. A pool keeps at most
//! [`POOL_MAX_BUFFERS`] buffers; a return ring that is full frees the
//! buffer instead.
//!
//! The gauge is touched only when a buffer is allocated or freed, never per
//! batch in steady state, so it costs nothing on the data path while giving
//! tests and metrics the number of buffers alive (a bound on memory).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::RawBatch;
use crate::limits::POOL_MAX_BUFFERS;
use crate::ring::{ring, Consumer, Producer};

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

    /// Most buffers alive at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Buffers allocated so far.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }
}

/// The return rings of one shard: to every other shard (for buffers whose
/// home is there) and from every other shard (for its own buffers).
#[derive(Debug, Default)]
pub struct ReturnRings {
    /// Indexed by home shard; `None` for this shard.
    outgoing: Vec<Option<Producer<RawBatch>>>,
    incoming: Vec<Consumer<RawBatch>>,
}

impl ReturnRings {
    /// Return rings for every ordered pair of `shards` shards, one set per
    /// shard.
    pub fn mesh(shards: usize) -> Vec<ReturnRings> {
        let mut sets: Vec<ReturnRings> = (0..shards)
            .map(|_| ReturnRings {
                outgoing: (0..shards).map(|_| None).collect(),
                incoming: Vec::new(),
            })
            .collect();
        for reader in 0..shards {
            for home in (0..shards).filter(|&home| home != reader) {
                let (producer, consumer) = ring(POOL_MAX_BUFFERS);
                sets[reader].outgoing[home] = Some(producer);
                sets[home].incoming.push(consumer);
            }
        }
        sets
    }
}

/// A shard-local free list of batch buffers.
#[derive(Debug)]
pub struct BufferPool {
    shard: usize,
    free: RefCell<Vec<RawBatch>>,
    returns: RefCell<ReturnRings>,
    gauge: Arc<BufferGauge>,
}

impl BufferPool {
    /// An empty pool for `shard`, whose buffers are counted by `gauge`.
    pub fn new(shard: usize, returns: ReturnRings, gauge: Arc<BufferGauge>) -> BufferPool {
        BufferPool {
            shard,
            free: RefCell::new(Vec::with_capacity(POOL_MAX_BUFFERS)),
            returns: RefCell::new(returns),
            gauge,
        }
    }

    /// An empty buffer: a recycled one if any (collecting buffers that came
    /// home first), else a new one.
    pub fn take(&self) -> RawBatch {
        let mut free = self.free.borrow_mut();
        if free.is_empty() {
            let mut returns = self.returns.borrow_mut();
            for incoming in &mut returns.incoming {
                while free.len() < POOL_MAX_BUFFERS {
                    let Some(batch) = incoming.try_pop() else {
                        break;
                    };
                    free.push(batch);
                }
            }
        }
        match free.pop() {
            Some(batch) => batch,
            None => RawBatch::new(self.gauge.clone(), self.shard),
        }
    }

    /// Returns a buffer for reuse: to this pool if it lives here, else back
    /// to its home shard. Frees it if there is no room.
    pub fn recycle(&self, mut batch: RawBatch) {
        batch.clear();
        if batch.home != self.shard {
            let mut returns = self.returns.borrow_mut();
            if let Some(Some(home)) = returns.outgoing.get_mut(batch.home) {
                // A full ring frees the buffer (dropped with the error).
                let _ = home.try_push(batch);
            }
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_MAX_BUFFERS {
            free.push(batch);
        }
    }
}
