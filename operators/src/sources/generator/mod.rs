//! Deterministic synthetic sources.
//!
//! [`KeyedGenerator`] is the `generator` with `keys`: rows of events with
//! string keys, event time in milliseconds, an optional bound and rate, and
//! replay from a position (see [`keyed`]).
//!
//! [`ProfileGenerator`] produces schema-typed [`Row`](crate::row::Row)s of
//! realistic traffic (web access logs, logins, network flows) with injected
//! attacks whose exact effect is known (see [`profiles`]).

pub mod keyed;
pub mod profiles;

pub use crate::sources::numbered::{InvalidPosition, WATERMARK_INTERVAL_MS};
pub use keyed::{Fill, GeneratorConfig, KeyedGenerator};
pub use profiles::{
    attack_truth, AttackConfig, AttackTruth, ProfileGenerator, ProfileGeneratorConfig, ProfileSpec,
};

/// A 64-bit finalizer (splitmix64): spreads sequential indices over all bits
/// so `mix(i) % keys` is uniform and keys arrive in no particular order.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
