//! Host-side tests of the shared parser and verdict on crafted frames: no root, no kernel.

use std::{
    cell::RefCell,
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    panic::{AssertUnwindSafe, catch_unwind},
};

use sipguard_common::{
    abi::{FragKey, FragVerdict, FragmentPolicy, Reason, SourceKey, Zone},
    parse::{
        Family, Fragment, Hidden, IpPacket, L4, MAX_IPV6_EXT_HEADERS, MAX_L4_OFFSET, MAX_VLAN_TAGS,
        Outcome, Parsed, Quick, Transport, parse, parse_quick,
    },
    verdict::{CLASS_UNKNOWN, Entry, PolicyView, Spend, Verdict, decide, decide_outcome},
};
use sipguard_tests::frames::{
    self, ExtHeader, IpLayer, Packet, VlanTag, arp_request, checksum, sip_options_request,
};

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 5);
const SIP: u16 = 5060;
const SPORT: u16 = 40_000;

fn sip4() -> Vec<u8> {
    sip_options_request(
        SocketAddr::new(SRC4.into(), SPORT),
        SocketAddr::new(DST4.into(), SIP),
        "UDP",
    )
}

fn sip6(transport: &str) -> Vec<u8> {
    sip_options_request(
        SocketAddr::new(SRC6.into(), SPORT),
        SocketAddr::new(DST6.into(), SIP),
        transport,
    )
}

fn sip_udp4() -> Packet {
    Packet::udp4(SRC4, DST4, SPORT, SIP, sip4())
}

fn sip_udp6() -> Packet {
    Packet::udp6(SRC6, DST6, SPORT, SIP, sip6("UDP"))
}

fn ip(frame: &[u8]) -> IpPacket {
    match parse(frame) {
        Parsed::Ip(packet) => packet,
        other => panic!("expected an IP packet, got {other:?}"),
    }
}

/// Ports of a frame that must parse to visible ports: (transport, sport, dport, payload offset).
fn ports(frame: &[u8]) -> (Transport, u16, u16, u16) {
    match ip(frame).l4 {
        L4::Ports {
            transport,
            sport,
            dport,
            payload,
        } => (transport, sport, dport, payload),
        other => panic!("expected ports, got {other:?}"),
    }
}

fn v4(addr: Ipv4Addr) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&addr.octets());
    out
}

fn put16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

// ------------------------------------------------------------------------------------------------
// A policy in memory
// ------------------------------------------------------------------------------------------------

struct Prefix {
    family: Family,
    addr: [u8; 16],
    len: u8,
}

impl Prefix {
    fn parse(text: &str) -> Prefix {
        let (addr, len) = text.split_once('/').expect("prefix/len");
        let len: u8 = len.parse().expect("prefix length");
        match addr.parse::<IpAddr>().expect("address") {
            IpAddr::V4(a) => Prefix {
                family: Family::V4,
                addr: v4(a),
                len,
            },
            IpAddr::V6(a) => Prefix {
                family: Family::V6,
                addr: a.octets(),
                len,
            },
        }
    }

    fn contains(&self, family: Family, addr: &[u8; 16]) -> bool {
        let bits = self.len as usize;
        family == self.family
            && self.addr[..bits / 8] == addr[..bits / 8]
            && (bits.is_multiple_of(8) || {
                let mask = 0xffu8 << (8 - bits % 8);
                self.addr[bits / 8] & mask == addr[bits / 8] & mask
            })
    }
}

type FragMapKey = ([u8; 16], [u8; 16], u32, u8, u8);

struct FakePolicy {
    udp: HashMap<u16, Zone>,
    tcp: HashMap<u16, Zone>,
    sctp: HashMap<u16, Zone>,
    allow: Vec<Prefix>,
    deny: Vec<Prefix>,
    fragments: FragmentPolicy,
    remembered: RefCell<HashMap<FragMapKey, FragVerdict>>,
}

impl FakePolicy {
    /// UDP and TCP 5060 are trunk ports; 192.0.2.0/24 and 2001:db8:1::/48 are allowlisted,
    /// 192.0.2.66 and 2001:db8:1::66 denylisted.
    fn new() -> Self {
        FakePolicy {
            udp: HashMap::from([(SIP, Zone::Trunk)]),
            tcp: HashMap::from([(SIP, Zone::Trunk), (5061, Zone::Trunk)]),
            sctp: HashMap::from([(SIP, Zone::Trunk)]),
            allow: vec![
                Prefix::parse("192.0.2.0/24"),
                Prefix::parse("2001:db8:1::/48"),
            ],
            deny: vec![
                Prefix::parse("192.0.2.66/32"),
                Prefix::parse("2001:db8:1::66/128"),
            ],
            fragments: FragmentPolicy::Inherit,
            remembered: RefCell::new(HashMap::new()),
        }
    }

    fn with_fragments(mut self, policy: FragmentPolicy) -> Self {
        self.fragments = policy;
        self
    }

    fn key(key: &FragKey) -> FragMapKey {
        (key.src, key.dst, key.id, key.family, key.proto)
    }

    /// The verdict of the whole decision; where the data plane's entry decides alone, it must
    /// decide the same (checked on every frame of these tests).
    fn verdict(&self, frame: &[u8]) -> Verdict {
        let parsed = parse(frame);
        let early = sipguard_common::verdict::entry(&parsed, self);
        let verdict = decide(&parsed, self);
        match early {
            Entry::Pass(early) | Entry::Drop(early) => assert_eq!(early, verdict, "entry"),
            Entry::Judge { class } => assert_eq!(class, CLASS_UNKNOWN, "the full entry's hint"),
        }
        if let Some(quick) = parse_quick(frame) {
            assert_quick_agrees(&quick, &parsed);
            match sipguard_common::verdict::entry_quick(&quick, self) {
                Some(Entry::Pass(early) | Entry::Drop(early)) => {
                    assert_eq!(early, verdict, "quick entry");
                }
                // The judge, handed the entry's class, decides as without it.
                Some(Entry::Judge { class }) => {
                    let mut src = [0; 16];
                    src[..4].copy_from_slice(&quick.src);
                    assert_eq!(class, self.allow_class(Family::V4, &src), "hinted class");
                    assert!(!self.is_denied(Family::V4, &src), "hinted a denied source");
                    let hinted = decide_outcome(Outcome::Ip, &quick.meta(), self, class);
                    assert_eq!(hinted, verdict, "hinted judge");
                }
                None => {}
            }
        }
        verdict
    }
}

impl PolicyView for FakePolicy {
    fn zone(&self, transport: Transport, port: u16) -> Zone {
        let table = match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
            Transport::Sctp => &self.sctp,
        };
        table.get(&port).copied().unwrap_or(Zone::None)
    }

    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.deny.iter().any(|p| p.contains(family, addr))
    }

    // Exact prefilters, so the entry's quick paths (flood drop, hinted judge) are taken here.
    fn maybe_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.is_denied(family, addr)
    }

    fn maybe_allowed(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.allow_class(family, addr) != sipguard_common::verdict::NOT_ALLOWLISTED
    }

    fn allow_class(&self, family: Family, addr: &[u8; 16]) -> u32 {
        if self.allow.iter().any(|p| p.contains(family, addr)) {
            0
        } else {
            sipguard_common::verdict::NOT_ALLOWLISTED
        }
    }

    fn fragment_policy(&self) -> FragmentPolicy {
        self.fragments
    }

    fn recall_fragment(&self, key: &FragKey) -> Option<FragVerdict> {
        self.remembered.borrow().get(&Self::key(key)).copied()
    }

    fn remember_fragment(&self, key: &FragKey, verdict: FragVerdict) {
        self.remembered.borrow_mut().insert(Self::key(key), verdict);
    }

    fn forget_fragment(&self, key: &FragKey) {
        self.remembered.borrow_mut().remove(&Self::key(key));
    }

    // No access zone and no budget classes here: budgets are tested with the model in
    // `budgets.rs` and in the kernel.
    fn ipv6_budget_prefix(&self) -> u8 {
        64
    }

    fn is_banned(&self, _source: &SourceKey) -> bool {
        false
    }

    fn spend_peer(&self, _source: &SourceKey, _class: u16) -> bool {
        true
    }

    fn spend_unknown(&self, _source: &SourceKey) -> Spend {
        Spend::Admitted
    }
}

/// The verdict the fake policy gives: its allowlisted sources have no class (0); sources judged
/// in the access zone are on no list.
fn verdict(reason: Reason, zone: Zone) -> Verdict {
    let class = match reason {
        Reason::AccessAdmitted | Reason::RateLimited | Reason::NewSourceLimited => {
            sipguard_common::abi::NOT_ALLOWLISTED_FLAG
        }
        _ => 0,
    };
    Verdict {
        reason,
        zone,
        class,
    }
}

const ALLOWED4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const DENIED4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
const UNKNOWN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const ALLOWED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
const DENIED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x66);
const UNKNOWN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 7);

// ------------------------------------------------------------------------------------------------
// The frame builder itself
// ------------------------------------------------------------------------------------------------

/// Checksum of the transport segment at `l4` with the pseudo-header of the frame's IP header.
fn transport_checksum_ok(frame: &[u8], l3: usize, l4: usize, proto: u8) -> bool {
    let mut pseudo = Vec::new();
    let segment = &frame[l4..];
    if frame[l3] >> 4 == 4 {
        pseudo.extend_from_slice(&frame[l3 + 12..l3 + 20]);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    } else {
        pseudo.extend_from_slice(&frame[l3 + 8..l3 + 40]);
        pseudo.extend_from_slice(&(segment.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, proto]);
    }
    pseudo.extend_from_slice(segment);
    checksum(0, &pseudo) == 0
}

#[test]
fn builder_checksums_are_correct() {
    let opts = vec![0x94, 0x04, 0x00, 0x00];
    let cases = [
        (sip_udp4(), frames::PROTO_UDP),
        (
            sip_udp4().with_ipv4_options(opts.clone()),
            frames::PROTO_UDP,
        ),
        (
            Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4()),
            frames::PROTO_TCP,
        ),
        (sip_udp6(), frames::PROTO_UDP),
        (
            Packet::tcp6(SRC6, DST6, SPORT, SIP, sip6("TCP"))
                .with_tcp_options([2, 4, 5, 0xb4, 1, 3, 3])
                .with_ext(ExtHeader::DestOpts { len: 1 }),
            frames::PROTO_TCP,
        ),
        (Packet::icmp6_echo(SRC6, DST6), frames::PROTO_ICMPV6),
        (
            Packet::udp4(SRC4, DST4, 1, 2, [0xffu8; 3]),
            frames::PROTO_UDP,
        ),
    ];
    for (packet, proto) in cases {
        let frame = packet.build();
        let l3 = packet.l3_offset();
        if let IpLayer::V4(_) = packet.ip {
            let ihl = (frame[l3] & 0x0f) as usize * 4;
            assert_eq!(checksum(0, &frame[l3..l3 + ihl]), 0, "IPv4 header");
        }
        assert!(
            transport_checksum_ok(&frame, l3, packet.l4_offset(), proto),
            "{packet:?}"
        );
    }
    let icmp = Packet::icmp4_echo(SRC4, DST4);
    let frame = icmp.build();
    assert_eq!(checksum(0, &frame[icmp.l4_offset()..]), 0, "ICMPv4");
}

#[test]
fn sip_payload_is_a_realistic_options_request() {
    let text = String::from_utf8(sip6("UDP")).expect("utf-8");
    assert!(text.starts_with("OPTIONS sip:[2001:db8:2::5]:5060 SIP/2.0\r\n"));
    for header in [
        "\r\nVia: SIP/2.0/UDP [2001:db8:1::10]:40000;branch=z9hG4bK",
        "\r\nFrom: ",
        "\r\nTo: ",
        "\r\nCall-ID: ",
        "\r\nCSeq: 1 OPTIONS\r\n",
        "\r\nMax-Forwards: 70\r\n",
        "\r\nContent-Length: 0\r\n\r\n",
    ] {
        assert!(text.contains(header), "{header:?} missing in {text}");
    }
    assert!((250..600).contains(&text.len()), "{} bytes", text.len());
}

#[test]
fn ipv4_fragments_reassemble_to_the_original() {
    let packet = sip_udp4().with_ipv4_options([0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0]);
    let whole = packet.build();
    let l3 = packet.l3_offset();
    let ihl = 32;
    let fragments = packet.fragment(100, 0xbeef);
    assert_eq!(fragments.len(), (whole.len() - l3 - ihl).div_ceil(96));
    let mut data = Vec::new();
    for (index, fragment) in fragments.iter().enumerate() {
        assert_eq!(checksum(0, &fragment[l3..l3 + ihl]), 0);
        assert_eq!(&fragment[l3 + 4..l3 + 6], &0xbeefu16.to_be_bytes());
        let field = u16::from_be_bytes([fragment[l3 + 6], fragment[l3 + 7]]);
        assert_eq!((field & 0x1fff) as usize * 8, data.len());
        assert_eq!(field & 0x2000 != 0, index + 1 < fragments.len());
        // Router alert (copied) stays, record route (not copied) becomes NOPs.
        assert_eq!(&fragment[l3 + 20..l3 + 24], &[0x94, 4, 0, 0]);
        let rr = if index == 0 { 7 } else { 1 };
        assert_eq!(fragment[l3 + 24], rr);
        data.extend_from_slice(&fragment[l3 + ihl..]);
    }
    assert_eq!(data, whole[l3 + ihl..]);
}

#[test]
fn ipv6_fragments_keep_hop_by_hop_and_routing_unfragmented() {
    let packet = sip_udp6()
        .with_ext(ExtHeader::HopByHop { len: 0 })
        .with_ext(ExtHeader::routing(2))
        .with_ext(ExtHeader::DestOpts { len: 1 });
    let whole = packet.build();
    let l3 = packet.l3_offset();
    let kept = 8 + 24;
    let fragments = packet.fragment(200, 0xdead_beef);
    let mut data = Vec::new();
    for (index, fragment) in fragments.iter().enumerate() {
        assert_eq!(fragment[l3 + 6], frames::PROTO_HOPOPTS);
        assert_eq!(fragment[l3 + 40], frames::PROTO_ROUTING);
        assert_eq!(fragment[l3 + 48], frames::PROTO_FRAGMENT);
        let frag = &fragment[l3 + 40 + kept..l3 + 48 + kept];
        assert_eq!(frag[0], frames::PROTO_DSTOPTS);
        assert_eq!(&frag[4..8], &0xdead_beefu32.to_be_bytes());
        let field = u16::from_be_bytes([frag[2], frag[3]]);
        assert_eq!((field >> 3) as usize * 8, data.len());
        assert_eq!(field & 1 != 0, index + 1 < fragments.len());
        let payload_len = u16::from_be_bytes([fragment[l3 + 4], fragment[l3 + 5]]) as usize;
        assert_eq!(payload_len, fragment.len() - l3 - 40);
        data.extend_from_slice(&fragment[l3 + 48 + kept..]);
    }
    assert!(fragments.len() > 2);
    assert_eq!(data, whole[l3 + 40 + kept..]);
}

/// Options must pass Linux's checks (at most 7 bytes of padding in a row, zero PadN data, at most
/// 8 other options) for the frames to be usable on a real stack too.
#[test]
fn ipv6_option_headers_are_well_formed_for_every_length() {
    for len in 0..=255u8 {
        let packet = sip_udp6().with_ext(ExtHeader::HopByHop { len });
        let frame = packet.build();
        let header = &frame[54..54 + (len as usize + 1) * 8];
        let (mut at, mut padding, mut others) = (2, 0, 0);
        while at < header.len() {
            let size = match header[at] {
                0 => 1,
                kind => {
                    let size = header[at + 1] as usize + 2;
                    if kind == 1 {
                        assert!(header[at + 2..at + size].iter().all(|b| *b == 0));
                    }
                    size
                }
            };
            if header[at] <= 1 {
                padding += size;
                assert!(padding <= 7, "len {len}: {padding} bytes of padding");
            } else {
                padding = 0;
                others += 1;
            }
            at += size;
        }
        assert_eq!(at, header.len(), "len {len}");
        assert!(others <= 8, "len {len}: {others} options");
        if packet.l4_offset() <= MAX_L4_OFFSET {
            assert_eq!(ports(&frame).3 as usize, packet.payload_offset());
        } else {
            assert_eq!(ip(&frame).l4, L4::Hidden(Hidden::ChainTooLong));
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Plain UDP/TCP over IPv4/IPv6
// ------------------------------------------------------------------------------------------------

#[test]
fn udp_over_ipv4() {
    let frame = sip_udp4().build();
    let packet = ip(&frame);
    assert_eq!(packet.family, Family::V4);
    assert_eq!(packet.src, v4(SRC4));
    assert_eq!(packet.dst, v4(DST4));
    assert_eq!(packet.proto, frames::PROTO_UDP);
    assert_eq!(packet.fragment, Fragment::None);
    assert_eq!(packet.vlan, [0, 0]);
    assert_eq!(ports(&frame), (Transport::Udp, SPORT, SIP, 14 + 20 + 8));
}

#[test]
fn tcp_over_ipv4() {
    let frame = Packet::tcp4(SRC4, DST4, SPORT, 5061, sip4()).build();
    assert_eq!(ports(&frame), (Transport::Tcp, SPORT, 5061, 14 + 20 + 20));
    let packet = Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4())
        .with_tcp_flags(frames::TCP_PSH | frames::TCP_ACK)
        .with_tcp_options([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(
        ports(&packet.build()),
        (Transport::Tcp, SPORT, SIP, packet.payload_offset() as u16)
    );
    assert_eq!(packet.payload_offset(), 14 + 20 + 32);
}

#[test]
fn udp_and_tcp_over_ipv6() {
    let frame = sip_udp6().build();
    let packet = ip(&frame);
    assert_eq!(packet.family, Family::V6);
    assert_eq!(packet.src, SRC6.octets());
    assert_eq!(packet.dst, DST6.octets());
    assert_eq!(packet.fragment, Fragment::None);
    assert_eq!(ports(&frame), (Transport::Udp, SPORT, SIP, 14 + 40 + 8));
    let frame = Packet::tcp6(SRC6, DST6, SPORT, SIP, sip6("TCP")).build();
    assert_eq!(ports(&frame), (Transport::Tcp, SPORT, SIP, 14 + 40 + 20));
}

// ------------------------------------------------------------------------------------------------
// VLAN tags
// ------------------------------------------------------------------------------------------------

#[test]
fn single_8021q_tag() {
    let packet = sip_udp4().with_vlan(100);
    let frame = packet.build();
    assert_eq!(&frame[12..18], &[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
    assert_eq!(ip(&frame).vlan, [100, 0]);
    assert_eq!(ports(&frame), (Transport::Udp, SPORT, SIP, 14 + 4 + 20 + 8));
}

#[test]
fn qinq_8021ad_outer_8021q_inner() {
    let frame = sip_udp6().with_qinq(200, 100).build();
    assert_eq!(&frame[12..14], &[0x88, 0xa8]);
    assert_eq!(&frame[16..18], &[0x81, 0x00]);
    assert_eq!(ip(&frame).vlan, [200, 100]);
    assert_eq!(ports(&frame), (Transport::Udp, SPORT, SIP, 14 + 8 + 40 + 8));
}

#[test]
fn legacy_9100_outer_tag() {
    let frame = sip_udp4()
        .with_tag(VlanTag::legacy(300))
        .with_vlan(10)
        .build();
    assert_eq!(&frame[12..14], &[0x91, 0x00]);
    assert_eq!(ip(&frame).vlan, [300, 10]);
    assert_eq!(ports(&frame).2, SIP);
}

#[test]
fn priority_bits_are_not_part_of_the_vlan_id() {
    let frame = sip_udp4().with_tag(VlanTag::dot1q(0xe000 | 42)).build();
    assert_eq!(ip(&frame).vlan, [42, 0]);
}

#[test]
fn vlan_stack_up_to_the_limit_parses_and_deeper_is_too_deep() {
    let mut packet = sip_udp4();
    for id in 1..=MAX_VLAN_TAGS as u16 {
        packet = packet.with_tag(VlanTag::dot1ad(id));
    }
    let frame = packet.build();
    assert_eq!(ip(&frame).vlan, [1, 2]);
    assert_eq!(ports(&frame).3 as usize, packet.payload_offset());

    let deeper = packet.with_vlan(99);
    assert_eq!(parse(&deeper.build()[..]), Parsed::TooDeep);
    let mut v6 = sip_udp6();
    for id in 0..=MAX_VLAN_TAGS as u16 {
        v6 = v6.with_vlan(id);
    }
    assert_eq!(parse(&v6.build()[..]), Parsed::TooDeep);
}

// ------------------------------------------------------------------------------------------------
// IPv4 header
// ------------------------------------------------------------------------------------------------

#[test]
fn ipv4_options_for_every_header_length() {
    for words in 1..=10usize {
        // Router alert, then NOPs, then end of options.
        let mut options = vec![0x94, 4, 0, 0];
        options.resize(words * 4 - 1, 1);
        options.push(0);
        let packet = sip_udp4().with_ipv4_options(options);
        let frame = packet.build();
        assert_eq!(frame[14], 0x40 | (5 + words as u8), "IHL");
        assert_eq!(
            ports(&frame),
            (Transport::Udp, SPORT, SIP, (14 + 20 + words * 4 + 8) as u16)
        );
    }
    // Options not a multiple of 4 are padded.
    let packet = sip_udp4().with_ipv4_options([1, 1, 1]);
    assert_eq!(packet.build()[14], 0x46);
    assert_eq!(ports(&packet.build()).3, 14 + 24 + 8);
}

#[test]
fn ipv4_ah_is_walked() {
    let packet = sip_udp4().with_ext(ExtHeader::ah());
    let frame = packet.build();
    assert_eq!(frame[14 + 9], frames::PROTO_AH);
    let parsed = ip(&frame);
    assert_eq!(parsed.proto, frames::PROTO_UDP);
    assert_eq!(
        ports(&frame),
        (Transport::Udp, SPORT, SIP, 14 + 20 + 24 + 8)
    );
}

#[test]
fn ipv4_ah_past_the_payload_is_malformed_and_a_huge_one_hides_the_ports() {
    let short = Packet::raw4(SRC4, DST4, frames::PROTO_AH, [frames::PROTO_UDP, 4, 0, 0]);
    assert_eq!(parse(&short.build()[..]), Parsed::Malformed);
    // The transport header starts beyond what the parser reads.
    let huge = sip_udp4().with_ext(ExtHeader::Ah { len: 200 }).build();
    assert_eq!(ip(&huge).l4, L4::Hidden(Hidden::ChainTooLong));
    let large = sip_udp4().with_ext(ExtHeader::Ah { len: 120 }).build();
    assert_eq!(ports(&large).2, SIP);
}

#[test]
fn ipv4_wrong_version_is_malformed() {
    for version in [0u8, 5, 6, 15] {
        let mut frame = sip_udp4().build();
        frame[14] = (version << 4) | 5;
        assert_eq!(parse(&frame[..]), Parsed::Malformed, "version {version}");
    }
}

#[test]
fn ipv4_header_length_below_5_is_malformed() {
    for ihl in 0..5u8 {
        let mut frame = sip_udp4().build();
        frame[14] = 0x40 | ihl;
        assert_eq!(parse(&frame[..]), Parsed::Malformed, "IHL {ihl}");
    }
}

#[test]
fn ipv4_total_length_beyond_the_frame_is_malformed() {
    let mut frame = sip_udp4().build();
    let total = (frame.len() - 14) as u16;
    put16(&mut frame, 16, total + 1);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
    put16(&mut frame, 16, u16::MAX);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
}

#[test]
fn ipv4_total_length_below_the_header_length_is_malformed() {
    let mut frame = sip_udp4().build();
    put16(&mut frame, 16, 19);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
    put16(&mut frame, 16, 0);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);

    let mut frame = sip_udp4().with_ipv4_options([1, 1, 1, 0]).build();
    put16(&mut frame, 16, 20);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
}

#[test]
fn ethernet_padding_after_a_short_packet_is_accepted() {
    let packet = Packet::udp4(SRC4, DST4, SPORT, SIP, []).padded_to(60);
    let frame = packet.build();
    assert_eq!(frame.len(), 60);
    assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 28);
    assert_eq!(ports(&frame), (Transport::Udp, SPORT, SIP, 42));

    let frame = Packet::tcp4(SRC4, DST4, SPORT, SIP, [])
        .padded_to(60)
        .build();
    assert_eq!(ports(&frame), (Transport::Tcp, SPORT, SIP, 54));
    let frame = Packet::udp6(SRC6, DST6, SPORT, SIP, [1])
        .padded_to(96)
        .build();
    assert_eq!(ports(&frame), (Transport::Udp, SPORT, SIP, 62));
}

// ------------------------------------------------------------------------------------------------
// IPv6 header and extension headers
// ------------------------------------------------------------------------------------------------

#[test]
fn ipv6_wrong_version_or_lengths_are_malformed() {
    let mut frame = sip_udp6().build();
    frame[14] = 0x45;
    assert_eq!(parse(&frame[..]), Parsed::Malformed);

    let mut frame = sip_udp6().build();
    let payload = (frame.len() - 54) as u16;
    put16(&mut frame, 18, payload + 1);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
    // Zero payload length announces a jumbogram.
    put16(&mut frame, 18, 0);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);

    // An extension header running past the payload.
    let packet = sip_udp6().with_ext(ExtHeader::DestOpts { len: 0 });
    let mut frame = packet.build();
    frame[54 + 1] = 200;
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
}

#[test]
fn ipv6_no_next_header_is_other() {
    let frame = Packet::raw6(SRC6, DST6, frames::PROTO_NONE, []).build();
    assert_eq!(ip(&frame).l4, L4::Other);
}

#[test]
fn ipv6_each_extension_header_kind_is_walked() {
    let cases = [
        ExtHeader::HopByHop { len: 0 },
        ExtHeader::HopByHop { len: 3 },
        ExtHeader::routing(0),
        ExtHeader::routing(2),
        ExtHeader::DestOpts { len: 0 },
        ExtHeader::DestOpts { len: 5 },
        ExtHeader::ah(),
        ExtHeader::Ah { len: 1 },
        // Atomic fragment: a Fragment header on an unfragmented packet.
        ExtHeader::Fragment {
            offset: 0,
            more: false,
            id: 7,
        },
    ];
    for ext in cases {
        let packet = sip_udp6().with_ext(ext);
        let frame = packet.build();
        assert_eq!(frame[20], ext.protocol());
        let parsed = ip(&frame);
        assert_eq!(parsed.proto, frames::PROTO_UDP, "{ext:?}");
        assert_eq!(parsed.fragment, Fragment::None, "{ext:?}");
        assert_eq!(
            ports(&frame),
            (Transport::Udp, SPORT, SIP, packet.payload_offset() as u16),
            "{ext:?}"
        );
    }
}

#[test]
fn ipv6_mixed_chain_is_walked() {
    let packet = Packet::tcp6(SRC6, DST6, SPORT, SIP, sip6("TCP"))
        .with_ext(ExtHeader::HopByHop { len: 0 })
        .with_ext(ExtHeader::DestOpts { len: 0 })
        .with_ext(ExtHeader::routing(0))
        .with_ext(ExtHeader::Fragment {
            offset: 0,
            more: false,
            id: 1,
        })
        .with_ext(ExtHeader::ah())
        .with_ext(ExtHeader::DestOpts { len: 1 });
    let frame = packet.build();
    assert_eq!(
        ports(&frame),
        (Transport::Tcp, SPORT, SIP, packet.payload_offset() as u16)
    );
}

#[test]
fn ipv6_chain_up_to_the_limit_parses_and_longer_is_hidden() {
    let mut packet = sip_udp6();
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        packet = packet.with_ext(ExtHeader::DestOpts { len: 0 });
    }
    let frame = packet.build();
    assert_eq!(ports(&frame).2, SIP);

    let longer = packet.with_ext(ExtHeader::DestOpts { len: 0 }).build();
    let parsed = ip(&longer);
    assert_eq!(parsed.l4, L4::Hidden(Hidden::ChainTooLong));
    assert_eq!(parsed.proto, frames::PROTO_DSTOPTS);
}

#[test]
fn ipv6_chain_longer_than_the_byte_limit_is_hidden() {
    for exts in [
        vec![ExtHeader::DestOpts { len: 255 }],
        vec![
            ExtHeader::HopByHop { len: 37 },
            ExtHeader::DestOpts { len: 37 },
        ],
        vec![
            ExtHeader::DestOpts { len: 70 },
            ExtHeader::DestOpts { len: 0 },
        ],
    ] {
        let mut packet = sip_udp6();
        for ext in &exts {
            packet = packet.with_ext(*ext);
        }
        let frame = packet.build();
        assert_eq!(ip(&frame).l4, L4::Hidden(Hidden::ChainTooLong), "{exts:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// Fragments
// ------------------------------------------------------------------------------------------------

#[test]
fn ipv4_first_and_later_fragments() {
    let fragments = sip_udp4().fragment(128, 0x4242);
    assert_eq!(fragments.len(), (8 + sip4().len()).div_ceil(128));
    let first = ip(&fragments[0]);
    assert_eq!(first.fragment, Fragment::First { id: 0x4242 });
    assert_eq!(
        first.l4,
        L4::Ports {
            transport: Transport::Udp,
            sport: SPORT,
            dport: SIP,
            payload: 0,
        }
    );
    for later in &fragments[1..] {
        let packet = ip(later);
        assert_eq!(packet.fragment, Fragment::Later { id: 0x4242 });
        assert_eq!(packet.l4, L4::Hidden(Hidden::LaterFragment));
        assert_eq!(packet.proto, frames::PROTO_UDP);
    }
}

#[test]
fn ipv4_fragments_with_ah() {
    let fragments = sip_udp4().with_ext(ExtHeader::ah()).fragment(64, 9);
    assert_eq!(ports(&fragments[0]).2, SIP);
    assert_eq!(ip(&fragments[0]).fragment, Fragment::First { id: 9 });
    let later = ip(&fragments[1]);
    assert_eq!(later.l4, L4::Hidden(Hidden::LaterFragment));
    assert_eq!(later.proto, frames::PROTO_AH);
}

#[test]
fn ipv6_first_and_later_fragments() {
    let fragments = sip_udp6().fragment(96, 0x1234_5678);
    let first = ip(&fragments[0]);
    assert_eq!(first.fragment, Fragment::First { id: 0x1234_5678 });
    assert!(matches!(
        first.l4,
        L4::Ports {
            dport: SIP,
            payload: 0,
            ..
        }
    ));
    for later in &fragments[1..] {
        let packet = ip(later);
        assert_eq!(packet.fragment, Fragment::Later { id: 0x1234_5678 });
        assert_eq!(packet.l4, L4::Hidden(Hidden::LaterFragment));
    }
}

#[test]
fn ipv6_fragments_behind_and_before_extension_headers() {
    let packet = sip_udp6()
        .with_ext(ExtHeader::HopByHop { len: 0 })
        .with_ext(ExtHeader::DestOpts { len: 1 })
        .with_ext(ExtHeader::ah());
    let fragments = packet.fragment(120, 77);
    let first = ip(&fragments[0]);
    assert_eq!(first.fragment, Fragment::First { id: 77 });
    assert_eq!(first.proto, frames::PROTO_UDP);
    assert!(matches!(first.l4, L4::Ports { dport: SIP, .. }));
    let later = ip(&fragments[1]);
    assert_eq!(later.fragment, Fragment::Later { id: 77 });
    // The later fragment announces the first fragmentable header, not UDP.
    assert_eq!(later.proto, frames::PROTO_DSTOPTS);
    assert_eq!(later.l4, L4::Hidden(Hidden::LaterFragment));
}

#[test]
fn ipv6_first_fragment_cut_inside_an_extension_header_is_malformed() {
    // RFC 8200: the first fragment must hold the whole header chain; Linux discards it too.
    let fragments = sip_udp6()
        .with_ext(ExtHeader::DestOpts { len: 10 })
        .fragment(64, 21);
    assert_eq!(parse(&fragments[0][..]), Parsed::Malformed);
    assert_eq!(ip(&fragments[1]).l4, L4::Hidden(Hidden::LaterFragment));
}

#[test]
fn tiny_first_fragments_hide_the_ports() {
    let tiny4 = Packet::raw4(SRC4, DST4, frames::PROTO_UDP, [0x9c, 0x40])
        .with_fragment(0, true, 5)
        .build();
    let packet = ip(&tiny4);
    assert_eq!(packet.fragment, Fragment::First { id: 5 });
    assert_eq!(packet.l4, L4::Hidden(Hidden::TinyFirstFragment));

    let tiny6 = Packet::raw6(SRC6, DST6, frames::PROTO_TCP, [0x9c, 0x40, 0x13])
        .with_fragment(0, true, 6)
        .build();
    let packet = ip(&tiny6);
    assert_eq!(packet.fragment, Fragment::First { id: 6 });
    assert_eq!(packet.l4, L4::Hidden(Hidden::TinyFirstFragment));

    // Four bytes are enough for the ports.
    let four = Packet::raw4(SRC4, DST4, frames::PROTO_UDP, [0x9c, 0x40, 0x13, 0xc4])
        .with_fragment(0, true, 5)
        .build();
    assert_eq!(ports(&four), (Transport::Udp, 40_000, SIP, 0));
}

// ------------------------------------------------------------------------------------------------
// Not IP, not SIP, broken transport headers
// ------------------------------------------------------------------------------------------------

#[test]
fn arp_and_other_ethertypes_are_not_ip() {
    let arp = arp_request(frames::DEFAULT_SRC_MAC, SRC4, DST4);
    assert_eq!(parse(&arp[..]), Parsed::NotIp);
    let lldp = sip_udp4().with_ethertype(0x88cc).build();
    assert_eq!(parse(&lldp[..]), Parsed::NotIp);
    let tagged = sip_udp4()
        .with_vlan(5)
        .with_ethertype(frames::ETHERTYPE_ARP)
        .build();
    assert_eq!(parse(&tagged[..]), Parsed::NotIp);
}

#[test]
fn icmp_and_other_protocols_are_other() {
    let icmp = ip(&Packet::icmp4_echo(SRC4, DST4).build());
    assert_eq!((icmp.proto, icmp.l4), (frames::PROTO_ICMP, L4::Other));
    let icmp6 = ip(&Packet::icmp6_echo(SRC6, DST6).build());
    assert_eq!((icmp6.proto, icmp6.l4), (frames::PROTO_ICMPV6, L4::Other));
    let esp = ip(&Packet::raw4(SRC4, DST4, 50, [0u8; 16]).build());
    assert_eq!((esp.proto, esp.l4), (50, L4::Other));
}

/// An SCTP common header (ports, verification tag, checksum) and one chunk header.
fn sctp_header(sport: u16, dport: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&sport.to_be_bytes());
    bytes.extend_from_slice(&dport.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0, 3, 0, 4]);
    bytes
}

#[test]
fn sctp_carries_its_ports_where_udp_and_tcp_do() {
    let v4 = ip(&Packet::raw4(SRC4, DST4, 132, sctp_header(40_000, SIP)).build());
    assert_eq!(
        v4.l4,
        L4::Ports {
            transport: Transport::Sctp,
            sport: 40_000,
            dport: SIP,
            payload: 0,
        }
    );
    let v6 = ip(&Packet::raw6(SRC6, DST6, 132, sctp_header(40_001, 5061)).build());
    assert!(matches!(
        v6.l4,
        L4::Ports {
            transport: Transport::Sctp,
            dport: 5061,
            ..
        }
    ));
    // Shorter than the common header: the kernel drops it, so do we.
    let short = Packet::raw4(SRC4, DST4, 132, sctp_header(1, SIP)[..8].to_vec()).build();
    assert_eq!(parse(&short[..]), Parsed::Malformed);
    // Judged like UDP and TCP: only the zone's SCTP ports are SIP.
    let policy = FakePolicy::new();
    let to = |src, dport| Packet::raw4(src, DST4, 132, sctp_header(40_000, dport)).build();
    assert_eq!(
        policy.verdict(&to(UNKNOWN4, SIP)),
        verdict(Reason::NotAllowlisted, Zone::Trunk)
    );
    assert_eq!(
        policy.verdict(&to(ALLOWED4, SIP)),
        verdict(Reason::Allowlisted, Zone::Trunk)
    );
    assert_eq!(
        policy.verdict(&to(DENIED4, SIP)),
        verdict(Reason::Denylisted, Zone::Trunk)
    );
    assert_eq!(
        policy.verdict(&to(UNKNOWN4, 5061)),
        verdict(Reason::NotSip, Zone::None)
    );
}

#[test]
fn udp_length_must_fit_the_ip_payload() {
    let packet = sip_udp4();
    let l4 = packet.l4_offset();
    let udp_len = (packet.build().len() - l4) as u16;
    for (bad, expect_ok) in [(udp_len + 1, false), (7, false), (0, false), (8, true)] {
        let mut frame = packet.build();
        put16(&mut frame, l4 + 4, bad);
        let parsed = parse(&frame[..]);
        assert_eq!(
            parsed == Parsed::Malformed,
            !expect_ok,
            "UDP length {bad}: {parsed:?}"
        );
    }
    let packet = sip_udp6();
    let mut frame = packet.build();
    let udp_len = (frame.len() - packet.l4_offset()) as u16;
    put16(&mut frame, packet.l4_offset() + 4, udp_len + 1);
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
}

#[test]
fn tcp_data_offset_must_be_sane() {
    for offset in 0..5u8 {
        let packet = Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4());
        let mut frame = packet.build();
        frame[packet.l4_offset() + 12] = offset << 4;
        assert_eq!(parse(&frame[..]), Parsed::Malformed, "data offset {offset}");
    }
    // Data offset beyond the segment.
    let packet = Packet::tcp6(SRC6, DST6, SPORT, SIP, []);
    let mut frame = packet.build();
    frame[packet.l4_offset() + 12] = 6 << 4;
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
}

// ------------------------------------------------------------------------------------------------
// Truncation and corruption
// ------------------------------------------------------------------------------------------------

/// Where the quick parser answers, the full parser finds the same unfragmented IPv4 packet.
fn assert_quick_agrees(quick: &Quick, parsed: &Parsed) {
    let Parsed::Ip(packet) = parsed else {
        panic!("quick parse {quick:?} of a frame the full parser calls {parsed:?}");
    };
    let L4::Ports {
        transport, dport, ..
    } = packet.l4
    else {
        panic!("quick parse {quick:?} of a packet without ports: {packet:?}");
    };
    assert_eq!(packet.family, Family::V4);
    assert_eq!(packet.fragment, Fragment::None);
    assert_eq!(packet.src[..4], quick.src);
    assert_eq!((transport, dport), (quick.transport, quick.dport));
}

fn assert_every_truncation_is_malformed(packet: &Packet, transport: Transport, dport: u16) {
    let frame = packet.build();
    for len in 0..frame.len() {
        let parsed = catch_unwind(AssertUnwindSafe(|| parse(&frame[..len])))
            .unwrap_or_else(|_| panic!("parse panicked on a {len}-byte prefix"));
        assert_eq!(parsed, Parsed::Malformed, "{len}-byte prefix of {packet:?}");
        assert_eq!(parse_quick(&frame[..len]), None, "quick, {len}-byte prefix");
        let verdict = decide(&parsed, &FakePolicy::new());
        assert_eq!(verdict.reason, Reason::Malformed);
    }
    assert_eq!(
        ports(&frame),
        (transport, SPORT, dport, packet.payload_offset() as u16)
    );
}

#[test]
fn every_truncation_of_a_sip_udp_ipv4_frame_is_malformed() {
    assert_every_truncation_is_malformed(&sip_udp4(), Transport::Udp, SIP);
}

#[test]
fn every_truncation_of_an_ipv4_frame_with_options_is_malformed() {
    let packet = Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4())
        .with_ipv4_options([0x94, 4, 0, 0, 1, 1, 1, 0])
        .with_tcp_options([2, 4, 5, 0xb4]);
    assert_every_truncation_is_malformed(&packet, Transport::Tcp, SIP);
}

#[test]
fn every_truncation_of_a_vlan_tagged_frame_is_malformed() {
    assert_every_truncation_is_malformed(&sip_udp4().with_qinq(10, 20), Transport::Udp, SIP);
    assert_every_truncation_is_malformed(&sip_udp6().with_vlan(30), Transport::Udp, SIP);
}

#[test]
fn every_truncation_of_a_tcp_ipv6_frame_with_destination_options_is_malformed() {
    let packet =
        Packet::tcp6(SRC6, DST6, SPORT, 5061, sip6("TCP")).with_ext(ExtHeader::DestOpts { len: 1 });
    assert_every_truncation_is_malformed(&packet, Transport::Tcp, 5061);
}

/// xorshift64*: deterministic, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn corrupted_frames_never_panic() {
    let seeds = [
        sip_udp4().with_vlan(7).build(),
        sip_udp4().with_ipv4_options([1, 1, 1, 1]).fragment(64, 3)[0].clone(),
        sip_udp6()
            .with_ext(ExtHeader::HopByHop { len: 0 })
            .with_ext(ExtHeader::ah())
            .build(),
        sip_udp6()
            .with_ext(ExtHeader::DestOpts { len: 0 })
            .fragment(64, 3)[1]
            .clone(),
        Packet::tcp6(SRC6, DST6, SPORT, SIP, [])
            .with_qinq(1, 2)
            .build(),
    ];
    let policy = FakePolicy::new();
    let mut rng = Rng(0x5eed_5eed_5eed_5eed);
    for seed in &seeds {
        for _ in 0..3000 {
            let mut frame = seed.clone();
            // Bias towards the headers, where the parser looks.
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % frame.len().min(120);
                frame[at] = rng.next() as u8;
            }
            let len = (rng.next() as usize) % (frame.len() + 1);
            let frame = &frame[..len];
            let result = catch_unwind(AssertUnwindSafe(|| decide(&parse(frame), &policy)));
            assert!(result.is_ok(), "panicked on {frame:02x?}");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Verdicts
// ------------------------------------------------------------------------------------------------

#[test]
fn denylist_beats_allowlist() {
    let policy = FakePolicy::new();
    let frame = Packet::udp4(DENIED4, DST4, SPORT, SIP, sip4()).build();
    assert_eq!(
        policy.verdict(&frame),
        verdict(Reason::Denylisted, Zone::Trunk)
    );
    let frame = Packet::tcp6(DENIED6, DST6, SPORT, SIP, []).build();
    assert_eq!(
        policy.verdict(&frame),
        verdict(Reason::Denylisted, Zone::Trunk)
    );
}

#[test]
fn allowlisted_sources_pass() {
    let policy = FakePolicy::new();
    let frame = Packet::udp4(ALLOWED4, DST4, SPORT, SIP, sip4()).build();
    assert_eq!(
        policy.verdict(&frame),
        verdict(Reason::Allowlisted, Zone::Trunk)
    );
    let frame = Packet::tcp6(ALLOWED6, DST6, SPORT, 5061, [])
        .with_vlan(4)
        .build();
    assert_eq!(
        policy.verdict(&frame),
        verdict(Reason::Allowlisted, Zone::Trunk)
    );
}

#[test]
fn unknown_sources_on_a_trunk_port_drop() {
    let policy = FakePolicy::new();
    let frame = Packet::udp4(UNKNOWN4, DST4, SPORT, SIP, sip4()).build();
    let v = policy.verdict(&frame);
    assert_eq!(v, verdict(Reason::NotAllowlisted, Zone::Trunk));
    assert!(v.reason.is_drop());
    let frame = Packet::udp6(UNKNOWN6, DST6, SPORT, SIP, sip6("UDP")).build();
    assert_eq!(
        policy.verdict(&frame),
        verdict(Reason::NotAllowlisted, Zone::Trunk)
    );
}

#[test]
fn non_sip_ports_and_protocols_pass_untouched() {
    let policy = FakePolicy::new();
    let not_sip = verdict(Reason::NotSip, Zone::None);
    let frame = Packet::udp4(DENIED4, DST4, SPORT, 53, [0u8; 12]).build();
    assert_eq!(policy.verdict(&frame), not_sip);
    // 5061 is a SIP port for TCP only.
    let frame = Packet::udp4(UNKNOWN4, DST4, SPORT, 5061, []).build();
    assert_eq!(policy.verdict(&frame), not_sip);
    let frame = Packet::icmp6_echo(UNKNOWN6, DST6).build();
    assert_eq!(policy.verdict(&frame), not_sip);
    let arp = arp_request(frames::DEFAULT_SRC_MAC, UNKNOWN4, DST4);
    assert_eq!(policy.verdict(&arp), verdict(Reason::NotIp, Zone::None));
}

#[test]
fn later_fragments_follow_a_dropped_first_fragment_and_pass_after_a_passed_one() {
    for (src, first) in [
        (ALLOWED4, Reason::Allowlisted),
        (UNKNOWN4, Reason::NotAllowlisted),
        (DENIED4, Reason::Denylisted),
    ] {
        let policy = FakePolicy::new();
        let fragments = Packet::udp4(src, DST4, SPORT, SIP, sip4()).fragment(128, 11);
        assert!(fragments.len() >= 3);
        assert_eq!(policy.verdict(&fragments[0]), verdict(first, Zone::Trunk));
        let later = if first.is_drop() {
            verdict(first, Zone::Trunk)
        } else {
            verdict(Reason::FragmentPassed, Zone::Unknown)
        };
        for fragment in &fragments[1..] {
            assert_eq!(policy.verdict(fragment), later, "{src}");
        }
        // Only dropped first fragments are remembered.
        assert_eq!(
            policy.remembered.borrow().len(),
            usize::from(first.is_drop())
        );
    }
    // A datagram to a non-SIP port stays untouched, even from an unknown source.
    let policy = FakePolicy::new();
    let fragments = Packet::udp6(UNKNOWN6, DST6, SPORT, 53, [0u8; 300]).fragment(96, 12);
    assert_eq!(
        policy.verdict(&fragments[0]),
        verdict(Reason::NotSip, Zone::None)
    );
    for fragment in &fragments[1..] {
        assert_eq!(
            policy.verdict(fragment),
            verdict(Reason::FragmentPassed, Zone::Unknown)
        );
    }
    assert!(policy.remembered.borrow().is_empty());
}

#[test]
fn later_fragments_without_a_dropped_first_fragment_pass() {
    let policy = FakePolicy::new();
    let passed = verdict(Reason::FragmentPassed, Zone::Unknown);
    let later = |src| Packet::udp4(src, DST4, SPORT, SIP, sip4()).fragment(128, 13)[1].clone();
    // Never saw the first fragment (reordered, or evicted): the kernel will not reassemble the
    // datagram without it, and it is judged when it comes.
    for src in [UNKNOWN4, ALLOWED4, DENIED4] {
        assert_eq!(policy.verdict(&later(src)), passed, "{src}");
    }
    let later6 = Packet::udp6(UNKNOWN6, DST6, SPORT, SIP, sip6("UDP")).fragment(96, 15)[1].clone();
    assert_eq!(policy.verdict(&later6), passed);
    // A first fragment that passes forgets a dropped datagram of the same key (a reused IP ID).
    let dropped = Packet::udp4(UNKNOWN4, DST4, SPORT, SIP, sip4()).fragment(128, 14);
    assert!(policy.verdict(&dropped[0]).reason.is_drop());
    assert_eq!(
        policy.verdict(&dropped[1]),
        verdict(Reason::NotAllowlisted, Zone::Trunk)
    );
    let reused = Packet::udp4(UNKNOWN4, DST4, SPORT, 53, sip4()).fragment(128, 14);
    assert_eq!(policy.verdict(&reused[0]).reason, Reason::NotSip);
    assert_eq!(policy.verdict(&reused[1]), passed);
}

#[test]
fn fragments_are_keyed_by_the_protocol_they_announce() {
    let policy = FakePolicy::new();
    let fragments = Packet::udp6(UNKNOWN6, DST6, SPORT, SIP, sip6("UDP")).fragment(96, 21);
    assert!(policy.verdict(&fragments[0]).reason.is_drop());
    assert_eq!(
        policy.verdict(&fragments[1]),
        verdict(Reason::NotAllowlisted, Zone::Trunk)
    );
    // The same addresses and identification, another protocol: another datagram.
    let mut other = fragments[1].clone();
    let l3 = 14;
    assert_eq!(other[l3 + 6], frames::PROTO_FRAGMENT);
    other[l3 + 40] = 58;
    assert_eq!(
        policy.verdict(&other),
        verdict(Reason::FragmentPassed, Zone::Unknown)
    );
}

#[test]
fn fragment_policy_pass_passes_later_fragments() {
    let policy = FakePolicy::new().with_fragments(FragmentPolicy::Pass);
    for src in [UNKNOWN4, DENIED4] {
        let fragments = Packet::udp4(src, DST4, SPORT, SIP, sip4()).fragment(128, 16);
        assert!(policy.verdict(&fragments[0]).reason.is_drop());
        for later in &fragments[1..] {
            assert_eq!(
                policy.verdict(later),
                verdict(Reason::FragmentPassed, Zone::Unknown)
            );
        }
    }
    assert!(policy.remembered.borrow().is_empty());
}

#[test]
fn fragment_policy_source_judges_later_fragments_by_source() {
    let policy = FakePolicy::new().with_fragments(FragmentPolicy::Source);
    for (src, expected) in [
        (ALLOWED6, Reason::Allowlisted),
        (UNKNOWN6, Reason::NotAllowlisted),
        (DENIED6, Reason::Denylisted),
    ] {
        let fragments = Packet::udp6(src, DST6, SPORT, SIP, sip6("UDP")).fragment(96, 17);
        assert_eq!(
            policy.verdict(&fragments[0]),
            verdict(expected, Zone::Trunk)
        );
        for later in &fragments[1..] {
            assert_eq!(policy.verdict(later), verdict(expected, Zone::Unknown));
        }
    }
    assert!(policy.remembered.borrow().is_empty());
}

#[test]
fn too_deep_vlan_stacks_are_unparsed() {
    let mut packet = Packet::udp4(ALLOWED4, DST4, SPORT, SIP, sip4());
    for id in 0..=MAX_VLAN_TAGS as u16 {
        packet = packet.with_vlan(id);
    }
    let v = FakePolicy::new().verdict(&packet.build());
    assert_eq!(v, verdict(Reason::Unparsed, Zone::Unknown));
    assert!(v.reason.is_drop());
}

#[test]
fn hidden_ports_are_judged_by_source() {
    let policy = FakePolicy::new();
    let tiny = |src| {
        Packet::raw4(src, DST4, frames::PROTO_UDP, [0x9c])
            .with_fragment(0, true, 18)
            .build()
    };
    assert_eq!(
        policy.verdict(&tiny(UNKNOWN4)),
        verdict(Reason::Unparsed, Zone::Unknown)
    );
    assert_eq!(
        policy.verdict(&tiny(ALLOWED4)),
        verdict(Reason::Allowlisted, Zone::Unknown)
    );
    // The tiny first fragment's verdict is remembered for the rest of the datagram.
    let rest = Packet::raw4(UNKNOWN4, DST4, frames::PROTO_UDP, [0u8; 64])
        .with_fragment(1, false, 18)
        .build();
    assert_eq!(
        policy.verdict(&rest),
        verdict(Reason::Unparsed, Zone::Unknown)
    );

    let mut long = Packet::udp6(UNKNOWN6, DST6, SPORT, SIP, sip6("UDP"));
    for _ in 0..=MAX_IPV6_EXT_HEADERS {
        long = long.with_ext(ExtHeader::DestOpts { len: 0 });
    }
    assert_eq!(
        policy.verdict(&long.build()),
        verdict(Reason::Unparsed, Zone::Unknown)
    );
}

#[test]
fn ipv6_later_fragment_is_hidden_whatever_its_next_header_claims() {
    // Linux takes the next header from the first fragment; a later one claiming ICMPv6 still
    // joins a UDP datagram, so it must not pass as "not SIP".
    let fragments = sip_udp6().fragment(96, 5);
    let mut later = fragments[1].clone();
    let l3 = 14;
    assert_eq!(later[l3 + 6], frames::PROTO_FRAGMENT);
    later[l3 + 40] = 58;
    assert_eq!(ip(&later).l4, L4::Hidden(Hidden::LaterFragment));
    // IPv4 keys reassembly by protocol: a later ICMP fragment belongs to an ICMP datagram.
    let icmp_later = Packet::raw4(SRC4, DST4, frames::PROTO_ICMP, vec![0u8; 16])
        .with_fragment(8, false, 9)
        .build();
    assert_eq!(ip(&icmp_later).l4, L4::Other);
}

#[test]
fn later_fragments_of_non_sip_datagrams_pass() {
    let unknown6: std::net::Ipv6Addr = "2001:db8:99::1".parse().unwrap();
    let ping = Packet::icmp6_echo(unknown6, DST6).with_payload(vec![0x55; 300]);
    let fragments = ping.fragment(120, 31);
    let policy = FakePolicy::new();
    assert_eq!(
        policy.verdict(&fragments[0]),
        verdict(Reason::NotSip, Zone::None)
    );
    for fragment in &fragments[1..] {
        let v = policy.verdict(fragment);
        assert_eq!(v, verdict(Reason::FragmentPassed, Zone::Unknown));
        assert!(!v.reason.is_drop());
    }
}

#[test]
fn the_quick_parser_reads_the_common_packet_and_leaves_the_rest_to_the_full_one() {
    let common = [
        sip_udp4(),
        Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4()),
        Packet::raw4(SRC4, DST4, 132, sctp_header(SPORT, SIP)),
        Packet::udp4(SRC4, DST4, SPORT, 53, [0u8; 12]),
        Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4()).with_tcp_options([2, 4, 5, 0xb4]),
    ];
    for packet in &common {
        let frame = packet.build();
        let quick = parse_quick(&frame[..]).unwrap_or_else(|| panic!("{packet:?}"));
        assert_quick_agrees(&quick, &parse(&frame[..]));
    }
    // Everything else is the full parser's, however well formed.
    let others = [
        sip_udp4().with_vlan(7),
        sip_udp6(),
        Packet::tcp4(SRC4, DST4, SPORT, SIP, sip4()).with_ipv4_options([1, 1, 1, 1]),
        Packet::icmp4_echo(SRC4, DST4),
        Packet::raw4(SRC4, DST4, 50, [0u8; 16]),
    ];
    for packet in &others {
        assert_eq!(parse_quick(&packet.build()[..]), None, "{packet:?}");
    }
    let fragments = sip_udp4().with_payload(vec![b'x'; 1200]).fragment(400, 3);
    for fragment in &fragments {
        assert_eq!(parse_quick(&fragment[..]), None);
    }
    // Lengths that do not add up: malformed for the full parser, not quick.
    let mut frame = sip_udp4().build();
    let udp_len = 14 + 20 + 4;
    frame[udp_len] = 0xff;
    assert_eq!(parse(&frame[..]), Parsed::Malformed);
    assert_eq!(parse_quick(&frame[..]), None);
    let mut frame = sip_udp4().build();
    frame[14 + 2] = 0xff;
    assert_eq!(parse_quick(&frame[..]), None);
    // Ethernet padding after the datagram is fine for both.
    let mut padded = sip_udp4().build();
    padded.extend_from_slice(&[0u8; 20]);
    assert_quick_agrees(&parse_quick(&padded[..]).unwrap(), &parse(&padded[..]));
}
