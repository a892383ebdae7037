//! What little of SIP the data plane reads: the method token at the start of a message, for
//! drop events ("an INVITE from an unknown network" is the toll-fraud signal).

use crate::abi::SipMethod;

/// Bytes of payload looked at.
pub const METHOD_BYTES: usize = 10;

/// The method of a SIP request (`INVITE sip:...`), `Response` for `SIP/2.0 ...`, or `Unknown`.
/// Tokens are case-sensitive (RFC 3261) and must be followed by a space.
#[inline(always)]
pub fn sip_method(start: &[u8; METHOD_BYTES]) -> SipMethod {
    let is = |token: &[u8]| -> bool {
        let mut index = 0;
        while index < token.len() {
            if start[index] != token[index] {
                return false;
            }
            index += 1;
        }
        start[token.len()] == b' '
    };
    match start[0] {
        b'I' if is(b"INVITE") => SipMethod::Invite,
        b'I' if is(b"INFO") => SipMethod::Info,
        b'A' if is(b"ACK") => SipMethod::Ack,
        b'B' if is(b"BYE") => SipMethod::Bye,
        b'C' if is(b"CANCEL") => SipMethod::Cancel,
        b'R' if is(b"REGISTER") => SipMethod::Register,
        b'R' if is(b"REFER") => SipMethod::Refer,
        b'O' if is(b"OPTIONS") => SipMethod::Options,
        b'P' if is(b"PRACK") => SipMethod::Prack,
        b'P' if is(b"PUBLISH") => SipMethod::Publish,
        b'S' if is(b"SUBSCRIBE") => SipMethod::Subscribe,
        b'S' if is(b"SIP/2.0") => SipMethod::Response,
        b'N' if is(b"NOTIFY") => SipMethod::Notify,
        b'M' if is(b"MESSAGE") => SipMethod::Message,
        b'U' if is(b"UPDATE") => SipMethod::Update,
        _ => SipMethod::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(text: &str) -> SipMethod {
        let mut bytes = [0u8; METHOD_BYTES];
        for (slot, byte) in bytes.iter_mut().zip(text.bytes()) {
            *slot = byte;
        }
        sip_method(&bytes)
    }

    #[test]
    fn every_method_and_responses_are_recognised() {
        for m in SipMethod::ALL.iter().skip(1) {
            let line = std::format!("{} sip:x", m.token());
            assert_eq!(method(&line), *m, "{line}");
        }
        assert_eq!(method("SIP/2.0 200 OK"), SipMethod::Response);
    }

    #[test]
    fn near_misses_are_unknown() {
        for text in [
            "invite sip:x",
            "INVITEX sip",
            "INVIT",
            "",
            "GET / HTTP/1.1",
            "REGISTERx",
            "SIP/2.1 200",
        ] {
            assert_eq!(method(text), SipMethod::Unknown, "{text:?}");
        }
    }
}
