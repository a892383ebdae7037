//! The packets measured per packet: one frame per decision path, with the verdict sipguard must
//! reach (checked on every measured run) and the xdp-filter configuration that expresses the
//! same decision, where one does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;
use sipguard_common::abi::{Reason, SipMethod, Zone};
use sipguard_tests::{
    frames::{Packet, sip_options_request},
    harness::{XDP_DROP, XDP_PASS},
};

use super::mix::{
    ACCESS_PORT, ACCESS_V4, BANNED_V4, CARRIER_V4, CARRIER_V6, DENIED_V4, MALFORMED_V4, NON_SIP_V4,
    SBC_V4, SBC_V6, SCANNER_V4, THROTTLED_V4, TRUNK_PORT, UNBUDGETED_V4, UNKNOWN_V4, UNLISTED_V4,
};

/// Which xdp-filter setup expresses a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum XfSetup {
    /// `xdp-filter load -p deny`: unmatched packets are dropped; rules (`xdp-filter ip ADDR -m
    /// src`) are the allowlist. The nearest equivalent of a trunk zone.
    DropUnmatched,
    /// `xdp-filter load -p allow`: unmatched packets pass; rules are the denylist (and bans).
    PassUnmatched,
}

impl XfSetup {
    pub(crate) fn name(self) -> &'static str {
        match self {
            XfSetup::DropUnmatched => "drop_unmatched",
            XfSetup::PassUnmatched => "pass_unmatched",
        }
    }
}

/// The SIP stages a scenario's packet goes through under the policy with the SIP rules, as
/// their counters show it (checked on every measured run).
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct SipPath {
    /// The SIP stage counts it under this method (SG_METHODS).
    #[serde(serialize_with = "method_name")]
    pub method: SipMethod,
    /// A scanner signature matches (SG_SIGHITS); no other scenario may match one.
    pub signature: bool,
    /// The destination stage judges the INVITE (SG_RULEHITS); no other scenario reaches it.
    pub destination: bool,
}

fn method_name<S: serde::Serializer>(method: &SipMethod, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{method:?}").to_ascii_uppercase())
}

impl SipPath {
    pub(super) fn describe(&self) -> String {
        let mut steps = vec![format!(
            "method stage ({})",
            format!("{:?}", self.method).to_ascii_uppercase()
        )];
        steps.push("header scan".into());
        if self.signature {
            steps.push("signature match".into());
        }
        if self.destination {
            steps.push("destination stage".into());
        }
        steps.join(", ")
    }
}

pub(super) struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub frame: Vec<u8>,
    pub action: u32,
    pub zone: Zone,
    pub reason: Reason,
    /// Also accepted: the over-budget peer's 1/s budget admits about one packet per second
    /// between rounds.
    pub tolerated: Option<Reason>,
    pub xdp_filter: Option<XfSetup>,
    /// The verdict (action, reason) under the policy without SIP rules, where it differs.
    pub without_sip: Option<(u32, Reason)>,
    /// The SIP stages it goes through under the SIP rules; `None`: it never reaches them.
    pub sip: Option<SipPath>,
}

impl Scenario {
    /// Action and reason sipguard must reach, with or without the SIP rules in its policy.
    pub(super) fn expected(&self, sip_rules: bool) -> (u32, Reason) {
        match self.without_sip {
            Some(verdict) if !sip_rules => verdict,
            _ => (self.action, self.reason),
        }
    }
}

fn sip(src: IpAddr, dport: u16) -> Vec<u8> {
    let dst: IpAddr = match src {
        IpAddr::V4(_) => SBC_V4.into(),
        IpAddr::V6(_) => SBC_V6.into(),
    };
    sip_options_request(
        SocketAddr::new(src, TRUNK_PORT),
        SocketAddr::new(dst, dport),
        "UDP",
    )
}

/// A SIP OPTIONS keepalive over UDP from `src` to the SBC's `dport`.
pub(super) fn options4(src: Ipv4Addr, dport: u16) -> Packet {
    Packet::udp4(src, SBC_V4, TRUNK_PORT, dport, sip(src.into(), dport))
}

/// The SBC's SIP domain in the access scenarios' messages.
const DOMAIN: &str = "sbc.example.net";
/// A desk phone's User-Agent, as the access scenarios' phones send it.
const PHONE_AGENT: &str = "Yealink SIP-T46S 66.86.0.15";

/// A phone's REGISTER (with its usual headers, no body) from `src` to the access port.
pub(super) fn register(src: Ipv4Addr) -> Vec<u8> {
    let message = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src}:{TRUNK_PORT};branch=z9hG4bK1764339245;rport\r\n\
         From: \"Reception 1001\" <sip:1001@{DOMAIN}>;tag=1416894217\r\n\
         To: \"Reception 1001\" <sip:1001@{DOMAIN}>\r\n\
         Call-ID: 1877543510@{src}\r\n\
         CSeq: 7 REGISTER\r\n\
         Contact: <sip:1001@{src}:{TRUNK_PORT}>;+sip.instance=\"<urn:uuid:00100400-0000-1000-\
         8000-805ec0a1b2c3>\"\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: {PHONE_AGENT}\r\n\
         Expires: 3600\r\n\
         Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO, REFER, UPDATE\r\n\
         Content-Length: 0\r\n\
         \r\n"
    );
    Packet::udp4(src, SBC_V4, TRUNK_PORT, ACCESS_PORT, message.into_bytes()).build()
}

/// Header bytes (request line to the blank line) of [`invite_national`]'s message.
pub(super) const INVITE_HEADER_BYTES: std::ops::RangeInclusive<usize> = 1_150..=1_250;

/// A call set-up from a phone behind two proxies (three Vias, a Record-Route) to the national
/// number 020 7946 0000 (`+44 20 7946 0000` under the bench dial plan), about 1.2 KB of
/// headers with the User-Agent near the end, and a small SDP offer.
pub(super) fn invite_national(src: Ipv4Addr) -> Vec<u8> {
    let sdp = "v=0\r\n\
         o=1001 20250 20250 IN IP4 192.168.10.21\r\n\
         s=SIP Call\r\n\
         c=IN IP4 192.168.10.21\r\n\
         t=0 0\r\n\
         m=audio 11780 RTP/AVP 8 0 101\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\n\
         a=sendrecv\r\n";
    let headers = format!(
        "INVITE sip:02079460000@{DOMAIN};user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src}:{TRUNK_PORT};branch=z9hG4bK-524287-1---7c4e1f8a2b9d3e60;rport\r\n\
         Via: SIP/2.0/UDP 10.20.30.1:5060;branch=z9hG4bKd8754z-0c2a91e0bd6f7e35;\
         received=10.20.30.1;rport=5060\r\n\
         Via: SIP/2.0/UDP 192.168.10.21:5060;branch=z9hG4bK3f9a8e21c7-d8754z;rport=5060\r\n\
         Record-Route: <sip:10.20.30.1:5060;lr;ftag=as5d8f3c21;did=9a1.b2c3>\r\n\
         Max-Forwards: 68\r\n\
         Contact: <sip:1001@192.168.10.21:5060;transport=udp>;+sip.instance=\"<urn:uuid:\
         00100400-0000-1000-8000-805ec0a1b2c3>\"\r\n\
         To: <sip:02079460000@{DOMAIN};user=phone>\r\n\
         From: \"Reception 1001\" <sip:1001@{DOMAIN}>;tag=8c1f2e3d4b\r\n\
         Call-ID: 5b0c7e1d9a2f4e6b8c3d1a0f7e2d4c6b@192.168.10.21\r\n\
         CSeq: 102 INVITE\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE, \
         UPDATE, PRACK\r\n\
         Supported: replaces, timer, 100rel, path, gruu, outbound\r\n\
         P-Asserted-Identity: \"Reception 1001\" <sip:+442079460123@{DOMAIN};user=phone>\r\n\
         Session-Expires: 1800;refresher=uac\r\n\
         Min-SE: 90\r\n\
         Allow-Events: talk, hold, conference, refer, check-sync\r\n\
         Accept: application/sdp\r\n\
         User-Agent: {PHONE_AGENT}\r\n\
         Content-Disposition: session;handling=required\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\
         \r\n",
        sdp.len()
    );
    debug_assert!(
        INVITE_HEADER_BYTES.contains(&headers.len()),
        "INVITE headers: {} bytes",
        headers.len()
    );
    let message = headers + sdp;
    Packet::udp4(src, SBC_V4, TRUNK_PORT, ACCESS_PORT, message.into_bytes()).build()
}

/// SIPVicious' `svmap` probe (`User-Agent: friendly-scanner`) from `src` to the access port.
pub(super) fn scanner_options(src: Ipv4Addr) -> Vec<u8> {
    let message = format!(
        "OPTIONS sip:100@{SBC_V4} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src}:{TRUNK_PORT};branch=z9hG4bK-2769532291;rport\r\n\
         Max-Forwards: 70\r\n\
         To: \"sipvicious\"<sip:100@1.1.1.1>\r\n\
         From: \"sipvicious\"<sip:100@1.1.1.1>;tag=6434396633623535313363340131363535393238\r\n\
         User-Agent: friendly-scanner\r\n\
         Call-ID: 1232324321\r\n\
         Contact: <sip:100@{src}:{TRUNK_PORT}>\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\
         \r\n"
    );
    Packet::udp4(src, SBC_V4, TRUNK_PORT, ACCESS_PORT, message.into_bytes()).build()
}

pub(super) fn all() -> Vec<Scenario> {
    let mut malformed = options4(MALFORMED_V4, TRUNK_PORT).build();
    // IHL 4: a header shorter than 20 bytes, which the kernel rejects too.
    malformed[14] = 0x44;
    let scenario = |name, title, frame, action, zone, reason, xdp_filter| Scenario {
        name,
        title,
        frame,
        action,
        zone,
        reason,
        tolerated: None,
        xdp_filter,
        without_sip: None,
        sip: None,
    };
    let mut all = vec![
        scenario(
            "allowlisted_under_budget",
            "allowlisted, under budget (class carrier)",
            options4(CARRIER_V4, TRUNK_PORT).build(),
            XDP_PASS,
            Zone::Trunk,
            Reason::Allowlisted,
            Some(XfSetup::DropUnmatched),
        ),
        scenario(
            "allowlisted_over_budget",
            "allowlisted, over budget (class throttled)",
            options4(THROTTLED_V4, TRUNK_PORT).build(),
            XDP_DROP,
            Zone::Trunk,
            Reason::PeerRateLimited,
            None,
        ),
        scenario(
            "allowlisted_no_budget",
            "allowlisted, no class (no budget)",
            options4(UNBUDGETED_V4, TRUNK_PORT).build(),
            XDP_PASS,
            Zone::Trunk,
            Reason::Allowlisted,
            Some(XfSetup::DropUnmatched),
        ),
        scenario(
            "unknown_trunk_dropped",
            "unknown source dropped (trunk zone)",
            options4(UNKNOWN_V4, TRUNK_PORT).build(),
            XDP_DROP,
            Zone::Trunk,
            Reason::NotAllowlisted,
            Some(XfSetup::DropUnmatched),
        ),
        scenario(
            "unknown_unlisted_dropped",
            "unknown source from a /24 no list touches, dropped (trunk zone)",
            options4(UNLISTED_V4, TRUNK_PORT).build(),
            XDP_DROP,
            Zone::Trunk,
            Reason::NotAllowlisted,
            Some(XfSetup::DropUnmatched),
        ),
        scenario(
            "unknown_access_admitted",
            "unknown source admitted (access zone, class phones)",
            options4(ACCESS_V4, ACCESS_PORT).build(),
            XDP_PASS,
            Zone::Access,
            Reason::AccessAdmitted,
            None,
        ),
        scenario(
            "denylisted",
            "denylisted source (trunk port)",
            options4(DENIED_V4, TRUNK_PORT).build(),
            XDP_DROP,
            Zone::Trunk,
            Reason::Denylisted,
            Some(XfSetup::PassUnmatched),
        ),
        scenario(
            "banned",
            "banned source (automatic ban, access port)",
            options4(BANNED_V4, ACCESS_PORT).build(),
            XDP_DROP,
            Zone::Access,
            Reason::Banned,
            Some(XfSetup::PassUnmatched),
        ),
        scenario(
            "non_sip_passed",
            "non-SIP passed (UDP to port 53)",
            Packet::udp4(NON_SIP_V4, SBC_V4, 40000, 53, vec![0u8; 40]).build(),
            XDP_PASS,
            Zone::None,
            Reason::NotSip,
            Some(XfSetup::PassUnmatched),
        ),
        scenario(
            "ipv6_allowlisted",
            "IPv6, allowlisted /128 (class carrier)",
            Packet::udp6(
                CARRIER_V6,
                SBC_V6,
                TRUNK_PORT,
                TRUNK_PORT,
                sip(CARRIER_V6.into(), TRUNK_PORT),
            )
            .build(),
            XDP_PASS,
            Zone::Trunk,
            Reason::Allowlisted,
            Some(XfSetup::DropUnmatched),
        ),
        scenario(
            "vlan_allowlisted",
            "802.1Q VLAN 100, allowlisted (class carrier)",
            options4(CARRIER_V4, TRUNK_PORT).with_vlan(100).build(),
            XDP_PASS,
            Zone::Trunk,
            Reason::Allowlisted,
            Some(XfSetup::DropUnmatched),
        ),
        scenario(
            "malformed",
            "malformed (IPv4 IHL 4)",
            malformed,
            XDP_DROP,
            Zone::None,
            Reason::Malformed,
            None,
        ),
    ];
    all[1].tolerated = Some(Reason::Allowlisted);
    debug_assert_eq!(all[1].reason, Reason::PeerRateLimited);
    // Admitted in the access zone: under the SIP rules it goes through the method stage and,
    // with signatures on there, the header scan.
    let access = all
        .iter_mut()
        .find(|s| s.name == "unknown_access_admitted")
        .expect("the access scenario");
    access.sip = Some(SipPath {
        method: SipMethod::Options,
        signature: false,
        destination: false,
    });
    let path = |method, signature, destination| {
        Some(SipPath {
            method,
            signature,
            destination,
        })
    };
    all.extend([
        Scenario {
            sip: path(SipMethod::Register, false, false),
            ..scenario(
                "register_access",
                "REGISTER from an unknown access source, admitted (class phones)",
                register(ACCESS_V4),
                XDP_PASS,
                Zone::Access,
                Reason::AccessAdmitted,
                None,
            )
        },
        Scenario {
            sip: path(SipMethod::Invite, false, true),
            ..scenario(
                "invite_national_full",
                "INVITE, 1.2 KB of headers, to a national number the rules allow (access zone)",
                invite_national(ACCESS_V4),
                XDP_PASS,
                Zone::Access,
                Reason::AccessAdmitted,
                None,
            )
        },
        Scenario {
            sip: path(SipMethod::Options, true, false),
            without_sip: Some((XDP_PASS, Reason::AccessAdmitted)),
            ..scenario(
                "scanner_options",
                "OPTIONS with User-Agent friendly-scanner, dropped (access zone)",
                scanner_options(SCANNER_V4),
                XDP_DROP,
                Zone::Access,
                Reason::Scanner,
                None,
            )
        },
    ]);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invite_has_the_header_size_it_claims() {
        let frame = invite_national(ACCESS_V4);
        let payload = &frame[14 + 20 + 8..];
        let end = payload
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a blank line")
            + 4;
        assert!(INVITE_HEADER_BYTES.contains(&end), "{end} header bytes");
        assert!(
            payload.len() < 1_472,
            "fits one UDP datagram: {}",
            payload.len()
        );
    }
}
