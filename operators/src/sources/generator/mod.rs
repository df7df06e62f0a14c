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

use weir_runtime::OperatorError;

pub use keyed::{Fill, GeneratorConfig, InvalidPosition, KeyedGenerator, WATERMARK_INTERVAL_MS};
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

/// A generator's logged position: the next id, 8 bytes little-endian.
pub(crate) fn id_position(next_id: u64) -> Vec<u8> {
    next_id.to_le_bytes().to_vec()
}

/// The next id of a position [`id_position`] wrote; refuses bytes that are
/// not 8 long.
pub(crate) fn position_id(position: &[u8]) -> Result<u64, OperatorError> {
    let bytes: [u8; 8] = position.try_into().map_err(|_| {
        OperatorError::invalid(format!(
            "generator position of {} bytes, expected 8",
            position.len()
        ))
    })?;
    Ok(u64::from_le_bytes(bytes))
}
