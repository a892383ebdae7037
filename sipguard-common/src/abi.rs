//! The kernel/user ABI: map names, keys, values and codes shared by the XDP program and the controller.
//!
//! Every type here lives in maps pinned in bpffs, which outlive both the program and the controller.
//! Changing the size, layout or meaning of anything in this module therefore breaks pinned state:
//! bump [`ABI_VERSION`] with it, so that a new controller refuses old pins instead of misreading them.
//! All structs are `#[repr(C)]` with explicit padding so that the layout is the same on both sides.

use crate::{
    budget::{BanRule, Gcra},
    dial::{DialPlan, Number},
};

/// Version of this ABI. Written into [`Meta`] when the pinned state is created. 3: the IPv4
/// prefilters (`SG_PREFILTER`), allowlist hosts in hash maps (`SG_AHOST{4,6}_*`), the tick
/// clock (`SG_CLOCK`, `PolicyHeader::tick_ns`). 4: would-be bans ([`Ban::flags`]) and failed
/// table inserts counted in `SG_EVSTATS` ([`event_stat`]). 5: SIP inspection (method budgets,
/// scanner signatures, destination rules: [`SipPolicy`], `SG_SIGS_*`, `SG_DEST_*`, ...), 24
/// reason slots, the class and rule in [`Handoff`] and [`DropEvent`]. 8: evidence capture
/// (`SG_CAPCTL`, `SG_CAPSTATS`, `SG_CAPBUF`, `SG_CAPLIVE`, `SG_CAPROLL`, the capture stage in
/// `SG_TAILS`, [`Handoff::capture`]). 9: the access gate ([`FeedbackPolicy::gate`],
/// [`FeedbackPolicy::unverified_methods`], reason `unverified`).
pub const ABI_VERSION: u32 = 9;

/// `b"SIPG"` read as a big-endian u32: marks a [`Meta`] written by sipguard.
pub const META_MAGIC: u32 = u32::from_be_bytes(*b"SIPG");

/// Names of the maps. The kernel keeps 15 characters of a map name; pins use the same names.
pub mod map_name {
    pub const META: &str = "SG_META";
    pub const ACTIVE: &str = "SG_ACTIVE";
    pub const POLICY: &str = "SG_POLICY";
    pub const ALLOW4: [&str; 2] = ["SG_ALLOW4_0", "SG_ALLOW4_1"];
    pub const ALLOW_HOSTS4: [&str; 2] = ["SG_AHOST4_0", "SG_AHOST4_1"];
    pub const ALLOW_HOSTS6: [&str; 2] = ["SG_AHOST6_0", "SG_AHOST6_1"];
    pub const ALLOW6: [&str; 2] = ["SG_ALLOW6_0", "SG_ALLOW6_1"];
    pub const DENY4: [&str; 2] = ["SG_DENY4_0", "SG_DENY4_1"];
    pub const DENY6: [&str; 2] = ["SG_DENY6_0", "SG_DENY6_1"];
    pub const FRAGS: &str = "SG_FRAGS";
    pub const COUNTERS: &str = "SG_COUNTERS";
    pub const SOURCES: &str = "SG_SOURCES";
    pub const PEERS: &str = "SG_PEERS";
    pub const BANS: &str = "SG_BANS";
    pub const NEW_SOURCES: &str = "SG_NEWSRC";
    pub const EVENTS: &str = "SG_EVENTS";
    pub const EVENT_CACHE: &str = "SG_EVCACHE";
    pub const PREFILTER: &str = "SG_PREFILTER";
    pub const CLOCK: &str = "SG_CLOCK";
    pub const EVENT_STATS: &str = "SG_EVSTATS";
    pub const TAILS: &str = "SG_TAILS";
    pub const SCRATCH: &str = "SG_SCRATCH";
    pub const METHODS: &str = "SG_METHODS";
    pub const SIP_BUFFER: &str = "SG_SIPBUF";
    pub const SIGNATURES: [&str; 2] = ["SG_SIGS_0", "SG_SIGS_1"];
    pub const DESTINATIONS: [&str; 2] = ["SG_DEST_0", "SG_DEST_1"];
    pub const SIP_SOURCES: &str = "SG_SIPSRC";
    pub const SIGNATURE_HITS: &str = "SG_SIGHITS";
    pub const RULE_HITS: &str = "SG_RULEHITS";
    pub const DESTINATION_STATS: &str = "SG_DESTSTATS";
    pub const VERIFIED: &str = "SG_VERIFIED";
    pub const AUTH: &str = "SG_AUTH";
    pub const ANSWER_STATS: &str = "SG_ANSWERS";
    pub const EGRESS_TAILS: &str = "SG_TCTAILS";
    pub const ANSWER_SCRATCH: &str = "SG_TCSCRATCH";
    pub const VERIFIED_FILTER: &str = "SG_VFILTER";
    pub const CAPTURE_CONTROL: &str = "SG_CAPCTL";
    pub const CAPTURE_STATS: &str = "SG_CAPSTATS";
    pub const CAPTURE_BUFFER: &str = "SG_CAPBUF";
    /// The ring of each capture slot ([`super::capture_slot`]), in slot order.
    pub const CAPTURE_RINGS: [&str; 2] = ["SG_CAPLIVE", "SG_CAPROLL"];

    /// Every map of the program: the controller pins exactly these (a test checks them
    /// against the built object).
    pub const ALL: [&str; 49] = [
        META,
        ACTIVE,
        POLICY,
        ALLOW4[0],
        ALLOW4[1],
        ALLOW_HOSTS4[0],
        ALLOW_HOSTS4[1],
        ALLOW_HOSTS6[0],
        ALLOW_HOSTS6[1],
        ALLOW6[0],
        ALLOW6[1],
        DENY4[0],
        DENY4[1],
        DENY6[0],
        DENY6[1],
        FRAGS,
        COUNTERS,
        SOURCES,
        PEERS,
        BANS,
        NEW_SOURCES,
        EVENTS,
        EVENT_CACHE,
        PREFILTER,
        CLOCK,
        EVENT_STATS,
        TAILS,
        SCRATCH,
        METHODS,
        SIP_BUFFER,
        SIGNATURES[0],
        SIGNATURES[1],
        DESTINATIONS[0],
        DESTINATIONS[1],
        SIP_SOURCES,
        SIGNATURE_HITS,
        RULE_HITS,
        DESTINATION_STATS,
        VERIFIED,
        AUTH,
        ANSWER_STATS,
        EGRESS_TAILS,
        ANSWER_SCRATCH,
        VERIFIED_FILTER,
        CAPTURE_CONTROL,
        CAPTURE_STATS,
        CAPTURE_BUFFER,
        CAPTURE_RINGS[0],
        CAPTURE_RINGS[1],
    ];
}

/// The programs of the data plane, tail-called from one to the next through `SG_TAILS`. Each is
/// verified on its own, so each has its own share of the verifier's budget.
///
/// ```text
///  sipguard (entry) ---- not IP, not a SIP port: counted, passed (no source lookup at all)
///     | SIP port, hidden port, malformed
///  sipguard_judge ------ lists, bans, budgets: the verdict by source
///     | admitted, zone with SIP rules          | drop with an event
///  sipguard_sip -------- method budgets ------> sipguard_report
///     | signatures or an INVITE's destination  ^
///  sipguard_headers ------ signatures ---------+
///     | an INVITE outside a dialog             |
///  sipguard_destination -- destination rules --+
///
///  any final verdict of a SIP packet while a capture is on (SG_CAPCTL) -> sipguard_capture
///  (copies the packet within the capture's budget, then -> sipguard_report for a drop with
///  an event)
///
///  egress (TC, clsact/tcx, through SG_TCTAILS):
///  sipguard_egress ----- a response from an access-zone port: status code
///     | 2xx, 401, 403, 407
///  sipguard_answer ----- CSeq method, Expires (header scan)
///     | a REGISTER or INVITE answer
///  sipguard_feedback --- auth-failure strikes and bans, verified sources
/// ```
pub mod program {
    /// The XDP entry, attached to the interface: parses, decides what needs no source lookup.
    pub const ENTRY: &str = "sipguard";
    /// Stage 1, by source: denylist, allowlist, bans, budgets, fragments.
    pub const JUDGE: &str = "sipguard_judge";
    /// Stage 2, SIP inspection of admitted packets in zones with SIP rules: methods, budgets.
    pub const SIP: &str = "sipguard_sip";
    /// Stage 3, the headers: scanner signatures and the INVITE destination firewall.
    pub const HEADERS: &str = "sipguard_headers";
    /// Stage 4, the INVITE destination firewall (on its own: the number's parser is the
    /// largest piece to verify).
    pub const DESTINATION: &str = "sipguard_destination";
    /// Writes drop events to the ring buffer.
    pub const REPORT: &str = "sipguard_report";
    /// Copies packets into the capture rings while a capture is on (`sipguard capture`).
    pub const CAPTURE: &str = "sipguard_capture";
    /// The TC egress entry: the SBC's responses to access-zone clients (status code).
    pub const EGRESS: &str = "sipguard_egress";
    /// The egress stage that reads an answer's headers (CSeq, Expires).
    pub const ANSWER: &str = "sipguard_answer";
    /// The egress stage that acts on what an answer means for its client.
    pub const FEEDBACK: &str = "sipguard_feedback";
}

/// Slots of `SG_TCTAILS`, the egress programs' tail calls (a program array holds one program
/// type, so TC has its own).
pub mod egress_tail {
    pub const ANSWER: u32 = 0;
    pub const FEEDBACK: u32 = 1;
    pub const SLOTS: u32 = 2;
}

/// Slots of `SG_TAILS`.
pub mod tail {
    pub const REPORT: u32 = 0;
    pub const JUDGE: u32 = 1;
    pub const SIP: u32 = 2;
    pub const HEADERS: u32 = 3;
    pub const DESTINATION: u32 = 4;
    pub const CAPTURE: u32 = 5;
    pub const SLOTS: u32 = 6;
}

/// Name of the XDP program in the object file (the entry).
pub const PROGRAM_NAME: &str = program::ENTRY;

/// A parsed packet in fixed layout: what stage 1 hands to the later stages (SIP inspection, the
/// event reporter) so that they never parse again, and what it decides on after reading it back
/// (so that the verifier meets one state after the parser, not one per parser path).
///
/// ```text
///  0     16    32        36      38      40        42     46       47      48   49         50
///  +-----+-----+---------+-------+-------+---------+------+--------+-------+----+----------+
///  | src | dst | frag_id | sport | dport | payload | vlan | family | proto | l4 | fragment |
///  +-----+-----+---------+-------+-------+---------+------+--------+-------+----+----------+
///  50           51         52          56
///  +------------+----------+-----------+
///  | frag_proto | reserved | reserved2 |
///  +------------+----------+-----------+
/// ```
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// IPv4 addresses in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub frag_id: u32,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the first payload byte in the frame; 0 when there is none to read.
    pub payload: u16,
    pub vlan: [u16; 2],
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    /// [`meta_l4`].
    pub l4: u8,
    /// [`meta_fragment`].
    pub fragment: u8,
    /// The protocol every fragment announces ([`FragKey::proto`]).
    pub frag_proto: u8,
    pub _reserved: u8,
    pub _reserved2: u32,
}

/// [`PacketMeta::l4`] values.
pub mod meta_l4 {
    pub const OTHER: u8 = 0;
    pub const UDP: u8 = 1;
    pub const TCP: u8 = 2;
    pub const LATER_FRAGMENT: u8 = 3;
    pub const TINY_FIRST_FRAGMENT: u8 = 4;
    pub const CHAIN_TOO_LONG: u8 = 5;
    pub const SCTP: u8 = 6;
}

/// [`PacketMeta::fragment`] values.
pub mod meta_fragment {
    pub const NONE: u8 = 0;
    pub const FIRST: u8 = 1;
    pub const LATER: u8 = 2;
}

/// [`Handoff::outcome`] values.
pub mod handoff_outcome {
    pub const NOT_IP: u8 = 0;
    pub const MALFORMED: u8 = 1;
    pub const TOO_DEEP: u8 = 2;
    pub const IP: u8 = 3;
}

/// What one stage hands to the next (per CPU, one slot, `SG_SCRATCH`): the packet and the
/// verdict so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    pub packet: PacketMeta,
    /// The XDP action to return.
    pub action: u32,
    pub reason: u8,
    pub zone: u8,
    pub monitored: u8,
    /// What the parser found: [`handoff_outcome`]; `packet` is meaningful only for `IP`.
    pub outcome: u8,
    /// Drops of this source whose events were suppressed since its previous event.
    pub suppressed: u32,
    /// The allowlist class the entry found (`verdict::CLASS_UNKNOWN`: it did not look).
    pub class_hint: u32,
    /// The policy generation the entry judged by: every stage judges the packet by it, so an
    /// `apply` never splits one packet's decision between two policies.
    pub generation: u8,
    /// [`SipMethod`] the SIP stage read (0: it did not look).
    pub method: u8,
    /// The budget class stage 1 judged the source by: an allowlist class, the access class, or
    /// 0 (none); [`NOT_ALLOWLISTED_FLAG`] marks a source on no allowlist.
    pub class: u16,
    /// The scanner signature or destination rule that decided (ids from the controller), 0: none.
    pub rule: u16,
    /// What the capture stage does after copying: [`capture_then`].
    pub capture: u8,
    pub _reserved: u8,
    /// The normalised number of an INVITE the SIP stage judged (events carry it).
    pub number: Number,
    pub _reserved2: [u8; 7],
}

/// Set in [`Handoff::class`] for a source on no allowlist.
pub const NOT_ALLOWLISTED_FLAG: u16 = 0x8000;
/// Set in [`Handoff::class`], with [`NOT_ALLOWLISTED_FLAG`], for a verified source: the class
/// ([`CLASS_ID_MASK`]) is the verified sources' class.
pub const VERIFIED_FLAG: u16 = 0x4000;
/// The class id in [`Handoff::class`].
pub const CLASS_ID_MASK: u16 = 0x3fff;

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
    /// Non-first IP fragment passed: by `fragments = "pass"`, or under `inherit` because its first
    /// fragment was not dropped (passed, evicted or not seen: the kernel never reassembles a
    /// datagram without its first fragment, which is always judged).
    FragmentPassed = 3,
    /// Access zone: a source on no list, admitted within its per-source budget.
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
    /// No longer produced (ABI 3 dropped later fragments of unseen first fragments; now they
    /// pass as [`Reason::FragmentPassed`]). The slot and name stay so counters keep their meaning.
    FragmentUntracked = 9,
    /// Access zone: an unknown source over its per-source budget (strikes lead to a ban).
    RateLimited = 10,
    /// Temporarily banned (automatically for exceeding its budget again and again, or by hand).
    Banned = 11,
    /// Access zone: a source with no budget state yet, while the global budget for new sources
    /// is spent (a spoofed-source flood cannot churn the per-source map).
    NewSourceLimited = 12,
    /// An allowlisted source over its class budget: throttled and reported, never banned.
    PeerRateLimited = 13,
    /// A request over its class's budget for its method (REGISTER, INVITE, OPTIONS, other);
    /// in the access zone, sources on no list collect strikes towards a ban.
    MethodRateLimited = 14,
    /// The User-Agent (or From display name) starts with a scanner signature.
    Scanner = 15,
    /// An INVITE to a number a destination rule denies.
    DestinationDenied = 16,
    /// An INVITE over its source's budget for the destination rule it matched.
    DestinationRateLimited = 17,
    /// An INVITE whose Request-URI holds no number (letters, no user part, too long), where the
    /// zone's `unparseable` setting denies those.
    DestinationUnparseable = 18,
    /// Access zone: a verified source (the SBC accepted its REGISTER) within its budget.
    Verified = 19,
    /// Access zone: a verified source over its budget: dropped, never banned for it.
    VerifiedRateLimited = 20,
    /// Not a packet's verdict: the event of a ban the SBC's own answers caused (401/407 not
    /// followed by success, 403), written by the egress program. Never counted as a packet.
    AuthFailures = 21,
    /// Lockdown: a source on no allowlist (and not verified, where those are admitted) in the
    /// access zone: dropped, no state.
    Lockdown = 22,
    /// The access gate (under attack, or always): a source neither allowlisted nor verified
    /// sent something else than the requests a registration needs: dropped, no state.
    Unverified = 23,
}

/// Number of reason slots in the counter table (room for reasons added later).
pub const REASON_SLOTS: usize = 24;

impl Reason {
    pub const ALL: [Reason; 24] = [
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
        Reason::NewSourceLimited,
        Reason::PeerRateLimited,
        Reason::MethodRateLimited,
        Reason::Scanner,
        Reason::DestinationDenied,
        Reason::DestinationRateLimited,
        Reason::DestinationUnparseable,
        Reason::Verified,
        Reason::VerifiedRateLimited,
        Reason::AuthFailures,
        Reason::Lockdown,
        Reason::Unverified,
    ];

    /// True when the reason makes the packet drop (in enforce mode).
    #[inline(always)]
    pub const fn is_drop(self) -> bool {
        self as u8 >= Reason::Denylisted as u8
            && self as u8 != Reason::Verified as u8
            && self as u8 != Reason::AuthFailures as u8
    }

    /// True for the SIP stage's own drops (method, scanner, destination): only these leave the
    /// handoff's `method`, `rule` and `number` describing this packet; every other stage drops
    /// before the SIP stage runs, so those slots may still hold an earlier packet's.
    #[inline(always)]
    pub const fn from_sip_stage(reason: u8) -> bool {
        reason >= Reason::MethodRateLimited as u8 && reason <= Reason::DestinationUnparseable as u8
    }

    /// True for the SIP stage's destination drops, the only ones with a normalised number.
    #[inline(always)]
    pub const fn carries_number(reason: u8) -> bool {
        reason >= Reason::DestinationDenied as u8 && reason <= Reason::DestinationUnparseable as u8
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
            Reason::NewSourceLimited => "new_source_limited",
            Reason::PeerRateLimited => "peer_rate_limited",
            Reason::MethodRateLimited => "method_rate_limited",
            Reason::Scanner => "scanner",
            Reason::DestinationDenied => "destination_denied",
            Reason::DestinationRateLimited => "destination_rate_limited",
            Reason::DestinationUnparseable => "destination_unparseable",
            Reason::Verified => "verified",
            Reason::VerifiedRateLimited => "verified_rate_limited",
            Reason::AuthFailures => "auth_failures",
            Reason::Lockdown => "lockdown",
            Reason::Unverified => "unverified",
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
    /// Unknown sources are admitted within a per-source budget.
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
pub const SOURCE_PATH_LEN: usize = 128;

/// Settings of one policy generation. The data plane reads the first 128 bytes; `serial`,
/// `applied_at_unix`, `source_digest`, the `*_rate`/`*_burst` numbers and `source_path` are
/// bookkeeping for `sipguard status`.
///
/// ```text
///  0    1         2         3     4             6    8       16              24             32
///  +----+---------+---------+-----+-------------+----+-------+---------------+--------------+
///  |mode|fragments|v6 prefix|flags| access_class| -  |serial |applied_at_unix|source_digest |
///  +----+---------+---------+-----+-------------+----+-------+---------------+--------------+
///  32                48            72       76       80             96             112
///  +-----------------+-------------+--------+--------+--------------+--------------+
///  | new_sources Gcra| ban BanRule |ns rate |ns burst| events Gcra  | events_global|
///  +-----------------+-------------+--------+--------+--------------+--------------+
///  112         116          120                128                              256
///  +-----------+------------+------------------+--------------------------------+
///  | ev rate   | ev burst   | ev global rate,- | source_path                    |
///  +-----------+------------+------------------+--------------------------------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PolicyHeader {
    pub mode: u8,
    pub fragments: u8,
    /// IPv6 sources are budgeted (and banned) per prefix of this length.
    pub ipv6_budget_prefix: u8,
    /// `policy_flags::*`.
    pub flags: u8,
    /// Budget class of unknown sources in the access zone.
    pub access_class: u16,
    pub _reserved1: u16,
    /// Increases by one with every change made by the controller.
    pub serial: u64,
    pub applied_at_unix: u64,
    /// FNV-1a of the policy file(s) last applied; 0 when none.
    pub source_digest: u64,
    /// Budget for creating state for new sources in the access zone, per CPU (the controller
    /// divides the configured rate by the number of CPUs).
    pub new_sources: Gcra,
    pub ban: BanRule,
    /// The configured new-source budget (all CPUs), for display.
    pub new_sources_rate: u32,
    pub new_sources_burst: u32,
    /// Drop events each source may cause.
    pub events: Gcra,
    /// Drop events in all, per CPU (the controller divides the configured rate).
    pub events_global: Gcra,
    pub events_rate: u32,
    pub events_burst: u32,
    pub events_global_rate: u32,
    /// Nanoseconds per kernel tick (jiffy). The data plane's clock is jiffies x tick_ns plus an
    /// offset to boot time taken once for all CPUs (`SG_CLOCK`): the verifier inlines jiffies to one
    /// load, where every clock helper costs a call. 0: [`DEFAULT_TICK_NS`].
    pub tick_ns: u32,
    /// NUL-padded path of the policy file last applied; empty when none.
    pub source_path: [u8; SOURCE_PATH_LEN],
}

/// The tick assumed when [`PolicyHeader::tick_ns`] is unset (HZ=250).
pub const DEFAULT_TICK_NS: u32 = 4_000_000;

/// Bits of [`PolicyHeader::flags`].
pub mod policy_flags {
    /// The IPv4 denylist has entries (without it the data plane skips the lookup).
    pub const DENY4: u8 = 1;
    /// The IPv6 denylist has entries.
    pub const DENY6: u8 = 2;
    /// The trunk zone has SIP rules: its admitted packets go through the SIP stage.
    pub const SIP_TRUNK: u8 = 4;
    /// The access zone has SIP rules.
    pub const SIP_ACCESS: u8 = 8;
    /// A manual ban may be in force. Allowlisted sources are only ever banned by hand, so without
    /// this flag their packets skip the ban lookup. The controller sets it before it stores a
    /// manual ban, and clears it once none is left.
    pub const MANUAL_BANS: u8 = 16;
    /// Verified sources are on (`[verified]`): unknown access-zone sources are looked up in
    /// `SG_VERIFIED` first. Without it the judge never looks.
    pub const VERIFIED: u8 = 32;
    /// Lockdown (`sipguard lockdown on`): every zone admits only allowlisted sources, and,
    /// with [`LOCKDOWN_VERIFIED`], verified ones.
    pub const LOCKDOWN: u8 = 64;
    /// Verified sources are admitted during a lockdown.
    pub const LOCKDOWN_VERIFIED: u8 = 128;
}

/// Number of budget classes. Class 0 means "no budget"; class ids are assigned by the controller.
pub const CLASS_SLOTS: usize = 64;

/// Length of a class name (NUL-padded).
pub const CLASS_NAME_LEN: usize = 24;

/// A budget class: the GCRA the data plane uses, the numbers it was made from, and its name
/// (for `sipguard limits`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassLimits {
    pub gcra: Gcra,
    pub rate: u32,
    pub burst: u32,
    pub name: [u8; CLASS_NAME_LEN],
}

/// Number of ports per transport.
pub const PORT_SLOTS: usize = 65536;

/// One policy generation: settings, budget classes, and the zone of every UDP, TCP and SCTP
/// destination port (a [`Zone`] as u8; 0 means not a SIP port). One array lookup answers "is this
/// SIP?".
///
/// 204,304 bytes (sized at `SG_POLICY` in `sipguard-ebpf/src/maps.rs`, where every map's
/// sizing is written).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Policy {
    pub header: PolicyHeader,
    pub classes: [ClassLimits; CLASS_SLOTS],
    pub udp_zone: [u8; PORT_SLOTS],
    pub tcp_zone: [u8; PORT_SLOTS],
    pub sctp_zone: [u8; PORT_SLOTS],
    /// Per class, the budgets of its requests by method ([`method_budget_slot`]).
    pub class_methods: [MethodBudgets; CLASS_SLOTS],
    pub sip: SipPolicy,
    pub feedback: FeedbackPolicy,
}

// ------------------------------------------------------------------------------------------------
// The SBC's answers (egress: SG_AUTH, SG_VERIFIED, SG_ANSWERS)
// ------------------------------------------------------------------------------------------------

/// What the egress program does with the SBC's answers to access-zone clients.
///
/// ```text
///  0                      24         32           40               48        50      52     54      56
///  +----------------------+----------+------------+----------------+---------+-------+------+-------+
///  | auth (BanRule)       | grace_ns | verified   | verified       | verified| flags | gate | unver.|
///  | threshold,window,ttl |          | max_ns     | default_ns     | class   |       |      | methods
///  +----------------------+----------+------------+----------------+---------+-------+------+-------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedbackPolicy {
    /// Auth failures of one source within `window_ns` that ban it for `ttl_ns` (0: no bans).
    pub auth: BanRule,
    /// A challenge opens a digest exchange; further challenges to the same source count as
    /// failures only once the first has gone this long without a success (a burst of phones
    /// behind one address registering at once is not an attack).
    pub grace_ns: u64,
    /// Cap on a registration's lifetime (its Expires) as a verified source.
    pub verified_max_ns: u64,
    /// Lifetime when the 200 OK names none.
    pub verified_default_ns: u64,
    /// Budget class of verified sources (their packets and methods).
    pub verified_class: u16,
    /// [`feedback_flags`].
    pub flags: u16,
    /// [`access_gate`]: when unverified access-zone sources may send only what a registration
    /// needs.
    pub gate: u16,
    /// What unverified sources may send while the gate is shut: bit `1 << method` per
    /// [`SipMethod`] (REGISTER by default).
    pub unverified_methods: u16,
}

/// Bits of [`FeedbackPolicy::gate`]. The gate is shut while either is set.
pub mod access_gate {
    /// The policy shuts it for good (`[access] unverified = "registration"`).
    pub const ALWAYS: u16 = 1;
    /// Shut now: under attack (`sipguard attack-mode on`, or the daemon's detector).
    pub const UNDER_ATTACK: u16 = 2;
    /// Shut while under attack (`[access] unverified = "under-attack"`): the controller may
    /// set [`UNDER_ATTACK`].
    pub const ON_ATTACK: u16 = 4;
    /// The operator switched [`UNDER_ATTACK`] (`attack-mode on|off`): the detector of
    /// `sipguard run` leaves it alone until `attack-mode auto`. Controller only.
    pub const FORCED: u16 = 8;
    /// Bits the data plane acts on.
    pub const SHUT: u16 = ALWAYS | UNDER_ATTACK;
}

/// Bits of [`FeedbackPolicy::flags`].
pub mod feedback_flags {
    /// 401/407/403 answers count as strikes against the client.
    pub const AUTH_FAILURES: u16 = 1;
    /// A 200 OK to REGISTER verifies the client.
    pub const VERIFIED: u16 = 2;
}

/// A source's auth failures (`SG_AUTH`, keyed like budgets: [`SourceKey`]).
///
/// ```text
///  0                                   8                 24                32
///  +-----------------------------------+-----------------+-----------------+
///  | failures (low 32) | window (high) | open_since_ns[2]| last_failure_ns |
///  +-----------------------------------+-----------------+-----------------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthState {
    /// Failures counted in the current window (low 32 bits) and the window's start in seconds
    /// since boot, plus one (high 32 bits; 0: no window): one word, so that answers leaving
    /// on several CPUs at once update it by compare-and-swap and every failure counts.
    pub failures_window: u64,
    /// Boot ns of the challenge that opened a digest exchange of REGISTER (`[0]`) and of
    /// INVITE (`[1]`) not yet closed by the SBC accepting one (0: none open).
    pub open_since_ns: [u64; 2],
    pub last_failure_ns: u64,
}

impl AuthState {
    pub const fn failures(&self) -> u32 {
        self.failures_window as u32
    }
}

/// Capacity of `SG_AUTH` (LRU: only sources the SBC challenged or refused get an entry).
pub const MAX_AUTH_SOURCES: u32 = 65_536;

/// A verified source (`SG_VERIFIED`): the SBC accepted its REGISTER, so it holds credentials
/// and receives packets at its address.
///
/// ```text
///  0        8              16              24             32              36      38        40
///  +--------+--------------+---------------+--------------+---------------+-------+---------+
///  | tat_ns | verified_at  | refreshed_at  | expires_at   | registrations | class | reserved|
///  +--------+--------------+---------------+--------------+---------------+-------+---------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifiedSource {
    /// Its budget's TAT: kept here, where no flood of other sources can evict it.
    pub tat_ns: u64,
    /// Boot ns of the first 200 OK of this verification.
    pub verified_at_ns: u64,
    /// Boot ns of the latest 200 OK.
    pub refreshed_at_ns: u64,
    pub expires_at_ns: u64,
    /// 200 OKs to REGISTER seen.
    pub registrations: u32,
    /// The class it was verified into.
    pub class: u16,
    pub _reserved: u16,
}

/// Bits of `SG_VFILTER`: one per hash of a source key, set when the source is verified and
/// never cleared. An unset bit means "certainly not verified", so the judge's lookup in
/// `SG_VERIFIED` (a hash miss costs an unknown source about 15 ns) happens only where a bit is
/// set: with 65,536 verified sources about 6 % of the others pay it.
pub const VERIFIED_FILTER_BITS: u32 = 1 << 20;
/// `SG_VFILTER` entries (u64 words).
pub const VERIFIED_FILTER_WORDS: u32 = VERIFIED_FILTER_BITS / 64;

/// Word and bit of a source's `SG_VFILTER` bit, from [`crate::verdict::source_tag`].
#[inline(always)]
pub const fn verified_filter_position(tag: u32) -> (u32, u32) {
    let bit = tag >> (32 - 20);
    (bit >> 6, bit & 63)
}

/// Capacity of `SG_VERIFIED` (a hash, not LRU: only the SBC's 200 OKs insert; when full, new
/// verifications fail and are counted).
pub const MAX_VERIFIED: u32 = 65_536;

/// Slots of `SG_ANSWERS` (per-CPU counters of the egress program).
pub mod answer_stat {
    /// 401/407 to REGISTER or INVITE.
    pub const CHALLENGES: u32 = 0;
    /// 403 to REGISTER or INVITE.
    pub const REFUSALS: u32 = 1;
    /// 2xx to REGISTER or INVITE (closes a digest exchange).
    pub const SUCCESSES: u32 = 2;
    /// Answers counted as auth failures (challenges beyond the grace, 403s).
    pub const FAILURES: u32 = 3;
    /// Sources banned for auth failures (would-be bans in monitor mode included).
    pub const BANS: u32 = 4;
    /// 200 OKs to REGISTER that verified (or refreshed) a source.
    pub const VERIFICATIONS: u32 = 5;
    /// 200 OKs to REGISTER with expires 0: the source is no longer verified.
    pub const UNVERIFICATIONS: u32 = 6;
    /// Answers of interest whose CSeq was missing or malformed: ignored.
    pub const MALFORMED: u32 = 7;
    /// Verifications that could not be stored (`SG_VERIFIED` full).
    pub const INSERT_FAILED_VERIFIED: u32 = 8;
    /// A ban that could not be stored (`SG_BANS` full).
    pub const INSERT_FAILED_BANS: u32 = 9;
    /// The answer stage's tail call failed.
    pub const TAIL_CALL_FAILED: u32 = 10;
    pub const SLOTS: u32 = 11;
    pub const NAMES: [&str; SLOTS as usize] = [
        "challenges",
        "refusals",
        "successes",
        "failures",
        "bans",
        "verifications",
        "unverifications",
        "malformed",
        "insert_failed_verified",
        "insert_failed_bans",
        "tail_call_failed",
    ];
}

// ------------------------------------------------------------------------------------------------
// SIP inspection (the SIP stage: method budgets, scanner signatures, destination rules)
// ------------------------------------------------------------------------------------------------

/// Budgets of one class's requests per source: REGISTER, INVITE, OPTIONS, and every other
/// request ([`method_budget_slot`]). Unlimited slots cost nothing. Responses are never budgeted
/// by method.
pub type MethodBudgets = [Gcra; METHOD_BUDGET_SLOTS];

pub const METHOD_BUDGET_SLOTS: usize = 4;

/// The method budget a request spends; `None` for responses and unreadable messages.
#[inline(always)]
pub const fn method_budget_slot(method: SipMethod) -> Option<usize> {
    match method {
        SipMethod::Unknown | SipMethod::Response => None,
        SipMethod::Register => Some(0),
        SipMethod::Invite => Some(1),
        SipMethod::Options => Some(2),
        _ => Some(3),
    }
}

/// Named per-source destination budgets ("international: 2 INVITEs a minute") a policy may
/// define.
pub const DEST_BUDGET_SLOTS: usize = 4;

/// What a destination rule does with an INVITE.
pub mod dest_action {
    pub const ALLOW: u8 = 0;
    pub const DENY: u8 = 1;
    /// Spend the per-source budget [`super::DestRule::budget`].
    pub const BUDGET: u8 = 2;
}

/// The verdict slots of `SG_DESTSTATS`.
pub mod dest_verdict {
    pub const ALLOWED: u32 = 0;
    pub const DENIED: u32 = 1;
    pub const RATE_LIMITED: u32 = 2;
    pub const UNPARSEABLE: u32 = 3;
    pub const SLOTS: u32 = 4;
    pub const NAMES: [&str; 4] = ["allowed", "denied", "rate_limited", "unparseable"];
}

/// Countries (indexes into the controller's shipped E.164 table, 0: unknown) in `SG_DESTSTATS`.
pub const COUNTRY_SLOTS: u32 = 256;

/// Zones with SIP rules: trunk and access (`zone - 1`).
pub const SIP_ZONES: u32 = 2;

/// `SG_DESTSTATS` index: INVITEs by zone, verdict and destination country.
#[inline(always)]
pub const fn dest_stat_index(zone: Zone, verdict: u32, country: u16) -> u32 {
    (((zone as u32).wrapping_sub(1) & 1) * dest_verdict::SLOTS + (verdict & 3)) * COUNTRY_SLOTS
        + (country as u32 & (COUNTRY_SLOTS - 1))
}

/// Length of a rule or signature name (NUL-padded), kept with it for the controller's labels.
pub const RULE_NAME_LEN: usize = 24;

/// A destination rule as the kernel stores it: the value of a `SG_DEST_*` prefix, and a zone's
/// default and `unparseable` verdicts.
///
/// ```text
///  0        1        2      4         6          8      32
///  +--------+--------+------+---------+----------+------+
///  | action | budget | rule | country | reserved | name |
///  +--------+--------+------+---------+----------+------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestRule {
    /// [`dest_action`].
    pub action: u8,
    /// Index of the per-source budget (`dest_action::BUDGET`).
    pub budget: u8,
    /// Id of the rule for counters and events (1-based; 0: the zone's default).
    pub rule: u16,
    /// The destination's country (index into the shipped table, 0: unknown).
    pub country: u16,
    pub _reserved: u16,
    /// The rule's name (never read by the data plane).
    pub name: [u8; RULE_NAME_LEN],
}

/// Capacity of each `SG_DEST_*` trie: prefixes of all zones, rules and country codes together
/// (allocated per entry).
pub const MAX_DEST_PREFIXES: u32 = 131_072;
/// Digits of a destination key (E.164 has at most 15).
pub const DEST_KEY_DIGITS: usize = 16;
/// Key data of a `SG_DEST_*` trie: the zone, then the digits as nibbles (high nibble first).
/// The prefix length is 8 + 4 x digits.
pub type DestData = [u8; 1 + DEST_KEY_DIGITS / 2];

/// Bytes of a header value a signature is compared with (after the field byte).
pub const SIGNATURE_BYTES: usize = 31;
/// Key data of a `SG_SIGS_*` trie: the field ([`signature_field`]), then the value's first bytes
/// folded to lower case ([`fold_case`]). The prefix length is 8 x (1 + signature length).
pub type SignatureData = [u8; 1 + SIGNATURE_BYTES];

/// Which header a signature is compared with.
pub mod signature_field {
    pub const USER_AGENT: u8 = 1;
    pub const FROM_DISPLAY_NAME: u8 = 2;
}

/// Signatures a policy may hold (ids 1..=63; `SG_SIGHITS` counts per id).
pub const SIGNATURE_SLOTS: u32 = 64;
/// Destination rules a policy may name (ids 1..=255; `SG_RULEHITS` counts per id).
pub const RULE_SLOTS: u32 = 256;

/// The case folding of signatures and header values: ASCII letters to lower case (every byte
/// from 0x40 gets bit 0x20, which folds letters and is harmless for the rest of the bytes a
/// User-Agent holds). Cheap in the kernel and applied to both sides.
#[inline(always)]
pub const fn fold_case(byte: u8) -> u8 {
    if byte >= 0x40 { byte | 0x20 } else { byte }
}

/// Value of a `SG_SIGS_*` entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignatureRule {
    /// Id for counters and events (1-based).
    pub id: u16,
    pub _reserved: u16,
    /// The signature's name (never read by the data plane).
    pub name: [u8; RULE_NAME_LEN],
}

/// Capacity of each `SG_SIGS_*` trie: every signature for both fields.
pub const MAX_SIGNATURE_ENTRIES: u32 = 2 * SIGNATURE_SLOTS;

/// Bits of [`SipZone::flags`].
pub mod sip_zone_flags {
    /// Scanner signatures are checked in this zone.
    pub const SCANNERS: u8 = 1;
    /// ... for allowlisted sources too (by default they are exempt).
    pub const SCANNERS_ALLOWLISTED: u8 = 2;
    /// A signature match bans a source on no allowlist at once (the ban TTL of `[bans]`).
    pub const SCANNER_BANS: u8 = 4;
    /// INVITEs are judged by their destination.
    pub const DESTINATIONS: u8 = 8;
}

/// The SIP rules of one zone.
///
/// ```text
///  0           32      33         40        72            104
///  +-----------+-------+----------+---------+-------------+
///  | dial plan | flags | reserved | default | unparseable |
///  +-----------+-------+----------+---------+-------------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SipZone {
    pub dial_plan: DialPlan,
    /// [`sip_zone_flags`].
    pub flags: u8,
    pub _reserved: [u8; 7],
    /// For numbers no destination rule covers.
    pub default: DestRule,
    /// For INVITEs whose Request-URI holds no number.
    pub unparseable: DestRule,
}

/// The SIP rules of a policy generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SipPolicy {
    /// Trunk, access (`zone - 1`).
    pub zones: [SipZone; SIP_ZONES as usize],
    pub dest_budgets: [Gcra; DEST_BUDGET_SLOTS],
}

/// Per-source state of the SIP stage (`SG_SIPSRC`): the GCRA TATs of its method budgets and
/// destination budgets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SipSourceState {
    pub methods: [u64; METHOD_BUDGET_SLOTS],
    pub destinations: [u64; DEST_BUDGET_SLOTS],
}

/// Capacity of `SG_SIPSRC` (LRU; only sources stage 1 admitted reach it).
pub const MAX_SIP_SOURCES: u32 = 65_536;

/// Bytes of a SIP message the SIP stage reads: the whole of any UDP message under a 1500-byte
/// MTU. Headers that begin beyond it are not seen (the request line always is).
pub const SIP_SCAN_BYTES: usize = 2048;
/// The SIP stage's per-CPU copy of the message: the scan bound plus room for the widest read
/// at its end.
pub const SIP_BUFFER_BYTES: usize = SIP_SCAN_BYTES + 256;

/// Entries in `SG_POLICY`: one per generation.
pub const GENERATIONS: u32 = 2;

/// Key data of the IPv4 tries (network byte order), behind the 4-byte prefix length.
pub type Ipv4Data = [u8; 4];
/// Key data of the IPv6 tries (network byte order), behind the 4-byte prefix length.
pub type Ipv6Data = [u8; 16];

/// Capacity of each allow/deny trie (per family and generation). LPM tries allocate per entry
/// (BPF_F_NO_PREALLOC), so this is a ceiling, not a reservation.
pub const MAX_PREFIXES: u32 = 262_144;

/// The IPv4 prefilters: bitmaps of one bit per /24, set when a prefix of the bitmap's kind
/// touches it. A source whose bit is clear is not on that list, which the data plane learns from
/// one inlined array lookup instead of an LPM trie walk: the path of every spoofed flood, and of
/// allowlisted peers in /24s without denylist entries.
///
/// `SG_PREFILTER` holds `PREFILTER_CHUNKS` chunks per generation and bitmap
/// ([`prefilter_index`]): 2^24 bits per bitmap.
pub const PREFILTER_CHUNK_WORDS: usize = 4096;
pub const PREFILTER_CHUNKS: u32 = 64;
/// Bitmaps per generation: [`PREFILTER_ALLOW`], [`PREFILTER_DENY`], [`PREFILTER_ALLOW_NETS`].
pub const PREFILTER_BITMAPS: u32 = 3;
/// Any allowlist entry (host or network).
pub const PREFILTER_ALLOW: u32 = 0;
/// Any denylist entry.
pub const PREFILTER_DENY: u32 = 1;
/// Allowlist networks (shorter than /32; hosts live in `SG_AHOST4_*`): where a host-table miss
/// still needs the allowlist trie.
pub const PREFILTER_ALLOW_NETS: u32 = 2;

/// `SG_PREFILTER` index of a chunk of one of a generation's bitmaps (`PREFILTER_ALLOW`...).
#[inline(always)]
pub const fn prefilter_index(generation: u32, bitmap: u32, chunk: u32) -> u32 {
    (generation * PREFILTER_BITMAPS + bitmap) * PREFILTER_CHUNKS + chunk
}

/// One chunk: 4096 x 64 bits = 262,144 consecutive /24s (a /6 of the address space).
pub type PrefilterChunk = [u64; PREFILTER_CHUNK_WORDS];

/// Chunk (within a generation), word and bit of an IPv4 address's /24.
#[inline(always)]
pub const fn prefilter_position(addr: [u8; 4]) -> (u32, usize, u32) {
    let slash24 = u32::from_be_bytes(addr) >> 8;
    (
        slash24 >> 18,
        ((slash24 >> 6) as usize) & (PREFILTER_CHUNK_WORDS - 1),
        slash24 & 63,
    )
}

/// Where a rule came from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The policy file; replaced by every `apply`.
    Policy = 0,
    /// `sipguard allow|deny add`; kept across `apply` until deleted.
    Runtime = 1,
    /// Received from another host of the fleet (`sipguard run --fleet-redis`); kept across
    /// `apply` until that host deletes it. Never published again by the host that received it.
    Fleet = 2,
}

impl Origin {
    /// Entries an `apply` keeps: not the policy file's.
    pub const fn kept_across_apply(origin: u8) -> bool {
        origin == Origin::Runtime as u8 || origin == Origin::Fleet as u8
    }

    /// How the CLI and metrics name an entry's origin.
    pub const fn name_of(origin: u8) -> &'static str {
        match origin {
            1 => "runtime",
            2 => "fleet",
            _ => "policy",
        }
    }
}

/// Value of an allow/deny trie entry. On the allowlist, `class` names the budget of each source
/// the entry covers (0: no budget).
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
    /// Budget class of the sources this entry covers; 0: none.
    pub class: u16,
    pub origin: u8,
    pub _reserved: u8,
    pub added_at_unix: u32,
}

// ------------------------------------------------------------------------------------------------
// Fragment tracking (SG_FRAGS, LRU hash)
// ------------------------------------------------------------------------------------------------

/// Identifies one fragmented datagram. IPv4 addresses sit in the first 4 bytes, rest zero.
/// `proto` is what every fragment of the datagram announces: the IPv4 header's protocol, or the
/// IPv6 fragment header's next header (not the transport found after AH or extension headers,
/// which only the first fragment shows).
///
/// ```text
///  0          16         32       36       37      38         40
///  +----------+----------+--------+--------+-------+----------+
///  | src      | dst      | id     | family | proto | reserved |
///  +----------+----------+--------+--------+-------+----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub family: u8,
    pub proto: u8,
    pub _reserved: [u8; 2],
}

/// The verdict of a datagram's first fragment, inherited by the others.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragVerdict {
    pub reason: u8,
    pub zone: u8,
    pub _reserved: [u8; 2],
}

/// Capacity of `SG_FRAGS`: far more datagrams in reassembly than the kernel's own fragment
/// memory allows.
pub const MAX_TRACKED_FRAGMENTS: u32 = 16_384;

// ------------------------------------------------------------------------------------------------
// Budgets and bans (SG_SOURCES, SG_PEERS, SG_BANS, SG_NEWSRC)
// ------------------------------------------------------------------------------------------------

/// Whom a budget or ban belongs to: an IPv4 address, or an IPv6 prefix (`/64` by default) with
/// the host bits cleared, so that one host cannot escape by rotating addresses in its /64.
///
/// ```text
///  0          16       17           18         20
///  +----------+--------+------------+----------+
///  | addr     | family | prefix_len | reserved |
///  +----------+--------+------------+----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SourceKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub prefix_len: u8,
    pub _reserved: [u8; 2],
}

/// Budget state of one source.
///
/// ```text
///  0         8               16                  24        28      30         32
///  +---------+---------------+-------------------+---------+-------+----------+
///  | tat_ns  | first_seen_ns | strike_window_ns  | strikes | class | reserved |
///  +---------+---------------+-------------------+---------+-------+----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// GCRA theoretical arrival time (boot-time ns); updated by compare-and-swap.
    pub tat_ns: u64,
    pub first_seen_ns: u64,
    /// Start of the current strike window (over-budget packets counted towards a ban).
    pub strike_window_ns: u64,
    pub strikes: u32,
    pub class: u16,
    pub _reserved: u16,
}

/// Why a source is banned.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// Exceeded its budget `threshold` times within the window.
    RateExceeded = 1,
    /// `sipguard bans add`.
    Manual = 2,
    /// Its User-Agent or From display name matched a scanner signature whose policy bans.
    Scanner = 3,
    /// The SBC challenged it (401/407) without a success following, or refused it (403),
    /// `threshold` times within the window; or the SBC reported failures (`sipguard strike`).
    AuthFailures = 4,
}

impl BanReason {
    pub const ALL: [BanReason; 4] = [
        BanReason::RateExceeded,
        BanReason::Manual,
        BanReason::Scanner,
        BanReason::AuthFailures,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            BanReason::RateExceeded => "rate_exceeded",
            BanReason::Manual => "manual",
            BanReason::Scanner => "scanner",
            BanReason::AuthFailures => "auth_failures",
        }
    }

    pub const fn from_u8(value: u8) -> Option<BanReason> {
        match value {
            1 => Some(BanReason::RateExceeded),
            2 => Some(BanReason::Manual),
            3 => Some(BanReason::Scanner),
            4 => Some(BanReason::AuthFailures),
            _ => None,
        }
    }
}

/// A ban. Times are boot-time nanoseconds (`bpf_ktime_get_boot_ns`), so they stay right across
/// suspend; the controller converts them to wall-clock time.
///
/// ```text
///  0           8            16           24          32     40        44       45      46   48
///  +-----------+------------+------------+-----------+------+---------+--------+-------+----+
///  | banned_at | expires_at | first_seen | last_seen | hits | strikes | reason | flags | res|
///  +-----------+------------+------------+-----------+------+---------+--------+-------+----+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ban {
    pub banned_at_ns: u64,
    pub expires_at_ns: u64,
    /// First packet seen from the source (auto-bans) or the ban time (manual).
    pub first_seen_ns: u64,
    /// Last packet from the source, dropped while banned.
    pub last_seen_ns: u64,
    /// Packets dropped because of this ban.
    pub hits: u64,
    /// Over-budget packets that triggered it.
    pub strikes: u32,
    pub reason: u8,
    /// [`ban_flags`].
    pub flags: u8,
    pub _reserved: [u8; 2],
}

/// Bits of [`Ban::flags`].
pub mod ban_flags {
    /// Issued in monitor mode: listed and counted, dropping nothing for real, and never enforced
    /// later (the data plane removes it when it meets it in enforce mode; the controller discards
    /// every would-be ban when the mode switches to enforce).
    pub const WOULD_BE: u8 = 1;
    /// Received from another host of the fleet: enforced like any other, never published again
    /// by the host that received it (the data plane ignores the bit).
    pub const FLEET: u8 = 2;
}

/// Capacity of `SG_SOURCES` (unknown sources in the access zone, LRU).
pub const MAX_SOURCES: u32 = 65_536;
/// Capacity of `SG_PEERS` (allowlisted sources with a budget, LRU fed only by allowlisted
/// traffic).
pub const MAX_PEERS: u32 = 16_384;
/// Capacity of `SG_BANS` (hash, allocated per ban).
pub const MAX_BANS: u32 = 65_536;

// ------------------------------------------------------------------------------------------------
// Drop events (SG_EVENTS ring buffer, SG_EVCACHE, SG_EVSTATS)
// ------------------------------------------------------------------------------------------------

/// The SIP method named by the first payload bytes of a dropped packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipMethod {
    /// Not visible or not SIP.
    Unknown = 0,
    Invite = 1,
    Ack = 2,
    Bye = 3,
    Cancel = 4,
    Register = 5,
    Options = 6,
    Prack = 7,
    Subscribe = 8,
    Notify = 9,
    Publish = 10,
    Info = 11,
    Refer = 12,
    Message = 13,
    Update = 14,
    /// A response (`SIP/2.0 ...`).
    Response = 15,
}

impl SipMethod {
    pub const ALL: [SipMethod; 16] = [
        SipMethod::Unknown,
        SipMethod::Invite,
        SipMethod::Ack,
        SipMethod::Bye,
        SipMethod::Cancel,
        SipMethod::Register,
        SipMethod::Options,
        SipMethod::Prack,
        SipMethod::Subscribe,
        SipMethod::Notify,
        SipMethod::Publish,
        SipMethod::Info,
        SipMethod::Refer,
        SipMethod::Message,
        SipMethod::Update,
        SipMethod::Response,
    ];

    /// The token as it appears on the wire (`"SIP/2.0"` for responses, `""` when unknown).
    pub const fn token(self) -> &'static str {
        match self {
            SipMethod::Unknown => "",
            SipMethod::Invite => "INVITE",
            SipMethod::Ack => "ACK",
            SipMethod::Bye => "BYE",
            SipMethod::Cancel => "CANCEL",
            SipMethod::Register => "REGISTER",
            SipMethod::Options => "OPTIONS",
            SipMethod::Prack => "PRACK",
            SipMethod::Subscribe => "SUBSCRIBE",
            SipMethod::Notify => "NOTIFY",
            SipMethod::Publish => "PUBLISH",
            SipMethod::Info => "INFO",
            SipMethod::Refer => "REFER",
            SipMethod::Message => "MESSAGE",
            SipMethod::Update => "UPDATE",
            SipMethod::Response => "SIP/2.0",
        }
    }

    pub fn from_u8(value: u8) -> SipMethod {
        SipMethod::ALL
            .iter()
            .copied()
            .find(|m| *m as u8 == value)
            .unwrap_or(SipMethod::Unknown)
    }
}

/// Slots in `SG_METHODS`: zone x method (requests the SIP stage saw, per CPU).
pub const METHOD_SLOTS: usize = ZONE_SLOTS * 16;

/// Index of a `SG_METHODS` slot.
#[inline(always)]
pub const fn method_index(zone: Zone, method: SipMethod) -> u32 {
    (zone as u32) * 16 + method as u32
}

/// One dropped (or, in monitor mode, would-be-dropped) packet, as the ring buffer carries it.
///
/// ```text
///  0        8          24         40        44           48           52      54      56
///  +--------+----------+----------+---------+------------+------------+-------+-------+
///  |time_ns | src      | dst      | ifindex | packet_len | suppressed | sport | dport |
///  +--------+----------+----------+---------+------------+------------+-------+-------+
///  56        60       61        62       63     64          65       66    68     70    72
///  +---------+--------+---------+--------+------+-----------+--------+-----+------+-----+
///  | vlan[2] | family | l4_proto| reason | zone | monitored | method | res | rule | res |
///  +---------+--------+---------+--------+------+-----------+--------+-----+------+-----+
///  72                          89         96
///  +---------------------------+----------+
///  | number (len + 16 digits)  | reserved |
///  +---------------------------+----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// Boot-time nanoseconds.
    pub time_ns: u64,
    /// IPv4 addresses in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    pub packet_len: u32,
    /// Events this source did not get since its previous event (its event budget was spent).
    pub suppressed: u32,
    pub sport: u16,
    pub dport: u16,
    /// Outer and inner VLAN ids, 0 when untagged.
    pub vlan: [u16; 2],
    /// 4, 6, or 0 when no IP header was parsed.
    pub family: u8,
    pub l4_proto: u8,
    pub reason: u8,
    pub zone: u8,
    /// 1: monitor mode, the packet passed.
    pub monitored: u8,
    pub method: u8,
    pub _reserved: [u8; 2],
    /// The scanner signature (reason `scanner`) or destination rule (`destination_*`) that
    /// decided, as the controller numbered them; 0: none.
    pub rule: u16,
    pub _reserved2: [u8; 2],
    /// The normalised number of a judged INVITE (`len` 0: none).
    pub number: Number,
    pub _reserved3: [u8; 7],
}

/// Slots in each CPU's event cache.
pub const EVENT_CACHE_SLOTS: usize = 256;

/// One source's event budget in a CPU's direct-mapped event cache. A source that maps to an
/// occupied slot takes it over only when it may send an event: approximate per-source limiting
/// at the cost of one array lookup, the global budget bounding the total.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventSlot {
    /// [`crate::verdict::source_tag`] of the source; 0: empty.
    pub tag: u32,
    /// Events suppressed since the last one sent.
    pub suppressed: u32,
    pub tat_ns: u64,
}

/// The per-CPU event cache: `SG_EVCACHE[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventCache {
    pub slots: [EventSlot; EVENT_CACHE_SLOTS],
}

/// Slots of `SG_EVSTATS` (per CPU). Every drop verdict counts in exactly one of the first three.
pub mod event_stat {
    /// Written to the ring buffer.
    pub const EMITTED: u32 = 0;
    /// Not written: the source's or the global event budget was spent.
    pub const SUPPRESSED: u32 = 1;
    /// Not written: the ring buffer was full.
    pub const LOST: u32 = 2;
    /// Automatic bans issued (enforce mode).
    pub const BANS_ISSUED: u32 = 3;
    /// Automatic bans that monitor mode recorded as would-be bans.
    pub const WOULD_BANS_ISSUED: u32 = 4;
    /// A ban the data plane decided on but could not store (`SG_BANS` full).
    pub const INSERT_FAILED_BANS: u32 = 5;
    /// New per-source state that could not be stored in `SG_SOURCES`.
    pub const INSERT_FAILED_SOURCES: u32 = 6;
    /// New per-peer state that could not be stored in `SG_PEERS`.
    pub const INSERT_FAILED_PEERS: u32 = 7;
    /// A first-fragment verdict that could not be stored in `SG_FRAGS`.
    pub const INSERT_FAILED_FRAGS: u32 = 8;
    /// A stage's tail call failed (its program missing from `SG_TAILS`); the packet passed.
    pub const TAIL_CALL_FAILED: u32 = 9;
    pub const SLOTS: u32 = 10;
}

/// Bytes of the event ring buffer `SG_EVENTS`.
pub const EVENT_RING_BYTES: u32 = 1 << 20;

// ------------------------------------------------------------------------------------------------
// Evidence capture (SG_CAPCTL, SG_CAPSTATS, SG_CAPBUF, SG_CAPLIVE, SG_CAPROLL)
// ------------------------------------------------------------------------------------------------

/// [`Handoff::capture`] values: what the capture stage does once it has copied the packet.
pub mod capture_then {
    /// Return the action in the slot.
    pub const RETURN: u8 = 0;
    /// Tail-call the reporter (a drop that got an event).
    pub const REPORT: u8 = 1;
}

/// Slots of `SG_CAPCTL` and of the statistics in `SG_CAPSTATS`; each has its own ring.
pub mod capture_slot {
    /// `sipguard capture`: one at a time per interface.
    pub const LIVE: u32 = 0;
    /// The rolling capture of drops that `sipguard run --capture-ring-bytes` keeps.
    pub const ROLLING: u32 = 1;
    pub const SLOTS: u32 = 2;
}

/// Bits of [`CaptureControl::flags`].
pub mod capture_flags {
    /// Also SIP packets the filter passed (admitted, allowlisted, verified).
    pub const INCLUDE_PASSED: u32 = 1;
    /// Drops (and would-drops of monitor mode); without it only passed packets.
    pub const DROPS: u32 = 2;
}

/// Most bytes of a packet a capture copies (`--snaplen` at most): a 1500-byte MTU frame with
/// two VLAN tags and a SIP message of up to 4 KiB over TCP or jumbo frames.
pub const CAPTURE_SNAP_MAX: usize = 4096;

/// One capture slot's filter and budget (`SG_CAPCTL[slot]`). The kernel copies a packet for the
/// slot only while `expires_ns` lies ahead of its clock: the capturing process renews it every
/// second, so a capture that dies stops costing within [`CAPTURE_LEASE_NS`].
///
/// ```text
///  0           8       12      16      20     21      22     23        24     40      56      72
///  +-----------+-------+-------+-------+------+-------+------+---------+------+-------+-------+
///  |expires_ns |reasons| flags |snaplen|zones |family |prefix|reserved | src  |packets| bytes |
///  +-----------+-------+-------+-------+------+-------+------+---------+------+-------+-------+
///  72        76          80
///  +---------+-----------+
///  |owner_pid| reserved  |
///  +---------+-----------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureControl {
    /// Boot-time ns until which the slot copies; 0: off.
    pub expires_ns: u64,
    /// Bit `r` set: packets with reason `r` ([`Reason`]) are copied.
    pub reasons: u32,
    /// [`capture_flags`].
    pub flags: u32,
    /// Bytes of each packet copied, 1..=[`CAPTURE_SNAP_MAX`].
    pub snaplen: u32,
    /// Bit `z` set: packets judged in zone `z` ([`Zone`]); 0: every zone.
    pub zones: u8,
    /// Source filter: 0 none, 4 or 6.
    pub src_family: u8,
    pub src_prefix_len: u8,
    pub _reserved: u8,
    /// Source filter network (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Packets copied per second, per CPU (the controller splits the configured rate).
    pub packets: Gcra,
    /// Bytes copied per second, per CPU: one unit of this GCRA is one byte.
    pub bytes: Gcra,
    /// The process that owns the slot (for the "a capture is already running" error).
    pub owner_pid: u32,
    pub _reserved2: u32,
}

/// How long a capture's control stays valid without renewal.
pub const CAPTURE_LEASE_NS: u64 = 5_000_000_000;

/// Slots of `SG_CAPSTATS` (per CPU), per capture slot at `slot * capture_stat::STRIDE`.
pub mod capture_stat {
    /// Packets copied into the ring.
    pub const COPIED: u32 = 0;
    /// Bytes copied into the ring.
    pub const COPIED_BYTES: u32 = 1;
    /// Matching packets not copied: over the capture's packet or byte budget.
    pub const OVER_BUDGET: u32 = 2;
    /// Matching packets not copied: the ring was full (the reader is behind).
    pub const RING_FULL: u32 = 3;
    /// Packets copied shorter than they were (snaplen).
    pub const TRUNCATED: u32 = 4;
    /// The budgets' per-CPU state (GCRA TATs), not counters.
    pub const TAT_PACKETS: u32 = 5;
    pub const TAT_BYTES: u32 = 6;
    /// Counters shown to people: `COPIED..=TRUNCATED`.
    pub const COUNTERS: u32 = 5;
    pub const STRIDE: u32 = 8;
    pub const SLOTS: u32 = STRIDE * super::capture_slot::SLOTS;
}

/// [`CaptureHeader::outcome`] values.
pub mod capture_outcome {
    pub const DROPPED: u8 = 0;
    /// A drop verdict in monitor mode: passed.
    pub const WOULD_DROP: u8 = 1;
    pub const PASSED: u8 = 2;
}

/// What precedes a copied packet's bytes in a capture ring record.
///
/// ```text
///  0        8         12          16       20      21     22       23     24     26    28
///  +--------+---------+-----------+--------+-------+------+--------+------+------+-----+
///  |time_ns | ifindex | packet_len| cap_len| reason| zone | outcome|method| rule | res |
///  +--------+---------+-----------+--------+-------+------+--------+------+------+-----+
///  28                        45       48
///  +-------------------------+--------+
///  | number (len + 16 digits)| res    |
///  +-------------------------+--------+
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// Boot-time ns.
    pub time_ns: u64,
    pub ifindex: u32,
    /// The packet's length on the wire (all of it, fragments of the XDP buffer included).
    pub packet_len: u32,
    /// Bytes that follow.
    pub cap_len: u32,
    pub reason: u8,
    pub zone: u8,
    /// [`capture_outcome`].
    pub outcome: u8,
    /// [`SipMethod`] the SIP stage read (0: none).
    pub method: u8,
    /// The scanner signature or destination rule that decided (0: none).
    pub rule: u16,
    pub _reserved: u16,
    /// The normalised number of an INVITE the destination firewall judged.
    pub number: Number,
    pub _reserved2: [u8; 3],
}

/// The capture stage's per-CPU scratch (`SG_CAPBUF`): a record is built here, then copied into
/// the ring with its length.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CaptureRecord {
    pub header: CaptureHeader,
    pub data: [u8; CAPTURE_SNAP_MAX],
}

/// Bytes of each capture ring (`SG_CAPLIVE`, `SG_CAPROLL`).
pub const CAPTURE_RING_BYTES: u32 = 4 << 20;

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
    /// 0: no egress program; 1: attached through tcx (kernel 6.6+).
    pub egress: u8,
    pub _reserved: [u8; 6],
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
    unsafe impl aya::Pod for super::SourceKey {}
    unsafe impl aya::Pod for super::SourceState {}
    unsafe impl aya::Pod for super::Ban {}
    unsafe impl aya::Pod for super::DropEvent {}
    unsafe impl aya::Pod for super::EventSlot {}
    unsafe impl aya::Pod for super::EventCache {}
    unsafe impl aya::Pod for super::Handoff {}
    unsafe impl aya::Pod for super::PacketMeta {}
    unsafe impl aya::Pod for crate::budget::Gcra {}
    unsafe impl aya::Pod for super::DestRule {}
    unsafe impl aya::Pod for super::SignatureRule {}
    unsafe impl aya::Pod for super::SipSourceState {}
    unsafe impl aya::Pod for super::AuthState {}
    unsafe impl aya::Pod for super::VerifiedSource {}
    unsafe impl aya::Pod for super::CaptureControl {}
}

// Layout guards: a change here is an ABI change (bump ABI_VERSION).
const _: () = {
    assert!(core::mem::size_of::<Counter>() == 16);
    assert!(core::mem::size_of::<PolicyHeader>() == 256);
    assert!(core::mem::size_of::<ClassLimits>() == 48);
    assert!(
        core::mem::size_of::<Policy>()
            == 256 + CLASS_SLOTS * 48 + 3 * PORT_SLOTS + CLASS_SLOTS * 64 + 272 + 56
    );
    assert!(core::mem::size_of::<FeedbackPolicy>() == 56);
    assert!(core::mem::size_of::<AuthState>() == 32);
    assert!(core::mem::size_of::<VerifiedSource>() == 40);
    assert!(core::mem::size_of::<SipZone>() == 104);
    assert!(core::mem::size_of::<SipPolicy>() == 272);
    assert!(core::mem::size_of::<DestRule>() == 32);
    assert!(core::mem::size_of::<SignatureRule>() == 28);
    assert!(core::mem::size_of::<SipSourceState>() == 64);
    assert!(core::mem::size_of::<SourceKey>() == 20);
    assert!(core::mem::size_of::<SourceState>() == 32);
    assert!(core::mem::size_of::<Ban>() == 48);
    assert!(core::mem::size_of::<DropEvent>() == 96);
    assert!(core::mem::size_of::<EventSlot>() == 16);
    assert!(core::mem::size_of::<EventCache>() == 16 * EVENT_CACHE_SLOTS);
    assert!(core::mem::size_of::<PacketMeta>() == 56);
    assert!(core::mem::size_of::<Handoff>() == 104);
    assert!(core::mem::size_of::<RuleValue>() == 8);
    assert!(core::mem::size_of::<FragKey>() == 40);
    assert!(core::mem::size_of::<FragVerdict>() == 4);
    assert!(core::mem::size_of::<Meta>() == 48);
    assert!(COUNTER_SLOTS == 192);
    assert!(core::mem::size_of::<CaptureControl>() == 80);
    assert!(core::mem::size_of::<CaptureHeader>() == 48);
    assert!(core::mem::size_of::<CaptureRecord>() == 48 + CAPTURE_SNAP_MAX);
    assert!(
        REASON_SLOTS <= 32,
        "CaptureControl::reasons is a u32 bitmask"
    );
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
        assert!(Reason::PeerRateLimited.is_drop());
        assert!(Reason::NewSourceLimited.is_drop());
        assert!(Reason::Denylisted.is_drop());
        assert!(Reason::Malformed.is_drop());
        assert_eq!(Reason::from_u8(200), None);
    }
}
