//! Recycled segments (`docs/wal-format.md` §12): retention hands retired
//! segment files to the log, which turns them into spares (header region
//! zeroed and synced, renamed, directory synced) that later rolls write
//! their header into. Their old records stay in place behind the new ones.
//!
//! - Seeded runs against the in-memory storage, as `crash.rs`, with
//!   retention between commits: power lost at random operations (during
//!   recycling, rolls onto spares, recovery itself), every acknowledged
//!   record at or above the retention cut is still there, intact and in
//!   order, and rolls did land on recycled files.
//! - One fixed sequence (retire two segments, then append across two rolls
//!   onto the recycled files) crashed at every one of its operations, each
//!   with several torn images.
//! - The threaded log on a real directory: fresh spares (written with
//!   zeros) and recycled ones are used, and `inspect` shows both.

mod common;

use common::{append_random, assert_prefix, payload, small_config, storage, Rec};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{inspect, Config, Lsn, MemStorage, Record, RecordType, SyncLog, Wal};

/// Opens after a crash, re-crashing recovery itself now and then.
fn recover(mem: &MemStorage, rng: &mut SplitMix) -> (MemStorage, SyncLog) {
    let mut img = mem.crash_image(rng.next_u64());
    loop {
        img.crash_after(1 + rng.below(8));
        match SyncLog::open(storage(&img), &small_config()) {
            Ok((log, _)) => return (img, log),
            Err(_) if img.has_crashed() => img = img.crash_image(rng.next_u64()),
            Err(e) => panic!("recovery failed: {e}"),
        }
    }
}

/// Every record of `log` from its first LSN on.
fn records(log: &SyncLog) -> Vec<Record> {
    log.read_from(log.first_lsn())
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("records read back intact")
}

/// Checks `log` against the model: it starts at or below `kept` (the
/// retention cut: records from it on were never given up), holds every
/// acknowledged record, and what it holds is what was appended.
fn check(log: &SyncLog, model: &[Rec], kept: u64, acked: usize, what: &str) {
    let first = log.first_lsn().0;
    assert!(
        first <= kept,
        "{what}: log starts at {first}, cut was {kept}"
    );
    let got = records(log);
    let end = first as usize + got.len();
    assert!(end >= acked, "{what}: acked {acked}, recovered up to {end}");
    assert_prefix_from(&got, model, first as usize, what);
}

fn assert_prefix_from(got: &[Record], model: &[Rec], first: usize, what: &str) {
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.lsn, Lsn((first + i) as u64), "{what}: lsn");
    }
    let shifted: Vec<Record> = got
        .iter()
        .enumerate()
        .map(|(i, g)| Record {
            lsn: Lsn(i as u64),
            ..g.clone()
        })
        .collect();
    assert_prefix(&shifted, &model[first..], what);
}

/// Appends, commits and retires at random until power is lost; returns
/// the acknowledged bound and the highest retention cut asked for.
fn run_round(log: &mut SyncLog, model: &mut Vec<Rec>, kept: &mut u64, rng: &mut SplitMix) -> usize {
    let mut acked = log.durable().0 as usize;
    loop {
        match rng.below(12) {
            0..=2 => match log.commit() {
                Ok(d) => acked = d.0 as usize,
                Err(_) => return acked,
            },
            3 => {
                // Keep about the last 30 records: several segments retire
                // as the log rolls, and are recycled into spares.
                let cut = (acked as u64).saturating_sub(30).max(*kept);
                if log.delete_below(Lsn(cut)).is_err() {
                    return acked;
                }
                *kept = cut;
            }
            _ => append_random(log, model, rng),
        }
    }
}

#[test]
fn crash_at_random_points_with_recycling_keeps_every_acked_record() {
    let mut used = 0;
    for seed in 0..1500u64 {
        let mut rng = SplitMix(seed);
        let align = if seed % 2 == 0 { 512 } else { 4096 };
        let mut mem = MemStorage::new(align, seed);
        let mut model: Vec<Rec> = Vec::new();
        let mut kept = 0;
        let (mut log, _) = SyncLog::open(storage(&mem), &small_config()).expect("fresh open");
        for round in 0..4 {
            mem.crash_after(20 + rng.below(200));
            let acked = run_round(&mut log, &mut model, &mut kept, &mut rng);
            used += log.spare_counts().0;
            drop(log);
            let (img, l) = recover(&mem, &mut rng);
            (mem, log) = (img, l);
            let what = format!("seed {seed} round {round}");
            check(&log, &model, kept, acked, &what);
            model.truncate(log.next_lsn().0 as usize);
        }
    }
    assert!(used > 1000, "only {used} rolls landed on recycled segments");
}

/// The fixed sequence: a log of several segments; retire the two oldest;
/// append across two rolls (onto the recycled files) and commit.
fn sequence(mem: &MemStorage, model: &mut Vec<Rec>) -> (SyncLog, u64) {
    let (mut log, _) = SyncLog::open(storage(mem), &small_config()).expect("fresh open");
    let mut rng = SplitMix(7);
    let mut fill = |log: &mut SyncLog, model: &mut Vec<Rec>, n: usize| {
        for _ in 0..n {
            let r = Rec {
                epoch: 1,
                kind: RecordType::new(1),
                payload: payload(rng.next_u64(), 3000),
            };
            log.append(r.kind, r.epoch, &r.payload)
                .expect("append before the crash point");
            model.push(r);
        }
    };
    // 3000-byte records, 64 KiB segments: about 20 per segment.
    fill(&mut log, model, 80);
    log.commit().expect("setup commit");
    assert!(log.first_lsn() == Lsn(0));
    (log, 45)
}

#[test]
fn a_crash_at_every_step_of_recycling_and_of_rolling_onto_a_spare() {
    // Count the sequence's operations once, without a crash.
    let mem = MemStorage::new(4096, 11);
    let mut model = Vec::new();
    let (mut log, cut) = sequence(&mem, &mut model);
    let start = mem.ops();
    assert_eq!(log.delete_below(Lsn(cut)).expect("retire"), 2);
    let r = payload(99, 3000);
    for _ in 0..50 {
        log.append(RecordType::new(1), 2, &r).expect("append");
    }
    log.commit().expect("commit");
    assert_eq!(
        log.spare_counts().0,
        2,
        "two rolls used the recycled files: {:?}",
        log.spare_counts()
    );
    let steps = mem.ops() - start;
    assert!(steps >= 10, "{steps} operations");
    drop(log);

    for step in 1..=steps {
        for image in 0..6 {
            let mem = MemStorage::new(4096, 11);
            let mut model = Vec::new();
            let (mut log, cut) = sequence(&mem, &mut model);
            let acked = log.durable().0 as usize;
            mem.crash_after(step);
            let mut acked_after = acked;
            if log.delete_below(Lsn(cut)).is_ok() {
                let mut ok = true;
                for _ in 0..50 {
                    let rec = Rec {
                        epoch: 2,
                        kind: RecordType::new(1),
                        payload: r.clone(),
                    };
                    if log.append(rec.kind, rec.epoch, &rec.payload).is_err() {
                        ok = false;
                        break;
                    }
                    model.push(rec);
                }
                if ok {
                    if let Ok(d) = log.commit() {
                        acked_after = d.0 as usize;
                    }
                }
            }
            drop(log);
            let mut rng = SplitMix(step * 100 + image);
            let (_, log) = recover(&mem, &mut rng);
            let what = format!("crash at step {step} of {steps}, image {image}");
            check(&log, &model, cut, acked_after, &what);
        }
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "weir-wal-recycle-{}-{}",
        std::process::id(),
        SplitMix(std::process::id() as u64).next_u64()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_threaded_log_rolls_onto_fresh_and_recycled_spares_and_inspect_shows_them() {
    let dir = tempdir();
    let cfg = Config {
        segment_bytes: 64 << 10,
        ..Config::default()
    };
    let (wal, _) = Wal::open_dir(&dir, &cfg).expect("open");
    let record = payload(5, 1000);
    let mut last = Lsn(0);
    // About 60 records per segment: 40 segments, retention keeping about
    // the last two.
    for i in 0..2400u64 {
        last = wal.append(RecordType::new(1), i, &record).expect("append");
        if i % 20 == 19 {
            wal.wait_durable(last).expect("durable");
            wal.delete_below(Lsn(last.0.saturating_sub(120)))
                .expect("retention");
        }
    }
    wal.wait_durable(last).expect("durable");
    let (used, missed) = wal.spare_counts();
    // About 40 rolls; a spare is ready for most. Fewer than 10 would
    // mean the spares are not being made (under a loaded CI machine the
    // spare thread may lag behind a few rolls, which then create their
    // files).
    assert!(
        used >= 10,
        "{used} of {} rolls landed on spares",
        used + missed
    );
    wal.close().expect("close");

    let report = inspect(&dir).expect("inspect");
    assert!(!report.is_refused(), "{report}");
    let text = report.to_string();
    assert!(text.contains("recycled"), "{text}");
    let recycled = report
        .analysis
        .segments
        .iter()
        .filter(|s| s.header.recycled)
        .count();
    assert!(recycled >= 1, "{text}");

    // Reopened: every record kept is there, spares are removed, and the
    // log goes on.
    let (wal, rep) = Wal::open_dir(&dir, &cfg).expect("reopen");
    assert_eq!(rep.next_lsn, Lsn(last.0 + 1));
    let got: Vec<_> = wal
        .read_from(wal.first_lsn())
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("intact");
    assert!(got.len() >= 120, "{} records kept", got.len());
    assert!(got.iter().all(|r| r.payload == record));
    assert_eq!(got.last().map(|r| r.lsn), Some(last));
    let next = wal
        .append(RecordType::new(1), 0, &record)
        .expect("append after reopen");
    wal.wait_durable(next).expect("durable");
    wal.close().expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}
