//! The `logfmt` format: `key=value` pairs, quoted values unescaped into a
//! reused buffer.

/// Calls `pair(key, value)` for each pair of the logfmt `text`, in order;
/// `scratch` holds unescaped quoted values. Fails on an unterminated quote,
/// an empty key or a stray quote.
pub(crate) fn logfmt(
    text: &str,
    scratch: &mut String,
    mut pair: impl FnMut(&str, &str),
) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut at = 0;
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at == bytes.len() {
            return Ok(());
        }
        let key_start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'=' {
            if bytes[at] == b'"' {
                return Err(format!("unexpected quote at byte {at}"));
            }
            at += 1;
        }
        let key = &text[key_start..at];
        if key.is_empty() {
            return Err(format!("empty key at byte {at}"));
        }
        if at == bytes.len() || bytes[at] != b'=' {
            // A bare key: a flag.
            pair(key, "true");
            continue;
        }
        at += 1; // '='
        if at < bytes.len() && bytes[at] == b'"' {
            let quote = at;
            at += 1;
            scratch.clear();
            let mut run = at;
            loop {
                match bytes.get(at) {
                    None => return Err(format!("unterminated quote at byte {quote}")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        scratch.push_str(&text[run..at]);
                        let escaped = match bytes.get(at + 1) {
                            Some(b'n') => '\n',
                            Some(b't') => '\t',
                            Some(b'r') => '\r',
                            Some(b'"') => '"',
                            Some(b'\\') => '\\',
                            None => return Err(format!("unterminated quote at byte {quote}")),
                            // Unknown escapes stay as written.
                            Some(_) => '\\',
                        };
                        scratch.push(escaped);
                        at += if escaped == '\\' && bytes[at + 1] != b'\\' {
                            1
                        } else {
                            2
                        };
                        run = at;
                    }
                    Some(_) => at += 1,
                }
            }
            scratch.push_str(&text[run..at]);
            at += 1; // closing quote
            if at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                return Err(format!("no space after the quoted value at byte {at}"));
            }
            pair(key, scratch);
        } else {
            let value_start = at;
            while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
                if bytes[at] == b'"' {
                    return Err(format!("unexpected quote at byte {at}"));
                }
                at += 1;
            }
            pair(key, &text[value_start..at]);
        }
    }
}
