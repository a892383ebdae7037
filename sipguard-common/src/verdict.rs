//! From a parsed packet and the policy to a verdict: the decision order of the data plane, written
//! once for the XDP program and for host tests (which supply the policy through [`PolicyView`]).
//!
//! Order, cheapest first, so that the flood paths touch the least state:
//!
//! ```text
//!  not IP, not a SIP port ............................ pass untouched
//!  denylisted ........................................ drop
//!  allowlisted: banned by hand ....................... drop
//!               class without budget ................. pass
//!               within its class budget .............. pass, else drop (peer_rate_limited:
//!                                                      throttled, never banned)
//!  unknown, trunk zone (or port hidden) .............. drop, no state created
//!  unknown, access zone: lockdown (admitting allowlisted sources only) .. drop, no state
//!                        banned ...................... drop
//!                        verified (the SBC accepted its REGISTER): within the verified
//!                          class's budget ............ pass, else drop (never a strike)
//!                        lockdown (admitting verified sources too) ... drop
//!                        the access gate shut (under attack) and not a request a
//!                          registration needs ........ drop (unverified), no state
//!                        no state and no new-source budget left ... drop
//!                        within its budget ........... pass, else drop (strikes lead to a ban)
//! ```
//!
//! Packets whose port is hidden (fragments, parser limits) are judged by their source alone, as
//! on a trunk port, so hiding the port never helps.

use crate::{
    abi::{
        FragKey, FragVerdict, FragmentPolicy, NOT_ALLOWLISTED_FLAG, PacketMeta, PolicyHeader,
        Reason, SipMethod, SourceKey, VERIFIED_FLAG, Zone, meta_fragment, meta_l4, policy_flags,
    },
    parse::{Family, L4, Outcome, Parsed, Quick, Transport},
};

/// [`PolicyView::allow_class`] of a source that is not on the allowlist.
pub const NOT_ALLOWLISTED: u32 = u32::MAX;

/// What spending one packet of an unknown source's budget gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    Admitted,
    OverBudget,
    /// The source has no state and the global budget for new sources is spent.
    NoNewSource,
}

/// What spending one packet of a verified source's budget gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedSpend {
    /// Not verified (now): judged as an unknown source.
    NotVerified,
    Admitted,
    OverBudget,
}

/// Who a zone admits during a lockdown (`sipguard lockdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lockdown {
    Off,
    /// Allowlisted sources only.
    Allowlisted,
    /// Allowlisted and verified sources.
    AllowlistedAndVerified,
}

impl Lockdown {
    /// From [`PolicyHeader::flags`].
    #[inline(always)]
    pub const fn from_flags(flags: u8) -> Lockdown {
        if flags & policy_flags::LOCKDOWN == 0 {
            Lockdown::Off
        } else if flags & policy_flags::LOCKDOWN_VERIFIED == 0 {
            Lockdown::Allowlisted
        } else {
            Lockdown::AllowlistedAndVerified
        }
    }
}

/// The policy and budget state as the decision sees it. The XDP program implements it with maps.
pub trait PolicyView {
    /// Zone of a destination port (`Zone::None` when it is not a SIP port).
    fn zone(&self, transport: Transport, port: u16) -> Zone;
    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool;
    /// False when `addr` is certainly not denylisted (the IPv4 prefilter); true when it may be.
    fn maybe_denied(&self, _family: Family, _addr: &[u8; 16]) -> bool {
        true
    }
    /// False when `addr` is certainly not allowlisted (the IPv4 prefilter); true when it may be.
    fn maybe_allowed(&self, _family: Family, _addr: &[u8; 16]) -> bool {
        true
    }
    /// The budget class of an allowlisted source (0: no budget), or [`NOT_ALLOWLISTED`].
    ///
    /// A plain integer rather than `Option<u16>`: LLVM leaves the payload of a `None` undefined
    /// and may then store an unwritten register, which the verifier rejects.
    fn allow_class(&self, family: Family, addr: &[u8; 16]) -> u32;
    fn fragment_policy(&self) -> FragmentPolicy;
    /// Verdict remembered for the datagram's first fragment.
    fn recall_fragment(&self, key: &FragKey) -> Option<FragVerdict>;
    fn remember_fragment(&self, key: &FragKey, verdict: FragVerdict);
    /// Forgets what was remembered for a datagram (its first fragment passed).
    fn forget_fragment(&self, key: &FragKey);
    /// Length of the IPv6 prefix that budgets and bans apply to.
    fn ipv6_budget_prefix(&self) -> u8;
    /// Whether `source` is banned now (an implementation counts the hit).
    fn is_banned(&self, source: &SourceKey) -> bool;
    /// False when certainly no manual ban is in force (allowlisted sources then skip
    /// [`PolicyView::is_banned`]).
    fn manual_bans_in_force(&self) -> bool {
        true
    }
    /// False when admitted packets of `zone` certainly skip the SIP stage ([`zone_inspects`]).
    fn may_inspect(&self, _zone: Zone) -> bool {
        true
    }
    /// Spends one packet of an allowlisted source's budget; false when over it.
    fn spend_peer(&self, source: &SourceKey, class: u16) -> bool;
    /// Spends one packet of a verified source's budget (the verified class's), if `source` is
    /// verified now.
    fn spend_verified(&self, _source: &SourceKey) -> VerifiedSpend {
        VerifiedSpend::NotVerified
    }
    /// The budget class of verified sources.
    fn verified_class(&self) -> u16 {
        0
    }
    /// Whether a lockdown is on, and whom it admits.
    fn lockdown(&self) -> Lockdown {
        Lockdown::Off
    }
    /// Whether a source neither allowlisted nor verified may send this packet in the access
    /// zone: the gate is open, or the packet is a request a registration needs.
    fn unverified_may_send(&self) -> bool {
        true
    }
    /// Spends one packet of an unknown source's access budget, creating its state if the
    /// new-source budget allows, and banning it when it keeps exceeding the budget.
    fn spend_unknown(&self, source: &SourceKey) -> Spend;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reason: Reason,
    pub zone: Zone,
    /// The budget class the source was judged by (the SIP stage's method budgets follow it):
    /// an allowlist class, 0, or [`NOT_ALLOWLISTED_FLAG`] for a source on no allowlist.
    pub class: u16,
}

impl Verdict {
    #[inline(always)]
    const fn new(reason: Reason, zone: Zone) -> Self {
        Verdict {
            reason,
            zone,
            class: 0,
        }
    }

    #[inline(always)]
    const fn with_class(reason: Reason, zone: Zone, class: u32) -> Self {
        Verdict {
            reason,
            zone,
            class: if class == NOT_ALLOWLISTED {
                NOT_ALLOWLISTED_FLAG
            } else {
                class as u16
            },
        }
    }
}

/// Decides what happens to a parsed packet.
#[inline(always)]
pub fn decide<V: PolicyView>(parsed: &Parsed, view: &V) -> Verdict {
    let packet = match parsed {
        Parsed::NotIp => return Verdict::new(Reason::NotIp, Zone::None),
        Parsed::Malformed => return Verdict::new(Reason::Malformed, Zone::None),
        Parsed::TooDeep => return Verdict::new(Reason::Unparsed, Zone::Unknown),
        Parsed::Ip(packet) => packet,
    };
    decide_and_remember(&packet.meta(), view)
}

/// What the entry program decides alone, without touching any per-source table ([`entry`],
/// [`entry_quick`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not IP, or not SIP (other protocols, other ports): passed.
    Pass(Verdict),
    /// The flood path of a trunk: an unfragmented IPv4 packet to a trunk port from a source on
    /// no list or on the denylist: dropped, no state created. Only [`entry_quick`] gives it.
    Drop(Verdict),
    /// Everything else goes to the judge ([`decide_outcome`]): lists, bans, budgets, fragments,
    /// malformed frames, hidden ports; with the source's allowlist class when the entry looked
    /// it up ([`CLASS_UNKNOWN`] when not), so the judge does not look again.
    Judge { class: u32 },
}

/// [`Entry::Judge`] without a class: the judge looks the source up itself.
pub const CLASS_UNKNOWN: u32 = u32::MAX - 1;

const JUDGE: Entry = Entry::Judge {
    class: CLASS_UNKNOWN,
};

/// The entry's decision on a frame the quick parser left to the full one: not IP and not SIP
/// pass, the rest goes to the judge. Where it decides, [`decide`] decides the same (host tests
/// check it).
#[inline(always)]
pub fn entry<V: PolicyView>(parsed: &Parsed, view: &V) -> Entry {
    let packet = match parsed {
        Parsed::NotIp => return Entry::Pass(Verdict::new(Reason::NotIp, Zone::None)),
        Parsed::Malformed | Parsed::TooDeep => return JUDGE,
        Parsed::Ip(packet) => packet,
    };
    let L4::Ports {
        transport, dport, ..
    } = packet.l4
    else {
        return match packet.l4 {
            L4::Other => Entry::Pass(Verdict::new(Reason::NotSip, Zone::None)),
            _ => JUDGE,
        };
    };
    match view.zone(transport, dport) {
        Zone::None => Entry::Pass(Verdict::new(Reason::NotSip, Zone::None)),
        _ => JUDGE,
    }
}

/// The entry's decision on the common packet ([`crate::parse::parse_quick`]), `None` when it
/// goes to the judge without a class. On a trunk port the entry needs no per-source state: a
/// denylisted source or one on no list is dropped, one allowlisted without a budget class passes
/// (while no manual ban is in force and the trunk has no SIP stage); budgets and bans are the
/// judge's. Where it decides, [`decide`] decides the same.
#[inline(always)]
pub fn entry_quick<V: PolicyView>(packet: &Quick, view: &V) -> Option<Entry> {
    let src = packet.source();
    match view.zone(packet.transport, packet.dport) {
        Zone::None => Some(Entry::Pass(Verdict::new(Reason::NotSip, Zone::None))),
        Zone::Trunk => {
            if view.maybe_denied(Family::V4, &src) && view.is_denied(Family::V4, &src) {
                return Some(Entry::Drop(Verdict::new(Reason::Denylisted, Zone::Trunk)));
            }
            let class = if view.maybe_allowed(Family::V4, &src) {
                view.allow_class(Family::V4, &src)
            } else {
                NOT_ALLOWLISTED
            };
            match class {
                NOT_ALLOWLISTED => Some(Entry::Drop(Verdict::new(
                    Reason::NotAllowlisted,
                    Zone::Trunk,
                ))),
                0 if !view.manual_bans_in_force() && !view.may_inspect(Zone::Trunk) => {
                    Some(Entry::Pass(Verdict::new(Reason::Allowlisted, Zone::Trunk)))
                }
                class => Some(Entry::Judge { class }),
            }
        }
        _ => None,
    }
}

/// Whether admitted packets of `zone` go through the SIP stage (the zone has SIP rules).
#[inline(always)]
pub fn zone_inspects(header: &PolicyHeader, zone: Zone) -> bool {
    let flag = match zone {
        Zone::Trunk => policy_flags::SIP_TRUNK,
        Zone::Access => policy_flags::SIP_ACCESS,
        Zone::None | Zone::Unknown => return false,
    };
    header.flags & flag != 0
}

/// Decides what happens to a packet [`parse_into`](crate::parse::parse_into) read into `packet`.
#[inline(always)]
///
/// `class_hint` is the source's allowlist class when the entry looked it up ([`entry_quick`]
/// only does so for a trunk packet whose source it found on no denylist), else
/// [`CLASS_UNKNOWN`].
pub fn decide_outcome<V: PolicyView>(
    outcome: Outcome,
    packet: &PacketMeta,
    view: &V,
    class_hint: u32,
) -> Verdict {
    match outcome {
        Outcome::NotIp => Verdict::new(Reason::NotIp, Zone::None),
        Outcome::Malformed => Verdict::new(Reason::Malformed, Zone::None),
        Outcome::TooDeep => Verdict::new(Reason::Unparsed, Zone::Unknown),
        Outcome::Ip => decide_hinted(packet, view, class_hint),
    }
}

/// [`decide_ip`] and the fragment bookkeeping that follows it: what host tests and the model call.
#[inline(always)]
pub fn decide_and_remember<V: PolicyView>(packet: &PacketMeta, view: &V) -> Verdict {
    let verdict = decide_ip(packet, view);
    remember_first_fragment(packet, verdict, view);
    verdict
}

/// Decides what happens to an IP packet, in the fixed layout stage 1 hands on. The caller then
/// calls [`remember_first_fragment`] (kept apart so that the data plane runs it once, after the
/// many ways to a verdict have met).
#[inline(always)]
pub fn decide_ip<V: PolicyView>(packet: &PacketMeta, view: &V) -> Verdict {
    decide_hinted(packet, view, CLASS_UNKNOWN)
}

#[inline(always)]
fn decide_hinted<V: PolicyView>(packet: &PacketMeta, view: &V, class_hint: u32) -> Verdict {
    match packet.l4 {
        meta_l4::UDP | meta_l4::TCP | meta_l4::SCTP => {
            let transport = match packet.l4 {
                meta_l4::TCP => Transport::Tcp,
                meta_l4::SCTP => Transport::Sctp,
                _ => Transport::Udp,
            };
            let zone = view.zone(transport, packet.dport);
            if zone == Zone::None {
                Verdict::new(Reason::NotSip, Zone::None)
            } else {
                judge_source(view, packet, zone, Reason::NotAllowlisted, class_hint)
            }
        }
        meta_l4::LATER_FRAGMENT => later_fragment(view, packet),
        meta_l4::TINY_FIRST_FRAGMENT | meta_l4::CHAIN_TOO_LONG => {
            judge_source(view, packet, Zone::Unknown, Reason::Unparsed, CLASS_UNKNOWN)
        }
        _ => Verdict::new(Reason::NotSip, Zone::None),
    }
}

/// A later fragment carries no ports. Under `inherit` it follows its first fragment when that was
/// dropped, and passes otherwise (first fragment passed, evicted or not seen yet): the kernel never
/// reassembles a datagram without its first fragment, and that one is always judged.
#[inline(always)]
fn later_fragment<V: PolicyView>(view: &V, packet: &PacketMeta) -> Verdict {
    match view.fragment_policy() {
        FragmentPolicy::Pass => Verdict::new(Reason::FragmentPassed, Zone::Unknown),
        FragmentPolicy::Source => judge_source(
            view,
            packet,
            Zone::Unknown,
            Reason::NotAllowlisted,
            CLASS_UNKNOWN,
        ),
        FragmentPolicy::Inherit => match view.recall_fragment(&fragment_key(packet)) {
            Some(first) => Verdict::new(
                Reason::from_u8(first.reason).unwrap_or(Reason::FragmentUntracked),
                Zone::from_u8(first.zone),
            ),
            None => Verdict::new(Reason::FragmentPassed, Zone::Unknown),
        },
    }
}

/// Denylist, allowlist and budgets; `unknown` for other sources outside the access zone.
#[inline(always)]
fn judge_source<V: PolicyView>(
    view: &V,
    packet: &PacketMeta,
    zone: Zone,
    unknown: Reason,
    class_hint: u32,
) -> Verdict {
    let family = packet.family();
    // A hinted class comes from the entry, which looked after the denylist cleared the source:
    // no denylist lookup, no second allowlist lookup.
    let class = if class_hint != CLASS_UNKNOWN {
        class_hint
    } else {
        if view.maybe_denied(family, &packet.src) && view.is_denied(family, &packet.src) {
            return Verdict::new(Reason::Denylisted, zone);
        }
        if view.maybe_allowed(family, &packet.src) {
            view.allow_class(family, &packet.src)
        } else {
            NOT_ALLOWLISTED
        }
    };
    if class == NOT_ALLOWLISTED && zone != Zone::Access {
        // The flood path of a trunk: no ban lookup, no state.
        return Verdict::new(unknown, zone);
    }
    let lockdown = if class == NOT_ALLOWLISTED {
        view.lockdown()
    } else {
        Lockdown::Off
    };
    if lockdown == Lockdown::Allowlisted {
        // The access zone locked down like a trunk: no ban lookup, no state.
        return Verdict::new(Reason::Lockdown, zone);
    }
    // Allowlisted sources are only ever banned by hand: with no manual ban in force, no lookup.
    let bans_apply = class == NOT_ALLOWLISTED || view.manual_bans_in_force();
    if class == 0 && !bans_apply {
        return Verdict::new(Reason::Allowlisted, zone);
    }
    let source = source_key(packet, view.ipv6_budget_prefix());
    if bans_apply && view.is_banned(&source) {
        return Verdict::new(Reason::Banned, zone);
    }
    if class == NOT_ALLOWLISTED {
        // Only the access zone gets here. A verified source keeps its own bucket.
        let reason = match view.spend_verified(&source) {
            VerifiedSpend::NotVerified => None,
            VerifiedSpend::Admitted => Some(Reason::Verified),
            VerifiedSpend::OverBudget => Some(Reason::VerifiedRateLimited),
        };
        if let Some(reason) = reason {
            return Verdict {
                reason,
                zone,
                class: NOT_ALLOWLISTED_FLAG | VERIFIED_FLAG | view.verified_class(),
            };
        }
        if lockdown == Lockdown::AllowlistedAndVerified {
            return Verdict::new(Reason::Lockdown, zone);
        }
        // Before any budget: a flood the gate shuts out spends no new-source budget, so a
        // phone's first REGISTER competes only with other REGISTERs.
        if !view.unverified_may_send() {
            return Verdict::new(Reason::Unverified, zone);
        }
    }
    let reason = match class {
        0 => Reason::Allowlisted,
        NOT_ALLOWLISTED => match view.spend_unknown(&source) {
            Spend::Admitted => Reason::AccessAdmitted,
            Spend::OverBudget => Reason::RateLimited,
            Spend::NoNewSource => Reason::NewSourceLimited,
        },
        class if view.spend_peer(&source, class as u16) => Reason::Allowlisted,
        _ => Reason::PeerRateLimited,
    };
    Verdict::with_class(reason, zone, class)
}

/// Whether the shut access gate lets a packet of an unverified source through: one without
/// payload (the TCP handshake a registration over TCP needs), the continuation of a TCP
/// message (no method at its start), or a request whose method is in `allowed` (bit
/// `1 << method`: REGISTER by default).
#[inline(always)]
pub const fn gate_admits(l4: u8, has_payload: bool, method: SipMethod, allowed: u16) -> bool {
    if !has_payload {
        return true;
    }
    match method {
        SipMethod::Unknown => l4 == meta_l4::TCP,
        method => allowed & (1 << (method as u16 & 15)) != 0,
    }
}

/// A 32-bit fingerprint of a source key, never 0 (0 marks an empty event-cache slot); the top
/// byte picks the slot.
#[inline(always)]
pub fn source_tag(source: &SourceKey) -> u32 {
    let word = |i: usize| {
        u32::from_ne_bytes([
            source.addr[i],
            source.addr[i + 1],
            source.addr[i + 2],
            source.addr[i + 3],
        ])
    };
    let folded =
        word(0) ^ word(4).rotate_left(8) ^ word(8).rotate_left(16) ^ word(12).rotate_left(24);
    // Fibonacci hashing spreads neighbouring addresses over the slots.
    let mixed = (folded ^ u32::from(source.family)).wrapping_mul(0x9E37_79B1);
    mixed | 1
}

/// Whom budgets and bans of `packet` belong to ([`crate::source::source_key`]).
#[inline(always)]
pub fn source_key(packet: &PacketMeta, ipv6_prefix: u8) -> SourceKey {
    crate::source::source_key(packet.family, &packet.src, ipv6_prefix)
}

/// Only a dropped first fragment is remembered (its later fragments are dropped with it); a
/// first fragment that passes forgets any older datagram of the same key, so a reused IP ID
/// never drops the fragments of a datagram whose first fragment passed.
#[inline(always)]
pub fn remember_first_fragment<V: PolicyView>(packet: &PacketMeta, verdict: Verdict, view: &V) {
    if packet.fragment != meta_fragment::FIRST || view.fragment_policy() != FragmentPolicy::Inherit
    {
        return;
    }
    let key = fragment_key(packet);
    if verdict.reason.is_drop() {
        view.remember_fragment(
            &key,
            FragVerdict {
                reason: verdict.reason as u8,
                zone: verdict.zone as u8,
                _reserved: [0; 2],
            },
        );
    } else {
        view.forget_fragment(&key);
    }
}

/// Key of the datagram a fragment belongs to: addresses, identification and the protocol the
/// fragments announce (IPv4: the IP header's; IPv6: the fragment header's next header).
#[inline(always)]
pub fn fragment_key(packet: &PacketMeta) -> FragKey {
    FragKey {
        src: packet.src,
        dst: packet.dst,
        id: packet.frag_id,
        family: packet.family,
        proto: packet.frag_proto,
        _reserved: [0; 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(family: u8, addr: [u8; 16]) -> SourceKey {
        SourceKey {
            addr,
            family,
            prefix_len: if family == 4 { 32 } else { 64 },
            _reserved: [0; 2],
        }
    }

    #[test]
    fn the_shut_gate_admits_registrations_and_what_a_tcp_connection_needs() {
        let register = 1 << SipMethod::Register as u16;
        for (l4, payload, method, allowed, admitted) in [
            (meta_l4::UDP, true, SipMethod::Register, register, true),
            (meta_l4::UDP, true, SipMethod::Invite, register, false),
            (meta_l4::UDP, true, SipMethod::Options, register, false),
            (meta_l4::UDP, true, SipMethod::Response, register, false),
            // A CRLF keep-alive or garbage over UDP is no registration.
            (meta_l4::UDP, true, SipMethod::Unknown, register, false),
            (meta_l4::UDP, false, SipMethod::Unknown, register, true),
            // SYN, ACK, and the later segments of a message over TCP.
            (meta_l4::TCP, false, SipMethod::Unknown, register, true),
            (meta_l4::TCP, true, SipMethod::Unknown, register, true),
            (meta_l4::TCP, true, SipMethod::Invite, register, false),
            // A deployment that lets unregistered devices send OPTIONS keep-alives.
            (
                meta_l4::UDP,
                true,
                SipMethod::Options,
                register | 1 << SipMethod::Options as u16,
                true,
            ),
        ] {
            assert_eq!(
                gate_admits(l4, payload, method, allowed),
                admitted,
                "{l4} {payload} {method:?}"
            );
        }
    }

    #[test]
    fn source_tags_are_never_empty_and_spread_neighbours_over_slots() {
        let mut slots = std::collections::BTreeSet::new();
        for host in 0..=255u8 {
            let tag = source_tag(&key(
                4,
                [198, 18, 0, host, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ));
            assert_ne!(tag, 0);
            slots.insert(tag >> 24);
        }
        assert!(
            slots.len() > 150,
            "256 neighbours fill {} of 256 slots",
            slots.len()
        );
        let v4 = source_tag(&key(4, [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        let v6 = source_tag(&key(6, [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_ne!(v4, v6, "the family is part of the tag");
    }

    #[test]
    fn a_packet_is_keyed_like_its_source_address() {
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 1]);
        addr[15] = 7;
        let packet = crate::parse::IpPacket {
            family: Family::V6,
            src: addr,
            dst: [0; 16],
            proto: 17,
            l4: crate::parse::L4::Other,
            fragment: crate::parse::Fragment::None,
            frag_proto: 0,
            vlan: [0; 2],
        }
        .meta();
        for prefix in [0, 1, 56, 64, 65, 128, 200] {
            assert_eq!(
                source_key(&packet, prefix),
                crate::source::source_key(6, &addr, prefix)
            );
        }
        assert_eq!(source_key(&packet, 64).addr[8..], [0; 8]);
    }
}
