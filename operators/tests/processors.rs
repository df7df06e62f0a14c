//! Goal: `parse`, `enrich` and `dedup` run as real nodes of a
//! `weir_runtime::Runtime`: a 2-shard graph lines → parse → enrich →
//! dedup (hash-partitioned by `dedup::partition_hash`) → sink delivers each
//! distinct (client, path) of the well-formed access-log lines exactly
//! once, enriched by longest-prefix CIDR match, while every malformed line
//! reaches the sink wired to parse's port 1 (`connect_port`) as a dead
//! letter with its reason; none is lost or duplicated.
//!
//! Method: a source splits a fixed list of lines over its instances; two
//! collecting sinks gather rows and hand them over at `finish`. Expected
//! output is computed directly from the list (a linear scan for the CIDR
//! match). No assertion depends on timing or on the interleaving of
//! shards: every repeat of an identity carries the same content and all
//! times fall inside the dedup window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use weir_operators::processors::dedup::{self, Dedup, DedupConfig};
use weir_operators::processors::enrich::{self, ColumnConfig, Enrich, EnrichConfig, MatchKind};
use weir_operators::processors::parse::{self, FieldTypes, Parse, ParseConfig, ParseFormat};
use weir_operators::row::{Row, Schema, Type, Value};
use weir_runtime::{
    Batch, Emitter, GraphBuilder, Partition, Runtime, ShardContext, Sink, Source, SourcePoll,
};

/// Emits its share of `lines` as one-field rows (`line: string`).
struct Lines {
    lines: Arc<Vec<String>>,
    next: usize,
    step: usize,
}

impl Source for Lines {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        let mut row = Row::nulls(1);
        for _ in 0..out.batch_records_max() {
            let Some(line) = self.lines.get(self.next) else {
                return SourcePoll::Exhausted;
            };
            row.values[0] = Value::String(line.clone());
            out.push(&row);
            self.next += self.step;
        }
        SourcePoll::Ready
    }
}

/// Collects every row it reads; hands them over at the end of the run.
struct Collect {
    local: Vec<Row>,
    all: Arc<Mutex<Vec<Row>>>,
}

impl Sink for Collect {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        self.local.extend(batch.iter().map(|row| row.to_row()));
    }

    fn finish(&mut self) {
        self.all.lock().unwrap().append(&mut self.local);
    }
}

fn collect(all: &Arc<Mutex<Vec<Row>>>) -> impl Fn(&ShardContext) -> Collect + Send + Sync {
    let all = all.clone();
    move |_context| Collect {
        local: Vec::new(),
        all: all.clone(),
    }
}

const NETWORKS: &str = "network,country\n\
    0.0.0.0/0,ZZ\n\
    10.0.0.0/8,AA\n\
    10.1.0.0/16,BB\n\
    10.1.2.0/24,CC\n\
    2001:db8::/32,EE\n\
    2001:db8:1::/48,FF\n";

/// The country of `client` by a linear longest-prefix scan of NETWORKS.
fn country_of(client: &str) -> Option<&'static str> {
    let address: std::net::IpAddr = client.parse().unwrap();
    let rules: [(&str, u8, &str); 6] = [
        ("0.0.0.0", 0, "ZZ"),
        ("10.0.0.0", 8, "AA"),
        ("10.1.0.0", 16, "BB"),
        ("10.1.2.0", 24, "CC"),
        ("2001:db8::", 32, "EE"),
        ("2001:db8:1::", 48, "FF"),
    ];
    let bits = |addr: std::net::IpAddr| -> (u128, u32) {
        match addr {
            std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
            std::net::IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    let (value, family) = bits(address);
    rules
        .iter()
        .filter_map(|(network, length, country)| {
            let (network, network_family) = bits(network.parse().unwrap());
            let mask = if *length == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(*length))
            };
            (network_family == family && value & mask == network).then_some((*length, *country))
        })
        .max()
        .map(|(_, country)| country)
}

const CLIENTS: [&str; 7] = [
    "10.1.2.3",
    "10.1.9.9",
    "10.200.0.1",
    "192.168.1.1",
    "2001:db8:1::5",
    "2001:db8:ff::1",
    "2002::1",
];
const PATHS: [&str; 3] = ["/", "/login", "/img/a.png"];

/// The lines: each (client, path) many times with one time and status,
/// and a malformed line every so often; returns them and, for the
/// malformed ones, the reason expected.
fn lines() -> (Vec<String>, BTreeMap<String, String>) {
    let mut lines = Vec::new();
    let mut bad = BTreeMap::new();
    for index in 0..3_000usize {
        if index % 97 == 0 {
            let line = format!("garbage {index}");
            bad.insert(line.clone(), "line does not match the pattern".into());
            lines.push(line);
            continue;
        }
        if index % 101 == 0 {
            let line = format!(
                r#"host-{index}.example - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1"#
            );
            bad.insert(
                line.clone(),
                format!("client_ip: \"host-{index}.example\" is not a ip"),
            );
            lines.push(line);
            continue;
        }
        let client = CLIENTS[index % CLIENTS.len()];
        let path = PATHS[index / CLIENTS.len() % PATHS.len()];
        let (second, status) = identity_details(client, path);
        lines.push(format!(
            r#"{client} - - [10/Oct/2000:13:{:02}:{:02} +0000] "GET {path} HTTP/1.1" {status} 512 "-" "curl/8""#,
            second / 60,
            second % 60
        ));
    }
    (lines, bad)
}

/// The second of the hour and status every line of `(client, path)`
/// carries.
fn identity_details(client: &str, path: &str) -> (usize, u16) {
    let client_index = CLIENTS.iter().position(|c| *c == client).unwrap();
    let path_index = PATHS.iter().position(|p| *p == path).unwrap();
    (
        client_index * 300 + path_index * 7,
        [200, 404, 500][path_index],
    )
}

#[test]
fn parse_enrich_dedup_run_in_a_runtime_and_dead_letters_reach_port_1() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("networks.csv");
    std::fs::write(&table, NETWORKS).unwrap();

    let input = Schema::new([("line", Type::String)]);
    let parse_config = ParseConfig {
        inputs: vec!["lines".into()],
        field: "line".into(),
        format: ParseFormat::Regex,
        pattern: Some("combined".into()),
        schema: FieldTypes(
            [
                ("client_ip", "ip"),
                ("ts", "timestamp"),
                ("path", "string"),
                ("status", "int"),
            ]
            .iter()
            .map(|(name, ty)| (name.to_string(), ty.to_string()))
            .collect(),
        ),
        drop_source: true,
    };
    let (parse_spec, parsed) = parse::build(&parse_config, &input).unwrap();
    let dead_schema = parse::dead_letter_schema(&input);
    let enrich_config = EnrichConfig {
        inputs: vec!["parse".into()],
        field: "client_ip".into(),
        table,
        format: None,
        key: "network".into(),
        match_kind: MatchKind::Cidr,
        columns: vec![ColumnConfig::Name("country".into())],
        prefix: Some("geo_".into()),
    };
    let (enrich_spec, enriched) = enrich::build(&enrich_config, &parsed).unwrap();
    let dedup_config = DedupConfig {
        inputs: vec!["enrich".into()],
        fields: vec!["client_ip".into(), "path".into()],
        window: "1h".into(),
        time_field: "ts".into(),
    };
    let (dedup_spec, output) = dedup::build(&dedup_config, &enriched).unwrap();
    assert_eq!(
        output.describe(),
        "`client_ip: ip`, `ts: timestamp`, `path: string`, `status: int`, \
         `geo_country: string`"
    );

    let (lines, bad) = lines();
    let lines = Arc::new(lines);
    let (rows, dead) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let mut graph = GraphBuilder::new();
    let source_lines = lines.clone();
    graph.source("lines", move |context| Lines {
        lines: source_lines.clone(),
        next: context.instance,
        step: context.instances,
    });
    graph.processor("parse", move |context| {
        Parse::new(parse_spec.clone(), context)
    });
    graph.processor("enrich", move |context| {
        Enrich::new(enrich_spec.clone(), context)
    });
    let partition_spec = dedup_spec.clone();
    graph.processor("dedup", move |context| {
        Dedup::new(dedup_spec.clone(), context)
    });
    graph.sink("out", collect(&rows));
    graph.sink("dead", collect(&dead));
    graph.connect("lines", "parse", Partition::<Row>::RoundRobin);
    graph.connect("parse", "enrich", Partition::<Row>::Forward);
    graph.connect_port("parse", 1, "dead", Partition::<Row>::Forward);
    graph.connect(
        "enrich",
        "dedup",
        Partition::hash(move |row: &Row| dedup::partition_hash(&partition_spec, row)),
    );
    graph.connect("dedup", "out", Partition::<Row>::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .build()
        .expect("runtime starts");
    runtime.run(graph.build().unwrap()).expect("run succeeds");

    // Dead letters: every malformed line once, with its reason, in the
    // dead-letter schema.
    let (line_at, error_at) = (
        dead_schema.index("line").unwrap(),
        dead_schema.index("error").unwrap(),
    );
    let mut dead_letters = BTreeMap::new();
    for row in dead.lock().unwrap().iter() {
        assert_eq!(row.values.len(), dead_schema.len());
        let (Value::String(line), Value::String(error)) =
            (&row.values[line_at], &row.values[error_at])
        else {
            panic!("dead letter {row:?}");
        };
        assert!(
            dead_letters.insert(line.clone(), error.clone()).is_none(),
            "{line} twice"
        );
    }
    assert_eq!(dead_letters, bad);

    // Output: each distinct (client, path) once, enriched.
    let field = |name: &str| output.index(name).unwrap();
    let mut seen = BTreeSet::new();
    for row in rows.lock().unwrap().iter() {
        assert_eq!(row.values.len(), output.len());
        let Value::Ip(client) = &row.values[field("client_ip")] else {
            panic!("{row:?}");
        };
        let client = client.to_string();
        let Value::String(path) = &row.values[field("path")] else {
            panic!("{row:?}");
        };
        let (second, status) = identity_details(&client, path);
        let time = weir_operators::row::parse_timestamp("2000-10-10T13:00:00Z").unwrap()
            + second as i64 * 1000;
        assert_eq!(row.values[field("ts")], Value::Timestamp(time));
        assert_eq!(row.values[field("status")], Value::Int(i64::from(status)));
        let country = country_of(&client).map_or(Value::Null, |c| Value::String(c.into()));
        assert_eq!(row.values[field("geo_country")], country, "{client}");
        assert!(
            seen.insert((client.clone(), path.clone())),
            "{client} {path} emitted twice"
        );
    }
    let expected: BTreeSet<(String, String)> = CLIENTS
        .iter()
        .flat_map(|client| {
            PATHS
                .iter()
                .map(|path| (client.to_string(), path.to_string()))
        })
        .collect();
    assert_eq!(seen, expected);
}

/// Rows (user, timestamp) of a fixed list; user `u{i % USERS}` at time
/// `i` ms, and after each poll a watermark at the next time. Its position
/// is the next index. In `idle_at_end` mode it never
/// ends (returns `Idle` once the list is out), so a run only stops by
/// failing.
struct Users {
    next: u64,
    step: u64,
    idle_at_end: bool,
}

const USER_ROWS: u64 = 12_000;
const USERS: u64 = 3_000;

impl Source for Users {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        for _ in 0..50 {
            if self.next >= USER_ROWS {
                return if self.idle_at_end {
                    SourcePoll::Idle
                } else {
                    SourcePoll::Exhausted
                };
            }
            out.push(&Row {
                values: vec![
                    Value::String(format!("u{}", self.next % USERS)),
                    Value::Timestamp(self.next as i64),
                ],
            });
            self.next += self.step;
        }
        // Every later row is at or after `next`: dedup holds rows until the
        // watermark passes them, so without this nothing would be published
        // before the end (and the crashing run never ends).
        out.watermark(self.next);
        // Paced so the run spans many epochs (not for synchronization).
        std::thread::sleep(std::time::Duration::from_micros(200));
        SourcePoll::Ready
    }

    fn position(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), weir_runtime::OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| weir_runtime::OperatorError::invalid("bad position"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Stages each epoch's users, one per line, in `DIR/.staging/`; commit
/// renames into `DIR`. With `fail`, it fails the run as soon as any epoch
/// with data has been published (so recovery has a committed epoch with
/// dedup state to resume from).
struct StagedUsers {
    dir: std::path::PathBuf,
    shard: usize,
    lines: String,
    fail: bool,
}

impl StagedUsers {
    fn new(context: &ShardContext, dir: &std::path::Path, fail: bool) -> StagedUsers {
        let staging = dir.join(".staging");
        std::fs::create_dir_all(&staging).unwrap();
        let prefix = format!("shard-{}-epoch-", context.shard);
        for entry in std::fs::read_dir(&staging).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let epoch = name
                .strip_prefix(&prefix)
                .and_then(|e| e.parse::<u64>().ok());
            if epoch.is_some_and(|epoch| epoch > context.committed_epoch) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        StagedUsers {
            dir: dir.to_path_buf(),
            shard: context.shard,
            lines: String::new(),
            fail,
        }
    }

    fn check_crash(&self) {
        if self.fail && !published_users(&self.dir).is_empty() {
            panic!("simulated crash");
        }
    }
}

impl Sink for StagedUsers {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        self.check_crash();
        for row in batch.iter() {
            self.lines.push_str(row.get(0).as_str().expect("a user"));
            self.lines.push('\n');
        }
    }

    fn precommit(&mut self, epoch: u64) -> Result<Vec<u8>, weir_runtime::OperatorError> {
        self.check_crash();
        if self.lines.is_empty() {
            return Ok(Vec::new());
        }
        let name = format!("shard-{}-epoch-{epoch}", self.shard);
        let staged = self.dir.join(".staging").join(&name);
        std::fs::write(&staged, std::mem::take(&mut self.lines))?;
        let paths = format!("{}\n{}", staged.display(), self.dir.join(&name).display());
        Ok(paths.into_bytes())
    }

    fn commit(
        staged: &[u8],
        _control: &weir_runtime::CommitControl,
    ) -> Result<(), weir_runtime::OperatorError> {
        if staged.is_empty() {
            return Ok(());
        }
        let text = std::str::from_utf8(staged).map_err(|e| e.to_string())?;
        let (from, to) = text.split_once('\n').ok_or("bad pre-commit")?;
        let (from, to) = (std::path::Path::new(from), std::path::Path::new(to));
        if from.exists() {
            std::fs::rename(from, to).map_err(|e| format!("{}: {e}", from.display()))?;
        } else if !to.exists() {
            return Err(format!("neither {} nor {} exists", from.display(), to.display()).into());
        }
        Ok(())
    }
}

/// Every user line published in `dir` (not staging).
fn published_users(dir: &std::path::Path) -> Vec<String> {
    let mut users = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        users.extend(text.lines().map(str::to_owned));
    }
    users
}

fn run_users(
    data: &std::path::Path,
    out: &std::path::Path,
    fail: bool,
) -> Result<weir_runtime::RunReport, weir_runtime::Error> {
    let input = Schema::new([("user", Type::String), ("timestamp", Type::Timestamp)]);
    let config = DedupConfig {
        inputs: vec!["users".into()],
        fields: vec!["user".into()],
        window: "1h".into(),
        time_field: "timestamp".into(),
    };
    let (spec, _) = dedup::build(&config, &input).unwrap();
    let partition_spec = spec.clone();
    let out: Arc<std::path::Path> = out.into();
    let mut graph = GraphBuilder::new();
    graph.source("users", move |context| Users {
        next: context.instance as u64,
        step: context.instances as u64,
        idle_at_end: fail,
    });
    graph.processor("dedup", move |context| Dedup::new(spec.clone(), context));
    graph.sink("out", move |context| StagedUsers::new(context, &out, fail));
    graph.connect(
        "users",
        "dedup",
        Partition::hash(move |row: &Row| dedup::partition_hash(&partition_spec, row)),
    );
    graph.connect("dedup", "out", Partition::<Row>::Forward);
    let runtime = Runtime::builder()
        .shards(2)
        .data_dir(data)
        .epoch_interval(std::time::Duration::from_millis(5))
        .build()
        .expect("runtime starts");
    runtime.run(graph.build().unwrap())
}

#[test]
fn dedup_state_survives_a_crash_and_each_identity_is_published_once() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let error = run_users(data.path(), out.path(), true).expect_err("the sink crashes");
    assert!(error.to_string().contains("simulated crash"), "{error}");
    let before = published_users(out.path());
    assert!(
        !before.is_empty(),
        "something was published before the crash"
    );

    let report = run_users(data.path(), out.path(), false).expect("recovery succeeds");
    assert!(
        report.resumed_from_epoch > 0,
        "resumed from a committed epoch"
    );
    // Each user exactly once over both runs: users published before the
    // crash were remembered by the restored dedup state, not emitted again.
    let mut users = published_users(out.path());
    users.sort_unstable();
    let mut expected: Vec<String> = (0..USERS).map(|user| format!("u{user}")).collect();
    expected.sort_unstable();
    assert_eq!(
        users.len(),
        expected.len(),
        "a user published twice or missing"
    );
    assert_eq!(users, expected);
}
