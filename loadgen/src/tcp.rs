//! The native `tcp` protocol client: one writer and one reader thread per
//! connection, frames pipelined.
//!
//! The writer pushes each frame's bookkeeping (batch id, intended send
//! time, event count) onto the connection's pending queue *before* writing
//! it; the reader pops the queue front for every ack, since the server acks
//! frames in order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_protocol::{AckHeader, AckStatus, ACK_HEADER_BYTES};

use crate::config::{ConnConfig, Mode};
use crate::limits::{RECONNECT_INTERVAL_MS, WRITE_TIMEOUT_MS};
use crate::pool::FramePool;
use crate::stats::{wait_until, Shared};

/// A frame sent and not yet acked.
#[derive(Debug)]
struct Pending {
    batch_id: u64,
    /// When the frame was meant to be sent; latencies start here.
    intended: Instant,
    events: u64,
    /// The frame itself, kept in `--max` mode to resend it after an
    /// `Overloaded` ack.
    frame: Option<Arc<Vec<u8>>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// In send order.
    pending: VecDeque<Pending>,
    /// Frames to resend (`--max` mode), not before the given time.
    retry: VecDeque<(Pending, Instant)>,
    /// The reader has stopped: the connection is unusable.
    dead: bool,
}

#[derive(Debug, Default)]
struct Session {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// An open connection: the write half and the reader thread.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    /// The TLS session (`--tls-ca`).
    tls: Option<Arc<crate::tls::TlsSession>>,
    session: Arc<Session>,
    reader: JoinHandle<()>,
    /// The write timeout set on `stream`.
    write_timeout: Duration,
}

impl Connection {
    fn open(config: &Arc<ConnConfig>, shared: &Arc<Shared>) -> io::Result<Connection> {
        let mut stream = TcpStream::connect(&config.addr)?;
        stream.set_nodelay(true)?;
        // A server that stops reading must not block the writer forever.
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let tls = match &config.tls {
            Some(tls) => {
                let host = config.addr.rsplit_once(':').map_or("", |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some(crate::tls::TlsSession::connect(&mut stream, tls, host)?)
            }
            None => None,
        };
        let read_half = stream.try_clone()?;
        let session = Arc::new(Session::default());
        let reader = {
            let (session, shared, config) = (session.clone(), shared.clone(), config.clone());
            let tls = tls.clone();
            std::thread::Builder::new()
                .name("loadgen-tcp-reader".into())
                .spawn(move || match tls {
                    Some(tls) => {
                        let reader = crate::tls::TlsReader::new(tls, read_half);
                        read_acks(reader, &session, &shared, &config)
                    }
                    None => read_acks(read_half, &session, &shared, &config),
                })?
        };
        Ok(Connection {
            stream,
            tls,
            session,
            reader,
            write_timeout: WRITE_TIMEOUT,
        })
    }

    /// Writes `frame`, blocking at most until the run's drain deadline: in
    /// the run's last [`WRITE_TIMEOUT`] the write timeout shrinks with the
    /// time left (reset when it is 100 ms shorter, so not per frame).
    fn write(&mut self, frame: &[u8], shared: &Shared) -> io::Result<()> {
        let left = shared
            .drain_deadline()
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if left + Duration::from_millis(100) < self.write_timeout {
            self.stream.set_write_timeout(Some(left))?;
            self.write_timeout = left;
        }
        match &self.tls {
            Some(tls) => tls.write_all(&self.stream, frame),
            None => self.stream.write_all(frame),
        }
    }

    /// Waits (up to the drain deadline) for every frame to be acked, then
    /// closes the connection; frames still unacked count as `timeout`.
    fn close(self, shared: &Shared) {
        {
            let mut queue = self.session.lock();
            while !queue.dead && !queue.pending.is_empty() {
                let now = Instant::now();
                if shared.past_drain(now) || shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let deadline = shared.start + shared.end + shared.drain;
                let wait = (deadline - now).min(Duration::from_millis(100));
                queue = self
                    .session
                    .changed
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0;
            }
            for pending in queue.pending.drain(..) {
                shared.error(pending.intended, "timeout");
            }
            queue.retry.clear();
            queue.dead = true;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = self.reader.join();
    }
}

/// How long a write may block before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_millis(WRITE_TIMEOUT_MS);

/// Runs one connection until the end of the run.
pub(crate) fn run_connection(
    config: Arc<ConnConfig>,
    shared: Arc<Shared>,
    conn: usize,
    pool: FramePool,
) {
    let mut writer = Writer {
        config,
        shared,
        conn,
        pool,
        seq: 0,
        connection: None,
        last_connect: None,
    };
    match writer.config.mode {
        Mode::Open { .. } => writer.run_open(),
        Mode::Max { inflight } => writer.run_max(inflight),
    }
    if let Some(open) = writer.connection.take() {
        open.close(&writer.shared);
    }
}

/// One connection's writer: its frames, its connection (opened again
/// when it fails) and where it is in its schedule.
#[derive(Debug)]
struct Writer {
    config: Arc<ConnConfig>,
    shared: Arc<Shared>,
    conn: usize,
    pool: FramePool,
    /// The next batch's sequence number on this connection.
    seq: u64,
    connection: Option<Connection>,
    last_connect: Option<Instant>,
}

impl Writer {
    /// The next pooled frame, patched for its send time and batch id, with
    /// its batch id.
    fn next_frame(&mut self, intended: Instant) -> (u64, Arc<Vec<u8>>) {
        let batch_id = self.config.batch_id(self.conn, self.seq);
        self.seq += 1;
        let frame = self.pool.next(batch_id, self.shared.unix_ns(intended));
        (batch_id, frame)
    }

    /// Makes sure a live connection exists, reconnecting at most every
    /// [`RECONNECT_INTERVAL_MS`]; `false` if there is none.
    fn ensure(&mut self) -> bool {
        if let Some(open) = &self.connection {
            if !open.session.lock().dead {
                return true;
            }
            if let Some(old) = self.connection.take() {
                old.close(&self.shared);
            }
        }
        let now = Instant::now();
        let interval = Duration::from_millis(RECONNECT_INTERVAL_MS);
        if self.last_connect.is_some_and(|at| now - at < interval) {
            return false;
        }
        self.last_connect = Some(now);
        match Connection::open(&self.config, &self.shared) {
            Ok(open) => {
                self.connection = Some(open);
                true
            }
            Err(error) => {
                if self.config.verbose {
                    eprintln!(
                        "loadgen: connection {}: cannot connect to {}: {error}",
                        self.conn, self.config.addr
                    );
                }
                false
            }
        }
    }

    /// Writes `frame` on the open connection; on failure shuts the
    /// connection down, and its reader counts the frames it loses.
    fn write(&mut self, frame: &[u8]) {
        let open = self.connection.as_mut().expect("connected");
        if open.write(frame, &self.shared).is_err() {
            let _ = open.stream.shutdown(Shutdown::Both);
        }
    }

    /// Open loop: sends every batch when it is due, whether or not earlier
    /// ones were acked, until the schedule ends or the run's time is over.
    fn run_open(&mut self) {
        let (config, shared) = (self.config.clone(), self.shared.clone());
        while let Some(offset) = config.due(self.conn, self.seq) {
            if shared.past_end(Instant::now()) {
                config.skip_rest(&shared, self.conn, self.seq);
                break;
            }
            let intended = shared.start + offset;
            let (batch_id, frame) = self.next_frame(intended);
            wait_until(intended);
            if !self.ensure() {
                shared.error(intended, "io");
                continue;
            }
            {
                let open = self.connection.as_ref().expect("connected");
                let mut queue = open.session.lock();
                if queue.pending.len() >= config.max_backlog {
                    drop(queue);
                    shared.error(intended, "backlogged");
                    continue;
                }
                queue.pending.push_back(Pending {
                    batch_id,
                    intended,
                    events: config.batch as u64,
                    frame: None,
                });
            }
            shared.sent(intended, config.batch as u64);
            self.write(&frame);
        }
    }

    /// Closed loop: keeps `inflight` frames outstanding until the end of
    /// the run, resending overloaded ones when the server said to.
    fn run_max(&mut self, inflight: usize) {
        let end = self.shared.start + self.shared.end;
        wait_until(self.shared.start);
        while Instant::now() < end {
            if !self.ensure() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if let Some(frame) = self.next_max_frame(inflight, end) {
                self.write(&frame);
            }
        }
    }

    /// The next frame to send in closed-loop mode, once a slot is free or
    /// a retry is due: the retried frame, or a fresh one; either is pending
    /// on the connection when this returns. `None` if the connection died
    /// or the run ended meanwhile.
    fn next_max_frame(&mut self, inflight: usize, end: Instant) -> Option<Arc<Vec<u8>>> {
        let session = self.connection.as_ref().expect("connected").session.clone();
        let (mut queue, retry) = wait_for_slot(&session, inflight, end);
        if queue.dead || Instant::now() >= end {
            if let Some(retry) = retry {
                queue.retry.push_front((retry, Instant::now()));
            }
            return None;
        }
        if let Some(retry) = retry {
            // The same frame, batch id included: nothing of it was
            // accepted.
            let frame = retry.frame.clone().expect("retries keep their frame");
            queue.pending.push_back(retry);
            return Some(frame);
        }
        drop(queue);
        let (batch_id, frame) = self.next_frame(Instant::now());
        // Latency from the moment the frame is handed to the socket: in
        // closed-loop mode that is the intended time.
        let intended = Instant::now();
        session.lock().pending.push_back(Pending {
            batch_id,
            intended,
            events: self.config.batch as u64,
            frame: Some(frame.clone()),
        });
        self.shared.sent(intended, self.config.batch as u64);
        Some(frame)
    }
}

/// Waits until fewer than `inflight` frames are pending or a retry is due
/// (and takes it), or until the connection dies or the run ends at `end`.
fn wait_for_slot(
    session: &Session,
    inflight: usize,
    end: Instant,
) -> (MutexGuard<'_, Queue>, Option<Pending>) {
    let mut queue = session.lock();
    loop {
        let now = Instant::now();
        if queue.dead || now >= end {
            return (queue, None);
        }
        let wait = if let Some((_, not_before)) = queue.retry.front() {
            if *not_before <= now {
                let retry = queue.retry.pop_front().map(|(pending, _)| pending);
                return (queue, retry);
            }
            (*not_before - now).min(end - now)
        } else if queue.pending.len() < inflight {
            return (queue, None);
        } else {
            (end - now).min(Duration::from_millis(100))
        };
        queue = session
            .changed
            .wait_timeout(queue, wait)
            .unwrap_or_else(|poison| poison.into_inner())
            .0;
    }
}

/// Reads acks until the connection closes, matching each to the oldest
/// pending frame.
fn read_acks(mut stream: impl Read, session: &Session, shared: &Shared, config: &ConnConfig) {
    let outcome = read_loop(&mut stream, session, shared, config);
    let mut queue = session.lock();
    let kind = match outcome {
        Ok(()) => "closed",
        Err(_) if queue.dead => "timeout",
        Err(error) => {
            if config.verbose && !shared.stop.load(Ordering::Relaxed) {
                eprintln!("loadgen: {}: {error}", config.addr);
            }
            if error.kind() == io::ErrorKind::InvalidData {
                "protocol"
            } else {
                "io"
            }
        }
    };
    for pending in queue.pending.drain(..) {
        shared.error(pending.intended, kind);
    }
    queue.retry.clear();
    queue.dead = true;
    drop(queue);
    session.changed.notify_all();
}

fn read_loop(
    stream: &mut impl Read,
    session: &Session,
    shared: &Shared,
    config: &ConnConfig,
) -> io::Result<()> {
    let mut header = [0u8; ACK_HEADER_BYTES];
    let mut detail = Vec::new();
    loop {
        match stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                let queue = session.lock();
                return if queue.pending.is_empty() {
                    Ok(())
                } else {
                    Err(error)
                };
            }
            Err(error) => return Err(error),
        }
        let now = Instant::now();
        let ack = AckHeader::decode(&header)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an ack header"))?;
        detail.resize(ack.detail_len as usize, 0);
        stream.read_exact(&mut detail)?;
        let mut queue = session.lock();
        let pending = queue
            .pending
            .pop_front()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "an ack for no frame"))?;
        if pending.batch_id != ack.batch_id {
            let message = format!(
                "ack for batch {:#x}, expected {:#x}",
                ack.batch_id, pending.batch_id
            );
            queue.pending.push_front(pending);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        match ack.status {
            AckStatus::Durable => {
                drop(queue);
                shared.accepted(pending.intended, now, pending.events);
            }
            AckStatus::Overloaded if pending.frame.is_some() => {
                // --max mode: back off, then resend the same frame.
                let retry_at = now + Duration::from_millis(u64::from(ack.retry_after_ms.max(1)));
                let intended = pending.intended;
                queue.retry.push_back((pending, retry_at));
                drop(queue);
                shared.error(intended, "overloaded");
            }
            status => {
                drop(queue);
                let kind = match status {
                    AckStatus::Durable => unreachable!("handled above"),
                    AckStatus::Duplicate => "duplicate",
                    AckStatus::Rejected => "rejected",
                    AckStatus::Overloaded => "overloaded",
                    AckStatus::Unavailable => "unavailable",
                };
                shared.error(pending.intended, kind);
                if status == AckStatus::Rejected && config.verbose {
                    eprintln!(
                        "loadgen: {} rejected batch {:#x}: {}",
                        config.addr,
                        ack.batch_id,
                        String::from_utf8_lossy(&detail)
                    );
                }
            }
        }
        session.changed.notify_all();
    }
}
