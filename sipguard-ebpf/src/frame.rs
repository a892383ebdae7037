//! Bounds-checked direct packet access for the shared parser.

use aya_ebpf::programs::XdpContext;
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

    #[inline(always)]
    pub(crate) fn byte_len(&self) -> u64 {
        (self.data_end - self.data) as u64
    }
}

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
