//! The [`Pools`] events are drawn from (user names, paths, client, server,
//! host and botnet addresses), built once per generator.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use super::super::mix;
use super::config::{Profile, BOTNET_SIZE};
use super::random::{Rng, Zipf};
use crate::row::Ip;

/// An address and its text.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) ip: Ip,
    pub(super) text: String,
}

impl Endpoint {
    fn v4(addr: Ipv4Addr) -> Endpoint {
        Endpoint {
            ip: Ip::from(IpAddr::V4(addr)),
            text: addr.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathClass {
    Page,
    Static,
    Api,
    Login,
}

#[derive(Debug, Clone)]
pub(super) struct PathEntry {
    pub(super) path: String,
    pub(super) class: PathClass,
}

/// Everything events are drawn from, built once.
#[derive(Debug)]
pub(super) struct Pools {
    pub(super) users: Vec<String>,
    pub(super) user_zipf: Zipf,
    /// Clients (`web_access`, `auth`) or external servers (`flows`).
    pub(super) ips: Vec<Endpoint>,
    pub(super) ip_zipf: Zipf,
    pub(super) paths: Vec<PathEntry>,
    pub(super) path_zipf: Zipf,
    /// Internal hosts (`flows`).
    pub(super) hosts: Vec<Endpoint>,
    pub(super) host_zipf: Zipf,
    pub(super) botnet: Vec<Endpoint>,
    pub(super) health: [Endpoint; 2],
}

const FIRST_NAMES: [&str; 64] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula", "victor", "wendy",
    "xavier", "yolanda", "zoe", "aaron", "bella", "chen", "diego", "elena", "farid", "gita",
    "hugo", "ines", "jonas", "kira", "liam", "maya", "noah", "olga", "pablo", "rosa", "sven",
    "tara", "umar", "vera", "wei", "yusuf", "zara", "amir", "bianca", "carlos", "dana", "emil",
    "fatima", "gustav", "hana", "igor", "jasmin", "kenji", "lena", "marco", "nadia", "omar",
    "priya",
];

const GUESSED_USERS: [&str; 10] = [
    "root", "admin", "test", "oracle", "ubuntu", "guest", "user", "postgres", "git", "ftp",
];

const COMMON_PATHS: [(&str, PathClass); 16] = [
    ("/", PathClass::Page),
    ("/index.html", PathClass::Page),
    ("/login", PathClass::Login),
    ("/static/css/main.css", PathClass::Static),
    ("/static/js/app.js", PathClass::Static),
    ("/api/v1/session", PathClass::Api),
    ("/search", PathClass::Page),
    ("/favicon.ico", PathClass::Static),
    ("/cart", PathClass::Page),
    ("/api/v1/cart", PathClass::Api),
    ("/account", PathClass::Page),
    ("/logout", PathClass::Page),
    ("/checkout", PathClass::Page),
    ("/about", PathClass::Page),
    ("/contact", PathClass::Page),
    ("/robots.txt", PathClass::Static),
];

/// First octets of normal public addresses; disjoint from [`BOTNET_OCTETS`]
/// and from the documentation ranges (192.0.2/24, 198.51.100/24,
/// 203.0.113/24) that examples use for attackers.
const PUBLIC_OCTETS: [u8; 20] = [
    23, 31, 37, 45, 52, 66, 73, 81, 89, 94, 104, 109, 142, 151, 176, 185, 188, 195, 212, 217,
];

const BOTNET_OCTETS: [u8; 8] = [5, 41, 59, 77, 91, 115, 177, 201];

/// Addresses `count` distinct public IPv4 addresses whose first octet is
/// one of `octets`, none in `reserved`.
fn addresses(
    seed: u64,
    salt: u64,
    count: usize,
    octets: &[u8],
    reserved: &HashSet<Ip>,
) -> Vec<Endpoint> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    let mut i = 0u64;
    while out.len() < count {
        let h = mix(seed ^ salt ^ mix(i));
        i += 1;
        let first = octets[(h % octets.len() as u64) as usize];
        let [_, b, c, d, ..] = (h >> 8).to_le_bytes();
        let addr = Ipv4Addr::new(first, b, c, d.clamp(1, 254));
        let endpoint = Endpoint::v4(addr);
        if reserved.contains(&endpoint.ip) || !seen.insert(endpoint.ip) {
            continue;
        }
        out.push(endpoint);
    }
    out
}

impl Pools {
    pub(super) fn new(
        seed: u64,
        profile: Profile,
        users: usize,
        ips: usize,
        paths: usize,
        hosts: usize,
        reserved: &HashSet<Ip>,
    ) -> Pools {
        let users: Vec<String> = (0..users)
            .map(|i| {
                let name = FIRST_NAMES[i % FIRST_NAMES.len()];
                match i / FIRST_NAMES.len() {
                    0 => name.to_owned(),
                    n => format!("{name}{n}"),
                }
            })
            .collect();
        let ips = addresses(seed, 0x1935, ips, &PUBLIC_OCTETS, reserved);
        let mut path_list: Vec<PathEntry> = COMMON_PATHS
            .iter()
            .take(paths)
            .map(|(path, class)| PathEntry {
                path: (*path).to_owned(),
                class: *class,
            })
            .collect();
        let mut n = 0;
        while path_list.len() < paths {
            let (path, class) = match n % 5 {
                0 => (format!("/products/{}", n / 5 + 1), PathClass::Page),
                1 => (format!("/api/v1/products/{}", n / 5 + 1), PathClass::Api),
                2 => (format!("/static/img/{}.png", n / 5 + 1), PathClass::Static),
                3 => (format!("/blog/{}", n / 5 + 1), PathClass::Page),
                _ => (format!("/api/v1/orders/{}", n / 5 + 1), PathClass::Api),
            };
            path_list.push(PathEntry { path, class });
            n += 1;
        }
        let hosts: Vec<Endpoint> = if profile == Profile::Flows {
            (10u32..)
                .map(|i| Endpoint::v4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)))
                .filter(|host| !reserved.contains(&host.ip))
                .take(hosts)
                .collect()
        } else {
            Vec::new()
        };
        let botnet = addresses(seed, 0xB07, BOTNET_SIZE, &BOTNET_OCTETS, reserved);
        Pools {
            user_zipf: Zipf::new(users.len(), 0.8),
            users,
            ip_zipf: Zipf::new(ips.len(), 0.9),
            ips,
            path_zipf: Zipf::new(path_list.len(), 1.0),
            paths: path_list,
            host_zipf: Zipf::new(hosts.len().max(1), 0.7),
            hosts,
            botnet,
            health: [
                Endpoint::v4(Ipv4Addr::new(10, 0, 0, 2)),
                Endpoint::v4(Ipv4Addr::new(10, 0, 0, 3)),
            ],
        }
    }
}

pub(super) fn guessed_user<'a>(pools: &'a Pools, rng: &mut Rng) -> &'a str {
    if rng.chance(300) {
        GUESSED_USERS[rng.below(GUESSED_USERS.len() as u64) as usize]
    } else {
        &pools.users[rng.below(pools.users.len() as u64) as usize]
    }
}
