//! The bounded single-producer single-consumer ring that carries batches
//! between shards.
//!
//! There is one ring per edge of the graph and per ordered pair of
//! (producer shard, consumer shard) on that edge. Per edge rather than one per
//! shard pair for a reason: a ring shared by several edges can deadlock when
//! two shards each wait for room in the ring the other one drains. With one
//! ring per edge every wait points downstream in an acyclic graph, so some
//! ring always drains.
//!
//! # Invariants
//! - Capacity is fixed at creation; a full ring refuses a push (`try_push`) or
//!   makes the producer wait (`push`): memory stays bounded.
//! - Items come out in the order they went in, each exactly once.
//! - `head` (next slot to read) is written only by the consumer and `tail`
//!   (next slot to write) only by the producer; both only grow. A slot in
//!   `head..tail` holds an initialised item owned by the ring.
//!
//! # Waking
//! Either side may run on another glommio executor (another thread). A side
//! that finds the ring empty (consumer) or full (producer) stores its waker,
//! announces it is parked, and re-checks; the other side, after moving its
//! index, issues a `SeqCst` fence and wakes a parked peer. This is Dekker's
//! pattern: at least one of the two sees the other's write, so no wake-up is
//! lost. The fast path (peer not parked) costs one fence and one load of a
//! line that is rarely written.

mod queue;

pub use queue::{ring, Consumer, Producer, PushError};
