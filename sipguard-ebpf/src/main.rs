//! sipguard's XDP program: judges every SIP packet by its source before the SBC sees it.
//!
//! The decision logic lives in `sipguard-common` (shared with host tests); this crate only binds it
//! to the packet and to the maps. Minimum kernel: 5.12 (BPF links for XDP, bounded loops, BPF
//! atomics); tested on 6.18.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

mod answer;
mod capture;
mod events;
mod frame;
mod maps;
mod sip;
mod view;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_boot_ns,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use sipguard_common::{
    abi::{
        Handoff, Mode, PacketMeta, Reason, SourceKey, Zone, capture_then, counter_index,
        event_stat, tail,
    },
    parse::{Family, Outcome, Parsed, Quick, parse, parse_quick},
    verdict::{
        CLASS_UNKNOWN, Entry, PolicyView, Verdict, decide_outcome, entry, entry_quick,
        remember_first_fragment, source_key,
    },
};

use crate::{
    frame::XdpFrame,
    maps::{HANDOFF, TAILS, count, event_stat},
    view::MapView,
};

/// The entry, attached to the interface. It passes what is not SIP (not IP, other protocols,
/// other ports) and drops the trunk's flood path without any per-source lookup, mostly from the
/// quick parser's reading of the common packet; the rest goes, parsed into the handoff slot, to
/// the judge.
#[xdp]
pub(crate) fn sipguard(ctx: XdpContext) -> u32 {
    let frame = XdpFrame::new(&ctx);
    let Some(view) = MapView::active() else {
        // Only possible if the maps are unreadable; never break the host's networking.
        return xdp_action::XDP_PASS;
    };
    if let Some(quick) = parse_quick(&frame) {
        match entry_quick(&quick, &view) {
            Some(Entry::Pass(verdict)) => {
                let action = pass(&frame, verdict);
                // Allowlisted on a trunk port (the other passes here are not SIP).
                if verdict.zone != Zone::None && capture::armed(false) {
                    capture_pass(&ctx, &quick, verdict);
                }
                return action;
            }
            Some(Entry::Drop(verdict)) => return flood_drop(&ctx, &frame, &view, &quick, verdict),
            Some(Entry::Judge { class }) => {
                return to_judge(&ctx, &view, quick.meta(), Outcome::Ip, class);
            }
            None => return to_judge(&ctx, &view, quick.meta(), Outcome::Ip, CLASS_UNKNOWN),
        }
    }
    let parsed = parse(&frame);
    match entry(&parsed, &view) {
        Entry::Pass(verdict) => return pass(&frame, verdict),
        Entry::Drop(_) | Entry::Judge { .. } => {}
    }
    let meta = match &parsed {
        Parsed::Ip(packet) => packet.meta(),
        _ => PacketMeta::default(),
    };
    to_judge(&ctx, &view, meta, parsed.outcome(), CLASS_UNKNOWN)
}

/// Hands the packet to the judge through the handoff slot.
#[inline(always)]
fn to_judge(
    ctx: &XdpContext,
    view: &MapView,
    packet: PacketMeta,
    outcome: Outcome,
    class_hint: u32,
) -> u32 {
    let Some(handoff) = handoff() else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: a field of the slot.
    unsafe { core::ptr::write_volatile(&raw mut handoff.packet, packet) };
    handoff.outcome = outcome.code();
    handoff.class_hint = class_hint;
    handoff.generation = view.generation();
    // SAFETY: the judge reads the handoff slot this program just filled.
    unsafe { TAILS.tail_call(ctx, tail::JUDGE) };
    // No judge (never after a successful load): fail open, counted.
    event_stat(event_stat::TAIL_CALL_FAILED);
    xdp_action::XDP_PASS
}

/// Not SIP: counted and passed.
#[inline(always)]
fn pass(frame: &XdpFrame, verdict: Verdict) -> u32 {
    count(
        counter_index(verdict.zone, verdict.reason, false),
        frame.byte_len(),
    );
    xdp_action::XDP_PASS
}

/// A drop of the trunk's flood path (an IPv4 source on no list, or denylisted), decided in the
/// entry: no tail call, no per-source state. Only a drop within the event budgets pays for
/// filling the handoff slot and the reporter.
#[inline(always)]
fn flood_drop(
    ctx: &XdpContext,
    frame: &XdpFrame,
    view: &MapView,
    packet: &Quick,
    verdict: Verdict,
) -> u32 {
    let monitored = view.mode() == Mode::Monitor;
    count(
        counter_index(verdict.zone, verdict.reason, monitored),
        frame.byte_len(),
    );
    let action = if monitored {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    };
    let source = sipguard_common::source::source_key(Family::V4 as u8, &packet.source(), 32);
    let report = events::admit(&source, view);
    if report.is_none() {
        event_stat(event_stat::SUPPRESSED);
    }
    let capture = capture::armed(true);
    if report.is_none() && !capture {
        return action;
    }
    let Some(handoff) = handoff() else {
        return action;
    };
    // SAFETY: fields of the slot, for the reporter.
    unsafe { core::ptr::write_volatile(&raw mut handoff.packet, packet.meta()) };
    handoff.outcome = Outcome::Ip.code();
    handoff.reason = verdict.reason as u8;
    handoff.zone = verdict.zone as u8;
    handoff.monitored = u8::from(monitored);
    handoff.action = action;
    handoff.suppressed = report.unwrap_or(0);
    if capture {
        handoff.capture = if report.is_some() {
            capture_then::REPORT
        } else {
            capture_then::RETURN
        };
        // SAFETY: the capture stage reads the slot just filled.
        unsafe { TAILS.tail_call(ctx, tail::CAPTURE) };
    }
    if report.is_some() {
        // SAFETY: the reporter reads the slot just filled.
        unsafe { TAILS.tail_call(ctx, tail::REPORT) };
        event_stat(event_stat::LOST);
    }
    action
}

/// An allowlisted trunk packet the entry passed, handed to a capture that includes passed
/// packets.
#[inline(always)]
fn capture_pass(ctx: &XdpContext, packet: &Quick, verdict: Verdict) {
    let Some(handoff) = handoff() else {
        return;
    };
    // SAFETY: fields of the slot, for the capture stage.
    unsafe { core::ptr::write_volatile(&raw mut handoff.packet, packet.meta()) };
    handoff.outcome = Outcome::Ip.code();
    handoff.reason = verdict.reason as u8;
    handoff.zone = verdict.zone as u8;
    handoff.monitored = 0;
    handoff.action = xdp_action::XDP_PASS;
    handoff.capture = capture_then::RETURN;
    // SAFETY: the capture stage reads the slot just filled.
    unsafe { TAILS.tail_call(ctx, tail::CAPTURE) };
}

/// The per-CPU handoff slot, valid for this run and used by nothing else while it runs.
#[inline(always)]
fn handoff() -> Option<&'static mut Handoff> {
    // SAFETY: per-CPU slot; one program of this CPU uses it at a time (tail calls hand it on).
    HANDOFF.get_ptr_mut(0).map(|slot| unsafe { &mut *slot })
}

/// Stage 1, by source: denylist, allowlist, bans, budgets, fragments. Verified on its own, and
/// entered in one state whatever path the parser took (it reads the packet from map memory).
#[xdp]
pub(crate) fn sipguard_judge(ctx: XdpContext) -> u32 {
    let frame = XdpFrame::new(&ctx);
    let Some(handoff) = HANDOFF.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU slot, filled by the entry for this packet.
    let handoff = unsafe { &mut *handoff };
    let Some(view) = MapView::at(u32::from(handoff.generation)) else {
        return xdp_action::XDP_PASS;
    };
    let outcome = Outcome::from_code(handoff.outcome);
    if view.gate_shut() {
        view.set_gate_admits(sip::gate_admits_packet(
            &frame,
            &handoff.packet,
            view.unverified_methods(),
        ));
    }
    let verdict = decide_outcome(outcome, &handoff.packet, &view, handoff.class_hint);
    if outcome == Outcome::Ip {
        // Later fragments of every datagram, SIP or not, follow a dropped first fragment.
        remember_first_fragment(&handoff.packet, verdict, &view);
    }
    let drop = verdict.reason.is_drop();
    let monitored = drop && view.mode() == Mode::Monitor;
    let action = if drop && !monitored {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    };
    handoff.action = action;
    handoff.reason = verdict.reason as u8;
    handoff.zone = verdict.zone as u8;
    handoff.monitored = u8::from(monitored);
    if !drop && view.may_inspect(verdict.zone) {
        handoff.class = verdict.class;
        // The SIP stage counts the packet with its final verdict.
        // SAFETY: the SIP stage reads the handoff slot just filled.
        unsafe { TAILS.tail_call(&ctx, tail::SIP) };
        event_stat(event_stat::TAIL_CALL_FAILED);
    }
    count(
        counter_index(verdict.zone, verdict.reason, monitored),
        frame.byte_len(),
    );
    if drop {
        report_drop(&ctx, handoff, &view);
    } else if verdict.zone != Zone::None && capture::armed(false) {
        to_capture(&ctx, handoff, capture_then::RETURN);
    }
    action
}

/// Hands a packet with its final verdict to the capture stage.
#[inline(always)]
fn to_capture(ctx: &XdpContext, handoff: &mut Handoff, then: u8) {
    handoff.capture = then;
    // SAFETY: the capture stage reads the handoff slot just filled.
    unsafe { TAILS.tail_call(ctx, tail::CAPTURE) };
}

/// Spends the drop's share of the event budgets and, within them, hands it to the reporter.
#[inline(always)]
fn report_drop(ctx: &XdpContext, handoff: &mut Handoff, view: &MapView) {
    // Frames without an IP header share one event budget.
    let source = if handoff.outcome == Outcome::Ip.code() {
        source_key(&handoff.packet, view.ipv6_budget())
    } else {
        SourceKey::default()
    };
    let report = events::admit(&source, view);
    match report {
        Some(suppressed) => handoff.suppressed = suppressed,
        None => event_stat(event_stat::SUPPRESSED),
    }
    if capture::armed(true) {
        // The capture stage goes on to the reporter; a failed tail call falls through.
        let then = if report.is_some() {
            capture_then::REPORT
        } else {
            capture_then::RETURN
        };
        to_capture(ctx, handoff, then);
    }
    if report.is_some() {
        // The reporter returns the action itself; a failed tail call falls through.
        // SAFETY: the reporter reads the handoff slot just filled.
        unsafe { TAILS.tail_call(ctx, tail::REPORT) };
        event_stat(event_stat::LOST);
    }
}

/// Stage 2, SIP inspection of packets stage 1 admitted in a zone with SIP rules (`sip.rs`):
/// counts the method and spends the method budget; hands the packet to the headers stage when
/// signatures or the INVITE destination firewall need a look.
#[xdp]
pub(crate) fn sipguard_sip(ctx: XdpContext) -> u32 {
    sip_stage(&ctx, Some(tail::HEADERS), |frame, handoff, view| {
        sip::inspect_method(frame, handoff, view)
    })
}

/// Stage 3, the headers of a message stage 2 handed on: scanner signatures; an INVITE outside
/// a dialog goes on to the destination stage (`sip.rs`).
#[xdp]
pub(crate) fn sipguard_headers(ctx: XdpContext) -> u32 {
    sip_stage(&ctx, Some(tail::DESTINATION), |_, handoff, view| {
        sip::inspect_headers(&ctx, handoff, view)
    })
}

/// Stage 4, the INVITE destination firewall (`sip.rs`), for an INVITE the headers stage found
/// outside a dialog.
#[xdp]
pub(crate) fn sipguard_destination(ctx: XdpContext) -> u32 {
    sip_stage(&ctx, None, |_, handoff, view| {
        sip::inspect_destination(handoff, view)
    })
}

/// What every SIP stage does around its check: the handoff slot and the policy generation of
/// the packet; then the next stage (`next`, a `SG_TAILS` slot; `None` for the last stage), or
/// the packet counted with its final verdict and, for a drop, reported.
#[inline(always)]
fn sip_stage(
    ctx: &XdpContext,
    next: Option<u32>,
    inspect: impl FnOnce(&XdpFrame, &mut Handoff, &MapView) -> sip::Step,
) -> u32 {
    let frame = XdpFrame::new(ctx);
    let Some(handoff) = handoff() else {
        return xdp_action::XDP_PASS;
    };
    let Some(view) = MapView::at(u32::from(handoff.generation)) else {
        return handoff.action;
    };
    match inspect(&frame, handoff, &view) {
        sip::Step::Pass => {}
        sip::Step::Drop(reason) => return sip_drop(ctx, &frame, handoff, &view, reason),
        sip::Step::Next => {
            if let Some(next) = next {
                // SAFETY: the next stage reads the handoff slot (and the scratch) just filled.
                unsafe { TAILS.tail_call(ctx, next) };
                event_stat(event_stat::TAIL_CALL_FAILED);
            }
        }
    }
    count_final(&frame, handoff);
    if capture::armed(false) {
        to_capture(ctx, handoff, capture_then::RETURN);
    }
    handoff.action
}

/// A drop the SIP stages decided: the verdict into the slot, counted and reported.
#[inline(always)]
fn sip_drop(
    ctx: &XdpContext,
    frame: &XdpFrame,
    handoff: &mut Handoff,
    view: &MapView,
    reason: Reason,
) -> u32 {
    let monitored = view.mode() == Mode::Monitor;
    handoff.reason = reason as u8;
    handoff.monitored = u8::from(monitored);
    handoff.action = if monitored {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    };
    count_final(frame, handoff);
    report_drop(ctx, handoff, view);
    handoff.action
}

/// Counts the packet with the verdict in the slot.
#[inline(always)]
fn count_final(frame: &XdpFrame, handoff: &Handoff) {
    count(
        counter_index(
            Zone::from_u8(handoff.zone),
            Reason::from_u8(handoff.reason).unwrap_or(Reason::Malformed),
            handoff.monitored != 0,
        ),
        frame.byte_len(),
    );
}

/// Tail-called for the drops that got an event (verified on its own): writes the event from the
/// handoff slot, without parsing again, and returns the filter's action.
#[xdp]
pub(crate) fn sipguard_report(ctx: XdpContext) -> u32 {
    let Some(handoff) = HANDOFF.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let frame = XdpFrame::new(&ctx);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let ifindex = ctx.ingress_ifindex() as u32;
    events::report(ifindex, &frame, handoff, now);
    handoff.action
}

/// Tail-called for packets a capture may want (`capture.rs`): copies them, then reports the
/// drop (`Handoff::capture`) or returns the filter's action.
#[xdp]
pub(crate) fn sipguard_capture(ctx: XdpContext) -> u32 {
    let Some(handoff) = HANDOFF.get(0) else {
        return xdp_action::XDP_PASS;
    };
    capture::capture(&ctx, handoff);
    if handoff.capture == capture_then::REPORT {
        // SAFETY: the reporter reads the slot the previous stage filled.
        unsafe { TAILS.tail_call(&ctx, tail::REPORT) };
        event_stat(event_stat::LOST);
    }
    handoff.action
}

/// The TC egress entry, attached next to the XDP entry: learns from the SBC's answers to
/// access-zone clients (`answer.rs`); every packet passes. Minimum kernel for attaching it:
/// 6.6 (tcx links).
#[classifier]
pub(crate) fn sipguard_egress(ctx: TcContext) -> i32 {
    answer::egress(&ctx)
}

/// The egress stage that reads an answer's headers (CSeq, Expires).
#[classifier]
pub(crate) fn sipguard_answer(ctx: TcContext) -> i32 {
    answer::answer(&ctx)
}

/// The egress stage that acts on an answer: auth failures and verified sources.
#[classifier]
pub(crate) fn sipguard_feedback(ctx: TcContext) -> i32 {
    answer::feedback(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
