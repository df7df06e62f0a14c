//! What a pipeline file says: [`ProfileGeneratorConfig`] and its attacks,
//! the limits on them, and each profile's fixed output schema.

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::ProfileGenerator;
use crate::row::{Schema, Type};

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
