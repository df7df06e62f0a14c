//! Taps: a sample of the records a running node emits on one output port,
//! as text lines (`weir tap`, served by the admin endpoint's `/tap`).
//!
//! A graph names a node's output and gives it a format
//! ([`GraphBuilder::describe_output`](crate::GraphBuilder::describe_output));
//! each run then has one [`TapPoint`] per described output, shared by the
//! node's instances. Until someone asks for a sample a point is disarmed
//! and an emitter pays one relaxed load per
//! [`push_all_to`](crate::Emitter::push_all_to) call. Armed, the emitter
//! formats records until the sample is complete and offers each line to a
//! bounded channel without ever waiting: a tap reads what flows past and
//! never holds back or changes delivery.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Writes one record as one line of text (without the newline), for a
/// tap: pipelines write rows as JSON objects.
pub type TapFormat<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// One tappable output of a run.
pub(crate) struct TapPoint {
    /// Records the sample being taken still wants; 0 when disarmed.
    wanted: AtomicUsize,
    /// Where lines go while armed.
    lines: Mutex<Option<SyncSender<Vec<u8>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TapPoint {
    fn new() -> TapPoint {
        TapPoint {
            wanted: AtomicUsize::new(0),
            lines: Mutex::new(None),
        }
    }

    /// Whether a sample is being taken.
    #[inline]
    pub(crate) fn armed(&self) -> bool {
        self.wanted.load(Ordering::Relaxed) > 0
    }

    /// Offers `records` to the sample being taken, as far as it wants
    /// them. Never waits: a line the reader has no room for is dropped.
    #[cold]
    pub(crate) fn capture<T>(&self, records: &[T], format: &TapFormat<T>) {
        for record in records {
            let claimed = self
                .wanted
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(1)
                });
            if claimed.is_err() {
                return;
            }
            let mut line = Vec::with_capacity(128);
            format(record, &mut line);
            if let Some(lines) = lock(&self.lines).as_ref() {
                // Full or gone: the sample is complete or was given up.
                let _ = lines.try_send(line);
            }
        }
    }
}

/// One described output of a graph: its tap's name and format.
#[derive(Clone)]
pub(crate) struct TapSpec {
    /// What `weir tap` calls it: `COMPONENT` or `COMPONENT.OUTPUT`.
    pub(crate) name: Arc<str>,
    /// A [`TapFormat`] of the node's output record type.
    pub(crate) format: Arc<dyn Any + Send + Sync>,
}

/// The tappable outputs of the runtime's current run, by name. Cheap to
/// clone: clones share them.
#[derive(Clone, Default)]
pub struct Taps {
    points: Arc<Mutex<BTreeMap<String, Arc<TapPoint>>>>,
}

impl fmt::Debug for Taps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Taps")
            .field("names", &self.names())
            .finish()
    }
}

/// Why [`Taps::sample`] took no sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapError {
    /// No output of the running pipeline has that name; the names there
    /// are.
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// Another sample of the same output is being taken.
    Busy(String),
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapError::Unknown { name, known } if known.is_empty() => write!(
                f,
                "no output `{name}`: the runtime runs no pipeline with tappable outputs"
            ),
            TapError::Unknown { name, known } => write!(
                f,
                "no output `{name}`; tappable outputs: {}",
                known.join(", ")
            ),
            TapError::Busy(name) => write!(f, "`{name}` is being tapped already; try again"),
        }
    }
}

impl std::error::Error for TapError {}

impl Taps {
    /// The names of the outputs that can be tapped now, sorted.
    pub fn names(&self) -> Vec<String> {
        lock(&self.points).keys().cloned().collect()
    }

    /// Takes up to `limit` records emitted on output `name` from now on,
    /// waiting at most `wait` for them, as text lines (see
    /// [`TapFormat`]). Fewer come back if fewer flowed past in time.
    pub fn sample(
        &self,
        name: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Vec<u8>>, TapError> {
        let point = lock(&self.points).get(name).cloned();
        let Some(point) = point else {
            return Err(TapError::Unknown {
                name: name.to_owned(),
                known: self.names(),
            });
        };
        let limit = limit.max(1);
        let (sender, receiver) = sync_channel(limit);
        {
            let mut lines = lock(&point.lines);
            if lines.is_some() {
                return Err(TapError::Busy(name.to_owned()));
            }
            *lines = Some(sender);
        }
        point.wanted.store(limit, Ordering::Release);
        let deadline = Instant::now() + wait;
        let mut sample = Vec::with_capacity(limit.min(1024));
        while sample.len() < limit {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => sample.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        point.wanted.store(0, Ordering::Release);
        *lock(&point.lines) = None;
        // Lines offered between the deadline and disarming.
        while sample.len() < limit {
            match receiver.try_recv() {
                Ok(line) => sample.push(line),
                Err(_) => break,
            }
        }
        Ok(sample)
    }

    /// A run starts with these outputs; returns each one's point, in
    /// `specs`' order. Points of an earlier run are dropped.
    pub(crate) fn start_run(&self, specs: &[TapSpec]) -> Vec<Arc<TapPoint>> {
        let mut points = lock(&self.points);
        points.clear();
        specs
            .iter()
            .map(|spec| {
                points
                    .entry(spec.name.to_string())
                    .or_insert_with(|| Arc::new(TapPoint::new()))
                    .clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> TapSpec {
        let format: TapFormat<u64> =
            Arc::new(|n: &u64, out: &mut Vec<u8>| out.extend_from_slice(n.to_string().as_bytes()));
        TapSpec {
            name: name.into(),
            format: Arc::new(format),
        }
    }

    #[test]
    fn samples_what_flows_while_armed_and_nothing_else() {
        let taps = Taps::default();
        let specs = [spec("numbers")];
        let point = taps.start_run(&specs).remove(0);
        let format = specs[0]
            .format
            .downcast_ref::<TapFormat<u64>>()
            .unwrap()
            .clone();
        // Disarmed: nothing is formatted.
        assert!(!point.armed());
        point.capture(&[1, 2, 3], &format);
        let producer = {
            let point = point.clone();
            std::thread::spawn(move || {
                while !point.armed() {
                    std::thread::yield_now();
                }
                point.capture(&[10, 11, 12, 13, 14], &format);
            })
        };
        let sample = taps.sample("numbers", 3, Duration::from_secs(10)).unwrap();
        producer.join().unwrap();
        assert_eq!(sample, vec![b"10".to_vec(), b"11".to_vec(), b"12".to_vec()]);
        assert!(!point.armed());

        let short = taps
            .sample("numbers", 2, Duration::from_millis(50))
            .unwrap();
        assert!(short.is_empty());
        let unknown = taps.sample("nope", 1, Duration::ZERO).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no output `nope`; tappable outputs: numbers"
        );
    }
}
