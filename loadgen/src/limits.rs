//! Every limit of the load generator, in one place, with its unit and its
//! reason: how many connections a run opens, how long a connection waits on
//! the server, how much memory the pre-encoded batches take, and the
//! defaults of the options that bound what is outstanding.
//!
//! Relations between limits are checked at compile time below and next to
//! the batch id layout (`config.rs`), so a change that breaks one fails the
//! build instead of a run.

/// The most connections a run opens: the batch id holds 12 bits of
/// connection (`config.rs`), so ids stay distinct across connections.
pub const CONNECTIONS_MAX: u64 = 4096;

/// How long a write may block before the connection is given up, so that a
/// server that stops reading cannot stall a connection thread forever.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// How long an HTTP connection waits for a response before giving up on
/// it: far beyond any durable acknowledgement of a healthy server.
pub const RESPONSE_TIMEOUT_MS: u64 = 30_000;
/// The largest HTTP response body read: answers are a line of JSON, so more
/// is a broken server, not data to keep.
pub const RESPONSE_BODY_BYTES_MAX: usize = 1 << 20;
/// The shortest time between two connection attempts of one connection, so
/// that a server that is down is not hammered with connects.
pub const RECONNECT_INTERVAL_MS: u64 = 100;
/// How long the connections get to connect before batch 0 is due.
pub const START_LEAD_MS: u64 = 50;
/// How long the progress loop sleeps at most between two looks at the
/// connections, so that the end of a run is noticed soon.
pub const PROGRESS_POLL_MS: u64 = 20;
/// How long a closed-loop HTTP connection waits after a 429 or 503 without
/// `Retry-After` before it retries.
pub const HTTP_RETRY_AFTER_MS_DEFAULT: u64 = 1_000;
/// The shortest wait before a closed-loop HTTP retry, whatever
/// `Retry-After` says, so that a retry is never a busy loop.
pub const HTTP_RETRY_AFTER_MS_MIN: u64 = 10;

/// Batches outstanding per tcp connection in `--max` mode by default: enough
/// to keep the pipe full while the server logs earlier frames.
pub const TCP_INFLIGHT_BATCHES_DEFAULT: u64 = 4;
/// Unacknowledged frames per tcp connection by default (`--max-backlog`)
/// before a due batch is skipped as `backlogged`: bounds the bookkeeping a
/// stalled server makes a connection hold.
pub const BACKLOG_FRAMES_DEFAULT: u64 = 4096;

/// Pre-encoded batches per connection when nothing asks for more or fewer.
pub const POOL_BATCHES_BASE: usize = 64;
/// The fewest pre-encoded batches per connection, so that patching a batch
/// in place rarely meets a frame still kept for a retry.
pub const POOL_BATCHES_MIN: usize = 4;
/// The most memory all connections' pre-encoded batches take together,
/// roughly: the load generator usually shares its machine with the server.
pub const POOL_BYTES_MAX: usize = 256 << 20;

/// The largest latency recorded (one hour, in microseconds); longer ones
/// are recorded as this, which keeps the histogram's memory bounded.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

const _: () = assert!(CONNECTIONS_MAX > 0);
const _: () = assert!(POOL_BATCHES_MIN > 0 && POOL_BATCHES_MIN <= POOL_BATCHES_BASE);
const _: () = assert!(HTTP_RETRY_AFTER_MS_MIN <= HTTP_RETRY_AFTER_MS_DEFAULT);
