//! A packet the kernel copied, decoded, and the verdict written as a pcapng comment.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sipguard_common::abi::{CaptureHeader, Reason, Zone, capture_outcome};

use super::Filter;
use crate::sip_stats::NamesById;

/// One copied packet and its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// Boot-time ns.
    pub time_ns: u64,
    pub ifindex: u32,
    /// Length on the wire.
    pub packet_len: u32,
    pub reason: u8,
    pub zone: u8,
    /// `capture_outcome::*`.
    pub outcome: u8,
    pub rule: u16,
    /// Normalised number (digits), empty when none.
    pub number: String,
    /// The first `snaplen` bytes of the frame, from the Ethernet header on.
    pub data: Vec<u8>,
}

impl Captured {
    /// Decodes one ring record; `None` when it is shorter than its header says.
    pub fn decode(bytes: &[u8]) -> Option<Captured> {
        let header_len = size_of::<CaptureHeader>();
        if bytes.len() < header_len {
            return None;
        }
        // SAFETY: the length was checked; the header is plain integers, valid for any bits.
        let header: CaptureHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let data = bytes.get(header_len..header_len + header.cap_len as usize)?;
        Some(Captured {
            time_ns: header.time_ns,
            ifindex: header.ifindex,
            packet_len: header.packet_len,
            reason: header.reason,
            zone: header.zone,
            outcome: header.outcome,
            rule: header.rule,
            number: String::from_utf8_lossy(header.number.as_bytes()).into_owned(),
            data: data.to_vec(),
        })
    }

    pub fn reason_name(&self) -> &'static str {
        Reason::from_u8(self.reason).map_or("unknown", Reason::name)
    }

    pub fn zone_name(&self) -> &'static str {
        Zone::from_u8(self.zone).name()
    }

    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            capture_outcome::DROPPED => "dropped",
            capture_outcome::WOULD_DROP => "would_drop",
            _ => "passed",
        }
    }

    /// The source address in the copied headers (read directly: a packet cut at the snap
    /// length is no whole packet for the parser).
    pub fn source(&self) -> Option<IpAddr> {
        let data = &self.data;
        let mut offset = 12;
        let mut ethertype = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
        while matches!(ethertype, 0x8100 | 0x88a8) {
            offset += 4;
            ethertype = u16::from_be_bytes([*data.get(offset)?, *data.get(offset + 1)?]);
        }
        let ip = offset + 2;
        match ethertype {
            0x0800 => {
                let src: [u8; 4] = data.get(ip + 12..ip + 16)?.try_into().ok()?;
                Some(IpAddr::from(src))
            }
            0x86dd => {
                let src: [u8; 16] = data.get(ip + 8..ip + 24)?.try_into().ok()?;
                Some(IpAddr::from(src))
            }
            _ => None,
        }
    }

    /// The pcapng comment: `sipguard: outcome=dropped reason=scanner zone=access
    /// signature=friendly-scanner`; `rule=` and `number=` for the destination firewall.
    pub fn comment(&self, signatures: &NamesById, rules: &NamesById) -> String {
        let mut comment = format!(
            "sipguard: outcome={} reason={} zone={}",
            self.outcome_name(),
            self.reason_name(),
            self.zone_name()
        );
        if self.rule != 0 {
            let scanner = self.reason == Reason::Scanner as u8;
            let (key, names) = if scanner {
                ("signature", signatures)
            } else {
                ("rule", rules)
            };
            match names.get(&self.rule) {
                Some(name) => comment.push_str(&format!(" {key}={name}")),
                None => comment.push_str(&format!(" {key}=#{}", self.rule)),
            }
        }
        if !self.number.is_empty() {
            comment.push_str(&format!(" number=+{}", self.number));
        }
        comment
    }

    /// Whether the record passes the filter (the rolling ring is filtered when it is saved).
    pub fn matches(&self, filter: &Filter) -> bool {
        let passed = self.outcome == capture_outcome::PASSED;
        if passed && !filter.include_passed {
            return false;
        }
        if !passed
            && !filter.reasons.is_empty()
            && !filter.reasons.iter().any(|r| r == self.reason_name())
        {
            return false;
        }
        if !filter.zones.is_empty() && !filter.zones.iter().any(|z| z == self.zone_name()) {
            return false;
        }
        if let Some(net) = filter.source {
            return self.source().is_some_and(|addr| contains(&net, addr));
        }
        true
    }
}

fn contains(net: &IpNet, addr: IpAddr) -> bool {
    net.contains(&addr)
}
