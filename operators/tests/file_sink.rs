//! Goal: the NDJSON file sink publishes an epoch's output all at once or
//! not at all: staged files stay out of the output directory until
//! commit, commit is idempotent, output of an interrupted epoch is left
//! only in staging and removed at start-up, and each committed file holds
//! exactly its epoch's records, in order, as valid JSON lines.
//!
//! Method: drive `FileSink` through its plain methods (the epoch protocol's
//! calls) in a temporary directory; simulate a crash by dropping the sink;
//! read files back with `serde_json`.

use std::fs;
use std::path::Path;

use rkyv::rancor;
use weir_operators::sinks::file::{
    file_name, ArchivedWindowRow, FileSink, Staged, ToJsonLine, WindowRow, STAGING_DIRECTORY,
};
use weir_operators::sources::generator::{ArchivedGeneratedEvent, GeneratedEvent};

type Sink = FileSink<GeneratedEvent>;

fn events(ids: std::ops::Range<u64>) -> Vec<GeneratedEvent> {
    ids.map(|id| GeneratedEvent {
        id,
        key: format!("key-{}", id % 3),
        ts_ms: id * 10,
        ..GeneratedEvent::default()
    })
    .collect()
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
    let mut sink = Sink::new(path, 3, 1).expect("sink");
    sink.write_records(&events(0..10));
    assert!(visible(path).is_empty());
    let staged_epoch = sink.precommit(1).expect("precommit");
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

    FileSink::<GeneratedEvent>::commit(&staged_epoch).expect("commit");
    assert_eq!(visible(path), ["shard-003-epoch-0000000001.ndjson"]);
    assert!(staged(path).is_empty());
}

#[test]
fn commit_twice_is_ok_and_leaves_one_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = Sink::new(path, 0, 5).expect("sink");
    sink.write_records(&events(0..3));
    let staged_epoch = sink.precommit(5).expect("precommit");
    staged_epoch.commit().expect("first commit");
    staged_epoch.commit().expect("second commit is a no-op");
    assert_eq!(visible(path), [file_name(0, 5)]);
    assert_eq!(json_lines(&staged_epoch.target).len(), 3);
}

#[test]
fn commit_with_staged_and_target_missing_is_an_error_naming_both() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut sink = Sink::new(directory.path(), 0, 1).expect("sink");
    sink.write_records(&events(0..1));
    let staged_epoch = sink.precommit(1).expect("precommit");
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
    let mut sink = Sink::new(path, 0, 1).expect("sink");
    sink.write_records(&events(0..5));
    sink.precommit(1)
        .expect("precommit 1")
        .commit()
        .expect("commit 1");
    // Epoch 2 pre-commits and its commit record is durable, but the crash
    // comes before its rename: recovery commits it again.
    sink.write_records(&events(5..8));
    let second = sink.precommit(2).expect("precommit 2");
    // Epoch 3 is being written when the process dies.
    sink.write_records(&events(8..20));
    sink.flush();
    drop(sink);
    // Another shard's uncommitted output shares the staging directory.
    let mut other = Sink::new(path, 1, 3).expect("other shard");
    other.write_records(&events(0..2));
    other.flush();
    drop(other);

    assert_eq!(visible(path), [file_name(0, 1)]);
    assert_eq!(
        staged(path),
        [file_name(0, 2), file_name(0, 3), file_name(1, 3)]
    );

    let discarded = Sink::discard_uncommitted(path, 0, 2).expect("discard");
    assert_eq!(discarded, 1);
    assert_eq!(staged(path), [file_name(0, 2), file_name(1, 3)]);
    second.commit().expect("recovery commits epoch 2");
    assert_eq!(visible(path), [file_name(0, 1), file_name(0, 2)]);
    assert_eq!(Sink::discard_uncommitted(path, 0, 2).expect("again"), 0);
    assert_eq!(Sink::discard_uncommitted(path, 1, 2).expect("shard 1"), 1);
    assert!(staged(path).is_empty());
}

#[test]
fn records_of_an_epoch_land_in_its_file_in_order_as_json_lines() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = Sink::new(path, 2, 7).expect("sink");
    let tricky = GeneratedEvent {
        id: 99,
        key: "quote \" back\\slash\nline é ☃".into(),
        ts_ms: u64::MAX,
        ..GeneratedEvent::default()
    };
    sink.write_records(&events(0..4));
    sink.write_records(std::slice::from_ref(&tricky));
    sink.write_records(&events(4..6));
    let first = sink.precommit(7).expect("precommit 7");
    sink.write_records(&events(100..102));
    let second = sink.precommit(8).expect("precommit 8");
    first.commit().expect("commit 7");
    second.commit().expect("commit 8");

    let lines = json_lines(&first.target);
    let ids: Vec<u64> = lines
        .iter()
        .map(|line| line["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 99, 4, 5]);
    assert_eq!(lines[4]["key"], tricky.key.as_str());
    assert_eq!(lines[4]["ts_ms"].as_u64(), Some(u64::MAX));
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
    let mut sink = Sink::new(path, 0, 1).expect("sink");
    let empty = sink.precommit(1).expect("precommit of an empty epoch");
    assert_eq!(empty.lines, 0);
    empty.commit().expect("commit");
    empty.commit().expect("commit again");
    assert!(visible(path).is_empty());
    assert!(staged(path).is_empty());
    sink.write_records(&events(0..1));
    sink.precommit(2)
        .expect("precommit 2")
        .commit()
        .expect("commit 2");
    assert_eq!(visible(path), [file_name(0, 2)]);
}

#[test]
fn write_error_is_returned_by_precommit_with_the_path() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = Sink::new(path, 0, 1).expect("sink");
    fs::remove_dir(path.join(STAGING_DIRECTORY)).expect("remove staging");
    sink.write_records(&events(0..3));
    let error = sink
        .precommit(1)
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
fn archived_records_write_the_same_lines_as_native_ones() {
    let event = GeneratedEvent {
        id: 5,
        key: "bob".into(),
        ts_ms: 1_234,
        ..GeneratedEvent::default()
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&event).expect("serialize");
    let archived = rkyv::access::<ArchivedGeneratedEvent, rancor::Error>(&bytes).expect("access");
    let (mut native_line, mut archived_line) = (Vec::new(), Vec::new());
    event.write_json(&mut native_line);
    archived.write_json(&mut archived_line);
    assert_eq!(native_line, archived_line);

    let row = WindowRow {
        window_start_ms: 1_000,
        window_end_ms: 2_000,
        key: "alice".into(),
        count: 3,
        sum: 12,
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&row).expect("serialize");
    let archived = rkyv::access::<ArchivedWindowRow, rancor::Error>(&bytes).expect("access");
    let mut line = Vec::new();
    archived.write_json(&mut line);
    let value: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({
            "window_start_ms": 1000, "window_end_ms": 2000, "key": "alice", "count": 3, "sum": 12
        })
    );
}

#[test]
fn the_sink_follows_the_epochs_it_is_given() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    let mut sink = Sink::new(path, 0, 1).expect("sink");
    sink.write_records(&events(0..4));
    // Epoch 1 was expected; the runtime says 3: the records belong to 3.
    let third = sink.precommit(3).expect("precommit 3");
    assert_eq!((third.epoch, third.lines), (3, 4));
    assert_eq!(staged(path), vec![file_name(0, 3)]);
    assert_eq!(sink.epoch(), 4);
    sink.write_records(&events(4..6));
    let fourth = sink.precommit(4).expect("precommit 4");
    third.commit().expect("commit 3");
    fourth.commit().expect("commit 4");
    assert_eq!(visible(path), vec![file_name(0, 3), file_name(0, 4)]);
    assert_eq!(json_lines(&path.join(file_name(0, 3))).len(), 4);
    assert_eq!(json_lines(&path.join(file_name(0, 4))).len(), 2);
}

#[test]
fn as_a_runtime_sink_empty_epochs_log_nothing_and_commit_decodes() {
    use weir_runtime::ShardContext;
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path();
    // Left by a crashed run: epoch 2 committed, epoch 3 did not.
    let mut crashed = Sink::new(path, 1, 2).expect("sink");
    crashed.write_records(&events(0..2));
    let committed = crashed.precommit(2).expect("precommit 2");
    crashed.write_records(&events(2..4));
    crashed.precommit(3).expect("precommit 3");
    let context = ShardContext {
        shard: 1,
        shards: 2,
        instance: 1,
        instances: 2,
        node: "out".into(),
        committed_epoch: 2,
        metrics: weir_runtime::metrics::Registry::new(2),
    };
    let mut sink = Sink::for_shard(path, &context).expect("sink");
    assert_eq!(sink.epoch(), 3);
    assert_eq!(staged(path), vec![file_name(1, 2)], "epoch 3 discarded");
    committed.commit().expect("recovery commits epoch 2");

    assert!(weir_runtime::Sink::precommit(&mut sink, 3)
        .unwrap()
        .is_empty());
    sink.write_records(&events(4..7));
    let bytes = weir_runtime::Sink::precommit(&mut sink, 4).unwrap();
    assert_eq!(Staged::from_bytes(&bytes).unwrap().lines, 3);
    <Sink as weir_runtime::Sink>::commit(&bytes, &weir_runtime::CommitControl::new())
        .expect("commit");
    <Sink as weir_runtime::Sink>::commit(&bytes, &weir_runtime::CommitControl::new())
        .expect("idempotent");
    assert!(
        <Sink as weir_runtime::Sink>::commit(b"garbage", &weir_runtime::CommitControl::new())
            .is_err()
    );
    assert_eq!(visible(path), vec![file_name(1, 2), file_name(1, 4)]);
}
