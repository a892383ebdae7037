//! The kernel/user ABI: map names, keys, values and codes shared by the XDP program and the controller.
//!
//! Every type here lives in maps pinned in bpffs, which outlive both the program and the controller.
//! Changing the size, layout or meaning of anything in this module therefore breaks pinned state:
//! bump [`ABI_VERSION`] with it, so that a new controller refuses old pins instead of misreading them.
//! All structs are `#[repr(C)]` with explicit padding so that the layout is the same on both sides.

/// Version of this ABI. Written into [`Meta`] when the pinned state is created.
pub const ABI_VERSION: u32 = 1;

/// `b"SIPG"` read as a big-endian u32: marks a [`Meta`] written by sipguard.
pub const META_MAGIC: u32 = u32::from_be_bytes(*b"SIPG");

/// Names of the maps. The kernel keeps 15 characters of a map name; pins use the same names.
pub mod map_name {
    pub const META: &str = "SG_META";
    pub const ACTIVE: &str = "SG_ACTIVE";
    pub const POLICY: &str = "SG_POLICY";
    pub const ALLOW4: [&str; 2] = ["SG_ALLOW4_0", "SG_ALLOW4_1"];
    pub const ALLOW6: [&str; 2] = ["SG_ALLOW6_0", "SG_ALLOW6_1"];
    pub const DENY4: [&str; 2] = ["SG_DENY4_0", "SG_DENY4_1"];
    pub const DENY6: [&str; 2] = ["SG_DENY6_0", "SG_DENY6_1"];
    pub const FRAGS: &str = "SG_FRAGS";
    pub const COUNTERS: &str = "SG_COUNTERS";
}

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "sipguard";

// ------------------------------------------------------------------------------------------------
// Reasons, zones, counters
// ------------------------------------------------------------------------------------------------

/// Why a packet got its verdict. One counter slot per reason; the names are part of the metrics.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): passed untouched.
    NotIp = 0,
    /// IP, but not UDP/TCP to a protected SIP port: passed untouched.
    NotSip = 1,
    /// Source matched the allowlist: passed.
    Allowlisted = 2,
    /// Non-first IP fragment passed by `fragments = "pass"` (its datagram cannot be reassembled
    /// without the first fragment, which is always judged).
    FragmentPassed = 3,
    /// Reserved for the access zone (unknown source admitted within its budget).
    AccessAdmitted = 4,
    /// Source matched the denylist: dropped.
    Denylisted = 5,
    /// Source is not on the allowlist of a trunk zone: dropped.
    NotAllowlisted = 6,
    /// Headers the kernel stack would reject as well (truncated, bad version or lengths): dropped.
    Malformed = 7,
    /// The parser could not find the destination port (VLAN stack or IPv6 extension chain
    /// deeper than it walks, first fragment too short to hold the ports), and the source is not
    /// allowlisted: dropped, so parser limits are never a way in.
    Unparsed = 8,
    /// Non-first fragment whose first fragment was not seen (`fragments = "inherit"`), from a
    /// source that is not allowlisted: dropped.
    FragmentUntracked = 9,
    /// Reserved: over the per-source budget.
    RateLimited = 10,
    /// Reserved: source is temporarily banned.
    Banned = 11,
}

/// Number of reason slots in the counter table (room for reasons added later).
pub const REASON_SLOTS: usize = 16;

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::NotIp,
        Reason::NotSip,
        Reason::Allowlisted,
        Reason::FragmentPassed,
        Reason::AccessAdmitted,
        Reason::Denylisted,
        Reason::NotAllowlisted,
        Reason::Malformed,
        Reason::Unparsed,
        Reason::FragmentUntracked,
        Reason::RateLimited,
        Reason::Banned,
    ];

    /// True when the reason makes the packet drop (in enforce mode).
    #[inline(always)]
    pub const fn is_drop(self) -> bool {
        self as u8 >= Reason::Denylisted as u8
    }

    /// Stable snake_case name used in metrics, JSON and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::NotSip => "not_sip",
            Reason::Allowlisted => "allowlisted",
            Reason::FragmentPassed => "fragment_passed",
            Reason::AccessAdmitted => "access_admitted",
            Reason::Denylisted => "denylisted",
            Reason::NotAllowlisted => "not_allowlisted",
            Reason::Malformed => "malformed",
            Reason::Unparsed => "unparsed",
            Reason::FragmentUntracked => "fragment_untracked",
            Reason::RateLimited => "rate_limited",
            Reason::Banned => "banned",
        }
    }

    pub fn from_u8(value: u8) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| *r as u8 == value)
    }
}

/// Which kind of SIP port a packet was sent to.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    /// Not a protected SIP port (or not IP at all).
    None = 0,
    /// Only allowlisted sources are admitted.
    Trunk = 1,
    /// Reserved: unknown sources are admitted within a per-source budget.
    Access = 2,
    /// Port not visible (fragment, parser limit): judged by source alone.
    Unknown = 3,
}

/// Number of zone slots in the counter table.
pub const ZONE_SLOTS: usize = 4;

impl Zone {
    pub const ALL: [Zone; 4] = [Zone::None, Zone::Trunk, Zone::Access, Zone::Unknown];

    pub const fn name(self) -> &'static str {
        match self {
            Zone::None => "none",
            Zone::Trunk => "trunk",
            Zone::Access => "access",
            Zone::Unknown => "unknown",
        }
    }

    #[inline(always)]
    pub const fn from_u8(value: u8) -> Zone {
        match value {
            1 => Zone::Trunk,
            2 => Zone::Access,
            3 => Zone::Unknown,
            _ => Zone::None,
        }
    }
}

/// Packets and bytes. One per (zone, reason, monitored) slot and CPU in `SG_COUNTERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Slots in `SG_COUNTERS`: zone x reason x {acted on, monitored (would drop)}.
pub const COUNTER_SLOTS: usize = ZONE_SLOTS * REASON_SLOTS * 2;

/// Index of a counter slot. `monitored` is true when a drop verdict was only counted (monitor mode).
#[inline(always)]
pub const fn counter_index(zone: Zone, reason: Reason, monitored: bool) -> u32 {
    (((zone as u32) * REASON_SLOTS as u32 + reason as u32) << 1) | monitored as u32
}

// ------------------------------------------------------------------------------------------------
// Policy (double-buffered: SG_POLICY[generation], SG_{ALLOW,DENY}{4,6}_<generation>)
// ------------------------------------------------------------------------------------------------

/// What the program does with a drop verdict.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Drop verdicts drop.
    #[default]
    Enforce = 0,
    /// Dry run: every verdict is computed and counted, drop verdicts count as "would drop" and pass.
    Monitor = 1,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }

    pub const fn from_u8(value: u8) -> Mode {
        match value {
            1 => Mode::Monitor,
            _ => Mode::Enforce,
        }
    }
}

/// How non-first IP fragments (which carry no ports) are judged.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FragmentPolicy {
    /// Take the verdict of the datagram's first fragment, remembered in `SG_FRAGS`; when it was
    /// not seen, judge by source (denylisted drop, allowlisted pass, others drop).
    #[default]
    Inherit = 0,
    /// Judge by source alone, like a packet to a trunk port.
    Source = 1,
    /// Pass: without its first fragment (which is always judged) a datagram is never reassembled.
    Pass = 2,
}

impl FragmentPolicy {
    pub const fn name(self) -> &'static str {
        match self {
            FragmentPolicy::Inherit => "inherit",
            FragmentPolicy::Source => "source",
            FragmentPolicy::Pass => "pass",
        }
    }

    pub const fn from_u8(value: u8) -> FragmentPolicy {
        match value {
            1 => FragmentPolicy::Source,
            2 => FragmentPolicy::Pass,
            _ => FragmentPolicy::Inherit,
        }
    }
}

/// Length of the policy-file path kept for `sipguard status`.
pub const SOURCE_PATH_LEN: usize = 224;

/// Settings of one policy generation. The data plane reads `mode` and `fragments`; the rest is
/// bookkeeping for `sipguard status`.
///
/// ```text
///  0      1           2         8          16                24               32          256
///  +------+-----------+---------+----------+-----------------+----------------+-----------+
///  | mode | fragments | reserved| serial   | applied_at_unix | source_digest  | source_path
///  +------+-----------+---------+----------+-----------------+----------------+-----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PolicyHeader {
    pub mode: u8,
    pub fragments: u8,
    pub _reserved: [u8; 6],
    /// Increases by one with every change made by the controller.
    pub serial: u64,
    pub applied_at_unix: u64,
    /// FNV-1a of the policy file(s) last applied; 0 when none.
    pub source_digest: u64,
    /// NUL-padded path of the policy file last applied; empty when none.
    pub source_path: [u8; SOURCE_PATH_LEN],
}

/// Number of ports per transport.
pub const PORT_SLOTS: usize = 65536;

/// One policy generation: settings plus the zone of every UDP and TCP destination port
/// (a [`Zone`] as u8; 0 means not a SIP port). One array lookup answers "is this SIP?".
///
/// Sizing: 256 + 2 x 65536 bytes = 131,328 bytes per generation, two generations.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Policy {
    pub header: PolicyHeader,
    pub udp_zone: [u8; PORT_SLOTS],
    pub tcp_zone: [u8; PORT_SLOTS],
}

/// Entries in `SG_POLICY`: one per generation.
pub const GENERATIONS: u32 = 2;

/// Key data of the IPv4 tries (network byte order), behind the 4-byte prefix length.
pub type Ipv4Data = [u8; 4];
/// Key data of the IPv6 tries (network byte order), behind the 4-byte prefix length.
pub type Ipv6Data = [u8; 16];

/// Capacity of each allow/deny trie (per family and generation). LPM tries allocate per entry
/// (BPF_F_NO_PREALLOC), so this is a ceiling, not a reservation: about 100 bytes per prefix used.
pub const MAX_PREFIXES: u32 = 262_144;

/// Where a rule came from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The policy file; replaced by every `apply`.
    Policy = 0,
    /// `sipguard allow|deny add`; kept across `apply` until deleted.
    Runtime = 1,
}

/// Value of an allow/deny trie entry.
///
/// ```text
///  0        2        3          4                8
///  +--------+--------+----------+----------------+
///  | class  | origin | reserved | added_at_unix  |
///  +--------+--------+----------+----------------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleValue {
    /// Budget class (reserved for rate budgets; 0 = default).
    pub class: u16,
    pub origin: u8,
    pub _reserved: u8,
    pub added_at_unix: u32,
}

// ------------------------------------------------------------------------------------------------
// Fragment tracking (SG_FRAGS, LRU hash)
// ------------------------------------------------------------------------------------------------

/// Identifies one fragmented datagram. IPv4 addresses sit in the first 4 bytes, rest zero.
/// The protocol is left out on purpose: with IPv4 AH or IPv6 extension headers the first
/// fragment's transport protocol differs from what the later fragments announce.
///
/// ```text
///  0          16         32       36       37         40
///  +----------+----------+--------+--------+----------+
///  | src      | dst      | id     | family | reserved |
///  +----------+----------+--------+--------+----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub family: u8,
    pub _reserved: [u8; 3],
}

/// The verdict of a datagram's first fragment, inherited by the others.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragVerdict {
    pub reason: u8,
    pub zone: u8,
    pub _reserved: [u8; 2],
}

/// Capacity of `SG_FRAGS`. Sizing: 16,384 x (40 + 4 + LRU overhead ~ 60) bytes ~ 1.7 MB;
/// holds far more datagrams in reassembly than the kernel's own fragment memory allows.
pub const MAX_TRACKED_FRAGMENTS: u32 = 16_384;

// ------------------------------------------------------------------------------------------------
// Meta (SG_META)
// ------------------------------------------------------------------------------------------------

/// Identity of the pinned state, written by the controller when it creates the maps.
///
/// ```text
///  0       4             8                 16                 24         25        32        48
///  +-------+-------------+-----------------+------------------+----------+---------+---------+
///  | magic | abi_version | created_at_unix | attached_at_unix | xdp_mode | reserved| ifname  |
///  +-------+-------------+-----------------+------------------+----------+---------+---------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub magic: u32,
    pub abi_version: u32,
    pub created_at_unix: u64,
    pub attached_at_unix: u64,
    /// 0 unknown, 1 native (driver), 2 generic (skb).
    pub xdp_mode: u8,
    pub _reserved: [u8; 7],
    pub ifname: [u8; 16],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, have no padding holes left implicit and are valid
    // for any bit pattern.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::Policy {}
    unsafe impl aya::Pod for super::RuleValue {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::FragVerdict {}
    unsafe impl aya::Pod for super::Meta {}
}

// Layout guards: a change here is an ABI change (bump ABI_VERSION).
const _: () = {
    assert!(core::mem::size_of::<Counter>() == 16);
    assert!(core::mem::size_of::<PolicyHeader>() == 256);
    assert!(core::mem::size_of::<Policy>() == 256 + 2 * PORT_SLOTS);
    assert!(core::mem::size_of::<RuleValue>() == 8);
    assert!(core::mem::size_of::<FragKey>() == 40);
    assert!(core::mem::size_of::<FragVerdict>() == 4);
    assert!(core::mem::size_of::<Meta>() == 48);
    assert!(COUNTER_SLOTS == 128);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_indexes_are_distinct_and_in_range() {
        let mut seen = [false; COUNTER_SLOTS];
        for zone in Zone::ALL {
            for reason in Reason::ALL {
                for monitored in [false, true] {
                    let index = counter_index(zone, reason, monitored) as usize;
                    assert!(index < COUNTER_SLOTS);
                    assert!(!seen[index], "slot {index} used twice");
                    seen[index] = true;
                }
            }
        }
    }

    #[test]
    fn reasons_round_trip_and_split_into_pass_and_drop() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_u8(reason as u8), Some(reason));
            assert!((reason as usize) < REASON_SLOTS);
        }
        assert!(!Reason::Allowlisted.is_drop());
        assert!(!Reason::AccessAdmitted.is_drop());
        assert!(Reason::Denylisted.is_drop());
        assert!(Reason::Malformed.is_drop());
        assert_eq!(Reason::from_u8(200), None);
    }
}
