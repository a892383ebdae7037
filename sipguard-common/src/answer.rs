//! What of a SIP *response* the egress program reads: the status code of the start line, the
//! method of the CSeq header (which request it answers), and for answers to registrations the
//! expiry the registrar granted (the `Expires` header and the `expires` parameters of the
//! Contact headers).
//!
//! The scan works like the header scan of [`crate::sip`]: it walks a [`Message`] copy eight
//! bytes at a time looking for line ends (and, inside a Contact header, for `;`, `<`, `>`, `"`
//! and `\`), looks at the start of each line only, and runs one [`answer_step`] per call of the
//! kernel's `bpf_loop` callback with its state ([`AnswerScan`]) in map memory. A header beginning
//! beyond [`crate::abi::SIP_SCAN_BYTES`] is not seen. Folded lines (continuations) start no
//! header; a Contact header's state carries over into them. Values are read from whole words
//! with masks: no loop with a data-dependent trip count, no slice of variable length.
//!
//! Malformed values are never guessed at: a CSeq header whose number or method does not parse,
//! a second CSeq header, or one folded over two lines gives [`SipMethod::Unknown`]; an expiry
//! that is not 1 to 10 digits followed by a blank, a line end, `;` or `,` is ignored.

use crate::abi::{SIP_SCAN_BYTES, SipMethod, fold_case};
use crate::sip::{
    HIGHS, LOWER, Message, OFFSET_MASK, ONES, bytes_equal, lowest_flagged, value_start,
};

/// Bytes of the status line looked at: `"SIP/2.0 401 "` (12 bytes).
pub const STATUS_BYTES: usize = 12;

/// The status code of a response's start line: exactly `"SIP/2.0 "` followed by three ASCII
/// digits (the first 1 to 6) and then a space, CR, LF or tab. Otherwise `None` (requests,
/// garbage).
#[inline(always)]
pub fn status_code(start: &[u8; STATUS_BYTES]) -> Option<u16> {
    let prefix = [
        start[0], start[1], start[2], start[3], start[4], start[5], start[6], start[7],
    ];
    if u64::from_le_bytes(prefix) != u64::from_le_bytes(*b"SIP/2.0 ") {
        return None;
    }
    let [hundreds, tens, units, after] = [start[8], start[9], start[10], start[11]];
    if !(b'1'..=b'6').contains(&hundreds) || !tens.is_ascii_digit() || !units.is_ascii_digit() {
        return None;
    }
    if !matches!(after, b' ' | b'\r' | b'\n' | b'\t') {
        return None;
    }
    Some(u16::from(hundreds - b'0') * 100 + u16::from(tens - b'0') * 10 + u16::from(units - b'0'))
}

/// Largest expiry reported (seconds); larger values are capped to it.
pub const EXPIRES_CAP: u32 = 0x7fff_ffff;

/// Digits a CSeq number or an expiry may have.
const MAX_DIGITS: usize = 10;

/// What a response scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Answer {
    /// The CSeq header's method ([`SipMethod`] as `u8`; 0 = `Unknown`: no CSeq header, more
    /// than one, or a malformed one: number missing, not 1 to 10 digits, or a method token
    /// [`SipMethod`] does not know).
    pub cseq_method: u8,
    /// An `Expires` header or a Contact `expires` parameter was seen with a valid value (only
    /// looked for when the scan was asked to).
    pub expires_seen: bool,
    pub _reserved: [u8; 2],
    /// The largest such value in seconds, capped at [`EXPIRES_CAP`]. Only meaningful with
    /// `expires_seen`.
    pub expires: u32,
    /// The empty line ending the headers was reached within the scan bound.
    pub complete: bool,
    pub _reserved2: [u8; 3],
}

/// Where a response scan stands between two steps. The kernel keeps it in map memory and reads
/// it back at every step, so that the verifier meets one state per step instead of one per path
/// through the earlier steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct AnswerScan {
    pub found: Answer,
    pub _reserved: u32,
    /// Next byte to look at.
    pub offset: usize,
    /// Inside a Contact header (only when `want_expires`): `;`, `<`, `>`, `"` and `\` are
    /// looked for too.
    pub in_contact: bool,
    /// Inside a contact's `<...>` (a URI's parameters are not the header's).
    pub in_angle: bool,
    /// Inside a contact's quoted display name.
    pub in_quote: bool,
    /// A CSeq header was seen (a second one makes the CSeq method unknown).
    pub cseq_seen: bool,
    /// Look for the `Expires` header and the Contact `expires` parameters.
    pub want_expires: bool,
    /// A value for the next step to read at `offset` (a [`pending`] code): each value is read
    /// in a step of its own, so that the verifier does not walk the paths of reading a value
    /// times those of the marks before it.
    pub pending: u8,
    pub _reserved2: [u8; 2],
}

/// What [`AnswerScan::pending`] asks the next step to read.
pub mod pending {
    pub const NONE: u8 = 0;
    /// The CSeq value.
    pub const CSEQ: u8 = 1;
    /// The `Expires` header's value.
    pub const EXPIRES: u8 = 2;
    /// A Contact `expires` parameter, after its name: blanks, `=`, blanks, the value.
    pub const PARAMETER: u8 = 3;
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::size_of::<Answer>() == 12);
    assert!(core::mem::size_of::<AnswerScan>() == 32);
};

impl AnswerScan {
    /// A scan from the start of the message (the start line ends at the first line end).
    pub fn new(want_expires: bool) -> AnswerScan {
        AnswerScan {
            want_expires,
            ..AnswerScan::default()
        }
    }
}

/// Words or marks a step handles (a step is one call of the kernel's `bpf_loop` callback).
const EVENTS_PER_STEP: usize = 16;

/// Steps a scan may take: enough for the scan bound and a mark per line and per `;<>"\` of the
/// Contact headers, many times over.
pub const ANSWER_STEPS: usize = 64;

/// Bytes equal to `byte` in `word`: the high bit of each, exact for every byte (no borrow
/// crosses bytes, unlike [`bytes_equal`]).
#[inline(always)]
const fn exact_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * byte as u64);
    // The high bit of each byte that is not zero: its low seven bits plus 0x7f carry into it,
    // never beyond it.
    let nonzero = ((x & !HIGHS) + !HIGHS) | x;
    !nonzero & HIGHS
}

/// ASCII digits of `word`: the high bit of each, exact for every byte.
#[inline(always)]
const fn digit_bytes(word: u64) -> u64 {
    let low = word & !HIGHS;
    // Seven-bit values plus at most 0x50 stay within their byte.
    let from_zero = (low + ONES * 0x50) & HIGHS; // at least b'0' (0x30)
    let from_colon = (low + ONES * 0x46) & HIGHS; // at least b':' (0x3a)
    from_zero & !from_colon & !word & HIGHS
}

/// How many of the 16 bytes of `low`, `high` (little-endian, `low` first) lead before the
/// first byte flagged in `flags_low`, `flags_high`: 16 when none is.
#[inline(always)]
const fn leading_unflagged(flags_low: u64, flags_high: u64) -> usize {
    if flags_low != 0 {
        lowest_flagged(flags_low)
    } else if flags_high != 0 {
        8 + lowest_flagged(flags_high)
    } else {
        16
    }
}

/// Blanks (space, tab) at `at`: 0 to 8.
#[inline(always)]
fn blank_run(message: &Message, at: usize) -> usize {
    let word = message.word(at);
    let other = !(exact_equal(word, b' ') | exact_equal(word, b'\t')) & HIGHS;
    if other == 0 { 8 } else { lowest_flagged(other) }
}

/// The value of the first `count` (0 to 8) decimal digits of `word` (first digit in the lowest
/// byte), without a loop: the digits moved to the top bytes (leading zeros below them), then
/// pairs, quads and the eight combined.
#[inline(always)]
const fn decimal(word: u64, count: usize) -> u64 {
    if count == 0 {
        return 0;
    }
    let shift = 8 * (8 - if count > 8 { 8 } else { count });
    let mut value = (word & 0x0f0f_0f0f_0f0f_0f0f) << shift;
    value = (value * 10 + (value >> 8)) & 0x00ff_00ff_00ff_00ff;
    value = (value * 100 + (value >> 16)) & 0x0000_ffff_0000_ffff;
    (value * 10_000 + (value >> 32)) & 0xffff_ffff
}

/// A byte that may follow a number: blank, line end, or the end of a parameter.
#[inline(always)]
fn ends_value(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | b';' | b',')
}

/// The number at `at`: 1 to [`MAX_DIGITS`] digits followed by a byte [`ends_value`] accepts,
/// capped at [`EXPIRES_CAP`]. Read from two words; the message's zero tail ends a number at
/// its end without a match (a value cut off by the copy is not trusted).
#[inline(always)]
fn number(message: &Message, at: usize) -> Option<u32> {
    let low = message.word(at);
    let high = message.word(at + 8);
    let count = leading_unflagged(!digit_bytes(low) & HIGHS, !digit_bytes(high) & HIGHS);
    if count == 0 || count > MAX_DIGITS || !ends_value(message.at(at + count)) {
        return None;
    }
    let mut value = decimal(low, count.min(8));
    if count > 8 {
        let scale = if count == 9 { 10 } else { 100 };
        value = value * scale + decimal(high, count - 8);
    }
    Some(if value > u64::from(EXPIRES_CAP) {
        EXPIRES_CAP
    } else {
        value as u32
    })
}

/// A request method's token followed by a space, as two masked words.
#[derive(Clone, Copy)]
struct Token {
    /// `SipMethod as u8`; 0 for entries that match nothing (`Unknown`, `Response`).
    method: u8,
    low: u64,
    high: u64,
    low_mask: u64,
    high_mask: u64,
}

const NO_TOKEN: Token = Token {
    method: 0,
    low: 0,
    high: 0,
    low_mask: 0,
    high_mask: 0,
};

const fn token_entry(method: SipMethod) -> Token {
    let token = method.token().as_bytes();
    if matches!(method, SipMethod::Unknown | SipMethod::Response) || token.len() >= 16 {
        return NO_TOKEN;
    }
    let mut bytes = [0u8; 16];
    let mut mask = [0u8; 16];
    let mut index = 0;
    while index < token.len() {
        bytes[index] = token[index];
        mask[index] = 0xff;
        index += 1;
    }
    bytes[index] = b' ';
    mask[index] = 0xff;
    Token {
        method: method as u8,
        low: le_word(&bytes, 0),
        high: le_word(&bytes, 8),
        low_mask: le_word(&mask, 0),
        high_mask: le_word(&mask, 8),
    }
}

const fn le_word(bytes: &[u8; 16], from: usize) -> u64 {
    let mut value = 0u64;
    let mut index = 8;
    while index > 0 {
        index -= 1;
        value = (value << 8) | bytes[from + index] as u64;
    }
    value
}

/// The request methods' tokens, in [`SipMethod::ALL`] order.
const TOKENS: [Token; SipMethod::ALL.len()] = {
    let mut tokens = [NO_TOKEN; SipMethod::ALL.len()];
    let mut index = 0;
    while index < tokens.len() {
        tokens[index] = token_entry(SipMethod::ALL[index]);
        index += 1;
    }
    tokens
};

/// `word` with its CR, LF and tab bytes made spaces.
#[inline(always)]
const fn blank_line_ends(word: u64) -> u64 {
    let ends = exact_equal(word, b'\r') | exact_equal(word, b'\n') | exact_equal(word, b'\t');
    let bytes = (ends >> 7) * 0xff;
    (word & !bytes) | ((ONES * b' ' as u64) & bytes)
}

/// The request method whose token (case-sensitive) is at `at`, followed by a space, tab, CR or
/// LF: `SipMethod as u8`, 0 when none is.
#[inline(always)]
fn method_token(message: &Message, at: usize) -> u8 {
    let low = blank_line_ends(message.word(at));
    let high = blank_line_ends(message.word(at + 8));
    let mut method = 0;
    for token in &TOKENS {
        if token.method != 0
            && ((low ^ token.low) & token.low_mask) | ((high ^ token.high) & token.high_mask) == 0
        {
            method = token.method;
        }
    }
    method
}

/// The method of a CSeq value at `value`: 1 to [`MAX_DIGITS`] digits, blanks, a method token.
#[inline(always)]
fn cseq_method(message: &Message, value: usize) -> u8 {
    let count = leading_unflagged(
        !digit_bytes(message.word(value)) & HIGHS,
        !digit_bytes(message.word(value + 8)) & HIGHS,
    );
    if count == 0 || count > MAX_DIGITS {
        return 0;
    }
    let blanks = blank_run(message, value + count);
    if blanks == 0 {
        return 0;
    }
    method_token(message, value + count + blanks)
}

/// Which header a line starts, and where its value begins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Other,
    End,
    CSeq(usize),
    Expires(usize),
    Contact(usize),
}

/// Reads the header name at `start` (case-insensitive, compact form `m` of Contact, blanks
/// around the colon) and returns where its value begins.
#[inline(always)]
fn classify(message: &Message, start: usize) -> Line {
    let first = message.at(start);
    // (Not the end of the copy, read as 0: the headers may go on beyond it.)
    if first == b'\r' || first == b'\n' {
        return Line::End;
    }
    let folded = fold_case(first);
    if folded != b'c' && folded != b'e' && folded != b'm' {
        // Most lines (Via, From, To, Call-ID...): one byte decides.
        return Line::Other;
    }
    let word = message.word(start) | LOWER;
    const SEVEN: u64 = 0x00ff_ffff_ffff_ffff;
    let name_len = match folded {
        b'c' if word & 0xffff_ffff == u64::from(u32::from_le_bytes(*b"cseq")) => 4,
        b'c' if word & SEVEN == u64::from_le_bytes(*b"contact\0") => 7,
        b'e' if word & SEVEN == u64::from_le_bytes(*b"expires\0") => 7,
        b'm' => 1,
        _ => return Line::Other,
    };
    let Some(at) = value_start(message, start + name_len) else {
        return Line::Other;
    };
    match (folded, name_len) {
        (b'c', 4) => Line::CSeq(at),
        (b'e', _) => Line::Expires(at),
        _ => Line::Contact(at),
    }
}

/// Takes an expiry into the answer: the largest one counts.
#[inline(always)]
fn record_expires(scan: &mut AnswerScan, value: Option<u32>) {
    if let Some(value) = value {
        if !scan.found.expires_seen || value > scan.found.expires {
            scan.found.expires = value;
        }
        scan.found.expires_seen = true;
    }
}

/// Where the name of a Contact header parameter starting at `at` (after its `;`, blanks
/// allowed) ends if it is `expires` (any case).
#[inline(always)]
fn expires_parameter(message: &Message, at: usize) -> Option<usize> {
    let name = at + blank_run(message, at);
    if (message.word(name) | LOWER) & 0x00ff_ffff_ffff_ffff != u64::from_le_bytes(*b"expires\0") {
        return None;
    }
    Some(name + 7)
}

/// The value of an `expires` parameter whose name ends at `at`: blanks allowed around the `=`.
#[inline(always)]
fn parameter_value(message: &Message, at: usize) -> Option<u32> {
    let equals = at + blank_run(message, at);
    if message.at(equals) != b'=' {
        return None;
    }
    number(message, equals + 1 + blank_run(message, equals + 1))
}

/// Reads the value a step before asked for (at `scan.offset`), in a step of its own.
#[inline(always)]
fn read_pending(message: &Message, scan: &mut AnswerScan) {
    let at = scan.offset;
    match scan.pending {
        pending::CSEQ => scan.found.cseq_method = cseq_method(message, at),
        pending::EXPIRES => record_expires(scan, number(message, at)),
        _ => record_expires(scan, parameter_value(message, at)),
    }
    scan.pending = pending::NONE;
}

/// One step of the response scan: up to [`EVENTS_PER_STEP`] times, the next aligned word
/// without a line end (or, in a Contact header, a `;<>"\`) is passed over, or the first such
/// mark is handled (the header a line starts, a contact's parameter). A step that meets a value
/// to read (CSeq, Expires, a Contact `expires` parameter) ends there, and the next step reads
/// that value and nothing else. `false` once the scan is over: at the end of the headers or at
/// the scan bound. It does not stop at the CSeq header: a second one makes the answer's method
/// unknown, and further Contact headers may follow.
#[inline(always)]
pub fn answer_step(message: &Message, scan: &mut AnswerScan) -> bool {
    let limit = if message.len < SIP_SCAN_BYTES {
        message.len
    } else {
        SIP_SCAN_BYTES
    };
    if scan.offset >= limit {
        return false;
    }
    if scan.pending != pending::NONE {
        read_pending(message, scan);
        return true;
    }
    let mut offset = scan.offset & OFFSET_MASK;
    let mut word_start = offset & !7;
    // The bytes before `offset` read as 0xff, which matches nothing and starts no borrow
    // (a borrow could make a false flag of the next byte).
    let mut word = message.aligned_word(word_start) | !(!0u64 << ((offset & 7) * 8));
    for _ in 0..EVENTS_PER_STEP {
        if word_start >= limit {
            scan.offset = word_start;
            return false;
        }
        let mut flagged = bytes_equal(word, b'\n');
        if scan.in_contact {
            if scan.in_quote {
                flagged |= bytes_equal(word, b'"') | bytes_equal(word, b'\\');
            } else if scan.in_angle {
                flagged |= bytes_equal(word, b'>');
            } else {
                flagged |=
                    bytes_equal(word, b';') | bytes_equal(word, b'<') | bytes_equal(word, b'"');
            }
        } else if flagged == 0 {
            // Outside a Contact header, two words at a time: most words hold no line end.
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
        let Some(next) = handle_mark(message, scan, at) else {
            // Over: a further step finds nothing more.
            scan.offset = limit;
            return false;
        };
        if next >= limit {
            scan.offset = next;
            return false;
        }
        if scan.pending != pending::NONE {
            scan.offset = next;
            return true;
        }
        offset = next & OFFSET_MASK;
        word_start = offset & !7;
        word = message.aligned_word(word_start) | !(!0u64 << ((offset & 7) * 8));
    }
    scan.offset = offset;
    true
}

/// A line end or a mark of a Contact header at `at`: where to go on, `None` at the end of the
/// headers.
#[inline(always)]
fn handle_mark(message: &Message, scan: &mut AnswerScan, at: usize) -> Option<usize> {
    let next = at + 1;
    match message.at(at) {
        b'\n' => {}
        b'"' => {
            if scan.in_quote {
                scan.in_quote = false;
            } else if scan.in_contact && !scan.in_angle {
                scan.in_quote = true;
            }
            return Some(next);
        }
        b'\\' => {
            // A quoted pair: the escaped byte is passed over (never a line end, which
            // cannot be escaped).
            let escaped = message.at(next);
            if scan.in_quote && escaped != b'\r' && escaped != b'\n' {
                return Some(next + 1);
            }
            return Some(next);
        }
        b'<' => {
            scan.in_angle |= scan.in_contact && !scan.in_quote;
            return Some(next);
        }
        b'>' => {
            scan.in_angle &= scan.in_quote;
            return Some(next);
        }
        b';' => {
            // A parameter of the header itself (outside the URI's brackets and the display
            // name).
            if scan.in_contact
                && !scan.in_angle
                && !scan.in_quote
                && let Some(name_end) = expires_parameter(message, next)
            {
                scan.pending = pending::PARAMETER;
                return Some(name_end);
            }
            return Some(next);
        }
        _ => return Some(next),
    }
    let first = message.at(next);
    if first == b' ' || first == b'\t' {
        // A folded line continues the header before it.
        return Some(next);
    }
    scan.in_contact = false;
    scan.in_angle = false;
    scan.in_quote = false;
    match classify(message, next) {
        Line::End => {
            scan.found.complete = true;
            None
        }
        Line::CSeq(value) => {
            if scan.cseq_seen {
                scan.found.cseq_method = 0;
            } else {
                scan.pending = pending::CSEQ;
            }
            scan.cseq_seen = true;
            Some(value)
        }
        Line::Expires(value) => {
            if scan.want_expires {
                scan.pending = pending::EXPIRES;
            }
            Some(value)
        }
        Line::Contact(value) => {
            scan.in_contact = scan.want_expires;
            Some(value)
        }
        Line::Other => Some(next),
    }
}

/// Scans a response's headers for the CSeq method and, with `want_expires`, the largest
/// expiry; to the end of the headers or the scan bound. (The kernel runs [`answer_step`]
/// itself, with the state in map memory.)
pub fn scan_answer(message: &Message, want_expires: bool) -> Answer {
    let mut scan = AnswerScan::new(want_expires);
    for _ in 0..ANSWER_STEPS {
        if !answer_step(message, &mut scan) {
            break;
        }
    }
    scan.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::SIP_BUFFER_BYTES;
    use crate::sip::MessageBuffer;
    use std::string::String;
    use std::vec::Vec;

    fn buffer(bytes: &[u8]) -> (MessageBuffer, usize) {
        let mut buffer = MessageBuffer([0u8; SIP_BUFFER_BYTES]);
        let len = bytes.len().min(SIP_SCAN_BYTES);
        buffer.0[..len].copy_from_slice(&bytes[..len]);
        (buffer, len)
    }

    fn scan(text: &str, want_expires: bool) -> Answer {
        let (bytes, len) = buffer(text.as_bytes());
        scan_answer(&Message { bytes: &bytes, len }, want_expires)
    }

    fn status(text: &str) -> Option<u16> {
        let mut start = [0u8; STATUS_BYTES];
        for (slot, byte) in start.iter_mut().zip(text.bytes()) {
            *slot = byte;
        }
        status_code(&start)
    }

    /// A response with `lines` between the start line and the empty line.
    fn response(lines: &str) -> String {
        std::format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: x@h\r\n{lines}Content-Length: 0\r\n\r\n"
        )
    }

    fn expires_of(lines: &str) -> Option<u32> {
        let found = scan(&response(lines), true);
        assert!(found.complete, "{lines:?}");
        found.expires_seen.then_some(found.expires)
    }

    const REGISTER: u8 = SipMethod::Register as u8;
    const INVITE: u8 = SipMethod::Invite as u8;

    #[test]
    fn status_codes() {
        for (text, code) in [
            ("SIP/2.0 200 OK", Some(200)),
            ("SIP/2.0 401 Unauthorized", Some(401)),
            ("SIP/2.0 407 Proxy Authentication Required", Some(407)),
            ("SIP/2.0 403 Forbidden", Some(403)),
            ("SIP/2.0 180 Ringing", Some(180)),
            ("SIP/2.0 100\r\n", Some(100)),
            ("SIP/2.0 699\tx", Some(699)),
            ("SIP/2.0 486\n", Some(486)),
            ("SIP/2.0 40", None),
            ("SIP/2.0 4011", None),
            ("SIP/2.0 401", None),
            ("SIP/2.1 200 OK", None),
            ("sip/2.0 200 OK", None),
            ("SIP/2.0  200 OK", None),
            ("SIP/2.0 4x1 Bad", None),
            ("SIP/2.0 099 Low", None),
            ("SIP/2.0 700 High", None),
            ("INVITE sip:100@h SIP/2.0", None),
            ("", None),
        ] {
            assert_eq!(status(text), code, "{text:?}");
        }
    }

    #[test]
    fn cseq_variants() {
        for (line, method) in [
            ("CSeq: 1 REGISTER", REGISTER),
            ("CSeq: 102 REGISTER ", REGISTER),
            ("cseq:1  INVITE", INVITE),
            ("CSEQ :\t7 INVITE", INVITE),
            ("CSeq: 7\tINVITE\t", INVITE),
            ("CSeq: 4294967295 INVITE", INVITE),
            ("CSeq: 1 SUBSCRIBE", SipMethod::Subscribe as u8),
            ("CSeq: 1 BYE", SipMethod::Bye as u8),
            ("CSeq: 1 ACK", SipMethod::Ack as u8),
            ("CSeq: 1 OPTIONS", SipMethod::Options as u8),
            ("CSeq: REGISTER", 0),
            ("CSeq:  REGISTER", 0),
            ("CSeq: 1REGISTER", 0),
            ("CSeq: 1 REGISTERX", 0),
            ("CSeq: 1 register", 0),
            ("CSeq: 1 SIP/2.0", 0),
            ("CSeq: 1 ", 0),
            ("CSeq: 1", 0),
            ("CSeq:", 0),
            ("CSeq: x1 INVITE", 0),
            ("CSeq: 99999999999 INVITE", 0),
            ("CSeq 1 INVITE", 0),
            ("CSeqs: 1 INVITE", 0),
            ("X-CSeq: 1 INVITE", 0),
            // Bytes a borrow could pass for blanks.
            ("CSeq: 1 !INVITE", 0),
            ("CSeq: 1\t\x08INVITE", 0),
        ] {
            for want_expires in [false, true] {
                let found = scan(&response(&std::format!("{line}\r\n")), want_expires);
                assert!(found.complete, "{line:?}");
                assert_eq!(found.cseq_method, method, "{line:?}");
            }
        }
        // Every request method, and no CSeq at all.
        for method in SipMethod::ALL {
            let line = std::format!("CSeq: 31 {}\r\n", method.token());
            let expected = match method {
                SipMethod::Unknown | SipMethod::Response => 0,
                other => other as u8,
            };
            assert_eq!(
                scan(&response(&line), false).cseq_method,
                expected,
                "{line:?}"
            );
        }
        assert_eq!(scan(&response(""), false).cseq_method, 0);
    }

    #[test]
    fn a_second_cseq_header_makes_the_method_unknown() {
        for lines in [
            "CSeq: 1 REGISTER\r\nCSeq: 1 REGISTER\r\n",
            "CSeq: 1 INVITE\r\nContact: <sip:a@h>\r\ncseq: 2 REGISTER\r\n",
            "CSeq: x\r\nCSeq: 1 REGISTER\r\n",
        ] {
            for want_expires in [false, true] {
                let found = scan(&response(lines), want_expires);
                assert!(found.complete);
                assert_eq!(found.cseq_method, 0, "{lines:?}");
            }
        }
    }

    #[test]
    fn a_cseq_header_beyond_the_scan_bound_is_not_seen() {
        let padding = std::format!("X-Padding: {}", "p".repeat(SIP_SCAN_BYTES));
        let text = response(&std::format!(
            "{padding}\r\nCSeq: 1 REGISTER\r\nExpires: 60\r\n"
        ));
        let found = scan(&text, true);
        assert_eq!(found, Answer::default());
        // Just within the bound it is.
        let text = std::format!(
            "SIP/2.0 200 OK\r\nX: {}\r\nCSeq: 1 INVITE\n",
            "p".repeat(2000)
        );
        assert!(text.len() < SIP_SCAN_BYTES);
        let found = scan(&text, false);
        assert_eq!(found.cseq_method, INVITE);
        assert!(!found.complete);
    }

    #[test]
    fn contact_expires_parameters() {
        for (lines, expires) in [
            ("m: <sip:a@b>;expires=60\r\n", Some(60)),
            ("Contact: <sip:a@b;expires=9999>;expires=30\r\n", Some(30)),
            ("Contact: <sip:a@b;expires=9999>\r\n", None),
            (
                "Contact: \"x;expires=5\" <sip:a@b>;expires=40\r\n",
                Some(40),
            ),
            ("Contact: \"x;expires=5\" <sip:a@b>\r\n", None),
            (
                "Contact: \"a\\\";expires=5\" <sip:a@b>;expires=41\r\n",
                Some(41),
            ),
            ("Contact: \"a\\\\\" <sip:a@b>;expires=42\r\n", Some(42)),
            ("Contact: \"<\" <sip:a@b>;expires=43\r\n", Some(43)),
            (
                "Contact: <sip:a@1>;expires=10, <sip:b@2>;expires=3600\r\n",
                Some(3600),
            ),
            (
                "Contact: <sip:a@1>;expires=3600, <sip:b@2>;expires=10\r\n",
                Some(3600),
            ),
            (
                "Contact: <sip:a@1>;expires=10\r\nContact: <sip:b@2>;q=0.5;expires=700\r\nm: <sip:c@3>;expires=20\r\n",
                Some(700),
            ),
            ("Contact: sip:a@b;expires=50\r\n", Some(50)),
            ("Contact: <sip:a@b>; expires = 51 ;q=1\r\n", Some(51)),
            ("Contact: <sip:a@b>;EXPIRES=70\r\n", Some(70)),
            ("Contact: <sip:a@b>;Expires=71\r\n", Some(71)),
            ("CONTACT : <sip:a@b>;expires=72\r\n", Some(72)),
            ("Contact: <sip:a@b>;expires=abc\r\n", None),
            ("Contact: <sip:a@b>;expires=12abc\r\n", None),
            ("Contact: <sip:a@b>;expires=\r\n", None),
            ("Contact: <sip:a@b>;expires\r\n", None),
            ("Contact: <sip:a@b>;expiresx=5\r\n", None),
            ("Contact: <sip:a@b>;x-expires=5\r\n", None),
            ("Contact: <sip:a@b>; !expires=5\r\n", None),
            ("Contact: <sip:a@b>;expires= !5\r\n", None),
            ("Contact: <sip:a@b>;expires=5;expires=abc\r\n", Some(5)),
            ("Contact: *\r\n", None),
            ("Contact: <sip:a@b>\r\n ;expires=80\r\n", Some(80)),
            ("Contact: <sip:a@b>;expires=0\r\n", Some(0)),
            (
                "Contact: <sip:a@b>;expires=4294967295\r\n",
                Some(EXPIRES_CAP),
            ),
            (
                "Contact: <sip:a@b>;expires=2147483647\r\n",
                Some(EXPIRES_CAP),
            ),
            (
                "Contact: <sip:a@b>;expires=2147483646\r\n",
                Some(2_147_483_646),
            ),
            (
                "Contact: <sip:a@b>;expires=123456789\r\n",
                Some(123_456_789),
            ),
            ("Contact: <sip:a@b>;expires=99999999999\r\n", None),
            ("Contact: <sip:a@b>;expires=0000000060\r\n", Some(60)),
            // A header that only starts like Contact, and Min-Expires (a 423's).
            ("Contacts: <sip:a@b>;expires=90\r\n", None),
            ("Min-Expires: 60\r\n", None),
            ("X-Contact: <sip:a@b>;expires=90\r\n", None),
            ("Via: SIP/2.0/UDP h;expires=90\r\n", None),
        ] {
            assert_eq!(expires_of(lines), expires, "{lines:?}");
        }
    }

    #[test]
    fn the_expires_header() {
        for (lines, expires) in [
            ("Expires: 120\r\n", Some(120)),
            ("Expires: 0\r\n", Some(0)),
            ("expires:3600 \r\n", Some(3600)),
            ("EXPIRES\t:\t7\r\n", Some(7)),
            ("Expires: abc\r\n", None),
            ("Expires: -1\r\n", None),
            ("Expires: 1.5\r\n", None),
            ("Expires:\r\n", None),
            (
                "Expires: 120\r\nContact: <sip:a@b>;expires=60\r\n",
                Some(120),
            ),
            (
                "Contact: <sip:a@b>;expires=600\r\nExpires: 120\r\n",
                Some(600),
            ),
        ] {
            assert_eq!(expires_of(lines), expires, "{lines:?}");
        }
    }

    #[test]
    fn expiries_are_only_looked_for_when_wanted() {
        let text = response("CSeq: 2 REGISTER\r\nContact: <sip:a@b>;expires=60\r\nExpires: 60\r\n");
        let found = scan(&text, false);
        assert_eq!(found.cseq_method, REGISTER);
        assert!(!found.expires_seen);
        assert_eq!(found.expires, 0);
        assert!(found.complete);
        let found = scan(&text, true);
        assert!(found.expires_seen);
        assert_eq!(found.expires, 60);
    }

    const KAMAILIO_200: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 192.0.2.10:5060;rport=5060;received=192.0.2.10;branch=z9hG4bK-524287-1---a2b9c8d7e6f5a4b3\r\n\
        From: \"Alice\" <sip:alice@example.com>;tag=4fa3b2c1\r\n\
        To: \"Alice\" <sip:alice@example.com>;tag=2b1c9e8a7d6f5e4c3b2a1f0e9d8c7b6a.1f2e\r\n\
        Call-ID: MzQ1NjdmZGU0ZjM0YjE2ZDNhMmIxYzBkOWU4Zg..\r\n\
        CSeq: 2 REGISTER\r\n\
        Contact: <sip:alice@192.0.2.10:5060;rinstance=6f8dc969b62d1466;transport=UDP>;expires=3600;received=\"sip:192.0.2.10:5060\", <sip:alice@198.51.100.7:5060;expires=9999>;expires=120\r\n\
        Server: kamailio (5.7.4 (x86_64/linux))\r\n\
        Content-Length: 0\r\n\
        \r\n";

    #[test]
    fn a_kamailio_200_to_register() {
        let found = scan(KAMAILIO_200, true);
        assert_eq!(
            found,
            Answer {
                cseq_method: REGISTER,
                expires_seen: true,
                expires: 3600,
                complete: true,
                ..Answer::default()
            }
        );
        let found = scan(KAMAILIO_200, false);
        assert_eq!(found.cseq_method, REGISTER);
        assert!(!found.expires_seen && found.complete);
        // With bare line ends.
        let bare = KAMAILIO_200.replace("\r\n", "\n");
        assert_eq!(scan(&bare, true), scan(KAMAILIO_200, true));
    }

    #[test]
    fn challenges() {
        let challenge_401 = "SIP/2.0 401 Unauthorized\r\n\
            Via: SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bK-1\r\n\
            From: <sip:bob@example.com>;tag=77\r\n\
            To: <sip:bob@example.com>;tag=2b1c.9e8a\r\n\
            Call-ID: 1-2@192.0.2.10\r\n\
            CSeq: 1 REGISTER\r\n\
            WWW-Authenticate: Digest realm=\"example.com\", nonce=\"ZmFjZTo7ZXhwaXJlcz05OQ==\", qop=\"auth,auth-int\", algorithm=MD5, opaque=\"<x;expires=5>\"\r\n\
            Server: kamailio (5.7.4 (x86_64/linux))\r\n\
            Content-Length: 0\r\n\
            \r\n";
        let challenge_407 = "SIP/2.0 407 Proxy Authentication Required\r\n\
            Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-2\r\n\
            From: \"Bob, Jr.\" <sip:bob@example.com>;tag=78\r\n\
            To: <sip:+15551234@example.com>;tag=99\r\n\
            Call-ID: 3-4@192.0.2.10\r\n\
            CSeq: 20 INVITE\r\n\
            Proxy-Authenticate: Digest realm=\"example.com\", nonce=\"a\\\"b;expires=7\", stale=FALSE, algorithm=MD5\r\n\
            Content-Length: 0\r\n\
            \r\n";
        assert_eq!(status(challenge_401), Some(401));
        assert_eq!(status(challenge_407), Some(407));
        for want_expires in [false, true] {
            let found = scan(challenge_401, want_expires);
            assert_eq!(found.cseq_method, REGISTER);
            assert!(found.complete && !found.expires_seen);
            let found = scan(challenge_407, want_expires);
            assert_eq!(found.cseq_method, INVITE);
            assert!(found.complete && !found.expires_seen);
        }
    }

    #[test]
    fn bare_line_ends() {
        let text = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=1\nCSeq: 9 REGISTER\nm: <sip:a@b>;expires=45\nExpires: 30\n\nbody;expires=9999\nCSeq: 1 INVITE\n";
        let found = scan(text, true);
        assert_eq!(
            found,
            Answer {
                cseq_method: REGISTER,
                expires_seen: true,
                expires: 45,
                complete: true,
                ..Answer::default()
            }
        );
    }

    #[test]
    fn folded_lines_start_no_header() {
        for want_expires in [false, true] {
            let found = scan(
                &response("Subject: x\r\n\tCSeq: 5 INVITE\r\n  Expires: 5\r\n"),
                want_expires,
            );
            assert_eq!(found.cseq_method, 0);
            assert!(!found.expires_seen && found.complete);
            let found = scan(
                &response("CSeq: 5 INVITE\r\nSubject: x\r\n\tCSeq: 6 INVITE\r\n"),
                want_expires,
            );
            assert_eq!(found.cseq_method, INVITE);
            // A CSeq value folded over two lines is not trusted.
            let found = scan(&response("CSeq: 5\r\n INVITE\r\n"), want_expires);
            assert_eq!(found.cseq_method, 0);
        }
        // A quoted display name folded over two lines.
        assert_eq!(
            expires_of("Contact: \"a;\r\n expires=5\" <sip:a@b>;expires=6\r\n"),
            Some(6)
        );
        // An unclosed quote or bracket ends with its line.
        assert_eq!(
            expires_of("Contact: \"a <sip:a@b>;expires=6\r\nContact: <sip:b@c>;expires=7\r\n"),
            Some(7)
        );
        assert_eq!(
            expires_of("Contact: <sip:a@b;expires=6\r\nm: <sip:b@c>;expires=7\r\n"),
            Some(7)
        );
    }

    #[test]
    fn numbers_from_words() {
        let word = |text: &[u8]| {
            let mut raw = [0u8; 8];
            raw[..text.len()].copy_from_slice(text);
            u64::from_le_bytes(raw)
        };
        assert_eq!(decimal(word(b"12345678"), 8), 12_345_678);
        assert_eq!(decimal(word(b"1234x"), 4), 1234);
        assert_eq!(decimal(word(b"7"), 1), 7);
        assert_eq!(decimal(word(b"99999999"), 8), 99_999_999);
        assert_eq!(decimal(word(b"5"), 0), 0);
        for byte in 0..=255u8 {
            let flagged = digit_bytes(word(&[b'5', byte, b'!', byte])) >> 15 & 1 == 1;
            assert_eq!(flagged, byte.is_ascii_digit(), "{byte:#x}");
            let spaces = exact_equal(word(&[b' ', byte, b' ', byte]), b' ');
            assert_eq!(spaces >> 15 & 1 == 1, byte == b' ', "{byte:#x}");
        }
        for value in [
            0u64,
            1,
            9,
            10,
            99,
            100,
            12_345,
            99_999_999,
            100_000_000,
            2_147_483_647,
        ] {
            let text = std::format!("Expires: {value}\r\n");
            assert_eq!(expires_of(&text), Some(value as u32), "{text:?}");
        }
    }

    /// A tiny linear congruential generator: reproducible pseudo-random bytes.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    fn contains_folded(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
    }

    /// The scan's rules, byte by byte with plain loops: what the word-at-a-time scan must agree
    /// with whenever it ends within its steps.
    fn reference(seen: &[u8], want_expires: bool) -> Answer {
        let at = |index: usize| seen.get(index).copied().unwrap_or(0);
        let blanks = |from: usize| {
            (0..8)
                .take_while(|k| matches!(at(from + k), b' ' | b'\t'))
                .count()
        };
        let number = |from: usize| -> Option<u32> {
            let count = (0..11)
                .take_while(|k| at(from + k).is_ascii_digit())
                .count();
            if count == 0 || count > 10 || !ends_value(at(from + count)) {
                return None;
            }
            let value =
                (0..count).fold(0u64, |value, k| value * 10 + u64::from(at(from + k) - b'0'));
            Some(value.min(u64::from(EXPIRES_CAP)) as u32)
        };
        let cseq = |from: usize| -> u8 {
            let count = (0..11)
                .take_while(|k| at(from + k).is_ascii_digit())
                .count();
            let gap = blanks(from + count);
            if count == 0 || count > 10 || gap == 0 {
                return 0;
            }
            let token = from + count + gap;
            for method in SipMethod::ALL {
                let name = method.token().as_bytes();
                if matches!(method, SipMethod::Unknown | SipMethod::Response) {
                    continue;
                }
                if (0..name.len()).all(|k| at(token + k) == name[k])
                    && matches!(at(token + name.len()), b' ' | b'\t' | b'\r' | b'\n')
                {
                    return method as u8;
                }
            }
            0
        };
        let named = |from: usize, name: &[u8]| {
            (0..name.len()).all(|k| at(from + k).to_ascii_lowercase() == name[k])
        };
        let mut found = Answer::default();
        let (mut cseq_seen, mut in_contact, mut in_angle, mut in_quote) =
            (false, false, false, false);
        let record = |found: &mut Answer, value: Option<u32>| {
            if let Some(value) = value {
                found.expires = if found.expires_seen {
                    found.expires.max(value)
                } else {
                    value
                };
                found.expires_seen = true;
            }
        };
        let mut pos = 0;
        while pos < seen.len() {
            let byte = seen[pos];
            pos += 1;
            if byte != b'\n' {
                if !in_contact {
                    continue;
                }
                match byte {
                    b'"' if in_quote => in_quote = false,
                    b'"' if !in_angle => in_quote = true,
                    b'\\' if in_quote && !matches!(at(pos), b'\r' | b'\n') => pos += 1,
                    b'<' if !in_quote => in_angle = true,
                    b'>' if in_angle => in_angle = false,
                    b';' if !in_angle && !in_quote => {
                        let name = pos + blanks(pos);
                        if named(name, b"expires") {
                            let equals = name + 7 + blanks(name + 7);
                            if at(equals) == b'=' {
                                record(&mut found, number(equals + 1 + blanks(equals + 1)));
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if matches!(at(pos), b' ' | b'\t') {
                continue;
            }
            (in_contact, in_angle, in_quote) = (false, false, false);
            if matches!(at(pos), b'\r' | b'\n') {
                found.complete = true;
                break;
            }
            let name_len = if named(pos, b"cseq") {
                4
            } else if named(pos, b"contact") || named(pos, b"expires") {
                7
            } else if named(pos, b"m") {
                1
            } else {
                continue;
            };
            let mut value = pos + name_len;
            let mut colon = false;
            for _ in 0..8 {
                match at(value) {
                    b' ' | b'\t' => value += 1,
                    b':' if !colon => {
                        colon = true;
                        value += 1;
                    }
                    _ => break,
                }
            }
            if !colon {
                continue;
            }
            if named(pos, b"cseq") {
                found.cseq_method = if cseq_seen { 0 } else { cseq(value) };
                cseq_seen = true;
            } else if named(pos, b"expires") {
                if want_expires {
                    record(&mut found, number(value));
                }
            } else {
                in_contact = want_expires;
            }
        }
        found
    }

    /// Scans `bytes` stepwise as the kernel does, and checks what must hold for any input.
    fn check_any(bytes: &[u8]) {
        let (buffer, len) = buffer(bytes);
        let message = Message {
            bytes: &buffer,
            len,
        };
        for want_expires in [false, true] {
            let mut scan = AnswerScan::new(want_expires);
            let mut ended = false;
            for _ in 0..ANSWER_STEPS {
                if !answer_step(&message, &mut scan) {
                    ended = true;
                    break;
                }
            }
            let found = scan.found;
            assert_eq!(found, scan_answer(&message, want_expires));
            let seen = &bytes[..len];
            if ended {
                assert_eq!(
                    found,
                    reference(seen, want_expires),
                    "{:?}",
                    String::from_utf8_lossy(seen)
                );
            }
            if !contains_folded(seen, b"cseq") {
                assert_eq!(found.cseq_method, 0, "{seen:?}");
            }
            assert!(usize::from(found.cseq_method) < SipMethod::Response as usize);
            if found.expires_seen {
                assert!(
                    want_expires && contains_folded(seen, b"expires"),
                    "{seen:?}"
                );
                assert!(found.expires <= EXPIRES_CAP);
            }
            if found.complete {
                assert!(
                    seen.windows(2)
                        .any(|pair| pair[0] == b'\n' && matches!(pair[1], b'\r' | b'\n'))
                );
            }
            let mut start = [0u8; STATUS_BYTES];
            for (slot, byte) in start.iter_mut().zip(seen) {
                *slot = *byte;
            }
            if let Some(code) = status_code(&start) {
                assert!((100..700).contains(&code));
            }
        }
    }

    #[test]
    fn garbage_and_truncated_messages_never_panic() {
        let mut random = Lcg(0x5eed);
        // Bytes of any value, and bytes drawn mostly from what the scan looks for.
        let alphabet: &[u8] =
            b"\r\n\r\n\t ;;<>\"\\,=:0123456789CSeqcseqContactexpiresEXPIRESmM INVITE REGISTER";
        for round in 0..3000 {
            let len = random.below(SIP_SCAN_BYTES + 64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if round % 2 == 0 {
                        random.next() as u8
                    } else {
                        alphabet[random.below(alphabet.len())]
                    }
                })
                .collect();
            check_any(&bytes);
        }
        // Realistic messages, cut anywhere and with bytes replaced.
        let texts = [
            KAMAILIO_200.as_bytes().to_vec(),
            KAMAILIO_200.replace("\r\n", "\n").into_bytes(),
        ];
        for text in &texts {
            for cut in 0..=text.len() {
                check_any(&text[..cut]);
            }
            for _ in 0..2000 {
                let mut bytes = text.clone();
                for _ in 0..1 + random.below(4) {
                    let at = random.below(bytes.len());
                    bytes[at] = alphabet[random.below(alphabet.len())];
                }
                check_any(&bytes);
            }
        }
        // A message of nothing but marks runs out of steps, not of bounds.
        for fill in [b';', b'\n', b'"', b'<', b'\\', 0] {
            let mut bytes = b"SIP/2.0 200 OK\r\nContact: ".to_vec();
            bytes.resize(SIP_SCAN_BYTES, fill);
            check_any(&bytes);
        }
    }

    #[test]
    fn steps_resume_where_they_stopped() {
        // A run of steps ends at the same answer as one scan, however far each step got.
        let (bytes, len) = buffer(KAMAILIO_200.as_bytes());
        let message = Message { bytes: &bytes, len };
        let mut scan = AnswerScan::new(true);
        let mut steps = 0;
        while answer_step(&message, &mut scan) {
            steps += 1;
            assert!(steps < ANSWER_STEPS);
        }
        assert_eq!(scan.found, scan_answer(&message, true));
        assert!(scan.found.complete);
        // A scan that is over stays over.
        let before = scan;
        assert!(!answer_step(&message, &mut scan));
        assert_eq!(scan, before);
    }
}
