//! The `syslog` source: RFC 5424 and RFC 3164 messages over TCP or UDP,
//! parsed by `syslog_loose` (what Vector's `syslog` source uses).
//!
//! # Framing
//! - TCP (RFC 6587): each message is told apart by its first byte: a digit
//!   starts octet counting (`LEN SP MSG`, §3.4.1), anything else is
//!   newline framing (the message runs to `\n`, a `\r` before it dropped).
//!   A connection may mix both. A message longer than
//!   `max_message_bytes` closes the connection (what it sent before is
//!   kept); at the end of the stream an unterminated last line is a
//!   message.
//! - UDP: one message per datagram (RFC 5426), a trailing newline dropped.
//!
//! # Durability
//! A connection reads what has arrived, takes every whole message in it as
//! one batch, and hands it to the source like any ingest batch: the
//! source logs it to the shard's WAL before it emits a message of it, and
//! the connection reads on only once the batch is durable. syslog has no
//! acknowledgements, so a full queue is backpressure: the connection waits
//! and reads nothing meanwhile (TCP flow control holds the sender). So
//! nothing weir read from a socket is lost in a crash once its batch is
//! logged; bytes still in the kernel's buffers or in a batch being logged
//! are the sender's to resend (a TCP sender learns nothing either way:
//! that is syslog over TCP). A UDP datagram is one batch, logged before it
//! is emitted, but nothing waits for its sync; when the source is backed
//! up it is dropped, as the kernel drops what arrives while the socket's
//! buffer is full.
//!
//! # Logged payload
//! A batch is logged as its messages, each `[u32 LE length][16-byte peer
//! address (IPv6, IPv4 mapped)][message bytes]`; replay parses them again,
//! resolving RFC 3164's missing year from the time the batch was accepted,
//! so a replayed message gets the same time as the first time.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use glommio::net::TcpStream;

use super::budget::Reservation;
use super::listener::Slot;
use super::socket::{ReadError, Socket};
use super::{enqueue, Encoding, IngestOptions, IngestQueue, Payload, Refused, ServeFn, Tasks};
use crate::limits::READ_CHUNK_BYTES;

/// Bytes a logged message carries before its text.
const MESSAGE_HEADER_BYTES: usize = 4 + 16;

/// How long a connection waits before it offers a batch the queue or the
/// read budget refused again.
const BACKPRESSURE_RETRY: Duration = Duration::from_millis(10);

/// How the `syslog` source listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogMode {
    /// TCP, octet counting or newline framing.
    Tcp,
    /// UDP, one message per datagram.
    Udp,
}

/// Settings of the `syslog` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogOptions {
    /// TCP or UDP.
    pub mode: SyslogMode,
    /// The longest message; longer closes a TCP connection, and is cut
    /// off over UDP.
    pub max_message_bytes: usize,
}

impl Default for SyslogOptions {
    fn default() -> SyslogOptions {
        SyslogOptions {
            mode: SyslogMode::Tcp,
            max_message_bytes: 102_400,
        }
    }
}

/// One message found in a TCP stream's bytes.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The message's byte range, and where the next frame starts.
    Message(std::ops::Range<usize>, usize),
    /// The bytes hold no whole message yet.
    Partial,
    /// What is wrong with the stream (the connection closes).
    Bad(String),
}

/// The first frame of `bytes`; `end` says the stream ended after them.
fn next_frame(bytes: &[u8], max: usize, end: bool) -> Frame {
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        let Some(space) = bytes.iter().take(12).position(|&byte| byte == b' ') else {
            if bytes.len() >= 12 || end || !bytes.iter().all(u8::is_ascii_digit) {
                return Frame::Bad("an octet count that is not digits and a space".into());
            }
            return Frame::Partial;
        };
        let digits = std::str::from_utf8(&bytes[..space]).unwrap_or_default();
        let Ok(len) = digits.parse::<usize>() else {
            return Frame::Bad(format!("octet count `{digits}` is not a number"));
        };
        if len > max {
            return Frame::Bad(format!(
                "a message of {len} bytes is over max_message_bytes ({max})"
            ));
        }
        let start = space + 1;
        return match bytes.len() >= start + len {
            true => Frame::Message(start..start + len, start + len),
            false if end => Frame::Bad("the stream ended inside a message".into()),
            false => Frame::Partial,
        };
    }
    match memchr::memchr(b'\n', bytes) {
        Some(newline) if newline > max => Frame::Bad(format!(
            "a line of {newline} bytes is over max_message_bytes ({max})"
        )),
        Some(newline) => {
            let line_end = if newline > 0 && bytes[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            Frame::Message(0..line_end, newline + 1)
        }
        None if bytes.len() > max => Frame::Bad(format!(
            "a line of more than max_message_bytes ({max}) bytes"
        )),
        None if end && !bytes.is_empty() => Frame::Message(0..bytes.len(), bytes.len()),
        None => Frame::Partial,
    }
}

/// Appends one message to a batch's payload.
fn push_message(payload: &mut Payload, peer: IpAddr, message: &[u8]) {
    let ip = match peer {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    payload.extend_from_slice(&(message.len() as u32).to_le_bytes());
    payload.extend_from_slice(&ip.octets());
    payload.extend_from_slice(message);
}

/// Calls `each` with every message of a logged payload: its peer address
/// and its text (lossy where it is not UTF-8).
pub(crate) fn for_each_message(
    payload: &[u8],
    mut each: impl FnMut(IpAddr, &str),
) -> Result<(), String> {
    let mut at = 0;
    while at < payload.len() {
        let header = payload
            .get(at..at + MESSAGE_HEADER_BYTES)
            .ok_or_else(|| format!("a syslog message header cut off at byte {at}"))?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let ip: [u8; 16] = header[4..].try_into().expect("16 bytes");
        let start = at + MESSAGE_HEADER_BYTES;
        let text = payload
            .get(start..start + len)
            .ok_or_else(|| format!("a syslog message of {len} bytes cut off at byte {start}"))?;
        let ip = std::net::Ipv6Addr::from(ip);
        let peer = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        each(peer, &String::from_utf8_lossy(text));
        at = start + len;
    }
    Ok(())
}

/// A message's fields, as the rows carry them.
pub(crate) struct Parsed<'a> {
    pub(crate) ts_ms: Option<i64>,
    pub(crate) message: syslog_loose::Message<&'a str>,
}

/// Parses `text`, either RFC; a RFC 3164 time without a year takes the
/// year of `accepted_ms` (the year before when its month is later: a
/// December message accepted in January). Times without a zone are UTC.
pub(crate) fn parse(text: &str, accepted_ms: u64) -> Parsed<'_> {
    let accepted = Utc
        .timestamp_millis_opt(accepted_ms as i64)
        .single()
        .unwrap_or_default();
    let year = move |(month, ..): syslog_loose::IncompleteDate| {
        if month > accepted.month() {
            accepted.year() - 1
        } else {
            accepted.year()
        }
    };
    let message = syslog_loose::parse_message_with_year_tz(
        text,
        year,
        Some(Utc),
        syslog_loose::Variant::Either,
    );
    Parsed {
        ts_ms: message.timestamp.map(|time| time.timestamp_millis()),
        message,
    }
}

/// Serves one TCP connection on this shard.
pub(crate) fn serve_on(
    queue: Rc<IngestQueue>,
    tasks: Rc<Tasks>,
    options: SyslogOptions,
    ingest: &IngestOptions,
) -> ServeFn {
    let settings = Rc::new((options, ingest.clone()));
    Rc::new(move |stream: TcpStream, slot: Slot| {
        let (queue, settings) = (queue.clone(), settings.clone());
        tasks.spawn_connection(async move {
            let peer = stream
                .peer_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.ip());
            let (options, ingest) = &*settings;
            let socket = Socket::new(
                stream,
                ingest.limits.read_timeout_ms,
                ingest.tls.as_ref(),
                b"",
            );
            read_stream(&socket, peer, &queue, options, ingest).await;
            drop(socket);
            drop(slot);
        });
    })
}

/// Reads a connection's messages until it ends, a batch at a time.
async fn read_stream(
    socket: &Socket,
    peer: IpAddr,
    queue: &IngestQueue,
    options: &SyslogOptions,
    ingest: &IngestOptions,
) {
    let idle = Duration::from_millis(ingest.limits.idle_timeout_ms);
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let start = buffer.len();
        buffer.resize(start + READ_CHUNK_BYTES, 0);
        let read = socket.read_within(&mut buffer[start..], idle).await;
        let end = match read {
            Ok(read) => {
                buffer.truncate(start + read);
                false
            }
            Err(ReadError::Closed) => {
                buffer.truncate(start);
                true
            }
            Err(error) => {
                if error == ReadError::TimedOut {
                    tracing::debug!(%peer, "syslog connection idle: closed");
                }
                return;
            }
        };
        let mut payload = Payload::new();
        let (mut at, mut messages) = (0, 0);
        let bad = loop {
            match next_frame(&buffer[at..], options.max_message_bytes, end) {
                Frame::Message(range, next) => {
                    push_message(
                        &mut payload,
                        peer,
                        &buffer[at + range.start..at + range.end],
                    );
                    messages += 1;
                    at += next;
                }
                Frame::Partial => break None,
                Frame::Bad(reason) => break Some(reason),
            }
        };
        buffer.drain(..at);
        if messages > 0 && !log_batch(queue, payload, messages, ingest).await {
            return;
        }
        if let Some(reason) = bad {
            tracing::warn!(%peer, "syslog connection closed: {reason}");
            return;
        }
        if end {
            return;
        }
    }
}

/// Hands a batch to the source and waits until it is durable; `false` when
/// the source is gone or its log failed.
async fn log_batch(
    queue: &IngestQueue,
    payload: Payload,
    messages: usize,
    ingest: &IngestOptions,
) -> bool {
    let mut batch = Some(payload);
    loop {
        let payload = batch.take().expect("a batch to offer");
        let Some(reservation) = queue.mesh.budget.reserve(payload.len()) else {
            batch = Some(payload);
            glommio::timer::sleep(BACKPRESSURE_RETRY).await;
            continue;
        };
        let reply = enqueue_held(queue, payload, reservation, messages);
        match reply {
            Ok(reply) => {
                return match reply.settle().await {
                    Ok(_) => true,
                    Err(error) => {
                        tracing::warn!("syslog batch not logged: {error}");
                        false
                    }
                };
            }
            Err((Refused::Full, payload)) => {
                batch = Some(payload);
                let wait = Duration::from_millis(ingest.retry_after_ms.min(100));
                glommio::timer::sleep(wait.max(BACKPRESSURE_RETRY)).await;
            }
            Err((Refused::Unavailable, _)) => return false,
        }
    }
}

/// [`enqueue`], keeping the payload when the queue is full so it can be
/// offered again.
fn enqueue_held(
    queue: &IngestQueue,
    payload: Payload,
    reservation: Reservation,
    messages: usize,
) -> Result<super::PendingReply, (Refused, Payload)> {
    if queue.is_full_for(messages) {
        return Err((Refused::Full, payload));
    }
    enqueue(
        queue,
        Encoding::Syslog,
        None,
        messages,
        (payload, reservation),
        Vec::new(),
    )
    .map_err(|refused| (refused, Payload::new()))
}

/// Receives datagrams on this shard's UDP socket until the source ends.
pub(crate) async fn receive_udp(
    socket: glommio::net::UdpSocket,
    queue: Rc<IngestQueue>,
    options: SyslogOptions,
) {
    let mut datagram = vec![0u8; options.max_message_bytes.max(1)];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut datagram).await else {
            glommio::timer::sleep(BACKPRESSURE_RETRY).await;
            continue;
        };
        let mut message = &datagram[..len];
        while let Some(rest) = message
            .strip_suffix(b"\n")
            .or_else(|| message.strip_suffix(b"\r"))
        {
            message = rest;
        }
        if message.is_empty() {
            continue;
        }
        let mut payload = Payload::new();
        push_message(&mut payload, from.ip(), message);
        // No sender waits for an answer: the datagram is logged and emitted
        // without this loop waiting for its sync, and dropped (as the
        // kernel drops datagrams) when the source is backed up.
        let Some(reservation) = queue.mesh.budget.reserve(payload.len()) else {
            tracing::debug!("syslog datagram dropped: the read budget is spent");
            continue;
        };
        let batch = (payload, reservation);
        match enqueue(&queue, Encoding::Syslog, None, 1, batch, Vec::new()) {
            Ok(_) => {}
            Err(Refused::Full) => tracing::debug!("syslog datagram dropped: the queue is full"),
            Err(Refused::Unavailable) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8], end: bool) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            match next_frame(&bytes[at..], 64, end) {
                Frame::Message(range, next) => {
                    let text = &bytes[at + range.start..at + range.end];
                    out.push(Ok(String::from_utf8_lossy(text).into_owned()));
                    at += next;
                }
                Frame::Partial => return out,
                Frame::Bad(reason) => {
                    out.push(Err(reason));
                    return out;
                }
            }
        }
    }

    #[test]
    fn octet_counting_and_newlines_mix_and_wait_for_whole_messages() {
        let stream = b"5 <13>a<14>b c\r\n10 <15>x\ny z\n<16>par";
        assert_eq!(
            frames(stream, false),
            [
                Ok("<13>a".to_owned()),
                Ok("<14>b c".to_owned()),
                Ok("<15>x\ny z\n".to_owned()),
            ]
        );
        assert_eq!(frames(stream, true).last(), Some(&Ok("<16>par".to_owned())));
        assert_eq!(frames(b"12 <1>a", false), []);
        assert!(frames(b"12 <1>a", true)[0].is_err());
        assert!(frames(b"99 x", false)[0]
            .as_ref()
            .unwrap_err()
            .contains("over max_message_bytes (64)"));
        assert!(frames(&[b'<'; 70], false)[0].is_err());
        assert!(frames(b"1x2 <1>", false)[0].is_err());
    }

    #[test]
    fn logged_messages_come_back_with_their_peers() {
        let mut payload = Payload::new();
        push_message(&mut payload, IpAddr::from([10, 0, 0, 7]), b"<13>one");
        push_message(
            &mut payload,
            "::1".parse().unwrap(),
            "<14>tw\u{f6}".as_bytes(),
        );
        let mut seen = Vec::new();
        for_each_message(&payload, |peer, text| {
            seen.push((peer.to_string(), text.to_owned()))
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ("10.0.0.7".to_owned(), "<13>one".to_owned()),
                ("::1".to_owned(), "<14>tw\u{f6}".to_owned())
            ]
        );
        assert!(for_each_message(&payload[..payload.len() - 1], |_, _| ()).is_err());
    }

    #[test]
    fn both_rfcs_parse_and_a_yearless_time_takes_the_accepting_year() {
        // 2026-01-02T00:00:00Z
        let january = 1_767_312_000_000;
        let rfc5424 = parse(
            "<165>1 2026-12-05T10:00:00.250Z web-1 nginx 4242 ID47 [meta@1 a=\"b\"] GET /",
            january,
        );
        assert_eq!(rfc5424.ts_ms, Some(1_796_464_800_250));
        assert_eq!(rfc5424.message.hostname, Some("web-1"));
        assert_eq!(rfc5424.message.appname, Some("nginx"));
        assert_eq!(rfc5424.message.msg, "GET /");
        let rfc3164 = parse(
            "<34>Dec 31 23:59:59 mymachine su: 'su root' failed",
            january,
        );
        // December seen in January: last year.
        assert_eq!(rfc3164.ts_ms, Some(1_767_225_599_000));
        assert_eq!(rfc3164.message.hostname, Some("mymachine"));
        assert_eq!(rfc3164.message.appname, Some("su"));
    }
}
