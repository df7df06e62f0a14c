//! The threaded `Wal`'s chunk hand-off: appends through `append` and
//! `append_batch` (records larger than a chunk, segment rolls, many chunks
//! per call) read back exactly as appended, in LSN order; complete chunks
//! are committed by the writer without any flush or timer.

mod common;

use common::{random_rec, small_config, storage, Rec};
use std::time::{Duration, Instant};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{Config, Entry, Lsn, MemStorage, RecordType, SyncLog, Wal};

fn cfg() -> Config {
    Config {
        batch_bytes: 4 << 10,
        ..small_config()
    }
}

#[test]
fn append_and_append_batch_read_back_in_order() {
    let mem = MemStorage::new(512, 11);
    let mut rng = SplitMix(5);
    let mut model: Vec<Rec> = Vec::new();
    {
        let (wal, _) = Wal::open(storage(&mem), &cfg()).expect("open");
        let mut last = Lsn(0);
        for round in 0..300 {
            let n = 1 + rng.below(if round % 3 == 0 { 200 } else { 4 }) as usize;
            let recs: Vec<Rec> = (0..n).map(|_| random_rec(&mut rng)).collect();
            if n == 1 {
                let r = &recs[0];
                last = wal.append(r.kind, r.epoch, &r.payload).expect("append");
            } else {
                let entries: Vec<Entry<'_>> = recs
                    .iter()
                    .map(|r| Entry {
                        kind: r.kind,
                        epoch: r.epoch,
                        payload: &r.payload,
                    })
                    .collect();
                last = wal.append_batch(&entries).expect("batch").expect("last");
            }
            model.extend(recs);
            assert_eq!(last, Lsn(model.len() as u64 - 1));
        }
        wal.wait_durable(last).expect("durable");
        wal.close().expect("close");
    }
    let (log, rep) = SyncLog::open(storage(&mem), &cfg()).expect("reopen");
    assert_eq!(rep.next_lsn, Lsn(model.len() as u64));
    assert!(rep.torn.is_none() && rep.segments > 3, "{rep:?}");
    let got = common::read_all(&log);
    assert_eq!(got.len(), model.len());
    common::assert_prefix(&got, &model, "threaded");
}

#[test]
fn complete_chunks_commit_without_flush() {
    let mem = MemStorage::new(512, 12);
    let (wal, _) = Wal::open(storage(&mem), &cfg()).expect("open");
    let first = wal.append(RecordType::INPUT, 0, &[7; 100]).expect("append");
    // Three chunks' worth: the first chunks are complete and handed off.
    let entries = vec![
        Entry {
            kind: RecordType::INPUT,
            epoch: 0,
            payload: &[9; 100],
        };
        100
    ];
    wal.append_batch(&entries).expect("batch");
    let t0 = Instant::now();
    while !wal.is_durable(first).expect("no failure") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "complete chunk never committed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    wal.close().expect("close");
}

#[test]
fn sync_observer_sees_every_write_and_sync() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let mem = MemStorage::new(512, 3);
    let (syncs, bytes, nanos) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let observer = weir_wal::SyncObserver::new({
        let (syncs, bytes, nanos) = (syncs.clone(), bytes.clone(), nanos.clone());
        move |latency, written| {
            syncs.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(written, Ordering::Relaxed);
            nanos.fetch_add(latency.as_nanos() as u64, Ordering::Relaxed);
        }
    });
    let config = Config {
        on_sync: Some(observer.clone()),
        ..cfg()
    };
    assert_eq!(config.clone(), config);
    let (wal, _) = Wal::open(storage(&mem), &config).expect("open");
    let mut payload_bytes = 0u64;
    let mut last = Lsn(0);
    for i in 0..50u64 {
        let payload = vec![i as u8; 100 + i as usize];
        payload_bytes += payload.len() as u64;
        last = wal
            .append(RecordType::EPOCH_COMMIT, i, &payload)
            .expect("append");
        if i % 10 == 9 {
            wal.wait_durable(last).expect("durable");
        }
    }
    wal.wait_durable(last).expect("durable");
    wal.close().expect("close");
    // At least one sync per wait, and every payload byte written at least
    // once (chunks rewrite their first block and are padded).
    assert!(syncs.load(Ordering::Relaxed) >= 5, "{syncs:?}");
    assert!(bytes.load(Ordering::Relaxed) >= payload_bytes, "{bytes:?}");
    assert!(bytes.load(Ordering::Relaxed) % 512 == 0, "{bytes:?}");
}
