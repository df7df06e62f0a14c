//! Durations in pipeline files: `250ms`, `30s`, `5m`, `2h`, `1d`, and
//! combinations such as `1h30m` or `1h 30m` (the `humantime` syntax), or
//! `0`. Every option that takes a duration reads it here, so all accept the
//! same forms. Values are whole milliseconds.

/// Milliseconds of the duration `text`; the error quotes it and shows the
/// accepted forms.
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let bad = |detail: String| {
        format!("`{text}` is not a duration like \"250ms\", \"30s\", \"5m\" or \"1h30m\": {detail}")
    };
    let duration =
        humantime::parse_duration(text.trim()).map_err(|error| bad(error.to_string()))?;
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(bad("finer than a millisecond".into()));
    }
    u64::try_from(duration.as_millis())
        .ok()
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(|| bad("too long".into()))
}

/// [`parse_ms`] of a duration that must be more than zero.
pub fn parse_positive_ms(text: &str) -> Result<u64, String> {
    match parse_ms(text)? {
        0 => Err(format!("the duration must be more than zero, not `{text}`")),
        ms => Ok(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse_and_others_do_not() {
        for (text, ms) in [
            ("0", 0),
            ("0s", 0),
            ("250ms", 250),
            (" 5s ", 5_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1d", 86_400_000),
        ] {
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
        }
        for bad in [
            "",
            "10",
            "ten minutes",
            "-1s",
            "5x",
            "1us",
            "99999999999999999999d",
        ] {
            assert!(parse_ms(bad).is_err(), "{bad:?}");
        }
        assert!(parse_positive_ms("0s").is_err());
        assert_eq!(parse_positive_ms("1s"), Ok(1_000));
    }
}
