//! How long recovery takes after a `kill -9` with a large window state:
//! the keycount pipeline (one window over the whole run, epochs every
//! 100 ms, incremental snapshots) runs in a child process that is killed
//! with SIGKILL once its state holds most keys; then this process starts
//! the same pipeline on the same data directory, times the recovery (from
//! `Runtime::start` to the first epoch committed after it: reading the
//! logs, restoring the last base and the changes after it, and one epoch
//! of new work), runs it to the end, and checks the output against the
//! generator: every event counted once.
//!
//! ```text
//! cargo run --release -p weir-bench --bin recovery -- --keys 10000000 --dir DIR
//! ```
//!
//! Keys restored are read from the killed run's logs: the entries of the
//! newest complete base of each shard's window (one written whole, or the
//! slices of a sweep), as the runtime's recovery chooses it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use weir_bench::workload::{KeyCount, WindowTotals};
use weir_runtime::Runtime;

#[derive(Parser, Debug)]
#[command(about = "weir keycount recovery time after kill -9")]
struct Args {
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Events over all shards (default: eight per key, so nearly every key
    /// is held at the kill, and at least 600 M, so the run lasts well past
    /// the first base epoch at tens of millions of events a second).
    #[arg(long)]
    events: Option<u64>,
    /// Shards.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Epoch interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    epoch_ms: u64,
    /// Kill the child once about this share of the events is done.
    #[arg(long, default_value_t = 0.5)]
    kill_at: f64,
    /// Kill the child once this epoch is committed instead (a test's
    /// choice: past the first base epoch, 64).
    #[arg(long)]
    kill_after_epoch: Option<u64>,
    /// Where to put the data directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Internal: run as the child on this data directory.
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

impl Args {
    fn keycount(&self) -> KeyCount {
        let events = self.events.unwrap_or((8 * self.keys).max(600_000_000));
        KeyCount {
            events,
            keys: self.keys,
            window_ticks: events,
        }
    }

    fn runtime(&self, data: &Path) -> Result<Runtime> {
        Ok(Runtime::builder()
            .shards(self.shards)
            .data_dir(data)
            .epoch_interval(Duration::from_millis(self.epoch_ms))
            .build()?)
    }
}

/// The child: runs until killed (or the end).
fn child(args: &Args, data: &Path) -> Result<()> {
    let runtime = args.runtime(data)?;
    let results = Arc::new(Mutex::new(WindowTotals::default()));
    runtime.run(args.keycount().graph(results)?)?;
    Ok(())
}

/// The newest committed epoch in the coordinator's log.
fn committed_epochs(data: &Path) -> u64 {
    weir_wal::inspect_records(&data.join("coordinator"))
        .map(|records| {
            records
                .filter_map(|record| record.ok())
                .filter(|record| record.kind == weir_wal::RecordType::EPOCH_COMMIT)
                .map(|record| record.epoch)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// [`events_done`] of a live run's logs: its retention may delete a
/// segment between the reader listing it and opening it, so a read that
/// fails is tried again, a few times.
fn events_done_live(data: &Path, shards: usize) -> Result<u64> {
    let mut tries = 0;
    loop {
        match events_done(data, shards) {
            Err(error) if tries < 10 => {
                tries += 1;
                eprintln!("reading the live logs failed ({error:#}); again");
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

/// Events the sources logged as done: the smallest next index of any
/// source instance's newest position (its first 8 bytes; the position is
/// the payload's last 16).
fn events_done(data: &Path, shards: usize) -> Result<u64> {
    let mut done = u64::MAX;
    for shard in 0..shards {
        let mut newest = 0;
        for record in weir_wal::inspect_records(&data.join(format!("shard-{shard}")))? {
            let record = record?;
            if record.kind == weir_wal::RecordType::SOURCE_POSITIONS && record.payload.len() >= 16 {
                let at = record.payload.len() - 16;
                let bytes: [u8; 8] = record.payload[at..at + 8].try_into()?;
                newest = u64::from_le_bytes(bytes);
            }
        }
        done = done.min(newest);
    }
    Ok(if done == u64::MAX { 0 } else { done })
}

/// What a recovery at `committed` restores, per shard, as the runtime
/// chooses it (`runtime/src/epoch/recovery.rs`): the newest complete base
/// (written whole, or swept over the records from its sweep's first on)
/// and the records after it. Returns, per shard, the keys in that base
/// and where it starts, and the bytes of all those records.
fn state_in_logs(data: &Path, shards: usize, committed: u64) -> Result<(Vec<(u64, String)>, u64)> {
    let (mut bases, mut total) = (Vec::new(), 0);
    for shard in 0..shards {
        // (epoch, kind, sweep flags, operator bytes) of the window's
        // snapshot records, parts joined.
        let mut records: Vec<(u64, weir_wal::RecordType, u8, Vec<u8>)> = Vec::new();
        let mut parts = Vec::new();
        for record in weir_wal::inspect_records(&data.join(format!("shard-{shard}")))? {
            let record = record?;
            let kind = record.kind;
            let body = epoch_record_body(&record.payload)?;
            if kind == weir_wal::RecordType::CONTINUED {
                parts.extend_from_slice(body);
                continue;
            }
            let snapshot = kind == weir_wal::RecordType::OPERATOR_BASE
                || kind == weir_wal::RecordType::OPERATOR_CHANGES
                || kind == weir_wal::RecordType::OPERATOR_SWEEP;
            if !snapshot || record.epoch > committed {
                parts.clear();
                continue;
            }
            parts.extend_from_slice(body);
            let joined = std::mem::take(&mut parts);
            let (flags, rest) = match kind {
                weir_wal::RecordType::OPERATOR_SWEEP => {
                    let (flags, rest) = joined.split_first().context("an empty sweep record")?;
                    (*flags, rest.to_vec())
                }
                _ => (0, joined),
            };
            records.push((
                record.epoch,
                kind,
                flags,
                without_state_header(&rest)?.to_vec(),
            ));
        }
        records.sort_by_key(|(epoch, ..)| *epoch);
        let whole = records
            .iter()
            .rposition(|(_, kind, ..)| *kind == weir_wal::RecordType::OPERATOR_BASE);
        let (mut sweeping, mut swept) = (None, None);
        for (at, (_, _, flags, _)) in records.iter().enumerate() {
            if flags & 1 != 0 {
                sweeping = Some(at);
            }
            if flags & 2 != 0 && sweeping.is_some() {
                swept = sweeping;
            }
        }
        let keys_in = |bytes: &[u8]| -> Result<Vec<u64>> {
            weir_bench::weir_keycount::count::keys_per_block(bytes)
                .map_err(|error| anyhow::anyhow!("shard {shard}: {error}"))
        };
        let (start, keys, what) = match (whole, swept) {
            (Some(base), swept) if swept.is_none_or(|swept| swept < base) => {
                let keys = keys_in(&records[base].3)?.iter().sum::<u64>();
                (
                    base,
                    keys,
                    format!("whole base of epoch {}", records[base].0),
                )
            }
            (_, Some(sweep)) => {
                // Each sweep record's second block is its slice.
                let mut keys = 0;
                for (_, _, flags, bytes) in &records[sweep..] {
                    keys += keys_in(bytes)?.get(1).copied().unwrap_or(0);
                    if flags & 2 != 0 {
                        break;
                    }
                }
                (
                    sweep,
                    keys,
                    format!("sweep from epoch {}", records[sweep].0),
                )
            }
            _ => bail!("shard {shard}: no complete base in the log"),
        };
        total += records[start..]
            .iter()
            .map(|(.., bytes)| bytes.len() as u64)
            .sum::<u64>();
        bases.push((keys, what));
    }
    Ok((bases, total))
}

/// An epoch record's payload after its node's name and instance
/// (`runtime/src/epoch/mod.rs`, `encode_record`).
fn epoch_record_body(payload: &[u8]) -> Result<&[u8]> {
    let name = u32::from_le_bytes(payload.get(..4).context("a short record")?.try_into()?);
    payload
        .get(4 + name as usize + 4..)
        .context("a record shorter than its header")
}

/// A snapshot's bytes after its fingerprint header (`WSF1`, length, text;
/// `runtime/src/epoch/mod.rs`, `state_header`).
fn without_state_header(bytes: &[u8]) -> Result<&[u8]> {
    let Some(rest) = bytes.strip_prefix(b"WSF1") else {
        return Ok(bytes);
    };
    let length = u32::from_le_bytes(rest.get(..4).context("a short header")?.try_into()?);
    rest.get(4 + length as usize..)
        .context("a header longer than its record")
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(data) = &args.child {
        return child(&args, data);
    }
    let keycount = args.keycount();
    let dir = tempfile::Builder::new()
        .prefix("weir-recovery-")
        .tempdir_in(&args.dir)?;
    let data = dir.path().join("data");
    let when = match args.kill_after_epoch {
        Some(epoch) => format!("once epoch {epoch} committed"),
        None => format!("at {:.0} % of the events", args.kill_at * 100.0),
    };
    println!(
        "recovery: keycount, {} events, {} keys, {} shards, epochs every {} ms, kill -9 {when}",
        keycount.events, keycount.keys, args.shards, args.epoch_ms,
    );

    // The child, killed once about `kill_at` of the events are done: its
    // rate is measured once, from its logged positions after 20 epochs.
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--keys",
            &args.keys.to_string(),
            "--events",
            &keycount.events.to_string(),
            "--shards",
            &args.shards.to_string(),
            "--epoch-ms",
            &args.epoch_ms.to_string(),
            "--child",
        ])
        .arg(&data)
        .spawn()
        .context("start the child")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    while committed_epochs(&data) < 20 {
        ensure!(Instant::now() < deadline, "the child committed no epochs");
        if child.try_wait()?.is_some() {
            bail!("the child ended before 20 epochs: use more events");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = events_done_live(&data, args.shards)?;
    ensure!(done > 0, "no source position logged after 20 epochs");
    let rate = done as f64 / started.elapsed().as_secs_f64();
    println!(
        "after {:.1} s: {done} events done ({:.2} M events/s)",
        started.elapsed().as_secs_f64(),
        rate / 1e6
    );
    let kill_after = Duration::from_secs_f64(args.kill_at * keycount.events as f64 / rate);
    let due = || match args.kill_after_epoch {
        Some(epoch) => committed_epochs(&data) >= epoch,
        None => started.elapsed() >= kill_after,
    };
    while !due() {
        if child.try_wait()?.is_some() {
            bail!("the child finished before the kill: use more events or kill earlier");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    let killed_at = started.elapsed();
    let committed = committed_epochs(&data);
    let (bases, replayed) = state_in_logs(&data, args.shards, committed)?;
    let per_shard: Vec<u64> = bases.iter().map(|(keys, _)| *keys).collect();
    let keys: u64 = per_shard.iter().sum();
    let starts: Vec<&str> = bases.iter().map(|(_, what)| what.as_str()).collect();
    let log_bytes: u64 = walk_bytes(&data)?;
    println!(
        "killed after {:.1} s at committed epoch {committed}: last bases hold {keys} keys (per shard {per_shard:?}; {starts:?}), {:.1} MB of records from them on, {:.1} MB of logs",
        killed_at.as_secs_f64(),
        replayed as f64 / 1e6,
        log_bytes as f64 / 1e6
    );

    // Recovery in this process.
    let runtime = args.runtime(&data)?;
    let results = Arc::new(Mutex::new(WindowTotals::default()));
    let begin = Instant::now();
    let running = runtime.start(keycount.graph(results.clone())?)?;
    ensure!(!running.already_complete(), "the killed run had completed");
    let run = std::thread::spawn(move || running.wait());
    let epoch = || {
        runtime
            .metrics()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix("weir_epoch_committed "))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    while epoch() <= committed && !run.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let recovery = begin.elapsed();
    let report = run
        .join()
        .map_err(|_| anyhow::anyhow!("the run panicked"))??;
    ensure!(
        report.resumed_from_epoch == committed,
        "resumed from {} instead of {committed}",
        report.resumed_from_epoch
    );
    let totals = std::mem::take(
        &mut *results
            .lock()
            .map_err(|_| anyhow::anyhow!("a sink panicked"))?,
    );
    ensure!(
        totals == WindowTotals::expected(&keycount),
        "the output after recovery is not every event once"
    );
    println!(
        "recovery: {:.2} s to the first epoch after it ({:.2} M keys/s); the rest of the run {:.1} s; output exact",
        recovery.as_secs_f64(),
        keys as f64 / recovery.as_secs_f64() / 1e6,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn walk_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walk_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
