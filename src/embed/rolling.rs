//! A keyed rolling window: per key, the count (and sum) of events over the
//! last `size` of event time, kept in `buckets` slices of `size / buckets`
//! each. The query answer slides one slice at a time, like a rate
//! limiter's bucketed sliding window.

use std::sync::Arc;
use std::time::Duration;

use rkyv::rancor;
use rustc_hash::FxHashMap;
use weir_runtime::{ArchivedRecord, Batch, Emitter, OperatorError, Processor};

use super::input::Event;
use super::query::Queryable;

/// The shape of a rolling window; see [`Pipeline::rolling`](crate::Pipeline::rolling).
///
/// ```
/// use std::time::Duration;
/// let spec = weir::Rolling::count(Duration::from_secs(60)).buckets(12);
/// assert_eq!(spec.slice(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    size_ms: u64,
    buckets: u64,
}

impl Rolling {
    /// Counts (and sums) events per key over the last `size` of event
    /// time, in 10 slices by default. `size` is rounded to whole
    /// milliseconds, at least 1.
    ///
    /// ```
    /// let spec = weir::Rolling::count(std::time::Duration::from_secs(10));
    /// assert_eq!(spec.size(), std::time::Duration::from_secs(10));
    /// ```
    pub fn count(size: Duration) -> Rolling {
        Rolling {
            size_ms: (size.as_millis() as u64).max(1),
            buckets: 10,
        }
    }

    /// How many slices the window is kept in (default 10, at least 1, at
    /// most the window's milliseconds): the answer moves on by one slice at
    /// a time, so more slices follow the true "last `size`" more closely
    /// at the cost of memory per key. The size is rounded down to a
    /// multiple of the slice.
    ///
    /// ```
    /// let spec = weir::Rolling::count(std::time::Duration::from_secs(1)).buckets(4);
    /// assert_eq!(spec.slice(), std::time::Duration::from_millis(250));
    /// ```
    pub fn buckets(mut self, buckets: u64) -> Rolling {
        self.buckets = buckets.clamp(1, self.size_ms);
        self
    }

    /// The window's length.
    ///
    /// ```
    /// let spec = weir::Rolling::count(std::time::Duration::from_millis(1500));
    /// assert_eq!(spec.size().as_millis(), 1500);
    /// ```
    pub fn size(&self) -> Duration {
        Duration::from_millis(self.slice_ms() * self.buckets)
    }

    /// One slice's length: how far the window moves at a time.
    ///
    /// ```
    /// let spec = weir::Rolling::count(std::time::Duration::from_secs(10));
    /// assert_eq!(spec.slice(), std::time::Duration::from_secs(1));
    /// ```
    pub fn slice(&self) -> Duration {
        Duration::from_millis(self.slice_ms())
    }

    fn slice_ms(&self) -> u64 {
        (self.size_ms / self.buckets).max(1)
    }
}

/// A rolling window query: a key, and the time to answer at.
///
/// ```
/// let latest = weir::At::from(7);
/// assert_eq!(latest, weir::At { key: 7, now_ms: None });
/// let at = weir::At::time(7, 1_000);
/// assert_eq!(at.now_ms, Some(1_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// The key asked about.
    pub key: u64,
    /// The time to answer at, in milliseconds since the Unix epoch; the
    /// answer is at the latest of this and the newest event time the
    /// key's shard has seen. `None`: that newest event time.
    pub now_ms: Option<u64>,
}

impl At {
    /// `key` at `now_ms` (a service passes its wall clock, so a key that
    /// went quiet reads as 0 once its events left the window).
    ///
    /// ```
    /// assert_eq!(weir::At::time(1, 5).key, 1);
    /// ```
    pub fn time(key: u64, now_ms: u64) -> At {
        At {
            key,
            now_ms: Some(now_ms),
        }
    }
}

impl From<u64> for At {
    fn from(key: u64) -> At {
        At { key, now_ms: None }
    }
}

/// The value of a rolling window for one key.
///
/// ```
/// let value = weir::RollingValue { count: 3, sum: 12, start_ms: 0, end_ms: 10_000 };
/// assert_eq!(value.count, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollingValue {
    /// Events of the key in the window.
    pub count: u64,
    /// The sum of their values (0 for a count-only window).
    pub sum: i64,
    /// The window covers event times `start_ms..end_ms`.
    pub start_ms: u64,
    /// End of the window (exclusive).
    pub end_ms: u64,
}

/// What a rolling window emits for every event it takes in: the key's
/// value right after the event, in the window that ends with the event's
/// slice.
///
/// ```
/// let update = weir::RollingUpdate { key: 1, count: 2, sum: 0, time_ms: 5, pushed_ns: 9 };
/// assert_eq!(update.count, 2);
/// ```
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollingUpdate {
    /// The event's key.
    pub key: u64,
    /// Events of the key in the window, this one included.
    pub count: u64,
    /// Their values' sum.
    pub sum: i64,
    /// The event's time.
    pub time_ms: u64,
    /// When the event was pushed ([`Event::pushed_ns`]).
    pub pushed_ns: u64,
}

pub(crate) type ValueFn<T> = Arc<dyn Fn(&ArchivedRecord<T>) -> i64 + Send + Sync>;

#[derive(Debug, Clone, Copy, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Bucket {
    /// Event time / slice: which slice this bucket holds now.
    index: u64,
    count: u64,
    sum: i64,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Snapshot {
    slice_ms: u64,
    buckets: u64,
    clock_ms: u64,
    keys: Vec<(u64, Vec<Bucket>)>,
}

/// The rolling window operator on one shard.
pub(crate) struct RollingWindow<T: rkyv::Archive> {
    slice_ms: u64,
    buckets: u64,
    keys: FxHashMap<u64, Box<[Bucket]>>,
    /// Newest event time seen.
    clock_ms: u64,
    /// Slice at which keys with nothing in the window are next dropped.
    next_sweep: u64,
    value: Option<ValueFn<T>>,
    /// Events older than the window at the clock when they arrived.
    late: u64,
}

impl<T: rkyv::Archive> RollingWindow<T> {
    pub(crate) fn new(spec: Rolling, value: Option<ValueFn<T>>) -> RollingWindow<T> {
        RollingWindow {
            slice_ms: spec.slice_ms(),
            buckets: spec.buckets,
            keys: FxHashMap::default(),
            clock_ms: 0,
            next_sweep: 0,
            value,
            late: 0,
        }
    }

    /// Adds one event; returns the key's value at the event's slice, or
    /// `None` if the event is too old to be in any window still answered.
    fn add(&mut self, key: u64, time_ms: u64, value: i64) -> Option<(u64, i64)> {
        let slice = time_ms / self.slice_ms;
        let clock = self.clock_ms / self.slice_ms;
        if slice + self.buckets <= clock {
            self.late += 1;
            return None;
        }
        if time_ms > self.clock_ms {
            self.clock_ms = time_ms;
            self.sweep();
        }
        let n = self.buckets as usize;
        let buckets = self
            .keys
            .entry(key)
            .or_insert_with(|| vec![Bucket::default(); n].into_boxed_slice());
        let bucket = &mut buckets[(slice % self.buckets) as usize];
        if bucket.index < slice || bucket.count == 0 {
            *bucket = Bucket {
                index: slice,
                count: 0,
                sum: 0,
            };
        } else if bucket.index > slice {
            // The slot holds a slice `buckets` or more newer: this event
            // is older than that slice's window.
            self.late += 1;
            return None;
        }
        bucket.count += 1;
        bucket.sum += value;
        Some(window(buckets, slice, self.buckets))
    }

    /// Drops keys whose every event left the window, once per window
    /// length of event time.
    fn sweep(&mut self) {
        let clock = self.clock_ms / self.slice_ms;
        if clock < self.next_sweep {
            return;
        }
        self.next_sweep = clock + self.buckets;
        let oldest = clock.saturating_sub(self.buckets - 1);
        self.keys.retain(|_, buckets| {
            buckets
                .iter()
                .any(|bucket| bucket.count > 0 && bucket.index >= oldest)
        });
    }

    fn value_at(&self, key: u64, now_ms: u64) -> RollingValue {
        let slice = now_ms / self.slice_ms;
        let start_slice = (slice + 1).saturating_sub(self.buckets);
        let (count, sum) = match self.keys.get(&key) {
            Some(buckets) => window(buckets, slice, self.buckets),
            None => (0, 0),
        };
        RollingValue {
            count,
            sum,
            start_ms: start_slice * self.slice_ms,
            end_ms: (slice + 1) * self.slice_ms,
        }
    }
}

/// Count and sum of the buckets in the window ending with `slice`.
fn window(buckets: &[Bucket], slice: u64, n: u64) -> (u64, i64) {
    buckets
        .iter()
        .filter(|bucket| bucket.index <= slice && bucket.index + n > slice)
        .fold((0, 0), |(count, sum), bucket| {
            (count + bucket.count, sum + bucket.sum)
        })
}

impl<T: weir_runtime::Record> Processor for RollingWindow<T> {
    type Input = Event<T>;
    type Output = RollingUpdate;

    fn process(&mut self, _port: usize, batch: &Batch<Event<T>>, out: &mut Emitter<RollingUpdate>) {
        let emit = out.has_port(0);
        for event in batch.iter() {
            let (key, time_ms, pushed_ns) = (
                event.key.to_native(),
                event.time_ms.to_native(),
                event.pushed_ns.to_native(),
            );
            let value = self.value.as_ref().map_or(0, |value| value(&event.value));
            if let Some((count, sum)) = self.add(key, time_ms, value) {
                if emit {
                    out.push(&RollingUpdate {
                        key,
                        count,
                        sum,
                        time_ms,
                        pushed_ns,
                    });
                }
            }
        }
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let snapshot = Snapshot {
            slice_ms: self.slice_ms,
            buckets: self.buckets,
            clock_ms: self.clock_ms,
            keys: self
                .keys
                .iter()
                .map(|(key, buckets)| (*key, buckets.to_vec()))
                .collect(),
        };
        rkyv::to_bytes::<rancor::Error>(&snapshot)
            .map(|bytes| bytes.into_vec())
            .map_err(|error| OperatorError::other(format!("saving the rolling window: {error}")))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(state.len());
        aligned.extend_from_slice(state);
        let snapshot =
            rkyv::from_bytes::<Snapshot, rancor::BoxedError>(&aligned).map_err(|error| {
                OperatorError::invalid(format!(
                    "the rolling window's saved state is damaged: {error}"
                ))
            })?;
        if snapshot.slice_ms != self.slice_ms || snapshot.buckets != self.buckets {
            return Err(OperatorError::invalid(format!(
                "the rolling window was saved with {} slices of {} ms, but is now configured \
                 with {} slices of {} ms; start on a fresh data directory to change it",
                snapshot.buckets, snapshot.slice_ms, self.buckets, self.slice_ms
            )));
        }
        let n = self.buckets as usize;
        self.clock_ms = snapshot.clock_ms;
        self.keys = snapshot
            .keys
            .into_iter()
            .filter(|(_, buckets)| buckets.len() == n)
            .map(|(key, buckets)| (key, buckets.into_boxed_slice()))
            .collect();
        Ok(())
    }
}

impl<T: weir_runtime::Record> Queryable for RollingWindow<T> {
    type Key = At;
    type Answer = RollingValue;

    fn query(&self, at: &At) -> RollingValue {
        let now_ms = at.now_ms.unwrap_or(0).max(self.clock_ms);
        self.value_at(at.key, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count of `key`'s events with time in `(now - size, now]`,
    /// rounded to slices as the window does.
    fn model(events: &[(u64, u64)], key: u64, now_ms: u64, spec: Rolling) -> u64 {
        let slice = spec.slice_ms();
        let now = now_ms / slice;
        events
            .iter()
            .filter(|(k, t)| *k == key && t / slice <= now && t / slice + spec.buckets > now)
            .count() as u64
    }

    #[test]
    fn answers_match_a_brute_force_model() {
        let spec = Rolling::count(Duration::from_millis(1000)).buckets(10);
        let mut window = RollingWindow::<u64>::new(spec, None);
        let mut events = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut time = 10_000u64;
        for step in 0..20_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = state % 17;
            // Mostly forward, sometimes a little out of order.
            time += state % 7;
            let t = time.saturating_sub((state >> 8) % 50);
            if window.add(key, t, 1).is_some() {
                events.push((key, t));
            }
            if step % 97 == 0 {
                for key in 0..17 {
                    for ahead in [0, 300, 999, 1000, 5000] {
                        let now = window.clock_ms + ahead;
                        let got = window.query(&At::time(key, now));
                        assert_eq!(
                            got.count,
                            model(&events, key, now, spec),
                            "key {key} at {now}"
                        );
                    }
                }
            }
        }
        // Old keys were swept: only keys with events in the window remain.
        assert!(window.keys.len() <= 17);
    }

    #[test]
    fn events_older_than_the_window_are_late() {
        let spec = Rolling::count(Duration::from_millis(100)).buckets(10);
        let mut window = RollingWindow::<u64>::new(spec, None);
        assert_eq!(window.add(1, 1_000, 1), Some((1, 1)));
        assert_eq!(window.add(1, 899, 1), None);
        assert_eq!(window.late, 1, "899 is late");
        assert_eq!(window.add(1, 901, 1), None);
        // Its own slice's window holds only itself; at the clock both count.
        assert_eq!(window.add(1, 911, 1), Some((1, 1)));
        assert_eq!(window.query(&At::from(1)).count, 2);
    }

    #[test]
    fn snapshot_round_trips_and_rejects_another_shape() {
        let spec = Rolling::count(Duration::from_secs(1));
        let mut window = RollingWindow::<u64>::new(spec, None);
        for t in 0..500 {
            window.add(t % 5, 1_000 + t, 2);
        }
        let bytes = window.snapshot(1).unwrap();
        let mut restored = RollingWindow::<u64>::new(spec, None);
        restored.restore(&bytes).unwrap();
        for key in 0..5 {
            assert_eq!(restored.query(&At::from(key)), window.query(&At::from(key)));
        }
        let mut other = RollingWindow::<u64>::new(spec.buckets(5), None);
        let error = other.restore(&bytes).unwrap_err();
        assert!(error.message().contains("10 slices of 100 ms"), "{error}");
        assert!(restored.restore(&bytes[..bytes.len() / 2]).is_err());
    }
}
