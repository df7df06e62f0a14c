//! [`PostgresSink`]: the `postgres` sink of pipeline files. Writes rows to
//! a PostgreSQL table, exactly once, as the warehouse of a pipeline.
//!
//! # Options ([`PostgresSinkConfig`])
//! - `url`: a libpq connection string, as a URL
//!   (`postgresql://user:password@127.0.0.1:5432/db`) or as `key=value`
//!   pairs (`host=127.0.0.1 port=5432 user=weir dbname=db`).
//! - `tls` (optional): `{ ca, cert, key }`, PEM files
//!   ([`ClientTls`](super::client_tls::ClientTls)). With it the connection
//!   must be TLS (libpq's `sslmode=verify-full`): the server's certificate
//!   is checked against `ca` (or Mozilla's roots) and the URL's host, and
//!   `cert`/`key` are presented when the server asks for a client
//!   certificate. Without it the connection is plain; a URL asking for
//!   `sslmode=require` without `tls` is refused.
//! - `table`: `name` or `schema.name`, letters, digits and `_`. Names are
//!   quoted, so their case is kept (`Events` is a different table from
//!   `events`).
//! - `create_table` (default `true`): create the table if it does not exist,
//!   one column per input field, named after it (quoted), typed
//!   `int`→`BIGINT`, `float`→`DOUBLE PRECISION`, `string`→`TEXT`,
//!   `bool`→`BOOLEAN`, `timestamp`→`TIMESTAMPTZ`, `ip`→`INET`,
//!   `list`/`map`→`JSONB`, all nullable. An existing table is used as it
//!   is: it needs a column of a compatible type for every input field
//!   (extra columns need defaults or to be nullable).
//!
//! # Exactly once
//! The sink keeps one row per sink instance in the progress table
//! `weir_sink_progress(pipeline TEXT, sink TEXT, shard INTEGER, epoch
//! BIGINT, PRIMARY KEY (pipeline, sink, shard))` (created if missing), in
//! the database's default schema.
//! - `write` encodes each row as a line of `COPY ... FROM STDIN` text into
//!   the current epoch's buffer, in memory.
//! - `precommit` returns that buffer as bytes (logged in the WAL) with what
//!   `commit` needs: connection string, table, columns, names, shard and
//!   epoch. An epoch without rows returns nothing.
//! - `commit` runs once the epoch committed, on a blocking thread off the
//!   shard, in one transaction: insert the progress row if missing, lock it
//!   (`SELECT epoch ... FOR UPDATE`); if it already holds this epoch or a
//!   later one, roll back: the rows are there already; otherwise `COPY`
//!   the rows in, set the progress row's epoch, and `COMMIT`. The rows and
//!   the progress become visible together or not at all, so recovery
//!   running a commit again never duplicates rows.
//!
//! The pipeline name (from the integrator, default [`DEFAULT_PIPELINE`]),
//! the sink's node name and the shard identify the progress row. **A run on
//! a fresh data directory starts again at epoch 1**, so it must not reuse
//! the `(pipeline, sink)` of an earlier data directory: its epochs would
//! look done and be skipped. Delete the progress rows
//! (`DELETE FROM weir_sink_progress WHERE pipeline = '...'`) or rename the
//! pipeline when starting over.
//!
//! # Connections
//! Each process keeps one connection per connection string and shard,
//! opened by the first commit and reused by later ones (shards commit in
//! parallel, on their own connections). A connection found closed is
//! opened again once, right away; any other error drops the connection and
//! fails the commit, which fails the run: restarting on the same data
//! directory commits the epoch again. The table is created (if asked) the
//! first time a process commits to it.
//!
//! # Values
//! Null fields are SQL `NULL`. Floats that are not finite go in as
//! `NaN`/`Infinity`/`-Infinity`. A string holding a NUL character cannot be
//! stored in `TEXT`: NUL is replaced by U+FFFD (in `TEXT` columns; inside
//! `JSONB` it makes the commit fail).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use weir_runtime::{Batch, OperatorError, ShardContext, Sink};

use super::client_tls::ClientTls;
use crate::component::{connect_forward, Component, Input, Node, PlanContext, Planned};
use crate::row::{write_json_value, ArchivedRow, ArchivedValue, OptionError, Row, Schema, Type};

/// The pipeline name used when the integrator sets none.
pub const DEFAULT_PIPELINE: &str = "weir";

/// The progress table's name.
pub const PROGRESS_TABLE: &str = "weir_sink_progress";

/// The `[sinks.NAME]` table of a `postgres` sink; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The streams it reads (wired by the pipeline builder).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The connection string (URL or `key=value` pairs).
    pub url: String,
    /// The table: `name` or `schema.name`.
    pub table: String,
    /// Whether to create the table if it is missing (default `true`).
    #[serde(default = "default_create_table")]
    pub create_table: bool,
    /// TLS to the server: `{ ca, cert, key }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

fn default_create_table() -> bool {
    true
}

/// A checked [`PostgresSinkConfig`], ready to make sink instances.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresSpec {
    /// The pipeline's name, in the progress table (default
    /// [`DEFAULT_PIPELINE`]); set it with [`PostgresSpec::with_pipeline`].
    pub pipeline: String,
    /// The input's field types, in row order.
    pub types: Vec<Type>,
    /// The connection string.
    pub url: String,
    /// The table, quoted (`"public"."events"`).
    pub table: String,
    /// The column list, quoted: `"a", "b"`.
    pub columns: String,
    /// `CREATE TABLE IF NOT EXISTS ...` when `create_table` is set.
    pub create: Option<String>,
    /// TLS to the server.
    pub tls: Option<ClientTls>,
}

impl PostgresSpec {
    /// The same spec, for the pipeline called `pipeline`.
    pub fn with_pipeline(mut self, pipeline: impl Into<String>) -> PostgresSpec {
        self.pipeline = pipeline.into();
        self
    }
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL type of a field of type `ty`.
pub fn sql_type(ty: Type) -> &'static str {
    match ty {
        Type::Int => "BIGINT",
        Type::Float => "DOUBLE PRECISION",
        Type::String => "TEXT",
        Type::Bool => "BOOLEAN",
        Type::Timestamp => "TIMESTAMPTZ",
        Type::Ip => "INET",
        Type::List | Type::Map => "JSONB",
    }
}

fn quote_table(table: &str) -> Result<String, String> {
    let parts: Vec<&str> = table.split('.').collect();
    let simple = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && part.len() <= 63
    };
    if parts.len() > 2 || !parts.iter().all(|part| simple(part)) {
        return Err(format!(
            "`{table}` is not a table name: write `name` or `schema.name`, \
             with letters, digits and `_`"
        ));
    }
    Ok(parts
        .iter()
        .map(|part| quote_identifier(part))
        .collect::<Vec<_>>()
        .join("."))
}

/// Checks `config` against the input's schema. A sink has no output, so
/// this returns only the spec.
pub fn build(config: &PostgresSinkConfig, input: &Schema) -> Result<PostgresSpec, OptionError> {
    let url = postgres::Config::from_str(&config.url)
        .map_err(|error| OptionError::new("url", format!("not a connection string: {error}")))?;
    match &config.tls {
        Some(tls) => {
            tls.rustls()
                .map_err(|message| OptionError::new("tls", message))?;
        }
        None if url.get_ssl_mode() == postgres::config::SslMode::Require => {
            return Err(OptionError::new(
                "url",
                "`sslmode=require` needs the sink's `tls` table (at least `tls = {}`)",
            ));
        }
        None => {}
    }
    let table = quote_table(&config.table).map_err(|message| OptionError::new("table", message))?;
    if input.is_empty() {
        return Err(OptionError::new(
            "inputs",
            "the input has no fields to write",
        ));
    }
    let columns: Vec<String> = input
        .fields()
        .iter()
        .map(|field| quote_identifier(&field.name))
        .collect();
    let create = config.create_table.then(|| {
        let definitions: Vec<String> = input
            .fields()
            .iter()
            .zip(&columns)
            .map(|(field, column)| format!("{column} {}", sql_type(field.ty)))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {table} ({})",
            definitions.join(", ")
        )
    });
    Ok(PostgresSpec {
        pipeline: DEFAULT_PIPELINE.into(),
        types: input.fields().iter().map(|field| field.ty).collect(),
        url: config.url.clone(),
        table,
        columns: columns.join(", "),
        create,
        tls: config.tls.clone(),
    })
}

/// One sink instance; see the module docs.
#[derive(Debug)]
pub struct PostgresSink {
    spec: PostgresSpec,
    sink: Arc<str>,
    shard: usize,
    /// The current epoch's rows as `COPY` text.
    data: String,
    rows: u64,
    /// JSON of one value, reused.
    scratch: String,
}

impl PostgresSink {
    /// The instance of `context`'s shard.
    pub fn new(spec: PostgresSpec, context: &ShardContext) -> PostgresSink {
        PostgresSink {
            spec,
            sink: context.node.clone(),
            shard: context.shard,
            data: String::new(),
            rows: 0,
            scratch: String::new(),
        }
    }

    /// Appends one row to the current epoch.
    pub fn push(&mut self, row: &ArchivedRow) {
        for (index, _) in self.spec.types.iter().enumerate() {
            if index > 0 {
                self.data.push('\t');
            }
            write_copy_value(row.get(index), &mut self.data, &mut self.scratch);
        }
        self.data.push('\n');
        self.rows += 1;
    }

    /// Closes the epoch: its rows, to write once it commits (`None` if it
    /// had none).
    pub fn stage(&mut self, epoch: u64) -> Option<PostgresStaged> {
        if self.rows == 0 {
            return None;
        }
        let capacity = self.data.capacity();
        let rows = std::mem::take(&mut self.rows);
        Some(PostgresStaged {
            header: StagedHeader {
                url: self.spec.url.clone(),
                tls: self.spec.tls.clone(),
                table: self.spec.table.clone(),
                columns: self.spec.columns.clone(),
                create: self.spec.create.clone(),
                pipeline: self.spec.pipeline.clone(),
                sink: self.sink.to_string(),
                shard: self.shard as u32,
                epoch,
                rows,
            },
            data: std::mem::replace(&mut self.data, String::with_capacity(capacity)),
        })
    }
}

/// Appends `value` in `COPY` text form: `\N` for null, backslash escapes.
fn write_copy_value(value: &ArchivedValue, out: &mut String, scratch: &mut String) {
    match value {
        ArchivedValue::Null => out.push_str("\\N"),
        ArchivedValue::Bool(value) => out.push(if *value { 't' } else { 'f' }),
        ArchivedValue::Int(value) => {
            let _ = write!(out, "{}", value.to_native());
        }
        ArchivedValue::Float(value) => {
            let value = value.to_native();
            if value.is_nan() {
                out.push_str("NaN");
            } else if value.is_infinite() {
                out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                let _ = write!(out, "{value:?}");
            }
        }
        ArchivedValue::String(text) => escape_copy(text, out),
        ArchivedValue::Timestamp(ms) => {
            let ms = ms.to_native();
            match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
                Some(time) => {
                    let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
                }
                // Out of chrono's range: PostgreSQL cannot hold it either,
                // and the commit reports the column.
                None => {
                    let _ = write!(out, "{ms}");
                }
            }
        }
        ArchivedValue::Ip(ip) => {
            let _ = write!(out, "{}", ip.to_ip());
        }
        ArchivedValue::List(_) | ArchivedValue::Map(_) => {
            scratch.clear();
            write_json_value(value, scratch);
            escape_copy(scratch, out);
        }
    }
}

fn escape_copy(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

impl Sink for PostgresSink {
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

    fn commit(staged: &[u8], _control: &weir_runtime::CommitControl) -> Result<(), OperatorError> {
        if staged.is_empty() {
            return Ok(());
        }
        PostgresStaged::from_bytes(staged)
            .map_err(OperatorError::invalid)?
            .commit()
            .map(|_| ())
            .map_err(OperatorError::external)
    }
}

/// What `commit` needs besides the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedHeader {
    /// The connection string.
    pub url: String,
    /// TLS to the server (absent from what earlier builds staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// The table, quoted.
    pub table: String,
    /// The column list, quoted.
    pub columns: String,
    /// The table's `CREATE TABLE IF NOT EXISTS`, if it is to be created.
    pub create: Option<String>,
    /// The pipeline's name.
    pub pipeline: String,
    /// The sink's node name.
    pub sink: String,
    /// The shard that staged it.
    pub shard: u32,
    /// The epoch.
    pub epoch: u64,
    /// Rows in `data`.
    pub rows: u64,
}

/// One shard's rows of one epoch, staged for the warehouse.
///
/// Byte format (version 1): `u8` version, `u32` (little-endian) length and
/// the [`StagedHeader`] as JSON, then the rows as `COPY` text to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStaged {
    /// Where and what to write.
    pub header: StagedHeader,
    /// The rows, one `COPY` text line each.
    pub data: String,
}

const STAGED_VERSION: u8 = 1;

/// What [`PostgresStaged::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The rows were written and the progress moved to the epoch.
    Written,
    /// The progress already held the epoch or a later one: nothing done.
    AlreadyDone,
}

impl PostgresStaged {
    /// Encodes it for the WAL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("a header serializes");
        let mut bytes = Vec::with_capacity(1 + 4 + header.len() + self.data.len());
        bytes.push(STAGED_VERSION);
        let length = u32::try_from(header.len()).expect("a header is under 4 GiB");
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(self.data.as_bytes());
        bytes
    }

    /// Decodes what [`to_bytes`](PostgresStaged::to_bytes) made, checking
    /// everything: the bytes come back from disk.
    pub fn from_bytes(bytes: &[u8]) -> Result<PostgresStaged, String> {
        let bad = |what: &str| format!("not a staged postgres epoch: {what}");
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != STAGED_VERSION {
            return Err(bad("unknown version"));
        }
        let (length, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(bad("truncated header"));
        }
        let (header, data) = rest.split_at(length);
        let header: StagedHeader =
            serde_json::from_slice(header).map_err(|error| bad(&error.to_string()))?;
        let data = std::str::from_utf8(data).map_err(|_| bad("rows are not UTF-8"))?;
        let lines = data.bytes().filter(|&byte| byte == b'\n').count() as u64;
        if lines != header.rows || !(data.is_empty() || data.ends_with('\n')) {
            return Err(bad("row count does not match"));
        }
        Ok(PostgresStaged {
            header,
            data: data.to_owned(),
        })
    }

    /// Writes the rows and the epoch in one transaction, unless the
    /// progress table shows the epoch done; see the module docs.
    pub fn commit(&self) -> Result<Committed, String> {
        let header = &self.header;
        let connection = connection(&header.url, &header.tls, header.shard)?;
        let mut client = connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if client.as_ref().is_some_and(postgres::Client::is_closed) {
            *client = None;
        }
        let mut reopened = false;
        loop {
            if client.is_none() {
                *client = Some(connect(&header.url, header.tls.as_ref())?);
                reopened = true;
            }
            let open = client.as_mut().expect("just connected");
            match self.write(open) {
                Ok(done) => return Ok(done),
                Err(error) => {
                    let closed = open.is_closed();
                    *client = None;
                    if !closed || reopened {
                        return Err(format!(
                            "writing epoch {} of shard {} to table {}: {}",
                            header.epoch,
                            header.shard,
                            header.table,
                            error.describe()
                        ));
                    }
                    // A connection kept from an earlier commit went away
                    // (a server restart, an idle timeout): open a new one
                    // once.
                }
            }
        }
    }

    fn write(&self, client: &mut postgres::Client) -> Result<Committed, WriteError> {
        let header = &self.header;
        ensure_tables(client, &header.url, &header.table, header.create.as_deref())?;
        let mut transaction = client.transaction()?;
        let shard = header.shard as i32;
        let epoch = i64::try_from(header.epoch).unwrap_or(i64::MAX);
        transaction.execute(
            &format!(
                "INSERT INTO {PROGRESS_TABLE} (pipeline, sink, shard, epoch) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING"
            ),
            &[&header.pipeline, &header.sink, &shard],
        )?;
        let done: i64 = transaction
            .query_one(
                &format!(
                    "SELECT epoch FROM {PROGRESS_TABLE} \
                     WHERE pipeline = $1 AND sink = $2 AND shard = $3 FOR UPDATE"
                ),
                &[&header.pipeline, &header.sink, &shard],
            )?
            .get(0);
        if done >= epoch {
            transaction.rollback()?;
            return Ok(Committed::AlreadyDone);
        }
        let mut writer = transaction.copy_in(&format!(
            "COPY {} ({}) FROM STDIN",
            header.table, header.columns
        ))?;
        writer
            .write_all(self.data.as_bytes())
            .map_err(WriteError::Copy)?;
        writer.finish()?;
        transaction.execute(
            &format!(
                "UPDATE {PROGRESS_TABLE} SET epoch = $4 \
                 WHERE pipeline = $1 AND sink = $2 AND shard = $3"
            ),
            &[&header.pipeline, &header.sink, &shard, &epoch],
        )?;
        transaction.commit()?;
        Ok(Committed::Written)
    }
}

/// Why a commit's transaction failed.
#[derive(Debug)]
enum WriteError {
    Postgres(postgres::Error),
    /// Feeding `COPY` failed (the client wraps its error).
    Copy(std::io::Error),
}

impl From<postgres::Error> for WriteError {
    fn from(error: postgres::Error) -> WriteError {
        WriteError::Postgres(error)
    }
}

impl WriteError {
    fn describe(&self) -> String {
        match self {
            WriteError::Postgres(error) => describe(error),
            WriteError::Copy(error) => match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<postgres::Error>())
            {
                Some(error) => describe(error),
                None => error.to_string(),
            },
        }
    }
}

fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                let _ = write!(text, "; {detail}");
            }
            if let Some(where_) = db.where_() {
                let _ = write!(text, "; {where_}");
            }
            text
        }
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

type Shared = Arc<Mutex<Option<postgres::Client>>>;

/// The process's connection for `url`, `tls` and `shard`, opened lazily.
fn connection(url: &str, tls: &Option<ClientTls>, shard: u32) -> Result<Shared, String> {
    type Connections = HashMap<(String, Option<ClientTls>, u32), Shared>;
    static CONNECTIONS: OnceLock<Mutex<Connections>> = OnceLock::new();
    let mut connections = CONNECTIONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(connections
        .entry((url.to_owned(), tls.clone(), shard))
        .or_default()
        .clone())
}

fn connect(url: &str, tls: Option<&ClientTls>) -> Result<postgres::Client, String> {
    let mut config = postgres::Config::from_str(url)
        .map_err(|error| format!("bad connection string: {}", describe(&error)))?;
    let hosts = format!("{:?}", config.get_hosts());
    let connected = match tls {
        Some(tls) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls.rustls()?);
            config
                .ssl_mode(postgres::config::SslMode::Require)
                .connect(tls)
        }
        None => config.connect(postgres::NoTls),
    };
    connected.map_err(|error| format!("cannot connect to {hosts}: {}", describe(&error)))
}

/// Creates the progress table, and the sink's table if `create` is given,
/// once per process and table. Concurrent `CREATE TABLE IF NOT EXISTS`
/// of one table can fail in PostgreSQL, so creation takes an advisory
/// lock.
fn ensure_tables(
    client: &mut postgres::Client,
    url: &str,
    table: &str,
    create: Option<&str>,
) -> Result<(), postgres::Error> {
    static CREATED: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    let created = CREATED.get_or_init(Default::default);
    let key = (url.to_owned(), table.to_owned());
    if created
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(&key)
    {
        return Ok(());
    }
    let mut transaction = client.transaction()?;
    // "weir" in ASCII: an arbitrary key of weir's own.
    transaction.execute("SELECT pg_advisory_xact_lock(2003134834)", &[])?;
    transaction.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (\
         pipeline TEXT NOT NULL, sink TEXT NOT NULL, shard INTEGER NOT NULL, \
         epoch BIGINT NOT NULL, PRIMARY KEY (pipeline, sink, shard))"
    ))?;
    if let Some(create) = create {
        transaction.batch_execute(create)?;
    }
    transaction.commit()?;
    created
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(key);
    Ok(())
}

impl Component for PostgresSinkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let spec = build(self, &context.schema())?.with_pipeline(context.pipeline);
        Ok(Planned::new(Vec::new(), spec))
    }
}

impl Node for PostgresSpec {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        let spec = self.clone();
        graph.sink(name, move |context| {
            PostgresSink::new(spec.clone(), context)
        });
        connect_forward(graph, name, inputs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::{Ip, MapEntry, Value};

    fn config() -> PostgresSinkConfig {
        PostgresSinkConfig {
            inputs: vec![],
            url: "postgresql://weir@127.0.0.1:5432/weir".into(),
            table: "events".into(),
            create_table: true,
            tls: None,
        }
    }

    fn schema() -> Schema {
        Schema::new([
            ("id", Type::Int),
            ("ratio", Type::Float),
            ("path", Type::String),
            ("ok", Type::Bool),
            ("at", Type::Timestamp),
            ("ip", Type::Ip),
            ("tags", Type::List),
            ("attrs", Type::Map),
        ])
    }

    #[test]
    fn build_maps_types_and_quotes_names() {
        let parsed: PostgresSinkConfig =
            toml::from_str("url = \"postgresql://weir@127.0.0.1:5432/weir\"\ntable = \"events\"")
                .unwrap();
        assert_eq!(parsed, config());
        let spec = build(&parsed, &schema()).unwrap();
        assert_eq!(spec.table, "\"events\"");
        assert_eq!(
            spec.columns,
            "\"id\", \"ratio\", \"path\", \"ok\", \"at\", \"ip\", \"tags\", \"attrs\""
        );
        assert_eq!(
            spec.create.as_deref(),
            Some(
                "CREATE TABLE IF NOT EXISTS \"events\" (\"id\" BIGINT, \"ratio\" DOUBLE PRECISION, \
                 \"path\" TEXT, \"ok\" BOOLEAN, \"at\" TIMESTAMPTZ, \"ip\" INET, \"tags\" JSONB, \
                 \"attrs\" JSONB)"
            )
        );
        let key_value = PostgresSinkConfig {
            url: "host=127.0.0.1 port=5432 user=weir dbname=weir".into(),
            table: "public.Events".into(),
            create_table: false,
            ..config()
        };
        let spec = build(&key_value, &schema()).unwrap();
        assert_eq!(spec.table, "\"public\".\"Events\"");
        assert_eq!(spec.create, None);
        assert_eq!(spec.pipeline, DEFAULT_PIPELINE);
        assert_eq!(spec.with_pipeline("edge").pipeline, "edge");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn bad_options_are_errors_naming_the_option() {
        let option = |change: fn(&mut PostgresSinkConfig)| {
            let mut config = config();
            change(&mut config);
            build(&config, &schema()).unwrap_err().option
        };
        assert_eq!(
            option(|c| c.url = "postgresql://h:notaport/db".into()),
            "url"
        );
        assert_eq!(option(|c| c.url = "nonsense=1".into()), "url");
        assert_eq!(option(|c| c.table = "a.b.c".into()), "table");
        assert_eq!(option(|c| c.table = "drop table x;".into()), "table");
        assert_eq!(option(|c| c.table = String::new()), "table");
        assert_eq!(option(|c| c.table = "1st".into()), "table");
        assert_eq!(
            build(&config(), &Schema::default()).unwrap_err().option,
            "inputs"
        );
        assert!(toml::from_str::<PostgresSinkConfig>(
            "url = \"x\"\ntable = \"t\"\ntype = \"postgres\""
        )
        .is_err());
    }

    fn copy_line(values: Vec<Value>) -> String {
        let types = vec![Type::String; values.len()];
        let row = Row { values };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&row).unwrap();
        let archived = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
        let mut sink = PostgresSink {
            spec: PostgresSpec {
                pipeline: DEFAULT_PIPELINE.into(),
                types,
                url: String::new(),
                table: String::new(),
                columns: String::new(),
                create: None,
                tls: None,
            },
            sink: "s".into(),
            shard: 0,
            data: String::new(),
            rows: 0,
            scratch: String::new(),
        };
        sink.push(archived);
        let staged = sink.stage(4).unwrap();
        assert_eq!(staged.header.rows, 1);
        assert_eq!(sink.stage(5), None);
        staged.data
    }

    #[test]
    fn values_become_copy_text() {
        let line = copy_line(vec![
            Value::Int(-7),
            Value::Float(0.1),
            Value::Float(f64::NEG_INFINITY),
            Value::String("a\tb\\c\nd\re\0".into()),
            Value::Bool(true),
            Value::Timestamp(1_700_000_000_123),
            Value::Ip(Ip::from("10.0.0.7".parse::<std::net::IpAddr>().unwrap())),
            Value::List(vec![Value::String("x\\y".into()), Value::Null]),
            Value::Map(vec![MapEntry {
                key: "k".into(),
                value: Value::Int(1),
            }]),
            Value::Null,
        ]);
        assert_eq!(
            line,
            "-7\t0.1\t-Infinity\ta\\tb\\\\c\\nd\\re\u{fffd}\tt\t2023-11-14T22:13:20.123Z\t\
             10.0.0.7\t[\"x\\\\\\\\y\",null]\t{\"k\":1}\t\\N\n"
        );
    }

    #[test]
    fn staged_bytes_round_trip_and_corruption_is_an_error() {
        let staged = PostgresStaged {
            header: StagedHeader {
                url: "host=127.0.0.1".into(),
                tls: None,
                table: "\"t\"".into(),
                columns: "\"a\"".into(),
                create: Some("CREATE TABLE IF NOT EXISTS \"t\" (\"a\" BIGINT)".into()),
                pipeline: "p".into(),
                sink: "s".into(),
                shard: 1,
                epoch: 9,
                rows: 2,
            },
            data: "1\n2\n".into(),
        };
        let bytes = staged.to_bytes();
        assert_eq!(PostgresStaged::from_bytes(&bytes), Ok(staged));
        for cut in 0..bytes.len() {
            assert!(
                PostgresStaged::from_bytes(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = bytes;
        longer.extend_from_slice(b"3\n");
        assert!(PostgresStaged::from_bytes(&longer).is_err());
    }
}
