//! Programs that sipguard is measured against (`cargo xtask bench`), built like sipguard so that
//! only the logic differs, plus the packet generator of the throughput benchmark.
//!
//! - `bench_drop` / `bench_pass`: the cost floor, one per-CPU counter and a verdict;
//! - `bench_parse`: sipguard's parser without any policy lookup;
//! - `bench_tc_pass`: the cost floor of a TC classifier (the egress program's baseline);
//! - `bench_gen`: sends its frame back out (`XDP_TX`) with a new IPv4 source each time, for a
//!   spoofed-source flood driven by `BPF_PROG_TEST_RUN` in live-frames mode;
//! - `bench_tx`: sends its frame back out unchanged (allowed traffic from one source).
#![no_std]
#![no_main]

#[path = "frame.rs"]
mod frame;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
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
pub(crate) fn bench_drop(ctx: XdpContext) -> u32 {
    count((ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_DROP
}

#[xdp]
pub(crate) fn bench_pass(ctx: XdpContext) -> u32 {
    count((ctx.data_end() - ctx.data()) as u64);
    xdp_action::XDP_PASS
}

#[classifier]
pub(crate) fn bench_tc_pass(ctx: TcContext) -> i32 {
    count(u64::from(ctx.len()));
    TC_ACT_OK
}

#[xdp]
pub(crate) fn bench_parse(ctx: XdpContext) -> u32 {
    let frame = XdpFrame::new(&ctx);
    let verdict = match parse(&frame) {
        Parsed::Malformed => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    };
    count(frame.byte_len());
    verdict
}

/// Spoofed sources of `bench_gen`: 198.19.0.0/17, only addresses ending in binary 11 (8,192 of
/// them). The benchmark never allowlists such addresses, and allowlists hosts among them, so the
/// flood walks as deep into the allowlist trie as a random source would.
const SPOOF_BASE: u32 = 0xc613_0003;
const SPOOF_MASK: u32 = 0x7ffc;

/// Rewrites the IPv4 source (bytes 26..30 of an untagged IPv4/UDP frame with a 20-byte header)
/// from a per-CPU sequence, patches the IPv4 and UDP checksums so the kernel stack accepts the
/// frame too (nftables baselines), then sends it out of the interface it "arrived" on.
#[xdp]
pub(crate) fn bench_gen(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 42 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    if let Some(next) = COUNT.get_ptr_mut(2) {
        // SAFETY: per-CPU slot; the frame holds bytes 0..42 (checked above). Live-frames pages
        // keep what the previous run wrote, so the old source is read back, never assumed.
        unsafe {
            let source = SPOOF_BASE | (((*next as u32) << 2) & SPOOF_MASK);
            *next += 1;
            let old = u32::from_be_bytes(core::ptr::read_unaligned((start + 26) as *const [u8; 4]));
            core::ptr::write_unaligned((start + 26) as *mut [u8; 4], source.to_be_bytes());
            let ip_sum = (start + 24) as *mut [u8; 2];
            let sum = u16::from_be_bytes(core::ptr::read_unaligned(ip_sum));
            core::ptr::write_unaligned(ip_sum, csum_replace4(sum, old, source).to_be_bytes());
            // UDP checksum 0 means "none"; a computed 0 is sent as 0xffff (RFC 768).
            let udp_sum = (start + 40) as *mut [u8; 2];
            let sum = u16::from_be_bytes(core::ptr::read_unaligned(udp_sum));
            if sum != 0 {
                let patched = match csum_replace4(sum, old, source) {
                    0 => 0xffff,
                    other => other,
                };
                core::ptr::write_unaligned(udp_sum, patched.to_be_bytes());
            }
        }
    }
    xdp_action::XDP_TX
}

#[xdp]
pub(crate) fn bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Incremental checksum update for a 32-bit field changing from `old` to `new` (RFC 1624, eqn. 3).
#[inline(always)]
fn csum_replace4(sum: u16, old: u32, new: u32) -> u16 {
    let mut acc = u32::from(!sum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!old as u16)
        + (new >> 16)
        + (new & 0xffff);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
