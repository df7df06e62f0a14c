//! Goal: the configured generator and the file sink work inside the real
//! runtime: every id arrives once, on its own shard's sink, and the sink
//! stages it as a JSON line for epoch 1 (nothing is published without the
//! epoch protocol).
//!
//! Method: parse a pipeline file, wire its generator to a file sink with a
//! forward edge by hand (without a data directory, so no epoch protocol:
//! `config_run.rs` covers `build_graph` with epochs), run it bounded on two
//! shards, then read the staged files back.

use std::fs;

use weir_operators::config::{parse, SinkConfig, SourceConfig};
use weir_operators::row::Row;
use weir_operators::sinks::file::{build, file_name, RowFileSink, STAGING_DIRECTORY};
use weir_operators::sources::events::event_schema;
use weir_operators::sources::generator::KeyedGenerator;
use weir_runtime::{GraphBuilder, Partition, Runtime};

const SHARDS: usize = 2;
const COUNT: u64 = 20_000;

#[test]
fn generator_to_file_sink_stages_every_id_once() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let out = directory.path().join("out");
    let text = format!(
        "[sources.gen]\ntype = \"generator\"\ncount = {COUNT}\nkeys = [\"a\", \"b\"]\n\
         events_per_second = 1000\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"gen\"]\n\
         path = {:?}\n",
        out.display().to_string()
    );
    let config = parse(&text, "pipeline.toml").expect("valid");
    let SourceConfig::Generator(generator) = config.sources["gen"].clone() else {
        panic!("`gen` is a generator");
    };
    let SinkConfig::File(file) = config.sinks["out"].clone() else {
        panic!("`out` is a file sink");
    };

    let mut graph = GraphBuilder::new();
    graph.source("gen", move |context| {
        KeyedGenerator::new(&generator, context)
    });
    let spec = build(&file, &event_schema()).expect("a file sink of events");
    graph.sink("out", move |context| {
        RowFileSink::new(spec.clone(), context).expect("sink directory")
    });
    graph.connect::<Row>("gen", "out", Partition::Forward);
    let runtime = Runtime::builder().shards(SHARDS).build().expect("runtime");
    runtime.run(graph.build().expect("graph")).expect("run");

    let mut ids = Vec::new();
    for shard in 0..SHARDS {
        let staged = out.join(STAGING_DIRECTORY).join(file_name(shard, 1));
        for line in fs::read_to_string(&staged).expect("staged file").lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let id = value["id"].as_u64().expect("id");
            assert_eq!(id % SHARDS as u64, shard as u64, "id {id} on shard {shard}");
            // 1000 events per second: event `id` is at `id` milliseconds.
            let time = format!("1970-01-01T00:00:{:02}.{:03}Z", id / 1000, id % 1000);
            assert_eq!(value["timestamp"].as_str(), Some(time.as_str()), "{line}");
            assert!(value.get("body").is_none(), "{line}");
            ids.push(id);
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..COUNT).collect::<Vec<u64>>());
    assert!(fs::read_dir(&out)
        .expect("list")
        .all(|entry| entry.expect("entry").file_name() == STAGING_DIRECTORY));
}
