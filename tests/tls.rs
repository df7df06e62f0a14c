//! Goal: every ingest listener (`http`, `otlp`, `tcp`, `syslog` over TCP)
//! speaks TLS with `tls = { cert, key, client_ca }` (issue 21): a client
//! trusting the CA is served; a client trusting another CA refuses the
//! server; with `client_ca`, a client without a certificate, or with one
//! from another CA, is refused (mutual TLS); a plaintext client is refused
//! cleanly (an `http` 400 saying TLS, a closed connection elsewhere) and
//! adds nothing.
//!
//! Method: a throwaway CA and certificates made at run time with rcgen
//! (`support::tls`); `curl` for the HTTP listeners, a rustls client for
//! the others; the committed NDJSON files are read back.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::tls::{connect, pki, Pki};
use support::{free_port, now_ms, published_rows, scratch, wait_for, wait_listening, Weir};
use weir_protocol::{encode_frame, AckHeader, AckStatus, WireEvent, ACK_HEADER_BYTES, FLAG_DEDUP};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);

/// `path` as a TOML string.
fn toml(path: &Path) -> String {
    format!("\"{}\"", support::toml_path(path))
}

/// A `tls` table with the server's identity, and `client_ca` when mutual.
fn tls_table(pki: &Pki, mutual: bool) -> String {
    let client_ca = if mutual {
        format!(", client_ca = {}", toml(&pki.ca))
    } else {
        String::new()
    };
    format!(
        "tls = {{ cert = {}, key = {}{client_ca} }}",
        toml(&pki.server_cert),
        toml(&pki.server_key)
    )
}

/// A source of `kind` on `port` with `tls` and more options, its rows into
/// a file under `out`.
fn source(name: &str, kind: &str, port: u16, tls: &str, more: &str, out: &Path) -> String {
    format!(
        r#"
[sources.{name}]
type = "{kind}"
listen = "127.0.0.1:{port}"
{tls}
{more}

[sinks.{name}_rows]
type = "file"
inputs = ["{name}"]
path = {rows}
roll_interval = "0s"
format = "ndjson"
"#,
        rows = toml(&out.join(name)),
    )
}

/// `curl` over https (or http) with `args`: its exit code, HTTP status
/// and body.
fn curl(url: &str, body: &[u8], args: &[&str]) -> (i32, u16, String) {
    let dir = scratch();
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("body file");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(url)
        .output()
        .expect("curl (scripts/install-build-deps.sh)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (response, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        output.status.code().unwrap_or(-1),
        status.trim().parse().unwrap_or(0),
        response.to_owned(),
    )
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn http_and_otlp_listeners_speak_tls() {
    let pki = pki();
    let root = scratch();
    let out = root.path().join("out");
    let (http_port, otlp_port) = (free_port(), free_port());
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        "[runtime]\nshards = 2\nepoch_interval_ms = 50\n{}{}",
        source(
            "events",
            "http",
            http_port,
            &tls_table(&pki, false),
            "",
            &out
        ),
        source("logs", "otlp", otlp_port, &tls_table(&pki, true), "", &out),
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(([127, 0, 0, 1], http_port).into(), Duration::from_secs(10));
    wait_listening(([127, 0, 0, 1], otlp_port).into(), Duration::from_secs(10));

    // http, server TLS only.
    let events = format!("https://127.0.0.1:{http_port}/events");
    let body = b"{\"level\":\"error\"}\n{\"level\":\"info\"}\n";
    let ca = ["--cacert", path_arg(&pki.ca)];
    let (code, status, response) = curl(&events, body, &ca);
    assert_eq!(
        (code, status, response.as_str()),
        (0, 200, r#"{"accepted":2,"dead_letter":0}"#)
    );
    // A client trusting another CA refuses the server (curl: 60, peer
    // certificate cannot be authenticated).
    let (code, status, _) = curl(&events, body, &["--cacert", path_arg(&pki.other_ca)]);
    assert_eq!((code, status), (60, 0));
    // Plaintext to the TLS listener: a 400 saying so, and the connection
    // closes.
    let plain = format!("http://127.0.0.1:{http_port}/events");
    let (code, status, response) = curl(&plain, body, &[]);
    assert_eq!((code, status), (0, 400), "{response}");
    assert!(response.contains("speaks TLS"), "{response}");

    // otlp with mutual TLS.
    let logs = format!("https://127.0.0.1:{otlp_port}/v1/logs");
    let json =
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
    let with_cert = [
        "--cacert",
        path_arg(&pki.ca),
        "--cert",
        path_arg(&pki.client_cert),
        "--key",
        path_arg(&pki.client_key),
        "-H",
        "Content-Type: application/json",
    ];
    let (code, status, response) = curl(&logs, json, &with_cert);
    assert_eq!((code, status, response.as_str()), (0, 200, "{}"));
    // No client certificate, or one from another CA: refused in the
    // handshake, no HTTP status.
    let no_cert = [
        "--cacert",
        path_arg(&pki.ca),
        "-H",
        "Content-Type: application/json",
    ];
    let (code, status, _) = curl(&logs, json, &no_cert);
    assert_ne!(code, 0);
    assert_eq!(status, 0);
    let other_cert = [
        "--cacert",
        path_arg(&pki.ca),
        "--cert",
        path_arg(&pki.other_client_cert),
        "--key",
        path_arg(&pki.other_client_key),
        "-H",
        "Content-Type: application/json",
    ];
    let (code, status, _) = curl(&logs, json, &other_cert);
    assert_ne!(code, 0);
    assert_eq!(status, 0);

    wait_for("the rows", WAIT, || {
        published_rows(&out.join("events")).len() == 2
            && published_rows(&out.join("logs")).len() == 1
    });
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    // Nothing refused was added.
    assert_eq!(published_rows(&out.join("events")).len(), 2);
    let logs = published_rows(&out.join("logs"));
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["body"], "hi");
}

/// Writes `frame` on `stream` and reads its acknowledgement.
fn send_frame(stream: &mut impl ReadWrite, frame: &[u8]) -> std::io::Result<AckHeader> {
    stream.write_all(frame)?;
    stream.flush()?;
    let mut header = [0u8; ACK_HEADER_BYTES];
    stream.read_exact(&mut header)?;
    let ack = AckHeader::decode(&header).expect("an acknowledgement");
    let mut detail = vec![0u8; ack.detail_len as usize];
    stream.read_exact(&mut detail)?;
    Ok(ack)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Whether a plaintext client that sends `bytes` gets the connection
/// closed without a byte of answer.
fn plaintext_is_closed(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // The server may close before taking everything: a failed write is a
    // refusal too.
    let _ = stream.write_all(bytes);
    let mut answer = [0u8; 64];
    match stream.read(&mut answer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => refused(&error),
    }
}

/// Whether `error` is the server ending the connection (a reset, an
/// alert, end of stream mid-handshake), not the client's read timing out
/// on a server that simply says nothing.
fn refused(error: &std::io::Error) -> bool {
    !matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

#[test]
fn tcp_and_syslog_listeners_speak_tls() {
    let pki = pki();
    let root = scratch();
    let out = root.path().join("out");
    let (tcp_port, syslog_port) = (free_port(), free_port());
    let tcp: SocketAddr = ([127, 0, 0, 1], tcp_port).into();
    let syslog: SocketAddr = ([127, 0, 0, 1], syslog_port).into();
    let config = root.path().join("pipeline.toml");
    let pipeline = format!(
        "[runtime]\nshards = 2\nepoch_interval_ms = 50\n{}{}",
        source("frames", "tcp", tcp_port, &tls_table(&pki, true), "", &out),
        source(
            "syslog",
            "syslog",
            syslog_port,
            &tls_table(&pki, false),
            "",
            &out
        ),
    );
    std::fs::write(&config, pipeline).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(tcp, Duration::from_secs(10));
    wait_listening(syslog, Duration::from_secs(10));

    // tcp with mutual TLS: a frame of three events, acknowledged durable.
    let events: Vec<WireEvent> = (0..3)
        .map(|i| WireEvent {
            key: format!("k{i}"),
            ts_ms: now_ms(),
            sent_ns: 0,
            body: b"{\"n\":1}".to_vec(),
        })
        .collect();
    let frame = encode_frame(FLAG_DEDUP, 7, &events);
    let identity = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let mut client = connect(tcp, &pki.ca, identity);
    let ack = send_frame(&mut client, &frame).expect("a TLS round trip");
    assert_eq!((ack.status, ack.events), (AckStatus::Durable, 3));
    drop(client);
    // Without a client certificate, with one from another CA, or trusting
    // another CA: the handshake fails.
    let mut client = connect(tcp, &pki.ca, None);
    assert!(send_frame(&mut client, &frame).is_err_and(|error| refused(&error)));
    let other = Some((
        pki.other_client_cert.as_path(),
        pki.other_client_key.as_path(),
    ));
    let mut client = connect(tcp, &pki.ca, other);
    assert!(send_frame(&mut client, &frame).is_err_and(|error| refused(&error)));
    let mut client = connect(tcp, &pki.other_ca, identity);
    assert!(send_frame(&mut client, &frame).is_err_and(|error| refused(&error)));
    // A plaintext frame: the connection closes, nothing is added.
    assert!(plaintext_is_closed(
        tcp,
        &encode_frame(FLAG_DEDUP, 8, &events)
    ));

    // syslog over TLS (RFC 5425 uses octet counting; newline framing too).
    let mut client = connect(syslog, &pki.ca, None);
    let message = "<34>1 2026-12-07T10:00:00.000Z web-1 sshd 42 AUTH - Failed password";
    write!(client, "{} {message}", message.len()).expect("send");
    client
        .write_all(b"<13>Dec  7 10:00:01 web-2 su[7]: session opened\n")
        .expect("send");
    client.flush().expect("flush");
    client.conn.send_close_notify();
    client.flush().expect("close_notify");
    let mut client = connect(syslog, &pki.other_ca, None);
    assert!(client
        .write_all(b"<13>refused\n")
        .and_then(|_| client.flush())
        .is_err_and(|error| refused(&error)));
    assert!(plaintext_is_closed(
        syslog,
        b"<13>Dec  7 10:00:02 web-3 plain: text\n"
    ));

    wait_for("the rows", WAIT, || {
        published_rows(&out.join("frames")).len() == 3
            && published_rows(&out.join("syslog")).len() == 2
    });
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    assert_eq!(published_rows(&out.join("frames")).len(), 3);
    let mut hosts: Vec<String> = published_rows(&out.join("syslog"))
        .iter()
        .map(|row| row["hostname"].as_str().expect("hostname").to_owned())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["web-1", "web-2"]);
}

#[test]
fn bad_tls_files_are_named_before_anything_listens() {
    let pki = pki();
    let root = scratch();
    let out = root.path().join("out");
    let missing = root.path().join("missing.pem");
    for (tls, expected) in [
        (
            format!(
                "tls = {{ cert = {}, key = {} }}",
                toml(&missing),
                toml(&pki.server_key)
            ),
            "`tls.cert = ",
        ),
        (
            // A certificate is not a key.
            format!(
                "tls = {{ cert = {}, key = {} }}",
                toml(&pki.server_cert),
                toml(&pki.server_cert)
            ),
            "not a PEM private key",
        ),
        (
            // The client's key does not go with the server's certificate.
            format!(
                "tls = {{ cert = {}, key = {} }}",
                toml(&pki.server_cert),
                toml(&pki.client_key)
            ),
            "do not make a server identity",
        ),
    ] {
        let config = root.path().join("pipeline.toml");
        let pipeline = format!(
            "[runtime]\nshards = 1\n{}",
            source("events", "http", free_port(), &tls, "", &out)
        );
        std::fs::write(&config, pipeline).expect("config");
        let output = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("validate")
            .arg(&config)
            .output()
            .expect("weir validate");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{tls}");
        assert!(stderr.contains(expected), "{tls}: {stderr}");
        assert!(stderr.contains("sources.events"), "{stderr}");
    }
}

/// An HTTPS receiver (Python's `http.server` and `ssl`) that asks for a
/// client certificate signed by the test CA, answers 200 to every POST and
/// appends `{"key", "body"}` of each to a file.
const HTTPS_RECEIVER: &str = r#"
import http.server, json, ssl, sys
port_file, out, cert, key, ca = sys.argv[1:6]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(out, "a") as file:
            file.write(json.dumps({"key": self.headers["Idempotency-Key"], "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as file:
    file.write(str(server.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
"#;

/// A pipeline posting what an `http` source on `port` takes to a webhook
/// at `url` with `tls`.
fn webhook_pipeline(port: u16, url: &str, tls: &str) -> String {
    format!(
        r#"
[runtime]
shards = 1
epoch_interval_ms = 50

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"

[sinks.hook]
type = "webhook"
inputs = ["events"]
url = "{url}"
{tls}
retry_initial = "10ms"
retry_max = "100ms"
"#
    )
}

#[test]
fn the_webhook_sink_posts_over_mutual_tls() {
    let pki = pki();
    let root = scratch();
    let (port_file, received) = (root.path().join("port"), root.path().join("received"));
    let script = root.path().join("receiver.py");
    std::fs::write(&script, HTTPS_RECEIVER).expect("script");
    let _receiver = Killed(
        Command::new("python3")
            .arg(&script)
            .args([
                &port_file,
                &received,
                &pki.server_cert,
                &pki.server_key,
                &pki.ca,
            ])
            .spawn()
            .expect("python3"),
    );
    wait_for("the receiver", WAIT, || port_file.exists());
    let receiver_port = std::fs::read_to_string(&port_file).expect("port");
    let url = format!("https://127.0.0.1:{}/hook", receiver_port.trim());

    // Trusting the test CA, with the client certificate: delivered.
    let port = free_port();
    let config = root.path().join("pipeline.toml");
    let tls = format!(
        "tls = {{ ca = {}, cert = {}, key = {} }}",
        toml(&pki.ca),
        toml(&pki.client_cert),
        toml(&pki.client_key)
    );
    std::fs::write(&config, webhook_pipeline(port, &url, &tls)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
    let body = b"{\"user\":\"u1\"}\n{\"user\":\"u2\"}\n";
    let (code, status, _) = curl(&format!("http://127.0.0.1:{port}/events"), body, &[]);
    assert_eq!((code, status), (0, 200));
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .flat_map(|line| {
                let delivery: serde_json::Value = serde_json::from_str(line).expect("json");
                delivery["body"]["records"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    wait_for("the delivery", WAIT, || records().len() == 2);
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    let users: Vec<String> = records()
        .iter()
        .map(|record| {
            let body: serde_json::Value =
                serde_json::from_str(record["body"].as_str().expect("body")).expect("json");
            body["user"].as_str().expect("user").to_owned()
        })
        .collect();
    assert_eq!(users, ["u1", "u2"]);

    // Trusting another CA: the receiver's certificate is refused, the
    // delivery is a permanent error naming the URL, and the run fails.
    let tls = format!(
        "tls = {{ ca = {}, cert = {}, key = {} }}",
        toml(&pki.other_ca),
        toml(&pki.client_cert),
        toml(&pki.client_key)
    );
    std::fs::write(&config, webhook_pipeline(port, &url, &tls)).expect("config");
    let weir = Weir::start(&config, &root.path().join("other"), &[], &[]);
    wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
    let _ = curl(
        &format!("http://127.0.0.1:{port}/events"),
        body,
        &["--max-time", "5"],
    );
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(!status.success(), "{log}");
    assert!(log.contains(&url), "{log}");
    assert!(log.contains("certificate"), "{log}");
    assert_eq!(records().len(), 2, "nothing more was delivered");
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PostgreSQL cluster that takes TLS connections only (its own port and
/// directory; `scripts/start-postgres.sh` with `WEIR_TEST_POSTGRES_SSL=1`):
/// its URL and the CA its certificate chains to.
fn postgres_tls() -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join("weir-test-postgres-tls");
    let output = Command::new("scripts/start-postgres.sh")
        .env("WEIR_TEST_POSTGRES_SSL", "1")
        .env("WEIR_TEST_POSTGRES_PORT", "54330")
        .env("WEIR_TEST_POSTGRES_DIR", &dir)
        .output()
        .expect("scripts/start-postgres.sh");
    assert!(
        output.status.success(),
        "start-postgres.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = String::from_utf8(output.stdout).expect("utf-8");
    (url.trim().to_owned(), dir.join("ca.crt"))
}

/// `psql` over verified TLS: the output of `sql`, unaligned.
fn psql(url: &str, ca: &Path, sql: &str) -> String {
    let url = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let output = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", sql, &url])
        .output()
        .expect("psql (scripts/start-postgres.sh installs it)");
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[test]
fn the_postgres_sink_writes_over_tls() {
    let (url, ca) = postgres_tls();
    let pki = pki();
    let root = scratch();
    // A table and sink name of their own: the cluster outlives test runs.
    let run = format!("tls_{}_{}", std::process::id(), now_ms());
    let pipeline = |tls: &str, port: u16| {
        format!(
            r#"
[runtime]
shards = 1
epoch_interval_ms = 50

[sources.events]
type = "http"
listen = "127.0.0.1:{port}"
schema = {{ user = "string" }}

[sinks.{run}]
type = "postgres"
inputs = ["events"]
url = "{url}"
table = "{run}"
{tls}
"#
        )
    };
    // Only TLS is accepted by this cluster (`hostssl` lines only), so the
    // rows arriving show the sink spoke TLS, verified against the CA.
    let port = free_port();
    let config = root.path().join("pipeline.toml");
    let tls = format!("tls = {{ ca = {} }}", toml(&ca));
    std::fs::write(&config, pipeline(&tls, port)).expect("config");
    let weir = Weir::start(&config, &root.path().join("data"), &[], &[]);
    wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
    let body = b"{\"user\":\"u1\"}\n{\"user\":\"u2\"}\n";
    let events = format!("http://127.0.0.1:{port}/events");
    assert_eq!(curl(&events, body, &[]).1, 200);
    wait_for("the rows in PostgreSQL", WAIT, || {
        psql(
            &url,
            &ca,
            &format!("SELECT count(*) FROM to_regclass('{run}') t WHERE t IS NOT NULL"),
        ) == "1"
            && psql(&url, &ca, &format!("SELECT count(*) FROM \"{run}\"")) == "2"
    });
    weir.terminate();
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(status.success(), "the stop failed: {log}");
    assert_eq!(
        psql(
            &url,
            &ca,
            &format!("SELECT string_agg(\"user\", ',' ORDER BY \"user\") FROM \"{run}\"")
        ),
        "u1,u2"
    );

    // Trusting another CA: the server's certificate is refused and the
    // commit fails the run, naming the server.
    let port = free_port();
    let tls = format!("tls = {{ ca = {} }}", toml(&pki.other_ca));
    std::fs::write(&config, pipeline(&tls, port)).expect("config");
    let weir = Weir::start(&config, &root.path().join("other"), &[], &[]);
    wait_listening(([127, 0, 0, 1], port).into(), Duration::from_secs(10));
    let _ = curl(
        &format!("http://127.0.0.1:{port}/events"),
        body,
        &["--max-time", "5"],
    );
    let (status, log) = weir.exit_within(RUN_TIMEOUT);
    assert!(!status.success(), "{log}");
    assert!(log.contains("cannot connect to"), "{log}");
    assert!(log.contains("certificate"), "{log}");
    assert_eq!(
        psql(&url, &ca, &format!("SELECT count(*) FROM \"{run}\"")),
        "2"
    );
}
