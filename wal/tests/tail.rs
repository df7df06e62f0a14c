//! Tail mutilation: truncate the last segment at every byte offset of its
//! final records, zero its last sector, flip every bit of its last record.
//! Recovery must end at the last valid record every time, report it and the
//! dropped bytes, and leave a log that accepts and keeps new appends.

mod common;

use common::{assert_prefix, build, layout, read_all, small_config, storage, Placed, Rec};
use weir_wal::{MemStorage, RecordType, SyncLog};

/// Opens `img`, checks it recovered exactly `n` records and whether a torn
/// tail was reported, then appends one record and checks it survives reopen.
fn check_recovers_to(img: &MemStorage, model: &[Rec], n: usize, torn: bool, what: &str) {
    let (mut log, rep) =
        SyncLog::open(storage(img), &small_config()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(log.next_lsn().0 as usize, n, "{what}: recovered count");
    assert_eq!(
        rep.torn.is_some(),
        torn,
        "{what}: torn reported {:?}",
        rep.torn
    );
    if let Some(t) = &rep.torn {
        assert!(t.dropped_bytes > 0, "{what}: dropped bytes");
        assert_eq!(
            t.last_valid.map(|p| p.lsn.0 as usize + 1),
            (n > 0).then_some(n),
            "{what}: last valid"
        );
    }
    assert_eq!(
        rep.last_record.map(|p| p.lsn.0 as usize + 1),
        (n > 0).then_some(n),
        "{what}: last record"
    );
    assert_prefix(&read_all(&log), &model[..n], what);
    let lsn = log
        .append(RecordType::INPUT, 7, b"after recovery")
        .expect("append after recovery");
    log.commit().expect("commit after recovery");
    drop(log);
    let (log, rep) = SyncLog::open(storage(img), &small_config()).expect("reopen");
    assert!(rep.torn.is_none(), "{what}: clean after repair");
    let got = read_all(&log);
    assert_prefix(&got[..n], &model[..n], what);
    assert_eq!(got.len(), lsn.0 as usize + 1);
    assert_eq!(got[n].payload, b"after recovery");
}

fn last_file(recs: &[Placed]) -> String {
    recs.last().expect("records").file.clone()
}

/// Number of records wholly (header + payload) below `cut`.
fn valid_below(recs: &[Placed], cut: usize) -> usize {
    recs.iter().take_while(|r| r.offset + r.len <= cut).count()
}

#[test]
fn truncation_at_every_byte_of_the_final_records() {
    let (mem, model) = build(512, 11, 6, 5, 300);
    let recs = layout(&mem);
    assert_eq!(recs.len(), model.len(), "single segment");
    let file = last_file(&recs);
    let start = recs[recs.len() - 3].offset;
    let end = recs.last().map(|r| r.offset + r.len).unwrap_or(0);
    for cut in start..=end {
        let img = mem.crash_image(0);
        img.set_len(&file, cut);
        let n = valid_below(&recs, cut);
        let torn = recs.get(n).is_some_and(|r| cut > r.offset);
        check_recovers_to(&img, &model, n, torn, &format!("cut at {cut}"));
    }
}

#[test]
fn zeroed_last_sector() {
    for (seed, align) in [(1u64, 512usize), (2, 4096), (3, 512), (4, 4096), (5, 512)] {
        let (mem, model) = build(align, seed, 5, 4, 700);
        let recs = layout(&mem);
        let file = last_file(&recs);
        let end = recs.last().map(|r| r.offset + r.len).unwrap_or(0);
        let sector = (end - 1) / 512 * 512;
        let img = mem.crash_image(0);
        img.poke(&file, sector, &[0u8; 512]);
        let n = valid_below(&recs, sector);
        check_recovers_to(
            &img,
            &model,
            n,
            true,
            &format!("seed {seed} zero sector {sector}"),
        );
    }
}

#[test]
fn every_bit_flip_in_the_last_record() {
    let (mem, model) = build(512, 21, 4, 4, 120);
    let recs = layout(&mem);
    let file = last_file(&recs);
    let last = recs.last().cloned().expect("records");
    let data = mem.contents(&file).expect("file");
    let bytes = &data[last.offset..last.offset + last.len];
    for (i, &old) in bytes.iter().enumerate() {
        let byte = last.offset + i;
        for bit in 0..8 {
            let img = mem.crash_image(0);
            img.poke(&file, byte, &[old ^ (1 << bit)]);
            check_recovers_to(
                &img,
                &model,
                model.len() - 1,
                true,
                &format!("flip {byte}.{bit}"),
            );
        }
    }
}
