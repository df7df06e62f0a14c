//! The options of a run ([`Args`]), and the parsers of durations and rates
//! that other commands of weir share. The `weir loadgen` command line that
//! holds them is in `command.rs`.
//!
//! Parsing only checks each option alone; what options mean together (a
//! mode, a target) is checked when a run starts (`config.rs`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use crate::event::Profile;

/// What the events of an HTTP body look like.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpBody {
    /// weir's own: `key`, `ts`, `sent_ns`, then the profile's fields.
    Weir,
    /// A log shipper's: `timestamp` (RFC 3339), then the profile's fields.
    Shipper,
    /// An OTLP/HTTP log export (protobuf `ExportLogsServiceRequest`, for
    /// the `otlp` source): one record per event, its body the profile's
    /// JSON line, its `key` an attribute, its time when it is sent.
    Otlp,
}
use crate::limits::{BACKLOG_FRAMES_DEFAULT, CONNECTIONS_MAX};

/// Options of a load generator run.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen")]
pub struct Args {
    /// Where to send: `tcp://HOST:PORT` (native protocol) or
    /// `http://HOST:PORT/PATH` (HTTP ingest; PATH defaults to `/events`).
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// The kind of events.
    #[arg(long, value_enum, default_value_t = Profile::Access)]
    pub profile: Profile,
    /// Bytes per event on the wire (key + body; over HTTP the whole JSON
    /// line), reached by padding or truncating the body.
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Seed of the event generator: the same seed sends the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events per second over all connections (open-loop mode); accepts
    /// `k` and `M` suffixes (`50k`, `1.5M`).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Connections.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=CONNECTIONS_MAX))]
    pub connections: u64,
    /// Events per frame (tcp) or request (http).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Closed-loop mode: send as fast as acks allow, keeping `--inflight`
    /// batches outstanding per connection, to find saturation throughput.
    #[arg(long)]
    pub max: bool,
    /// Batches outstanding per connection in `--max` mode (default 4 for
    /// tcp, 1 for http; http supports only 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub inflight: Option<u64>,
    /// How long to measure (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring; excluded from histograms and
    /// totals.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long to wait for outstanding acks after the last send.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// What HTTP bodies hold: `weir` (`key`, `ts`, `sent_ns` first: the
    /// `http` source's `format = "weir"`) or `shipper` (a log shipper's
    /// event: an RFC 3339 `timestamp` first, as Vector sends it, for
    /// `format = "json"`).
    #[arg(long, value_enum, default_value_t = HttpBody::Weir)]
    pub http_body: HttpBody,
    /// Send HTTP bodies gzip-compressed (`Content-Encoding: gzip`). Bodies
    /// are compressed once, before the run: their times are those of the
    /// start, not patched per send.
    #[arg(long)]
    pub gzip: bool,
    /// Ask the server to deduplicate batches (tcp `FLAG_DEDUP`, http
    /// `Weir-Batch-Id`).
    #[arg(long)]
    pub dedup: bool,
    /// Bearer token for HTTP ingest.
    #[arg(long)]
    pub token: Option<String>,
    /// Speak TLS to a `tcp` target, trusting the PEM certificates in this
    /// file (the server's name is the target's host).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Most unacked frames per tcp connection; a batch due while this many
    /// are outstanding is skipped and counted as `backlogged`.
    #[arg(long, default_value_t = BACKLOG_FRAMES_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_backlog: u64,
    /// Write the latency percentile distribution (`.hgrm`, milliseconds)
    /// here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (one histogram per second,
    /// microseconds) here.
    #[arg(long)]
    pub interval_log: Option<PathBuf>,
    /// Write an SVG latency-by-percentile plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress lines or diagnostics on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (try 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "ns" => number / 1e9,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (try s, ms, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("bad duration {text:?}: {error}"))
}

/// Parses an events/s rate: `5000`, `50k`, `1.5M`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, factor) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'm' | 'M')) => (&text[..i], 1e6),
        _ => (text, 1.0),
    };
    let rate = number
        .parse::<f64>()
        .map_err(|_| format!("bad rate {text:?} (try 5000, 50k, 1.5M)"))?
        * factor;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("the rate must be positive, not {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_rates() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_rate("50k"), Ok(50_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let args = Args::try_parse_from([
            "loadgen",
            "--target",
            "tcp://127.0.0.1:1",
            "--rate",
            "10k",
            "--duration",
            "3s",
            "--profile",
            "flow",
        ])
        .unwrap();
        assert_eq!(args.rate, Some(10_000.0));
        assert_eq!(args.duration, Duration::from_secs(3));
        assert_eq!(args.profile, Profile::Flow);
        assert_eq!(args.max_backlog, BACKLOG_FRAMES_DEFAULT);
        assert!(Args::try_parse_from(["loadgen", "--rate", "1"]).is_err());
        let too_many = (CONNECTIONS_MAX + 1).to_string();
        let connections = [
            "loadgen",
            "--target",
            "tcp://h:1",
            "--connections",
            &too_many,
        ];
        assert!(Args::try_parse_from(connections).is_err());
    }
}
