//! Top offenders in fixed memory, whatever the number of attacking sources: the Space-Saving
//! algorithm (Metwally et al.) keeps `capacity` counters; a new source replaces the smallest and
//! inherits its count as an error bound. Any source with more than total/capacity drops is in.

use std::{collections::HashMap, net::IpAddr};

use serde::{Deserialize, Serialize};
use sipguard_common::abi::{REASON_SLOTS, Reason};

use crate::events::EventRecord;

/// One tracked source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Offender {
    pub interface: String,
    /// `None`: frames without an IP header.
    pub source: Option<IpAddr>,
    /// Drops attributed (events plus the drops suppressed before them); may overcount by `error`.
    pub drops: u64,
    pub error: u64,
    /// Drops by reason name.
    pub reasons: Vec<(String, u64)>,
    pub last_seen: String,
    pub last_method: Option<String>,
    pub last_dport: u16,
}

#[derive(Clone, Debug)]
struct Entry {
    drops: u64,
    error: u64,
    reasons: [u64; REASON_SLOTS],
    last_seen: String,
    last_method: Option<String>,
    last_dport: u16,
}

#[derive(Debug)]
pub struct TopSources {
    capacity: usize,
    entries: HashMap<(String, Option<IpAddr>), Entry>,
    /// Drops seen in all.
    pub total: u64,
}

impl TopSources {
    pub fn new(capacity: usize) -> TopSources {
        TopSources {
            capacity: capacity.max(1),
            entries: HashMap::with_capacity(capacity),
            total: 0,
        }
    }

    /// Counts one event: itself plus the drops of that source it says were suppressed.
    pub fn record(&mut self, event: &EventRecord) {
        let weight = 1 + u64::from(event.suppressed_before);
        self.total += weight;
        let key = (event.interface.clone(), event.src);
        let reason = Reason::ALL
            .iter()
            .find(|r| r.name() == event.reason)
            .map_or(0, |r| *r as usize);
        if !self.entries.contains_key(&key) {
            let mut inherited = 0;
            if self.entries.len() >= self.capacity
                && let Some(smallest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.drops)
                    .map(|(k, _)| k.clone())
            {
                inherited = self.entries.remove(&smallest).map_or(0, |e| e.drops);
            }
            self.entries.insert(
                key.clone(),
                Entry {
                    drops: inherited,
                    error: inherited,
                    reasons: [0; REASON_SLOTS],
                    last_seen: String::new(),
                    last_method: None,
                    last_dport: 0,
                },
            );
        }
        let entry = self.entries.get_mut(&key).expect("inserted above");
        entry.drops += weight;
        entry.reasons[reason % REASON_SLOTS] += weight;
        entry.last_seen.clone_from(&event.time);
        entry.last_method.clone_from(&event.sip_method);
        entry.last_dport = event.dport;
    }

    /// The `limit` sources with the most drops, most first.
    pub fn top(&self, limit: usize) -> Vec<Offender> {
        let mut all: Vec<Offender> = self
            .entries
            .iter()
            .map(|((interface, source), entry)| Offender {
                interface: interface.clone(),
                source: *source,
                drops: entry.drops,
                error: entry.error,
                reasons: Reason::ALL
                    .iter()
                    .filter(|r| entry.reasons[**r as usize] > 0)
                    .map(|r| (r.name().to_string(), entry.reasons[*r as usize]))
                    .collect(),
                last_seen: entry.last_seen.clone(),
                last_method: entry.last_method.clone(),
                last_dport: entry.last_dport,
            })
            .collect();
        all.sort_by(|a, b| b.drops.cmp(&a.drops).then_with(|| a.source.cmp(&b.source)));
        all.truncate(limit);
        all
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, reason: &str, suppressed: u32) -> EventRecord {
        EventRecord {
            seq: 0,
            time: "t".into(),
            interface: "eth0".into(),
            src: Some(source.parse().unwrap()),
            dst: None,
            sport: 1,
            dport: 5060,
            transport: "udp".into(),
            vlan: vec![],
            reason: reason.into(),
            zone: "trunk".into(),
            outcome: "dropped".into(),
            length: 100,
            sip_method: Some("INVITE".into()),
            suppressed_before: suppressed,
            rule: None,
            number: None,
            detail: None,
        }
    }

    #[test]
    fn heavy_sources_survive_a_flood_of_one_off_sources_in_fixed_memory() {
        let mut top = TopSources::new(64);
        for round in 0..100_000u32 {
            // Two heavy hitters among 100k one-off spoofed sources.
            let spoofed = std::net::Ipv4Addr::from(0x0a00_0000 + round).to_string();
            top.record(&event(&spoofed, "not_allowlisted", 0));
            if round % 10 == 0 {
                top.record(&event("203.0.113.5", "rate_limited", 0));
            }
            if round % 25 == 0 {
                top.record(&event("203.0.113.9", "banned", 3));
            }
        }
        assert_eq!(top.len(), 64, "memory stays fixed");
        let best = top.top(2);
        // True counts: 4,000 events x (1 + 3 suppressed) and 10,000; Space-Saving may overcount
        // by at most `error`, never undercount.
        assert_eq!(best[0].source, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(best[1].source, Some("203.0.113.5".parse().unwrap()));
        assert!(best[0].drops >= 16_000 && best[0].drops - best[0].error <= 16_000);
        assert!(best[1].drops >= 10_000 && best[1].drops - best[1].error <= 10_000);
        assert_eq!(top.total, 100_000 + 10_000 + 16_000);
    }

    #[test]
    fn suppressed_drops_count_towards_their_source_and_reason() {
        let mut top = TopSources::new(8);
        top.record(&event("192.0.2.1", "rate_limited", 9));
        top.record(&event("192.0.2.1", "banned", 0));
        let first = &top.top(1)[0];
        assert_eq!(first.drops, 11);
        assert_eq!(
            first.reasons,
            [("rate_limited".to_string(), 10), ("banned".to_string(), 1)]
        );
        assert_eq!(first.last_method.as_deref(), Some("INVITE"));
    }
}
