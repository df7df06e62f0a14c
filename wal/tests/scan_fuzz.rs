//! Arbitrary bytes fed to the recovery scanner (CI proptest): no panic, no
//! out-of-bounds read, whatever the segment files contain — including bytes
//! behind a valid segment header, so the record parser is reached.

use proptest::prelude::*;
use weir_wal::format::{parse_record, Lsn, SegmentHeader};
use weir_wal::storage::memory::SplitMix;
use weir_wal::{inspect_storage, MemStorage, Storage};

fn header(salt: u32) -> Vec<u8> {
    let h = SegmentHeader {
        shard: 0,
        segment: 0,
        salt,
        first_lsn: Lsn(0),
        segment_bytes: 1 << 16,
        recycled: false,
    };
    let mut v = h.encode().to_vec();
    v.resize(4096, 0);
    v
}

fn store_with(files: &[(String, Vec<u8>)]) -> MemStorage {
    let mem = MemStorage::new(512, 0);
    for (name, bytes) in files {
        drop(mem.create(name, 0).expect("create"));
        mem.poke(name, 0, bytes);
    }
    mem.sync_dir().expect("sync");
    mem
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn raw_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let mem = store_with(&[("00000000000000000000.wal".into(), bytes.clone())]);
        let _ = inspect_storage(&mem, std::path::Path::new("fuzz")).map(|r| r.to_string());
        for off in 0..bytes.len().min(64) {
            let _ = parse_record(&bytes, off, 0);
        }
    }

    #[test]
    fn records_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..4000),
        seed in any::<u64>(),
        two in any::<bool>(),
    ) {
        let mut rng = SplitMix(seed);
        let salt = if rng.below(2) == 0 { 0 } else { rng.next_u64() as u32 };
        let mut f = header(salt);
        // Sometimes a plausible record header: small length, right salt.
        let mut body = body;
        if body.len() >= 40 && rng.below(2) == 0 {
            body[4..8].copy_from_slice(&((rng.below(64)) as u32).to_le_bytes());
            body[32..36].copy_from_slice(&salt.to_le_bytes());
        }
        f.extend_from_slice(&body);
        let mut files = vec![("00000000000000000000.wal".to_string(), f.clone())];
        if two {
            files.push(("00000000000000000001.wal".to_string(), f));
        }
        let mem = store_with(&files);
        let _ = inspect_storage(&mem, std::path::Path::new("fuzz")).map(|r| r.to_string());
        let _ = weir_wal::SyncLog::open(std::sync::Arc::new(mem), &weir_wal::Config {
            segment_bytes: 1 << 16, ..weir_wal::Config::default()
        });
    }
}
