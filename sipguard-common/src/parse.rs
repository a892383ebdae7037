//! Header parsing from Ethernet to the transport ports, written once for the XDP program and for host
//! tests: the code only reads the frame through [`Frame::load`], which the XDP side implements with
//! bounds-checked direct packet access and the host side with a slice.
//!
//! Rules (they decide what an attacker can hide behind):
//! - a header the kernel stack would reject (truncated, wrong version, lengths that do not add up) is
//!   [`Parsed::Malformed`];
//! - a header chain deeper than the parser walks is reported, never silently passed:
//!   [`Parsed::TooDeep`] for VLAN stacks, [`Hidden::ChainTooLong`] for IPv6 extension headers;
//! - ports are only read from a first fragment (or an unfragmented packet); payload is never read as
//!   a transport header.
//!
//! ```text
//!  Ethernet          [802.1Q/802.1ad tag]*   IPv4 (IHL x 4) or IPv6 (40) [+ extension headers]
//!  +-------+-------+------+  +------+------+  +-----------------------+  +------------+-----
//!  | dst 6 | src 6 | type |  | TCI  | type |  | ... proto/next, src, dst|  | UDP 8/TCP  | payload
//!  +-------+-------+------+  +------+------+  +-----------------------+  +------------+-----
//! ```

use crate::abi::{PacketMeta, handoff_outcome, meta_fragment, meta_l4};

/// A received frame, read in fixed-size chunks.
pub trait Frame {
    /// Length of the frame in bytes.
    fn len(&self) -> usize;

    /// The `N` bytes at `offset`, or `None` when the frame ends before `offset + N`.
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Frame for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let bytes = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
/// Pre-standard QinQ outer tag, still sent by some switches.
pub const ETH_P_QINQ_LEGACY: u16 = 0x9100;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// Bytes of SCTP's common header (ports, verification tag, checksum).
pub const SCTP_COMMON_HEADER: usize = 12;

/// VLAN tags walked. A deeper stack is [`Parsed::TooDeep`].
pub const MAX_VLAN_TAGS: usize = 4;
/// IPv6 extension headers walked. A longer chain is [`Hidden::ChainTooLong`].
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Bytes of IPv6 extension headers walked (from the end of the fixed header).
pub const MAX_IPV6_EXT_BYTES: usize = 512;
/// A transport header starting later than this is [`Hidden::ChainTooLong`].
pub const MAX_L4_OFFSET: usize = ETH_HLEN + MAX_VLAN_TAGS * 4 + 40 + MAX_IPV6_EXT_BYTES;
/// No load reaches past this offset; the XDP side uses it to bound offsets for the verifier.
pub const MAX_PARSE_OFFSET: usize = MAX_L4_OFFSET + 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// SCTP: its common header carries the ports where UDP and TCP do. SIP over SCTP comes in
    /// DATA chunks, whose payload the data plane does not read.
    Sctp,
}

/// Where a packet sits in a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented (including IPv6 atomic fragments).
    None,
    /// Offset 0 with more fragments to come: carries the transport header.
    First { id: u32 },
    /// Offset > 0: carries no transport header.
    Later { id: u32 },
}

/// Why the destination port of a (possibly) UDP/TCP packet is not visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    /// A non-first fragment.
    LaterFragment,
    /// A first fragment too short to hold the ports.
    TinyFirstFragment,
    /// More IPv6 extension headers than the parser walks.
    ChainTooLong,
}

/// What follows the IP header(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// UDP or TCP with visible ports. `payload` is the offset of the first payload byte in the
    /// frame, 0 for a first fragment (whose payload is incomplete).
    Ports {
        transport: Transport,
        sport: u16,
        dport: u16,
        payload: u16,
    },
    /// UDP or TCP, or what may be, without visible ports.
    Hidden(Hidden),
    /// Any other protocol (ICMP, ESP, no next header): not SIP.
    Other,
}

/// A parsed IP packet. IPv4 addresses are in the first 4 bytes of `src`/`dst`, the rest zero.
/// The addresses come first and 8-byte aligned: the data plane copies them as words, not bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub family: Family,
    /// Transport protocol (or, for hidden ports, the next header where parsing stopped).
    pub proto: u8,
    pub l4: L4,
    pub fragment: Fragment,
    /// What every fragment of the datagram announces as its protocol: IPv4's protocol field,
    /// IPv6's fragment header next header; 0 when not fragmented.
    pub frag_proto: u8,
    /// Outer and inner VLAN ids, 0 when untagged.
    pub vlan: [u16; 2],
}

impl IpPacket {
    /// The packet in the fixed layout later stages read.
    #[inline(always)]
    #[allow(
        clippy::used_underscore_binding,
        reason = "the padding is written, see below"
    )]
    pub fn meta(&self) -> PacketMeta {
        // Every field written one by one, the padding too: a struct literal or fields left to
        // `default()` cost the entry 50,000 to 200,000 more instructions in the verifier (6.18).
        let mut meta = PacketMeta::default();
        let (l4, sport, dport, payload) = match self.l4 {
            L4::Ports {
                transport,
                sport,
                dport,
                payload,
            } => (transport_code(transport), sport, dport, payload),
            L4::Hidden(Hidden::LaterFragment) => (meta_l4::LATER_FRAGMENT, 0, 0, 0),
            L4::Hidden(Hidden::TinyFirstFragment) => (meta_l4::TINY_FIRST_FRAGMENT, 0, 0, 0),
            L4::Hidden(Hidden::ChainTooLong) => (meta_l4::CHAIN_TOO_LONG, 0, 0, 0),
            L4::Other => (meta_l4::OTHER, 0, 0, 0),
        };
        let (fragment, frag_id) = match self.fragment {
            Fragment::None => (meta_fragment::NONE, 0),
            Fragment::First { id } => (meta_fragment::FIRST, id),
            Fragment::Later { id } => (meta_fragment::LATER, id),
        };
        meta.src = self.src;
        meta.dst = self.dst;
        meta.frag_id = frag_id;
        meta.sport = sport;
        meta.dport = dport;
        meta.payload = payload;
        meta.vlan = self.vlan;
        meta.family = self.family as u8;
        meta.proto = self.proto;
        meta.l4 = l4;
        meta.fragment = fragment;
        meta.frag_proto = self.frag_proto;
        meta._reserved = 0;
        meta._reserved2 = 0;
        meta
    }

    /// The packet a [`PacketMeta`] describes. Any bytes give a packet (unknown codes read as
    /// "other"), so what comes back from a map needs no trust.
    #[inline(always)]
    pub fn from_meta(meta: &PacketMeta) -> IpPacket {
        let transport_ports = |transport| L4::Ports {
            transport,
            sport: meta.sport,
            dport: meta.dport,
            payload: meta.payload,
        };
        IpPacket {
            family: if meta.family == 6 {
                Family::V6
            } else {
                Family::V4
            },
            src: meta.src,
            dst: meta.dst,
            proto: meta.proto,
            l4: match meta.l4 {
                meta_l4::UDP => transport_ports(Transport::Udp),
                meta_l4::TCP => transport_ports(Transport::Tcp),
                meta_l4::SCTP => transport_ports(Transport::Sctp),
                meta_l4::LATER_FRAGMENT => L4::Hidden(Hidden::LaterFragment),
                meta_l4::TINY_FIRST_FRAGMENT => L4::Hidden(Hidden::TinyFirstFragment),
                meta_l4::CHAIN_TOO_LONG => L4::Hidden(Hidden::ChainTooLong),
                _ => L4::Other,
            },
            fragment: match meta.fragment {
                meta_fragment::FIRST => Fragment::First { id: meta.frag_id },
                meta_fragment::LATER => Fragment::Later { id: meta.frag_id },
                _ => Fragment::None,
            },
            frag_proto: meta.frag_proto,
            vlan: meta.vlan,
        }
    }
}

impl PacketMeta {
    #[inline(always)]
    pub fn family(&self) -> Family {
        if self.family == 6 {
            Family::V6
        } else {
            Family::V4
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4/IPv6.
    NotIp,
    /// Headers the kernel would reject too.
    Malformed,
    /// VLAN stack deeper than [`MAX_VLAN_TAGS`]: no IP header found.
    TooDeep,
    Ip(IpPacket),
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

#[inline(always)]
const fn is_vlan(ethertype: u16) -> bool {
    matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_LEGACY)
}

#[inline(always)]
const fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS
    )
}

/// What the parser found, as later stages learn it from the handoff slot (with the packet in
/// [`PacketMeta`] form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    NotIp,
    Malformed,
    TooDeep,
    /// An IP packet: every field of the meta was written.
    Ip,
}

impl Outcome {
    /// The code stored in the handoff slot ([`handoff_outcome`]).
    #[inline(always)]
    pub const fn code(self) -> u8 {
        match self {
            Outcome::NotIp => handoff_outcome::NOT_IP,
            Outcome::Malformed => handoff_outcome::MALFORMED,
            Outcome::TooDeep => handoff_outcome::TOO_DEEP,
            Outcome::Ip => handoff_outcome::IP,
        }
    }

    /// Unknown codes read as malformed: a later stage never trusts a packet it was not given.
    #[inline(always)]
    pub const fn from_code(code: u8) -> Outcome {
        match code {
            handoff_outcome::NOT_IP => Outcome::NotIp,
            handoff_outcome::TOO_DEEP => Outcome::TooDeep,
            handoff_outcome::IP => Outcome::Ip,
            _ => Outcome::Malformed,
        }
    }
}

impl Parsed {
    /// The outcome and, for an IP packet, the packet in the form later stages read.
    #[inline(always)]
    pub fn outcome(&self) -> Outcome {
        match self {
            Parsed::NotIp => Outcome::NotIp,
            Parsed::Malformed => Outcome::Malformed,
            Parsed::TooDeep => Outcome::TooDeep,
            Parsed::Ip(_) => Outcome::Ip,
        }
    }
}

/// The most common SIP packet, read at fixed offsets: untagged Ethernet, IPv4 without options and
/// not fragmented, UDP, TCP or SCTP. The data plane's entry decides most traffic from this alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quick {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub transport: Transport,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the payload (0 for SCTP, whose SIP is inside chunks).
    pub payload: u16,
}

impl Quick {
    /// The source address in the 16-byte form lists, budgets and bans are keyed by.
    #[inline(always)]
    pub fn source(&self) -> [u8; 16] {
        v4_word(self.src)
    }

    /// The packet in the form later stages read.
    #[inline(always)]
    pub fn meta(&self) -> PacketMeta {
        PacketMeta {
            src: self.source(),
            dst: v4_word(self.dst),
            sport: self.sport,
            dport: self.dport,
            payload: self.payload,
            family: Family::V4 as u8,
            proto: match self.transport {
                Transport::Udp => IPPROTO_UDP,
                Transport::Tcp => IPPROTO_TCP,
                Transport::Sctp => IPPROTO_SCTP,
            },
            l4: transport_code(self.transport),
            // No VLAN, not fragmented.
            ..PacketMeta::default()
        }
    }
}

/// [`PacketMeta::l4`] of a packet with ports.
#[inline(always)]
const fn transport_code(transport: Transport) -> u8 {
    match transport {
        Transport::Udp => meta_l4::UDP,
        Transport::Tcp => meta_l4::TCP,
        Transport::Sctp => meta_l4::SCTP,
    }
}

/// [`Quick`], when the frame is that common packet and well formed; `None` for anything else,
/// which the full parser then reads. Where it answers, [`parse`] gives an unfragmented IPv4
/// packet with the same source, transport and destination port (host tests check it).
#[inline(always)]
pub fn parse_quick<F: Frame + ?Sized>(frame: &F) -> Option<Quick> {
    const IP: usize = ETH_HLEN;
    const L4: usize = IP + 20;
    let h = frame.load::<34>(0)?;
    let ethertype = be16(h[12], h[13]);
    let total_len = be16(h[IP + 2], h[IP + 3]) as usize;
    let flags_offset = be16(h[IP + 6], h[IP + 7]);
    // Version 4, IHL 5, no more fragments and offset 0 (DF may be set), the whole datagram in
    // the frame.
    if ethertype != ETH_P_IPV4
        || h[IP] != 0x45
        || flags_offset & 0x3fff != 0
        || total_len < 20
        || IP + total_len > frame.len()
    {
        return None;
    }
    let len = total_len - 20;
    let (transport, ports, header_len) = match h[IP + 9] {
        IPPROTO_UDP => {
            let u = frame.load::<8>(L4)?;
            let udp_len = be16(u[4], u[5]) as usize;
            if len < 8 || udp_len < 8 || udp_len > len {
                return None;
            }
            (Transport::Udp, [u[0], u[1], u[2], u[3]], 8)
        }
        IPPROTO_TCP => {
            let t = frame.load::<16>(L4)?;
            let data_offset = ((t[12] >> 4) as usize) * 4;
            if len < 20 || data_offset < 20 || data_offset > len {
                return None;
            }
            (Transport::Tcp, [t[0], t[1], t[2], t[3]], data_offset)
        }
        IPPROTO_SCTP => {
            let c = frame.load::<4>(L4)?;
            if len < SCTP_COMMON_HEADER {
                return None;
            }
            (Transport::Sctp, c, 0)
        }
        _ => return None,
    };
    Some(Quick {
        src: [h[IP + 12], h[IP + 13], h[IP + 14], h[IP + 15]],
        dst: [h[IP + 16], h[IP + 17], h[IP + 18], h[IP + 19]],
        transport,
        sport: be16(ports[0], ports[1]),
        dport: be16(ports[2], ports[3]),
        payload: if header_len == 0 {
            0
        } else {
            (L4 + header_len) as u16
        },
    })
}

/// Parses a frame down to the transport ports.
#[inline(always)]
pub fn parse<F: Frame + ?Sized>(frame: &F) -> Parsed {
    let Some(eth) = frame.load::<ETH_HLEN>(0) else {
        return Parsed::Malformed;
    };
    let mut ethertype = be16(eth[12], eth[13]);
    let mut offset = ETH_HLEN;
    let mut vlan = [0u16; 2];
    let mut tags = 0;
    while tags < MAX_VLAN_TAGS && is_vlan(ethertype) {
        let Some(tag) = frame.load::<4>(offset) else {
            return Parsed::Malformed;
        };
        let id = be16(tag[0], tag[1]) & 0x0fff;
        if tags == 0 {
            vlan[0] = id;
        } else if tags == 1 {
            vlan[1] = id;
        }
        ethertype = be16(tag[2], tag[3]);
        offset += 4;
        tags += 1;
    }
    if is_vlan(ethertype) {
        return Parsed::TooDeep;
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(frame, offset, vlan),
        ETH_P_IPV6 => parse_ipv6(frame, offset, vlan),
        _ => Parsed::NotIp,
    }
}

/// An IPv4 address from `header[at..at + 4]` in the 16-byte form. Built from a word: a partial
/// byte copy into a zeroed array becomes a call to a byte-wise memset in BPF code.
#[inline(always)]
fn v4_mapped(header: &[u8; 20], at: usize) -> [u8; 16] {
    v4_word([header[at], header[at + 1], header[at + 2], header[at + 3]])
}

#[inline(always)]
fn v4_word(addr: [u8; 4]) -> [u8; 16] {
    let words = [u32::from_ne_bytes(addr), 0, 0, 0];
    // SAFETY: [u32; 4] and [u8; 16] have the same size, and any bytes are a valid [u8; 16].
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words) }
}

#[inline(always)]
fn parse_ipv4<F: Frame + ?Sized>(frame: &F, offset: usize, vlan: [u16; 2]) -> Parsed {
    let Some(h) = frame.load::<20>(offset) else {
        return Parsed::Malformed;
    };
    let header_len = ((h[0] & 0x0f) as usize) * 4;
    let total_len = be16(h[2], h[3]) as usize;
    if h[0] >> 4 != 4 || header_len < 20 || total_len < header_len {
        return Parsed::Malformed;
    }
    // Shorter frames are cut; longer ones carry Ethernet padding, which the kernel trims.
    if offset + total_len > frame.len() {
        return Parsed::Malformed;
    }
    let id = u32::from(be16(h[4], h[5]));
    let flags_offset = be16(h[6], h[7]);
    let more_fragments = flags_offset & 0x2000 != 0;
    let fragment = if flags_offset & 0x1fff != 0 {
        Fragment::Later { id }
    } else if more_fragments {
        Fragment::First { id }
    } else {
        Fragment::None
    };
    let ip_proto = h[9];
    let mut proto = ip_proto;
    let mut l4_offset = offset + header_len;
    let mut l4_len = total_len - header_len;
    // AH (IPsec authentication, not encryption) sits between IP and the transport header; walk it
    // so that authenticated SIP is judged like any other.
    if proto == IPPROTO_AH && !matches!(fragment, Fragment::Later { .. }) {
        let Some(ah) = frame.load::<2>(l4_offset) else {
            return Parsed::Malformed;
        };
        let ah_len = (ah[1] as usize + 2) * 4;
        if ah_len > l4_len {
            return Parsed::Malformed;
        }
        proto = ah[0];
        l4_offset += ah_len;
        l4_len -= ah_len;
    }
    let packet = IpPacket {
        family: Family::V4,
        src: v4_mapped(&h, 12),
        dst: v4_mapped(&h, 16),
        proto,
        l4: L4::Other,
        fragment,
        frag_proto: if matches!(fragment, Fragment::None) {
            0
        } else {
            ip_proto
        },
        vlan,
    };
    parse_l4(frame, packet, l4_offset, l4_len)
}

#[inline(always)]
fn parse_ipv6<F: Frame + ?Sized>(frame: &F, offset: usize, vlan: [u16; 2]) -> Parsed {
    let Some(h) = frame.load::<8>(offset) else {
        return Parsed::Malformed;
    };
    let Some(src) = frame.load::<16>(offset + 8) else {
        return Parsed::Malformed;
    };
    let Some(dst) = frame.load::<16>(offset + 24) else {
        return Parsed::Malformed;
    };
    let payload_len = be16(h[4], h[5]) as usize;
    let mut next = h[6];
    let start = offset + 40;
    let end = start + payload_len;
    // A zero payload length announces a jumbogram, which no XDP frame can hold.
    if h[0] >> 4 != 6 || end > frame.len() || (payload_len == 0 && next != IPPROTO_NONE) {
        return Parsed::Malformed;
    }
    let mut fragment = Fragment::None;
    let mut frag_proto = 0;
    let mut cursor = start;
    let mut walked = 0;
    while walked < MAX_IPV6_EXT_HEADERS && is_ipv6_ext(next) {
        if cursor - start > MAX_IPV6_EXT_BYTES {
            break;
        }
        if next == IPPROTO_FRAGMENT {
            let Some(f) = frame.load::<8>(cursor) else {
                return Parsed::Malformed;
            };
            if cursor + 8 > end {
                return Parsed::Malformed;
            }
            let offset_flags = be16(f[2], f[3]);
            let id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
            next = f[0];
            frag_proto = f[0];
            cursor += 8;
            if offset_flags >> 3 != 0 {
                fragment = Fragment::Later { id };
                break;
            }
            if offset_flags & 1 != 0 {
                fragment = Fragment::First { id };
            }
        } else {
            let Some(e) = frame.load::<2>(cursor) else {
                return Parsed::Malformed;
            };
            let len = if next == IPPROTO_AH {
                (e[1] as usize + 2) * 4
            } else {
                (e[1] as usize + 1) * 8
            };
            if cursor + len > end {
                return Parsed::Malformed;
            }
            next = e[0];
            cursor += len;
        }
        walked += 1;
    }
    let mut packet = IpPacket {
        family: Family::V6,
        src,
        dst,
        proto: next,
        l4: L4::Other,
        fragment,
        frag_proto: if matches!(fragment, Fragment::None) {
            0
        } else {
            frag_proto
        },
        vlan,
    };
    let later = matches!(fragment, Fragment::Later { .. });
    if is_ipv6_ext(next) && !later {
        packet.l4 = L4::Hidden(Hidden::ChainTooLong);
        return Parsed::Ip(packet);
    }
    parse_l4(frame, packet, cursor, end - cursor)
}

#[inline(always)]
fn parse_l4<F: Frame + ?Sized>(
    frame: &F,
    mut packet: IpPacket,
    offset: usize,
    len: usize,
) -> Parsed {
    if let Fragment::Later { .. } = packet.fragment {
        // IPv6 reassembly takes the next header from the first fragment and ignores what later
        // ones announce; IPv4 keys reassembly by protocol, and AH may hide UDP/TCP.
        let maybe_sip = match packet.family {
            Family::V6 => true,
            Family::V4 => matches!(
                packet.proto,
                IPPROTO_UDP | IPPROTO_TCP | IPPROTO_SCTP | IPPROTO_AH
            ),
        };
        if maybe_sip {
            packet.l4 = L4::Hidden(Hidden::LaterFragment);
        }
        return Parsed::Ip(packet);
    }
    let transport = match packet.proto {
        IPPROTO_UDP => Transport::Udp,
        IPPROTO_TCP => Transport::Tcp,
        IPPROTO_SCTP => Transport::Sctp,
        _ => return Parsed::Ip(packet),
    };
    if offset > MAX_L4_OFFSET {
        packet.l4 = L4::Hidden(Hidden::ChainTooLong);
        return Parsed::Ip(packet);
    }
    if let Fragment::First { .. } = packet.fragment {
        // Only the ports matter here; the rest of the header may be in the next fragment.
        if len < 4 {
            packet.l4 = L4::Hidden(Hidden::TinyFirstFragment);
            return Parsed::Ip(packet);
        }
        let Some(p) = frame.load::<4>(offset) else {
            return Parsed::Malformed;
        };
        packet.l4 = L4::Ports {
            transport,
            sport: be16(p[0], p[1]),
            dport: be16(p[2], p[3]),
            payload: 0,
        };
        return Parsed::Ip(packet);
    }
    let (sport, dport, header_len) = match transport {
        Transport::Udp => {
            let Some(u) = frame.load::<8>(offset) else {
                return Parsed::Malformed;
            };
            let udp_len = be16(u[4], u[5]) as usize;
            if len < 8 || udp_len < 8 || udp_len > len {
                return Parsed::Malformed;
            }
            (be16(u[0], u[1]), be16(u[2], u[3]), 8)
        }
        Transport::Tcp => {
            let Some(t) = frame.load::<16>(offset) else {
                return Parsed::Malformed;
            };
            let data_offset = ((t[12] >> 4) as usize) * 4;
            if len < 20 || data_offset < 20 || data_offset > len {
                return Parsed::Malformed;
            }
            (be16(t[0], t[1]), be16(t[2], t[3]), data_offset)
        }
        Transport::Sctp => {
            // The 12-byte common header; the kernel drops an SCTP packet shorter than it.
            let Some(c) = frame.load::<4>(offset) else {
                return Parsed::Malformed;
            };
            if len < SCTP_COMMON_HEADER {
                return Parsed::Malformed;
            }
            (be16(c[0], c[1]), be16(c[2], c[3]), 0)
        }
    };
    packet.l4 = L4::Ports {
        transport,
        sport,
        dport,
        // SCTP's SIP is inside chunks: no payload offset to read a method from.
        payload: if header_len == 0 {
            0
        } else {
            (offset + header_len) as u16
        },
    };
    Parsed::Ip(packet)
}
