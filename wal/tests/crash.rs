//! Crash simulation: thousands of seeded runs against the in-memory storage.
//! Each run appends and commits random records (rolling segments often),
//! loses power at a random operation — possibly during recovery itself —
//! and recovers from a randomly torn disk image, several rounds in a row.
//! After every recovery: every acknowledged record is present, intact and in
//! order, and every record present beyond that is exactly what was appended.

mod common;

use common::{assert_prefix, random_rec, read_all, small_config, storage, Rec};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{MemStorage, OpenError, RecoveryError, SyncLog};

const RUNS: u64 = 2000;
const ROUNDS: usize = 3;

/// Opens after a crash, re-crashing recovery itself if the budget says so.
fn recover(mem: &MemStorage, rng: &mut SplitMix) -> (MemStorage, SyncLog) {
    let mut img = mem.crash_image(rng.next_u64());
    loop {
        img.crash_after(1 + rng.below(6));
        match SyncLog::open(storage(&img), &small_config()) {
            Ok((log, rep)) => {
                if std::env::var_os("WAL_STATS").is_some() {
                    eprintln!(
                        "torn={} segs={} tmp={}",
                        rep.torn.is_some(),
                        rep.segments,
                        rep.removed_tmp.len()
                    );
                }
                return (img, log);
            }
            Err(OpenError::Recovery(RecoveryError::Io(e))) if img.has_crashed() => {
                let _ = e;
                img = img.crash_image(rng.next_u64());
            }
            Err(e) => panic!("recovery failed: {e}"),
        }
    }
}

/// One round of appends until power loss; returns the LSN bound acked.
fn run_round(log: &mut SyncLog, model: &mut Vec<Rec>, rng: &mut SplitMix) -> usize {
    let mut acked = log.durable().0 as usize;
    loop {
        if rng.below(4) == 0 {
            match log.commit() {
                Ok(d) => acked = d.0 as usize,
                Err(_) => return acked,
            }
        } else {
            let r = random_rec(rng);
            match log.append(r.kind, r.epoch, &r.payload) {
                Ok(lsn) => {
                    assert_eq!(lsn.0 as usize, model.len());
                    model.push(r);
                }
                Err(e) => panic!("append refused before any failure: {e}"),
            }
        }
    }
}

fn one_run(seed: u64) {
    let mut rng = SplitMix(seed);
    let align = if seed % 2 == 0 { 512 } else { 4096 };
    let mut mem = MemStorage::new(align, seed);
    let mut model: Vec<Rec> = Vec::new();
    let (_, mut log) = {
        let (l, _) = SyncLog::open(storage(&mem), &small_config()).expect("fresh open");
        ((), l)
    };
    for round in 0..ROUNDS {
        mem.crash_after(1 + rng.below(40));
        let acked = run_round(&mut log, &mut model, &mut rng);
        drop(log);
        let (img, l) = recover(&mem, &mut rng);
        mem = img;
        log = l;
        let got = read_all(&log);
        let what = format!("seed {seed} round {round}");
        assert!(
            got.len() >= acked,
            "{what}: acked {acked} records, recovered {}",
            got.len()
        );
        assert_prefix(&got, &model, &what);
        assert_eq!(log.next_lsn().0 as usize, got.len(), "{what}: next lsn");
        model.truncate(got.len());
    }
}

#[test]
fn crash_at_random_points_keeps_every_acked_record() {
    for seed in 0..RUNS {
        one_run(seed);
    }
}
