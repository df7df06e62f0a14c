//! Who may still put something into a queue that threads outside the
//! runtime feed (an input's inbox, a query queue).

use std::sync::atomic::{AtomicU64, Ordering};

/// Bit 63: closed. The bits below count callers inside (between their
/// check of the bit and the end of their queueing).
const CLOSED: u64 = 1 << 63;

/// Admits callers until closed, counting those inside, so that whoever
/// closes can wait until no caller is still queueing: after
/// [`close_and_wait`](Admission::close_and_wait) nothing more will be
/// queued, and what is in the queue is all there will be.
#[derive(Debug, Default)]
pub(crate) struct Admission(AtomicU64);

impl Admission {
    /// Enters, unless closed: the caller may queue, then must
    /// [`leave`](Admission::leave). Queueing must not wait on anything.
    #[inline]
    pub(crate) fn enter(&self) -> bool {
        if self.0.fetch_add(1, Ordering::Acquire) & CLOSED != 0 {
            self.leave();
            return false;
        }
        true
    }

    #[inline]
    pub(crate) fn leave(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }

    /// Refuses every later caller.
    pub(crate) fn close(&self) {
        self.0.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Closed, and no caller inside.
    pub(crate) fn is_closed_and_idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == CLOSED
    }

    /// Closes, then waits (spinning: callers inside do not wait on
    /// anything) until no caller is inside.
    pub(crate) fn close_and_wait(&self) {
        self.close();
        while !self.is_closed_and_idle() {
            std::hint::spin_loop();
        }
    }
}
