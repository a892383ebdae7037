//! The egress programs (`sipguard_egress` -> `sipguard_answer` -> `sipguard_feedback`) under
//! `BPF_PROG_TEST_RUN` on crafted answers of the SBC: auth-failure strikes and bans, verified
//! sources, and what the XDP judge then does with both. Failures are read back from `SG_AUTH`,
//! bans from `SG_BANS`, verifications from `SG_VERIFIED`: exact counts, no timing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions};
use sipguard_common::abi::{AuthState, BanReason, Reason, VerifiedSource, Zone, answer_stat};
use sipguard_tests::{
    answers::{auth_of, ban_reason_of, failures_of, verified_of},
    frames::{Packet, TCP_ACK, TCP_PSH},
    harness::{TestFilter, drain_events, drop, pass},
};

const SBC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SBC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PHONE4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
const CRACKER4: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 12);
const CARRIER4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const ACCESS_PORT: u16 = 5070;
const TRUNK_PORT: u16 = 5060;
const CLIENT_PORT: u16 = 5062;
const TC_ACT_OK: i32 = 0;

/// Auth failures ban at the 4th; verified sources get class `registered`, whose INVITEs are
/// budgeted per hour; unknown sources are banned after 5 over-budget packets.
fn policy(extra: &str) -> String {
    format!(
        r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
tcp = [5070]
class = "phones"
new_sources = {{ rate = 1000, burst = 1000 }}
[bans]
threshold = 5
window = "1h"
ttl = "15m"
[events]
per_source = {{ rate = 1000, burst = 1000 }}
[classes]
carrier = {{ rate = 2000, burst = 4000 }}
phones = {{ rate = 1, burst = 5 }}
registered = {{ rate = 1, burst = 5, methods = {{ invite = {{ rate = 1, per = "1h", burst = 2 }} }} }}
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["198.18.1.0/24"]
{extra}
"#
    )
}

const FEEDBACK: &str = r#"
[auth_failures]
threshold = 4
window = "1h"
ttl = "1h"
grace = "0s"
[verified]
class = "registered"
max_lifetime = "1h"
default_lifetime = "10m"
"#;

/// A response of the SBC with `status` (e.g. `401 Unauthorized`) and a CSeq header line.
fn answer(status: &str, cseq: &str, extra: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 {status}\r\n\
         Via: SIP/2.0/UDP 198.18.2.10:5062;branch=z9hG4bK-1;rport=5062\r\n\
         From: <sip:1001@sbc.lab>;tag=a1\r\n\
         To: <sip:1001@sbc.lab>;tag=b2\r\n\
         Call-ID: c1@198.18.2.10\r\n\
         {cseq}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn challenge(method: &str) -> Vec<u8> {
    let header = if method == "INVITE" {
        "Proxy-Authenticate: Digest realm=\"sbc.lab\", nonce=\"abc,def\", qop=\"auth\"\r\n"
    } else {
        "WWW-Authenticate: Digest realm=\"sbc.lab\", nonce=\"abc,def\", qop=\"auth\"\r\n"
    };
    let status = if method == "INVITE" {
        "407 Proxy Authentication Required"
    } else {
        "401 Unauthorized"
    };
    answer(status, &format!("CSeq: 2 {method}"), header)
}

/// The SBC's answer to the client at `client`, from the access port.
fn to4(client: Ipv4Addr, payload: Vec<u8>) -> Vec<u8> {
    Packet::udp4(SBC4, client, ACCESS_PORT, CLIENT_PORT, payload).build()
}

struct Feedback {
    filter: TestFilter,
}

impl Feedback {
    fn new(policy: &str) -> Feedback {
        Feedback {
            filter: TestFilter::new(policy),
        }
    }

    /// Runs the egress entry on an outgoing frame, `repeat` times.
    fn send(&mut self, frame: &[u8], repeat: u32) {
        assert_eq!(
            self.filter.run_egress(frame, repeat),
            TC_ACT_OK,
            "every answer leaves"
        );
    }

    fn auth(&self, addr: IpAddr) -> Option<AuthState> {
        auth_of(&self.filter.loaded.state, addr)
    }

    fn failures(&self, addr: IpAddr) -> u32 {
        failures_of(&self.filter.loaded.state, addr)
    }

    fn ban_reason(&self, addr: IpAddr) -> Option<BanReason> {
        ban_reason_of(&self.filter.loaded.state, addr)
    }

    fn verified(&self, addr: IpAddr) -> Option<VerifiedSource> {
        verified_of(&self.filter.loaded.state, addr)
    }

    fn stat(&self, slot: u32) -> u64 {
        self.filter
            .loaded
            .state
            .answer_stats()
            .expect("read SG_ANSWERS")[slot as usize]
    }
}

fn v4(addr: Ipv4Addr) -> IpAddr {
    IpAddr::V4(addr)
}

#[test]
fn a_digest_exchange_never_counts_and_unanswered_challenges_ban() {
    let mut sbc = Feedback::new(&policy(FEEDBACK));
    let phone = v4(PHONE4);
    // REGISTER, 401, REGISTER with credentials, 200: nothing counts, twice over.
    for _ in 0..2 {
        sbc.send(&to4(PHONE4, challenge("REGISTER")), 1);
        sbc.send(
            &to4(
                PHONE4,
                answer(
                    "200 OK",
                    "CSeq: 3 REGISTER",
                    "Contact: <sip:1001@198.18.2.10:5062>;expires=120\r\n",
                ),
            ),
            1,
        );
        assert_eq!(sbc.failures(phone), 0);
    }
    // The same for a call: 407, then the call proceeds (100 Trying) and is answered.
    sbc.send(&to4(PHONE4, challenge("INVITE")), 1);
    sbc.send(&to4(PHONE4, answer("100 Trying", "CSeq: 3 INVITE", "")), 1);
    sbc.send(&to4(PHONE4, challenge("INVITE")), 1);
    sbc.send(
        &to4(PHONE4, answer("486 Busy Here", "CSeq: 3 INVITE", "")),
        1,
    );
    assert_eq!(
        sbc.failures(phone),
        0,
        "an unanswered call after its 100 is no failure"
    );
    assert_eq!(sbc.ban_reason(phone), None);
    assert_eq!(sbc.stat(answer_stat::CHALLENGES), 4);
    assert_eq!(sbc.stat(answer_stat::SUCCESSES), 3);

    // svcrack against Kamailio: a challenge per guess, never a success. The first opens the
    // exchange; each further one is a failure; the 4th failure bans.
    let cracker = v4(CRACKER4);
    for guess in 1..=4 {
        sbc.send(&to4(CRACKER4, challenge("REGISTER")), 1);
        assert_eq!(sbc.failures(cracker), guess - 1, "after guess {guess}");
        assert_eq!(sbc.ban_reason(cracker), None);
    }
    sbc.send(&to4(CRACKER4, challenge("REGISTER")), 1);
    assert_eq!(sbc.ban_reason(cracker), Some(BanReason::AuthFailures));
    assert_eq!(
        sbc.failures(cracker),
        0,
        "the count starts over after a ban"
    );
    assert_eq!(sbc.stat(answer_stat::BANS), 1);
    let events = drain_events(&sbc.filter.target);
    let ban_event = events
        .iter()
        .find(|event| event.reason == Reason::AuthFailures.name())
        .unwrap_or_else(|| panic!("an auth_failures event among {events:?}"));
    assert_eq!(ban_event.src, Some(v4(CRACKER4)));
    // Ingress: the cracker's next REGISTER is dropped as banned; the phone still passes.
    let register = |src: Ipv4Addr| {
        Packet::udp4(
            src,
            SBC4,
            CLIENT_PORT,
            ACCESS_PORT,
            b"REGISTER sip:sbc.lab SIP/2.0\r\n\r\n".to_vec(),
        )
        .build()
    };
    assert_eq!(
        sbc.filter.run(&register(CRACKER4)),
        drop(Zone::Access, Reason::Banned)
    );
    assert_eq!(
        sbc.filter.run(&register(PHONE4)),
        pass(Zone::Access, Reason::Verified)
    );
}

#[test]
fn refusals_count_and_other_answers_do_not() {
    let mut sbc = Feedback::new(&policy(FEEDBACK));
    let cracker = v4(CRACKER4);
    sbc.send(
        &to4(CRACKER4, answer("403 Forbidden", "CSeq: 1 INVITE", "")),
        3,
    );
    assert_eq!(
        sbc.failures(cracker),
        3,
        "each 403 to an INVITE is a failure"
    );
    for (status, cseq) in [
        ("403 Forbidden", "CSeq: 1 OPTIONS"),
        ("403 Forbidden", "CSeq: 1 SUBSCRIBE"),
        ("401 Unauthorized", "CSeq: 1 MESSAGE"),
        ("404 Not Found", "CSeq: 1 REGISTER"),
        ("483 Too Many Hops", "CSeq: 1 INVITE"),
        ("500 Server Error", "CSeq: 1 REGISTER"),
    ] {
        sbc.send(&to4(CRACKER4, answer(status, cseq, "")), 5);
        assert_eq!(sbc.failures(cracker), 3, "{status} to {cseq}");
    }
    sbc.send(
        &to4(CRACKER4, answer("403 Forbidden", "CSeq: 1 REGISTER", "")),
        1,
    );
    assert_eq!(sbc.ban_reason(cracker), Some(BanReason::AuthFailures));
}

#[test]
fn cseq_variants_compact_headers_ipv6_vlan_and_tcp_count_alike() {
    let mut sbc = Feedback::new(&policy(
        &FEEDBACK.replace("threshold = 4", "threshold = 1000"),
    ));
    let cracker = v4(CRACKER4);
    // Header name case and blanks, compact forms of the other headers.
    for cseq in ["CSeq: 7 REGISTER", "cseq:7 REGISTER", "CSEQ :\t7  REGISTER"] {
        let compact = format!(
            "SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/UDP 198.18.3.12:5062;branch=z9hG4bK-2\r\n\
             f: <sip:100@sbc.lab>;tag=x\r\nt: <sip:100@sbc.lab>;tag=y\r\ni: abc\r\n{cseq}\r\n\
             WWW-Authenticate: Digest realm=\"sbc.lab\", nonce=\"n\"\r\nl: 0\r\n\r\n"
        );
        sbc.send(&to4(CRACKER4, compact.into_bytes()), 1);
    }
    assert_eq!(
        sbc.failures(cracker),
        2,
        "three challenges: one opens, two fail"
    );

    // A VLAN-tagged frame and a TCP segment that begins the answer.
    sbc.send(
        &Packet::udp4(
            SBC4,
            CRACKER4,
            ACCESS_PORT,
            CLIENT_PORT,
            challenge("REGISTER"),
        )
        .with_vlan(100)
        .build(),
        1,
    );
    sbc.send(
        &Packet::tcp4(SBC4, CRACKER4, ACCESS_PORT, 40_000, challenge("REGISTER"))
            .with_tcp_flags(TCP_ACK | TCP_PSH)
            .build(),
        1,
    );
    assert_eq!(sbc.failures(cracker), 4);

    // IPv6: two addresses of one /64 are one client.
    let a = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 5);
    let b = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 6);
    for client in [a, b, a] {
        sbc.send(
            &Packet::udp6(SBC6, client, ACCESS_PORT, CLIENT_PORT, challenge("INVITE")).build(),
            1,
        );
    }
    assert_eq!(sbc.failures(IpAddr::V6(a)), 2);
    assert_eq!(sbc.failures(IpAddr::V6(b)), 2, "the same /64");
}

#[test]
fn malformed_answers_never_strike() {
    let mut sbc = Feedback::new(&policy(FEEDBACK));
    let cracker = v4(CRACKER4);
    let garbage: Vec<Vec<u8>> = vec![
        b"SIP/2.0 401".to_vec(),
        b"SIP/2.0 4O1 Unauthorized\r\nCSeq: 1 REGISTER\r\n\r\n".to_vec(),
        b"SIP/2.1 401 Unauthorized\r\nCSeq: 1 REGISTER\r\n\r\n".to_vec(),
        b"SIP/2.0 401 Unauthorized\r\nVia: x\r\n\r\n".to_vec(),
        b"SIP/2.0 403 Forbidden\r\nCSeq: REGISTER\r\n\r\n".to_vec(),
        b"SIP/2.0 403 Forbidden\r\nCSeq: 1 REGISTERX\r\n\r\n".to_vec(),
        b"SIP/2.0 403 Forbidden\r\nCSeq: 1 REGISTER\r\nCSeq: 2 INVITE\r\n\r\n".to_vec(),
        b"SIP/2.0 403 Forbidden\r\nSubject: x\r\n CSeq: 1 INVITE\r\n\r\n".to_vec(),
        b"REGISTER sip:sbc.lab SIP/2.0\r\nCSeq: 1 REGISTER\r\n\r\n".to_vec(),
        vec![0xff; 600],
        Vec::new(),
    ];
    for payload in &garbage {
        sbc.send(&to4(CRACKER4, payload.clone()), 10);
    }
    // The same answers from a trunk port are not the access zone's.
    sbc.send(
        &Packet::udp4(
            SBC4,
            CRACKER4,
            TRUNK_PORT,
            CLIENT_PORT,
            answer("403 Forbidden", "CSeq: 1 INVITE", ""),
        )
        .build(),
        10,
    );
    assert_eq!(sbc.failures(cracker), 0);
    assert_eq!(
        sbc.auth(cracker),
        None,
        "no state for a client of malformed answers"
    );
    assert_eq!(sbc.ban_reason(cracker), None);
    assert!(
        sbc.stat(answer_stat::MALFORMED) >= 40,
        "counted as malformed"
    );
}

#[test]
fn allowlisted_clients_are_never_struck() {
    let mut sbc = Feedback::new(&policy(FEEDBACK));
    sbc.send(
        &to4(CARRIER4, answer("403 Forbidden", "CSeq: 1 INVITE", "")),
        20,
    );
    assert_eq!(sbc.auth(v4(CARRIER4)), None);
    assert_eq!(sbc.ban_reason(v4(CARRIER4)), None);
}

#[test]
fn a_200_to_register_verifies_for_its_expires_capped_and_expires_0_unverifies() {
    let mut sbc = Feedback::new(&policy(FEEDBACK));
    let phone = v4(PHONE4);
    let ok = |contact: &str| answer("200 OK", "CSeq: 3 REGISTER", contact);
    sbc.send(
        &to4(
            PHONE4,
            ok("Contact: <sip:1001@198.18.2.10:5062>;expires=120\r\n"),
        ),
        1,
    );
    let entry = sbc.verified(phone).expect("verified");
    assert_eq!(entry.expires_at_ns - entry.refreshed_at_ns, 120_000_000_000);
    assert_eq!(entry.registrations, 1);
    // A re-registration refreshes; an Expires beyond the cap is capped (1h).
    sbc.send(
        &to4(
            PHONE4,
            ok("m: <sip:1001@198.18.2.10:5062>;expires=86400\r\n"),
        ),
        1,
    );
    let entry = sbc.verified(phone).expect("still verified");
    assert_eq!(
        entry.expires_at_ns - entry.refreshed_at_ns,
        3_600_000_000_000
    );
    assert_eq!(entry.registrations, 2);
    // No Expires at all: the policy's default.
    sbc.send(&to4(PHONE4, ok("")), 1);
    let entry = sbc.verified(phone).expect("still verified");
    assert_eq!(entry.expires_at_ns - entry.refreshed_at_ns, 600_000_000_000);
    // A 200 to an INVITE or OPTIONS verifies nobody; expires 0 unverifies.
    sbc.send(
        &to4(
            CRACKER4,
            answer(
                "200 OK",
                "CSeq: 3 INVITE",
                "Contact: <sip:x@y>;expires=60\r\n",
            ),
        ),
        1,
    );
    sbc.send(
        &to4(
            CRACKER4,
            answer("200 OK", "CSeq: 3 OPTIONS", "Expires: 60\r\n"),
        ),
        1,
    );
    assert_eq!(sbc.verified(v4(CRACKER4)), None);
    sbc.send(
        &to4(
            PHONE4,
            ok("Contact: <sip:1001@198.18.2.10:5062>;expires=0\r\n"),
        ),
        1,
    );
    assert_eq!(sbc.verified(phone), None);
    assert_eq!(sbc.stat(answer_stat::UNVERIFICATIONS), 1);
}

#[test]
fn verified_sources_keep_their_own_budget_and_are_never_banned_for_rate() {
    let mut sbc = Feedback::new(&policy(FEEDBACK));
    let phone = v4(PHONE4);
    sbc.send(
        &to4(
            PHONE4,
            answer(
                "200 OK",
                "CSeq: 3 REGISTER",
                "Contact: <sip:1001@198.18.2.10:5062>;expires=600\r\n",
            ),
        ),
        1,
    );
    let options = |src: Ipv4Addr| {
        Packet::udp4(
            src,
            SBC4,
            CLIENT_PORT,
            ACCESS_PORT,
            b"OPTIONS sip:sbc.lab SIP/2.0\r\n\r\n".to_vec(),
        )
        .build()
    };
    // 200 back to back against a budget of 5 (1/s): far over it, yet never a strike.
    sbc.filter.run_repeated(&options(PHONE4), 200);
    let stats = sbc.filter.stats();
    let admitted = stats.get(Zone::Access, Reason::Verified, false).packets;
    let limited = stats
        .get(Zone::Access, Reason::VerifiedRateLimited, false)
        .packets;
    assert_eq!(admitted + limited, 200);
    assert!(limited >= 150, "over its budget: {limited} of 200 limited");
    assert_eq!(
        sbc.ban_reason(phone),
        None,
        "verified: never banned for rate"
    );
    // An unknown source doing the same is banned (threshold 5).
    sbc.filter.run_repeated(&options(CRACKER4), 200);
    assert_eq!(sbc.ban_reason(v4(CRACKER4)), Some(BanReason::RateExceeded));

    // The verified class's method budgets apply (2 INVITEs an hour), again without strikes.
    let invite = Packet::udp4(
        PHONE4,
        SBC4,
        CLIENT_PORT,
        ACCESS_PORT,
        b"INVITE sip:+15550100@sbc.lab SIP/2.0\r\n\r\n".to_vec(),
    )
    .build();
    let mut fresh = Feedback::new(&policy(FEEDBACK));
    fresh.send(
        &to4(
            PHONE4,
            answer("200 OK", "CSeq: 3 REGISTER", "Expires: 600\r\n"),
        ),
        1,
    );
    assert_eq!(
        fresh.filter.run(&invite),
        pass(Zone::Access, Reason::Verified)
    );
    assert_eq!(
        fresh.filter.run(&invite),
        pass(Zone::Access, Reason::Verified)
    );
    assert_eq!(
        fresh.filter.run(&invite),
        drop(Zone::Access, Reason::MethodRateLimited)
    );
    assert_eq!(fresh.ban_reason(phone), None);
}

#[test]
fn with_the_feature_off_answers_change_nothing() {
    let off = "[auth_failures]\nthreshold = 0\n[verified]\nenabled = false\n";
    let mut sbc = Feedback::new(&policy(off));
    sbc.send(&to4(CRACKER4, challenge("REGISTER")), 50);
    sbc.send(
        &to4(
            PHONE4,
            answer("200 OK", "CSeq: 3 REGISTER", "Expires: 600\r\n"),
        ),
        1,
    );
    assert_eq!(sbc.auth(v4(CRACKER4)), None);
    assert_eq!(sbc.verified(v4(PHONE4)), None);
    assert_eq!(
        sbc.stat(answer_stat::CHALLENGES),
        0,
        "the entry returns at once"
    );
    assert_eq!(sbc.stat(answer_stat::SUCCESSES), 0);
}

/// Answers to one client leaving on two CPUs at once: every failure counts (compare-and-swap
/// on one word), none is lost or doubled.
#[test]
fn failures_are_exact_across_two_cpus() {
    let cpus = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(2);
    let per_cpu: u32 = 20_000;
    let sbc = Feedback::new(&policy(
        &FEEDBACK.replace("threshold = 4", "threshold = 1000000"),
    ));
    let frame = to4(CRACKER4, answer("403 Forbidden", "CSeq: 1 INVITE", ""));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(cpus));
    let threads: Vec<_> = (0..cpus)
        .map(|cpu| {
            let frame = frame.clone();
            let target = sbc.filter.target.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let _pinned = sipguard_tests::lab::Pinned::to(cpu);
                let mut loaded = sipguard::dataplane::load(&target, None, None).expect("load");
                barrier.wait();
                loaded
                    .egress()
                    .test_run(TestRunOptions {
                        data_in: Some(&frame),
                        repeat: per_cpu,
                        ..TestRunOptions::default()
                    })
                    .expect("test_run");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    assert_eq!(sbc.failures(v4(CRACKER4)), per_cpu * cpus as u32);
    assert_eq!(
        sbc.stat(answer_stat::FAILURES),
        u64::from(per_cpu) * cpus as u64
    );
}

/// With the shipped defaults (threshold 10): a phone that mistypes its password once collects
/// one failure, and its next success clears it.
#[test]
fn a_phone_that_mistypes_once_is_never_banned_with_the_defaults() {
    let mut sbc = Feedback::new(&policy(""));
    let phone = v4(PHONE4);
    let ok = answer("200 OK", "CSeq: 4 REGISTER", "Expires: 300\r\n");
    sbc.send(&to4(PHONE4, challenge("REGISTER")), 1);
    sbc.send(&to4(PHONE4, challenge("REGISTER")), 1);
    assert_eq!(sbc.failures(phone), 1, "the wrong password");
    sbc.send(&to4(PHONE4, ok), 1);
    assert_eq!(sbc.failures(phone), 0, "the right one clears it");
    assert_eq!(sbc.ban_reason(phone), None);
    assert!(sbc.verified(phone).is_some());
}

/// Phones behind one address (an office) re-registering at once: challenges to a verified
/// client within the grace of the first are no failures; an unverified client has no grace.
#[test]
fn verified_clients_have_a_grace_for_simultaneous_challenges() {
    let mut sbc = Feedback::new(&policy(
        "[auth_failures]\nthreshold = 100\nwindow = \"1h\"\ngrace = \"1h\"\n",
    ));
    let office = v4(PHONE4);
    sbc.send(
        &to4(
            PHONE4,
            answer("200 OK", "CSeq: 3 REGISTER", "Expires: 600\r\n"),
        ),
        1,
    );
    sbc.send(&to4(PHONE4, challenge("REGISTER")), 20);
    assert_eq!(sbc.failures(office), 0, "twenty phones challenged at once");
    sbc.send(&to4(CRACKER4, challenge("REGISTER")), 20);
    assert_eq!(sbc.failures(v4(CRACKER4)), 19);
}
