//! Read-only views of the pinned state: counters (`stats`) and configuration (`status`).

use serde::Serialize;
use sipguard_common::{
    abi::{
        CLASS_SLOTS, Counter, FeedbackPolicy, FragmentPolicy, Mode, Origin, Reason,
        SOURCE_PATH_LEN, Zone, ban_flags, counter_index, feedback_flags, map_name,
    },
    budget::NANOS,
    verdict::Lockdown,
};

use crate::{
    dataplane::{egress_link_status, link_status, xdp_mode_name},
    policy::{Ports, class_name},
    state::{EventStats, List, MapFill, State, StateError},
    time::boot_now_ns,
};

/// What happened to the packets of a counter slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Dropped,
    /// Monitor mode: a drop verdict that was only counted.
    WouldDrop,
}

impl Outcome {
    /// The outcome of a verdict with `reason`, `monitored` when a drop was only counted.
    pub const fn of(reason: Reason, monitored: bool) -> Outcome {
        match (reason.is_drop(), monitored) {
            (false, _) => Outcome::Passed,
            (true, false) => Outcome::Dropped,
            (true, true) => Outcome::WouldDrop,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Dropped => "dropped",
            Outcome::WouldDrop => "would_drop",
        }
    }
}

/// Packets per second over an interval, by interface, zone, reason and outcome.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Rate {
    pub interface: String,
    pub zone: String,
    pub reason: String,
    pub outcome: String,
    pub packets_per_second: f64,
}

/// The rates of every counter slot that moved between two readings of `SG_COUNTERS` taken
/// `seconds` apart (packets only), fastest first.
pub fn rates(interface: &str, before: &[u64], after: &[u64], seconds: f64) -> Vec<Rate> {
    let mut rates = Vec::new();
    for zone in Zone::ALL {
        for reason in Reason::ALL {
            for monitored in [false, true] {
                let index = counter_index(zone, reason, monitored) as usize;
                let delta = after
                    .get(index)
                    .zip(before.get(index))
                    .map_or(0, |(after, before)| after.saturating_sub(*before));
                if delta == 0 {
                    continue;
                }
                rates.push(Rate {
                    interface: interface.to_string(),
                    zone: zone.name().into(),
                    reason: reason.name().into(),
                    outcome: Outcome::of(reason, monitored).name().into(),
                    packets_per_second: delta as f64 / seconds.max(0.001),
                });
            }
        }
    }
    rates.sort_by(|a, b| b.packets_per_second.total_cmp(&a.packets_per_second));
    rates
}

#[derive(Clone, Debug, Serialize)]
pub struct CounterRow {
    pub zone: &'static str,
    pub reason: &'static str,
    pub outcome: Outcome,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

impl Totals {
    fn add(&mut self, counter: &Counter) {
        self.packets += counter.packets;
        self.bytes += counter.bytes;
    }
}

/// Counters of one interface, summed over CPUs.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub interface: String,
    pub mode: &'static str,
    pub passed: Totals,
    pub dropped: Totals,
    pub would_drop: Totals,
    /// Drop events emitted, suppressed (event budgets) and lost (ring buffer full).
    pub events: EventStats,
    /// Non-zero slots, by zone then reason.
    pub counters: Vec<CounterRow>,
    #[serde(skip)]
    raw: Vec<Counter>,
}

impl Stats {
    pub fn read(state: &State) -> Result<Stats, StateError> {
        let raw = state.counters()?;
        let active = state.active_generation()?;
        let mode = Mode::from_u8(state.policy(active)?.header.mode);
        let mut stats = Stats {
            interface: state.target.label(),
            mode: mode.name(),
            passed: Totals::default(),
            dropped: Totals::default(),
            would_drop: Totals::default(),
            events: state.event_stats()?,
            counters: Vec::new(),
            raw: raw.clone(),
        };
        for zone in Zone::ALL {
            for reason in Reason::ALL {
                for monitored in [false, true] {
                    let counter = raw[counter_index(zone, reason, monitored) as usize];
                    if counter.packets == 0 {
                        continue;
                    }
                    let outcome = Outcome::of(reason, monitored);
                    match outcome {
                        Outcome::Passed => stats.passed.add(&counter),
                        Outcome::Dropped => stats.dropped.add(&counter),
                        Outcome::WouldDrop => {
                            stats.would_drop.add(&counter);
                            stats.passed.add(&counter);
                        }
                    }
                    stats.counters.push(CounterRow {
                        zone: zone.name(),
                        reason: reason.name(),
                        outcome,
                        packets: counter.packets,
                        bytes: counter.bytes,
                    });
                }
            }
        }
        Ok(stats)
    }

    /// One slot.
    pub fn get(&self, zone: Zone, reason: Reason, monitored: bool) -> Counter {
        self.raw[counter_index(zone, reason, monitored) as usize]
    }

    /// Packets with this reason in any zone, acted on or monitored.
    pub fn packets(&self, reason: Reason) -> u64 {
        Zone::ALL
            .iter()
            .flat_map(|zone| [false, true].map(|m| self.get(*zone, reason, m).packets))
            .sum()
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ListSizes {
    pub policy: usize,
    pub runtime: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct BudgetView {
    pub rate: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassView {
    pub name: String,
    pub rate: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct BanView {
    pub threshold: u32,
    pub window_seconds: u64,
    pub ttl_seconds: u64,
    /// Bans in force now (would-be bans excluded).
    pub active: usize,
    /// Would-be bans of monitor mode, not expired: listed, never enforced.
    pub would_be: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkView {
    pub link_id: u32,
    pub program_id: u32,
    pub ifindex: u32,
}

/// How `status`, metrics and the CLI name the access gate's state (`[access] unverified`,
/// `sipguard attack-mode`).
pub fn gate_name(gate: u16) -> &'static str {
    use sipguard_common::abi::access_gate;
    if gate & access_gate::ALWAYS != 0 {
        "shut (always)"
    } else if gate & access_gate::UNDER_ATTACK != 0 && gate & access_gate::FORCED != 0 {
        "shut (forced)"
    } else if gate & access_gate::UNDER_ATTACK != 0 {
        "shut (under attack)"
    } else if gate & access_gate::FORCED != 0 {
        "open (forced)"
    } else if gate & access_gate::ON_ATTACK != 0 {
        "open (shuts under attack)"
    } else {
        "open"
    }
}

/// How `status`, metrics and the CLI name a lockdown state.
pub fn lockdown_name(lockdown: Lockdown) -> &'static str {
    match lockdown {
        Lockdown::Off => "off",
        Lockdown::Allowlisted => "allowlisted",
        Lockdown::AllowlistedAndVerified => "allowlisted+verified",
    }
}

/// Configuration and health of one interface.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub interface: String,
    pub pin_dir: String,
    /// The program is attached through a live link.
    pub attached: bool,
    pub link: Option<LinkView>,
    pub xdp_mode: &'static str,
    pub mode: &'static str,
    /// `off`, `allowlisted` (only allowlisted sources admitted) or `allowlisted+verified`.
    pub lockdown: &'static str,
    /// The access gate: `open`, `open (shuts under attack)`, `shut (under attack)`, `shut (always)`.
    pub access_gate: &'static str,
    pub fragments: &'static str,
    pub generation: u32,
    pub serial: u64,
    pub applied_at_unix: u64,
    pub policy_file: Option<String>,
    pub policy_digest: Option<String>,
    pub trunk: Ports,
    pub access: Ports,
    /// Budget class of unknown sources in the access zone.
    pub access_class: Option<String>,
    pub ipv6_budget_prefix: u8,
    pub classes: Vec<ClassView>,
    pub new_sources: BudgetView,
    pub bans: BanView,
    /// Entries in the per-source budget maps.
    pub tracked_sources: usize,
    pub tracked_peers: usize,
    pub allowlist: ListSizes,
    pub denylist: ListSizes,
    pub passed: Totals,
    pub dropped: Totals,
    pub would_drop: Totals,
    /// Fill of every bounded table.
    pub tables: Vec<MapFill>,
    /// The SIP rules in force, per zone.
    pub sip: Vec<SipZoneView>,
    /// The TC egress program (it reads the SBC's answers).
    pub egress: EgressView,
    /// What the SBC's answers do under the running policy.
    pub feedback: FeedbackView,
}

/// The egress program's tcx link.
#[derive(Clone, Debug, Serialize)]
pub struct EgressView {
    /// Attached through a live tcx link.
    pub attached: bool,
    pub link: Option<LinkView>,
}

/// `[auth_failures]` of the running policy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuthFailuresView {
    pub threshold: u32,
    pub window_seconds: u64,
    pub ttl_seconds: u64,
    pub grace_seconds: u64,
}

/// `[verified]` of the running policy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VerifiedView {
    pub class: String,
    pub max_lifetime_seconds: u64,
    pub default_lifetime_seconds: u64,
}

/// The feedback settings of the running generation; `None`: off.
#[derive(Clone, Debug, Serialize)]
pub struct FeedbackView {
    pub auth_failures: Option<AuthFailuresView>,
    pub verified: Option<VerifiedView>,
    /// Verified sources whose registration has not expired.
    pub verified_sources: usize,
}

impl FeedbackView {
    /// The settings in `feedback`, with the name of its class from `policy`.
    pub fn of(
        feedback: &FeedbackPolicy,
        policy: &sipguard_common::abi::Policy,
        verified_sources: usize,
    ) -> FeedbackView {
        FeedbackView {
            auth_failures: (feedback.flags & feedback_flags::AUTH_FAILURES != 0
                && feedback.auth.threshold != 0)
                .then_some(AuthFailuresView {
                    threshold: feedback.auth.threshold,
                    window_seconds: feedback.auth.window_ns / NANOS,
                    ttl_seconds: feedback.auth.ttl_ns / NANOS,
                    grace_seconds: feedback.grace_ns / NANOS,
                }),
            verified: (feedback.flags & feedback_flags::VERIFIED != 0).then(|| VerifiedView {
                class: class_name(
                    &policy.classes[usize::from(feedback.verified_class) % CLASS_SLOTS],
                ),
                max_lifetime_seconds: feedback.verified_max_ns / NANOS,
                default_lifetime_seconds: feedback.verified_default_ns / NANOS,
            }),
            verified_sources,
        }
    }
}

/// What the SIP stages check in one zone.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SipZoneView {
    pub zone: &'static str,
    /// Scanner signatures checked (0: none); `scanner_bans`: a match bans.
    pub signatures: usize,
    pub scanner_bans: bool,
    pub scanners_check_allowlisted: bool,
    /// Destination prefixes of this zone (rules and country codes), 0 without a firewall.
    pub destination_prefixes: usize,
    /// Classes with method budgets.
    pub method_budget_classes: Vec<String>,
}

impl Status {
    pub fn read(state: &State) -> Result<Status, StateError> {
        let meta = state.meta()?;
        let generation = state.active_generation()?;
        let policy = state.policy(generation)?;
        let header = policy.header;
        let link = link_status(&state.target);
        let sizes = |list| -> Result<ListSizes, StateError> {
            let rules = state.rules(generation, list)?;
            let runtime = rules
                .values()
                .filter(|v| Origin::kept_across_apply(v.origin))
                .count();
            Ok(ListSizes {
                policy: rules.len() - runtime,
                runtime,
            })
        };
        let zone_ports = |zone: Zone| Ports::of(&policy, zone);
        let classes: Vec<ClassView> = policy
            .classes
            .iter()
            .skip(1)
            .filter(|limits| limits.name[0] != 0)
            .map(|limits| ClassView {
                name: class_name(limits),
                rate: limits.rate,
                burst: limits.burst,
            })
            .collect();
        let access = zone_ports(Zone::Access);
        let has_access = !access.is_empty();
        let now = boot_now_ns();
        let unexpired: Vec<_> = state
            .bans()?
            .into_iter()
            .filter(|(_, ban)| ban.expires_at_ns > now)
            .collect();
        let would_be_bans = unexpired
            .iter()
            .filter(|(_, ban)| ban.flags & ban_flags::WOULD_BE != 0)
            .count();
        let tables = state.map_fill()?;
        let entries = |name: &str| {
            tables
                .iter()
                .find(|fill| fill.name == name)
                .map_or(0, |fill| fill.entries)
        };
        let (tracked_sources, tracked_peers) =
            (entries(map_name::SOURCES), entries(map_name::PEERS));
        let path_len = header
            .source_path
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(SOURCE_PATH_LEN);
        let stats = Stats::read(state)?;
        let egress = egress_link_status(&state.target);
        let verified_sources = state
            .verified_sources()?
            .iter()
            .filter(|(_, entry)| entry.expires_at_ns > now)
            .count();
        Ok(Status {
            interface: state.target.label(),
            pin_dir: state.target.dir().display().to_string(),
            attached: link.is_some_and(|l| l.ifindex != 0),
            link: link.map(|l| LinkView {
                link_id: l.link_id,
                program_id: l.program_id,
                ifindex: l.ifindex,
            }),
            xdp_mode: xdp_mode_name(meta.xdp_mode),
            mode: Mode::from_u8(header.mode).name(),
            lockdown: lockdown_name(Lockdown::from_flags(header.flags)),
            access_gate: gate_name(policy.feedback.gate),
            fragments: FragmentPolicy::from_u8(header.fragments).name(),
            generation,
            serial: header.serial,
            applied_at_unix: header.applied_at_unix,
            policy_file: (path_len > 0)
                .then(|| String::from_utf8_lossy(&header.source_path[..path_len]).into_owned()),
            policy_digest: (header.source_digest != 0)
                .then(|| format!("{:016x}", header.source_digest)),
            trunk: zone_ports(Zone::Trunk),
            access,
            access_class: (has_access && header.access_class != 0).then(|| {
                class_name(&policy.classes[usize::from(header.access_class) % CLASS_SLOTS])
            }),
            ipv6_budget_prefix: header.ipv6_budget_prefix,
            classes,
            new_sources: BudgetView {
                rate: header.new_sources_rate,
                burst: header.new_sources_burst,
            },
            bans: BanView {
                threshold: header.ban.threshold,
                window_seconds: header.ban.window_ns / 1_000_000_000,
                ttl_seconds: header.ban.ttl_ns / 1_000_000_000,
                active: unexpired.len() - would_be_bans,
                would_be: would_be_bans,
            },
            tracked_sources,
            tracked_peers,
            allowlist: sizes(List::Allow)?,
            denylist: sizes(List::Deny)?,
            passed: stats.passed,
            dropped: stats.dropped,
            would_drop: stats.would_drop,
            tables,
            sip: sip_zones(state, generation, &policy)?,
            egress: EgressView {
                attached: egress.is_some_and(|l| l.ifindex != 0),
                link: egress.map(|l| LinkView {
                    link_id: l.link_id,
                    program_id: l.program_id,
                    ifindex: l.ifindex,
                }),
            },
            feedback: FeedbackView::of(&policy.feedback, &policy, verified_sources),
        })
    }
}

fn sip_zones(
    state: &State,
    generation: u32,
    policy: &sipguard_common::abi::Policy,
) -> Result<Vec<SipZoneView>, StateError> {
    use sipguard_common::abi::{Zone, sip_zone_flags};
    let destinations = state.destinations(generation)?;
    let signatures: std::collections::BTreeSet<u16> = state
        .signatures(generation)?
        .values()
        .map(|rule| rule.id)
        .collect();
    let method_budget_classes: Vec<String> = policy
        .classes
        .iter()
        .zip(&policy.class_methods)
        .skip(1)
        .filter(|(_, budgets)| budgets.iter().any(|gcra| !gcra.is_unlimited()))
        .map(|(limits, _)| crate::policy::class_name(limits))
        .collect();
    let mut views = Vec::new();
    for (index, zone) in [Zone::Trunk, Zone::Access].into_iter().enumerate() {
        let rules = &policy.sip.zones[index];
        if !sipguard_common::verdict::zone_inspects(&policy.header, zone) {
            continue;
        }
        let scanners = rules.flags & sip_zone_flags::SCANNERS != 0;
        views.push(SipZoneView {
            zone: zone.name(),
            signatures: if scanners { signatures.len() } else { 0 },
            scanner_bans: scanners && rules.flags & sip_zone_flags::SCANNER_BANS != 0,
            scanners_check_allowlisted: scanners
                && rules.flags & sip_zone_flags::SCANNERS_ALLOWLISTED != 0,
            destination_prefixes: destinations
                .keys()
                .filter(|(_, data)| data[0] == zone as u8)
                .count(),
            method_budget_classes: method_budget_classes.clone(),
        });
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use sipguard_common::abi::COUNTER_SLOTS;

    use super::*;

    #[test]
    fn rates_name_each_moved_slot_with_its_outcome_fastest_first() {
        let before = vec![0u64; COUNTER_SLOTS];
        let mut after = before.clone();
        after[counter_index(Zone::Trunk, Reason::NotAllowlisted, false) as usize] = 20;
        after[counter_index(Zone::Access, Reason::RateLimited, true) as usize] = 40;
        after[counter_index(Zone::Trunk, Reason::Allowlisted, false) as usize] = 2;
        let rates = rates("eth0", &before, &after, 2.0);
        let rows: Vec<(&str, &str, &str, f64)> = rates
            .iter()
            .map(|r| {
                (
                    r.zone.as_str(),
                    r.reason.as_str(),
                    r.outcome.as_str(),
                    r.packets_per_second,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("access", "rate_limited", "would_drop", 20.0),
                ("trunk", "not_allowlisted", "dropped", 10.0),
                ("trunk", "allowlisted", "passed", 1.0),
            ]
        );
        assert!(super::rates("eth0", &before, &before, 1.0).is_empty());
    }
}
