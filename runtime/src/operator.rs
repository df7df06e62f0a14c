//! The three kinds of node a pipeline is made of, as traits users implement.
//!
//! Every method is synchronous and runs on the node's shard: an operator
//! never blocks and never awaits. Output goes into an [`Emitter`]; the
//! runtime hands full batches to the rings afterwards and waits there when a
//! ring is full (backpressure), so an operator needs no async code.

use crate::batch::Batch;
use crate::emit::Emitter;
use crate::epoch::CommitControl;
use crate::error::OperatorError;
use crate::intake::IntakeLog;
use crate::record::Record;

/// Where an incremental operator writes a base snapshot
/// ([`Processor::snapshot_base`]): each [`write`](SnapshotWriter::write)
/// adds to it, in order.
pub struct SnapshotWriter<'a> {
    write: &'a mut dyn FnMut(&[u8]) -> Result<(), OperatorError>,
}

impl<'a> SnapshotWriter<'a> {
    /// A writer handing every piece to `write` (the runtime's logs them;
    /// a test can collect them).
    pub fn new(write: &'a mut dyn FnMut(&[u8]) -> Result<(), OperatorError>) -> Self {
        SnapshotWriter { write }
    }

    /// Adds `bytes` to the snapshot. Fails when the write-ahead log does:
    /// return the error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        (self.write)(bytes)
    }
}

impl std::fmt::Debug for SnapshotWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotWriter")
    }
}

/// Where a node instance runs.
#[derive(Debug, Clone)]
pub struct ShardContext {
    /// This instance's shard, `0..shards`.
    pub shard: usize,
    /// Shards in the runtime.
    pub shards: usize,
    /// This instance's index among the node's instances.
    pub instance: usize,
    /// Instances of this node (the shard count, or 1 for a node with a
    /// parallelism of one).
    pub instances: usize,
    /// The node's name.
    pub node: std::sync::Arc<str>,
    /// The last committed epoch when the run started (0 without a data
    /// directory or on a fresh one). A sink discards output it staged for
    /// later epochs: those never committed and are produced again.
    pub committed_epoch: u64,
    /// Whether the runtime snapshots operators at epoch barriers (it has a
    /// data directory). An operator that tracks what changed for its
    /// incremental snapshots can skip that work when it is `false`: no
    /// snapshot of it is ever asked for in this run.
    pub snapshots: bool,
    /// The runtime's metrics: an operator may register its own (named
    /// `weir_<what>`, labelled with its node name) and update them for
    /// this shard (`shard`) only.
    pub metrics: crate::metrics::Registry,
}

impl ShardContext {
    /// The user-facing component this node belongs to
    /// ([`component_of`](crate::component_of) its name): what its metrics
    /// are labelled with.
    pub fn component(&self) -> &str {
        crate::metrics::component_of(&self.node)
    }
}

/// What a source reports after [`Source::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// It emitted records, or may have more right away.
    Ready,
    /// Nothing to emit now; poll again a little later.
    Idle,
    /// It will never emit again.
    Exhausted,
}

/// A node with no inputs that produces records.
pub trait Source: 'static {
    /// The records it emits.
    type Output: Record;

    /// Emits up to about one batch of records (see
    /// [`Emitter::batch_records_max`]) and says whether more will come.
    fn poll(&mut self, out: &mut Emitter<Self::Output>) -> SourcePoll;

    /// Where the source stands: enough to resume right after the last
    /// record it emitted (a generator's next index, a file's byte offset).
    /// Logged at every epoch barrier when the runtime has a data directory.
    /// A source that cannot be replayed returns nothing and is not
    /// exactly-once. During the call, its [`IntakeLog::current_epoch`]
    /// is the epoch whose barrier this position is logged at.
    fn position(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Resumes from a [`position`](Source::position) logged by a previous
    /// run, before the first poll.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let _ = position;
        Ok(())
    }

    /// Hands the source its [`IntakeLog`], before `restore` and the first
    /// poll. Sources whose input cannot be read again (network ingest) log
    /// what they accept there; see [`crate::intake`].
    fn attach(&mut self, intake: IntakeLog) {
        let _ = intake;
    }

    /// Emits again the records of `data`, which this instance logged
    /// through its [`IntakeLog`] in an epoch that never committed. Called
    /// after `restore`, once per such record in log order, before the first
    /// poll and before any barrier.
    fn replay(
        &mut self,
        data: &[u8],
        out: &mut Emitter<Self::Output>,
    ) -> Result<(), OperatorError> {
        let _ = (data, out);
        Err(OperatorError::unsupported(
            "this source logged intake data but cannot replay it",
        ))
    }
}

/// A node that turns input records into output records.
pub trait Processor: 'static {
    /// Records it reads.
    type Input: Record;
    /// Records it emits.
    type Output: Record;

    /// Handles one batch that arrived on input `port` (the index of the edge
    /// among the node's inputs, in the order they were connected).
    fn process(&mut self, port: usize, batch: &Batch<Self::Input>, out: &mut Emitter<Self::Output>);

    /// The combined watermark of all inputs rose to `watermark`: no record
    /// with a smaller event time will arrive. The runtime forwards the
    /// watermark downstream after this returns.
    fn on_watermark(&mut self, watermark: u64, out: &mut Emitter<Self::Output>) {
        let _ = (watermark, out);
    }

    /// Emits output the processor held back, about one batch per call, and
    /// returns whether more remains.
    ///
    /// An operator whose event produces a lot of output at once (a window
    /// closing over a million keys) should queue it and hand it out here:
    /// after every `process`, `on_watermark` and `finish`, the runtime calls
    /// `drain` until it returns `false`, waiting for room in the rings
    /// between calls, and only then forwards the watermark or reads the next
    /// input. Output staged in the emitter thus stays near one batch per
    /// target, however large the burst.
    fn drain(&mut self, out: &mut Emitter<Self::Output>) -> bool {
        let _ = out;
        false
    }

    /// Every input ended. Called once, after a final `u64::MAX` watermark.
    fn finish(&mut self, out: &mut Emitter<Self::Output>) {
        let _ = out;
    }

    /// The run stopped for a savepoint (a graceful stop with a data
    /// directory, see `docs/exactly-once.md`): no more input comes in this
    /// run, but the input did not end. Called once instead of
    /// [`finish`](Processor::finish), before the final snapshot; what the
    /// operator holds (open windows, pending records) stays as it is and is
    /// restored by the next run. The default does nothing.
    fn on_stop(&mut self, out: &mut Emitter<Self::Output>) {
        let _ = out;
    }

    /// The operator's state after every record of `epoch` (and none after
    /// it), as bytes; called on the aligned barrier when the runtime has a
    /// data directory, and logged. Stateless operators return nothing.
    fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let _ = epoch;
        Ok(Vec::new())
    }

    /// Restores a [`snapshot`](Processor::snapshot) of a previous run,
    /// before any input.
    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        let _ = state;
        Ok(())
    }

    /// Whether the operator snapshots incrementally: at a *base* epoch (a
    /// multiple of `limits::SNAPSHOT_BASE_EVERY_EPOCHS`) the runtime logs
    /// its whole state ([`snapshot`](Processor::snapshot)), at every other
    /// epoch only what changed since the previous snapshot of either kind
    /// ([`snapshot_changes`](Processor::snapshot_changes)). Recovery
    /// restores the last committed base, then applies each epoch's changes
    /// after it in order ([`restore_changes`](Processor::restore_changes)).
    /// Asked once per epoch; the answer must not change during a run.
    /// Operators whose state is small keep the default, `false`.
    fn incremental(&self) -> bool {
        false
    }

    /// Appends to `out` (empty, and reused from epoch to epoch: changes
    /// of tens of MB are not allocated anew each time) what changed in the
    /// state since the previous [`snapshot`](Processor::snapshot) or
    /// `snapshot_changes` (of this run, or since the restore): what
    /// [`restore_changes`] must apply to that state to give the state after
    /// every record of `epoch`. Nothing appended is a valid "nothing
    /// changed". Only called when [`incremental`](Processor::incremental)
    /// is `true`; a full [`snapshot`](Processor::snapshot) also starts a
    /// new set of changes.
    ///
    /// [`restore_changes`]: Processor::restore_changes
    fn snapshot_changes(&mut self, epoch: u64, out: &mut Vec<u8>) -> Result<(), OperatorError> {
        out.extend_from_slice(&self.snapshot(epoch)?);
        Ok(())
    }

    /// Applies changes from [`snapshot_changes`](Processor::snapshot_changes)
    /// to the restored state, before any input: called after
    /// [`restore`](Processor::restore) (if the base held any state) for
    /// each epoch's changes, oldest first.
    fn restore_changes(&mut self, changes: &[u8]) -> Result<(), OperatorError> {
        self.restore(changes)
    }

    /// An incremental operator's whole state at a base epoch, written to
    /// `out` piece by piece: the runtime logs it in WAL records of at most
    /// 16 MiB as they fill, so a state of hundreds of MB is never copied
    /// into one buffer. [`restore`](Processor::restore) gets the pieces
    /// joined. Only called when [`incremental`](Processor::incremental) is
    /// `true`; like [`snapshot`](Processor::snapshot) it starts a new set
    /// of changes. The default writes [`snapshot`](Processor::snapshot)'s
    /// bytes.
    fn snapshot_base(
        &mut self,
        epoch: u64,
        out: &mut SnapshotWriter<'_>,
    ) -> Result<(), OperatorError> {
        let bytes = self.snapshot(epoch)?;
        out.write(&bytes)
    }

    /// Whether the operator's bases are *swept*: instead of writing its
    /// whole state at a base epoch ([`snapshot_base`]), which stops the
    /// shard for as long as that takes, it writes a slice of it after each
    /// epoch's changes ([`sweep_base`]), over at most
    /// `limits::SNAPSHOT_SWEEP_EPOCHS` epochs. A slice holds parts of the
    /// state as they are at that epoch's barrier, so the records from the
    /// sweep's first epoch on, applied in order to an empty state with
    /// [`restore_changes`], give the state at any later epoch once the
    /// sweep is complete: every key is in a slice or changed after it.
    /// Changes must therefore overwrite (absolute values, removals as
    /// such), never add. A run's first base is still written whole.
    /// Asked once per epoch; the answer must not change during a run. Only
    /// asked when [`incremental`](Processor::incremental) is `true`.
    ///
    /// [`snapshot_base`]: Processor::snapshot_base
    /// [`sweep_base`]: Processor::sweep_base
    /// [`restore_changes`]: Processor::restore_changes
    fn swept_bases(&self) -> bool {
        false
    }

    /// Appends to `out`, after the epoch's changes
    /// ([`snapshot_changes`](Processor::snapshot_changes) wrote them just
    /// before), the next slice of the base being swept, readable by
    /// [`restore_changes`](Processor::restore_changes) from the same
    /// buffer. `begin`: a new sweep starts at this epoch (from the start of
    /// the state; one in progress is abandoned). `epochs_left`: the epochs
    /// the sweep may still take, this one included; at 1 the slice is
    /// everything not yet swept. Returns whether the sweep is complete: it
    /// must be by the time `epochs_left` is 1. Only called when
    /// [`swept_bases`](Processor::swept_bases) is `true`. The default
    /// writes nothing and says it is complete, which is right only for an
    /// operator without state.
    fn sweep_base(
        &mut self,
        begin: bool,
        epochs_left: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, OperatorError> {
        let _ = (begin, epochs_left, out);
        Ok(true)
    }

    /// Called once on the node's shard, after any
    /// [`restore`](Processor::restore) and before the first input: the
    /// state is now what the run starts from (an operator whose state is
    /// read from elsewhere on the shard waits for this).
    fn on_start(&mut self) {}
}

/// A node with no outputs that delivers records somewhere.
pub trait Sink: 'static {
    /// Records it reads.
    type Input: Record;

    /// Delivers one batch that arrived on input `port`.
    fn write(&mut self, port: usize, batch: &Batch<Self::Input>);

    /// The combined watermark of all inputs rose to `watermark`.
    fn on_watermark(&mut self, watermark: u64) {
        let _ = watermark;
    }

    /// The run ends: every input ended, or the run stopped for a savepoint.
    /// Flush everything.
    fn finish(&mut self) {}

    /// Makes everything written for `epoch` durable but not yet visible,
    /// and says (as bytes) what [`commit`](Sink::commit) must publish. Called
    /// on the aligned barrier when the runtime has a data directory; the
    /// bytes are logged.
    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        let _ = epoch;
        Ok(Vec::new())
    }

    /// Makes what a [`precommit`](Sink::precommit) staged durable (an
    /// `fsync`, say). It runs on a blocking thread, off the shard, so slow
    /// storage does not stall the shard's other tasks; the epoch does not
    /// count as durable on this shard until it returns. `precommit` can then
    /// stay cheap (write, don't sync). An error fails the run.
    fn sync(staged: &[u8]) -> Result<(), OperatorError>
    where
        Self: Sized,
    {
        let _ = staged;
        Ok(())
    }

    /// Publishes what a [`precommit`](Sink::precommit) staged, once its
    /// epoch is committed. Runs on the sink's commit thread (one per sink
    /// and shard), off the shard, in epoch order; other sinks' commits do
    /// not wait for it. Must be
    /// idempotent: after a crash, the next start runs it again for every
    /// committed pre-commit whose completion was not yet recorded (the
    /// runtime logs each completed commit).
    ///
    /// A commit that waits (retries a receiver that is down, say) should
    /// wait through [`CommitControl::sleep`] and give up once
    /// [`CommitControl::is_cancelled`]: a stop that cannot finish within
    /// its bound cancels the commits still running. A cancelled commit
    /// returns any error; it runs again at the next start.
    fn commit(staged: &[u8], control: &CommitControl) -> Result<(), OperatorError>
    where
        Self: Sized,
    {
        let _ = (staged, control);
        Ok(())
    }
}

/// Runs a [`Sink`] as a processor whose output goes nowhere, so sinks and
/// processors share one task loop.
pub(crate) struct SinkProcessor<K>(pub(crate) K);

impl<K: Sink> Processor for SinkProcessor<K> {
    type Input = K::Input;
    type Output = ();

    fn process(&mut self, port: usize, batch: &Batch<K::Input>, _out: &mut Emitter<()>) {
        self.0.write(port, batch);
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<()>) {
        self.0.on_watermark(watermark);
    }

    fn finish(&mut self, _out: &mut Emitter<()>) {
        self.0.finish();
    }

    fn on_stop(&mut self, _out: &mut Emitter<()>) {
        self.0.finish();
    }

    fn snapshot(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.0.precommit(epoch)
    }
}
