//! Goal: a record pushed into an embedded pipeline with
//! `Handle::push_durable*` whose receipt completed takes effect exactly
//! once in committed output, across SIGKILL and restarts; and no pushed
//! record (acknowledged or not) takes effect twice.
//!
//! Method: this test's own binary, started again with `CHILD_DIR` set, is
//! the service: it embeds a runtime (2 shards, 20 ms epochs, a data
//! directory) running input → a committing sink, and two threads push
//! distinct ids with `push_durable_blocking`, keeping up to 32 receipts in
//! flight each, and print `acked <id>` for every receipt that completed.
//! The sink stages each epoch's ids in its pre-commit (so they are in the
//! WAL) and publishes them, once the epoch commits, as one file per shard
//! and epoch.
//!
//! The test kills the child with SIGKILL after a number of acknowledgements
//! drawn from a seeded generator, restarts it on the same directories, and
//! so on; the last child pushes a fixed number of ids and shuts down
//! gracefully. Then every published id must be distinct, and every id
//! whose receipt completed must be published. Ids acknowledged but not yet
//! published when a child was killed are counted: they are what recovery
//! (the WAL's logged pushes, replayed, or its committed pre-commits,
//! published again) had to bring back, and the test requires some.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use weir::runtime::{Batch, OperatorError, Partition, Runtime, Sink};
use weir::Event;

/// Set in the child: the directory holding its `data` and `out`
/// directories.
const CHILD_DIR: &str = "WEIR_EMBED_CRASH_DIR";
/// Set in the child: the first id it pushes (ids are `first + thread + 2i`).
const CHILD_FIRST: &str = "WEIR_EMBED_CRASH_FIRST";
/// Set in the child: push this many ids in all, then shut down gracefully
/// (unset: push until killed).
const CHILD_COUNT: &str = "WEIR_EMBED_CRASH_COUNT";

const THIS_TEST: &str = "sigkill_loses_no_durably_acknowledged_push";
const KILLS: usize = 5;
const IDS_PER_RUN: u64 = 1 << 32;
const LAST_RUN_IDS: u64 = 2_000;
const IN_FLIGHT: usize = 32;

/// Publishes each epoch's ids as `out/shard-<s>-epoch-<e>`: the pre-commit
/// carries the ids themselves (so the WAL holds them), and the commit
/// writes the file (idempotently: same name, same bytes).
struct CommittingSink {
    out: PathBuf,
    shard: usize,
    ids: Vec<u64>,
}

impl Sink for CommittingSink {
    type Input = Event<u64>;

    fn write(&mut self, _: usize, batch: &Batch<Event<u64>>) {
        self.ids
            .extend(batch.iter().map(|event| event.value.to_native()));
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let path = self
            .out
            .join(format!("shard-{}-epoch-{epoch:010}", self.shard));
        let path = path.to_str().expect("a UTF-8 temporary path").as_bytes();
        let mut staged = (path.len() as u64).to_le_bytes().to_vec();
        staged.extend_from_slice(path);
        for id in self.ids.drain(..) {
            staged.extend_from_slice(&id.to_le_bytes());
        }
        Ok(staged)
    }

    fn commit(staged: &[u8], _control: &weir::runtime::CommitControl) -> Result<(), OperatorError> {
        if staged.is_empty() {
            return Ok(());
        }
        let length = u64::from_le_bytes(staged[..8].try_into().unwrap()) as usize;
        let path = std::str::from_utf8(&staged[8..8 + length]).map_err(|e| e.to_string())?;
        let temporary = format!("{path}.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&staged[8 + length..])
            .and_then(|()| file.sync_all())?;
        Ok(std::fs::rename(&temporary, path)?)
    }
}

/// The service: see the module documentation.
fn child(dir: &Path) {
    let first: u64 = std::env::var(CHILD_FIRST).unwrap().parse().unwrap();
    let count: Option<u64> = std::env::var(CHILD_COUNT).ok().map(|n| n.parse().unwrap());
    let out = dir.join("out");
    let runtime = Runtime::builder()
        .shards(2)
        .pin(false)
        .data_dir(dir.join("data"))
        .epoch_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let mut pipeline = weir::Pipeline::new(runtime);
    let input = pipeline.input("ids", |id: &u64| *id);
    let graph = pipeline.graph();
    graph.sink("committed", move |context| CommittingSink {
        out: out.clone(),
        shard: context.shard,
        ids: Vec::new(),
    });
    graph.connect::<Event<u64>>("ids", "committed", Partition::Forward);
    let service = pipeline.start().unwrap();
    let pushers: Vec<_> = (0..2u64)
        .map(|thread| {
            let handle = service.handle();
            let input = input.clone();
            std::thread::spawn(move || {
                let stdout = std::io::stdout();
                let mut in_flight = std::collections::VecDeque::new();
                let ack = |id: u64, receipt: weir::Receipt| {
                    receipt.wait().expect("the record is durable");
                    writeln!(stdout.lock(), "acked {id}").unwrap();
                };
                let ids = count.map_or(IDS_PER_RUN, |count| count / 2);
                for i in 0..ids {
                    let id = first + thread + 2 * i;
                    in_flight.push_back((id, handle.push_durable_blocking(&input, id).unwrap()));
                    if in_flight.len() >= IN_FLIGHT {
                        let (id, receipt) = in_flight.pop_front().unwrap();
                        ack(id, receipt);
                    }
                }
                for (id, receipt) in in_flight {
                    ack(id, receipt);
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.join().unwrap();
    }
    service.shutdown().unwrap();
}

/// Acknowledged ids a child printed, as they come.
#[derive(Default)]
struct Acked {
    ids: Mutex<(Vec<u64>, bool)>,
    changed: Condvar,
}

fn spawn(dir: &Path, first: u64, count: Option<u64>) -> (Child, Arc<Acked>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", THIS_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_FIRST, first.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(count) = count {
        command.env(CHILD_COUNT, count.to_string());
    }
    let mut child = command.spawn().expect("start the child");
    let acked = Arc::new(Acked::default());
    let reader = acked.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness's `test <name> ... ` may precede the first.
            if let Some((_, id)) = line.split_once("acked ") {
                reader.ids.lock().unwrap().0.push(id.parse().unwrap());
                reader.changed.notify_all();
            }
        }
        reader.ids.lock().unwrap().1 = true;
        reader.changed.notify_all();
    });
    (child, acked)
}

/// Waits until the child printed `count` acknowledgements.
fn wait_for_acks(acked: &Acked, count: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ids = acked.ids.lock().unwrap();
    while ids.0.len() < count {
        assert!(
            !ids.1,
            "the child ended after {} acknowledgements: {:?}",
            ids.0.len(),
            child.wait()
        );
        assert!(
            Instant::now() < deadline,
            "no progress: {} acknowledged",
            ids.0.len()
        );
        ids = acked
            .changed
            .wait_timeout(ids, Duration::from_millis(100))
            .unwrap()
            .0;
    }
}

/// The ids of every published file, with how often each appears.
fn published(out: &Path) -> HashMap<u64, usize> {
    let mut ids = HashMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some() {
            continue; // a `.tmp` a kill interrupted
        }
        let bytes = std::fs::read(&path).unwrap();
        for id in bytes.chunks_exact(8) {
            *ids.entry(u64::from_le_bytes(id.try_into().unwrap()))
                .or_default() += 1;
        }
    }
    ids
}

#[test]
fn sigkill_loses_no_durably_acknowledged_push() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut recovered = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for run in 0..KILLS as u64 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after = 200 + (seed >> 33) as usize % 3_000;
        let (mut child, acks) = spawn(dir.path(), run * IDS_PER_RUN, None);
        wait_for_acks(&acks, kill_after, &mut child);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let ids = std::mem::take(&mut acks.ids.lock().unwrap().0);
        let published = published(&dir.path().join("out"));
        let unpublished = ids.iter().filter(|id| !published.contains_key(id)).count();
        eprintln!(
            "run {run}: killed after {} acknowledgements, {unpublished} of them not yet published",
            ids.len()
        );
        recovered += unpublished;
        acked.extend(ids);
    }
    let (mut child, acks) = spawn(dir.path(), KILLS as u64 * IDS_PER_RUN, Some(LAST_RUN_IDS));
    let status = child.wait().unwrap();
    assert!(status.success(), "the last child failed: {status}");
    wait_for_acks(&acks, LAST_RUN_IDS as usize, &mut child);
    acked.extend(std::mem::take(&mut acks.ids.lock().unwrap().0));

    let published = published(&dir.path().join("out"));
    let twice: Vec<_> = published.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "ids published more than once: {twice:?}");
    let acked_set: HashSet<u64> = acked.iter().copied().collect();
    assert_eq!(acked_set.len(), acked.len(), "an id was acknowledged twice");
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !published.contains_key(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged ids were never published, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let unacknowledged = published.len() - acked.len();
    eprintln!(
        "{} acknowledged, all published once; {recovered} were brought back by recovery; \
         {unacknowledged} published ids were never acknowledged (in flight at a kill)",
        acked.len()
    );
    assert!(recovered > 0, "no kill left an acknowledged id unpublished");
}
