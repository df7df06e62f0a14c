//! Network ingest: the `http`, `tcp` and `syslog` sources
//! (`docs/protocol.md`; syslog in [`syslog`]).
//!
//! Each shard runs one instance of an ingest source, and each instance
//! listens on the configured address with `SO_REUSEPORT` (glommio sets it),
//! so the kernel spreads connections over the shards and a connection is
//! served by one shard from accept to close.
//!
//! # From request to acknowledgement
//! 1. A connection task (one per connection, on the shard) reads a request
//!    or frame, checks it completely (authentication, size limit while
//!    reading, syntax of every event) and answers errors at once: a
//!    rejected request adds no event.
//! 2. It queues the batch for the source instance ([`IngestQueue`]). The
//!    queue is bounded in events; when it is full the request is refused
//!    with 429 (TCP: `Overloaded`) and a retry delay, never queued without
//!    bound.
//! 3. The source, in `poll`, takes queued batches, drops a batch whose id it
//!    accepted before (dedup), logs each other batch to the shard's WAL
//!    through its [`IntakeLog`] and emits its events, in that order.
//! 4. The connection awaits the log record's durability, then acknowledges.
//!    An acknowledged batch is in the WAL; if the epoch its events were
//!    emitted in never commits, recovery replays it (`weir_runtime::intake`).
//!
//! # Deduplication
//! A batch may carry an id (HTTP `Weir-Batch-Id`, TCP `FLAG_DEDUP`). The
//! source remembers accepted ids for `dedup_window_ms` (at most
//! `dedup_max_ids` of them, oldest forgotten first) and answers a repeat
//! with "duplicate", adding nothing. The table is part of the source's
//! position, so it survives a restart, and replayed batches re-enter it.
//! Every batch id has one owner instance (`id % instances`): a connection
//! on another shard hands a batch with an id to its owner through a bounded
//! channel ([`Mesh`], once per batch, never per event), so a retry is
//! recognised whichever shard its connection reaches. Batches without an id
//! stay on the shard that received them.
//!
//! # Limits
//! Every connection is served under the limits of [`limits`]: a cap on the
//! connections of an instance ([`listener`](self::listener)), timeouts on
//! the request head, on a body in progress and on an idle connection, and
//! a read budget ([`budget`](self::budget)) that bounds the bytes of bodies
//! and payloads a source holds, whatever the clients claim. Buffers grow as
//! bytes arrive ([`socket`](self::socket)); a request is never larger than
//! one write-ahead log record holds ([`limits::payload_bytes_max`]).
//!
//! # Watermarks
//! Ingested events carry client-chosen event times, in no particular order.
//! Each instance emits watermarks in steps of 100 ms by one of two
//! strategies ([`Watermarks`], Flink's `WatermarkStrategy`):
//! - from the data: the largest event time it emitted less
//!   `max_out_of_orderness` (bounded out-of-orderness). An instance that
//!   has emitted no event for `watermark_idle_timeout` is idle: it follows
//!   the largest watermark any instance of the source emitted, so a quiet
//!   shard or connection does not hold windows open. When every instance
//!   is quiet the watermark stays where it is.
//! - from the wall clock: `now - max_out_of_orderness`, as time passes.
//!
//! An event older than the watermark is late for windows downstream, which
//! count it as late. Dead letters do not move the watermark.

mod body_events;
mod budget;
mod config;
mod dedup;
pub mod event;
pub mod http;
pub mod json_events;
pub mod latency;
pub mod limits;
mod listener;
mod metrics;
mod queue;
mod record;
pub mod rows;
mod socket;
pub mod syslog;
pub mod tcp;
pub mod tls;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;

use std::os::fd::FromRawFd;

use weir_runtime::{Emitter, IntakeLog, OperatorError, ShardContext, Source, SourcePoll};

use crate::limits::MESH_MAX_BATCHES;
use crate::sources::ingest::event::IngestEvent;
use budget::ReadBudget;
pub use config::{
    HttpSourceConfig, IngestConfig, Kind, OtlpSourceConfig, SyslogSourceConfig, TcpSourceConfig,
};
use dedup::DedupTable;
use limits::ListenerLimits;
use listener::{Handoff, Slot, Slots};
use metrics::IngestMetrics;
pub(crate) use queue::{
    enqueue, Forwarded, IngestQueue, PendingReply, Queued, Refused, Reply, Settled,
};
use record::DataHeader;
pub(crate) use record::DATA_HEADER_LEN;

/// Watermarks are emitted in steps of this many milliseconds.
pub const WATERMARK_STEP_MS: u64 = 100;

/// Settings shared by the `http` and `tcp` sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOptions {
    /// Where every shard listens (`SO_REUSEPORT`).
    pub listen: std::net::SocketAddr,
    /// Events queued for the source, per shard, before requests are
    /// refused with 429 / `Overloaded`.
    pub queue_events: usize,
    /// How long a batch id is remembered.
    pub dedup_window_ms: u64,
    /// Batch ids remembered per shard at most.
    pub dedup_max_ids: usize,
    /// How watermarks are made.
    pub watermarks: Watermarks,
    /// How far the watermark trails the largest event time (or the wall
    /// clock).
    pub max_out_of_orderness_ms: u64,
    /// How long an instance goes without events before it stops holding
    /// the data watermark back.
    pub watermark_idle_timeout_ms: u64,
    /// What a refused request is told to wait, in milliseconds.
    pub retry_after_ms: u64,
    /// Connection cap, timeouts and read budget.
    pub limits: ListenerLimits,
    /// TLS on the listener (`tls = { cert, key, client_ca }`).
    pub tls: Option<tls::Tls>,
}

impl IngestOptions {
    /// Defaults for a source listening on `listen`.
    pub fn new(listen: std::net::SocketAddr) -> IngestOptions {
        IngestOptions {
            listen,
            queue_events: 65_536,
            dedup_window_ms: 600_000,
            dedup_max_ids: 100_000,
            watermarks: Watermarks::WallClock,
            max_out_of_orderness_ms: 2_000,
            watermark_idle_timeout_ms: 10_000,
            retry_after_ms: 1_000,
            limits: ListenerLimits::default(),
            tls: None,
        }
    }
}

pub use latency::unix_ns;

/// Where an ingest source's watermarks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watermarks {
    /// The largest event time emitted, less the out-of-orderness; idle
    /// instances follow the others.
    Data,
    /// The wall clock, less the out-of-orderness.
    WallClock,
}

/// How a batch's events are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Encoding {
    /// An rkyv archive of `Vec<WireEvent>` (the `tcp` protocol).
    Wire = 0,
    /// Newline-delimited JSON objects.
    Ndjson = 1,
    /// One JSON array of objects.
    JsonArray = 2,
    /// syslog messages (`syslog::for_each_message`).
    Syslog = 3,
}

impl Encoding {
    fn from_u8(byte: u8) -> Option<Encoding> {
        Some(match byte {
            0 => Encoding::Wire,
            1 => Encoding::Ndjson,
            2 => Encoding::JsonArray,
            3 => Encoding::Syslog,
            _ => return None,
        })
    }
}

/// One event's fields, borrowed from a validated batch.
pub(crate) struct EventRef<'a> {
    pub(crate) key: &'a str,
    pub(crate) ts_ms: Option<u64>,
    pub(crate) sent_ns: u64,
    pub(crate) body: &'a str,
    /// Why the event is a dead letter (`format = "json"` only).
    pub(crate) error: Option<&'a str>,
}

/// Whether a payload was checked in this process already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// By [`tcp::validate`] or [`http::parse_events`], and not changed since.
    Yes,
    /// It comes from the log: check it again.
    No,
}

/// Calls `each` for every event of a batch accepted at `accepted_ns`;
/// `json` is the `http` source's `format = "json"` (`None`: the weir
/// format). A syslog message's key is its peer's address.
pub(crate) fn for_each_event(
    encoding: Encoding,
    payload: &Payload,
    checked: Checked,
    index: &[body_events::Indexed],
    json: Option<&json_events::JsonFormat>,
    accepted_ns: u64,
    mut each: impl FnMut(EventRef<'_>),
) -> Result<(), String> {
    match encoding {
        Encoding::Syslog => syslog::for_each_message(payload, |peer, text| {
            let parsed = syslog::parse(text, accepted_ns / 1_000_000);
            each(EventRef {
                key: &peer.to_string(),
                ts_ms: parsed.ts_ms.and_then(|ms| u64::try_from(ms).ok()),
                sent_ns: 0,
                body: text,
                error: None,
            })
        }),
        Encoding::Wire => tcp::for_each_event(payload, checked, &mut each),
        Encoding::Ndjson | Encoding::JsonArray => {
            let index = (checked == Checked::Yes && !index.is_empty()).then_some(index);
            http::for_each_event(encoding, payload, index, json, &mut each)
        }
    }
}

/// Batches with an id, on their way to their owner instance; one bounded
/// channel per instance, shared by the instances of one source.
pub struct Mesh {
    senders: Vec<crossbeam::channel::Sender<Forwarded>>,
    receivers: Vec<Inbox<Forwarded>>,
    /// Accepted connections on their way to the shard that serves them.
    handoff: Vec<crossbeam::channel::Sender<Handoff>>,
    handoff_receivers: Vec<Inbox<Handoff>>,
    /// Connections accepted by every instance: connection `n` is served by
    /// instance `n % instances`.
    accepted: std::sync::atomic::AtomicU64,
    /// The connections each instance serves, against its cap.
    slots: std::sync::Arc<Slots>,
    /// The bytes of bodies and payloads the source's connections hold.
    budget: std::sync::Arc<ReadBudget>,
    /// The largest watermark any instance emitted: what an idle instance
    /// follows.
    watermark: std::sync::atomic::AtomicU64,
}

impl Mesh {
    /// A mesh for `instances` instances of a source with `limits` (the
    /// connection cap of each instance, the read budget of them all).
    pub fn new(instances: usize, limits: &ListenerLimits) -> Mesh {
        let (senders, receivers) = channels(instances);
        let (handoff, handoff_receivers) = channels(instances);
        Mesh {
            senders,
            receivers,
            handoff,
            handoff_receivers,
            accepted: std::sync::atomic::AtomicU64::new(0),
            slots: Slots::new(instances, limits.connections_max),
            budget: ReadBudget::new(limits.read_budget_bytes),
            watermark: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn owner(&self, batch_id: u64) -> usize {
        (batch_id % self.senders.len() as u64) as usize
    }
}

/// A receiver each instance takes once, at construction.
type Inbox<T> = std::sync::Mutex<Option<crossbeam::channel::Receiver<T>>>;

/// One bounded channel per instance: the senders, and the receivers each
/// instance takes once.
fn channels<T>(instances: usize) -> (Vec<crossbeam::channel::Sender<T>>, Vec<Inbox<T>>) {
    (0..instances)
        .map(|_| {
            let (sender, receiver) = crossbeam::channel::bounded(MESH_MAX_BATCHES);
            (sender, std::sync::Mutex::new(Some(receiver)))
        })
        .unzip()
}

/// Takes an instance's receiver out of `inboxes` (once; `None` after).
fn take_inbox<T>(inboxes: &[Inbox<T>], instance: usize) -> Option<crossbeam::channel::Receiver<T>> {
    inboxes
        .get(instance)?
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .take()
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("instances", &self.senders.len())
            .finish()
    }
}

/// A batch's bytes, aligned for reading rkyv archives in place.
pub(crate) type Payload = rkyv::util::AlignedVec<16>;

/// Starts serving an accepted connection on the current shard; the slot
/// is held until the connection ends.
pub(crate) type ServeFn = Rc<dyn Fn(glommio::net::TcpStream, Slot)>;

/// The tasks of a source instance: its accept loop and its connections.
/// They end with the source: when it is dropped, every one is cancelled,
/// which closes the listening socket and every connection (a connection
/// left open would hold a client waiting for an answer that never comes,
/// and a listener left open would take connections meant for the next
/// run).
#[derive(Default)]
pub(crate) struct Tasks {
    next: Cell<u64>,
    connections: RefCell<HashMap<u64, glommio::task::JoinHandle<()>>>,
    accept: RefCell<Option<glommio::task::JoinHandle<()>>>,
}

impl Tasks {
    /// Spawns a connection's task on this shard.
    pub(crate) fn spawn_connection(
        self: &Rc<Self>,
        connection: impl Future<Output = ()> + 'static,
    ) {
        let id = self.next.get();
        self.next.set(id + 1);
        let tasks = self.clone();
        let handle = glommio::spawn_local(async move {
            connection.await;
            tasks.connections.borrow_mut().remove(&id);
        })
        .detach();
        self.connections.borrow_mut().insert(id, handle);
    }

    fn cancel_all(&self) {
        if let Some(accept) = self.accept.borrow_mut().take() {
            accept.cancel();
        }
        for (_, connection) in self.connections.borrow_mut().drain() {
            connection.cancel();
        }
    }
}

/// Which protocol a source instance serves.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// The native binary protocol.
    Tcp(tcp::TcpOptions),
    /// HTTP `POST` of NDJSON or a JSON array.
    Http(http::HttpOptions),
    /// syslog over TCP or UDP.
    Syslog(syslog::SyslogOptions),
}

impl Protocol {
    /// The largest body (HTTP) or frame payload (TCP) accepted.
    pub fn request_bytes_max(&self) -> usize {
        match self {
            Protocol::Tcp(tcp) => tcp.max_frame_bytes as usize,
            Protocol::Http(http) => http.body_limit_bytes,
            Protocol::Syslog(syslog) => syslog.max_message_bytes,
        }
    }

    /// The protocol with its request limit lowered to `bytes` if above.
    fn at_most(self, bytes: usize) -> Protocol {
        match self {
            Protocol::Tcp(mut tcp) => {
                let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
                tcp.max_frame_bytes = tcp.max_frame_bytes.min(bytes);
                Protocol::Tcp(tcp)
            }
            Protocol::Http(mut http) => {
                http.body_limit_bytes = http.body_limit_bytes.min(bytes);
                http.record_limit_bytes = bytes;
                Protocol::Http(http)
            }
            Protocol::Syslog(mut syslog) => {
                syslog.max_message_bytes = syslog.max_message_bytes.min(bytes);
                Protocol::Syslog(syslog)
            }
        }
    }
}

/// The `http` or `tcp` source: one instance per shard.
pub struct IngestSource {
    protocol: Protocol,
    options: IngestOptions,
    context: ShardContext,
    queue: Rc<IngestQueue>,
    /// Batches other shards' connections hand this instance (their ids
    /// are its to deduplicate).
    inbox: Option<crossbeam::channel::Receiver<Forwarded>>,
    tasks: Rc<Tasks>,
    /// Starts serving a connection on this shard (set once listening).
    serve: Option<ServeFn>,
    /// Connections other shards accepted and handed to this one.
    handed: Option<crossbeam::channel::Receiver<Handoff>>,
    intake: IntakeLog,
    listening: bool,
    dedup: DedupTable,
    /// Events this instance emitted, over all runs (ids derive from it).
    emitted: u64,
    /// Accepted batches whose epoch has not committed yet: (epoch, accept
    /// time, events), for `weir_ingest_to_committed_seconds`.
    uncommitted: VecDeque<(u64, u64, usize)>,
    watermark: u64,
    /// The largest event time emitted in this run (data watermarks).
    max_event_ms: Option<u64>,
    /// When this instance last emitted an event, or started (ns).
    active_ns: u64,
    scratch: IngestEvent,
}

impl std::fmt::Debug for IngestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestSource")
            .field("protocol", &self.protocol)
            .field("listen", &self.options.listen)
            .field("emitted", &self.emitted)
            .finish()
    }
}

impl IngestSource {
    /// The instance for `context`'s shard; `mesh` is shared by every
    /// instance of the source (made with `Mesh::new(context.instances,
    /// &options.limits)`). A body or frame limit above what one log record
    /// holds ([`limits::payload_bytes_max`]) is lowered to it (config
    /// validation refuses such a limit).
    pub fn new(
        protocol: Protocol,
        options: IngestOptions,
        context: &ShardContext,
        mesh: std::sync::Arc<Mesh>,
    ) -> IngestSource {
        let protocol = protocol.at_most(limits::payload_bytes_max(&context.node));
        let inbox = take_inbox(&mesh.receivers, context.instance);
        let handed = take_inbox(&mesh.handoff_receivers, context.instance);
        let queue = Rc::new(IngestQueue {
            batches: RefCell::default(),
            events: Cell::new(0),
            limit: options.queue_events.max(1),
            open: Cell::new(false),
            instance: context.instance,
            mesh,
            metrics: IngestMetrics::new(context),
            intake: RefCell::new(None),
        });
        IngestSource {
            protocol,
            options,
            context: context.clone(),
            queue,
            inbox,
            tasks: Rc::default(),
            serve: None,
            handed,
            intake: IntakeLog::disabled(),
            listening: false,
            dedup: DedupTable::default(),
            emitted: 0,
            uncommitted: VecDeque::new(),
            watermark: 0,
            max_event_ms: None,
            active_ns: unix_ns(),
            scratch: IngestEvent::default(),
        }
    }

    fn start_listening(&mut self) -> Result<(), OperatorError> {
        if let Protocol::Syslog(options) = &self.protocol {
            if options.mode == syslog::SyslogMode::Udp {
                return self.start_udp(options.clone());
            }
        }
        let listener = glommio::net::TcpListener::bind(self.options.listen).map_err(|error| {
            OperatorError::io(format!(
                "source `{}` (shard {}): cannot listen on {}: {error}",
                self.context.node, self.context.shard, self.options.listen
            ))
        })?;
        let (queue, tasks) = (self.queue.clone(), self.tasks.clone());
        let serve = match &self.protocol {
            Protocol::Tcp(tcp) => tcp::serve_on(queue, tasks, tcp.clone(), &self.options),
            Protocol::Http(http) => http::serve_on(queue, tasks, http.clone(), &self.options),
            Protocol::Syslog(syslog) => {
                syslog::serve_on(queue, tasks, syslog.clone(), &self.options)
            }
        };
        self.serve = Some(serve.clone());
        let accept = listener::accept_loop(listener, self.queue.clone(), serve);
        let accept = glommio::spawn_local(accept).detach();
        *self.tasks.accept.borrow_mut() = Some(accept);
        self.queue.open.set(true);
        self.listening = true;
        Ok(())
    }

    /// Binds this shard's UDP socket (`SO_REUSEPORT`: the kernel spreads
    /// senders over the shards) and receives on it until the source ends.
    fn start_udp(&mut self, options: syslog::SyslogOptions) -> Result<(), OperatorError> {
        let socket = glommio::net::UdpSocket::bind(self.options.listen).map_err(|error| {
            OperatorError::io(format!(
                "source `{}` (shard {}): cannot listen on udp {}: {error}",
                self.context.node, self.context.shard, self.options.listen
            ))
        })?;
        let receive = syslog::receive_udp(socket, self.queue.clone(), options);
        let receive = glommio::spawn_local(receive).detach();
        *self.tasks.accept.borrow_mut() = Some(receive);
        self.queue.open.set(true);
        self.listening = true;
        Ok(())
    }

    /// Records the latency of the batches whose epoch committed.
    fn observe_commits(&mut self, now_ns: u64) {
        let Some(&(oldest, ..)) = self.uncommitted.front() else {
            return;
        };
        let committed = self.intake.committed_epoch();
        if oldest > committed {
            return;
        }
        while let Some(&(epoch, accepted_ns, events)) = self.uncommitted.front() {
            if epoch > committed {
                break;
            }
            self.uncommitted.pop_front();
            let latency = now_ns.saturating_sub(accepted_ns);
            self.queue
                .metrics
                .to_committed
                .observe_ns_times(latency, events as u64);
        }
    }

    /// Emits the events of one batch.
    fn emit(
        &mut self,
        header: &DataHeader,
        payload: &Payload,
        checked: Checked,
        index: &[body_events::Indexed],
        out: &mut Emitter<IngestEvent>,
    ) -> Result<(), String> {
        let accepted_ns = header.accepted_ns;
        if let Some(id) = header.batch_id {
            let expires = accepted_ns / 1_000_000 + self.options.dedup_window_ms;
            self.dedup.insert(id, expires);
        }
        let (instances, instance) = (self.context.instances as u64, self.context.instance as u64);
        let json = match &self.protocol {
            Protocol::Http(http) => http.json.as_deref(),
            Protocol::Tcp(_) | Protocol::Syslog(_) => None,
        };
        let scratch = &mut self.scratch;
        let emitted = &mut self.emitted;
        let max_event_ms = &mut self.max_event_ms;
        for_each_event(
            header.encoding,
            payload,
            checked,
            index,
            json,
            accepted_ns,
            |event| {
                scratch.id = *emitted * instances + instance;
                *emitted += 1;
                scratch.key.clear();
                scratch.key.push_str(event.key);
                scratch.ts_ms = event.ts_ms.unwrap_or(accepted_ns / 1_000_000);
                scratch.sent_ns = event.sent_ns;
                scratch.ingest_ns = accepted_ns;
                scratch.body.clear();
                scratch.body.push_str(event.body);
                scratch.error.clear();
                match event.error {
                    Some(error) => scratch.error.push_str(error),
                    None => *max_event_ms = Some(max_event_ms.unwrap_or(0).max(scratch.ts_ms)),
                }
                out.push(scratch);
            },
        )?;
        self.active_ns = unix_ns();
        Ok(())
    }

    /// The watermark this instance may emit now, if any.
    fn watermark_now(&self, now_ns: u64) -> Option<u64> {
        let delay = self.options.max_out_of_orderness_ms;
        let now_ms = now_ns / 1_000_000;
        let mark = match self.options.watermarks {
            Watermarks::WallClock => now_ms.saturating_sub(delay),
            Watermarks::Data => {
                let idle_ns = self.options.watermark_idle_timeout_ms * 1_000_000;
                if now_ns.saturating_sub(self.active_ns) >= idle_ns {
                    // Idle: follow the others.
                    let shared = &self.queue.mesh.watermark;
                    shared.load(std::sync::atomic::Ordering::Acquire)
                } else {
                    self.max_event_ms?.saturating_sub(delay)
                }
            }
        };
        Some(mark / WATERMARK_STEP_MS * WATERMARK_STEP_MS)
    }

    /// Logs and emits one queued batch, and tells its connection.
    fn take(&mut self, batch: Queued, now_ns: u64, out: &mut Emitter<IngestEvent>) {
        self.queue
            .metrics
            .queue_wait
            .observe_ns(now_ns.saturating_sub(batch.queued_ns));
        if let Some(id) = batch.batch_id {
            if self.dedup.contains(id) {
                batch.reply.fill(Reply::Duplicate {
                    ticket: self.intake.durable_so_far(),
                });
                return;
            }
        }
        let header = DataHeader {
            encoding: batch.encoding,
            batch_id: batch.batch_id,
            accepted_ns: now_ns,
        };
        let logged = self
            .intake
            .append_vectored(&[&header.encode(), &batch.payload]);
        let reply = match logged {
            Ok(ticket) => match self.emit(&header, &batch.payload, Checked::Yes, &batch.index, out)
            {
                Ok(()) => {
                    let metrics = &self.queue.metrics;
                    metrics.events.add(batch.events as u64);
                    metrics.bytes.add(batch.payload.len() as u64);
                    if self.intake.is_durable() {
                        let epoch = self.intake.current_epoch();
                        self.uncommitted.push_back((epoch, now_ns, batch.events));
                    }
                    Reply::Accepted {
                        events: batch.events,
                        ticket,
                    }
                }
                Err(error) => Reply::Failed(error),
            },
            Err(error) => Reply::Failed(error.to_string()),
        };
        batch.reply.fill(reply);
    }
}

impl Drop for IngestSource {
    fn drop(&mut self) {
        self.queue.open.set(false);
        self.tasks.cancel_all();
    }
}

impl Source for IngestSource {
    type Output = IngestEvent;

    fn attach(&mut self, intake: IntakeLog) {
        *self.queue.intake.borrow_mut() = Some(intake.clone());
        self.intake = intake;
    }

    fn poll(&mut self, out: &mut Emitter<IngestEvent>) -> SourcePoll {
        if !self.listening {
            if let Err(error) = self.start_listening() {
                out.fail(error);
                return SourcePoll::Exhausted;
            }
        }
        if let (Some(handed), Some(serve)) = (&self.handed, &self.serve) {
            while let Ok(Handoff { fd, slot }) = handed.try_recv() {
                // SAFETY: `fd` is an open, owned socket (a duplicate of an
                // accepted connection's); the stream takes it over.
                let stream = unsafe {
                    glommio::net::TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd))
                };
                serve(stream, slot);
            }
        }
        let open = self.queue.mesh.slots.open(self.queue.instance);
        self.queue.metrics.connections_open.set(open as i64);
        let now_ns = unix_ns();
        let now_ms = now_ns / 1_000_000;
        self.dedup.expire(now_ms, self.options.dedup_max_ids);
        if let Some(watermark) = self.watermark_now(now_ns) {
            if watermark > self.watermark {
                self.watermark = watermark;
                out.watermark(watermark);
                let shared = &self.queue.mesh.watermark;
                shared.fetch_max(watermark, std::sync::atomic::Ordering::AcqRel);
            }
        }
        self.observe_commits(now_ns);
        let (mut events, mut logged) = (0, false);
        while events < out.batch_records_max() {
            let Some(batch) = self.queue.pop(self.inbox.as_ref()) else {
                break;
            };
            events += batch.events;
            logged = true;
            self.take(batch, now_ns, out);
        }
        if logged {
            self.intake.flush();
            SourcePoll::Ready
        } else {
            SourcePoll::Idle
        }
    }

    fn position(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(20 + self.dedup.order.len() * 16);
        bytes.extend_from_slice(&self.emitted.to_le_bytes());
        bytes.extend_from_slice(&self.watermark.to_le_bytes());
        bytes.extend_from_slice(&(self.dedup.order.len() as u32).to_le_bytes());
        for &(id, expires) in &self.dedup.order {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&expires.to_le_bytes());
        }
        bytes
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let bad = || {
            OperatorError::invalid(format!(
                "source `{}`: logged position of {} bytes is not an ingest position",
                self.context.node,
                position.len()
            ))
        };
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                position.get(at..at + 8)?.try_into().ok()?,
            ))
        };
        let emitted = u64_at(0).ok_or_else(bad)?;
        let watermark = u64_at(8).ok_or_else(bad)?;
        let count = position
            .get(16..20)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(bad)?;
        if position.len() != 20 + count * 16 {
            return Err(bad());
        }
        let mut dedup = DedupTable::default();
        for index in 0..count {
            let at = 20 + index * 16;
            dedup.insert(u64_at(at).ok_or_else(bad)?, u64_at(at + 8).ok_or_else(bad)?);
        }
        self.emitted = emitted;
        self.watermark = watermark;
        self.dedup = dedup;
        Ok(())
    }

    fn replay(&mut self, data: &[u8], out: &mut Emitter<IngestEvent>) -> Result<(), OperatorError> {
        DataHeader::decode(data)
            .and_then(|(header, payload)| {
                let mut aligned = Payload::with_capacity(payload.len());
                aligned.extend_from_slice(payload);
                self.emit(&header, &aligned, Checked::No, &[], out)
            })
            .map_err(|error| {
                OperatorError::invalid(format!(
                    "source `{}`: replaying a logged batch: {error}",
                    self.context.node
                ))
            })
    }
}

/// FNV-1a, 64 bits: a stable hash of client batch ids (they are kept in
/// logged positions, so the hash must not change between builds).
pub fn batch_id_hash(id: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in id {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
