//! The allowlist the benchmark loads: a realistic mix of prefixes, generated deterministically,
//! written as a real policy file with list files, and the same set for xdp-filter and nftables.
//!
//! Every address is in the benchmarking ranges 198.18.0.0/15 and 2001:db8::/32:
//!
//! ```text
//! 198.18.0.0/16   a few /24s, /28-/30 subnets, hosts
//! 198.19.0.0/16   hosts at addresses whose last two bits are 00, 01 or 10; addresses ending in
//!                 binary 11 are never allowlisted: they are the unknown, denied, banned and
//!                 spoofed sources, so looking them up walks as deep into the trie as an
//!                 allowlisted host does (a disjoint range would end the walk at the root)
//! 198.19.0.0/17   ... of which the ones ending in 11 are the spoofed flood (`bench_gen`)
//! 2001:db8::/32   /48s (2001:db8:0-7fff::), /64s (2001:db8:8000-bfff:...), /128 hosts
//!                 (2001:db8:c000-ffef:...); 2001:db8:ffff::/48 holds the IPv6 denylist
//! ```

use std::{
    collections::HashSet,
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Destination of every frame: the SBC.
pub(super) const SBC_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(super) const SBC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

pub(super) const TRUNK_PORT: u16 = 5060;
pub(super) const ACCESS_PORT: u16 = 5070;

/// Allowlisted, class `carrier` (a budget too high to run out under test_run).
pub(super) const CARRIER_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 0);
pub(super) const CARRIER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc000, 0, 0, 0, 0, 0x10);
/// Allowlisted, class `throttled` (1/s, burst 1).
pub(super) const THROTTLED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
/// Allowlisted without a class (no budget).
pub(super) const UNBUDGETED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
/// On no list (last two bits 11, among allowlisted hosts).
pub(super) const UNKNOWN_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 7);
/// On no list, in a /24 that no allow or deny prefix touches (TEST-NET-3): the IPv4 prefilter
/// answers without a trie walk. Only ever a test_run frame.
pub(super) const UNLISTED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub(super) const ACCESS_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 11);
pub(super) const BANNED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 15);
pub(super) const NON_SIP_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 19);
pub(super) const DENIED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 23);
pub(super) const MALFORMED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 27);
/// An access-zone source whose User-Agent is a scanner's (`friendly-scanner`).
pub(super) const SCANNER_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 31);

/// Denylist entries (fixed for every prefix count): 49 IPv4 hosts, 15 IPv6 hosts.
pub(super) const DENY_ENTRIES: usize = 64;

/// Share of the allowlist that is IPv6, in percent.
const V6_PCT: usize = 15;

/// A v4 or v6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Net {
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Net::V4(addr, len) => write!(f, "{addr}/{len}"),
            Net::V6(addr, len) => write!(f, "{addr}/{len}"),
        }
    }
}

/// How many prefixes of each kind a generated allowlist holds.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct MixCounts {
    pub total: usize,
    pub v4_hosts: usize,
    pub v4_28_to_30: usize,
    pub v4_24: usize,
    pub v6_hosts: usize,
    pub v6_64: usize,
    pub v6_48: usize,
}

/// An allowlist of `total` prefixes: the `carriers` group (everything but two entries) plus the
/// `throttled` and `unbudgeted` hosts.
pub(super) struct Mix {
    pub carriers: Vec<Net>,
    pub counts: MixCounts,
}

/// A small deterministic generator (SplitMix64): the same mix in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// `count` distinct items of `pool` (partial Fisher-Yates; `pool` is reordered).
    fn sample<T: Copy>(&mut self, pool: &mut [T], count: usize) -> Vec<T> {
        let count = count.min(pool.len());
        for i in 0..count {
            let j = i + self.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool[..count].to_vec()
    }
}

impl Mix {
    /// Roughly 85% IPv4 (of which 98% /32 hosts, 2% /28-/30 subnets, one /24 per 10,000) and
    /// 15% IPv6 (half /128 hosts, 35% /64s, 15% /48s). No two prefixes overlap.
    pub(super) fn generate(total: usize) -> Mix {
        assert!(total >= 10, "a mix needs at least 10 prefixes");
        let mut rng = Rng(0x5197_6a2d ^ total as u64);
        let v6_count = (total * V6_PCT / 100).max(1);
        // The two fixed hosts outside the carriers group count towards the total.
        let v4_count = total - v6_count - 2;
        let n24 = (v4_count / 10_000).max(1);
        let subnets = v4_count / 50;
        let hosts = v4_count - n24 - subnets;

        let mut carriers = Vec::with_capacity(total);
        // /24s: whole blocks of 198.18.0.0/16.
        let mut blocks: Vec<u8> = (0..=255).collect();
        rng.shuffle(&mut blocks);
        for block in &blocks[..n24] {
            carriers.push(Net::V4(Ipv4Addr::new(198, 18, *block, 0), 24));
        }
        // /30, /29, /28 in turn, aligned, packed into the other blocks from a random start.
        let free_blocks = &blocks[n24..];
        let mut used = HashSet::new();
        let mut cursor = 0usize; // address offset into free_blocks, 256 per block
        for i in 0..subnets {
            let len = [30u8, 29, 28][i % 3];
            let size = 1usize << (32 - len);
            cursor = cursor.div_ceil(size) * size;
            assert!(
                cursor / 256 < free_blocks.len(),
                "subnets overflow 198.18.0.0/16"
            );
            let block = free_blocks[cursor / 256];
            let base = Ipv4Addr::new(198, 18, block, (cursor % 256) as u8);
            carriers.push(Net::V4(base, len));
            for offset in 0..size {
                used.insert(u32::from(base) + offset as u32);
            }
            // Leave a random gap so that subnets spread over the blocks.
            cursor += size + rng.below(3) * size;
        }
        // Hosts: anywhere else in 198.18.0.0/16, and in 198.19.0.0/16 where the last two bits
        // are not 11.
        let fixed = [CARRIER_V4, THROTTLED_V4, UNBUDGETED_V4].map(u32::from);
        let mut pool: Vec<u32> = free_blocks
            .iter()
            .flat_map(|block| (0..=255u8).map(move |host| Ipv4Addr::new(198, 18, *block, host)))
            .map(u32::from)
            .filter(|addr| !used.contains(addr))
            .chain(
                (0..=u16::MAX)
                    .filter(|low| low & 3 != 3)
                    .map(|low| u32::from(Ipv4Addr::new(198, 19, 0, 0)) | u32::from(low)),
            )
            .filter(|addr| !fixed.contains(addr))
            .collect();
        carriers.push(Net::V4(CARRIER_V4, 32));
        for addr in rng.sample(&mut pool, hosts - 1) {
            carriers.push(Net::V4(Ipv4Addr::from(addr), 32));
        }

        // IPv6: 50% hosts, 35% /64s, 15% /48s in separate ranges (no overlap by construction).
        let mut seen: HashSet<Net> = HashSet::new();
        let mut counts = MixCounts {
            total,
            v4_hosts: hosts + 2,
            v4_28_to_30: subnets,
            v4_24: n24,
            ..MixCounts::default()
        };
        carriers.push(Net::V6(CARRIER_V6, 128));
        seen.insert(Net::V6(CARRIER_V6, 128));
        counts.v6_hosts = 1;
        let mut i = 0usize;
        while seen.len() < v6_count {
            let word = |rng: &mut Rng| rng.next() as u16;
            let net = match i % 20 {
                0..10 => {
                    counts.v6_hosts += 1;
                    let top = 0xc000 + (rng.below(0x3ff0) as u16);
                    let addr = Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        top,
                        word(&mut rng),
                        word(&mut rng),
                        word(&mut rng),
                        word(&mut rng),
                        word(&mut rng),
                    );
                    Net::V6(addr, 128)
                }
                10..17 => {
                    counts.v6_64 += 1;
                    let top = 0x8000 + (rng.below(0x4000) as u16);
                    let addr = Ipv6Addr::new(0x2001, 0xdb8, top, word(&mut rng), 0, 0, 0, 0);
                    Net::V6(addr, 64)
                }
                _ => {
                    counts.v6_48 += 1;
                    let top = rng.below(0x8000) as u16;
                    Net::V6(Ipv6Addr::new(0x2001, 0xdb8, top, 0, 0, 0, 0, 0), 48)
                }
            };
            if seen.insert(net) {
                carriers.push(net);
            } else {
                // A repeat: undo the count and draw again.
                match net {
                    Net::V6(_, 128) => counts.v6_hosts -= 1,
                    Net::V6(_, 64) => counts.v6_64 -= 1,
                    _ => counts.v6_48 -= 1,
                }
                continue;
            }
            i += 1;
        }
        Mix { carriers, counts }
    }

    /// Every allowlisted prefix (carriers plus the two fixed hosts).
    pub(super) fn all(&self) -> Vec<Net> {
        let mut all = self.carriers.clone();
        all.push(Net::V4(THROTTLED_V4, 32));
        all.push(Net::V4(UNBUDGETED_V4, 32));
        all
    }

    /// xdp-filter matches exact addresses only: every host, and the first address of every
    /// subnet (the nearest equivalent; lookups cost the same).
    pub(super) fn addresses(&self) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in self.all() {
            match net {
                Net::V4(addr, _) => v4.push(addr),
                Net::V6(addr, _) => v6.push(addr),
            }
        }
        (v4, v6)
    }

    pub(super) fn description() -> String {
        "per prefix count N: about 85% IPv4 (98% /32 hosts, 2% /28-/30 subnets, one /24 per \
         10,000) and 15% IPv6 (50% /128 hosts, 35% /64s, 15% /48s); no two prefixes overlap; \
         all in 198.18.0.0/15 and 2001:db8::/32; the unknown, denied, banned and spoofed \
         sources are addresses ending in binary 11 among the allowlisted hosts of \
         198.19.0.0/16, so their lookups walk as deep as an allowlisted host's. Denylist: 64 \
         hosts (49 IPv4, 15 IPv6) for every N"
            .to_string()
    }
}

/// The denylist: [`DENIED_V4`], 48 more IPv4 hosts in 198.19.201.0/24 and 15 IPv6 hosts.
pub(super) fn denylist() -> Vec<Net> {
    let mut deny = vec![Net::V4(DENIED_V4, 32)];
    for i in 0..48u8 {
        deny.push(Net::V4(Ipv4Addr::new(198, 19, 201, i * 4 + 3), 32));
    }
    for i in 1..=15u16 {
        deny.push(Net::V6(
            Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, i),
            128,
        ));
    }
    debug_assert_eq!(deny.len(), DENY_ENTRIES);
    deny
}

/// The SIP rules of the measured policy, all for the access zone: method budgets of the access
/// class `phones` (REGISTER and INVITE at 10^6 requests/s, burst 10^6, the fastest request
/// budget a policy may set; every request goes through its bucket, none runs out under
/// test_run), the built-in scanner signatures in the access zone (no bans, so the scanner
/// scenario stays a signature drop on every run) and a UK dial plan with premium-rate and
/// satellite destinations denied.
pub(super) const SIP_RULES: &str = r#"
[access.dialplan]
country_code = "44"
national_prefix = "0"
international_prefixes = ["00"]
unparseable = "deny"

[[access.destinations]]
name = "premium"
prefixes = ["449", "4470", "881", "882"]
action = "deny"

[scanners]
builtin = true
ban = false
zones = ["access"]
"#;

/// Method budgets of `phones`, in the SIP rules (see [`SIP_RULES`]).
const PHONES_METHODS: &str = ", methods = { register = { rate = 1000000, burst = 1000000 }, \
                              invite = { rate = 1000000, burst = 1000000 } }";

/// Writes `policy.toml` (with `carriers.txt` and `deny.txt` beside it) into `dir`, with the SIP
/// rules ([`SIP_RULES`]) when `sip_rules`, else the policy stage 1 alone runs.
///
/// Budgets: `carrier` and the access class `phones` run at 10^9 packets/s with a burst of 10^9,
/// the fastest budget sipguard still enforces (one nanosecond per packet): a test_run loop never
/// exhausts it, yet every packet goes through the bucket (compare-and-swap). `throttled` is
/// 1/s, burst 1. Automatic bans are off (threshold 0); the banned scenario uses an automatic ban
/// stored by the benchmark (no manual ban is in force, as usual).
pub(super) fn write_policy(dir: &Path, mix: &Mix, sip_rules: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut carriers = String::from("# generated by sipguard-bench\n");
    for net in &mix.carriers {
        let _ = writeln!(carriers, "{net}");
    }
    let mut deny = String::new();
    for net in denylist() {
        let _ = writeln!(deny, "{net}");
    }
    let (phones_methods, sip) = if sip_rules {
        (PHONES_METHODS, SIP_RULES)
    } else {
        ("", "")
    };
    let policy = format!(
        r#"mode = "enforce"
[trunk]
udp = [{TRUNK_PORT}]
tcp = [{TRUNK_PORT}, 5061]

[access]
udp = [{ACCESS_PORT}]
tcp = [{ACCESS_PORT}]
class = "phones"
new_sources = {{ rate = 1000000, burst = 1000000 }}

[bans]
threshold = 0

[classes]
carrier = {{ rate = 1000000000, burst = 1000000000 }}
phones = {{ rate = 1000000000, burst = 1000000000{phones_methods} }}
throttled = {{ rate = 1, burst = 1 }}

[[allow]]
name = "carriers"
class = "carrier"
files = ["carriers.txt"]

[[allow]]
name = "throttled"
class = "throttled"
cidrs = ["{THROTTLED_V4}/32"]

[[allow]]
name = "unbudgeted"
cidrs = ["{UNBUDGETED_V4}/32"]

[[deny]]
name = "scanners"
files = ["deny.txt"]
{sip}"#
    );
    for (name, text) in [
        ("carriers.txt", carriers),
        ("deny.txt", deny),
        ("policy.toml", policy),
    ] {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("write {}", dir.join(name).display()))?;
    }
    Ok(dir.join("policy.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_have_the_requested_size_and_never_overlap_the_reserved_sources() {
        for total in [100, 1_000, 10_000, 100_000] {
            let mix = Mix::generate(total);
            let all = mix.all();
            assert_eq!(all.len(), total);
            let unique: HashSet<_> = all.iter().collect();
            assert_eq!(unique.len(), total);
            let reserved = [
                UNKNOWN_V4, ACCESS_V4, BANNED_V4, NON_SIP_V4, DENIED_V4, SCANNER_V4,
            ];
            for net in &all {
                if let Net::V4(addr, len) = *net {
                    let start = u32::from(addr);
                    let end = start + ((1u64 << (32 - len)) - 1) as u32;
                    assert_eq!(start & ((1u64 << (32 - len)) - 1) as u32, 0, "{net}");
                    for source in reserved {
                        assert!(!(start..=end).contains(&u32::from(source)), "{net}");
                    }
                    if addr.octets()[1] == 19 {
                        assert_ne!(start & 3, 3, "{net} is a spoofed address");
                    }
                }
            }
        }
    }
}
