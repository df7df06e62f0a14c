//! The `tcp` source's connections: the native binary protocol of
//! `docs/protocol.md` ([`wire`](super::wire)).
//!
//! Each connection has a reader task and a writer task. The reader checks a
//! frame completely (header, length limit before reading the payload,
//! CRC32C, rkyv validation of every event, UTF-8 keys and bodies) and queues
//! it; the writer acknowledges frames in order, each once its events are
//! durable. Frames may be pipelined: the reader goes on reading while
//! earlier frames wait for the log. An invalid frame is answered
//! `Rejected`, with the reason, and the connection is closed after it.

use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use rkyv::vec::ArchivedVec;

use super::wire::{
    AckHeader, AckStatus, ArchivedWireEvent, FrameHeader, FLAG_DEDUP, FRAME_HEADER_LEN,
};
use super::{
    enqueue, Checked, EventRef, IngestQueue, Payload, PendingReply, Refused, ServeFn, Settled,
    Tasks,
};

/// Settings of the `tcp` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    /// The largest payload a frame may carry.
    pub max_frame_bytes: u32,
}

impl Default for TcpOptions {
    fn default() -> TcpOptions {
        TcpOptions {
            max_frame_bytes: 16 << 20,
        }
    }
}

/// Frames a connection may have queued or waiting for the log before its
/// reader stops reading (TCP flow control then slows the client).
const FRAMES_IN_FLIGHT_MAX: usize = 64;

/// Checks a frame payload; returns its event count.
pub fn validate(payload: &[u8]) -> Result<usize, String> {
    let events = rkyv::access::<ArchivedVec<ArchivedWireEvent>, rkyv::rancor::Error>(payload)
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
        Checked::No => rkyv::access::<ArchivedVec<ArchivedWireEvent>, rkyv::rancor::Error>(payload)
            .map_err(|error| format!("payload is not an archived event batch: {error}"))?,
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
        });
    }
    Ok(())
}

/// Serves one connection on this shard.
pub(crate) fn serve_on(
    queue: Rc<IngestQueue>,
    tasks: Rc<Tasks>,
    options: TcpOptions,
    retry_after_ms: u64,
) -> ServeFn {
    Rc::new(move |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let (queue, options) = (queue.clone(), options.clone());
        tasks.spawn_connection(serve(stream, queue, options, retry_after_ms));
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

async fn serve(
    stream: TcpStream,
    queue: Rc<IngestQueue>,
    options: TcpOptions,
    retry_after_ms: u64,
) {
    let (reader, writer) = futures_lite::io::split(stream);
    let (sender, receiver) = local_channel::new_bounded(FRAMES_IN_FLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_acks(writer, receiver, queue.clone()));
    read_frames(reader, sender, queue, options, retry_after_ms).await;
    writer_task.await;
}

async fn read_frames(
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    acks: LocalSender<Pending>,
    queue: Rc<IngestQueue>,
    options: TcpOptions,
    retry_after_ms: u64,
) {
    let mut header_bytes = [0u8; FRAME_HEADER_LEN];
    loop {
        if reader.read_exact(&mut header_bytes).await.is_err() {
            return; // closed (or broken) between frames
        }
        let reject = |batch_id: u64, detail: String| Pending::Now {
            ack: ack(AckStatus::Rejected, batch_id, 0, 0),
            detail,
            close: true,
        };
        let header = match FrameHeader::decode(&header_bytes) {
            Ok(header) => header,
            Err(error) => {
                let _ = acks.send(reject(0, error.to_string())).await;
                return;
            }
        };
        if header.len > options.max_frame_bytes {
            let detail = format!(
                "frame payload of {} bytes exceeds the limit of {} bytes",
                header.len, options.max_frame_bytes
            );
            let _ = acks.send(reject(header.batch_id, detail)).await;
            return;
        }
        let mut payload = Payload::with_capacity(header.len as usize);
        payload.resize(header.len as usize, 0);
        if reader.read_exact(&mut payload).await.is_err() {
            return; // the client went away mid-frame: nothing was accepted
        }
        let crc = crc32c::crc32c(&payload);
        if crc != header.crc {
            let detail = format!(
                "payload CRC32C is {crc:#010x}, the header says {:#010x}",
                header.crc
            );
            let _ = acks.send(reject(header.batch_id, detail)).await;
            return;
        }
        let events = match validate(&payload) {
            Ok(events) => events,
            Err(detail) => {
                let _ = acks.send(reject(header.batch_id, detail)).await;
                return;
            }
        };
        // SAFETY: `validate` just checked these bytes.
        let archived =
            unsafe { rkyv::access_unchecked::<ArchivedVec<ArchivedWireEvent>>(&payload) };
        if let Some(sent_ns) = archived.first().map(|event| event.sent_ns.to_native()) {
            if sent_ns != 0 {
                let delay = super::unix_ns().saturating_sub(sent_ns);
                queue.metrics.receive_delay.observe_ns(delay);
            }
        }
        let batch_id = (header.flags & FLAG_DEDUP != 0).then_some(header.batch_id);
        let queued = enqueue(
            &queue,
            super::Encoding::Wire,
            batch_id,
            events,
            payload,
            Vec::new(),
        );
        let pending = match queued {
            Ok(reply) => Pending::Wait {
                batch_id: header.batch_id,
                reply,
            },
            Err(refused) => {
                let status = match refused {
                    Refused::Full => AckStatus::Overloaded,
                    Refused::Unavailable => AckStatus::Unavailable,
                };
                let retry = retry_after_ms.min(u64::from(u16::MAX)) as u16;
                let detail = match refused {
                    Refused::Full => "the pipeline is backed up; retry later",
                    Refused::Unavailable => "the source is not accepting input",
                };
                Pending::Now {
                    ack: ack(status, header.batch_id, 0, retry),
                    detail: detail.into(),
                    close: false,
                }
            }
        };
        if acks.send(pending).await.is_err() {
            return;
        }
    }
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

async fn write_acks(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    acks: LocalReceiver<Pending>,
    queue: Rc<IngestQueue>,
) {
    let mut out = Vec::new();
    while let Some(pending) = acks.recv().await {
        let (mut header, detail, close) = match pending {
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
        };
        queue.metrics.response(match header.status {
            AckStatus::Durable => "durable",
            AckStatus::Duplicate => "duplicate",
            AckStatus::Rejected => "rejected",
            AckStatus::Overloaded => "overloaded",
            AckStatus::Unavailable => "unavailable",
        });
        header.detail_len = detail.len() as u32;
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(detail.as_bytes());
        // One write per acknowledgement: a frame carries many events, so
        // this is cheap, and an ack never waits for a later frame.
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() || close {
            let _ = writer.close().await;
            return;
        }
        out.clear();
    }
    let _ = writer.close().await;
}
