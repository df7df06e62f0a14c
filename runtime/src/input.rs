//! A node instance's input rings, read as one stream.
//!
//! The set polls its rings in rotation (so a busy ring cannot starve a quiet
//! one), tracks each ring's watermark and end of stream, and turns them into
//! a combined watermark: the minimum over all rings, where an ended ring
//! counts as `u64::MAX`. When every ring has ended the set yields a final
//! `u64::MAX` watermark and then nothing.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::batch::RawBatch;
use crate::error::NodeFailure;
use crate::message::Message;
use crate::ring::Consumer;

/// One input ring of a node instance.
pub(crate) struct InputRing {
    /// Index of the ring's edge among the node's inputs.
    pub(crate) port: usize,
    pub(crate) from: Arc<str>,
    pub(crate) from_shard: usize,
    pub(crate) ring: Consumer<Message>,
}

struct RingState {
    input: InputRing,
    ended: bool,
    watermark: u64,
}

/// What the set delivers to the node.
pub(crate) enum Delivery {
    Data { port: usize, batch: RawBatch },
    Watermark(u64),
}

pub(crate) struct InputSet {
    rings: Vec<RingState>,
    live: usize,
    next_poll: usize,
    watermark: u64,
}

impl InputSet {
    pub(crate) fn new(inputs: Vec<InputRing>) -> InputSet {
        let rings: Vec<RingState> = inputs
            .into_iter()
            .map(|input| RingState {
                input,
                ended: false,
                watermark: 0,
            })
            .collect();
        InputSet {
            live: rings.len(),
            rings,
            next_poll: 0,
            watermark: 0,
        }
    }

    /// The next batch or combined-watermark advance; `None` after every
    /// ring ended and the final watermark was delivered.
    pub(crate) async fn next(&mut self) -> Result<Option<Delivery>, NodeFailure> {
        loop {
            if self.live == 0 {
                return Ok(self.advance_to(u64::MAX).map(Delivery::Watermark));
            }
            let (index, message) = poll_fn(|cx| self.poll_any(cx)).await;
            let state = &mut self.rings[index];
            match message {
                Some(Message::Data(batch)) => {
                    let port = state.input.port;
                    return Ok(Some(Delivery::Data { port, batch }));
                }
                Some(Message::Watermark(watermark)) => {
                    state.watermark = state.watermark.max(watermark);
                }
                Some(Message::End) => {
                    state.ended = true;
                    state.watermark = u64::MAX;
                    self.live -= 1;
                }
                None => {
                    return Err(NodeFailure::InputClosed {
                        from: state.input.from.to_string(),
                        from_shard: state.input.from_shard,
                    })
                }
            }
            let combined = self.rings.iter().map(|ring| ring.watermark).min();
            if let Some(watermark) = combined.and_then(|w| self.advance_to(w)) {
                return Ok(Some(Delivery::Watermark(watermark)));
            }
        }
    }

    fn advance_to(&mut self, watermark: u64) -> Option<u64> {
        if watermark > self.watermark {
            self.watermark = watermark;
            return Some(watermark);
        }
        None
    }

    fn poll_any(&mut self, cx: &mut Context<'_>) -> Poll<(usize, Option<Message>)> {
        let count = self.rings.len();
        for offset in 0..count {
            let index = (self.next_poll + offset) % count;
            let state = &mut self.rings[index];
            if state.ended {
                continue;
            }
            if let Poll::Ready(message) = state.input.ring.poll_pop(cx) {
                self.next_poll = index + 1;
                return Poll::Ready((index, message));
            }
        }
        Poll::Pending
    }
}
