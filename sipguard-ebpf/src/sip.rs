//! Stage 2, the SIP stage: reads the start of the SIP message of a packet stage 1 admitted.
//! Today it counts requests by method; the rules of SIP inspection (method budgets, scanner
//! signatures, destination rules) belong here, out of stage 1's verifier budget and hot path.

use sipguard_common::{
    abi::{Handoff, SipMethod, Zone, meta_l4, method_index},
    sip::{METHOD_BYTES, sip_method},
};

use crate::{frame::XdpFrame, maps::METHODS};

/// The method of the packet's SIP message (UDP datagram or TCP segment starting one), `Unknown`
/// when there is no payload to read.
#[inline(always)]
fn method(frame: &XdpFrame, handoff: &Handoff) -> SipMethod {
    let packet = &handoff.packet;
    if !matches!(packet.l4, meta_l4::UDP | meta_l4::TCP) || packet.payload == 0 {
        return SipMethod::Unknown;
    }
    match frame.load_handed::<METHOD_BYTES>(packet.payload) {
        Some(start) => sip_method(&start),
        None => SipMethod::Unknown,
    }
}

#[inline(always)]
pub(crate) fn count_method(frame: &XdpFrame, handoff: &Handoff) {
    let index = method_index(Zone::from_u8(handoff.zone), method(frame, handoff));
    if let Some(requests) = METHODS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe { *requests += 1 };
    }
}
