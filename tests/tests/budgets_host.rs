//! Rate budgets, zones and bans decided by the shared logic on a synthetic clock (no kernel):
//! the exact behaviour the XDP program implements, step by step in time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sipguard::policy::Policy;
use sipguard_common::{
    abi::{Reason, Zone},
    budget::NANOS,
};
use sipguard_tests::{
    frames::{Packet, sip_options_request},
    harness::Verdict,
    model::Model,
};

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
new_sources = { rate = 10, burst = 5 }
[bans]
threshold = 3
window = "10s"
ttl = "60s"
[classes]
phones = { rate = 2, burst = 4 }
carrier = { rate = 100, burst = 10 }
[[allow]]
class = "carrier"
cidrs = ["192.0.2.0/24", "2001:db8:1::/48"]
[[allow]]
name = "sbc-b, no budget"
cidrs = ["192.0.2.200"]
[[deny]]
cidrs = ["203.0.113.0/24"]
"#;

const SBC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn model() -> Model {
    Model::new(&Policy::parse(POLICY, "budgets.toml").unwrap())
}

fn frame(src: IpAddr, dport: u16) -> Vec<u8> {
    let dst: IpAddr = match src {
        IpAddr::V4(_) => SBC.into(),
        IpAddr::V6(_) => "2001:db8:ff::1".parse().unwrap(),
    };
    let payload = sip_options_request(
        SocketAddr::new(src, 5060),
        SocketAddr::new(dst, dport),
        "UDP",
    );
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Packet::udp4(s, d, 5060, dport, payload).build(),
        (IpAddr::V6(s), IpAddr::V6(d)) => Packet::udp6(s, d, 5060, dport, payload).build(),
        _ => unreachable!(),
    }
}

fn reasons(model: &Model, frame: &[u8], count: usize) -> Vec<Reason> {
    (0..count).map(|_| model.verdict(frame).reason).collect()
}

#[test]
fn an_unknown_access_source_gets_its_burst_then_its_rate_then_a_ban_that_expires() {
    let model = model();
    let phone = frame("198.18.5.5".parse().unwrap(), 5070);
    use Reason::*;
    // Burst of 4, then 3 over-budget packets reach the ban threshold.
    assert_eq!(
        reasons(&model, &phone, 9),
        [
            AccessAdmitted,
            AccessAdmitted,
            AccessAdmitted,
            AccessAdmitted,
            RateLimited,
            RateLimited,
            RateLimited,
            Banned,
            Banned
        ]
    );
    let ban = *model.bans.borrow().values().next().unwrap();
    assert_eq!(ban.strikes, 3);
    assert_eq!(ban.hits, 2);
    assert_eq!(ban.expires_at_ns - ban.banned_at_ns, 60 * NANOS);
    // Still banned just before the TTL, free right after it, with a refilled burst.
    model.advance(60 * NANOS - 1);
    assert_eq!(model.verdict(&phone).reason, Banned);
    model.advance(1);
    assert_eq!(
        reasons(&model, &phone, 5),
        [
            AccessAdmitted,
            AccessAdmitted,
            AccessAdmitted,
            AccessAdmitted,
            RateLimited
        ]
    );
    assert!(model.bans.borrow().is_empty(), "an expired ban is removed");
}

#[test]
fn the_rate_refills_the_budget_over_time() {
    let model = model();
    // A carrier source (100/s, burst 10): peers are never banned, so only the budget shows.
    let carrier = frame("192.0.2.77".parse().unwrap(), 5060);
    assert_eq!(
        reasons(&model, &carrier, 11)
            .iter()
            .filter(|r| **r == Reason::Allowlisted)
            .count(),
        10
    );
    // 100 per second: one packet per 10 ms, never more.
    for _ in 0..10 {
        model.advance(NANOS / 100);
        assert_eq!(
            reasons(&model, &carrier, 2),
            [Reason::Allowlisted, Reason::PeerRateLimited]
        );
    }
    // Half the interval refills nothing.
    model.advance(NANOS / 200);
    assert_eq!(model.verdict(&carrier).reason, Reason::PeerRateLimited);
}

#[test]
fn strikes_outside_the_window_do_not_add_up_to_a_ban() {
    let model = model();
    let phone = frame("198.18.5.7".parse().unwrap(), 5070);
    reasons(&model, &phone, 4);
    for _ in 0..5 {
        // Two strikes, then 11 s quiet: the window restarts before the third.
        assert_eq!(
            reasons(&model, &phone, 2).last(),
            Some(&Reason::RateLimited)
        );
        model.advance(11 * NANOS);
        reasons(&model, &phone, 4);
    }
    assert!(model.bans.borrow().is_empty());
}

#[test]
fn allowlisted_peers_are_throttled_never_banned() {
    let model = model();
    let carrier = frame("192.0.2.10".parse().unwrap(), 5060);
    let verdicts: Vec<Reason> = reasons(&model, &carrier, 1000);
    assert_eq!(
        verdicts
            .iter()
            .filter(|r| **r == Reason::Allowlisted)
            .count(),
        10,
        "the burst"
    );
    assert_eq!(
        verdicts
            .iter()
            .filter(|r| **r == Reason::PeerRateLimited)
            .count(),
        990
    );
    assert!(model.bans.borrow().is_empty(), "never banned");
    model.advance(NANOS);
    assert_eq!(
        reasons(&model, &carrier, 200)
            .iter()
            .filter(|r| **r == Reason::Allowlisted)
            .count(),
        10
    );
    // The same budget applies on the access port: an allowlisted source is a peer everywhere.
    let on_access = frame("192.0.2.11".parse().unwrap(), 5070);
    assert_eq!(
        model.verdict(&on_access),
        Verdict {
            action: 2,
            zone: Zone::Access,
            reason: Reason::Allowlisted,
            monitored: false
        }
    );
    // A more specific allow entry without a class: no budget at all.
    let unlimited = frame("192.0.2.200".parse().unwrap(), 5060);
    assert!(
        reasons(&model, &unlimited, 5000)
            .iter()
            .all(|r| *r == Reason::Allowlisted)
    );
}

#[test]
fn unknown_sources_on_a_trunk_port_create_no_state() {
    let model = model();
    for i in 0..10_000u32 {
        let source = Ipv4Addr::from(0x0a00_0000 + i);
        assert_eq!(
            model.verdict(&frame(source.into(), 5060)).reason,
            Reason::NotAllowlisted
        );
    }
    assert_eq!(model.tracked_sources(), 0);
}

#[test]
fn the_new_source_budget_caps_state_creation_under_a_spoofed_flood() {
    let model = model();
    // A known phone before the flood.
    let phone = frame("198.18.9.9".parse().unwrap(), 5070);
    assert_eq!(model.verdict(&phone).reason, Reason::AccessAdmitted);
    let mut admitted = 0;
    for i in 0..100_000u32 {
        let spoofed = Ipv4Addr::from(0x0a00_0000 + i);
        match model.verdict(&frame(spoofed.into(), 5070)).reason {
            Reason::AccessAdmitted => admitted += 1,
            Reason::NewSourceLimited => {}
            other => panic!("{other:?}"),
        }
    }
    // Burst 5 minus the phone, at one instant.
    assert_eq!(admitted, 4);
    assert_eq!(model.tracked_sources(), 5);
    // The known phone keeps its own budget throughout.
    assert_eq!(model.verdict(&phone).reason, Reason::AccessAdmitted);
    model.advance(NANOS);
    let more = (0..1000u32)
        .filter(|i| {
            model
                .verdict(&frame(Ipv4Addr::from(0x0b00_0000 + i).into(), 5070))
                .reason
                == Reason::AccessAdmitted
        })
        .count();
    assert_eq!(more, 5, "10/s refill, capped at the burst of 5");
}

#[test]
fn ipv6_sources_in_one_64_share_a_budget_and_other_64s_do_not() {
    let model = model();
    let same: Vec<Ipv6Addr> = (1..=8)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, i))
        .collect();
    let admitted = same
        .iter()
        .filter(|src| model.verdict(&frame((**src).into(), 5070)).reason == Reason::AccessAdmitted)
        .count();
    assert_eq!(admitted, 4, "eight addresses of one /64 share a burst of 4");
    let other = Ipv6Addr::new(0x2001, 0xdb8, 9, 1, 0, 0, 0, 1);
    assert_eq!(
        model.verdict(&frame(other.into(), 5070)).reason,
        Reason::AccessAdmitted
    );
}

#[test]
fn the_denylist_applies_in_the_access_zone_before_any_budget() {
    let model = model();
    let scanner = frame("203.0.113.5".parse().unwrap(), 5070);
    assert!(
        reasons(&model, &scanner, 10)
            .iter()
            .all(|r| *r == Reason::Denylisted)
    );
    assert_eq!(model.tracked_sources(), 0);
}
