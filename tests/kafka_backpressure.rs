//! Goal: a slow sink downstream of a `kafka` source slows the source down
//! instead of filling memory (issue 18): the consumer threads pause their
//! partitions when the shard does not take their records, resident memory
//! stays under a stated bound, and nothing is lost.
//!
//! Method: 1 M events (about 80 MB of JSON) in a 6-partition topic; `weir
//! run` (2 shards, `bounded`) copies them to a `stdout` sink, whose writes
//! block the shard while the pipe is full. The test reads the pipe slowly
//! (`READ_BYTES` every `READ_PAUSE`, about 6 MB/s, so the run takes about
//! 20 s instead of about 2) and samples the process's `VmRSS` every 100 ms.
//! The peak must stay under `RSS_BOUND_MB`, far below the topic's size;
//! after the run every event must have been printed exactly once (no
//! crash: the at-least-once `stdout` sink prints each once).

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::kafka;
use support::{scratch, Weir};

const EVENTS: u64 = 1_000_000;
/// The bound on the peak resident memory, in MiB. Measured on the 2-core
/// test machine: a peak of 70 MiB with this throttled reader, against
/// 95 MiB of output (what librdkafka may prefetch,
/// `KAFKA_PREFETCH_KIB` = 16 MiB per consumer, and the channels of at most
/// 8 chunks of 1 MiB per instance, are in it).
const RSS_BOUND_MB: u64 = 128;
const READ_BYTES: usize = 64 * 1024;
const READ_PAUSE: Duration = Duration::from_millis(10);

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

#[test]
fn a_slow_sink_pauses_the_kafka_source_and_memory_stays_bounded() {
    let bootstrap = kafka::bootstrap();
    let run = kafka::unique("weir-slow");
    let topic = format!("{run}-in");
    kafka::create_topic(&bootstrap, &topic, 6);
    kafka::produce_events(&bootstrap, &topic, EVENTS);

    let dir = scratch();
    let config = dir.path().join("slow.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
shards = 2

[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topics = ["{topic}"]
format = "raw"
start = "earliest"
bounded = true

[sinks.out]
type = "stdout"
inputs = ["in"]
"#
        ),
    )
    .expect("write the pipeline");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .arg("run")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("WEIR_CRASH_AT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut weir = Weir::spawn(&mut command);
    let pid = weir.child.id();
    let mut stdout = weir.child.stdout.take().expect("stdout");

    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::AcqRel);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    let mut output = Vec::with_capacity(120 << 20);
    let mut buffer = vec![0; READ_BYTES];
    loop {
        let read = stdout.read(&mut buffer).expect("read weir's stdout");
        if read == 0 {
            break;
        }
        output.extend_from_slice(&buffer[..read]);
        std::thread::sleep(READ_PAUSE);
    }
    let took = started.elapsed();
    let (status, log) = weir.exit_within(Duration::from_secs(60));
    done.store(true, Ordering::Release);
    sampler.join().expect("sampler");
    assert!(status.success(), "weir failed ({status}):\n{log}");
    let peak_mb = peak.load(Ordering::Acquire) / 1024;
    eprintln!(
        "{} MB read in {:.1} s; peak VmRSS {peak_mb} MiB (bound {RSS_BOUND_MB} MiB)",
        output.len() >> 20,
        took.as_secs_f64()
    );
    // Each row is a line {"message": "<the event's JSON>"}; weir's own
    // closing line (`weir: finished ...`) follows them.
    let text = String::from_utf8(output).expect("UTF-8 output");
    let events: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
            row["message"].as_str().expect("message").to_owned()
        })
        .collect();
    kafka::check_ids_once(&events, EVENTS, "stdout");
    assert!(
        peak_mb < RSS_BOUND_MB,
        "peak VmRSS {peak_mb} MiB is over the bound of {RSS_BOUND_MB} MiB"
    );
}
