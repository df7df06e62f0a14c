//! Event streams in event time (the normal traffic and one per attack) and
//! the [`Cursor`] that merges them into the global id sequence.

/// One stream of events: `len` events at `per_second` from `base_ms`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stream {
    pub(super) base_ms: u64,
    pub(super) per_second: u64,
    pub(super) len: u64,
}

pub(super) fn stream_time(base_ms: u64, per_second: u64, k: u64) -> u64 {
    let offset = u128::from(k) * 1000 / u128::from(per_second);
    base_ms.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
}

impl Stream {
    /// Time of event `k`, or `u64::MAX` past the end.
    pub(super) fn head(&self, k: u64) -> u64 {
        if k >= self.len {
            u64::MAX
        } else {
            stream_time(self.base_ms, self.per_second, k)
        }
    }

    /// Events with time `<= t`.
    pub(super) fn count_le(&self, t: u64) -> u64 {
        if t < self.base_ms {
            return 0;
        }
        let span = u128::from(t - self.base_ms) + 1;
        let count = (span * u128::from(self.per_second)).div_ceil(1000);
        u64::try_from(count).unwrap_or(u64::MAX).min(self.len)
    }

    /// Events with time `< t`.
    pub(super) fn count_lt(&self, t: u64) -> u64 {
        if t == 0 {
            0
        } else {
            self.count_le(t - 1)
        }
    }
}

/// Position in the merged id sequence: the event with id `id` is event
/// `next[current]` of stream `current`.
#[derive(Debug, Clone)]
pub(super) struct Cursor {
    pub(super) id: u64,
    pub(super) next: Vec<u64>,
    pub(super) head: Vec<u64>,
    pub(super) current: usize,
}

impl Cursor {
    pub(super) fn ts(&self) -> u64 {
        self.head[self.current]
    }

    pub(super) fn index(&self) -> u64 {
        self.next[self.current]
    }

    pub(super) fn advance(&mut self, streams: &[Stream]) {
        let s = self.current;
        self.next[s] += 1;
        self.head[s] = streams[s].head(self.next[s]);
        self.id += 1;
        self.current = argmin(&self.head);
    }
}

fn argmin(heads: &[u64]) -> usize {
    let mut best = 0;
    for (index, &head) in heads.iter().enumerate().skip(1) {
        if head < heads[best] {
            best = index;
        }
    }
    best
}
