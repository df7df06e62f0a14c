//! The `auth` profile: logins, mostly from each user's home address, and
//! brute-force failures.

use super::super::mix;
use super::pools::{guessed_user, Pools};
use super::random::Rng;
use super::rows::set_str;
use super::spec::Attack;
use crate::row::{Row, Value};

pub(super) fn write_auth(
    pools: &Pools,
    seed: u64,
    attack: Option<&Attack>,
    rng: &mut Rng,
    row: &mut Row,
) {
    let values = &mut row.values;
    let (ip, user, outcome, method, service) = match attack {
        Some(Attack::BruteForce { ip }) => (
            ip.ip,
            guessed_user(pools, rng),
            "failure",
            "password",
            "sshd",
        ),
        Some(_) => unreachable!("checked by build: auth has no ddos"),
        None => {
            let user_index = pools.user_zipf.pick(rng.next());
            let ip = if rng.chance(900) {
                let home = mix(seed ^ 0x4053 ^ user_index as u64) % pools.ips.len() as u64;
                &pools.ips[home as usize]
            } else {
                &pools.ips[pools.ip_zipf.pick(rng.next())]
            };
            let method = match rng.below(100) {
                0..=59 => "password",
                60..=89 => "ssh_key",
                _ => "totp",
            };
            let service = match (method, rng.below(100)) {
                ("ssh_key", _) => "sshd",
                (_, 0..=39) => "sshd",
                (_, 40..=69) => "vpn",
                _ => "webmail",
            };
            let outcome = if rng.chance(30) { "failure" } else { "success" };
            (
                ip.ip,
                pools.users[user_index].as_str(),
                outcome,
                method,
                service,
            )
        }
    };
    values[1] = Value::Ip(ip);
    set_str(&mut values[2], user);
    set_str(&mut values[3], outcome);
    set_str(&mut values[4], method);
    set_str(&mut values[5], service);
}
