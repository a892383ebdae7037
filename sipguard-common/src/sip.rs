//! What of SIP the data plane reads: the method token at the start of a message (for drop events
//! and method budgets), and, in the SIP stage, the headers scanner signatures and destination
//! rules need (User-Agent, From, To), from a copy of the message's first
//! [`SIP_SCAN_BYTES`] bytes.
//!
//! The scan walks the copy eight bytes at a time looking for line ends (and, inside a To
//! header, for `;`), and looks at the start of each line only: a header beginning beyond
//! [`SIP_SCAN_BYTES`] is not seen (for UDP under a 1500-byte MTU that is never the case; a TCP
//! segment's later headers can be). Folded header lines (continuations) are not headers of
//! their own and are skipped. SIP over TLS is encrypted and never read.

use crate::abi::{
    DEST_KEY_DIGITS, DestData, SIGNATURE_BYTES, SIP_BUFFER_BYTES, SIP_SCAN_BYTES, SignatureData,
    SipMethod, fold_case, signature_field,
};
use crate::dial::{Bytes, Number};

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

/// Bytes after the message that must be zero in a [`Message`]'s buffer.
pub const MESSAGE_TAIL: usize = 128;
const _: () = assert!(crate::dial::MAX_URI_BYTES + 8 <= MESSAGE_TAIL);
const _: () = assert!(SIP_SCAN_BYTES + MESSAGE_TAIL <= SIP_BUFFER_BYTES);

/// The buffer a message is copied into, aligned so that the scan reads whole words (a BPF
/// load of a possibly misaligned word costs eight byte loads and their shifts).
#[repr(C, align(8))]
pub struct MessageBuffer(pub [u8; SIP_BUFFER_BYTES]);

/// The message copy the SIP stage scans: its first `len` bytes are the message (`len` at most
/// [`SIP_SCAN_BYTES`]), followed by [`MESSAGE_TAIL`] zero bytes.
pub struct Message<'a> {
    pub bytes: &'a MessageBuffer,
    pub len: usize,
}

pub(crate) const OFFSET_MASK: usize = SIP_SCAN_BYTES - 1;
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;
pub(crate) const LOWER: u64 = 0x2020_2020_2020_2020;

/// Bytes equal to `byte` in `word`: the high bit of each, exact for the lowest one.
#[inline(always)]
pub(crate) const fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * byte as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// How many of the first eight bytes (little-endian word) are CR or LF: stream transports
/// may put line ends before a start line (RFC 3261 7.5), and keepalives are nothing else
/// (RFC 5626).
#[inline(always)]
pub const fn leading_line_ends(word: u64) -> usize {
    let other = !(bytes_equal(word, b'\r') | bytes_equal(word, b'\n')) & HIGHS;
    if other == 0 { 8 } else { lowest_flagged(other) }
}

/// Zero bytes of `word`: the high bit of each, exact for the lowest one.
#[inline(always)]
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// [`fold_case`] of eight bytes at once: bit 0x20 set in every byte from 0x40.
#[inline(always)]
const fn fold_word(word: u64) -> u64 {
    word | (((word & 0x4040_4040_4040_4040) | ((word & HIGHS) >> 1)) >> 1)
}

/// Index (0..8) of the lowest byte flagged in a mask of high bits, without a branch: the
/// lowest flag, moved to bit 0 of its byte, multiplied so that its byte index lands in the top
/// byte.
#[inline(always)]
pub(crate) const fn lowest_flagged(mask: u64) -> usize {
    let bit = (mask & mask.wrapping_neg()) >> 7;
    (bit.wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize
}

impl Message<'_> {
    /// The byte at `index`, 0 at and beyond `len`.
    #[inline(always)]
    pub fn at(&self, index: usize) -> u8 {
        if index >= self.len {
            return 0;
        }
        self.bytes.0[index & OFFSET_MASK]
    }

    /// The aligned word holding byte `offset` (little-endian), one load.
    #[inline(always)]
    pub(crate) fn aligned_word(&self, offset: usize) -> u64 {
        // SAFETY: the buffer is 8-aligned and a whole number of words long.
        let words: &[u64; SIP_BUFFER_BYTES / 8] =
            unsafe { &*(self.bytes as *const MessageBuffer).cast() };
        u64::from_le(words[(offset & OFFSET_MASK) >> 3])
    }

    /// Eight bytes from any `offset` (little-endian), from the two aligned words that hold
    /// them. Without a branch on `len`: the [`MESSAGE_TAIL`] bytes after the message are zero.
    #[inline(always)]
    pub(crate) fn word(&self, offset: usize) -> u64 {
        let shift = (offset & 7) * 8;
        let low = self.aligned_word(offset);
        let high = self.aligned_word((offset & OFFSET_MASK) + 8);
        // `(high << 1) << (63 - shift)`: `high << (64 - shift)` without a 64-bit shift at 0.
        (low >> shift) | ((high << 1) << (63 - shift))
    }
}

impl Bytes for Message<'_> {
    /// Without a branch on `len` (the number parser's loop must have none): its reads stay
    /// within the zero tail.
    #[inline(always)]
    fn byte(&self, index: usize) -> u8 {
        self.bytes.0[index & OFFSET_MASK]
    }
}

/// What the header scan found: offsets of header values (0: not seen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Headers {
    /// First byte of the User-Agent value.
    pub user_agent: usize,
    /// First byte of the From value.
    pub from: usize,
    /// The To header carries a tag: a request inside a dialog.
    pub to_tag: bool,
    /// The empty line ending the headers was reached within the scan bound.
    pub complete: bool,
}

/// Which header a line starts, and where its value begins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Other,
    End,
    UserAgent(usize),
    From(usize),
    To,
}

/// Reads the header name at `start` (case-insensitive, compact forms `f` and `t`, blanks
/// before the colon) and returns where its value begins.
#[inline(always)]
fn classify(message: &Message, start: usize) -> Line {
    let first = message.at(start);
    if first == b'\r' || first == b'\n' || first == 0 {
        return Line::End;
    }
    let folded = fold_case(first);
    if folded != b'u' && folded != b'f' && folded != b't' {
        // Most lines (Via, Contact, Call-ID, CSeq...): one byte decides.
        return Line::Other;
    }
    let word = message.word(start) | LOWER;
    let name_len = match folded {
        b'u' if word == u64::from_le_bytes(*b"user-age")
            && message.at(start + 8) | 0x20 == b'n'
            && message.at(start + 9) | 0x20 == b't' =>
        {
            10
        }
        b'f' if word & 0xffff_ffff == u64::from(u32::from_le_bytes(*b"from")) => 4,
        b't' if word & 0xffff == u64::from(u16::from_le_bytes(*b"to")) => 2,
        b'f' | b't' => 1,
        _ => return Line::Other,
    };
    let Some(at) = value_start(message, start + name_len) else {
        return Line::Other;
    };
    match (fold_case(first), name_len) {
        (b'u', _) => Line::UserAgent(at),
        (b'f', _) => Line::From(at),
        _ => Line::To,
    }
}

/// Where a header's value begins after its name ends at `at`: blanks, the colon, blanks (a
/// bounded walk); `None` without a colon.
#[inline(always)]
pub(crate) fn value_start(message: &Message, mut at: usize) -> Option<usize> {
    let mut colon = false;
    for _ in 0..8 {
        match message.at(at) {
            b' ' | b'\t' => at += 1,
            b':' if !colon => {
                colon = true;
                at += 1;
            }
            _ => break,
        }
    }
    colon.then_some(at)
}

/// Where a header scan stands between two steps. The kernel keeps it in map memory and reads it
/// back at every step, so that the verifier meets one state per step instead of one per path
/// through the earlier steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Scan {
    pub found: Headers,
    /// Next byte to look at.
    pub offset: usize,
    /// Inside the To header: `;`, `<`, `>` and `"` are looked for too.
    pub in_to: bool,
    /// Inside the To header's `<...>` (a URI's parameters are not the header's).
    pub to_angle: bool,
    /// Inside a quoted display name of the To header.
    pub to_quote: bool,
    pub to_seen: bool,
    pub want_signatures: bool,
    pub want_to_tag: bool,
}

impl Scan {
    pub fn new(want_signatures: bool, want_to_tag: bool) -> Scan {
        Scan {
            to_seen: !want_to_tag,
            want_signatures,
            want_to_tag,
            ..Scan::default()
        }
    }
}

/// Words or marks a step handles (a step is one call of the kernel's `bpf_loop` callback).
const EVENTS_PER_STEP: usize = 16;

/// Steps a scan may take: enough for the scan bound and a mark per line and per `;<>"` of
/// the To header, many times over.
pub const SCAN_STEPS: usize = 64;

/// One step of the header scan: up to [`EVENTS_PER_STEP`] times, the next aligned word without
/// a line end (or, in the To header, a `;<>"`) is passed over, or the first such mark is handled
/// (the header a line starts, the To header's tag). `false` once the scan is over.
#[inline(always)]
pub fn scan_step(message: &Message, scan: &mut Scan) -> bool {
    let mut offset = scan.offset & OFFSET_MASK;
    let mut word_start = offset & !7;
    // The bytes before `offset` read as 0xff, which matches nothing and starts no borrow
    // (a borrow could make a false flag of the next byte).
    let mut word = message.aligned_word(word_start) | !(!0u64 << ((offset & 7) * 8));
    let mut in_to = u64::from(scan.in_to).wrapping_neg();
    for _ in 0..EVENTS_PER_STEP {
        if word_start >= message.len {
            return false;
        }
        let mut flagged = bytes_equal(word, b'\n');
        if in_to != 0 {
            flagged |= bytes_equal(word, b';')
                | bytes_equal(word, b'<')
                | bytes_equal(word, b'>')
                | bytes_equal(word, b'"');
        } else if flagged == 0 {
            // Outside the To header, two words at a time: most words hold no line end.
            let next = message.aligned_word(word_start + 8);
            if bytes_equal(next, b'\n') == 0 {
                word_start += 16;
                word = message.aligned_word(word_start);
                offset = word_start;
                continue;
            }
        }
        if flagged == 0 {
            word_start += 8;
            word = message.aligned_word(word_start);
            offset = word_start;
            continue;
        }
        let at = word_start + lowest_flagged(flagged);
        if !handle_mark(message, scan, at) {
            return false;
        }
        in_to = u64::from(scan.in_to).wrapping_neg();
        offset = (at + 1) & OFFSET_MASK;
        word_start = offset & !7;
        word = message.aligned_word(word_start) | !(!0u64 << ((offset & 7) * 8));
    }
    scan.offset = offset;
    true
}

/// A line end or a mark of the To header at `at`; `false` once the scan has what it needs.
#[inline(always)]
fn handle_mark(message: &Message, scan: &mut Scan, at: usize) -> bool {
    match message.at(at) {
        b'\n' => {}
        b'"' => {
            scan.to_quote = !scan.to_quote;
            return true;
        }
        b'<' => {
            scan.to_angle |= !scan.to_quote;
            return true;
        }
        b'>' => {
            scan.to_angle &= scan.to_quote;
            return true;
        }
        _ => {
            // A `;` of the header itself (outside the URI's brackets and the display name).
            if !scan.to_angle
                && !scan.to_quote
                && message.word(at + 1) & 0xffff_ffff | 0x2020_2020
                    == u64::from(u32::from_le_bytes(*b"tag="))
            {
                scan.found.to_tag = true;
            }
            return true;
        }
    }
    scan.in_to = false;
    scan.to_angle = false;
    scan.to_quote = false;
    match classify(message, at + 1) {
        Line::End => {
            scan.found.complete = true;
            return false;
        }
        Line::UserAgent(value) => scan.found.user_agent = value,
        Line::From(value) => scan.found.from = value,
        Line::To => {
            scan.in_to = scan.want_to_tag;
            scan.to_seen = true;
        }
        Line::Other => return true,
    }
    let signatures_done =
        !scan.want_signatures || (scan.found.user_agent != 0 && scan.found.from != 0);
    !(signatures_done && scan.to_seen && !scan.in_to)
}

/// Scans the headers for User-Agent, From and the To tag. Stops once it has what was asked
/// for, at the end of the headers, or at the scan bound. (The kernel runs [`scan_step`] itself,
/// with the state in map memory.)
pub fn scan_headers(message: &Message, want_signatures: bool, want_to_tag: bool) -> Headers {
    let mut scan = Scan::new(want_signatures, want_to_tag);
    for _ in 0..SCAN_STEPS {
        if !scan_step(message, &mut scan) {
            break;
        }
    }
    scan.found
}

/// Writes the key a header value is looked up with in `SG_SIGS_*` into `data`: the field, then
/// the value's first [`SIGNATURE_BYTES`] bytes folded to lower case; returns its prefix length
/// in bits. A From display name starts after an opening quote and ends at a quote or `<`; a
/// value ends at the line end. `None` when the value is empty. (An out-parameter, so the kernel
/// can build the key in map memory: its stack is 512 bytes.)
#[inline(always)]
pub fn signature_key(
    message: &Message,
    value: usize,
    field: u8,
    data: &mut SignatureData,
) -> Option<u32> {
    let display = field == signature_field::FROM_DISPLAY_NAME;
    let mut start = value;
    if display && message.at(start) == b'"' {
        start += 1;
    }
    data[0] = field;
    // Four words, without a loop of per-byte branches (the verifier walks every path of
    // those): the bytes that end the value flagged per word, the first flag is the length.
    // Reads may pass `len` by up to 32 bytes: the tail is zero, and zero ends a value.
    let mut len = SIGNATURE_BYTES;
    let mut ended = false;
    for word_index in 0..4 {
        let word = message.word(start + 8 * word_index);
        let mut ends = bytes_equal(word, b'\r') | bytes_equal(word, b'\n') | zero_bytes(word);
        if display {
            ends |= bytes_equal(word, b'"') | bytes_equal(word, b'<');
        }
        if !ended && ends != 0 {
            len = (8 * word_index + lowest_flagged(ends)).min(SIGNATURE_BYTES);
            ended = true;
        }
        let folded = fold_word(word).to_le_bytes();
        for (byte_index, byte) in folded.iter().enumerate() {
            let at = 1 + 8 * word_index + byte_index;
            if at < data.len() {
                data[at] = *byte;
            }
        }
    }
    if len == 0 {
        return None;
    }
    Some(8 * (1 + len as u32))
}

/// Writes the key of a normalised number in `SG_DEST_*` into `data`: the zone, then the digits
/// as nibbles; returns its prefix length in bits.
#[inline(always)]
pub fn destination_key(zone: u8, number: &Number, data: &mut DestData) -> u32 {
    *data = [0u8; 1 + DEST_KEY_DIGITS / 2];
    data[0] = zone;
    let len = (number.len as usize).min(DEST_KEY_DIGITS);
    for index in 0..DEST_KEY_DIGITS {
        if index < len {
            let digit = number.digits[index].wrapping_sub(b'0') & 0x0f;
            let shift = if index % 2 == 0 { 4 } else { 0 };
            data[1 + index / 2] |= digit << shift;
        }
    }
    8 + 4 * len as u32
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

#[cfg(test)]
mod scan_tests {
    use super::*;
    use crate::abi::SIP_BUFFER_BYTES;

    fn message(text: &str) -> (MessageBuffer, usize) {
        let mut bytes = MessageBuffer([0u8; SIP_BUFFER_BYTES]);
        let len = text.len().min(SIP_SCAN_BYTES);
        bytes.0[..len].copy_from_slice(&text.as_bytes()[..len]);
        (bytes, len)
    }

    #[test]
    fn finds_user_agent_from_and_the_to_tag() {
        let text = "OPTIONS sip:100@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\nFrom: \"sipvicious\" <sip:1@h>;tag=1\r\nTo: <sip:100@h>;tag=x\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n";
        let (bytes, len) = message(text);
        let message = Message { bytes: &bytes, len };
        let found = scan_headers(&message, true, true);
        assert!(found.complete || found.user_agent != 0, "{found:?}");
        assert_eq!(&text[found.user_agent..found.user_agent + 7], "friendl");
        assert_eq!(&text[found.from..found.from + 5], "\"sipv");
        assert!(found.to_tag);
    }

    #[test]
    fn only_the_to_headers_own_tag_marks_a_dialog() {
        for (to, in_dialog) in [
            ("To: <sip:+881@h>;tag=x", true),
            ("t: <sip:+881@h> ;TAG=x", true),
            ("To: sip:+881@h;tag=x", true),
            ("To: <sip:+881@h;tag=abc>", false),
            ("To: \"x;tag=1\" <sip:+881@h>", false),
            ("To: \"a<b\" <sip:+881@h;tag=1>", false),
            ("To: <sip:+881@h>;user=phone", false),
            ("To: <sip:+881@h>", false),
        ] {
            let text =
                std::format!("INVITE sip:+881@h SIP/2.0\r\n{to}\r\nFrom: <sip:1@h>;tag=9\r\n\r\n");
            let (bytes, len) = message(&text);
            let found = scan_headers(&Message { bytes: &bytes, len }, false, true);
            assert_eq!(found.to_tag, in_dialog, "{to}");
        }
    }

    #[test]
    fn line_ends_before_a_start_line_are_counted() {
        let word = |text: &[u8]| {
            let mut raw = [0u8; 8];
            raw[..text.len()].copy_from_slice(text);
            u64::from_le_bytes(raw)
        };
        assert_eq!(leading_line_ends(word(b"INVITE s")), 0);
        assert_eq!(leading_line_ends(word(b"\r\nINVIT")), 2);
        assert_eq!(leading_line_ends(word(b"\r\n\r\n\r\n\r\n")), 8);
    }
}
