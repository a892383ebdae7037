//! Evidence capture (`sipguard capture`, the rolling ring of `sipguard run`).
//!
//! Cost while no capture runs: the places where a SIP packet's verdict becomes final (the
//! entry's trunk flood drop and allowlisted pass, the judge, the SIP stages) read the two
//! control slots ([`armed`]: inlined array lookups, no helper call) and go on as before. Packets
//! that are not SIP never reach those places. While a capture is on, matching verdicts are
//! tail-called to the capture stage, which checks the slot's filter and budget and copies.
//!
//! Copying: `bpf_xdp_load_bytes` into a per-CPU record, then `bpf_ringbuf_output` with the
//! record's length. A ring buffer rather than `bpf_xdp_output` into a perf event array (as
//! xdpcap does): one stream ordered across CPUs that the controller drains like the drop events
//! (one epoll-able fd, no per-CPU buffers to open and merge), variable-length records (no space
//! wasted on short SIP packets), and a full ring is the helper's error, counted here.
//! `bpf_xdp_load_bytes` reads multi-buffer frames too; the copy costs a second memcpy of at
//! most the snap length, paid only by copied packets, within the capture's own budget.

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    maps::RingBuf,
    programs::XdpContext,
};
use sipguard_common::{
    abi::{
        CAPTURE_SNAP_MAX, CaptureHeader, Handoff, Reason, Zone, capture_flags, capture_outcome,
        capture_slot, capture_stat, handoff_outcome,
    },
    capture::{Judged, copy_length, spend, wants},
    dial::Number,
};

use crate::maps::{CAPTURE_BUFFER, CAPTURE_CONTROL, CAPTURE_LIVE, CAPTURE_ROLLING, CAPTURE_STATS};

/// Whether a capture slot is on for drops (`drop`) or passed packets: the hook sites' only cost
/// while no capture runs. An expired slot still reads as on until the capture stage clears it.
#[inline(always)]
pub(crate) fn armed(drop: bool) -> bool {
    let flag = if drop {
        capture_flags::DROPS
    } else {
        capture_flags::INCLUDE_PASSED
    };
    armed_slot(capture_slot::LIVE, flag) || armed_slot(capture_slot::ROLLING, flag)
}

#[inline(always)]
fn armed_slot(slot: u32, flag: u32) -> bool {
    match CAPTURE_CONTROL.get(slot) {
        Some(control) => control.expires_ns != 0 && control.flags & flag != 0,
        None => false,
    }
}

/// The capture stage: copies the packet for every slot that wants it.
#[inline(always)]
pub(crate) fn capture(ctx: &XdpContext, handoff: &Handoff) {
    let Some(reason) = Reason::from_u8(handoff.reason) else {
        return;
    };
    let packet = (handoff.outcome == handoff_outcome::IP).then_some(&handoff.packet);
    let judged = Judged {
        reason,
        zone: Zone::from_u8(handoff.zone),
        packet,
    };
    // SAFETY: helpers without pointer arguments.
    let (now, total) = unsafe { (bpf_ktime_get_boot_ns(), bpf_xdp_get_buff_len(ctx.ctx)) };
    copy_for(
        ctx,
        capture_slot::LIVE,
        &CAPTURE_LIVE,
        &judged,
        handoff,
        now,
        total,
    );
    copy_for(
        ctx,
        capture_slot::ROLLING,
        &CAPTURE_ROLLING,
        &judged,
        handoff,
        now,
        total,
    );
}

#[inline(always)]
fn stat(slot: u32, which: u32) -> Option<*mut u64> {
    CAPTURE_STATS.get_ptr_mut(slot * capture_stat::STRIDE + which)
}

#[inline(always)]
fn add(slot: u32, which: u32, value: u64) {
    if let Some(counter) = stat(slot, which) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe { *counter += value };
    }
}

#[inline(always)]
fn copy_for(
    ctx: &XdpContext,
    slot: u32,
    ring: &RingBuf,
    judged: &Judged,
    handoff: &Handoff,
    now: u64,
    total: u64,
) {
    let Some(control) = CAPTURE_CONTROL.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a map value valid for this run; the controller rewrites it whole.
    let control = unsafe { &mut *control };
    if control.expires_ns != 0 && control.expires_ns <= now {
        // Its owner stopped renewing it (killed): off, so the hook sites stop tail-calling.
        // SAFETY: an aligned u64 of the map value.
        unsafe { core::ptr::write_volatile(&raw mut control.expires_ns, 0) };
        return;
    }
    if !wants(control, now, judged) {
        return;
    }
    let len = copy_length(control.snaplen, total);
    let (Some(tat_packets), Some(tat_bytes)) = (
        stat(slot, capture_stat::TAT_PACKETS),
        stat(slot, capture_stat::TAT_BYTES),
    ) else {
        return;
    };
    // SAFETY: per-CPU slots.
    unsafe {
        match (
            spend(&control.packets, *tat_packets, now, 1, 0),
            spend(&control.bytes, *tat_bytes, now, len as u64, 0),
        ) {
            (Some(packets), Some(bytes)) => {
                *tat_packets = packets;
                *tat_bytes = bytes;
            }
            _ => {
                add(slot, capture_stat::OVER_BUDGET, 1);
                return;
            }
        }
    }
    let Some(record) = CAPTURE_BUFFER.get_ptr_mut(0) else {
        return;
    };
    // The verifier needs the length bounded on both sides: read back volatile so LLVM keeps
    // the check.
    // SAFETY: a local.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len == 0 || len > CAPTURE_SNAP_MAX {
        return;
    }
    // SAFETY: `data` holds CAPTURE_SNAP_MAX >= len bytes; the helper checks the packet side.
    let loaded =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, (&raw mut (*record).data).cast(), len as u32) };
    if loaded != 0 {
        return;
    }
    let drop = judged.reason.is_drop();
    let sip_drop = Reason::from_sip_stage(handoff.reason);
    // SAFETY: the per-CPU record, written in place.
    unsafe {
        (*record).header = CaptureHeader {
            time_ns: now,
            ifindex: ctx.ingress_ifindex() as u32,
            packet_len: total as u32,
            cap_len: len as u32,
            reason: handoff.reason,
            zone: handoff.zone,
            outcome: match (drop, handoff.monitored != 0) {
                (false, _) => capture_outcome::PASSED,
                (true, true) => capture_outcome::WOULD_DROP,
                (true, false) => capture_outcome::DROPPED,
            },
            // The SIP stage's method is in the slot only for its own drops.
            method: if sip_drop { handoff.method } else { 0 },
            rule: if sip_drop { handoff.rule } else { 0 },
            _reserved: 0,
            number: if Reason::carries_number(handoff.reason) {
                handoff.number
            } else {
                Number::default()
            },
            _reserved2: [0; 3],
        };
        let bytes =
            core::slice::from_raw_parts(record.cast::<u8>(), size_of::<CaptureHeader>() + len);
        match ring.output::<[u8]>(bytes, 0) {
            Ok(()) => {
                add(slot, capture_stat::COPIED, 1);
                add(slot, capture_stat::COPIED_BYTES, len as u64);
                if (len as u64) < total {
                    add(slot, capture_stat::TRUNCATED, 1);
                }
            }
            Err(_) => add(slot, capture_stat::RING_FULL, 1),
        }
    }
}
