//! A table of counts per `u64` key, built for counting a stream.
//!
//! Open addressing with linear probing over one array of `(key, count)`
//! slots (a count of 0 marks an empty slot, since a present key counts at
//! least 1). [`CountTable::count_slice`] counts a whole slice of records and
//! prefetches the slot of the record [`PREFETCH_AHEAD`] positions ahead, so
//! with a table larger than the caches the core waits on many misses at
//! once instead of one at a time. The table grows (doubling) before a slice
//! is counted, never during it, and keeps its memory when drained.
//!
//! The index is the top bits of the key times a large odd constant
//! (Fibonacci hashing) after a xor-shift, so it does not correlate with the
//! runtime's shard choice (which takes the top bits of the key times 2^64/φ).
//!
//! **Changes** (for incremental snapshots): the top byte of a count is the
//! *period* (between two takes of the changes) in which its key was last
//! counted, and the first count of a key in a period also notes the slot in
//! a list, so the changes are found in time proportional to their number,
//! not to the table's size, until a quarter of the slots changed: from
//! then on the period's changes are read by scanning the marks, and the
//! list is dropped for the rest of it (at 1 M keys every key changes each
//! epoch, and the list only cost a store per change). The mark rides in
//! the slot the count already touches: no extra memory access per count,
//! and a new period starts by counting one up, not by clearing marks.
//!
//! Reading the changed slots back is a second random access per changed
//! key, as costly as counting when most events of a period count a key of
//! their own (millions of keys, 10 M keys: `bench/src/bin/epochs.rs`). So
//! while a period counts fewer than about two events per changed key, the
//! table appends each `(key, count now)` to a sequential log instead of
//! listing slots, and [`drain_changes`](CountTable::drain_changes) hands
//! out the log (a key counted twice appears twice; its last pair is its
//! count now). Past that the log is dropped for the period, its changed
//! slots are listed from their marks (one pass over the table), and the
//! next periods list slots but every [`LOG_RETRY_PERIODS`]th, which logs.
//! The log is kept as the bytes a changes record holds, behind room for
//! its owner's header, so it can be handed over as the record
//! ([`CountTable::take_log`]) instead of copied.
//! A pair takes 8 bytes, `(u32 key, u32 count)`, while every key and
//! count logged fits 32 bits, and 16 (two `u64`s) once one does not (the
//! log is widened in place, and stays wide until the table is drained):
//! at 10 M keys nearly every event of an epoch logs a pair, and its bytes
//! are written, copied into the WAL, checksummed and written to disk, on
//! a machine that copies 4 GB/s ([`CountTable::log_pair_bytes`]).
//! When a quarter of the slots or more changed, the changed slots are read
//! by scanning the table in order rather than one random read each.

/// How far ahead `count_slice` prefetches: enough misses in flight to cover
/// a memory latency, few enough that prefetched lines are still cached.
pub const PREFETCH_AHEAD: usize = 16;

/// The table grows when it would be fuller than this (in eighths).
const LOAD_MAX_EIGHTHS: usize = 6;

const CAPACITY_MIN: usize = 16;

/// Where a count's period mark starts: the count is the 56 bits below it
/// (2^56 events per key).
const PERIOD_SHIFT: u32 = 56;

/// The count bits of a slot's count word.
const COUNT_MASK: u64 = (1 << PERIOD_SHIFT) - 1;

/// Periods are marked 1 to 255 (0: counted in none yet, or restored); after
/// 255 every mark is cleared and the count starts again at 1.
const PERIOD_MAX: u64 = 255;

/// A period logs its counts while its log holds at most twice as many pairs
/// as it has changed keys, plus this many.
const LOG_SLACK: usize = 4096;

/// Changed slots are read by scanning the whole table once at least one
/// slot in this many changed (a sequential read of a slot costs several
/// times less than a random one).
const DENSE_SCAN_SLOTS: usize = 4;

/// A period whose previous period dropped its log logs anyway when its
/// number is a multiple of this (the keys' spread may have changed).
pub const LOG_RETRY_PERIODS: u64 = 16;

/// Counts per `u64` key.
#[derive(Debug, Clone)]
pub struct CountTable {
    slots: Vec<(u64, u64)>,
    len: usize,
    shift: u32,
    /// Slots whose count has this period's mark, each once, while
    /// `listing`; empty otherwise (then `changed_keys` counts them, and the
    /// marks say which they are).
    changed: Vec<u32>,
    /// Keys counted in this period while it does not list them.
    changed_keys: usize,
    /// Whether this period lists its changed slots in `changed`: it does
    /// not while it logs, nor once a quarter of the slots or more changed
    /// (their changes are then read by scanning the marks, and a list
    /// would only cost a store per change: at 1 M keys every key changes
    /// each epoch), nor in an untracked table.
    listing: bool,
    /// This period's mark, 1 to [`PERIOD_MAX`].
    period: u64,
    /// `log_prefix` bytes for the log's owner, then every `(key, count
    /// now)` counted in this period, in order, while `logging`, each as
    /// two little-endian `u32`s, or `u64`s once `log_wide`: the bytes a
    /// changes record holds, so the log can become one without a copy
    /// ([`take_log`](CountTable::take_log)).
    log: Vec<u8>,
    /// Whether the log's pairs are two `u64`s (a key or count logged did
    /// not fit 32 bits) rather than two `u32`s; kept until a drain.
    log_wide: bool,
    /// Bytes at the start of `log` that are not pairs.
    log_prefix: usize,
    /// Whether this period's counts are logged.
    logging: bool,
    /// Whether the table keeps its changes (the list or log of them); an
    /// [`untracked`](CountTable::untracked) one only counts.
    tracked: bool,
}

impl Default for CountTable {
    fn default() -> Self {
        CountTable::new()
    }
}

impl CountTable {
    /// An empty table.
    pub fn new() -> CountTable {
        CountTable {
            slots: vec![(0, 0); CAPACITY_MIN],
            len: 0,
            shift: 64 - CAPACITY_MIN.trailing_zeros(),
            changed: Vec::new(),
            changed_keys: 0,
            listing: false,
            period: 1,
            log: Vec::new(),
            log_prefix: 0,
            log_wide: false,
            logging: true,
            tracked: true,
        }
    }

    /// An empty table that keeps no changes, for an owner that never asks
    /// for them (a run without snapshots): it logs no count and lists no
    /// changed slot, and its changes read as none.
    pub fn untracked() -> CountTable {
        CountTable {
            logging: false,
            tracked: false,
            ..CountTable::new()
        }
    }

    /// Whether the table keeps its changes (see
    /// [`untracked`](CountTable::untracked)).
    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn index(&self, key: u64) -> usize {
        index(key, self.shift)
    }

    /// Adds `count` to `key`.
    #[inline]
    pub fn add(&mut self, key: u64, count: u64) {
        debug_assert!(count > 0);
        self.reserve(1);
        self.add_unchecked(key, count);
    }

    /// `add` without growing: the caller reserved room. Marks the key
    /// changed, and logs its count while the period logs.
    #[inline]
    fn add_unchecked(&mut self, key: u64, count: u64) {
        if self.logging {
            self.count_logged(std::slice::from_ref(&key), |&key| key, count);
        } else if self.listing {
            self.bump(key, count);
            self.stop_listing_if_dense();
        } else {
            self.count_logged_as::<0, u64>(&[key], &|&key| key, count);
        }
    }

    /// Adds `count` to the key of every item (room reserved), marks the
    /// keys changed, and appends each `(key, count now)` to the period's
    /// log; drops the log for the period once it holds more than twice the
    /// changed keys (and a slack).
    ///
    /// Every store here is one the count or its log needs: the log's room
    /// is made once for the slice, and what the loop tallies (new and
    /// changed keys) stays in registers. With a table larger than the
    /// caches each count is a miss, and stores leave the core in order, so
    /// a store more per count (a length written back, the slot pushed to
    /// a list of changes) means fewer misses in flight. Counting 200 M
    /// events over 5 M keys in periods that keep their log took 25–30 %
    /// longer per event than counting without periods when each count
    /// pushed its slot and appended through `Vec::extend_from_slice`
    /// (17.0 against 13.0–13.6 ns), and no longer with this loop (12.2
    /// against 13.1–13.4 ns; `cargo run --release -p weir-bench --bin
    /// count_log`, this machine).
    fn count_logged<T>(&mut self, items: &[T], key: impl Fn(&T) -> u64, count: u64) {
        let mut rest = items;
        while !rest.is_empty() {
            let done = if self.log_wide {
                self.count_logged_as::<16, T>(rest, &key, count)
            } else {
                self.count_logged_as::<8, T>(rest, &key, count)
            };
            rest = &rest[done..];
            if !rest.is_empty() {
                // A key or count past 32 bits: the rest go in wide pairs.
                self.widen_log();
            }
        }
        if self.log_pairs_len() > 2 * self.changed_keys + LOG_SLACK {
            self.stop_logging();
        }
    }

    /// `count_logged` for pairs of `PAIR` bytes (8: two `u32`s, 16: two
    /// `u64`s; 0: no log, for a period that neither logs nor lists its
    /// changes); returns how many items it counted: all of them, or (with
    /// 8-byte pairs) those before the first whose key or count now does
    /// not fit 32 bits, which is left uncounted.
    #[inline(always)]
    fn count_logged_as<const PAIR: usize, T>(
        &mut self,
        items: &[T],
        key: &impl Fn(&T) -> u64,
        count: u64,
    ) -> usize {
        let mark = self.period << PERIOD_SHIFT;
        let (mask, shift) = (self.slots.len() - 1, self.shift);
        self.log.reserve(PAIR * items.len());
        let from = self.log.len();
        let pairs = self.log.spare_capacity_mut()[..PAIR * items.len()].as_mut_ptr();
        let slots = &mut self.slots[..];
        let (mut new_keys, mut changed_keys, mut done) = (0, 0, items.len());
        for (position, item) in items.iter().enumerate() {
            if let Some(ahead) = items.get(position + PREFETCH_AHEAD) {
                prefetch(&slots[index(key(ahead), shift)]);
            }
            let key = key(item);
            let mut at = index(key, shift);
            while slots[at].1 != 0 && slots[at].0 != key {
                at = (at + 1) & mask;
            }
            let slot = &mut slots[at];
            let now = if slot.1 == 0 {
                count
            } else {
                (slot.1 & COUNT_MASK) + count
            };
            if PAIR == 8 && (key | now) > u64::from(u32::MAX) {
                done = position;
                break;
            }
            if slot.1 == 0 {
                slot.0 = key;
                new_keys += 1;
                changed_keys += 1;
            } else {
                changed_keys += usize::from(slot.1 & !COUNT_MASK != mark);
            }
            slot.1 = now | mark;
            if PAIR == 0 {
                continue;
            }
            // SAFETY: `pairs` is the log's spare capacity for `items.len()`
            // pairs (reserved above), and this writes the `position`th
            // pair, in bounds, unaligned (a `Vec<u8>`); with 8-byte pairs
            // the key and count fit 32 bits (checked above).
            unsafe {
                let pair = pairs.add(PAIR * position);
                if PAIR == 8 {
                    pair.cast::<[u32; 2]>()
                        .write_unaligned([(key as u32).to_le(), (now as u32).to_le()]);
                } else {
                    pair.cast::<[u64; 2]>()
                        .write_unaligned([key.to_le(), now.to_le()]);
                }
            }
        }
        // SAFETY: the loop wrote every byte of the `done` pairs after
        // `from`, within the capacity reserved.
        unsafe { self.log.set_len(from + PAIR * done) };
        self.len += new_keys;
        self.changed_keys += changed_keys;
        done
    }

    /// Rewrites the log's 8-byte pairs as 16-byte ones, in place (back to
    /// front, so no pair is overwritten before it is read).
    fn widen_log(&mut self) {
        debug_assert!(!self.log_wide);
        let pairs = self.log_pairs_len();
        self.log.resize(self.log_prefix + 16 * pairs, 0);
        let log = &mut self.log[self.log_prefix..];
        for at in (0..pairs).rev() {
            let word = |i: usize| {
                u64::from(u32::from_le_bytes(
                    log[i..i + 4].try_into().expect("4 bytes"),
                ))
            };
            let (key, count) = (word(8 * at), word(8 * at + 4));
            log[16 * at..16 * at + 8].copy_from_slice(&key.to_le_bytes());
            log[16 * at + 8..16 * at + 16].copy_from_slice(&count.to_le_bytes());
        }
        self.log_wide = true;
    }

    /// Bytes of one pair in the log: 8 (two little-endian `u32`s, key
    /// then count) or 16 (two `u64`s), the same for every pair of a
    /// period; what a [taken](CountTable::take_log) log holds.
    pub fn log_pair_bytes(&self) -> usize {
        if self.log_wide {
            16
        } else {
            8
        }
    }

    /// Pairs in the log.
    fn log_pairs_len(&self) -> usize {
        (self.log.len() - self.log_prefix) / self.log_pair_bytes()
    }

    /// Drops the period's log: the period's changes are read from the
    /// slots from now on, listed from their marks in one pass over the
    /// table, or (a quarter of the slots or more changed) read by scanning
    /// the marks, with `changed_keys` counting them.
    fn stop_logging(&mut self) {
        self.logging = false;
        self.log.truncate(self.log_prefix);
        self.changed.clear();
        if self.changed_keys * DENSE_SCAN_SLOTS >= self.slots.len() {
            // Read by scanning the marks anyway: `changed_keys` counts them.
            return;
        }
        self.listing = true;
        let mark = self.period << PERIOD_SHIFT;
        self.changed.extend(
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.1 & !COUNT_MASK == mark)
                .map(|(at, _)| at as u32),
        );
    }

    /// Pairs in the log.
    fn log_pairs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        decode_pairs(&self.log[self.log_prefix..], self.log_pair_bytes())
    }

    /// Keeps the first `bytes` of the log for its owner (a header, written
    /// by the owner once it [takes](CountTable::take_log) the log). If the
    /// period had logged under another prefix, it reads its changed slots
    /// instead.
    pub fn set_log_prefix(&mut self, bytes: usize) {
        if bytes == self.log_prefix && self.log.len() >= bytes {
            return;
        }
        if self.logging && self.log.len() > self.log_prefix {
            self.stop_logging();
        }
        self.log_prefix = bytes;
        self.log.clear();
        self.log.resize(bytes, 0);
    }

    /// The period's changes as its log, if it kept one: the log prefix
    /// ([`set_log_prefix`](CountTable::set_log_prefix)), then
    /// [`changes_len`](CountTable::changes_len) pairs of little-endian
    /// `(key, count now)`, as [`drain_changes`](CountTable::drain_changes)
    /// would hand them out. The log is handed over whole, not copied, and
    /// `spare` (its contents dropped) becomes the next period's log; a new
    /// period starts. If the period kept no log, `Err(spare)` and nothing
    /// changes.
    pub fn take_log(&mut self, mut spare: Vec<u8>) -> Result<Vec<u8>, Vec<u8>> {
        if !self.logging {
            return Err(spare);
        }
        spare.clear();
        spare.resize(self.log_prefix, 0);
        let log = std::mem::replace(&mut self.log, spare);
        self.next_period();
        Ok(log)
    }

    /// Adds `count` to `key` (room reserved), marks it changed in the
    /// period and lists its slot if it was not, for a period that lists
    /// its changes; returns its count now.
    #[inline(always)]
    fn bump(&mut self, key: u64, count: u64) -> u64 {
        let mark = self.period << PERIOD_SHIFT;
        let index = self.probe(key);
        let slot = &mut self.slots[index];
        let now = if slot.1 == 0 {
            slot.0 = key;
            self.len += 1;
            self.changed.push(index as u32);
            count
        } else {
            if slot.1 & !COUNT_MASK != mark {
                self.changed.push(index as u32);
            }
            (slot.1 & COUNT_MASK) + count
        };
        slot.1 = now | mark;
        now
    }

    /// Stops listing the period's changed slots once a quarter of the
    /// slots or more are listed: they will be read by scanning the marks.
    fn stop_listing_if_dense(&mut self) {
        if self.listing && self.changed.len() * DENSE_SCAN_SLOTS >= self.slots.len() {
            self.listing = false;
            self.changed_keys = self.changed.len();
            self.changed.clear();
        }
    }

    /// The slot of `key`, or the empty slot where it goes (the table is
    /// never full).
    #[inline(always)]
    fn probe(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut index = self.index(key);
        loop {
            let slot = &self.slots[index];
            if slot.1 == 0 || slot.0 == key {
                return index;
            }
            index = (index + 1) & mask;
        }
    }

    /// Sets the count of `key` to `count` (positive), without marking it
    /// changed: for restoring a snapshot.
    pub fn set(&mut self, key: u64, count: u64) {
        debug_assert!(count > 0 && count <= COUNT_MASK);
        self.reserve(1);
        let index = self.probe(key);
        let slot = &mut self.slots[index];
        if slot.1 == 0 {
            *slot = (key, count);
            self.len += 1;
        } else {
            // Keeps a change mark the slot has (and its place in the list).
            slot.1 = count | (slot.1 & !COUNT_MASK);
        }
    }

    /// [`set`](CountTable::set) for every `(key, count)` of `pairs`, in
    /// order, prefetching the slot of the pair [`PREFETCH_AHEAD`] ahead as
    /// `count_slice` does: restoring a snapshot of millions of keys waits
    /// on many misses at once.
    pub fn set_slice(&mut self, pairs: &[(u64, u64)]) {
        self.reserve(pairs.len());
        for (position, &(key, count)) in pairs.iter().enumerate() {
            if let Some(&(ahead, _)) = pairs.get(position + PREFETCH_AHEAD) {
                prefetch(&self.slots[self.index(ahead)]);
            }
            self.set(key, count);
        }
    }

    /// Every `(key, count)` changed since the last call (or since the table
    /// was made or drained), once each, read from the changed slots; starts
    /// a new period.
    pub fn take_changes(&mut self) -> Vec<(u64, u64)> {
        let mut changes = Vec::with_capacity(self.changed.len());
        self.read_changed(|key, count| changes.push((key, count)));
        self.next_period();
        changes
    }

    /// How many pairs [`drain_changes`](CountTable::drain_changes) hands
    /// out now.
    pub fn changes_len(&self) -> usize {
        if !self.tracked {
            0
        } else if self.logging {
            self.log_pairs_len()
        } else if self.listing {
            self.changed.len()
        } else {
            self.changed_keys
        }
    }

    /// Hands `each` every key changed since the last call (or since the
    /// table was made or drained) with its count now, nothing allocated,
    /// and starts a new period: from the log while the period kept one (a
    /// key may then come more than once, in the order counted, its last
    /// pair with its count now), else once each from the changed slots.
    pub fn drain_changes(&mut self, each: impl FnMut(u64, u64)) {
        self.read_changes(each);
        self.next_period();
    }

    /// Appends the period's changes to `out` as pairs of `pair_bytes` (8:
    /// two little-endian `u32`s, 16: two `u64`s), as
    /// [`drain_changes`](CountTable::drain_changes) hands them out, and
    /// returns how many pairs it wrote; the period goes on (its owner
    /// starts the next with [`forget_changes`](CountTable::forget_changes)
    /// once every table wrote). With 8-byte pairs a key or count past 32
    /// bits instead leaves `out` as it was, returns `None`, and makes the
    /// table's logs wide from now on (so an owner asks for 16-byte pairs
    /// next time: see [`log_pair_bytes`](CountTable::log_pair_bytes)).
    pub fn write_changes(&mut self, out: &mut Vec<u8>, pair_bytes: usize) -> Option<usize> {
        debug_assert!(pair_bytes == 8 || pair_bytes == 16);
        let start = out.len();
        if self.logging && self.log_pair_bytes() == pair_bytes {
            out.extend_from_slice(&self.log[self.log_prefix..]);
        } else if pair_bytes == 16 {
            out.reserve(16 * self.changes_len());
            self.read_changes(|key, count| {
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            });
        } else {
            out.reserve(8 * self.changes_len());
            let mut wide = 0;
            self.read_changes(|key, count| {
                wide |= key | count;
                out.extend_from_slice(&(key as u32).to_le_bytes());
                out.extend_from_slice(&(count as u32).to_le_bytes());
            });
            if wide > u64::from(u32::MAX) {
                out.truncate(start);
                // (A period that logs has a wide log already: a narrow
                // one was copied above.)
                self.log_wide = true;
                return None;
            }
        }
        Some((out.len() - start) / pair_bytes)
    }

    /// What [`drain_changes`](CountTable::drain_changes) hands out, without
    /// starting a new period.
    fn read_changes(&self, mut each: impl FnMut(u64, u64)) {
        if self.logging {
            self.log_pairs().for_each(|(key, count)| each(key, count));
        } else {
            self.read_changed(each);
        }
    }

    /// Each changed slot's `(key, count)`, once. The changed slots are
    /// scattered over the table: each one's line is prefetched
    /// [`PREFETCH_AHEAD`] changes ahead, as `count_slice` does, so a table
    /// larger than the caches is read with many misses in flight. When at
    /// least one slot in [`DENSE_SCAN_SLOTS`] changed (at 1 M keys every
    /// key changes each epoch), every slot is read in table order instead
    /// and those with the period's mark kept: a sequential read of the
    /// whole table then costs less than a random read per change.
    fn read_changed(&self, mut each: impl FnMut(u64, u64)) {
        if !self.tracked {
            return;
        }
        // A period that logs or stopped listing (a quarter of the slots
        // or more changed) lists no slots: its marks say which changed.
        if self.logging || !self.listing {
            let mark = self.period << PERIOD_SHIFT;
            for &(key, count) in &self.slots {
                if count & !COUNT_MASK == mark {
                    each(key, count & COUNT_MASK);
                }
            }
            return;
        }
        for (position, &index) in self.changed.iter().enumerate() {
            if let Some(&ahead) = self.changed.get(position + PREFETCH_AHEAD) {
                prefetch(&self.slots[ahead as usize]);
            }
            let (key, count) = self.slots[index as usize];
            each(key, count & COUNT_MASK);
        }
    }

    /// Forgets every change (a full snapshot was taken): a new period.
    pub fn forget_changes(&mut self) {
        self.next_period();
    }

    /// Starts a new period: nothing changed in it yet. It logs if the
    /// period before kept its log, or every [`LOG_RETRY_PERIODS`]th.
    fn next_period(&mut self) {
        self.changed.clear();
        self.changed_keys = 0;
        self.log.truncate(self.log_prefix);
        self.logging = self.tracked && (self.logging || self.period % LOG_RETRY_PERIODS == 0);
        self.listing = self.tracked && !self.logging;
        if self.period == PERIOD_MAX {
            for slot in &mut self.slots {
                slot.1 &= COUNT_MASK;
            }
            self.period = 1;
        } else {
            self.period += 1;
        }
    }

    /// Counts one for the key of every item of `items`.
    ///
    /// A period that logs counts in a loop of its own
    /// ([`count_logged`](CountTable::count_logged)); so does, without the
    /// log, a period that no longer lists its changed slots (a quarter of
    /// the slots or more changed: at 1 M keys, every epoch) and an
    /// untracked table. Only a period that lists its changes pushes slots.
    pub fn count_slice<T>(&mut self, items: &[T], key: impl Fn(&T) -> u64) {
        self.reserve(items.len());
        if self.logging {
            return self.count_logged(items, key, 1);
        }
        if !self.listing {
            // Marks only (or nothing kept: an untracked table): the
            // logging loop without its log.
            self.count_logged_as::<0, T>(items, &key, 1);
            return;
        }
        for (position, item) in items.iter().enumerate() {
            if let Some(ahead) = items.get(position + PREFETCH_AHEAD) {
                prefetch(&self.slots[self.index(key(ahead))]);
            }
            self.bump(key(item), 1);
        }
        self.stop_listing_if_dense();
    }

    /// The count of `key`, if present.
    pub fn get(&self, key: u64) -> Option<u64> {
        let (_, count) = self.slots[self.probe(key)];
        (count > 0).then_some(count & COUNT_MASK)
    }

    /// Slots in the table: where [`slots_in`](CountTable::slots_in)
    /// ranges end. Changes only when the table grows, which moves keys.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Every `(key, count)` in the slots `range` (of
    /// [`capacity`](CountTable::capacity)), in table order: a slice of a
    /// sweep over the table, whose keys stay in their slots until it grows.
    pub fn slots_in(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots[range]
            .iter()
            .filter(|&&(_, count)| count > 0)
            .map(|&(key, count)| (key, count & COUNT_MASK))
    }

    /// Every `(key, count)`, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots_in(0..self.slots.len())
    }

    /// Every `(key, count)`, emptying the table (its memory is kept; slots
    /// not yet visited are cleared when the iterator is dropped).
    pub fn drain(&mut self) -> Drain<'_> {
        self.len = 0;
        self.next_period();
        self.log_wide = false;
        Drain {
            slots: self.slots.iter_mut(),
        }
    }

    /// Makes room for `additional` more keys without growing mid-slice.
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed * 8 <= self.slots.len() * LOAD_MAX_EIGHTHS {
            return;
        }
        let mut capacity = self.slots.len();
        while needed * 8 > capacity * LOAD_MAX_EIGHTHS {
            capacity *= 2;
        }
        let old = std::mem::replace(&mut self.slots, huge_zeroed(capacity));
        self.shift = 64 - capacity.trailing_zeros();
        self.len = 0;
        // Slots move: the list of changes is made again from the marks.
        self.changed.clear();
        let mask = capacity - 1;
        for (key, count) in old.into_iter().filter(|&(_, count)| count > 0) {
            // Keys are distinct: each goes to the first empty slot.
            let mut index = self.index(key);
            while self.slots[index].1 != 0 {
                index = (index + 1) & mask;
            }
            self.slots[index] = (key, count);
            self.len += 1;
            if self.listing && count & !COUNT_MASK == self.period << PERIOD_SHIFT {
                self.changed.push(index as u32);
            }
        }
    }
}

/// The `(key, count)` pairs of `bytes`, each `pair_bytes` long: two
/// little-endian `u32`s (8) or `u64`s (16), as a table's log holds them
/// ([`CountTable::log_pair_bytes`]); a trailing part of a pair is ignored.
pub fn decode_pairs(bytes: &[u8], pair_bytes: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
    debug_assert!(pair_bytes == 8 || pair_bytes == 16);
    let half = pair_bytes / 2;
    bytes.chunks_exact(pair_bytes).map(move |pair| {
        let (key, count) = pair.split_at(half);
        let word = |bytes: &[u8]| {
            let mut word = [0; 8];
            word[..half].copy_from_slice(bytes);
            u64::from_le_bytes(word)
        };
        (word(key), word(count))
    })
}

/// The iterator of [`CountTable::drain`].
#[derive(Debug)]
pub struct Drain<'a> {
    slots: std::slice::IterMut<'a, (u64, u64)>,
}

impl Iterator for Drain<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        self.slots
            .by_ref()
            .map(std::mem::take)
            .find(|&(_, count)| count > 0)
            .map(|(key, count)| (key, count & COUNT_MASK))
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for slot in self.slots.by_ref() {
            *slot = (0, 0);
        }
    }
}

/// `capacity` empty slots, in memory the kernel is asked to back with
/// transparent huge pages (`MADV_HUGEPAGE`; Linux's default THP mode,
/// `madvise`, uses them only where asked). A table of millions of keys
/// read at random otherwise misses the TLB on nearly every count (4 KiB
/// pages: a 512 MiB table spans 131 072 of them), and faults each page in
/// on its first touch. A hint: where the kernel has no huge page, or says
/// no, the table is the same, on small pages.
fn huge_zeroed(capacity: usize) -> Vec<(u64, u64)> {
    let slots = vec![(0u64, 0u64); capacity];
    let bytes = std::mem::size_of_val(slots.as_slice());
    if bytes >= HUGE_PAGE_BYTES {
        #[cfg(target_os = "linux")]
        // SAFETY: a hint on memory this vector owns; it changes no byte of
        // it (the zeroed, untouched pages stay zero).
        unsafe {
            // madvise takes a page-aligned start; the allocator's block
            // starts past its header.
            let start = slots.as_ptr() as usize;
            let aligned = start.next_multiple_of(HUGE_PAGE_BYTES);
            let end = start + bytes;
            if aligned < end {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    slots
}

/// The slot `key` hashes to in a table of `2^(64 - shift)` slots.
#[inline(always)]
fn index(key: u64, shift: u32) -> usize {
    let mixed = (key ^ (key >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (mixed >> shift) as usize
}

/// A transparent huge page on x86-64: smaller tables are not advised.
const HUGE_PAGE_BYTES: usize = 2 << 20;

#[inline(always)]
fn prefetch<T>(target: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it cannot fault, and `target` is a
    // valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            (target as *const T).cast::<i8>(),
            std::arch::x86_64::_MM_HINT_T0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = target;
}

impl FromIterator<(u64, u64)> for CountTable {
    fn from_iter<I: IntoIterator<Item = (u64, u64)>>(pairs: I) -> Self {
        let pairs = pairs.into_iter();
        let mut table = CountTable::new();
        // Room for all first (given an exact size, as a `Vec`'s): pairs
        // read from another table come in its slot order, sorted by hash,
        // and inserting those into a table that grows as they come piles
        // them into one cluster (every insert probes to its end: quadratic;
        // restoring 5 M keys took minutes in `bench/src/bin/recovery.rs`).
        table.reserve(pairs.size_hint().0);
        for (key, count) in pairs.into_iter().filter(|&(_, count)| count > 0) {
            table.add(key, count);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn counts_match_a_hash_map_through_growth_and_drain() {
        let mut table = CountTable::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut x = 7u64;
        for round in 0..3 {
            let keys: Vec<u64> = (0..50_000)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Include 0 and u64::MAX as keys: no key value is reserved.
                    match x % 1000 {
                        0 => 0,
                        1 => u64::MAX,
                        _ => x % (20_000 * (round + 1)),
                    }
                })
                .collect();
            table.count_slice(&keys, |&k| k);
            for &key in &keys {
                *model.entry(key).or_default() += 1;
            }
            assert_eq!(table.len(), model.len());
            for (&key, &count) in &model {
                assert_eq!(table.get(key), Some(count), "key {key}");
            }
        }
        let mut drained: Vec<(u64, u64)> = table.drain().collect();
        drained.sort();
        let mut expected: Vec<(u64, u64)> = model.into_iter().collect();
        expected.sort();
        assert_eq!(drained, expected);
        assert!(table.is_empty() && table.iter().next().is_none());
        table.add(1, 1);
        table.add(2, 1);
        let first = table.drain().next();
        assert!(first.is_some());
        assert!(
            table.iter().next().is_none(),
            "an early-dropped drain still empties the table"
        );
        table.add(5, 2);
        assert_eq!(table.get(5), Some(2));
    }

    #[test]
    fn changes_are_the_keys_counted_since_the_last_take_through_growth() {
        let mut table = CountTable::new();
        table.count_slice(&[1u64, 2, 3, 1], |&k| k);
        let mut first = table.take_changes();
        first.sort();
        assert_eq!(first, vec![(1, 2), (2, 1), (3, 1)]);
        assert!(table.take_changes().is_empty(), "taken changes are cleared");
        // Enough new keys to grow the table several times: changed keys
        // keep their marks across the moves, unchanged ones stay clean.
        let keys: Vec<u64> = (100..10_000).collect();
        table.count_slice(&keys, |&k| k);
        table.add(2, 5);
        let changes: std::collections::HashMap<u64, u64> =
            table.take_changes().into_iter().collect();
        assert_eq!(changes.len(), keys.len() + 1);
        assert_eq!(changes.get(&2), Some(&6));
        assert!(!changes.contains_key(&1) && !changes.contains_key(&3));
        assert_eq!(table.get(1), Some(2));
        // `set` restores without marking; `forget_changes` clears marks.
        table.set(7, 9);
        table.set(1, 4);
        assert!(table.take_changes().is_empty());
        assert_eq!((table.get(7), table.get(1)), (Some(9), Some(4)));
        table.add(7, 1);
        table.forget_changes();
        assert!(table.take_changes().is_empty());
        assert_eq!(table.get(7), Some(10));
        assert!(table.iter().all(|(_, count)| count <= COUNT_MASK));
    }

    /// The last pair of each key in a drain, and how many pairs there were.
    fn drained(table: &mut CountTable) -> (std::collections::BTreeMap<u64, u64>, usize) {
        let (mut last, mut pairs) = (std::collections::BTreeMap::new(), 0);
        let expected = table.changes_len();
        table.drain_changes(|key, count| {
            last.insert(key, count);
            pairs += 1;
        });
        assert_eq!(pairs, expected, "changes_len said otherwise");
        (last, pairs)
    }

    #[test]
    fn a_taken_log_holds_the_prefix_and_the_pairs_a_drain_hands_out() {
        let mut table = CountTable::new();
        table.set_log_prefix(5);
        let keys = [3u64, 9, 3, 1 << 40];
        table.count_slice(&keys, |&k| k);
        let mut copy = table.clone();
        let expected = {
            let mut pairs = Vec::new();
            copy.drain_changes(|key, count| pairs.push((key, count)));
            pairs
        };
        assert_eq!(expected, [(3, 1), (9, 1), (3, 2), (1 << 40, 1)]);
        // A key past 32 bits made the log's pairs wide, those before too.
        assert_eq!(table.log_pair_bytes(), 16);
        let log = table.take_log(vec![7; 100]).expect("a sparse period logs");
        assert_eq!((log.len(), &log[..5]), (5 + 16 * 4, &[0u8; 5][..]));
        assert_eq!(decode_pairs(&log[5..], 16).collect::<Vec<_>>(), expected);
        // The next period logs into the spare, from its prefix on, wide.
        table.count_slice(&[9u64], |&k| k);
        assert_eq!((table.changes_len(), table.log.len()), (1, 5 + 16));
        // A period that dropped its log hands the spare back.
        let dense: Vec<u64> = (0..30_000).map(|i| i % 10).collect();
        table.count_slice(&dense, |&k| k);
        assert_eq!(table.take_log(vec![1, 2]), Err(vec![1, 2]));
        assert_eq!(table.changes_len(), 10);
    }

    /// Keys and counts that fit 32 bits are logged as two `u32`s; the
    /// first count past 32 bits widens the log in place, every pair
    /// before it kept, and a drained table starts narrow again.
    #[test]
    fn a_log_is_narrow_until_a_count_needs_64_bits() {
        let mut table = CountTable::new();
        table.set_log_prefix(3);
        let max = u64::from(u32::MAX);
        table.count_slice(&[1u64, max, 1], |&k| k);
        table.add(2, max - 1);
        assert_eq!(table.log_pair_bytes(), 8);
        let mut narrow = vec![(1, 1), (max, 1), (1, 2), (2, max - 1)];
        assert_eq!(table.log.len(), 3 + 8 * narrow.len());
        assert_eq!(table.log_pairs().collect::<Vec<_>>(), narrow);
        // 2's count reaches 2^32 in the middle of a slice.
        table.count_slice(&[7u64, 2, 7, 2], |&k| k);
        assert_eq!(table.log_pair_bytes(), 16);
        narrow.extend([(7, 1), (2, max), (7, 2), (2, max + 1)]);
        assert_eq!(table.log.len(), 3 + 16 * narrow.len());
        assert_eq!(table.log_pairs().collect::<Vec<_>>(), narrow);
        assert_eq!((table.get(2), table.get(7)), (Some(max + 1), Some(2)));
        assert_eq!(table.changes_len(), narrow.len());
        let _ = table.drain().count();
        table.count_slice(&[5u64], |&k| k);
        assert_eq!((table.log_pair_bytes(), table.log.len()), (8, 3 + 8));
    }

    /// A period that does not log lists its changed slots until a quarter
    /// of the slots changed, then stops listing and reads its changes by
    /// scanning the marks: each changed key once, whether counted before
    /// or after it stopped, through a growth of the table; the next period
    /// lists again.
    #[test]
    fn a_period_stops_listing_once_a_quarter_of_the_slots_changed() {
        let mut table = CountTable::new();
        let all: Vec<u64> = (0..3_000).collect();
        table.count_slice(&all, |&k| k);
        let _ = drained(&mut table);
        // A dense period (five counts a key) drops the log; the next lists.
        let five: Vec<u64> = all.iter().flat_map(|&k| [k; 5]).collect();
        table.count_slice(&five, |&k| k);
        let _ = drained(&mut table);
        assert!(
            !table.logging && table.listing,
            "a period that does not log lists"
        );
        let capacity = table.capacity();
        let few: Vec<u64> = (0..10).collect();
        table.count_slice(&few, |&k| k);
        assert!(table.listing && table.changed.len() == 10);
        // Past a quarter of the slots: no list, the count goes on.
        let quarter = capacity / DENSE_SCAN_SLOTS;
        let more: Vec<u64> = (10..quarter as u64 + 10).collect();
        table.count_slice(&more, |&k| k);
        assert!(!table.listing && table.changed.is_empty());
        // Keys counted again, and new keys that grow the table.
        let new: Vec<u64> = (1_000_000..1_000_000 + capacity as u64).collect();
        table.count_slice(&few, |&k| k);
        table.count_slice(&new, |&k| k);
        assert!(table.capacity() > capacity, "the table grew");
        let expected = quarter + 10 + new.len();
        assert_eq!(table.changes_len(), expected);
        let (last, pairs) = drained(&mut table);
        assert_eq!((pairs, last.len()), (expected, expected), "once each");
        assert_eq!(
            (last[&0], last[&10], last[&1_000_000]),
            (1 + 5 + 2, 1 + 5 + 1, 1)
        );
        assert_eq!(last.get(&(quarter as u64 + 10)), None, "not changed");
        // The next period lists again.
        table.count_slice(&[5u64], |&k| k);
        assert!(table.listing && table.changed == [table.probe(5) as u32]);
    }

    /// An untracked table counts as a tracked one does, and keeps no log
    /// and no list of changes, from one period to the next.
    #[test]
    fn an_untracked_table_counts_and_keeps_no_changes() {
        let mut table = CountTable::untracked();
        let keys: Vec<u64> = (0..50_000).map(|i| (i * 7) % 20_000).collect();
        for period in 0..20 {
            table.count_slice(&keys, |&k| k);
            assert_eq!(
                (table.logging, table.log.len(), table.changed.len()),
                (false, 0, 0)
            );
            assert_eq!(table.changes_len(), 0, "period {period}");
            table.forget_changes();
        }
        let mut expected = HashMap::new();
        for &key in &keys {
            *expected.entry(key).or_insert(0) += 20;
        }
        assert_eq!(table.iter().collect::<HashMap<_, _>>(), expected);
        assert!(!table.is_tracked());
    }

    /// A period that stops logging midway (its owner's header changed)
    /// lists its changed slots from their marks: each changed key once,
    /// with its count now, and no other.
    #[test]
    fn a_period_that_stops_logging_lists_its_changes_from_the_marks() {
        let mut table = CountTable::new();
        table.count_slice(&[1u64, 2, 3], |&k| k);
        let _ = drained(&mut table);
        assert!(table.logging, "a sparse period logs");
        let keys: Vec<u64> = (10..5_000).chain([2, 10, 10]).collect();
        table.count_slice(&keys, |&k| k);
        table.add(3, 4);
        table.set_log_prefix(9);
        assert!(!table.logging && table.log.len() == 9);
        assert_eq!(table.changes_len(), 4_990 + 2);
        let (last, pairs) = drained(&mut table);
        assert_eq!(pairs, 4_990 + 2, "once each");
        assert_eq!((last[&2], last[&3], last[&10], last[&11]), (2, 5, 3, 1));
        assert!(!last.contains_key(&1));
    }

    #[test]
    fn sparse_periods_drain_their_log_and_dense_ones_their_slots() {
        let mut table = CountTable::new();
        // Sparse: 20 000 keys, a few counted twice: the log, in order.
        let keys: Vec<u64> = (0..20_000).chain([5, 5, 7]).collect();
        table.count_slice(&keys, |&k| k);
        let (last, pairs) = drained(&mut table);
        assert_eq!(pairs, keys.len(), "not the log");
        assert_eq!((last.len(), last[&5], last[&7]), (20_000, 3, 2));
        // Dense: every key of 100 counted 200 times: the log is dropped
        // and the changed slots are read, once each.
        let dense: Vec<u64> = (0..20_000).map(|i| i % 100).collect();
        table.count_slice(&dense, |&k| k);
        let (last, pairs) = drained(&mut table);
        assert_eq!(pairs, 100, "not once each");
        assert_eq!(last[&5], 3 + 200);
        // The next period, sparse again, does not log (its period is not a
        // retry)... but is still right.
        table.count_slice(&[1u64, 2, 2], |&k| k);
        let (last, pairs) = drained(&mut table);
        assert_eq!((pairs, last[&1], last[&2]), (2, 202, 203));
        // Through more periods than marks (255) counts and changes stay
        // right, and some period logs again.
        let mut logged = false;
        for period in 0..600u64 {
            table.count_slice(&[period % 50, 100_000 + period], |&k| k);
            let (last, pairs) = drained(&mut table);
            logged |= pairs == 2 && table.logging;
            assert_eq!(last.len(), 2);
            assert_eq!(last[&(100_000 + period)], 1);
        }
        assert!(logged, "no period logged again");
        assert_eq!(table.get(100_000), Some(1));
        assert_eq!(table.get(0), Some(1 + 200 + 12));
        // Most slots changed: read by scanning the table, once each, and
        // only the changed ones (the 600 keys above are not).
        let before: HashMap<u64, u64> = table.iter().collect();
        // (Three slices, not one of three times the keys: a slice reserves
        // room for all its items as new keys, which would grow the table.)
        let most: Vec<u64> = (0..20_000u64).collect();
        for _ in 0..3 {
            table.count_slice(&most, |&k| k);
        }
        assert!(!table.logging, "three counts per key should drop the log");
        // (And lists none: a quarter of the slots or more changed.)
        assert!(!table.listing && table.changed.is_empty());
        assert!(table.changes_len() * DENSE_SCAN_SLOTS >= table.capacity());
        let (last, pairs) = drained(&mut table);
        assert_eq!((pairs, last.len()), (20_000, 20_000));
        for (key, count) in last {
            assert_eq!(
                count,
                before.get(&key).copied().unwrap_or(0) + 3,
                "key {key}"
            );
        }
    }
}
