//! Writing one event into the reused [`Row`] in place, by profile, and the
//! string helpers that keep the row's strings' capacity.

use super::auth::write_auth;
use super::config::Profile;
use super::flows::write_flow;
use super::random::Rng;
use super::spec::SpecInner;
use super::web::write_web;
use crate::row::{Row, Value};

pub(super) fn string_mut(value: &mut Value) -> &mut String {
    if !matches!(value, Value::String(_)) {
        *value = Value::String(String::new());
    }
    match value {
        Value::String(text) => text,
        _ => unreachable!("just set to a string"),
    }
}

pub(super) fn set_str(value: &mut Value, text: &str) {
    let target = string_mut(value);
    target.clear();
    target.push_str(text);
}

/// Writes event `id` (of stream `stream`, at `ts`) into `row`.
pub(super) fn write_event(spec: &SpecInner, id: u64, stream: usize, ts: u64, row: &mut Row) {
    let mut rng = Rng::of(spec.seed, id);
    let attack = stream.checked_sub(1).map(|a| &spec.attacks[a]);
    row.values[0] = Value::Timestamp(i64::try_from(ts).unwrap_or(i64::MAX));
    match spec.profile {
        Profile::WebAccess => write_web(&spec.pools, attack, ts, &mut rng, row),
        Profile::Auth => write_auth(&spec.pools, spec.seed, attack, &mut rng, row),
        Profile::Flows => write_flow(&spec.pools, attack, &mut rng, row),
    }
}
