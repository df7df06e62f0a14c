//! What the connections measure, shared with the progress loop.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::limits::LATENCY_US_MAX;

/// A latency histogram in microseconds with 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// The run's clock and counters, shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    /// When batch 0 is due.
    pub start: Instant,
    /// `start` in nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Batches due before `start + warmup` are not measured.
    pub warmup: Duration,
    /// No batch is due at or after `start + end`.
    pub end: Duration,
    /// How long to wait for outstanding acks after `end`.
    pub drain: Duration,
    /// Set when connections should give up waiting and close.
    pub stop: AtomicBool,
    stats: Mutex<Stats>,
}

/// Counters and histograms.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Latencies of measured, accepted events.
    pub total: Histogram<u64>,
    /// Latencies since the last progress tick, warmup included.
    pub tick: Histogram<u64>,
    /// Latencies of measured events since the last progress tick.
    pub tick_measured: Histogram<u64>,
    /// Events acked since the last progress tick, warmup included.
    pub tick_events: u64,
    /// Errors since the last progress tick, warmup included.
    pub tick_errors: u64,
    /// Measured events sent.
    pub sent_events: u64,
    /// Measured batches sent.
    pub sent_batches: u64,
    /// Measured events accepted.
    pub acked_events: u64,
    /// Measured batches accepted.
    pub acked_batches: u64,
    /// Measured errors by kind, one per batch (frame or request).
    pub errors: BTreeMap<String, u64>,
    /// When the last measured batch was acked.
    pub last_ack: Option<Instant>,
}

impl Shared {
    pub(crate) fn new(
        start: Instant,
        start_unix_ns: u64,
        warmup: Duration,
        end: Duration,
        drain: Duration,
    ) -> Shared {
        Shared {
            start,
            start_unix_ns,
            warmup,
            end,
            drain,
            stop: AtomicBool::new(false),
            stats: Mutex::new(Stats {
                total: new_histogram(),
                tick: new_histogram(),
                tick_measured: new_histogram(),
                tick_events: 0,
                tick_errors: 0,
                sent_events: 0,
                sent_batches: 0,
                acked_events: 0,
                acked_batches: 0,
                errors: BTreeMap::new(),
                last_ack: None,
            }),
        }
    }

    /// The counters (a panicking connection does not poison them for the
    /// others).
    pub(crate) fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether a batch meant to be sent at `intended` is measured.
    pub(crate) fn measured(&self, intended: Instant) -> bool {
        intended >= self.start + self.warmup
    }

    /// Nanoseconds since the Unix epoch at `instant`.
    pub(crate) fn unix_ns(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.start).as_nanos() as u64;
        self.start_unix_ns + since
    }

    /// When the run is over and its drain time too: no answer is waited
    /// for after this.
    pub(crate) fn drain_deadline(&self) -> Instant {
        self.start + self.end + self.drain
    }

    /// Whether the run's sending time (warmup and duration) is over.
    pub(crate) fn past_end(&self, now: Instant) -> bool {
        now >= self.start + self.end
    }

    /// Whether the run is over and its drain time too.
    pub(crate) fn past_drain(&self, now: Instant) -> bool {
        now >= self.drain_deadline()
    }

    /// A batch of `events` meant to be sent at `intended` was sent.
    pub(crate) fn sent(&self, intended: Instant, events: u64) {
        if self.measured(intended) {
            let mut stats = self.stats();
            stats.sent_events += events;
            stats.sent_batches += 1;
        }
    }

    /// `events` meant to be sent at `intended` were accepted at `now`: one
    /// latency, recorded once per event.
    pub(crate) fn accepted(&self, intended: Instant, now: Instant, events: u64) {
        let latency = now.saturating_duration_since(intended).as_micros();
        let latency = u64::try_from(latency)
            .unwrap_or(u64::MAX)
            .min(LATENCY_US_MAX);
        let measured = self.measured(intended);
        let mut stats = self.stats();
        stats.tick.saturating_record_n(latency, events);
        stats.tick_events += events;
        if measured {
            stats.total.saturating_record_n(latency, events);
            stats.tick_measured.saturating_record_n(latency, events);
            stats.acked_events += events;
            stats.acked_batches += 1;
            stats.last_ack = Some(now);
        }
    }

    /// A batch meant to be sent at `intended` failed with an error of
    /// `kind`.
    pub(crate) fn error(&self, intended: Instant, kind: &str) {
        let measured = self.measured(intended);
        let mut stats = self.stats();
        stats.tick_errors += 1;
        if measured {
            *stats.errors.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
}

/// Sleeps until `due`, spinning for the last ~50 µs so that sends start on
/// time rather than when the scheduler wakes the thread.
pub(crate) fn wait_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(50);
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}
