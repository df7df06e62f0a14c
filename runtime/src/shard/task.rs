//! The task loops that run node instances on a shard.
//!
//! Each node instance is one glommio task. A task runs its operator
//! synchronously, then sends the operator's ready batches into the rings,
//! awaiting when a ring is full (backpressure). It yields the shard after
//! [`TURN_MESSAGES_MAX`] messages (or [`TURN_SOURCE_BATCHES_MAX`] source
//! polls) so no node starves the others; when its input rings are empty it
//! sleeps until a producer wakes it, and a shard with every task asleep
//! parks in glommio's reactor instead of spinning.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_lite::future::yield_now;

use crate::batch::BufferPool;
use crate::emit::Emitter;
use crate::error::NodeFailure;
use crate::input::{Delivery, InputSet};
use crate::limits::{SOURCE_IDLE_SLEEP, TURN_MESSAGES_MAX, TURN_SOURCE_BATCHES_MAX};
use crate::operator::{Processor, Source, SourcePoll};

/// Runs a source until it is exhausted or the runtime is told to stop, then
/// sends end of stream.
pub(crate) async fn run_source<S: Source>(
    mut source: S,
    mut out: Emitter<S::Output>,
    stop: Arc<AtomicBool>,
) -> Result<(), NodeFailure> {
    let mut polls = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let status = source.poll(&mut out);
        out.take_error()?;
        match status {
            SourcePoll::Ready => {}
            SourcePoll::Idle => out.flush(),
            SourcePoll::Exhausted => break,
        }
        out.send_ready().await?;
        if status == SourcePoll::Idle {
            glommio::timer::sleep(SOURCE_IDLE_SLEEP).await;
        }
        polls += 1;
        if polls % TURN_SOURCE_BATCHES_MAX == 0 {
            yield_now().await;
        }
    }
    out.end();
    out.send_ready().await
}

/// Runs a processor (or a sink, through `SinkProcessor`) until every input
/// ended, then finishes it and sends end of stream.
pub(crate) async fn run_processor<P: Processor>(
    mut processor: P,
    mut inputs: InputSet,
    mut out: Emitter<P::Output>,
    pool: Rc<BufferPool>,
) -> Result<(), NodeFailure> {
    let mut handled = 0usize;
    while let Some(delivery) = inputs.next().await? {
        match delivery {
            Delivery::Data { port, batch } => {
                processor.process(port, batch.typed(), &mut out);
                pool.recycle(batch);
                send_all(&mut processor, &mut out).await?;
            }
            Delivery::Watermark(watermark) => {
                processor.on_watermark(watermark, &mut out);
                // Everything the watermark released goes out before it.
                send_all(&mut processor, &mut out).await?;
                out.watermark(watermark);
                out.send_ready().await?;
            }
            Delivery::Barrier(epoch) => {
                // Everything of the epoch went out above; the barrier
                // follows it on every output ring.
                out.barrier(epoch);
                out.send_ready().await?;
            }
        }
        handled += 1;
        if handled % TURN_MESSAGES_MAX == 0 {
            yield_now().await;
        }
    }
    processor.finish(&mut out);
    send_all(&mut processor, &mut out).await?;
    out.end();
    out.send_ready().await
}

/// Sends what the processor emitted, then drains what it held back, one
/// batch's worth at a time with backpressure in between.
async fn send_all<P: Processor>(
    processor: &mut P,
    out: &mut Emitter<P::Output>,
) -> Result<(), NodeFailure> {
    loop {
        out.take_error()?;
        out.send_ready().await?;
        if !processor.drain(out) {
            return Ok(());
        }
    }
}
