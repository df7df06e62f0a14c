//! Goal: the `http` source takes events the way log shippers send them
//! (issue 21): Vector's `http` sink (a JSON array, RFC 3339 `timestamp`,
//! gzip) and Fluent Bit's `http` output (`json_lines`, a `date` of epoch
//! seconds with a fraction), as `curl` posts them; one bad line is a dead
//! letter, not a refused batch; a batch replayed from a shipper's buffer
//! ten minutes late lands in its own windows (data watermarks), and an
//! idle shard or connection does not hold windows open beyond
//! `watermark_idle_timeout`; a SIGKILL loses nothing acknowledged.
//!
//! Method: the `weir` binary runs pipeline files as child processes; the
//! bodies are posted with `curl` (compressed with the `gzip` and `zstd`
//! tools), and the committed NDJSON files are read back.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    assert_each_once, curl_events as curl, free_port, kill_kill_stop, now_ms, post_until_accepted,
    published_lines, published_rows, rfc3339, scratch, wait_for, wait_listening, Weir,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const MINUTE_MS: u64 = 60_000;

/// `body` through `tool -c` (`gzip` or `zstd`).
fn compress(tool: &str, body: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(["-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{tool}: {error} (scripts/install-build-deps.sh)"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write");
    let output = child.wait_with_output().expect(tool);
    assert!(output.status.success(), "{tool} failed");
    output.stdout
}

const SCHEMA: &str =
    r#"{ level = "string", service = "string", status = "int", message = "string" }"#;

/// One source per shipper, each into its own per-minute window, and the
/// dead letters of both into a file.
fn shippers_pipeline(vector: u16, fluent: u16, out: &Path) -> String {
    let source = |name: &str, port: u16, time: &str| {
        format!(
            r#"
[sources.{name}]
type = "http"
listen = "127.0.0.1:{port}"
key_field = "service"
timestamp_field = "{time}"
schema = {SCHEMA}
max_out_of_orderness = "1s"
watermark_idle_timeout = "1s"

[processors.{name}_minutes]
type = "window"
inputs = ["{name}"]
size = "1m"
group_by = ["service", "level"]
aggregates = ["count"]

[sinks.{name}_counts]
type = "file"
inputs = ["{name}_minutes"]
path = "{counts}"
format = "ndjson"
roll_interval = "0s"

[sinks.{name}_late]
type = "file"
inputs = ["{name}_minutes.late"]
path = "{late}"
format = "ndjson"
roll_interval = "0s"
"#,
            counts = out.join(format!("{name}_counts")).display(),
            late = out.join(format!("{name}_late")).display(),
        )
    };
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50
{vector}
{fluent}
[sinks.dead]
type = "file"
inputs = ["vector.dead_letter", "fluent.dead_letter"]
path = "{dead}"
format = "ndjson"
roll_interval = "0s"
"#,
        vector = source("vector", vector, "timestamp"),
        fluent = source("fluent", fluent, "date"),
        dead = out.join("dead").display(),
    )
}

/// An event as Vector's `http` sink encodes it (`encoding.codec = "json"`).
fn vector_event(ms: u64, service: &str, level: &str, status: u16) -> String {
    format!(
        r#"{{"timestamp":"{}","message":"GET /cart {status}","level":"{level}","service":"{service}","status":{status},"host":"web-1","source_type":"file"}}"#,
        rfc3339(ms)
    )
}

/// An event as Fluent Bit's `http` output encodes it (`format json_lines`,
/// `json_date_key date`, `json_date_format double`).
fn fluent_event(ms: u64, service: &str, level: &str, status: u16) -> String {
    format!(
        r#"{{"date":{}.{:03},"log":"GET /cart {status}","level":"{level}","service":"{service}","status":"{status}","kubernetes":{{"pod_name":"web-1"}}}}"#,
        ms / 1000,
        ms % 1000
    )
}

/// The committed `(window_start, service, level) -> count` rows of `dir`.
fn counts(dir: &Path) -> BTreeMap<(String, String, String), i64> {
    let mut counts = BTreeMap::new();
    for row in published_rows(dir) {
        let text = |field: &str| row[field].as_str().unwrap_or_default().to_owned();
        let key = (text("window_start"), text("service"), text("level"));
        let count = row["count"].as_i64().expect("count");
        assert!(
            counts.insert(key.clone(), count).is_none(),
            "window {key:?} published twice"
        );
    }
    counts
}

/// Vector and Fluent Bit batches, plain and compressed, ten minutes old,
/// land in their own windows with exact counts; the bad line is the one
/// dead letter; nothing is late.
#[test]
fn shipper_batches_ten_minutes_late_land_in_their_windows() {
    let root = scratch();
    let (vector_port, fluent_port) = (free_port(), free_port());
    let vector: SocketAddr = ([127, 0, 0, 1], vector_port).into();
    let fluent: SocketAddr = ([127, 0, 0, 1], fluent_port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, shippers_pipeline(vector_port, fluent_port, &out)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(vector, Duration::from_secs(10));
    wait_listening(fluent, Duration::from_secs(10));

    // A shipper's buffer from ten minutes ago: two minutes of events.
    let t0 = (now_ms() - 10 * MINUTE_MS) / MINUTE_MS * MINUTE_MS;
    let minute = |n: u64| rfc3339(t0 + n * MINUTE_MS);

    // Vector: a JSON array, plain, then gzip.
    let first: Vec<String> = (0..6)
        .map(|i| {
            let level = if i < 4 { "error" } else { "info" };
            vector_event(t0 + 1_000 * i, "checkout", level, 502)
        })
        .collect();
    let body = format!("[{}]", first.join(","));
    let (status, response) = curl(vector, body.as_bytes(), &["Content-Type: application/json"]);
    assert_eq!(
        (status, response.as_str()),
        (200, r#"{"accepted":6,"dead_letter":0}"#)
    );
    let second: Vec<String> = (0..5)
        .map(|i| vector_event(t0 + MINUTE_MS + 500 * i, "search", "warn", 404))
        .collect();
    let body = compress("gzip", format!("[{}]", second.join(",")).as_bytes());
    let headers = ["Content-Type: application/json", "Content-Encoding: gzip"];
    let (status, response) = curl(vector, &body, &headers);
    assert_eq!(
        (status, response.as_str()),
        (200, r#"{"accepted":5,"dead_letter":0}"#)
    );

    // Fluent Bit: json_lines with one line that does not decode, then zstd.
    let mut lines: Vec<String> = (0..4)
        .map(|i| fluent_event(t0 + 2_000 * i, "checkout", "error", 500))
        .collect();
    let bad = r#"{"date":"yesterday","level":"error","service":"checkout"}"#;
    lines.insert(2, bad.to_owned());
    let body = lines.join("\n") + "\n";
    let (status, response) = curl(fluent, body.as_bytes(), &["Content-Type: application/json"]);
    assert_eq!(
        (status, response.as_str()),
        (200, r#"{"accepted":4,"dead_letter":1}"#)
    );
    let lines: Vec<String> = (0..3)
        .map(|i| fluent_event(t0 + MINUTE_MS + 100 * i, "search", "info", 200))
        .collect();
    let body = compress("zstd", (lines.join("\n") + "\n").as_bytes());
    let headers = [
        "Content-Type: application/x-ndjson",
        "Content-Encoding: zstd",
    ];
    let (status, response) = curl(fluent, &body, &headers);
    assert_eq!(
        (status, response.as_str()),
        (200, r#"{"accepted":3,"dead_letter":0}"#)
    );

    // Current events move the watermark past every old window (a shard
    // whose last batch was older goes idle and follows the other).
    let now = vector_event(now_ms(), "checkout", "info", 200);
    assert_eq!(curl(vector, now.as_bytes(), &[]).0, 200);
    let now = fluent_event(now_ms(), "checkout", "info", 200);
    assert_eq!(curl(fluent, now.as_bytes(), &[]).0, 200);
    wait_for("the old windows", Duration::from_secs(30), || {
        counts(&out.join("vector_counts")).len() == 3
            && counts(&out.join("fluent_counts")).len() == 2
    });
    // Longer than an idle timeout and a few epochs: nothing else fires.
    std::thread::sleep(Duration::from_millis(1_500));
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");

    let key = |n: u64, service: &str, level: &str| (minute(n), service.into(), level.into());
    assert_eq!(
        counts(&out.join("vector_counts")),
        BTreeMap::from([
            (key(0, "checkout", "error"), 4),
            (key(0, "checkout", "info"), 2),
            (key(1, "search", "warn"), 5),
        ])
    );
    assert_eq!(
        counts(&out.join("fluent_counts")),
        BTreeMap::from([
            (key(0, "checkout", "error"), 4),
            (key(1, "search", "info"), 3),
        ])
    );
    for late in ["vector_late", "fluent_late"] {
        assert!(published_lines(&out.join(late)).is_empty(), "{late}");
    }
    let dead = published_rows(&out.join("dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["body"], bad);
    assert_eq!(
        dead[0]["error"],
        "timestamp field `date`: \"yesterday\" is not an RFC 3339 time"
    );
}

/// What a shipper cannot send is answered with a status it understands,
/// and a refused body adds nothing.
#[test]
fn bodies_that_cannot_be_read_are_refused_with_the_reason() {
    let root = scratch();
    let (port, other) = (free_port(), free_port());
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, shippers_pipeline(port, other, &out)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let (status, response) = curl(addr, b"[{\"a\":1},", &[]);
    assert_eq!(status, 400, "{response}");
    assert!(
        response.contains("not a JSON array of events"),
        "{response}"
    );
    let (status, response) = curl(addr, b"not gzip", &["Content-Encoding: gzip"]);
    assert_eq!(status, 400, "{response}");
    assert!(
        response.contains("gzip body does not decompress"),
        "{response}"
    );
    let (status, response) = curl(addr, b"{}", &["Content-Encoding: br"]);
    assert_eq!(status, 415, "{response}");
    assert!(response.contains("content encoding `br`"), "{response}");
    // A body that inflates past the limit (10 MiB) is refused, not read.
    let bomb = compress("gzip", &vec![b' '; 11 << 20]);
    let (status, response) = curl(addr, &bomb, &["Content-Encoding: gzip"]);
    assert_eq!(status, 413, "{response}");
    // Not JSON at all, line by line: dead letters, accepted.
    let (status, response) = curl(addr, b"hello\n\xff\xfe\n", &[]);
    assert_eq!(
        (status, response.as_str()),
        (200, r#"{"accepted":0,"dead_letter":2}"#)
    );
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    let mut reasons: Vec<String> = published_rows(&out.join("dead"))
        .iter()
        .map(|row| row["error"].as_str().expect("error").to_owned())
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0], "expected a JSON object");
    assert!(reasons[1].starts_with("not UTF-8"), "{reasons:?}");
}

/// One connection keeps sending current events; the other shard gets
/// nothing and an idle connection stays open. Windows still fire, within
/// the idle timeout of the quiet shard's last event.
#[test]
fn an_idle_shard_and_connection_do_not_hold_windows_open() {
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"
timestamp_field = "ts"
timestamp_format = "unix_ms"
max_out_of_orderness = "200ms"
watermark_idle_timeout = "2s"

[processors.per_second]
type = "window"
inputs = ["events"]
size = "1s"
aggregates = ["count"]

[sinks.counts]
type = "file"
inputs = ["per_second"]
path = "{counts}"
format = "ndjson"
roll_interval = "0s"
"#,
        counts = out.join("counts").display()
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    // An idle connection, open for the whole test.
    let _idle = std::net::TcpStream::connect(addr).expect("connect");
    // One keep-alive connection: every batch reaches the same shard.
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let mut first_fired = None;
    while started.elapsed() < Duration::from_secs(8) {
        let body = format!("{{\"ts\":{}}}\n", now_ms());
        write!(
            stream,
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut response = [0u8; 512];
        // A signal to the test process can interrupt the read (seen once in
        // CI): read again.
        let read = loop {
            match std::io::Read::read(&mut stream, &mut response) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read.expect("answer"),
            }
        };
        assert!(response[..read].starts_with(b"HTTP/1.1 200"));
        if first_fired.is_none() && !published_lines(&out.join("counts")).is_empty() {
            first_fired = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without idleness no window would ever fire: the quiet shard's
    // watermark never moves. (How soon one fires is for benchmarks.)
    let fired = first_fired.expect("no window fired in 8 s: the quiet shard held them");
    eprintln!("the first window fired {fired:?} after the first event");
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
}

/// A client posts batches with batch ids, retrying each until it is
/// acknowledged; weir is killed with SIGKILL twice and stopped with
/// SIGTERM once, restarted each time. Every event of every batch is
/// committed exactly once.
#[test]
fn kills_and_a_stop_lose_nothing_acknowledged() {
    const BATCHES: u64 = 120;
    const EVENTS: u64 = 20;
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 20

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"
timestamp_field = "timestamp"
schema = {{ batch = "int", seq = "int", message = "string" }}

[sinks.rows]
type = "file"
inputs = ["events"]
path = "{rows}"
format = "ndjson"
"#,
        rows = out.join("rows").display()
    );
    std::fs::write(&config, pipeline).expect("config");
    let data = root.path().join("data");
    let weir = Weir::start(&config, &data, &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let client = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            for batch in 0..BATCHES {
                let body: String = (0..EVENTS)
                    .map(|seq| {
                        format!(
                            "{{\"timestamp\":\"{}\",\"batch\":{batch},\"seq\":{seq},\"message\":\"m\"}}\n",
                            rfc3339(now_ms())
                        )
                    })
                    .collect();
                let response =
                    post_until_accepted(addr, body.as_bytes(), &format!("shipper-{batch}"));
                assert!(
                    response == format!("{{\"accepted\":{EVENTS},\"dead_letter\":0}}")
                        || response.contains("\"duplicate\":true"),
                    "{response}"
                );
                acked.store(batch + 1, std::sync::atomic::Ordering::Release);
            }
        })
    };
    kill_kill_stop(weir, &config, &data, &acked, BATCHES, client);

    let rows = published_rows(&out.join("rows"));
    let indices = rows.iter().map(|row| {
        let batch = row["batch"].as_u64().expect("batch");
        let seq = row["seq"].as_u64().expect("seq");
        (batch * EVENTS + seq) as usize
    });
    assert_each_once(indices, (BATCHES * EVENTS) as usize, "events");
}
