//! Mid-log bit flips: a flipped bit in any record that a later commit shows
//! was durable (or in any segment header, or a seal) is always detected, and
//! open is refused naming the segment file and the byte offset.

mod common;

use common::{build, layout, small_config, storage};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{OpenError, RecoveryError, SyncLog};

#[test]
fn mid_log_bit_flips_refuse_open_with_segment_and_offset() {
    // ~3 segments; the final commit's records are excluded (a flip there is
    // indistinguishable from a torn write and is covered by tail.rs).
    let per_commit = 5;
    let (mem, model) = build(512, 5, 40, per_commit, 2000);
    let recs = layout(&mem);
    let files: std::collections::BTreeSet<_> = recs.iter().map(|r| r.file.clone()).collect();
    assert!(
        files.len() >= 3,
        "test needs several segments, got {}",
        files.len()
    );
    let data_recs: Vec<_> = recs.iter().filter(|r| !r.seal).collect();
    assert_eq!(data_recs.len(), model.len());
    let cutoff = model.len() - per_commit;
    let mut targets: Vec<_> = data_recs[..cutoff].iter().map(|r| (*r).clone()).collect();
    targets.extend(recs.iter().filter(|r| r.seal).cloned());
    let mut rng = SplitMix(99);
    let mut checked = 0;
    for r in &targets {
        let data = mem.contents(&r.file).expect("file");
        for _ in 0..6 {
            let byte = r.offset + rng.below(r.len as u64) as usize;
            let bit = rng.below(8);
            let img = mem.crash_image(0);
            img.poke(&r.file, byte, &[data[byte] ^ (1 << bit)]);
            match SyncLog::open(storage(&img), &small_config()) {
                Err(OpenError::Recovery(RecoveryError::Corrupt(c))) => {
                    assert_eq!(c.segment, r.file, "segment named");
                    assert_eq!(c.offset, r.offset as u64, "offset named ({})", c.reason);
                    let msg = OpenError::Recovery(RecoveryError::Corrupt(c)).to_string();
                    assert!(
                        msg.contains(&r.file) && msg.contains(&r.offset.to_string()),
                        "{msg}"
                    );
                }
                other => panic!("flip at {}:{byte}.{bit} not refused: {other:?}", r.file),
            }
            checked += 1;
        }
    }
    for f in &files {
        let data = mem.contents(f).expect("file");
        for (byte, &old) in data[..64].iter().enumerate() {
            let img = mem.crash_image(0);
            img.poke(f, byte, &[old ^ 0x10]);
            match SyncLog::open(storage(&img), &small_config()) {
                Err(OpenError::Recovery(RecoveryError::Corrupt(c))) => {
                    assert_eq!((c.segment.as_str(), c.offset), (f.as_str(), 0));
                }
                other => panic!("header flip in {f} at {byte} not refused: {other:?}"),
            }
        }
    }
    assert!(checked > 500);
}
