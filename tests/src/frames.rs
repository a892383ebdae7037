//! Crafted Ethernet frames for tests: VLAN stacks, IPv4 options, IPv6 extension chains, real
//! fragments. Checksums are always correct, so the same frames can go through `test_run` or a veth
//! pair and reach the kernel stack; malformed variants are made by patching the built bytes at
//! [`Packet::l3_offset`] / [`Packet::l4_offset`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88A8;
pub const TPID_QINQ_LEGACY: u16 = 0x9100;

pub const PROTO_HOPOPTS: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ROUTING: u8 = 43;
pub const PROTO_FRAGMENT: u8 = 44;
pub const PROTO_AH: u8 = 51;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_NONE: u8 = 59;
pub const PROTO_DSTOPTS: u8 = 60;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Locally administered, so they never clash with a real NIC.
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// One VLAN tag. `id` is written as the whole TCI, so PCP/DEI bits can be set in its top nibble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: u16,
    pub id: u16,
}

impl VlanTag {
    pub const fn dot1q(id: u16) -> Self {
        VlanTag {
            tpid: TPID_8021Q,
            id,
        }
    }

    pub const fn dot1ad(id: u16) -> Self {
        VlanTag {
            tpid: TPID_8021AD,
            id,
        }
    }

    /// Pre-standard QinQ outer tag.
    pub const fn legacy(id: u16) -> Self {
        VlanTag {
            tpid: TPID_QINQ_LEGACY,
            id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tos: u8,
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// In 8-byte units (13 bits).
    pub fragment_offset: u16,
    pub ttl: u8,
    /// Zero-padded to a multiple of 4 and cut at 40 bytes (IHL is 4 bits).
    pub options: Vec<u8>,
    /// Written instead of the transport's protocol; checksums still use the real one.
    pub protocol: Option<u8>,
    /// AH (RFC 4302 length: total 4-byte words minus 2) between the header and the transport.
    pub ah: Option<u8>,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Ipv4 {
            src,
            dst,
            tos: 0,
            id: 0x1234,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            options: Vec::new(),
            protocol: None,
            ah: None,
        }
    }

    fn padded_options(&self) -> Vec<u8> {
        let mut options = self.options.clone();
        options.truncate(40);
        options.resize(options.len().div_ceil(4) * 4, 0);
        options
    }
}

/// IPv6 extension header. `len` is the header's own length field, so sizes follow the RFCs:
/// (len + 1) x 8 bytes, AH (len + 2) x 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    HopByHop {
        len: u8,
    },
    Routing {
        len: u8,
        routing_type: u8,
        segments_left: u8,
    },
    DestOpts {
        len: u8,
    },
    Ah {
        len: u8,
    },
    /// `offset` in 8-byte units.
    Fragment {
        offset: u16,
        more: bool,
        id: u32,
    },
}

impl ExtHeader {
    /// Routing header that receivers skip (segments left 0, experimental type 253).
    pub const fn routing(len: u8) -> Self {
        ExtHeader::Routing {
            len,
            routing_type: 253,
            segments_left: 0,
        }
    }

    /// AH with a 96-bit ICV (HMAC-SHA1-96), the common size.
    pub const fn ah() -> Self {
        ExtHeader::Ah { len: 4 }
    }

    pub const fn protocol(&self) -> u8 {
        match self {
            ExtHeader::HopByHop { .. } => PROTO_HOPOPTS,
            ExtHeader::Routing { .. } => PROTO_ROUTING,
            ExtHeader::DestOpts { .. } => PROTO_DSTOPTS,
            ExtHeader::Ah { .. } => PROTO_AH,
            ExtHeader::Fragment { .. } => PROTO_FRAGMENT,
        }
    }

    /// Size in bytes on the wire.
    pub const fn size(&self) -> usize {
        match *self {
            ExtHeader::HopByHop { len }
            | ExtHeader::DestOpts { len }
            | ExtHeader::Routing { len, .. } => (len as usize + 1) * 8,
            ExtHeader::Ah { len } => (len as usize + 2) * 4,
            ExtHeader::Fragment { .. } => 8,
        }
    }

    fn encode(&self, next: u8) -> Vec<u8> {
        let size = self.size();
        let mut out = match *self {
            ExtHeader::HopByHop { len } | ExtHeader::DestOpts { len } => {
                let mut out = vec![next, len];
                fill_options(&mut out, size - 2);
                out
            }
            ExtHeader::Routing {
                len,
                routing_type,
                segments_left,
            } => vec![next, len, routing_type, segments_left],
            ExtHeader::Ah { len } => {
                // Next, length, reserved, SPI, sequence number; the ICV stays zero.
                let mut out = vec![next, len, 0, 0, 0, 0, 0x10, 0x01];
                out.extend_from_slice(&1u32.to_be_bytes());
                out
            }
            ExtHeader::Fragment { offset, more, id } => {
                let field = (offset << 3) | u16::from(more);
                let mut out = vec![next, 0];
                out.extend_from_slice(&field.to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
                out
            }
        };
        out.resize(size, 0);
        out
    }
}

/// Option padding Linux accepts: it rejects more than 7 bytes of consecutive Pad1/PadN, so the
/// bulk goes into RFC 4727 experimental options (type 0x1E, "skip if unknown").
fn fill_options(out: &mut Vec<u8>, mut remaining: usize) {
    while remaining > 7 {
        let data = (remaining - 2).min(255);
        // Leave room for a padding option after this one, never a lone byte that cannot be PadN.
        let data = if remaining - 2 - data == 1 {
            data - 1
        } else {
            data
        };
        out.extend_from_slice(&[0x1E, data as u8]);
        out.resize(out.len() + data, 0);
        remaining -= data + 2;
    }
    match remaining {
        0 => {}
        1 => out.push(0),
        n => {
            out.extend_from_slice(&[1, (n - 2) as u8]);
            out.resize(out.len() + n - 2, 0);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub hop_limit: u8,
    /// In wire order.
    pub ext: Vec<ExtHeader>,
    /// Written as the last next-header instead of the transport's; checksums use the real one.
    pub protocol: Option<u8>,
}

impl Ipv6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Ipv6 {
            src,
            dst,
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
            ext: Vec::new(),
            protocol: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpLayer {
    V4(Ipv4),
    V6(Ipv6),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Padded with EOL to a multiple of 4 and cut at 40 bytes.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    pub fn new(sport: u16, dport: u16) -> Self {
        Tcp {
            sport,
            dport,
            seq: 0x0100_0000,
            ack: 0,
            flags: TCP_SYN,
            window: 64240,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4Layer {
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    Tcp(Tcp),
    /// ICMP echo request over IPv4, ICMPv6 echo request over IPv6.
    Echo {
        id: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    /// Written as is, without checksum.
    Raw {
        protocol: u8,
        bytes: Vec<u8>,
    },
}

impl L4Layer {
    pub const fn protocol(&self, v6: bool) -> u8 {
        match self {
            L4Layer::Udp { .. } => PROTO_UDP,
            L4Layer::Tcp(_) => PROTO_TCP,
            L4Layer::Echo { .. } if v6 => PROTO_ICMPV6,
            L4Layer::Echo { .. } => PROTO_ICMP,
            L4Layer::Raw { protocol, .. } => *protocol,
        }
    }

    /// Bytes before the payload (0 for raw).
    pub fn header_len(&self) -> usize {
        match self {
            L4Layer::Udp { .. } | L4Layer::Echo { .. } => 8,
            L4Layer::Tcp(tcp) => 20 + tcp.options.len().min(40).div_ceil(4) * 4,
            L4Layer::Raw { .. } => 0,
        }
    }

    fn encode(&self, pseudo: &Pseudo) -> Vec<u8> {
        let v6 = matches!(pseudo, Pseudo::V6 { .. });
        let (mut out, checksum_at) = match self {
            L4Layer::Udp {
                sport,
                dport,
                payload,
            } => {
                let mut out = Vec::with_capacity(8 + payload.len());
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&len16(8 + payload.len()).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(payload);
                (out, Some(6))
            }
            L4Layer::Tcp(tcp) => {
                let mut options = tcp.options.clone();
                options.truncate(40);
                options.resize(options.len().div_ceil(4) * 4, 0);
                let data_offset = ((20 + options.len()) / 4) as u8;
                let mut out = Vec::with_capacity(20 + options.len() + tcp.payload.len());
                out.extend_from_slice(&tcp.sport.to_be_bytes());
                out.extend_from_slice(&tcp.dport.to_be_bytes());
                out.extend_from_slice(&tcp.seq.to_be_bytes());
                out.extend_from_slice(&tcp.ack.to_be_bytes());
                out.extend_from_slice(&[data_offset << 4, tcp.flags]);
                out.extend_from_slice(&tcp.window.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.extend_from_slice(&options);
                out.extend_from_slice(&tcp.payload);
                (out, Some(16))
            }
            L4Layer::Echo { id, seq, payload } => {
                let mut out = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
                (out, Some(2))
            }
            L4Layer::Raw { bytes, .. } => (bytes.clone(), None),
        };
        if let Some(at) = checksum_at {
            let proto = self.protocol(v6);
            // ICMPv4 is the one checksum without a pseudo-header.
            let initial = if proto == PROTO_ICMP {
                0
            } else {
                pseudo.sum(proto, out.len())
            };
            let mut sum = checksum(initial, &out);
            if sum == 0 && proto == PROTO_UDP {
                sum = 0xffff;
            }
            out[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        out
    }
}

enum Pseudo {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl Pseudo {
    fn sum(&self, proto: u8, len: usize) -> u32 {
        let mut bytes = Vec::with_capacity(40);
        match self {
            Pseudo::V4 { src, dst } => {
                bytes.extend_from_slice(&src.octets());
                bytes.extend_from_slice(&dst.octets());
                bytes.extend_from_slice(&[0, proto]);
                bytes.extend_from_slice(&len16(len).to_be_bytes());
            }
            Pseudo::V6 { src, dst } => {
                bytes.extend_from_slice(&src.octets());
                bytes.extend_from_slice(&dst.octets());
                bytes.extend_from_slice(&(len as u32).to_be_bytes());
                bytes.extend_from_slice(&[0, 0, 0, proto]);
            }
        }
        sum_words(0, &bytes)
    }
}

fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for word in &mut chunks {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// RFC 1071 checksum of `data`, starting from a partial (e.g. pseudo-header) sum.
/// Over data that carries its own correct checksum, the result is 0.
pub fn checksum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = sum_words(initial, data);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// A whole frame, described layer by layer; [`Packet::build`] turns it into bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Outermost first.
    pub vlans: Vec<VlanTag>,
    /// Written instead of the IP ethertype (e.g. to label an IP packet as something else).
    pub ethertype: Option<u16>,
    pub ip: IpLayer,
    pub l4: L4Layer,
    /// The frame is zero-padded to at least this many bytes, like a NIC pads to 60.
    pub min_len: usize,
}

impl Packet {
    pub fn new(ip: IpLayer, l4: L4Layer) -> Self {
        Packet {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlans: Vec::new(),
            ethertype: None,
            ip,
            l4,
            min_len: 0,
        }
    }

    pub fn udp4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        let l4 = L4Layer::Udp {
            sport,
            dport,
            payload: payload.into(),
        };
        Packet::new(IpLayer::V4(Ipv4::new(src, dst)), l4)
    }

    pub fn udp6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        let l4 = L4Layer::Udp {
            sport,
            dport,
            payload: payload.into(),
        };
        Packet::new(IpLayer::V6(Ipv6::new(src, dst)), l4)
    }

    /// A SYN; see [`Packet::with_tcp_flags`].
    pub fn tcp4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        let mut tcp = Tcp::new(sport, dport);
        tcp.payload = payload.into();
        Packet::new(IpLayer::V4(Ipv4::new(src, dst)), L4Layer::Tcp(tcp))
    }

    /// A SYN; see [`Packet::with_tcp_flags`].
    pub fn tcp6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        let mut tcp = Tcp::new(sport, dport);
        tcp.payload = payload.into();
        Packet::new(IpLayer::V6(Ipv6::new(src, dst)), L4Layer::Tcp(tcp))
    }

    pub fn icmp4_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Packet::new(IpLayer::V4(Ipv4::new(src, dst)), echo())
    }

    pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Packet::new(IpLayer::V6(Ipv6::new(src, dst)), echo())
    }

    pub fn raw4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, bytes: impl Into<Vec<u8>>) -> Self {
        let l4 = L4Layer::Raw {
            protocol,
            bytes: bytes.into(),
        };
        Packet::new(IpLayer::V4(Ipv4::new(src, dst)), l4)
    }

    pub fn raw6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, bytes: impl Into<Vec<u8>>) -> Self {
        let l4 = L4Layer::Raw {
            protocol,
            bytes: bytes.into(),
        };
        Packet::new(IpLayer::V6(Ipv6::new(src, dst)), l4)
    }

    pub fn with_macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds a tag inside the ones already there.
    pub fn with_tag(mut self, tag: VlanTag) -> Self {
        self.vlans.push(tag);
        self
    }

    /// Adds an 802.1Q tag inside the ones already there.
    pub fn with_vlan(self, id: u16) -> Self {
        self.with_tag(VlanTag::dot1q(id))
    }

    /// Adds an 802.1ad outer and an 802.1Q inner tag.
    pub fn with_qinq(self, outer: u16, inner: u16) -> Self {
        self.with_tag(VlanTag::dot1ad(outer))
            .with_tag(VlanTag::dot1q(inner))
    }

    pub fn with_ethertype(mut self, ethertype: u16) -> Self {
        self.ethertype = Some(ethertype);
        self
    }

    /// IPv4 only (ignored on IPv6).
    pub fn with_ipv4_options(mut self, options: impl Into<Vec<u8>>) -> Self {
        if let IpLayer::V4(ip) = &mut self.ip {
            ip.options = options.into();
        }
        self
    }

    /// Appends an IPv6 extension header. On IPv4 only AH applies (others are ignored).
    pub fn with_ext(mut self, ext: ExtHeader) -> Self {
        match &mut self.ip {
            IpLayer::V6(ip) => ip.ext.push(ext),
            IpLayer::V4(ip) => {
                if let ExtHeader::Ah { len } = ext {
                    ip.ah = Some(len);
                }
            }
        }
        self
    }

    /// Marks the packet as one fragment by hand (IPv4: header fields, `id` cut to 16 bits;
    /// IPv6: appends a Fragment header). For real fragments use [`Packet::fragment`].
    pub fn with_fragment(mut self, offset: u16, more: bool, id: u32) -> Self {
        match &mut self.ip {
            IpLayer::V4(ip) => {
                ip.fragment_offset = offset & 0x1fff;
                ip.more_fragments = more;
                ip.id = id as u16;
            }
            IpLayer::V6(ip) => ip.ext.push(ExtHeader::Fragment { offset, more, id }),
        }
        self
    }

    /// IPv4 identification.
    pub fn with_ipv4_id(mut self, id: u16) -> Self {
        if let IpLayer::V4(ip) = &mut self.ip {
            ip.id = id;
        }
        self
    }

    pub fn with_dont_fragment(mut self) -> Self {
        if let IpLayer::V4(ip) = &mut self.ip {
            ip.dont_fragment = true;
        }
        self
    }

    /// TTL or hop limit.
    pub fn with_ttl(mut self, ttl: u8) -> Self {
        match &mut self.ip {
            IpLayer::V4(ip) => ip.ttl = ttl,
            IpLayer::V6(ip) => ip.hop_limit = ttl,
        }
        self
    }

    /// Protocol (IPv4) or last next header (IPv6) written instead of the transport's.
    pub fn with_ip_protocol(mut self, protocol: u8) -> Self {
        match &mut self.ip {
            IpLayer::V4(ip) => ip.protocol = Some(protocol),
            IpLayer::V6(ip) => ip.protocol = Some(protocol),
        }
        self
    }

    /// Replaces the transport payload (raw: all bytes).
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        let payload = payload.into();
        match &mut self.l4 {
            L4Layer::Udp { payload: p, .. } | L4Layer::Echo { payload: p, .. } => *p = payload,
            L4Layer::Tcp(tcp) => tcp.payload = payload,
            L4Layer::Raw { bytes, .. } => *bytes = payload,
        }
        self
    }

    pub fn with_tcp_flags(mut self, flags: u8) -> Self {
        if let L4Layer::Tcp(tcp) = &mut self.l4 {
            tcp.flags = flags;
        }
        self
    }

    pub fn with_tcp_options(mut self, options: impl Into<Vec<u8>>) -> Self {
        if let L4Layer::Tcp(tcp) = &mut self.l4 {
            tcp.options = options.into();
        }
        self
    }

    /// Pads the frame with zeros to at least `len` bytes (60 = Ethernet minimum without FCS).
    pub fn padded_to(mut self, len: usize) -> Self {
        self.min_len = len;
        self
    }

    /// Offset of the IP header in the built frame.
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// Offset of the transport header (after IPv4 options and AH, or all IPv6 extension headers).
    pub fn l4_offset(&self) -> usize {
        self.l3_offset()
            + match &self.ip {
                IpLayer::V4(ip) => {
                    20 + ip.padded_options().len()
                        + ip.ah.map_or(0, |len| ExtHeader::Ah { len }.size())
                }
                IpLayer::V6(ip) => 40 + ip.ext.iter().map(ExtHeader::size).sum::<usize>(),
            }
    }

    /// Offset of the transport payload: the length of all headers.
    pub fn payload_offset(&self) -> usize {
        self.l4_offset() + self.l4.header_len()
    }

    pub fn build(&self) -> Vec<u8> {
        match &self.ip {
            IpLayer::V4(ip) => {
                let payload = self.ipv4_payload(ip);
                let proto = self.l4.protocol(false);
                let header = ipv4_header(ip, proto, &ip.padded_options(), payload.len());
                self.frame(ETHERTYPE_IPV4, &[&header, &payload])
            }
            IpLayer::V6(ip) => {
                let (exts, l4) = self.ipv6_parts(ip);
                let first = exts.first().map_or(self.ipv6_l4_proto(ip), |(p, _)| *p);
                let ext_bytes: Vec<u8> = exts.into_iter().flat_map(|(_, b)| b).collect();
                let header = ipv6_header(ip, first, ext_bytes.len() + l4.len());
                self.frame(ETHERTYPE_IPV6, &[&header, &ext_bytes, &l4])
            }
        }
    }

    /// Splits the packet into IP fragments the way a kernel would, each carrying at most
    /// `max_payload` bytes of fragmentable data (rounded down to 8-byte units, at least 8),
    /// with identification `id` (16 bits on IPv4). IPv4 copies the header into every fragment
    /// (options without the copy flag become NOPs after the first); IPv6 keeps leading hop-by-hop
    /// and routing headers in every fragment and inserts the Fragment header after them.
    /// A packet that fits comes back as a single fragment with offset 0 and no MF.
    pub fn fragment(&self, max_payload: usize, id: u32) -> Vec<Vec<u8>> {
        let unit = (max_payload / 8).max(1) * 8;
        match &self.ip {
            IpLayer::V4(ip) => {
                let payload = self.ipv4_payload(ip);
                let first_options = ip.padded_options();
                let later_options = copied_options(&first_options);
                let proto = self.l4.protocol(false);
                let mut ip = ip.clone();
                ip.id = id as u16;
                split(&payload, unit)
                    .into_iter()
                    .map(|(offset, chunk, more)| {
                        ip.fragment_offset = ((offset / 8) as u16) & 0x1fff;
                        ip.more_fragments = more;
                        let options = if offset == 0 {
                            &first_options
                        } else {
                            &later_options
                        };
                        let header = ipv4_header(&ip, proto, options, chunk.len());
                        self.frame(ETHERTYPE_IPV4, &[&header, chunk])
                    })
                    .collect()
            }
            IpLayer::V6(ip) => {
                let (exts, l4) = self.ipv6_parts(ip);
                let kept = ip
                    .ext
                    .iter()
                    .take_while(|e| {
                        matches!(e, ExtHeader::HopByHop { .. } | ExtHeader::Routing { .. })
                    })
                    .count();
                let mut unfragmentable: Vec<u8> = Vec::new();
                for (index, (_, bytes)) in exts[..kept].iter().enumerate() {
                    let start = unfragmentable.len();
                    unfragmentable.extend_from_slice(bytes);
                    if index + 1 == kept {
                        unfragmentable[start] = PROTO_FRAGMENT;
                    }
                }
                let inner = exts.get(kept).map_or(self.ipv6_l4_proto(ip), |(p, _)| *p);
                let first = if kept == 0 { PROTO_FRAGMENT } else { exts[0].0 };
                let mut fragmentable: Vec<u8> =
                    exts[kept..].iter().flat_map(|(_, b)| b.clone()).collect();
                fragmentable.extend_from_slice(&l4);
                split(&fragmentable, unit)
                    .into_iter()
                    .map(|(offset, chunk, more)| {
                        let header = ExtHeader::Fragment {
                            offset: (offset / 8) as u16,
                            more,
                            id,
                        }
                        .encode(inner);
                        let len = unfragmentable.len() + 8 + chunk.len();
                        let ipv6 = ipv6_header(ip, first, len);
                        self.frame(ETHERTYPE_IPV6, &[&ipv6, &unfragmentable, &header, chunk])
                    })
                    .collect()
            }
        }
    }

    fn frame(&self, ip_ethertype: u16, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1600);
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        for tag in &self.vlans {
            out.extend_from_slice(&tag.tpid.to_be_bytes());
            out.extend_from_slice(&tag.id.to_be_bytes());
        }
        out.extend_from_slice(&self.ethertype.unwrap_or(ip_ethertype).to_be_bytes());
        for part in parts {
            out.extend_from_slice(part);
        }
        if out.len() < self.min_len {
            out.resize(self.min_len, 0);
        }
        out
    }

    /// AH (if any) and the transport, i.e. everything behind the IPv4 header.
    fn ipv4_payload(&self, ip: &Ipv4) -> Vec<u8> {
        let pseudo = Pseudo::V4 {
            src: ip.src,
            dst: ip.dst,
        };
        let l4 = self.l4.encode(&pseudo);
        match ip.ah {
            None => l4,
            Some(len) => {
                let next = ip.protocol.unwrap_or(self.l4.protocol(false));
                let mut out = ExtHeader::Ah { len }.encode(next);
                out.extend_from_slice(&l4);
                out
            }
        }
    }

    fn ipv6_l4_proto(&self, ip: &Ipv6) -> u8 {
        ip.protocol.unwrap_or(self.l4.protocol(true))
    }

    /// Each extension header (its protocol number and bytes, chained) and the transport.
    fn ipv6_parts(&self, ip: &Ipv6) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
        let exts = ip
            .ext
            .iter()
            .enumerate()
            .map(|(index, ext)| {
                let next = ip
                    .ext
                    .get(index + 1)
                    .map_or(self.ipv6_l4_proto(ip), ExtHeader::protocol);
                (ext.protocol(), ext.encode(next))
            })
            .collect();
        let pseudo = Pseudo::V6 {
            src: ip.src,
            dst: ip.dst,
        };
        (exts, self.l4.encode(&pseudo))
    }
}

fn echo() -> L4Layer {
    L4Layer::Echo {
        id: 0x5347,
        seq: 1,
        payload: b"sipguard-echo-payload...".to_vec(),
    }
}

/// Pieces of `data` as (byte offset, bytes, more fragments follow).
fn split(data: &[u8], unit: usize) -> Vec<(usize, &[u8], bool)> {
    if data.is_empty() {
        return vec![(0, data, false)];
    }
    let count = data.len().div_ceil(unit);
    data.chunks(unit)
        .enumerate()
        .map(|(index, chunk)| (index * unit, chunk, index + 1 < count))
        .collect()
}

/// IPv4 options as later fragments carry them: those without the copy flag become NOPs.
fn copied_options(options: &[u8]) -> Vec<u8> {
    let mut out = options.to_vec();
    let mut at = 0;
    while at < out.len() {
        match out[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let len = out.get(at + 1).map_or(0, |l| *l as usize);
                if len < 2 || at + len > out.len() {
                    break;
                }
                if kind & 0x80 == 0 {
                    out[at..at + len].fill(1);
                }
                at += len;
            }
        }
    }
    out
}

fn ipv4_header(ip: &Ipv4, l4_proto: u8, options: &[u8], payload_len: usize) -> Vec<u8> {
    let header_len = 20 + options.len();
    let protocol = match ip.ah {
        Some(_) => PROTO_AH,
        None => ip.protocol.unwrap_or(l4_proto),
    };
    let flags = (u16::from(ip.dont_fragment) << 14)
        | (u16::from(ip.more_fragments) << 13)
        | (ip.fragment_offset & 0x1fff);
    let mut out = Vec::with_capacity(header_len);
    out.extend_from_slice(&[0x40 | (header_len / 4) as u8, ip.tos]);
    out.extend_from_slice(&len16(header_len + payload_len).to_be_bytes());
    out.extend_from_slice(&ip.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[ip.ttl, protocol, 0, 0]);
    out.extend_from_slice(&ip.src.octets());
    out.extend_from_slice(&ip.dst.octets());
    out.extend_from_slice(options);
    let sum = checksum(0, &out);
    out[10..12].copy_from_slice(&sum.to_be_bytes());
    out
}

fn ipv6_header(ip: &Ipv6, next: u8, payload_len: usize) -> Vec<u8> {
    let first = (6u32 << 28) | (u32::from(ip.traffic_class) << 20) | (ip.flow_label & 0xfffff);
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&first.to_be_bytes());
    out.extend_from_slice(&len16(payload_len).to_be_bytes());
    out.extend_from_slice(&[next, ip.hop_limit]);
    out.extend_from_slice(&ip.src.octets());
    out.extend_from_slice(&ip.dst.octets());
    out
}

/// An ARP who-has request, broadcast: the simplest frame that is not IP.
pub fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(60);
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // Ethernet/IPv4, lengths 6/4, request.
    out.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&sender.octets());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&target.octets());
    out.resize(60, 0);
    out
}

/// A SIP OPTIONS keepalive as trunks send them (RFC 3261 headers, no body), from `src` to `dst`
/// over `transport` ("UDP", "TCP", "TLS").
pub fn sip_options_request(src: SocketAddr, dst: SocketAddr, transport: &str) -> Vec<u8> {
    let host = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let (from, to) = (host(src.ip()), host(dst.ip()));
    let tag = u32::from(src.port()) * 7919 + u32::from(dst.port());
    format!(
        "OPTIONS sip:{to}:{dport} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from}:{sport};branch=z9hG4bK-sg{tag:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:keepalive@{from}>;tag={tag:08x}\r\n\
         To: <sip:{to}:{dport}>\r\n\
         Call-ID: {tag:x}-options@{from}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:keepalive@{from}:{sport}>\r\n\
         Accept: application/sdp\r\n\
         User-Agent: sipguard-tests\r\n\
         Content-Length: 0\r\n\
         \r\n",
        dport = dst.port(),
        sport = src.port(),
    )
    .into_bytes()
}
