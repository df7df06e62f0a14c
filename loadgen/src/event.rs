//! Synthetic event payloads: the `access`, `auth` and `flow` profiles.
//!
//! Every event is a JSON object. The generator is a pure function of its
//! seed, so two runs with the same `--seed` (and connection count) send the
//! same keys and bodies; only the timestamps differ.

use std::fmt::Write as _;

/// The kind of events to generate.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Web server access log lines: method, path, status, bytes, client ip,
    /// user agent. Keyed by client ip.
    Access,
    /// Authentication attempts: user, ip, success or failure (with a
    /// reason), method, service. Keyed by user.
    Auth,
    /// Network flow records: source and destination ip and port, protocol,
    /// bytes, packets. Keyed by source ip.
    Flow,
}

/// SplitMix64: small, fast and good enough for synthetic data.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks from `(weight, item)` pairs.
    fn weighted<'a, T>(&mut self, items: &'a [(u32, T)]) -> &'a T {
        let total: u32 = items.iter().map(|(weight, _)| weight).sum();
        let mut roll = self.below(u64::from(total)) as u32;
        for (weight, item) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        &items[items.len() - 1].1
    }

    /// A roughly log-uniform value in `lo..hi`.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (lo, hi) = (lo.max(1) as f64, hi.max(2) as f64);
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (lo * (hi / lo).powf(unit)) as u64
    }
}

const METHODS: &[(u32, &str)] = &[
    (80, "GET"),
    (12, "POST"),
    (3, "PUT"),
    (2, "DELETE"),
    (3, "HEAD"),
];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/login",
    "/logout",
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/users/{id}",
    "/api/v1/cart",
    "/api/v2/search?q=shoes",
    "/static/app.js",
    "/static/style.css",
    "/images/logo.png",
    "/products/{id}",
    "/checkout",
    "/healthz",
];
const STATUSES: &[(u32, u16)] = &[
    (850, 200),
    (40, 304),
    (30, 301),
    (35, 404),
    (20, 401),
    (10, 403),
    (10, 500),
    (5, 503),
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];
const AUTH_METHODS: &[&str] = &["password", "ssh-key", "totp", "oauth", "saml"];
const AUTH_SERVICES: &[&str] = &["sshd", "vpn", "web", "imap", "sudo"];
const AUTH_FAILURES: &[&str] = &[
    "bad_password",
    "unknown_user",
    "account_locked",
    "expired_token",
    "mfa_timeout",
];
const DST_PORTS: &[(u32, u16)] = &[
    (50, 443),
    (15, 80),
    (12, 53),
    (5, 22),
    (4, 3306),
    (4, 5432),
    (3, 6379),
    (4, 8080),
    (3, 123),
];
/// Filler characters for padding: varied so padding does not compress to
/// nothing.
const PAD: &[u8] = b"q7Xk2mZp9LwB4vNc8RtY1hGd5sJf3aEu0oIyTgHbVnMlKxCzWrQeAiUoPsDfGhJ";

/// Generates events for one connection.
#[derive(Debug)]
pub(crate) struct EventGen {
    profile: Profile,
    rng: Rng,
    keys: u64,
}

impl EventGen {
    pub(crate) fn new(profile: Profile, seed: u64, keys: u64) -> EventGen {
        EventGen {
            profile,
            rng: Rng::new(seed),
            keys: keys.max(1),
        }
    }

    /// The next event: its key, and its JSON object (appended to `out`)
    /// padded or truncated to about `len(prefix) + target` bytes, where
    /// `prefix` is written first, verbatim, right after the opening brace
    /// (it must end in a comma when not empty).
    pub(crate) fn next_into(
        &mut self,
        out: &mut String,
        prefix: impl FnOnce(&str, &mut String),
        target: impl FnOnce(&str) -> usize,
    ) -> String {
        let index = self.rng.below(self.keys);
        let key = match self.profile {
            Profile::Access | Profile::Flow => ip_for(index),
            Profile::Auth => format!("user{index:06}"),
        };
        let start = out.len();
        out.push('{');
        prefix(&key, out);
        let target = target(&key);
        // The last field (if any) is the one that is shortened when the
        // event is too long.
        let last: Option<(&str, &str)> = match self.profile {
            Profile::Access => {
                let method = *self.rng.weighted(METHODS);
                let path = self.rng.pick(PATHS);
                let status = *self.rng.weighted(STATUSES);
                let bytes = if status == 304 {
                    0
                } else {
                    self.rng.log_uniform(200, 2_000_000)
                };
                let id = self.rng.below(100_000);
                let path = path.replace("{id}", &id.to_string());
                let _ = write!(
                    out,
                    r#""ip":"{key}","method":"{method}","path":"{path}","status":{status},"bytes":{bytes},"#
                );
                Some(("user_agent", *self.rng.pick(USER_AGENTS)))
            }
            Profile::Auth => {
                let success = self.rng.below(100) < 88;
                let ip = ip_for(self.rng.below(1 << 20) + (1 << 24));
                let method = self.rng.pick(AUTH_METHODS);
                let service = self.rng.pick(AUTH_SERVICES);
                let _ = write!(
                    out,
                    r#""user":"{key}","ip":"{ip}","service":"{service}","method":"{method}","success":{success},"#
                );
                if success {
                    None
                } else {
                    Some(("reason", *self.rng.pick(AUTH_FAILURES)))
                }
            }
            Profile::Flow => {
                let dst = ip_for(self.rng.below(1 << 22) + (3 << 24));
                let src_port = 32_768 + self.rng.below(28_232);
                let dst_port = *self.rng.weighted(DST_PORTS);
                let proto = if dst_port == 53 || dst_port == 123 {
                    "udp"
                } else {
                    "tcp"
                };
                let packets = self.rng.log_uniform(1, 20_000);
                let bytes = packets * (40 + self.rng.below(1_460));
                let _ = write!(
                    out,
                    r#""src":"{key}","dst":"{dst}","src_port":{src_port},"dst_port":{dst_port},"proto":"{proto}","bytes":{bytes},"packets":{packets},"#
                );
                None
            }
        };
        if let Some((name, value)) = last {
            // `"name":"value"}` must fit; shorten the value if it does not.
            let fixed = out.len() - start + name.len() + 6;
            let room = target.saturating_sub(fixed);
            let value = &value[..value.len().min(room)];
            let _ = write!(out, r#""{name}":"{value}""#);
        } else {
            out.pop(); // the trailing comma
        }
        // Pad up to `target` bytes including the closing brace.
        let deficit = target.saturating_sub(out.len() - start + 1);
        const PAD_FIELD: usize = r#","pad":"""#.len();
        if deficit >= PAD_FIELD {
            out.push_str(r#","pad":""#);
            let offset = self.rng.below(PAD.len() as u64) as usize;
            for i in 0..deficit - PAD_FIELD {
                out.push(PAD[(offset + i) % PAD.len()] as char);
            }
            out.push('"');
        } else {
            out.extend(std::iter::repeat_n(' ', deficit));
        }
        out.push('}');
        key
    }
}

/// A private-range IPv4 address for an index.
fn ip_for(index: u64) -> String {
    let octets = (index as u32).to_be_bytes();
    format!(
        "10.{}.{}.{}",
        octets[1].wrapping_add(octets[0]),
        octets[2],
        octets[3]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(profile: Profile, seed: u64, target: usize) -> (String, String) {
        let mut gen = EventGen::new(profile, seed, 1000);
        let mut out = String::new();
        let key = gen.next_into(&mut out, |_, _| {}, |key| target - key.len());
        (key, out)
    }

    #[test]
    fn events_are_json_of_the_requested_size_and_deterministic() {
        for profile in [Profile::Access, Profile::Auth, Profile::Flow] {
            for target in [40, 100, 180, 1000] {
                for seed in 0..50 {
                    let (key, body) = one(profile, seed, target);
                    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert!(value.is_object(), "{body}");
                    assert_eq!(one(profile, seed, target), (key.clone(), body.clone()));
                    let size = key.len() + body.len();
                    // Only very small targets may be exceeded (the fixed
                    // fields do not fit).
                    if target >= 180 {
                        assert_eq!(size, target, "{profile:?}: {body}");
                    }
                }
            }
        }
    }

    #[test]
    fn prefix_fields_come_first() {
        let mut gen = EventGen::new(Profile::Auth, 1, 10);
        let mut out = String::new();
        let key = gen.next_into(
            &mut out,
            |key, out| out.push_str(&format!(r#""key":"{key}","ts":5,"#)),
            |_| 150,
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["key"], key.as_str());
        assert_eq!(value["ts"], 5);
        assert_eq!(out.len(), 150);
    }
}
