//! The limits of the network ingest sources' listeners, in one place
//! (`docs/protocol.md`, "Limits"): how many connections an instance
//! serves, how long a client may take over each part of a request, how
//! many bytes being read a source holds, and how large a request may be.
//!
//! # Defaults, and why
//! They follow nginx (whose worker is what a shard is here) and hyper (the
//! HTTP server under Vector's `http_server` source):
//! - [`CONNECTIONS_MAX_DEFAULT`], 512 per instance: nginx's
//!   `worker_connections`. Two shards hold 1,024, the usual soft `nofile`
//!   limit, so the cap bites before descriptors run out.
//! - [`HEADER_TIMEOUT_MS_DEFAULT`], 30 s: hyper 1.x's `header_read_timeout`
//!   (nginx's `client_header_timeout` is 60 s). A real client sends its
//!   request head in one packet; a slow one is an attack.
//! - [`READ_TIMEOUT_MS_DEFAULT`], 60 s: nginx's `client_body_timeout` and
//!   `send_timeout`, and like them measured between two reads (or writes)
//!   that make progress, not over the whole body, so a slow but steady
//!   upload of a large body is not cut off.
//! - [`IDLE_TIMEOUT_MS_DEFAULT`], 75 s: nginx's `keepalive_timeout`.
//! - [`READ_BUDGET_BYTES_DEFAULT`], 128 MiB per source: twelve of the
//!   largest default HTTP bodies at once, far more than steady traffic of
//!   small batches holds, and small enough for any machine that runs weir.
//!
//! # Relations between limits
//! - A request's body (HTTP) or a frame's payload (TCP) is logged as one
//!   write-ahead log record, so its limit may not exceed
//!   [`payload_bytes_max`] (16 MiB less the record's header); config
//!   validation refuses a larger `body_limit_bytes` or `max_frame_bytes`,
//!   so every accepted limit is one the log can hold.
//! - The read budget must hold the largest request, or that request could
//!   never be read; validation refuses a smaller `read_budget_bytes`.
//!
//! # What these bound
//! A source holds at most `read_budget_bytes` of request bodies and frame
//! payloads (read or queued, until logged), plus per connection at most
//! [`HEAD_BUFFER_BYTES_MAX`] of request head, and at most
//! `connections_max` connections per instance (so as many descriptors).

/// Connections one source instance (one shard) serves at once by default.
pub const CONNECTIONS_MAX_DEFAULT: usize = 512;
/// How long a request head (HTTP) or a frame header after its first byte
/// (TCP) may take to arrive, by default.
pub const HEADER_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How long a body or payload in progress may go without a byte arriving
/// (and a response or acknowledgement without being taken), by default.
pub const READ_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// How long a connection with nothing in flight stays open, by default.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 75_000;
/// Bytes of bodies and payloads a source holds while reading and queueing
/// them, by default (over all its instances).
pub const READ_BUDGET_BYTES_DEFAULT: usize = 128 << 20;
/// The largest HTTP body or TCP frame payload by default (10 MiB): well
/// under [`payload_bytes_max`] for any source name.
pub const REQUEST_BYTES_DEFAULT: usize = 10 << 20;
/// The longest timeout accepted (a day): longer is a mistake, and keeps
/// deadlines far from overflowing.
pub const TIMEOUT_MS_MAX: u64 = 86_400_000;

/// The largest HTTP request head (request line and headers).
pub const HEAD_BYTES_MAX: usize = 16 << 10;
/// Bytes read from a socket at once: also what a connection's head buffer
/// holds beyond [`HEAD_BYTES_MAX`] at most.
pub const READ_CHUNK_BYTES: usize = 16 << 10;
/// The most a connection's HTTP head buffer holds.
pub const HEAD_BUFFER_BYTES_MAX: usize = HEAD_BYTES_MAX + READ_CHUNK_BYTES;

/// The first pause after a failed accept (out of descriptors, say).
pub const ACCEPT_BACKOFF_MS_MIN: u64 = 10;
/// The longest pause between accepts while they keep failing: how soon
/// accepting resumes once descriptors are free again.
pub const ACCEPT_BACKOFF_MS_MAX: u64 = 1_000;

const _: () = assert!(ACCEPT_BACKOFF_MS_MIN > 0 && ACCEPT_BACKOFF_MS_MIN <= ACCEPT_BACKOFF_MS_MAX);
const _: () = assert!(REQUEST_BYTES_DEFAULT <= READ_BUDGET_BYTES_DEFAULT);
const _: () =
    assert!(REQUEST_BYTES_DEFAULT + 4096 <= weir_runtime::limits::INTAKE_RECORD_MAX_BYTES);

/// Limits shared by the `http` and `tcp` sources (`docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections one instance (one shard) serves at once; more are
    /// accepted and closed at once (`weir_ingest_connections_refused`).
    pub connections_max: usize,
    /// How long a request head (from the connection's start, or from the
    /// first byte of a later request) or a TCP frame header (from its first
    /// byte) may take to arrive whole.
    pub header_timeout_ms: u64,
    /// How long a body or payload in progress may go without a byte
    /// arriving, and a response or acknowledgement without being taken.
    pub read_timeout_ms: u64,
    /// How long a connection with nothing in flight stays open.
    pub idle_timeout_ms: u64,
    /// Bytes of bodies and payloads the source (all its instances) holds
    /// while they are read and queued; a request that would go beyond it is
    /// refused (429 / `Overloaded`).
    pub read_budget_bytes: usize,
}

impl Default for ListenerLimits {
    fn default() -> ListenerLimits {
        ListenerLimits {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            header_timeout_ms: HEADER_TIMEOUT_MS_DEFAULT,
            read_timeout_ms: READ_TIMEOUT_MS_DEFAULT,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            read_budget_bytes: READ_BUDGET_BYTES_DEFAULT,
        }
    }
}

impl ListenerLimits {
    /// Checks every limit alone and against `request_bytes_max` (the
    /// source's body or frame limit); an error names the option.
    pub fn check(&self, request_bytes_max: usize) -> Result<(), (&'static str, String)> {
        if self.connections_max == 0 {
            return Err((
                "connections_max",
                "`connections_max` must be positive".into(),
            ));
        }
        for (option, value) in [
            ("header_timeout_ms", self.header_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 || value > TIMEOUT_MS_MAX {
                let message = format!(
                    "`{option}` must be between 1 and {TIMEOUT_MS_MAX} (a day), not {value}"
                );
                return Err((option, message));
            }
        }
        if self.read_budget_bytes < request_bytes_max {
            let message = format!(
                "`read_budget_bytes = {}` is below the request limit of {request_bytes_max} \
                 bytes: a request that large could never be read",
                self.read_budget_bytes
            );
            return Err(("read_budget_bytes", message));
        }
        Ok(())
    }
}

/// The largest HTTP body or TCP frame payload source `node` can log as
/// one write-ahead log record: 16 MiB less 34 bytes and the length of the
/// name (16 bytes of the record's identity and origin plus the name,
/// `weir_runtime::intake::data_bytes_max`, and the source's own 18-byte
/// header, `DataHeader`). For a source named `events`, 16,777,176 bytes.
pub fn payload_bytes_max(node: &str) -> usize {
    weir_runtime::intake::data_bytes_max(node).saturating_sub(super::DATA_HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_limit_leaves_room_for_every_header() {
        // 4 + name + 4 (identity) + 8 (origin) + 18 (data header).
        assert_eq!(payload_bytes_max("events"), (16 << 20) - 34 - 6);
        assert_eq!(payload_bytes_max(""), (16 << 20) - 34);
    }

    #[test]
    fn limits_are_checked_one_by_one_and_against_the_request_limit() {
        let limits = ListenerLimits::default();
        assert_eq!(limits.check(REQUEST_BYTES_DEFAULT), Ok(()));
        let zero = ListenerLimits {
            idle_timeout_ms: 0,
            ..ListenerLimits::default()
        };
        assert_eq!(zero.check(1).unwrap_err().0, "idle_timeout_ms");
        let small = ListenerLimits {
            read_budget_bytes: 100,
            ..ListenerLimits::default()
        };
        assert_eq!(small.check(101).unwrap_err().0, "read_budget_bytes");
        assert_eq!(small.check(100), Ok(()));
    }
}
