//! The packets measured per packet: one frame per decision path, with the verdict sipguard must
//! reach (checked on every measured run) and the xdp-filter configuration that expresses the
//! same decision, where one does.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use sipguard_common::abi::{Reason, Zone};
use sipguard_tests::{
    frames::{Packet, sip_options_request},
    harness::{XDP_DROP, XDP_PASS},
};

use super::mix::{
    ACCESS_PORT, ACCESS_V4, BANNED_V4, CARRIER_V4, CARRIER_V6, DENIED_V4, MALFORMED_V4, NON_SIP_V4,
    SBC_V4, SBC_V6, THROTTLED_V4, TRUNK_PORT, UNBUDGETED_V4, UNKNOWN_V4, UNLISTED_V4,
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
pub(super) fn options4(src: std::net::Ipv4Addr, dport: u16) -> Packet {
    Packet::udp4(src, SBC_V4, TRUNK_PORT, dport, sip(src.into(), dport))
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
    all
}
