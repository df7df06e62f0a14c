//! Accepting connections: spreading them over the instances, capping how
//! many each instance serves, and surviving a shortage of descriptors.
//!
//! # Spreading
//! The kernel spreads connections over the shards' listeners by a hash of
//! their addresses, which can put the few connections of a load generator
//! all on one shard; handing every `n`-th accepted connection to instance
//! `n % instances` (a duplicate of its descriptor, through the [`Mesh`])
//! keeps the shards evenly loaded. The connection is then served by that
//! shard from its first byte.
//!
//! # The cap
//! Each instance serves at most `connections_max` connections ([`Slots`],
//! counted with atomics shared by the instances). The accepting instance
//! takes a [`Slot`] for the connection's target, or for the next instance
//! with room when the target is full; when every instance is full it
//! closes the connection at once (the client reads end of stream) and
//! counts it in `weir_ingest_connections_refused`. Accepting and closing,
//! rather than not accepting, keeps the kernel's backlog moving: refused
//! clients learn at once instead of timing out, and clients that come once
//! room is free are not stuck behind them. The slot travels with the
//! connection and is released when its task ends.
//!
//! # Out of descriptors
//! When `accept` fails for want of resources (`EMFILE`, `ENFILE`,
//! `ENOBUFS`, `ENOMEM`) the loop pauses, 10 ms at first and doubling to
//! 1 s, instead of retrying at once: a retry loop that never yields would
//! starve the shard's other tasks, so connections whose clients left would
//! never be closed and the descriptors never come back. The first failure
//! of a run of them is logged, and so is the recovery. Errors that concern
//! one pending connection only (`ECONNABORTED` and the network errors
//! Linux passes on from it) are retried at once, after a yield.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{IngestQueue, Mesh, ServeFn};
use crate::limits::{ACCEPT_BACKOFF_MAX_MS, ACCEPT_BACKOFF_MIN_MS};

/// Open connections per instance, against a cap. Shared by the instances
/// of one source.
#[derive(Debug)]
pub(crate) struct Slots {
    open: Box<[crossbeam::utils::CachePadded<AtomicUsize>]>,
    connections_max: usize,
}

impl Slots {
    /// Slots for `instances` instances of `connections_max` each.
    pub(crate) fn new(instances: usize, connections_max: usize) -> Arc<Slots> {
        assert!(connections_max > 0, "a connection cap must be positive");
        Arc::new(Slots {
            open: (0..instances.max(1)).map(|_| Default::default()).collect(),
            connections_max,
        })
    }

    /// A slot on `first`, or on the next instance with room; `None` when
    /// every instance is full.
    pub(crate) fn acquire(self: &Arc<Self>, first: usize) -> Option<Slot> {
        (0..self.open.len())
            .map(|step| (first + step) % self.open.len())
            .find_map(|instance| self.acquire_on(instance))
    }

    /// A slot on `instance`, if it has room.
    pub(crate) fn acquire_on(self: &Arc<Self>, instance: usize) -> Option<Slot> {
        self.open[instance]
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < self.connections_max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot {
                slots: self.clone(),
                instance,
            })
    }

    /// Connections `instance` serves now.
    pub(crate) fn open(&self, instance: usize) -> usize {
        self.open[instance].load(Ordering::Relaxed)
    }
}

/// One connection's place under an instance's cap; released when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    instance: usize,
}

impl Slot {
    /// The instance the slot counts against.
    pub(crate) fn instance(&self) -> usize {
        self.instance
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open[self.instance].fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted connection on its way to the instance that serves it.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) fd: OwnedFd,
    pub(crate) slot: Slot,
}

/// Accepts connections until the source's tasks are cancelled.
pub(crate) async fn accept_loop(
    listener: glommio::net::TcpListener,
    queue: Rc<IngestQueue>,
    serve: ServeFn,
) {
    let mut backoff = Backoff::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                backoff.recovered(&queue);
                dispatch(stream, &queue, &serve);
            }
            Err(error) => backoff.failed(std::io::Error::from(error), &queue).await,
        }
    }
}

/// Serves `stream` here, hands it to another instance, or refuses it.
fn dispatch(stream: glommio::net::TcpStream, queue: &IngestQueue, serve: &ServeFn) {
    let mesh: &Mesh = &queue.mesh;
    let instances = mesh.handoff.len() as u64;
    let target = (mesh.accepted.fetch_add(1, Ordering::Relaxed) % instances) as usize;
    let Some(slot) = mesh.slots.acquire(target) else {
        queue.metrics.connections_refused.inc();
        return; // dropping the stream closes it
    };
    if slot.instance() == queue.instance {
        return serve(stream, slot);
    }
    // SAFETY: the descriptor is open while `stream` lives, which it does
    // until after the duplicate is made.
    let duplicate = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned();
    let handoff = match duplicate {
        Ok(fd) => mesh.handoff[slot.instance()].try_send(Handoff { fd, slot }),
        Err(_) => return serve_here(stream, slot, queue, serve),
    };
    match handoff {
        Ok(()) => drop(stream),
        // The target is gone or swamped: serve it here, if there is room.
        Err(error) => serve_here(stream, error.into_inner().slot, queue, serve),
    }
}

/// Serves `stream` on this instance, trading `slot` for one of its own.
fn serve_here(stream: glommio::net::TcpStream, slot: Slot, queue: &IngestQueue, serve: &ServeFn) {
    drop(slot);
    match queue.mesh.slots.acquire_on(queue.instance) {
        Some(slot) => serve(stream, slot),
        None => queue.metrics.connections_refused.inc(),
    }
}

/// Pauses between failing accepts, and logs each run of failures once.
#[derive(Debug)]
struct Backoff {
    delay_ms: u64,
    failures: u64,
    since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            delay_ms: ACCEPT_BACKOFF_MIN_MS,
            failures: 0,
            since: None,
        }
    }
}

impl Backoff {
    async fn failed(&mut self, error: std::io::Error, queue: &IngestQueue) {
        queue.metrics.accept_errors.inc();
        if concerns_one_connection(&error) {
            futures_lite::future::yield_now().await;
            return;
        }
        if self.failures == 0 {
            tracing::warn!(
                source = %queue.metrics.component,
                shard = queue.metrics.shard,
                "accepting connections failed ({error}); pausing accepts, \
                 {ACCEPT_BACKOFF_MIN_MS} ms doubling to {ACCEPT_BACKOFF_MAX_MS} ms, until it works again"
            );
            self.since = Some(Instant::now());
        }
        self.failures += 1;
        glommio::timer::sleep(Duration::from_millis(self.delay_ms)).await;
        self.delay_ms = (self.delay_ms * 2).min(ACCEPT_BACKOFF_MAX_MS);
    }

    fn recovered(&mut self, queue: &IngestQueue) {
        if self.failures == 0 {
            return;
        }
        let paused_ms = self.since.map_or(0, |since| since.elapsed().as_millis());
        tracing::info!(
            source = %queue.metrics.component,
            shard = queue.metrics.shard,
            "accepting connections again after {} failed accepts over {paused_ms} ms",
            self.failures
        );
        *self = Backoff::default();
    }
}

/// Whether an accept error is about one pending connection only (Linux
/// passes a new connection's network errors on through `accept`), so the
/// next accept may well work.
fn concerns_one_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    // glommio keeps the error number of some failures and only the kind
    // of others: look at both.
    let kind = matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::PermissionDenied
            | ErrorKind::Interrupted
            | ErrorKind::NetworkDown
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
    );
    kind || matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EINTR
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_the_target_first_then_others_then_refuse() {
        let slots = Slots::new(2, 2);
        let a = slots.acquire(1).expect("room");
        let b = slots.acquire(1).expect("room");
        assert_eq!((a.instance(), b.instance()), (1, 1));
        let c = slots.acquire(1).expect("room on the other instance");
        assert_eq!(c.instance(), 0);
        let _d = slots.acquire(0).expect("room");
        assert!(slots.acquire(0).is_none());
        drop(a);
        assert_eq!(slots.open(1), 1);
        assert_eq!(slots.acquire(0).expect("freed").instance(), 1);
    }

    #[test]
    fn descriptor_shortage_backs_off_but_a_lost_connection_does_not() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        assert!(!concerns_one_connection(&emfile));
        let aborted = std::io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert!(concerns_one_connection(&aborted));
    }
}
