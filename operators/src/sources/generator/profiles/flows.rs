//! The `flows` profile: network flows from internal hosts to external
//! servers, and the flows of brute-force and DDoS attacks.

use super::pools::Pools;
use super::random::Rng;
use super::rows::set_str;
use super::spec::Attack;
use crate::row::{Row, Value};

/// `(port, protocol, weight)` of normal flows.
const FLOW_PORTS: [(u16, &str, u64); 10] = [
    (443, "tcp", 550),
    (80, "tcp", 150),
    (53, "udp", 120),
    (8080, "tcp", 40),
    (22, "tcp", 30),
    (123, "udp", 20),
    (3306, "tcp", 20),
    (5432, "tcp", 20),
    (993, "tcp", 30),
    (25, "tcp", 20),
];

pub(super) fn write_flow(pools: &Pools, attack: Option<&Attack>, rng: &mut Rng, row: &mut Row) {
    let (src, dst, port, protocol, bytes, packets) = match attack {
        Some(Attack::BruteForce { ip }) => {
            let packets = rng.range(12, 30);
            (
                ip.ip,
                pools.hosts[0].ip,
                22,
                "tcp",
                packets * rng.range(80, 200),
                packets,
            )
        }
        Some(Attack::DdosIp { ip }) => {
            let src = pools.botnet[rng.below(pools.botnet.len() as u64) as usize].ip;
            let packets = rng.range(1, 3);
            (
                src,
                ip.ip,
                443,
                "tcp",
                packets * rng.range(40, 120),
                packets,
            )
        }
        Some(Attack::DdosPath { .. }) => unreachable!("checked by build: flows ddos targets an ip"),
        None => {
            let src = pools.hosts[pools.host_zipf.pick(rng.next())].ip;
            let dst = pools.ips[pools.ip_zipf.pick(rng.next())].ip;
            let mut pick = rng.below(1000);
            let mut chosen = FLOW_PORTS[0];
            for entry in FLOW_PORTS {
                if pick < entry.2 {
                    chosen = entry;
                    break;
                }
                pick -= entry.2;
            }
            let (port, protocol, _) = chosen;
            let bytes = if protocol == "udp" {
                rng.range(60, 400)
            } else {
                // Heavy-tailed: 500 B to ~2 GB, mostly small.
                let scale = rng.range(1, 22);
                (500u64 << rng.below(scale)) + rng.below(500)
            };
            let packets = (bytes / 1200 + rng.range(1, 4)).max(1);
            (src, dst, port, protocol, bytes, packets)
        }
    };
    let values = &mut row.values;
    values[1] = Value::Ip(src);
    values[2] = Value::Ip(dst);
    values[3] = Value::Int(i64::from(port));
    set_str(&mut values[4], protocol);
    values[5] = Value::Int(bytes as i64);
    values[6] = Value::Int(packets as i64);
}
