//! Every limit of the operator library in one place: the bounds on what
//! pipeline files, sources, processors and sinks accept and hold, and
//! their defaults. Names end in their unit (`_BYTES`, `_MS`, `_ROWS`); a
//! count of things ends in `_MAX` (`SHARDS_MAX`). The runtime's limits are
//! `weir_runtime::limits`, the WAL's `weir_wal::limits`.
//!
//! # Network ingest: defaults, and why
//! They follow nginx (whose worker is what a shard is here) and hyper (the
//! HTTP server under Vector's `http_server` source):
//! - [`CONNECTIONS_DEFAULT_MAX`], 512 per instance: nginx's
//!   `worker_connections`. Two shards hold 1,024, the usual soft `nofile`
//!   limit, so the cap bites before descriptors run out.
//! - [`HEADER_TIMEOUT_DEFAULT_MS`], 30 s: hyper 1.x's `header_read_timeout`
//!   (nginx's `client_header_timeout` is 60 s). A real client sends its
//!   request head in one packet; a slow one is an attack.
//! - [`READ_TIMEOUT_DEFAULT_MS`], 60 s: nginx's `client_body_timeout` and
//!   `send_timeout`, and like them measured between two reads (or writes)
//!   that make progress, not over the whole body, so a slow but steady
//!   upload of a large body is not cut off.
//! - [`IDLE_TIMEOUT_DEFAULT_MS`], 75 s: nginx's `keepalive_timeout`.
//! - [`READ_BUDGET_DEFAULT_BYTES`], 128 MiB per source: twelve of the
//!   largest default HTTP bodies at once, far more than steady traffic of
//!   small batches holds, and small enough for any machine that runs weir.
//!
//! How they relate, and what they bound: `sources/ingest/limits.rs`.

// ---- Pipeline files ----

/// The largest pipeline file read, in bytes: a pipeline is a handful of
/// components, so anything larger is a mistake (a data file named by
/// accident), refused before it is read into memory.
pub const CONFIG_FILE_MAX_BYTES: u64 = 1 << 20;
/// The longest component name, in bytes: names appear in file names,
/// metrics and log lines.
pub const COMPONENT_NAME_MAX_BYTES: usize = 128;
/// The most shards a pipeline may ask for: the runtime's own limit, so
/// that `weir validate` accepts exactly what `weir run` can run.
pub const SHARDS_MAX: usize = weir_runtime::limits::SHARDS_MAX;
/// The longest variable name accepted, in bytes.
pub const ENV_NAME_MAX_BYTES: usize = 256;
/// The default of [`RuntimeConfig::epoch_interval_ms`](crate::config::RuntimeConfig::epoch_interval_ms).
pub const EPOCH_INTERVAL_DEFAULT_MS: u64 = 100;

// ---- Sources and sinks: `kafka` ----

/// Chunks of records a `kafka` source's consumer thread may have handed
/// over and its shard not yet emitted; a full channel pauses the
/// partitions.
pub const KAFKA_CHANNEL_CHUNKS: usize = 8;
/// The most records in one chunk.
pub const KAFKA_CHUNK_RECORDS: usize = 4096;
/// The most bytes (keys, values, headers) in one chunk.
pub const KAFKA_CHUNK_BYTES: usize = 1 << 20;
/// librdkafka's `queued.max.messages.kbytes` for a `kafka` source: what
/// its consumer prefetches, in KiB (librdkafka's default is 64 MiB).
pub const KAFKA_PREFETCH_KIB: usize = 16 * 1024;
/// How long one metadata request of a `kafka` source waits.
pub const KAFKA_METADATA_TIMEOUT_MS: u64 = 10_000;
/// How long a `kafka` source waits, in all, for its restored partitions'
/// first and last offsets (to warn of records deleted before it read
/// them); past it, it reads on without the check.
pub const KAFKA_WATERMARKS_TIMEOUT_MS: u64 = 2_000;
/// How long a `kafka` source's consumer thread, once the source ended,
/// waits for the final epoch to commit before it commits that epoch's
/// offsets to the group (a run that failed never commits it).
pub const KAFKA_FINAL_COMMIT_WAIT_MS: u64 = 5_000;
/// The default `idle_timeout` of a `kafka` source.
pub const KAFKA_IDLE_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// How long one step of a `kafka` sink's commit (init, send offsets,
/// commit) waits before it is retried.
pub const KAFKA_TRANSACTION_STEP_TIMEOUT_MS: u64 = 30_000;
/// The longest pause between retries of a `kafka` sink's commit.
pub const KAFKA_RETRY_MAX_MS: u64 = 5_000;

// ---- Expressions ----

/// How deeply an expression may nest: compiling and evaluating recurse
/// over the tree, so this bounds their stack use.
pub const EXPR_MAX_DEPTH: usize = 128;

// ---- Sources: `generator` ----

/// The most keys a generator may list: each key is held by every instance.
pub const KEYS_MAX: usize = 1 << 20;

// ---- Sources: `file` ----

/// Bytes read from the file at a time.
pub const FILE_CHUNK_BYTES: usize = 1 << 20;
/// The longest line the source accepts; a longer one fails the run.
pub const FILE_LINE_MAX_BYTES: usize = 64 << 20;

// ---- Sources: `tcp` and `http` ----

/// Connections one source instance (one shard) serves at once by default.
pub const CONNECTIONS_DEFAULT_MAX: usize = 512;
/// How long a request head (HTTP) or a frame header after its first byte
/// (TCP) may take to arrive, by default.
pub const HEADER_TIMEOUT_DEFAULT_MS: u64 = 30_000;
/// How long a body or payload in progress may go without a byte arriving
/// (and a response or acknowledgement without being taken), by default.
pub const READ_TIMEOUT_DEFAULT_MS: u64 = 60_000;
/// How long a connection with nothing in flight stays open, by default.
pub const IDLE_TIMEOUT_DEFAULT_MS: u64 = 75_000;
/// Bytes of bodies and payloads a source holds while reading and queueing
/// them, by default (over all its instances).
pub const READ_BUDGET_DEFAULT_BYTES: usize = 128 << 20;
/// The largest HTTP body or TCP frame payload by default (10 MiB): well
/// under [`payload_bytes_max`](crate::sources::ingest::limits::payload_bytes_max)
/// for any source name.
pub const REQUEST_DEFAULT_BYTES: usize = 10 << 20;
/// The longest timeout accepted (a day): longer is a mistake, and keeps
/// deadlines far from overflowing.
pub const TIMEOUT_MAX_MS: u64 = 86_400_000;
/// The largest HTTP request head (request line and headers).
pub const HEAD_MAX_BYTES: usize = 16 << 10;
/// Bytes read from a socket at once: also what a connection's head buffer
/// holds beyond [`HEAD_MAX_BYTES`] at most.
pub const READ_CHUNK_BYTES: usize = 16 << 10;
/// The most a connection's HTTP head buffer holds.
pub const HEAD_BUFFER_MAX_BYTES: usize = HEAD_MAX_BYTES + READ_CHUNK_BYTES;
/// The first pause after a failed accept (out of descriptors, say).
pub const ACCEPT_BACKOFF_MIN_MS: u64 = 10;
/// The longest pause between accepts while they keep failing: how soon
/// accepting resumes once descriptors are free again.
pub const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;
/// Headers a request may carry.
pub const HTTP_HEADERS_MAX: usize = 64;
/// Batches waiting for an owner instance before connections are refused.
pub const MESH_MAX_BATCHES: usize = 256;
/// Frames a connection may have queued or waiting for the log before its
/// reader stops reading (TCP flow control then slows the client).
pub const TCP_FRAMES_IN_FLIGHT_MAX: usize = 64;

const _: () = assert!(ACCEPT_BACKOFF_MIN_MS > 0 && ACCEPT_BACKOFF_MIN_MS <= ACCEPT_BACKOFF_MAX_MS);
const _: () = assert!(REQUEST_DEFAULT_BYTES <= READ_BUDGET_DEFAULT_BYTES);
const _: () =
    assert!(REQUEST_DEFAULT_BYTES + 4096 <= weir_runtime::limits::INTAKE_RECORD_MAX_BYTES);

// ---- Processors: `window` ----

/// Largest number of sliding windows one event may fall in (`size / slide`).
pub const SLIDING_WINDOWS_MAX: i64 = 1000;

// ---- Sinks ----

/// Bytes buffered before a write to the staged file: a few batches of
/// typical lines, few enough that a shard's sinks hold little memory.
pub const FILE_WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// The longest path an encoded `Staged` may hold, in bytes (Linux's
/// `PATH_MAX`).
pub const STAGED_PATH_MAX_BYTES: usize = 4096;
/// The default of
/// [`RowFileSinkConfig::row_group_rows`](crate::sinks::RowFileSinkConfig::row_group_rows).
pub const ROW_GROUP_DEFAULT_ROWS: usize = 64 * 1024;
/// Bytes of buffered text (all columns) after which a row group is written
/// even if it has fewer than `row_group_rows` rows.
pub const ROW_GROUP_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of lines a shard buffers before writing them out.
pub const STDOUT_BUFFER_BYTES: usize = 64 * 1024;
/// Bytes of a rejected request's response body quoted in the error.
pub const WEBHOOK_ERROR_BODY_MAX_BYTES: u64 = 1024;

/// `transaction.timeout.ms` of a scaled-out process's transactions
/// (`crate::scale_out`): after a process is killed in the middle of one,
/// the brokers abort it within this long, and the partitions it held
/// (their offsets pending in it) can be read by their new owners.
pub const KAFKA_SCALE_OUT_TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// How long a scaled-out source's consumer, giving partitions up in a
/// rebalance, waits for the transaction of the epoch that last read them
/// (`crate::sources::kafka::subscribe`); the group's rebalance waits with
/// it (up to the consumer's `max.poll.interval.ms`). Past it the run is
/// fenced and fails.
pub const KAFKA_REVOKE_COMMIT_WAIT_MS: u64 = 60_000;

/// How long a scaled-out source's consumer waits, when the group gives it
/// partitions, for their committed offsets to be stable (a transaction
/// holding offsets of them, left open by a member that died, is aborted by
/// the brokers within [`KAFKA_SCALE_OUT_TRANSACTION_TIMEOUT_MS`]). Past it
/// the run fails.
pub const KAFKA_GROUP_OFFSETS_WAIT_MS: u64 = 60_000;

/// How long a restore of keyed state from a changelog topic may go
/// without reading anything (records or the partitions' ends) before the
/// run fails.
pub const KAFKA_RESTORE_STALL_MS: u64 = 60_000;

/// How often a long restore of keyed state logs its progress.
pub const KAFKA_RESTORE_PROGRESS_MS: u64 = 5_000;

/// How long a restarted scaled-out run keeps the state its local log held
/// of tasks the group has not given it (yet), from when it found the last
/// run's checkpoint: the cooperative rebalances that follow a join give
/// tasks back within seconds (Kafka Streams keeps unassigned local state
/// 10 minutes, `state.cleanup.delay.ms`).
pub const KAFKA_LOCAL_STATE_KEEP_MS: u64 = 120_000;

/// How long a restore waits for every keyed operator instance to have
/// offered what the local log held of its tasks (they do as the run
/// starts, before any input) before it reads those tasks from the
/// changelog instead.
pub const KAFKA_LOCAL_STATE_WAIT_MS: u64 = 10_000;

/// How often a scaled-out source's consumer reads librdkafka's statistics
/// to set each partition's lag gauge, unless the source's `options` set
/// `statistics.interval.ms`.
pub const KAFKA_GROUP_STATISTICS_MS: u64 = 1_000;

/// How long a `file` sink collects a shard's rows before it publishes them
/// as one file, unless `roll_interval` says otherwise: at most one file per
/// shard per minute, as Flink's file sink rolls by default.
pub const ROLL_INTERVAL_DEFAULT_MS: u64 = 60_000;
