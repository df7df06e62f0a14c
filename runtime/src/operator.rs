//! The three kinds of node a pipeline is made of, as traits users implement.
//!
//! Every method is synchronous and runs on the node's shard: an operator
//! never blocks and never awaits. Output goes into an [`Emitter`]; the
//! runtime hands full batches to the rings afterwards and waits there when a
//! ring is full (backpressure), so an operator needs no async code.

use crate::batch::Batch;
use crate::emit::Emitter;
use crate::record::Record;

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

    /// Every input ended: flush everything.
    fn finish(&mut self) {}
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
}
