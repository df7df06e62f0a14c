//! Goal: the `syslog` source takes RFC 5424 and RFC 3164 messages over TCP
//! (octet counting and newline framing) and UDP, as rsyslog and syslog-ng
//! send them, into typed rows and through a window into a file sink; a
//! SIGKILL loses nothing weir read from a TCP connection.
//!
//! Method: the `weir` binary runs pipeline files as child processes;
//! messages are written with std's TCP and UDP sockets, and the committed
//! NDJSON files are read back.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use support::{
    free_port, now_ms, published_lines, published_rows, rfc3339, scratch, wait_for, wait_listening,
    Weir,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a test waits for output it expects.
const WAIT: Duration = Duration::from_secs(30);

fn pipeline(mode: &str, port: u16, out: &Path) -> String {
    format!(
        r#"
[runtime]
shards = 2
epoch_interval_ms = 50

[sources.syslog]
type = "syslog"
mode = "{mode}"
listen = "127.0.0.1:{port}"
watermark = "data"
max_out_of_orderness = "1s"
watermark_idle_timeout = "1s"

[processors.per_minute]
type = "window"
inputs = ["syslog"]
size = "1m"
group_by = ["hostname", "severity"]
aggregates = ["count"]

[sinks.counts]
type = "file"
inputs = ["per_minute"]
path = "{counts}"
roll_interval = "0s"
format = "ndjson"

[sinks.rows]
type = "file"
inputs = ["syslog"]
path = "{rows}"
roll_interval = "0s"
format = "ndjson"
"#,
        counts = out.join("counts").display(),
        rows = out.join("rows").display(),
    )
}

/// `(window_start, hostname, severity) -> count`.
fn counts(dir: &Path) -> BTreeMap<(String, String, String), i64> {
    published_rows(dir)
        .iter()
        .map(|row| {
            let text = |field: &str| row[field].as_str().unwrap_or_default().to_owned();
            (
                (text("window_start"), text("hostname"), text("severity")),
                row["count"].as_i64().expect("count"),
            )
        })
        .collect()
}

/// An RFC 5424 message at `ms`, with structured data.
fn rfc5424(ms: u64, host: &str, severity: u8, text: &str) -> String {
    format!(
        "<{}>1 {} {host} sshd 4242 AUTH [origin@48577 ip=\"10.1.2.3\"] {text}",
        4 * 8 + severity,
        rfc3339(ms)
    )
}

/// An RFC 3164 message at `ms` (its time has no year and no zone: UTC).
fn rfc3164(ms: u64, host: &str, severity: u8, text: &str) -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", ms / 1000), "+%b %e %H:%M:%S"])
        .output()
        .expect("date");
    let time = String::from_utf8(output.stdout).expect("utf-8");
    format!(
        "<{}>{} {host} su[77]: {text}",
        4 * 8 + severity,
        time.trim()
    )
}

#[test]
fn tcp_messages_of_both_rfcs_and_framings_land_in_their_windows() {
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, pipeline("tcp", port, &out)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(addr, Duration::from_secs(10));

    let t0 = (now_ms() - 10 * 60_000) / 60_000 * 60_000;
    let mut stream = TcpStream::connect(addr).expect("connect");
    // Octet counting (RFC 6587 3.4.1), as rsyslog's omfwd sends it.
    for i in 0..3 {
        let message = rfc5424(t0 + 1_000 * i, "web-1", 3, "Failed password for root");
        write!(stream, "{} {message}", message.len()).expect("send");
    }
    // Newline framing, RFC 3164, in pieces across writes.
    let lines: String = (0..4)
        .map(|i| rfc3164(t0 + 60_000 + 500 * i, "db-1", 6, "session opened") + "\n")
        .collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    stream.write_all(first.as_bytes()).expect("send");
    stream.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(second.as_bytes()).expect("send");
    // A current message moves the watermark past the old minutes.
    let current = rfc5424(now_ms(), "web-1", 6, "tick");
    write!(stream, "{} {current}", current.len()).expect("send");
    stream.flush().expect("flush");

    wait_for("the old windows", WAIT, || {
        counts(&out.join("counts")).len() == 2
    });
    drop(stream);
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");

    let minute = |n: u64| rfc3339(t0 + n * 60_000);
    let key = |n, host: &str, severity: &str| (minute(n), host.to_owned(), severity.to_owned());
    assert_eq!(
        counts(&out.join("counts")),
        BTreeMap::from([(key(0, "web-1", "err"), 3), (key(1, "db-1", "info"), 4)])
    );
    let rows = published_rows(&out.join("rows"));
    assert_eq!(rows.len(), 3 + 4 + 1, "{rows:?}");
    let first = rows
        .iter()
        .find(|row| row["timestamp"] == rfc3339(t0))
        .expect("the first message");
    assert_eq!(first["hostname"], "web-1");
    assert_eq!(first["appname"], "sshd");
    assert_eq!(first["procid"], "4242");
    assert_eq!(first["msgid"], "AUTH");
    assert_eq!(first["facility"], "auth");
    assert_eq!(first["severity"], "err");
    assert_eq!(first["message"], "Failed password for root");
    assert_eq!(first["structured_data"]["origin@48577"]["ip"], "10.1.2.3");
    assert_eq!(first["source_ip"], "127.0.0.1");
    let old: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|row| row["hostname"] == "db-1")
        .collect();
    let mut times: Vec<&str> = old
        .iter()
        .map(|row| row["timestamp"].as_str().expect("timestamp"))
        .collect();
    times.sort();
    // RFC 3164 times are whole seconds, in the year weir accepted them.
    let (at, next) = (rfc3339(t0 + 60_000), rfc3339(t0 + 61_000));
    assert_eq!(times, [&at, &at, &next, &next]);
    for row in old {
        assert_eq!(
            (&row["appname"], &row["procid"], &row["message"]),
            (&"su".into(), &"77".into(), &"session opened".into())
        );
    }
}

#[test]
fn udp_datagrams_are_messages() {
    let root = scratch();
    let port = free_port();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, pipeline("udp", port, &out)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let now = now_ms();
    // Until weir listens, datagrams are lost: resend the first until a row
    // shows it arrived.
    let first = rfc3164(now, "fw-1", 4, "probe") + "\n";
    wait_for("the UDP listener", WAIT, || {
        let _ = sender.send_to(first.as_bytes(), target);
        std::thread::sleep(Duration::from_millis(200));
        !published_lines(&out.join("rows")).is_empty()
    });
    for i in 0..5 {
        let message = rfc5424(now + i, "fw-1", 2, &format!("drop {i}"));
        sender.send_to(message.as_bytes(), target).expect("send");
    }
    wait_for("five more rows", WAIT, || {
        published_rows(&out.join("rows"))
            .iter()
            .filter(|row| row["severity"] == "crit")
            .count()
            == 5
    });
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    let mut messages: Vec<String> = published_rows(&out.join("rows"))
        .iter()
        .filter(|row| row["severity"] == "crit")
        .map(|row| row["message"].as_str().expect("message").to_owned())
        .collect();
    messages.sort();
    assert_eq!(messages, ["drop 0", "drop 1", "drop 2", "drop 3", "drop 4"]);
}

#[test]
fn a_sigkill_and_a_stop_lose_nothing_weir_read_from_tcp() {
    let root = scratch();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let out = root.path().join("out");
    let config = root.path().join("pipeline.toml");
    std::fs::write(&config, pipeline("tcp", port, &out)).expect("config");
    let data = root.path().join("data");
    let send = |from: u64, to: u64| {
        let mut stream = TcpStream::connect(addr).expect("connect");
        for n in from..to {
            let message = rfc5424(now_ms(), "app-1", 5, &format!("n={n}"));
            if let Err(error) = write!(stream, "{} {message}", message.len()) {
                return Err(format!("message {n}: {error}"));
            }
        }
        stream.flush().expect("flush");
        // Read (and so logged) well within this, then the connection ends.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    };
    // Until the new process serves, a connection may reach the killed
    // one's listening socket, which the kernel closes only once it has torn
    // down that process's io_uring: what is sent there is reset, never
    // read. So wait until a probe message is committed.
    let serving = |probe: &str| {
        let mut attempt = 0;
        wait_for("a committed probe", WAIT, || {
            attempt += 1;
            let text = format!("{probe}-{attempt}");
            if let Ok(mut stream) = TcpStream::connect(addr) {
                let message = rfc5424(now_ms(), "app-1", 5, &text);
                let _ = write!(stream, "{} {message}", message.len());
                std::thread::sleep(Duration::from_millis(300));
            }
            published_rows(&out.join("rows"))
                .iter()
                .any(|row| row["message"] == text.as_str())
        });
    };
    let weir = Weir::start(&config, &data, &[], &[]);
    serving("probe-a");
    send(0, 300).expect("send");
    weir.kill();
    let weir = Weir::start(&config, &data, &[], &[]);
    serving("probe-b");
    if let Err(error) = send(300, 500) {
        weir.terminate();
        panic!("{error}: {}", weir.stderr());
    }
    // A graceful stop (a savepoint) and a restart keep every message too.
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    let weir = Weir::start(&config, &data, &[], &[]);
    serving("probe-c");
    send(500, 600).expect("send");
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    let mut seen = vec![0; 600];
    for row in published_rows(&out.join("rows")) {
        let message = row["message"].as_str().expect("message");
        if let Some(n) = message.strip_prefix("n=") {
            seen[n.parse::<usize>().expect("n")] += 1;
        }
    }
    let wrong: Vec<(usize, i32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, count)| **count != 1)
        .map(|(n, count)| (n, *count))
        .collect();
    assert!(wrong.is_empty(), "messages not committed once: {wrong:?}");
}
