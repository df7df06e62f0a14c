//! The real file layer: O_DIRECT + io_uring appends through the threaded
//! `Wal` across several segment rolls, reopen, replay from a position,
//! retention, and `inspect` (read-only) on a torn tail. Runs in the cargo
//! target directory (a real disk file system; tmpfs has no O_DIRECT).

use std::fs::OpenOptions;
use std::path::PathBuf;
use weir_wal::{inspect, Config, Lsn, RecordType, Verdict, Wal};

fn dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tempfile::tempdir_in(base).expect("temp dir")
}

fn cfg() -> Config {
    Config {
        segment_bytes: 64 << 10,
        batch_bytes: 8 << 10,
        ..Config::default()
    }
}

fn rec(i: u64) -> Vec<u8> {
    format!("record {i} ")
        .repeat(1 + (i % 13) as usize)
        .into_bytes()
}

/// Appends `rec(i)` for every `i` of `range` (epoch `i / 100`) and waits
/// until they are durable.
fn append_durable(wal: &Wal, range: std::ops::Range<u64>) {
    let mut last = Lsn(0);
    for i in range {
        last = wal
            .append(RecordType::INPUT, i / 100, &rec(i))
            .expect("append");
    }
    wal.wait_durable(last).expect("durable");
}

#[test]
fn real_files_roundtrip_replay_retention_inspect() {
    let d = dir();
    let n = 3000u64;
    {
        let (wal, rep) = Wal::open_dir(d.path(), &cfg()).expect("open");
        assert_eq!(rep.next_lsn, Lsn(0));
        append_durable(&wal, 0..n);
        wal.close().expect("close");
    }
    let (wal, rep) = Wal::open_dir(d.path(), &cfg()).expect("reopen");
    assert_eq!(rep.next_lsn, Lsn(n));
    assert!(rep.segments > 3, "rolled: {} segments", rep.segments);
    assert!(rep.torn.is_none());
    let from = 1234;
    for (k, r) in wal.read_from(Lsn(from)).expect("reader").enumerate() {
        let r = r.expect("record");
        let i = from + k as u64;
        assert_eq!((r.lsn, r.epoch, r.payload), (Lsn(i), i / 100, rec(i)));
    }
    let deleted = wal.delete_below(Lsn(2000)).expect("retention");
    assert!(deleted > 0);
    assert!(
        wal.read_from(Lsn(0)).is_err(),
        "deleted data is reported, not skipped"
    );
    assert_eq!(
        wal.read_from(Lsn(2000)).expect("reader").count() as u64,
        n - 2000
    );
    let last = wal
        .append(RecordType::EPOCH_COMMIT, 99, b"commit")
        .expect("append");
    wal.wait_durable(last).expect("durable");
    wal.close().expect("close");

    // Tear the tail: garbage after the last record of the last segment.
    let report = inspect(d.path()).expect("inspect");
    assert_eq!(report.verdict(), &Verdict::Clean);
    let name = report
        .analysis
        .segments
        .last()
        .map(|s| s.name.clone())
        .expect("segment");
    let end = report
        .analysis
        .segments
        .last()
        .map(|s| s.end.offset())
        .expect("end");
    let f = OpenOptions::new()
        .write(true)
        .open(d.path().join(&name))
        .expect("open segment");
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xAB; 100], end).expect("write garbage");
    drop(f);
    let report = inspect(d.path()).expect("inspect");
    let text = report.to_string();
    assert!(
        matches!(report.verdict(), Verdict::Torn(t) if t.offset == end && t.dropped_bytes == 100),
        "{text}"
    );
    assert!(text.contains("torn tail") && text.contains(&name), "{text}");
    // inspect is read-only: the garbage is still there.
    assert!(matches!(
        inspect(d.path()).expect("inspect").verdict(),
        Verdict::Torn(_)
    ));
    let (wal, rep) = Wal::open_dir(d.path(), &cfg()).expect("open repairs");
    assert_eq!(rep.torn.map(|t| t.dropped_bytes), Some(100));
    assert_eq!(wal.durable_lsn(), Lsn(n + 1));
    drop(wal);
    assert_eq!(
        inspect(d.path()).expect("inspect").verdict(),
        &Verdict::Clean
    );
}

#[test]
fn alignment_is_queried() {
    let d = dir();
    let f = std::fs::File::create(d.path().join("probe")).expect("create");
    let a = weir_wal::storage::file::dio_alignment(&f, &d.path().join("probe")).expect("alignment");
    assert!(
        a.is_power_of_two() && (512..=4096).contains(&a),
        "alignment {a}"
    );
}

/// Retention a segment at a time (`delete_some_below`) while the writer
/// rolls new segments: each call deletes at most what it is asked, the
/// oldest first, and the list the writer appends to stays whole (the
/// deletion holds it only to copy it and drop what it deleted), so every
/// record from the cut on reads back, in order, after a reopen.
#[test]
fn segments_deleted_a_few_at_a_time_while_the_writer_rolls_leave_no_gap() {
    let d = dir();
    let (wal, _) = Wal::open_dir(d.path(), &cfg()).expect("open");
    append_durable(&wal, 0..3000);
    let cut = Lsn(2500);
    let total = std::thread::scope(|scope| {
        let writer = scope.spawn(|| append_durable(&wal, 3000..9000));
        let mut total = 0;
        loop {
            let deleted = wal.delete_some_below(cut, 1).expect("retention");
            assert!(deleted <= 1, "asked for one, deleted {deleted}");
            total += deleted;
            if deleted == 0 {
                break;
            }
        }
        writer.join().expect("writer");
        total
    });
    assert!(total > 2, "deleted {total} segments");
    assert!(wal.first_lsn() <= cut && wal.first_lsn() > Lsn(0));
    wal.close().expect("close");
    let (wal, rep) = Wal::open_dir(d.path(), &cfg()).expect("reopen");
    assert_eq!(rep.next_lsn, Lsn(9000));
    assert_eq!(
        inspect(d.path()).expect("inspect").verdict(),
        &Verdict::Clean
    );
    for (k, r) in wal.read_from(cut).expect("reader").enumerate() {
        let r = r.expect("record");
        let i = cut.0 + k as u64;
        assert_eq!((r.lsn, r.payload), (Lsn(i), rec(i)));
    }
    wal.close().expect("close");
}
