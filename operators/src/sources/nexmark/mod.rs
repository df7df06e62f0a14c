//! The `nexmark` source: the Nexmark benchmark's auction events (people,
//! auctions and bids), exactly as the `nexmark` crate (RisingWave's Rust
//! port of the Flink/Beam generator, with its default distributions and
//! hot-item ratios) generates them, written into reused rows
//! ([`generate`]).
//!
//! # Outputs
//! Three named outputs, each with the columns of Flink's Nexmark tables:
//! - `NAME.bid` (port 0): `auction, bidder, price, channel, url, dateTime,
//!   extra`;
//! - `NAME.auction` (port 1): `id, itemName, description, initialBid,
//!   reserve, dateTime, expires, seller, category, extra`;
//! - `NAME.person` (port 2): `id, name, emailAddress, creditCard, city,
//!   state, dateTime, extra`.
//!
//! Every event is generated, as Flink's source does; only the rows of
//! outputs something reads are handed on.
//!
//! # Determinism and splitting
//! Event `n` (0, 1, 2, ...) is a pure function of `n` and the options: the
//! generator seeds each event's randomness with its number, and its time is
//! `base_time_ms + n / events_per_second` (the crate's arithmetic, never
//! the wall clock). Instance `i` of `s` emits events `i, i + s, i + 2s, ...`
//! (below `count` when bounded), so the union over shards is every event
//! once, whatever the shard count.
//!
//! # Position and watermarks
//! An instance's position is the number of its next event (8 bytes little
//! endian); a restored instance emits the suffix of an uninterrupted run.
//! Before emitting an event whose time, rounded down to
//! [`WATERMARK_INTERVAL_MS`], passed the previous one's, the instance
//! emits that rounded time as its watermark: event time never decreases
//! with the event number, so no later event of the instance is older.

pub mod generate;

use std::time::Instant;

use nexmark::config::NexmarkConfig;
use serde::{Deserialize, Serialize};
use weir_runtime::{Emitter, OperatorError, ShardContext, Source, SourcePoll};

use crate::component::{Component, Input, Node, Output, PlanContext, Planned};
use crate::row::{OptionError, Row, Schema, Type};
use crate::sources::numbered::{
    check_count_and_rate, check_position, id_position, position_id, InvalidPosition, Pace,
    WATERMARK_INTERVAL_MS,
};
use generate::{Generator, Kind};

/// The output port of bids.
pub const BID: usize = 0;
/// The output port of auctions.
pub const AUCTION: usize = 1;
/// The output port of people.
pub const PERSON: usize = 2;

/// Beam's and Flink's Nexmark base time, 2015-07-15T00:00:00Z, in
/// milliseconds: the time of event 0 unless `base_time_ms` says otherwise.
pub const BASE_TIME_MS_DEFAULT: u64 = 1_436_918_400_000;

/// The configuration of a [`NexmarkSource`] (a `[sources.NAME]` table
/// without its `type`). Every option but `count`, `rate` and
/// `base_time_ms` is Nexmark's own, with its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkSourceConfig {
    /// Events over all shards (people, auctions and bids together);
    /// `None` means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Event-time rate: events per second of event time (Nexmark's
    /// `first_event_rate` and `next_event_rate`, default 10 000).
    #[serde(default = "default_events_per_second")]
    pub events_per_second: u64,
    /// Event time of event 0, in milliseconds since the Unix epoch.
    #[serde(default = "default_base_time_ms")]
    pub base_time_ms: u64,
    /// Wall-clock limit in events per second over all shards; `None` means
    /// as fast as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// People bidding and selling at any time (default 1 000).
    #[serde(default = "default_active_people")]
    pub active_people: u64,
    /// Auctions open at any time (default 100).
    #[serde(default = "default_in_flight_auctions")]
    pub in_flight_auctions: u64,
    /// One auction in this many is not a hot one (default 2).
    #[serde(default = "default_hot_auction_ratio")]
    pub hot_auction_ratio: u64,
    /// One seller in this many is not a hot one (default 4).
    #[serde(default = "default_hot_ratio")]
    pub hot_seller_ratio: u64,
    /// One bidder in this many is not a hot one (default 4).
    #[serde(default = "default_hot_ratio")]
    pub hot_bidder_ratio: u64,
    /// Categories auctions fall into (default 5).
    #[serde(default = "default_num_categories")]
    pub num_categories: u64,
}

fn default_events_per_second() -> u64 {
    10_000
}
fn default_base_time_ms() -> u64 {
    BASE_TIME_MS_DEFAULT
}
fn default_active_people() -> u64 {
    1_000
}
fn default_in_flight_auctions() -> u64 {
    100
}
fn default_hot_auction_ratio() -> u64 {
    2
}
fn default_hot_ratio() -> u64 {
    4
}
fn default_num_categories() -> u64 {
    5
}

impl NexmarkSourceConfig {
    /// The generator's configuration.
    fn generator(&self) -> NexmarkConfig {
        let rate = self.events_per_second as usize;
        NexmarkConfig {
            first_rate: rate,
            next_rate: rate,
            base_time: self.base_time_ms,
            active_people: self.active_people as usize,
            in_flight_auctions: self.in_flight_auctions as usize,
            hot_auction_ratio: self.hot_auction_ratio as usize,
            hot_seller_ratio: self.hot_seller_ratio as usize,
            hot_bidder_ratio: self.hot_bidder_ratio as usize,
            num_categories: self.num_categories as usize,
            ..NexmarkConfig::default()
        }
    }
}

/// The schema of `NAME.bid`.
pub fn bid_schema() -> Schema {
    Schema::new([
        ("auction", Type::Int),
        ("bidder", Type::Int),
        ("price", Type::Int),
        ("channel", Type::String),
        ("url", Type::String),
        ("dateTime", Type::Timestamp),
        ("extra", Type::String),
    ])
}

/// The schema of `NAME.auction`.
pub fn auction_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("itemName", Type::String),
        ("description", Type::String),
        ("initialBid", Type::Int),
        ("reserve", Type::Int),
        ("dateTime", Type::Timestamp),
        ("expires", Type::Timestamp),
        ("seller", Type::Int),
        ("category", Type::Int),
        ("extra", Type::String),
    ])
}

/// The schema of `NAME.person`.
pub fn person_schema() -> Schema {
    Schema::new([
        ("id", Type::Int),
        ("name", Type::String),
        ("emailAddress", Type::String),
        ("creditCard", Type::String),
        ("city", Type::String),
        ("state", Type::String),
        ("dateTime", Type::Timestamp),
        ("extra", Type::String),
    ])
}

impl Component for NexmarkSourceConfig {
    fn check(&self, _name: &str) -> Result<(), OptionError> {
        let positive = [
            ("events_per_second", self.events_per_second),
            ("active_people", self.active_people),
            ("in_flight_auctions", self.in_flight_auctions),
            ("hot_auction_ratio", self.hot_auction_ratio),
            ("hot_seller_ratio", self.hot_seller_ratio),
            ("hot_bidder_ratio", self.hot_bidder_ratio),
            ("num_categories", self.num_categories),
        ];
        for (option, value) in positive {
            if value == 0 {
                return Err(OptionError::new(
                    option,
                    format!("`{option}` must be positive"),
                ));
            }
        }
        check_count_and_rate(self.count, self.rate)
    }

    fn plan(&self, _context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        Ok(Planned::new(
            vec![
                Output::side("bid", BID, bid_schema()),
                Output::side("auction", AUCTION, auction_schema()),
                Output::side("person", PERSON, person_schema()),
            ],
            self.clone(),
        ))
    }
}

impl Node for NexmarkSourceConfig {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, _inputs: &[Input]) {
        let config = self.clone();
        graph.source(name, move |context| NexmarkSource::new(&config, context));
    }
}

/// One instance of a `nexmark` source; see the module docs.
pub struct NexmarkSource {
    generator: Generator,
    /// The number of this instance's next event.
    next: u64,
    /// First event number not emitted: `count`, or `u64::MAX`.
    end: u64,
    instance: u64,
    step: u64,
    pace: Pace,
    /// The watermark due at this instance's previous event (none before
    /// its first): a new one goes out when an event's is greater.
    emitted_watermark: Option<u64>,
    /// Rows of one poll, by port, reused from poll to poll (their strings
    /// too): the first `filled[port]` are this poll's. A port nothing
    /// reads has its events written over its first row.
    pending: [Vec<Row>; 3],
    filled: [usize; 3],
}

impl std::fmt::Debug for NexmarkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexmarkSource")
            .field("next", &self.next)
            .field("end", &self.end)
            .field("instance", &self.instance)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// Fields of each port's rows.
const WIDTHS: [usize; 3] = [7, 10, 8];

impl NexmarkSource {
    /// Instance `context.instance` of `context.instances`, from its first
    /// event.
    pub fn new(config: &NexmarkSourceConfig, context: &ShardContext) -> NexmarkSource {
        NexmarkSource::instance(config, context.instance, context.instances)
    }

    /// Instance `instance` of `instances`, from its first event.
    ///
    /// # Panics
    /// If `instance` is not below `instances`.
    pub fn instance(
        config: &NexmarkSourceConfig,
        instance: usize,
        instances: usize,
    ) -> NexmarkSource {
        assert!(instance < instances, "instance {instance} of {instances}");
        NexmarkSource {
            generator: Generator::new(config.generator()),
            next: instance as u64,
            end: config.count.unwrap_or(u64::MAX),
            instance: instance as u64,
            step: instances as u64,
            pace: Pace::new(config.rate, instances),
            emitted_watermark: None,
            pending: Default::default(),
            filled: [0; 3],
        }
    }

    /// Moves to event `position` (the next to emit); the rate schedule
    /// starts again.
    pub fn seek(&mut self, position: u64) -> Result<(), InvalidPosition> {
        check_position(position, self.instance, self.step)?;
        self.emitted_watermark = position
            .checked_sub(self.step)
            .map(|previous| self.watermark_of(previous));
        self.next = position;
        self.pace.restart();
        Ok(())
    }

    /// The number of the next event this instance emits.
    pub fn next_event(&self) -> u64 {
        self.next
    }

    /// Whether this instance has no event left.
    pub fn is_exhausted(&self) -> bool {
        self.next >= self.end
    }

    /// The watermark due before event `n`: its time rounded down to the
    /// watermark interval.
    fn watermark_of(&self, n: u64) -> u64 {
        let ts = self.generator.timestamp(n);
        ts - ts % WATERMARK_INTERVAL_MS
    }

    /// Generates up to `room` events, the rows of the ports in `read` into
    /// the pending rows, stopping before an event due a new watermark
    /// (returned by the next call first). Returns the watermark to emit
    /// before them and the events generated.
    fn fill(&mut self, room: usize, read: [bool; 3]) -> (Option<u64>, usize) {
        self.filled = [0; 3];
        let mut events = 0;
        let mut watermark = self.watermark_of(self.next);
        let first = match self.emitted_watermark {
            Some(previous) if watermark <= previous => None,
            Some(_) => Some(watermark),
            // Nothing is due before an instance's first event.
            None => None,
        };
        while events < room && !self.is_exhausted() {
            if events > 0 {
                let due = self.watermark_of(self.next);
                if due > watermark {
                    break;
                }
                watermark = due;
            }
            let n = self.next;
            let port = match self.generator.kind(n) {
                Kind::Bid => BID,
                Kind::Auction => AUCTION,
                Kind::Person => PERSON,
            };
            let index = self.filled[port];
            let rows = &mut self.pending[port];
            if index == rows.len() {
                rows.push(Row::nulls(WIDTHS[port]));
            }
            let values = &mut rows[index].values;
            match port {
                BID => self.generator.bid(n, values),
                AUCTION => self.generator.auction(n, values),
                _ => self.generator.person(n, values),
            }
            if read[port] {
                self.filled[port] += 1;
            }
            events += 1;
            self.next = self.next.saturating_add(self.step);
        }
        if events > 0 {
            self.emitted_watermark = Some(watermark);
        }
        self.pace.emitted(events);
        (first, events)
    }

    /// This poll's rows, by port.
    fn filled(&self, port: usize) -> &[Row] {
        &self.pending[port][..self.filled[port]]
    }
}

impl Source for NexmarkSource {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        if self.is_exhausted() {
            return SourcePoll::Exhausted;
        }
        let room = self.pace.allowed(out.batch_records_max(), Instant::now());
        if room == 0 {
            return SourcePoll::Idle;
        }
        let read = [
            out.has_port(BID),
            out.has_port(AUCTION),
            out.has_port(PERSON),
        ];
        let (watermark, _) = self.fill(room, read);
        if let Some(watermark) = watermark {
            out.watermark(watermark);
        }
        for port in [BID, AUCTION, PERSON] {
            let rows = self.filled(port);
            if !rows.is_empty() {
                out.push_all_to(port, rows);
            }
        }
        SourcePoll::Ready
    }

    /// The next event number, 8 bytes little-endian.
    fn position(&self) -> Vec<u8> {
        id_position(self.next_event())
    }

    /// Seeks to a logged [`position`](Source::position); refuses bytes that
    /// are not 8 long or name an event of another instance.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        self.seek(position_id(position)?)
            .map_err(|error| OperatorError::invalid(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Value;

    fn config(count: u64) -> NexmarkSourceConfig {
        toml::from_str(&format!("count = {count}")).unwrap()
    }

    /// All rows of an instance run to the end, by port, with its watermarks.
    fn drain(source: &mut NexmarkSource) -> ([Vec<Row>; 3], Vec<u64>) {
        let mut rows: [Vec<Row>; 3] = Default::default();
        let mut watermarks = Vec::new();
        while !source.is_exhausted() {
            let (watermark, _) = source.fill(1024, [true; 3]);
            watermarks.extend(watermark);
            for (port, rows) in rows.iter_mut().enumerate() {
                rows.extend_from_slice(source.filled(port));
            }
        }
        (rows, watermarks)
    }

    #[test]
    fn shards_split_the_events_of_one_run() {
        let config = config(5_000);
        let (whole, _) = drain(&mut NexmarkSource::instance(&config, 0, 1));
        assert_eq!(whole[PERSON].len(), 100);
        assert_eq!(whole[AUCTION].len(), 300);
        assert_eq!(whole[BID].len(), 4_600);
        let mut split: [Vec<Row>; 3] = Default::default();
        for instance in 0..3 {
            let (rows, _) = drain(&mut NexmarkSource::instance(&config, instance, 3));
            for (port, mut rows) in rows.into_iter().enumerate() {
                split[port].append(&mut rows);
            }
        }
        for port in 0..3 {
            let key = |row: &Row| format!("{:?}", row.values);
            let mut a: Vec<String> = whole[port].iter().map(key).collect();
            let mut b: Vec<String> = split[port].iter().map(key).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "port {port}");
        }
    }

    #[test]
    fn a_restored_instance_emits_the_rest_of_the_run() {
        let config = config(4_000);
        let (whole, whole_marks) = drain(&mut NexmarkSource::instance(&config, 1, 2));
        let mut first = NexmarkSource::instance(&config, 1, 2);
        let mut before: [Vec<Row>; 3] = Default::default();
        let mut marks = Vec::new();
        for _ in 0..3 {
            let (watermark, _) = first.fill(100, [true; 3]);
            marks.extend(watermark);
            for (port, rows) in before.iter_mut().enumerate() {
                rows.extend_from_slice(first.filled(port));
            }
        }
        let position = first.position();
        let mut second = NexmarkSource::instance(&config, 1, 2);
        second.restore(&position).unwrap();
        let (after, after_marks) = drain(&mut second);
        for port in 0..3 {
            let mut joined = before[port].clone();
            joined.extend(after[port].iter().cloned());
            assert_eq!(joined, whole[port], "port {port}");
        }
        marks.extend(after_marks);
        assert_eq!(marks, whole_marks);
        assert!(
            second.restore(&2u64.to_le_bytes()).is_err(),
            "event 2 is instance 0's"
        );
    }

    #[test]
    fn no_event_is_older_than_a_watermark_before_it() {
        let config: NexmarkSourceConfig =
            toml::from_str("count = 20000\nevents_per_second = 1000").unwrap();
        let mut source = NexmarkSource::instance(&config, 0, 2);
        let mut watermark = 0;
        let mut marks = 0;
        while !source.is_exhausted() {
            let (due, _) = source.fill(64, [true; 3]);
            if let Some(due) = due {
                assert!(due > watermark);
                watermark = due;
                marks += 1;
            }
            // `dateTime` of a bid, an auction, a person.
            for (port, time) in [(BID, 5), (AUCTION, 5), (PERSON, 6)] {
                for row in source.filled(port) {
                    let Value::Timestamp(ts) = row.values[time] else {
                        panic!("no time in {row:?}");
                    };
                    assert!(ts as u64 >= watermark);
                }
            }
        }
        // 20 s of event time, a watermark each 100 ms.
        assert!(marks >= 190, "{marks} watermarks");
    }

    #[test]
    fn bad_options_are_named() {
        let bad: NexmarkSourceConfig = toml::from_str("events_per_second = 0").unwrap();
        assert_eq!(bad.check("n").unwrap_err().option, "events_per_second");
        let bad: NexmarkSourceConfig = toml::from_str("count = 0").unwrap();
        assert_eq!(bad.check("n").unwrap_err().option, "count");
        assert!(toml::from_str::<NexmarkSourceConfig>("seed = 1").is_err());
    }
}
