//! Starting and stopping the shards.
//!
//! [`Runtime`] checks what the machine allows before starting anything:
//! io_uring must be available, and the locked-memory limit must cover every
//! shard's registered io_uring buffers (the error says which limit and how
//! to raise it). It then lays the graph out over the shards and starts one
//! glommio executor per shard, pinned to its own core.
//!
//! Shutdown protocol:
//! 1. [`Handle::shutdown`] (or [`Handle::shutdown_and_drain`]) sets a flag
//!    that every source checks before each poll; a bounded source also
//!    stops by itself when it is exhausted.
//! 2. A stopping source flushes its open batches and closes every output
//!    ring: with a data directory, after the final epoch's position, with
//!    `Stop` for a stop (a savepoint: the input did not end) and with end
//!    of stream for a drain or a bounded run's end; without a data
//!    directory always with end of stream (there is no savepoint to keep
//!    state in, so a stop drains).
//! 3. A node instance whose input rings all closed either finishes (end of
//!    stream: a final watermark, then `finish` fires open windows) or stops
//!    (`Stop`: its state stays as it is); with a data directory it then
//!    snapshots the final epoch. It closes its output rings the same way;
//!    sinks flush last.
//! 4. Each shard returns when all its node instances have returned (and,
//!    with a data directory, the final epoch committed and its sink commits
//!    ran), and [`Running::wait`] returns when all shards have. A stop that
//!    does not get there within the stop timeout
//!    ([`RuntimeBuilder::stop_timeout`]) gives up:
//!    [`RunError::StopTimedOut`](crate::RunError::StopTimedOut).
//!
//! Failure protocol: a run has one abort flag, shared by every shard and,
//! with a data directory, by the epoch coordinator
//! (`EpochShared::aborted`). It is set the moment any node task (or a
//! shard's epoch task) returns an error ([`NodeFailure`]: `Emitter::fail`,
//! a state, log or sink commit error, a closed ring, a panic in the task,
//! caught there), when a shard's thread panics outside its tasks (they are
//! dropped unfinished while it unwinds), and
//! by the coordinator when its own log fails. Once it is set:
//! - the coordinator requests and commits nothing more and returns, so no
//!   epoch holding records past the failure commits (such an epoch could
//!   not be durable on the failed node's shard anyway); recovery on the
//!   next start resumes from the last committed epoch;
//! - every source stops at its next turn (an idle one within
//!   [`SOURCE_IDLE_SLEEP_MS`](crate::limits::SOURCE_IDLE_SLEEP_MS)), every wait
//!   for the final epoch ends, and every shard's epoch task returns, each
//!   with [`NodeFailure::Aborted`]; a task that ends drops its rings, so
//!   the nodes that waited on them see them close and end too;
//! - [`Running::wait`] joins every shard and reports the first root cause,
//!   naming its node and shard (or the panicking shard), over these
//!   consequences ([`RunError::is_consequence`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::batch::{BufferGauge, ReturnRings};
use crate::epoch::coordinator::{self, CoordinatorReport, Timing};
use crate::epoch::recovery::{self, LoggedCommit, Recovered};
use crate::epoch::shard::RecoveredCommit;
use crate::epoch::{CommitControl, EpochConfig, EpochShared, SinkSteps};
#[cfg(doc)]
use crate::error::NodeFailure;
use crate::error::{panic_message, Error, RunError, StartError};
use crate::graph::Graph;
use crate::graph::ShardPlan;
use crate::limits::{
    EPOCH_INTERVAL_DEFAULT_MS, SHARDS_MAX, SHARD_IO_MEMORY_BYTES,
    SHARD_PREEMPT_INTERVAL_LOW_LATENCY_US, SHARD_PREEMPT_INTERVAL_MS, STOP_TIMEOUT_DEFAULT_MS,
};
use crate::metrics::{wired, MetricsServer, Registry};
use crate::shard::run_shard;
use crate::shard::ShardLog;
use crate::stop::StopRequest;
use crate::system;

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    shards: Option<usize>,
    pin: bool,
    io_memory_bytes: usize,
    data_dir: Option<PathBuf>,
    epoch_interval: Duration,
    wal_segment_bytes: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    /// `Some(remote)`: serve `/tap` (see [`RuntimeBuilder::tap`]).
    tap: Option<bool>,
    latency: LatencyOptions,
    stop_timeout: Duration,
    discard_state: Vec<String>,
    sink_backlog_epochs: usize,
}

/// How a shard trades throughput for latency; see
/// [`RuntimeBuilder::low_latency`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatencyOptions {
    /// How long an idle shard spins before it parks.
    pub(crate) spin_before_park: Duration,
    /// How long a shard runs tasks before it polls its reactor.
    pub(crate) preempt_interval: Duration,
    /// Whether a processor hands its partly filled batches on whenever its
    /// inputs are momentarily empty.
    pub(crate) flush_when_idle: bool,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions {
            spin_before_park: Duration::ZERO,
            preempt_interval: Duration::from_millis(SHARD_PREEMPT_INTERVAL_MS),
            flush_when_idle: false,
        }
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            shards: None,
            pin: true,
            io_memory_bytes: SHARD_IO_MEMORY_BYTES,
            data_dir: None,
            epoch_interval: Duration::from_millis(EPOCH_INTERVAL_DEFAULT_MS),
            wal_segment_bytes: None,
            metrics_listen: None,
            tap: None,
            latency: LatencyOptions::default(),
            stop_timeout: Duration::from_millis(STOP_TIMEOUT_DEFAULT_MS),
            sink_backlog_epochs: crate::limits::SINK_BACKLOG_EPOCHS_DEFAULT,
            discard_state: Vec::new(),
        }
    }
}

impl RuntimeBuilder {
    /// Number of shards; by default one per core this process may use.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Whether each shard is pinned to its own core (default: yes).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// io_uring buffer memory per shard, in bytes (locked memory).
    pub fn io_memory_bytes(mut self, bytes: usize) -> Self {
        self.io_memory_bytes = bytes;
        self
    }

    /// Turns on exactly-once: the shards' write-ahead logs and the
    /// coordinator's log live under `dir`, and a run on a directory that
    /// holds a previous run recovers from its last committed epoch.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// How often an epoch starts (default 100 ms); only with a data
    /// directory.
    pub fn epoch_interval(mut self, interval: Duration) -> Self {
        self.epoch_interval = interval;
        self
    }

    /// How long a graceful stop ([`Handle::shutdown`]) may take, with a
    /// data directory, before it gives up (default 10 s): if the final
    /// epoch has not committed by then (a sink commit retrying a receiver
    /// that is down holds it back), the sink commits still running are
    /// cancelled and the run ends with
    /// [`RunError::StopTimedOut`](crate::RunError::StopTimedOut). Nothing
    /// is lost: the next start resumes from the last committed epoch and
    /// runs the commits that did not complete.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// How many pre-committed epochs one sink may leave waiting for their
    /// commit on a shard (default 600, a minute of 100 ms epochs; at least
    /// 1). Sinks commit independently: one whose commit waits (a receiver
    /// that is down, retried) holds back only its own commits while the
    /// others go on publishing, its pre-commits kept in the write-ahead
    /// log; past this bound it takes no more input, and backpressure
    /// reaches the sources.
    pub fn sink_backlog_epochs(mut self, epochs: usize) -> Self {
        self.sink_backlog_epochs = epochs.max(1);
        self
    }

    /// Starts the named nodes without the state the data directory holds
    /// for them (Flink's `--allowNonRestoredState`, per node): for a node
    /// whose state-shaping options changed
    /// ([`NodeOptions::state_fingerprint`](crate::NodeOptions::state_fingerprint)),
    /// or that is no longer in the graph. Without this such a start is
    /// refused ([`StartError::IncompatibleState`]). A name that is neither
    /// in the graph nor in the saved state is refused too.
    pub fn discard_state(mut self, nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.discard_state.extend(nodes.into_iter().map(Into::into));
        self
    }

    /// Size of each WAL segment file (default 64 MiB). Old segments are
    /// deleted whole once no committed epoch needs them, so smaller
    /// segments are retired sooner.
    pub fn wal_segment_bytes(mut self, bytes: u64) -> Self {
        self.wal_segment_bytes = Some(bytes);
        self
    }

    /// Serves the runtime's metrics ([`Runtime::metrics`]) over HTTP at
    /// `addr` (`GET /metrics`, Prometheus text format) for as long as the
    /// [`Runtime`] lives, from a thread of its own. Port 0 picks a free
    /// port; [`Runtime::metrics_addr`] tells which.
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }

    /// Serves `GET /tap` on the metrics endpoint too: a sample of what a
    /// described output emits ([`crate::tap`], `weir tap`). Off by
    /// default; when on, only loopback clients may tap unless `remote`.
    pub fn tap(mut self, remote: bool) -> Self {
        self.tap = Some(remote);
        self
    }

    /// Tunes the shards for latency rather than throughput, for a runtime
    /// embedded in a latency-critical service:
    /// - an idle shard spins for `spin` before it parks, so input from
    ///   another thread is picked up within microseconds instead of after a
    ///   kernel wake-up (the shard's core stays busy while it spins);
    /// - a shard polls for wake-ups from other threads every 100 µs while
    ///   it is busy (instead of every 2 ms);
    /// - a processor hands on its partly filled output batches whenever
    ///   its inputs are momentarily empty, instead of when they fill or a
    ///   watermark passes.
    ///
    /// Throughput under load is unchanged (batches still fill when input
    /// waits); at low rates output goes in smaller batches.
    pub fn low_latency(mut self, spin: Duration) -> Self {
        self.latency = LatencyOptions {
            spin_before_park: spin,
            preempt_interval: Duration::from_micros(SHARD_PREEMPT_INTERVAL_LOW_LATENCY_US),
            flush_when_idle: true,
        };
        self
    }

    /// Checks the configuration against the machine (and, with
    /// [`metrics_listen`](RuntimeBuilder::metrics_listen), starts serving
    /// metrics).
    pub fn build(self) -> Result<Runtime, StartError> {
        let cores = system::usable_cores();
        let shards = self.shards.unwrap_or(cores.len().max(1));
        if shards == 0 || shards > SHARDS_MAX {
            return Err(StartError::Shards {
                requested: shards,
                max: SHARDS_MAX,
            });
        }
        if self.pin && cores.len() < shards {
            return Err(StartError::Cores {
                shards,
                available: cores.len(),
            });
        }
        system::check_io_uring()?;
        system::check_locked_memory(shards, self.io_memory_bytes)?;
        let metrics = Registry::with_writers(shards, wired::writers(shards));
        let taps = crate::tap::Taps::default();
        let admin = crate::metrics::Admin {
            taps: self.tap.map(|remote| (taps.clone(), remote)),
        };
        let metrics_server = match self.metrics_listen {
            Some(addr) => {
                let server = crate::metrics::serve_admin(addr, metrics.clone(), admin)
                    .map_err(|error| StartError::Metrics { addr, error })?;
                tracing::info!(addr = %server.local_addr(), "serving metrics at /metrics");
                Some(server)
            }
            None => None,
        };
        Ok(Runtime {
            shards,
            metrics,
            taps,
            metrics_server,
            cores: self.pin.then_some(cores),
            io_memory_bytes: self.io_memory_bytes,
            latency: self.latency,
            epochs: self.data_dir.map(|data_dir| EpochConfig {
                data_dir,
                interval: self.epoch_interval,
                segment_bytes: self.wal_segment_bytes,
            }),
            stop_timeout: self.stop_timeout,
            discard_state: self.discard_state,
            sink_backlog_epochs: self.sink_backlog_epochs,
        })
    }
}

/// A configured set of shards that runs graphs.
#[derive(Debug)]
pub struct Runtime {
    shards: usize,
    metrics: Registry,
    /// The current run's tappable outputs.
    taps: crate::tap::Taps,
    /// Serves `metrics` while the runtime lives.
    metrics_server: Option<MetricsServer>,
    cores: Option<Vec<usize>>,
    io_memory_bytes: usize,
    latency: LatencyOptions,
    epochs: Option<EpochConfig>,
    stop_timeout: Duration,
    discard_state: Vec<String>,
    sink_backlog_epochs: usize,
}

impl Runtime {
    /// A builder with defaults: one shard per usable core, pinned.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The runtime's metrics, shared by every graph it runs (one graph at
    /// a time: each shard's cells have one writer). Served by
    /// [`RuntimeBuilder::metrics_listen`], or serve them with
    /// [`metrics::serve`](crate::metrics::serve).
    pub fn metrics(&self) -> &Registry {
        &self.metrics
    }

    /// Where the metrics endpoint listens, with the real port when port 0
    /// was asked for; `None` without
    /// [`metrics_listen`](RuntimeBuilder::metrics_listen).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// The running graph's tappable outputs ([`crate::tap`]), served at
    /// `/tap` with [`RuntimeBuilder::tap`].
    pub fn taps(&self) -> &crate::tap::Taps {
        &self.taps
    }

    /// Runs `graph` until every source is exhausted and everything drained.
    pub fn run(&self, graph: Graph) -> Result<RunReport, Error> {
        Ok(self.start(graph)?.wait()?)
    }

    /// Starts `graph` in the background.
    pub fn start(&self, graph: Graph) -> Result<Running, StartError> {
        let gauge = Arc::new(BufferGauge::default());
        let request = Arc::new(StopRequest::default());
        let stop = request.stop.clone();
        self.metrics.run_starting(stop.clone());
        // The run's abort flag: see the module documentation.
        let aborted = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        tracing::info!(
            shards = self.shards,
            data_dir = ?self.epochs.as_ref().map(|epochs| &epochs.data_dir),
            "starting the pipeline"
        );
        let (recovered, mut logs) = match &self.epochs {
            Some(config) => {
                let (recovered, logs) = self.recover(&graph, config, &request, &aborted)?;
                let Some(logs) = logs else {
                    // The final epoch of this data directory's run committed.
                    tracing::info!(
                        committed_epoch = recovered.committed,
                        "the data directory's run already completed; nothing to run"
                    );
                    return Ok(Running::complete(
                        recovered.committed,
                        request,
                        gauge,
                        started,
                    ));
                };
                (Some(recovered), Some(logs))
            }
            None => (None, None),
        };
        let committed = recovered.as_ref().map_or(0, |r| r.committed);
        let mut plans = graph.plan(
            self.shards,
            committed,
            self.epochs.is_some(),
            &self.metrics,
            &self.taps,
        );
        if let Some(recovered) = recovered {
            restore_into(
                &mut plans,
                recovered.state,
                recovered.changes,
                recovered.replay,
            );
        }
        let shard_logs: Vec<Option<ShardLog>> = match &mut logs {
            Some(logs) => std::mem::take(&mut logs.wals)
                .into_iter()
                .zip(std::mem::take(&mut logs.commits))
                .map(|(wal, recovered)| {
                    Some(ShardLog {
                        wal,
                        shared: logs.shared.clone(),
                        recovered,
                    })
                })
                .collect(),
            None => (0..self.shards).map(|_| None).collect(),
        };
        let mut shards = Vec::with_capacity(self.shards);
        let returns = ReturnRings::mesh(self.shards).into_iter();
        for (shard, ((plan, returns), log)) in
            plans.into_iter().zip(returns).zip(shard_logs).enumerate()
        {
            let placement = match &self.cores {
                Some(cores) => Placement::Fixed(cores[shard]),
                // Unpinned but fenced to the usable cores: glommio keeps
                // `spin_before_park` only for executors bound to a CPU set
                // (an unbound one parks at once), and `low_latency` needs it.
                None => match glommio::CpuSet::online() {
                    Ok(cpus) => {
                        let usable = system::usable_cores();
                        let cpus = cpus.filter(|cpu| usable.contains(&cpu.cpu));
                        if cpus.is_empty() {
                            Placement::Unbound
                        } else {
                            Placement::Fenced(cpus)
                        }
                    }
                    Err(_) => Placement::Unbound,
                },
            };
            let (shard_gauge, shard_stop, shard_aborted) =
                (gauge.clone(), stop.clone(), aborted.clone());
            let latency = self.latency;
            let registry = self.metrics.clone();
            let mut executor = LocalExecutorBuilder::new(placement)
                .name(&format!("weir-shard-{shard}"))
                .io_memory(self.io_memory_bytes)
                .preempt_timer(latency.preempt_interval);
            if !latency.spin_before_park.is_zero() {
                executor = executor.spin_before_park(latency.spin_before_park);
            }
            let spawned = executor.spawn(move || {
                run_shard(
                    shard,
                    plan,
                    returns,
                    shard_gauge,
                    shard_stop,
                    shard_aborted,
                    log,
                    latency.flush_when_idle,
                    registry,
                )
            });
            match spawned {
                Ok(join) => shards.push(join),
                Err(error) => {
                    // Shards already started see their rings to this shard
                    // close and stop; wait for them before reporting. The
                    // run is aborted: no epoch may commit without this
                    // shard, so nothing may wait for one.
                    stop.store(true, Ordering::Relaxed);
                    aborted.store(true, Ordering::Release);
                    let epochs = logs.map(|logs| (logs.shared, logs.coordinator));
                    drop(wait_all(shards, epochs));
                    return Err(StartError::Executor {
                        shard,
                        message: error.to_string(),
                    });
                }
            }
        }
        let (epochs, lock) = match logs {
            Some(logs) => (Some((logs.shared, logs.coordinator)), Some(logs.lock)),
            None => (None, None),
        };
        Ok(Running {
            shards,
            handle: Handle { request },
            gauge,
            started,
            epochs,
            complete_at: None,
            resumed_from_epoch: committed,
            _lock: lock,
        })
    }

    /// Reads the data directory back, checks its state fits `graph`, and
    /// starts the coordinator. The sink commits the previous run left to
    /// do are handed to their shards, which run them first; on a data
    /// directory whose run completed they run here, since nothing else
    /// will.
    fn recover(
        &self,
        graph: &Graph,
        config: &EpochConfig,
        request: &Arc<StopRequest>,
        aborted: &Arc<AtomicBool>,
    ) -> Result<(Recovered, Option<StartedLogs>), StartError> {
        let mut logs = recovery::open(
            &config.data_dir,
            self.shards,
            config.segment_bytes,
            &self.metrics,
        )?;
        let recovered = &logs.recovered;
        tracing::info!(
            committed_epoch = recovered.committed,
            complete = recovered.complete,
            replayed_intake_records = recovered.replay.values().map(Vec::len).sum::<usize>(),
            restored_instances = recovered.state.len(),
            sink_commits_to_run = recovered.commits.len(),
            "recovered the data directory"
        );
        self.check_state(graph, &mut logs.recovered)?;
        let commits = std::mem::take(&mut logs.recovered.commits);
        let steps = commits
            .iter()
            .map(|commit| {
                graph.steps_of(&commit.node).ok_or_else(|| {
                    StartError::Recovery(format!(
                        "the log names sink `{}`, which is not in the graph",
                        commit.node
                    ))
                })
            })
            .collect::<Result<Vec<SinkSteps>, StartError>>()?;
        let epoch_metrics = wired::EpochMetrics::new(&self.metrics);
        if logs.recovered.complete {
            commit_now(&commits, &steps)?;
            recovery::record_completed(&logs.shards, &commits)?;
            // No coordinator runs: this thread has its slot.
            epoch_metrics.committed(logs.recovered.committed);
            return Ok((logs.recovered, None));
        }
        for commit in &commits {
            tracing::info!(
                sink = %commit.node,
                instance = commit.instance,
                epoch = commit.epoch,
                "a commit of a committed epoch did not complete before the last run ended; \
                 running it again"
            );
        }
        let mut per_shard: Vec<Vec<RecoveredCommit>> =
            (0..self.shards).map(|_| Vec::new()).collect();
        for (commit, steps) in commits.into_iter().zip(steps) {
            per_shard[commit.shard].push(RecoveredCommit {
                epoch: commit.epoch,
                node: commit.node.into(),
                instance: commit.instance,
                steps,
                payload: commit.payload,
            });
        }
        let sources = graph.source_instances(self.shards);
        let durable: Vec<u64> = logs.shards.iter().map(|wal| wal.durable_lsn().0).collect();
        let mut shared =
            EpochShared::new(&durable, sources, logs.recovered.committed, aborted.clone());
        shared.sink_backlog_epochs = self.sink_backlog_epochs;
        let shared = Arc::new(shared);
        // Restored from a base (and changes): keep it until a newer base
        // commits.
        shared.keep_bases.store(
            !logs.recovered.changes.is_empty(),
            std::sync::atomic::Ordering::Release,
        );
        let timing = Timing {
            interval: config.interval,
            stop_timeout: self.stop_timeout,
        };
        let coordinator = coordinator::spawn(
            logs.coordinator,
            shared.clone(),
            timing,
            request.clone(),
            epoch_metrics,
        )
        .map_err(|error| {
            StartError::Recovery(format!("cannot start the epoch coordinator: {error}"))
        })?;
        let started = StartedLogs {
            wals: logs.shards,
            commits: per_shard,
            shared,
            coordinator,
            lock: logs.lock,
        };
        Ok((logs.recovered, Some(started)))
    }

    /// Refuses saved state whose node changed the options that shape it or
    /// left the graph, unless it is to be discarded; drops the state of
    /// the nodes named in [`RuntimeBuilder::discard_state`].
    fn check_state(&self, graph: &Graph, recovered: &mut Recovered) -> Result<(), StartError> {
        for name in &self.discard_state {
            let saved = recovered.state.keys().any(|(node, _)| node == name)
                || recovered.changes.keys().any(|(node, _)| node == name);
            if graph.node(name).is_none() && !saved {
                return Err(StartError::UnknownDiscard(name.clone()));
            }
        }
        let (mut nodes, mut names) = (Vec::new(), Vec::new());
        let mut fingerprints: Vec<(&String, &String)> = recovered.fingerprints.iter().collect();
        fingerprints.sort();
        for (node, saved) in fingerprints {
            if self.discard_state.contains(node) {
                continue;
            }
            let problem = match graph.node(node) {
                None => "has saved state but is no longer in the pipeline".to_string(),
                Some(spec) if !saved.is_empty() && *spec.fingerprint != **saved => {
                    format!(
                        "changed since its state was saved: {}",
                        crate::graph::describe_change(saved, &spec.fingerprint)
                    )
                }
                Some(_) => continue,
            };
            nodes.push(format!("`{node}` {problem}"));
            names.push(node.clone());
        }
        if !nodes.is_empty() {
            return Err(StartError::IncompatibleState { nodes, names });
        }
        for name in &self.discard_state {
            let before = recovered.state.len();
            recovered.state.retain(|(node, _), _| node != name);
            recovered.changes.retain(|(node, _), _| node != name);
            tracing::warn!(
                node = %name,
                instances = before - recovered.state.len(),
                "discarding the saved state of this component, as asked: it starts empty"
            );
        }
        Ok(())
    }
}

/// Runs `commits` on this thread (a start on a completed data directory:
/// no shard will), in log order.
fn commit_now(commits: &[LoggedCommit], steps: &[SinkSteps]) -> Result<(), StartError> {
    let control = CommitControl::new();
    for (commit, steps) in commits.iter().zip(steps) {
        (steps.commit)(&commit.payload, &control).map_err(|error| {
            StartError::Recovery(format!(
                "committing epoch {} of sink `{}` again: {error}",
                commit.epoch, commit.node
            ))
        })?;
    }
    Ok(())
}

/// The logs of a run with epochs, once the coordinator is running.
struct StartedLogs {
    wals: Vec<weir_wal::Wal>,
    /// Per shard: the sink commits the previous run left to do.
    commits: Vec<Vec<RecoveredCommit>>,
    shared: Arc<EpochShared>,
    coordinator: CoordinatorJoin,
    /// The data directory's lock, held until the run ends.
    lock: recovery::DataDirLock,
}

type CoordinatorJoin = std::thread::JoinHandle<Result<CoordinatorReport, RunError>>;

/// A source instance's intake records to replay: (identity, data).
type IntakeReplay = Vec<(u64, Vec<u8>)>;

/// Hands each node instance its recovered state or position.
fn restore_into(
    plans: &mut [ShardPlan],
    mut state: HashMap<(String, usize), Vec<u8>>,
    mut changes: HashMap<(String, usize), Vec<Vec<u8>>>,
    mut replay: HashMap<(String, usize), IntakeReplay>,
) {
    for plan in plans {
        for instance in &mut plan.instances {
            let key = (instance.context.node.to_string(), instance.context.instance);
            instance.replay = replay.remove(&key).unwrap_or_default();
            instance.restore = state.remove(&key);
            instance.restore_changes = changes.remove(&key).unwrap_or_default();
        }
    }
}

/// Stops a running pipeline from any thread.
#[derive(Debug, Clone)]
pub struct Handle {
    request: Arc<StopRequest>,
}

impl Handle {
    /// Stops the run, like Flink's stop-with-savepoint: every source stops,
    /// what they emitted drains through the graph, and (with a data
    /// directory) a final epoch commits that holds every operator's state
    /// as it is: open windows stay open and watermarks do not move. The
    /// next start on the data directory goes on as if never stopped. Then
    /// [`Running::wait`] returns. Bounded by
    /// [`RuntimeBuilder::stop_timeout`].
    ///
    /// Without a data directory there is no savepoint to keep state in, so
    /// a stop drains, as [`shutdown_and_drain`](Handle::shutdown_and_drain)
    /// does: open windows fire rather than being lost.
    pub fn shutdown(&self) {
        self.request.stop();
    }

    /// Stops the run as the end of input: every source stops, then every
    /// operator finishes (the watermark goes to the end of time and every
    /// open window fires), sinks publish it all, and (with a data
    /// directory) the final epoch is marked complete, as at the end of a
    /// bounded run: a later start on the data directory runs nothing. For
    /// retiring a pipeline for good (Flink's `stop --drain`).
    pub fn shutdown_and_drain(&self) {
        self.request.drain();
    }

    /// Makes the run's end a stop rather than a completion, however its
    /// sources end: with a data directory, the next start on it resumes
    /// (restores state, sources continue) instead of finding a completed
    /// run. For sources that end when told to (an embedded input that
    /// drains and ends on shutdown) in a service that starts again.
    pub fn keep_resumable(&self) {
        self.request.keep_resumable();
    }
}

/// A pipeline running in the background.
#[derive(Debug)]
pub struct Running {
    shards: Vec<ExecutorJoinHandle<Result<(), RunError>>>,
    handle: Handle,
    gauge: Arc<BufferGauge>,
    started: Instant,
    epochs: Option<(Arc<EpochShared>, CoordinatorJoin)>,
    /// Set when the data directory holds a completed run: nothing runs.
    complete_at: Option<u64>,
    resumed_from_epoch: u64,
    /// With a data directory: its lock, held until the run was waited for.
    _lock: Option<recovery::DataDirLock>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Wall time from start to the last shard's return.
    pub elapsed: Duration,
    /// Most batch buffers alive at once (in rings, pools, being filled).
    pub buffers_peak: usize,
    /// Batch buffers allocated over the run.
    pub buffer_allocations: u64,
    /// With epochs: the last committed epoch at the end of the run.
    pub last_committed_epoch: u64,
    /// With epochs: the data directory held a run whose final epoch had
    /// committed, so nothing ran.
    pub already_complete: bool,
    /// With epochs: the committed epoch this run resumed from (0 when the
    /// data directory was fresh).
    pub resumed_from_epoch: u64,
    /// With epochs: the run ended with a stop ([`Handle::shutdown`]): its
    /// final epoch is a savepoint, and the next start resumes from it.
    /// `false` when the input ended (a bounded run, or
    /// [`Handle::shutdown_and_drain`]).
    pub stopped: bool,
    /// With epochs: per epoch committed in this run, the time from its
    /// request (barriers injected) to its commit record being durable.
    pub epoch_commit_latencies: Vec<Duration>,
    /// With epochs: the longest time one node instance took to take and
    /// log its snapshot (or pre-commit) at a barrier. Its shard processes
    /// nothing else meanwhile, so this is the longest processing stall
    /// snapshots caused (a base snapshot of a large state, mostly).
    pub longest_snapshot: Duration,
}

impl Running {
    fn complete(
        committed: u64,
        request: Arc<StopRequest>,
        gauge: Arc<BufferGauge>,
        started: Instant,
    ) -> Running {
        Running {
            shards: Vec::new(),
            handle: Handle { request },
            gauge,
            started,
            epochs: None,
            complete_at: Some(committed),
            resumed_from_epoch: committed,
            _lock: None,
        }
    }

    /// Whether nothing runs because the data directory holds a run whose
    /// final epoch committed ([`RunReport::already_complete`]).
    pub fn already_complete(&self) -> bool {
        self.complete_at.is_some()
    }

    /// A handle that stops this pipeline.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits for every shard to return; the first failure wins.
    pub fn wait(self) -> Result<RunReport, RunError> {
        let epochs = wait_all(self.shards, self.epochs).inspect_err(|error| {
            tracing::error!(%error, "the run failed");
        })?;
        tracing::info!(
            elapsed_s = self.started.elapsed().as_secs_f64(),
            last_committed_epoch = epochs.last_committed,
            "the run finished"
        );
        Ok(RunReport {
            elapsed: self.started.elapsed(),
            buffers_peak: self.gauge.peak(),
            buffer_allocations: self.gauge.allocations(),
            last_committed_epoch: epochs.last_committed.max(self.complete_at.unwrap_or(0)),
            stopped: epochs.stopped,
            already_complete: self.complete_at.is_some(),
            resumed_from_epoch: self.resumed_from_epoch,
            epoch_commit_latencies: epochs.commit_latencies,
            longest_snapshot: epochs.longest_snapshot,
        })
    }
}

/// Joins every shard. When several failed, the error reported is the first
/// root cause (a panic, a serialization error) rather than a closed ring or
/// an abort, which are only how the other shards noticed. The shards end
/// promptly after any failure (see the module documentation), so joining
/// them in order does not wait on a shard that waits for a failed one.
fn wait_all(
    shards: Vec<ExecutorJoinHandle<Result<(), RunError>>>,
    epochs: Option<(Arc<EpochShared>, CoordinatorJoin)>,
) -> Result<CoordinatorReport, RunError> {
    let mut first: Option<RunError> = None;
    for (shard, join) in shards.into_iter().enumerate() {
        let result = match join.join() {
            Ok(result) => result,
            Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(
                payload,
            ))) => Err(RunError::ShardPanicked {
                shard,
                message: panic_message(&*payload),
            }),
            Err(error) => Err(RunError::Executor {
                shard,
                message: error.to_string(),
            }),
        };
        if let Err(error) = result {
            keep_root_cause(&mut first, error);
        }
    }
    let mut report = CoordinatorReport::default();
    if let Some((shared, coordinator)) = epochs {
        if first.is_some() {
            // Nothing more may be committed once a shard failed.
            shared.aborted.store(true, Ordering::Release);
        }
        match coordinator.join() {
            Ok(Ok(coordinated)) => {
                report = coordinated;
                report.longest_snapshot =
                    Duration::from_nanos(shared.longest_snapshot_ns.load(Ordering::Relaxed));
            }
            // A failed coordinator (or a stop that overran its bound)
            // aborted the shards: it is the root cause.
            Ok(Err(error)) => keep_root_cause(&mut first, error),
            Err(payload) => {
                keep_root_cause(&mut first, RunError::Coordinator(panic_message(&*payload)))
            }
        }
    }
    first.map_or(Ok(report), Err)
}

/// Keeps in `first` the first root cause seen, or the first consequence
/// while no root cause was seen.
fn keep_root_cause(first: &mut Option<RunError>, error: RunError) {
    match first {
        Some(known) if !known.is_consequence() || error.is_consequence() => {}
        _ => *first = Some(error),
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::describe_change;

    #[test]
    fn a_change_lists_only_the_options_that_differ() {
        let saved = "type=window\nsize_ms=1000\ngroup_by=\"key\"";
        let current = "type=window\nsize=\"1s\"\ngap=(none)\ngroup_by=\"key\"";
        assert_eq!(
            describe_change(saved, current),
            "size: (none) → \"1s\", size_ms: 1000 → (none)"
        );
    }
}
