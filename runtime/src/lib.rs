//! weir's runtime: thread-per-core shards, SPSC rings, zero-copy batches and
//! the dataflow graph.
//!
//! # Model
//! A pipeline is a [`Graph`] of sources, processors and sinks joined by
//! partitioned edges. The [`Runtime`] starts one glommio executor per shard,
//! each pinned to a core; every node runs one instance per shard (or one in
//! all, see [`Parallelism::One`]) and each instance owns its slice of the
//! node's state. Nothing on the data path is shared between shards.
//!
//! # Data path
//! Records are serialized once with rkyv into a batch ([`Batch`]); every
//! reader reads them archived, in place. A batch crosses to another shard by
//! moving its buffer through a bounded SPSC ring (one per edge and ordered
//! pair of shards); a full ring makes the producer wait, so memory stays
//! bounded. Buffers are pooled per shard; steady state allocates nothing per
//! record.
//!
//! # Limits
//! Every capacity is in [`limits`].
#![warn(missing_docs)]

mod batch;
mod emit;
pub mod epoch;
mod error;
mod graph;
mod input;
pub mod intake;
pub mod limits;
mod message;
pub mod metrics;
mod node;
mod operator;
mod partition;
pub mod record;
pub mod ring;
mod runtime;
mod shard;
mod stop;
mod system;
pub mod tap;

pub use batch::{Batch, BufferGauge, RawBatch, Scratch};
pub use emit::Emitter;
pub use epoch::CommitControl;
pub use error::{
    Error, GraphError, NodeFailure, OperatorError, OperatorErrorKind, RunError, SerializeError,
    StartError,
};
pub use graph::{Graph, GraphBuilder, NodeKind, NodeOptions, Parallelism};
pub use intake::{CommitWatch, IntakeLog, IntakeTicket, RemoteWake};
pub use metrics::component_of;
pub use operator::{Processor, ShardContext, Sink, SnapshotWriter, Source, SourcePoll};
pub use partition::{owner_of, Partition, PartitionKind};
pub use record::{ArchivedRecord, Record};
pub use runtime::{Handle, RunReport, Running, Runtime, RuntimeBuilder};
