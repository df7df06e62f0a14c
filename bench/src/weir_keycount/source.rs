//! [`KeyedEvents`]: the keycount workload's source. It produces event `i`
//! for `i` in `0..events` with key `mix(i) % keys` and event time `i` (one
//! tick per event). Instance `s` of `n` produces the indices
//! `s, s + n, s + 2n, ...`, so all instances move through event time
//! together and the union over instances is every index exactly once. It
//! emits a watermark each time its next index crosses a multiple of
//! `watermark_every_ticks`, and the runtime's end-of-stream carries the
//! final watermark.

use weir_runtime::{Emitter, OperatorError, ShardContext, Source, SourcePoll};

use super::Event;
use crate::workload::event_key;

/// A bounded source of keyed events; see the module docs.
#[derive(Debug)]
pub struct KeyedEvents {
    next: u64,
    end: u64,
    step: u64,
    keys: u64,
    watermark_every_ticks: u64,
    next_watermark: u64,
    /// Events of one poll, generated before they are emitted so the
    /// generating loop stays tight. Reused; allocated once.
    pending: Vec<Event>,
}

impl KeyedEvents {
    /// This shard's share of `events` events over `keys` keys.
    ///
    /// # Panics
    /// If `keys` or `watermark_every_ticks` is zero.
    pub fn new(context: &ShardContext, events: u64, keys: u64, watermark_every_ticks: u64) -> Self {
        assert!(keys > 0, "keys must be positive");
        assert!(
            watermark_every_ticks > 0,
            "watermark interval must be positive"
        );
        KeyedEvents {
            next: context.instance as u64,
            end: events,
            step: context.instances as u64,
            keys,
            watermark_every_ticks,
            next_watermark: watermark_every_ticks,
            pending: Vec::with_capacity(weir_runtime::limits::BATCH_MAX_RECORDS),
        }
    }
}

impl Source for KeyedEvents {
    type Output = Event;

    fn poll(&mut self, out: &mut Emitter<Event>) -> SourcePoll {
        if self.next >= self.end {
            return SourcePoll::Exhausted;
        }
        if self.next >= self.next_watermark {
            out.watermark(self.next_watermark);
            self.next_watermark += self.watermark_every_ticks;
        }
        // Up to one batch, stopping at the next watermark so watermarks go
        // out exactly when the index crosses them.
        let room = out.batch_records_max() as u64;
        let stop = self
            .end
            .min(self.next_watermark)
            .min(self.next.saturating_add(room * self.step));
        let (mut next, step, keys) = (self.next, self.step, self.keys);
        self.pending.clear();
        while next < stop {
            self.pending.push(Event {
                key: event_key(next, keys),
                ts: next,
            });
            next += step;
        }
        self.next = next;
        out.push_all(&self.pending);
        SourcePoll::Ready
    }

    /// The next index and the next watermark, little-endian.
    fn position(&self) -> Vec<u8> {
        [self.next.to_le_bytes(), self.next_watermark.to_le_bytes()].concat()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let word = |range: std::ops::Range<usize>| -> Option<u64> {
            Some(u64::from_le_bytes(position.get(range)?.try_into().ok()?))
        };
        let (Some(next), Some(next_watermark)) = (word(0..8), word(8..16)) else {
            return Err(OperatorError::invalid(format!(
                "generator position of {} bytes, expected 16",
                position.len()
            )));
        };
        self.next = next;
        self.next_watermark = next_watermark;
        Ok(())
    }
}
