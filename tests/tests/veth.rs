//! Real packets through a veth pair between network namespaces, sipguard attached natively on the
//! SBC side: listeners behind the filter see exactly the admitted packets, counters match exactly.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    time::Duration,
};

use sipguard::{
    dataplane::{AttachRequest, XdpModeChoice, attach},
    policy::Policy,
    report::Stats,
    state::{State, Target},
};
use sipguard_common::{
    abi::{Mode, Reason, Zone},
    parse::{Family, IpPacket, L4, Parsed, parse},
};
use sipguard_tests::{
    frames::{ExtHeader, Packet, VlanTag},
    harness::drain_events,
    lab::{
        ALLOWED_V4, ALLOWED_V6, Capture, DENIED_V4, DENIED_V6, Lab, PEER_IF, SBC_IF, SBC_V4,
        SBC_V6, UNKNOWN_V4, UNKNOWN_V6, UdpCounter, inject, mac_of, tcp_connects,
    },
    pins::TempPinRoot,
};

const SIP_OPTIONS: &[u8] = b"OPTIONS sip:sbc@198.18.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-veth\r\n\
Max-Forwards: 70\r\nFrom: <sip:probe@198.18.1.10>;tag=1\r\nTo: <sip:sbc@198.18.0.1>\r\n\
Call-ID: veth-test@198.18.1.10\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

fn target(lab: &Lab, pins: &TempPinRoot) -> Target {
    Target::new(SBC_IF, Some(lab.sbc.name()), pins.path()).expect("valid names")
}

/// Attaches sipguard natively to the SBC's veth with `policy`.
fn attach_policy(lab: &Lab, pins: &TempPinRoot, policy: Policy, mode: Option<Mode>) {
    let target = target(lab, pins);
    let report = lab
        .sbc
        .run(move || {
            attach(&AttachRequest {
                target,
                xdp_mode: XdpModeChoice::Native,
                policy: Some(&policy),
                mode,
            })
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("attach: {e}"));
    assert_eq!(report.xdp_mode, "native");
}

fn stats(lab: &Lab, pins: &TempPinRoot) -> Stats {
    Stats::read(&State::open(&target(lab, pins)).unwrap()).unwrap()
}

fn packets(stats: &Stats, zone: Zone, reason: Reason, monitored: bool) -> u64 {
    stats.get(zone, reason, monitored).packets
}

#[test]
fn udp_listener_receives_exactly_the_allowed_datagrams_and_counters_match() {
    let lab = Lab::new("udp").unwrap();
    let pins = TempPinRoot::new("veth-udp");
    attach_policy(&lab, &pins, Policy::example(), None);
    let sip = UdpCounter::start(&lab.sbc, 5060).unwrap();
    let other = UdpCounter::start(&lab.sbc, 5999).unwrap();

    // Distinct counts per source so that a mix-up cannot cancel out.
    let plan: [(IpAddr, usize); 6] = [
        (ALLOWED_V4.into(), 211),
        (UNKNOWN_V4.into(), 157),
        (DENIED_V4.into(), 103),
        (ALLOWED_V6.into(), 189),
        (UNKNOWN_V6.into(), 131),
        (DENIED_V6.into(), 97),
    ];
    for (source, count) in plan {
        lab.send_from(source, 5060, count, SIP_OPTIONS);
    }
    lab.send_from(UNKNOWN_V4.into(), 5999, 41, b"not sip");
    lab.send_from(DENIED_V6.into(), 5999, 37, b"not sip");

    let sip = sip.finish(Duration::from_millis(300));
    let other = other.finish(Duration::from_millis(100));
    assert_eq!(sip.get(&ALLOWED_V4.into()), Some(&211), "{sip:?}");
    assert_eq!(sip.get(&ALLOWED_V6.into()), Some(&189), "{sip:?}");
    assert_eq!(
        sip.len(),
        2,
        "only allowlisted sources reach the SIP port: {sip:?}"
    );
    assert_eq!(
        other.get(&UNKNOWN_V4.into()),
        Some(&41),
        "non-SIP passes untouched"
    );
    assert_eq!(
        other.get(&DENIED_V6.into()),
        Some(&37),
        "the denylist is for SIP only"
    );

    let stats = stats(&lab, &pins);
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::Allowlisted, false),
        211 + 189
    );
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::NotAllowlisted, false),
        157 + 131
    );
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::Denylisted, false),
        103 + 97
    );
    assert_eq!(
        stats.dropped.packets,
        157 + 131 + 103 + 97,
        "nothing else was dropped"
    );
    assert!(packets(&stats, Zone::None, Reason::NotSip, false) >= 41 + 37);
}

#[test]
fn monitor_mode_passes_everything_and_counts_what_it_would_drop() {
    let lab = Lab::new("mon").unwrap();
    let pins = TempPinRoot::new("veth-mon");
    attach_policy(&lab, &pins, Policy::example(), Some(Mode::Monitor));
    let sip = UdpCounter::start(&lab.sbc, 5060).unwrap();
    lab.send_from(ALLOWED_V4.into(), 5060, 60, SIP_OPTIONS);
    lab.send_from(UNKNOWN_V4.into(), 5060, 70, SIP_OPTIONS);
    lab.send_from(DENIED_V6.into(), 5060, 80, SIP_OPTIONS);
    let sip = sip.finish(Duration::from_millis(300));
    assert_eq!(sip.get(&ALLOWED_V4.into()), Some(&60));
    assert_eq!(sip.get(&UNKNOWN_V4.into()), Some(&70));
    assert_eq!(sip.get(&DENIED_V6.into()), Some(&80));

    let stats = stats(&lab, &pins);
    assert_eq!(stats.mode, "monitor");
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::NotAllowlisted, true),
        70
    );
    assert_eq!(packets(&stats, Zone::Trunk, Reason::Denylisted, true), 80);
    assert_eq!(packets(&stats, Zone::Trunk, Reason::Allowlisted, false), 60);
    assert_eq!(stats.dropped.packets, 0);
    assert_eq!(stats.would_drop.packets, 150);
}

#[test]
fn tcp_connects_only_from_allowed_sources() {
    let lab = Lab::new("tcp").unwrap();
    let pins = TempPinRoot::new("veth-tcp");
    attach_policy(&lab, &pins, Policy::example(), None);
    let listener_v4 = lab
        .sbc
        .run(|| TcpListener::bind(SocketAddr::new(SBC_V4.into(), 5061)))
        .unwrap()
        .unwrap();
    let listener_v6 = lab
        .sbc
        .run(|| TcpListener::bind(SocketAddr::new(SBC_V6.into(), 5061)))
        .unwrap()
        .unwrap();
    let try_connect = |source: IpAddr| {
        let dest = SocketAddr::new(Lab::sbc_addr(source.is_ipv6()), 5061);
        lab.peer
            .run(move || tcp_connects(source, dest, Duration::from_millis(1500)))
            .unwrap()
    };
    assert!(try_connect(ALLOWED_V4.into()), "allowlisted v4 connects");
    assert!(try_connect(ALLOWED_V6.into()), "allowlisted v6 connects");
    assert!(!try_connect(UNKNOWN_V4.into()), "unknown v4 is dropped");
    assert!(!try_connect(DENIED_V4.into()), "denied v4 is dropped");
    assert!(!try_connect(UNKNOWN_V6.into()), "unknown v6 is dropped");
    assert!(!try_connect(DENIED_V6.into()), "denied v6 is dropped");
    drop((listener_v4, listener_v6));

    let events = drain_events(&target(&lab, &pins));
    for source in [
        IpAddr::from(UNKNOWN_V4),
        DENIED_V4.into(),
        UNKNOWN_V6.into(),
        DENIED_V6.into(),
    ] {
        let event = events
            .iter()
            .find(|e| e.src == Some(source))
            .unwrap_or_else(|| panic!("no event from {source}: {events:#?}"));
        assert_eq!((event.transport.as_str(), event.dport), ("tcp", 5061));
        assert_eq!(event.dst, Some(Lab::sbc_addr(source.is_ipv6())));
        assert_eq!(event.vlan, Vec::<u16>::new());
    }
    assert!(events.iter().all(|e| e.src != Some(ALLOWED_V4.into())));
    let stats = stats(&lab, &pins);
    // Every SYN (and retransmission) of the refused connections was dropped and counted.
    assert!(packets(&stats, Zone::Trunk, Reason::NotAllowlisted, false) >= 2);
    assert!(packets(&stats, Zone::Trunk, Reason::Denylisted, false) >= 2);
    assert!(
        packets(&stats, Zone::Trunk, Reason::Allowlisted, false) >= 6,
        "SYN, ACK, FIN..."
    );
}

/// Tagged frames through the real veth: this kernel has no 802.1Q driver (CONFIG_VLAN_8021Q is
/// off), so the peer injects 802.1Q, QinQ and 0x9100-tagged SIP with AF_PACKET, and a tap on the
/// SBC side sees what XDP let through. Also IPv4 options and IPv6 hop-by-hop, crafted likewise.
#[test]
fn tagged_and_optioned_frames_through_veth_are_judged_by_source() {
    let lab = Lab::new("vlan").unwrap();
    let pins = TempPinRoot::new("veth-vlan");
    attach_policy(&lab, &pins, Policy::example(), None);
    let sbc_mac = mac_of(&lab.sbc, SBC_IF).unwrap();
    let peer_mac = mac_of(&lab.peer, PEER_IF).unwrap();
    let frame4 = |src: Ipv4Addr| {
        Packet::udp4(src, SBC_V4, 5060, 5060, SIP_OPTIONS.to_vec()).with_macs(peer_mac, sbc_mac)
    };
    let frame6 = |src: Ipv6Addr| {
        Packet::udp6(src, SBC_V6, 5060, 5060, SIP_OPTIONS.to_vec()).with_macs(peer_mac, sbc_mac)
    };
    // (frame, how many, admitted?)
    let plan: Vec<(Vec<u8>, usize, bool)> = vec![
        (frame4(ALLOWED_V4).with_vlan(100).build(), 11, true),
        (frame4(UNKNOWN_V4).with_vlan(100).build(), 13, false),
        (frame4(ALLOWED_V4).with_qinq(200, 300).build(), 17, true),
        (frame4(DENIED_V4).with_qinq(200, 300).build(), 19, false),
        (
            frame6(ALLOWED_V6)
                .with_tag(VlanTag::legacy(20))
                .with_vlan(30)
                .build(),
            23,
            true,
        ),
        (
            frame6(UNKNOWN_V6)
                .with_tag(VlanTag::legacy(20))
                .with_vlan(30)
                .build(),
            29,
            false,
        ),
        (
            frame4(ALLOWED_V4)
                .with_ipv4_options(vec![1, 1, 1, 0])
                .build(),
            31,
            true,
        ),
        (
            frame4(UNKNOWN_V4)
                .with_ipv4_options(vec![1, 1, 1, 0])
                .build(),
            37,
            false,
        ),
        (
            frame6(ALLOWED_V6)
                .with_ext(ExtHeader::HopByHop { len: 0 })
                .build(),
            41,
            true,
        ),
        (
            frame6(DENIED_V6)
                .with_ext(ExtHeader::HopByHop { len: 0 })
                .build(),
            43,
            false,
        ),
    ];
    let capture = Capture::start(&lab.sbc, SBC_IF).unwrap();
    for (frame, count, _) in &plan {
        let frames = vec![frame.clone(); *count];
        lab.peer
            .run(move || inject(PEER_IF, &frames))
            .unwrap()
            .unwrap();
    }
    let seen = capture.finish(Duration::from_millis(300));
    let seen_sip: Vec<&Vec<u8>> = seen.iter().filter(|f| is_sip_to_sbc(f)).collect();
    let admitted: usize = plan.iter().filter(|p| p.2).map(|p| p.1).sum();
    let refused: usize = plan.iter().filter(|p| !p.2).map(|p| p.1).sum();
    assert_eq!(
        seen_sip.len(),
        admitted,
        "the tap behind the filter sees exactly the admitted frames"
    );
    for frame in seen_sip {
        let source = source_of(frame);
        assert!(
            [IpAddr::from(ALLOWED_V4), ALLOWED_V6.into()].contains(&source),
            "{source} got through"
        );
    }
    let stats = stats(&lab, &pins);
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::Allowlisted, false),
        admitted as u64
    );
    assert_eq!(stats.dropped.packets, refused as u64);
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::Denylisted, false),
        19 + 43
    );
}

/// SIP to the SBC's port 5060 in a captured frame (the kernel may have moved the outer tag).
fn is_sip_to_sbc(frame: &[u8]) -> bool {
    matches!(
        parse(frame),
        Parsed::Ip(IpPacket {
            l4: L4::Ports { dport: 5060, .. },
            ..
        })
    )
}

fn source_of(frame: &[u8]) -> IpAddr {
    match parse(frame) {
        Parsed::Ip(packet) => match packet.family {
            Family::V4 => {
                IpAddr::from([packet.src[0], packet.src[1], packet.src[2], packet.src[3]])
            }
            Family::V6 => IpAddr::from(packet.src),
        },
        other => panic!("not IP: {other:?}"),
    }
}

/// Datagrams larger than the MTU leave the kernel as fragments; later fragments are dropped with a
/// dropped first fragment and pass after a passed one.
#[test]
fn fragmented_sip_follows_its_first_fragment() {
    let lab = Lab::new("frag").unwrap();
    let pins = TempPinRoot::new("veth-frag");
    attach_policy(&lab, &pins, Policy::example(), None);
    let sip = UdpCounter::start(&lab.sbc, 5060).unwrap();
    // 3000 bytes over a 1500 MTU: three fragments each (v4 and v6).
    static BIG: [u8; 3000] = [b'x'; 3000];
    for (source, count) in [
        (IpAddr::from(ALLOWED_V4), 13),
        (UNKNOWN_V4.into(), 17),
        (ALLOWED_V6.into(), 19),
        (UNKNOWN_V6.into(), 11),
    ] {
        lab.send_from(source, 5060, count, &BIG);
    }
    let sip = sip.finish(Duration::from_millis(300));
    assert_eq!(sip.get(&ALLOWED_V4.into()), Some(&13), "{sip:?}");
    assert_eq!(sip.get(&ALLOWED_V6.into()), Some(&19), "{sip:?}");
    assert_eq!(sip.len(), 2, "{sip:?}");
    let stats = stats(&lab, &pins);
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::Allowlisted, false),
        13 + 19
    );
    assert_eq!(
        packets(&stats, Zone::Unknown, Reason::FragmentPassed, false),
        2 * (13 + 19)
    );
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::NotAllowlisted, false),
        3 * (17 + 11)
    );
    assert_eq!(
        packets(&stats, Zone::Unknown, Reason::FragmentUntracked, false),
        0
    );
}

/// IPv6 with a destination-options header set by the sending socket (IPV6_DSTOPTS).
#[test]
fn ipv6_extension_headers_do_not_hide_the_source() {
    let lab = Lab::new("ext").unwrap();
    let pins = TempPinRoot::new("veth-ext");
    attach_policy(&lab, &pins, Policy::example(), None);
    let sip = UdpCounter::start(&lab.sbc, 5060).unwrap();
    for (source, count) in [(ALLOWED_V6, 14), (UNKNOWN_V6, 9)] {
        let dest = SocketAddr::new(SBC_V6.into(), 5060);
        lab.peer
            .run(move || {
                let socket = std::net::UdpSocket::bind(SocketAddr::new(source.into(), 0)).unwrap();
                // Destination options: next header, length 0 (8 bytes), PadN of 4 bytes.
                let dstopts: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
                // SAFETY: valid socket and option buffer.
                let rc = unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&socket),
                        libc::IPPROTO_IPV6,
                        libc::IPV6_DSTOPTS,
                        dstopts.as_ptr().cast(),
                        dstopts.len() as u32,
                    )
                };
                assert_eq!(rc, 0, "IPV6_DSTOPTS: {}", std::io::Error::last_os_error());
                for _ in 0..count {
                    socket.send_to(SIP_OPTIONS, dest).unwrap();
                }
            })
            .unwrap();
    }
    let sip = sip.finish(Duration::from_millis(300));
    assert_eq!(sip.get(&ALLOWED_V6.into()), Some(&14), "{sip:?}");
    assert_eq!(sip.len(), 1, "{sip:?}");
    let stats = stats(&lab, &pins);
    assert_eq!(packets(&stats, Zone::Trunk, Reason::Allowlisted, false), 14);
    assert_eq!(
        packets(&stats, Zone::Trunk, Reason::NotAllowlisted, false),
        9
    );
}

/// Real datagrams into the access zone: an unknown source flooding far above its class budget
/// gets about burst + rate x elapsed through, then a ban; an allowlisted carrier within its class
/// loses nothing meanwhile.
#[test]
fn access_zone_budget_and_ban_through_veth() {
    let lab = Lab::new("budget").unwrap();
    let pins = TempPinRoot::new("veth-budget");
    // Example policy: phones 10/s burst 30, ban after 100 over-budget packets in 10 s;
    // carrier 2000/s burst 4000. NOTIFY has no method budget of its own there (OPTIONS has,
    // burst 2): the packet budget is what this measures.
    attach_policy(&lab, &pins, Policy::example(), None);
    let access = UdpCounter::start(&lab.sbc, 5070).unwrap();
    let trunk = UdpCounter::start(&lab.sbc, 5060).unwrap();
    let notify = request(
        "NOTIFY",
        "sip:1001@198.18.0.1",
        "Event: message-summary\r\n",
    );
    let started = std::time::Instant::now();
    lab.send_from(UNKNOWN_V4.into(), 5070, 400, notify);
    let elapsed = started.elapsed().as_secs_f64();
    lab.send_from(ALLOWED_V4.into(), 5060, 500, SIP_OPTIONS);
    let access = access.finish(Duration::from_millis(300));
    let trunk = trunk.finish(Duration::from_millis(50));
    let received = access.get(&UNKNOWN_V4.into()).copied().unwrap_or(0);
    assert!(received >= 30, "the burst gets through: {received}");
    assert!(
        received as f64 <= 30.0 + 10.0 * elapsed + 1.0,
        "{received} datagrams through in {elapsed:.3}s at 10/s, burst 30"
    );
    assert_eq!(
        trunk.get(&ALLOWED_V4.into()),
        Some(&500),
        "the carrier is within its budget"
    );
    let stats = stats(&lab, &pins);
    assert_eq!(
        packets(&stats, Zone::Access, Reason::AccessAdmitted, false),
        received as u64
    );
    let limited = packets(&stats, Zone::Access, Reason::RateLimited, false);
    let banned = packets(&stats, Zone::Access, Reason::Banned, false);
    assert_eq!(
        limited + banned,
        400 - received as u64,
        "every refused datagram counted once"
    );
    assert!(
        banned > 0 && limited >= 100,
        "100 strikes, then the ban: {limited} / {banned}"
    );
    let state = State::open(&target(&lab, &pins)).unwrap();
    let bans = state.bans().unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].1.hits, banned);
}

/// A request from the peer to the SBC's access port.
fn request(method: &str, uri: &str, extra: &str) -> &'static [u8] {
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.10:5062;branch=z9hG4bK-sip\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@198.18.0.1>;tag=1\r\nTo: <{uri}>\r\n\
         Call-ID: veth-sip-{method}@198.18.2.10\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Box::leak(text.into_bytes().into_boxed_slice())
}

#[test]
fn sip_inspection_stops_fraudulent_invites_and_scanners_before_the_sbc_socket() {
    let lab = Lab::new("sipins").unwrap();
    let pins = TempPinRoot::new("veth-sip");
    // The example policy: access port 5070, UK dial plan, premium and satellite ranges denied,
    // the shipped scanner signatures with bans.
    attach_policy(&lab, &pins, Policy::example(), Some(Mode::Enforce));
    let access = UdpCounter::start(&lab.sbc, 5070).unwrap();
    let london = request("INVITE", "sip:02079460000@198.18.0.1", "");
    let satellite = request("INVITE", "sip:+881612345678@198.18.0.1;user=phone", "");
    let premium = request("INVITE", "sip:09012345678@198.18.0.1", "");
    let scanner = request(
        "OPTIONS",
        "sip:100@198.18.0.1",
        "User-Agent: friendly-scanner\r\n",
    );
    let keepalive = request(
        "OPTIONS",
        "sip:100@198.18.0.1",
        "User-Agent: Linphone/5.2\r\n",
    );
    // One phone dials London, then two fraudulent numbers: only London reaches the socket.
    lab.send_from(UNKNOWN_V4.into(), 5070, 1, london);
    lab.send_from(UNKNOWN_V4.into(), 5070, 1, satellite);
    lab.send_from(UNKNOWN_V4.into(), 5070, 1, premium);
    // A scanner over IPv6 is dropped at its first request and banned: its next, harmless-looking
    // request is dropped too.
    lab.send_from(UNKNOWN_V6.into(), 5070, 1, scanner);
    lab.send_from(UNKNOWN_V6.into(), 5070, 1, keepalive);

    let received = access.finish(Duration::from_millis(300));
    assert_eq!(received.get(&UNKNOWN_V4.into()), Some(&1), "{received:?}");
    assert_eq!(received.get(&UNKNOWN_V6.into()), None, "{received:?}");
    let stats = stats(&lab, &pins);
    assert_eq!(
        packets(&stats, Zone::Access, Reason::DestinationDenied, false),
        2
    );
    assert_eq!(packets(&stats, Zone::Access, Reason::Scanner, false), 1);
    assert_eq!(packets(&stats, Zone::Access, Reason::Banned, false), 1);
    // `sipguard events --reason`, reading the ring buffer itself (no daemon runs here), shows
    // the two denied INVITEs with their rule and number, and nothing else.
    let output = std::process::Command::new(sipguard_tests::sipguard_bin())
        .arg("--pin-root")
        .arg(pins.path())
        .args(["--netns", lab.sbc.name()])
        .args(["events", "--iface", SBC_IF, "--json", "--limit", "100"])
        .args(["--reason", "destination_denied", "--daemon", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let denied: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["reason"], "destination_denied", "{line}");
            (
                event["rule"].as_str().unwrap_or_default().to_string(),
                event["number"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        denied,
        [
            ("satellite".to_string(), "881612345678".to_string()),
            ("uk-premium".to_string(), "449012345678".to_string())
        ]
    );
    let signatures =
        sipguard::sip_stats::SipStats::read(&State::open(&target(&lab, &pins)).unwrap())
            .unwrap()
            .signatures;
    assert_eq!(signatures, [("friendly-scanner".to_string(), 1)]);
}
