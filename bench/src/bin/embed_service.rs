//! What embedding weir costs a latency-critical service: request latency of
//! `examples/embedded_rate_limiter.rs` with weir (every request pushes an
//! event and waits for the rolling window's count) and without
//! (`--no-weir`: the same hyper service answering `allow 0`), side by side.
//!
//! Each round starts the example once per mode (the order alternates by
//! round), drives it with the same open-loop load (a fixed request rate
//! spread over keep-alive connections; a request's latency runs from its
//! intended send time, so a stalled server is not excused by sending less),
//! and stops it with SIGTERM. Reported: per mode the median over rounds of
//! p50/p99/p99.9 and their ratios (weir / without), as a table and a JSON
//! line.
//!
//! ```text
//! cargo build --release --example embedded_rate_limiter
//! cargo run --release -p weir-bench --bin embed_service -- --rate 20k --rounds 5 --duration 10s
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;

#[derive(Debug, Parser)]
#[command(about = "Request latency of the embedded rate limiter, with and without weir")]
struct Args {
    /// The example's binary (default: examples/embedded_rate_limiter next
    /// to this binary).
    #[arg(long)]
    example: Option<PathBuf>,
    /// Requests per second, over all connections (20000, 20k).
    #[arg(long, default_value = "20k", value_parser = weir_loadgen::parse_rate)]
    rate: f64,
    /// Keep-alive connections, one client thread each.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured time per mode and round.
    #[arg(long, default_value = "10s", value_parser = weir_loadgen::parse_duration)]
    duration: Duration,
    /// Unmeasured load before each measurement.
    #[arg(long, default_value = "2s", value_parser = weir_loadgen::parse_duration)]
    warmup: Duration,
    /// Rounds (each measures both modes).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Distinct client ids the requests name (uniformly, deterministic;
    /// at 20k req/s, 1000 clients make 200 requests per client and 10 s
    /// window, so about half are denied with the default limit).
    #[arg(long, default_value_t = 1_000)]
    clients: u64,
    /// The example's --limit.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// The example's --window.
    #[arg(long, default_value = "10s")]
    window: String,
    /// The example's --shards.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// The example's --workers (tokio threads; default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// The example's --spin-us.
    #[arg(long)]
    spin_us: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Without,
    With,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Without => "no-weir",
            Mode::With => "weir",
        }
    }
}

/// One measurement of one mode.
#[derive(Debug, Clone)]
struct Measured {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Responses per second in the measured time.
    achieved: f64,
    allowed: u64,
    denied: u64,
    errors: u64,
}

fn example_path(args: &Args) -> Result<PathBuf> {
    if let Some(path) = &args.example {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("this binary has no directory")?
        .join("examples/embedded_rate_limiter");
    ensure!(
        path.exists(),
        "{} is missing: run `cargo build --release --example embedded_rate_limiter` \
         (or pass --example PATH)",
        path.display()
    );
    Ok(path)
}

/// A running example, stopped with SIGTERM (killed if that fails).
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(path: &PathBuf, args: &Args, mode: Mode) -> Result<Server> {
        let mut command = Command::new(path);
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(["--limit", &args.limit.to_string()])
            .args(["--window", &args.window])
            .args(["--shards", &args.shards.to_string()])
            .stdout(Stdio::piped());
        if let Some(workers) = args.workers {
            command.args(["--workers", &workers.to_string()]);
        }
        if let Some(spin) = args.spin_us {
            command.args(["--spin-us", &spin.to_string()]);
        }
        if mode == Mode::Without {
            command.arg("--no-weir");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("no stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the example printed {line:?}, not `listening on ADDR`");
        };
        Ok(Server {
            addr: addr.to_string(),
            child,
        })
    }

    fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: signals a child this process started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let mut rest = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            stdout.read_to_string(&mut rest)?;
        }
        let status = self.child.wait()?;
        ensure!(status.success(), "the example exited with {status}: {rest}");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one connection measured.
struct Counts {
    latency_ns: Histogram<u64>,
    responses: u64,
    allowed: u64,
    denied: u64,
    errors: u64,
}

/// Reads one response; returns its status.
fn read_response(reader: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<u16> {
    line.clear();
    reader.read_line(line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = [0u8; 256];
    let mut left = length;
    while left > 0 {
        let take = left.min(body.len());
        let n = reader.read(&mut body[..take])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(status)
}

/// Sleeps until `due` (no spinning: on a small machine the client threads
/// must not take the server's cores; the same for both modes).
fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// One open-loop connection: request `seq` is due at
/// `start + (seq * connections + conn) / rate`; measured when due after
/// `measure_from`.
fn connection(
    addr: &str,
    conn: usize,
    args: &Args,
    start: Instant,
    measure_from: Instant,
) -> Result<Counts> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut counts = Counts {
        latency_ns: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?,
        responses: 0,
        allowed: 0,
        denied: 0,
        errors: 0,
    };
    let end = measure_from + args.duration;
    let interval = 1e9 / args.rate;
    let mut line = String::new();
    let mut request = Vec::with_capacity(128);
    // A deterministic client sequence per connection.
    let mut state =
        0x9e37_79b9_7f4a_7c15u64 ^ (conn as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03);
    for seq in 0u64.. {
        let slot = seq as f64 * args.connections as f64 + conn as f64;
        let intended = start + Duration::from_nanos((slot * interval) as u64);
        if intended >= end {
            break;
        }
        sleep_until(intended);
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let client = state % args.clients;
        request.clear();
        write!(
            request,
            "GET /check?client={client} HTTP/1.1\r\nHost: bench\r\n\r\n"
        )?;
        writer.write_all(&request)?;
        let status = read_response(&mut reader, &mut line)?;
        let done = Instant::now();
        if intended >= measure_from {
            let latency = done.saturating_duration_since(intended).as_nanos() as u64;
            counts.latency_ns.saturating_record(latency.max(1_000));
            counts.responses += 1;
            match status {
                200 => counts.allowed += 1,
                429 => counts.denied += 1,
                _ => counts.errors += 1,
            }
        }
    }
    Ok(counts)
}

fn measure(path: &PathBuf, args: &Arc<Args>, mode: Mode) -> Result<Measured> {
    let server = Server::start(path, args, mode)?;
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + args.warmup;
    let threads: Vec<_> = (0..args.connections)
        .map(|conn| {
            let (addr, args) = (server.addr.clone(), args.clone());
            std::thread::spawn(move || connection(&addr, conn, &args, start, measure_from))
        })
        .collect();
    let mut total = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let (mut responses, mut allowed, mut denied, mut errors) = (0, 0, 0, 0);
    for thread in threads {
        let counts = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        total.add(&counts.latency_ns)?;
        responses += counts.responses;
        allowed += counts.allowed;
        denied += counts.denied;
        errors += counts.errors;
    }
    server.stop()?;
    let us = |q: f64| total.value_at_quantile(q) as f64 / 1e3;
    Ok(Measured {
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: total.max() as f64 / 1e3,
        achieved: responses as f64 / args.duration.as_secs_f64(),
        allowed,
        denied,
        errors,
    })
}

/// A figure's name and how to read it from a measurement.
type Metric = (&'static str, fn(&Measured) -> f64);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(args.clients > 0, "--clients must be at least 1");
    let path = example_path(&args)?;
    let mut results: Vec<(Mode, Measured)> = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Mode::Without, Mode::With]
        } else {
            [Mode::With, Mode::Without]
        };
        for mode in order {
            let m = measure(&path, &args, mode)?;
            eprintln!(
                "round {} {:>7}: p50 {:8.1} us  p99 {:8.1} us  p99.9 {:8.1} us  max {:9.1} us  \
                 {:.0} req/s  allowed {} denied {} errors {}",
                round + 1,
                mode.name(),
                m.p50_us,
                m.p99_us,
                m.p999_us,
                m.max_us,
                m.achieved,
                m.allowed,
                m.denied,
                m.errors
            );
            results.push((mode, m));
        }
    }
    let pick = |mode: Mode, f: fn(&Measured) -> f64| {
        median(
            results
                .iter()
                .filter(|(m, _)| *m == mode)
                .map(|(_, r)| f(r))
                .collect(),
        )
    };
    let metrics: [Metric; 4] = [
        ("p50_us", |m| m.p50_us),
        ("p99_us", |m| m.p99_us),
        ("p999_us", |m| m.p999_us),
        ("achieved_rps", |m| m.achieved),
    ];
    println!(
        "median of {} rounds, {} req/s over {} connections, {:?} each:",
        args.rounds, args.rate, args.connections, args.duration
    );
    println!("{:<14} {:>12} {:>12} {:>8}", "", "no-weir", "weir", "ratio");
    let mut json = Vec::new();
    for (name, f) in metrics {
        let (without, with) = (pick(Mode::Without, f), pick(Mode::With, f));
        println!(
            "{:<14} {:>12.1} {:>12.1} {:>8.2}",
            name,
            without,
            with,
            with / without
        );
        json.push(format!(
            "\"{name}\":{{\"no_weir\":{without:.1},\"weir\":{with:.1},\"ratio\":{:.3}}}",
            with / without
        ));
    }
    let errors: u64 = results.iter().map(|(_, m)| m.errors).sum();
    println!(
        "{{\"bench\":\"embed_service\",\"rate\":{},\"connections\":{},\"duration_s\":{},\
         \"warmup_s\":{},\"rounds\":{},\"clients\":{},\"limit\":{},\"window\":\"{}\",\
         \"shards\":{},\"cores\":{},\"errors\":{errors},{}}}",
        args.rate,
        args.connections,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.rounds,
        args.clients,
        args.limit,
        args.window,
        args.shards,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        json.join(",")
    );
    Ok(())
}
