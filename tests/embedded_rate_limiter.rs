//! Drives `examples/embedded_rate_limiter.rs` over HTTP and checks every
//! decision against a model of a sliding-window limiter.
//!
//! The window (10 minutes) is far longer than the test, so no request
//! leaves it and the model is exact: per client, the n-th request the
//! window counted gets count n, and exactly the first `LIMIT` are allowed,
//! however many threads ask for the same client at once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const LIMIT: u64 = 5;
const THREADS: u64 = 6;
const CLIENTS: u64 = 8;
/// Requests per thread.
const REQUESTS: u64 = 40;

/// The example's binary: next to this test's, built if missing (a
/// `cargo test --test embedded_rate_limiter` builds no example).
fn example() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's path");
        // .../target/<profile>/deps/embedded_rate_limiter-<hash>
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test runs from <target>/<profile>/deps")
            .to_path_buf();
        let path = profile_dir.join("examples/embedded_rate_limiter");
        if !path.exists() {
            let target_dir = profile_dir.parent().expect("the target directory");
            let profile = profile_dir.file_name().and_then(|name| name.to_str());
            let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cargo
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    "build",
                    "--example",
                    "embedded_rate_limiter",
                    "--target-dir",
                ])
                .arg(target_dir);
            match profile {
                Some("debug") | None => {}
                Some("release") => {
                    cargo.arg("--release");
                }
                Some(other) => {
                    cargo.args(["--profile", other]);
                }
            }
            let status = cargo.status().expect("running cargo build --example");
            assert!(status.success(), "cargo build --example failed: {status}");
        }
        assert!(path.exists(), "{} was not built", path.display());
        path
    })
    .clone()
}

/// A running example; killed if the test fails before it exits.
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(example())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--limit",
                "5",
                "--window",
                "600s",
            ])
            .args(["--shards", "2", "--workers", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the example");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
            .to_string();
        Server {
            child,
            stdout,
            addr,
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the
    /// rest of stdout.
    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signals a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let status = self.child.wait().unwrap();
        (status, rest)
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

/// A keep-alive HTTP/1.1 connection.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        // A hang fails the test instead of blocking it forever.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// `GET target` with extra header lines; returns status and body.
    fn get(&mut self, target: &str, headers: &str) -> (u16, String) {
        write!(
            self.writer,
            "GET {target} HTTP/1.1\r\nHost: test\r\n{headers}\r\n"
        )
        .unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

/// The client of thread `thread`'s `i`-th request: threads share clients,
/// so one client's requests race each other.
fn client_of(thread: u64, i: u64) -> u64 {
    (thread * 3 + i * 5 + i / 7) % CLIENTS + 1
}

/// Every thread's `(client, status, body)` responses, in order.
fn drive(addr: &str) -> Vec<Vec<(u64, u16, String)>> {
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut http = Client::connect(&addr);
                (0..REQUESTS)
                    .map(|i| {
                        let client = client_of(thread, i);
                        // Every third request names the client by header.
                        let (status, body) = if i % 3 == 0 {
                            http.get("/check", &format!("X-Client-Id: {client}\r\n"))
                        } else {
                            http.get(&format!("/check?client={client}"), "")
                        };
                        (client, status, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn requests_per_client() -> BTreeMap<u64, u64> {
    let mut per_client = BTreeMap::new();
    for thread in 0..THREADS {
        for i in 0..REQUESTS {
            *per_client.entry(client_of(thread, i)).or_default() += 1;
        }
    }
    per_client
}

fn check_bad_requests(addr: &str) {
    let mut http = Client::connect(addr);
    let (status, body) = http.get("/check", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("client"), "{body}");
    let (status, body) = http.get("/check?client=abc", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`client`") && body.contains("abc"), "{body}");
    let (status, body) = http.get("/check?client=-1", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http.get("/check", "X-Client-Id: 12x\r\n");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("X-Client-Id") && body.contains("12x"),
        "{body}"
    );
    let (status, _) = http.get("/elsewhere?client=1", "");
    assert_eq!(status, 404);
}

#[test]
fn every_decision_matches_the_model() {
    let server = Server::start(&[]);
    check_bad_requests(&server.addr);
    let responses = drive(&server.addr);
    let expected = requests_per_client();

    // Per client: the counts are exactly 1..=n, each once, and a request
    // is allowed exactly when its count is within the limit.
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (client, status, body) in responses.iter().flatten() {
        let (verdict, count) = body
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad body {body:?}"));
        let count: u64 = count.parse().unwrap();
        if count <= LIMIT {
            assert_eq!(
                (*status, verdict),
                (200, "allow"),
                "client {client}: {body}"
            );
        } else {
            assert_eq!((*status, verdict), (429, "deny"), "client {client}: {body}");
        }
        counts.entry(*client).or_default().push(count);
    }
    for (client, n) in &expected {
        let mut got = counts.remove(client).unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, (1..=*n).collect::<Vec<_>>(), "client {client}");
        assert!(*n > LIMIT, "the sequence should exceed the limit");
    }
    assert!(counts.is_empty());
    // Per thread, one client's counts grow (its requests are sequential).
    for thread in &responses {
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for (client, _, body) in thread {
            let count: u64 = body.trim().split_once(' ').unwrap().1.parse().unwrap();
            let previous = last.insert(*client, count).unwrap_or(0);
            assert!(
                count > previous,
                "client {client}: {count} after {previous}"
            );
        }
    }

    // Every decision was the window's: queries see all requests now.
    let mut http = Client::connect(&server.addr);
    for (client, n) in &expected {
        let (status, body) = http.get(&format!("/count?client={client}"), "");
        assert_eq!((status, body.trim()), (200, format!("count {n}").as_str()));
    }
    let (status, body) = http.get("/count?client=999", "");
    assert_eq!((status, body.trim()), (200, "count 0"));
    drop(http);

    let (status, rest) = server.terminate();
    assert!(status.success(), "exit status {status}; stdout: {rest}");
    assert!(rest.contains("shut down: weir ran"), "{rest}");
}

#[test]
fn without_weir_every_check_is_allowed() {
    let server = Server::start(&["--no-weir"]);
    check_bad_requests(&server.addr);
    for (client, status, body) in drive(&server.addr).iter().flatten() {
        assert_eq!(
            (*status, body.as_str()),
            (200, "allow 0\n"),
            "client {client}"
        );
    }
    let (status, rest) = server.terminate();
    assert!(status.success(), "exit status {status}; stdout: {rest}");
    assert!(rest.contains("shut down (no weir)"), "{rest}");
}
