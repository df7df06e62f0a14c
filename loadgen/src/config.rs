//! What every connection of a run shares, derived once from the command
//! line: [`ConnConfig`], with the send [`Mode`] and the target's
//! [`Transport`], and the schedule and batch ids computed from it.
//!
//! # Checks
//! [`ConnConfig::from_args`] refuses what the options mean together: a
//! target that is neither `tcp://HOST:PORT` nor `http://HOST:PORT[/PATH]`,
//! a run with neither `--rate` nor `--max`, `--inflight` without `--max`
//! or above 1 over HTTP, and a zero `--duration`.
//!
//! # Batch ids
//! A batch id is a deduplication key on the server, so ids differ across
//! connections and runs: from the high bits down, [`NONCE_BITS`] of a
//! per-run nonce, [`CONN_BITS`] of connection and [`SEQ_BITS`] of the
//! batch's sequence number on its connection (which wraps after 2^36
//! batches, far more than a run sends).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use crate::cli::{Args, HttpBody};
use crate::event::{Profile, Rng};
use crate::limits::{CONNECTIONS_MAX, TCP_INFLIGHT_BATCHES_DEFAULT};
use crate::stats;

/// Bits of a batch id holding its sequence number on its connection.
pub(crate) const SEQ_BITS: u32 = 36;
/// Bits of a batch id holding its connection.
pub(crate) const CONN_BITS: u32 = 12;
/// Bits of a batch id holding the run's nonce.
pub(crate) const NONCE_BITS: u32 = 16;

const _: () = assert!(NONCE_BITS + CONN_BITS + SEQ_BITS == u64::BITS);
// Every connection a run may open has its own ids.
const _: () = assert!(CONNECTIONS_MAX <= 1 << CONN_BITS);

/// How a connection sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// On the fixed schedule, at this many events per second in all.
    Open { rate: f64 },
    /// Closed loop, this many batches outstanding.
    Max { inflight: usize },
}

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Http,
}

/// What every connection needs to know.
#[derive(Debug)]
pub(crate) struct ConnConfig {
    /// `HOST:PORT`.
    pub addr: String,
    /// The HTTP request path.
    pub path: String,
    pub mode: Mode,
    pub batch: usize,
    pub connections: u64,
    pub profile: Profile,
    pub seed: u64,
    pub keys: u64,
    pub record_bytes: usize,
    pub dedup: bool,
    pub token: Option<String>,
    pub max_backlog: usize,
    /// What HTTP bodies hold.
    pub http_body: HttpBody,
    /// HTTP bodies are gzip-compressed.
    pub gzip: bool,
    /// TLS to a `tcp` target (`--tls-ca`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// High bits of every batch id, different for every run.
    pub nonce: u64,
    /// The end of the schedule, from the start.
    pub end: Duration,
    pub verbose: bool,
}

impl ConnConfig {
    /// Checks what `args` mean together (see the module documentation) and
    /// derives every connection's settings from them, with a fresh nonce;
    /// also returns the target's transport.
    pub(crate) fn from_args(args: &Args, target: &str) -> Result<(Transport, ConnConfig)> {
        let (transport, addr, path) = parse_target(target)?;
        let mode = mode(args, transport)?;
        if args.duration.is_zero() {
            bail!("--duration must be positive");
        }
        if transport == Transport::Tcp && (args.gzip || args.http_body != HttpBody::Weir) {
            bail!("--gzip and --http-body apply to http targets only");
        }
        if transport == Transport::Http && args.tls_ca.is_some() {
            bail!("--tls-ca applies to tcp targets only");
        }
        let tls = match &args.tls_ca {
            Some(ca) => Some(crate::tls::client_config(ca)?),
            None => None,
        };
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
        let nonce = Rng::new(unix_now ^ (u64::from(std::process::id()) << 40)).next_u64()
            & ((1 << NONCE_BITS) - 1);
        let config = ConnConfig {
            addr,
            path,
            mode,
            batch: args.batch as usize,
            connections: args.connections,
            profile: args.profile,
            seed: args.seed,
            keys: args.keys,
            record_bytes: args.record_bytes,
            dedup: args.dedup,
            token: args.token.clone(),
            http_body: args.http_body,
            gzip: args.gzip,
            tls,
            max_backlog: args.max_backlog as usize,
            nonce,
            end: args.warmup + args.duration,
            verbose: !args.quiet,
        };
        Ok((transport, config))
    }

    /// When batch `seq` of connection `conn` is due, from the start; `None`
    /// past the end of the run (and always `None` in closed-loop mode).
    pub(crate) fn due(&self, conn: usize, seq: u64) -> Option<Duration> {
        let Mode::Open { rate } = self.mode else {
            return None;
        };
        let slot = seq as f64 * self.connections as f64 + conn as f64;
        let ns = slot * self.batch as f64 * 1e9 / rate;
        let due = Duration::from_nanos(ns as u64);
        (due < self.end).then_some(due)
    }

    /// Counts every batch of connection `conn` from `seq` on that was due
    /// but is not sent, because the run's time is over (an open-loop run
    /// behind its schedule stops at the end, never later): `unsent`.
    pub(crate) fn skip_rest(&self, shared: &stats::Shared, conn: usize, mut seq: u64) {
        while let Some(offset) = self.due(conn, seq) {
            shared.error(shared.start + offset, "unsent");
            seq += 1;
        }
    }

    /// Batch ids: a per-run nonce, the connection and the sequence number,
    /// so that ids differ across connections and runs (they are dedup keys).
    pub(crate) fn batch_id(&self, conn: usize, seq: u64) -> u64 {
        let conn = conn as u64 & ((1 << CONN_BITS) - 1);
        (self.nonce << (SEQ_BITS + CONN_BITS)) | (conn << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
    }

    /// The event generator seed of a connection.
    pub(crate) fn conn_seed(&self, conn: usize) -> u64 {
        self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (conn as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)
    }
}

/// The send mode `args` ask for: open loop at `--rate`, or closed loop
/// (`--max`) with `--inflight` batches outstanding.
fn mode(args: &Args, transport: Transport) -> Result<Mode> {
    if args.max {
        let inflight = args.inflight.unwrap_or(if transport == Transport::Tcp {
            TCP_INFLIGHT_BATCHES_DEFAULT
        } else {
            1
        });
        if transport == Transport::Http && inflight != 1 {
            bail!("http sends one request at a time per connection: use --connections, not --inflight");
        }
        return Ok(Mode::Max {
            inflight: inflight as usize,
        });
    }
    let Some(rate) = args.rate else {
        bail!("give --rate EVENTS_PER_SECOND, or --max for a closed-loop run");
    };
    if args.inflight.is_some() {
        bail!("--inflight applies to --max runs only");
    }
    Ok(Mode::Open { rate })
}

/// Parses `tcp://HOST:PORT` or `http://HOST:PORT[/PATH]`.
fn parse_target(target: &str) -> Result<(Transport, String, String)> {
    if let Some(rest) = target.strip_prefix("tcp://") {
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            bail!("bad target {target:?}: expected tcp://HOST:PORT");
        }
        Ok((Transport::Tcp, addr.to_string(), String::new()))
    } else if let Some(rest) = target.strip_prefix("http://") {
        let (addr, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/events"),
        };
        if addr.is_empty() {
            bail!("bad target {target:?}: expected http://HOST:PORT/PATH");
        }
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:80")
        };
        Ok((Transport::Http, addr, path.to_string()))
    } else {
        bail!("bad target {target:?}: expected tcp://HOST:PORT or http://HOST:PORT/PATH")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn parses_targets() {
        let (transport, addr, path) = parse_target("http://localhost:8080/events").unwrap();
        assert_eq!(
            (transport, addr.as_str(), path.as_str()),
            (Transport::Http, "localhost:8080", "/events")
        );
        let (transport, addr, _) = parse_target("tcp://127.0.0.1:7000").unwrap();
        assert_eq!(
            (transport, addr.as_str()),
            (Transport::Tcp, "127.0.0.1:7000")
        );
        assert!(parse_target("udp://x:1").is_err());
    }

    #[test]
    fn options_are_checked_together() {
        let parse = |extra: &[&str]| {
            let mut line = vec!["loadgen", "--target", "http://h:1"];
            line.extend_from_slice(extra);
            let args = Args::try_parse_from(line).unwrap();
            ConnConfig::from_args(&args, args.target.as_deref().unwrap())
        };
        assert!(parse(&[]).is_err(), "neither --rate nor --max");
        assert!(parse(&["--rate", "1k", "--inflight", "2"]).is_err());
        assert!(parse(&["--max", "--inflight", "2"]).is_err(), "http");
        assert!(parse(&["--rate", "1k", "--duration", "0s"]).is_err());
        let (transport, config) = parse(&["--max"]).unwrap();
        assert_eq!(transport, Transport::Http);
        assert!(matches!(config.mode, Mode::Max { inflight: 1 }));
        assert!(config.nonce < 1 << NONCE_BITS);
    }

    #[test]
    fn the_schedule_is_fixed_and_staggered() {
        let config = ConnConfig {
            addr: String::new(),
            path: String::new(),
            mode: Mode::Open { rate: 1000.0 },
            batch: 10,
            connections: 2,
            profile: Profile::Access,
            seed: 1,
            keys: 1,
            record_bytes: 100,
            dedup: false,
            token: None,
            max_backlog: 1,
            http_body: HttpBody::Weir,
            gzip: false,
            tls: None,
            nonce: 0xabc,
            end: Duration::from_secs(1),
            verbose: false,
        };
        // 2 connections x 10 events per batch at 1000/s: each connection
        // every 20 ms, connection 1 offset by 10 ms.
        assert_eq!(config.due(0, 0), Some(Duration::ZERO));
        assert_eq!(config.due(1, 0), Some(Duration::from_millis(10)));
        assert_eq!(config.due(0, 3), Some(Duration::from_millis(60)));
        assert_eq!(config.due(1, 49), Some(Duration::from_millis(990)));
        assert_eq!(config.due(0, 50), None);
        assert_ne!(config.batch_id(0, 1), config.batch_id(1, 1));
        assert_eq!(config.batch_id(1, 1) >> (SEQ_BITS + CONN_BITS), 0xabc);
    }
}
