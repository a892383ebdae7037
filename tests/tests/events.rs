//! Drop events from the real program (BPF_PROG_TEST_RUN): every field decodes right, and every drop
//! is accounted exactly once as emitted, suppressed or lost.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use aya::maps::{Map, MapData, RingBuf};
use sipguard::events::{Clock, EventRecord};
use sipguard_common::abi::map_name;
use sipguard_tests::{
    frames::{Packet, VlanTag, sip_options_request},
    harness::TestFilter,
};

const SBC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SBC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);

fn policy(events: &str) -> String {
    format!(
        r#"
mode = "enforce"
[trunk]
udp = [5060]
tcp = [5060, 5061]
[[allow]]
cidrs = ["192.0.2.0/24"]
[[deny]]
cidrs = ["203.0.113.0/24"]
{events}
"#
    )
}

fn drain(filter: &TestFilter) -> Vec<EventRecord> {
    let pin = filter.target.map_pin(map_name::EVENTS);
    let data = MapData::from_pin(&pin).unwrap();
    let mut ring = RingBuf::try_from(Map::from_map_data(data).unwrap()).unwrap();
    let clock = Clock::now();
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        events.push(EventRecord::decode(&item, "testrun", &clock).expect("a whole event"));
    }
    events
}

fn invite(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let options = sip_options_request(src, dst, "UDP");
    let text = String::from_utf8(options).unwrap();
    text.replacen("OPTIONS", "INVITE", 2).into_bytes()
}

#[test]
fn events_carry_every_field_for_v4_v6_vlan_udp_and_tcp() {
    let mut filter = TestFilter::new(&policy(""));
    let unknown4 = Ipv4Addr::new(198, 18, 3, 3);
    let unknown6: Ipv6Addr = "2001:db8:bad::7".parse().unwrap();
    let udp_vlan = Packet::udp4(
        unknown4,
        SBC4,
        40_001,
        5060,
        invite(
            SocketAddr::new(unknown4.into(), 40_001),
            SocketAddr::new(SBC4.into(), 5060),
        ),
    )
    .with_vlan(100)
    .build();
    let tcp6 = Packet::tcp6(
        unknown6,
        SBC6,
        40_002,
        5061,
        b"REGISTER sip:sbc SIP/2.0\r\n\r\n".to_vec(),
    )
    .with_tag(VlanTag::dot1ad(200))
    .with_vlan(300)
    .build();
    let denied = Packet::udp4(
        Ipv4Addr::new(203, 0, 113, 9),
        SBC4,
        5060,
        5060,
        b"SIP/2.0 200 OK\r\n".to_vec(),
    )
    .build();
    let allowed = Packet::udp4(
        Ipv4Addr::new(192, 0, 2, 1),
        SBC4,
        5060,
        5060,
        b"BYE sip:x SIP/2.0\r\n".to_vec(),
    )
    .build();
    let mut truncated = allowed.clone();
    truncated.truncate(30);
    for frame in [&udp_vlan, &tcp6, &denied, &allowed, &truncated] {
        filter.action(frame);
    }
    let events = drain(&filter);
    assert_eq!(
        events.len(),
        4,
        "one event per drop, none for the allowlisted pass: {events:#?}"
    );

    let e = &events[0];
    assert_eq!(e.src, Some(unknown4.into()));
    assert_eq!(e.dst, Some(SBC4.into()));
    assert_eq!((e.sport, e.dport), (40_001, 5060));
    assert_eq!(e.transport, "udp");
    assert_eq!(e.vlan, [100]);
    assert_eq!(
        (e.reason.as_str(), e.zone.as_str(), e.outcome.as_str()),
        ("not_allowlisted", "trunk", "dropped")
    );
    assert_eq!(e.length as usize, udp_vlan.len());
    assert_eq!(e.sip_method.as_deref(), Some("INVITE"));
    assert_eq!(e.suppressed_before, 0);
    assert_eq!(e.interface, "testrun");

    let e = &events[1];
    assert_eq!(e.src, Some(unknown6.into()));
    assert_eq!(e.dst, Some(SBC6.into()));
    assert_eq!((e.sport, e.dport), (40_002, 5061));
    assert_eq!(e.transport, "tcp");
    assert_eq!(e.vlan, [200, 300]);
    assert_eq!(e.length as usize, tcp6.len());
    assert_eq!(e.sip_method.as_deref(), Some("REGISTER"));

    let e = &events[2];
    assert_eq!(e.reason, "denylisted");
    assert_eq!(e.sip_method.as_deref(), Some("SIP/2.0"), "a response");

    let e = &events[3];
    assert_eq!((e.reason.as_str(), e.zone.as_str()), ("malformed", "none"));
    assert_eq!((e.src, e.dst), (None, None), "no IP header to report");
    assert_eq!(e.length, 30);

    // Timestamps are wall-clock and recent.
    let now = sipguard::time::now_unix();
    let time = sipguard::time::parse_time(&events[0].time[..19]).unwrap();
    assert!(now.abs_diff(time) < 60, "{}", events[0].time);

    let stats = filter.stats();
    assert_eq!(stats.events.emitted, 4);
    assert_eq!(stats.events.suppressed + stats.events.lost, 0);
}

#[test]
fn monitor_mode_reports_would_drop() {
    let mut filter =
        TestFilter::new(&policy("").replace("mode = \"enforce\"", "mode = \"monitor\""));
    filter.action(
        &Packet::udp4(
            Ipv4Addr::new(198, 18, 3, 4),
            SBC4,
            5060,
            5060,
            b"OPTIONS sip:x SIP/2.0\r\n".to_vec(),
        )
        .build(),
    );
    let events = drain(&filter);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, "would_drop");
    assert_eq!(events[0].sip_method.as_deref(), Some("OPTIONS"));
}

#[test]
fn one_source_cannot_flood_the_reporter_and_every_drop_is_accounted() {
    let mut filter = TestFilter::new(&policy(
        "[events]\nper_source = { rate = 1, burst = 3 }\ntotal = { rate = 100000, burst = 100000 }",
    ));
    let loud = Packet::udp4(
        Ipv4Addr::new(198, 18, 9, 9),
        SBC4,
        5060,
        5060,
        vec![b'x'; 100],
    )
    .build();
    let start = std::time::Instant::now();
    filter.run_repeated(&loud, 50_000);
    let elapsed = start.elapsed().as_secs_f64();
    let events = drain(&filter);
    let stats = filter.stats();
    assert_eq!(
        stats.events.emitted + stats.events.suppressed + stats.events.lost,
        50_000
    );
    assert_eq!(
        events.len() as u64,
        stats.events.emitted,
        "every emitted event is in the ring"
    );
    assert!(events.len() >= 3, "the burst");
    assert!(
        events.len() as f64 <= 3.0 + elapsed + 1.0,
        "{} events in {elapsed}s",
        events.len()
    );
    // The suppressed count in each event tells what was not reported before it.
    let reported: u64 = events
        .iter()
        .map(|e| 1 + u64::from(e.suppressed_before))
        .sum();
    assert!(reported <= 50_000);
    assert_eq!(stats.events.suppressed, 50_000 - events.len() as u64);
}

#[test]
fn a_many_source_flood_is_capped_globally_and_a_full_ring_counts_losses() {
    // Global budget: 2000 events (burst) per second in all, split over the CPUs.
    let mut filter = TestFilter::new(&policy(
        "[events]\nper_source = { rate = 10, burst = 10 }\ntotal = { rate = 2000, burst = 2000 }",
    ));
    let mut frame =
        Packet::udp4(Ipv4Addr::new(10, 0, 0, 0), SBC4, 5060, 5060, vec![b'x'; 64]).build();
    let start = std::time::Instant::now();
    for i in 0..20_000u32 {
        frame[26..30].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        filter.action(&frame);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = filter.stats();
    let events = drain(&filter);
    assert_eq!(
        stats.events.emitted + stats.events.suppressed + stats.events.lost,
        20_000
    );
    assert_eq!(events.len() as u64, stats.events.emitted);
    assert!(
        events.len() as f64 <= 2000.0 + 2000.0 * elapsed + 1.0,
        "{} in {elapsed}s",
        events.len()
    );
    // The flood's sources all appear at most once (each sent one packet).
    let mut sources: Vec<_> = events.iter().map(|e| e.src).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), events.len());

    // Now a budget large enough to overrun the 1 MiB ring (about 14,500 events) undrained.
    let mut filter = TestFilter::new(&policy(
        "[events]\nper_source = { rate = 1000000, burst = 1000000 }\ntotal = { rate = 1000000000, burst = 1000000 }",
    ));
    for i in 0..30_000u32 {
        frame[26..30].copy_from_slice(&(0x0b00_0000 + i).to_be_bytes());
        filter.action(&frame);
    }
    let stats = filter.stats();
    assert!(
        stats.events.lost > 0,
        "the ring filled up: {:?}",
        stats.events
    );
    assert_eq!(
        stats.events.emitted + stats.events.suppressed + stats.events.lost,
        30_000
    );
    assert_eq!(drain(&filter).len() as u64, stats.events.emitted);
}
