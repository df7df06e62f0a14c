//! weir's load generator: sends synthetic events to a weir ingest source
//! over the native `tcp` protocol or HTTP and measures how long each event
//! takes to be acknowledged as durable.
//!
//! # Open-loop schedule
//! By default the generator runs *open loop*, like wrk2: the send schedule
//! is fixed before the run starts and does not depend on how fast the
//! server answers. With `--rate R` events/s over `C` connections in batches
//! of `B` events, batch `i` of connection `c` is due at
//!
//! ```text
//! start + (i * C + c) * B / R
//! ```
//!
//! that is every `B * C / R` seconds per connection, the connections
//! staggered evenly within that period. The writer readies the batch ahead
//! of time (every connection encodes a pool of batches before the run
//! starts and only patches each one's send time, batch id and checksum
//! when it is due: see `pool.rs`), sleeps until shortly before it is due,
//! spins the last ~50 µs,
//! and sends it whether or not earlier batches were acknowledged (over TCP
//! frames are pipelined; a separate reader thread takes the acks).
//!
//! # Coordinated omission
//! A closed-loop client that waits for each answer before sending the next
//! request stops sending exactly when the server stalls, so the requests
//! that *would* have waited through the stall are never sent, and the
//! latency histogram looks far better than what users of the system would
//! see: the client has "coordinated" with the server to omit the bad
//! samples. To avoid that, every event carries `sent_ns`, its batch's
//! *intended* send time from the schedule, and its latency is measured as
//! ack receipt time − intended send time, never from when the write
//! actually happened. A batch that is sent late because the client fell
//! behind (an HTTP connection still waiting for its previous response, say)
//! is charged for the time it spent waiting. Each batch's latency is
//! recorded once per event it holds. Latencies are recorded in
//! microseconds in an [`hdrhistogram::Histogram`] with 3 significant
//! digits.
//!
//! # Closed loop
//! `--max` runs closed loop instead, to find the saturation throughput:
//! each connection keeps `--inflight` batches outstanding and sends the
//! next one as soon as one is acknowledged; latency runs from the actual
//! send. Overloaded answers are retried after the server's retry delay.
//!
//! # Outputs
//! A progress line per second on stderr, a summary ([`Summary`], printed as
//! a table), and optionally the percentile distribution in HdrHistogram's
//! `.hgrm` format ([`write_hgrm`]), an HdrHistogram V2 interval log with one
//! histogram per second, and an SVG latency-by-percentile plot
//! ([`plot_svg`]); `weir loadgen plot` overlays several `.hgrm` files.
//!
//! # Layout
//! The command line is in `cli.rs`, what the connections share and how it
//! follows from the options in `config.rs`, the run itself (connections,
//! progress) in `run.rs` and its outcome in `summary.rs`. The connections
//! speak `tcp.rs` (the native protocol, `weir-protocol`) or `http.rs`,
//! sending batches encoded ahead in `pool.rs` from the events of
//! `event.rs`, and record into `stats.rs`. Every limit is in `limits.rs`.

mod cli;
mod command;
mod config;
mod event;
mod hgrm;
mod http;
pub mod limits;
mod plot;
mod pool;
mod run;
mod stats;
mod summary;
mod tcp;
mod tls;

pub use cli::{parse_duration, parse_rate, Args};
pub use command::{cli_main, plot_files, Cli, CliCommand};
pub use event::Profile;
pub use hdrhistogram;
pub use hgrm::{read_hgrm, write_hgrm, TICKS_PER_HALF_DISTANCE};
pub use plot::plot_svg;
pub use run::{begin_interval_log, run};
pub use summary::{quantile_points, Summary};
