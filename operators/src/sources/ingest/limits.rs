//! The limits of the network ingest sources' listeners as a source's
//! options configure them ([`ListenerLimits`], `docs/protocol.md`,
//! "Limits"): how many connections an instance serves, how long a client
//! may take over each part of a request, how many bytes being read a
//! source holds, and how large a request may be.
//!
//! The constants (defaults and fixed bounds) are in [`crate::limits`],
//! with why each default is what it is.
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
//! [`HEAD_BUFFER_MAX_BYTES`](crate::limits::HEAD_BUFFER_MAX_BYTES) of request head, and at most
//! `connections_max` connections per instance (so as many descriptors).

use crate::limits::{
    CONNECTIONS_DEFAULT_MAX, HEADER_TIMEOUT_DEFAULT_MS, IDLE_TIMEOUT_DEFAULT_MS,
    READ_BUDGET_DEFAULT_BYTES, READ_TIMEOUT_DEFAULT_MS, TIMEOUT_MAX_MS,
};

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
            connections_max: CONNECTIONS_DEFAULT_MAX,
            header_timeout_ms: HEADER_TIMEOUT_DEFAULT_MS,
            read_timeout_ms: READ_TIMEOUT_DEFAULT_MS,
            idle_timeout_ms: IDLE_TIMEOUT_DEFAULT_MS,
            read_budget_bytes: READ_BUDGET_DEFAULT_BYTES,
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
            if value == 0 || value > TIMEOUT_MAX_MS {
                let message = format!(
                    "`{option}` must be between 1 and {TIMEOUT_MAX_MS} (a day), not {value}"
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
    use crate::limits::REQUEST_DEFAULT_BYTES;

    #[test]
    fn the_payload_limit_leaves_room_for_every_header() {
        // 4 + name + 4 (identity) + 8 (origin) + 18 (data header).
        assert_eq!(payload_bytes_max("events"), (16 << 20) - 34 - 6);
        assert_eq!(payload_bytes_max(""), (16 << 20) - 34);
    }

    #[test]
    fn limits_are_checked_one_by_one_and_against_the_request_limit() {
        let limits = ListenerLimits::default();
        assert_eq!(limits.check(REQUEST_DEFAULT_BYTES), Ok(()));
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
