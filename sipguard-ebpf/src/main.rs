//! sipguard's XDP program: judges every SIP packet by its source before the SBC sees it.
//!
//! The decision logic lives in `sipguard-common` (shared with host tests); this crate only binds it
//! to the packet and to the maps. Minimum kernel: 5.12 (BPF links for XDP, bounded loops, BPF
//! atomics); tested on 6.18.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod events;
mod frame;
mod maps;
mod view;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_boot_ns, macros::xdp, programs::XdpContext,
};
use sipguard_common::{
    abi::{Handoff, Mode, SourceKey, TAIL_REPORT, counter_index, event_stat},
    parse::{Parsed, parse},
    verdict::{decide, decide_ip, source_key},
};

use crate::{
    frame::XdpFrame,
    maps::{HANDOFF, TAILS, count, event_stat},
    view::MapView,
};

#[xdp]
pub(crate) fn sipguard(ctx: XdpContext) -> u32 {
    let frame = XdpFrame::new(&ctx);
    let Some(view) = MapView::active() else {
        // Only possible if the maps are unreadable; never break the host's networking.
        return xdp_action::XDP_PASS;
    };
    // The source is taken inside the IP arm, before the decision and for passes too (a copy of
    // 17 bytes): carried past the decision, or taken only on drops, LLVM leaves undefined bytes
    // of the parse result in registers the verifier refuses to read or spill.
    let (verdict, source) = match parse(&frame) {
        Parsed::Ip(packet) => {
            let source = source_key(&packet, view.ipv6_budget());
            (decide_ip(&packet, &view), source)
        }
        // Frames without an IP header share one event budget.
        other => (decide(&other, &view), SourceKey::default()),
    };
    let drop = verdict.reason.is_drop();
    let monitored = drop && view.mode() == Mode::Monitor;
    count(
        counter_index(verdict.zone, verdict.reason, monitored),
        frame.byte_len(),
    );
    let action = if drop && !monitored {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    };
    if drop {
        match events::admit(&source, &view) {
            Some(suppressed) => {
                // The report program returns `action` itself; a failed tail call falls through.
                if let Some(handoff) = HANDOFF.get_ptr_mut(0) {
                    // SAFETY: per-CPU slot.
                    unsafe {
                        *handoff = Handoff {
                            action,
                            reason: verdict.reason as u8,
                            zone: verdict.zone as u8,
                            monitored: u8::from(monitored),
                            _reserved: 0,
                            suppressed,
                            _reserved2: 0,
                        };
                        TAILS.tail_call(&ctx, TAIL_REPORT);
                    }
                }
                event_stat(event_stat::LOST);
            }
            None => event_stat(event_stat::SUPPRESSED),
        }
    }
    action
}

/// Tail-called for the drops that got an event (verified on its own: one program doing both
/// would exceed the verifier's complexity limit): writes the event, returns the filter's action.
#[xdp]
pub(crate) fn sipguard_report(ctx: XdpContext) -> u32 {
    let Some(handoff) = HANDOFF.get(0).copied() else {
        return xdp_action::XDP_PASS;
    };
    let frame = XdpFrame::new(&ctx);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let ifindex = ctx.ingress_ifindex() as u32;
    match parse(&frame) {
        Parsed::Ip(packet) => events::report(ifindex, &frame, Some(&packet), &handoff, now),
        _ => events::report(ifindex, &frame, None, &handoff, now),
    }
    handoff.action
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
