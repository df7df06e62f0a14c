//! Goal: the profile generators are deterministic functions of their
//! configuration and position: same seed, same rows; a restored instance
//! replays exactly the suffix of an uninterrupted run; instances partition
//! the ids; attack events are exactly those `attack_truth` announces; every
//! row fits the profile's schema; and the generator runs in a real runtime.
//!
//! Method: drive `ProfileGenerator::generate` directly and record what it
//! would emit (watermarks and rows, in order); compare runs with different
//! poll sizes, instances and restore points; check attack rows against
//! `ProfileSpec::locate` and `attack_truth`. One test runs the generator on
//! a 2-shard runtime and compares the collected rows with a direct run.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use weir_operators::row::{parse_timestamp, Ip, Row, Value};
use weir_operators::sources::generator::profiles::{
    attack_truth, build, profile_schema, AttackConfig, AttackKind, Profile, ProfileGenerator,
    ProfileGeneratorConfig, ProfileItem, ProfileSpec, DEFAULT_START,
};
use weir_operators::sources::generator::WATERMARK_INTERVAL_MS;
use weir_runtime::{Batch, GraphBuilder, Partition, Runtime, Sink, Source};

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Watermark(u64),
    Row(Row),
}

fn config(profile: Profile, count: Option<u64>) -> ProfileGeneratorConfig {
    ProfileGeneratorConfig {
        profile,
        count,
        events_per_second: 1_000,
        rate: None,
        start: DEFAULT_START.to_owned(),
        seed: 42,
        users: None,
        ips: None,
        paths: None,
        hosts: None,
        attacks: Vec::new(),
    }
}

fn brute_force(ip: &str, from: &str, duration: &str, per_second: u64) -> AttackConfig {
    AttackConfig::BruteForce {
        ip: ip.to_owned(),
        from: from.to_owned(),
        duration: duration.to_owned(),
        per_second,
    }
}

fn ddos(target: &str, from: &str, duration: &str, multiplier: u64) -> AttackConfig {
    AttackConfig::Ddos {
        target: target.to_owned(),
        from: from.to_owned(),
        duration: duration.to_owned(),
        multiplier,
    }
}

fn spec(config: &ProfileGeneratorConfig) -> ProfileSpec {
    build(config).expect("valid config").0
}

fn instance(spec: &ProfileSpec, instance: usize, instances: usize) -> ProfileGenerator {
    ProfileGenerator::resume(spec.clone(), instance, instances, instance as u64).expect("start")
}

/// Runs `generator` in calls of `room` rows, at most `calls` calls.
fn run(generator: &mut ProfileGenerator, room: usize, calls: usize) -> Vec<Item> {
    let mut items = Vec::new();
    for _ in 0..calls {
        if generator.is_exhausted() {
            break;
        }
        generator.generate(room, |item| match item {
            ProfileItem::Watermark(watermark) => items.push(Item::Watermark(watermark)),
            ProfileItem::Row(row) => items.push(Item::Row(row.clone())),
        });
    }
    items
}

fn rows(items: &[Item]) -> Vec<Row> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Row(row) => Some(row.clone()),
            Item::Watermark(_) => None,
        })
        .collect()
}

fn ip(text: &str) -> Ip {
    Ip::from(text.parse::<IpAddr>().expect("address"))
}

fn text(value: &Value) -> &str {
    match value {
        Value::String(text) => text,
        other => panic!("{other:?} is not a string"),
    }
}

fn ts(row: &Row) -> u64 {
    match row.values[0] {
        Value::Timestamp(ms) => ms as u64,
        ref other => panic!("{other:?} is not a timestamp"),
    }
}

/// A web config with a brute force and a DDoS on `/login`, and an auth and
/// a flows one, each with attacks.
fn attacked(profile: Profile, count: u64) -> ProfileGeneratorConfig {
    let attacks = match profile {
        Profile::WebAccess => vec![
            brute_force("203.0.113.7", "2s", "3s", 20),
            ddos("/login", "4s", "1s", 5),
        ],
        Profile::Auth => vec![
            brute_force("203.0.113.7", "2s", "3s", 20),
            brute_force("198.51.100.9", "2500ms", "1s", 333),
        ],
        Profile::Flows => vec![
            brute_force("192.0.2.50", "1s", "2s", 50),
            ddos("23.1.2.3", "3s", "500ms", 10),
        ],
    };
    ProfileGeneratorConfig {
        attacks,
        ..config(profile, Some(count))
    }
}

const PROFILES: [Profile; 3] = [Profile::WebAccess, Profile::Auth, Profile::Flows];

#[test]
fn same_seed_same_rows_however_polled_and_other_seeds_differ() {
    for profile in PROFILES {
        let config = attacked(profile, 8_000);
        let spec = spec(&config);
        let whole = run(&mut instance(&spec, 1, 2), 1024, usize::MAX);
        let small = run(&mut instance(&spec, 1, 2), 7, usize::MAX);
        assert_eq!(whole, small, "{profile:?}");
        let rebuilt = run(&mut instance(&self::spec(&config), 1, 2), 333, usize::MAX);
        assert_eq!(whole, rebuilt, "{profile:?}: a rebuilt spec differs");
        let other = ProfileGeneratorConfig {
            seed: 43,
            ..config.clone()
        };
        let reseeded = run(&mut instance(&self::spec(&other), 1, 2), 1024, usize::MAX);
        assert_ne!(
            rows(&whole),
            rows(&reseeded),
            "{profile:?}: the seed changes nothing"
        );
    }
}

#[test]
fn restore_from_a_position_replays_the_suffix() {
    for profile in PROFILES {
        let spec = spec(&attacked(profile, 12_000));
        let whole = run(&mut instance(&spec, 2, 3), 100, usize::MAX);
        for calls in [0, 1, 9, 20, 25, 39] {
            let generator = &mut instance(&spec, 2, 3);
            let prefix = run(generator, 100, calls);
            let position = Source::position(generator);
            assert_eq!(position, generator.next_id().to_le_bytes());
            let restored = &mut instance(&spec, 2, 3);
            Source::restore(restored, &position).expect("own position");
            let suffix = run(restored, 64, usize::MAX);
            assert_eq!(
                prefix.len() + suffix.len(),
                whole.len(),
                "{profile:?} {calls}"
            );
            assert_eq!(&whole[prefix.len()..], &suffix[..], "{profile:?} {calls}");
        }
        let restored = &mut instance(&spec, 2, 3);
        assert!(Source::restore(restored, &4u64.to_le_bytes()).is_err());
        assert!(Source::restore(restored, &[1, 2, 3]).is_err());
    }
}

#[test]
fn union_over_instances_is_each_id_once() {
    for profile in PROFILES {
        let count = 9_001;
        let spec = spec(&attacked(profile, count));
        let single = rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX));
        assert_eq!(single.len() as u64, count);
        let instances = 4;
        let parts: Vec<Vec<Row>> = (0..instances)
            .map(|i| rows(&run(&mut instance(&spec, i, instances), 500, usize::MAX)))
            .collect();
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>() as u64, count);
        for (id, row) in single.iter().enumerate() {
            assert_eq!(
                &parts[id % instances][id / instances],
                row,
                "{profile:?}: id {id} differs"
            );
        }
    }
}

#[test]
fn ids_are_time_ordered_and_locate_matches_the_rows() {
    for profile in PROFILES {
        let spec = spec(&attacked(profile, 10_000));
        let single = rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX));
        let mut previous = 0;
        for (id, row) in single.iter().enumerate() {
            let origin = spec.locate(id as u64);
            assert_eq!(origin.ts_ms, ts(row), "{profile:?}: id {id}");
            assert!(
                origin.ts_ms >= previous,
                "{profile:?}: time went back at {id}"
            );
            previous = origin.ts_ms;
        }
    }
    // Without attacks, id i has time start + i * 1000 / events_per_second.
    let spec = spec(&config(Profile::Auth, None));
    let start = parse_timestamp(DEFAULT_START).unwrap() as u64;
    for id in [0u64, 1, 999, 1000, 123_457, 10_000_000_000] {
        assert_eq!(spec.event_time_ms(id), start + id * 1000 / 1000);
        assert_eq!(spec.locate(id).attack, None);
        assert_eq!(spec.locate(id).index, id);
    }
}

#[test]
fn watermarks_rise_and_never_pass_a_later_row() {
    for profile in PROFILES {
        let spec = spec(&attacked(profile, 20_000));
        let items = run(&mut instance(&spec, 0, 2), 1024, usize::MAX);
        let (mut watermark, mut watermarks) = (0, 0);
        for item in &items {
            match item {
                Item::Watermark(next) => {
                    assert!(*next > watermark);
                    assert_eq!(next % WATERMARK_INTERVAL_MS, 0);
                    watermark = *next;
                    watermarks += 1;
                }
                Item::Row(row) => assert!(ts(row) >= watermark, "{profile:?}"),
            }
        }
        assert!(watermarks > 50, "{profile:?}: {watermarks} watermarks");
    }
}

#[test]
fn every_row_fits_the_schema_and_web_lines_parse() {
    for profile in PROFILES {
        let spec = spec(&attacked(profile, 6_000));
        let schema = profile_schema(profile);
        assert_eq!(spec.schema(), schema);
        for row in rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX)) {
            assert_eq!(row.values.len(), schema.len());
            for (value, field) in row.values.iter().zip(schema.fields()) {
                assert_eq!(value.ty(), Some(field.ty), "{profile:?} {}", field.name);
            }
            if profile != Profile::WebAccess {
                continue;
            }
            let v = &row.values;
            let Value::Ip(client) = v[1] else { panic!() };
            let (Value::Int(status), Value::Int(bytes)) = (&v[4], &v[5]) else {
                panic!()
            };
            let line = text(&v[8]);
            let expected_prefix = format!("{client} - {} [", text(&v[7]));
            assert!(line.starts_with(&expected_prefix), "{line}");
            let time = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
            assert_eq!(parse_timestamp(time), Some((ts(&row) / 1000 * 1000) as i64));
            let request = format!(
                "\"{} {} HTTP/1.1\" {status} {bytes} \"-\" \"{}\"",
                text(&v[2]),
                text(&v[3]),
                text(&v[6])
            );
            assert!(line.ends_with(&request), "{line}");
        }
    }
}

#[test]
fn web_traffic_has_health_checks_and_zipf_popular_paths() {
    let spec = spec(&config(Profile::WebAccess, Some(20_000)));
    let rows = rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX));
    let health = rows
        .iter()
        .filter(|r| text(&r.values[3]) == "/health")
        .count();
    assert!((600..1400).contains(&health), "{health} health checks");
    let count = |path: &str| rows.iter().filter(|r| text(&r.values[3]) == path).count();
    assert!(count("/") > count("/products/10") * 5);
}

#[test]
fn brute_force_events_are_exactly_the_truth() {
    let config = attacked(Profile::Auth, 20_000);
    let spec = spec(&config);
    let truth = attack_truth(&spec);
    assert_eq!(truth.len(), 2);
    assert_eq!(truth[0].kind, AttackKind::BruteForce);
    assert_eq!(truth[0].source_ip, Some(ip("203.0.113.7")));
    assert_eq!(truth[0].planned, 60, "3 s at 20 per second");
    assert_eq!(truth[1].planned, 333);
    let start = parse_timestamp(DEFAULT_START).unwrap() as u64;
    assert_eq!(truth[0].start_ms, start + 2_000);
    assert_eq!(truth[0].end_ms, start + 5_000);
    // Two instances, merged by id.
    let parts: Vec<Vec<Row>> = (0..2)
        .map(|i| rows(&run(&mut instance(&spec, i, 2), 1024, usize::MAX)))
        .collect();
    for attack in &truth {
        assert_eq!(attack.emitted, attack.planned, "count leaves room for all");
        let attacker = attack.source_ip.unwrap();
        let times: Vec<u64> = parts
            .iter()
            .flatten()
            .filter(|row| row.values[1] == Value::Ip(attacker))
            .map(|row| {
                assert_eq!(text(&row.values[3]), "failure");
                assert_eq!(text(&row.values[4]), "password");
                ts(row)
            })
            .collect();
        let mut times = times;
        times.sort_unstable();
        let expected: Vec<u64> = (0..attack.planned)
            .map(|k| attack.event_time_ms(k))
            .collect();
        assert_eq!(times, expected, "attack {}", attack.index);
        assert!(times
            .iter()
            .all(|&t| t >= attack.start_ms && t < attack.end_ms));
    }
    let failures = parts
        .iter()
        .flatten()
        .filter(|row| text(&row.values[3]) == "failure")
        .count() as u64;
    assert!(failures > 60 + 333, "normal traffic fails sometimes too");
}

#[test]
fn ddos_and_cut_short_attacks_are_exactly_the_truth() {
    // 3 000 normal ids fill the first 3 s; then 1 000 normal and 5 000
    // attack events per second, so `count` ends the run 1.5 s into the
    // 2 s DDoS: 7 500 of its 10 000 events are emitted.
    let config = ProfileGeneratorConfig {
        attacks: vec![ddos("/login", "3s", "2s", 5)],
        ..config(Profile::WebAccess, Some(12_000))
    };
    let spec = spec(&config);
    let truth = &attack_truth(&spec)[0];
    assert_eq!(truth.planned, 10_000);
    assert_eq!(truth.emitted, 7_500, "count cuts the attack");
    let rows = rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX));
    let mut attack_rows = 0;
    for (id, row) in rows.iter().enumerate() {
        match spec.locate(id as u64).attack {
            Some(0) => {
                attack_rows += 1;
                assert_eq!(text(&row.values[3]), "/login");
                assert_eq!(text(&row.values[2]), "POST");
                assert_eq!(text(&row.values[7]), "-");
            }
            Some(other) => panic!("attack {other}"),
            None => {}
        }
    }
    assert_eq!(attack_rows, truth.emitted);
    // The surge: many more /login requests per second inside the window.
    let login_in = |from: u64, to: u64| {
        rows.iter()
            .filter(|r| text(&r.values[3]) == "/login" && (from..to).contains(&ts(r)))
            .count()
    };
    let start = truth.start_ms;
    assert!(login_in(start, start + 1000) > 20 * login_in(start - 1000, start));

    // Flows: the DDoS targets one address on port 443 from the botnet.
    let spec = self::spec(&attacked(Profile::Flows, 10_000));
    let truth = attack_truth(&spec);
    assert_eq!(truth[1].planned, 5_000, "0.5 s at 10 x 1000 per second");
    let rows = self::rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX));
    let to_target = rows
        .iter()
        .filter(|r| r.values[2] == Value::Ip(ip("23.1.2.3")))
        .count() as u64;
    assert_eq!(to_target, truth[1].emitted.min(truth[1].planned));
    let from_attacker = rows
        .iter()
        .filter(|r| r.values[1] == Value::Ip(ip("192.0.2.50")))
        .inspect(|r| assert_eq!(r.values[3], Value::Int(22)))
        .count() as u64;
    assert_eq!(from_attacker, truth[0].emitted);
    assert_eq!(truth[0].emitted, 100);
}

#[test]
fn bad_configs_name_the_option() {
    let check = |config: ProfileGeneratorConfig, option: &str| {
        let error = build(&config).expect_err("refused");
        assert_eq!(error.option, option, "{error}");
    };
    let base = config(Profile::WebAccess, None);
    check(
        ProfileGeneratorConfig {
            events_per_second: 0,
            ..base.clone()
        },
        "events_per_second",
    );
    check(
        ProfileGeneratorConfig {
            start: "yesterday".into(),
            ..base.clone()
        },
        "start",
    );
    check(
        ProfileGeneratorConfig {
            hosts: Some(5),
            ..base.clone()
        },
        "hosts",
    );
    check(
        ProfileGeneratorConfig {
            users: Some(0),
            ..base.clone()
        },
        "users",
    );
    let with = |attack: AttackConfig, profile: Profile| ProfileGeneratorConfig {
        attacks: vec![attack],
        ..config(profile, None)
    };
    check(
        with(brute_force("not-an-ip", "1s", "1s", 5), Profile::Auth),
        "attacks[0].ip",
    );
    check(
        with(brute_force("1.2.3.4", "soon", "1s", 5), Profile::Auth),
        "attacks[0].from",
    );
    check(
        with(brute_force("1.2.3.4", "1s", "100ms", 5), Profile::Auth),
        "attacks[0].duration",
    );
    check(
        with(ddos("/login", "1s", "1s", 5), Profile::Auth),
        "attacks[0].type",
    );
    check(
        with(ddos("login", "1s", "1s", 5), Profile::WebAccess),
        "attacks[0].target",
    );
    check(
        with(ddos("/login", "1s", "1s", 5), Profile::Flows),
        "attacks[0].target",
    );
}

#[test]
fn config_reads_from_toml_with_tagged_attacks() {
    let text = r#"
        profile = "auth"
        count = 1000
        events_per_second = 200
        seed = 9
        users = 50
        attacks = [
            { type = "brute_force", ip = "203.0.113.7", from = "2m", duration = "1m", per_second = 20 },
        ]
    "#;
    let config: ProfileGeneratorConfig = toml::from_str(text).expect("parses");
    assert_eq!(config.profile, Profile::Auth);
    assert_eq!(config.start, DEFAULT_START);
    assert_eq!(
        config.attacks,
        vec![brute_force("203.0.113.7", "2m", "1m", 20)]
    );
    let (spec, _) = build(&config).expect("valid");
    assert_eq!(attack_truth(&spec)[0].planned, 1_200);
    let unknown = text.replace("per_second = 20", "per_second = 20, speed = 3");
    assert!(toml::from_str::<ProfileGeneratorConfig>(&unknown).is_err());
    let bad = text.replace("brute_force", "phishing");
    assert!(toml::from_str::<ProfileGeneratorConfig>(&bad).is_err());
}

/// Collects rows into a shared vector at the end of the run.
struct Collect {
    local: Vec<Row>,
    seen: Arc<Mutex<Vec<Row>>>,
}

impl Sink for Collect {
    type Input = Row;

    fn write(&mut self, _port: usize, batch: &Batch<Row>) {
        self.local.extend(batch.iter().map(|row| row.to_row()));
    }

    fn finish(&mut self) {
        self.seen.lock().unwrap().append(&mut self.local);
    }
}

#[test]
fn runs_in_a_runtime_and_emits_each_event_once() {
    let config = attacked(Profile::WebAccess, 30_000);
    let spec = spec(&config);
    let expected = rows(&run(&mut instance(&spec, 0, 1), 1024, usize::MAX));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut graph = GraphBuilder::new();
    let source_spec = spec.clone();
    graph.source("gen", move |context| {
        ProfileGenerator::new(source_spec.clone(), context)
    });
    let sink_seen = seen.clone();
    graph.sink("out", move |_| Collect {
        local: Vec::new(),
        seen: sink_seen.clone(),
    });
    graph.connect("gen", "out", Partition::<Row>::Forward);
    let runtime = Runtime::builder().shards(2).build().expect("runtime");
    runtime.run(graph.build().expect("graph")).expect("run");
    let key = |row: &Row| format!("{row:?}");
    let mut got: Vec<String> = seen.lock().unwrap().iter().map(key).collect();
    let mut want: Vec<String> = expected.iter().map(key).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the runtime's rows differ from a direct run");
}
