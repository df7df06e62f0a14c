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
//! [`ConfigEvents`](super::ConfigEvents). `count`, when set, bounds the
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
//! As for [`ConfigEvents`](super::ConfigEvents): instance `i` of `n` emits
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

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weir_runtime::{Emitter, ShardContext, Source, SourcePoll, StateError};

use super::{mix, InvalidPosition, WATERMARK_INTERVAL_MS};
use crate::row::{parse_timestamp, Ip, OptionError, Row, Schema, Type, Value};

/// Which kind of traffic a [`ProfileGenerator`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Web server access logs.
    WebAccess,
    /// Login events.
    Auth,
    /// Network flow records.
    Flows,
}

impl Profile {
    /// The name pipeline files use.
    pub fn name(self) -> &'static str {
        match self {
            Profile::WebAccess => "web_access",
            Profile::Auth => "auth",
            Profile::Flows => "flows",
        }
    }
}

/// The default of [`ProfileGeneratorConfig::start`].
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

/// Attacks one generator may have at most.
pub const ATTACKS_MAX: usize = 16;

/// Largest population option (`users`, `ips`, `paths`, `hosts`).
pub const POPULATION_MAX: u32 = 1_000_000;

/// Addresses in the DDoS botnet pool.
pub const BOTNET_SIZE: usize = 1024;

fn default_start() -> String {
    DEFAULT_START.to_owned()
}

/// Configuration of a profile generator; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileGeneratorConfig {
    /// `"web_access"`, `"auth"` or `"flows"`.
    pub profile: Profile,
    /// Events (ids) over all instances, attack events included; `None`
    /// means unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Normal events per second of event time.
    pub events_per_second: u64,
    /// Wall-clock limit in events per second over all instances; `None`
    /// means as fast as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// Event time of the first event, RFC 3339 (default
    /// `2026-01-01T00:00:00Z`).
    #[serde(default = "default_start")]
    pub start: String,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// User names in the pool (default 1000; `web_access` and `auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u32>,
    /// Addresses in the pool (default 5000): clients for `web_access` and
    /// `auth`, external servers for `flows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<u32>,
    /// Distinct paths (default 200; `web_access` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<u32>,
    /// Internal hosts (default 500; `flows` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<u32>,
    /// Attacks injected into the traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<AttackConfig>,
}

/// One injected attack; `from` and `duration` are durations (`"2m"`,
/// `"90s"`) measured in event time from `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttackConfig {
    /// `type = "brute_force"`: failed logins from one address.
    BruteForce {
        /// The attacker's address.
        ip: String,
        /// When the attack starts, after `start`.
        from: String,
        /// How long it lasts.
        duration: String,
        /// Attack events per second of event time.
        per_second: u64,
    },
    /// `type = "ddos"`: a surge of requests or flows to one target.
    Ddos {
        /// A path (`web_access`) or a destination address (`flows`).
        target: String,
        /// When the attack starts, after `start`.
        from: String,
        /// How long it lasts.
        duration: String,
        /// Attack events per second, as a multiple of `events_per_second`.
        multiplier: u64,
    },
}

/// What kind an attack is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttackKind {
    /// `brute_force`.
    BruteForce,
    /// `ddos`.
    Ddos,
}

/// Exactly what one configured attack puts into the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackTruth {
    /// The attack's index in `attacks`.
    pub index: usize,
    /// Its kind.
    pub kind: AttackKind,
    /// A brute force's attacker address (the source of all its events).
    pub source_ip: Option<Ip>,
    /// A ddos's target as configured (a path or an address).
    pub target: Option<String>,
    /// First millisecond of the window (absolute event time).
    pub start_ms: u64,
    /// End of the window (exclusive).
    pub end_ms: u64,
    /// Attack events per second of event time.
    pub per_second: u64,
    /// Events of the whole window: `duration_ms * per_second / 1000`.
    pub planned: u64,
    /// Events among the generated ids (fewer than `planned` only when
    /// `count` cuts the run short): events `0..emitted`.
    pub emitted: u64,
}

impl AttackTruth {
    /// Event time of the attack's event `k` (`k < planned`).
    pub fn event_time_ms(&self, k: u64) -> u64 {
        stream_time(self.start_ms, self.per_second, k)
    }
}

/// Where an id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOrigin {
    /// `None` for normal traffic, else the attack's index.
    pub attack: Option<usize>,
    /// The event's index within its stream.
    pub index: u64,
    /// Its event time, in milliseconds.
    pub ts_ms: u64,
}

/// One stream of events: `len` events at `per_second` from `base_ms`.
#[derive(Debug, Clone, Copy)]
struct Stream {
    base_ms: u64,
    per_second: u64,
    len: u64,
}

fn stream_time(base_ms: u64, per_second: u64, k: u64) -> u64 {
    let offset = u128::from(k) * 1000 / u128::from(per_second);
    base_ms.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
}

impl Stream {
    /// Time of event `k`, or `u64::MAX` past the end.
    fn head(&self, k: u64) -> u64 {
        if k >= self.len {
            u64::MAX
        } else {
            stream_time(self.base_ms, self.per_second, k)
        }
    }

    /// Events with time `<= t`.
    fn count_le(&self, t: u64) -> u64 {
        if t < self.base_ms {
            return 0;
        }
        let span = u128::from(t - self.base_ms) + 1;
        let count = (span * u128::from(self.per_second)).div_ceil(1000);
        u64::try_from(count).unwrap_or(u64::MAX).min(self.len)
    }

    /// Events with time `< t`.
    fn count_lt(&self, t: u64) -> u64 {
        if t == 0 {
            0
        } else {
            self.count_le(t - 1)
        }
    }
}

/// Position in the merged id sequence: the event with id `id` is event
/// `next[current]` of stream `current`.
#[derive(Debug, Clone)]
struct Cursor {
    id: u64,
    next: Vec<u64>,
    head: Vec<u64>,
    current: usize,
}

impl Cursor {
    fn ts(&self) -> u64 {
        self.head[self.current]
    }

    fn index(&self) -> u64 {
        self.next[self.current]
    }

    fn advance(&mut self, streams: &[Stream]) {
        let s = self.current;
        self.next[s] += 1;
        self.head[s] = streams[s].head(self.next[s]);
        self.id += 1;
        self.current = argmin(&self.head);
    }
}

fn argmin(heads: &[u64]) -> usize {
    let mut best = 0;
    for (index, &head) in heads.iter().enumerate().skip(1) {
        if head < heads[best] {
            best = index;
        }
    }
    best
}

/// A configured attack, resolved.
#[derive(Debug, Clone)]
enum Attack {
    BruteForce { ip: Endpoint },
    DdosPath { path: String },
    DdosIp { ip: Endpoint },
}

/// An address and its text.
#[derive(Debug, Clone)]
struct Endpoint {
    ip: Ip,
    text: String,
}

impl Endpoint {
    fn v4(addr: Ipv4Addr) -> Endpoint {
        Endpoint {
            ip: Ip::from(IpAddr::V4(addr)),
            text: addr.to_string(),
        }
    }
}

/// A cumulative distribution for Zipf-like picks among `n` items.
#[derive(Debug, Clone)]
struct Zipf {
    cdf: Vec<u64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Zipf {
        let weights: Vec<f64> = (0..n)
            .map(|i| 1.0 / ((i + 1) as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                sum += w;
                ((sum / total) * (1u64 << 63) as f64) as u64
            })
            .collect();
        Zipf { cdf }
    }

    fn pick(&self, random: u64) -> usize {
        let u = random >> 1;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A small deterministic random sequence (splitmix64).
struct Rng(u64);

impl Rng {
    fn of(seed: u64, id: u64) -> Rng {
        Rng(mix(seed) ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathClass {
    Page,
    Static,
    Api,
    Login,
}

#[derive(Debug, Clone)]
struct PathEntry {
    path: String,
    class: PathClass,
}

/// Everything events are drawn from, built once.
#[derive(Debug)]
struct Pools {
    users: Vec<String>,
    user_zipf: Zipf,
    /// Clients (`web_access`, `auth`) or external servers (`flows`).
    ips: Vec<Endpoint>,
    ip_zipf: Zipf,
    paths: Vec<PathEntry>,
    path_zipf: Zipf,
    /// Internal hosts (`flows`).
    hosts: Vec<Endpoint>,
    host_zipf: Zipf,
    botnet: Vec<Endpoint>,
    health: [Endpoint; 2],
}

const FIRST_NAMES: [&str; 64] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula", "victor", "wendy",
    "xavier", "yolanda", "zoe", "aaron", "bella", "chen", "diego", "elena", "farid", "gita",
    "hugo", "ines", "jonas", "kira", "liam", "maya", "noah", "olga", "pablo", "rosa", "sven",
    "tara", "umar", "vera", "wei", "yusuf", "zara", "amir", "bianca", "carlos", "dana", "emil",
    "fatima", "gustav", "hana", "igor", "jasmin", "kenji", "lena", "marco", "nadia", "omar",
    "priya",
];

const GUESSED_USERS: [&str; 10] = [
    "root", "admin", "test", "oracle", "ubuntu", "guest", "user", "postgres", "git", "ftp",
];

const COMMON_PATHS: [(&str, PathClass); 16] = [
    ("/", PathClass::Page),
    ("/index.html", PathClass::Page),
    ("/login", PathClass::Login),
    ("/static/css/main.css", PathClass::Static),
    ("/static/js/app.js", PathClass::Static),
    ("/api/v1/session", PathClass::Api),
    ("/search", PathClass::Page),
    ("/favicon.ico", PathClass::Static),
    ("/cart", PathClass::Page),
    ("/api/v1/cart", PathClass::Api),
    ("/account", PathClass::Page),
    ("/logout", PathClass::Page),
    ("/checkout", PathClass::Page),
    ("/about", PathClass::Page),
    ("/contact", PathClass::Page),
    ("/robots.txt", PathClass::Static),
];

const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
];

const BOT_AGENTS: [&str; 4] = [
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "curl/7.68.0",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1)",
];

const HEALTH_AGENT: &str = "ELB-HealthChecker/2.0";

/// First octets of normal public addresses; disjoint from [`BOTNET_OCTETS`]
/// and from the documentation ranges (192.0.2/24, 198.51.100/24,
/// 203.0.113/24) that examples use for attackers.
const PUBLIC_OCTETS: [u8; 20] = [
    23, 31, 37, 45, 52, 66, 73, 81, 89, 94, 104, 109, 142, 151, 176, 185, 188, 195, 212, 217,
];

const BOTNET_OCTETS: [u8; 8] = [5, 41, 59, 77, 91, 115, 177, 201];

/// `(port, protocol, weight)` of normal flows.
const FLOW_PORTS: [(u16, &str, u64); 10] = [
    (443, "tcp", 550),
    (80, "tcp", 150),
    (53, "udp", 120),
    (8080, "tcp", 40),
    (22, "tcp", 30),
    (123, "udp", 20),
    (3306, "tcp", 20),
    (5432, "tcp", 20),
    (993, "tcp", 30),
    (25, "tcp", 20),
];

/// A validated generator configuration; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ProfileSpec {
    inner: Arc<SpecInner>,
}

#[derive(Debug)]
struct SpecInner {
    profile: Profile,
    seed: u64,
    end: u64,
    rate: Option<u64>,
    /// `[normal, attack 0, attack 1, ...]`.
    streams: Vec<Stream>,
    attacks: Vec<Attack>,
    pools: Pools,
}

/// The fixed schema of `profile`; see the module docs.
pub fn profile_schema(profile: Profile) -> Schema {
    match profile {
        Profile::WebAccess => Schema::new([
            ("timestamp", Type::Timestamp),
            ("client_ip", Type::Ip),
            ("method", Type::String),
            ("path", Type::String),
            ("status", Type::Int),
            ("bytes", Type::Int),
            ("user_agent", Type::String),
            ("user_id", Type::String),
            ("line", Type::String),
        ]),
        Profile::Auth => Schema::new([
            ("timestamp", Type::Timestamp),
            ("source_ip", Type::Ip),
            ("user", Type::String),
            ("outcome", Type::String),
            ("method", Type::String),
            ("service", Type::String),
        ]),
        Profile::Flows => Schema::new([
            ("timestamp", Type::Timestamp),
            ("src_ip", Type::Ip),
            ("dst_ip", Type::Ip),
            ("dst_port", Type::Int),
            ("protocol", Type::String),
            ("bytes", Type::Int),
            ("packets", Type::Int),
        ]),
    }
}

fn population(
    value: Option<u32>,
    option: &str,
    default: u32,
    allowed: bool,
    profile: Profile,
) -> Result<usize, OptionError> {
    match value {
        None => Ok(default as usize),
        Some(_) if !allowed => Err(OptionError::new(
            option,
            format!("the {} profile has no `{option}`", profile.name()),
        )),
        Some(0) => Err(OptionError::new(option, "must be positive")),
        Some(n) if n > POPULATION_MAX => Err(OptionError::new(
            option,
            format!("{n} is more than the most, {POPULATION_MAX}"),
        )),
        Some(n) => Ok(n as usize),
    }
}

fn duration_option(option: &str, text: &str) -> Result<u64, OptionError> {
    crate::duration::parse_ms(text).map_err(|message| OptionError::new(option, message))
}

/// Checks `config` and builds what every instance shares (the pools),
/// with the profile's output schema.
pub fn build(config: &ProfileGeneratorConfig) -> Result<(ProfileSpec, Schema), OptionError> {
    let profile = config.profile;
    if config.events_per_second == 0 {
        return Err(OptionError::new("events_per_second", "must be positive"));
    }
    if config.rate == Some(0) {
        return Err(OptionError::new(
            "rate",
            "must be positive (leave it out for no limit)",
        ));
    }
    let start = parse_timestamp(&config.start).ok_or_else(|| {
        OptionError::new(
            "start",
            format!(
                "`{}` is not an RFC 3339 time such as \"{DEFAULT_START}\"",
                config.start
            ),
        )
    })?;
    let start_ms =
        u64::try_from(start).map_err(|_| OptionError::new("start", "must not be before 1970"))?;
    let users = population(
        config.users,
        "users",
        1000,
        profile != Profile::Flows,
        profile,
    )?;
    let ips = population(config.ips, "ips", 5000, true, profile)?;
    let paths = population(
        config.paths,
        "paths",
        200,
        profile == Profile::WebAccess,
        profile,
    )?;
    let hosts = population(
        config.hosts,
        "hosts",
        500,
        profile == Profile::Flows,
        profile,
    )?;
    if config.attacks.len() > ATTACKS_MAX {
        return Err(OptionError::new(
            "attacks",
            format!("{} attacks; at most {ATTACKS_MAX}", config.attacks.len()),
        ));
    }

    let mut streams = vec![Stream {
        base_ms: start_ms,
        per_second: config.events_per_second,
        len: u64::MAX,
    }];
    let mut attacks = Vec::new();
    let mut reserved = HashSet::new();
    for (index, attack) in config.attacks.iter().enumerate() {
        let key = |field: &str| format!("attacks[{index}].{field}");
        let (from, duration, per_second, resolved) = match attack {
            AttackConfig::BruteForce {
                ip,
                from,
                duration,
                per_second,
            } => {
                let addr: IpAddr = ip.parse().map_err(|_| {
                    OptionError::new(key("ip"), format!("`{ip}` is not an IP address"))
                })?;
                if *per_second == 0 {
                    return Err(OptionError::new(key("per_second"), "must be positive"));
                }
                reserved.insert(Ip::from(addr));
                let ip = Endpoint {
                    ip: Ip::from(addr),
                    text: addr.to_string(),
                };
                (from, duration, *per_second, Attack::BruteForce { ip })
            }
            AttackConfig::Ddos {
                target,
                from,
                duration,
                multiplier,
            } => {
                if *multiplier == 0 {
                    return Err(OptionError::new(key("multiplier"), "must be positive"));
                }
                let per_second = multiplier
                    .checked_mul(config.events_per_second)
                    .ok_or_else(|| {
                        OptionError::new(key("multiplier"), "too large for events_per_second")
                    })?;
                let resolved = match profile {
                    Profile::Auth => {
                        return Err(OptionError::new(
                            key("type"),
                            "the auth profile has no ddos attack (use brute_force)",
                        ))
                    }
                    Profile::WebAccess => {
                        if !target.starts_with('/')
                            || target.chars().any(|c| c.is_whitespace() || c == '"')
                        {
                            return Err(OptionError::new(
                                key("target"),
                                format!(
                                    "`{target}` is not a path such as \"/login\" \
                                     (a web_access ddos targets a path)"
                                ),
                            ));
                        }
                        Attack::DdosPath {
                            path: target.clone(),
                        }
                    }
                    Profile::Flows => {
                        let addr: IpAddr = target.parse().map_err(|_| {
                            OptionError::new(
                                key("target"),
                                format!(
                                    "`{target}` is not an IP address (a flows ddos targets \
                                     a destination address)"
                                ),
                            )
                        })?;
                        Attack::DdosIp {
                            ip: Endpoint {
                                ip: Ip::from(addr),
                                text: addr.to_string(),
                            },
                        }
                    }
                };
                (from, duration, per_second, resolved)
            }
        };
        let from_ms = duration_option(&key("from"), from)?;
        let duration_ms = duration_option(&key("duration"), duration)?;
        let planned = u64::try_from(u128::from(duration_ms) * u128::from(per_second) / 1000)
            .unwrap_or(u64::MAX);
        if planned == 0 {
            return Err(OptionError::new(
                key("duration"),
                format!("{duration} at {per_second} events per second is no event"),
            ));
        }
        let base_ms = start_ms.checked_add(from_ms).ok_or_else(|| {
            OptionError::new(key("from"), "the attack starts after the end of time")
        })?;
        streams.push(Stream {
            base_ms,
            per_second,
            len: planned,
        });
        attacks.push(resolved);
    }

    let pools = Pools::new(config.seed, profile, users, ips, paths, hosts, &reserved);
    let spec = ProfileSpec {
        inner: Arc::new(SpecInner {
            profile,
            seed: config.seed,
            end: config.count.unwrap_or(u64::MAX),
            rate: config.rate,
            streams,
            attacks,
            pools,
        }),
    };
    Ok((spec, profile_schema(profile)))
}

/// Addresses `count` distinct public IPv4 addresses whose first octet is
/// one of `octets`, none in `reserved`.
fn addresses(
    seed: u64,
    salt: u64,
    count: usize,
    octets: &[u8],
    reserved: &HashSet<Ip>,
) -> Vec<Endpoint> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    let mut i = 0u64;
    while out.len() < count {
        let h = mix(seed ^ salt ^ mix(i));
        i += 1;
        let first = octets[(h % octets.len() as u64) as usize];
        let [_, b, c, d, ..] = (h >> 8).to_le_bytes();
        let addr = Ipv4Addr::new(first, b, c, d.clamp(1, 254));
        let endpoint = Endpoint::v4(addr);
        if reserved.contains(&endpoint.ip) || !seen.insert(endpoint.ip) {
            continue;
        }
        out.push(endpoint);
    }
    out
}

impl Pools {
    fn new(
        seed: u64,
        profile: Profile,
        users: usize,
        ips: usize,
        paths: usize,
        hosts: usize,
        reserved: &HashSet<Ip>,
    ) -> Pools {
        let users: Vec<String> = (0..users)
            .map(|i| {
                let name = FIRST_NAMES[i % FIRST_NAMES.len()];
                match i / FIRST_NAMES.len() {
                    0 => name.to_owned(),
                    n => format!("{name}{n}"),
                }
            })
            .collect();
        let ips = addresses(seed, 0x1935, ips, &PUBLIC_OCTETS, reserved);
        let mut path_list: Vec<PathEntry> = COMMON_PATHS
            .iter()
            .take(paths)
            .map(|(path, class)| PathEntry {
                path: (*path).to_owned(),
                class: *class,
            })
            .collect();
        let mut n = 0;
        while path_list.len() < paths {
            let (path, class) = match n % 5 {
                0 => (format!("/products/{}", n / 5 + 1), PathClass::Page),
                1 => (format!("/api/v1/products/{}", n / 5 + 1), PathClass::Api),
                2 => (format!("/static/img/{}.png", n / 5 + 1), PathClass::Static),
                3 => (format!("/blog/{}", n / 5 + 1), PathClass::Page),
                _ => (format!("/api/v1/orders/{}", n / 5 + 1), PathClass::Api),
            };
            path_list.push(PathEntry { path, class });
            n += 1;
        }
        let hosts: Vec<Endpoint> = if profile == Profile::Flows {
            (10u32..)
                .map(|i| Endpoint::v4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)))
                .filter(|host| !reserved.contains(&host.ip))
                .take(hosts)
                .collect()
        } else {
            Vec::new()
        };
        let botnet = addresses(seed, 0xB07, BOTNET_SIZE, &BOTNET_OCTETS, reserved);
        Pools {
            user_zipf: Zipf::new(users.len(), 0.8),
            users,
            ip_zipf: Zipf::new(ips.len(), 0.9),
            ips,
            path_zipf: Zipf::new(path_list.len(), 1.0),
            paths: path_list,
            host_zipf: Zipf::new(hosts.len().max(1), 0.7),
            hosts,
            botnet,
            health: [
                Endpoint::v4(Ipv4Addr::new(10, 0, 0, 2)),
                Endpoint::v4(Ipv4Addr::new(10, 0, 0, 3)),
            ],
        }
    }
}

impl ProfileSpec {
    /// The profile.
    pub fn profile(&self) -> Profile {
        self.inner.profile
    }

    /// The output schema.
    pub fn schema(&self) -> Schema {
        profile_schema(self.inner.profile)
    }

    /// First id not generated: `count`, or `u64::MAX`.
    pub fn end(&self) -> u64 {
        self.inner.end
    }

    /// Where id `id` comes from and its event time.
    pub fn locate(&self, id: u64) -> EventOrigin {
        let cursor = self.inner.cursor_at(id);
        EventOrigin {
            attack: cursor.current.checked_sub(1),
            index: cursor.index(),
            ts_ms: cursor.ts(),
        }
    }

    /// Event time of id `id`, in milliseconds.
    pub fn event_time_ms(&self, id: u64) -> u64 {
        self.locate(id).ts_ms
    }
}

impl SpecInner {
    /// Events of all streams with time `<= t`.
    fn total_le(&self, t: u64) -> u128 {
        self.streams
            .iter()
            .map(|stream| u128::from(stream.count_le(t)))
            .sum()
    }

    /// The cursor whose current event has id `id`.
    fn cursor_at(&self, id: u64) -> Cursor {
        let streams = &self.streams;
        // The first time at which more than `id` events have happened.
        let (mut low, mut high) = (0u64, u64::MAX);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.total_le(mid) > u128::from(id) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        let t = low;
        let before: Vec<u64> = streams.iter().map(|s| s.count_lt(t)).collect();
        let mut rank = u128::from(id) - before.iter().map(|&c| u128::from(c)).sum::<u128>();
        let mut current = 0;
        for (index, stream) in streams.iter().enumerate() {
            let at = u128::from(stream.count_le(t) - before[index]);
            if rank < at {
                current = index;
                break;
            }
            rank -= at;
        }
        let next: Vec<u64> = streams
            .iter()
            .enumerate()
            .map(|(index, stream)| match index.cmp(&current) {
                std::cmp::Ordering::Less => stream.count_le(t),
                std::cmp::Ordering::Equal => before[index] + rank as u64,
                std::cmp::Ordering::Greater => before[index],
            })
            .collect();
        let head = streams
            .iter()
            .zip(&next)
            .map(|(stream, &k)| stream.head(k))
            .collect();
        Cursor {
            id,
            next,
            head,
            current,
        }
    }
}

/// Exactly which attack events the generator emits (over all instances):
/// per configured attack, its window and `emitted`, the number of its
/// events among ids `0..count`; event `k` has time
/// [`AttackTruth::event_time_ms`]`(k)`.
pub fn attack_truth(spec: &ProfileSpec) -> Vec<AttackTruth> {
    let inner = &spec.inner;
    let emitted_by_stream = (inner.end != u64::MAX).then(|| inner.cursor_at(inner.end).next);
    inner
        .attacks
        .iter()
        .enumerate()
        .map(|(index, attack)| {
            let stream = inner.streams[index + 1];
            let (kind, source_ip, target) = match attack {
                Attack::BruteForce { ip } => (AttackKind::BruteForce, Some(ip.ip), None),
                Attack::DdosPath { path } => (AttackKind::Ddos, None, Some(path.clone())),
                Attack::DdosIp { ip } => (AttackKind::Ddos, None, Some(ip.text.clone())),
            };
            let duration_ms =
                (u128::from(stream.len) * 1000).div_ceil(u128::from(stream.per_second));
            AttackTruth {
                index,
                kind,
                source_ip,
                target,
                start_ms: stream.base_ms,
                end_ms: stream
                    .base_ms
                    .saturating_add(u64::try_from(duration_ms).unwrap_or(u64::MAX)),
                per_second: stream.per_second,
                planned: stream.len,
                emitted: emitted_by_stream
                    .as_ref()
                    .map_or(stream.len, |next| next[index + 1].min(stream.len)),
            }
        })
        .collect()
}

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
    rate: Option<f64>,
    schedule: Option<(Instant, u64)>,
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
            rate: spec.inner.rate.map(|rate| rate as f64 / instances as f64),
            cursor: spec.inner.cursor_at(instance as u64),
            spec,
            instance: instance as u64,
            step: instances as u64,
            previous_watermark: None,
            schedule: None,
            row: Row::nulls(width),
        };
        generator.seek(position)?;
        Ok(generator)
    }

    /// Moves to `position` (the next id to emit); the rate schedule starts
    /// again.
    pub fn seek(&mut self, position: u64) -> Result<(), InvalidPosition> {
        if position % self.step != self.instance {
            return Err(InvalidPosition {
                position,
                instance: self.instance,
                instances: self.step,
            });
        }
        let inner = &self.spec.inner;
        self.previous_watermark = position
            .checked_sub(self.step)
            .map(|previous| watermark_of(inner.cursor_at(previous).ts()));
        self.cursor = inner.cursor_at(position);
        self.schedule = None;
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
        if let Some((_, emitted)) = &mut self.schedule {
            *emitted += rows as u64;
        }
        rows
    }

    /// Rows the rate allows at `now`, at most `room` (as
    /// [`ConfigEvents::allowed`](super::ConfigEvents::allowed)).
    pub fn allowed(&mut self, room: usize, now: Instant) -> usize {
        let Some(per_second) = self.rate else {
            return room;
        };
        let (started, emitted) = *self.schedule.get_or_insert((now, 0));
        let due = (now.duration_since(started).as_secs_f64() * per_second) as u64 + 1;
        room.min(due.saturating_sub(emitted) as usize)
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
        self.next_id().to_le_bytes().to_vec()
    }

    /// Seeks to a logged position; refuses bytes that are not 8 long or
    /// name an id of another instance.
    fn restore(&mut self, position: &[u8]) -> Result<(), StateError> {
        let bytes: [u8; 8] = position.try_into().map_err(|_| {
            StateError(format!(
                "generator position of {} bytes, expected 8",
                position.len()
            ))
        })?;
        self.seek(u64::from_le_bytes(bytes))
            .map_err(|error| StateError(error.to_string()))
    }
}

// ---- writing rows in place ----

fn string_mut(value: &mut Value) -> &mut String {
    if !matches!(value, Value::String(_)) {
        *value = Value::String(String::new());
    }
    match value {
        Value::String(text) => text,
        _ => unreachable!("just set to a string"),
    }
}

fn set_str(value: &mut Value, text: &str) {
    let target = string_mut(value);
    target.clear();
    target.push_str(text);
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

fn guessed_user<'a>(pools: &'a Pools, rng: &mut Rng) -> &'a str {
    if rng.chance(300) {
        GUESSED_USERS[rng.below(GUESSED_USERS.len() as u64) as usize]
    } else {
        &pools.users[rng.below(pools.users.len() as u64) as usize]
    }
}

struct Request<'a> {
    client: &'a Endpoint,
    method: &'static str,
    path: &'a str,
    status: u64,
    bytes: u64,
    agent: &'a str,
    user: &'a str,
}

fn write_web(pools: &Pools, attack: Option<&Attack>, ts: u64, rng: &mut Rng, row: &mut Row) {
    let request = match attack {
        Some(Attack::BruteForce { ip }) => Request {
            client: ip,
            method: "POST",
            path: "/login",
            status: 401,
            bytes: rng.range(120, 200),
            agent: BOT_AGENTS[0],
            user: guessed_user(pools, rng),
        },
        Some(Attack::DdosPath { path }) => Request {
            client: &pools.botnet[rng.below(pools.botnet.len() as u64) as usize],
            method: if path == "/login" { "POST" } else { "GET" },
            path,
            status: if rng.chance(200) { 503 } else { 200 },
            bytes: rng.range(100, 1000),
            agent: BOT_AGENTS[rng.below(BOT_AGENTS.len() as u64) as usize],
            user: "-",
        },
        Some(Attack::DdosIp { .. }) => unreachable!("checked by build: web ddos targets a path"),
        None if rng.chance(50) => Request {
            client: &pools.health[rng.below(2) as usize],
            method: "GET",
            path: "/health",
            status: 200,
            bytes: 2,
            agent: HEALTH_AGENT,
            user: "-",
        },
        None => normal_request(pools, rng),
    };
    let values = &mut row.values;
    values[1] = Value::Ip(request.client.ip);
    set_str(&mut values[2], request.method);
    set_str(&mut values[3], request.path);
    values[4] = Value::Int(request.status as i64);
    values[5] = Value::Int(request.bytes as i64);
    set_str(&mut values[6], request.agent);
    set_str(&mut values[7], request.user);
    let line = string_mut(&mut values[8]);
    line.clear();
    let _ = write!(line, "{} - {} [", request.client.text, request.user);
    write_log_time(ts, line);
    let _ = write!(
        line,
        "] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
        request.method, request.path, request.status, request.bytes, request.agent
    );
}

fn normal_request<'a>(pools: &'a Pools, rng: &mut Rng) -> Request<'a> {
    let entry = &pools.paths[pools.path_zipf.pick(rng.next())];
    let client = &pools.ips[pools.ip_zipf.pick(rng.next())];
    let user: &str = if rng.chance(450) {
        &pools.users[pools.user_zipf.pick(rng.next())]
    } else {
        "-"
    };
    let agent = USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize];
    let (method, status, bytes) = match entry.class {
        PathClass::Login if rng.chance(400) => {
            let status = if rng.chance(50) { 401 } else { 200 };
            ("POST", status, rng.range(100, 500))
        }
        PathClass::Api => {
            let method = match rng.below(100) {
                0..=69 => "GET",
                70..=89 => "POST",
                90..=94 => "PUT",
                _ => "DELETE",
            };
            let status = match rng.below(1000) {
                0..=9 => 500,
                10..=39 => 404,
                40..=59 => 400,
                _ => 200,
            };
            (method, status, rng.range(100, 5000))
        }
        class => {
            let status = match rng.below(1000) {
                0..=4 => 500,
                5..=44 => 404,
                45..=94 => 304,
                95..=104 => 301,
                _ => 200,
            };
            let bytes = match (status, class) {
                (304, _) => 0,
                (404, _) | (301, _) | (500, _) => rng.range(150, 400),
                (_, PathClass::Static) => rng.range(1_000, 200_000),
                _ => rng.range(2_000, 50_000),
            };
            let method = if rng.chance(10) { "HEAD" } else { "GET" };
            (method, status, bytes)
        }
    };
    Request {
        client,
        method,
        path: &entry.path,
        status,
        bytes,
        agent,
        user,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `ts` as the access-log time, `10/Oct/2000:13:55:36 +0000`.
fn write_log_time(ts_ms: u64, out: &mut String) {
    let seconds = ts_ms / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// Year, month (1..=12) and day (1..=31) of days since 1970-01-01
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_auth(pools: &Pools, seed: u64, attack: Option<&Attack>, rng: &mut Rng, row: &mut Row) {
    let values = &mut row.values;
    let (ip, user, outcome, method, service) = match attack {
        Some(Attack::BruteForce { ip }) => (
            ip.ip,
            guessed_user(pools, rng),
            "failure",
            "password",
            "sshd",
        ),
        Some(_) => unreachable!("checked by build: auth has no ddos"),
        None => {
            let user_index = pools.user_zipf.pick(rng.next());
            let ip = if rng.chance(900) {
                let home = mix(seed ^ 0x4053 ^ user_index as u64) % pools.ips.len() as u64;
                &pools.ips[home as usize]
            } else {
                &pools.ips[pools.ip_zipf.pick(rng.next())]
            };
            let method = match rng.below(100) {
                0..=59 => "password",
                60..=89 => "ssh_key",
                _ => "totp",
            };
            let service = match (method, rng.below(100)) {
                ("ssh_key", _) => "sshd",
                (_, 0..=39) => "sshd",
                (_, 40..=69) => "vpn",
                _ => "webmail",
            };
            let outcome = if rng.chance(30) { "failure" } else { "success" };
            (
                ip.ip,
                pools.users[user_index].as_str(),
                outcome,
                method,
                service,
            )
        }
    };
    values[1] = Value::Ip(ip);
    set_str(&mut values[2], user);
    set_str(&mut values[3], outcome);
    set_str(&mut values[4], method);
    set_str(&mut values[5], service);
}

fn write_flow(pools: &Pools, attack: Option<&Attack>, rng: &mut Rng, row: &mut Row) {
    let (src, dst, port, protocol, bytes, packets) = match attack {
        Some(Attack::BruteForce { ip }) => {
            let packets = rng.range(12, 30);
            (
                ip.ip,
                pools.hosts[0].ip,
                22,
                "tcp",
                packets * rng.range(80, 200),
                packets,
            )
        }
        Some(Attack::DdosIp { ip }) => {
            let src = pools.botnet[rng.below(pools.botnet.len() as u64) as usize].ip;
            let packets = rng.range(1, 3);
            (
                src,
                ip.ip,
                443,
                "tcp",
                packets * rng.range(40, 120),
                packets,
            )
        }
        Some(Attack::DdosPath { .. }) => unreachable!("checked by build: flows ddos targets an ip"),
        None => {
            let src = pools.hosts[pools.host_zipf.pick(rng.next())].ip;
            let dst = pools.ips[pools.ip_zipf.pick(rng.next())].ip;
            let mut pick = rng.below(1000);
            let mut chosen = FLOW_PORTS[0];
            for entry in FLOW_PORTS {
                if pick < entry.2 {
                    chosen = entry;
                    break;
                }
                pick -= entry.2;
            }
            let (port, protocol, _) = chosen;
            let bytes = if protocol == "udp" {
                rng.range(60, 400)
            } else {
                // Heavy-tailed: 500 B to ~2 GB, mostly small.
                let scale = rng.range(1, 22);
                (500u64 << rng.below(scale)) + rng.below(500)
            };
            let packets = (bytes / 1200 + rng.range(1, 4)).max(1);
            (src, dst, port, protocol, bytes, packets)
        }
    };
    let values = &mut row.values;
    values[1] = Value::Ip(src);
    values[2] = Value::Ip(dst);
    values[3] = Value::Int(i64::from(port));
    set_str(&mut values[4], protocol);
    values[5] = Value::Int(bytes as i64);
    values[6] = Value::Int(packets as i64);
}

impl crate::component::Component for ProfileGeneratorConfig {
    fn reads(&self) -> crate::component::Reads {
        crate::component::Reads::Nothing
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_chrono() {
        for days in [0i64, 59, 60, 365, 10_957, 19_000, 20_454, 20_820, 50_000] {
            let date = chrono::DateTime::from_timestamp(days * 86_400, 0)
                .unwrap()
                .date_naive();
            let expected = (
                i64::from(chrono::Datelike::year(&date)),
                chrono::Datelike::month(&date),
                chrono::Datelike::day(&date),
            );
            assert_eq!(civil_from_days(days), expected, "day {days}");
        }
    }

    #[test]
    fn stream_counts_agree_with_times() {
        for (base, rate) in [(0u64, 3u64), (1_000, 1_000), (7, 33_333), (5, 1)] {
            let stream = Stream {
                base_ms: base,
                per_second: rate,
                len: 5_000,
            };
            for t in base.saturating_sub(3)..base + 3_000 {
                let direct = (0..5_000).filter(|&k| stream.head(k) <= t).count() as u64;
                assert_eq!(stream.count_le(t), direct, "base {base} rate {rate} t {t}");
            }
        }
    }

    #[test]
    fn zipf_picks_stay_in_range_and_favour_the_head() {
        let zipf = Zipf::new(100, 1.0);
        let mut rng = Rng(1);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[zipf.pick(rng.next())] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[99]);
        assert_eq!(Zipf::new(1, 1.0).pick(u64::MAX), 0);
    }
}
