//! Prometheus metrics for a shared-nothing runtime.
//!
//! # Single-writer design
//! Every metric keeps one cell (or, for a histogram, one block of cells) per
//! shard, each padded to its own cache line(s). The thread that runs shard
//! `s` is the only writer of shard `s`'s cells: it updates them with a
//! `Relaxed` load followed by a `Relaxed` store, with no locked
//! read-modify-write instruction and no lock, and no two shards ever write
//! the same cache line. A scrape runs on another thread (see [`serve`]); it
//! reads every shard's cells with `Relaxed` loads and sums them (gauges are
//! reported per shard instead, under a `shard` label).
//!
//! The contract is therefore: *only the thread running shard `s` updates
//! shard `s`'s cells.* Breaking it is not undefined behaviour, but two
//! concurrent writers to one shard's cell may lose updates.
//!
//! # Writer slots
//! Threads that are not shards but update metrics too (a shard's WAL writer
//! thread, the epoch coordinator) get slots of their own after the shards':
//! [`Registry::with_writers`] adds them and [`Registry::writer_slot`] names
//! the slot of writer `w` (`shards + w`), which counters and histograms
//! accept wherever they take a shard (they are summed over every slot). A
//! per-shard gauge ([`Registry::gauge`]) has cells for shards only; a
//! gauge that such a writer sets is a [`Registry::summed_gauge`], reported
//! as one series without a `shard` label. A scrape sees
//! each cell at some recent value; cells are not read as one snapshot, so a
//! histogram's `_sum` may lag its `_count` by the observations in flight.
//! Buckets are rendered cumulatively from one read of each bucket, so
//! `_bucket` series are always monotonic in `le` and `_count` always equals
//! the `+Inf` bucket.
//!
//! Registering a metric takes a lock (it is done once, at start-up);
//! updating one never does.
//!
//! # Usage
//! ```
//! use weir_runtime::metrics::Registry;
//!
//! let registry = Registry::new(2);
//! let events = registry.counter(
//!     "weir_component_events_in",
//!     "Records a component received.",
//!     &[("component", "parse")],
//! );
//! let latency = registry.histogram(
//!     "weir_component_batch_latency_seconds",
//!     "Time a component spent on one batch.",
//!     &[("component", "parse")],
//! );
//! // On shard 1's thread (a handle may also be bound to one shard):
//! events.add(1, 64);
//! latency.for_shard(1).observe_ns(12_500);
//!
//! let text = registry.render();
//! assert!(text.contains("weir_component_events_in_total{component=\"parse\"} 64\n"));
//! ```
//!
//! # Naming conventions
//! Follow the Prometheus conventions so that `promtool check metrics` has
//! nothing to say:
//! - names are `weir_<subsystem>_<what>[_<unit>]` in `snake_case`, e.g.
//!   `weir_component_events_in_total`, `weir_ring_full_waits_total`,
//!   `weir_wal_bytes_written_total`, `weir_shard_buffers_in_use`,
//!   `weir_component_batch_latency_seconds`;
//! - counters end in `_total`; [`Registry::counter`] appends it when the
//!   name lacks it. Gauges and histograms must not end in `_total`;
//! - units are base units, spelled out, at the end of the name before
//!   `_total`: `_seconds`, `_bytes`. Histograms here always measure time, in
//!   seconds, so their names end in `_seconds`;
//! - labels identify *what* is measured, e.g. `component="..."`,
//!   `edge="..."`; the `shard` label is added by the registry to gauges and
//!   must not be given; `le` is reserved for histogram buckets.
//!
//! # Exposition
//! [`Registry::render`] writes the Prometheus text exposition format 0.0.4,
//! families sorted by name and series by label values; [`serve`] answers
//! `GET /metrics` with it from a small HTTP server on its own thread.

mod handles;
mod render;
mod server;
pub(crate) mod wired;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use handles::{
    Counter, FloatGauge, Gauge, Histogram, ShardCounter, ShardGauge, ShardHistogram,
    HISTOGRAM_BUCKETS,
};
pub use server::{serve, serve_admin, Admin, MetricsServer};

use handles::{CounterCells, GaugeCells, HistogramCells};

/// The user-facing component a node belongs to: its name up to the first
/// `:`. A node named `COMPONENT:STAGE` is an internal stage of
/// `COMPONENT` (an ingest source's `NAME:rows`): its metrics count as the
/// component's, and records crossing between the stages of one component
/// are not counted as the component's input or output.
pub fn component_of(node: &str) -> &str {
    node.split_once(':')
        .map_or(node, |(component, _)| component)
}

/// The content type of [`Registry::render`]'s output (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The set of metric families of one runtime, with one cell per shard in
/// each metric.
///
/// Cloning is cheap: clones share the same families. Registration takes a
/// lock; the handles it returns update their cells without one.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    shards: usize,
    /// Writer slots after the shards' (see [`Registry::with_writers`]).
    writers: usize,
    families: Mutex<BTreeMap<String, Family>>,
    /// Shards whose run has started every node (see [`Registry::ready`]).
    running: std::sync::atomic::AtomicUsize,
    /// The current run's stop flag, once a run started.
    stop: Mutex<Option<Arc<std::sync::atomic::AtomicBool>>>,
}

/// Whether a runtime takes input, for a readiness probe (`/ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Recovered, and every shard has started its nodes.
    Ready,
    /// No run, or a run still recovering or starting its shards.
    Starting,
    /// The run was asked to stop, or its shards are ending.
    Stopping,
}

/// One metric family: its help text and its series by label set.
struct Family {
    help: String,
    series: Series,
}

/// A family's series, keyed by their (validated) label pairs.
enum Series {
    Counter(BTreeMap<Labels, Arc<CounterCells>>),
    Gauge(BTreeMap<Labels, Arc<GaugeCells>>),
    /// Gauges reported as one series, the sum over every slot.
    SummedGauge(BTreeMap<Labels, Arc<GaugeCells>>),
    /// [`FloatGauge`]s: as `SummedGauge`, of `f64` bits.
    FloatGauge(BTreeMap<Labels, Arc<GaugeCells>>),
    Histogram(BTreeMap<Labels, Arc<HistogramCells>>),
}

impl Series {
    fn kind(&self) -> &'static str {
        match self {
            Series::Counter(_) => "counter",
            Series::Gauge(_) | Series::SummedGauge(_) | Series::FloatGauge(_) => "gauge",
            Series::Histogram(_) => "histogram",
        }
    }

    /// The kind, telling the two kinds of gauge apart (for messages).
    fn describe(&self) -> &'static str {
        match self {
            Series::Gauge(_) => "per-shard gauge",
            Series::SummedGauge(_) => "summed gauge",
            Series::FloatGauge(_) => "float gauge",
            other => other.kind(),
        }
    }
}

/// A series' label pairs, in the order they were given.
type Labels = Vec<(String, String)>;

impl Registry {
    /// Creates an empty registry whose metrics have one cell per shard, for
    /// `shards` shards numbered `0..shards`.
    ///
    /// # Panics
    /// If `shards` is 0.
    pub fn new(shards: usize) -> Registry {
        Registry::with_writers(shards, 0)
    }

    /// Creates an empty registry for `shards` shards and `writers` more
    /// writer threads that are not shards (see the module docs): counters,
    /// histograms and summed gauges get a slot for each of them too.
    ///
    /// # Panics
    /// If `shards` is 0.
    pub fn with_writers(shards: usize, writers: usize) -> Registry {
        assert!(shards > 0, "a metrics registry needs at least one shard");
        Registry {
            inner: Arc::new(Inner {
                shards,
                writers,
                families: Mutex::new(BTreeMap::new()),
                running: std::sync::atomic::AtomicUsize::new(0),
                stop: Mutex::new(None),
            }),
        }
    }

    /// A run starts: it is not ready until every shard has started; `stop`
    /// is its stop flag (set: stopping).
    pub fn run_starting(&self, stop: Arc<std::sync::atomic::AtomicBool>) {
        self.inner
            .running
            .store(0, std::sync::atomic::Ordering::Release);
        *self
            .inner
            .stop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(stop);
    }

    /// A shard of the run started every node (after recovery).
    pub fn shard_started(&self) {
        self.inner
            .running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// A shard of the run ended.
    pub fn shard_ended(&self) {
        let _ = self.inner.running.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |running| running.checked_sub(1),
        );
    }

    /// Whether the run takes input: [`Readiness::Ready`] once it recovered
    /// and every shard started its nodes, until it is asked to stop or a
    /// shard ends.
    pub fn ready(&self) -> Readiness {
        let stopping = self
            .inner
            .stop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map(|stop| stop.load(std::sync::atomic::Ordering::Acquire));
        let running = self
            .inner
            .running
            .load(std::sync::atomic::Ordering::Acquire);
        match stopping {
            None => Readiness::Starting,
            Some(true) => Readiness::Stopping,
            Some(false) if running == self.inner.shards => Readiness::Ready,
            Some(false) => Readiness::Starting,
        }
    }

    /// The number of shards each metric has a cell for.
    pub fn shards(&self) -> usize {
        self.inner.shards
    }

    /// The number of writer slots after the shards'.
    pub fn writers(&self) -> usize {
        self.inner.writers
    }

    /// The slot of writer `writer` (`shards + writer`): what the thread
    /// that is writer `writer` passes where a handle takes a shard.
    ///
    /// # Panics
    /// If `writer` is not below [`Registry::writers`].
    pub fn writer_slot(&self, writer: usize) -> usize {
        assert!(
            writer < self.inner.writers,
            "writer {writer} out of range: the registry has {} writer slots",
            self.inner.writers
        );
        self.inner.shards + writer
    }

    /// Shards plus writers: the cells of a counter or histogram.
    fn slots(&self) -> usize {
        self.inner.shards + self.inner.writers
    }

    /// Registers (or finds) the counter series `name` with `labels` and
    /// returns its handle. `_total` is appended to `name` unless it already
    /// ends with it. Registering the same name and labels again returns a
    /// handle to the same cells; the first help text given is kept.
    ///
    /// # Panics
    /// If the name or a label name is not a valid Prometheus name, a label
    /// name repeats or is reserved (`le`, `shard`, `__*`), or `name` is
    /// already registered as another type.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let name = if name.ends_with("_total") {
            name.to_owned()
        } else {
            format!("{name}_total")
        };
        let slots = self.slots();
        let cells = self.register(
            name,
            help,
            labels,
            || Series::Counter(BTreeMap::new()),
            |series| match series {
                Series::Counter(map) => Some(map),
                _ => None,
            },
            || CounterCells::new(slots),
        );
        Counter::from_cells(cells)
    }

    /// Registers (or finds) the gauge series `name` with `labels` and
    /// returns its handle. Each shard's value is reported as its own series,
    /// with a `shard="<index>"` label added after `labels`. Only shards set
    /// it: it has no cells for writer slots.
    ///
    /// # Panics
    /// As [`Registry::counter`], and if `name` is a summed gauge.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        let shards = self.inner.shards;
        let cells = self.register(
            name.to_owned(),
            help,
            labels,
            || Series::Gauge(BTreeMap::new()),
            |series| match series {
                Series::Gauge(map) => Some(map),
                _ => None,
            },
            || GaugeCells::new(shards),
        );
        Gauge::from_cells(cells)
    }

    /// Registers (or finds) the gauge series `name` with `labels`, reported
    /// as one series without a `shard` label: the sum of every slot's value
    /// (shards' and writers'). Meant for a value that one writer owns (the
    /// last committed epoch, set by the coordinator's slot) or that adds up
    /// over shards.
    ///
    /// # Panics
    /// As [`Registry::counter`], and if `name` is a per-shard gauge.
    pub fn summed_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        let slots = self.slots();
        let cells = self.register(
            name.to_owned(),
            help,
            labels,
            || Series::SummedGauge(BTreeMap::new()),
            |series| match series {
                Series::SummedGauge(map) => Some(map),
                _ => None,
            },
            || GaugeCells::new(slots),
        );
        Gauge::from_cells(cells)
    }

    /// Registers (or finds) the gauge series `name` with `labels` of
    /// floating-point values, reported as [`summed_gauge`](Self::summed_gauge)s
    /// are: one series, the sum of every slot's value. Meant for a value one
    /// writer owns (a sink setting a window's aggregate).
    ///
    /// # Panics
    /// As [`Registry::counter`], and if `name` is a gauge of integers.
    pub fn summed_float_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> FloatGauge {
        let slots = self.slots();
        let cells = self.register(
            name.to_owned(),
            help,
            labels,
            || Series::FloatGauge(BTreeMap::new()),
            |series| match series {
                Series::FloatGauge(map) => Some(map),
                _ => None,
            },
            || GaugeCells::new(slots),
        );
        FloatGauge::from_cells(cells)
    }

    /// Registers (or finds) the histogram series `name` with `labels` and
    /// returns its handle. Observations are durations in nanoseconds,
    /// rendered in seconds over the fixed buckets [`HISTOGRAM_BUCKETS`]; end
    /// `name` in `_seconds`.
    ///
    /// # Panics
    /// As [`Registry::counter`].
    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Histogram {
        let slots = self.slots();
        let cells = self.register(
            name.to_owned(),
            help,
            labels,
            || Series::Histogram(BTreeMap::new()),
            |series| match series {
                Series::Histogram(map) => Some(map),
                _ => None,
            },
            || HistogramCells::new(slots),
        );
        Histogram::from_cells(cells)
    }

    /// Renders every family in the Prometheus text exposition format 0.0.4
    /// (see [`CONTENT_TYPE`]): families sorted by name, each with `# HELP`
    /// and `# TYPE` lines; counters, histograms and summed gauges summed
    /// over every slot, per-shard gauges one series per shard.
    pub fn render(&self) -> String {
        let families = self.families();
        let mut out = String::with_capacity(256 * families.len().max(1));
        for (name, family) in families.iter() {
            render::family(&mut out, name, family);
        }
        out
    }

    fn families(&self) -> MutexGuard<'_, BTreeMap<String, Family>> {
        // The map is only ever mutated by inserts that cannot leave it
        // half-updated, so a poisoned lock still guards consistent data.
        self.inner
            .families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds or inserts series `labels` of family `name`, of the kind that
    /// `empty` makes and `select` recognises.
    fn register<C>(
        &self,
        name: String,
        help: &str,
        labels: &[(&str, &str)],
        empty: impl FnOnce() -> Series,
        select: impl FnOnce(&mut Series) -> Option<&mut BTreeMap<Labels, Arc<C>>>,
        cells: impl FnOnce() -> C,
    ) -> Arc<C> {
        assert!(valid_metric_name(&name), "invalid metric name {name:?}");
        let labels = validate_labels(&name, labels);
        let mut families = self.families();
        let family = families.entry(name.clone()).or_insert_with(|| Family {
            help: help.to_owned(),
            series: empty(),
        });
        let kind = family.series.describe();
        let Some(series) = select(&mut family.series) else {
            panic!("metric {name:?} is already registered as a {kind}");
        };
        Arc::clone(series.entry(labels).or_insert_with(|| Arc::new(cells())))
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("shards", &self.inner.shards)
            .field("writers", &self.inner.writers)
            .field("families", &self.families().len())
            .finish()
    }
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a series' labels and copies them.
fn validate_labels(metric: &str, labels: &[(&str, &str)]) -> Labels {
    for (i, (label, _)) in labels.iter().enumerate() {
        assert!(
            valid_label_name(label),
            "metric {metric:?}: invalid label name {label:?}"
        );
        assert!(
            !label.starts_with("__") && *label != "le" && *label != "shard",
            "metric {metric:?}: label name {label:?} is reserved"
        );
        assert!(
            labels[..i].iter().all(|(other, _)| other != label),
            "metric {metric:?}: label {label:?} given twice"
        );
    }
    labels
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_series_shares_cells() {
        let registry = Registry::new(2);
        let a = registry.counter("weir_test_events", "Events.", &[("component", "x")]);
        let b = registry.counter("weir_test_events_total", "Events.", &[("component", "x")]);
        a.add(0, 2);
        b.add(1, 3);
        assert_eq!(a.value(), 5);
        assert_eq!(b.value(), 5);
    }

    #[test]
    #[should_panic(expected = "already registered as a counter")]
    fn kind_mismatch_panics() {
        let registry = Registry::new(1);
        registry.counter("weir_test_things", "Things.", &[]);
        registry.gauge("weir_test_things_total", "Things.", &[]);
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn shard_label_is_reserved() {
        Registry::new(1).gauge("weir_test_depth", "Depth.", &[("shard", "0")]);
    }

    #[test]
    #[should_panic(expected = "invalid metric name")]
    fn invalid_name_panics() {
        Registry::new(1).counter("weir-test", "Bad.", &[]);
    }

    #[test]
    #[should_panic(expected = "invalid label name")]
    fn invalid_label_panics() {
        Registry::new(1).counter("weir_test", "Bad.", &[("a-b", "x")]);
    }

    #[test]
    fn writer_slots_count_in_sums_not_in_shard_gauges() {
        let registry = Registry::with_writers(2, 3);
        assert_eq!((registry.shards(), registry.writers()), (2, 3));
        assert_eq!(registry.writer_slot(2), 4);
        let counter = registry.counter("weir_test_bytes", "Bytes.", &[]);
        counter.add(1, 5);
        counter.add(registry.writer_slot(2), 7);
        assert_eq!(counter.value(), 12);
        let committed = registry.summed_gauge("weir_test_committed", "Committed.", &[]);
        committed.set(registry.writer_slot(0), 9);
        let depth = registry.gauge("weir_test_depth", "Depth.", &[]);
        depth.set(1, 4);
        let text = registry.render();
        assert!(text.contains("\nweir_test_committed 9\n"), "{text}");
        assert!(
            text.contains("\nweir_test_depth{shard=\"1\"} 4\n"),
            "{text}"
        );
        assert!(!text.contains("shard=\"2\""), "{text}");
    }

    #[test]
    #[should_panic(expected = "index out of bounds")]
    fn per_shard_gauge_has_no_writer_cells() {
        let registry = Registry::with_writers(1, 1);
        let slot = registry.writer_slot(0);
        registry
            .gauge("weir_test_depth", "Depth.", &[])
            .set(slot, 1);
    }

    #[test]
    #[should_panic(expected = "already registered as a per-shard gauge")]
    fn gauge_kinds_do_not_mix() {
        let registry = Registry::with_writers(1, 1);
        registry.gauge("weir_test_level", "Level.", &[]);
        registry.summed_gauge("weir_test_level", "Level.", &[("x", "1")]);
    }

    #[test]
    fn names() {
        assert!(valid_metric_name("weir:x_1"));
        assert!(!valid_metric_name("1x"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("_a1"));
        assert!(!valid_label_name("a:b"));
    }
}
