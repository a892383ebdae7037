//! Stage 2, the SIP stage: inspects the SIP message of a packet stage 1 admitted in a zone with
//! SIP rules. In this order, each step only when the policy asks for it:
//!
//! ```text
//!  method (first bytes) ---- counted; a request over its class's method budget: dropped
//!  copy of the first 2 KiB -- only for signatures or an INVITE's destination
//!  header scan ------------- User-Agent / From display name against the signatures: dropped
//!  INVITE Request-URI ------ normalised number -> longest destination prefix: allow, deny, budget
//! ```
//!
//! UDP datagrams and TCP segments that begin a SIP message are read; a TCP segment that
//! continues one is not SIP at its start and passes as unknown. TLS is encrypted: not read.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_loop, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use sipguard_common::{
    abi::{
        CLASS_ID_MASK, DestData, DestRule, Handoff, NOT_ALLOWLISTED_FLAG, PacketMeta, Reason,
        SIP_SCAN_BYTES, SignatureData, SipMethod, SipZone, SourceKey, VERIFIED_FLAG, Zone,
        dest_action, dest_stat_index, dest_verdict, meta_l4, method_budget_slot, method_index,
        signature_field, sip_zone_flags,
    },
    dial::{Dialled, Number, dialled},
    sip::{
        Headers, MESSAGE_TAIL, METHOD_BYTES, Message, MessageBuffer, SCAN_STEPS, Scan,
        destination_key, leading_line_ends, scan_step, signature_key, sip_method,
    },
    verdict::{gate_admits, source_key},
};

use crate::{
    frame::XdpFrame,
    maps::{DESTINATION_STATS, METHODS, RULE_HITS, SIGNATURE_HITS, SIP_BUFFER, SipScratch, bump},
    view::MapView,
};

/// Where an INVITE's Request-URI starts (after `INVITE `).
const INVITE_URI: usize = 7;

/// Line ends a stream may carry before a start line that are skipped (RFC 3261 7.5).
const MAX_LEADING_LINE_ENDS: usize = 32;

/// The method of the packet's SIP message (UDP datagram or TCP segment starting one), `Unknown`
/// when there is no payload to read. Line ends before the start line are skipped, and the
/// handoff's payload offset moved past them, so that the later stages read the start line.
#[inline(always)]
fn method(frame: &XdpFrame, handoff: &mut Handoff) -> SipMethod {
    let packet = &mut handoff.packet;
    if !matches!(packet.l4, meta_l4::UDP | meta_l4::TCP) || packet.payload == 0 {
        return SipMethod::Unknown;
    }
    let mut skip = 0;
    for _ in 0..MAX_LEADING_LINE_ENDS / 8 {
        let Some(word) = frame.load_handed::<8>(packet.payload + skip as u16) else {
            break;
        };
        let line_ends = leading_line_ends(u64::from_le_bytes(word));
        skip += line_ends;
        if line_ends < 8 {
            break;
        }
    }
    packet.payload += skip as u16;
    match frame.load_handed::<METHOD_BYTES>(packet.payload) {
        Some(start) => sip_method(&start),
        None => SipMethod::Unknown,
    }
}

/// Whether the shut access gate admits this packet from an unverified source
/// ([`gate_admits`]), by the method at the start of its payload.
#[inline(always)]
pub(crate) fn gate_admits_packet(frame: &XdpFrame, packet: &PacketMeta, allowed: u16) -> bool {
    let transport = matches!(packet.l4, meta_l4::UDP | meta_l4::TCP);
    let has_payload =
        transport && packet.payload != 0 && frame.load_handed::<1>(packet.payload).is_some();
    let method = match frame.load_handed::<METHOD_BYTES>(packet.payload) {
        Some(start) if has_payload => sip_method(&start),
        _ => SipMethod::Unknown,
    };
    gate_admits(packet.l4, has_payload, method, allowed)
}

/// What a SIP stage decided.
pub(crate) enum Step {
    /// Admitted; nothing more to look at.
    Pass,
    /// Dropped for this reason (`handoff.rule` says by what).
    Drop(Reason),
    /// The next stage must look at it: the headers (signatures, an INVITE's destination) after
    /// the method stage, the destination after the headers.
    Next,
}

/// The SIP stage: counts the method, spends the method budget, and says whether the headers
/// need a look.
#[inline(always)]
pub(crate) fn inspect_method(frame: &XdpFrame, handoff: &mut Handoff, view: &MapView) -> Step {
    let zone = Zone::from_u8(handoff.zone);
    let method = method(frame, handoff);
    handoff.method = method as u8;
    bump(&METHODS, method_index(zone, method));
    if !matches!(zone, Zone::Trunk | Zone::Access) {
        return Step::Pass;
    }
    let Some(slot) = method_budget_slot(method) else {
        return Step::Pass;
    };
    let listed = handoff.class & NOT_ALLOWLISTED_FLAG == 0;
    // A verified source is budgeted by the verified class and never collects strikes.
    let verified = !listed && handoff.class & VERIFIED_FLAG != 0;
    let class = if listed {
        handoff.class
    } else if verified {
        handoff.class & CLASS_ID_MASK
    } else {
        view.header().access_class
    };
    let budget = view.method_budget(class, slot);
    if !budget.is_unlimited() {
        let source = source_key(&handoff.packet, view.ipv6_budget());
        if !view.spend_sip(&source, slot, budget) {
            if !listed && !verified && zone == Zone::Access {
                view.strike_unknown(&source);
            }
            handoff.rule = 0;
            return Step::Drop(Reason::MethodRateLimited);
        }
    }
    let rules = view.sip_zone(zone);
    let signatures = scans_signatures(rules, listed);
    let destinations =
        method == SipMethod::Invite && rules.flags & sip_zone_flags::DESTINATIONS != 0;
    if !signatures && !destinations {
        return Step::Pass;
    }
    let Some(scratch) = SIP_BUFFER.get_ptr_mut(0) else {
        return Step::Pass;
    };
    // SAFETY: per-CPU scratch, unshared during this run; the headers stage starts from it.
    unsafe { (*scratch).scan = Scan::new(signatures, destinations) };
    Step::Next
}

#[inline(always)]
fn scans_signatures(rules: &SipZone, listed: bool) -> bool {
    rules.flags & sip_zone_flags::SCANNERS != 0
        && (!listed || rules.flags & sip_zone_flags::SCANNERS_ALLOWLISTED != 0)
}

/// The headers stage: copies the message, scans its headers, matches the signatures; `Next`
/// when the destination stage must judge the INVITE.
#[inline(always)]
pub(crate) fn inspect_headers(ctx: &XdpContext, handoff: &mut Handoff, view: &MapView) -> Step {
    let Some(scratch) = SIP_BUFFER.get_ptr_mut(0) else {
        return Step::Pass;
    };
    // The scan first, before any branch on the policy: the verifier checks `bpf_loop`'s
    // callback once for every state it arrives in. Stage 2 said what to look for.
    // SAFETY: per-CPU scratch; nothing else uses it during this run.
    let Some(len) = copy_message(ctx, handoff.packet.payload, unsafe {
        &raw mut (*scratch).bytes.0
    }) else {
        return Step::Pass;
    };
    // SAFETY: as above.
    let scan = unsafe { scan(scratch, len) };
    let headers = scan.found;
    // SAFETY: as above, just filled.
    let message = unsafe { scratch_message(scratch) };
    if scan.want_signatures
        // SAFETY: the scratch's key slot, as above.
        && let Some(id) = match_signature(view, &message, &headers, unsafe {
            &mut (*scratch).signature_key
        })
    {
        bump(&SIGNATURE_HITS, u32::from(id));
        let listed = handoff.class & NOT_ALLOWLISTED_FLAG == 0;
        let rules = view.sip_zone(Zone::from_u8(handoff.zone));
        if !listed && rules.flags & sip_zone_flags::SCANNER_BANS != 0 {
            view.ban_scanner(&source_key(&handoff.packet, view.ipv6_budget()));
        }
        handoff.rule = id;
        return Step::Drop(Reason::Scanner);
    }
    // Requests inside a dialog (a To tag) were judged when it was set up.
    if scan.want_to_tag && !headers.to_tag {
        return Step::Next;
    }
    Step::Pass
}

/// The destination stage: the INVITE's number, from the message the headers stage copied.
#[inline(always)]
pub(crate) fn inspect_destination(handoff: &mut Handoff, view: &MapView) -> Step {
    let Some(scratch) = SIP_BUFFER.get_ptr_mut(0) else {
        return Step::Pass;
    };
    let zone = Zone::from_u8(handoff.zone);
    let rules = view.sip_zone(zone);
    // SAFETY: per-CPU scratch, filled by the headers stage of this run.
    let (message, key) = unsafe { (scratch_message(scratch), &mut (*scratch).destination_key) };
    let source = source_key(&handoff.packet, view.ipv6_budget());
    match judge_destination(handoff, view, rules, zone, &message, &source, key) {
        Some(reason) => Step::Drop(reason),
        None => Step::Pass,
    }
}

/// The message the headers stage copied into the scratch.
///
/// # Safety
/// `scratch` is this CPU's scratch, filled during this run.
#[inline(always)]
unsafe fn scratch_message(scratch: *mut SipScratch) -> Message<'static> {
    // SAFETY: the caller's.
    unsafe { copied_message(&raw const (*scratch).bytes, &raw const (*scratch).len) }
}

/// A message copied into a per-CPU buffer (`bytes`) of `*len` bytes (the SIP stages', the
/// egress answer stage's).
///
/// # Safety
/// Both point into this CPU's scratch, filled during this run.
#[inline(always)]
pub(crate) unsafe fn copied_message(
    bytes: *const MessageBuffer,
    len: *const usize,
) -> Message<'static> {
    // SAFETY: the caller's; the length is read back from memory, so it is bounded again.
    unsafe {
        let len = *len;
        Message {
            bytes: &*bytes,
            len: if len > SIP_SCAN_BYTES {
                SIP_SCAN_BYTES
            } else {
                len
            },
        }
    }
}

/// One step of the header scan, as `bpf_loop` calls it: the scan's state and the message
/// live in the per-CPU scratch, so the verifier checks this function once, whatever the
/// message.
#[inline(never)]
extern "C" fn scan_callback(_index: u64, _context: *mut c_void) -> i64 {
    let Some(scratch) = SIP_BUFFER.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: per-CPU scratch, filled by the headers stage of this run.
    unsafe {
        let message = scratch_message(scratch);
        if scan_step(&message, &mut (*scratch).scan) {
            0
        } else {
            1
        }
    }
}

/// Runs the header scan through `bpf_loop` (one verified step, called up to
/// [`SCAN_STEPS`] times).
///
/// # Safety
/// `scratch` is this CPU's scratch, with the message copied in (`len` bytes) and the scan
/// set up by stage 2.
#[inline(always)]
unsafe fn scan(scratch: *mut SipScratch, len: usize) -> Scan {
    // SAFETY: the caller's.
    unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).len, len);
        bpf_loop(
            SCAN_STEPS as u32,
            scan_callback as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        let mut scan = core::ptr::read_volatile(&raw const (*scratch).scan);
        // Read back from memory, the offsets are unknown to the verifier: bound them again.
        scan.found.user_agent &= SIP_SCAN_BYTES - 1;
        scan.found.from &= SIP_SCAN_BYTES - 1;
        scan
    }
}

/// Copies the message (at most the scan bound) into the per-CPU buffer; its length.
#[inline(always)]
fn copy_message(
    ctx: &XdpContext,
    payload: u16,
    buffer: *mut [u8; sipguard_common::abi::SIP_BUFFER_BYTES],
) -> Option<usize> {
    // SAFETY: helper reading the context.
    let total = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    let offset = usize::from(payload);
    let len = copy_length(total, offset)?;
    // SAFETY: `buffer` holds SIP_BUFFER_BYTES >= len bytes; the helper checks the packet side.
    let copied = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, buffer.cast(), len as u32) };
    if copied != 0 {
        return None;
    }
    // SAFETY: len <= SIP_SCAN_BYTES, and the buffer has 256 bytes beyond.
    unsafe { zero_tail(buffer, len) };
    Some(len)
}

/// How many bytes of a message at `offset` of a `total`-byte packet to copy: at most the scan
/// bound, `None` when there are none.
#[inline(always)]
pub(crate) fn copy_length(total: usize, offset: usize) -> Option<usize> {
    let available = total.checked_sub(offset)?;
    let len = if available > SIP_SCAN_BYTES {
        SIP_SCAN_BYTES
    } else {
        available
    };
    // The verifier needs a length it can bound from below as well: read it back volatile so
    // LLVM keeps the check.
    // SAFETY: a local.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len == 0 || len > SIP_SCAN_BYTES {
        return None;
    }
    Some(len)
}

/// The scans read words without checking the length: zeroes what follows the message's
/// `len` bytes in `buffer`.
///
/// # Safety
/// `len` <= SIP_SCAN_BYTES and `buffer` is a message buffer.
#[inline(always)]
pub(crate) unsafe fn zero_tail(
    buffer: *mut [u8; sipguard_common::abi::SIP_BUFFER_BYTES],
    len: usize,
) {
    // SAFETY: the caller's.
    unsafe {
        let tail = buffer.cast::<u8>().add(len & !7).cast::<u64>();
        // From the word holding the end: keep the message's last bytes.
        let keep = (len & 7) * 8;
        let first = core::ptr::read_volatile(tail);
        let first = if keep == 0 {
            0
        } else {
            first & ((1u64 << keep) - 1)
        };
        core::ptr::write_volatile(tail, first);
        for word in 1..=MESSAGE_TAIL / 8 {
            // Volatile: LLVM would make a memset call of it, a loop the verifier walks.
            core::ptr::write_volatile(tail.add(word), 0);
        }
    }
}

/// The id of the longest signature the User-Agent (or the From display name) starts with.
#[inline(always)]
fn match_signature(
    view: &MapView,
    message: &Message,
    headers: &Headers,
    key: &mut Key<SignatureData>,
) -> Option<u16> {
    if headers.user_agent != 0
        && let Some(bits) = signature_key(
            message,
            headers.user_agent,
            signature_field::USER_AGENT,
            &mut key.data,
        )
    {
        key.prefix_len = bits;
        if let Some(id) = view.signature(key) {
            return Some(id);
        }
    }
    if headers.from != 0
        && let Some(bits) = signature_key(
            message,
            headers.from,
            signature_field::FROM_DISPLAY_NAME,
            &mut key.data,
        )
    {
        key.prefix_len = bits;
        if let Some(id) = view.signature(key) {
            return Some(id);
        }
    }
    None
}

/// The destination firewall: the INVITE's number, normalised with the zone's dial plan, is
/// judged by the rule of its longest prefix (or the zone's default).
#[inline(always)]
fn judge_destination(
    handoff: &mut Handoff,
    view: &MapView,
    rules: &SipZone,
    zone: Zone,
    message: &Message,
    source: &SourceKey,
    key: &mut Key<DestData>,
) -> Option<Reason> {
    let (rule, unparseable): (DestRule, bool) = match dialled(message, INVITE_URI, &rules.dial_plan)
    {
        Dialled::Number(number) => {
            handoff.number = number;
            key.prefix_len = destination_key(zone as u8, &number, &mut key.data);
            (view.destination(key).unwrap_or(rules.default), false)
        }
        Dialled::Unparseable => {
            handoff.number = Number::default();
            (rules.unparseable, true)
        }
    };
    bump(&RULE_HITS, u32::from(rule.rule));
    let (verdict, reason) = match rule.action {
        dest_action::DENY if unparseable => (
            dest_verdict::UNPARSEABLE,
            Some(Reason::DestinationUnparseable),
        ),
        dest_action::DENY => (dest_verdict::DENIED, Some(Reason::DestinationDenied)),
        dest_action::BUDGET => {
            let budget = view.dest_budget(rule.budget);
            let slot = sipguard_common::abi::METHOD_BUDGET_SLOTS + usize::from(rule.budget);
            if view.spend_sip(source, slot, budget) {
                (dest_verdict::ALLOWED, None)
            } else {
                (
                    dest_verdict::RATE_LIMITED,
                    Some(Reason::DestinationRateLimited),
                )
            }
        }
        _ if unparseable => (dest_verdict::UNPARSEABLE, None),
        _ => (dest_verdict::ALLOWED, None),
    };
    bump(
        &DESTINATION_STATS,
        dest_stat_index(zone, verdict, rule.country),
    );
    handoff.rule = rule.rule;
    reason
}
