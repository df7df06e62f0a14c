//! A scaled-out pipeline (`[runtime] group`, docs/scale-out.md) is checked
//! when it is loaded: what cannot run over several processes yet is
//! refused, naming the component or the option and saying why.

use weir_operators::config::{parse, ConfigError};

const SCALED: &str = r#"[runtime]
group = "orders"
epoch_interval_ms = 100

[sources.in]
type = "kafka"
brokers = "127.0.0.1:9092"
topics = ["orders"]
format = "raw"

[processors.big]
type = "filter"
inputs = ["in"]
condition = 'message != ""'

[sinks.out]
type = "kafka"
inputs = ["big"]
brokers = "127.0.0.1:9092"
topic = "big-orders"
"#;

/// `SCALED` with the first `from` replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert!(SCALED.contains(from), "{from:?} not in the file");
    SCALED.replacen(from, to, 1)
}

fn refused(text: &str) -> ConfigError {
    match parse(text, "orders.toml") {
        Ok(config) => panic!("expected an error, parsed {config:?}"),
        Err(error) => error,
    }
}

#[test]
fn a_stateless_kafka_pipeline_scales_out() {
    let config = parse(SCALED, "orders.toml").expect("a scaled-out pipeline");
    assert_eq!(config.runtime.group.as_deref(), Some("orders"));
    assert_eq!(
        config.runtime.shards, None,
        "one shard per process by default"
    );
}

#[test]
fn several_shards_per_process_are_accepted() {
    let config = parse(
        &edit("group = \"orders\"", "group = \"orders\"\nshards = 2"),
        "orders.toml",
    )
    .expect("two shards in a scaled-out process");
    assert_eq!(config.runtime.shards, Some(2));
}

#[test]
fn an_empty_group_is_refused() {
    let error = refused(&edit("group = \"orders\"", "group = \" \""));
    assert!(error.message.contains("`group` must name"), "{error}");
}

/// `SCALED` with processor `name` (its body `body`) between the filter
/// and the sink, which reads it.
fn with_processor(name: &str, body: &str) -> String {
    edit(
        "[sinks.out]",
        &format!("[processors.{name}]\n{body}\n\n[sinks.out]"),
    )
    .replacen(
        "inputs = [\"big\"]\nbrokers",
        &format!("inputs = [\"{name}\"]\nbrokers"),
        1,
    )
}

/// A window over `message` in the raw source's schema, with `extra`.
fn window(extra: &str) -> String {
    format!(
        "type = \"window\"\ninputs = [\"big\"]\nsize = \"1m\"\ntime_field = \"at\"\n\
         aggregates = [\"count\"]\n{extra}"
    )
}

/// [`SCALED`] with a `json` source carrying a time.
fn timed(text: &str) -> String {
    text.replacen(
        "format = \"raw\"",
        "format = \"json\"\nschema = { user = \"string\", at = \"timestamp\" }",
        1,
    )
    .replacen("message != \"\"", "user != \"\"", 1)
}

#[test]
fn a_tumbling_or_sliding_window_keyed_by_group_by_scales_out() {
    parse(
        &timed(&with_processor("counts", &window("group_by = [\"user\"]"))),
        "orders.toml",
    )
    .expect("a tumbling window with group_by scales out");
    parse(
        &timed(&with_processor(
            "counts",
            &window("kind = \"sliding\"\nslide = \"30s\"\ngroup_by = \"user\""),
        )),
        "orders.toml",
    )
    .expect("a sliding window with group_by scales out");
}

/// Names of the repartition and changelog topics of `text`'s plan.
fn topics(text: &str) -> Vec<String> {
    let config = parse(text, "orders.toml").expect("a scaled-out pipeline");
    weir_operators::config::internal_topics(&config)
        .into_iter()
        .map(|topic| format!("{} {} {}", topic.kind, topic.component, topic.topic))
        .collect()
}

/// A window keyed as the source says its input is (`keyed_by`) reads its
/// tasks from the input; any other repartitions, through a topic named
/// after the group and the window.
#[test]
fn a_window_keyed_otherwise_than_the_input_repartitions() {
    let text = timed(&with_processor("counts", &window("group_by = [\"user\"]")));
    assert_eq!(
        topics(&text),
        [
            "repartition counts orders-counts-repartition",
            "changelog counts orders-counts-changelog"
        ],
        "the source says nothing of its key"
    );
    let keyed = text.replacen(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nkeyed_by = [\"user\"]",
        1,
    );
    assert_eq!(topics(&keyed), ["changelog counts orders-counts-changelog"]);
    let other = keyed.replacen("keyed_by = [\"user\"]", "keyed_by = [\"host\"]", 1);
    assert_eq!(
        topics(&other)[0],
        "repartition counts orders-counts-repartition"
    );
    // Its graph builds: the source's repartition port is wired to it.
    let config = parse(&other, "orders.toml").expect("a scaled-out pipeline");
    weir_operators::config::build_graph(&config).expect("a graph");
    assert!(topics(SCALED).is_empty(), "nothing stateful");
}

/// A threshold scales out as a window does: with a `key`, keyed as the
/// input (straight from its partitions) or through its repartition topic;
/// without a `key` it is refused.
#[test]
fn a_threshold_with_a_key_scales_out_and_one_without_is_refused() {
    let threshold = |key: &str| {
        format!(
            "type = \"threshold\"\ninputs = [\"big\"]\ncondition = \"user != \\\"\\\"\"\n\
             time_field = \"at\"\ncooldown = \"5m\"\n{key}"
        )
    };
    let text = timed(&with_processor("alerts", &threshold("key = [\"user\"]")));
    assert_eq!(
        topics(&text),
        [
            "repartition alerts orders-alerts-repartition",
            "changelog alerts orders-alerts-changelog"
        ]
    );
    let keyed = text.replacen(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nkeyed_by = [\"user\"]",
        1,
    );
    assert_eq!(topics(&keyed), ["changelog alerts orders-alerts-changelog"]);
    let config = parse(&text, "orders.toml").expect("a scaled-out pipeline");
    weir_operators::config::build_graph(&config).expect("a graph");

    let error = refused(&timed(&with_processor("alerts", &threshold(""))));
    assert_eq!(
        error.component.as_deref(),
        Some("processors.alerts"),
        "{error}"
    );
    assert!(error.to_string().contains("key"), "{error}");
    assert!(error.message.contains("run it as one process"), "{error}");
}

/// A keyed operator whose one input is a keyed operator with the same key
/// takes that operator's tasks, through no topic of its own; with another
/// key it repartitions.
#[test]
fn a_threshold_after_a_window_of_the_same_key_needs_no_repartition_topic() {
    let windowed = timed(&with_processor("counts", &window("group_by = [\"user\"]")));
    let after = |key: &str| {
        format!(
            "{windowed}\n[processors.alerts]\ntype = \"threshold\"\ninputs = [\"counts\"]\n\
             condition = \"count >= 10\"\nkey = [\"{key}\"]\ncooldown = \"5m\"\n\
             \n[sinks.alerts_out]\ntype = \"kafka\"\ninputs = [\"alerts\"]\n\
             brokers = \"127.0.0.1:9092\"\ntopic = \"alerts\"\n"
        )
    };
    assert_eq!(
        topics(&after("user")),
        [
            "repartition counts orders-counts-repartition",
            "changelog alerts orders-alerts-changelog",
            "changelog counts orders-counts-changelog"
        ]
    );
    let config = parse(&after("user"), "orders.toml").expect("a scaled-out pipeline");
    weir_operators::config::build_graph(&config).expect("a graph");
    assert!(
        topics(&after("window_start"))
            .contains(&"repartition alerts orders-alerts-repartition".to_owned()),
        "another key repartitions"
    );
}

#[test]
fn keyed_by_without_a_group_is_refused_naming_it() {
    let text = edit("group = \"orders\"\n", "").replacen(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nkeyed_by = [\"user\"]",
        1,
    );
    let error = refused(&text);
    assert_eq!(error.component.as_deref(), Some("sources.in"), "{error}");
    assert!(
        error.message.contains("`keyed_by`") && error.message.contains("`[runtime] group`"),
        "{error}"
    );
}

#[test]
fn a_global_window_is_refused_naming_the_option_and_a_session_window_scales_out() {
    let error = refused(&timed(&with_processor("counts", &window(""))));
    assert_eq!(
        error.component.as_deref(),
        Some("processors.counts"),
        "{error}"
    );
    assert!(error.to_string().contains("group_by"), "{error}");
    assert!(error.message.contains("run it as one process"), "{error}");

    let session = "type = \"window\"\ninputs = [\"big\"]\nkind = \"session\"\ngap = \"1m\"\n\
                   time_field = \"at\"\ngroup_by = [\"user\"]\naggregates = [\"count\"]";
    let text = timed(&with_processor("sessions", session));
    assert_eq!(
        topics(&text),
        [
            "repartition sessions orders-sessions-repartition",
            "changelog sessions orders-sessions-changelog"
        ]
    );
}

/// A dedup scales out keyed by its `fields`: through its repartition
/// topic, or straight from the input when the source is keyed by them.
#[test]
fn a_dedup_scales_out_keyed_by_its_fields() {
    let dedup = "type = \"dedup\"\ninputs = [\"big\"]\nfields = [\"user\"]\n\
                 window = \"1m\"\ntime_field = \"at\"";
    let text = timed(&with_processor("once", dedup));
    assert_eq!(
        topics(&text),
        [
            "repartition once orders-once-repartition",
            "changelog once orders-once-changelog"
        ]
    );
    let keyed = text.replacen(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nkeyed_by = [\"user\"]",
        1,
    );
    assert_eq!(topics(&keyed), ["changelog once orders-once-changelog"]);
    let config = parse(&text, "orders.toml").expect("a scaled-out pipeline");
    weir_operators::config::build_graph(&config).expect("a graph");
}

#[test]
fn a_sink_outside_kafka_is_refused_naming_it() {
    let text = format!(
        "{SCALED}\n[sinks.archive]\ntype = \"file\"\ninputs = [\"big\"]\npath = \"./out\"\n\
         format = \"ndjson\"\n"
    );
    let error = refused(&text);
    assert_eq!(error.component.as_deref(), Some("sinks.archive"), "{error}");
    assert!(error.message.contains("docs/scale-out.md"), "{error}");
}

#[test]
fn a_bounded_source_or_its_own_group_is_refused() {
    let error = refused(&edit(
        "format = \"raw\"",
        "format = \"raw\"\nbounded = true",
    ));
    assert_eq!(error.component.as_deref(), Some("sources.in"), "{error}");
    assert!(error.message.contains("never bounded"), "{error}");

    let error = refused(&edit(
        "format = \"raw\"",
        "format = \"raw\"\ngroup = \"other\"",
    ));
    assert!(error.message.contains("leave `group` out"), "{error}");
    // The same group is no conflict.
    parse(
        &edit("format = \"raw\"", "format = \"raw\"\ngroup = \"orders\""),
        "orders.toml",
    )
    .expect("the source's group is the runtime's");
}

#[test]
fn an_at_least_once_sink_is_refused() {
    let error = refused(&edit(
        "topic = \"big-orders\"",
        "topic = \"big-orders\"\ndelivery = \"at_least_once\"",
    ));
    assert_eq!(error.component.as_deref(), Some("sinks.out"), "{error}");
    assert!(error.message.contains("publishes exactly once"), "{error}");
}

#[test]
fn scaled_out_sinks_share_one_producer_configuration() {
    let second = |extra: &str| {
        format!(
            "{SCALED}\n[sinks.copy]\ntype = \"kafka\"\ninputs = [\"in\"]\n\
             brokers = \"127.0.0.1:9092\"\ntopic = \"copy\"\n{extra}"
        )
    };
    parse(&second(""), "orders.toml").expect("two sinks with one configuration");
    let error = refused(&second("compression = \"lz4\""));
    assert_eq!(error.component.as_deref(), Some("sinks.out"), "{error}");
    assert!(error.to_string().contains("compression"), "{error}");
    assert!(
        error.message.contains("differs from sink `copy`'s"),
        "{error}"
    );
    let error = refused(&second("options = { \"linger.ms\" = \"50\" }"));
    assert!(error.to_string().contains("options"), "{error}");
}
