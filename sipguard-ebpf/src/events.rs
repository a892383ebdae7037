//! Drop events into the ring buffer, within a per-source and a global budget, every drop
//! accounted as emitted, suppressed or lost.

use sipguard_common::{
    abi::{DropEvent, EventLimit, Handoff, SourceKey, event_stat},
    parse::{Frame, IpPacket, L4, Parsed, Transport},
    sip::{METHOD_BYTES, sip_method},
    verdict::source_key,
};

use crate::{
    frame::XdpFrame,
    maps::{EVENT_LIMITS, EVENT_STATS, EVENTS, event_stat},
    view::MapView,
};

/// Reports a drop (or would-drop) verdict handed over by the filter program.
#[inline(always)]
pub fn report(ifindex: u32, frame: &XdpFrame, parsed: &Parsed, handoff: &Handoff, view: &MapView) {
    let packet = match parsed {
        Parsed::Ip(packet) => Some(packet),
        _ => None,
    };
    let source = match packet {
        Some(packet) => source_key(packet, view.ipv6_budget()),
        // Frames without an IP header share one budget.
        None => SourceKey::default(),
    };
    let now = view.now();
    let Some(suppressed) = spend_event_budget(&source, now, view) else {
        event_stat(event_stat::SUPPRESSED);
        return;
    };
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        event_stat(event_stat::LOST);
        return;
    };
    // Written in place: a 72-byte event on the stack would not fit beside the parser's.
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at reserved ring-buffer memory of the right size.
    unsafe {
        (*event).time_ns = now;
        (*event).ifindex = ifindex;
        (*event).packet_len = frame.byte_len() as u32;
        (*event).suppressed = suppressed;
        (*event).reason = handoff.reason;
        (*event).zone = handoff.zone;
        (*event).monitored = handoff.monitored;
        (*event)._reserved = [0; 6];
        match packet {
            Some(packet) => describe(&mut *event, packet, frame),
            None => {
                (*event).src = [0; 16];
                (*event).dst = [0; 16];
                (*event).sport = 0;
                (*event).dport = 0;
                (*event).vlan = [0; 2];
                (*event).family = 0;
                (*event).l4_proto = 0;
                (*event).method = 0;
            }
        }
    }
    entry.submit(0);
    event_stat(event_stat::EMITTED);
}

#[inline(always)]
fn describe(event: &mut DropEvent, packet: &IpPacket, frame: &XdpFrame) {
    event.src = packet.src;
    event.dst = packet.dst;
    event.vlan = packet.vlan;
    event.family = packet.family as u8;
    event.l4_proto = packet.proto;
    event.method = 0;
    match packet.l4 {
        L4::Ports {
            transport,
            sport,
            dport,
            payload,
        } => {
            event.sport = sport;
            event.dport = dport;
            event.l4_proto = match transport {
                Transport::Udp => 17,
                Transport::Tcp => 6,
            };
            if payload != 0
                && let Some(start) = frame.load::<METHOD_BYTES>(payload as usize)
            {
                event.method = sip_method(&start) as u8;
            }
        }
        _ => {
            event.sport = 0;
            event.dport = 0;
        }
    }
}

/// Spends one event of the source's budget and of the global one. `Some(n)`: send the event,
/// `n` events of this source having been suppressed since its previous one.
#[inline(always)]
fn spend_event_budget(source: &SourceKey, now: u64, view: &MapView) -> Option<u32> {
    let header = view.header();
    let limit = EVENT_LIMITS.get_ptr_mut(source);
    if let Some(limit) = limit {
        // SAFETY: map value valid for this run; races with the same source on another CPU at
        // worst let one more event through.
        unsafe {
            match header.events.admit((*limit).tat_ns, now) {
                Some(next) if spend_global(now, view) => {
                    (*limit).tat_ns = next;
                    let suppressed = (*limit).suppressed;
                    (*limit).suppressed = 0;
                    return Some(suppressed);
                }
                _ => {
                    (*limit).suppressed = (*limit).suppressed.saturating_add(1);
                    return None;
                }
            }
        }
    }
    // A source without an entry only gets one if the global budget allows an event: a spoofed
    // flood must not churn this map either.
    if !spend_global(now, view) {
        return None;
    }
    let fresh = EventLimit {
        tat_ns: header.events.first(now),
        suppressed: 0,
        _reserved: 0,
    };
    let _ = EVENT_LIMITS.insert(source, fresh, 0);
    Some(0)
}

/// The global event budget, per CPU (its TAT lives in the last `SG_EVSTATS` slot).
#[inline(always)]
fn spend_global(now: u64, view: &MapView) -> bool {
    let Some(tat) = EVENT_STATS.get_ptr_mut(event_stat::SLOTS) else {
        return false;
    };
    // SAFETY: per-CPU slot.
    unsafe {
        match view.header().events_global.admit(*tat, now) {
            Some(next) => {
                *tat = next;
                true
            }
            None => false,
        }
    }
}
