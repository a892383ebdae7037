//! From a parsed packet and the policy to a verdict: the decision order of the data plane, written
//! once for the XDP program and for host tests (which supply the policy through [`PolicyView`]).
//!
//! Order, cheapest first: not IP or not a SIP port -> pass untouched; denylist -> drop;
//! allowlist -> pass; anything else on a trunk port -> drop. Packets whose port is hidden
//! (fragments, parser limits) are judged by their source alone, so hiding the port never helps.

use crate::{
    abi::{FragKey, FragVerdict, FragmentPolicy, Reason, Zone},
    parse::{Family, Fragment, Hidden, IpPacket, L4, Parsed, Transport},
};

/// The policy as the decision sees it. The XDP program implements it with maps.
pub trait PolicyView {
    /// Zone of a destination port (`Zone::None` when it is not a SIP port).
    fn zone(&self, transport: Transport, port: u16) -> Zone;
    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool;
    fn is_allowed(&self, family: Family, addr: &[u8; 16]) -> bool;
    fn fragment_policy(&self) -> FragmentPolicy;
    /// Verdict remembered for the datagram's first fragment.
    fn recall_fragment(&self, key: &FragKey) -> Option<FragVerdict>;
    fn remember_fragment(&self, key: &FragKey, verdict: FragVerdict);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reason: Reason,
    pub zone: Zone,
}

impl Verdict {
    #[inline(always)]
    const fn new(reason: Reason, zone: Zone) -> Self {
        Verdict { reason, zone }
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
    let verdict = match packet.l4 {
        L4::Other => Verdict::new(Reason::NotSip, Zone::None),
        L4::Ports {
            transport, dport, ..
        } => {
            let zone = view.zone(transport, dport);
            if zone == Zone::None {
                Verdict::new(Reason::NotSip, Zone::None)
            } else {
                judge_source(view, packet, zone, Reason::NotAllowlisted)
            }
        }
        L4::Hidden(Hidden::LaterFragment) => return later_fragment(view, packet),
        L4::Hidden(Hidden::TinyFirstFragment | Hidden::ChainTooLong) => {
            judge_source(view, packet, Zone::Unknown, Reason::Unparsed)
        }
    };
    // Later fragments of every datagram, SIP or not, follow their first fragment.
    remember_first_fragment(view, packet, verdict);
    verdict
}

#[inline(always)]
fn later_fragment<V: PolicyView>(view: &V, packet: &IpPacket) -> Verdict {
    match view.fragment_policy() {
        FragmentPolicy::Pass => Verdict::new(Reason::FragmentPassed, Zone::Unknown),
        FragmentPolicy::Source => judge_source(view, packet, Zone::Unknown, Reason::NotAllowlisted),
        FragmentPolicy::Inherit => match view.recall_fragment(&fragment_key(packet)) {
            Some(first) => Verdict::new(
                Reason::from_u8(first.reason).unwrap_or(Reason::FragmentUntracked),
                Zone::from_u8(first.zone),
            ),
            None => judge_source(view, packet, Zone::Unknown, Reason::FragmentUntracked),
        },
    }
}

/// Denylist, then allowlist, then `unknown`.
#[inline(always)]
fn judge_source<V: PolicyView>(
    view: &V,
    packet: &IpPacket,
    zone: Zone,
    unknown: Reason,
) -> Verdict {
    if view.is_denied(packet.family, &packet.src) {
        Verdict::new(Reason::Denylisted, zone)
    } else if view.is_allowed(packet.family, &packet.src) {
        Verdict::new(Reason::Allowlisted, zone)
    } else {
        Verdict::new(unknown, zone)
    }
}

#[inline(always)]
fn remember_first_fragment<V: PolicyView>(view: &V, packet: &IpPacket, verdict: Verdict) {
    if matches!(packet.fragment, Fragment::First { .. })
        && view.fragment_policy() == FragmentPolicy::Inherit
    {
        view.remember_fragment(
            &fragment_key(packet),
            FragVerdict {
                reason: verdict.reason as u8,
                zone: verdict.zone as u8,
                _reserved: [0; 2],
            },
        );
    }
}

/// Key of the datagram a fragment belongs to.
#[inline(always)]
pub fn fragment_key(packet: &IpPacket) -> FragKey {
    let id = match packet.fragment {
        Fragment::First { id } | Fragment::Later { id } => id,
        Fragment::None => 0,
    };
    FragKey {
        src: packet.src,
        dst: packet.dst,
        id,
        family: packet.family as u8,
        _reserved: [0; 3],
    }
}
