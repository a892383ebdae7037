//! Programs that sipguard is measured against (`cargo xtask bench`), built like sipguard so that
//! only the logic differs, plus the packet generator of the throughput benchmark.
//!
//! - `bench_drop` / `bench_pass`: the cost floor, one per-CPU counter and a verdict;
//! - `bench_parse`: sipguard's parser without any policy lookup;
//! - `bench_gen`: sends its frame back out (`XDP_TX`) with a new IPv4 source each time, for a
//!   spoofed-source flood driven by `BPF_PROG_TEST_RUN` in live-frames mode.
#![no_std]
#![no_main]

#[path = "frame.rs"]
mod frame;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use sipguard_common::parse::{Parsed, parse};

use crate::frame::XdpFrame;

/// Slot 0: packets seen; slot 1: bytes; slot 2: the generator's next source address.
#[map(name = "BENCH_COUNT")]
static COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(3, 0);

#[inline(always)]
fn count(bytes: u64) {
    if let Some(packets) = COUNT.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *packets += 1 };
    }
    if let Some(total) = COUNT.get_ptr_mut(1) {
        // SAFETY: per-CPU slot.
        unsafe { *total += bytes };
    }
}

#[xdp]
pub fn bench_drop(ctx: XdpContext) -> u32 {
    count((ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_pass(ctx: XdpContext) -> u32 {
    count((ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_parse(ctx: XdpContext) -> u32 {
    let frame = XdpFrame::new(&ctx);
    let verdict = match parse(&frame) {
        Parsed::Malformed => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    };
    count(frame.byte_len());
    verdict
}

/// Rewrites the IPv4 source (bytes 26..30 of an untagged frame) from a per-CPU sequence, then
/// sends the frame out of the interface it "arrived" on.
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 34 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    if let Some(next) = COUNT.get_ptr_mut(2) {
        // SAFETY: per-CPU slot; the frame holds bytes 26..30 (checked above).
        unsafe {
            let source = (*next as u32) | 0x0a00_0000;
            *next += 1;
            core::ptr::write_unaligned((start + 26) as *mut [u8; 4], source.to_be_bytes());
        }
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
