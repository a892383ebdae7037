//! The egress side: what the SBC answers its access-zone clients (`sipguard_common::feedback`
//! says what each answer means).
//!
//! ```text
//!  sipguard_egress (TC egress, every packet the host sends)
//!     feedback off in the policy ........... pass (one array lookup)
//!     not from an access-zone port, not a response, a status of no interest ... pass
//!     | 1xx-3xx, 401, 403, 407: the packet into SG_TCSCRATCH, tail call
//!  sipguard_answer
//!     copy of the first 2 KiB, header scan (bpf_loop): CSeq method, Expires
//!     challenge / refusal ..... SG_AUTH: failures by compare-and-swap -> ban (auth_failures)
//!     accepted ................ SG_AUTH: exchange closed (2xx: failures cleared);
//!                               2xx to REGISTER: SG_VERIFIED for its Expires (0: removed)
//! ```
//!
//! Every packet passes: the egress program only learns. UDP datagrams and TCP segments that
//! begin a response are read; TLS is encrypted (the SBC reports those failures itself through
//! `sipguard strike`).

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK},
    cty::c_void,
    helpers::{bpf_loop, bpf_skb_load_bytes},
    programs::TcContext,
};
use sipguard_common::{
    abi::{
        AuthState, DropEvent, PacketMeta, Reason, SIP_BUFFER_BYTES, SipMethod, SourceKey,
        VerifiedSource, Zone, answer_stat, ban_flags, egress_tail, feedback_flags, meta_l4,
    },
    answer::{ANSWER_STEPS, AnswerScan, STATUS_BYTES, answer_step, status_code},
    dial::Number,
    feedback::{
        AnswerKind, auth_ban, challenge_fails, classify, count_failure, verified_lifetime_ns,
    },
    parse::{Parsed, Transport, parse, parse_quick},
    sip::Message,
    source::source_key,
    verdict::{NOT_ALLOWLISTED, PolicyView},
};

use crate::{
    frame::XdpFrame,
    maps::{
        ANSWER_SCRATCH, ANSWER_STATS, AUTH, AnswerScratch, EGRESS_TAILS, EVENTS, VERIFIED, bump,
        event_stat,
    },
    sip::{copied_message, copy_length, zero_tail},
    view::{MapView, mark_verified},
};

const PASS: i32 = TC_ACT_OK;

/// The egress entry: hands a response of interest from an access-zone port to the answer
/// stage. Verified on its own (the parser's paths end at the tail call).
#[inline(always)]
pub(crate) fn egress(ctx: &TcContext) -> i32 {
    let Some(view) = MapView::active() else {
        return PASS;
    };
    if view.feedback().flags == 0 {
        return PASS;
    }
    let frame = XdpFrame::of_skb(ctx);
    let packet = match parse_quick(&frame) {
        Some(quick) => quick.meta(),
        None => match parse(&frame) {
            Parsed::Ip(packet) => packet.meta(),
            _ => return PASS,
        },
    };
    let transport = match packet.l4 {
        meta_l4::UDP => Transport::Udp,
        meta_l4::TCP => Transport::Tcp,
        _ => return PASS,
    };
    // The SBC answers from its own SIP port: the client is the destination.
    if packet.payload == 0 || view.zone(transport, packet.sport) != Zone::Access {
        return PASS;
    }
    let Some(start) = frame.load_handed::<STATUS_BYTES>(packet.payload) else {
        return PASS;
    };
    let Some(status) = status_code(&start) else {
        return PASS;
    };
    if !matches!(status, 100..=399 | 401 | 403 | 407) {
        return PASS;
    }
    let Some(scratch) = ANSWER_SCRATCH.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: per-CPU scratch; the answer stage of this run reads it.
    unsafe {
        core::ptr::write_volatile(&raw mut (*scratch).packet, packet);
        (*scratch).status = status;
        (*scratch).generation = view.generation();
        EGRESS_TAILS.tail_call(ctx, egress_tail::ANSWER);
    }
    bump(&ANSWER_STATS, answer_stat::TAIL_CALL_FAILED);
    PASS
}

/// The answer stage: reads the answer's CSeq (and Expires) into the scratch and hands it to
/// the feedback stage. Verified on its own: the copy and the scan's `bpf_loop` share the
/// stack with their callback, and the map work after them has many paths.
#[inline(always)]
pub(crate) fn answer(ctx: &TcContext) -> i32 {
    let Some(scratch) = ANSWER_SCRATCH.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: per-CPU scratch filled by the egress entry of this run.
    let (payload, status) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*scratch).packet.payload),
            core::ptr::read_volatile(&raw const (*scratch).status),
        )
    };
    // SAFETY: as above.
    let Some(len) = copy_answer(ctx, payload, unsafe { &raw mut (*scratch).bytes.0 }) else {
        return PASS;
    };
    let want_expires = (200..300).contains(&status);
    // SAFETY: as above; the scan's state lives in the scratch (see `scan_callback`).
    let method = unsafe {
        (*scratch).len = len;
        core::ptr::write_volatile(&raw mut (*scratch).scan, AnswerScan::new(want_expires));
        bpf_loop(
            ANSWER_STEPS as u32,
            scan_callback as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        core::ptr::read_volatile(&raw const (*scratch).scan.found.cseq_method)
    };
    if method == SipMethod::Unknown as u8 {
        // An answer of interest without a readable CSeq never counts for anything.
        bump(&ANSWER_STATS, answer_stat::MALFORMED);
        return PASS;
    }
    // SAFETY: the feedback stage reads the scratch just filled.
    unsafe { EGRESS_TAILS.tail_call(ctx, egress_tail::FEEDBACK) };
    bump(&ANSWER_STATS, answer_stat::TAIL_CALL_FAILED);
    PASS
}

/// The feedback stage: what the answer means for its client (`sipguard_common::feedback`),
/// from what the answer stage left in the scratch.
#[inline(always)]
pub(crate) fn feedback(ctx: &TcContext) -> i32 {
    let Some(scratch) = ANSWER_SCRATCH.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: per-CPU scratch filled by the earlier stages of this run; read in place.
    let (packet, status, generation, found) = unsafe {
        (
            &(*scratch).packet,
            core::ptr::read_volatile(&raw const (*scratch).status),
            core::ptr::read_volatile(&raw const (*scratch).generation),
            core::ptr::read_volatile(&raw const (*scratch).scan.found),
        )
    };
    let Some(view) = MapView::at(u32::from(generation)) else {
        return PASS;
    };
    let method = SipMethod::from_u8(found.cseq_method);
    let kind = classify(status, method);
    let feedback = view.feedback();
    // Challenges and refusals share one path (one allowlist lookup, one state lookup: every
    // call site of those is verified on its own), accepted answers the other.
    let (exchange, failure_possible) = match kind {
        AnswerKind::Other => return PASS,
        AnswerKind::Challenge { exchange } => {
            bump(&ANSWER_STATS, answer_stat::CHALLENGES);
            (exchange, true)
        }
        AnswerKind::Refusal => {
            bump(&ANSWER_STATS, answer_stat::REFUSALS);
            (0, true)
        }
        AnswerKind::Accepted { exchange, .. } => {
            bump(&ANSWER_STATS, answer_stat::SUCCESSES);
            (exchange, false)
        }
    };
    let client = source_key(packet.family, &packet.dst, view.ipv6_budget());
    if failure_possible {
        // Allowlisted clients are never banned automatically (as in the judge).
        if feedback.flags & feedback_flags::AUTH_FAILURES == 0
            || view.allow_class(packet.family(), &packet.dst) != NOT_ALLOWLISTED
        {
            return PASS;
        }
        let Some(state) = auth_state(&client) else {
            return PASS;
        };
        let now = view.now();
        if let AnswerKind::Challenge { .. } = kind {
            // The first challenge opens the exchange; losing that race to another CPU means
            // another challenge is open.
            // SAFETY: an aligned u64 of a map value valid for this run.
            let (seen, opened) = unsafe {
                atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                    open_slot(state, exchange),
                    0,
                    now,
                )
            };
            if opened || !challenge_fails(seen, now, grace(&view, &client, now)) {
                return PASS;
            }
        }
        fail(ctx, &view, state, &client, packet, method, now);
        return PASS;
    }
    let AnswerKind::Accepted {
        clears, registered, ..
    } = kind
    else {
        return PASS;
    };
    if let Some(state) = AUTH.get_ptr_mut(client) {
        // SAFETY: map value valid for this run.
        unsafe {
            core::ptr::write_volatile(open_slot(state, exchange), 0);
            if clears {
                core::ptr::write_volatile(&raw mut (*state).failures_window, 0);
            }
        }
    }
    if registered && feedback.flags & feedback_flags::VERIFIED != 0 {
        verify(&view, &client, found.expires_seen, found.expires);
    }
    PASS
}

/// Where the open exchange of `exchange` is recorded. A branch, not an index: LLVM drops a mask
/// it believes redundant, and the verifier then sees an unbounded offset.
#[inline(always)]
fn open_slot(state: *mut AuthState, exchange: usize) -> *mut u64 {
    // SAFETY: `state` is a map value valid for this run.
    unsafe {
        if exchange == sipguard_common::feedback::EXCHANGE_INVITE {
            &raw mut (*state).open_since_ns[1]
        } else {
            &raw mut (*state).open_since_ns[0]
        }
    }
}

/// A verified client's grace for challenges (offices behind one address); none for others.
#[inline(always)]
fn grace(view: &MapView, client: &SourceKey, now: u64) -> u64 {
    let grace = view.feedback().grace_ns;
    if grace == 0 {
        return 0;
    }
    match VERIFIED.get_ptr_mut(client) {
        // SAFETY: map value valid for this run. A lapsed registration gives no grace, as it
        // gives no verified budget in the judge.
        Some(entry)
            if unsafe { core::ptr::read_volatile(&raw const (*entry).expires_at_ns) } > now =>
        {
            grace
        }
        _ => 0,
    }
}

/// The client's auth state, created when missing.
#[inline(always)]
fn auth_state(client: &SourceKey) -> Option<*mut AuthState> {
    if let Some(state) = AUTH.get_ptr_mut(client) {
        return Some(state);
    }
    // Another CPU may create it meanwhile: then that one is used.
    let _ = AUTH.insert(client, AuthState::default(), u64::from(BPF_NOEXIST));
    AUTH.get_ptr_mut(client)
}

/// One auth failure of the client: counted exactly (compare-and-swap), and a ban when it
/// completes the threshold.
#[inline(always)]
fn fail(
    ctx: &TcContext,
    view: &MapView,
    state: *mut AuthState,
    client: &SourceKey,
    packet: &PacketMeta,
    method: SipMethod,
    now: u64,
) {
    bump(&ANSWER_STATS, answer_stat::FAILURES);
    let rule = &view.feedback().auth;
    // SAFETY: map value valid for this run; the word is an aligned u64.
    let word = unsafe { &raw mut (*state).failures_window };
    let mut banned = None;
    // Two CPUs answering the same client at once lose a race to each other at most a few
    // times in a row.
    for _ in 0..8 {
        // SAFETY: as above.
        let seen = unsafe { core::ptr::read_volatile(word) };
        let (next, ban) = count_failure(seen, rule, now);
        // SAFETY: as above.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                word, seen, next,
            )
        };
        if swapped {
            banned = ban;
            break;
        }
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(&raw mut (*state).last_failure_ns, now) };
    let Some(failures) = banned else {
        return;
    };
    let ban = auth_ban(rule, now, view.mode(), failures);
    view.store_ban(client, ban);
    bump(&ANSWER_STATS, answer_stat::BANS);
    report_ban(
        ctx,
        packet,
        method,
        now,
        ban.flags & ban_flags::WOULD_BE != 0,
    );
}

/// A 200 OK to REGISTER: the client is verified for the registration's lifetime (or no longer,
/// for expires 0).
#[inline(always)]
fn verify(view: &MapView, client: &SourceKey, expires_seen: bool, expires: u32) {
    let feedback = view.feedback();
    let Some(lifetime) = verified_lifetime_ns(expires_seen, expires, feedback) else {
        if VERIFIED.remove(client).is_ok() {
            bump(&ANSWER_STATS, answer_stat::UNVERIFICATIONS);
        }
        return;
    };
    bump(&ANSWER_STATS, answer_stat::VERIFICATIONS);
    // The filter bit first: the judge looks for the entry only where it is set.
    mark_verified(client);
    let now = view.now();
    let expires_at = now.saturating_add(lifetime);
    if let Some(entry) = VERIFIED.get_ptr_mut(client) {
        // SAFETY: map value valid for this run; the TAT is left to the judge.
        unsafe {
            if core::ptr::read_volatile(&raw const (*entry).expires_at_ns) <= now {
                (*entry).verified_at_ns = now;
            }
            (*entry).refreshed_at_ns = now;
            core::ptr::write_volatile(&raw mut (*entry).expires_at_ns, expires_at);
            atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(
                &raw mut (*entry).registrations,
                1,
            );
        }
        return;
    }
    let fresh = VerifiedSource {
        tat_ns: 0,
        verified_at_ns: now,
        refreshed_at_ns: now,
        expires_at_ns: expires_at,
        registrations: 1,
        class: feedback.verified_class,
        _reserved: 0,
    };
    if let Err(error) = VERIFIED.insert(client, fresh, u64::from(BPF_NOEXIST)) {
        const EEXIST: i32 = 17;
        if error != -EEXIST {
            bump(&ANSWER_STATS, answer_stat::INSERT_FAILED_VERIFIED);
        }
    }
}

/// The event of an auth-failure ban: the client as its source, the SBC as its destination.
#[inline(always)]
fn report_ban(ctx: &TcContext, packet: &PacketMeta, method: SipMethod, now: u64, would_be: bool) {
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        event_stat(sipguard_common::abi::event_stat::LOST);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of the right size, written field by field.
    unsafe {
        (*event).time_ns = now;
        (*event).src = packet.dst;
        (*event).dst = packet.src;
        // SAFETY: reading the context.
        (*event).ifindex = (*ctx.skb.skb).ifindex;
        (*event).packet_len = ctx.len();
        (*event).suppressed = 0;
        (*event).sport = packet.dport;
        (*event).dport = packet.sport;
        (*event).vlan = packet.vlan;
        (*event).family = packet.family;
        (*event).l4_proto = if packet.l4 == meta_l4::TCP { 6 } else { 17 };
        (*event).reason = Reason::AuthFailures as u8;
        (*event).zone = Zone::Access as u8;
        (*event).monitored = u8::from(would_be);
        (*event).method = method as u8;
        (*event)._reserved = [0; 2];
        (*event).rule = 0;
        (*event)._reserved2 = [0; 2];
        (*event).number = Number::default();
        (*event)._reserved3 = [0; 7];
    }
    entry.submit(0);
    event_stat(sipguard_common::abi::event_stat::EMITTED);
}

/// One step of the answer's header scan, as `bpf_loop` calls it (state in the scratch: the
/// verifier checks this function once).
#[inline(never)]
extern "C" fn scan_callback(_index: u64, _context: *mut c_void) -> i64 {
    let Some(scratch) = ANSWER_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: per-CPU scratch, filled by the answer stage of this run.
    unsafe {
        let message = scratch_message(scratch);
        if answer_step(&message, &mut (*scratch).scan) {
            0
        } else {
            1
        }
    }
}

/// The message the answer stage copied into the scratch.
///
/// # Safety
/// `scratch` is this CPU's scratch, filled during this run.
#[inline(always)]
unsafe fn scratch_message(scratch: *mut AnswerScratch) -> Message<'static> {
    // SAFETY: the caller's.
    unsafe { copied_message(&raw const (*scratch).bytes, &raw const (*scratch).len) }
}

/// Copies the answer (at most the scan bound) into the per-CPU buffer; its length.
#[inline(always)]
fn copy_answer(
    ctx: &TcContext,
    payload: u16,
    buffer: *mut [u8; SIP_BUFFER_BYTES],
) -> Option<usize> {
    let offset = usize::from(payload);
    let len = copy_length(ctx.len() as usize, offset)?;
    // SAFETY: `buffer` holds SIP_BUFFER_BYTES >= len bytes; the helper checks the packet side.
    let copied = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            offset as u32,
            buffer.cast(),
            len as u32,
        )
    };
    if copied != 0 {
        return None;
    }
    // SAFETY: len <= SIP_SCAN_BYTES.
    unsafe { zero_tail(buffer, len) };
    Some(len)
}
