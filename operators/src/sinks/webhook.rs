//! [`WebhookSink`]: the `webhook` sink of pipeline files. POSTs rows as
//! JSON to an HTTP endpoint, for alerting and automated response, exactly
//! once to a receiver that drops redelivered batches.
//!
//! # Options ([`WebhookSinkConfig`])
//! - `url`: `http://` or `https://host[:port][/path]`. Proxy environment
//!   variables are ignored and redirects are not followed.
//! - `tls` (optional, `https://` only): `{ ca, cert, key }`, PEM files.
//!   `ca`: the certificate authorities the receiver's certificate must
//!   chain to, instead of Mozilla's roots (the default, from
//!   `webpki-roots`); `cert` and `key` (both or neither): the sink's client
//!   certificate for mutual TLS. The files are read when the pipeline is
//!   checked and again by each delivery (rustls, through ureq). A receiver
//!   certificate that does not verify is a permanent error (below).
//! - `batch_max_records` (default 100): rows per POST at most.
//! - `headers` (optional): extra request headers, e.g. an `Authorization`.
//! - `timeout` (default `"5s"`): the limit of one attempt, connecting and
//!   reading the answer included.
//! - `retry_initial` (default `"100ms"`), `retry_max` (default `"10s"`): the
//!   first pause between attempts, doubled after every failed attempt up to
//!   `retry_max`. No jitter: the schedule is deterministic.
//!
//! Durations are a number and a unit: `ms`, `s`, `m` or `h` (`"250ms"`,
//! `"1.5s"`).
//!
//! # What a request looks like
//! ```text
//! POST /path HTTP/1.1
//! Content-Type: application/json
//! Idempotency-Key: <pipeline>-<sink>-<shard>-<epoch>-<sequence>
//!
//! {"pipeline":"weir","sink":"alerts","shard":0,"epoch":7,"sequence":0,
//!  "idempotency_key":"weir-alerts-0-7-0","records":[{...},{...}]}
//! ```
//! Each record is the row as a JSON object (field names from the input
//! schema, null fields left out, timestamps RFC 3339, IPs as text: the same
//! form as the `file` sink's NDJSON). `sequence` numbers the batches of one
//! shard's epoch from 0. The key identifies the batch for good: a batch
//! delivered again after a crash carries the same key and the same records,
//! so a receiver that remembers the keys it accepted can drop it.
//!
//! # Delivery (exactly once to a deduplicating receiver)
//! - `write` appends each row's JSON to the open batch of the current
//!   epoch; a batch closes at `batch_max_records` rows. Rows stay in memory.
//! - `precommit` closes the open batch and returns every batch of the epoch
//!   as bytes (logged in the WAL), with what `commit` needs to send them:
//!   URL, headers, timeouts, names, shard and epoch. An epoch without rows
//!   returns nothing and sends nothing.
//! - `commit` runs once the epoch is committed, on a blocking thread off
//!   the shard, and POSTs the batches in sequence order. The runtime logs
//!   each commit that completed; the next start runs again only committed
//!   epochs whose completion was not logged. So a batch arrives twice (same
//!   key) only after a crash between its delivery and that log record, never
//!   after a graceful stop; it never arrives from an epoch that did not
//!   commit. Because the staged bytes carry the URL, a recovered epoch goes
//!   to the URL it was staged for.
//!
//! # Failures
//! - 2xx: delivered.
//! - 5xx, 408, 429, connection errors and timeouts: retried with the
//!   backoff above, forever (`Retry-After` is not read). Each failed
//!   attempt is logged (`tracing`, warn).
//! - Any other status (other 4xx, 1xx, 3xx), or a receiver certificate
//!   that does not verify against the trusted roots: a permanent error. `commit`
//!   returns an error naming the URL, the key, the status and the start of
//!   the response body, which fails the run: a receiver that rejects the
//!   request will reject it again, and retrying would stall the pipeline
//!   silently instead of saying what is wrong. After fixing the receiver,
//!   restarting on the same data directory sends the epoch again (its
//!   commit is re-run by recovery).
//!
//! # What a failing endpoint does to the pipeline
//! Each shard runs its sinks' commits one at a time, in epoch order, on its
//! epoch task (`runtime/src/epoch/shard.rs`), which also reports the
//! shard's epochs durable to the coordinator. While a commit is retrying,
//! that shard reports no further epoch durable, so the coordinator commits
//! no further epoch, and after `IN_FLIGHT_MAX_EPOCHS` (4) uncommitted
//! epochs it stops starting new ones. Sources are not slowed by this:
//! records keep flowing into the current, ever longer epoch, whose rows
//! this sink holds in memory until the endpoint recovers (and other sinks'
//! outputs stop being published). When the endpoint recovers, the retried
//! batch goes through and the backlog drains epoch by epoch.
//!
//! A stop waits for the retrying commit only up to the runtime's stop
//! timeout (default 10 s): then the commit is cancelled between two
//! attempts (an attempt in progress finishes first, up to `timeout`), the
//! run ends at its last committed epoch (`weir run` exits with status 3 and
//! logs the pending commit), and the next start on the same data directory
//! delivers the pending batches first, once, from its shards' epoch tasks:
//! the start itself does not wait for the endpoint.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, CommitControl, OperatorError, ShardContext, Sink};

use super::client_tls::ClientTls;
use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::limits::WEBHOOK_ERROR_BODY_MAX_BYTES;
use crate::row::{write_row_json, OptionError, Row, Schema, SchemaRef};

/// The pipeline name used when the integrator sets none.
pub const DEFAULT_PIPELINE: &str = "weir";

/// The `[sinks.NAME]` table of a `webhook` sink; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// The streams it reads (wired by the pipeline builder).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Where to POST: `http://host[:port][/path]`.
    pub url: String,
    /// Rows per request at most (default 100).
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Extra request headers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The limit of one attempt (default `"5s"`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// The first pause between attempts (default `"100ms"`).
    #[serde(default = "default_retry_initial")]
    pub retry_initial: String,
    /// The longest pause between attempts (default `"10s"`).
    #[serde(default = "default_retry_max")]
    pub retry_max: String,
    /// TLS settings of an `https://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

fn default_batch_max_records() -> usize {
    100
}

fn default_timeout() -> String {
    "5s".into()
}

fn default_retry_initial() -> String {
    "100ms".into()
}

fn default_retry_max() -> String {
    "10s".into()
}

/// A checked [`WebhookSinkConfig`], ready to make sink instances.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    /// The pipeline's name, in keys and bodies (default
    /// [`DEFAULT_PIPELINE`]); set it with [`WebhookSpec::with_pipeline`].
    pub pipeline: String,
    /// The input's schema: names the fields of each record.
    pub schema: SchemaRef,
    /// The endpoint.
    pub url: String,
    /// Rows per request at most, at least 1.
    pub batch_max_records: usize,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The limit of one attempt.
    pub timeout: Duration,
    /// The first pause between attempts.
    pub retry_initial: Duration,
    /// The longest pause between attempts.
    pub retry_max: Duration,
    /// TLS settings of an `https://` URL.
    pub tls: Option<ClientTls>,
}

impl WebhookSpec {
    /// The same spec, for the pipeline called `pipeline`.
    pub fn with_pipeline(mut self, pipeline: impl Into<String>) -> WebhookSpec {
        self.pipeline = pipeline.into();
        self
    }
}

fn positive_duration(option: &str, text: &str) -> Result<Duration, OptionError> {
    crate::duration::parse_positive_ms(text)
        .map(Duration::from_millis)
        .map_err(|message| OptionError::new(option, message))
}

/// Checks an `http://` or `https://` URL: a host, an optional port and
/// path, no user info or fragment.
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if authority.contains('@') || url.contains('#') || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{url}`: user info, fragments and spaces are not allowed"
        ));
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        if !host.ends_with(']') && host.contains(':') {
            return Err(format!("`{url}`: put an IPv6 address in brackets"));
        }
        if port.parse::<u16>().is_err() && !authority.ends_with(']') {
            return Err(format!("`{url}` has a bad port `{port}`"));
        }
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if ["idempotency-key", "content-type", "content-length", "host"]
        .contains(&name.to_ascii_lowercase().as_str())
    {
        return Err(format!("`{name}` is set by the sink"));
    }
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(format!("the value of `{name}` has a line break"));
    }
    Ok(())
}

/// Checks `config` against the input's schema. A sink has no output, so
/// this returns only the spec.
pub fn build(config: &WebhookSinkConfig, input: &Schema) -> Result<WebhookSpec, OptionError> {
    check_url(&config.url).map_err(|message| OptionError::new("url", message))?;
    if config.batch_max_records == 0 {
        return Err(OptionError::new("batch_max_records", "must be at least 1"));
    }
    for (name, value) in &config.headers {
        check_header(name, value).map_err(|message| OptionError::new("headers", message))?;
    }
    let timeout = positive_duration("timeout", &config.timeout)?;
    let retry_initial = positive_duration("retry_initial", &config.retry_initial)?;
    let retry_max = positive_duration("retry_max", &config.retry_max)?;
    if let Some(tls) = &config.tls {
        if !config.url.starts_with("https://") {
            return Err(OptionError::new(
                "tls",
                format!("`tls` applies to https:// URLs, not `{}`", config.url),
            ));
        }
        tls.ureq()
            .map_err(|message| OptionError::new("tls", message))?;
    }
    if retry_max < retry_initial {
        return Err(OptionError::new(
            "retry_max",
            format!(
                "`{}` is shorter than retry_initial `{}`",
                config.retry_max, config.retry_initial
            ),
        ));
    }
    Ok(WebhookSpec {
        pipeline: DEFAULT_PIPELINE.into(),
        schema: Arc::new(input.clone()),
        url: config.url.clone(),
        batch_max_records: config.batch_max_records,
        headers: config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        timeout,
        retry_initial,
        retry_max,
        tls: config.tls.clone(),
    })
}

/// One sink instance; see the module docs.
#[derive(Debug)]
pub struct WebhookSink {
    spec: WebhookSpec,
    sink: Arc<str>,
    shard: usize,
    /// Closed batches of the current epoch: each a JSON array of records.
    batches: Vec<String>,
    /// The open batch: `[` and its records so far, without the `]`.
    open: String,
    /// Records in `open`.
    open_records: usize,
}

impl WebhookSink {
    /// The instance of `context`'s shard.
    pub fn new(spec: WebhookSpec, context: &ShardContext) -> WebhookSink {
        WebhookSink {
            spec,
            sink: context.node.clone(),
            shard: context.shard,
            batches: Vec::new(),
            open: String::new(),
            open_records: 0,
        }
    }

    /// Appends one row to the open batch.
    pub fn push(&mut self, row: &crate::row::ArchivedRow) {
        self.open
            .push(if self.open_records == 0 { '[' } else { ',' });
        write_row_json(row, &self.spec.schema, &mut self.open);
        self.open_records += 1;
        if self.open_records >= self.spec.batch_max_records {
            self.close_batch();
        }
    }

    fn close_batch(&mut self) {
        if self.open_records == 0 {
            return;
        }
        self.open.push(']');
        let capacity = self.open.capacity();
        self.batches.push(std::mem::replace(
            &mut self.open,
            String::with_capacity(capacity),
        ));
        self.open_records = 0;
    }

    /// Closes the epoch: its batches, to send once it commits (`None` if
    /// it had no rows).
    pub fn stage(&mut self, epoch: u64) -> Option<WebhookStaged> {
        self.close_batch();
        if self.batches.is_empty() {
            return None;
        }
        Some(WebhookStaged {
            header: StagedHeader {
                url: self.spec.url.clone(),
                headers: self.spec.headers.clone(),
                timeout_ms: duration_ms(self.spec.timeout),
                retry_initial_ms: duration_ms(self.spec.retry_initial),
                retry_max_ms: duration_ms(self.spec.retry_max),
                tls: self.spec.tls.clone(),
                pipeline: self.spec.pipeline.clone(),
                sink: self.sink.to_string(),
                shard: self.shard as u64,
                epoch,
            },
            batches: std::mem::take(&mut self.batches),
        })
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Sink for WebhookSink {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        for row in batch.iter() {
            self.push(row);
        }
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, OperatorError> {
        Ok(self
            .stage(epoch)
            .map(|staged| staged.to_bytes())
            .unwrap_or_default())
    }

    fn commit(staged: &[u8], control: &CommitControl) -> Result<(), OperatorError> {
        if staged.is_empty() {
            return Ok(());
        }
        WebhookStaged::from_bytes(staged)
            .map_err(OperatorError::invalid)?
            .deliver(control)
            .map_err(OperatorError::external)
    }
}

/// What `commit` needs besides the batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedHeader {
    /// The endpoint.
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The limit of one attempt.
    pub timeout_ms: u64,
    /// The first pause between attempts.
    pub retry_initial_ms: u64,
    /// The longest pause between attempts.
    pub retry_max_ms: u64,
    /// TLS settings of an `https://` URL (absent from what earlier builds
    /// staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// The pipeline's name.
    pub pipeline: String,
    /// The sink's node name.
    pub sink: String,
    /// The shard that staged it.
    pub shard: u64,
    /// The epoch.
    pub epoch: u64,
}

/// One shard's batches of one epoch, staged for delivery.
///
/// Byte format (version 1, little-endian): `u8` version, `u32` length and
/// the [`StagedHeader`] as JSON, `u32` batch count, then per batch a `u32`
/// length and the batch's JSON array of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookStaged {
    /// Where and how to send.
    pub header: StagedHeader,
    /// The batches, in sequence order: JSON arrays of records.
    pub batches: Vec<String>,
}

const STAGED_VERSION: u8 = 1;

impl WebhookStaged {
    /// Encodes it for the WAL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("a header serializes");
        let length: usize = self.batches.iter().map(|batch| 4 + batch.len()).sum();
        let mut bytes = Vec::with_capacity(1 + 4 + header.len() + 4 + length);
        bytes.push(STAGED_VERSION);
        push_part(&mut bytes, &header);
        bytes.extend_from_slice(&(self.batches.len() as u32).to_le_bytes());
        for batch in &self.batches {
            push_part(&mut bytes, batch.as_bytes());
        }
        bytes
    }

    /// Decodes what [`to_bytes`](WebhookStaged::to_bytes) made, checking
    /// everything: the bytes come back from disk.
    pub fn from_bytes(bytes: &[u8]) -> Result<WebhookStaged, String> {
        let bad = |what: &str| format!("not a staged webhook epoch: {what}");
        let (&version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != STAGED_VERSION {
            return Err(bad("unknown version"));
        }
        let header = take_part(&mut rest).ok_or_else(|| bad("truncated header"))?;
        let header: StagedHeader =
            serde_json::from_slice(header).map_err(|error| bad(&error.to_string()))?;
        let count = take_u32(&mut rest).ok_or_else(|| bad("truncated"))?;
        let mut batches = Vec::with_capacity((count as usize).min(rest.len() / 4));
        for _ in 0..count {
            let batch = take_part(&mut rest).ok_or_else(|| bad("truncated batch"))?;
            let batch = std::str::from_utf8(batch).map_err(|_| bad("a batch is not UTF-8"))?;
            batches.push(batch.to_owned());
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(WebhookStaged { header, batches })
    }

    /// The idempotency key of batch `sequence`.
    pub fn key(&self, sequence: usize) -> String {
        let header = &self.header;
        format!(
            "{}-{}-{}-{}-{sequence}",
            header.pipeline, header.sink, header.shard, header.epoch
        )
    }

    /// The request body of batch `sequence`.
    pub fn body(&self, sequence: usize) -> String {
        let header = &self.header;
        let string = |text: &str| serde_json::to_string(text).expect("strings serialize");
        format!(
            "{{\"pipeline\":{},\"sink\":{},\"shard\":{},\"epoch\":{},\"sequence\":{sequence},\
             \"idempotency_key\":{},\"records\":{}}}",
            string(&header.pipeline),
            string(&header.sink),
            header.shard,
            header.epoch,
            string(&self.key(sequence)),
            self.batches[sequence]
        )
    }

    /// Sends every batch in order, each retried until the receiver accepts
    /// it; see the module docs. Returns an error for a permanent rejection,
    /// or when `control` is cancelled between attempts (a stop that
    /// overran its bound: the batches go again at the next start).
    pub fn deliver(&self, control: &CommitControl) -> Result<(), String> {
        let header = &self.header;
        let agent = agent(header.timeout_ms, &header.tls)
            .map_err(|error| format!("the webhook to {} cannot connect: {error}", header.url))?;
        for sequence in 0..self.batches.len() {
            let key = self.key(sequence);
            let body = self.body(sequence);
            let mut pause = Duration::from_millis(header.retry_initial_ms);
            let pause_max = Duration::from_millis(header.retry_max_ms);
            let mut attempt: u64 = 1;
            loop {
                match post(&agent, header, &key, &body) {
                    Attempt::Delivered => break,
                    Attempt::Rejected(message) => return Err(message),
                    Attempt::Retry(reason) => {
                        tracing::warn!(
                            url = %header.url,
                            idempotency_key = %key,
                            attempt,
                            retry_in_ms = pause.as_millis() as u64,
                            "webhook delivery failed, retrying: {reason}"
                        );
                        if !control.sleep(pause) {
                            return Err(format!(
                                "delivery of {key} to {} given up: the run is stopping",
                                header.url
                            ));
                        }
                        pause = (pause * 2).min(pause_max);
                        attempt += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

fn push_part(bytes: &mut Vec<u8>, part: &[u8]) {
    let length = u32::try_from(part.len()).expect("a staged part is under 4 GiB");
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(part);
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (length, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_le_bytes(*length))
}

fn take_part<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let length = take_u32(rest)? as usize;
    if rest.len() < length {
        return None;
    }
    let (part, tail) = rest.split_at(length);
    *rest = tail;
    Some(part)
}

/// One HTTP agent per attempt timeout and TLS setting, shared by every
/// commit of the process, so connections to the receiver are kept and
/// reused; an error when the TLS files cannot be read.
fn agent(timeout_ms: u64, tls: &Option<ClientTls>) -> Result<ureq::Agent, String> {
    type Agents = HashMap<(u64, Option<ClientTls>), ureq::Agent>;
    static AGENTS: OnceLock<Mutex<Agents>> = OnceLock::new();
    let mut agents = AGENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (timeout_ms, tls.clone());
    if let Some(agent) = agents.get(&key) {
        return Ok(agent.clone());
    }
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None);
    if let Some(tls) = tls {
        config = config.tls_config(tls.ureq()?);
    }
    let agent: ureq::Agent = config.build().into();
    agents.insert(key, agent.clone());
    Ok(agent)
}

enum Attempt {
    Delivered,
    Retry(String),
    Rejected(String),
}

fn post(agent: &ureq::Agent, header: &StagedHeader, key: &str, body: &str) -> Attempt {
    let mut request = agent
        .post(&header.url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key);
    for (name, value) in &header.headers {
        request = request.header(name, value);
    }
    match request.send(body) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut text = Vec::new();
            // Read (a bounded part of) the answer: the whole of a small one
            // lets the connection be reused, the start of any one explains
            // a rejection.
            let _ = response
                .body_mut()
                .as_reader()
                .take(WEBHOOK_ERROR_BODY_MAX_BYTES)
                .read_to_end(&mut text);
            match status {
                200..=299 => Attempt::Delivered,
                408 | 429 | 500..=599 => Attempt::Retry(format!("status {status}")),
                _ => Attempt::Rejected(format!(
                    "POST {} (Idempotency-Key {key}) was rejected with status {status}: {}",
                    header.url,
                    String::from_utf8_lossy(&text).trim()
                )),
            }
        }
        Err(error) => match error {
            // The receiver's certificate does not verify (another CA, a
            // wrong name, expired): a setting to fix, not a passing fault.
            ureq::Error::Io(ref io) if refused_certificate(io) => Attempt::Rejected(format!(
                "POST {} (Idempotency-Key {key}) cannot be sent: {error} (see the sink's `tls.ca`)",
                header.url
            )),
            ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
            | ureq::Error::ConnectProxyFailed(_) => Attempt::Retry(error.to_string()),
            other => Attempt::Rejected(format!(
                "POST {} (Idempotency-Key {key}) cannot be sent: {other}",
                header.url
            )),
        },
    }
}

/// Whether `error` is rustls refusing the receiver's certificate.
fn refused_certificate(error: &std::io::Error) -> bool {
    matches!(
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

impl Component for WebhookSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let spec = build(self, &context.schema())?.with_pipeline(context.pipeline);
        Ok(Planned::new(Vec::new(), spec))
    }
}

impl Node for WebhookSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.sink(name, move |context| WebhookSink::new(spec.clone(), context));
        connect_forward(graph, name, inputs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Type;

    fn config() -> WebhookSinkConfig {
        WebhookSinkConfig {
            inputs: vec!["alerts".into()],
            url: "http://127.0.0.1:9/hook".into(),
            batch_max_records: default_batch_max_records(),
            headers: BTreeMap::new(),
            timeout: default_timeout(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            tls: None,
        }
    }

    fn schema() -> Schema {
        Schema::new([("ip", Type::Ip), ("count", Type::Int)])
    }

    impl WebhookSinkConfig {
        fn with_no_tls(mut self) -> WebhookSinkConfig {
            self.tls = None;
            self
        }
    }

    #[test]
    fn defaults_come_from_a_minimal_table() {
        let parsed: WebhookSinkConfig =
            toml::from_str("url = \"http://127.0.0.1:9/hook\"\ninputs = [\"alerts\"]").unwrap();
        assert_eq!(parsed, config());
        let spec = build(&parsed, &schema()).unwrap();
        assert_eq!(spec.pipeline, DEFAULT_PIPELINE);
        assert_eq!(spec.timeout, Duration::from_secs(5));
        assert_eq!(spec.retry_initial, Duration::from_millis(100));
        assert_eq!(spec.retry_max, Duration::from_secs(10));
        assert_eq!(spec.batch_max_records, 100);
        assert!(
            toml::from_str::<WebhookSinkConfig>("url = \"http://x\"\ntype = \"webhook\"").is_err()
        );
    }

    #[test]
    fn bad_options_are_errors_naming_the_option() {
        let option = |change: fn(&mut WebhookSinkConfig)| {
            let mut config = config();
            change(&mut config);
            build(&config, &schema()).unwrap_err().option
        };
        assert_eq!(option(|c| c.url = "ftp://example.com/".into()), "url");
        assert_eq!(option(|c| c.url = "http:///path".into()), "url");
        assert_eq!(option(|c| c.url = "http://host:99999/".into()), "url");
        assert_eq!(option(|c| c.batch_max_records = 0), "batch_max_records");
        assert_eq!(option(|c| c.timeout = "5".into()), "timeout");
        assert_eq!(option(|c| c.timeout = "0s".into()), "timeout");
        assert_eq!(option(|c| c.retry_initial = "fast".into()), "retry_initial");
        assert_eq!(option(|c| c.retry_max = "50ms".into()), "retry_max");
        assert_eq!(
            option(|c| {
                c.headers.insert("Idempotency-Key".into(), "x".into());
            }),
            "headers"
        );
        assert_eq!(
            option(|c| {
                c.headers.insert("X-Bad".into(), "a\r\nb".into());
            }),
            "headers"
        );
        let tls = |url: &str, ca: &str| WebhookSinkConfig {
            url: url.into(),
            tls: Some(ClientTls {
                ca: Some(ca.into()),
                cert: None,
                key: None,
            }),
            ..config()
        };
        let error = build(&tls("http://example.com/", "ca.pem"), &schema()).unwrap_err();
        assert_eq!(error.option, "tls");
        assert!(error.message.contains("applies to https://"), "{error}");
        let error = build(&tls("https://example.com/", "/no/ca.pem"), &schema()).unwrap_err();
        assert!(
            error.message.contains("`tls.ca = \"/no/ca.pem\"`"),
            "{error}"
        );
        assert!(build(
            &tls("https://example.com/", "/no/ca.pem").with_no_tls(),
            &schema()
        )
        .is_ok());
        let mut fine = config();
        fine.url = "http://[::1]:8080/a?b=c".into();
        fine.headers
            .insert("Authorization".into(), "Bearer x".into());
        assert!(build(&fine, &schema()).is_ok());
    }

    fn staged(batches: &[&str]) -> WebhookStaged {
        WebhookStaged {
            header: StagedHeader {
                url: "http://127.0.0.1:9/".into(),
                headers: vec![("Authorization".into(), "Bearer t".into())],
                timeout_ms: 5000,
                retry_initial_ms: 100,
                retry_max_ms: 10_000,
                tls: None,
                pipeline: "edge".into(),
                sink: "alerts".into(),
                shard: 3,
                epoch: 12,
            },
            batches: batches.iter().map(|batch| batch.to_string()).collect(),
        }
    }

    #[test]
    fn staged_bytes_round_trip_and_corruption_is_an_error() {
        let original = staged(&["[{\"a\":1}]", "[{\"a\":\"é\"}]"]);
        let bytes = original.to_bytes();
        assert_eq!(WebhookStaged::from_bytes(&bytes), Ok(original.clone()));
        for cut in 0..bytes.len() {
            assert!(
                WebhookStaged::from_bytes(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(WebhookStaged::from_bytes(&longer).is_err());
        let mut version = bytes;
        version[0] = 9;
        assert!(WebhookStaged::from_bytes(&version).is_err());
    }

    fn context(shard: usize) -> ShardContext {
        ShardContext {
            shard,
            shards: 4,
            instance: shard,
            instances: 4,
            node: "alerts".into(),
            committed_epoch: 0,
            snapshots: true,
            metrics: weir_runtime::metrics::Registry::new(4),
        }
    }

    fn archived(row: &Row) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(row).unwrap()
    }

    #[test]
    fn rows_of_an_epoch_split_into_batches_of_at_most_batch_max_records() {
        let mut spec = build(
            &WebhookSinkConfig {
                batch_max_records: 2,
                ..config()
            },
            &schema(),
        )
        .unwrap()
        .with_pipeline("edge");
        spec.headers.push(("X-Team".into(), "soc".into()));
        let mut sink = WebhookSink::new(spec, &context(2));
        assert_eq!(sink.stage(1), None, "an epoch without rows sends nothing");
        for count in 0..5 {
            let row = Row {
                values: vec![
                    crate::row::Value::Ip(crate::row::Ip::from(
                        "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                    )),
                    crate::row::Value::Int(count),
                ],
            };
            let bytes = archived(&row);
            sink.push(
                rkyv::access::<crate::row::ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap(),
            );
        }
        let staged = sink.stage(2).expect("rows staged");
        assert_eq!(staged.header.epoch, 2);
        assert_eq!(staged.header.shard, 2);
        assert_eq!(staged.header.sink, "alerts");
        assert_eq!(staged.header.pipeline, "edge");
        assert_eq!(
            staged.header.headers,
            [("X-Team".to_string(), "soc".to_string())]
        );
        let counts: Vec<Vec<i64>> = staged
            .batches
            .iter()
            .map(|batch| {
                let records: Vec<serde_json::Value> = serde_json::from_str(batch).unwrap();
                records
                    .iter()
                    .map(|record| {
                        assert_eq!(record["ip"], "10.0.0.1");
                        record["count"].as_i64().unwrap()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(counts, [vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(sink.stage(3), None, "the next epoch starts empty");
    }

    #[test]
    fn bodies_carry_the_key_and_the_records() {
        let staged = staged(&["[{\"a\":1}]", "[{\"a\":2},{\"a\":3}]"]);
        assert_eq!(staged.key(1), "edge-alerts-3-12-1");
        let body: serde_json::Value = serde_json::from_str(&staged.body(1)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "pipeline": "edge", "sink": "alerts", "shard": 3, "epoch": 12,
                "sequence": 1, "idempotency_key": "edge-alerts-3-12-1",
                "records": [{"a": 2}, {"a": 3}],
            })
        );
    }
}
