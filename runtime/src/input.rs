//! A node instance's input rings, read as one stream.
//!
//! The set polls its rings in rotation (so a busy ring cannot starve a quiet
//! one), tracks each ring's watermark and end of stream, and turns them into
//! a combined watermark: the minimum over all rings, where an ended ring
//! counts as `u64::MAX`. When every ring has ended the set yields a final
//! `u64::MAX` watermark and then nothing.
//!
//! A ring that delivers [`Message::Stop`] (the run stopped for a savepoint)
//! is done like an ended one, but keeps its watermark: its input did not
//! end. Once every ring is done and any of them stopped, the set yields
//! nothing more and no final watermark, and [`InputSet::stopped`] says so:
//! the node keeps its open state for the next run instead of finishing.
//!
//! Barriers are aligned: once a ring delivers the barrier of epoch `n`, the
//! set stops reading that ring (its later records belong to epoch `n + 1`)
//! and keeps reading the others. When every ring that has not ended has
//! delivered barrier `n`, the set yields the barrier once and reads all
//! rings again. So a node sees every record of epoch `n`, from all inputs,
//! before the barrier and none after it. Records held back stay in their
//! ring, whose bounded size then holds back the producer: alignment costs
//! no extra memory.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::batch::RawBatch;
use crate::error::NodeFailure;
use crate::message::Message;
use crate::metrics::wired::InputMetrics;
use crate::ring::Consumer;

/// One input ring of a node instance.
pub(crate) struct InputRing {
    /// Index of the ring's edge among the node's inputs.
    pub(crate) port: usize,
    pub(crate) from: Arc<str>,
    pub(crate) from_shard: usize,
    /// From another stage of the same component (`component_of`): not
    /// counted as the component's input.
    pub(crate) internal: bool,
    pub(crate) ring: Consumer<Message>,
}

struct RingState {
    input: InputRing,
    ended: bool,
    watermark: u64,
    /// The epoch whose barrier this ring delivered while others have not.
    barrier: Option<u64>,
    /// Messages waiting in the ring when it was last read.
    waiting: usize,
}

/// What the set delivers to the node.
pub(crate) enum Delivery {
    Data {
        port: usize,
        batch: RawBatch,
    },
    Watermark(u64),
    /// Every input delivered the barrier of this epoch.
    Barrier(u64),
}

pub(crate) struct InputSet {
    rings: Vec<RingState>,
    live: usize,
    next_poll: usize,
    watermark: u64,
    /// The sum of every ring's `waiting`.
    waiting: usize,
    /// Whether a ring delivered [`Message::Stop`].
    stopped: bool,
    metrics: InputMetrics,
    /// Every ring comes from another stage of the same component: the
    /// component's occupancy is sampled by its first stage.
    internal_only: bool,
}

impl InputSet {
    pub(crate) fn new(inputs: Vec<InputRing>, metrics: InputMetrics) -> InputSet {
        let rings: Vec<RingState> = inputs
            .into_iter()
            .map(|input| RingState {
                input,
                ended: false,
                watermark: 0,
                barrier: None,
                waiting: 0,
            })
            .collect();
        InputSet {
            internal_only: !rings.is_empty() && rings.iter().all(|ring| ring.input.internal),
            live: rings.len(),
            rings,
            next_poll: 0,
            watermark: 0,
            waiting: 0,
            stopped: false,
            metrics,
        }
    }

    /// Whether the set has no ring at all (the node's upstream runs on
    /// other shards only).
    pub(crate) fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Whether the inputs stopped for a savepoint rather than ended: then
    /// [`next`](InputSet::next) returned `None` without a final watermark.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// The next batch or combined-watermark advance; `None` after every
    /// ring ended and the final watermark was delivered, or after every ring
    /// ended or stopped and one stopped (no final watermark then).
    pub(crate) async fn next(&mut self) -> Result<Option<Delivery>, NodeFailure> {
        loop {
            if self.live == 0 {
                if self.stopped {
                    return Ok(None);
                }
                return Ok(self.advance_to(u64::MAX).map(Delivery::Watermark));
            }
            let (index, message) = poll_fn(|cx| self.poll_any(cx)).await;
            let state = &mut self.rings[index];
            // Occupancy: re-sample only the ring just read, keep the sum.
            let waiting = state.input.ring.len();
            self.waiting = self.waiting - state.waiting + waiting;
            state.waiting = waiting;
            if !self.internal_only {
                self.metrics.occupancy(self.waiting);
            }
            match message {
                Some(Message::Data(batch)) => {
                    if !state.input.internal {
                        self.metrics.batch(batch.len(), batch.bytes_len());
                    }
                    let port = state.input.port;
                    return Ok(Some(Delivery::Data { port, batch }));
                }
                Some(Message::Watermark(watermark)) => {
                    state.watermark = state.watermark.max(watermark);
                }
                Some(Message::Barrier(epoch)) => {
                    state.barrier = Some(epoch);
                    if let Some(epoch) = self.aligned() {
                        return Ok(Some(Delivery::Barrier(epoch)));
                    }
                    continue;
                }
                Some(Message::End) => {
                    state.ended = true;
                    state.watermark = u64::MAX;
                    self.live -= 1;
                    if let Some(epoch) = self.aligned() {
                        return Ok(Some(Delivery::Barrier(epoch)));
                    }
                }
                Some(Message::Stop) => {
                    // Done for this run, watermark kept: see the module docs.
                    state.ended = true;
                    self.live -= 1;
                    self.stopped = true;
                    if let Some(epoch) = self.aligned() {
                        return Ok(Some(Delivery::Barrier(epoch)));
                    }
                    continue;
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

    /// If every ring still open has delivered the same barrier, releases them
    /// all and returns its epoch.
    ///
    /// # Panics
    /// If two rings delivered barriers of different epochs: producers emit
    /// every epoch's barrier in order on every ring, so this is a bug.
    fn aligned(&mut self) -> Option<u64> {
        let mut epoch = None;
        for state in self.rings.iter().filter(|state| !state.ended) {
            let barrier = state.barrier?;
            assert!(
                epoch.is_none_or(|epoch| epoch == barrier),
                "barriers of epochs {epoch:?} and {barrier} are both pending"
            );
            epoch = Some(barrier);
        }
        let epoch = epoch?;
        for state in &mut self.rings {
            state.barrier = None;
        }
        Some(epoch)
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
            // A ring whose barrier arrived waits for the others (alignment).
            if state.ended || state.barrier.is_some() {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_lite::future::block_on;

    use super::*;
    use crate::batch::{BufferGauge, BufferPool, ReturnRings, Scratch};
    use crate::metrics::Registry;
    use crate::ring::{ring, Producer};

    /// Two input rings (ports 0 and 1) and their producer ends.
    fn two_inputs() -> (InputSet, Vec<Producer<Message>>) {
        two_inputs_with(&Registry::new(1))
    }

    /// As `two_inputs`, counting into `registry`'s shard 0 as `test`.
    fn two_inputs_with(registry: &Registry) -> (InputSet, Vec<Producer<Message>>) {
        let mut producers = Vec::new();
        let mut inputs = Vec::new();
        for port in 0..2 {
            let (producer, consumer) = ring(16);
            producers.push(producer);
            inputs.push(InputRing {
                port,
                from: "upstream".into(),
                from_shard: port,
                internal: false,
                ring: consumer,
            });
        }
        let metrics = InputMetrics::new(registry, "test", 0);
        (InputSet::new(inputs, metrics), producers)
    }

    /// A batch holding the one record `value`.
    fn data(value: u64) -> Message {
        let pool = BufferPool::new(0, ReturnRings::default(), Arc::new(BufferGauge::default()));
        let mut batch = pool.take();
        batch.push(&value, &mut Scratch::new()).expect("serializes");
        Message::Data(batch)
    }

    /// What the set delivers, as text, until it would wait.
    fn drain(set: &mut InputSet) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let next = block_on(futures_lite::future::poll_once(set.next()));
            match next {
                Some(Ok(Some(Delivery::Data { port, batch }))) => {
                    let value = batch.typed::<u64>().get(0).map(|v| v.to_native());
                    seen.push(format!("{port}:{}", value.unwrap_or(u64::MAX)));
                }
                Some(Ok(Some(Delivery::Watermark(w)))) => seen.push(format!("wm {w}")),
                Some(Ok(Some(Delivery::Barrier(epoch)))) => seen.push(format!("barrier {epoch}")),
                Some(Ok(None)) => {
                    seen.push("end".into());
                    return seen;
                }
                Some(Err(failure)) => panic!("{failure}"),
                None => return seen,
            }
        }
    }

    #[test]
    fn counts_batches_and_samples_occupancy() {
        let registry = Registry::new(1);
        let (mut set, mut producers) = two_inputs_with(&registry);
        for value in 0..3 {
            producers[0].try_push(data(value)).unwrap();
        }
        producers[1].try_push(data(7)).unwrap();
        let first = block_on(set.next()).unwrap();
        assert!(matches!(first, Some(Delivery::Data { port: 0, .. })));
        let occupancy = registry.gauge("weir_ring_occupancy_batches", "", &[("component", "test")]);
        // Port 0 holds two more; port 1 was not read yet.
        assert_eq!(occupancy.get(0), 2);
        assert_eq!(drain(&mut set).len(), 3);
        assert_eq!(occupancy.get(0), 0);
        let events = registry.counter("weir_component_events_in", "", &[("component", "test")]);
        assert_eq!(events.value(), 4);
        let bytes = registry.counter("weir_component_bytes_in", "", &[("component", "test")]);
        assert_eq!(bytes.value(), 4 * std::mem::size_of::<u64>() as u64);
    }

    #[test]
    fn records_after_a_barrier_wait_for_the_other_inputs() {
        let (mut set, mut producers) = two_inputs();
        for message in [data(1), Message::Barrier(1), data(2)] {
            producers[0].try_push(message).unwrap();
        }
        for message in [data(10), data(11)] {
            producers[1].try_push(message).unwrap();
        }
        let seen = drain(&mut set);
        // Port 0's record 2 belongs to epoch 2: it is held back while port 1
        // still delivers epoch-1 records.
        assert!(!seen.contains(&"0:2".to_string()), "{seen:?}");
        assert!(
            seen.contains(&"0:1".to_string()) && seen.contains(&"1:11".to_string()),
            "{seen:?}"
        );
        assert!(!seen.iter().any(|s| s.starts_with("barrier")), "{seen:?}");

        producers[1].try_push(Message::Barrier(1)).unwrap();
        producers[1].try_push(data(12)).unwrap();
        let seen = drain(&mut set);
        assert_eq!(seen[0], "barrier 1", "{seen:?}");
        let mut after: Vec<&String> = seen[1..].iter().collect();
        after.sort();
        assert_eq!(after, ["0:2", "1:12"]);
    }

    #[test]
    fn an_ended_input_does_not_hold_back_alignment() {
        let (mut set, mut producers) = two_inputs();
        producers[0].try_push(Message::Barrier(7)).unwrap();
        producers[0].try_push(data(3)).unwrap();
        assert_eq!(drain(&mut set), Vec::<String>::new());
        producers[1].try_push(Message::End).unwrap();
        let seen = drain(&mut set);
        assert_eq!(seen, ["barrier 7", "0:3"]);
        producers[0].try_push(Message::End).unwrap();
        assert_eq!(drain(&mut set), ["wm 18446744073709551615", "end"]);
    }

    #[test]
    fn a_stopped_input_keeps_its_watermark_and_gives_no_final_one() {
        let (mut set, mut producers) = two_inputs();
        producers[0].try_push(Message::Watermark(40)).unwrap();
        producers[1].try_push(Message::Watermark(30)).unwrap();
        assert_eq!(drain(&mut set), ["wm 30"]);
        // Port 1 stops at 30: the combined watermark stays there although
        // port 0 goes on, then stops too.
        producers[1].try_push(Message::Stop).unwrap();
        producers[0].try_push(Message::Watermark(50)).unwrap();
        producers[0].try_push(data(5)).unwrap();
        assert_eq!(drain(&mut set), ["0:5"]);
        producers[0].try_push(Message::Stop).unwrap();
        assert_eq!(drain(&mut set), ["end"]);
        assert!(set.stopped());
    }

    #[test]
    fn one_stopped_input_among_ended_ones_stops_the_node() {
        let (mut set, mut producers) = two_inputs();
        producers[0].try_push(Message::Watermark(10)).unwrap();
        producers[1].try_push(Message::End).unwrap();
        producers[0].try_push(Message::Stop).unwrap();
        assert_eq!(drain(&mut set), ["wm 10", "end"]);
        assert!(set.stopped());
    }

    #[test]
    fn consecutive_epochs_align_one_at_a_time() {
        let (mut set, mut producers) = two_inputs();
        for epoch in 1..=3 {
            producers[0].try_push(Message::Barrier(epoch)).unwrap();
        }
        producers[1].try_push(Message::Barrier(1)).unwrap();
        assert_eq!(drain(&mut set), ["barrier 1"]);
        producers[1].try_push(Message::Barrier(2)).unwrap();
        producers[1].try_push(Message::Barrier(3)).unwrap();
        assert_eq!(drain(&mut set), ["barrier 2", "barrier 3"]);
    }
}
