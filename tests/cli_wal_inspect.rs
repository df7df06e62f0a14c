//! Goal: `weir wal inspect DIR` describes a log without changing it: its
//! segments, record counts and epochs, the last durable record, and a torn
//! tail when there is one; it lists every segment also after a corrupt or
//! missing one, and exits with status 1 when the log would be refused at
//! open (corruption, a missing middle or newest segment), 0 otherwise.
//!
//! Method: write a log through the WAL library, inspect it with the `weir`
//! binary, then cut its last record in half and inspect again; the file
//! must be left as it was. A log of several segments is damaged three
//! ways (a flipped byte in a sealed segment, a middle segment deleted, the
//! newest deleted) and inspected after each.

use std::process::Command;

use weir::wal::{Config, RecordType, SyncLog};

fn inspect(dir: &std::path::Path) -> (bool, String) {
    let (status, stdout, _) = inspect_status(dir);
    (status == Some(0), stdout)
}

/// Runs `weir wal inspect DIR`: exit status, standard output and error.
fn inspect_status(dir: &std::path::Path) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["wal", "inspect"])
        .arg(dir)
        .output()
        .expect("run weir");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn inspect_reports_records_and_a_torn_tail() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (mut log, _) = SyncLog::open_dir(dir.path(), &Config::default()).expect("open log");
    for epoch in 1..=3u64 {
        log.append(RecordType::OPERATOR_STATE, epoch, &[7u8; 100])
            .expect("append");
    }
    log.append(RecordType::EPOCH_COMMIT, 3, b"")
        .expect("append");
    log.commit().expect("commit");
    drop(log);

    let (ok, text) = inspect(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("4 record(s)"), "{text}");
    assert!(text.contains("epochs 1..=3"), "{text}");
    assert!(text.contains("status: clean"), "{text}");

    // Tear the last record: zero its second half, as a torn write leaves it.
    let segment = dir.path().join("00000000000000000000.wal");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let end = bytes.iter().rposition(|&b| b != 0).expect("data") + 1;
    bytes[end - 30..end].fill(0);
    std::fs::write(&segment, &bytes).expect("write segment");

    let (ok, text) = inspect(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("status: torn tail"), "{text}");
    assert_eq!(
        std::fs::read(&segment).expect("read again"),
        bytes,
        "inspect changed the file"
    );
}

/// `weir wal inspect DATA_DIR` on a data directory describes every log in
/// it: the coordinator's commit log and each shard's WAL, with the commit
/// and sink-completion records a run leaves; one of its logs can still be
/// inspected alone. A shard log that lost its only segment fails the
/// inspection: the commit records name records that were durable in it.
#[test]
fn inspect_describes_every_log_of_a_data_directory() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (config, data) = (root.path().join("p.toml"), root.path().join("data"));
    std::fs::write(
        &config,
        format!(
            "[runtime]\nshards = 2\n\n[sources.gen]\ntype = \"generator\"\ncount = 2000\n\
             keys = [\"a\", \"b\"]\nevents_per_second = 1000\n\n[sinks.out]\ntype = \"file\"\n\
             inputs = [\"gen\"]\npath = \"{}\"\nformat = \"ndjson\"\n",
            root.path().join("out").display()
        ),
    )
    .expect("config");
    let status = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run weir");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let (ok, text) = inspect(&data);
    assert!(ok, "{text}");
    for part in [
        "3 log(s): coordinator, shard 0, shard 1",
        "== coordinator ==",
        "== shard 0 ==",
        "== shard 1 ==",
        "epoch-commit",
        "sink-precommit",
        "sink-committed",
        "restart",
    ] {
        assert!(text.contains(part), "no `{part}` in:\n{text}");
    }
    assert_eq!(text.matches("status: clean").count(), 3, "{text}");

    let (ok, text) = inspect(&data.join("shard-1"));
    assert!(ok, "{text}");
    assert!(text.starts_with("log directory"), "{text}");

    // Shard 1's only segment deleted: its log reads as a new, empty one,
    // but the commit records name records in it that were durable.
    let segment = data.join("shard-1").join("00000000000000000000.wal");
    std::fs::remove_file(&segment).expect("delete the segment");
    let (code, text, error) = inspect_status(&data);
    assert_eq!(code, Some(1), "{text}{error}");
    for part in [
        "== against the commit records ==",
        "shard 1: the log ends at lsn 0",
    ] {
        assert!(text.contains(part), "no `{part}` in:\n{text}");
    }
    assert!(error.contains("would be refused at open"), "{error}");
}

/// Writes a log of at least five 64 KiB segments into `dir`; returns the
/// segment file names, oldest first.
fn log_of_segments(dir: &std::path::Path) -> Vec<String> {
    let config = Config {
        segment_bytes: 64 << 10,
        ..Config::default()
    };
    let (mut log, _) = SyncLog::open_dir(dir, &config).expect("open log");
    for epoch in 0..400u64 {
        log.append(RecordType::OPERATOR_STATE, epoch, &[7u8; 1000])
            .expect("append");
    }
    log.commit().expect("commit");
    drop(log);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list log")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    names
}

/// Inspects a damaged log: exit status 1, `status` in the report, every
/// name of `listed` in it, and `named` in the error.
fn refused(dir: &std::path::Path, status: &str, listed: &[String], named: &str) {
    let (code, text, error) = inspect_status(dir);
    assert_eq!(code, Some(1), "{text}{error}");
    assert!(text.contains(status), "no `{status}` in:\n{text}");
    for name in listed {
        assert!(text.contains(name.as_str()), "{name} not listed:\n{text}");
    }
    assert!(
        error.contains("would be refused at open") && error.contains(named),
        "{error}"
    );
}

#[test]
fn inspect_fails_on_corruption_and_lists_the_segments_after_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let names = log_of_segments(dir.path());
    let (ok, text) = inspect(dir.path());
    assert!(ok && text.contains("status: clean"), "{text}");
    // A byte of the first record of segment 1, which is sealed over.
    let path = dir.path().join(&names[1]);
    let mut bytes = std::fs::read(&path).expect("read segment");
    bytes[4096 + 100] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write segment");
    refused(dir.path(), "status: CORRUPT", &names, &names[1]);
}

#[test]
fn inspect_fails_on_a_missing_middle_segment() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let names = log_of_segments(dir.path());
    std::fs::remove_file(dir.path().join(&names[2])).expect("delete a segment");
    let mut left = names.clone();
    let missing = left.remove(2);
    refused(dir.path(), "status: MISSING SEGMENTS", &left, &missing);
}

#[test]
fn inspect_fails_on_a_missing_newest_segment() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let names = log_of_segments(dir.path());
    let newest = names.last().expect("segments");
    std::fs::remove_file(dir.path().join(newest)).expect("delete a segment");
    let left = &names[..names.len() - 1];
    refused(dir.path(), "status: MISSING SEGMENTS", left, newest);
}

/// Recycled segments (`docs/wal-format.md` §12): retention hands retired
/// segments back, which become the files of later segments. `inspect`
/// marks those `recycled`, lists the spares, reads the newest one's end by
/// salt (the bytes after it are the earlier segment's), and still finds a
/// torn write there: a damaged record followed by one of the segment's own.
#[test]
fn inspect_marks_recycled_segments_and_finds_a_torn_write_in_one() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let config = Config {
        segment_bytes: 64 << 10,
        ..Config::default()
    };
    let (mut log, _) = SyncLog::open_dir(dir.path(), &config).expect("open log");
    // 3000-byte records, about 20 to a 64 KiB segment.
    let record = |i: u64| vec![(i % 200) as u8 + 1; 3000];
    for i in 0..80 {
        log.append(RecordType::INPUT, 1, &record(i))
            .expect("append");
    }
    log.commit().expect("commit");
    let cut = weir::wal::Lsn(log.next_lsn().0 - 25);
    assert!(log.delete_below(cut).expect("retention") >= 2);
    for i in 80..110 {
        log.append(RecordType::INPUT, 2, &record(i))
            .expect("append");
    }
    log.commit().expect("commit");
    assert!(log.spare_counts().0 >= 1, "{:?}", log.spare_counts());
    drop(log);

    let (ok, text) = inspect(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("recycled"), "{text}");
    assert!(text.contains("status: clean"), "{text}");
    let report = weir::wal::inspect(dir.path()).expect("inspect");
    let newest = report.analysis.segments.last().expect("segments");
    assert!(newest.header.recycled, "{text}");
    assert!(newest.records >= 2, "{text}");

    // Damage the newest segment's second-to-last record: the last one, of
    // the segment's own salt, shows a torn write (not stale bytes).
    let last = newest.last.expect("a last record");
    let frame = 3000u64.next_multiple_of(8) + 40;
    let path = dir.path().join(&newest.name);
    let mut bytes = std::fs::read(&path).expect("read segment");
    let at = (last.offset - frame + 100) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write segment");
    let (ok, text) = inspect(dir.path());
    assert!(ok, "a torn tail opens: {text}");
    assert!(
        text.contains(&format!("torn tail in {}", newest.name)),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "left as it was");
}
