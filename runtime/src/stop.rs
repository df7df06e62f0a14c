//! How a run is told to end: the request a [`Handle`](crate::Handle) makes,
//! which its sources and its epoch coordinator read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How a run was told to end, shared by its [`Handle`](crate::Handle)s, its
/// sources and its coordinator.
#[derive(Debug, Default)]
pub(crate) struct StopRequest {
    /// Sources stop at their next poll (shared with every shard).
    pub(crate) stop: Arc<AtomicBool>,
    /// The end is a stop even if every source ends by itself.
    resume: AtomicBool,
    /// The end is the end of input: windows fire, and the run completes.
    drain: AtomicBool,
}

impl StopRequest {
    /// Tells the run to stop for a savepoint.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Tells the run to stop as the end of input.
    pub(crate) fn drain(&self) {
        self.drain.store(true, Ordering::Release);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Makes the run's end a stop, however its sources end.
    pub(crate) fn keep_resumable(&self) {
        self.resume.store(true, Ordering::Release);
    }

    /// Whether the run was told to stop.
    pub(crate) fn is_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether the run's end, however it comes, is a stop for a savepoint
    /// rather than the end of input.
    pub(crate) fn is_savepoint(&self) -> bool {
        let stop = self.is_requested() || self.resume.load(Ordering::Acquire);
        stop && !self.drain.load(Ordering::Acquire)
    }
}
