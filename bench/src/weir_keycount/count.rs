//! [`TumblingCount`]: counts events per key in tumbling windows of
//! `size_ticks`, the counting step of the keycount workload.
//!
//! A window `[w * size, (w + 1) * size)` closes when the watermark reaches
//! its end: its counts move to a queue of output rows, handed to the
//! runtime one batch at a time through `Processor::drain` (so a window over
//! a million keys does not stage a million rows at once), and its table is
//! cleared and kept for reuse. Steady state allocates nothing once the
//! tables and the queue have grown to the key count.
//!
//! An event for a window that already closed is late: it is not counted in
//! any emitted row and is tallied in [`TumblingCount::late_events`].
//!
//! Snapshots are incremental (`Processor::incremental`): a base epoch's
//! snapshot holds every open window's counts, every other epoch's only the
//! keys counted since the previous snapshot (the tables mark them, see
//! [`CountTable::drain_changes`]) with their counts now, written straight
//! from the tables in a plain little-endian layout (`Changes`), and the
//! windows closed since as the new `closed_below`. Applying changes overwrites
//! counts, so the bytes an epoch logs follow the keys it touched, not the
//! keys held (a key counted more than once in the epoch may come more
//! than once, in order: [`CountTable::drain_changes`] hands out its log of
//! counts when that is cheaper than reading the changed slots again; with
//! one window open, that log, already in the record's layout behind room
//! for its header, becomes the record itself: [`CountTable::take_log`]). A
//! base has the same layout with every key (`Processor::snapshot_base`),
//! streamed to the log from the tables in pieces of [`BASE_PIECE_BYTES`],
//! and is restored as changes applied to an empty state.
//!
//! Bases after a run's first are swept (`Processor::sweep_base`): from a
//! base epoch on, each epoch's record holds its changes and then a slice
//! of the tables' slots, at least what is left divided by the epochs left,
//! in the same layout; a table that grew (its keys moved) is swept again
//! from its start, a window that closed is skipped.

use rkyv::rancor;
use weir_operators::processors::window::ClosedRows;
use weir_runtime::{Batch, Emitter, OperatorError, Processor};

use super::{ArchivedEvent, Event, WindowCount};
use crate::count_table::{decode_pairs, CountTable};

/// Counts events per (tumbling window, key).
#[derive(Debug)]
pub struct TumblingCount {
    size_ticks: u64,
    /// Open windows, oldest first; rarely more than two.
    open: Vec<(u64, CountTable)>,
    /// Cleared tables of closed windows, for reuse.
    spare: Vec<CountTable>,
    /// Rows of closed windows not yet emitted, and how many were.
    closed_rows: ClosedRows<WindowCount>,
    /// First window not yet closed.
    closed_below: u64,
    /// The window the last event fell in, as `(first tick, end tick, index
    /// in open)`: consecutive events mostly share a window, and comparing
    /// with its bounds is much cheaper than dividing.
    current: Option<(u64, u64, usize)>,
    late_events: u64,
    /// Whether snapshots are incremental (the default).
    incremental: bool,
    /// Whether its tables keep their changes (the default; not in a run
    /// without snapshots: [`TumblingCount::untracked`]).
    tracked: bool,
    /// Whether bases are swept (the default), not written whole.
    swept: bool,
    /// The sweep in progress: the windows still to sweep, oldest first.
    sweep: Vec<SweepWindow>,
}

/// Where a base sweep is in one window's table.
#[derive(Debug)]
struct SweepWindow {
    window: u64,
    /// The table's capacity when `cursor` was set: if the table grew
    /// since, its keys moved, and its sweep starts over.
    capacity: usize,
    /// The first slot not yet swept.
    cursor: usize,
}

impl TumblingCount {
    /// Windows of `size_ticks` ticks of event time.
    ///
    /// # Panics
    /// If `size_ticks` is zero.
    pub fn new(size_ticks: u64) -> TumblingCount {
        assert!(size_ticks > 0, "window size must be positive");
        TumblingCount {
            size_ticks,
            open: Vec::new(),
            spare: Vec::new(),
            closed_rows: ClosedRows::new(),
            closed_below: 0,
            current: None,
            late_events: 0,
            incremental: true,
            tracked: true,
            swept: true,
            sweep: Vec::new(),
        }
    }

    /// Writes each base whole at its base epoch instead of sweeping it
    /// over the following epochs (for comparison in
    /// `bench/src/bin/epochs.rs`).
    pub fn with_whole_bases(mut self) -> TumblingCount {
        self.swept = false;
        self
    }

    /// Keeps no changes in its tables, for a run that takes no snapshots
    /// (`ShardContext::snapshots` is `false`): counting then does only
    /// what counting needs. Asked for changes (`snapshot_changes`), it
    /// fails; whole snapshots still work.
    pub fn untracked(mut self) -> TumblingCount {
        self.tracked = false;
        self
    }

    /// Snapshots the whole state every epoch, as before incremental
    /// snapshots (for comparison in `bench/src/bin/epochs.rs`).
    pub fn with_full_snapshots(mut self) -> TumblingCount {
        self.incremental = false;
        self
    }

    /// Events that arrived after their window closed.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// The table of the window holding `ts`, or `None` if that window
    /// already closed.
    #[inline]
    fn table_for(&mut self, ts: u64) -> Option<&mut CountTable> {
        if let Some((start, end, index)) = self.current {
            if (start..end).contains(&ts) {
                return Some(&mut self.open[index].1);
            }
        }
        let window = ts / self.size_ticks;
        if window < self.closed_below {
            return None;
        }
        let index = self.index_of(window);
        let start = window * self.size_ticks;
        self.current = Some((start, start.saturating_add(self.size_ticks), index));
        Some(&mut self.open[index].1)
    }

    /// Counts `events`, in runs of events that share a window.
    fn count(&mut self, events: &[ArchivedEvent]) {
        let mut rest = events;
        while let Some(first) = rest.first() {
            if self.table_for(first.ts.to_native()).is_none() {
                self.late_events += 1;
                rest = &rest[1..];
                continue;
            }
            let Some((start, end, index)) = self.current else {
                unreachable!("table_for sets the current window");
            };
            // The tight loop: events of one window, which is nearly all of
            // them. Its body is small so the CPU overlaps many table misses.
            let table = &mut self.open[index].1;
            let run = rest
                .iter()
                .take_while(|event| (start..end).contains(&event.ts.to_native()))
                .count();
            table.count_slice(&rest[..run], |event| event.key.to_native());
            rest = &rest[run..];
        }
    }

    fn index_of(&mut self, window: u64) -> usize {
        if let Some(index) = self.open.iter().rposition(|(open, _)| *open == window) {
            return index;
        }
        let tracked = self.tracked;
        let mut table = self.spare.pop().unwrap_or_else(|| match tracked {
            true => CountTable::new(),
            false => CountTable::untracked(),
        });
        table.set_log_prefix(ONE_WINDOW_HEADER);
        let at = self.open.partition_point(|(open, _)| *open < window);
        self.open.insert(at, (window, table));
        at
    }
}

/// What [`TumblingCount`] snapshots at an epoch barrier: its open windows
/// (closed rows are always drained before a barrier), the first window not
/// yet closed, and the late-event tally. Its changes have the same shape,
/// with only the changed keys of each window.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct TumblingState {
    windows: Vec<(u64, Vec<(u64, u64)>)>,
    closed_below: u64,
    late_events: u64,
}

/// Bytes a base snapshot is handed to the log in at a time.
const BASE_PIECE_BYTES: usize = 1 << 20;

/// What a changes record starts with.
const CHANGES_MAGIC: &[u8; 4] = b"TCC1";
/// What a changes record whose pairs are two `u32`s starts with (the log
/// of a table whose logged keys and counts fit 32 bits, see
/// `CountTable::log_pair_bytes`); `TCC1`'s are two `u64`s.
const NARROW_CHANGES_MAGIC: &[u8; 4] = b"TCN1";
/// What a sweep slice starts with: the same layout, but each window also
/// says how many keys its table held (see `Changes`).
const SLICE_MAGIC: &[u8; 4] = b"TCS1";
/// The magic and three words: closed_below, late events, windows.
const CHANGES_HEADER: usize = 4 + 24;
/// A changes record of one window up to its pairs: the header, the
/// window's index and its number of pairs. Each table's log keeps this
/// much room before its pairs, so the log of the only open window becomes
/// the changes record without a copy (`CountTable::take_log`).
const ONE_WINDOW_HEADER: usize = CHANGES_HEADER + 16;

/// A changes record: `TCC1`, then little-endian `closed_below`, late
/// events and the number of windows, then per window its index, its
/// number of changed keys and that many `(key, count)` pairs, each two
/// `u64`s (two `u32`s in a `TCN1` record, otherwise the same). A sweep
/// slice (`TCS1`) has, per window, its index, the keys its table held,
/// then the pairs' count and the pairs: a slice holds the keys of a range
/// of slots, so of a range of hashes, and a table rebuilt from slices
/// takes its whole size first (keys of one hash range inserted into a
/// table smaller than the one they came from would pile up in one run of
/// slots, each insert probing all of it).
struct Changes<'a> {
    closed_below: u64,
    late_events: u64,
    /// (window, keys its table held (0: not said), its pairs' bytes).
    windows: Vec<(u64, u64, &'a [u8])>,
    /// Bytes of each pair: 16, or 8 in a `TCN1` record.
    pair_bytes: usize,
}

impl<'a> Changes<'a> {
    /// The first changes block of `bytes` (a sweep record holds two, the
    /// epoch's changes and then its sweep slice), and what follows it.
    fn parse(bytes: &'a [u8]) -> Result<(Changes<'a>, &'a [u8]), String> {
        let (slice, pair_bytes, rest) = match bytes.split_first_chunk::<4>() {
            Some((magic, rest)) if magic == CHANGES_MAGIC => (false, 16, rest),
            Some((magic, rest)) if magic == NARROW_CHANGES_MAGIC => (false, 8, rest),
            Some((magic, rest)) if magic == SLICE_MAGIC => (true, 16, rest),
            _ => return Err("not a changes record".into()),
        };
        let mut words = rest;
        let word = |words: &mut &'a [u8]| -> Result<u64, String> {
            let (head, tail) = words
                .split_first_chunk::<8>()
                .ok_or(format!("cut short at byte {}", bytes.len() - words.len()))?;
            *words = tail;
            Ok(u64::from_le_bytes(*head))
        };
        let closed_below = word(&mut words)?;
        let late_events = word(&mut words)?;
        let count = word(&mut words)?;
        let mut windows = Vec::new();
        for _ in 0..count {
            let window = word(&mut words)?;
            let held = if slice { word(&mut words)? } else { 0 };
            let pairs = word(&mut words)?;
            let length = usize::try_from(pairs)
                .ok()
                .and_then(|pairs| pairs.checked_mul(pair_bytes))
                .filter(|length| *length <= words.len())
                .ok_or(format!("window {window}: {pairs} pairs do not fit"))?;
            let (head, tail) = words.split_at(length);
            windows.push((window, held, head));
            words = tail;
        }
        let changes = Changes {
            closed_below,
            late_events,
            windows,
            pair_bytes,
        };
        Ok((changes, words))
    }
}

/// The keys in each changes block of `bytes` (a changes record, a base,
/// or a sweep record's changes and then its slice), for
/// `bench/src/bin/recovery.rs`'s report of what a recovery restores.
pub fn keys_per_block(mut bytes: &[u8]) -> Result<Vec<u64>, String> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let (changes, rest) = Changes::parse(bytes)?;
        keys.push(
            changes
                .windows
                .iter()
                .map(|(.., pairs)| (pairs.len() / changes.pair_bytes) as u64)
                .sum(),
        );
        bytes = rest;
    }
    Ok(keys)
}

fn encode(state: &TumblingState) -> Result<Vec<u8>, OperatorError> {
    let bytes = rkyv::to_bytes::<rancor::Error>(state)
        .map_err(|error| OperatorError::other(error.to_string()))?;
    Ok(bytes.to_vec())
}

/// Decodes a snapshot or changes (`what`), validating them: they come from
/// disk.
fn decode(bytes: &[u8], what: &str) -> Result<TumblingState, OperatorError> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<TumblingState, rancor::BoxedError>(&aligned)
        .map_err(|error| OperatorError::invalid(format!("tumbling window {what}: {error}")))
}

impl Processor for TumblingCount {
    type Input = Event;
    type Output = WindowCount;

    fn process(&mut self, _port: usize, batch: &Batch<Event>, _out: &mut Emitter<WindowCount>) {
        match batch.as_slice() {
            Some(events) => self.count(events),
            None => batch
                .iter()
                .for_each(|event| self.count(std::slice::from_ref(event))),
        }
    }

    fn on_watermark(&mut self, watermark: u64, _out: &mut Emitter<WindowCount>) {
        // Closing windows shifts indices in `open`.
        self.current = None;
        let closing = self
            .open
            .iter()
            .take_while(|(window, _)| (window + 1).saturating_mul(self.size_ticks) <= watermark)
            .count();
        for (window, mut table) in self.open.drain(..closing) {
            let rows = table
                .drain()
                .map(|(key, count)| WindowCount { window, key, count });
            self.closed_rows.extend(rows);
            self.spare.push(table);
            self.closed_below = window + 1;
        }
        self.closed_below = self.closed_below.max(watermark / self.size_ticks);
    }

    fn snapshot(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        debug_assert!(
            self.closed_rows.is_empty(),
            "rows are drained before a barrier"
        );
        let state = TumblingState {
            windows: self
                .open
                .iter_mut()
                .map(|(window, table)| {
                    table.forget_changes();
                    (*window, table.iter().collect())
                })
                .collect(),
            closed_below: self.closed_below,
            late_events: self.late_events,
        };
        encode(&state)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), OperatorError> {
        if bytes.starts_with(CHANGES_MAGIC) {
            // A base (`snapshot_base`): every key, as changes to nothing.
            self.open.clear();
            self.closed_below = 0;
            return self.restore_changes(bytes);
        }
        let state = decode(bytes, "state")?;
        self.open = state
            .windows
            .into_iter()
            .map(|(window, rows)| (window, rows.into_iter().collect()))
            .collect();
        self.closed_below = state.closed_below;
        self.late_events = state.late_events;
        self.current = None;
        Ok(())
    }

    fn incremental(&self) -> bool {
        self.incremental
    }

    fn snapshot_base(
        &mut self,
        _epoch: u64,
        out: &mut weir_runtime::SnapshotWriter<'_>,
    ) -> Result<(), OperatorError> {
        debug_assert!(
            self.closed_rows.is_empty(),
            "rows are drained before a barrier"
        );
        let mut piece = Vec::with_capacity(BASE_PIECE_BYTES + 16);
        piece.extend_from_slice(CHANGES_MAGIC);
        for word in [self.closed_below, self.late_events, self.open.len() as u64] {
            piece.extend_from_slice(&word.to_le_bytes());
        }
        for (window, table) in &mut self.open {
            table.forget_changes();
            piece.extend_from_slice(&window.to_le_bytes());
            piece.extend_from_slice(&(table.len() as u64).to_le_bytes());
            for (key, count) in table.iter() {
                piece.extend_from_slice(&key.to_le_bytes());
                piece.extend_from_slice(&count.to_le_bytes());
                if piece.len() >= BASE_PIECE_BYTES {
                    out.write(&piece)?;
                    piece.clear();
                }
            }
        }
        out.write(&piece)
    }

    fn snapshot_changes(&mut self, _epoch: u64, bytes: &mut Vec<u8>) -> Result<(), OperatorError> {
        debug_assert!(
            self.closed_rows.is_empty(),
            "rows are drained before a barrier"
        );
        if !self.tracked {
            return Err(OperatorError::other(
                "tumbling window changes: its tables keep no changes (built for a run without snapshots)",
            ));
        }
        // The only open window's log, when it kept one, is the record: it
        // only lacks its header (a changes record is tens of MB at 10 M
        // keys, where epochs log; see `Changes`).
        if let ([(window, table)], true) = (self.open.as_mut_slice(), bytes.is_empty()) {
            table.set_log_prefix(ONE_WINDOW_HEADER);
            let pairs = table.changes_len() as u64;
            let magic = match table.log_pair_bytes() {
                8 => NARROW_CHANGES_MAGIC,
                _ => CHANGES_MAGIC,
            };
            match table.take_log(std::mem::take(bytes)) {
                Ok(log) => {
                    *bytes = log;
                    let mut header = Vec::with_capacity(ONE_WINDOW_HEADER);
                    header.extend_from_slice(magic);
                    for word in [self.closed_below, self.late_events, 1, *window, pairs] {
                        header.extend_from_slice(&word.to_le_bytes());
                    }
                    bytes[..ONE_WINDOW_HEADER].copy_from_slice(&header);
                    return Ok(());
                }
                Err(spare) => *bytes = spare,
            }
        }
        // Else written straight from the tables, one copy: in 8-byte pairs
        // while every table's keys and counts fit 32 bits, else (or once
        // one is found not to) in 16-byte ones.
        let narrow = self
            .open
            .iter()
            .all(|(_, table)| table.log_pair_bytes() == 8);
        if !(narrow && self.write_changes_block(bytes, NARROW_CHANGES_MAGIC, 8)) {
            let written = self.write_changes_block(bytes, CHANGES_MAGIC, 16);
            debug_assert!(written, "16-byte pairs always fit");
        }
        Ok(())
    }

    fn restore_changes(&mut self, mut bytes: &[u8]) -> Result<(), OperatorError> {
        while !bytes.is_empty() {
            let (changes, rest) = Changes::parse(bytes).map_err(|error| {
                OperatorError::invalid(format!("tumbling window changes: {error}"))
            })?;
            self.apply(changes)?;
            bytes = rest;
        }
        self.current = None;
        Ok(())
    }

    fn swept_bases(&self) -> bool {
        self.swept
    }

    fn sweep_base(
        &mut self,
        begin: bool,
        epochs_left: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, OperatorError> {
        if begin {
            self.sweep = self
                .open
                .iter()
                .map(|(window, table)| SweepWindow {
                    window: *window,
                    capacity: table.capacity(),
                    cursor: 0,
                })
                .collect();
        }
        // Windows that closed since need no sweep (the changes say they
        // closed); a table that grew moved its keys: sweep it again.
        let closed_below = self.closed_below;
        self.sweep.retain(|swept| swept.window >= closed_below);
        let open = &self.open;
        let table = |window: u64| {
            open.iter()
                .find(|(open, _)| *open == window)
                .map(|(_, table)| table)
        };
        for swept in &mut self.sweep {
            let capacity = table(swept.window).map_or(0, CountTable::capacity);
            if capacity != swept.capacity {
                (swept.capacity, swept.cursor) = (capacity, 0);
            }
        }
        let remaining: usize = self.sweep.iter().map(|s| s.capacity - s.cursor).sum();
        let mut budget = match usize::try_from(epochs_left) {
            Ok(left) if left > 1 => remaining.div_ceil(left),
            _ => remaining,
        };
        // A slice block (`Changes`) of the slots swept now.
        let start = out.len();
        out.extend_from_slice(SLICE_MAGIC);
        for word in [self.closed_below, self.late_events, 0] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        let mut windows = 0u64;
        while budget > 0 {
            let Some(swept) = self.sweep.first_mut() else {
                break;
            };
            let end = swept.capacity.min(swept.cursor + budget);
            if let Some(table) = table(swept.window) {
                out.extend_from_slice(&swept.window.to_le_bytes());
                out.extend_from_slice(&(table.len() as u64).to_le_bytes());
                let pairs_at = out.len();
                out.extend_from_slice(&0u64.to_le_bytes());
                let mut pairs = 0u64;
                for (key, count) in table.slots_in(swept.cursor..end) {
                    out.extend_from_slice(&key.to_le_bytes());
                    out.extend_from_slice(&count.to_le_bytes());
                    pairs += 1;
                }
                out[pairs_at..pairs_at + 8].copy_from_slice(&pairs.to_le_bytes());
                windows += 1;
            }
            budget -= end - swept.cursor;
            swept.cursor = end;
            if swept.cursor == swept.capacity {
                self.sweep.remove(0);
            }
        }
        if windows == 0 {
            out.truncate(start);
        } else {
            let at = start + CHANGES_HEADER - 8;
            out[at..at + 8].copy_from_slice(&windows.to_le_bytes());
        }
        Ok(self.sweep.is_empty())
    }

    fn drain(&mut self, out: &mut Emitter<WindowCount>) -> bool {
        self.closed_rows.drain_into(out)
    }
}

impl TumblingCount {
    /// Appends a changes block (`Changes`) of every open window's changes
    /// in pairs of `pair_bytes` under `magic`, and starts a new period in
    /// each table. With 8-byte pairs a key or count past 32 bits instead
    /// leaves `bytes` as it was and every period going on, and returns
    /// `false` (`CountTable::write_changes`).
    fn write_changes_block(
        &mut self,
        bytes: &mut Vec<u8>,
        magic: &[u8; 4],
        pair_bytes: usize,
    ) -> bool {
        let start = bytes.len();
        bytes.extend_from_slice(magic);
        for word in [self.closed_below, self.late_events, self.open.len() as u64] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        for (window, table) in &mut self.open {
            bytes.extend_from_slice(&window.to_le_bytes());
            let at = bytes.len();
            bytes.extend_from_slice(&0u64.to_le_bytes());
            let Some(pairs) = table.write_changes(bytes, pair_bytes) else {
                bytes.truncate(start);
                return false;
            };
            bytes[at..at + 8].copy_from_slice(&(pairs as u64).to_le_bytes());
        }
        for (_, table) in &mut self.open {
            table.forget_changes();
        }
        true
    }

    /// Applies one changes block: counts overwrite, windows below its
    /// `closed_below` are gone.
    fn apply(&mut self, changes: Changes<'_>) -> Result<(), OperatorError> {
        self.closed_below = changes.closed_below;
        self.open
            .retain(|(window, _)| *window >= changes.closed_below);
        let pair_bytes = changes.pair_bytes;
        for (window, held, pairs) in changes.windows {
            let index = self.index_of(window);
            let table = &mut self.open[index].1;
            // Room for every key the table held before the pairs go in (a
            // count from disk: at most what a table can index).
            if held > u64::from(u32::MAX) {
                return Err(OperatorError::invalid(format!(
                    "tumbling window changes: window {window} held {held} keys"
                )));
            }
            table.reserve((held as usize).saturating_sub(table.len()));
            // Decoded first, then set with prefetching (`set_slice`): a
            // sweep's records rebuild millions of keys.
            let mut decoded = Vec::with_capacity(pairs.len() / pair_bytes);
            for (key, count) in decode_pairs(pairs, pair_bytes) {
                if count == 0 {
                    return Err(OperatorError::invalid(
                        "tumbling window changes: a count of 0",
                    ));
                }
                decoded.push((key, count));
            }
            self.open[index].1.set_slice(&decoded);
        }
        self.late_events = changes.late_events;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open window's (key, count) rows, sorted.
    fn tables(c: &TumblingCount) -> Vec<(u64, Vec<(u64, u64)>)> {
        c.open
            .iter()
            .map(|(w, t)| {
                let mut rows: Vec<_> = t.iter().collect();
                rows.sort();
                (*w, rows)
            })
            .collect()
    }

    #[test]
    fn state_round_trips_and_garbage_is_refused() {
        let mut count = TumblingCount::new(10);
        for (ts, key) in [(1, 7), (2, 7), (15, 8), (31, 7)] {
            count.table_for(ts).unwrap().add(key, 1);
        }
        count.late_events = 3;
        let bytes = count.snapshot(1).unwrap();
        let mut restored = TumblingCount::new(10);
        restored.restore(&bytes).unwrap();
        assert_eq!(tables(&restored), tables(&count));
        assert_eq!(restored.late_events, 3);
        assert!(TumblingCount::new(10)
            .restore(&bytes[..bytes.len() / 2])
            .is_err());
    }

    /// `snapshot_base`'s pieces, joined, and how many there were.
    fn base(count: &mut TumblingCount) -> (Vec<u8>, usize) {
        let (mut bytes, mut pieces) = (Vec::new(), 0);
        let mut collect = |piece: &[u8]| {
            bytes.extend_from_slice(piece);
            pieces += 1;
            Ok(())
        };
        count
            .snapshot_base(64, &mut weir_runtime::SnapshotWriter::new(&mut collect))
            .unwrap();
        (bytes, pieces)
    }

    #[test]
    fn a_streamed_base_restores_every_window_over_several_pieces() {
        let mut count = TumblingCount::new(10);
        // 100 000 keys of 16 bytes: two pieces of 1 MiB.
        for key in 0..100_000 {
            count.table_for(3).unwrap().add(key, 1 + key % 3);
        }
        count.table_for(12).unwrap().add(7, 5);
        count.late_events = 4;
        let (bytes, pieces) = base(&mut count);
        assert!(pieces >= 2, "{pieces} pieces");
        let mut restored = TumblingCount::new(10);
        restored.table_for(25).unwrap().add(1, 1);
        restored.restore(&bytes).unwrap();
        assert_eq!(tables(&restored), tables(&count));
        assert_eq!(restored.late_events, 4);
        // A base clears the change marks: nothing changed since.
        let mut changes = Vec::new();
        count.snapshot_changes(65, &mut changes).unwrap();
        let (parsed, _) = Changes::parse(&changes).unwrap();
        assert!(parsed.windows.iter().all(|(.., pairs)| pairs.is_empty()));
        assert!(TumblingCount::new(10)
            .restore(&bytes[..bytes.len() - 8])
            .is_err());
    }

    #[test]
    fn a_base_and_its_changes_restore_the_state_and_hold_only_changed_keys() {
        let mut count = TumblingCount::new(10);
        for key in 0..1000 {
            count.table_for(3).unwrap().add(key, 1);
        }
        let (base, _) = base(&mut count);
        // Epoch 65: two keys of window 0 and a new window.
        count.table_for(4).unwrap().add(5, 2);
        count.table_for(4).unwrap().add(6, 1);
        count.table_for(12).unwrap().add(9, 1);
        let mut first = Vec::new();
        count.snapshot_changes(65, &mut first).unwrap();
        assert!(
            first.len() * 10 < base.len(),
            "changes of 3 keys ({} bytes) are not much smaller than a base of 1000 ({} bytes)",
            first.len(),
            base.len()
        );
        // Epoch 66: window 0 closed (as `on_watermark` does), one more count.
        count.open.remove(0);
        count.closed_below = 1;
        count.current = None;
        count.table_for(13).unwrap().add(9, 1);
        count.late_events = 2;
        let mut second = Vec::new();
        count.snapshot_changes(66, &mut second).unwrap();

        let mut restored = TumblingCount::new(10);
        restored.restore(&base).unwrap();
        restored.restore_changes(&first).unwrap();
        restored.restore_changes(&second).unwrap();
        assert_eq!(tables(&restored), vec![(1, vec![(9, 2)])]);
        assert_eq!(tables(&restored), tables(&count));
        assert_eq!((restored.closed_below, restored.late_events), (1, 2));
        assert!(TumblingCount::new(10)
            .restore_changes(&second[..second.len() / 2])
            .is_err());
    }

    /// A window's log is the changes record: two `u32`s a pair while its
    /// keys and counts fit (`TCN1`), two `u64`s once one does not (`TCC1`);
    /// either restores.
    #[test]
    fn changes_are_narrow_while_keys_fit_32_bits_and_restore_either_way() {
        let mut count = TumblingCount::new(10);
        let (base, _) = base(&mut count);
        let mut records = Vec::new();
        for keys in [&[1u64, 2, 1][..], &[1 << 40, 2], &[3]] {
            for &key in keys {
                count.table_for(4).unwrap().add(key, 1);
            }
            let mut changes = Vec::new();
            count.snapshot_changes(65, &mut changes).unwrap();
            records.push(changes);
        }
        let magics: Vec<_> = records.iter().map(|record| &record[..4]).collect();
        // The third epoch's table had logged a key past 32 bits: still wide.
        assert_eq!(magics, [b"TCN1", b"TCC1", b"TCC1"]);
        assert_eq!(records[0].len(), ONE_WINDOW_HEADER + 3 * 8);
        let mut restored = TumblingCount::new(10);
        restored.restore(&base).unwrap();
        for record in &records {
            restored.restore_changes(record).unwrap();
        }
        assert_eq!(
            tables(&restored),
            vec![(0, vec![(1, 2), (2, 2), (3, 1), (1 << 40, 1)])]
        );
        assert_eq!(keys_per_block(&records[0]).unwrap(), [3]);
    }

    /// Changes read from the tables (two windows, or a period that
    /// dropped its log) are narrow too while every key and count fits; a
    /// key past 32 bits found while writing them makes the whole record
    /// wide, with every window's changes.
    #[test]
    fn a_wide_key_found_while_writing_narrow_changes_writes_them_wide() {
        let mut count = TumblingCount::new(10);
        let (base, _) = base(&mut count);
        count.table_for(3).unwrap().add(4, 1);
        // Window 1 counts so densely that it drops its log, then a key
        // past 32 bits (not logged: nothing made the table wide yet).
        let dense: Vec<u64> = (0..30_000).map(|i| i % 10).collect();
        count.table_for(13).unwrap().count_slice(&dense, |&k| k);
        let mut first = Vec::new();
        count.snapshot_changes(65, &mut first).unwrap();
        count.table_for(13).unwrap().add(1 << 40, 1);
        count.table_for(3).unwrap().add(5, 1);
        let mut second = Vec::new();
        count.snapshot_changes(66, &mut second).unwrap();
        count.table_for(3).unwrap().add(4, 1);
        let mut third = Vec::new();
        count.snapshot_changes(67, &mut third).unwrap();
        let magics = [&first[..4], &second[..4], &third[..4]];
        assert_eq!(magics, [b"TCN1", b"TCC1", b"TCC1"]);
        assert_eq!(keys_per_block(&second).unwrap(), [2]);
        let mut restored = TumblingCount::new(10);
        restored.restore(&base).unwrap();
        for record in [&first, &second, &third] {
            restored.restore_changes(record).unwrap();
        }
        assert_eq!(tables(&restored), tables(&count));
        let ten: Vec<_> = (0..10)
            .map(|key| (key, 3_000))
            .chain([(1 << 40, 1)])
            .collect();
        assert_eq!(tables(&restored), vec![(0, vec![(4, 2), (5, 1)]), (1, ten)]);
    }

    /// A window built untracked (a run without snapshots) counts the
    /// same, refuses to give changes it did not keep, and still takes a
    /// whole snapshot.
    #[test]
    fn an_untracked_window_refuses_changes_but_snapshots_whole() {
        let mut count = TumblingCount::new(10).untracked();
        for key in 0..1_000 {
            count.table_for(3).unwrap().add(key % 100, 1);
        }
        assert!(!count.open[0].1.is_tracked());
        let error = count.snapshot_changes(1, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("keep no changes"), "{error}");
        let mut restored = TumblingCount::new(10);
        restored.restore(&count.snapshot(1).unwrap()).unwrap();
        let rows: Vec<_> = (0..100).map(|key| (key, 10)).collect();
        assert_eq!(tables(&restored), vec![(0, rows)]);
    }

    /// One epoch's record with swept bases: its changes, then a slice.
    fn sweep_record(count: &mut TumblingCount, begin: bool, left: u64) -> (Vec<u8>, bool) {
        let mut bytes = Vec::new();
        count.snapshot_changes(0, &mut bytes).unwrap();
        let complete = count.sweep_base(begin, left, &mut bytes).unwrap();
        (bytes, complete)
    }

    /// Applies `records` to an empty window, in order.
    fn rebuilt(records: &[Vec<u8>]) -> TumblingCount {
        let mut restored = TumblingCount::new(10);
        for record in records {
            restored.restore_changes(record).unwrap();
        }
        restored
    }

    #[test]
    fn a_sweep_spread_over_epochs_rebuilds_the_state_from_nothing() {
        let mut count = TumblingCount::new(10);
        for key in 0..5_000 {
            count.table_for(3).unwrap().add(key, 1 + key % 5);
            count.table_for(13).unwrap().add(key, 1);
        }
        // Changes before the sweep are not needed by one that completes.
        let _ = sweep_record(&mut count, false, 0);
        let mut records = Vec::new();
        for left in (1..=4).rev() {
            count.table_for(13).unwrap().add(left, 1);
            let (record, complete) = sweep_record(&mut count, left == 4, left);
            // A quarter of the state per epoch; the last takes the rest.
            assert_eq!(complete, left == 1, "complete with {left} epochs left");
            records.push(record);
        }
        assert!(tables(&rebuilt(&records)) == tables(&count), "not rebuilt");
        // Its first slice sizes the tables as they were: keys of one range
        // of slots never crowd into a smaller table.
        // (Window 0: the first slice is a part of its slots.)
        let first = rebuilt(&records[..1]);
        assert!(first.open[0].1.capacity() >= count.open[0].1.capacity());
        // Without the sweep's first record, keys swept only there are lost.
        assert!(
            tables(&rebuilt(&records[1..])) != tables(&count),
            "rebuilt without it"
        );
        // After it, changes go on as usual, with no slice.
        count.table_for(14).unwrap().add(8, 1);
        let (after, _) = sweep_record(&mut count, false, 0);
        let (changes, rest) = Changes::parse(&after).unwrap();
        assert!(rest.is_empty(), "a slice after the sweep completed");
        assert_eq!(
            changes.windows.iter().map(|(.., p)| p.len()).sum::<usize>(),
            changes.pair_bytes,
            "one pair"
        );
    }

    #[test]
    fn a_sweep_survives_windows_closing_and_tables_growing() {
        let mut count = TumblingCount::new(10);
        for key in 0..5_000 {
            count.table_for(3).unwrap().add(key, 1 + key % 5);
            count.table_for(13).unwrap().add(key, 1);
        }
        let mut records = Vec::new();
        let (first, complete) = sweep_record(&mut count, true, 4);
        assert!(!complete);
        records.push(first);
        // Window 0 closes (as `on_watermark` does), window 1 grows (its
        // keys move: its sweep starts over), a new window opens.
        count.open.remove(0);
        count.closed_below = 1;
        count.current = None;
        for key in 5_000..40_000 {
            count.table_for(14).unwrap().add(key, 2);
        }
        count.table_for(25).unwrap().add(1, 1);
        for left in (1..=3).rev() {
            count.table_for(14).unwrap().add(left, 1);
            let (record, complete) = sweep_record(&mut count, false, left);
            assert_eq!(complete, left == 1, "complete with {left} epochs left");
            records.push(record);
        }
        let restored = rebuilt(&records);
        assert!(tables(&restored) == tables(&count), "not rebuilt");
        assert_eq!(restored.closed_below, 1);
    }

    #[test]
    fn windows_are_found_in_order() {
        let mut count = TumblingCount::new(10);
        for ts in [35, 12, 27, 13] {
            count.table_for(ts).unwrap().add(1, 1);
        }
        let windows: Vec<u64> = count.open.iter().map(|(window, _)| *window).collect();
        assert_eq!(windows, vec![1, 2, 3]);
    }
}
