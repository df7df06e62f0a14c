//! Writing strings into the reused row in place, keeping their capacity:
//! what the per-profile writers (`web`, `auth`, `flows`) share.

use crate::row::Value;

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
