//! Nexmark's events, exactly as the `nexmark` crate (0.2) generates them,
//! written into reused rows.
//!
//! The crate builds each event as a struct of fresh `String`s, formatted
//! and cloned; at a million events a second per core that allocation is
//! most of the source's time. This module makes the same random draws in
//! the same order, with the same integer types (a draw from `0..n` of a
//! `usize` and of an `i32` are different draws), and writes the results
//! straight into a row's values, reusing their strings. Its output equals
//! the crate's event for event: `tests::equals_the_crate` compares them.

use std::fmt::Write;
use std::sync::OnceLock;

use nexmark::config::NexmarkConfig;
use rand_nexmark::rngs::SmallRng;
use rand_nexmark::seq::SliceRandom;
use rand_nexmark::{Rng, SeedableRng};

use crate::row::Value;

/// The crate's `HOT_*_RATIO` constants: hot sellers, auctions and bidders
/// are chosen among the last this many.
const HOT_RATIO: usize = 100;
/// Strings are at least this long (`gen_string_with_delimiter`).
const MIN_STRING_LENGTH: usize = 3;
/// Channels in the crate's channel-to-URL table.
const CHANNELS: usize = 10_000;

/// The type of event `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A person registering.
    Person,
    /// An auction opening.
    Auction,
    /// A bid.
    Bid,
}

/// The crate's event generator, for one configuration.
#[derive(Debug, Clone)]
pub struct Generator {
    config: NexmarkConfig,
    /// People, auctions and bids in a cycle of events (1 + 3 + 46).
    denominator: usize,
    /// Microseconds between two events, as the crate computes it.
    delay_us: f32,
    hot_urls: Vec<String>,
}

/// The crate's `CHANNEL_URL_MAP`: 10 000 channels and their URLs.
fn channel_urls() -> &'static [(String, String)] {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..CHANNELS)
            .map(|i| {
                let mut url = base_url(i as u64);
                let mut rng = SmallRng::seed_from_u64(i as u64);
                if rng.gen_range(0..10) > 0 {
                    url.push_str("&channel_id=");
                    url.push_str(&i64::abs((i as i32).reverse_bits() as i64).to_string());
                }
                (format!("channel-{i}"), url)
            })
            .collect()
    })
}

/// The crate's `get_base_url`.
fn base_url(seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let id0 = string_with_delimiter(&mut rng, 5, '_');
    let id1 = string_with_delimiter(&mut rng, 5, '_');
    let id2 = string_with_delimiter(&mut rng, 5, '_');
    format!("https://www.nexmark.com/{id0}/{id1}/{id2}/item.htm?query=1")
}

fn string_with_delimiter(rng: &mut SmallRng, max: usize, delimiter: char) -> String {
    let len = rng.gen_range(MIN_STRING_LENGTH..max);
    (0..len)
        .map(|_| {
            if rng.gen_range(0..13) == 0 {
                delimiter
            } else {
                rng.gen_range(b'a'..=b'z') as char
            }
        })
        .collect()
}

/// `length` random lower-case letters appended to `out`.
fn letters(rng: &mut SmallRng, length: usize, out: &mut String) {
    out.reserve(length);
    for _ in 0..length {
        out.push(rng.gen_range(b'a'..=b'z') as char);
    }
}

/// The crate's `gen_next_extra`: letters making the event about
/// `average` bytes long, into `out`.
fn extra(rng: &mut SmallRng, current: usize, average: usize, out: &mut String) {
    out.clear();
    if current > average {
        return;
    }
    let average = average - current;
    let delta = (average + 2) / 5;
    let min = average - delta;
    let size = min
        + if delta == 0 {
            0
        } else {
            rng.gen_range(0..2 * delta)
        };
    letters(rng, size, out);
}

/// The crate's `gen_price`, in cents.
fn price(rng: &mut SmallRng) -> usize {
    (10.0_f32.powf(rng.gen::<f32>() * 6.0) * 100.0).round() as usize
}

/// The string in `value`, emptied for reuse (a new one if it held none).
fn text(value: &mut Value) -> &mut String {
    if !matches!(value, Value::String(_)) {
        *value = Value::String(String::new());
    }
    match value {
        Value::String(text) => {
            text.clear();
            text
        }
        _ => unreachable!("just made a string"),
    }
}

impl Generator {
    /// The generator of `config` (its rates equal: one event every
    /// `1 / first_rate` seconds, as the crate's single-rate case).
    pub fn new(config: NexmarkConfig) -> Generator {
        let denominator =
            config.person_proportion + config.auction_proportion + config.bid_proportion;
        let generators = config.num_event_generators as f32;
        let delay_us = config.us_per_unit as f32 / config.first_rate as f32 * generators;
        let hot_urls = (0..4).map(base_url).collect();
        // Built once per process, before the first bid needs it.
        let _ = channel_urls();
        Generator {
            config,
            denominator,
            delay_us,
            hot_urls,
        }
    }

    /// The type of event `n`.
    pub fn kind(&self, n: u64) -> Kind {
        let rem = n as usize % self.denominator;
        if rem < self.config.person_proportion {
            Kind::Person
        } else if rem < self.config.person_proportion + self.config.auction_proportion {
            Kind::Auction
        } else {
            Kind::Bid
        }
    }

    /// The time of event `n`, in milliseconds.
    pub fn timestamp(&self, n: u64) -> u64 {
        self.config.base_time + ((n as f32 * self.delay_us) / 1000.0).round() as u64
    }

    /// The last person id (from 0) at event `id`.
    fn last_person(&self, id: usize) -> usize {
        let epoch = id / self.denominator;
        let offset = (id % self.denominator).min(self.config.person_proportion - 1);
        epoch * self.config.person_proportion + offset
    }

    /// A random person id (from 0) among the active ones at event `id`.
    fn next_person(&self, id: usize, rng: &mut SmallRng) -> usize {
        let people = self.last_person(id) + 1;
        let active = people.min(self.config.active_people);
        people - active + rng.gen_range(0..active + self.config.person_id_lead)
    }

    /// The last auction id (from 0) at event `id`.
    fn last_auction(&self, id: usize) -> usize {
        let config = &self.config;
        let mut epoch = id / self.denominator;
        let mut offset = id % self.denominator;
        if offset < config.person_proportion {
            epoch -= 1;
            offset = config.auction_proportion - 1;
        } else if config.person_proportion + config.auction_proportion <= offset {
            offset = config.auction_proportion - 1;
        } else {
            offset -= config.person_proportion;
        }
        epoch * config.auction_proportion + offset
    }

    /// A random auction id (from 0) among those in flight at event `id`.
    fn next_auction(&self, id: usize, rng: &mut SmallRng) -> usize {
        let max = self.last_auction(id);
        let min = max.saturating_sub(self.config.in_flight_auctions);
        min + rng.gen_range(0..max - min + 1 + self.config.auction_id_lead)
    }

    /// Writes bid `n` into `values` (the `bid` output's 7 fields).
    pub fn bid(&self, n: u64, values: &mut [Value]) {
        let config = &self.config;
        let id = config.first_event_id + n as usize;
        let rng = &mut SmallRng::seed_from_u64(id as u64);
        let auction = if 0 < rng.gen_range(0..config.hot_auction_ratio) {
            (self.last_auction(id) / HOT_RATIO) * HOT_RATIO
        } else {
            self.next_auction(id, rng)
        };
        let bidder = if 0 < rng.gen_range(0..config.hot_bidder_ratio) {
            (self.last_person(id) / HOT_RATIO) * HOT_RATIO + 1
        } else {
            self.next_person(id, rng)
        };
        let price = price(rng);
        let (channel, url) = if rng.gen_range(0..config.hot_channel_ratio) > 0 {
            let index = rng.gen_range(0..config.hot_channels.len());
            (&config.hot_channels[index], &self.hot_urls[index])
        } else {
            let (channel, url) = channel_urls().choose(rng).expect("10 000 channels");
            (channel, url)
        };
        values[0] = Value::Int((auction + config.first_auction_id) as i64);
        values[1] = Value::Int((bidder + config.first_person_id) as i64);
        values[2] = Value::Int(price as i64);
        text(&mut values[3]).push_str(channel);
        text(&mut values[4]).push_str(url);
        values[5] = Value::Timestamp(self.timestamp(n) as i64);
        extra(
            rng,
            8 + 8 + 8 + 8,
            config.avg_bid_byte_size,
            text(&mut values[6]),
        );
    }

    /// Writes auction `n` into `values` (the `auction` output's 10 fields).
    pub fn auction(&self, n: u64, values: &mut [Value]) {
        let config = &self.config;
        let id = config.first_event_id + n as usize;
        let time = self.timestamp(n);
        let rng = &mut SmallRng::seed_from_u64(id as u64);
        let item = text(&mut values[1]);
        letters(rng, 20, item);
        let item_len = item.len();
        let description = text(&mut values[2]);
        letters(rng, 100, description);
        let description_len = description.len();
        let initial_bid = price(rng);
        let reserve = initial_bid + price(rng);
        // The auction's length: up to twice the time until the auction
        // `in_flight_auctions` later opens.
        let events_for_auctions =
            (config.in_flight_auctions * self.denominator) / config.auction_proportion;
        let future = self.timestamp(n + events_for_auctions as u64);
        let horizon = future - time;
        let expires = time + 1 + rng.gen_range(0..(horizon * 2).max(1));
        let mut seller = if rng.gen_range(0..config.hot_seller_ratio) > 0 {
            (self.last_person(id) / HOT_RATIO) * HOT_RATIO
        } else {
            self.next_person(id, rng)
        };
        seller += config.first_person_id;
        let category = config.first_category_id + rng.gen_range(0..config.num_categories);
        let current = 8 + item_len + description_len + 8 + 8 + 8 + 8 + 8;
        values[0] = Value::Int((self.last_auction(id) + config.first_auction_id) as i64);
        values[3] = Value::Int(initial_bid as i64);
        values[4] = Value::Int(reserve as i64);
        values[5] = Value::Timestamp(time as i64);
        values[6] = Value::Timestamp(expires as i64);
        values[7] = Value::Int(seller as i64);
        values[8] = Value::Int(category as i64);
        extra(
            rng,
            current,
            config.avg_auction_byte_size,
            text(&mut values[9]),
        );
    }

    /// Writes person `n` into `values` (the `person` output's 8 fields).
    pub fn person(&self, n: u64, values: &mut [Value]) {
        let config = &self.config;
        let id = config.first_event_id + n as usize;
        let rng = &mut SmallRng::seed_from_u64(id as u64);
        let first = config.first_names.choose(rng).expect("first names");
        let last = config.last_names.choose(rng).expect("last names");
        let name = text(&mut values[1]);
        let _ = write!(name, "{first} {last}");
        let name_len = name.len();
        let email = text(&mut values[2]);
        letters(rng, 7, email);
        email.push('@');
        letters(rng, 5, email);
        email.push_str(".com");
        let email_len = email.len();
        let card = text(&mut values[3]);
        let digits: [i32; 4] = std::array::from_fn(|_| rng.gen_range(0..10000));
        let _ = write!(
            card,
            "{:04} {:04} {:04} {:04}",
            digits[0], digits[1], digits[2], digits[3]
        );
        let card_len = card.len();
        let city = config.us_cities.choose(rng).expect("cities");
        let state = config.us_states.choose(rng).expect("states");
        text(&mut values[4]).push_str(city);
        text(&mut values[5]).push_str(state);
        let current = 8 + name_len + email_len + card_len + city.len() + state.len();
        values[0] = Value::Int((self.last_person(id) + config.first_person_id) as i64);
        values[6] = Value::Timestamp(self.timestamp(n) as i64);
        extra(
            rng,
            current,
            config.avg_person_byte_size,
            text(&mut values[7]),
        );
    }
}

#[cfg(test)]
mod tests {
    use nexmark::event::Event;
    use nexmark::EventGenerator;

    use super::*;
    use crate::row::Value;

    /// The crate's event as the source's row values.
    fn crate_values(event: Event) -> (Kind, Vec<Value>) {
        let int = |v: usize| Value::Int(v as i64);
        let time = |v: u64| Value::Timestamp(v as i64);
        match event {
            Event::Bid(b) => (
                Kind::Bid,
                vec![
                    int(b.auction),
                    int(b.bidder),
                    int(b.price),
                    Value::String(b.channel),
                    Value::String(b.url),
                    time(b.date_time),
                    Value::String(b.extra),
                ],
            ),
            Event::Auction(a) => (
                Kind::Auction,
                vec![
                    int(a.id),
                    Value::String(a.item_name),
                    Value::String(a.description),
                    int(a.initial_bid),
                    int(a.reserve),
                    time(a.date_time),
                    time(a.expires),
                    int(a.seller),
                    int(a.category),
                    Value::String(a.extra),
                ],
            ),
            Event::Person(p) => (
                Kind::Person,
                vec![
                    int(p.id),
                    Value::String(p.name),
                    Value::String(p.email_address),
                    Value::String(p.credit_card),
                    Value::String(p.city),
                    Value::String(p.state),
                    time(p.date_time),
                    Value::String(p.extra),
                ],
            ),
        }
    }

    fn compare(config: NexmarkConfig, numbers: impl Iterator<Item = u64>) {
        let ours = Generator::new(config.clone());
        // Rows reused across events, as the source reuses them.
        let mut rows: [Vec<Value>; 3] = [
            vec![Value::Null; 7],
            vec![Value::Null; 10],
            vec![Value::Null; 8],
        ];
        for n in numbers {
            let reference = EventGenerator::new(config.clone())
                .with_offset(n)
                .next()
                .expect("an event");
            let (kind, expected) = crate_values(reference);
            assert_eq!(ours.kind(n), kind, "event {n}");
            let values = match kind {
                Kind::Bid => {
                    ours.bid(n, &mut rows[0]);
                    &rows[0]
                }
                Kind::Auction => {
                    ours.auction(n, &mut rows[1]);
                    &rows[1]
                }
                Kind::Person => {
                    ours.person(n, &mut rows[2]);
                    &rows[2]
                }
            };
            assert_eq!(values, &expected, "event {n}");
        }
    }

    #[test]
    fn equals_the_crate() {
        let config = NexmarkConfig {
            base_time: 1_436_918_400_000,
            ..NexmarkConfig::default()
        };
        compare(config.clone(), 0..20_000);
        compare(
            config.clone(),
            (0..2_000).map(|i| 3_000_000_000 + i * 7_919),
        );
        let other = NexmarkConfig {
            first_rate: 10_000_000,
            next_rate: 10_000_000,
            active_people: 50,
            in_flight_auctions: 7,
            hot_auction_ratio: 3,
            hot_seller_ratio: 1,
            hot_bidder_ratio: 9,
            num_categories: 2,
            base_time: 0,
            ..NexmarkConfig::default()
        };
        compare(
            other,
            (0..5_000).chain((0..1_000).map(|i| 100_000_000 + i * 997)),
        );
    }
}
