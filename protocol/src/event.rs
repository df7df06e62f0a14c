//! The events a frame carries: [`WireEvent`], and the rkyv archive of a
//! batch of them that is a frame's payload.
//!
//! The payload is rkyv 0.8's default format (little-endian, aligned, 32-bit
//! relative pointers). A reader must hold it in 16-byte-aligned memory to
//! access it in place; the server copies every payload into such memory, so
//! a client needs no alignment on the wire.

use rkyv::{Archive, Deserialize, Serialize};

/// One event as a client sends it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct WireEvent {
    /// The grouping key.
    pub key: String,
    /// Event time, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// When the client meant to send the event, in nanoseconds since the
    /// Unix epoch (0: unknown). End-to-end latencies start here.
    pub sent_ns: u64,
    /// The rest of the event, opaque to the ingest source.
    pub body: Vec<u8>,
}

/// Serializes `events` as a frame payload.
pub fn encode_payload(events: &[WireEvent]) -> rkyv::util::AlignedVec {
    rkyv::to_bytes::<rkyv::rancor::Error>(&events.to_vec())
        .expect("serializing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkyv::vec::ArchivedVec;

    #[test]
    fn a_payload_reads_back_as_the_events() {
        let events = vec![
            WireEvent {
                key: "k".into(),
                ts_ms: 1_754_000_000_000,
                sent_ns: 1_754_000_000_000_000_123,
                body: b"{\"v\":1}".to_vec(),
            },
            WireEvent::default(),
        ];
        let payload = encode_payload(&events);
        let archived =
            rkyv::access::<ArchivedVec<ArchivedWireEvent>, rkyv::rancor::Error>(&payload)
                .expect("a valid archive");
        assert_eq!(archived.len(), 2);
        assert_eq!(archived[0].key, "k");
        assert_eq!(archived[0].sent_ns, 1_754_000_000_000_000_123);
        assert_eq!(archived[1].body.len(), 0);
    }
}
