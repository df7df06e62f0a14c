//! The `web_access` profile: normal requests, health checks and attack
//! requests, with the Apache combined log `line`.

use std::fmt::Write as _;

use super::pools::{guessed_user, Endpoint, PathClass, Pools};
use super::random::Rng;
use super::rows::{set_str, string_mut};
use super::spec::Attack;
use crate::row::{Row, Value};

const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
];

const BOT_AGENTS: [&str; 4] = [
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "curl/7.68.0",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1)",
];

const HEALTH_AGENT: &str = "ELB-HealthChecker/2.0";

struct Request<'a> {
    client: &'a Endpoint,
    method: &'static str,
    path: &'a str,
    status: u64,
    bytes: u64,
    agent: &'a str,
    user: &'a str,
}

pub(super) fn write_web(
    pools: &Pools,
    attack: Option<&Attack>,
    ts: u64,
    rng: &mut Rng,
    row: &mut Row,
) {
    let request = match attack {
        Some(Attack::BruteForce { ip }) => Request {
            client: ip,
            method: "POST",
            path: "/login",
            status: 401,
            bytes: rng.range(120, 200),
            agent: BOT_AGENTS[0],
            user: guessed_user(pools, rng),
        },
        Some(Attack::DdosPath { path }) => Request {
            client: &pools.botnet[rng.below(pools.botnet.len() as u64) as usize],
            method: if path == "/login" { "POST" } else { "GET" },
            path,
            status: if rng.chance(200) { 503 } else { 200 },
            bytes: rng.range(100, 1000),
            agent: BOT_AGENTS[rng.below(BOT_AGENTS.len() as u64) as usize],
            user: "-",
        },
        Some(Attack::DdosIp { .. }) => unreachable!("checked by build: web ddos targets a path"),
        None if rng.chance(50) => Request {
            client: &pools.health[rng.below(2) as usize],
            method: "GET",
            path: "/health",
            status: 200,
            bytes: 2,
            agent: HEALTH_AGENT,
            user: "-",
        },
        None => normal_request(pools, rng),
    };
    let values = &mut row.values;
    values[1] = Value::Ip(request.client.ip);
    set_str(&mut values[2], request.method);
    set_str(&mut values[3], request.path);
    values[4] = Value::Int(request.status as i64);
    values[5] = Value::Int(request.bytes as i64);
    set_str(&mut values[6], request.agent);
    set_str(&mut values[7], request.user);
    let line = string_mut(&mut values[8]);
    line.clear();
    let _ = write!(line, "{} - {} [", request.client.text, request.user);
    write_log_time(ts, line);
    let _ = write!(
        line,
        "] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
        request.method, request.path, request.status, request.bytes, request.agent
    );
}

fn normal_request<'a>(pools: &'a Pools, rng: &mut Rng) -> Request<'a> {
    let entry = &pools.paths[pools.path_zipf.pick(rng.next())];
    let client = &pools.ips[pools.ip_zipf.pick(rng.next())];
    let user: &str = if rng.chance(450) {
        &pools.users[pools.user_zipf.pick(rng.next())]
    } else {
        "-"
    };
    let agent = USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize];
    let (method, status, bytes) = match entry.class {
        PathClass::Login if rng.chance(400) => {
            let status = if rng.chance(50) { 401 } else { 200 };
            ("POST", status, rng.range(100, 500))
        }
        PathClass::Api => {
            let method = match rng.below(100) {
                0..=69 => "GET",
                70..=89 => "POST",
                90..=94 => "PUT",
                _ => "DELETE",
            };
            let status = match rng.below(1000) {
                0..=9 => 500,
                10..=39 => 404,
                40..=59 => 400,
                _ => 200,
            };
            (method, status, rng.range(100, 5000))
        }
        class => {
            let status = match rng.below(1000) {
                0..=4 => 500,
                5..=44 => 404,
                45..=94 => 304,
                95..=104 => 301,
                _ => 200,
            };
            let bytes = match (status, class) {
                (304, _) => 0,
                (404, _) | (301, _) | (500, _) => rng.range(150, 400),
                (_, PathClass::Static) => rng.range(1_000, 200_000),
                _ => rng.range(2_000, 50_000),
            };
            let method = if rng.chance(10) { "HEAD" } else { "GET" };
            (method, status, bytes)
        }
    };
    Request {
        client,
        method,
        path: &entry.path,
        status,
        bytes,
        agent,
        user,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `ts` as the access-log time, `10/Oct/2000:13:55:36 +0000`.
fn write_log_time(ts_ms: u64, out: &mut String) {
    let seconds = ts_ms / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// Year, month (1..=12) and day (1..=31) of days since 1970-01-01
/// (Howard Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
