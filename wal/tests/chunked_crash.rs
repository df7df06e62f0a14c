//! Crash simulation of chunked snapshots: the runtime writes a snapshot
//! larger than one record as `CONTINUED` parts followed by its last part
//! under its own type (`OPERATOR_STATE`), one right after the other
//! (`docs/wal-format.md` §11), and bases of incremental snapshots are the
//! largest of them. Seeded runs append such chunked records between small
//! ones, with commits, and lose power at a random operation, often in the
//! middle of a chunked record; recovery reads the log back from a randomly
//! torn image.
//!
//! After every recovery, joining the parts as the runtime's recovery does
//! (each `CONTINUED` payload appended to a buffer, which the next record of
//! another type takes as its head) must give: every acknowledged record;
//! every joined record exactly the snapshot appended; and at most one
//! trailing run of parts without its last part, the snapshot the crash cut,
//! which recovery discards. The next chunked record appended after the
//! recovery joins whole.

mod common;

use common::{assert_prefix, payload, read_all, small_config, storage, Rec};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{OpenError, Record, RecordType, RecoveryError, SyncLog};

const RUNS: u64 = 400;
const ROUNDS: usize = 3;
/// The largest part, as the runtime's 16 MiB scaled to the small test
/// segments (64 KiB).
const PART_MAX: usize = 12_000;

/// A snapshot of `len` bytes as the runtime appends it: its parts.
fn chunked(tag: u64, len: usize, epoch: u64) -> (Vec<u8>, Vec<Rec>) {
    let whole = payload(tag, len);
    let mut parts: Vec<Rec> = whole
        .chunks(PART_MAX)
        .map(|chunk| Rec {
            epoch,
            kind: RecordType::CONTINUED,
            payload: chunk.to_vec(),
        })
        .collect();
    if let Some(last) = parts.last_mut() {
        last.kind = RecordType::OPERATOR_STATE;
    }
    (whole, parts)
}

/// The runtime's join rule over `records` (`read_shard` in
/// `runtime/src/epoch/recovery.rs`): the joined snapshots in order, and the
/// parts left at the end without their last part.
fn join(records: &[Record]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let (mut joined, mut partial) = (Vec::new(), Vec::new());
    for record in records {
        if record.kind == RecordType::RESTART {
            // Parts a crash cut off from their last part.
            partial.clear();
        } else if record.kind == RecordType::CONTINUED {
            partial.extend_from_slice(&record.payload);
        } else if record.kind == RecordType::OPERATOR_STATE {
            let mut whole = std::mem::take(&mut partial);
            whole.extend_from_slice(&record.payload);
            joined.push(whole);
        } else {
            assert!(
                partial.is_empty(),
                "a record between the parts of a snapshot"
            );
        }
    }
    (joined, partial)
}

fn recover(mem: &weir_wal::MemStorage, rng: &mut SplitMix) -> (weir_wal::MemStorage, SyncLog) {
    let mut img = mem.crash_image(rng.next_u64());
    loop {
        img.crash_after(1 + rng.below(6));
        match SyncLog::open(storage(&img), &small_config()) {
            Ok((log, _)) => return (img, log),
            Err(OpenError::Recovery(RecoveryError::Io(_))) if img.has_crashed() => {
                img = img.crash_image(rng.next_u64());
            }
            Err(e) => panic!("recovery failed: {e}"),
        }
    }
}

/// Appends small records and chunked snapshots, committing now and then,
/// until power fails; returns how many records were acknowledged.
fn run_round(
    log: &mut SyncLog,
    model: &mut Vec<Rec>,
    snapshots: &mut Vec<Vec<u8>>,
    rng: &mut SplitMix,
) -> usize {
    let mut acked = log.durable().0 as usize;
    loop {
        let step = rng.below(6);
        let records: Vec<Rec> = if step == 0 {
            match log.commit() {
                Ok(durable) => acked = durable.0 as usize,
                Err(_) => return acked,
            }
            continue;
        } else if step == 1 {
            let len = PART_MAX + rng.below(4 * PART_MAX as u64) as usize;
            let (whole, parts) = chunked(rng.next_u64(), len, rng.below(1000));
            snapshots.push(whole);
            parts
        } else {
            vec![Rec {
                epoch: rng.below(1000),
                kind: RecordType::SOURCE_POSITIONS,
                payload: payload(rng.next_u64(), rng.below(300) as usize),
            }]
        };
        for record in records {
            match log.append(record.kind, record.epoch, &record.payload) {
                Ok(lsn) => assert_eq!(lsn.0 as usize, model.len()),
                Err(e) => panic!("append refused before any failure: {e}"),
            }
            model.push(record);
        }
    }
}

fn one_run(seed: u64) -> (usize, usize) {
    let mut rng = SplitMix(seed);
    let mut mem = weir_wal::MemStorage::new(if seed % 2 == 0 { 512 } else { 4096 }, seed);
    let (mut log, _) = SyncLog::open(storage(&mem), &small_config()).expect("fresh open");
    let mut model: Vec<Rec> = Vec::new();
    let mut snapshots: Vec<Vec<u8>> = Vec::new();
    let mut cut = 0;
    for round in 0..ROUNDS {
        mem.crash_after(1 + rng.below(60));
        let acked = run_round(&mut log, &mut model, &mut snapshots, &mut rng);
        drop(log);
        let (img, recovered) = recover(&mem, &mut rng);
        (mem, log) = (img, recovered);
        let got = read_all(&log);
        let what = format!("seed {seed} round {round}");
        assert!(
            got.len() >= acked,
            "{what}: acked {acked}, recovered {}",
            got.len()
        );
        assert_prefix(&got, &model, &what);
        model.truncate(got.len());
        let (joined, partial) = join(&got);
        assert_eq!(
            joined,
            snapshots[..joined.len()],
            "{what}: a joined snapshot differs from the one appended"
        );
        if !partial.is_empty() {
            // The crash cut a snapshot: its leading parts are a prefix of
            // it, and recovery discards them; the next one starts clean.
            let next = &snapshots[joined.len()];
            assert!(next.starts_with(&partial), "{what}: a cut snapshot's parts");
            cut += 1;
        }
        // The runtime appends a restart marker after every recovery and
        // waits until it is durable; it voids parts left before it.
        // (A crash while it is written is a crash during recovery, which
        // the other simulation covers; here it is written whole.)
        mem.crash_after(u64::MAX / 2);
        log.append(RecordType::RESTART, 0, &[])
            .expect("restart marker");
        log.commit().expect("the marker is durable");
        model.push(Rec {
            epoch: 0,
            kind: RecordType::RESTART,
            payload: Vec::new(),
        });
        snapshots.truncate(joined.len());
    }
    (cut, snapshots.len())
}

#[test]
fn a_crash_in_the_middle_of_a_chunked_snapshot_loses_only_that_snapshot() {
    let (mut cut, mut whole) = (0, 0);
    for seed in 0..RUNS {
        let (c, w) = one_run(seed);
        cut += c;
        whole += w;
    }
    eprintln!(
        "{RUNS} runs: {cut} crashes inside a chunked snapshot, {whole} snapshots joined whole"
    );
    assert!(
        cut > RUNS as usize / 10,
        "too few crashes landed inside a snapshot: {cut}"
    );
}
