//! Drop events: in the filter, a per-source budget in a per-CPU direct-mapped cache, then a
//! global per-CPU budget (two array lookups, on the tick clock) decide whether a drop gets an
//! event; only then is the report program tail-called to write it into the ring buffer. Every
//! drop counts once as emitted, suppressed or lost.

use sipguard_common::{
    abi::{
        DropEvent, EVENT_CACHE_SLOTS, Handoff, Reason, SourceKey, event_stat, handoff_outcome,
        meta_l4,
    },
    dial::Number,
    sip::{METHOD_BYTES, sip_method},
    verdict::source_tag,
};

use crate::{
    frame::XdpFrame,
    maps::{EVENT_CACHE, EVENT_STATS, EVENTS, event_stat},
    view::MapView,
};

/// Spends one event of the source's and of the global budget. `Some(n)`: report the drop, `n`
/// drops of this source having been suppressed since its previous event.
#[inline(always)]
pub(crate) fn admit(source: &SourceKey, view: &MapView) -> Option<u32> {
    let tag = source_tag(source);
    let cache = EVENT_CACHE.get_ptr_mut(0)?;
    let events = &view.header().events;
    let now = view.now();
    // SAFETY: per-CPU value; no other writer while this program runs on this CPU.
    unsafe {
        let slot = &mut (*cache).slots[(tag >> 24) as usize & (EVENT_CACHE_SLOTS - 1)];
        let (tat, suppressed) = if slot.tag == tag {
            (slot.tat_ns, slot.suppressed)
        } else {
            (0, 0)
        };
        match events.admit_on_tick(tat, now, view.tick_ns()) {
            Some(next) if spend_global(now, view) => {
                slot.tag = tag;
                slot.tat_ns = next;
                slot.suppressed = 0;
                Some(suppressed)
            }
            _ => {
                // A newcomer without budget leaves the slot to its occupant.
                if slot.tag == tag {
                    slot.suppressed = suppressed.saturating_add(1);
                }
                None
            }
        }
    }
}

/// The global event budget, per CPU (its TAT lives in the last `SG_EVSTATS` slot).
#[inline(always)]
fn spend_global(now: u64, view: &MapView) -> bool {
    let Some(tat) = EVENT_STATS.get_ptr_mut(event_stat::SLOTS) else {
        return false;
    };
    // SAFETY: per-CPU slot.
    unsafe {
        match view
            .header()
            .events_global
            .admit_on_tick(*tat, now, view.tick_ns())
        {
            Some(next) => {
                *tat = next;
                true
            }
            None => false,
        }
    }
}

/// Writes the event of a drop that got one, from the packet stage 1 left in the handoff slot.
#[inline(always)]
pub(crate) fn report(ifindex: u32, frame: &XdpFrame, handoff: &Handoff, now: u64) {
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        event_stat(event_stat::LOST);
        return;
    };
    // Written in place: a 72-byte event on the stack costs stack the verifier counts.
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at reserved ring-buffer memory of the right size.
    unsafe {
        (*event).time_ns = now;
        (*event).ifindex = ifindex;
        (*event).packet_len = frame.byte_len() as u32;
        (*event).suppressed = handoff.suppressed;
        (*event).reason = handoff.reason;
        (*event).zone = handoff.zone;
        (*event).monitored = handoff.monitored;
        (*event)._reserved = [0; 2];
        (*event)._reserved2 = [0; 2];
        (*event)._reserved3 = [0; 7];
        // Only the SIP stage's drops have a rule and a number; the slot may hold an earlier
        // packet's.
        let sip_drop = Reason::from_sip_stage(handoff.reason);
        (*event).rule = if sip_drop { handoff.rule } else { 0 };
        (*event).number = if Reason::carries_number(handoff.reason) {
            handoff.number
        } else {
            Number::default()
        };
        let packet = &handoff.packet;
        let has_packet = handoff.outcome == handoff_outcome::IP;
        (*event).src = if has_packet { packet.src } else { [0; 16] };
        (*event).dst = if has_packet { packet.dst } else { [0; 16] };
        (*event).vlan = if has_packet { packet.vlan } else { [0; 2] };
        (*event).family = if has_packet { packet.family } else { 0 };
        let ports = has_packet && matches!(packet.l4, meta_l4::UDP | meta_l4::TCP | meta_l4::SCTP);
        (*event).sport = if ports { packet.sport } else { 0 };
        (*event).dport = if ports { packet.dport } else { 0 };
        (*event).l4_proto = match (has_packet, packet.l4) {
            (false, _) => 0,
            (true, meta_l4::UDP) => 17,
            (true, meta_l4::TCP) => 6,
            (true, meta_l4::SCTP) => 132,
            (true, _) => packet.proto,
        };
        (*event).method = 0;
        if sip_drop {
            (*event).method = handoff.method;
        } else if ports
            && packet.payload != 0
            && let Some(start) = frame.load_handed::<METHOD_BYTES>(packet.payload)
        {
            (*event).method = sip_method(&start) as u8;
        }
    }
    entry.submit(0);
    event_stat(event_stat::EMITTED);
}
