//! sipguard's XDP program: judges every SIP packet by its source before the SBC sees it.
//!
//! The decision logic lives in `sipguard-common` (shared with host tests); this crate only binds it
//! to the packet and to the maps. Minimum kernel: 5.12 (BPF links for XDP, bounded loops, BPF
//! atomics); tested on 6.18.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod frame;
mod maps;
mod view;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    abi::{Mode, counter_index},
    parse::parse,
    verdict::decide,
};

use crate::{frame::XdpFrame, maps::count, view::MapView};

#[xdp]
pub fn sipguard(ctx: XdpContext) -> u32 {
    let frame = XdpFrame::new(&ctx);
    let Some(view) = MapView::active() else {
        // Only possible if the maps are unreadable; never break the host's networking.
        return xdp_action::XDP_PASS;
    };
    let verdict = decide(&parse(&frame), &view);
    let drop = verdict.reason.is_drop();
    let monitored = drop && view.mode() == Mode::Monitor;
    count(
        counter_index(verdict.zone, verdict.reason, monitored),
        frame.byte_len(),
    );
    if drop && !monitored {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
