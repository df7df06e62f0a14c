//! Sources that read records from outside weir.
//!
//! - [`file`](mod@file): the `file` source: NDJSON (or plain lines) from one local
//!   file, exactly-once by byte offset, optionally following a growing file.
//!
//! [`parse_duration_ms`] reads the duration strings their options use
//! (`"500ms"`, `"2m"`, `"1h30m"`).

pub mod file;

/// Milliseconds of a duration written as one or more `<integer><unit>`
/// parts, units `ms`, `s`, `m`, `h` and `d` (`"250ms"`, `"90s"`, `"1m30s"`,
/// `"2h"`); `"0"` alone is zero. `None` for anything else (no unit, an
/// unknown unit, a sign, a fraction, overflow).
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut at = 0;
    while at < bytes.len() {
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let number: u64 = text[at..at + digits].parse().ok()?;
        at += digits;
        let unit = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let scale: u64 = match &text[at..at + unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        at += unit;
        total = total.checked_add(number.checked_mul(scale)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms(" 5s "), Some(5_000));
        for bad in [
            "",
            "5",
            "5x",
            "m",
            "-1s",
            "1.5s",
            "1s x",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }
}
