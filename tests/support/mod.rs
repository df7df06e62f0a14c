//! What the tests that drive the `weir` binary share: a child `weir run`
//! process, committed NDJSON output, and an HTTP receiver for `webhook`
//! sinks that can be taken down and brought back on the same port.
//!
//! Each test file that needs it says `mod support;`; not every file uses
//! every helper.
#![allow(dead_code)]

pub mod kafka;
pub mod tls;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `weir run` child process.
pub struct Weir {
    pub child: Child,
    pub started: Instant,
    /// Reads the child's standard error as it comes, so a chatty run (a
    /// broker outage logs a lot) never fills the pipe and blocks.
    log: Option<std::thread::JoinHandle<String>>,
}

impl Weir {
    /// Starts `weir run CONFIG --data-dir DATA ARGS...`, with `env` set
    /// (and `WEIR_CRASH_AT` cleared unless `env` sets it). Standard error
    /// is captured; standard output discarded.
    pub fn start(config: &Path, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Weir {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .arg("run")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env_remove("WEIR_CRASH_AT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        Weir::spawn(&mut command)
    }

    /// Spawns `command` (a `weir` command line whose standard error is
    /// piped) and starts reading its log.
    pub fn spawn(command: &mut Command) -> Weir {
        let mut child = command.spawn().expect("start weir");
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let log = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        Weir {
            child,
            started: Instant::now(),
            log: Some(log),
        }
    }

    /// Waits until this process holds the data directory `data` (its PID
    /// is in `data/lock`): it handles signals from then on.
    pub fn wait_holding(&mut self, data: &Path) {
        let pid = self.child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let holder = std::fs::read_to_string(data.join("lock")).unwrap_or_default();
            if holder.trim() == pid {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll child") {
                panic!("weir exited ({status}) before it held {}", data.display());
            }
            assert!(
                Instant::now() < deadline,
                "weir never held {}",
                data.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits up to `timeout` for the exit; kills the process and panics
    /// with what it logged if it does not exit in time.
    pub fn exit_within(self, timeout: Duration) -> (ExitStatus, String) {
        self.exit_within_explained(timeout, String::new)
    }

    /// [`Weir::exit_within`], adding what `explain` says (such as the end
    /// of a broker's own log) to the panic's message.
    pub fn exit_within_explained(
        mut self,
        timeout: Duration,
        explain: impl FnOnce() -> String,
    ) -> (ExitStatus, String) {
        match self.wait_for(timeout) {
            Some(status) => (status, self.stderr()),
            None => {
                let stacks = thread_stacks(self.child.id());
                let _ = self.child.kill();
                panic!(
                    "weir did not exit within {timeout:?}; it logged:\n{}\n{}\n{stacks}",
                    self.stderr(),
                    explain()
                );
            }
        }
    }

    /// What it logged to standard error (after it exited).
    pub fn stderr(mut self) -> String {
        let _ = self.child.wait();
        self.log
            .take()
            .map(|log| log.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Every thread's stack of the live process `pid`, for a test's message
/// when it hangs: what `gdb` prints (bounded to a minute, with its own
/// complaints, such as a ptrace refusal), or why there is none.
pub fn thread_stacks(pid: u32) -> String {
    let pid = pid.to_string();
    let output = Command::new("timeout")
        .args([
            "60",
            "gdb",
            "-batch",
            "-ex",
            "thread apply all bt",
            "-p",
            &pid,
        ])
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) => format!(
            "-- its threads (gdb, {}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => format!("-- no thread stacks: cannot run timeout/gdb ({error})"),
    }
}

/// The lines of every published (committed) file directly under `dir`,
/// never `.staging/`; none if `dir` does not exist yet.
pub fn published_lines(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read output file");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

/// [`published_lines`], parsed as JSON.
pub fn published_rows(dir: &Path) -> Vec<serde_json::Value> {
    published_lines(dir)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}")))
        .collect()
}

/// Runs a pipeline through two SIGKILLs and a graceful stop (a
/// savepoint), each followed by a restart on the same data directory,
/// while `client` keeps sending: after a quarter, half and three quarters
/// of `batches` are acknowledged (the client counts them in `acked`). Then
/// waits for the client and stops the last run gracefully.
pub fn kill_kill_stop(
    mut weir: Weir,
    config: &Path,
    data: &Path,
    acked: &std::sync::atomic::AtomicU64,
    batches: u64,
    client: std::thread::JoinHandle<()>,
) {
    let timeout = Duration::from_secs(60);
    for (after, graceful) in [
        (batches / 4, false),
        (batches / 2, false),
        (3 * batches / 4, true),
    ] {
        wait_for("acknowledgements", timeout, || {
            acked.load(Ordering::Acquire) >= after
        });
        if graceful {
            weir.terminate();
            let (status, log) = weir.exit_within(timeout);
            assert!(status.success(), "the stop failed: {log}");
        } else {
            weir.kill();
        }
        weir = Weir::start(config, data, &[], &[]);
    }
    client.join().expect("client");
    weir.terminate();
    let (status, log) = weir.exit_within(timeout);
    assert!(status.success(), "the stop failed: {log}");
}

/// Asserts every index below `total` occurs exactly once in `indices`
/// (each a committed record's `batch * per_batch + seq`).
pub fn assert_each_once(indices: impl IntoIterator<Item = usize>, total: usize, what: &str) {
    let mut seen = vec![0u32; total];
    for index in indices {
        seen[index] += 1;
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, count)| **count != 1)
        .map(|(at, count)| (at, *count))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what} not committed once (index, times): {wrong:?}"
    );
}

/// A port on 127.0.0.1 that was free a moment ago.
/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// `ms` as RFC 3339 in UTC with milliseconds, as weir's NDJSON writes
/// timestamps (and as Vector writes them), by the `date` tool.
pub fn rfc3339(ms: u64) -> String {
    let output = Command::new("date")
        .args(["-u", "-d", &format!("@{}", ms / 1000), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .expect("date");
    let seconds = String::from_utf8(output.stdout).expect("utf-8");
    format!("{}.{:03}Z", seconds.trim(), ms % 1000)
}

/// Polls `done` every 100 ms until it holds; fails naming `what` after
/// `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// POSTs `body` to `http://addr{path}` and returns the status code and
/// the response body (one request per connection).
pub fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// One POST a [`Receiver`] answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub key: String,
    pub body: serde_json::Value,
}

/// An HTTP receiver on 127.0.0.1 that answers 200 to every POST and
/// records each, for `webhook` sinks. [`stop`](Receiver::stop) takes it
/// down (its port then refuses connections); [`start_on`](Receiver::start_on)
/// brings one back on the same port.
pub struct Receiver {
    pub address: SocketAddr,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    stopped: Arc<AtomicBool>,
}

impl Receiver {
    /// A receiver on a free port.
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// A receiver on `port` (0: any free port).
    pub fn start_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        let address = listener.local_addr().expect("address");
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (shared, flag) = (Arc::clone(&deliveries), Arc::clone(&stopped));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (shared, flag) = (Arc::clone(&shared), Arc::clone(&flag));
                std::thread::spawn(move || serve(stream, &shared, &flag));
            }
        });
        Receiver {
            address,
            deliveries,
            stopped,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Takes the receiver down: it answers nothing more, and its port
    /// refuses connections.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // Wakes the accept loop, which then drops the listener.
        let _ = TcpStream::connect(self.address);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(self.address).is_ok() {
            assert!(Instant::now() < deadline, "the receiver did not go down");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every POST answered so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Deliveries to `path`, deduplicated by key: the first body of each
    /// key, and how many times each key arrived.
    pub fn distinct(
        &self,
        path: &str,
    ) -> (BTreeMap<String, serde_json::Value>, BTreeMap<String, u32>) {
        let mut bodies = BTreeMap::new();
        let mut arrivals = BTreeMap::new();
        for delivery in self.deliveries.lock().unwrap().iter() {
            if delivery.path != path {
                continue;
            }
            *arrivals.entry(delivery.key.clone()).or_default() += 1;
            bodies
                .entry(delivery.key.clone())
                .or_insert_with(|| delivery.body.clone());
        }
        (bodies, arrivals)
    }
}

/// Serves the requests of one connection (keep-alive) until it closes or
/// the receiver stops; a request read after the stop is not answered.
fn serve(stream: TcpStream, deliveries: &Mutex<Vec<Delivery>>, stopped: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request_line) = read_line(&mut reader, stopped) else {
            return;
        };
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let (mut length, mut key) = (0usize, String::new());
        loop {
            let Some(header) = read_line(&mut reader, stopped) else {
                return;
            };
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().expect("content-length"),
                    "idempotency-key" => key = value.to_owned(),
                    "transfer-encoding" => panic!("the receiver reads Content-Length bodies only"),
                    _ => {}
                }
            }
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)));
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() || stopped.load(Ordering::Acquire) {
            return;
        }
        let _ = reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)));
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        deliveries
            .lock()
            .unwrap()
            .push(Delivery { path, key, body });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// One line, waiting through read timeouts until the receiver stops or
/// the connection closes (`None`).
fn read_line(reader: &mut BufReader<TcpStream>, stopped: &AtomicBool) -> Option<String> {
    let mut line = String::new();
    loop {
        if stopped.load(Ordering::Acquire) {
            return None;
        }
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with('\n') => return Some(line),
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
}

/// A small deterministic generator (splitmix64), for seeded schedules of
/// kills and stops.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A temporary directory for one test scenario, under the target dir.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// `path`, for a TOML string.
pub fn toml_path(path: &Path) -> String {
    path.display().to_string()
}

/// Where a scenario's sinks write: `root/out/NAME`.
pub fn out_dir(root: &Path, name: &str) -> PathBuf {
    root.join("out").join(name)
}

/// Published (committed) files of `dir`: its plain files, dot files and
/// `.staging/` excluded.
pub fn published_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && !path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Every row of the published Parquet files directly under `dir`, as
/// column name → value, read with the parquet crate's own reader.
pub fn parquet_rows(dir: &Path) -> Vec<std::collections::HashMap<String, parquet::record::Field>> {
    use parquet::file::reader::FileReader;
    let mut rows = Vec::new();
    for path in published_files(dir) {
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("parquet"),
            "{}",
            path.display()
        );
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = parquet::file::reader::SerializedFileReader::new(file)
            .unwrap_or_else(|e| panic!("{}: not a Parquet file: {e}", path.display()));
        for row in reader.get_row_iter(None).expect("row iterator") {
            let row = row.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            rows.push(
                row.get_column_iter()
                    .map(|(name, field)| (name.clone(), field.clone()))
                    .collect(),
            );
        }
    }
    rows
}

/// POSTs `body` with `curl` and `headers`: the status and the response.
pub fn curl_events(addr: SocketAddr, body: &[u8], headers: &[&str]) -> (u16, String) {
    let dir = scratch();
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("body file");
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"]);
    for header in headers {
        command.args(["-H", header]);
    }
    command
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{addr}/events"));
    let output = command
        .output()
        .expect("curl (scripts/install-build-deps.sh)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (response, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {text:?} {:?}", output.stderr));
    (status, response.to_owned())
}

/// POSTs `body` to `http://addr/events` with `Weir-Batch-Id: id` until it
/// is answered 200, as a shipper retries (a restart refuses connections,
/// a full intake answers 503), for at most a minute: the answer.
pub fn post_until_accepted(addr: SocketAddr, body: &[u8], id: &str) -> String {
    let header = format!("Weir-Batch-Id: {id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, response) = curl_events(addr, body, &[&header]);
        if status == 200 {
            return response;
        }
        assert!(Instant::now() < deadline, "batch {id} never accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `script` (one of `scripts/install-*-python.sh`-like installers
/// that prints a virtual environment's python) and returns that python.
pub fn tool_python(script: &str) -> String {
    let output = Command::new(script)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}
