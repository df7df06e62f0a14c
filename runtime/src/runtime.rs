//! Starting and stopping the shards.
//!
//! [`Runtime`] checks what the machine allows before starting anything:
//! io_uring must be available, and the locked-memory limit must cover every
//! shard's registered io_uring buffers (the error says which limit and how
//! to raise it). It then lays the graph out over the shards and starts one
//! glommio executor per shard, pinned to its own core.
//!
//! Shutdown protocol:
//! 1. [`Handle::shutdown`] sets a flag that every source checks before each
//!    poll; a bounded source also stops by itself when it is exhausted.
//! 2. A stopping source flushes its open batches and sends end of stream on
//!    every output ring.
//! 3. A node instance finishes (flushes its state, e.g. open windows) once
//!    every input ring delivered end of stream, then sends end of stream
//!    downstream; sinks flush last.
//! 4. Each shard returns when all its node instances have returned, and
//!    [`Running::wait`] returns when all shards have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::batch::{BufferGauge, ReturnRings};
use crate::error::{Error, RunError, StartError};
use crate::graph::Graph;
use crate::limits::{SHARDS_MAX, SHARD_IO_MEMORY_BYTES};
use crate::shard::run_shard;
use crate::system;

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    shards: Option<usize>,
    pin: bool,
    io_memory_bytes: usize,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            shards: None,
            pin: true,
            io_memory_bytes: SHARD_IO_MEMORY_BYTES,
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

    /// Checks the configuration against the machine.
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
        Ok(Runtime {
            shards,
            cores: self.pin.then_some(cores),
            io_memory_bytes: self.io_memory_bytes,
        })
    }
}

/// A configured set of shards that runs graphs.
#[derive(Debug)]
pub struct Runtime {
    shards: usize,
    cores: Option<Vec<usize>>,
    io_memory_bytes: usize,
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

    /// Runs `graph` until every source is exhausted and everything drained.
    pub fn run(&self, graph: Graph) -> Result<RunReport, Error> {
        Ok(self.start(graph)?.wait()?)
    }

    /// Starts `graph` in the background.
    pub fn start(&self, graph: Graph) -> Result<Running, StartError> {
        let gauge = Arc::new(BufferGauge::default());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut shards = Vec::with_capacity(self.shards);
        let plans = graph.plan(self.shards).into_iter();
        let returns = ReturnRings::mesh(self.shards).into_iter();
        for (shard, (plan, returns)) in plans.zip(returns).enumerate() {
            let placement = match &self.cores {
                Some(cores) => Placement::Fixed(cores[shard]),
                None => Placement::Unbound,
            };
            let (shard_gauge, shard_stop) = (gauge.clone(), stop.clone());
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("weir-shard-{shard}"))
                .io_memory(self.io_memory_bytes)
                .spawn(move || run_shard(shard, plan, returns, shard_gauge, shard_stop));
            match spawned {
                Ok(join) => shards.push(join),
                Err(error) => {
                    // Shards already started see their rings to this shard
                    // close and stop; wait for them before reporting.
                    stop.store(true, Ordering::Relaxed);
                    drop(wait_all(shards));
                    return Err(StartError::Executor {
                        shard,
                        message: error.to_string(),
                    });
                }
            }
        }
        Ok(Running {
            shards,
            handle: Handle { stop },
            gauge,
            started,
        })
    }
}

/// Stops a running pipeline from any thread.
#[derive(Debug, Clone)]
pub struct Handle {
    stop: Arc<AtomicBool>,
}

impl Handle {
    /// Stops every source; the pipeline then drains, flushes its sinks and
    /// [`Running::wait`] returns.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A pipeline running in the background.
#[derive(Debug)]
pub struct Running {
    shards: Vec<ExecutorJoinHandle<Result<(), RunError>>>,
    handle: Handle,
    gauge: Arc<BufferGauge>,
    started: Instant,
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
}

impl Running {
    /// A handle that stops this pipeline.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The gauge counting this run's batch buffers.
    pub fn buffers(&self) -> Arc<BufferGauge> {
        self.gauge.clone()
    }

    /// Waits for every shard to return; the first failure wins.
    pub fn wait(self) -> Result<RunReport, RunError> {
        wait_all(self.shards)?;
        Ok(RunReport {
            elapsed: self.started.elapsed(),
            buffers_peak: self.gauge.peak(),
            buffer_allocations: self.gauge.allocations(),
        })
    }
}

/// Joins every shard. When several failed, the error reported is the first
/// root cause (a panic, a serialization error) rather than a closed ring,
/// which is only how the other shards noticed.
fn wait_all(shards: Vec<ExecutorJoinHandle<Result<(), RunError>>>) -> Result<(), RunError> {
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
            match &first {
                Some(known) if !known.is_consequence() || error.is_consequence() => {}
                _ => first = Some(error),
            }
        }
    }
    first.map_or(Ok(()), Err)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        return message.to_string();
    }
    if let Some(message) = payload.downcast_ref::<String>() {
        return message.clone();
    }
    "a panic with a non-string payload".to_string()
}
