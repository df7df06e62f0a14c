//! [`ProfileSpec`]: a checked configuration, built once by [`build`] and
//! shared by every instance, and how it maps an id to its stream and time.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::config::{
    profile_schema, AttackConfig, Profile, ProfileGeneratorConfig, ATTACKS_MAX, DEFAULT_START,
    POPULATION_MAX,
};
use super::pools::{Endpoint, Pools};
use super::streams::{Cursor, Stream};
use crate::row::{parse_timestamp, Ip, OptionError, Schema};

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

/// A configured attack, resolved.
#[derive(Debug, Clone)]
pub(super) enum Attack {
    BruteForce { ip: Endpoint },
    DdosPath { path: String },
    DdosIp { ip: Endpoint },
}

/// A validated generator configuration; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ProfileSpec {
    pub(super) inner: Arc<SpecInner>,
}

#[derive(Debug)]
pub(super) struct SpecInner {
    pub(super) profile: Profile,
    pub(super) seed: u64,
    pub(super) end: u64,
    pub(super) rate: Option<u64>,
    /// `[normal, attack 0, attack 1, ...]`.
    pub(super) streams: Vec<Stream>,
    pub(super) attacks: Vec<Attack>,
    pub(super) pools: Pools,
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
    pub(super) fn cursor_at(&self, id: u64) -> Cursor {
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
