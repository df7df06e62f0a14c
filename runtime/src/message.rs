//! What travels through a ring: data batches and the control messages that
//! follow them in order.

use crate::batch::RawBatch;

/// One item in a ring.
#[derive(Debug)]
pub enum Message {
    /// A batch of records.
    Data(RawBatch),
    /// No record with an event time below this will follow on this ring.
    Watermark(u64),
    /// The end of epoch `n` on this ring: every record before it belongs to
    /// epoch `n` or earlier, every record after it to a later epoch.
    Barrier(u64),
    /// The producer instance finished; nothing follows on this ring. Its
    /// input ended: the ring's watermark becomes `u64::MAX`.
    End,
    /// The producer instance stopped for a savepoint (a graceful stop with
    /// a data directory): nothing follows on this ring in this run, but
    /// its input did not end. The ring's watermark stays where it was, so
    /// open windows stay open, and the next run goes on from the state
    /// snapshotted at the final epoch as if never stopped.
    Stop,
}
