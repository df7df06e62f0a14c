//! Goal: a window holding more than one WAL record of state (over 3 M keys
//! per shard: a base of ~56 MB per shard) and the changes after its base
//! survive a `kill -9`: the restarted run rebuilds the state from the
//! newest complete base, swept over the epochs after base epoch 64
//! (`Processor::sweep_base`), and the changes after it, and its output
//! counts every event exactly once.
//!
//! Method: `bench/src/bin/recovery.rs` runs the keycount pipeline (one
//! window over the whole run, epochs every 100 ms, incremental snapshots,
//! swept bases) in a child process, SIGKILLs it once epoch 90 committed
//! (past the sweep of epochs 64 to 79; the log then holds records of a
//! later sweep too if the kill lands late), restarts it on the same data
//! directory, runs it to the end and checks every window's count and
//! checksum against the generator. The test checks what it reports: each
//! shard's newest complete base was a sweep holding over 3 M keys, and the
//! output was exact.

use std::process::Command;

#[test]
fn a_window_of_millions_of_keys_is_recovered_exactly_after_kill_9() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let output = Command::new(env!("CARGO_BIN_EXE_recovery"))
        .args([
            "--keys",
            "7000000",
            // Enough that the run is still going at epoch 90 (it logged 8
            // bytes per changed key instead of 16 from `TCN1` on, and ran
            // through 400 M events before epoch 90 committed).
            "--events",
            "1000000000",
            "--kill-after-epoch",
            "90",
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run the recovery benchmark");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "recovery failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("output exact"), "{stdout}");
    let per_shard: Vec<u64> = stdout
        .split_once("per shard [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| {
            list.split(", ")
                .map(|n| n.parse().expect("a number"))
                .collect()
        })
        .unwrap_or_else(|| panic!("no per-shard keys reported:\n{stdout}"));
    assert!(
        per_shard.len() == 2 && per_shard.iter().all(|&keys| keys > 3_000_000),
        "the bases held {per_shard:?} keys, not over 3 M per shard:\n{stdout}"
    );
    assert!(
        stdout.contains("sweep from epoch 64"),
        "the recovery did not start from the sweep of epoch 64:\n{stdout}"
    );
    eprintln!("{stdout}");
}
