//! The read budget: how many bytes of request bodies (HTTP) and frame
//! payloads (TCP) one source holds at once, over all its instances.
//!
//! A connection reserves a body's or payload's declared length before it
//! reads the first byte of it, and the [`Reservation`] travels with the
//! bytes: into the source's queue, across shards to the batch's owner, and
//! is released when the batch is dropped (logged, refused or abandoned).
//! So the bytes a source holds for requests never exceed the budget,
//! whatever clients claim and however slowly the log drains.
//!
//! A request that does not fit is refused at once, before its body is
//! read (HTTP 429 with `Retry-After`, TCP `Overloaded`), rather than made
//! to wait: a client that claims much and sends nothing would otherwise
//! hold every other client waiting until its read timeout.
//!
//! Buffers grow as bytes arrive (`super::read`), so a reservation is a
//! ceiling, not an allocation: a client that claims 16 MiB and sends
//! nothing costs its reservation until its read timeout, and no memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes reserved by a source's connections, against a limit. `Send` and
/// `Sync`: shared by every instance of a source.
#[derive(Debug)]
pub(crate) struct ReadBudget {
    used: AtomicUsize,
    limit_bytes: usize,
}

impl ReadBudget {
    /// A budget of `limit_bytes`.
    pub(crate) fn new(limit_bytes: usize) -> Arc<ReadBudget> {
        Arc::new(ReadBudget {
            used: AtomicUsize::new(0),
            limit_bytes,
        })
    }

    /// Reserves `bytes`, or `None` if that would go beyond the limit.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes)?;
            if next > self.limit_bytes {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Reservation {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes reserved from a [`ReadBudget`]; released when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<ReadBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let before = self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        debug_assert!(before >= self.bytes, "released more than was reserved");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_return_when_dropped() {
        let budget = ReadBudget::new(100);
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(41).is_none());
        let b = budget.reserve(40).expect("fits exactly");
        assert_eq!(budget.used_bytes(), 100);
        assert!(budget.reserve(1).is_none());
        drop(a);
        assert_eq!(budget.used_bytes(), 40);
        assert!(budget.reserve(usize::MAX).is_none());
        drop(b);
        assert_eq!(budget.used_bytes(), 0);
    }
}
