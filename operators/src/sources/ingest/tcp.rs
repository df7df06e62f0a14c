//! The `tcp` source's connections: the native binary protocol of
//! `docs/protocol.md` ([`weir_protocol`]).
//!
//! Each connection has a reader task and a writer task. The reader checks a
//! frame completely (header, length limit before reading the payload,
//! CRC32C, rkyv validation of every event, UTF-8 keys and bodies) and queues
//! it; the writer acknowledges frames in order, each once its events are
//! durable. Frames may be pipelined: the reader goes on reading while
//! earlier frames wait for the log. An invalid frame is answered
//! `Rejected`, with the reason, and the connection is closed after it.
//!
//! # Limits (`super::limits`)
//! 1. Between frames, while no frame waits for its acknowledgement, the
//!    reader waits `idle_timeout_ms` for the first byte of the next
//!    header, then closes the connection without a word.
//! 2. From a header's first byte, the whole 24 bytes must arrive within
//!    `header_timeout_ms`, or the frame is `Rejected` and the connection
//!    closed.
//! 3. A length above `max_frame_bytes` is `Rejected` before a byte of the
//!    payload is read. Then the payload's length is reserved from the
//!    source's read budget; if it does not fit, the frame is answered
//!    `Overloaded` (with the retry delay), its payload read and dropped
//!    through a small buffer, and the connection stays open.
//! 4. The payload is read into a buffer that grows as bytes arrive
//!    (`super::socket::read_growing`); a payload that goes
//!    `read_timeout_ms` without a byte is `Rejected` and the connection
//!    closed. An acknowledgement that cannot be written for as long also
//!    closes it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use rkyv::vec::ArchivedVec;
use weir_protocol::{
    AckHeader, AckStatus, ArchivedWireEvent, FrameHeader, FLAG_DEDUP, FRAME_HEADER_BYTES,
};

use super::limits::ListenerLimits;
use super::listener::Slot;
use super::metrics::Timeout;
use super::socket::{discard, read_growing, Deadline, ReadError, Socket};
use super::{
    enqueue, Checked, EventRef, IngestOptions, IngestQueue, Payload, PendingReply, Refused,
    ServeFn, Settled, Tasks,
};
use crate::limits::{REQUEST_DEFAULT_BYTES, TCP_FRAMES_IN_FLIGHT_MAX};

/// Settings of the `tcp` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    /// The largest payload a frame may carry (at most
    /// [`payload_bytes_max`](super::limits::payload_bytes_max)).
    pub max_frame_bytes: u32,
}

impl Default for TcpOptions {
    fn default() -> TcpOptions {
        TcpOptions {
            max_frame_bytes: REQUEST_DEFAULT_BYTES as u32,
        }
    }
}

/// Checks a frame payload; returns its event count.
pub fn validate(payload: &[u8]) -> Result<usize, String> {
    let events = rkyv::access::<ArchivedVec<ArchivedWireEvent>, rkyv::rancor::BoxedError>(payload)
        .map_err(|error| format!("payload is not an archived event batch: {error}"))?;
    for (index, event) in events.iter().enumerate() {
        if std::str::from_utf8(&event.body).is_err() {
            return Err(format!("event {index}: body is not UTF-8"));
        }
    }
    Ok(events.len())
}

pub(crate) fn for_each_event(
    payload: &Payload,
    checked: Checked,
    each: &mut impl FnMut(EventRef<'_>),
) -> Result<(), String> {
    let events = match checked {
        Checked::No => {
            rkyv::access::<ArchivedVec<ArchivedWireEvent>, rkyv::rancor::BoxedError>(payload)
                .map_err(|error| format!("payload is not an archived event batch: {error}"))?
        }
        // SAFETY: `validate` accepted these very bytes (the payload is owned
        // and was not changed since), aligned as they are now: the archive is
        // valid, and every key and body is UTF-8.
        Checked::Yes => unsafe {
            rkyv::access_unchecked::<ArchivedVec<ArchivedWireEvent>>(payload)
        },
    };
    for (index, event) in events.iter().enumerate() {
        let body = match checked {
            Checked::No => std::str::from_utf8(&event.body)
                .map_err(|_| format!("event {index}: body is not UTF-8"))?,
            // SAFETY: as above, `validate` checked the body is UTF-8.
            Checked::Yes => unsafe { std::str::from_utf8_unchecked(&event.body) },
        };
        each(EventRef {
            key: event.key.as_str(),
            ts_ms: Some(event.ts_ms.to_native()),
            sent_ns: event.sent_ns.to_native(),
            body,
            error: None,
        });
    }
    Ok(())
}

/// What every connection of an instance is served with.
struct Settings {
    options: TcpOptions,
    retry_after_ms: u64,
    limits: ListenerLimits,
    tls: Option<super::tls::Tls>,
}

/// Serves one connection on this shard.
pub(crate) fn serve_on(
    queue: Rc<IngestQueue>,
    tasks: Rc<Tasks>,
    options: TcpOptions,
    ingest: &IngestOptions,
) -> ServeFn {
    let settings = Rc::new(Settings {
        options,
        retry_after_ms: ingest.retry_after_ms,
        limits: ingest.limits.clone(),
        tls: ingest.tls.clone(),
    });
    Rc::new(move |stream: TcpStream, slot: Slot| {
        let (queue, settings) = (queue.clone(), settings.clone());
        tasks.spawn_connection(async move {
            serve(stream, queue, settings).await;
            drop(slot);
        });
    })
}

/// What the writer acknowledges, in frame order.
enum Pending {
    Wait {
        batch_id: u64,
        reply: PendingReply,
    },
    Now {
        ack: AckHeader,
        detail: String,
        close: bool,
    },
}

/// Why the reader stops.
enum Stop {
    /// The client left, went idle, or the writer is gone: close.
    Quietly,
    /// Answer `Rejected` with this batch id and detail, then close.
    Reject(u64, String),
}

async fn serve(stream: TcpStream, queue: Rc<IngestQueue>, settings: Rc<Settings>) {
    let socket = Socket::new(
        stream,
        settings.limits.read_timeout_ms,
        settings.tls.as_ref(),
        b"",
    );
    let in_flight = Rc::new(Cell::new(0));
    let (sender, receiver) = local_channel::new_bounded(TCP_FRAMES_IN_FLIGHT_MAX);
    let writer = write_acks(socket.clone(), receiver, queue.clone(), in_flight.clone());
    let writer_task = glommio::spawn_local(writer);
    let reader = Reader {
        socket,
        acks: sender,
        queue,
        settings,
        in_flight,
    };
    reader.run().await;
    drop(reader);
    writer_task.await;
}

/// A connection's reading side.
struct Reader {
    socket: Socket,
    acks: LocalSender<Pending>,
    queue: Rc<IngestQueue>,
    settings: Rc<Settings>,
    /// Frames handed to the writer and not yet acknowledged.
    in_flight: Rc<Cell<usize>>,
}

impl Reader {
    async fn run(&self) {
        loop {
            let frame = match self.next_header().await {
                Ok(header) => self.frame(header).await,
                Err(stop) => Err(stop),
            };
            match frame {
                Ok(()) => continue,
                Err(Stop::Quietly) => return,
                Err(Stop::Reject(batch_id, detail)) => {
                    let ack = ack(AckStatus::Rejected, batch_id, 0, 0);
                    let _ = self
                        .send(Pending::Now {
                            ack,
                            detail,
                            close: true,
                        })
                        .await;
                    return;
                }
            }
        }
    }

    /// Hands `pending` to the writer; `Quietly` if the writer is gone.
    async fn send(&self, pending: Pending) -> Result<(), Stop> {
        self.in_flight.set(self.in_flight.get() + 1);
        self.acks.send(pending).await.map_err(|_| Stop::Quietly)
    }

    /// Reads the next frame header: the first bytes within the idle
    /// timeout (while nothing is in flight), the rest within the header
    /// timeout.
    async fn next_header(&self) -> Result<FrameHeader, Stop> {
        let limits = &self.settings.limits;
        let mut bytes = [0u8; FRAME_HEADER_BYTES];
        let mut filled = self.first_bytes(&mut bytes).await?;
        let deadline = Deadline::after_ms(limits.header_timeout_ms);
        while filled < FRAME_HEADER_BYTES {
            match self
                .socket
                .read_within(&mut bytes[filled..], deadline.left())
                .await
            {
                Ok(read) => filled += read,
                Err(ReadError::TimedOut) => {
                    self.queue.metrics.timed_out(Timeout::Header);
                    let detail = format!(
                        "the frame header did not arrive whole within {} ms",
                        limits.header_timeout_ms
                    );
                    return Err(Stop::Reject(0, detail));
                }
                Err(_) => return Err(Stop::Quietly),
            }
        }
        FrameHeader::decode(&bytes).map_err(|error| Stop::Reject(0, error.to_string()))
    }

    /// Waits for the first bytes of a header. The idle timeout closes the
    /// connection only when no frame awaits its acknowledgement.
    async fn first_bytes(&self, bytes: &mut [u8]) -> Result<usize, Stop> {
        let idle = Duration::from_millis(self.settings.limits.idle_timeout_ms);
        loop {
            match self.socket.read_within(bytes, idle).await {
                Ok(read) => return Ok(read),
                Err(ReadError::TimedOut) if self.in_flight.get() > 0 => continue,
                Err(ReadError::TimedOut) => {
                    self.queue.metrics.timed_out(Timeout::Idle);
                    return Err(Stop::Quietly);
                }
                Err(_) => return Err(Stop::Quietly),
            }
        }
    }

    /// Reads, checks and queues the frame `header` starts.
    async fn frame(&self, header: FrameHeader) -> Result<(), Stop> {
        let max_frame_bytes = self.settings.options.max_frame_bytes;
        if header.len > max_frame_bytes {
            let detail = format!(
                "frame payload of {} bytes exceeds the limit of {max_frame_bytes} bytes",
                header.len
            );
            return Err(Stop::Reject(header.batch_id, detail));
        }
        let len = header.len as usize;
        let read_timeout = Duration::from_millis(self.settings.limits.read_timeout_ms);
        let Some(reservation) = self.queue.mesh.budget.reserve(len) else {
            let detail = "the source's read budget is spent; retry later";
            self.send(self.refusal(Refused::Full, header.batch_id, detail))
                .await?;
            return discard(&self.socket, len, read_timeout)
                .await
                .map_err(|error| self.payload_failed(error, header.batch_id));
        };
        let mut payload = Payload::new();
        read_growing(&self.socket, &mut payload, len, read_timeout)
            .await
            .map_err(|error| self.payload_failed(error, header.batch_id))?;
        let events = check_payload(&header, &payload)
            .map_err(|detail| Stop::Reject(header.batch_id, detail))?;
        self.observe_receive_delay(&payload);
        let batch_id = (header.flags & FLAG_DEDUP != 0).then_some(header.batch_id);
        let queued = enqueue(
            &self.queue,
            super::Encoding::Wire,
            batch_id,
            events,
            (payload, reservation),
            Vec::new(),
        );
        let pending = match queued {
            Ok(reply) => Pending::Wait {
                batch_id: header.batch_id,
                reply,
            },
            Err(refused) => {
                let detail = match refused {
                    Refused::Full => "the pipeline is backed up; retry later",
                    Refused::Unavailable => "the source is not accepting input",
                };
                self.refusal(refused, header.batch_id, detail)
            }
        };
        self.send(pending).await
    }

    /// An `Overloaded` or `Unavailable` answer; the connection stays open.
    fn refusal(&self, refused: Refused, batch_id: u64, detail: &str) -> Pending {
        let status = match refused {
            Refused::Full => AckStatus::Overloaded,
            Refused::Unavailable => AckStatus::Unavailable,
        };
        let retry = self.settings.retry_after_ms.min(u64::from(u16::MAX)) as u16;
        Pending::Now {
            ack: ack(status, batch_id, 0, retry),
            detail: detail.into(),
            close: false,
        }
    }

    /// What to do when a payload could not be read whole.
    fn payload_failed(&self, error: ReadError, batch_id: u64) -> Stop {
        if error != ReadError::TimedOut {
            return Stop::Quietly; // the client went away mid-frame: nothing was accepted
        }
        self.queue.metrics.timed_out(Timeout::Read);
        let detail = format!(
            "the payload stalled: no byte arrived for {} ms",
            self.settings.limits.read_timeout_ms
        );
        Stop::Reject(batch_id, detail)
    }

    fn observe_receive_delay(&self, payload: &Payload) {
        // SAFETY: `check_payload` just validated these bytes.
        let archived = unsafe { rkyv::access_unchecked::<ArchivedVec<ArchivedWireEvent>>(payload) };
        if let Some(sent_ns) = archived.first().map(|event| event.sent_ns.to_native()) {
            if sent_ns != 0 {
                let delay = super::unix_ns().saturating_sub(sent_ns);
                self.queue.metrics.receive_delay.observe_ns(delay);
            }
        }
    }
}

/// Checks a payload read whole against its header: the CRC32C, then the
/// archive ([`validate`]); returns the event count.
fn check_payload(header: &FrameHeader, payload: &Payload) -> Result<usize, String> {
    let crc = crc32c::crc32c(payload);
    if crc != header.crc {
        return Err(format!(
            "payload CRC32C is {crc:#010x}, the header says {:#010x}",
            header.crc
        ));
    }
    validate(payload)
}

fn ack(status: AckStatus, batch_id: u64, events: u32, retry_after_ms: u16) -> AckHeader {
    AckHeader {
        status,
        retry_after_ms,
        batch_id,
        events,
        detail_len: 0,
    }
}

/// The acknowledgement a pending frame settles to: header, detail, and
/// whether the connection closes after it.
async fn settle(pending: Pending) -> (AckHeader, String, bool) {
    match pending {
        Pending::Now { ack, detail, close } => (ack, detail, close),
        Pending::Wait { batch_id, reply } => match reply.settle().await {
            Ok(Settled::Accepted(events)) => (
                ack(AckStatus::Durable, batch_id, events as u32, 0),
                String::new(),
                false,
            ),
            Ok(Settled::Duplicate) => (
                ack(AckStatus::Duplicate, batch_id, 0, 0),
                String::new(),
                false,
            ),
            Err(error) => (ack(AckStatus::Unavailable, batch_id, 0, 0), error, true),
        },
    }
}

async fn write_acks(
    socket: Socket,
    acks: LocalReceiver<Pending>,
    queue: Rc<IngestQueue>,
    in_flight: Rc<Cell<usize>>,
) {
    let mut out = Vec::new();
    while let Some(pending) = acks.recv().await {
        let (mut header, detail, close) = settle(pending).await;
        queue.metrics.response(match header.status {
            AckStatus::Durable => "durable",
            AckStatus::Duplicate => "duplicate",
            AckStatus::Rejected => "rejected",
            AckStatus::Overloaded => "overloaded",
            AckStatus::Unavailable => "unavailable",
        });
        header.detail_len = detail.len() as u32;
        out.clear();
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(detail.as_bytes());
        // One write per acknowledgement: a frame carries many events, so
        // this is cheap, and an ack never waits for a later frame.
        let written = socket.write_all(&out).await;
        in_flight.set(in_flight.get() - 1);
        if written.is_err() || close {
            break;
        }
    }
    socket.close_write().await;
}

#[cfg(test)]
mod tests {
    /// A payload that is not an archive is refused with what rkyv found
    /// wrong, in every build: `rancor::Error` keeps that only with debug
    /// assertions on, and says "failed without error information" in a
    /// release build, so the refusal uses `BoxedError`.
    #[test]
    fn an_invalid_payload_is_refused_with_the_reason() {
        let mut payload = rkyv::util::AlignedVec::<16>::new();
        payload.extend_from_slice(&[0xff; 64]);
        let error = super::validate(&payload).unwrap_err();
        assert!(
            error.starts_with("payload is not an archived event batch: "),
            "{error}"
        );
        assert!(!error.contains("without error information"), "{error}");
        assert!(
            error.len() > "payload is not an archived event batch: ".len() + 10,
            "{error}"
        );
        eprintln!("{error}");
    }
}
