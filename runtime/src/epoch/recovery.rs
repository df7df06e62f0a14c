//! Reading the logs back at start-up.
//!
//! 1. Open the coordinator's log; the last `EPOCH_COMMIT` names the
//!    committed epoch `C` (0 for a fresh data directory) and each shard's
//!    durable LSN when it committed.
//! 2. Open every shard's WAL (recovery there truncates a torn tail and
//!    refuses mid-log corruption, naming segment and offset, and missing
//!    segments). A shard log that ends below the durable LSN a commit
//!    record names for it has lost records the log itself cannot show
//!    missing (its newest segments, or all of it, deleted): the WAL
//!    refuses it before repairing anything (`Config::durable_at_least`),
//!    and the error names the directory, the commit and the LSNs. Commit
//!    records of older builds name no LSNs; nothing is checked for them.
//! 3. Collect, per node instance, the source position and the operator
//!    snapshot logged for epoch `C` (with the fingerprint of the options
//!    that shaped the snapshot), and every sink pre-commit of an epoch `≤ C`
//!    without a `SINK_COMMITTED` record: its commit may not have run, or
//!    not to the end, before the run ended, so it runs again (commits are
//!    idempotent), first thing on its shard. Pre-commits of epochs `> C`
//!    never committed; each sink discards that staged output itself when it
//!    starts (its `ShardContext` carries `C`).
//! 4. Append a restart marker (`RESTART`, epoch `C`) to every shard's WAL.
//!    The crashed run may have logged records for epochs above `C`; the
//!    new run logs records for those epoch numbers again. When a later
//!    recovery reads the log, a marker voids every record before it whose
//!    epoch is above the marker's, so only the new run's records count.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use weir_wal::{Config, Lsn, OpenError, RecordType, RecoveryError, SyncLog, Wal};

use super::commit_record::CommitRecord;
use super::{decode_record, failpoint, split_state, SINK_COMMITTED};
use crate::error::StartError;
use crate::metrics::{wired, Registry};

/// A node instance: node name and instance index.
pub(crate) type InstanceKey = (String, usize);

/// What the logs say about the previous run.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The last committed epoch.
    pub(crate) committed: u64,
    /// Whether that was the final epoch of a run that completed.
    pub(crate) complete: bool,
    /// Source positions and operator snapshots logged for `committed`; for
    /// an operator with incremental snapshots, its newest base written
    /// whole, unless a sweep completed since (then nothing: its state is
    /// rebuilt from the sweep's records, in `changes`).
    pub(crate) state: HashMap<InstanceKey, Vec<u8>>,
    /// Per operator instance with incremental snapshots: the changes (and
    /// sweep slices) logged after its base, or from its sweep's first
    /// epoch on, up to `committed`, oldest first.
    pub(crate) changes: HashMap<InstanceKey, Vec<Vec<u8>>>,
    /// Sink pre-commits of committed epochs whose completion is not
    /// recorded, in log order per shard.
    pub(crate) commits: Vec<LoggedCommit>,
    /// Per node with operator state at `committed`: the fingerprint its
    /// snapshots were taken under (`NodeOptions::state_fingerprint`).
    pub(crate) fingerprints: HashMap<String, String>,
    /// Per source instance: intake records whose newest copy's epoch did
    /// not commit, as (identity, data), in the order they were first
    /// logged (see `crate::intake`).
    pub(crate) replay: HashMap<InstanceKey, Vec<(u64, Vec<u8>)>>,
}

/// A sink pre-commit that recovery found without its completion record.
#[derive(Debug)]
pub(crate) struct LoggedCommit {
    /// The shard whose log holds it (where its commit runs).
    pub(crate) shard: usize,
    pub(crate) epoch: u64,
    pub(crate) node: String,
    pub(crate) instance: usize,
    pub(crate) payload: Vec<u8>,
}

/// The opened logs and what they hold.
pub(crate) struct Logs {
    pub(crate) coordinator: SyncLog,
    pub(crate) shards: Vec<Wal>,
    pub(crate) recovered: Recovered,
    /// Held while the logs are in use.
    pub(crate) lock: DataDirLock,
}

/// The data directory's lock file, `DATA_DIR/lock`: an exclusive OS file
/// lock (`flock`) held by the one run that uses the directory, for as long
/// as it runs, whatever process it is in (two `weir run`, or two embedded
/// runtimes, on one directory would interleave their logs). The file holds
/// the holder's PID, so another process that finds it locked can name it.
/// The OS drops the lock when the process ends, however it ends.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: std::fs::File,
}

/// Refuses a data directory whose logs were written by another shard
/// count: node instances are keyed by shard, and keyed state by the hash of
/// its key modulo the count, so their state cannot be taken over. Before
/// any epoch committed there is no state, so fewer shard logs than this
/// run's shards are taken as they are (a run killed while it created its
/// shards' logs left only the first few); more are refused still (the
/// others may hold acknowledged input no shard of this run would replay).
fn check_shard_count(data_dir: &Path, shards: usize) -> Result<(), StartError> {
    let logs = super::data_dir_logs(data_dir).map_err(|error| log_error(data_dir, error))?;
    let saved: Vec<usize> = logs
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("shard ")?.parse().ok())
        .collect();
    if saved.is_empty() || saved.len() == shards {
        return Ok(());
    }
    if saved.iter().all(|&shard| shard < shards) && !any_commit(&data_dir.join("coordinator")) {
        return Ok(());
    }
    let saved = saved.len();
    Err(StartError::Recovery(format!(
        "{}: the data directory holds a run of {saved} shards, and this run has {shards}; \
         the state of keyed operators is split by shard, so run with {saved} shards, or \
         start a new data directory",
        data_dir.display()
    )))
}

/// Whether the coordinator's log in `dir` holds a commit record (read
/// without opening it for writing: its segments name the shard count they
/// were written for). A log that does not read counts as one that does,
/// so the shard count check stays strict.
fn any_commit(dir: &Path) -> bool {
    if !dir.exists() {
        return false;
    }
    match weir_wal::inspect_records(dir) {
        Ok(mut records) => records
            .any(|record| record.map_or(true, |record| record.kind == RecordType::EPOCH_COMMIT)),
        Err(_) => true,
    }
}

/// Takes the lock of `data_dir`, or says who holds it.
fn lock(data_dir: &Path) -> Result<DataDirLock, StartError> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| log_error(&path, error))?;
    // `File::try_lock` would do, from Rust 1.89; the crate supports 1.86.
    // SAFETY: `flock` on a descriptor this function owns open.
    let locked = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(log_error(&path, error));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(StartError::DataDirInUse {
            dir: data_dir.to_path_buf(),
            holder_pid: holder.trim().parse().ok(),
        });
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|error| log_error(&path, error))?;
    Ok(DataDirLock { _file: file })
}

fn log_error(path: &Path, error: impl std::fmt::Display) -> StartError {
    StartError::Recovery(format!("{}: {error}", path.display()))
}

fn config(shard: usize, segment_bytes: Option<u64>, on_sync: weir_wal::SyncObserver) -> Config {
    let defaults = Config::default();
    Config {
        shard: shard as u32,
        segment_bytes: segment_bytes.unwrap_or(defaults.segment_bytes),
        on_sync: Some(on_sync),
        ..defaults
    }
}

/// Opens (creating if needed) every log under `data_dir` and reads it back.
/// Each log reports its writes and syncs to `metrics`: a shard's WAL from
/// its writer thread, the coordinator's log from whichever thread commits
/// it (this one now, the coordinator thread later).
pub(crate) fn open(
    data_dir: &Path,
    shards: usize,
    segment_bytes: Option<u64>,
    metrics: &Registry,
) -> Result<Logs, StartError> {
    std::fs::create_dir_all(data_dir).map_err(|error| log_error(data_dir, error))?;
    let lock = lock(data_dir)?;
    check_shard_count(data_dir, shards)?;
    let coordinator_dir = data_dir.join("coordinator");
    let observer = wired::wal_observer(metrics, "coordinator", wired::coordinator_slot(metrics));
    let (coordinator, _) =
        SyncLog::open_dir(&coordinator_dir, &config(shards, segment_bytes, observer))
            .map_err(|error| log_error(&coordinator_dir, error))?;
    let commits = read_commits(&coordinator, &coordinator_dir)?;
    let mut recovered = Recovered {
        committed: commits.committed,
        complete: commits.complete,
        ..Recovered::default()
    };
    let committed = commits.committed;
    let mut logs = Vec::with_capacity(shards);
    for shard in 0..shards {
        let dir = shard_dir(data_dir, shard);
        let observer = wired::wal_observer(metrics, "shard", wired::wal_slot(metrics, shard));
        let mut config = config(shard, segment_bytes, observer);
        config.durable_at_least = commits.durable_lsn(shard).map(|(lsn, _)| lsn);
        let (wal, _) =
            Wal::open_dir(&dir, &config).map_err(|error| commits.open_error(shard, &dir, error))?;
        read_shard(&wal, shard, &dir, &mut recovered)?;
        logs.push(wal);
    }
    failpoint("recovery", committed);
    for (shard, wal) in logs.iter().enumerate() {
        let dir = shard_dir(data_dir, shard);
        let lsn = wal
            .append(RESTART, committed, &[])
            .map_err(|error| log_error(&dir, error))?;
        wal.wait_durable(lsn)
            .map_err(|error| log_error(&dir, error))?;
    }
    Ok(Logs {
        coordinator,
        shards: logs,
        recovered,
        lock,
    })
}

/// What the coordinator's commit records say.
#[derive(Debug, Default)]
struct Commits {
    /// The newest committed epoch (0: none).
    committed: u64,
    /// Whether its commit ended a completed run.
    complete: bool,
    /// Per shard: the highest durable LSN any commit record named, and
    /// the epoch of that record.
    shard_lsns: Vec<(u64, u64)>,
}

/// Reads every commit record of the coordinator's log.
fn read_commits(coordinator: &SyncLog, dir: &Path) -> Result<Commits, StartError> {
    let reader = coordinator
        .read_from(coordinator.first_lsn())
        .map_err(|error| log_error(dir, error))?;
    gather_commits(reader, dir)
}

/// For `weir wal inspect DATA_DIR`: per shard, the highest durable LSN the
/// coordinator's commit records name for it, with the epoch of that
/// record, read without changing anything. A shard log that ends below it
/// would be refused at start. Empty when no commit record names LSNs (a
/// new directory, or one written by an older build).
pub fn committed_shard_lsns(data_dir: &Path) -> Result<Vec<(Lsn, u64)>, String> {
    let dir = data_dir.join("coordinator");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let records = weir_wal::inspect_records(&dir).map_err(|error| error.to_string())?;
    let commits = gather_commits(records, &dir).map_err(|error| error.to_string())?;
    let shards = commits.shard_lsns.len();
    Ok((0..shards)
        .filter_map(|shard| commits.durable_lsn(shard))
        .collect())
}

/// Gathers what the commit records among `records` say.
fn gather_commits(
    records: impl Iterator<Item = Result<weir_wal::Record, weir_wal::ReadError>>,
    dir: &Path,
) -> Result<Commits, StartError> {
    let mut commits = Commits::default();
    for record in records {
        let record = record.map_err(|error| log_error(dir, error))?;
        if record.kind != RecordType::EPOCH_COMMIT {
            continue;
        }
        let Some(commit) = CommitRecord::decode(&record.payload) else {
            return Err(log_error(
                dir,
                format!(
                    "the commit record of epoch {} ({}) does not parse",
                    record.epoch, record.lsn
                ),
            ));
        };
        if record.epoch >= commits.committed {
            commits.committed = record.epoch;
            commits.complete = commit.complete;
        }
        let lsns = commit.shard_lsns.unwrap_or_default();
        if commits.shard_lsns.len() < lsns.len() {
            commits.shard_lsns.resize(lsns.len(), (0, 0));
        }
        for (named, lsn) in commits.shard_lsns.iter_mut().zip(lsns) {
            if lsn > named.0 {
                *named = (lsn, record.epoch);
            }
        }
    }
    Ok(commits)
}

impl Commits {
    /// The highest durable LSN a commit record named for `shard`, and the
    /// epoch of that record.
    fn durable_lsn(&self, shard: usize) -> Option<(Lsn, u64)> {
        let &(lsn, epoch) = self.shard_lsns.get(shard)?;
        Some((Lsn(lsn), epoch))
    }

    /// The start error for `shard`'s log that did not open: one that ends
    /// below the durable LSN a commit named says which commit.
    fn open_error(&self, shard: usize, dir: &Path, error: OpenError) -> StartError {
        let OpenError::Recovery(RecoveryError::EndsEarly { ends, durable }) = error else {
            return log_error(dir, error);
        };
        let epoch = self.durable_lsn(shard).map_or(0, |(_, epoch)| epoch);
        log_error(
            dir,
            format!(
                "the log of shard {shard} ends at {ends}, but the commit of epoch {epoch} \
                 found every record below {durable} durable: records from {ends} up to \
                 {durable} are missing (its newest segments deleted or lost?); refusing to \
                 start without them"
            ),
        )
    }
}

/// The WAL directory of `shard`.
pub(crate) fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

/// Marks where a run started after recovering epoch `C` (the record's
/// epoch); see step 4.
pub(crate) const RESTART: RecordType = RecordType::RESTART;

/// An intake record's newest copy: its epoch (`None` once a restart
/// marker voided it), owner and data.
struct IntakeCopy {
    epoch: Option<u64>,
    owner: InstanceKey,
    data: Vec<u8>,
}

fn read_shard(
    wal: &Wal,
    shard: usize,
    dir: &Path,
    recovered: &mut Recovered,
) -> Result<(), StartError> {
    // (epoch, kind, node, instance, payload) of every record still valid.
    let mut records: Vec<(u64, RecordType, String, usize, Vec<u8>)> = Vec::new();
    // (epoch, node, instance) of every sink commit that completed.
    let mut completed: HashSet<(u64, String, usize)> = HashSet::new();
    // The leading parts (`CONTINUED`) of a record split for its size, by
    // node and instance, until its last part.
    let mut partial: HashMap<(String, usize), Vec<u8>> = HashMap::new();
    // Intake records by identity (the LSN of their first copy).
    let mut intake: std::collections::BTreeMap<u64, IntakeCopy> = Default::default();
    let reader = wal
        .read_from(wal.first_lsn())
        .map_err(|error| log_error(dir, error))?;
    for record in reader {
        let record = record.map_err(|error| log_error(dir, error))?;
        if record.kind == RESTART {
            // Parts of a record whose last part a crash lost.
            partial.clear();
            records.retain(|(epoch, ..)| *epoch <= record.epoch);
            for copy in intake.values_mut() {
                if copy.epoch.is_some_and(|epoch| epoch > record.epoch) {
                    copy.epoch = None;
                }
            }
            continue;
        }
        let Some((node, instance, payload)) = decode_record(&record.payload) else {
            return Err(log_error(
                dir,
                format!("record {} is not a weir epoch record", record.lsn),
            ));
        };
        if record.kind == RecordType::CONTINUED {
            partial
                .entry((node, instance))
                .or_default()
                .extend_from_slice(payload);
            continue;
        }
        let joined;
        let payload = match partial.remove(&(node.clone(), instance)) {
            Some(mut leading) => {
                leading.extend_from_slice(payload);
                joined = leading;
                &joined[..]
            }
            None => payload,
        };
        if record.kind == SINK_COMMITTED {
            completed.insert((record.epoch, node, instance));
            continue;
        }
        if record.kind == RecordType::INPUT {
            let Some((origin, data)) = super::decode_intake(payload) else {
                return Err(log_error(
                    dir,
                    format!("intake record {} is shorter than its header", record.lsn),
                ));
            };
            let identity = origin.unwrap_or(record.lsn.0);
            let copy = intake.entry(identity).or_insert_with(|| IntakeCopy {
                epoch: None,
                owner: (node, instance),
                data: data.to_vec(),
            });
            copy.epoch = Some(record.epoch);
            continue;
        }
        let committed = recovered.committed;
        let kept = crate::limits::snapshot_kept_from(committed);
        let needed = match record.kind {
            RecordType::SOURCE_POSITIONS => record.epoch == committed,
            RecordType::OPERATOR_STATE => record.epoch == committed,
            // An instance's newest complete base at or below `committed`
            // began at `kept` or later (`limits::snapshot_kept_from`).
            RecordType::OPERATOR_BASE
            | RecordType::OPERATOR_CHANGES
            | RecordType::OPERATOR_SWEEP => record.epoch >= kept && record.epoch <= committed,
            _ => true,
        };
        if needed {
            records.push((record.epoch, record.kind, node, instance, payload.to_vec()));
        }
    }
    for (identity, copy) in intake {
        if copy.epoch.is_none_or(|epoch| epoch > recovered.committed) {
            recovered
                .replay
                .entry(copy.owner)
                .or_default()
                .push((identity, copy.data));
        }
    }
    let committed = recovered.committed;
    // Incremental snapshots, by instance: its bases (epoch, state), and its
    // changes and sweep slices (epoch, sweep flags, bytes).
    let mut bases: HashMap<InstanceKey, (u64, Vec<u8>)> = HashMap::new();
    let mut changes: HashMap<InstanceKey, Vec<(u64, u8, Vec<u8>)>> = HashMap::new();
    for (epoch, kind, node, instance, payload) in records {
        let snapshot = kind == RecordType::OPERATOR_STATE && epoch == committed;
        let based = kind == RecordType::OPERATOR_BASE;
        let swept = kind == RecordType::OPERATOR_SWEEP;
        let changed = kind == RecordType::OPERATOR_CHANGES || swept;
        if kind == RecordType::SOURCE_POSITIONS && epoch == committed {
            recovered.state.insert((node, instance), payload);
        } else if snapshot || based || changed {
            let what = if changed { "changes" } else { "state" };
            let damaged = |error: String| {
                log_error(
                    dir,
                    format!("the {what} of `{node}` instance {instance} at epoch {epoch}: {error}"),
                )
            };
            let (flags, payload) = match (swept, payload.split_first()) {
                (false, _) => (0, &payload[..]),
                (true, Some((flags, rest))) => (*flags, rest),
                (true, None) => return Err(damaged("the sweep record is empty".into())),
            };
            let (fingerprint, state) = split_state(payload).map_err(damaged)?;
            if let Some(fingerprint) = fingerprint {
                recovered
                    .fingerprints
                    .insert(node.clone(), fingerprint.to_string());
            }
            if changed {
                changes
                    .entry((node, instance))
                    .or_default()
                    .push((epoch, flags, state.to_vec()));
            } else if based {
                let newest = bases.get(&(node.clone(), instance)).map(|(e, _)| *e);
                if newest.is_none_or(|newest| epoch >= newest) {
                    bases.insert((node, instance), (epoch, state.to_vec()));
                }
            } else {
                recovered.state.insert((node, instance), state.to_vec());
            }
        } else if kind == RecordType::SINK_PRECOMMIT
            && epoch <= recovered.committed
            && !completed.contains(&(epoch, node.clone(), instance))
        {
            recovered.commits.push(LoggedCommit {
                shard,
                epoch,
                node,
                instance,
                payload,
            });
        }
    }
    // An instance with incremental snapshots logged a base, changes or a
    // sweep slice at every epoch it ran: if it ran at `committed`, its
    // state is its newest complete base (one written whole, or the records
    // of a complete sweep from its first on, applied to an empty state)
    // with every change after it. (One that finished before logged nothing
    // at `committed` and starts empty, as any finished instance.)
    let mut instances: Vec<InstanceKey> = bases.keys().chain(changes.keys()).cloned().collect();
    instances.sort();
    instances.dedup();
    for key in instances {
        let base = bases.remove(&key);
        let mut list = changes.remove(&key).unwrap_or_default();
        list.sort_by_key(|(epoch, ..)| *epoch);
        let swept = newest_complete_sweep(&list);
        let (start, state) = match (base, swept) {
            (Some((base_epoch, state)), swept) if swept.is_none_or(|s| s < base_epoch) => {
                list.retain(|(epoch, ..)| *epoch > base_epoch);
                (base_epoch, state)
            }
            (_, Some(sweep)) => {
                list.retain(|(epoch, ..)| *epoch >= sweep);
                (sweep, Vec::new())
            }
            // (`(Some, None)` took the first arm.)
            _ => {
                let (node, instance) = key;
                return Err(log_error(
                    dir,
                    format!(
                        "`{node}` instance {instance} has changes logged up to epoch \
                         {committed} but no complete base before them"
                    ),
                ));
            }
        };
        let reaches =
            start == committed || list.last().is_some_and(|(epoch, ..)| *epoch == committed);
        if !reaches {
            continue;
        }
        if state.is_empty() {
            recovered.state.remove(&key);
        } else {
            recovered.state.insert(key.clone(), state);
        }
        recovered
            .changes
            .insert(key, list.into_iter().map(|(.., bytes)| bytes).collect());
    }
    Ok(())
}

/// The first epoch of the newest base sweep in `records` (an instance's
/// changes and sweep slices, by epoch, with their sweep flags) that is
/// complete: the records from it on rebuild the state from nothing.
fn newest_complete_sweep(records: &[(u64, u8, Vec<u8>)]) -> Option<u64> {
    let (mut sweeping, mut complete) = (None, None);
    for &(epoch, flags, _) in records {
        if flags & SWEEP_BEGINS != 0 {
            sweeping = Some(epoch);
        }
        if flags & SWEEP_COMPLETE != 0 && sweeping.is_some() {
            complete = sweeping;
        }
    }
    complete
}

/// Flags of an `OPERATOR_SWEEP` record: a sweep begins at its epoch.
pub(crate) const SWEEP_BEGINS: u8 = 1;
/// Flags of an `OPERATOR_SWEEP` record: the sweep is complete at its epoch.
pub(crate) const SWEEP_COMPLETE: u8 = 2;

/// Logs a completion record for each of `commits` (which ran) in its
/// shard's WAL and waits until they are durable: for the commits a start
/// re-runs itself (on a data directory whose run completed).
pub(crate) fn record_completed(wals: &[Wal], commits: &[LoggedCommit]) -> Result<(), StartError> {
    for commit in commits {
        let failed = |error: &dyn std::fmt::Display| {
            StartError::Recovery(format!(
                "recording the commit of sink `{}` for epoch {}: {error}",
                commit.node, commit.epoch
            ))
        };
        let wal = &wals[commit.shard];
        let record = super::encode_record(&commit.node, commit.instance, &[]);
        let lsn = wal
            .append(SINK_COMMITTED, commit.epoch, &record)
            .map_err(|error| failed(&error))?;
        wal.wait_durable(lsn).map_err(|error| failed(&error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(list: &[(u64, u8)]) -> Vec<(u64, u8, Vec<u8>)> {
        list.iter()
            .map(|&(epoch, flags)| (epoch, flags, Vec::new()))
            .collect()
    }

    /// A run stopped (or killed) while it retired the segments before its
    /// newest complete sweep, a segment at a time, leaves the end of the
    /// sweep before it, complete flag and all, without its beginning: the
    /// newer sweep is the one taken.
    #[test]
    fn the_rest_of_a_partly_retired_sweep_is_never_taken() {
        let partly_retired = records(&[
            (70, 0),
            (79, SWEEP_COMPLETE),
            (100, 0),
            (128, SWEEP_BEGINS),
            (135, 0),
            (143, SWEEP_COMPLETE),
            (150, 0),
        ]);
        assert_eq!(newest_complete_sweep(&partly_retired), Some(128));
        // Its rest alone rebuilds nothing.
        assert_eq!(newest_complete_sweep(&partly_retired[..3]), None);
        // A sweep begun but not complete leaves the one before it in use.
        let begun = records(&[
            (64, SWEEP_BEGINS),
            (79, SWEEP_COMPLETE),
            (128, SWEEP_BEGINS),
            (130, 0),
        ]);
        assert_eq!(newest_complete_sweep(&begun), Some(64));
    }
}
