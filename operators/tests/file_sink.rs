//! Goal: the NDJSON file sink publishes an epoch's output all at once or
//! not at all: staged files stay out of the output directory until
//! commit, commit is idempotent, output of an interrupted epoch is left
//! only in staging and removed at start-up, and each committed file holds
//! exactly its epoch's records, in order, as valid JSON lines.
//!
//! Method: drive `RowFileSink` (`format = "ndjson"`) through its plain
//! methods (the epoch protocol's calls) in a temporary directory; simulate
//! a crash by dropping the sink; read files back with `serde_json`.
//! (`row_sinks.rs` does the same for Parquet files.)

use std::fs;
use std::path::Path;

use rkyv::rancor;
use weir_operators::row::{ArchivedRow, Row, Schema, Type, Value};
use weir_operators::sinks::file::{
    build, file_name, Precommit, RowFileFormat, RowFileSink, RowFileSinkConfig, Staged, Staging,
    STAGING_DIRECTORY,
};

/// Events `{id, key, ts_ms}`.
fn events(ids: std::ops::Range<u64>) -> Vec<Row> {
    ids.map(|id| event(id, format!("key-{}", id % 3), id as i64 * 10))
        .collect()
}

fn event(id: u64, key: String, ts_ms: i64) -> Row {
    Row {
        values: vec![Value::Int(id as i64), Value::String(key), Value::Int(ts_ms)],
    }
}

/// The NDJSON sink of shard `shard` under `path`, writing epoch `epoch`.
fn sink_at(path: &Path, shard: usize, epoch: u64) -> std::io::Result<RowFileSink> {
    RowFileSink::at_epoch(spec(path), shard, epoch)
}

fn spec(path: &Path) -> weir_operators::sinks::RowFileSpec {
    let config = RowFileSinkConfig {
        inputs: vec!["in".into()],
        path: path.to_owned(),
        format: RowFileFormat::Ndjson,
        compression: None,
        row_group_rows: None,
        // A file per shard and epoch, published when the epoch commits.
        roll_interval: Some("0s".into()),
        roll_size: None,
    };
    let schema = Schema::new([
        ("id", Type::Int),
        ("key", Type::String),
        ("ts_ms", Type::Int),
    ]);
    build(&config, &schema).expect("a valid file sink")
}

/// Writes `rows` as the runtime would: archived.
fn write(sink: &mut RowFileSink, rows: &[Row]) {
    let bytes: Vec<_> = rows
        .iter()
        .map(|row| rkyv::to_bytes::<rancor::Error>(row).expect("archive"))
        .collect();
    let archived = bytes
        .iter()
        .map(|bytes| rkyv::access::<ArchivedRow, rancor::Error>(bytes).expect("valid row"));
    sink.write_rows(archived);
}

/// Visible names in `directory`, sorted (the staging directory excluded).
fn visible(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(directory)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn staged(directory: &Path) -> Vec<String> {
    visible(&directory.join(STAGING_DIRECTORY))
}

/// The file's lines, parsed as JSON.
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(path).expect("read");
    assert!(text.ends_with('\n'), "every line ends with a line break");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("valid JSON line"))
        .collect()
}

#[test]
fn staged_files_are_invisible_until_commit() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 3, 1).expect("sink");
    write(&mut sink, &events(0..10));
    assert!(visible(path).is_empty());
    let staged_epoch = sink.precommit_durably(1).expect("precommit");
    assert!(
        visible(path).is_empty(),
        "pre-committed output is not visible"
    );
    assert_eq!(staged(path), [file_name(3, 1)]);
    assert_eq!(staged_epoch.lines, 10);
    assert_eq!(
        staged_epoch.target,
        path.join("shard-003-epoch-0000000001.ndjson")
    );

    staged_epoch.commit().expect("commit");
    assert_eq!(visible(path), ["shard-003-epoch-0000000001.ndjson"]);
    assert!(staged(path).is_empty());
}

#[test]
fn commit_twice_is_ok_and_leaves_one_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 0, 5).expect("sink");
    write(&mut sink, &events(0..3));
    let staged_epoch = sink.precommit_durably(5).expect("precommit");
    staged_epoch.commit().expect("first commit");
    staged_epoch.commit().expect("second commit is a no-op");
    assert_eq!(visible(path), [file_name(0, 5)]);
    assert_eq!(json_lines(&staged_epoch.target).len(), 3);
}

#[test]
fn commit_with_staged_and_target_missing_is_an_error_naming_both() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut sink = sink_at(directory.path(), 0, 1).expect("sink");
    write(&mut sink, &events(0..1));
    let staged_epoch = sink.precommit_durably(1).expect("precommit");
    fs::remove_file(&staged_epoch.staged).expect("lose the staged file");
    let error = staged_epoch.commit().expect_err("nothing to publish");
    let message = error.to_string();
    assert!(
        message.contains(&staged_epoch.staged.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&staged_epoch.target.display().to_string()),
        "{message}"
    );
}

#[test]
fn crash_before_precommit_leaves_only_staging_files_which_discard_removes() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 0, 1).expect("sink");
    write(&mut sink, &events(0..5));
    sink.precommit_durably(1)
        .expect("precommit 1")
        .commit()
        .expect("commit 1");
    // Epoch 2 pre-commits and its commit record is durable, but the crash
    // comes before its rename: recovery commits it again.
    write(&mut sink, &events(5..8));
    let second = sink.precommit_durably(2).expect("precommit 2");
    // Epoch 3 is being written when the process dies.
    write(&mut sink, &events(8..20));
    sink.flush();
    drop(sink);
    // Another shard's uncommitted output shares the staging directory.
    let mut other = sink_at(path, 1, 3).expect("other shard");
    write(&mut other, &events(0..2));
    other.flush();
    drop(other);

    assert_eq!(visible(path), [file_name(0, 1)]);
    assert_eq!(
        staged(path),
        [file_name(0, 2), file_name(0, 3), file_name(1, 3)]
    );

    let discarded = Staging::discard_uncommitted(path, 0, 2).expect("discard");
    assert_eq!(discarded, 1);
    assert_eq!(staged(path), [file_name(0, 2), file_name(1, 3)]);
    second.commit().expect("recovery commits epoch 2");
    assert_eq!(visible(path), [file_name(0, 1), file_name(0, 2)]);
    assert_eq!(Staging::discard_uncommitted(path, 0, 2).expect("again"), 0);
    assert_eq!(
        Staging::discard_uncommitted(path, 1, 2).expect("shard 1"),
        1
    );
    assert!(staged(path).is_empty());
}

#[test]
fn records_of_an_epoch_land_in_its_file_in_order_as_json_lines() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 2, 7).expect("sink");
    let tricky = event(99, "quote \" back\\slash\nline é ☃".into(), i64::MAX);
    write(&mut sink, &events(0..4));
    write(&mut sink, std::slice::from_ref(&tricky));
    write(&mut sink, &events(4..6));
    let first = sink.precommit_durably(7).expect("precommit 7");
    write(&mut sink, &events(100..102));
    let second = sink.precommit_durably(8).expect("precommit 8");
    first.commit().expect("commit 7");
    second.commit().expect("commit 8");

    let lines = json_lines(&first.target);
    let ids: Vec<u64> = lines
        .iter()
        .map(|line| line["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 99, 4, 5]);
    assert_eq!(lines[4]["key"], "quote \" back\\slash\nline é ☃");
    assert_eq!(lines[4]["ts_ms"].as_i64(), Some(i64::MAX));
    assert_eq!(
        lines[1],
        serde_json::json!({"id": 1, "key": "key-1", "ts_ms": 10})
    );
    let ids: Vec<u64> = json_lines(&second.target)
        .iter()
        .map(|line| line["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [100, 101]);
}

#[test]
fn epoch_without_records_commits_cleanly_and_makes_no_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 0, 1).expect("sink");
    let empty = sink
        .precommit_durably(1)
        .expect("precommit of an empty epoch");
    assert_eq!(empty.lines, 0);
    empty.commit().expect("commit");
    empty.commit().expect("commit again");
    assert!(visible(path).is_empty());
    assert!(staged(path).is_empty());
    write(&mut sink, &events(0..1));
    sink.precommit_durably(2)
        .expect("precommit 2")
        .commit()
        .expect("commit 2");
    assert_eq!(visible(path), [file_name(0, 2)]);
}

#[test]
fn write_error_is_returned_by_precommit_with_the_path() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 0, 1).expect("sink");
    fs::remove_dir(path.join(STAGING_DIRECTORY)).expect("remove staging");
    write(&mut sink, &events(0..3));
    let error = sink
        .precommit_durably(1)
        .expect_err("the staged file could not be created");
    assert!(error.to_string().contains(STAGING_DIRECTORY), "{error}");
    assert_eq!(sink.epoch(), 2, "the sink moves on to the next epoch");
}

#[test]
fn staged_round_trips_through_bytes_and_rejects_garbage() {
    let staged_epoch = Staged {
        epoch: 42,
        shard: 3,
        lines: 1_000,
        staged: "/data/out/.staging/shard-003-epoch-0000000042.ndjson".into(),
        target: "/data/out/shard-003-epoch-0000000042.ndjson".into(),
    };
    let bytes = staged_epoch.to_bytes();
    assert_eq!(Staged::from_bytes(&bytes), Ok(staged_epoch));
    assert!(Staged::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(Staged::from_bytes(&[]).is_err());
    let mut versioned = bytes.clone();
    versioned[0] = 9;
    assert!(Staged::from_bytes(&versioned).is_err());
    let mut trailing = bytes;
    trailing.push(0);
    assert!(Staged::from_bytes(&trailing).is_err());
}

#[test]
fn the_sink_follows_the_epochs_it_is_given() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = sink_at(path, 0, 1).expect("sink");
    write(&mut sink, &events(0..4));
    // Epoch 1 was expected; the runtime says 3: the records belong to 3.
    let third = sink.precommit_durably(3).expect("precommit 3");
    assert_eq!((third.epoch, third.lines), (3, 4));
    assert_eq!(staged(path), vec![file_name(0, 3)]);
    assert_eq!(sink.epoch(), 4);
    write(&mut sink, &events(4..6));
    let fourth = sink.precommit_durably(4).expect("precommit 4");
    third.commit().expect("commit 3");
    fourth.commit().expect("commit 4");
    assert_eq!(visible(path), vec![file_name(0, 3), file_name(0, 4)]);
    assert_eq!(json_lines(&path.join(file_name(0, 3))).len(), 4);
    assert_eq!(json_lines(&path.join(file_name(0, 4))).len(), 2);
}

#[test]
fn as_a_runtime_sink_empty_epochs_log_nothing_and_commit_decodes() {
    use weir_runtime::{CommitControl, ShardContext, Sink};
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    // Left by a crashed run: epoch 2 committed, epoch 3 did not; both
    // pre-committed and synced as the runtime does (a roll each, at
    // `roll_interval = "0s"`).
    let mut crashed = sink_at(path, 1, 2).expect("sink");
    write(&mut crashed, &events(0..2));
    let committed = Sink::precommit(&mut crashed, 2).expect("precommit 2");
    <RowFileSink as Sink>::sync(&committed).expect("sync 2");
    write(&mut crashed, &events(2..4));
    let uncommitted = Sink::precommit(&mut crashed, 3).expect("precommit 3");
    <RowFileSink as Sink>::sync(&uncommitted).expect("sync 3");
    let context = ShardContext {
        shard: 1,
        shards: 2,
        instance: 1,
        instances: 2,
        node: "out".into(),
        committed_epoch: 2,
        snapshots: true,
        metrics: weir_runtime::metrics::Registry::new(2),
    };
    let mut sink = RowFileSink::new(spec(path), &context).expect("sink");
    assert_eq!(sink.epoch(), 3);
    assert!(
        !staged(path).contains(&file_name(1, 3)),
        "epoch 3 discarded: {:?}",
        staged(path)
    );
    assert!(
        staged(path).contains(&file_name(1, 2)),
        "{:?}",
        staged(path)
    );
    <RowFileSink as Sink>::commit(&committed, &CommitControl::new())
        .expect("recovery commits epoch 2");

    // Epoch 2's file belonged to its roll: the restarted sink did not take
    // it into a part of its own, so an empty epoch logs nothing.
    assert!(Sink::precommit(&mut sink, 3).unwrap().is_empty());
    write(&mut sink, &events(4..7));
    let bytes = Sink::precommit(&mut sink, 4).unwrap();
    let precommit = Precommit::from_bytes(&bytes).expect("a rolling pre-commit");
    assert_eq!(precommit.chunk.as_ref().map(|chunk| chunk.epoch), Some(4));
    assert_eq!(
        precommit.roll.as_ref().map(|roll| roll.chunks.len()),
        Some(1)
    );
    <RowFileSink as Sink>::sync(&bytes).expect("sync 4");
    <RowFileSink as Sink>::commit(&bytes, &CommitControl::new()).expect("commit");
    <RowFileSink as Sink>::commit(&bytes, &CommitControl::new()).expect("idempotent");
    assert!(<RowFileSink as Sink>::commit(b"garbage", &CommitControl::new()).is_err());
    assert_eq!(visible(path), vec![file_name(1, 2), file_name(1, 4)]);
    assert_eq!(json_lines(&path.join(file_name(1, 4))).len(), 3);
    assert!(staged(path).is_empty(), "{:?}", staged(path));
}
