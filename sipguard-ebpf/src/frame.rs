//! Bounds-checked direct packet access for the shared parser.

use aya_ebpf::programs::{TcContext, XdpContext};
use sipguard_common::parse::{Frame, MAX_PARSE_OFFSET};

pub(crate) struct XdpFrame {
    data: usize,
    data_end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub(crate) fn new(ctx: &XdpContext) -> Self {
        XdpFrame {
            data: ctx.data(),
            data_end: ctx.data_end(),
        }
    }

    /// The linear part of a socket buffer (TC): the headers of what the SBC sends.
    #[inline(always)]
    #[allow(dead_code, reason = "the baselines share this file")]
    pub(crate) fn of_skb(ctx: &TcContext) -> Self {
        XdpFrame {
            data: ctx.data(),
            data_end: ctx.data_end(),
        }
    }

    #[inline(always)]
    pub(crate) fn byte_len(&self) -> u64 {
        (self.data_end - self.data) as u64
    }
}

impl XdpFrame {
    /// `N` bytes at an offset that came from a map (the handoff slot), not from the parser: the
    /// mask gives the verifier its bound (a comparison LLVM may fuse with the caller's own checks
    /// and lose). Offsets handed on are below [`PAYLOAD_OFFSET_MASK`].
    #[inline(always)]
    #[allow(
        dead_code,
        reason = "the baselines share this file and do not read handed offsets"
    )]
    pub(crate) fn load_handed<const N: usize>(&self, offset: u16) -> Option<[u8; N]> {
        let start = self.data + (usize::from(offset) & PAYLOAD_OFFSET_MASK);
        if start + N > self.data_end {
            return None;
        }
        // SAFETY: [start, start + N) was just checked to lie inside the packet.
        Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
    }
}

/// Bounds offsets read from the handoff slot: above every payload offset the parser yields
/// (at most `MAX_L4_OFFSET` + a 60-byte TCP header), and the 32 line ends the SIP stage skips.
const PAYLOAD_OFFSET_MASK: usize = 0x3ff;
const _: () = assert!(sipguard_common::parse::MAX_L4_OFFSET + 60 + 32 < PAYLOAD_OFFSET_MASK);

impl Frame for XdpFrame {
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end - self.data
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // The explicit bound gives the verifier a range for the variable offset.
        if offset > MAX_PARSE_OFFSET {
            return None;
        }
        let start = self.data + offset;
        if start + N > self.data_end {
            return None;
        }
        // SAFETY: [start, start + N) was just checked to lie inside the packet.
        Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
    }
}
