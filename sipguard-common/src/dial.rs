//! The number dialled in a SIP INVITE: the user part of the Request-URI, normalised to E.164 with
//! the zone's numbering plan ([`DialPlan`]), for destination rules (toll fraud: who calls where).
//!
//! Runs in the kernel: no allocation, no recursion, no indexing that could panic, every loop
//! bounded by a constant ([`MAX_URI_BYTES`], [`MAX_DIGITS`]). Bytes are read one at a time through
//! [`Bytes`], which answers 0 beyond the end, so a URI cut short by the end of the packet ends as
//! if at a NUL.
//!
//! What is read (RFC 3261 section 19.1, RFC 3966):
//! - the scheme, case-insensitive: `sip:`, `sips:`, `tel:`;
//! - the user part: for sip/sips up to the `@` (no `@` before `;`-params end, `>`, ` `, `?`, CR,
//!   LF or NUL: no user part); for tel up to `;`, ` `, `?`, `>`, CR, LF or NUL. In a sip user
//!   part a `;` starts user parameters (`;isub=`, `;phone-context=`): the digits end there, the
//!   user part still needs its `@`;
//! - a leading `+`, `%2B` or `%2b`: international; digits; visual separators `-`, `.`, `(`, `)`
//!   and `%20` are skipped. Anything else (letters, `*`, `#`, `:`, other escapes, a `+` that does
//!   not lead) makes the URI [`Dialled::Unparseable`], as do zero digits and more than
//!   [`MAX_DIGITS`]. Escaped digits (`%31`) are not decoded: unparseable (a proxy would decode
//!   them, so a policy should not let an unparseable INVITE through where a number would be
//!   refused).
//!
//! For the verifier, the user part is read by a state machine on two 256-byte tables in
//! `.rodata` (`CLASSES`, `TRANSITIONS`): the loop over the bytes has no branch but its exit,
//! and the digits are kept as nibbles in a `u64`, so the prefix tests, strips and joins of the
//! normalisation are shifts and masks, not loops over arrays. A test XDP program that copies 256
//! packet bytes to a map value and calls [`dialled`] with a plan from a map needed 29,181
//! processed instructions on 6.18 (7,334 of them the parse, the rest the normalisation), and gave
//! the host's answers on 1,628 test runs (`BPF_PROG_TEST_RUN`).

/// Up to 4 ASCII digits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DigitPrefix {
    /// Digits in use, 0..=4 (0: not set; a larger length counts as not set too). The controller
    /// writes only ASCII digits ([`DigitPrefix::from_str`]); the kernel turns any other byte into
    /// some digit rather than check.
    pub len: u8,
    pub digits: [u8; 4],
}

/// A zone's numbering plan (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DialPlan {
    /// Home country code, e.g. "44"; len 0: not set.
    pub country_code: DigitPrefix,
    /// Trunk prefix, e.g. "0" (UK), "1" (NANP); len 0: none.
    pub national_prefix: DigitPrefix,
    /// International call prefixes, e.g. "00", "011"; the longer one wins when both match.
    pub international_prefixes: [DigitPrefix; 2],
    /// Stripped first (the first that matches), e.g. "9" for an outside line.
    pub tech_prefixes: [DigitPrefix; 2],
    pub _reserved: [u8; 2],
}

/// Digits of a normalised number (E.164 has at most 15).
pub const MAX_DIGITS: usize = 16;

/// Bytes of the Request-URI looked at, from its first byte (the scheme included).
pub const MAX_URI_BYTES: usize = 96;

/// A normalised number: ASCII digits of the E.164 number, without '+'.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Number {
    /// Digits in use, 0..=MAX_DIGITS.
    pub len: u8,
    pub digits: [u8; MAX_DIGITS],
}

/// What a Request-URI dialled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialled {
    /// The E.164 number, normalised with the zone's plan.
    Number(Number),
    /// No user part, letters, '*', '#', too many digits, bad escape, unknown scheme.
    #[default]
    Unparseable,
}

const _: () = {
    assert!(core::mem::size_of::<DigitPrefix>() == 5);
    assert!(core::mem::size_of::<DialPlan>() == 32);
    assert!(core::mem::size_of::<Number>() == 1 + MAX_DIGITS);
    assert!(MAX_DIGITS <= u8::MAX as usize);
};

/// The bytes of the message, read one at a time; 0 beyond the end.
pub trait Bytes {
    fn byte(&self, index: usize) -> u8;
}

impl Bytes for &[u8] {
    #[inline(always)]
    fn byte(&self, index: usize) -> u8 {
        self.get(index).copied().unwrap_or(0)
    }
}

impl<const N: usize> Bytes for [u8; N] {
    #[inline(always)]
    fn byte(&self, index: usize) -> u8 {
        self.get(index).copied().unwrap_or(0)
    }
}

impl DigitPrefix {
    /// 1..=4 ASCII digits; `None` for anything else.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)] // Option, not Result: there is only one way to fail
    pub fn from_str(text: &str) -> Option<DigitPrefix> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > 4 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut prefix = DigitPrefix {
            len: bytes.len() as u8,
            digits: [0; 4],
        };
        for (slot, byte) in prefix.digits.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        Some(prefix)
    }

    /// The digits in use (all four bytes if `len` is out of range).
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        self.digits
            .get(..usize::from(self.len))
            .unwrap_or(&self.digits)
    }

    /// Digits in use, 0 when not set or len > 4.
    #[inline(always)]
    fn effective_len(&self) -> usize {
        let len = usize::from(self.len);
        if len <= self.digits.len() { len } else { 0 }
    }
}

impl Number {
    /// The digits (all of them if `len` is out of range).
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        self.digits
            .get(..usize::from(self.len))
            .unwrap_or(&self.digits)
    }

    /// 1..=MAX_DIGITS ASCII digits; `None` for anything else (for the CLI and tests).
    #[inline(always)]
    pub fn from_digits(text: &str) -> Option<Number> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_DIGITS || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut number = Number {
            len: bytes.len() as u8,
            digits: [0; MAX_DIGITS],
        };
        for (slot, byte) in number.digits.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        Some(number)
    }
}

/// The scheme at the start of a Request-URI: its length with the ':' and whether it is `tel:`;
/// length 0 for any other scheme.
#[inline(always)]
fn scheme(first: [u8; 5]) -> (usize, bool) {
    match first.map(|byte| byte.to_ascii_lowercase()) {
        [b's', b'i', b'p', b':', _] => (4, false),
        [b's', b'i', b'p', b's', b':'] => (5, false),
        [b't', b'e', b'l', b':', _] => (4, true),
        _ => (0, false),
    }
}

// The user part's state machine: byte -> class, (state, class) -> next state and action. The
// loop over the bytes has no branch but its exit, so the verifier follows one path through it,
// not one per class of byte and count of digits.

/// Classes of bytes.
mod class {
    pub(super) const DIGIT: u8 = 0;
    /// '0' and '2': digits that also spell `%20` and `%2B`.
    pub(super) const ZERO: u8 = 1;
    pub(super) const TWO: u8 = 2;
    /// 'B' and 'b' (`%2B`).
    pub(super) const B: u8 = 3;
    /// The visual separators '-', '.', '(', ')'.
    pub(super) const SEPARATOR: u8 = 4;
    pub(super) const PLUS: u8 = 5;
    pub(super) const PERCENT: u8 = 6;
    pub(super) const AT: u8 = 7;
    pub(super) const SEMICOLON: u8 = 8;
    /// ' ', '?', '>', CR, LF, NUL.
    pub(super) const END: u8 = 9;
    pub(super) const OTHER: u8 = 10;
}

/// States of the user part. The sip and tel states differ in what ends the user part.
mod state {
    /// Nothing of the user part read yet: a '+' (or `%2B`) may come.
    pub(super) const SIP_START: u8 = 0;
    pub(super) const SIP_DIGITS: u8 = 1;
    /// After a ';' in a sip user part: anything up to the '@'.
    pub(super) const SIP_PARAMS: u8 = 2;
    /// After the '%' / `%2` of an escape at the start (`%2B` allowed) or later (only `%20`).
    pub(super) const SIP_ESCAPE_START: u8 = 3;
    pub(super) const SIP_ESCAPE2_START: u8 = 4;
    pub(super) const SIP_ESCAPE: u8 = 5;
    pub(super) const SIP_ESCAPE2: u8 = 6;
    pub(super) const TEL_START: u8 = 7;
    pub(super) const TEL_DIGITS: u8 = 8;
    pub(super) const TEL_ESCAPE_START: u8 = 9;
    pub(super) const TEL_ESCAPE2_START: u8 = 10;
    pub(super) const TEL_ESCAPE: u8 = 11;
    pub(super) const TEL_ESCAPE2: u8 = 12;
    /// The user part ended where it may end: the states from here on end the loop.
    pub(super) const DONE: u8 = 14;
    pub(super) const FAIL: u8 = 15;
}

/// Set in a [`TRANSITIONS`] entry: the byte is a digit of the number.
const TAKE: u8 = 0x10;
/// Set in a [`TRANSITIONS`] entry: the number is international ('+', `%2B`).
const INTERNATIONAL: u8 = 0x20;

/// The class of every byte.
static CLASSES: [u8; 256] = {
    let mut classes = [class::OTHER; 256];
    let mut byte = 0;
    while byte < 256 {
        classes[byte] = match byte as u8 {
            b'0' => class::ZERO,
            b'2' => class::TWO,
            b'1' | b'3'..=b'9' => class::DIGIT,
            b'B' | b'b' => class::B,
            b'-' | b'.' | b'(' | b')' => class::SEPARATOR,
            b'+' => class::PLUS,
            b'%' => class::PERCENT,
            b'@' => class::AT,
            b';' => class::SEMICOLON,
            b' ' | b'?' | b'>' | b'\r' | b'\n' | 0 => class::END,
            _ => class::OTHER,
        };
        byte += 1;
    }
    classes
};

/// The next state, with [`TAKE`] and [`INTERNATIONAL`], at `state << 4 | class`.
static TRANSITIONS: [u8; 256] = {
    let mut table = [state::FAIL; 256];
    let mut index = 0;
    while index < 256 {
        table[index] = transition((index >> 4) as u8, (index & 15) as u8);
        index += 1;
    }
    table
};

/// One step of the state machine (run at compile time only).
#[inline(always)]
const fn transition(from: u8, class: u8) -> u8 {
    use state::*;
    let tel = from >= TEL_START && from < DONE;
    let (start, digits, escape_start, escape2_start, escape, escape2) = if tel {
        (
            TEL_START,
            TEL_DIGITS,
            TEL_ESCAPE_START,
            TEL_ESCAPE2_START,
            TEL_ESCAPE,
            TEL_ESCAPE2,
        )
    } else {
        (
            SIP_START,
            SIP_DIGITS,
            SIP_ESCAPE_START,
            SIP_ESCAPE2_START,
            SIP_ESCAPE,
            SIP_ESCAPE2,
        )
    };
    let is_digit = class == class::DIGIT || class == class::ZERO || class == class::TWO;
    match from {
        DONE => DONE,
        SIP_PARAMS => match class {
            class::AT => DONE,
            class::END => FAIL,
            _ => SIP_PARAMS,
        },
        _ if from == start || from == digits => {
            if is_digit {
                digits | TAKE
            } else {
                match class {
                    class::SEPARATOR => digits,
                    class::PLUS if from == start => digits | INTERNATIONAL,
                    class::PERCENT if from == start => escape_start,
                    class::PERCENT => escape,
                    class::AT if !tel => DONE,
                    class::SEMICOLON if !tel => SIP_PARAMS,
                    class::SEMICOLON | class::END if tel => DONE,
                    _ => FAIL,
                }
            }
        }
        _ if (from == escape_start && class == class::TWO) => escape2_start,
        _ if (from == escape && class == class::TWO) => escape2,
        _ if (from == escape2_start || from == escape2) && class == class::ZERO => digits,
        _ if from == escape2_start && class == class::B => digits | INTERNATIONAL,
        _ => FAIL,
    }
}

/// Up to 16 digits as nibbles, the first digit in the top one; a digit is stored as its value + 1
/// so that the nibbles after the last digit are 0. Branch-free prefix tests, strips and joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed {
    nibbles: u64,
    /// 0..=MAX_DIGITS.
    len: usize,
}

/// The top `count` (0..=16) nibbles set.
#[inline(always)]
fn top_nibbles(count: usize) -> u64 {
    // Two shifts: neither reaches 64 for count 16.
    !((u64::MAX >> (count * 2)) >> (count * 2))
}

impl Packed {
    /// The first `len` (at most MAX_DIGITS) bytes of `digits`, read as digits.
    #[inline(always)]
    fn new(digits: &[u8], len: usize) -> Packed {
        let len = if len < MAX_DIGITS { len } else { MAX_DIGITS };
        let mut nibbles = 0u64;
        for (index, digit) in digits.iter().take(MAX_DIGITS).enumerate() {
            // Any byte becomes a digit: an ASCII digit itself, anything else some digit.
            nibbles |= u64::from(digit.wrapping_sub(b'0') % 10 + 1) << (60 - 4 * index);
        }
        Packed {
            nibbles: nibbles & top_nibbles(len),
            len,
        }
    }

    /// A prefix of the plan, 0 digits when not set (or len > 4).
    #[inline(always)]
    fn prefix(prefix: &DigitPrefix) -> Packed {
        Packed::new(&prefix.digits, prefix.effective_len())
    }

    /// How many digits `prefix` takes off the front: its length when it is set, matches and
    /// leaves at least one digit; else 0.
    #[inline(always)]
    fn strip_len(&self, prefix: &Packed) -> usize {
        let same = (self.nibbles ^ prefix.nibbles) & top_nibbles(prefix.len) == 0;
        if same && prefix.len > 0 && self.len > prefix.len {
            prefix.len
        } else {
            0
        }
    }

    /// Without the first `count` (< len) digits.
    #[inline(always)]
    fn without(&self, count: usize) -> Packed {
        let count = count & 15;
        Packed {
            nibbles: self.nibbles << (4 * count),
            len: self.len.saturating_sub(count),
        }
    }

    /// `prefix` (at most 4 digits) followed by this number, capped at MAX_DIGITS digits.
    #[inline(always)]
    fn after(&self, prefix: &Packed) -> Packed {
        let head = prefix.len & 7;
        let len = head + self.len;
        Packed {
            nibbles: prefix.nibbles | (self.nibbles >> (4 * head)),
            len: if len < MAX_DIGITS { len } else { MAX_DIGITS },
        }
    }

    #[inline(always)]
    fn number(&self) -> Number {
        let mut number = Number {
            len: self.len as u8,
            digits: [0; MAX_DIGITS],
        };
        for (index, slot) in number.digits.iter_mut().enumerate() {
            let nibble = ((self.nibbles >> (60 - 4 * index)) & 15) as u8;
            // value + 1 -> ASCII digit, 0 (after the last digit) -> 0, without a branch.
            *slot = nibble + (b'0' - 1) * ((nibble + 15) >> 4);
        }
        number
    }
}

/// The number the Request-URI starting at `start` (the byte after "INVITE ") dials, normalised
/// with `plan` ([`normalise_digits`]). At most [`MAX_URI_BYTES`] bytes are read: a user part not
/// ended within them is unparseable.
#[inline(always)]
pub fn dialled<B: Bytes>(bytes: &B, start: usize, plan: &DialPlan) -> Dialled {
    let at = |offset: usize| bytes.byte(start.saturating_add(offset));
    let (mut offset, tel) = scheme([at(0), at(1), at(2), at(3), at(4)]);
    if offset == 0 {
        return Dialled::Unparseable;
    }
    let mut state = if tel {
        state::TEL_START
    } else {
        state::SIP_START
    };
    let mut flags = 0u8;
    // The digits, the last in the lowest nibble (value + 1), and how many: more than 16 shift
    // the first ones out, and are refused below.
    let mut nibbles = 0u64;
    let mut count = 0usize;
    while offset < MAX_URI_BYTES {
        let byte = at(offset);
        let class = CLASSES[usize::from(byte)];
        let step = TRANSITIONS[(usize::from(state) << 4 | usize::from(class)) & 0xff];
        let take = u64::from((step >> 4) & 1);
        nibbles = (nibbles << (4 * take)) | (u64::from((byte & 15) + 1) * take);
        count += take as usize;
        flags |= step;
        state = step & 15;
        if state >= state::DONE {
            break;
        }
        offset += 1;
    }
    if state != state::DONE || count == 0 || count > MAX_DIGITS {
        return Dialled::Unparseable;
    }
    let digits = Packed {
        nibbles: nibbles << (4 * (MAX_DIGITS - count)),
        len: count,
    };
    Dialled::Number(normalise(flags & INTERNATIONAL != 0, digits, plan).number())
}

/// How `digits` (as dialled, without '+') become an E.164 number under `plan`:
/// - international ('+'): the digits are E.164 already;
/// - otherwise the first tech prefix that matches is stripped; then a number that starts with an
///   international prefix (the longer one when both match) is the E.164 number after it; else,
///   when the country code is set, a number that starts with the national prefix is the country
///   code followed by the rest, and any other number (a national number dialled without trunk
///   prefix, e.g. NANP 10 digits) is the country code followed by all of it; when the country
///   code is not set the number is returned as it is after the tech prefix.
///
/// A prefix matches only when at least one digit follows it, so the result is never empty for a
/// non-empty input. The result is capped at [`MAX_DIGITS`] digits (country code + a long
/// national number may exceed it; E.164 has at most 15). A prefix in `plan` with len > 4 counts
/// as not set. Only the first `len` (at most MAX_DIGITS) bytes of `digits` are read; bytes that
/// are not ASCII digits there or in `plan` are read as some digit: the result is always digits.
#[inline(always)]
pub fn normalise_digits(international: bool, digits: &Number, plan: &DialPlan) -> Number {
    normalise(
        international,
        Packed::new(&digits.digits, usize::from(digits.len)),
        plan,
    )
    .number()
}

#[inline(always)]
fn normalise(international: bool, digits: Packed, plan: &DialPlan) -> Packed {
    if international {
        return digits;
    }
    let [tech_first, tech_second] = &plan.tech_prefixes;
    let tech = match digits.strip_len(&Packed::prefix(tech_first)) {
        0 => digits.strip_len(&Packed::prefix(tech_second)),
        len => len,
    };
    let rest = digits.without(tech);
    let [intl_first, intl_second] = &plan.international_prefixes;
    let first = rest.strip_len(&Packed::prefix(intl_first));
    let second = rest.strip_len(&Packed::prefix(intl_second));
    let intl = if first > second { first } else { second };
    if intl > 0 {
        return rest.without(intl);
    }
    let country = Packed::prefix(&plan.country_code);
    if country.len == 0 {
        return rest;
    }
    let national = rest.strip_len(&Packed::prefix(&plan.national_prefix));
    rest.without(national).after(&country)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn prefix(text: &str) -> DigitPrefix {
        DigitPrefix::from_str(text).unwrap()
    }

    fn plan(cc: &str, national: &str, intl: [&str; 2], tech: [&str; 2]) -> DialPlan {
        let maybe = |text: &str| DigitPrefix::from_str(text).unwrap_or_default();
        DialPlan {
            country_code: maybe(cc),
            national_prefix: maybe(national),
            international_prefixes: intl.map(maybe),
            tech_prefixes: tech.map(maybe),
            _reserved: [0; 2],
        }
    }

    fn uk() -> DialPlan {
        plan("44", "0", ["00", ""], ["", ""])
    }
    fn nanp() -> DialPlan {
        plan("1", "1", ["011", ""], ["9", ""])
    }
    fn de() -> DialPlan {
        plan("49", "0", ["00", ""], ["", ""])
    }
    fn fr() -> DialPlan {
        plan("33", "0", ["00", ""], ["", ""])
    }

    /// The digits dialled, or None for unparseable.
    fn dial(uri: &str, plan: &DialPlan) -> Option<String> {
        let bytes = uri.as_bytes();
        match dialled(&bytes, 0, plan) {
            Dialled::Number(number) => {
                assert!(
                    number.len > 0 && usize::from(number.len) <= MAX_DIGITS,
                    "{uri}"
                );
                Some(String::from_utf8(number.as_bytes().to_vec()).unwrap())
            }
            Dialled::Unparseable => None,
        }
    }

    #[track_caller]
    fn check(table: &[(&str, Option<&str>)], plan: &DialPlan) {
        for (uri, expected) in table {
            assert_eq!(dial(uri, plan).as_deref(), *expected, "{uri}");
        }
    }

    #[test]
    fn layout() {
        assert_eq!(core::mem::size_of::<DigitPrefix>(), 5);
        assert_eq!(core::mem::size_of::<DialPlan>(), 32);
        assert_eq!(core::mem::size_of::<Number>(), 17);
        assert_eq!(core::mem::align_of::<DialPlan>(), 1);
    }

    #[test]
    fn uk_every_notation() {
        let e164 = Some("442079460000");
        check(
            &[
                ("sip:+442079460000@example.com", e164),
                ("sip:%2B442079460000@example.com", e164),
                ("sip:%2b442079460000@example.com", e164),
                ("sip:00442079460000@example.com", e164),
                ("sip:02079460000@example.com", e164),
                ("sips:02079460000@example.com", e164),
                ("SIP:+442079460000@example.com", e164),
                ("Sips:+442079460000@example.com", e164),
                ("tel:+44-20-7946-0000", e164),
                ("TEL:+44.20.7946.0000;phone-context=example.com", e164),
                ("tel:020 7946 0000", Some("4420")),
                ("tel:(020)7946-0000>", e164),
                ("sip:+44(0)2079460000@h", Some("4402079460000")),
                ("sip:+44%2020%207946%200000@h", e164),
                ("sip:+442079460000@h;user=phone", e164),
                ("<sip:+442079460000@h;user=phone>", None),
                ("sip:+442079460000;isub=1@h;user=phone", e164),
                ("sip:+4420;isub=1@h", Some("4420")),
                ("sip:02079460000;phone-context=+44@h", e164),
                ("sip:0033123456789@h", Some("33123456789")),
                ("sip:0012125550100@h", Some("12125550100")),
                ("sip:2079460000@h", e164),
                ("sip:07700900123@h", Some("447700900123")),
            ],
            &uk(),
        );
    }

    #[test]
    fn nanp_every_notation() {
        let e164 = Some("12125550100");
        check(
            &[
                ("sip:+12125550100@h", e164),
                ("sip:12125550100@h", e164),
                ("sip:2125550100@h", e164),
                ("sip:1-212-555-0100@h", e164),
                ("sip:1(212)555.0100@h", e164),
                ("tel:+1-212-555-0100", e164),
                ("sip:011442079460000@h", Some("442079460000")),
                ("sip:9011441234@h", Some("441234")),
                ("sip:912125550100@h", e164),
                ("sip:92125550100@h", e164),
                ("sip:+18765550100@h", Some("18765550100")),
                ("sip:18765550100@h", Some("18765550100")),
                // A tech prefix with nothing after it is not one.
                ("sip:9@h", Some("19")),
            ],
            &nanp(),
        );
    }

    #[test]
    fn germany_and_france() {
        check(
            &[
                ("sip:004930123456@h", Some("4930123456")),
                ("sip:030123456@h", Some("4930123456")),
                ("sip:+4930123456@h", Some("4930123456")),
                ("sip:0033123456789@h", Some("33123456789")),
                ("sip:01701234567@h", Some("491701234567")),
            ],
            &de(),
        );
        check(
            &[
                ("sip:0123456789@h", Some("33123456789")),
                ("sip:+33123456789@h", Some("33123456789")),
                ("sip:0033123456789@h", Some("33123456789")),
                ("sip:+33-1-23-45-67-89@h", Some("33123456789")),
                ("sip:00442079460000@h", Some("442079460000")),
            ],
            &fr(),
        );
    }

    #[test]
    fn unparseable() {
        check(
            &[
                ("sip:alice@h", None),
                ("sip:h", None),
                ("sip:example.com", None),
                ("sip:10.0.0.1 SIP/2.0", None),
                ("sip:10.0.0.1:5060 SIP/2.0", None),
                ("sip:10.0.0.1;transport=udp SIP/2.0", None),
                ("sip:2125550100?subject=x@h", None),
                ("sip:2125550100>@h", None),
                ("sip:2125550100\r\n@h", None),
                ("sip:*98@h", None),
                ("sip:#31#2125550100@h", None),
                ("sip:%2398@h", None),
                ("sip:%31%32@h", None),
                ("sip:%41@h", None),
                ("sip:%2@h", None),
                ("sip:%zz@h", None),
                ("sip:12%", None),
                ("sip:1a2@h", None),
                ("sip:44+20@h", None),
                ("sip:++44@h", None),
                ("sip:(+44)20@h", None),
                ("sip:0%2B44@h", None),
                ("sip:+442079460000:secret@h", None),
                ("sip:@h", None),
                ("sip:+@h", None),
                ("sip:-.()@h", None),
                ("sip:;isub=1@h", None),
                ("sip:", None),
                ("tel:", None),
                ("tel:+", None),
                ("tel:12@", None),
                ("", None),
                ("http://2125550100@h", None),
                ("sipx:2125550100@h", None),
                ("si", None),
                ("sip 2125550100@h", None),
                ("im:2125550100@h", None),
                // Sixteen digits fit, seventeen do not.
                ("sip:+1234567890123456@h", Some("1234567890123456")),
                ("sip:+12345678901234567@h", None),
                ("tel:12345678901234567", None),
                // The end of the bytes: a sip user part needs its '@'; a tel number ends there.
                ("sip:+4420", None),
                ("sip:+4420;isub=1", None),
                ("tel:+4420", Some("4420")),
                ("tel:+44%2", None),
            ],
            &uk(),
        );
    }

    #[test]
    fn only_max_uri_bytes_are_read() {
        // The '@' as the last byte read, then one byte further.
        let user = "-".repeat(MAX_URI_BYTES - 4 - 5);
        let inside = std::format!("sip:{user}2125@h");
        assert_eq!(inside.find('@'), Some(MAX_URI_BYTES - 1));
        assert_eq!(dial(&inside, &nanp()).as_deref(), Some("12125"));
        let outside = std::format!("sip:-{user}2125@h");
        assert_eq!(dial(&outside, &nanp()), None);
        let tel = std::format!("tel:{}", "-".repeat(200));
        assert_eq!(dial(&tel, &nanp()), None);
    }

    #[test]
    fn reads_from_start_and_from_arrays() {
        let message = b"INVITE sip:+442079460000@h;user=phone SIP/2.0\r\nVia: x\r\n\r\n";
        let expected = Dialled::Number(Number::from_digits("442079460000").unwrap());
        assert_eq!(dialled(message, 7, &uk()), expected);
        let slice: &[u8] = message;
        assert_eq!(dialled(&slice, 7, &uk()), expected);
        assert_eq!(dialled(&slice, 6, &uk()), Dialled::Unparseable);
        assert_eq!(dialled(&slice, usize::MAX, &uk()), Dialled::Unparseable);
        assert_eq!(dialled(&slice, message.len(), &uk()), Dialled::Unparseable);
    }

    #[test]
    fn normalise_table() {
        let number = |text: &str| Number::from_digits(text).unwrap();
        let cases: &[(bool, &str, DialPlan, &str)] = &[
            (true, "442079460000", uk(), "442079460000"),
            (true, "0044", uk(), "0044"),
            (false, "02079460000", uk(), "442079460000"),
            (false, "0033123456789", uk(), "33123456789"),
            (false, "12125550100", nanp(), "12125550100"),
            (false, "2125550100", nanp(), "12125550100"),
            (false, "011442079460000", nanp(), "442079460000"),
            (false, "9011441234", nanp(), "441234"),
            // The longer international prefix wins whichever slot holds it.
            (
                false,
                "0011441234",
                plan("61", "0", ["00", "0011"], ["", ""]),
                "441234",
            ),
            (
                false,
                "0011441234",
                plan("61", "0", ["0011", "00"], ["", ""]),
                "441234",
            ),
            (
                false,
                "0044",
                plan("61", "0", ["0011", "00"], ["", ""]),
                "44",
            ),
            // Only the first tech prefix that matches is stripped.
            (
                false,
                "8912125550100",
                plan("1", "1", ["011", ""], ["8", "9"]),
                "1912125550100",
            ),
            (
                false,
                "912125550100",
                plan("1", "1", ["011", ""], ["8", "9"]),
                "12125550100",
            ),
            (
                false,
                "55512125550100",
                plan("1", "1", ["011", ""], ["555", ""]),
                "12125550100",
            ),
            // A prefix needs a digit after it.
            (false, "00", uk(), "440"),
            (false, "0", uk(), "440"),
            (false, "9", nanp(), "19"),
            // No country code: stripping only.
            (
                false,
                "02079460000",
                plan("", "0", ["00", ""], ["9", ""]),
                "02079460000",
            ),
            (
                false,
                "902079460000",
                plan("", "0", ["00", ""], ["9", ""]),
                "02079460000",
            ),
            (
                false,
                "900442079460000",
                plan("", "0", ["00", ""], ["9", ""]),
                "442079460000",
            ),
            (false, "02079460000", DialPlan::default(), "02079460000"),
            // Capped at MAX_DIGITS.
            (false, "01234567890123456", uk(), "4412345678901234"),
            (false, "1234567890123456", uk(), "4412345678901234"),
        ];
        for (international, digits, plan, expected) in cases {
            let Some(digits) = Number::from_digits(digits) else {
                // 17 digits: build it by hand.
                let mut long = Number {
                    len: MAX_DIGITS as u8,
                    digits: [0; MAX_DIGITS],
                };
                long.digits
                    .copy_from_slice(&digits.as_bytes()[..MAX_DIGITS]);
                let got = normalise_digits(*international, &long, plan);
                assert_eq!(got.as_bytes(), expected.as_bytes(), "{digits}");
                continue;
            };
            let got = normalise_digits(*international, &digits, plan);
            assert_eq!(got, number(expected), "{international} {digits:?}");
        }
    }

    #[test]
    fn malformed_plans_and_numbers() {
        // A prefix longer than 4 is not set; bytes that are not digits still give digits.
        let mut bad = uk();
        bad.country_code = DigitPrefix {
            len: 5,
            digits: *b"4444",
        };
        let digits = Number::from_digits("02079460000").unwrap();
        assert_eq!(normalise_digits(false, &digits, &bad), digits);
        assert_eq!(bad.country_code.as_bytes(), b"4444");
        bad.country_code = DigitPrefix {
            len: 2,
            digits: *b"x\xff00",
        };
        let out = normalise_digits(false, &digits, &bad);
        assert_eq!(out.len, 12);
        assert!(out.as_bytes().iter().all(u8::is_ascii_digit), "{out:?}");
        // A length beyond MAX_DIGITS reads MAX_DIGITS digits.
        let wide = Number {
            len: 200,
            digits: [b'1'; MAX_DIGITS],
        };
        assert_eq!(wide.as_bytes().len(), MAX_DIGITS);
        assert_eq!(
            normalise_digits(true, &wide, &uk()).as_bytes(),
            [b'1'; MAX_DIGITS]
        );
        assert_eq!(normalise_digits(false, &wide, &uk()).len, MAX_DIGITS as u8);
        // Digits after `len` are not read.
        let mut short = Number::from_digits("2079460000").unwrap();
        short.digits[12] = b'7';
        assert_eq!(
            normalise_digits(false, &short, &uk()).as_bytes(),
            b"442079460000"
        );
    }

    #[test]
    fn tables_follow_the_rules() {
        for byte in 0..=255u8 {
            let class = CLASSES[usize::from(byte)];
            assert_eq!(
                class == class::DIGIT || class == class::ZERO || class == class::TWO,
                byte.is_ascii_digit()
            );
        }
        for from in 0..16u8 {
            for class in 0..16u8 {
                let step = TRANSITIONS[usize::from(from) << 4 | usize::from(class)];
                assert_eq!(step & !(15 | TAKE | INTERNATIONAL), 0);
                if from >= state::DONE {
                    assert_eq!(step, from, "the end states hold");
                }
                if step & TAKE != 0 {
                    assert!(class <= class::TWO);
                }
            }
        }
    }

    #[test]
    fn prefixes_and_numbers_from_text() {
        assert_eq!(
            prefix("0"),
            DigitPrefix {
                len: 1,
                digits: [b'0', 0, 0, 0]
            }
        );
        assert_eq!(prefix("0011").as_bytes(), b"0011");
        for bad in ["", "00111", "+44", "4a", " 1", "١"] {
            assert_eq!(DigitPrefix::from_str(bad), None, "{bad:?}");
        }
        assert_eq!(
            Number::from_digits("1234567890123456")
                .unwrap()
                .as_bytes()
                .len(),
            16
        );
        assert_eq!(Number::from_digits("12345678901234567"), None);
        assert_eq!(Number::from_digits(""), None);
        assert_eq!(Number::from_digits("12-3"), None);
        assert_eq!(Number::default().as_bytes(), b"");
    }

    /// xorshift64*: deterministic, enough to stir the parser.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, bound: u64) -> usize {
            (self.next() % bound) as usize
        }
    }

    /// Plans of digits '0'..'2' (so that they match often), lengths 0..=6; with `junk`, any byte.
    fn random_plan(rng: &mut Rng, junk: bool) -> DialPlan {
        let mut prefix = || {
            let mut prefix = DigitPrefix {
                len: rng.below(7) as u8,
                digits: [0; 4],
            };
            for digit in &mut prefix.digits {
                *digit = if junk && rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    b'0' + rng.below(3) as u8
                };
            }
            prefix
        };
        DialPlan {
            country_code: prefix(),
            national_prefix: prefix(),
            international_prefixes: [prefix(), prefix()],
            tech_prefixes: [prefix(), prefix()],
            _reserved: [0; 2],
        }
    }

    #[track_caller]
    fn assert_canonical(number: &Number) {
        assert!(usize::from(number.len) <= MAX_DIGITS, "{number:?}");
        assert!(
            number.as_bytes().iter().all(u8::is_ascii_digit),
            "{number:?}"
        );
        assert!(
            number.digits[usize::from(number.len)..]
                .iter()
                .all(|&d| d == 0),
            "{number:?}"
        );
    }

    /// Random URIs (and random bytes) against [`reference`], 100,000 cases: same answers, and
    /// nothing panics (debug build: arithmetic overflow would).
    #[test]
    fn random_inputs_match_the_reference_and_never_panic() {
        const ALPHABET: &[u8] = b"0123456789012345+%2Bb0@;>? \r\n\0-.()aZ*#:";
        const SCHEMES: [&[u8]; 6] = [b"sip:", b"sips:", b"tel:", b"SIP:", b"TeL:", b""];
        let mut rng = Rng(0x5EED_CAFE_F00D_D1A1);
        let mut parsed = 0;
        for case in 0..100_000 {
            let junk = case % 8 == 0;
            let plan = random_plan(&mut rng, junk);
            let mut bytes: Vec<u8> = Vec::new();
            let lead = rng.below(4);
            bytes.extend((0..lead).map(|_| rng.next() as u8));
            let raw = case % 4 == 1;
            if !raw {
                bytes.extend_from_slice(SCHEMES[rng.below(SCHEMES.len() as u64)]);
            }
            for _ in 0..rng.below(130) {
                bytes.push(if raw {
                    rng.next() as u8
                } else {
                    ALPHABET[rng.below(ALPHABET.len() as u64)]
                });
            }
            let start = if rng.below(50) == 0 {
                usize::MAX - rng.below(3)
            } else {
                lead
            };
            let slice: &[u8] = &bytes;
            let got = match dialled(&slice, start, &plan) {
                Dialled::Number(number) => {
                    parsed += 1;
                    assert!(number.len > 0);
                    assert_canonical(&number);
                    Some(number.as_bytes().to_vec())
                }
                Dialled::Unparseable => None,
            };
            if !junk {
                let uri = bytes.get(start..).unwrap_or_default();
                assert_eq!(
                    got,
                    reference::dialled(uri, &plan),
                    "{:?} {plan:?}",
                    String::from_utf8_lossy(uri)
                );
            }

            let mut number = Number {
                len: rng.below(MAX_DIGITS as u64 + 1) as u8,
                digits: [0; MAX_DIGITS],
            };
            for digit in number.digits.iter_mut().take(usize::from(number.len)) {
                *digit = b'0' + rng.below(3) as u8;
            }
            let international = rng.below(4) == 0;
            let out = normalise_digits(international, &number, &plan);
            assert_canonical(&out);
            if !junk {
                let expected = reference::normalise(international, number.as_bytes(), &plan);
                assert_eq!(out.as_bytes(), expected, "{number:?} {plan:?}");
            }
            for digit in &mut number.digits {
                *digit = rng.next() as u8;
            }
            number.len = rng.next() as u8;
            assert_canonical(&normalise_digits(international, &number, &plan));
        }
        // The generator reaches the parser's success path, not only its rejections.
        assert!(parsed > 5000, "{parsed}");
    }

    /// The same rules written plainly, with std, for the table-driven parser to be checked against.
    mod reference {
        use super::super::{DialPlan, DigitPrefix, MAX_DIGITS, MAX_URI_BYTES};
        use std::vec::Vec;

        pub(super) fn dialled(uri: &[u8], plan: &DialPlan) -> Option<Vec<u8>> {
            // The bytes read: 0 after the end.
            let mut window: Vec<u8> = uri.iter().copied().take(MAX_URI_BYTES).collect();
            window.resize(MAX_URI_BYTES, 0);
            let lower: Vec<u8> = window.iter().map(u8::to_ascii_lowercase).collect();
            let (scheme, tel) = if lower.starts_with(b"sip:") {
                (4, false)
            } else if lower.starts_with(b"sips:") {
                (5, false)
            } else if lower.starts_with(b"tel:") {
                (4, true)
            } else {
                return None;
            };
            let rest = &window[scheme..];
            let ends = |byte: &u8| b" ?>\r\n\0".contains(byte);
            let digits = if tel {
                &rest[..rest.iter().position(|byte| ends(byte) || *byte == b';')?]
            } else {
                let user = &rest[..rest.iter().position(|&byte| byte == b'@')?];
                if user.iter().any(ends) {
                    return None;
                }
                &user[..user
                    .iter()
                    .position(|&byte| byte == b';')
                    .unwrap_or(user.len())]
            };
            let (international, mut digits) = match digits {
                [b'+', rest @ ..] => (true, rest),
                [b'%', b'2', b'B' | b'b', rest @ ..] => (true, rest),
                _ => (false, digits),
            };
            let mut number = Vec::new();
            loop {
                match digits {
                    [] => break,
                    [digit @ b'0'..=b'9', rest @ ..] => {
                        number.push(*digit);
                        digits = rest;
                    }
                    [b'-' | b'.' | b'(' | b')', rest @ ..] | [b'%', b'2', b'0', rest @ ..] => {
                        digits = rest;
                    }
                    _ => return None,
                }
            }
            if number.is_empty() || number.len() > MAX_DIGITS {
                return None;
            }
            Some(normalise(international, &number, plan))
        }

        pub(super) fn normalise(international: bool, digits: &[u8], plan: &DialPlan) -> Vec<u8> {
            let set = |prefix: &DigitPrefix| -> Option<Vec<u8>> {
                (1..=4)
                    .contains(&prefix.len)
                    .then(|| prefix.digits[..usize::from(prefix.len)].to_vec())
            };
            // A prefix that matches and leaves a digit.
            let strips = |digits: &[u8], prefix: &DigitPrefix| {
                set(prefix)
                    .filter(|prefix| digits.starts_with(prefix) && digits.len() > prefix.len())
                    .map(|prefix| prefix.len())
            };
            if international {
                return digits.to_vec();
            }
            let tech = plan
                .tech_prefixes
                .iter()
                .find_map(|prefix| strips(digits, prefix))
                .unwrap_or(0);
            let digits = &digits[tech..];
            if let Some(intl) = plan
                .international_prefixes
                .iter()
                .filter_map(|prefix| strips(digits, prefix))
                .max()
            {
                return digits[intl..].to_vec();
            }
            let Some(mut number) = set(&plan.country_code) else {
                return digits.to_vec();
            };
            number.extend_from_slice(&digits[strips(digits, &plan.national_prefix).unwrap_or(0)..]);
            number.truncate(MAX_DIGITS);
            number
        }
    }
}
