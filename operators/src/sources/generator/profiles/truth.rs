//! What the generator promises a test: exactly which events each attack
//! injects ([`attack_truth`]). Where an id comes from is
//! [`ProfileSpec::locate`](super::ProfileSpec::locate).

use super::spec::{Attack, ProfileSpec};
use super::streams::stream_time;
use crate::row::Ip;

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
