//! Metric handles and their per-shard cells.
//!
//! Each shard's cells sit in their own [`CachePadded`] block, so shards never
//! write a shared cache line. Updates are a `Relaxed` load and a `Relaxed`
//! store by the shard's single writer (see the module docs of
//! [`crate::metrics`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

/// The finite upper bounds of every histogram's buckets, in nanoseconds:
/// 1 µs · 2^k for k in 0..=26, i.e. 1 µs up to about 67 s. Observations
/// above the last bound fall in the `+Inf` bucket.
pub const HISTOGRAM_BUCKETS: [u64; BUCKETS] = {
    let mut bounds = [0; BUCKETS];
    let mut k = 0;
    while k < BUCKETS {
        bounds[k] = FIRST_BOUND_NS << k;
        k += 1;
    }
    bounds
};

/// The number of finite buckets.
const BUCKETS: usize = 27;
/// The first bucket's upper bound: 1 µs.
const FIRST_BOUND_NS: u64 = 1_000;

/// Adds `n` to a cell that only the calling thread writes.
#[inline]
fn bump(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One counter cell per shard.
pub(super) struct CounterCells {
    shards: Box<[CachePadded<AtomicU64>]>,
}

impl CounterCells {
    pub(super) fn new(shards: usize) -> CounterCells {
        CounterCells {
            shards: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// The sum over all shards.
    pub(super) fn sum(&self) -> u64 {
        self.shards
            .iter()
            .fold(0, |sum, cell| sum.wrapping_add(cell.load(Relaxed)))
    }
}

/// One gauge cell per shard, holding an `i64`'s bits.
pub(super) struct GaugeCells {
    shards: Box<[CachePadded<AtomicU64>]>,
}

impl GaugeCells {
    pub(super) fn new(shards: usize) -> GaugeCells {
        GaugeCells {
            shards: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Each shard's value, in shard order.
    pub(super) fn values(&self) -> impl Iterator<Item = i64> + '_ {
        self.shards.iter().map(|cell| cell.load(Relaxed) as i64)
    }

    /// Each shard's value as a float ([`FloatGauge`] cells), in shard
    /// order.
    pub(super) fn float_values(&self) -> impl Iterator<Item = f64> + '_ {
        self.shards
            .iter()
            .map(|cell| f64::from_bits(cell.load(Relaxed)))
    }
}

/// One shard's histogram cells: a count per finite bucket, the `+Inf`
/// bucket's count, and the sum of observations in nanoseconds.
struct HistogramShard {
    /// Non-cumulative counts; index [`BUCKETS`] is `+Inf`.
    buckets: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
}

/// One block of histogram cells per shard.
pub(super) struct HistogramCells {
    shards: Box<[CachePadded<HistogramShard>]>,
}

/// What a scrape read from a histogram, summed over shards.
pub(super) struct HistogramSnapshot {
    /// Non-cumulative counts; index [`BUCKETS`] is `+Inf`.
    pub(super) buckets: [u64; BUCKETS + 1],
    pub(super) sum_ns: u64,
}

impl HistogramCells {
    pub(super) fn new(shards: usize) -> HistogramCells {
        HistogramCells {
            shards: (0..shards)
                .map(|_| {
                    CachePadded::new(HistogramShard {
                        buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                        sum_ns: AtomicU64::new(0),
                    })
                })
                .collect(),
        }
    }

    /// Sums every shard's cells.
    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        let mut snapshot = HistogramSnapshot {
            buckets: [0; BUCKETS + 1],
            sum_ns: 0,
        };
        for shard in self.shards.iter() {
            for (total, cell) in snapshot.buckets.iter_mut().zip(&shard.buckets) {
                *total = total.wrapping_add(cell.load(Relaxed));
            }
            snapshot.sum_ns = snapshot.sum_ns.wrapping_add(shard.sum_ns.load(Relaxed));
        }
        snapshot
    }
}

/// The index of the bucket that holds `ns`: the first whose bound is at
/// least `ns`, or [`BUCKETS`] (`+Inf`).
#[inline]
pub(super) fn bucket_index(ns: u64) -> usize {
    if ns <= FIRST_BOUND_NS {
        return 0;
    }
    // The smallest k with FIRST_BOUND_NS << k >= ns is the smallest k with
    // 2^k >= ceil(ns / FIRST_BOUND_NS), i.e. ceil(log2(that)).
    let q = ns.div_ceil(FIRST_BOUND_NS);
    let k = (u64::BITS - (q - 1).leading_zeros()) as usize;
    k.min(BUCKETS)
}

macro_rules! debug_handle {
    ($ty:ident) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    };
}

/// A handle to one counter series: a monotonically increasing count, one
/// cell per shard, reported as the sum over shards.
///
/// Only the thread running shard `s` may update shard `s` (see
/// [`crate::metrics`]).
#[derive(Clone)]
pub struct Counter {
    cells: Arc<CounterCells>,
}

debug_handle!(Counter);

impl Counter {
    pub(super) fn from_cells(cells: Arc<CounterCells>) -> Counter {
        Counter { cells }
    }

    /// Adds `n` to shard `shard`'s cell.
    ///
    /// # Panics
    /// If `shard` is not below the registry's shard count.
    #[inline]
    pub fn add(&self, shard: usize, n: u64) {
        bump(&self.cells.shards[shard], n);
    }

    /// Adds 1 to shard `shard`'s cell.
    ///
    /// # Panics
    /// As [`Counter::add`].
    #[inline]
    pub fn inc(&self, shard: usize) {
        self.add(shard, 1);
    }

    /// The current value: the sum over shards.
    pub fn value(&self) -> u64 {
        self.cells.sum()
    }

    /// A handle bound to shard `shard`, for a component that runs there.
    ///
    /// # Panics
    /// As [`Counter::add`].
    pub fn for_shard(&self, shard: usize) -> ShardCounter {
        assert!(
            shard < self.cells.shards.len(),
            "shard {shard} out of range"
        );
        ShardCounter {
            cells: Arc::clone(&self.cells),
            shard,
        }
    }
}

/// A [`Counter`] bound to one shard.
#[derive(Clone)]
pub struct ShardCounter {
    cells: Arc<CounterCells>,
    shard: usize,
}

debug_handle!(ShardCounter);

impl ShardCounter {
    /// Adds `n` to this shard's cell.
    #[inline]
    pub fn add(&self, n: u64) {
        bump(&self.cells.shards[self.shard], n);
    }

    /// Adds 1 to this shard's cell.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
}

/// A handle to one gauge series: a value that goes up and down, one cell
/// per shard, each reported with a `shard` label.
///
/// Only the thread running shard `s` may update shard `s` (see
/// [`crate::metrics`]).
#[derive(Clone)]
pub struct Gauge {
    cells: Arc<GaugeCells>,
}

debug_handle!(Gauge);

impl Gauge {
    pub(super) fn from_cells(cells: Arc<GaugeCells>) -> Gauge {
        Gauge { cells }
    }

    /// Sets shard `shard`'s value to `v`.
    ///
    /// # Panics
    /// If `shard` is not below the registry's shard count.
    #[inline]
    pub fn set(&self, shard: usize, v: i64) {
        self.cells.shards[shard].store(v as u64, Relaxed);
    }

    /// Adds `delta` (which may be negative) to shard `shard`'s value.
    ///
    /// # Panics
    /// As [`Gauge::set`].
    #[inline]
    pub fn add(&self, shard: usize, delta: i64) {
        bump(&self.cells.shards[shard], delta as u64);
    }

    /// Shard `shard`'s current value.
    ///
    /// # Panics
    /// As [`Gauge::set`].
    pub fn get(&self, shard: usize) -> i64 {
        self.cells.shards[shard].load(Relaxed) as i64
    }

    /// A handle bound to shard `shard`, for a component that runs there.
    ///
    /// # Panics
    /// As [`Gauge::set`].
    pub fn for_shard(&self, shard: usize) -> ShardGauge {
        assert!(
            shard < self.cells.shards.len(),
            "shard {shard} out of range"
        );
        ShardGauge {
            cells: Arc::clone(&self.cells),
            shard,
        }
    }
}

/// A handle to one gauge series of `f64` values, one cell per shard (and
/// writer slot), reported as their sum
/// ([`Registry::summed_float_gauge`](super::Registry::summed_float_gauge)).
///
/// Only the thread running shard `s` may update shard `s` (see
/// [`crate::metrics`]).
#[derive(Clone)]
pub struct FloatGauge {
    cells: Arc<GaugeCells>,
}

debug_handle!(FloatGauge);

impl FloatGauge {
    pub(super) fn from_cells(cells: Arc<GaugeCells>) -> FloatGauge {
        FloatGauge { cells }
    }

    /// Sets shard `shard`'s value to `v`.
    ///
    /// # Panics
    /// If `shard` is not below the registry's slot count.
    #[inline]
    pub fn set(&self, shard: usize, v: f64) {
        self.cells.shards[shard].store(v.to_bits(), Relaxed);
    }

    /// Shard `shard`'s current value.
    ///
    /// # Panics
    /// As [`FloatGauge::set`].
    pub fn get(&self, shard: usize) -> f64 {
        f64::from_bits(self.cells.shards[shard].load(Relaxed))
    }
}

/// A [`Gauge`] bound to one shard.
#[derive(Clone)]
pub struct ShardGauge {
    cells: Arc<GaugeCells>,
    shard: usize,
}

debug_handle!(ShardGauge);

impl ShardGauge {
    /// Sets this shard's value to `v`.
    #[inline]
    pub fn set(&self, v: i64) {
        self.cells.shards[self.shard].store(v as u64, Relaxed);
    }

    /// Adds `delta` (which may be negative) to this shard's value.
    #[inline]
    pub fn add(&self, delta: i64) {
        bump(&self.cells.shards[self.shard], delta as u64);
    }
}

/// A handle to one histogram series of durations: fixed exponential buckets
/// ([`HISTOGRAM_BUCKETS`]), one block of cells per shard, reported in
/// seconds as the sum over shards.
///
/// Only the thread running shard `s` may update shard `s` (see
/// [`crate::metrics`]).
#[derive(Clone)]
pub struct Histogram {
    cells: Arc<HistogramCells>,
}

debug_handle!(Histogram);

#[inline]
fn observe(shard: &HistogramShard, ns: u64, count: u64) {
    bump(&shard.buckets[bucket_index(ns)], count);
    bump(&shard.sum_ns, ns.wrapping_mul(count));
}

impl Histogram {
    pub(super) fn from_cells(cells: Arc<HistogramCells>) -> Histogram {
        Histogram { cells }
    }

    /// Records a duration of `ns` nanoseconds on shard `shard`.
    ///
    /// # Panics
    /// If `shard` is not below the registry's shard count.
    #[inline]
    pub fn observe_ns(&self, shard: usize, ns: u64) {
        observe(&self.cells.shards[shard], ns, 1);
    }

    /// The number of observations so far, over all shards.
    pub fn count(&self) -> u64 {
        self.cells
            .snapshot()
            .buckets
            .iter()
            .fold(0, |sum, n| sum.wrapping_add(*n))
    }

    /// A handle bound to shard `shard`, for a component that runs there.
    ///
    /// # Panics
    /// As [`Histogram::observe_ns`].
    pub fn for_shard(&self, shard: usize) -> ShardHistogram {
        assert!(
            shard < self.cells.shards.len(),
            "shard {shard} out of range"
        );
        ShardHistogram {
            cells: Arc::clone(&self.cells),
            shard,
        }
    }
}

/// A [`Histogram`] bound to one shard.
#[derive(Clone)]
pub struct ShardHistogram {
    cells: Arc<HistogramCells>,
    shard: usize,
}

debug_handle!(ShardHistogram);

impl ShardHistogram {
    /// Records a duration of `ns` nanoseconds on this shard.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        observe(&self.cells.shards[self.shard], ns, 1);
    }

    /// Records `count` durations of `ns` nanoseconds each on this shard, at
    /// the cost of one.
    #[inline]
    pub fn observe_ns_times(&self, ns: u64, count: u64) {
        observe(&self.cells.shards[self.shard], ns, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds() {
        assert_eq!(HISTOGRAM_BUCKETS[0], 1_000);
        assert_eq!(HISTOGRAM_BUCKETS[1], 2_000);
        assert_eq!(HISTOGRAM_BUCKETS[BUCKETS - 1], 67_108_864_000);
    }

    #[test]
    fn bucket_index_is_first_bound_not_below() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1_000), 0);
        assert_eq!(bucket_index(1_001), 1);
        assert_eq!(bucket_index(2_000), 1);
        assert_eq!(bucket_index(2_001), 2);
        assert_eq!(bucket_index(67_108_864_000), BUCKETS - 1);
        assert_eq!(bucket_index(67_108_864_001), BUCKETS);
        assert_eq!(bucket_index(u64::MAX), BUCKETS);
        for ns in (0..200_000).chain([1 << 40, 1 << 50, u64::MAX / 3]) {
            let i = bucket_index(ns);
            let expected = HISTOGRAM_BUCKETS
                .iter()
                .position(|&bound| ns <= bound)
                .unwrap_or(BUCKETS);
            assert_eq!(i, expected, "ns = {ns}");
        }
    }

    #[test]
    fn counter_sums_shards() {
        let counter = Counter::from_cells(Arc::new(CounterCells::new(3)));
        counter.add(0, 5);
        counter.inc(2);
        counter.for_shard(1).add(10);
        assert_eq!(counter.value(), 16);
    }

    #[test]
    fn gauge_goes_down() {
        let gauge = Gauge::from_cells(Arc::new(GaugeCells::new(2)));
        gauge.set(0, 3);
        gauge.add(0, -5);
        gauge.for_shard(1).set(-7);
        assert_eq!(gauge.get(0), -2);
        assert_eq!(gauge.get(1), -7);
    }

    #[test]
    fn handles_are_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Counter>();
        check::<Gauge>();
        check::<Histogram>();
        check::<ShardCounter>();
        check::<ShardGauge>();
        check::<ShardHistogram>();
        check::<super::super::Registry>();
    }

    #[test]
    fn shards_do_not_share_cache_lines() {
        let cells = CounterCells::new(2);
        let a = &*cells.shards[0] as *const AtomicU64 as usize;
        let b = &*cells.shards[1] as *const AtomicU64 as usize;
        assert!(b - a >= 64);
    }
}
