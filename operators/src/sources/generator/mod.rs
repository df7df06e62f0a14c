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

use std::time::Instant;

use weir_runtime::OperatorError;

pub use keyed::{Fill, GeneratorConfig, KeyedGenerator, WATERMARK_INTERVAL_MS};
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

/// A position that is not one of the instance's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPosition {
    /// The position asked for.
    pub position: u64,
    /// The instance.
    pub instance: u64,
    /// Instances of the generator.
    pub instances: u64,
}

impl std::fmt::Display for InvalidPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let InvalidPosition {
            position,
            instance,
            instances,
        } = self;
        write!(
            f,
            "position {position} is not an id of generator instance {instance} of {instances}"
        )
    }
}

impl std::error::Error for InvalidPosition {}

/// Refuses a `position` that is not an id of instance `instance` of
/// `step` (ids `instance, instance + step, ...`).
pub(crate) fn check_position(
    position: u64,
    instance: u64,
    step: u64,
) -> Result<(), InvalidPosition> {
    if position % step == instance {
        return Ok(());
    }
    Err(InvalidPosition {
        position,
        instance,
        instances: step,
    })
}

/// A generator instance's wall-clock rate limit (`rate`, shared evenly by
/// the instances): the schedule starts at the first
/// [`allowed`](Pace::allowed), allows one record at once and then
/// `rate / instances` per second, counting what was
/// [`emitted`](Pace::emitted) since.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    /// Per-instance records per second, if limited.
    per_second: Option<f64>,
    /// When the schedule started, and records emitted since.
    schedule: Option<(Instant, u64)>,
}

impl Pace {
    pub(crate) fn new(rate: Option<u64>, instances: usize) -> Pace {
        Pace {
            per_second: rate.map(|rate| rate as f64 / instances as f64),
            schedule: None,
        }
    }

    /// Records the rate allows at `now`, at most `room`.
    pub(crate) fn allowed(&mut self, room: usize, now: Instant) -> usize {
        let Some(per_second) = self.per_second else {
            return room;
        };
        let (started, emitted) = *self.schedule.get_or_insert((now, 0));
        let due = (now.duration_since(started).as_secs_f64() * per_second) as u64 + 1;
        room.min(due.saturating_sub(emitted) as usize)
    }

    /// Counts `records` emitted since the schedule started.
    pub(crate) fn emitted(&mut self, records: usize) {
        if let Some((_, emitted)) = &mut self.schedule {
            *emitted += records as u64;
        }
    }

    /// Starts the schedule again at the next [`allowed`](Pace::allowed)
    /// (after a seek).
    pub(crate) fn restart(&mut self) {
        self.schedule = None;
    }
}
