//! [`ProfileGenerator`]: realistic synthetic traffic as [`Row`]s (web
//! access logs, authentication events, network flows), with attacks
//! injected at known event times, so detection pipelines can be tested
//! against an exact truth ([`attack_truth`]).
//!
//! # Profiles and their schemas
//! The schema is fixed per profile ([`profile_schema`]); every field is
//! always set (never `Null`).
//!
//! - `web_access`: `timestamp: timestamp, client_ip: ip, method: string,
//!   path: string, status: int, bytes: int, user_agent: string,
//!   user_id: string, line: string`. `user_id` is `"-"` for anonymous
//!   requests. `line` is the same request in the Apache combined log format,
//!   `203.0.113.7 - alice [01/Jan/2026:00:02:00 +0000] "POST /login HTTP/1.1"
//!   401 153 "-" "python-requests/2.31.0"`, with the time in whole seconds
//!   (UTC) and the referrer always `"-"`. About 5% of the normal requests
//!   are load-balancer health checks: `GET /health` from `10.0.0.2` or
//!   `10.0.0.3`, status 200, user agent `ELB-HealthChecker/2.0`. Paths,
//!   users and client addresses are Zipf-distributed over their pools.
//! - `auth`: `timestamp: timestamp, source_ip: ip, user: string,
//!   outcome: string ("success" | "failure"), method: string ("password" |
//!   "ssh_key" | "totp"), service: string ("sshd" | "vpn" | "webmail")`.
//!   A user logs in from their own "home" address 90% of the time; about 3%
//!   of normal logins fail.
//! - `flows`: `timestamp: timestamp, src_ip: ip, dst_ip: ip, dst_port: int,
//!   protocol: string ("tcp" | "udp"), bytes: int, packets: int`. Normal
//!   flows go from internal hosts (`10.x.y.z`, option `hosts`) to external
//!   servers (option `ips`).
//!
//! # Ids, event time and attacks
//! Events come from streams: the normal stream, at `events_per_second`
//! events per second of event time, and one stream per attack. Event `k`
//! of a stream that starts at `base` with rate `r` per second has event time
//! `base + floor(k * 1000 / r)` ms; the normal stream starts at `start`
//! and never ends, attack `a` starts at `start + from` and has exactly
//! `floor(duration_ms * r / 1000)` events, all inside
//! `[start + from, start + from + duration)`.
//!
//! The global id sequence is the merge of all streams ordered by
//! `(event time, stream, k)` (normal stream first, then attacks in
//! configuration order). So ids are dense from 0, event time never decreases
//! with the id, and id `i` is always the same event: [`ProfileSpec::locate`]
//! maps an id to its stream, index and time in `O(log)` (a binary search
//! over time using each stream's closed-form count). Without attacks,
//! id `i` has time `start + i * 1000 / events_per_second`, exactly like
//! [`KeyedGenerator`](super::KeyedGenerator). `count`, when set, bounds the
//! total number of ids (normal and attack events together).
//!
//! Every field of an event is a pure function of `(seed, id)` and the
//! configuration, so a restored instance reproduces the same rows.
//!
//! Attacks:
//! - `brute_force { ip, from, duration, per_second }`: `per_second` extra
//!   events per second from `ip` during the window. `auth`: failed
//!   `password` logins to `sshd` against varied user names (pool users and
//!   common guesses such as `root`, `admin`); `web_access`: `POST /login`
//!   answered `401`, `user_id` the guessed name; `flows`: TCP flows to port
//!   22 of the first internal host.
//! - `ddos { target, from, duration, multiplier }`: `multiplier *
//!   events_per_second` extra events per second during the window, from a
//!   pool of 1024 "botnet" addresses. `web_access`: requests for the path
//!   `target` (`POST` when it is `/login`, else `GET`; status 200 or 503);
//!   `flows`: small TCP flows to port 443 of the address `target`. Not
//!   available for `auth`.
//!
//! Normal traffic never uses an attack's `ip` nor a botnet address, so for
//! example the `auth` failures from a brute-force `ip` are exactly that
//! attack's events: [`AttackTruth::emitted`] of them, at the times
//! [`AttackTruth::event_time_ms`] gives. A DDoS target may also receive
//! normal traffic (`/login` does); [`ProfileSpec::locate`] tells which ids
//! are attack events, and a test can count the normal ones by running the
//! generator itself (it is deterministic).
//!
//! # Instances, position, watermarks, rate
//! As for [`KeyedGenerator`](super::KeyedGenerator): instance `i` of `n` emits
//! ids `i, i + n, ...`; the position is the next id (8 bytes little-endian)
//! and a restored instance emits exactly the suffix of an uninterrupted
//! run, rows and watermarks alike. Before id `j` it emits the watermark
//! `floor(ts(j) / 100) * 100` when that is greater than the one due at its
//! previous id `j - n`. With `rate` set, each instance emits at most
//! `rate / n` rows per second of wall-clock time and is `Idle` when ahead.
//!
//! # Cost
//! Pools (names, paths, addresses and their text) are built once by
//! [`build`] and shared by all instances. An instance rewrites one [`Row`]
//! in place per event (its strings keep their capacity) and pushes it, so
//! steady state allocates nothing per event.

mod auth;
mod config;
mod flows;
mod pools;
mod random;
mod rows;
mod spec;
mod streams;
mod truth;
mod web;

#[cfg(test)]
mod tests;

use std::time::Instant;

use weir_runtime::{Emitter, OperatorError, ShardContext, Source, SourcePoll};

use crate::row::{OptionError, Row, Value};
use crate::sources::numbered::{
    check_position, id_position, position_id, InvalidPosition, Pace, WATERMARK_INTERVAL_MS,
};
use auth::write_auth;
use flows::write_flow;
use random::Rng;
use spec::SpecInner;
use streams::Cursor;
use web::write_web;

pub use config::{
    profile_schema, AttackConfig, Profile, ProfileGeneratorConfig, ATTACKS_MAX, BOTNET_SIZE,
    DEFAULT_START, POPULATION_MAX,
};
pub use spec::EventOrigin;
pub use spec::{build, ProfileSpec};
pub use truth::{attack_truth, AttackKind, AttackTruth};

/// What [`ProfileGenerator::generate`] hands out, in emission order.
#[derive(Debug, Clone, Copy)]
pub enum ProfileItem<'a> {
    /// A watermark, before the rows it covers.
    Watermark(u64),
    /// A row (valid until the next item).
    Row(&'a Row),
}

/// One instance of a profile generator; see the module docs.
#[derive(Debug)]
pub struct ProfileGenerator {
    spec: ProfileSpec,
    instance: u64,
    step: u64,
    cursor: Cursor,
    /// The watermark due at this instance's previous id, if any.
    previous_watermark: Option<u64>,
    pace: Pace,
    row: Row,
}

impl ProfileGenerator {
    /// Instance `context.instance` of `context.instances`, from the start.
    pub fn new(spec: ProfileSpec, context: &ShardContext) -> ProfileGenerator {
        let position = context.instance as u64;
        ProfileGenerator::resume(spec, context.instance, context.instances, position)
            .expect("an instance's first id is its own")
    }

    /// Instance `instance` of `instances`, resuming at `position` (a value
    /// of [`next_id`](Self::next_id) of the same instance).
    ///
    /// # Panics
    /// If `instance` is not below `instances`.
    pub fn resume(
        spec: ProfileSpec,
        instance: usize,
        instances: usize,
        position: u64,
    ) -> Result<ProfileGenerator, InvalidPosition> {
        assert!(instance < instances, "instance {instance} of {instances}");
        let width = profile_schema(spec.inner.profile).len();
        let mut generator = ProfileGenerator {
            pace: Pace::new(spec.inner.rate, instances),
            cursor: spec.inner.cursor_at(instance as u64),
            spec,
            instance: instance as u64,
            step: instances as u64,
            previous_watermark: None,
            row: Row::nulls(width),
        };
        generator.seek(position)?;
        Ok(generator)
    }

    /// Moves to `position` (the next id to emit); the rate schedule starts
    /// again.
    pub fn seek(&mut self, position: u64) -> Result<(), InvalidPosition> {
        check_position(position, self.instance, self.step)?;
        let inner = &self.spec.inner;
        self.previous_watermark = position
            .checked_sub(self.step)
            .map(|previous| watermark_of(inner.cursor_at(previous).ts()));
        self.cursor = inner.cursor_at(position);
        self.pace.restart();
        Ok(())
    }

    /// The next id this instance emits (its position).
    pub fn next_id(&self) -> u64 {
        self.cursor.id
    }

    /// Whether this instance has no id left.
    pub fn is_exhausted(&self) -> bool {
        self.cursor.id >= self.spec.inner.end
    }

    /// The spec.
    pub fn spec(&self) -> &ProfileSpec {
        &self.spec
    }

    /// Generates up to `max` rows, handing each (and each watermark due
    /// before it) to `emit`; returns the rows generated. Independent of
    /// the wall clock.
    pub fn generate(&mut self, max: usize, mut emit: impl FnMut(ProfileItem<'_>)) -> usize {
        let mut rows = 0;
        let end = self.spec.inner.end;
        while rows < max && self.cursor.id < end {
            let ts = self.cursor.ts();
            let watermark = watermark_of(ts);
            if self
                .previous_watermark
                .is_some_and(|previous| watermark > previous)
            {
                emit(ProfileItem::Watermark(watermark));
            }
            self.previous_watermark = Some(watermark);
            write_event(
                &self.spec.inner,
                self.cursor.id,
                self.cursor.current,
                ts,
                &mut self.row,
            );
            emit(ProfileItem::Row(&self.row));
            rows += 1;
            for _ in 0..self.step {
                self.cursor.advance(&self.spec.inner.streams);
            }
        }
        self.pace.emitted(rows);
        rows
    }

    /// Rows the rate allows at `now`, at most `room` (as
    /// [`KeyedGenerator::allowed`](super::KeyedGenerator::allowed)).
    pub fn allowed(&mut self, room: usize, now: Instant) -> usize {
        self.pace.allowed(room, now)
    }
}

fn watermark_of(ts: u64) -> u64 {
    ts - ts % WATERMARK_INTERVAL_MS
}

impl Source for ProfileGenerator {
    type Output = Row;

    fn poll(&mut self, out: &mut Emitter<Row>) -> SourcePoll {
        if self.is_exhausted() {
            return SourcePoll::Exhausted;
        }
        let room = self.allowed(out.batch_records_max(), Instant::now());
        if room == 0 {
            return SourcePoll::Idle;
        }
        self.generate(room, |item| match item {
            ProfileItem::Watermark(watermark) => out.watermark(watermark),
            ProfileItem::Row(row) => out.push(row),
        });
        SourcePoll::Ready
    }

    /// The next id, 8 bytes little-endian.
    fn position(&self) -> Vec<u8> {
        id_position(self.next_id())
    }

    /// Seeks to a logged position; refuses bytes that are not 8 long or
    /// name an id of another instance.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        self.seek(position_id(position)?)
            .map_err(|error| OperatorError::invalid(error.to_string()))
    }
}

impl crate::component::Component for ProfileGeneratorConfig {
    fn plan(
        &self,
        _context: &crate::component::PlanContext<'_>,
    ) -> Result<crate::component::Planned, OptionError> {
        let (spec, schema) = build(self)?;
        let outputs = vec![crate::component::Output::rows(schema)];
        Ok(crate::component::Planned::new(outputs, spec))
    }
}

impl crate::component::Node for ProfileSpec {
    fn add(
        &self,
        graph: &mut weir_runtime::GraphBuilder,
        name: &str,
        _inputs: &[crate::component::Input],
    ) {
        let spec = self.clone();
        graph.source(name, move |context| {
            ProfileGenerator::new(spec.clone(), context)
        });
    }
}

/// Writes event `id` (of stream `stream`, at `ts`) into `row`.
fn write_event(spec: &SpecInner, id: u64, stream: usize, ts: u64, row: &mut Row) {
    let mut rng = Rng::of(spec.seed, id);
    let attack = stream.checked_sub(1).map(|a| &spec.attacks[a]);
    row.values[0] = Value::Timestamp(i64::try_from(ts).unwrap_or(i64::MAX));
    match spec.profile {
        Profile::WebAccess => write_web(&spec.pools, attack, ts, &mut rng, row),
        Profile::Auth => write_auth(&spec.pools, spec.seed, attack, &mut rng, row),
        Profile::Flows => write_flow(&spec.pools, attack, &mut rng, row),
    }
}
