//! [`StdoutSink`]: rows as NDJSON lines on standard output, a debugging
//! aid like Vector's `console` sink.
//!
//! # Configuration
//! ```toml
//! [sinks.debug]
//! type = "stdout"            # the integrator's tag; not part of this struct
//! inputs = ["parse"]
//! format = "ndjson"          # the only format, and the default
//! ```
//!
//! # Behaviour
//! Each row is one JSON object on one line ([`write_row_json`]: fields
//! named by the input schema, nulls left out, timestamps as RFC 3339
//! text). Each shard buffers its lines and writes them to standard output
//! in one locked write, so lines of different shards never mix within a
//! line (their order across shards is arbitrary). The buffer is written
//! when it holds [`STDOUT_BUFFER_BYTES`], when the watermark rises, at
//! every epoch's pre-commit and when the inputs end. The write blocks the
//! shard while standard output is slow (a debugging aid, not a
//! throughput path).
//!
//! # Delivery: at-least-once
//! Standard output cannot take back what it printed: lines are printed
//! when written, before their epoch commits. After a crash, the run
//! resumes from the last committed epoch and prints the rows of the epochs
//! after it *again*. Use a `file` sink for exactly-once output.
//!
//! A write error (a closed pipe) drops the buffered lines and later ones;
//! the next pre-commit returns it, which fails a run with a data
//! directory. Without one, the error is printed once to standard error.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, OperatorError, ShardContext, Sink};

use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::limits::STDOUT_BUFFER_BYTES;
use crate::row::{write_row_json, OptionError, Row, Schema, SchemaRef};

/// The configuration of a [`StdoutSink`] (a `[sinks.NAME]` table without
/// its `type`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// Components whose output this one reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The line format.
    #[serde(default)]
    pub format: StdoutFormat,
}

/// The format of a [`StdoutSink`]'s lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    /// One JSON object per line.
    #[default]
    Ndjson,
}

/// A checked [`StdoutSinkConfig`].
#[derive(Debug, Clone)]
pub struct StdoutSpec {
    /// The input's schema.
    pub schema: SchemaRef,
    /// The format.
    pub format: StdoutFormat,
    /// Where lines go instead of standard output, when set (tests and
    /// tools capture output this way).
    pub capture: Option<Arc<Mutex<Vec<u8>>>>,
}

/// Checks `config` against the input's schema (there is nothing to
/// reject today; the signature matches the other sinks').
pub fn build(config: &StdoutSinkConfig, input: &Schema) -> Result<StdoutSpec, OptionError> {
    Ok(StdoutSpec {
        schema: Arc::new(input.clone()),
        format: config.format,
        capture: None,
    })
}

/// Prints rows as NDJSON; see the module docs.
#[derive(Debug)]
pub struct StdoutSink {
    spec: StdoutSpec,
    /// Lines not yet written out.
    buffer: String,
    /// The first write error, until a pre-commit reports it.
    error: Option<io::Error>,
    /// Whether an error was met (later lines are dropped).
    failed: bool,
}

impl StdoutSink {
    /// The sink of one shard.
    pub fn new(spec: StdoutSpec, context: &ShardContext) -> StdoutSink {
        let _ = context;
        StdoutSink {
            spec,
            buffer: String::with_capacity(STDOUT_BUFFER_BYTES),
            error: None,
            failed: false,
        }
    }

    /// Writes the buffered lines out.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if !self.failed {
            let written = match &self.spec.capture {
                Some(capture) => {
                    let mut capture = capture.lock().unwrap_or_else(|e| e.into_inner());
                    capture.extend_from_slice(self.buffer.as_bytes());
                    Ok(())
                }
                None => {
                    let mut stdout = io::stdout().lock();
                    stdout
                        .write_all(self.buffer.as_bytes())
                        .and_then(|()| stdout.flush())
                }
            };
            if let Err(error) = written {
                self.failed = true;
                self.error = Some(error);
            }
        }
        self.buffer.clear();
    }
}

impl Sink for StdoutSink {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        if self.failed {
            return;
        }
        for row in batch.iter() {
            write_row_json(row, &self.spec.schema, &mut self.buffer);
            self.buffer.push('\n');
            if self.buffer.len() >= STDOUT_BUFFER_BYTES {
                self.flush();
            }
        }
    }

    fn on_watermark(&mut self, _watermark: u64) {
        self.flush();
    }

    fn finish(&mut self) {
        self.flush();
        if let Some(error) = self.error.take() {
            eprintln!("weir: stdout sink: {error}");
        }
    }

    /// Writes the buffered lines out; reports a write error. Nothing is
    /// staged: printed lines cannot be taken back (at-least-once).
    fn precommit(&mut self, _epoch: u64) -> Result<Vec<u8>, OperatorError> {
        self.flush();
        match self.error.take() {
            Some(error) => Err(OperatorError::io(format!("stdout sink: {error}"))),
            None => Ok(Vec::new()),
        }
    }
}

impl Component for StdoutSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let spec = build(self, &context.schema())?;
        Ok(Planned::new(Vec::new(), spec))
    }
}

impl Node for StdoutSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.sink(name, move |context| StdoutSink::new(spec.clone(), context));
        connect_forward(graph, name, inputs);
    }
}
