//! A rate-limiting HTTP service with weir embedded: the host (a hyper 1.x
//! server on tokio) owns the process, weir runs a small pipeline on a few
//! shards beside it, and request handlers talk to the pipeline through a
//! [`weir::Handle`].
//!
//! ```text
//! cargo run --release --example embedded_rate_limiter -- --listen 127.0.0.1:8080 --limit 100 --window 10s
//! curl 'http://127.0.0.1:8080/check?client=42'        # 200 "allow 1"
//! curl -H 'X-Client-Id: 42' http://127.0.0.1:8080/check   # the same client, by header
//! curl 'http://127.0.0.1:8080/count?client=42'        # 200 "count 2" (a query; pushes nothing)
//! ```
//!
//! # The pipeline
//!
//! `requests` (an input keyed by client id) → `per_client` (a rolling
//! window: per client, the requests of the last `--window`, in 10 slices)
//! → `updates` (a subscription to the window's [`weir::RollingUpdate`]s).
//!
//! # One request
//!
//! `GET /check?client=<u64>` (or `GET /check` with an `X-Client-Id: <u64>`
//! header; the query parameter wins when both are given) pushes one event
//! for the client and answers `200 allow <count>` when the client's count
//! in the window, this request included, is at most `--limit`, else
//! `429 deny <count>`. A missing or malformed client gets `400` naming the
//! parameter. `GET /count?client=<u64>` answers the client's current count
//! from queryable state (`weir::At::time(client, now)`) without pushing.
//!
//! # Why the decision does not come from a query right after the push
//!
//! A push goes into the owning shard's *input* queue; the shard's source
//! takes it from there in its next poll, and the window counts it when
//! that batch reaches it. A query goes into the same shard's *query* queue
//! and is answered by another task between two of the window's batches.
//! The two queues are independent, so a query sent right after a push can
//! be answered before the window saw the push: it would miss the request
//! it is deciding about (a probe on one shard: 17 508 of 20 000 queries
//! sent right after their push did not see it). Re-asking until the count grows does not fix it
//! either: with concurrent requests of one client the count may grow
//! because of *another* request, and the window slides meanwhile.
//!
//! So the service takes the decision from the window's own output: for
//! every event, the window emits a `RollingUpdate` with the key's count
//! *including that event*, in the order the shard applied them. Each
//! request waits for its own update:
//!
//! - before pushing, the handler appends a waiter (a oneshot sender) to
//!   its client's FIFO, and pushes while holding that FIFO's lock, so the
//!   FIFO's order is the order of the client's events in the input queue;
//! - a callback ([`weir::Handle::on_output`]) runs on the shard for every
//!   update and completes the client's oldest waiter.
//!
//! One client's events stay in order from the input queue to the callback
//! (one queue per shard, forward edges), so the n-th update of a client
//! answers its n-th waiter: exactly the first `--limit` requests of a
//! window are allowed, however many run at once. Queries remain the way to
//! *read* the state (`/count`), where overtaking a push in flight is fine.
//!
//! An event whose time is a whole window older than the newest the shard
//! saw (only if the wall clock steps back by a window) is not counted and
//! emits no update; its request gets `503` after [`DECISION_TIMEOUT`], and
//! the next update of that client skips the abandoned waiter.
//!
//! # Threads
//!
//! The runtime is built with `pin(false)`: the tokio workers share the
//! machine's cores with the shards, and a shard pinned to a core would
//! fight a tokio worker for it rather than let the kernel balance them.
//! `low_latency` makes an idle shard spin briefly before it parks, so a
//! push from a tokio worker is picked up within microseconds.
//!
//! # Shutdown
//!
//! The library installs no signal handler: the host decides. Here SIGINT
//! or SIGTERM stops accepting connections, lets requests in flight finish
//! (at most 5 s), then shuts the pipeline down (`Service::shutdown` drains
//! what was pushed) and prints the run report.
//!
//! `--no-weir` serves the same HTTP interface without weir (every check is
//! `200 allow 0`): the baseline for what embedding weir costs a request
//! (see `bench/src/bin/embed_service.rs`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

/// How long a request waits for the window's decision before it gets 503.
const DECISION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Waiter FIFOs are kept in this many locked maps, by client id.
const STRIPES: usize = 64;

#[derive(Debug, Parser)]
#[command(about = "An HTTP rate limiter with weir embedded")]
struct Args {
    /// Address to listen on (port 0 picks a free port; the first line on
    /// stdout says which: `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Requests a client may make per window.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// The window's length (10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = weir_loadgen::parse_duration)]
    window: Duration,
    /// Slices the window moves by.
    #[arg(long, default_value_t = 10)]
    slices: u64,
    /// weir shards (each runs on a thread of its own).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// How long an idle shard spins before it parks, in microseconds.
    #[arg(long, default_value_t = 200)]
    spin_us: u64,
    /// tokio worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Serve the same HTTP interface without weir: every check is
    /// `200 allow 0` (the baseline for measuring what weir costs).
    #[arg(long)]
    no_weir: bool,
}

/// Waiters for the window's decisions: per client, a FIFO of the requests
/// whose events are on their way through the pipeline.
type Fifo = FxHashMap<u64, VecDeque<oneshot::Sender<u64>>>;

struct Waiters {
    stripes: Box<[Mutex<Fifo>]>,
}

impl Waiters {
    fn new() -> Waiters {
        Waiters {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }

    fn stripe(&self, client: u64) -> std::sync::MutexGuard<'_, Fifo> {
        // Client ids may be sequential: spread them.
        let index = (client.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % STRIPES;
        self.stripes[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The window counted an event of `client`, `count` with it: answer
    /// the client's oldest waiter still waiting.
    fn complete(&self, client: u64, count: u64) {
        let mut fifos = self.stripe(client);
        let Some(fifo) = fifos.get_mut(&client) else {
            return;
        };
        // A waiter whose request gave up (its event was never counted)
        // cannot take the answer: skip it.
        while let Some(waiter) = fifo.pop_front() {
            if waiter.send(count).is_ok() {
                break;
            }
        }
        if fifo.is_empty() {
            fifos.remove(&client);
        }
    }
}

/// The weir side of the service.
struct Limiter {
    handle: weir::Handle,
    requests: weir::Input<u64>,
    per_client: weir::Query<weir::At, weir::RollingValue>,
    waiters: Arc<Waiters>,
    limit: u64,
}

/// What a check decided.
enum Decision {
    Allow(u64),
    Deny(u64),
    /// No decision: the pipeline is overloaded or shutting down.
    Unavailable(&'static str),
}

impl Limiter {
    fn start(args: &Args) -> Result<(weir::Service, Limiter)> {
        let runtime = weir::runtime::Runtime::builder()
            .shards(args.shards)
            // The tokio workers share the cores with the shards: let the
            // kernel place both.
            .pin(false)
            .low_latency(Duration::from_micros(args.spin_us))
            .build()
            .context("building the weir runtime")?;
        let mut pipeline = weir::Pipeline::new(runtime);
        // Records are client ids, routed (and keyed) by themselves; event
        // time is the wall clock at the push.
        let requests = pipeline.input("requests", |client: &u64| *client);
        let per_client = pipeline.rolling(
            "per_client",
            &requests,
            weir::Rolling::count(args.window).buckets(args.slices),
        );
        let updates = pipeline.subscription::<weir::RollingUpdate>(
            "updates",
            per_client.name(),
            weir::runtime::Partition::Forward,
        );
        let service = pipeline.start().context("starting the pipeline")?;
        let handle = service.handle();
        let waiters = Arc::new(Waiters::new());
        let decided = waiters.clone();
        // Runs on the shard, for every event the window counted.
        handle.on_output(&updates, move |update| {
            decided.complete(update.key.to_native(), update.count.to_native());
        });
        let limiter = Limiter {
            handle,
            requests,
            per_client,
            waiters,
            limit: args.limit,
        };
        Ok((service, limiter))
    }

    /// Counts one request of `client` and decides it.
    async fn check(&self, client: u64) -> Decision {
        let (decided, decision) = oneshot::channel();
        {
            let mut fifos = self.waiters.stripe(client);
            let fifo = fifos.entry(client).or_default();
            fifo.push_back(decided);
            // Pushed under the lock: the FIFO's order is the queue's.
            if let Err(error) = self.handle.try_push(&self.requests, client) {
                fifo.pop_back();
                if fifo.is_empty() {
                    fifos.remove(&client);
                }
                return Decision::Unavailable(match error {
                    weir::PushError::Full(_) => "overloaded: the pipeline's input queue is full",
                    weir::PushError::Closed(_) => "shutting down",
                });
            }
        }
        match tokio::time::timeout(DECISION_TIMEOUT, decision).await {
            Ok(Ok(count)) if count <= self.limit => Decision::Allow(count),
            Ok(Ok(count)) => Decision::Deny(count),
            Ok(Err(_)) => Decision::Unavailable("shutting down"),
            Err(_) => Decision::Unavailable("no decision in time"),
        }
    }

    /// The client's count in the window now, from queryable state.
    async fn count(&self, client: u64) -> Result<u64, weir::QueryError> {
        let now_ms = weir::unix_ns() / 1_000_000;
        let value = self
            .handle
            .query_async(&self.per_client, weir::At::time(client, now_ms))
            .await?;
        Ok(value.count)
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The client a request names: `?client=<u64>`, else an `X-Client-Id`
/// header.
fn client_of(request: &Request<Incoming>) -> Result<u64, String> {
    let from_query = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("client="))
    });
    let (text, source) = match from_query {
        Some(text) => (text, "query parameter `client`"),
        None => match request.headers().get("x-client-id") {
            Some(value) => (
                value
                    .to_str()
                    .map_err(|_| "header `X-Client-Id` is not text".to_string())?,
                "header `X-Client-Id`",
            ),
            None => {
                return Err(
                    "missing client: pass query parameter `client` (?client=<u64>) \
                     or header `X-Client-Id`"
                        .into(),
                )
            }
        },
    };
    text.trim()
        .parse()
        .map_err(|_| format!("bad {source} {text:?}: expected an unsigned 64-bit integer"))
}

async fn serve(
    limiter: Option<Arc<Limiter>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path != "/check" && path != "/count" {
        return Ok(text(
            StatusCode::NOT_FOUND,
            "not found: GET /check?client=<u64> or /count?client=<u64>\n".into(),
        ));
    }
    if request.method() != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served\n".into(),
        ));
    }
    let client = match client_of(&request) {
        Ok(client) => client,
        Err(message) => return Ok(text(StatusCode::BAD_REQUEST, message + "\n")),
    };
    let Some(limiter) = limiter else {
        // The baseline: the same service without weir.
        return Ok(text(StatusCode::OK, "allow 0\n".into()));
    };
    if path == "/count" {
        return Ok(match limiter.count(client).await {
            Ok(count) => text(StatusCode::OK, format!("count {count}\n")),
            Err(error) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
        });
    }
    Ok(match limiter.check(client).await {
        Decision::Allow(count) => text(StatusCode::OK, format!("allow {count}\n")),
        Decision::Deny(count) => text(StatusCode::TOO_MANY_REQUESTS, format!("deny {count}\n")),
        Decision::Unavailable(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("listening for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

async fn run(args: &Args, limiter: Option<Arc<Limiter>>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let graceful = GracefulShutdown::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving.
                        eprintln!("accept: {error}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let limiter = limiter.clone();
                let connection = hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |request| serve(limiter.clone(), request)),
                );
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that goes away mid-request is not our error.
                    let _ = connection.await;
                });
            }
            stopped = &mut signal => {
                stopped?;
                break;
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("some connections were still busy after {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.limit > 0, "--limit must be at least 1");
    anyhow::ensure!(
        args.window >= Duration::from_millis(1),
        "--window must be at least 1ms"
    );
    let (service, limiter) = if args.no_weir {
        (None, None)
    } else {
        let (service, limiter) = Limiter::start(&args)?;
        (Some(service), Some(Arc::new(limiter)))
    };
    let mut tokio = tokio::runtime::Builder::new_multi_thread();
    tokio.enable_all();
    if let Some(workers) = args.workers {
        tokio.worker_threads(workers.max(1));
    }
    let tokio = tokio.build().context("building the tokio runtime")?;
    let served = tokio.block_on(run(&args, limiter));
    drop(tokio);
    if let Some(service) = service {
        let report = service.shutdown().context("shutting the pipeline down")?;
        println!(
            "shut down: weir ran {:.3} s, {} batch buffers allocated, at most {} alive",
            report.elapsed.as_secs_f64(),
            report.buffer_allocations,
            report.buffers_peak
        );
    } else {
        println!("shut down (no weir)");
    }
    served
}
