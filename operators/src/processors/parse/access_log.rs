//! The `combined` preset: the Apache/NGINX combined access-log patterns
//! that `pattern = "combined"` stands for.

/// The combined access-log format (Apache's `combined`, NGINX's default),
/// anchored at both ends, for a request line `METHOD PATH [PROTOCOL]`;
/// `pattern = "combined"` tries it first, then
/// [`COMBINED_FALLBACK_PATTERN`]. The referer and user agent are optional,
/// so the common log format matches too. Written to be one-pass (ASCII
/// digit and blank classes, no ambiguous repetition), so the regex crate
/// resolves its captures in a single scan.
pub const COMBINED_PATTERN: &str = concat!(
    r#"^(?P<client_ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]*)\] "#,
    r#""(?P<request>(?P<method>[A-Za-z]+) (?P<path>[^\s"]+)(?: (?P<protocol>[^\s"]+))?)" "#,
    r#"(?P<status>[0-9]{3}) (?:(?P<bytes>[0-9]+)|-)"#,
    r#"(?:[ \t]+(?:"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<user_agent>(?:[^"\\]|\\.)*)"[ \t]*)?)?[\r\n]*$"#,
);

/// [`COMBINED_PATTERN`] for any quoted request line (`"-"`, scanners'
/// bytes): `request` holds it as written; `method`, `path` and `protocol`
/// are not captures here, so they are null.
pub const COMBINED_FALLBACK_PATTERN: &str = concat!(
    r#"^(?P<client_ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<ts>[^\]]*)\] "#,
    r#""(?P<request>(?:[^"\\]|\\.)*)" "#,
    r#"(?P<status>[0-9]{3}) (?:(?P<bytes>[0-9]+)|-)"#,
    r#"(?:[ \t]+(?:"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<user_agent>(?:[^"\\]|\\.)*)"[ \t]*)?)?[\r\n]*$"#,
);
