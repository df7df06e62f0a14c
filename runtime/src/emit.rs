//! The emitter: where operators put their output records.
//!
//! `push` serializes a record straight into the open batch of the target it
//! is routed to (one open batch per edge and target shard). A batch that
//! fills up moves to a ready queue; after the operator returns, the node task
//! sends the ready queue into the rings, waiting when a ring is full. So the
//! per-record path is: route, serialize, maybe enqueue. No allocation, no
//! atomic, no syscall. (A tapped output (`crate::tap`) adds one relaxed
//! load per `push_all_to` call; only while a tap is armed are records
//! formatted.)
//!
//! Control messages (watermarks, end of stream) are queued behind the data
//! pushed before them, so every ring sees records and watermarks in the order
//! the operator produced them.

use std::any::Any;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use crate::batch::{BufferPool, RawBatch, Scratch};
use crate::error::{NodeFailure, OperatorError, SerializeError};
use crate::limits::BATCH_MAX_RECORDS;
use crate::message::Message;
use crate::metrics::wired::OutputMetrics;
use crate::metrics::ShardCounter;
use crate::partition::{owner_of, KeyFn, Partition};
use crate::record::Record;
use crate::ring::{Producer, PushError};
use crate::tap::{TapFormat, TapPoint};

/// One output edge of a node instance, as wired by the plan.
pub(crate) struct OutputIo {
    pub(crate) to: Arc<str>,
    /// The producer's output port this edge carries.
    pub(crate) port: usize,
    /// Whether it joins two stages of one component (`component_of`): not
    /// counted as the component's output.
    pub(crate) internal: bool,
    pub(crate) partition: Arc<dyn Any + Send + Sync>,
    /// Consumer shard and the ring to it, in instance order.
    pub(crate) targets: Vec<(usize, Producer<Message>)>,
}

/// A described output port of a node instance.
pub(crate) struct PortIo {
    pub(crate) port: usize,
    /// Its `output` label in metrics.
    pub(crate) label: Arc<str>,
    /// Its tap's point and [`TapFormat`](crate::tap::TapFormat), if it can
    /// be tapped.
    pub(crate) tap: Option<(
        Arc<crate::tap::TapPoint>,
        Arc<dyn std::any::Any + Send + Sync>,
    )>,
}

enum Route<T> {
    Single,
    Hash(KeyFn<T>),
    Broadcast,
    RoundRobin(usize),
}

struct Target {
    shard: usize,
    ring: Producer<Message>,
    open: Option<RawBatch>,
}

struct EdgeOutput<T> {
    to: Arc<str>,
    port: usize,
    route: Route<T>,
    targets: Vec<Target>,
    /// Index into the metrics' ports of the batches this edge counts: the
    /// first edge of each port leaving the component counts (its first
    /// target only, if it broadcasts), so a record is counted once however
    /// many components read it.
    counted: Option<usize>,
}

/// A tap on one output port (see `crate::tap`).
struct Tap<T> {
    port: usize,
    point: Arc<TapPoint>,
    format: TapFormat<T>,
}

enum Outgoing {
    Data {
        edge: usize,
        target: usize,
        batch: RawBatch,
    },
    Watermark(u64),
    Barrier(u64),
    End,
    Stop,
}

/// Everything `push` touches besides the edges, split out so both can be
/// borrowed at once.
struct Staging {
    pool: Rc<BufferPool>,
    scratch: Scratch,
    ready: VecDeque<Outgoing>,
    error: Option<SerializeError>,
    failure: Option<OperatorError>,
}

impl Staging {
    #[inline(always)]
    fn write<T: Record>(&mut self, edge: usize, index: usize, target: &mut Target, record: &T) {
        let batch = target.open.get_or_insert_with(|| self.pool.take());
        if let Err(error) = batch.push(record, &mut self.scratch) {
            self.error.get_or_insert(error);
        }
        if batch.is_full() {
            if let Some(batch) = target.open.take() {
                self.ready.push_back(Outgoing::Data {
                    edge,
                    target: index,
                    batch,
                });
            }
        }
    }
}

/// Collects a node instance's output records into batches for its edges.
pub struct Emitter<T> {
    edges: Vec<EdgeOutput<T>>,
    taps: Vec<Tap<T>>,
    staging: Staging,
    /// `None` for a node without outputs (a sink).
    metrics: Option<OutputMetrics>,
}

impl<T> std::fmt::Debug for Emitter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("edges", &self.edges.len())
            .field("ready", &self.staging.ready.len())
            .finish()
    }
}

impl<T: Record> Emitter<T> {
    pub(crate) fn new(
        outputs: Vec<OutputIo>,
        ports: &[PortIo],
        pool: Rc<BufferPool>,
        metrics: Option<OutputMetrics>,
    ) -> Emitter<T> {
        let mut edges: Vec<EdgeOutput<T>> = Vec::with_capacity(outputs.len());
        for output in outputs {
            let counted = match &metrics {
                Some(metrics) if !output.internal => {
                    let port = output.port;
                    let seen = edges
                        .iter()
                        .any(|edge| edge.port == port && edge.counted.is_some());
                    metrics.port_index(port).filter(|_| !seen)
                }
                _ => None,
            };
            edges.push(EdgeOutput::new(output, counted));
        }
        let taps = ports
            .iter()
            .filter_map(|port| {
                let (point, format) = port.tap.as_ref()?;
                let format = format.downcast_ref::<TapFormat<T>>()?.clone();
                Some(Tap {
                    port: port.port,
                    point: point.clone(),
                    format,
                })
            })
            .collect();
        Emitter {
            metrics,
            edges,
            taps,
            staging: Staging {
                pool,
                scratch: Scratch::new(),
                ready: VecDeque::new(),
                error: None,
                failure: None,
            },
        }
    }

    /// Records a source should emit per [`Source::poll`](crate::Source::poll)
    /// to fill about one batch.
    pub fn batch_records_max(&self) -> usize {
        BATCH_MAX_RECORDS
    }

    /// Emits one record to every edge of the main output (port 0), routed
    /// by the edge's partitioning.
    #[inline]
    pub fn push(&mut self, record: &T) {
        self.push_all(std::slice::from_ref(record));
    }

    /// Emits every record of `records`, in order: the same as calling
    /// [`push`](Emitter::push) for each, but the routing decision is made
    /// once per edge for the whole slice, so the per-record loop is tight.
    pub fn push_all(&mut self, records: &[T]) {
        self.push_all_to(0, records);
    }

    /// Emits one record to every edge of output `port` (see
    /// [`GraphBuilder::connect_port`](crate::GraphBuilder::connect_port)).
    /// A port with no edges drops it.
    #[inline]
    pub fn push_to(&mut self, port: usize, record: &T) {
        self.push_all_to(port, std::slice::from_ref(record));
    }

    /// Whether any edge reads output `port`: an operator can skip building
    /// side-output records nobody reads.
    pub fn has_port(&self, port: usize) -> bool {
        self.edges.iter().any(|edge| edge.port == port)
    }

    /// [`push_all`](Emitter::push_all) for output `port`.
    pub fn push_all_to(&mut self, port: usize, records: &[T]) {
        for tap in &self.taps {
            if tap.port == port && tap.point.armed() {
                tap.point.capture(records, &tap.format);
            }
        }
        for (edge_index, edge) in self.edges.iter_mut().enumerate() {
            if edge.port != port {
                continue;
            }
            let targets = edge.targets.len();
            match &mut edge.route {
                Route::Single => {
                    let target = &mut edge.targets[0];
                    for record in records {
                        self.staging.write(edge_index, 0, target, record);
                    }
                }
                Route::Hash(key) => {
                    for record in records {
                        let index = owner_of(key(record), targets);
                        self.staging
                            .write(edge_index, index, &mut edge.targets[index], record);
                    }
                }
                Route::RoundRobin(next) => {
                    for record in records {
                        let index = *next;
                        *next = (index + 1) % targets;
                        self.staging
                            .write(edge_index, index, &mut edge.targets[index], record);
                    }
                }
                Route::Broadcast => {
                    for record in records {
                        for (index, target) in edge.targets.iter_mut().enumerate() {
                            self.staging.write(edge_index, index, target, record);
                        }
                    }
                }
            }
        }
    }

    /// Promises that no record with an event time below `watermark` follows.
    /// Records pushed so far are sent first.
    pub fn watermark(&mut self, watermark: u64) {
        self.flush();
        self.staging.ready.push_back(Outgoing::Watermark(watermark));
    }

    /// Hands every partly filled batch on now instead of waiting for it to
    /// fill (a source with nothing more to read calls this to cut latency).
    pub fn flush(&mut self) {
        for (edge_index, edge) in self.edges.iter_mut().enumerate() {
            for (index, target) in edge.targets.iter_mut().enumerate() {
                if let Some(batch) = target.open.take() {
                    self.staging.ready.push_back(Outgoing::Data {
                        edge: edge_index,
                        target: index,
                        batch,
                    });
                }
            }
        }
    }

    /// Queues the barrier of `epoch` behind everything pushed so far, on
    /// every ring.
    pub(crate) fn barrier(&mut self, epoch: u64) {
        self.flush();
        self.staging.ready.push_back(Outgoing::Barrier(epoch));
    }

    /// Queues end of stream behind everything pushed so far.
    pub(crate) fn end(&mut self) {
        self.flush();
        self.staging.ready.push_back(Outgoing::End);
    }

    /// Queues a stop for a savepoint ([`Message::Stop`]) behind everything
    /// pushed so far.
    pub(crate) fn stop(&mut self) {
        self.flush();
        self.staging.ready.push_back(Outgoing::Stop);
    }

    /// Fails the node: the runtime stops it after the current call and
    /// the run fails with `error` ([`NodeFailure::Operator`]): a message (a
    /// `String` or `&str`, of kind [`Other`](crate::OperatorErrorKind::Other))
    /// or an [`OperatorError`] of its own kind (a source that cannot listen
    /// on its address, say). For failures the operator cannot recover from;
    /// the first one counts.
    pub fn fail(&mut self, error: impl Into<OperatorError>) {
        if self.staging.failure.is_none() {
            self.staging.failure = Some(error.into());
        }
    }

    /// The first serialization error since the last call, if any.
    pub(crate) fn take_error(&mut self) -> Result<(), NodeFailure> {
        if let Some(error) = self.staging.failure.take() {
            return Err(NodeFailure::Operator(error));
        }
        match self.staging.error.take() {
            Some(error) => Err(NodeFailure::Serialize(error)),
            None => Ok(()),
        }
    }

    /// Sends every queued batch and control message into its ring, in order,
    /// waiting while a ring is full.
    pub(crate) async fn send_ready(&mut self) -> Result<(), NodeFailure> {
        while let Some(outgoing) = self.staging.ready.pop_front() {
            match outgoing {
                Outgoing::Data {
                    edge,
                    target,
                    batch,
                } => {
                    let edge = &mut self.edges[edge];
                    let (records, bytes) = (batch.len(), batch.bytes_len());
                    let full_waits = self.metrics.as_ref().map(|m| &m.full_waits);
                    let counted = edge.counted.filter(|_| target == 0 || !edge.broadcasts());
                    let target = &mut edge.targets[target];
                    send(&edge.to, target, Message::Data(batch), full_waits).await?;
                    if let (Some(metrics), Some(port)) = (&self.metrics, counted) {
                        metrics.batch(port, records, bytes);
                    }
                }
                Outgoing::Watermark(watermark) => {
                    self.broadcast(|| Message::Watermark(watermark)).await?;
                }
                Outgoing::Barrier(epoch) => self.broadcast(|| Message::Barrier(epoch)).await?,
                Outgoing::End => self.broadcast(|| Message::End).await?,
                Outgoing::Stop => self.broadcast(|| Message::Stop).await?,
            }
        }
        Ok(())
    }

    async fn broadcast(&mut self, message: impl Fn() -> Message) -> Result<(), NodeFailure> {
        let full_waits = self.metrics.as_ref().map(|m| &m.full_waits);
        for edge in &mut self.edges {
            for target in &mut edge.targets {
                send(&edge.to, target, message(), full_waits).await?;
            }
        }
        Ok(())
    }
}

/// Sends `message` into `target`'s ring, waiting while it is full (counted
/// in `full_waits`, once per message that had to wait).
async fn send(
    to: &Arc<str>,
    target: &mut Target,
    message: Message,
    full_waits: Option<&ShardCounter>,
) -> Result<(), NodeFailure> {
    let closed = |target: &Target| NodeFailure::OutputClosed {
        to: to.to_string(),
        to_shard: target.shard,
    };
    let message = match target.ring.try_push(message) {
        Ok(()) => return Ok(()),
        Err(PushError::Closed(_)) => return Err(closed(target)),
        Err(PushError::Full(message)) => message,
    };
    if let Some(full_waits) = full_waits {
        full_waits.inc();
    }
    match target.ring.push(message).await {
        Ok(()) => Ok(()),
        Err(_) => Err(closed(target)),
    }
}

impl<T: Record> EdgeOutput<T> {
    fn broadcasts(&self) -> bool {
        matches!(self.route, Route::Broadcast)
    }

    fn new(output: OutputIo, counted: Option<usize>) -> EdgeOutput<T> {
        let partition = output
            .partition
            .downcast_ref::<Partition<T>>()
            .expect("edge record type was checked when the graph was built");
        let route = match partition {
            _ if output.targets.len() == 1 => Route::Single,
            Partition::Forward => Route::Single,
            Partition::Hash(key) => Route::Hash(key.clone()),
            Partition::Broadcast => Route::Broadcast,
            Partition::RoundRobin => Route::RoundRobin(0),
        };
        let targets = output
            .targets
            .into_iter()
            .map(|(shard, ring)| Target {
                shard,
                ring,
                open: None,
            })
            .collect();
        EdgeOutput {
            to: output.to,
            port: output.port,
            route,
            targets,
            counted,
        }
    }
}
