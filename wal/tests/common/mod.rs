//! Helpers shared by the integration tests: a deterministic record
//! generator and a model of what was appended.

#![allow(dead_code)]

use std::sync::Arc;
use weir_wal::storage::memory::SplitMix;
use weir_wal::{Config, Lsn, MemStorage, Record, RecordType, Storage, SyncLog};

/// Small segments so that runs roll often.
pub fn small_config() -> Config {
    Config {
        segment_bytes: 64 << 10,
        flush_interval: None,
        ..Config::default()
    }
}

/// One appended record as the model remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub epoch: u64,
    pub kind: RecordType,
    pub payload: Vec<u8>,
}

/// A payload of `len` non-zero bytes derived from `tag`.
pub fn payload(tag: u64, len: usize) -> Vec<u8> {
    let mut r = SplitMix(tag);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&(r.next_u64() | 0x0101_0101_0101_0101).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A random record: mostly small, sometimes large enough to force rolls.
pub fn random_rec(rng: &mut SplitMix) -> Rec {
    let len = match rng.below(10) {
        0 => rng.below(9_000) as usize,
        1 => 0,
        _ => rng.below(600) as usize,
    };
    Rec {
        epoch: rng.below(1000),
        kind: RecordType::new(1 + rng.below(5) as u8),
        payload: payload(rng.next_u64(), len),
    }
}

/// Appends a [`random_rec`] to `log` and to the model; an append is
/// never refused before the storage fails.
pub fn append_random(log: &mut SyncLog, model: &mut Vec<Rec>, rng: &mut SplitMix) {
    let r = random_rec(rng);
    match log.append(r.kind, r.epoch, &r.payload) {
        Ok(lsn) => {
            assert_eq!(lsn.0 as usize, model.len());
            model.push(r);
        }
        Err(e) => panic!("append refused before any failure: {e}"),
    }
}

pub fn storage(mem: &MemStorage) -> Arc<dyn Storage> {
    Arc::new(mem.clone())
}

/// Reads every durable record from LSN 0 on.
pub fn read_all(log: &SyncLog) -> Vec<Record> {
    log.read_from(Lsn(0))
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("records read back intact")
}

/// Asserts `got` equals the first `got.len()` model records.
pub fn assert_prefix(got: &[Record], model: &[Rec], what: &str) {
    assert!(
        got.len() <= model.len(),
        "{what}: {} records but only {} appended",
        got.len(),
        model.len()
    );
    for (i, (g, m)) in got.iter().zip(model).enumerate() {
        assert_eq!(g.lsn, Lsn(i as u64), "{what}: lsn");
        assert!(
            g.epoch == m.epoch && g.kind == m.kind && g.payload == m.payload,
            "{what}: record {i} differs from what was appended"
        );
    }
}

/// Where one record (or seal) lies in the files of `mem`.
#[derive(Debug, Clone)]
pub struct Placed {
    pub file: String,
    pub offset: usize,
    /// Header + payload bytes (padding excluded).
    pub len: usize,
    pub seal: bool,
}

/// Walks every segment file and lists the records in order.
pub fn layout(mem: &MemStorage) -> Vec<Placed> {
    use weir_wal::format::{parse_record, Parsed, SegmentHeader};
    let mut names: Vec<String> = mem
        .list()
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let data = mem.contents(&name).expect("file");
        let h = SegmentHeader::decode(&data).expect("header");
        let mut off = weir_wal::limits::SEGMENT_HEADER_REGION as usize;
        while let Parsed::Record(r, p) = parse_record(&data, off, h.salt) {
            let seal = r.kind.get() == 255;
            out.push(Placed {
                file: name.clone(),
                offset: off,
                len: 40 + p.len(),
                seal,
            });
            if seal {
                break;
            }
            off += weir_wal::format::frame_len(p.len()) as usize;
        }
    }
    out
}

/// Builds a log of `commits` commits of `per_commit` records each, all
/// durable; returns the store and the model.
pub fn build(
    align: usize,
    seed: u64,
    commits: usize,
    per_commit: usize,
    max_len: u64,
) -> (MemStorage, Vec<Rec>) {
    let mem = MemStorage::new(align, seed);
    let (mut log, _) = SyncLog::open(storage(&mem), &small_config()).expect("open");
    let mut rng = SplitMix(seed);
    let mut model = Vec::new();
    for _ in 0..commits {
        for _ in 0..per_commit {
            let r = Rec {
                epoch: rng.below(100),
                kind: RecordType::new(1 + rng.below(5) as u8),
                payload: payload(rng.next_u64(), 1 + rng.below(max_len) as usize),
            };
            log.append(r.kind, r.epoch, &r.payload).expect("append");
            model.push(r);
        }
        log.commit().expect("commit");
    }
    (mem, model)
}
