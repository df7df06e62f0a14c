//! Crash simulation: thousands of seeded runs against the in-memory storage.
//! Each run appends and commits random records (rolling segments often),
//! loses power at a random operation — possibly during recovery itself —
//! and recovers from a randomly torn disk image, several rounds in a row.
//! After every recovery: every acknowledged record is present, intact and in
//! order, and every record present beyond that is exactly what was appended.
//!
//! Missing segments: crashed logs with a segment deleted from the middle,
//! the newest deleted, or the oldest deleted (as retention does). The first
//! two are refused, naming the segment, whenever anything could have been
//! lost; the last is no gap. A log with every segment deleted is refused
//! when its owner knows an LSN that was durable (`durable_at_least`).

mod common;

use common::{append_random, assert_prefix, read_all, small_config, storage, Rec};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{Gap, MemStorage, OpenError, RecoveryError, Storage, SyncLog};

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
                        "torn={} segs={} tmp={} early={}",
                        rep.torn.is_some(),
                        rep.segments,
                        rep.removed_tmp.len(),
                        rep.removed_early_successor.is_some()
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
            append_random(log, model, rng);
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

/// A log after random appends, commits and power losses, recovered
/// `rounds - 1` times as in [`one_run`], then crashed once more: the raw
/// disk image (not yet recovered), the model of what was appended, and how
/// many records were acknowledged.
fn crashed_log(seed: u64, rounds: usize) -> (MemStorage, Vec<Rec>, usize) {
    let mut rng = SplitMix(seed);
    let mut mem = MemStorage::new(512, seed);
    let mut model: Vec<Rec> = Vec::new();
    let (mut log, _) = SyncLog::open(storage(&mem), &small_config()).expect("fresh open");
    for round in 0..rounds {
        mem.crash_after(20 + rng.below(60));
        let acked = run_round(&mut log, &mut model, &mut rng);
        drop(log);
        if round + 1 == rounds {
            return (mem.crash_image(rng.next_u64()), model, acked);
        }
        let (img, l) = recover(&mem, &mut rng);
        model.truncate(l.next_lsn().0 as usize);
        (mem, log) = (img, l);
    }
    unreachable!("returns in the last round")
}

/// The segment files of `mem`, oldest first.
fn segment_files(mem: &MemStorage) -> Vec<String> {
    let mut names: Vec<String> = mem
        .list()
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

fn number(name: &str) -> u64 {
    name.trim_end_matches(".wal")
        .parse()
        .expect("segment number")
}

/// Whether segment file `name` holds nothing after its header region.
fn holds_nothing(mem: &MemStorage, name: &str) -> bool {
    let data = mem.contents(name).expect("file");
    data.iter()
        .skip(weir_wal::limits::SEGMENT_HEADER_REGION as usize)
        .all(|&b| b == 0)
}

/// Opens `img` expecting a refusal for missing segment `name`; returns the
/// gap.
fn refused_for(img: &MemStorage, name: &str, what: &str) -> Gap {
    match SyncLog::open(storage(img), &small_config()) {
        Err(OpenError::Recovery(RecoveryError::Gap(gap))) => {
            let message = OpenError::Recovery(RecoveryError::Gap(gap.clone())).to_string();
            assert!(message.contains(name), "{what}: {message}");
            assert_eq!(gap.first_missing, number(name), "{what}: {message}");
            gap
        }
        Err(e) => panic!("{what}: refused for another reason: {e}"),
        Ok(_) => panic!("{what}: a log without {name} opened"),
    }
}

/// Goal: a segment deleted from the middle of a log is refused at open,
/// naming it and the LSNs lost. Method: crashed logs of several segments
/// (raw crash images, so torn tails, torn rolls and early successors are
/// among them), one middle segment deleted each.
#[test]
fn a_missing_middle_segment_is_refused() {
    let mut checked = 0;
    for seed in 0..300 {
        let (img, _, _) = crashed_log(seed, 2);
        let names = segment_files(&img);
        if names.len() < 3 {
            continue;
        }
        let k = 1 + (seed as usize) % (names.len() - 2);
        img.lose(&names[k]);
        let what = format!("seed {seed}: {} deleted of {names:?}", names[k]);
        let gap = refused_for(&img, &names[k], &what);
        assert_eq!(
            gap.before.as_ref().map(|(_, n)| *n),
            Some(number(&names[k + 1])),
            "{what}"
        );
        assert!(
            gap.from_lsn.is_some() && gap.to_lsn > gap.from_lsn,
            "{what}: {gap:?}"
        );
        checked += 1;
    }
    assert!(checked > 100, "only {checked} logs had a middle segment");
}

/// Goal: a log whose newest segment was deleted is refused at open whenever
/// that segment could have held anything; when it held nothing (an early
/// successor of a roll that a crash cut short) the log may open, but every
/// acknowledged record is there. Method: crashed logs, newest segment
/// deleted, before and after a recovery.
#[test]
fn a_missing_newest_segment_is_refused() {
    let (mut refused, mut empty) = (0, 0);
    for seed in 0..400 {
        let (img, model, acked) = crashed_log(seed, 2);
        let recovered = seed % 2 == 1;
        let img = if recovered {
            drop(SyncLog::open(storage(&img), &small_config()).expect("recovers"));
            img.crash_image(seed)
        } else {
            img
        };
        let names = segment_files(&img);
        if names.len() < 2 {
            continue;
        }
        let newest = names.last().expect("segments").clone();
        let what = format!("seed {seed} (recovered first: {recovered}): {newest} deleted");
        if !holds_nothing(&img, &newest) || recovered {
            img.lose(&newest);
            let gap = refused_for(&img, &newest, &what);
            assert_eq!(gap.before, None, "{what}");
            refused += 1;
            continue;
        }
        img.lose(&newest);
        match SyncLog::open(storage(&img), &small_config()) {
            Err(OpenError::Recovery(RecoveryError::Gap(_))) => refused += 1,
            Err(e) => panic!("{what}: {e}"),
            Ok((log, _)) => {
                let got = read_all(&log);
                assert!(
                    got.len() >= acked,
                    "{what}: acked {acked}, read {}",
                    got.len()
                );
                assert_prefix(&got, &model, &what);
                empty += 1;
            }
        }
    }
    assert!(
        refused > 150 && empty > 0,
        "refused {refused}, empty {empty}"
    );
}

/// Goal: deleting the oldest segments, as retention does, is no gap: the
/// log opens and every record from its new first LSN on is intact.
#[test]
fn deleting_the_oldest_segments_is_not_a_gap() {
    let mut checked = 0;
    for seed in 0..200 {
        let (img, model, _) = crashed_log(seed, 2);
        let names = segment_files(&img);
        if names.len() < 2 {
            continue;
        }
        let cut = 1 + (seed as usize) % (names.len() - 1);
        for name in &names[..cut] {
            img.lose(name);
        }
        let what = format!("seed {seed}: {cut} oldest of {names:?} deleted");
        let (log, _) =
            SyncLog::open(storage(&img), &small_config()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let first = log.first_lsn();
        let got = log
            .read_from(first)
            .expect("reader")
            .collect::<Result<Vec<_>, _>>()
            .expect("records read back intact");
        for record in &got {
            let m = &model[record.lsn.0 as usize];
            assert!(
                record.payload == m.payload && record.epoch == m.epoch,
                "{what}: {:?}",
                record.lsn
            );
        }
        assert_eq!(log.next_lsn().0, first.0 + got.len() as u64, "{what}");
        checked += 1;
    }
    assert!(checked > 100, "only {checked} logs had several segments");
}

/// Goal: a log that ends below the LSN its owner knows was durable
/// (`Config::durable_at_least`, e.g. a commit record) is refused before
/// anything is repaired, and opens when nothing is missing. Method:
/// crashed logs, their newest segment deleted or not.
#[test]
fn a_log_that_ends_below_a_known_durable_lsn_is_refused() {
    for seed in 0..50 {
        let (img, _, acked) = crashed_log(seed, 2);
        let config = |durable: usize| weir_wal::Config {
            durable_at_least: Some(weir_wal::Lsn(durable as u64)),
            ..small_config()
        };
        let what = format!("seed {seed}");
        let names = segment_files(&img);
        for name in &names {
            img.lose(name);
        }
        match SyncLog::open(storage(&img), &config(acked.max(1))) {
            Err(OpenError::Recovery(RecoveryError::EndsEarly { ends, durable })) => {
                assert_eq!((ends.0, durable.0), (0, acked.max(1) as u64), "{what}");
            }
            Err(e) => panic!("{what}: refused for another reason: {e}"),
            Ok(_) => panic!("{what}: a log without its segments opened"),
        }
        assert!(
            segment_files(&img).is_empty(),
            "{what}: the refusal wrote a segment"
        );
    }
    for seed in 0..50 {
        let (img, _, acked) = crashed_log(seed, 2);
        let config = weir_wal::Config {
            durable_at_least: Some(weir_wal::Lsn(acked as u64)),
            ..small_config()
        };
        let (log, _) = SyncLog::open(storage(&img), &config)
            .unwrap_or_else(|e| panic!("seed {seed}: nothing is missing: {e}"));
        assert!(log.next_lsn().0 as usize >= acked, "seed {seed}");
    }
}
