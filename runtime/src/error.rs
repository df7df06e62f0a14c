//! The runtime's errors: one type per operation, each converting into
//! [`Error`].

use std::fmt;

/// The graph is not a valid pipeline. Every variant names the nodes at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// The graph has no node.
    Empty,
    /// Two nodes share a name.
    DuplicateNode(String),
    /// An edge names a node that does not exist.
    UnknownNode {
        /// The edge's producer.
        from: String,
        /// The edge's consumer.
        to: String,
        /// The name that matches no node.
        missing: String,
    },
    /// An edge leads into a source.
    IntoSource {
        /// The edge's producer.
        from: String,
        /// The source.
        to: String,
    },
    /// An edge leads out of a sink.
    OutOfSink {
        /// The sink.
        from: String,
        /// The edge's consumer.
        to: String,
    },
    /// A processor or sink has no input edge.
    NoInput(String),
    /// A source or processor has no output edge: its records would go
    /// nowhere.
    NoOutput(String),
    /// The edges form a cycle, listed in order.
    Cycle(Vec<String>),
    /// An edge's record type differs from what its producer emits or its
    /// consumer reads.
    TypeMismatch {
        /// The edge's producer.
        from: String,
        /// The edge's consumer.
        to: String,
        /// What the edge carries.
        edge: &'static str,
        /// What the other end works with.
        node: &'static str,
    },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Empty => write!(f, "the graph has no node"),
            GraphError::DuplicateNode(name) => write!(f, "two nodes are named `{name}`"),
            GraphError::UnknownNode { from, to, missing } => {
                write!(
                    f,
                    "edge `{from}` -> `{to}` names `{missing}`, which is not a node"
                )
            }
            GraphError::IntoSource { from, to } => {
                write!(
                    f,
                    "edge `{from}` -> `{to}` leads into `{to}`, which is a source"
                )
            }
            GraphError::OutOfSink { from, to } => {
                write!(
                    f,
                    "edge `{from}` -> `{to}` leads out of `{from}`, which is a sink"
                )
            }
            GraphError::NoInput(node) => write!(f, "`{node}` has no input edge"),
            GraphError::NoOutput(node) => {
                write!(
                    f,
                    "`{node}` has no output edge: its records would go nowhere"
                )
            }
            GraphError::Cycle(nodes) => {
                let path: Vec<String> = nodes.iter().map(|node| format!("`{node}`")).collect();
                write!(
                    f,
                    "the edges form a cycle: {} -> `{}`",
                    path.join(" -> "),
                    nodes[0]
                )
            }
            GraphError::TypeMismatch {
                from,
                to,
                edge,
                node,
            } => write!(
                f,
                "edge `{from}` -> `{to}` carries `{edge}` but its other end works with `{node}`"
            ),
        }
    }
}

impl std::error::Error for GraphError {}

/// The runtime could not start.
#[derive(Debug)]
pub enum StartError {
    /// A shard count of zero or above the limit.
    Shards {
        /// What was asked for.
        requested: usize,
        /// The most allowed.
        max: usize,
    },
    /// Pinning was asked for but the cores this process may run on could not
    /// be listed, or there are fewer than shards.
    Cores {
        /// Shards asked for.
        shards: usize,
        /// Cores this process may run on.
        available: usize,
    },
    /// The locked-memory limit (`RLIMIT_MEMLOCK`) is below what the shards'
    /// io_uring buffers need.
    LockedMemory {
        /// The soft limit, bytes.
        limit_bytes: u64,
        /// What the shards need, bytes.
        needed_bytes: u64,
        /// Shards asked for.
        shards: usize,
    },
    /// io_uring is not available to this process.
    IoUring(std::io::Error),
    /// The data directory's logs could not be opened or read back.
    Recovery(String),
    /// glommio failed to start a shard's executor.
    Executor {
        /// The shard.
        shard: usize,
        /// glommio's message.
        message: String,
    },
    /// The data directory holds state that this graph cannot take over: a
    /// stateful node whose state-shaping options changed, or that is no
    /// longer in the graph (see `NodeOptions::state_fingerprint`).
    IncompatibleState {
        /// One line per node: its name and what changed.
        nodes: Vec<String>,
        /// The names to discard to start anyway.
        names: Vec<String>,
    },
    /// Another run (in this process or another) holds the data directory.
    DataDirInUse {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The holder's process id, as it wrote it in the lock file.
        holder_pid: Option<u32>,
    },
    /// A node named to have its state discarded is neither in the graph nor
    /// in the data directory's state.
    UnknownDiscard(String),
    /// The metrics endpoint could not listen on its address.
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Shards { requested, max } => {
                write!(
                    f,
                    "cannot run {requested} shards: the count must be between 1 and {max}"
                )
            }
            StartError::Cores { shards, available } => write!(
                f,
                "cannot pin {shards} shards: this process may run on {available} cores \
                 (run fewer shards, or turn pinning off)"
            ),
            StartError::LockedMemory {
                limit_bytes,
                needed_bytes,
                shards,
            } => write!(
                f,
                "the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) is {} KiB but {shards} \
                 shards need {} KiB for their io_uring buffers; raise it with `ulimit -l {}` \
                 (LimitMEMLOCK= in a systemd unit, `memlock` in /etc/security/limits.conf, \
                 --ulimit memlock= for docker) or run fewer shards",
                limit_bytes / 1024,
                needed_bytes / 1024,
                needed_bytes.div_ceil(1024)
            ),
            StartError::IoUring(error) => write!(
                f,
                "io_uring is not available ({error}); weir needs Linux 5.8 or newer with \
                 io_uring enabled (sysctl kernel.io_uring_disabled=0, and a seccomp profile \
                 that allows io_uring_setup in containers)"
            ),
            StartError::Recovery(message) => {
                write!(f, "cannot recover the data directory: {message}")
            }
            StartError::Executor { shard, message } => {
                write!(f, "cannot start shard {shard}: {message}")
            }
            StartError::IncompatibleState { nodes, names } => {
                write!(
                    f,
                    "the data directory's state does not fit the pipeline: {}; \
                     start with the old configuration, or discard that state \
                     (`weir run --discard-state {}`: the component starts empty, as \
                     Flink's --allowNonRestoredState)",
                    nodes.join("; "),
                    names.join(" --discard-state ")
                )
            }
            StartError::DataDirInUse { dir, holder_pid } => {
                let holder = match holder_pid {
                    Some(pid) if *pid == std::process::id() => {
                        format!("this process (PID {pid}) runs another pipeline on it")
                    }
                    Some(pid) => format!("process {pid} holds it"),
                    None => "another process holds it".to_string(),
                };
                write!(
                    f,
                    "the data directory {} is in use: {holder} (lock file {}); one run at a \
                     time may use a data directory",
                    dir.display(),
                    dir.join("lock").display()
                )
            }
            StartError::UnknownDiscard(name) => write!(
                f,
                "cannot discard the state of `{name}`: no component of that name is in the \
                 pipeline or has state in the data directory"
            ),
            StartError::Metrics { addr, error } => {
                write!(f, "cannot serve metrics on {addr}: {error}")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// What kind of failure an operator reports in an [`OperatorError`]: what
/// went wrong, for a caller that acts on it or a log that counts it,
/// without parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperatorErrorKind {
    /// Bytes handed back to the operator (a state, a position, a staged
    /// commit, an intake record) do not decode: damaged, or written by a
    /// build or configuration that does not fit this one.
    Invalid,
    /// Local I/O failed: a file could not be written, synced or renamed, or
    /// the write-ahead log refused an append.
    Io,
    /// A system outside the process (a database, an HTTP receiver) failed
    /// or could not be reached.
    External,
    /// The operator cannot do what was asked (a source asked to replay
    /// intake records it cannot replay).
    Unsupported,
    /// Anything else: what `From<String>` and `From<&str>` make.
    Other,
}

impl fmt::Display for OperatorErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperatorErrorKind::Invalid => "invalid",
            OperatorErrorKind::Io => "I/O",
            OperatorErrorKind::External => "external",
            OperatorErrorKind::Unsupported => "unsupported",
            OperatorErrorKind::Other => "other",
        })
    }
}

/// An operator failed: the error of every fallible method of
/// [`Source`](crate::Source), [`Processor`](crate::Processor) and
/// [`Sink`](crate::Sink) (restoring, replaying, snapshotting,
/// pre-committing, syncing, committing), of
/// [`IntakeLog::append`](crate::IntakeLog::append), and what
/// [`Emitter::fail`](crate::Emitter::fail) reports. It fails the node
/// instance ([`NodeFailure::State`], [`NodeFailure::Commit`] or
/// [`NodeFailure::Operator`]), and so the run.
///
/// A kind and a message; it displays as the message alone, so the message
/// says everything a user needs (which record, which file, what the other
/// end answered). `From<String>` and `From<&str>` make an
/// [`Other`](OperatorErrorKind::Other) error, so `.map_err(|e| format!(..))?`
/// and `Err("..".into())` stay short; `From<std::io::Error>` an
/// [`Io`](OperatorErrorKind::Io) one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorError {
    kind: OperatorErrorKind,
    message: String,
}

impl OperatorError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: OperatorErrorKind, message: impl Into<String>) -> OperatorError {
        OperatorError {
            kind,
            message: message.into(),
        }
    }

    /// An [`Invalid`](OperatorErrorKind::Invalid) error saying `message`.
    pub fn invalid(message: impl Into<String>) -> OperatorError {
        OperatorError::new(OperatorErrorKind::Invalid, message)
    }

    /// An [`Io`](OperatorErrorKind::Io) error saying `message`.
    pub fn io(message: impl Into<String>) -> OperatorError {
        OperatorError::new(OperatorErrorKind::Io, message)
    }

    /// An [`External`](OperatorErrorKind::External) error saying `message`.
    pub fn external(message: impl Into<String>) -> OperatorError {
        OperatorError::new(OperatorErrorKind::External, message)
    }

    /// An [`Unsupported`](OperatorErrorKind::Unsupported) error saying
    /// `message`.
    pub fn unsupported(message: impl Into<String>) -> OperatorError {
        OperatorError::new(OperatorErrorKind::Unsupported, message)
    }

    /// An [`Other`](OperatorErrorKind::Other) error saying `message`.
    pub fn other(message: impl Into<String>) -> OperatorError {
        OperatorError::new(OperatorErrorKind::Other, message)
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> OperatorErrorKind {
        self.kind
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context: ` before its message.
    pub fn context(self, context: impl fmt::Display) -> OperatorError {
        OperatorError {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OperatorError {}

impl From<String> for OperatorError {
    fn from(message: String) -> OperatorError {
        OperatorError::other(message)
    }
}

impl From<&str> for OperatorError {
    fn from(message: &str) -> OperatorError {
        OperatorError::other(message)
    }
}

impl From<std::io::Error> for OperatorError {
    fn from(error: std::io::Error) -> OperatorError {
        OperatorError::io(error.to_string())
    }
}

/// A record could not be serialized (an error from the record type's own
/// `Serialize`, or a record larger than a whole batch).
#[derive(Debug)]
pub struct SerializeError {
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for SerializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot serialize record: {}", self.message)
    }
}

impl std::error::Error for SerializeError {}

/// Why one node instance stopped early.
#[derive(Debug)]
pub enum NodeFailure {
    /// A record could not be serialized.
    Serialize(SerializeError),
    /// An input ring closed without an end-of-stream message: its producer
    /// failed.
    InputClosed {
        /// The producer node.
        from: String,
        /// The producer's shard.
        from_shard: usize,
    },
    /// An output ring's consumer is gone: it failed.
    OutputClosed {
        /// The consumer node.
        to: String,
        /// The consumer's shard.
        to_shard: usize,
    },
    /// Saving, restoring or replaying the node's state, position or intake
    /// failed.
    State(OperatorError),
    /// The operator reported a failure it cannot recover from
    /// ([`Emitter::fail`](crate::Emitter::fail)).
    Operator(OperatorError),
    /// The shard's write-ahead log failed (fatal: see the WAL's fsync rule).
    Log(String),
    /// A sink's sync or commit step failed.
    Commit {
        /// The epoch being committed.
        epoch: u64,
        /// The sink.
        sink: String,
        /// Whether the sync step ([`Sink::sync`](crate::Sink::sync)) failed;
        /// the commit step ([`Sink::commit`](crate::Sink::commit)) otherwise.
        syncing: bool,
        /// What the sink reported.
        error: OperatorError,
    },
    /// The node's operator (or the runtime code running it) panicked. The
    /// panic is caught in the node's task, so the task ends and drops its
    /// rings like any other failure, and the shard's other tasks stop as
    /// for any failure: a panic fails the run, never the process.
    Panicked(String),
    /// The node stopped because another node (or the epoch coordinator)
    /// failed first: the run is aborted as soon as anything fails, so no
    /// node waits for what the failed one can no longer provide.
    Aborted,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFailure::Serialize(error) => error.fmt(f),
            NodeFailure::InputClosed { from, from_shard } => write!(
                f,
                "input from `{from}` on shard {from_shard} closed before its end of stream"
            ),
            NodeFailure::OutputClosed { to, to_shard } => {
                write!(f, "output to `{to}` on shard {to_shard} is closed")
            }
            NodeFailure::State(error) => write!(f, "state: {error}"),
            NodeFailure::Operator(error) => error.fmt(f),
            NodeFailure::Log(message) => write!(f, "write-ahead log: {message}"),
            NodeFailure::Commit {
                epoch,
                sink,
                syncing,
                error,
            } => {
                let step = if *syncing { "syncing " } else { "" };
                write!(f, "commit of epoch {epoch}: {step}sink `{sink}`: {error}")
            }
            NodeFailure::Panicked(message) => write!(f, "panicked: {message}"),
            NodeFailure::Aborted => f.write_str("stopped because another node failed"),
        }
    }
}

/// A state step that failed (restore, replay, snapshot, pre-commit, an
/// intake append): what `?` makes of one in the task loops.
impl From<OperatorError> for NodeFailure {
    fn from(error: OperatorError) -> NodeFailure {
        NodeFailure::State(error)
    }
}

/// A pipeline run failed.
#[derive(Debug)]
pub enum RunError {
    /// A node instance failed.
    Node {
        /// The node.
        node: String,
        /// Its shard.
        shard: usize,
        /// What happened.
        failure: NodeFailure,
    },
    /// A shard's executor failed outside any node.
    Executor {
        /// The shard.
        shard: usize,
        /// glommio's message.
        message: String,
    },
    /// The epoch coordinator failed.
    Coordinator(String),
    /// A graceful stop did not finish within its bound
    /// (`RuntimeBuilder::stop_timeout`): a sink commit could not complete
    /// (a receiver down, say). The committed state is consistent; the
    /// commits that did not complete run again at the next start, which
    /// resumes from `committed_epoch`.
    StopTimedOut {
        /// The bound.
        timeout: std::time::Duration,
        /// The last committed epoch.
        committed_epoch: u64,
    },
    /// A shard's thread panicked.
    ShardPanicked {
        /// The shard.
        shard: usize,
        /// The panic message, if it was a string.
        message: String,
    },
}

impl RunError {
    /// Whether this failure only reports that a peer failed (a ring closed
    /// under it, or the run was aborted) rather than being a failure of its
    /// own.
    pub fn is_consequence(&self) -> bool {
        matches!(
            self,
            RunError::Node {
                failure: NodeFailure::InputClosed { .. }
                    | NodeFailure::OutputClosed { .. }
                    | NodeFailure::Aborted,
                ..
            }
        )
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Node {
                node,
                shard,
                failure,
            } => write!(f, "node `{node}` on shard {shard}: {failure}"),
            RunError::Executor { shard, message } => {
                write!(f, "shard {shard}'s executor failed: {message}")
            }
            RunError::Coordinator(message) => write!(f, "epoch coordinator: {message}"),
            RunError::StopTimedOut {
                timeout,
                committed_epoch,
            } => write!(
                f,
                "the stop did not finish within {timeout:?} (a sink commit could not complete); \
                 stopped at committed epoch {committed_epoch}: the pending commits run again \
                 at the next start"
            ),
            RunError::ShardPanicked { shard, message } => {
                write!(f, "shard {shard} panicked: {message}")
            }
        }
    }
}

impl std::error::Error for RunError {}

/// Any runtime error.
#[derive(Debug)]
pub enum Error {
    /// See [`GraphError`].
    Graph(GraphError),
    /// See [`StartError`].
    Start(StartError),
    /// See [`RunError`].
    Run(RunError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Graph(error) => error.fmt(f),
            Error::Start(error) => error.fmt(f),
            Error::Run(error) => error.fmt(f),
        }
    }
}

// The wrapped error is displayed in full, so it is not also reported as the
// source (that would print it twice in an error chain).
impl std::error::Error for Error {}

impl From<GraphError> for Error {
    fn from(error: GraphError) -> Error {
        Error::Graph(error)
    }
}

impl From<StartError> for Error {
    fn from(error: StartError) -> Error {
        Error::Start(error)
    }
}

impl From<RunError> for Error {
    fn from(error: RunError) -> Error {
        Error::Run(error)
    }
}

/// The message of a panic's payload (a `&str` or a `String`, as `panic!`
/// makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        return message.to_string();
    }
    if let Some(message) = payload.downcast_ref::<String>() {
        return message.clone();
    }
    "a panic with a non-string payload".to_string()
}
