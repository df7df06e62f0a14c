//! Pre-encoded batches, generated before the run starts and patched at send
//! time.
//!
//! Generating and serializing every event afresh costs far more CPU than
//! sending it, and the load generator usually shares its machine with the
//! server it measures. So each connection encodes a pool of distinct
//! batches up front (the first batches its [`EventGen`] yields, exactly what
//! it used to generate on the fly) and cycles through them, patching only
//! what must change per send:
//!
//! - tcp: every event's `ts_ms` and `sent_ns` (little-endian u64s at offsets
//!   found once with `rkyv::access`), the header's batch id and the CRC32C
//!   (continued from the precomputed CRC of the untouched payload prefix:
//!   rkyv writes the event structs, which hold both fields, after the keys
//!   and bodies they point to). A patched frame is byte-for-byte the frame
//!   `encode_frame` would build from the same events.
//! - http: every line's `"ts"` and `"sent_ns"` digits, overwritten in place
//!   (fixed widths: 13 and 19 digits, right-aligned after blank padding if a
//!   value is ever shorter, which is still valid JSON), and the
//!   `Weir-Batch-Id` header's hex digits.
//!
//! After a connection has sent its whole pool it starts over, so events
//! repeat (with new times and batch ids); the pool is sized so that its keys
//! still cover `--keys` (see [`pool_batches`]).

use std::sync::Arc;
use std::time::Instant;

use weir_protocol::{encode_payload, FrameHeader, WireEvent, FRAME_HEADER_BYTES};

use crate::cli::HttpBody;
use crate::config::{ConnConfig, Mode};
use crate::event::EventGen;
use crate::limits::{POOL_BATCHES_BASE, POOL_BATCHES_MIN, POOL_BYTES_MAX};
/// Pool events per key, over all connections, that `--keys` asks for: with
/// keys drawn uniformly, 4 draws per key leave about 2% of keys unused.
const DRAWS_PER_KEY: u64 = 4;

/// Digits of `"sent_ns"` (nanoseconds since the epoch: 19 digits from 2001
/// to 2286).
pub(crate) const NS_DIGITS: usize = 19;
/// Digits of `"ts"` (milliseconds since the epoch: 13 digits from 2001 to
/// 2286).
pub(crate) const MS_DIGITS: usize = 13;

/// How many batches each connection pre-generates: [`POOL_BATCHES_BASE`], more
/// if needed for the pool to cover `--keys`, fewer if an open-loop run sends
/// fewer, and capped so all pools fit in about [`POOL_BYTES_MAX`].
pub(crate) fn pool_batches(config: &ConnConfig) -> usize {
    let batch = config.batch.max(1) as u64;
    let connections = config.connections.max(1);
    let per_conn_events = (config.keys.saturating_mul(DRAWS_PER_KEY)).div_ceil(connections);
    let mut batches = (POOL_BATCHES_BASE as u64).max(per_conn_events.div_ceil(batch));
    // Roughly the bytes one batch takes (the rkyv event structs or the
    // NDJSON prefix fields come on top of `record_bytes`).
    let batch_bytes = batch.saturating_mul(config.record_bytes as u64 + 48);
    let mut least = POOL_BATCHES_MIN as u64;
    if let Mode::Max { inflight } = config.mode {
        // More than can be in flight, so a frame is patched in place only
        // once it has been acked.
        least = least.max(inflight as u64 + 1);
    }
    let cap = (POOL_BYTES_MAX as u64 / connections / batch_bytes.max(1)).max(least);
    batches = batches.min(cap);
    if let Mode::Open { rate } = config.mode {
        // No point in generating batches the schedule never sends.
        let total = (rate * config.end.as_secs_f64() / batch as f64).ceil() as u64;
        batches = batches.min(total.div_ceil(connections).max(1));
    }
    batches.max(1) as usize
}

/// A frame's bytes and where its per-send fields are.
#[derive(Debug)]
struct FrameSlot {
    /// The whole frame, header and payload; shared with a `--max` retry
    /// that still needs it (patching then copies it first).
    frame: Arc<Vec<u8>>,
    flags: u8,
    /// Offsets in the frame of every event's `ts_ms`.
    ts_at: Vec<u32>,
    /// Offsets in the frame of every event's `sent_ns`.
    sent_at: Vec<u32>,
    /// Offset in the payload of the first patched byte.
    tail: usize,
    /// CRC32C of the payload before `tail`.
    prefix_crc: u32,
}

impl FrameSlot {
    fn new(flags: u8, events: &[WireEvent]) -> FrameSlot {
        let payload = encode_payload(events);
        let archived =
            rkyv::access::<rkyv::Archived<Vec<WireEvent>>, rkyv::rancor::Error>(&payload)
                .expect("a payload just encoded is valid");
        let base = payload.as_ptr() as usize;
        let offset = |field: *const u8| field as usize - base;
        let mut ts_at = Vec::with_capacity(events.len());
        let mut sent_at = Vec::with_capacity(events.len());
        for event in archived.iter() {
            ts_at.push(offset(std::ptr::addr_of!(event.ts_ms).cast()));
            sent_at.push(offset(std::ptr::addr_of!(event.sent_ns).cast()));
        }
        let tail = ts_at
            .iter()
            .chain(&sent_at)
            .copied()
            .min()
            .unwrap_or(payload.len());
        let header = FrameHeader {
            flags,
            batch_id: 0,
            len: payload.len() as u32,
            crc: crc32c::crc32c(&payload),
        };
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
        frame.extend_from_slice(&header.encode());
        frame.extend_from_slice(&payload);
        let at = |offsets: Vec<usize>| -> Vec<u32> {
            offsets
                .into_iter()
                .map(|at| u32::try_from(FRAME_HEADER_BYTES + at).expect("frames under 4 GiB"))
                .collect()
        };
        let slot = FrameSlot {
            prefix_crc: crc32c::crc32c(&payload[..tail]),
            frame: Arc::new(frame),
            flags,
            ts_at: at(ts_at),
            sent_at: at(sent_at),
            tail,
        };
        // The offsets must hold exactly the values encoded.
        for (event, (&ts, &sent)) in events.iter().zip(slot.ts_at.iter().zip(&slot.sent_at)) {
            assert_eq!(read_u64(&slot.frame, ts as usize), event.ts_ms);
            assert_eq!(read_u64(&slot.frame, sent as usize), event.sent_ns);
        }
        slot
    }

    /// Sets every event's `sent_ns` (and `ts_ms` to its milliseconds), the
    /// batch id and the CRC.
    fn patch(&mut self, batch_id: u64, sent_ns: u64) {
        let ts_ms = (sent_ns / 1_000_000).to_le_bytes();
        let sent = sent_ns.to_le_bytes();
        let frame = Arc::make_mut(&mut self.frame);
        for &at in &self.ts_at {
            frame[at as usize..at as usize + 8].copy_from_slice(&ts_ms);
        }
        for &at in &self.sent_at {
            frame[at as usize..at as usize + 8].copy_from_slice(&sent);
        }
        let payload = &frame[FRAME_HEADER_BYTES..];
        let header = FrameHeader {
            flags: self.flags,
            batch_id,
            len: payload.len() as u32,
            crc: crc32c::crc32c_append(self.prefix_crc, &payload[self.tail..]),
        };
        frame[..FRAME_HEADER_BYTES].copy_from_slice(&header.encode());
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A connection's pre-encoded tcp frames.
#[derive(Debug)]
pub(crate) struct FramePool {
    slots: Vec<FrameSlot>,
    next: usize,
}

impl FramePool {
    /// Encodes `batches` frames of `batch` events from `gen`, as the tcp
    /// client used to build them one by one.
    pub(crate) fn new(
        gen: &mut EventGen,
        flags: u8,
        batches: usize,
        batch: usize,
        record_bytes: usize,
    ) -> FramePool {
        // A 19-digit placeholder (the patched values are 19 digits too).
        let sent_ns = 1_000_000_000_000_000_000u64;
        let slots = (0..batches.max(1))
            .map(|_| {
                let events: Vec<WireEvent> = (0..batch)
                    .map(|_| {
                        let mut body = String::with_capacity(record_bytes + 16);
                        let key = gen.next_into(
                            &mut body,
                            |_, _| {},
                            |key| record_bytes.saturating_sub(key.len()),
                        );
                        WireEvent {
                            key,
                            ts_ms: sent_ns / 1_000_000,
                            sent_ns,
                            body: body.into_bytes(),
                        }
                    })
                    .collect();
                FrameSlot::new(flags, &events)
            })
            .collect();
        FramePool { slots, next: 0 }
    }

    /// The next frame, patched with `batch_id` and `sent_ns`. A frame that
    /// a pending retry still holds is copied first, never changed under it.
    pub(crate) fn next(&mut self, batch_id: u64, sent_ns: u64) -> Arc<Vec<u8>> {
        let index = self.next;
        self.next = (index + 1) % self.slots.len();
        let slot = &mut self.slots[index];
        slot.patch(batch_id, sent_ns);
        slot.frame.clone()
    }

    /// Bytes of all frames.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.iter().map(|slot| slot.frame.len()).sum()
    }
}

/// A request's head and NDJSON body and where their per-send fields are.
#[derive(Debug)]
struct BodySlot {
    head: Vec<u8>,
    /// Offset in `head` of the `Weir-Batch-Id` hex digits (`--dedup`).
    batch_id_at: Option<usize>,
    body: Vec<u8>,
    /// Offsets in `body` of every line's `"ts"` digits.
    ts_at: Vec<u32>,
    /// Offsets in `body` of every line's `"sent_ns"` digits.
    sent_at: Vec<u32>,
    /// Offsets in `body` of every line's RFC 3339 `"timestamp"`
    /// (`--http-body shipper`).
    stamp_at: Vec<u32>,
    /// Offsets in `body` of every OTLP record's `time_unix_nano` (a
    /// protobuf `fixed64`, little-endian; `--http-body otlp`).
    nanos_at: Vec<u32>,
}

/// A connection's pre-encoded HTTP requests.
#[derive(Debug)]
pub(crate) struct BodyPool {
    slots: Vec<BodySlot>,
    next: usize,
}

impl BodyPool {
    /// Encodes `batches` request bodies of `config.batch` NDJSON lines from
    /// `gen` (each line's `key`, `ts` and `sent_ns` first, or with
    /// `--http-body shipper` its RFC 3339 `timestamp`; each line without
    /// its newline about `record_bytes` long) and their heads. With
    /// `--gzip` each body is stamped with the current time and compressed
    /// here, once.
    pub(crate) fn new(gen: &mut EventGen, config: &ConnConfig, batches: usize) -> BodyPool {
        let shipper = config.http_body == HttpBody::Shipper;
        let slots = (0..batches.max(1))
            .map(|_| {
                if config.http_body == HttpBody::Otlp {
                    return otlp_slot(gen, config);
                }
                let mut body = String::with_capacity(config.batch * (config.record_bytes + 64));
                let mut ts_at = Vec::with_capacity(config.batch);
                let mut sent_at = Vec::with_capacity(config.batch);
                let mut stamp_at = Vec::new();
                for _ in 0..config.batch {
                    gen.next_into(
                        &mut body,
                        |key, out| {
                            if shipper {
                                out.push_str(r#""timestamp":""#);
                                stamp_at.push(out.len() as u32);
                                out.push_str(&"0".repeat(RFC3339_MS_BYTES));
                                out.push_str(r#"","#);
                                return;
                            }
                            out.push_str(r#""key":""#);
                            out.push_str(key);
                            out.push_str(r#"","ts":"#);
                            ts_at.push(out.len() as u32);
                            out.extend(std::iter::repeat_n('0', MS_DIGITS));
                            out.push_str(r#","sent_ns":"#);
                            sent_at.push(out.len() as u32);
                            out.extend(std::iter::repeat_n('0', NS_DIGITS));
                            out.push(',');
                        },
                        |_| config.record_bytes,
                    );
                    body.push('\n');
                }
                let mut slot = BodySlot {
                    head: Vec::new(),
                    batch_id_at: None,
                    body: body.into_bytes(),
                    ts_at,
                    sent_at,
                    stamp_at,
                    nanos_at: Vec::new(),
                };
                slot.finish(config);
                slot
            })
            .collect();
        BodyPool { slots, next: 0 }
    }

    /// The next request's head and body, patched with `batch_id` and
    /// `sent_ns`.
    pub(crate) fn next(&mut self, batch_id: u64, sent_ns: u64) -> (&[u8], &[u8]) {
        let index = self.next;
        self.next = (index + 1) % self.slots.len();
        let slot = &mut self.slots[index];
        slot.patch_times(sent_ns);
        if let Some(at) = slot.batch_id_at {
            slot.head[at..at + 16].copy_from_slice(&hex16(batch_id));
        }
        (&slot.head, &slot.body)
    }

    /// Bytes of all requests.
    pub(crate) fn bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| slot.head.len() + slot.body.len())
            .sum()
    }
}

/// What an OTLP record's `time_unix_nano` holds until it is patched: found
/// again in the encoded body to learn where each one is.
const NANOS_SENTINEL: u64 = 0x5745_4952_4f54_4c50;

/// One request of `config.batch` OTLP log records from `gen`: one resource
/// (`service.name = "loadgen"`) and scope, each record's body the
/// profile's JSON line of about `record_bytes`, its key the `key`
/// attribute. With `--gzip` stamped and compressed here, once.
fn otlp_slot(gen: &mut EventGen, config: &ConnConfig) -> BodySlot {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;
    let text = |text: String| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        })
    };
    let records = (0..config.batch)
        .map(|_| {
            let mut line = String::with_capacity(config.record_bytes + 8);
            let key = gen.next_into(&mut line, |_, _| {}, |_| config.record_bytes);
            LogRecord {
                time_unix_nano: NANOS_SENTINEL,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: text(line),
                attributes: vec![KeyValue {
                    key: "key".into(),
                    value: text(key),
                    ..KeyValue::default()
                }],
                ..LogRecord::default()
            }
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("loadgen".into()),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let body = request.encode_to_vec();
    let sentinel = NANOS_SENTINEL.to_le_bytes();
    let nanos_at = body
        .windows(sentinel.len())
        .enumerate()
        .filter(|(_, window)| *window == sentinel)
        .map(|(at, _)| at as u32)
        .collect();
    let mut slot = BodySlot {
        head: Vec::new(),
        batch_id_at: None,
        body,
        ts_at: Vec::new(),
        sent_at: Vec::new(),
        stamp_at: Vec::new(),
        nanos_at,
    };
    slot.finish(config);
    slot
}

impl BodySlot {
    /// With `--gzip`, stamps the body with the current time and compresses
    /// it (once: its times are not patched again); then adds the request
    /// head.
    fn finish(&mut self, config: &ConnConfig) {
        if config.gzip {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            self.patch_times(now);
            self.body = gzip(&self.body);
            self.ts_at.clear();
            self.sent_at.clear();
            self.stamp_at.clear();
            self.nanos_at.clear();
        }
        let (head, batch_id_at) = request_head(config, self.body.len());
        self.head = head.into_bytes();
        self.batch_id_at = batch_id_at;
    }

    /// Writes `sent_ns` (and its milliseconds, as digits or RFC 3339) into
    /// every line.
    fn patch_times(&mut self, sent_ns: u64) {
        let nanos = sent_ns.to_le_bytes();
        for &at in &self.nanos_at {
            self.body[at as usize..at as usize + 8].copy_from_slice(&nanos);
        }
        let ts = digits::<MS_DIGITS>(sent_ns / 1_000_000);
        let sent = digits::<NS_DIGITS>(sent_ns);
        for &at in &self.ts_at {
            self.body[at as usize..at as usize + MS_DIGITS].copy_from_slice(&ts);
        }
        for &at in &self.sent_at {
            self.body[at as usize..at as usize + NS_DIGITS].copy_from_slice(&sent);
        }
        if !self.stamp_at.is_empty() {
            let stamp = rfc3339_ms(sent_ns / 1_000_000);
            for &at in &self.stamp_at {
                self.body[at as usize..at as usize + RFC3339_MS_BYTES].copy_from_slice(&stamp);
            }
        }
    }
}

/// `body` gzip-compressed (level 6, gzip's default).
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("compressing into memory");
    encoder.finish().expect("compressing into memory")
}

/// Bytes of [`rfc3339_ms`]: `2026-12-05T10:00:00.250Z`.
const RFC3339_MS_BYTES: usize = 24;

/// `ms` since the Unix epoch as RFC 3339 in UTC with milliseconds (the
/// civil-from-days conversion of Howard Hinnant's `chrono` paper).
fn rfc3339_ms(ms: u64) -> [u8; RFC3339_MS_BYTES] {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    );
    let mut stamp = [b'0'; RFC3339_MS_BYTES];
    stamp.copy_from_slice(&text.as_bytes()[..RFC3339_MS_BYTES]);
    stamp
}

/// A request head for a body of `content_length` bytes, and where in it the
/// `Weir-Batch-Id` digits go (with `--dedup`).
fn request_head(config: &ConnConfig, content_length: usize) -> (String, Option<usize>) {
    let content_type = match config.http_body {
        HttpBody::Otlp => "application/x-protobuf",
        _ => "application/x-ndjson",
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n",
        config.path, config.addr
    );
    if config.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    if let Some(token) = &config.token {
        head.push_str("Authorization: Bearer ");
        head.push_str(token);
        head.push_str("\r\n");
    }
    let mut batch_id_at = None;
    if config.dedup {
        head.push_str("Weir-Batch-Id: ");
        batch_id_at = Some(head.len());
        head.push_str("0000000000000000\r\n");
    }
    head.push_str("\r\n");
    (head, batch_id_at)
}

/// `value` in decimal, right-aligned in `N` bytes (blank-padded: still
/// valid JSON). Panics if it needs more than `N` digits.
fn digits<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b' '; N];
    let mut i = N;
    loop {
        assert!(i > 0, "a timestamp wider than {N} digits");
        i -= 1;
        out[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out
}

/// `value` as 16 lowercase hex digits.
fn hex16(value: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[(value >> (60 - 4 * i)) as usize & 0xf];
    }
    out
}

/// A connection's pre-encoded batches, for its transport.
#[derive(Debug)]
pub(crate) enum Pool {
    Tcp(FramePool),
    Http(BodyPool),
}

impl Pool {
    /// Bytes of all batches.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Pool::Tcp(pool) => pool.bytes(),
            Pool::Http(pool) => pool.bytes(),
        }
    }
}

/// Builds every connection's pool, in parallel (one thread per available
/// core), before the run's clock starts. Returns them in connection order
/// with how long building took.
pub(crate) fn build_pools(
    config: &ConnConfig,
    http: bool,
    flags: u8,
) -> (Vec<Pool>, std::time::Duration) {
    let started = Instant::now();
    let connections = config.connections as usize;
    let batches = pool_batches(config);
    let build = |conn: usize| {
        let mut gen = EventGen::new(config.profile, config.conn_seed(conn), config.keys);
        if http {
            Pool::Http(BodyPool::new(&mut gen, config, batches))
        } else {
            Pool::Tcp(FramePool::new(
                &mut gen,
                flags,
                batches,
                config.batch,
                config.record_bytes,
            ))
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(connections)
        .max(1);
    let mut pools: Vec<Option<Pool>> = (0..connections).map(|_| None).collect();
    std::thread::scope(|scope| {
        let chunk = connections.div_ceil(threads);
        for (index, part) in pools.chunks_mut(chunk).enumerate() {
            let build = &build;
            scope.spawn(move || {
                for (i, pool) in part.iter_mut().enumerate() {
                    *pool = Some(build(index * chunk + i));
                }
            });
        }
    });
    let pools = pools
        .into_iter()
        .map(|pool| pool.expect("every pool built"))
        .collect();
    (pools, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Profile;
    use std::time::Duration;
    use weir_protocol::{encode_frame, FLAG_DEDUP};

    fn config(batch: usize, dedup: bool) -> ConnConfig {
        ConnConfig {
            addr: "127.0.0.1:1".into(),
            path: "/events".into(),
            mode: Mode::Max { inflight: 1 },
            batch,
            connections: 2,
            profile: Profile::Access,
            seed: 7,
            keys: 100,
            record_bytes: 300,
            dedup,
            token: Some("t".into()),
            max_backlog: 1,
            http_body: HttpBody::Weir,
            gzip: false,
            tls: None,
            nonce: 1,
            end: Duration::from_secs(1),
            verbose: false,
        }
    }

    fn decode(frame: &[u8]) -> (FrameHeader, Vec<WireEvent>) {
        let header = FrameHeader::decode(frame[..FRAME_HEADER_BYTES].try_into().unwrap()).unwrap();
        let mut payload = rkyv::util::AlignedVec::<16>::new();
        payload.extend_from_slice(&frame[FRAME_HEADER_BYTES..]);
        assert_eq!(header.len as usize, payload.len());
        assert_eq!(
            crc32c::crc32c(&payload),
            header.crc,
            "the CRC covers the payload"
        );
        // `from_bytes` validates the archive.
        let events = rkyv::from_bytes::<Vec<WireEvent>, rkyv::rancor::Error>(&payload).unwrap();
        (header, events)
    }

    #[test]
    fn patched_frames_decode_with_the_new_times_and_match_encode_frame() {
        for profile in [Profile::Access, Profile::Auth, Profile::Flow] {
            for (batch, record_bytes) in [(1, 10), (5, 100), (40, 300)] {
                let mut gen = EventGen::new(profile, 3, 50);
                let mut pool = FramePool::new(&mut gen, FLAG_DEDUP, 3, batch, record_bytes);
                let originals: Vec<Vec<WireEvent>> = pool
                    .slots
                    .iter()
                    .map(|slot| decode(&slot.frame).1)
                    .collect();
                let sent_ns = 1_754_000_000_123_456_789u64;
                for round in 0..2u64 {
                    for (i, original) in originals.iter().enumerate() {
                        let sent_ns = sent_ns + round * 1_000_000_007 + i as u64;
                        let batch_id = 0xab00 + round * 10 + i as u64;
                        let frame = pool.next(batch_id, sent_ns);
                        let (header, events) = decode(&frame);
                        assert_eq!(header.batch_id, batch_id);
                        assert_eq!(header.flags, FLAG_DEDUP);
                        assert_eq!(events.len(), batch);
                        let expected: Vec<WireEvent> = original
                            .iter()
                            .map(|event| WireEvent {
                                ts_ms: sent_ns / 1_000_000,
                                sent_ns,
                                ..event.clone()
                            })
                            .collect();
                        assert_eq!(events, expected);
                        // Byte for byte what encoding afresh sends.
                        assert_eq!(*frame, encode_frame(FLAG_DEDUP, batch_id, &expected));
                    }
                }
            }
        }
    }

    #[test]
    fn a_frame_held_for_a_retry_is_not_patched_under_it() {
        let mut gen = EventGen::new(Profile::Flow, 1, 10);
        let mut pool = FramePool::new(&mut gen, 0, 1, 3, 100);
        let held = pool.next(1, 1_700_000_000_000_000_000);
        let next = pool.next(2, 1_800_000_000_000_000_000);
        assert_eq!(decode(&held).0.batch_id, 1);
        assert_eq!(decode(&held).1[0].sent_ns, 1_700_000_000_000_000_000);
        assert_eq!(decode(&next).0.batch_id, 2);
        assert_eq!(decode(&next).1[2].sent_ns, 1_800_000_000_000_000_000);
    }

    #[test]
    fn patched_ndjson_bodies_parse_with_the_new_values() {
        let config = config(20, true);
        let mut gen = EventGen::new(Profile::Auth, 9, config.keys);
        let mut pool = BodyPool::new(&mut gen, &config, 2);
        for (batch_id, sent_ns) in [
            (0x0123_4567_89ab_cdefu64, 1_754_000_000_987_654_321u64),
            (5, 1_754_000_001_000_000_000),
            (u64::MAX, 1_999_999_999_999_999_999),
        ] {
            let (head, body) = pool.next(batch_id, sent_ns);
            let head = std::str::from_utf8(head).unwrap();
            assert!(
                head.contains(&format!("Weir-Batch-Id: {batch_id:016x}\r\n")),
                "{head}"
            );
            assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
            assert!(head.contains("Authorization: Bearer t\r\n"));
            assert!(head.ends_with("\r\n\r\n"));
            let body = std::str::from_utf8(body).unwrap();
            assert_eq!(body.lines().count(), 20);
            for line in body.lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(value["sent_ns"].as_u64(), Some(sent_ns), "{line}");
                assert_eq!(value["ts"].as_u64(), Some(sent_ns / 1_000_000));
                assert!(value["key"].is_string());
                assert_eq!(line.len(), config.record_bytes);
            }
        }
        // A shorter value is blank-padded, and still parses.
        let (_, body) = pool.next(1, 42);
        for line in std::str::from_utf8(body).unwrap().lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["sent_ns"].as_u64(), Some(42));
            assert_eq!(value["ts"].as_u64(), Some(0));
        }
        assert_eq!(&digits::<5>(123), b"  123");
        assert_eq!(&hex16(0xabc), b"0000000000000abc");
    }

    #[test]
    fn shipper_bodies_carry_rfc3339_times_and_gzip_bodies_inflate() {
        assert_eq!(&rfc3339_ms(1_796_464_800_250), b"2026-12-05T10:00:00.250Z");
        assert_eq!(&rfc3339_ms(951_782_400_000), b"2000-02-29T00:00:00.000Z");
        assert_eq!(&rfc3339_ms(0), b"1970-01-01T00:00:00.000Z");
        let mut config = config(4, false);
        config.http_body = HttpBody::Shipper;
        let mut gen = EventGen::new(Profile::Access, 1, 10);
        let mut pool = BodyPool::new(&mut gen, &config, 2);
        let (_, body) = pool.next(0, 1_796_464_800_250_000_000);
        for line in std::str::from_utf8(body).unwrap().lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["timestamp"], "2026-12-05T10:00:00.250Z");
            assert!(
                event["status"].is_u64() && event["ip"].is_string(),
                "{line}"
            );
        }
        config.gzip = true;
        let mut pool = BodyPool::new(&mut gen, &config, 1);
        let (head, body) = pool.next(0, 0);
        let head = std::str::from_utf8(head).unwrap();
        assert!(head.contains("Content-Encoding: gzip\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut text).unwrap();
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn otlp_bodies_are_export_requests_stamped_when_sent() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use prost::Message;
        let mut config = config(5, false);
        config.http_body = HttpBody::Otlp;
        let mut gen = EventGen::new(Profile::Access, 1, 10);
        let mut pool = BodyPool::new(&mut gen, &config, 2);
        for sent_ns in [1_796_464_800_250_000_001, 7] {
            let (head, body) = pool.next(0, sent_ns);
            let head = std::str::from_utf8(head).unwrap();
            assert!(
                head.contains("Content-Type: application/x-protobuf\r\n"),
                "{head}"
            );
            let request = ExportLogsServiceRequest::decode(body).unwrap();
            let records = &request.resource_logs[0].scope_logs[0].log_records;
            assert_eq!(records.len(), 5);
            for record in records {
                assert_eq!(record.time_unix_nano, sent_ns);
                assert_eq!(record.attributes[0].key, "key");
            }
        }
    }

    #[test]
    fn pools_cover_the_keys_within_the_memory_cap() {
        let mut config = config(1000, false);
        assert_eq!(pool_batches(&config), POOL_BATCHES_BASE);
        config.batch = 1;
        config.keys = 10_000;
        // 4 draws per key over 2 connections.
        assert_eq!(pool_batches(&config), 20_000);
        config.batch = 1000;
        config.keys = 100_000_000;
        let batches = pool_batches(&config);
        assert!(
            batches * 2 * 1000 * (150 + 48) <= POOL_BYTES_MAX,
            "{batches}"
        );
        config.mode = Mode::Open { rate: 10_000.0 };
        // 10 batches in the whole 1 s run, 5 per connection.
        assert_eq!(pool_batches(&config), 5);
    }
}
