//! The SIP stages of the real XDP program under `BPF_PROG_TEST_RUN`: method budgets (stage 2),
//! scanner signatures (stage 3, the header scan), the INVITE destination firewall (stage 4).
//!
//! Every verdict is read back from the one counter slot that moved, and compared exactly. The
//! request budgets of these policies refill once an hour (`per = "1h"`), so a burst is exact
//! however slow the machine: nothing here depends on timing.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use sipguard::{events::EventRecord, sip_stats::SipStats};
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    frames::{Packet, TCP_ACK, TCP_PSH},
    harness::{TestFilter, Verdict, XDP_PASS, drain_events, drop, pass},
};

const SBC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SBC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// On the allowlist, class `carrier` (no method budgets).
const CARRIER4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const TRUNK_PORT: u16 = 5060;
const ACCESS_PORT: u16 = 5070;
const PHONE_PORT: u16 = 5062;

/// The method budgets of class `phones` in [`policy`]: REGISTER 5, INVITE 6, OPTIONS 2 back to
/// back, then one an hour.
const METHODS: &str = "register = { rate = 1, per = \"1h\", burst = 5 }, \
                       invite = { rate = 1, per = \"1h\", burst = 6 }, \
                       options = { rate = 1, per = \"1h\", burst = 2 }, \
                       other = { rate = 100, per = \"1h\", burst = 100 }";

/// Every SIP rule: method budgets for `phones` (`methods`), the built-in scanner signatures and
/// one of the policy's own, and the access zone's destination firewall with a UK dial plan.
fn policy(mode: &str, methods: &str, scanners_allowlisted: bool) -> String {
    format!(
        r#"
mode = "{mode}"
[trunk]
udp = [5060]
tcp = [5060]
[access]
udp = [5070]
tcp = [5070]
class = "phones"
new_sources = {{ rate = 1000, burst = 1000 }}
[bans]
threshold = 5
window = "10s"
ttl = "15m"
[events]
per_source = {{ rate = 1000, burst = 1000 }}
[classes]
carrier = {{ rate = 2000, burst = 4000 }}
phones = {{ rate = 1000, burst = 1000, methods = {{ {methods} }} }}
[scanners]
builtin = true
ban = true
allowlisted = {scanners_allowlisted}
[[scanners.signature]]
name = "acme-dialer"
prefix = "Acme Dialer"
from = true
[destination_budgets]
international = {{ rate = 2, per = "1h", burst = 3 }}
[access.dialplan]
country_code = "44"
national_prefix = "0"
international_prefixes = ["00"]
tech_prefixes = ["9"]
unparseable = "deny"
default = "allow"
[[access.destinations]]
name = "premium"
prefixes = ["449", "+4470", "881", "882"]
action = "deny"
[[access.destinations]]
name = "high-risk"
countries = ["CU", "SO"]
action = "deny"
[[access.destinations]]
name = "international"
prefixes = ["1", "2", "3", "5", "6", "7", "8", "9"]
action = "international"
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["198.18.1.0/24", "2001:db8:1::/48"]
"#
    )
}

fn standard() -> String {
    policy("enforce", METHODS, false)
}

/// The same zones, classes and lists without any SIP rule: stage 1 alone.
const NO_SIP_RULES: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
tcp = [5060]
[access]
udp = [5070]
tcp = [5070]
class = "phones"
new_sources = { rate = 1000, burst = 1000 }
[bans]
threshold = 5
window = "10s"
ttl = "15m"
[classes]
carrier = { rate = 2000, burst = 4000 }
phones = { rate = 1000, burst = 1000 }
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["198.18.1.0/24", "2001:db8:1::/48"]
"#;

// ------------------------------------------------------------------------------------------------
// SIP messages
// ------------------------------------------------------------------------------------------------

/// A SIP message as a phone or a scanner sends it: start line, headers, optional body; CRLF line
/// ends; Content-Length written last, from the body.
#[derive(Clone, Debug)]
struct Sip {
    start: String,
    headers: Vec<String>,
    body: String,
}

impl Sip {
    /// A request from the phone at 198.18.2.10 (Via, Max-Forwards, From with a tag, To without
    /// one, Call-ID, CSeq, Contact, User-Agent); an INVITE carries an SDP offer.
    fn request(method: &str, uri: &str) -> Sip {
        let mut headers = vec![
            "Via: SIP/2.0/UDP 198.18.2.10:5062;branch=z9hG4bK-524287-1---77ba7d1f;rport"
                .to_string(),
            "Max-Forwards: 70".to_string(),
            "From: \"Desk 1001\" <sip:1001@198.18.0.1>;tag=9fxced76sl".to_string(),
            format!("To: <{uri}>"),
            "Call-ID: 3848276298220188511@198.18.2.10".to_string(),
            format!("CSeq: 1 {method}"),
            "Contact: <sip:1001@198.18.2.10:5062;transport=udp>".to_string(),
            "User-Agent: Yealink SIP-T46U 108.86.0.20".to_string(),
        ];
        let mut body = String::new();
        if method == "INVITE" {
            headers.push("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY".to_string());
            headers.push("Content-Type: application/sdp".to_string());
            body = "v=0\r\n\
                    o=1001 20 20 IN IP4 198.18.2.10\r\n\
                    s=SDP data\r\n\
                    c=IN IP4 198.18.2.10\r\n\
                    t=0 0\r\n\
                    m=audio 11780 RTP/AVP 0 8 101\r\n\
                    a=rtpmap:101 telephone-event/8000\r\n\
                    a=sendrecv\r\n"
                .to_string();
        }
        Sip {
            start: format!("{method} {uri} SIP/2.0"),
            headers,
            body,
        }
    }

    /// A response to a REGISTER (To with the registrar's tag).
    fn response(status: &str) -> Sip {
        Sip {
            start: format!("SIP/2.0 {status}"),
            headers: vec![
                "Via: SIP/2.0/UDP 198.18.0.1:5070;branch=z9hG4bK-d8754z-1;received=198.18.0.1"
                    .to_string(),
                "From: <sip:1001@198.18.0.1>;tag=9fxced76sl".to_string(),
                "To: <sip:1001@198.18.0.1>;tag=as5b2e0e5c".to_string(),
                "Call-ID: 3848276298220188511@198.18.2.10".to_string(),
                "CSeq: 2 REGISTER".to_string(),
                "User-Agent: Yealink SIP-T46U 108.86.0.20".to_string(),
            ],
            body: String::new(),
        }
    }

    /// Replaces the header named `name` (case-insensitive, the part before ':') with `line`;
    /// drops it when `line` is empty.
    fn set(mut self, name: &str, line: &str) -> Sip {
        let at = self
            .headers
            .iter()
            .position(|header| {
                header
                    .split(':')
                    .next()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
            })
            .unwrap_or_else(|| panic!("no {name} header"));
        if line.is_empty() {
            self.headers.remove(at);
        } else {
            self.headers[at] = line.to_string();
        }
        self
    }

    /// Inserts `line` as header number `index` (0: right after the start line).
    fn insert(mut self, index: usize, line: &str) -> Sip {
        self.headers.insert(index, line.to_string());
        self
    }

    /// Appends the header `line` (before Content-Length, which is always last).
    fn header(mut self, line: &str) -> Sip {
        self.headers.push(line.to_string());
        self
    }

    /// Offset of the first byte of the header line starting with `prefix`.
    fn offset_of(&self, prefix: &str) -> usize {
        let text = String::from_utf8(self.bytes()).unwrap();
        text.find(&format!("\r\n{prefix}"))
            .unwrap_or_else(|| panic!("no line {prefix:?}"))
            + 2
    }

    fn bytes(&self) -> Vec<u8> {
        let mut text = format!("{}\r\n", self.start);
        for header in &self.headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        text.push_str(&self.body);
        text.into_bytes()
    }
}

fn options() -> Sip {
    Sip::request("OPTIONS", "sip:198.18.0.1")
}

fn register() -> Sip {
    Sip::request("REGISTER", "sip:198.18.0.1")
}

fn invite(uri: &str) -> Sip {
    Sip::request("INVITE", uri)
}

/// A UDP datagram from `src` to the access port.
fn access(src: Ipv4Addr, sip: &Sip) -> Vec<u8> {
    Packet::udp4(src, SBC4, PHONE_PORT, ACCESS_PORT, sip.bytes()).build()
}

/// A UDP datagram from `src` to the trunk port.
fn trunk(src: Ipv4Addr, sip: &Sip) -> Vec<u8> {
    Packet::udp4(src, SBC4, PHONE_PORT, TRUNK_PORT, sip.bytes()).build()
}

/// A phone on no list, in the access zone: 198.18.`net`.`host`.
fn phone(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, net, host)
}

fn admitted() -> Verdict {
    pass(Zone::Access, Reason::AccessAdmitted)
}

fn access_drop(reason: Reason) -> Verdict {
    drop(Zone::Access, reason)
}

#[track_caller]
fn expect(filter: &mut TestFilter, frame: &[u8], expected: Verdict, what: &str) {
    assert_eq!(filter.run(frame), expected, "{what}");
}

/// `burst` copies of `frame` admitted, then one limited by its method budget.
#[track_caller]
fn expect_method_burst(filter: &mut TestFilter, frame: &[u8], burst: usize, what: &str) {
    for n in 1..=burst {
        expect(filter, frame, admitted(), &format!("{what} {n} of {burst}"));
    }
    expect(
        filter,
        frame,
        access_drop(Reason::MethodRateLimited),
        &format!("{what} {} of {burst}: over budget", burst + 1),
    );
}

fn sip_stats(filter: &TestFilter) -> SipStats {
    SipStats::read(&filter.loaded.state).expect("read the SIP counters")
}

/// (zone, verdict, country) -> INVITEs.
fn destinations(stats: &SipStats) -> BTreeMap<(String, String, String), u64> {
    stats
        .destinations
        .iter()
        .map(|(zone, verdict, country, count)| {
            (
                (zone.to_string(), verdict.to_string(), country.to_string()),
                *count,
            )
        })
        .collect()
}

fn by_name(counts: &[(String, u64)]) -> BTreeMap<String, u64> {
    counts.iter().cloned().collect()
}

fn events_from(events: &[EventRecord], src: IpAddr) -> Vec<&EventRecord> {
    events
        .iter()
        .filter(|event| event.src == Some(src))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// 1. Method budgets
// ------------------------------------------------------------------------------------------------

#[test]
fn method_budgets_are_per_method_class_and_source_and_responses_are_free() {
    let mut filter = TestFilter::new(&standard());
    let a = phone(2, 1);
    // REGISTER: burst 5.
    expect_method_burst(&mut filter, &access(a, &register()), 5, "REGISTER");
    // INVITE: burst 6, its own budget (to a number the destination rules allow).
    let call = invite("sip:02079460000@198.18.0.1");
    expect_method_burst(&mut filter, &access(a, &call), 6, "INVITE");
    // OPTIONS: burst 2.
    expect_method_burst(&mut filter, &access(a, &options()), 2, "OPTIONS");
    // Responses spend no method budget, even with every request budget spent.
    for status in ["200 OK", "401 Unauthorized", "100 Trying", "180 Ringing"] {
        for n in 1..=5 {
            expect(
                &mut filter,
                &access(a, &Sip::response(status)),
                admitted(),
                &format!("response {status} #{n}"),
            );
        }
    }
    // Another source has budgets of its own.
    let b = phone(2, 2);
    expect_method_burst(
        &mut filter,
        &access(b, &register()),
        5,
        "source b: REGISTER",
    );
    // An allowlisted carrier (class carrier: no method budgets) is never limited by method,
    // on the trunk or on the access port.
    for method in ["REGISTER", "OPTIONS", "SUBSCRIBE", "BYE"] {
        let request = Sip::request(method, "sip:198.18.0.1");
        for n in 1..=12 {
            expect(
                &mut filter,
                &trunk(CARRIER4, &request),
                pass(Zone::Trunk, Reason::Allowlisted),
                &format!("carrier {method} #{n} on the trunk"),
            );
            expect(
                &mut filter,
                &access(CARRIER4, &request),
                pass(Zone::Access, Reason::Allowlisted),
                &format!("carrier {method} #{n} on the access port"),
            );
        }
    }
    let stats = filter.stats();
    assert_eq!(
        stats
            .get(Zone::Access, Reason::MethodRateLimited, false)
            .packets,
        4,
        "a: REGISTER, INVITE, OPTIONS; b: REGISTER"
    );
    assert_eq!(stats.get(Zone::Access, Reason::Banned, false).packets, 0);
    // Method-limited drops are reported with the method.
    let events = drain_events(&filter.target);
    let methods: Vec<(Option<&str>, &str)> = events_from(&events, a.into())
        .iter()
        .map(|e| (e.sip_method.as_deref(), e.reason.as_str()))
        .collect();
    assert_eq!(
        methods,
        [
            (Some("REGISTER"), "method_rate_limited"),
            (Some("INVITE"), "method_rate_limited"),
            (Some("OPTIONS"), "method_rate_limited"),
        ]
    );
}

#[test]
fn method_limited_drops_in_the_access_zone_are_strikes_towards_a_ban() {
    let mut filter = TestFilter::new(&standard());
    let c = phone(3, 1);
    for n in 1..=5 {
        expect(
            &mut filter,
            &access(c, &register()),
            admitted(),
            &format!("REGISTER {n} of 5"),
        );
    }
    // [bans] threshold = 5: the 5th method-limited drop bans the source.
    for strike in 1..=5 {
        expect(
            &mut filter,
            &access(c, &register()),
            access_drop(Reason::MethodRateLimited),
            &format!("over-budget REGISTER, strike {strike}"),
        );
    }
    // Banned now, whatever it sends: stage 1 drops it before any SIP stage.
    expect(
        &mut filter,
        &access(c, &Sip::response("200 OK")),
        access_drop(Reason::Banned),
        "a response after the ban",
    );
    expect(
        &mut filter,
        &access(c, &options()),
        access_drop(Reason::Banned),
        "an OPTIONS (budget left) after the ban",
    );
    // Four strikes do not ban.
    let d = phone(3, 2);
    for _ in 0..5 {
        expect(
            &mut filter,
            &access(d, &register()),
            admitted(),
            "d: REGISTER",
        );
    }
    for strike in 1..=4 {
        expect(
            &mut filter,
            &access(d, &register()),
            access_drop(Reason::MethodRateLimited),
            &format!("d: strike {strike}"),
        );
    }
    expect(
        &mut filter,
        &access(d, &options()),
        admitted(),
        "d: 4 strikes, not banned",
    );
    // An allowlisted source is never limited by method, so never banned by it either: its
    // class has no method budgets.
    for _ in 0..20 {
        expect(
            &mut filter,
            &access(CARRIER4, &register()),
            pass(Zone::Access, Reason::Allowlisted),
            "carrier REGISTER",
        );
    }
}

#[test]
fn every_method_token_spends_its_own_class_budget() {
    // Every budget a single request, so a probe of each class after one request shows which
    // budget it spent.
    let methods = "register = { rate = 1, per = \"1h\", burst = 1 }, \
                   invite = { rate = 1, per = \"1h\", burst = 1 }, \
                   options = { rate = 1, per = \"1h\", burst = 1 }, \
                   other = { rate = 1, per = \"1h\", burst = 1 }";
    let mut filter = TestFilter::new(&policy("enforce", methods, false));
    // The probes: one request of each budget.
    let probes = [
        ("register", Sip::request("REGISTER", "sip:198.18.0.1")),
        ("invite", invite("sip:02079460000@198.18.0.1")),
        ("options", Sip::request("OPTIONS", "sip:198.18.0.1")),
        ("other", Sip::request("BYE", "sip:1001@198.18.0.1")),
    ];
    let tokens = [
        ("REGISTER", "register"),
        ("INVITE", "invite"),
        ("OPTIONS", "options"),
        ("ACK", "other"),
        ("BYE", "other"),
        ("CANCEL", "other"),
        ("SUBSCRIBE", "other"),
        ("NOTIFY", "other"),
        ("MESSAGE", "other"),
        ("INFO", "other"),
        ("PRACK", "other"),
        ("PUBLISH", "other"),
        ("REFER", "other"),
        ("UPDATE", "other"),
    ];
    for (index, (token, budget)) in tokens.iter().enumerate() {
        let src = phone(4, index as u8 + 1);
        let uri = if *token == "INVITE" {
            "sip:02079460000@198.18.0.1"
        } else {
            "sip:1001@198.18.0.1"
        };
        expect(
            &mut filter,
            &access(src, &Sip::request(token, uri)),
            admitted(),
            &format!("the first {token}"),
        );
        for (probe_budget, probe) in &probes {
            let expected = if probe_budget == budget {
                access_drop(Reason::MethodRateLimited)
            } else {
                admitted()
            };
            expect(
                &mut filter,
                &access(src, probe),
                expected,
                &format!("after one {token}: a request of the {probe_budget} budget"),
            );
        }
    }
    // Unknown tokens and lower case (methods are case-sensitive) are not requests of any
    // budget; nor is a response.
    let src = phone(4, 100);
    for start in [
        "FOO sip:198.18.0.1 SIP/2.0",
        "invite sip:02079460000@198.18.0.1 SIP/2.0",
        "REGISTERX sip:198.18.0.1 SIP/2.0",
        "SIP/2.0 200 OK",
    ] {
        let mut message = register();
        message.start = start.to_string();
        for n in 1..=3 {
            expect(
                &mut filter,
                &access(src, &message),
                admitted(),
                &format!("{start:?} #{n}"),
            );
        }
    }
    assert_eq!(
        filter
            .stats()
            .get(Zone::Access, Reason::MethodRateLimited, false)
            .packets,
        tokens.len() as u64
    );
}

// ------------------------------------------------------------------------------------------------
// 2. Scanner signatures
// ------------------------------------------------------------------------------------------------

/// `sip` from a fresh source: dropped as `Scanner`, and the source is banned (a benign
/// REGISTER next: `Banned`).
#[track_caller]
fn expect_scanner_banned(filter: &mut TestFilter, src: Ipv4Addr, sip: &Sip, what: &str) {
    expect(
        filter,
        &access(src, sip),
        access_drop(Reason::Scanner),
        what,
    );
    expect(
        filter,
        &access(src, &register()),
        access_drop(Reason::Banned),
        &format!("{what}: the next benign request of the source"),
    );
}

#[track_caller]
fn expect_benign(filter: &mut TestFilter, src: Ipv4Addr, sip: &Sip, what: &str) {
    expect(filter, &access(src, sip), admitted(), what);
    expect(
        filter,
        &access(src, &register()),
        admitted(),
        &format!("{what}: not banned"),
    );
}

/// `sip` with a padding header (`X-Pad: ppp...`) inserted before header number `index`, so
/// long that the header at `index` then starts at byte `target` of the message.
fn pad_before(sip: Sip, index: usize, target: usize) -> Sip {
    let start = sip.offset_of(&sip.headers[index]);
    // "X-Pad: " + value + CRLF moves what follows by value + 9 bytes.
    assert!(start + 9 < target, "room for the padding");
    let value = "p".repeat(target - start - 9);
    sip.insert(index, &format!("X-Pad: {value}"))
}

#[test]
fn scanner_signatures_match_user_agent_and_from_in_every_spelling_and_ban() {
    let mut filter = TestFilter::new(&standard());
    let mut host = 0u8;
    let mut next = || {
        host += 1;
        phone(5, host)
    };
    let ua = |value: &str| options().set("User-Agent", value);
    let from = |line: &str| options().set("From", line);
    let scanners = [
        (
            "friendly-scanner",
            ua("User-Agent: friendly-scanner"),
            "UA friendly-scanner",
        ),
        (
            "friendly-scanner",
            ua("USER-AGENT: Friendly-Scanner"),
            "upper-case header name, mixed-case value",
        ),
        (
            "friendly-scanner",
            ua("user-agent:FRIENDLY-scanner"),
            "lower-case name, no blank after the colon",
        ),
        (
            "sipvicious",
            ua("User-Agent  : sipvicious"),
            "blanks before the colon",
        ),
        (
            "sipvicious",
            ua("User-Agent:\tsipvicious-0.3.4"),
            "a tab after the colon, longer value",
        ),
        (
            "sipvicious",
            from("From: \"sipvicious\" <sip:100@1.1.1.1>;tag=3133"),
            "quoted From display name",
        ),
        (
            "sipvicious",
            from("From: sipvicious <sip:100@1.1.1.1>;tag=3133"),
            "unquoted From display name",
        ),
        (
            "sipvicious",
            from("f: \"sipvicious\" <sip:100@1.1.1.1>;tag=3133"),
            "compact From (f:)",
        ),
        (
            "acme-dialer",
            ua("User-Agent: Acme Dialer 3.1 (build 77)"),
            "the policy's own signature in User-Agent",
        ),
        (
            "acme-dialer",
            from("From: \"ACME DIALER\" <sip:7000@198.18.0.1>;tag=1"),
            "the policy's own signature in the From display name",
        ),
        ("sipcli", ua("User-Agent: sipcli/v1.8"), "sipcli"),
        ("sippts", ua("User-Agent: sippts"), "sippts, case folded"),
    ];
    let mut expected_hits: BTreeMap<String, u64> = BTreeMap::new();
    for (name, sip, what) in &scanners {
        expect_scanner_banned(&mut filter, next(), sip, what);
        *expected_hits.entry(name.to_string()).or_default() += 1;
    }
    // Other methods, and a scanner's INVITE to a premium number: the signature decides first.
    for (method, uri) in [
        ("REGISTER", "sip:198.18.0.1"),
        ("INVITE", "sip:100@198.18.0.1"),
        ("INVITE", "sip:+881612345678@198.18.0.1"),
    ] {
        let sip = Sip::request(method, uri).set("User-Agent", "User-Agent: friendly-scanner");
        expect_scanner_banned(&mut filter, next(), &sip, &format!("{method} {uri}"));
        *expected_hits.entry("friendly-scanner".into()).or_default() += 1;
    }
    // Where the User-Agent is: the first header, right after the first header, after 20
    // headers, just inside the 2048-byte scan bound.
    let first = options()
        .set("User-Agent", "")
        .insert(0, "User-Agent: friendly-scanner");
    expect_scanner_banned(
        &mut filter,
        next(),
        &first,
        "User-Agent as the first header",
    );
    let early = options()
        .set("User-Agent", "")
        .insert(1, "User-Agent: friendly-scanner");
    expect_scanner_banned(&mut filter, next(), &early, "User-Agent after 1 header");
    let mut late = options().set("User-Agent", "");
    for n in 0..13 {
        late = late.header(&format!("Record-Route: <sip:198.18.0.{}:5060;lr>", n + 2));
    }
    late = late.header("User-Agent: friendly-scanner");
    assert_eq!(late.headers.len(), 21, "20 headers before the User-Agent");
    expect_scanner_banned(&mut filter, next(), &late, "User-Agent after 20 headers");
    let last = options().headers.len() - 1;
    let inside = pad_before(options(), last, 2000);
    assert_eq!(inside.offset_of("User-Agent"), 2000);
    expect_scanner_banned(
        &mut filter,
        next(),
        &inside.set("User-Agent", "User-Agent: friendly-scanner"),
        "User-Agent at byte 2000",
    );
    *expected_hits.entry("friendly-scanner".into()).or_default() += 4;

    // Benign: other agents, prefixes of a signature, a sipcli display name (sipcli is a
    // User-Agent signature only).
    for (sip, what) in [
        (
            ua("User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)"),
            "Linphone",
        ),
        (
            ua("User-Agent: friendly"),
            "shorter than the signature 'friendly-scanner'",
        ),
        (ua("User-Agent: Acme"), "shorter than 'Acme Dialer'"),
        (
            ua("User-Agent: my friendly-scanner"),
            "the signature not at the start",
        ),
        (
            ua("X-User-Agent: friendly-scanner"),
            "another header ending in User-Agent",
        ),
        (
            from("From: \"sipcli\" <sip:100@198.18.0.1>;tag=1"),
            "sipcli is not a From signature",
        ),
        (
            from("From: \"Alice\" <sip:alice@198.18.0.1>;tag=1"),
            "an ordinary display name",
        ),
        (
            from("From: <sip:sipvicious@198.18.0.1>;tag=1"),
            "a signature in the From URI, not its display name",
        ),
        (
            Sip {
                body: "User-Agent: friendly-scanner\r\n".to_string(),
                ..Sip::request("MESSAGE", "sip:1002@198.18.0.1").header("Content-Type: text/plain")
            },
            "a header line in the body is not a header",
        ),
    ] {
        expect_benign(&mut filter, next(), &sip, what);
    }
    // Beyond the bound: the User-Agent line starts after byte 2048 of the payload.
    let beyond =
        pad_before(options(), last, 2100).set("User-Agent", "User-Agent: friendly-scanner");
    assert_eq!(beyond.offset_of("User-Agent"), 2100);
    expect_benign(
        &mut filter,
        next(),
        &beyond,
        "a header beyond the 2048-byte scan bound is not seen",
    );

    // Allowlisted sources are exempt (allowlisted = false): no drop, no ban, no count.
    let scanner = ua("User-Agent: friendly-scanner");
    for n in 1..=3 {
        expect(
            &mut filter,
            &trunk(CARRIER4, &scanner),
            pass(Zone::Trunk, Reason::Allowlisted),
            &format!("allowlisted scanner on the trunk #{n}"),
        );
        expect(
            &mut filter,
            &access(CARRIER4, &scanner),
            pass(Zone::Access, Reason::Allowlisted),
            &format!("allowlisted scanner on the access port #{n}"),
        );
    }

    let stats = sip_stats(&filter);
    assert_eq!(by_name(&stats.signatures), expected_hits);
    let total: u64 = expected_hits.values().sum();
    let counters = filter.stats();
    assert_eq!(
        counters.get(Zone::Access, Reason::Scanner, false).packets,
        total
    );
    assert_eq!(
        counters.get(Zone::Access, Reason::Banned, false).packets,
        total,
        "each scanner's next request"
    );
    // The drop event names the signature.
    let events = drain_events(&filter.target);
    let first = events_from(&events, phone(5, 1).into());
    assert_eq!(first.len(), 2, "the scanner drop and the banned request");
    assert_eq!(first[0].reason, "scanner");
    assert_eq!(first[0].rule.as_deref(), Some("friendly-scanner"));
    assert_eq!(first[0].sip_method.as_deref(), Some("OPTIONS"));
    assert_eq!(first[0].number, None);
    assert_eq!(first[1].reason, "banned");
    let acme = events_from(&events, phone(5, 10).into());
    assert_eq!(acme[0].rule.as_deref(), Some("acme-dialer"));
}

#[test]
fn allowlisted_scanners_are_dropped_but_not_banned_when_the_policy_says_so() {
    let mut filter = TestFilter::new(&policy("enforce", METHODS, true));
    let scanner = options().set("User-Agent", "User-Agent: friendly-scanner");
    expect(
        &mut filter,
        &trunk(CARRIER4, &scanner),
        drop(Zone::Trunk, Reason::Scanner),
        "allowlisted scanner on the trunk",
    );
    expect(
        &mut filter,
        &trunk(CARRIER4, &options()),
        pass(Zone::Trunk, Reason::Allowlisted),
        "its next benign request: not banned",
    );
    expect(
        &mut filter,
        &access(CARRIER4, &scanner),
        drop(Zone::Access, Reason::Scanner),
        "allowlisted scanner on the access port",
    );
    expect(
        &mut filter,
        &access(CARRIER4, &options()),
        pass(Zone::Access, Reason::Allowlisted),
        "still not banned",
    );
    // Sources on no list are banned as before.
    expect_scanner_banned(&mut filter, phone(6, 1), &scanner, "unknown source");
    let stats = sip_stats(&filter);
    assert_eq!(
        by_name(&stats.signatures),
        BTreeMap::from([("friendly-scanner".to_string(), 3)])
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Destination firewall
// ------------------------------------------------------------------------------------------------

/// What an INVITE's destination should give.
struct Case {
    uri: &'static str,
    verdict: Verdict,
    /// The normalised number in the drop event.
    number: Option<&'static str>,
    /// The rule counted (and named in the drop event).
    rule: &'static str,
    /// (verdict, country) in SipStats.destinations.
    stat: (&'static str, &'static str),
}

#[test]
fn invite_destinations_are_judged_in_every_notation() {
    let mut filter = TestFilter::new(&standard());
    let denied = access_drop(Reason::DestinationDenied);
    let unparseable = access_drop(Reason::DestinationUnparseable);
    let premium = "881612345678";
    let uk_premium = "449012345678";
    let cases = [
        Case {
            uri: "sip:+881612345678@198.18.0.1",
            verdict: denied,
            number: Some(premium),
            rule: "premium",
            stat: ("denied", "XX"),
        },
        Case {
            uri: "sip:00881612345678@198.18.0.1",
            verdict: denied,
            number: Some(premium),
            rule: "premium",
            stat: ("denied", "XX"),
        },
        Case {
            uri: "sip:%2B881612345678@198.18.0.1",
            verdict: denied,
            number: Some(premium),
            rule: "premium",
            stat: ("denied", "XX"),
        },
        Case {
            uri: "tel:+881-6123-45678",
            verdict: denied,
            number: Some(premium),
            rule: "premium",
            stat: ("denied", "XX"),
        },
        Case {
            uri: "sips:+881612345678@198.18.0.1;transport=tls",
            verdict: denied,
            number: Some(premium),
            rule: "premium",
            stat: ("denied", "XX"),
        },
        Case {
            uri: "sip:+88212345678@198.18.0.1",
            verdict: denied,
            number: Some("88212345678"),
            rule: "premium",
            stat: ("denied", "XX"),
        },
        Case {
            uri: "sip:09012345678@198.18.0.1",
            verdict: denied,
            number: Some(uk_premium),
            rule: "premium",
            stat: ("denied", "GB"),
        },
        Case {
            uri: "sip:909012345678@198.18.0.1",
            verdict: denied,
            number: Some(uk_premium),
            rule: "premium",
            stat: ("denied", "GB"),
        },
        Case {
            uri: "sip:07012345678@198.18.0.1",
            verdict: denied,
            number: Some("447012345678"),
            rule: "premium",
            stat: ("denied", "GB"),
        },
        Case {
            uri: "sip:+44-20-7946-0000@198.18.0.1;user=phone",
            verdict: admitted(),
            number: None,
            rule: "access-default",
            stat: ("allowed", "GB"),
        },
        Case {
            uri: "sip:02079460000@198.18.0.1",
            verdict: admitted(),
            number: None,
            rule: "access-default",
            stat: ("allowed", "GB"),
        },
        Case {
            uri: "sip:alice@198.18.0.1",
            verdict: unparseable,
            number: None,
            rule: "access-unparseable",
            stat: ("unparseable", "ZZ"),
        },
        Case {
            uri: "sip:198.18.0.1",
            verdict: unparseable,
            number: None,
            rule: "access-unparseable",
            stat: ("unparseable", "ZZ"),
        },
        Case {
            uri: "sip:*98@198.18.0.1",
            verdict: unparseable,
            number: None,
            rule: "access-unparseable",
            stat: ("unparseable", "ZZ"),
        },
        Case {
            uri: "sip:+5372345678@198.18.0.1",
            verdict: denied,
            number: Some("5372345678"),
            rule: "high-risk",
            stat: ("denied", "CU"),
        },
        Case {
            uri: "sip:00252612345678@198.18.0.1",
            verdict: denied,
            number: Some("252612345678"),
            rule: "high-risk",
            stat: ("denied", "SO"),
        },
        Case {
            uri: "sip:+12125550100@198.18.0.1",
            verdict: admitted(),
            number: None,
            rule: "international",
            stat: ("allowed", "US"),
        },
    ];
    let mut expected_stats: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut expected_rules: BTreeMap<String, u64> = BTreeMap::new();
    for (index, case) in cases.iter().enumerate() {
        // A source of its own for each: no method or destination budget in the way.
        let src = phone(7, index as u8 + 1);
        expect(
            &mut filter,
            &access(src, &invite(case.uri)),
            case.verdict,
            case.uri,
        );
        *expected_stats
            .entry((
                "access".into(),
                case.stat.0.to_string(),
                case.stat.1.to_string(),
            ))
            .or_default() += 1;
        *expected_rules.entry(case.rule.to_string()).or_default() += 1;
    }
    let events = drain_events(&filter.target);
    for (index, case) in cases.iter().enumerate() {
        let src = phone(7, index as u8 + 1);
        let mine = events_from(&events, src.into());
        if case.verdict.passed() {
            assert!(mine.is_empty(), "{}: no event for a pass", case.uri);
            continue;
        }
        assert_eq!(mine.len(), 1, "{}: one event", case.uri);
        let event = mine[0];
        let reason = if case.verdict.reason == Reason::DestinationDenied {
            "destination_denied"
        } else {
            "destination_unparseable"
        };
        assert_eq!(event.reason, reason, "{}", case.uri);
        assert_eq!(event.number.as_deref(), case.number, "{}", case.uri);
        assert_eq!(event.rule.as_deref(), Some(case.rule), "{}", case.uri);
        assert_eq!(event.sip_method.as_deref(), Some("INVITE"), "{}", case.uri);
    }

    // The international budget: 3 INVITEs (in any notation) per source, then rate limited.
    let x = phone(8, 1);
    for (n, uri) in [
        "sip:+12125550100@198.18.0.1",
        "sip:0012125550100@198.18.0.1",
        "tel:+1-212-555-0100",
    ]
    .iter()
    .enumerate()
    {
        expect(
            &mut filter,
            &access(x, &invite(uri)),
            admitted(),
            &format!("international call {} of 3: {uri}", n + 1),
        );
    }
    expect(
        &mut filter,
        &access(x, &invite("sip:+12125550100@198.18.0.1")),
        access_drop(Reason::DestinationRateLimited),
        "the 4th international call",
    );
    // The budget is international calls only: a national call still passes.
    expect(
        &mut filter,
        &access(x, &invite("sip:02079460000@198.18.0.1")),
        admitted(),
        "a national call after the international budget is spent",
    );
    let y = phone(8, 2);
    expect(
        &mut filter,
        &access(y, &invite("sip:+12125550100@198.18.0.1")),
        admitted(),
        "another source: a budget of its own",
    );
    *expected_stats
        .entry(("access".into(), "allowed".into(), "US".into()))
        .or_default() += 4;
    *expected_stats
        .entry(("access".into(), "rate_limited".into(), "US".into()))
        .or_default() += 1;
    *expected_stats
        .entry(("access".into(), "allowed".into(), "GB".into()))
        .or_default() += 1;
    *expected_rules.entry("international".into()).or_default() += 5;
    *expected_rules.entry("access-default".into()).or_default() += 1;
    let events = drain_events(&filter.target);
    let limited = events_from(&events, x.into());
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].reason, "destination_rate_limited");
    assert_eq!(limited[0].rule.as_deref(), Some("international"));
    assert_eq!(limited[0].number.as_deref(), Some("12125550100"));

    // Inside a dialog (a To tag): not judged again, not counted.
    let z = phone(8, 3);
    for to in [
        "To: <sip:+881612345678@198.18.0.1>;tag=abc",
        "t: <sip:+881612345678@198.18.0.1>;tag=a6c85cf",
        "To: \"Premium\" <sip:+881612345678@198.18.0.1>;user=phone;TAG=x1",
    ] {
        let reinvite = invite("sip:+881612345678@198.18.0.1").set("To", to);
        expect(
            &mut filter,
            &access(z, &reinvite),
            admitted(),
            &format!("in-dialog INVITE ({to})"),
        );
    }
    // A To header with parameters but no tag is the start of a dialog.
    let w = phone(8, 4);
    expect(
        &mut filter,
        &access(
            w,
            &invite("sip:+881612345678@198.18.0.1")
                .set("To", "To: <sip:+881612345678@198.18.0.1>;user=phone"),
        ),
        denied,
        "To with parameters, no tag",
    );
    *expected_stats
        .entry(("access".into(), "denied".into(), "XX".into()))
        .or_default() += 1;
    *expected_rules.entry("premium".into()).or_default() += 1;
    // Requests other than INVITE are not judged by destination.
    let v = phone(8, 5);
    for method in ["OPTIONS", "MESSAGE", "SUBSCRIBE", "REFER"] {
        expect(
            &mut filter,
            &access(v, &Sip::request(method, "sip:+881612345678@198.18.0.1")),
            admitted(),
            &format!("{method} to a premium number"),
        );
    }
    // Nor is the trunk, which has no destination rules.
    expect(
        &mut filter,
        &trunk(CARRIER4, &invite("sip:+881612345678@198.18.0.1")),
        pass(Zone::Trunk, Reason::Allowlisted),
        "a premium INVITE on the trunk",
    );

    let stats = sip_stats(&filter);
    assert_eq!(destinations(&stats), expected_stats);
    assert_eq!(by_name(&stats.rules), expected_rules);
}

#[test]
fn only_a_tag_parameter_of_the_to_header_makes_an_invite_in_dialog() {
    let mut filter = TestFilter::new(&standard());
    // A `;tag=` inside the To URI's angle brackets (a URI parameter) or inside its display
    // name is not the header's tag (RFC 3261 20.39, 25.1): a proxy routes such an INVITE as a
    // new call, so the destination firewall must judge it.
    for (host, to) in [
        (1, "To: <sip:+881612345678@198.18.0.1;tag=abc>"),
        (2, "To: \"x;tag=1\" <sip:+881612345678@198.18.0.1>"),
    ] {
        let call = invite("sip:+881612345678@198.18.0.1").set("To", to);
        expect(
            &mut filter,
            &access(phone(12, host), &call),
            access_drop(Reason::DestinationDenied),
            to,
        );
    }
}

// ------------------------------------------------------------------------------------------------
// 4. Other framings
// ------------------------------------------------------------------------------------------------

#[test]
fn premium_invites_are_denied_over_ipv6_vlans_and_tcp() {
    let mut filter = TestFilter::new(&standard());
    let call = invite("sip:+881612345678@198.18.0.1");
    let denied = access_drop(Reason::DestinationDenied);
    let v6: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
    let frames = [
        (
            "udp6",
            Packet::udp6(v6, SBC6, PHONE_PORT, ACCESS_PORT, call.bytes()).build(),
        ),
        (
            "udp4 in VLAN 100",
            Packet::udp4(phone(9, 1), SBC4, PHONE_PORT, ACCESS_PORT, call.bytes())
                .with_vlan(100)
                .build(),
        ),
        (
            "udp4 in QinQ 200/300",
            Packet::udp4(phone(9, 2), SBC4, PHONE_PORT, ACCESS_PORT, call.bytes())
                .with_qinq(200, 300)
                .build(),
        ),
        (
            "udp6 in VLAN 100",
            Packet::udp6(
                "2001:db8:3::10".parse().unwrap(),
                SBC6,
                PHONE_PORT,
                ACCESS_PORT,
                call.bytes(),
            )
            .with_vlan(100)
            .build(),
        ),
        (
            "tcp4 segment beginning the INVITE",
            Packet::tcp4(phone(9, 3), SBC4, 40_000, ACCESS_PORT, call.bytes())
                .with_tcp_flags(TCP_PSH | TCP_ACK)
                .build(),
        ),
        (
            "tcp6 segment beginning the INVITE",
            Packet::tcp6(
                "2001:db8:4::10".parse().unwrap(),
                SBC6,
                40_000,
                ACCESS_PORT,
                call.bytes(),
            )
            .with_tcp_flags(TCP_PSH | TCP_ACK)
            .build(),
        ),
    ];
    for (what, frame) in &frames {
        expect(&mut filter, frame, denied, what);
    }
    // A TCP segment continuing a message is not SIP at its start: not judged.
    let bytes = call.bytes();
    let middle = bytes.len() / 2;
    expect(
        &mut filter,
        &Packet::tcp4(
            phone(9, 4),
            SBC4,
            40_000,
            ACCESS_PORT,
            bytes[middle..].to_vec(),
        )
        .with_tcp_flags(TCP_PSH | TCP_ACK)
        .build(),
        admitted(),
        "the second half of an INVITE in its own segment",
    );
    let events = drain_events(&filter.target);
    let numbers: Vec<(Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| (e.number.as_deref(), e.rule.as_deref()))
        .collect();
    assert_eq!(
        numbers,
        vec![(Some("881612345678"), Some("premium")); frames.len()]
    );
}

#[test]
fn crlf_before_the_start_line_of_a_tcp_segment_does_not_hide_the_invite() {
    // RFC 3261 7.5: over a stream transport, CRLFs before the start line are ignored (they
    // are also the RFC 5626 keep-alive, so a segment may begin with one before a request). A
    // proxy routes this INVITE; the filter must judge it too.
    let mut filter = TestFilter::new(&standard());
    let mut payload = b"\r\n\r\n".to_vec();
    payload.extend_from_slice(&invite("sip:+881612345678@198.18.0.1").bytes());
    expect(
        &mut filter,
        &Packet::tcp4(phone(13, 1), SBC4, 40_000, ACCESS_PORT, payload)
            .with_tcp_flags(TCP_PSH | TCP_ACK)
            .build(),
        access_drop(Reason::DestinationDenied),
        "CRLF CRLF, then a premium INVITE, in one TCP segment",
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Monitor mode, 6. no SIP rules
// ------------------------------------------------------------------------------------------------

#[test]
fn monitor_mode_counts_sip_drops_and_passes_them() {
    let mut filter = TestFilter::new(&policy("monitor", METHODS, false));
    let would = |reason| Verdict {
        action: XDP_PASS,
        zone: Zone::Access,
        reason,
        monitored: true,
    };
    expect(
        &mut filter,
        &access(phone(10, 1), &invite("sip:+881612345678@198.18.0.1")),
        would(Reason::DestinationDenied),
        "premium INVITE",
    );
    expect(
        &mut filter,
        &access(phone(10, 2), &invite("sip:alice@198.18.0.1")),
        would(Reason::DestinationUnparseable),
        "unparseable INVITE",
    );
    let src = phone(10, 3);
    for _ in 0..5 {
        expect(
            &mut filter,
            &access(src, &register()),
            admitted(),
            "REGISTER",
        );
    }
    expect(
        &mut filter,
        &access(src, &register()),
        would(Reason::MethodRateLimited),
        "the 6th REGISTER",
    );
    // A scanner: would be dropped, and would be banned.
    let scanner = phone(10, 4);
    expect(
        &mut filter,
        &access(
            scanner,
            &options().set("User-Agent", "User-Agent: friendly-scanner"),
        ),
        would(Reason::Scanner),
        "scanner",
    );
    expect(
        &mut filter,
        &access(scanner, &register()),
        would(Reason::Banned),
        "the scanner's next request: a would-be ban",
    );
    let stats = filter.stats();
    assert_eq!(stats.dropped.packets, 0, "nothing dropped in monitor mode");
    let events = drain_events(&filter.target);
    let premium = events_from(&events, phone(10, 1).into());
    assert_eq!(premium.len(), 1);
    assert_eq!(premium[0].outcome, "would_drop");
    assert_eq!(premium[0].reason, "destination_denied");
    assert_eq!(premium[0].number.as_deref(), Some("881612345678"));
    assert_eq!(premium[0].rule.as_deref(), Some("premium"));
}

#[test]
fn without_sip_rules_the_same_packets_pass_on_stage_one_alone() {
    let mut filter = TestFilter::new(NO_SIP_RULES);
    let src = phone(11, 1);
    let messages = [
        invite("sip:+881612345678@198.18.0.1"),
        invite("sip:alice@198.18.0.1"),
        invite("sip:+12125550100@198.18.0.1"),
        options().set("User-Agent", "User-Agent: friendly-scanner"),
        options().set("From", "From: \"sipvicious\" <sip:100@1.1.1.1>;tag=1"),
        register(),
        Sip::response("200 OK"),
    ];
    for round in 1..=8 {
        for sip in &messages {
            expect(
                &mut filter,
                &access(src, sip),
                admitted(),
                &format!("round {round}: {}", sip.start),
            );
            expect(
                &mut filter,
                &trunk(CARRIER4, sip),
                pass(Zone::Trunk, Reason::Allowlisted),
                &format!("carrier, round {round}: {}", sip.start),
            );
        }
    }
    assert_eq!(sip_stats(&filter), SipStats::default());
    assert_eq!(filter.stats().dropped.packets, 0);
}

/// A runtime allow entry of a class with method budgets brings the SIP stage to a zone that had
/// none (the policy's own entries are routed by `apply`).
#[test]
fn a_runtime_allow_entry_with_method_budgets_is_budgeted_at_once() {
    let policy = r#"
mode = "enforce"
[trunk]
udp = [5060]
[classes.pbx]
rate = 1000
burst = 1000
[classes.pbx.methods]
invite = { rate = 1, per = "1h", burst = 1 }
"#;
    let mut filter = TestFilter::new(policy);
    let pbx = Ipv4Addr::new(198, 18, 7, 7);
    {
        let state = &filter.loaded.state;
        let flags = state
            .policy(state.active_generation().unwrap())
            .unwrap()
            .header
            .flags;
        assert_eq!(
            flags & sipguard_common::abi::policy_flags::SIP_TRUNK,
            0,
            "no entry uses the class yet: the trunk keeps stage 1's fast path"
        );
    }
    filter
        .live()
        .add_entries(
            sipguard::state::List::Allow,
            &[sipguard::policy::Prefix::V4 {
                len: 32,
                addr: pbx.octets(),
            }],
            Some("pbx"),
        )
        .unwrap();
    let call = invite("sip:+442079460000@198.18.0.1");
    expect(
        &mut filter,
        &trunk(pbx, &call),
        pass(Zone::Trunk, Reason::Allowlisted),
        "the first INVITE",
    );
    expect(
        &mut filter,
        &trunk(pbx, &call),
        drop(Zone::Trunk, Reason::MethodRateLimited),
        "the second INVITE within the hour",
    );
}
