//! What the sources that number their records share (the `generator`s and
//! `nexmark`): a position is the next record's number, instance `i` of
//! `n` emits the numbers `i, i + n, ...`, watermarks go out on a fixed
//! event-time grid, and an optional wall-clock rate is shared evenly by the
//! instances.

use std::time::Instant;

use weir_runtime::OperatorError;

use crate::row::OptionError;

/// Watermarks go out each time event time crosses a multiple of this many
/// milliseconds: often enough that a 1 s window closes within a tenth of
/// its length, rarely enough that a watermark costs nothing per record.
pub const WATERMARK_INTERVAL_MS: u64 = 100;

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

/// Refuses a `count` or a `rate` of 0: leaving the option out is how a
/// run is unbounded or unlimited.
pub(crate) fn check_count_and_rate(
    count: Option<u64>,
    rate: Option<u64>,
) -> Result<(), OptionError> {
    if count == Some(0) {
        return Err(OptionError::new(
            "count",
            "`count` must be positive; leave it out for no bound",
        ));
    }
    if rate == Some(0) {
        return Err(OptionError::new(
            "rate",
            "`rate` must be positive; leave it out for no limit",
        ));
    }
    Ok(())
}
