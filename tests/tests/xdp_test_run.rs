//! The real XDP program, verified and loaded by the kernel, run with `BPF_PROG_TEST_RUN` on
//! crafted frames. Each verdict is read back from the counter slot that moved, and compared with
//! the documented expectation and with the host model of the same policy.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use sipguard::policy::Policy;
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    frames::{self, ExtHeader, Packet, VlanTag, arp_request, sip_options_request},
    harness::{TestFilter, Verdict, XDP_DROP, XDP_PASS, drop, pass},
    model::Model,
};

const POLICY: &str = r#"
mode = "enforce"
[trunk]
udp = [5060, 5080]
tcp = [5060, 5061]
[[allow]]
name = "carrier"
cidrs = ["192.0.2.0/24", "2001:db8:1::/48"]
[[deny]]
name = "exceptions"
cidrs = ["192.0.2.66", "2001:db8:1::66", "203.0.113.0/24"]
"#;

const SBC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SBC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
const ALLOWED4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const DENIED4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
const UNKNOWN4: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 7);
const ALLOWED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const DENIED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x66);
const UNKNOWN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 7);

fn sip4(src: Ipv4Addr) -> Vec<u8> {
    sip_options_request(
        SocketAddr::new(src.into(), 5060),
        SocketAddr::new(SBC4.into(), 5060),
        "UDP",
    )
}

fn sip6(src: Ipv6Addr) -> Vec<u8> {
    sip_options_request(
        SocketAddr::new(src.into(), 5060),
        SocketAddr::new(SBC6.into(), 5060),
        "UDP",
    )
}

fn udp4(src: Ipv4Addr, dport: u16) -> Packet {
    Packet::udp4(src, SBC4, 5060, dport, sip4(src))
}

fn udp6(src: Ipv6Addr, dport: u16) -> Packet {
    Packet::udp6(src, SBC6, 5060, dport, sip6(src))
}

/// Runs each frame in the kernel and in the model; both must give `expected`.
fn check(filter: &mut TestFilter, model: &Model, cases: &[(&str, Vec<u8>, Verdict)]) {
    for (name, frame, expected) in cases {
        let kernel = filter.run(frame);
        assert_eq!(kernel, *expected, "kernel verdict for {name}");
        assert_eq!(model.verdict(frame), *expected, "model verdict for {name}");
    }
}

fn setup(policy: &str) -> (TestFilter, Model) {
    let parsed = Policy::parse(policy, "test-policy.toml").unwrap();
    (TestFilter::with_policy(&parsed), Model::new(&parsed))
}

#[test]
fn sources_are_judged_on_sip_ports_of_both_transports_and_families() {
    let (mut filter, model) = setup(POLICY);
    let trunk_pass = pass(Zone::Trunk, Reason::Allowlisted);
    let cases = vec![
        ("udp4 allowed", udp4(ALLOWED4, 5060).build(), trunk_pass),
        (
            "udp4 allowed 5080",
            udp4(ALLOWED4, 5080).build(),
            trunk_pass,
        ),
        (
            "udp4 denied inside allowed /24",
            udp4(DENIED4, 5060).build(),
            drop(Zone::Trunk, Reason::Denylisted),
        ),
        (
            "udp4 unknown",
            udp4(UNKNOWN4, 5060).build(),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        (
            "udp4 denied, not allowed",
            udp4(Ipv4Addr::new(203, 0, 113, 9), 5060).build(),
            drop(Zone::Trunk, Reason::Denylisted),
        ),
        ("udp6 allowed", udp6(ALLOWED6, 5060).build(), trunk_pass),
        (
            "udp6 denied",
            udp6(DENIED6, 5060).build(),
            drop(Zone::Trunk, Reason::Denylisted),
        ),
        (
            "udp6 unknown",
            udp6(UNKNOWN6, 5060).build(),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        (
            "tcp4 allowed 5061",
            Packet::tcp4(ALLOWED4, SBC4, 40000, 5061, vec![]).build(),
            trunk_pass,
        ),
        (
            "tcp4 unknown 5061",
            Packet::tcp4(UNKNOWN4, SBC4, 40000, 5061, vec![]).build(),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        (
            "tcp4 denied 5060",
            Packet::tcp4(DENIED4, SBC4, 40000, 5060, sip4(DENIED4)).build(),
            drop(Zone::Trunk, Reason::Denylisted),
        ),
        (
            "tcp6 allowed",
            Packet::tcp6(ALLOWED6, SBC6, 40000, 5060, sip6(ALLOWED6)).build(),
            trunk_pass,
        ),
        (
            "tcp6 unknown",
            Packet::tcp6(UNKNOWN6, SBC6, 40000, 5061, vec![]).build(),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        (
            "tcp6 denied",
            Packet::tcp6(DENIED6, SBC6, 40000, 5061, vec![]).build(),
            drop(Zone::Trunk, Reason::Denylisted),
        ),
    ];
    check(&mut filter, &model, &cases);
}

#[test]
fn traffic_that_is_not_sip_passes_untouched_even_from_denied_sources() {
    let (mut filter, model) = setup(POLICY);
    let not_sip = pass(Zone::None, Reason::NotSip);
    let cases = vec![
        (
            "arp",
            arp_request(frames::DEFAULT_SRC_MAC, DENIED4, SBC4),
            pass(Zone::None, Reason::NotIp),
        ),
        (
            "lldp-like ethertype",
            udp4(DENIED4, 5060).with_ethertype(0x88cc).build(),
            pass(Zone::None, Reason::NotIp),
        ),
        (
            "icmp echo",
            Packet::icmp4_echo(DENIED4, SBC4).build(),
            not_sip,
        ),
        (
            "icmpv6 echo",
            Packet::icmp6_echo(DENIED6, SBC6).build(),
            not_sip,
        ),
        (
            "udp to 53",
            Packet::udp4(DENIED4, SBC4, 5060, 53, vec![0; 40]).build(),
            not_sip,
        ),
        (
            "udp 5061 is tcp-only",
            udp4(UNKNOWN4, 5061).build(),
            not_sip,
        ),
        (
            "tcp to 443",
            Packet::tcp4(UNKNOWN4, SBC4, 5060, 443, vec![]).build(),
            not_sip,
        ),
        (
            "tcp 5080 is udp-only",
            Packet::tcp6(UNKNOWN6, SBC6, 1234, 5080, vec![]).build(),
            not_sip,
        ),
        (
            "sctp",
            Packet::raw4(UNKNOWN4, SBC4, 132, vec![0; 32]).build(),
            not_sip,
        ),
        (
            "esp over v6",
            Packet::raw6(UNKNOWN6, SBC6, 50, vec![0; 32]).build(),
            not_sip,
        ),
        (
            "v6 no next header",
            Packet::raw6(UNKNOWN6, SBC6, frames::PROTO_NONE, vec![]).build(),
            not_sip,
        ),
    ];
    check(&mut filter, &model, &cases);
}

#[test]
fn vlan_qinq_and_legacy_tags_do_not_change_the_verdict() {
    let (mut filter, model) = setup(POLICY);
    let mut cases = Vec::new();
    for (name, tags) in [
        ("802.1Q", vec![VlanTag::dot1q(100)]),
        (
            "QinQ 802.1ad+802.1Q",
            vec![VlanTag::dot1ad(200), VlanTag::dot1q(300)],
        ),
        (
            "QinQ 0x9100+802.1Q",
            vec![VlanTag::legacy(20), VlanTag::dot1q(30)],
        ),
        ("double 802.1Q", vec![VlanTag::dot1q(5), VlanTag::dot1q(6)]),
        (
            "four tags",
            vec![
                VlanTag::dot1ad(1),
                VlanTag::dot1q(2),
                VlanTag::dot1q(3),
                VlanTag::dot1q(4),
            ],
        ),
    ] {
        let tag = |packet: Packet| tags.iter().fold(packet, |p, t| p.with_tag(*t)).build();
        cases.push((
            name,
            tag(udp4(ALLOWED4, 5060)),
            pass(Zone::Trunk, Reason::Allowlisted),
        ));
        cases.push((
            name,
            tag(udp4(UNKNOWN4, 5060)),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ));
        cases.push((
            name,
            tag(udp6(DENIED6, 5060)),
            drop(Zone::Trunk, Reason::Denylisted),
        ));
        cases.push((
            name,
            tag(Packet::tcp6(UNKNOWN6, SBC6, 1, 5061, vec![])),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ));
        cases.push((
            name,
            tag(udp4(UNKNOWN4, 53)),
            pass(Zone::None, Reason::NotSip),
        ));
    }
    // Five tags: deeper than the parser walks; never admitted for being unparsed.
    let five = (1..=5)
        .fold(
            udp4(ALLOWED4, 5060),
            sipguard_tests::frames::Packet::with_vlan,
        )
        .build();
    cases.push(("five tags", five, drop(Zone::Unknown, Reason::Unparsed)));
    check(&mut filter, &model, &cases);
}

#[test]
fn ipv4_options_of_every_length_are_skipped() {
    let (mut filter, model) = setup(POLICY);
    let mut cases = Vec::new();
    for words in 1..=10usize {
        // NOPs then an end-of-options byte: IHL 6..15.
        let mut options = vec![1u8; words * 4 - 1];
        options.push(0);
        cases.push((
            "allowed",
            udp4(ALLOWED4, 5060)
                .with_ipv4_options(options.clone())
                .build(),
            pass(Zone::Trunk, Reason::Allowlisted),
        ));
        cases.push((
            "unknown",
            udp4(UNKNOWN4, 5060)
                .with_ipv4_options(options.clone())
                .build(),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ));
        cases.push((
            "tcp denied",
            Packet::tcp4(DENIED4, SBC4, 9, 5061, vec![])
                .with_ipv4_options(options)
                .build(),
            drop(Zone::Trunk, Reason::Denylisted),
        ));
    }
    check(&mut filter, &model, &cases);
}

#[test]
fn ipv6_extension_headers_are_walked_and_long_chains_are_never_admitted() {
    let (mut filter, model) = setup(POLICY);
    let chains: Vec<(&str, Vec<ExtHeader>)> = vec![
        ("hop-by-hop", vec![ExtHeader::HopByHop { len: 0 }]),
        ("routing", vec![ExtHeader::routing(2)]),
        ("destination options", vec![ExtHeader::DestOpts { len: 3 }]),
        ("ah", vec![ExtHeader::ah()]),
        (
            "atomic fragment",
            vec![ExtHeader::Fragment {
                offset: 0,
                more: false,
                id: 4,
            }],
        ),
        (
            "mixed",
            vec![
                ExtHeader::HopByHop { len: 1 },
                ExtHeader::routing(0),
                ExtHeader::DestOpts { len: 0 },
                ExtHeader::ah(),
            ],
        ),
        (
            "eight headers",
            (0..8).map(|_| ExtHeader::DestOpts { len: 0 }).collect(),
        ),
    ];
    let mut cases = Vec::new();
    for (name, chain) in &chains {
        let with = |packet: Packet| chain.iter().fold(packet, |p, e| p.with_ext(*e)).build();
        cases.push((
            *name,
            with(udp6(ALLOWED6, 5060)),
            pass(Zone::Trunk, Reason::Allowlisted),
        ));
        cases.push((
            *name,
            with(udp6(UNKNOWN6, 5060)),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ));
        cases.push((
            *name,
            with(Packet::tcp6(DENIED6, SBC6, 7, 5060, vec![])),
            drop(Zone::Trunk, Reason::Denylisted),
        ));
    }
    // Nine headers, or one huge header: the port is out of reach; the source decides, and an
    // unknown source is dropped rather than waved through.
    let nine = |packet: Packet| {
        (0..9)
            .fold(packet, |p, _| p.with_ext(ExtHeader::DestOpts { len: 0 }))
            .build()
    };
    let huge = |packet: Packet| packet.with_ext(ExtHeader::HopByHop { len: 80 }).build();
    cases.push((
        "nine headers, unknown",
        nine(udp6(UNKNOWN6, 5060)),
        drop(Zone::Unknown, Reason::Unparsed),
    ));
    cases.push((
        "nine headers, allowed",
        nine(udp6(ALLOWED6, 5060)),
        pass(Zone::Unknown, Reason::Allowlisted),
    ));
    cases.push((
        "nine headers, denied",
        nine(udp6(DENIED6, 53)),
        drop(Zone::Unknown, Reason::Denylisted),
    ));
    cases.push((
        "648-byte header, unknown",
        huge(udp6(UNKNOWN6, 5060)),
        drop(Zone::Unknown, Reason::Unparsed),
    ));
    cases.push((
        "648-byte header, allowed",
        huge(udp6(ALLOWED6, 5060)),
        pass(Zone::Unknown, Reason::Allowlisted),
    ));
    check(&mut filter, &model, &cases);
}

#[test]
fn fragments_follow_the_policy_for_each_fragment_mode() {
    let big4 = |src| udp4(src, 5060).with_payload(vec![b'x'; 1200]);
    let big6 = |src| udp6(src, 5060).with_payload(vec![b'y'; 1200]);

    // inherit (default): later fragments of a dropped first fragment are dropped with it; those
    // of a passed one pass.
    let (mut filter, model) = setup(POLICY);
    let mut cases = Vec::new();
    for (id, (packet, first)) in [
        (big4(ALLOWED4), pass(Zone::Trunk, Reason::Allowlisted)),
        (big4(UNKNOWN4), drop(Zone::Trunk, Reason::NotAllowlisted)),
        (big4(DENIED4), drop(Zone::Trunk, Reason::Denylisted)),
        (big6(ALLOWED6), pass(Zone::Trunk, Reason::Allowlisted)),
        (big6(UNKNOWN6), drop(Zone::Trunk, Reason::NotAllowlisted)),
        (
            Packet::udp4(UNKNOWN4, SBC4, 53, 53, vec![1; 1000]),
            pass(Zone::None, Reason::NotSip),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let fragments = packet.fragment(400, 1000 + id as u32);
        assert!(fragments.len() >= 3);
        let later = if first.action == XDP_DROP {
            first
        } else {
            pass(Zone::Unknown, Reason::FragmentPassed)
        };
        for (index, fragment) in fragments.into_iter().enumerate() {
            cases.push(("inherit", fragment, if index == 0 { first } else { later }));
        }
    }
    // Later fragments whose first fragment never came pass: the kernel will not reassemble
    // them without it, and it is judged when it comes.
    let orphans = |packet: Packet, id| packet.fragment(400, id).split_off(1);
    for (name, packet, id) in [
        ("orphan unknown", big4(UNKNOWN4), 77),
        ("orphan allowed", big6(ALLOWED6), 78),
        ("orphan denied", big4(DENIED4), 79),
    ] {
        for fragment in orphans(packet, id) {
            cases.push((name, fragment, pass(Zone::Unknown, Reason::FragmentPassed)));
        }
    }
    check(&mut filter, &model, &cases);

    // source: every later fragment is judged by its source alone.
    let (mut filter, model) = setup(&format!("fragments = \"source\"\n{POLICY}"));
    let mut cases = Vec::new();
    let fragments = big4(UNKNOWN4).fragment(400, 5);
    cases.push((
        "source first",
        fragments[0].clone(),
        drop(Zone::Trunk, Reason::NotAllowlisted),
    ));
    for fragment in &fragments[1..] {
        cases.push((
            "source later",
            fragment.clone(),
            drop(Zone::Unknown, Reason::NotAllowlisted),
        ));
    }
    for fragment in big6(ALLOWED6).fragment(400, 6).split_off(1) {
        cases.push((
            "source later allowed",
            fragment,
            pass(Zone::Unknown, Reason::Allowlisted),
        ));
    }
    check(&mut filter, &model, &cases);

    // pass: later fragments pass; the first one is still judged.
    let (mut filter, model) = setup(&format!("fragments = \"pass\"\n{POLICY}"));
    let mut cases = Vec::new();
    let fragments = big6(UNKNOWN6).fragment(400, 8);
    cases.push((
        "pass first",
        fragments[0].clone(),
        drop(Zone::Trunk, Reason::NotAllowlisted),
    ));
    for fragment in &fragments[1..] {
        cases.push((
            "pass later",
            fragment.clone(),
            pass(Zone::Unknown, Reason::FragmentPassed),
        ));
    }
    check(&mut filter, &model, &cases);
}

#[test]
fn tiny_first_fragments_are_judged_by_source() {
    let (mut filter, model) = setup(POLICY);
    // A first fragment with only 2 bytes of UDP: the destination port is in the next fragment.
    let tiny = |src| {
        Packet::raw4(src, SBC4, frames::PROTO_UDP, vec![0x13, 0xc4])
            .with_fragment(0, true, 3)
            .build()
    };
    let cases = vec![
        (
            "tiny unknown",
            tiny(UNKNOWN4),
            drop(Zone::Unknown, Reason::Unparsed),
        ),
        (
            "tiny allowed",
            tiny(ALLOWED4),
            pass(Zone::Unknown, Reason::Allowlisted),
        ),
        (
            "tiny denied",
            tiny(DENIED4),
            drop(Zone::Unknown, Reason::Denylisted),
        ),
    ];
    check(&mut filter, &model, &cases);
}

#[test]
fn monitor_mode_counts_would_drop_and_passes() {
    let (mut filter, _) = setup(&format!(
        "mode = \"monitor\"\n{}",
        POLICY.replace("mode = \"enforce\"", "")
    ));
    let monitored = |reason| Verdict {
        action: XDP_PASS,
        zone: Zone::Trunk,
        reason,
        monitored: true,
    };
    assert_eq!(
        filter.run(&udp4(UNKNOWN4, 5060).build()),
        monitored(Reason::NotAllowlisted)
    );
    assert_eq!(
        filter.run(&udp6(DENIED6, 5060).build()),
        monitored(Reason::Denylisted)
    );
    assert_eq!(
        filter.run(&udp4(ALLOWED4, 5060).build()),
        pass(Zone::Trunk, Reason::Allowlisted)
    );
    // A malformed frame is also only counted.
    let mut short = udp4(UNKNOWN4, 5060).build();
    short.truncate(30);
    assert_eq!(
        filter.run(&short),
        Verdict {
            action: XDP_PASS,
            zone: Zone::None,
            reason: Reason::Malformed,
            monitored: true
        }
    );
}

#[test]
fn apply_switches_policies_and_keeps_counters() {
    let (mut filter, _) = setup(POLICY);
    let frame = udp4(UNKNOWN4, 5060).build();
    assert_eq!(filter.run(&frame).reason, Reason::NotAllowlisted);
    filter.apply(&POLICY.replace("192.0.2.0/24", "198.18.0.0/15"));
    assert_eq!(filter.run(&frame), pass(Zone::Trunk, Reason::Allowlisted));
    assert_eq!(
        filter.run(&udp4(ALLOWED4, 5060).build()).reason,
        Reason::NotAllowlisted
    );
    filter.apply(&POLICY.replace("udp = [5060, 5080]", "udp = [5080]"));
    assert_eq!(
        filter.run(&frame),
        pass(Zone::None, Reason::NotSip),
        "5060 is no longer SIP"
    );
    let stats = sipguard::report::Stats::read(&filter.loaded.state).unwrap();
    assert_eq!(
        stats.packets(Reason::NotAllowlisted),
        2,
        "counters survive every apply"
    );
}

/// Every prefix of a valid frame: the kernel agrees with the model, and every cut before the end
/// of the IP payload is `malformed` (the kernel stack would discard it too).
#[test]
fn every_truncation_of_valid_sip_frames_gets_the_documented_verdict() {
    let (mut filter, model) = setup(POLICY);
    let frames = [
        ("udp4", udp4(UNKNOWN4, 5060).build()),
        (
            "udp4 options",
            udp4(ALLOWED4, 5060)
                .with_ipv4_options(vec![1, 1, 1, 0])
                .build(),
        ),
        ("qinq udp4", udp4(DENIED4, 5060).with_qinq(10, 20).build()),
        (
            "tcp6 dstopts",
            Packet::tcp6(ALLOWED6, SBC6, 40000, 5061, sip6(ALLOWED6))
                .with_ext(ExtHeader::DestOpts { len: 1 })
                .build(),
        ),
        ("vlan udp6", udp6(UNKNOWN6, 5060).with_vlan(7).build()),
    ];
    for (name, frame) in frames {
        let full = filter.run(&frame);
        assert!(
            matches!(
                full.reason,
                Reason::Allowlisted | Reason::NotAllowlisted | Reason::Denylisted
            ),
            "{name}: {full:?}"
        );
        for len in 0..frame.len() {
            let prefix = &frame[..len];
            let expected = model.verdict(prefix);
            if len < 14 {
                // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, and no driver
                // hands such a runt to XDP. The parser still calls it malformed.
                assert!(
                    filter.try_run(prefix).is_err(),
                    "{name}/{len}: the kernel ran a runt"
                );
                assert_eq!(expected.reason, Reason::Malformed, "{name}/{len}");
                continue;
            }
            assert_eq!(filter.run(prefix), expected, "{name} cut to {len} bytes");
            assert_eq!(
                expected,
                drop(Zone::None, Reason::Malformed),
                "{name} cut to {len} bytes"
            );
        }
    }
}

/// Random corruption of valid frames (deterministic seed): the kernel and the model never differ.
#[test]
fn corrupted_frames_get_the_same_verdict_in_kernel_and_model() {
    let (mut filter, model) = setup(POLICY);
    let seeds: Vec<Vec<u8>> = vec![
        udp4(ALLOWED4, 5060).build(),
        udp6(UNKNOWN6, 5060)
            .with_ext(ExtHeader::HopByHop { len: 0 })
            .build(),
        Packet::tcp4(DENIED4, SBC4, 1, 5061, vec![])
            .with_vlan(3)
            .build(),
        udp4(UNKNOWN4, 5060)
            .with_payload(vec![0; 900])
            .fragment(300, 9)[1]
            .clone(),
        udp6(ALLOWED6, 5060)
            .with_payload(vec![0; 900])
            .fragment(300, 10)[0]
            .clone(),
    ];
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut by_reason = std::collections::BTreeMap::new();
    for round in 0..3000 {
        let mut frame = seeds[round % seeds.len()].clone();
        // Corrupt 1-3 header bytes (the first 80 bytes hold every header here).
        for _ in 0..=(next() % 3) {
            let at = (next() as usize) % frame.len().min(80);
            frame[at] = next() as u8;
        }
        if next() % 4 == 0 {
            let cut = 14 + (next() as usize) % (frame.len() - 14);
            frame.truncate(cut);
        }
        let kernel = filter.run(&frame);
        assert_eq!(kernel, model.verdict(&frame), "round {round}: {frame:02x?}");
        *by_reason.entry(kernel.reason).or_insert(0) += 1;
    }
    // The corpus reached the interesting verdicts, not just "malformed".
    for reason in [
        Reason::Malformed,
        Reason::NotSip,
        Reason::NotAllowlisted,
        Reason::Allowlisted,
        Reason::NotIp,
    ] {
        assert!(
            by_reason.contains_key(&reason),
            "{reason:?} never seen: {by_reason:?}"
        );
    }
}

/// An SCTP common header (ports, verification tag, checksum) and one DATA chunk header.
fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&sport.to_be_bytes());
    bytes.extend_from_slice(&dport.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

#[test]
fn sctp_to_a_sip_port_is_judged_like_udp_and_tcp() {
    let (mut filter, model) = setup(&format!(
        "{}sctp = [5060]\n{}",
        &POLICY[..POLICY.find("[[allow]]").unwrap()],
        &POLICY[POLICY.find("[[allow]]").unwrap()..]
    ));
    let to4 = |src, dport| Packet::raw4(src, SBC4, 132, sctp(40_000, dport)).build();
    let to6 = |src, dport| Packet::raw6(src, SBC6, 132, sctp(40_000, dport)).build();
    let cases = vec![
        (
            "sctp4 allowed",
            to4(ALLOWED4, 5060),
            pass(Zone::Trunk, Reason::Allowlisted),
        ),
        (
            "sctp4 unknown",
            to4(UNKNOWN4, 5060),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        (
            "sctp4 denied",
            to4(DENIED4, 5060),
            drop(Zone::Trunk, Reason::Denylisted),
        ),
        (
            "sctp6 unknown",
            to6(UNKNOWN6, 5060),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        (
            "sctp6 allowed",
            to6(ALLOWED6, 5060),
            pass(Zone::Trunk, Reason::Allowlisted),
        ),
        // 5080 is a SIP port for UDP only.
        (
            "sctp4 other port",
            to4(UNKNOWN4, 5080),
            pass(Zone::None, Reason::NotSip),
        ),
        (
            "sctp4 cut short",
            Packet::raw4(UNKNOWN4, SBC4, 132, sctp(1, 5060)[..8].to_vec()).build(),
            drop(Zone::None, Reason::Malformed),
        ),
    ];
    check(&mut filter, &model, &cases);
}

#[test]
fn the_sip_stage_counts_admitted_requests_by_method_only_where_asked() {
    use sipguard_common::abi::SipMethod;
    let policy = r#"
mode = "enforce"
[trunk]
udp = [5060]
count_methods = true
[access]
udp = [5070]
[[allow]]
cidrs = ["192.0.2.0/24"]
"#;
    let (mut filter, model) = setup(policy);
    let request = |method: &str, src: Ipv4Addr, dport| {
        let text = format!("{method} sip:sbc@198.51.100.1 SIP/2.0\r\nCSeq: 1 {method}\r\n\r\n");
        Packet::udp4(src, SBC4, 5060, dport, text.into_bytes()).build()
    };
    let cases = vec![
        (
            "trunk invite",
            request("INVITE", ALLOWED4, 5060),
            pass(Zone::Trunk, Reason::Allowlisted),
        ),
        (
            "trunk register",
            request("REGISTER", ALLOWED4, 5060),
            pass(Zone::Trunk, Reason::Allowlisted),
        ),
        (
            "trunk response",
            request("SIP/2.0", ALLOWED4, 5060),
            pass(Zone::Trunk, Reason::Allowlisted),
        ),
        // Dropped by stage 1: never reaches the SIP stage.
        (
            "trunk unknown invite",
            request("INVITE", UNKNOWN4, 5060),
            drop(Zone::Trunk, Reason::NotAllowlisted),
        ),
        // The access zone does not count methods: no SIP stage.
        (
            "access invite",
            request("INVITE", UNKNOWN4, 5070),
            pass(Zone::Access, Reason::AccessAdmitted),
        ),
    ];
    // `check` also proves each packet is counted once, with its final verdict.
    check(&mut filter, &model, &cases);
    let counts = filter.loaded.state.method_counts().unwrap();
    assert_eq!(
        counts,
        [
            (Zone::Trunk, SipMethod::Invite, 1),
            (Zone::Trunk, SipMethod::Register, 1),
            (Zone::Trunk, SipMethod::Response, 1),
        ]
    );
    let events = filter.loaded.state.event_stats().unwrap();
    assert_eq!(events.tail_call_failures, 0);
}
