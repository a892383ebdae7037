//! Drop events from the kernel's ring buffer, decoded for people and machines.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sipguard_common::abi::{DropEvent, Reason, SipMethod, Zone};

pub use crate::time::Clock;
use crate::{report::Outcome, time::rfc3339_micros};

/// One drop event, as written to the JSON-lines log and served by the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number given by the daemon (0 when read directly from the ring buffer).
    #[serde(default)]
    pub seq: u64,
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    pub interface: String,
    /// Absent when the frame had no IP header (malformed, VLAN stack too deep).
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: u16,
    pub dport: u16,
    /// `udp`, `tcp`, `sctp`, or the IP protocol number.
    pub transport: String,
    /// Outer and inner VLAN ids present in the frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    pub reason: String,
    pub zone: String,
    /// `dropped`, or `would_drop` in monitor mode.
    pub outcome: String,
    pub length: u32,
    /// SIP method (or `SIP/2.0` for a response) when the first payload bytes name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_method: Option<String>,
    /// Drops of this source that got no event since its previous one (event budget spent).
    pub suppressed_before: u32,
    /// The scanner signature (reason `scanner`) or destination rule (`destination_*`) that
    /// decided; `#<id>` when its name was not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The normalised number (E.164 digits) of an INVITE the destination firewall dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// What a record that is no drop reports (reason [`GATE_SWITCH`]): who switched and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The `reason` of the record the daemon adds to the event stream when the access gate shuts
/// or opens (outcome `gate_shut` or `gate_open`): whoever follows the events sees why
/// `unverified` drops start and stop.
pub const GATE_SWITCH: &str = "access_gate";

/// Names of signature and rule ids, read from the generation in force and read again when an
/// event names an id it does not know (after an `apply`).
#[derive(Debug, Default)]
pub struct RuleNames {
    target: Option<crate::state::Target>,
    signatures: std::collections::BTreeMap<u16, String>,
    rules: std::collections::BTreeMap<u16, String>,
}

impl RuleNames {
    pub fn new(target: crate::state::Target) -> RuleNames {
        RuleNames {
            target: Some(target),
            ..RuleNames::default()
        }
    }

    /// Replaces `#<id>` in the record's `rule` by the name.
    pub fn name(&mut self, record: &mut EventRecord) {
        let Some(id) = record
            .rule
            .as_deref()
            .and_then(|rule| rule.strip_prefix('#'))
            .and_then(|id| id.parse::<u16>().ok())
        else {
            return;
        };
        let scanner = record.reason == Reason::Scanner.name();
        let known = |names: &RuleNames| {
            let table = if scanner {
                &names.signatures
            } else {
                &names.rules
            };
            table.get(&id).cloned()
        };
        let mut name = known(self);
        if name.is_none()
            && let Some(target) = &self.target
            && let Ok(state) = crate::state::State::open(target)
            && let Ok((signatures, rules)) = crate::sip_stats::names_by_id(&state)
        {
            self.signatures = signatures;
            self.rules = rules;
            name = known(self);
        }
        if let Some(name) = name {
            record.rule = Some(name);
        }
    }
}

fn address(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        6 => Some(IpAddr::from(*bytes)),
        _ => None,
    }
}

impl EventRecord {
    /// Decodes one ring-buffer record; `None` when it is not a whole `DropEvent`.
    pub fn decode(bytes: &[u8], interface: &str, clock: &Clock) -> Option<EventRecord> {
        if bytes.len() < size_of::<DropEvent>() {
            return None;
        }
        // SAFETY: the length was checked; DropEvent is plain integers, valid for any bits.
        let event: DropEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let reason = Reason::from_u8(event.reason).map_or("unknown", Reason::name);
        let method = SipMethod::from_u8(event.method);
        Some(EventRecord {
            seq: 0,
            time: rfc3339_micros(clock.unix_ns(event.time_ns)),
            interface: interface.to_string(),
            src: address(event.family, &event.src),
            dst: address(event.family, &event.dst),
            sport: event.sport,
            dport: event.dport,
            transport: match event.l4_proto {
                17 => "udp".to_string(),
                6 => "tcp".to_string(),
                132 => "sctp".to_string(),
                other => other.to_string(),
            },
            vlan: event.vlan.iter().copied().filter(|id| *id != 0).collect(),
            reason: reason.to_string(),
            zone: Zone::from_u8(event.zone).name().to_string(),
            // Events are only made for drop verdicts.
            outcome: match event.monitored {
                0 => Outcome::Dropped,
                _ => Outcome::WouldDrop,
            }
            .name()
            .to_string(),
            length: event.packet_len,
            sip_method: (method != SipMethod::Unknown).then(|| method.token().to_string()),
            suppressed_before: event.suppressed,
            rule: (event.rule != 0).then(|| format!("#{}", event.rule)),
            number: (event.number.len > 0)
                .then(|| String::from_utf8_lossy(event.number.as_bytes()).into_owned()),
            detail: None,
        })
    }

    /// The access gate of `interface` shut (or opened) at `unix_ns`; `detail` says by whom and why.
    pub fn gate_switch(interface: &str, shut: bool, unix_ns: i128, detail: String) -> EventRecord {
        EventRecord {
            seq: 0,
            time: rfc3339_micros(unix_ns),
            interface: interface.to_string(),
            src: None,
            dst: None,
            sport: 0,
            dport: 0,
            transport: "-".to_string(),
            vlan: Vec::new(),
            reason: GATE_SWITCH.to_string(),
            zone: Zone::Access.name().to_string(),
            outcome: if shut { "gate_shut" } else { "gate_open" }.to_string(),
            length: 0,
            sip_method: None,
            suppressed_before: 0,
            rule: None,
            number: None,
            detail: Some(detail),
        }
    }

    /// True for a dropped (or would-be dropped) packet, false for a gate switch.
    pub fn is_drop(&self) -> bool {
        self.reason != GATE_SWITCH
    }

    /// One line for a terminal.
    pub fn human(&self) -> String {
        if !self.is_drop() {
            let state = self.outcome.strip_prefix("gate_").unwrap_or(&self.outcome);
            return format!(
                "{} {} access gate {state}: {}",
                self.time,
                self.interface,
                self.detail.as_deref().unwrap_or("-")
            );
        }
        let endpoint = |addr: Option<IpAddr>, port: u16| match addr {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
            Some(v4) => format!("{v4}:{port}"),
            None => "-".to_string(),
        };
        let mut line = format!(
            "{} {} {} {} -> {} {} {}/{}",
            self.time,
            self.interface,
            self.transport,
            endpoint(self.src, self.sport),
            endpoint(self.dst, self.dport),
            self.outcome,
            self.zone,
            self.reason
        );
        if let Some(method) = &self.sip_method {
            line.push_str(&format!(" {method}"));
        }
        if let Some(rule) = &self.rule {
            line.push_str(&format!(" [{rule}]"));
        }
        if let Some(number) = &self.number {
            line.push_str(&format!(" +{number}"));
        }
        if !self.vlan.is_empty() {
            line.push_str(&format!(" vlan {:?}", self.vlan));
        }
        if self.suppressed_before > 0 {
            line.push_str(&format!(" (+{} suppressed)", self.suppressed_before));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_into_records() {
        let mut event = DropEvent {
            time_ns: 1_000,
            ifindex: 3,
            packet_len: 420,
            suppressed: 7,
            sport: 5060,
            dport: 5070,
            vlan: [100, 0],
            family: 6,
            l4_proto: 17,
            reason: Reason::RateLimited as u8,
            zone: Zone::Access as u8,
            monitored: 1,
            method: SipMethod::Register as u8,
            ..DropEvent::default()
        };
        event.src = "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        event.dst[..2].copy_from_slice(&[0x20, 0x01]);
        // SAFETY: DropEvent is plain integers.
        let bytes: [u8; size_of::<DropEvent>()] = unsafe { std::mem::transmute(event) };
        let clock = Clock::with_offset(1_795_667_288_000_000_000);
        let record = EventRecord::decode(&bytes, "eth0", &clock).unwrap();
        assert_eq!(record.time, "2026-11-26T04:28:08.000001Z");
        assert_eq!(record.src, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(record.transport, "udp");
        assert_eq!(record.vlan, [100]);
        assert_eq!(record.reason, "rate_limited");
        assert_eq!(record.zone, "access");
        assert_eq!(record.outcome, "would_drop");
        assert_eq!(record.sip_method.as_deref(), Some("REGISTER"));
        assert_eq!(record.suppressed_before, 7);
        assert!(EventRecord::decode(&bytes[..10], "eth0", &clock).is_none());
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<EventRecord>(&line).unwrap(), record);
        assert!(record.human().contains("[2001:db8::7]:5060 -> [2001::]:5070 would_drop access/rate_limited REGISTER vlan [100] (+7 suppressed)"), "{}", record.human());
    }

    #[test]
    fn a_gate_switch_is_a_record_of_its_own() {
        let record = EventRecord::gate_switch(
            "eth0",
            true,
            1_700_000_000_000_000_000,
            "by the detector: under attack".into(),
        );
        assert!(!record.is_drop());
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains(r#""reason":"access_gate","zone":"access","outcome":"gate_shut""#));
        assert_eq!(serde_json::from_str::<EventRecord>(&line).unwrap(), record);
        assert_eq!(
            record.human(),
            "2023-11-14T22:13:20.000000Z eth0 access gate shut: by the detector: under attack"
        );
        // Older logs have no detail field; their drops still read as drops.
        let drop = line
            .replace(r#","detail":"by the detector: under attack""#, "")
            .replace("access_gate", "unverified");
        assert!(
            serde_json::from_str::<EventRecord>(&drop)
                .unwrap()
                .is_drop()
        );
    }
}
