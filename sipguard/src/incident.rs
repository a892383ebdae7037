//! `sipguard report`: one interface's incident summary for a ticket, over a time window: what
//! was dropped and why, the worst sources, bans issued, destinations tried and the changes
//! made.
//!
//! Counters in the kernel only grow, so a window needs a reading from its start: `sipguard
//! run` appends one a minute to `counters.jsonl` beside the journal ([`record_snapshot`]).
//! Sources and destinations come from drop events (the daemon's event log or its API), bans
//! from the ban table, changes from the journal.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sipguard_common::abi::{BanReason, ban_flags};

use crate::{
    events::EventRecord,
    journal::{Entry, Journal, describe_write},
    pins::Target,
    policy::source_text,
    report::Stats,
    sip_stats::SipStats,
    state::{State, StateError},
    time::{boot_ns_to_unix, format_time, now_unix},
};

/// `counters.jsonl` is cut to its newer half past this size (a reading a minute: about a day).
const SNAPSHOT_FILE_BYTES: u64 = 4 << 20;

/// The counters of one interface at one time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub unix: u64,
    /// Packets by (zone, reason, outcome).
    pub packets: Vec<(String, String, String, u64)>,
    /// INVITEs by (zone, destination verdict, country).
    pub destinations: Vec<(String, String, String, u64)>,
    /// Matches by scanner signature.
    pub signatures: Vec<(String, u64)>,
    /// INVITEs by destination rule.
    pub rules: Vec<(String, u64)>,
}

impl Snapshot {
    pub fn read(state: &State) -> Result<Snapshot, StateError> {
        let stats = Stats::read(state)?;
        let sip = SipStats::read(state)?;
        Ok(Snapshot {
            unix: now_unix(),
            packets: stats
                .counters
                .iter()
                .map(|row| {
                    (
                        row.zone.to_string(),
                        row.reason.to_string(),
                        row.outcome.name().to_string(),
                        row.packets,
                    )
                })
                .collect(),
            destinations: sip
                .destinations
                .iter()
                .map(|(zone, verdict, country, count)| {
                    (
                        zone.to_string(),
                        verdict.to_string(),
                        country.to_string(),
                        *count,
                    )
                })
                .collect(),
            signatures: sip.signatures,
            rules: sip.rules,
        })
    }

    /// What was counted after `earlier`. A counter that went down was reset (a new attach):
    /// all of it counts.
    fn since(&self, earlier: &Snapshot) -> Snapshot {
        fn minus<K: Ord + Clone>(now: &[(K, u64)], then: &[(K, u64)]) -> Vec<(K, u64)> {
            let before: BTreeMap<&K, u64> = then.iter().map(|(k, n)| (k, *n)).collect();
            now.iter()
                .map(|(key, n)| {
                    let then = before.get(key).copied().unwrap_or(0);
                    (key.clone(), if *n >= then { n - then } else { *n })
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        }
        let flat =
            |rows: &[(String, String, String, u64)]| -> Vec<((String, String, String), u64)> {
                rows.iter()
                    .map(|(a, b, c, n)| ((a.clone(), b.clone(), c.clone()), *n))
                    .collect()
            };
        let unflat = |rows: Vec<((String, String, String), u64)>| {
            rows.into_iter()
                .map(|((a, b, c), n)| (a, b, c, n))
                .collect()
        };
        Snapshot {
            unix: self.unix,
            packets: unflat(minus(&flat(&self.packets), &flat(&earlier.packets))),
            destinations: unflat(minus(
                &flat(&self.destinations),
                &flat(&earlier.destinations),
            )),
            signatures: minus(&self.signatures, &earlier.signatures),
            rules: minus(&self.rules, &earlier.rules),
        }
    }
}

fn snapshot_path(target: &Target) -> PathBuf {
    crate::journal::dir_of(target).join("counters.jsonl")
}

/// Appends the interface's counters now to its `counters.jsonl` (the daemon, once a minute).
pub fn record_snapshot(target: &Target) -> anyhow::Result<()> {
    let snapshot = Snapshot::read(&State::open(target)?)?;
    let path = snapshot_path(target);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_vec(&snapshot)?;
    line.push(b'\n');
    if fs::metadata(&path).is_ok_and(|meta| meta.len() > SNAPSHOT_FILE_BYTES) {
        let text = fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().collect();
        let kept = lines[lines.len() / 2..].join("\n") + "\n";
        let temporary = path.with_extension("tmp");
        fs::write(&temporary, kept)?;
        fs::rename(&temporary, &path)?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?
        .write_all(&line)?;
    Ok(())
}

fn snapshots(path: &Path) -> Vec<Snapshot> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// One source among the worst.
#[derive(Clone, Debug, Serialize)]
pub struct Offender {
    pub source: String,
    /// Drops (each event plus the drops it says were suppressed before it).
    pub drops: u64,
    pub reasons: Vec<(String, u64)>,
    pub methods: Vec<(String, u64)>,
    pub first_seen: String,
    pub last_seen: String,
}

/// A number INVITEs were dropped for, by the destination rule that dropped them.
#[derive(Clone, Debug, Serialize)]
pub struct Destination {
    pub number: String,
    pub rule: String,
    pub reason: String,
    pub attempts: u64,
    pub sources: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct BanRow {
    pub source: String,
    pub reason: &'static str,
    pub banned_at: String,
    pub expires: String,
    pub would_be: bool,
    pub hits: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChangeRow {
    pub id: u64,
    pub time: String,
    pub user: String,
    pub action: String,
    pub command: String,
    pub outcome: crate::journal::Outcome,
    pub undoes: Vec<u64>,
    pub what: Vec<String>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub interface: String,
    pub since: String,
    pub until: String,
    pub mode: &'static str,
    pub lockdown: &'static str,
    /// Where the counters of the window come from: `snapshot` (a reading from its start) or
    /// `since_attach` (none that old: everything since the filter was attached).
    pub counters_from: String,
    pub counters: Snapshot,
    pub dropped: u64,
    pub would_drop: u64,
    pub passed: u64,
    /// Where sources and destinations come from, and how many events were read.
    pub events_from: String,
    pub events: usize,
    pub top_sources: Vec<Offender>,
    pub destinations: Vec<Destination>,
    pub bans: Vec<BanRow>,
    pub changes: Vec<ChangeRow>,
}

impl Report {
    /// Builds the report of `target` since `since_unix` from its state, snapshots, journal
    /// and `events` (from `events_from`), with the `top` worst sources.
    pub fn build(
        target: &Target,
        since_unix: u64,
        events: &[EventRecord],
        events_from: String,
        top: usize,
    ) -> anyhow::Result<Report> {
        let state = State::open(target)?;
        let now = Snapshot::read(&state)?;
        let baseline = snapshots(&snapshot_path(target))
            .into_iter()
            .filter(|snapshot| snapshot.unix <= since_unix)
            .max_by_key(|snapshot| snapshot.unix);
        let (counters_from, counters) = match &baseline {
            Some(then) => (
                format!("snapshot of {}", format_time(then.unix)),
                now.since(then),
            ),
            None => ("since_attach".to_string(), now.clone()),
        };
        let total = |outcome: &str| -> u64 {
            counters
                .packets
                .iter()
                .filter(|row| row.2 == outcome)
                .map(|row| row.3)
                .sum()
        };
        let policy = state.policy(state.active_generation()?)?;
        let in_window: Vec<&EventRecord> = events
            .iter()
            .filter(|event| event.is_drop())
            .filter(|event| event_unix(event).is_some_and(|unix| unix >= since_unix))
            .collect();
        let bans = state
            .bans()?
            .into_iter()
            .filter(|(_, ban)| boot_ns_to_unix(ban.banned_at_ns) >= since_unix)
            .map(|(key, ban)| BanRow {
                source: source_text(&key),
                reason: BanReason::from_u8(ban.reason).map_or("unknown", BanReason::name),
                banned_at: format_time(boot_ns_to_unix(ban.banned_at_ns)),
                expires: format_time(boot_ns_to_unix(ban.expires_at_ns)),
                would_be: ban.flags & ban_flags::WOULD_BE != 0,
                hits: ban.hits,
            })
            .collect::<Vec<_>>();
        let mut bans = bans;
        bans.sort_by(|a, b| a.banned_at.cmp(&b.banned_at).then(a.source.cmp(&b.source)));
        let changes = Journal::of(target)
            .entries()?
            .into_iter()
            .filter(|entry| entry.unix >= since_unix)
            .map(change_row)
            .collect();
        Ok(Report {
            interface: target.label(),
            since: format_time(since_unix),
            until: format_time(now.unix),
            mode: sipguard_common::abi::Mode::from_u8(policy.header.mode).name(),
            lockdown: crate::report::lockdown_name(sipguard_common::verdict::Lockdown::from_flags(
                policy.header.flags,
            )),
            counters_from,
            dropped: total("dropped"),
            would_drop: total("would_drop"),
            passed: total("passed"),
            counters,
            events_from,
            events: in_window.len(),
            top_sources: offenders(&in_window, top),
            destinations: destinations(&in_window),
            bans,
            changes,
        })
    }

    /// The report as Markdown, for a ticket.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("# sipguard incident report: {}", self.interface));
        line(String::new());
        line(format!(
            "From {} to {}. Mode {}, lockdown {}.",
            self.since, self.until, self.mode, self.lockdown
        ));
        line(String::new());
        line("## Dropped, by reason".into());
        line(String::new());
        if self.counters_from == "since_attach" {
            line(
                "No counter reading from the start of the window (`sipguard run` keeps one a \
                 minute): these are the counts since the filter was attached."
                    .into(),
            );
            line(String::new());
        }
        line(format!(
            "{} packets dropped, {} would have been (monitor mode), {} passed.",
            self.dropped, self.would_drop, self.passed
        ));
        line(String::new());
        let mut drops: Vec<&(String, String, String, u64)> = self
            .counters
            .packets
            .iter()
            .filter(|row| row.2 != "passed")
            .collect();
        drops.sort_by_key(|row| std::cmp::Reverse(row.3));
        if !drops.is_empty() {
            line("| zone | reason | outcome | packets |".into());
            line("|---|---|---|---:|".into());
            for (zone, reason, outcome, packets) in drops {
                line(format!("| {zone} | {reason} | {outcome} | {packets} |"));
            }
            line(String::new());
        }
        if !self.counters.signatures.is_empty() {
            line("Scanner signatures matched:".into());
            line(String::new());
            for (name, count) in &self.counters.signatures {
                line(format!("- {name}: {count}"));
            }
            line(String::new());
        }
        line("## Top sources".into());
        line(String::new());
        line(format!(
            "From {} drop events ({}). Drops per source are lower bounds: the event budget \
             thins events out, and a source's suppressed drops count with its next event.",
            self.events, self.events_from
        ));
        line(String::new());
        if !self.top_sources.is_empty() {
            line("| source | drops | reasons | methods | first seen | last seen |".into());
            line("|---|---:|---|---|---|---|".into());
            for source in &self.top_sources {
                line(format!(
                    "| {} | {} | {} | {} | {} | {} |",
                    source.source,
                    source.drops,
                    pairs(&source.reasons),
                    pairs(&source.methods),
                    source.first_seen,
                    source.last_seen
                ));
            }
            line(String::new());
        }
        line("## Bans issued".into());
        line(String::new());
        if self.bans.is_empty() {
            line("None in force.".into());
        } else {
            line("| source | reason | banned at | expires | hits |".into());
            line("|---|---|---|---|---:|".into());
            for ban in &self.bans {
                let reason = if ban.would_be {
                    format!("{} (would be)", ban.reason)
                } else {
                    ban.reason.to_string()
                };
                line(format!(
                    "| {} | {reason} | {} | {} | {} |",
                    ban.source, ban.banned_at, ban.expires, ban.hits
                ));
            }
        }
        line(String::new());
        line("## Destinations tried".into());
        line(String::new());
        if self.destinations.is_empty() && self.counters.rules.is_empty() {
            line("No INVITE was dropped by the destination firewall.".into());
        } else {
            if !self.counters.rules.is_empty() {
                for (rule, count) in &self.counters.rules {
                    line(format!("- rule {rule}: {count} INVITEs"));
                }
                line(String::new());
            }
            if !self.destinations.is_empty() {
                line("| number | rule | reason | attempts | sources |".into());
                line("|---|---|---|---:|---:|".into());
                for destination in &self.destinations {
                    line(format!(
                        "| {} | {} | {} | {} | {} |",
                        destination.number,
                        destination.rule,
                        destination.reason,
                        destination.attempts,
                        destination.sources
                    ));
                }
            }
        }
        line(String::new());
        line("## Changes made".into());
        line(String::new());
        if self.changes.is_empty() {
            line("None journaled.".into());
        } else {
            line("| # | time | who | action | what |".into());
            line("|---:|---|---|---|---|".into());
            for change in &self.changes {
                let what = change.what.first().cloned().unwrap_or_default();
                let more = change.what.len().saturating_sub(1);
                let more = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                line(format!(
                    "| {} | {} | {} | {} | {}{more} |",
                    change.id,
                    change.time,
                    change.user,
                    change.action,
                    what.replace('|', "\\|")
                ));
            }
        }
        out
    }
}

fn pairs(pairs: &[(String, u64)]) -> String {
    pairs
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_unix(event: &EventRecord) -> Option<u64> {
    let time: jiff::Timestamp = event.time.parse().ok()?;
    u64::try_from(time.as_second()).ok()
}

fn offenders(events: &[&EventRecord], top: usize) -> Vec<Offender> {
    #[derive(Default)]
    struct Tally {
        drops: u64,
        reasons: BTreeMap<String, u64>,
        methods: BTreeMap<String, u64>,
        first: String,
        last: String,
    }
    let mut by_source: BTreeMap<Option<IpAddr>, Tally> = BTreeMap::new();
    for event in events {
        let tally = by_source.entry(event.src).or_default();
        let weight = 1 + u64::from(event.suppressed_before);
        tally.drops += weight;
        *tally.reasons.entry(event.reason.clone()).or_default() += weight;
        if let Some(method) = &event.sip_method {
            *tally.methods.entry(method.clone()).or_default() += 1;
        }
        if tally.first.is_empty() || event.time < tally.first {
            tally.first.clone_from(&event.time);
        }
        if event.time > tally.last {
            tally.last.clone_from(&event.time);
        }
    }
    let sorted = |map: BTreeMap<String, u64>| {
        let mut pairs: Vec<(String, u64)> = map.into_iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs
    };
    let mut offenders: Vec<Offender> = by_source
        .into_iter()
        .map(|(source, tally)| Offender {
            source: source.map_or_else(|| "(no IP header)".into(), |addr| addr.to_string()),
            drops: tally.drops,
            reasons: sorted(tally.reasons),
            methods: sorted(tally.methods),
            first_seen: tally.first,
            last_seen: tally.last,
        })
        .collect();
    offenders.sort_by(|a, b| b.drops.cmp(&a.drops).then(a.source.cmp(&b.source)));
    offenders.truncate(top);
    offenders
}

fn destinations(events: &[&EventRecord]) -> Vec<Destination> {
    // (number, rule, reason) -> (attempts, sources).
    type Attempts = (u64, std::collections::BTreeSet<Option<IpAddr>>);
    let mut by_number: BTreeMap<(String, String, String), Attempts> = BTreeMap::new();
    for event in events {
        let Some(number) = &event.number else {
            continue;
        };
        let key = (
            number.clone(),
            event.rule.clone().unwrap_or_default(),
            event.reason.clone(),
        );
        let entry = by_number.entry(key).or_default();
        entry.0 += 1 + u64::from(event.suppressed_before);
        entry.1.insert(event.src);
    }
    let mut rows: Vec<Destination> = by_number
        .into_iter()
        .map(
            |((number, rule, reason), (attempts, sources))| Destination {
                number,
                rule,
                reason,
                attempts,
                sources: sources.len(),
            },
        )
        .collect();
    rows.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.number.cmp(&b.number)));
    rows
}

fn change_row(entry: Entry) -> ChangeRow {
    let what = entry
        .writes
        .iter()
        .map(describe_write)
        .filter(|line| !line.starts_with("prefilter chunk") && !line.ends_with(": serial"))
        .collect();
    ChangeRow {
        id: entry.id,
        time: entry.time,
        user: entry.who.user,
        action: entry.action,
        command: entry.who.command,
        outcome: entry.outcome,
        undoes: entry.undoes,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(unix: u64, not_allowlisted: u64, scanner: u64) -> Snapshot {
        Snapshot {
            unix,
            packets: vec![
                (
                    "trunk".into(),
                    "not_allowlisted".into(),
                    "dropped".into(),
                    not_allowlisted,
                ),
                ("access".into(), "scanner".into(), "dropped".into(), scanner),
            ],
            signatures: vec![("friendly-scanner".into(), scanner)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_window_counts_what_grew_and_all_of_a_counter_that_was_reset() {
        let window = reading(200, 130, 7).since(&reading(100, 100, 2));
        assert_eq!(window.packets[0].3, 30);
        assert_eq!(window.packets[1].3, 5);
        assert_eq!(window.signatures, vec![("friendly-scanner".to_string(), 5)]);
        // A new attach started the counters again: what is there now all came after.
        let reset = reading(200, 4, 2).since(&reading(100, 100, 2));
        assert_eq!(reset.packets.len(), 1, "unchanged rows drop out");
        assert_eq!(reset.packets[0].3, 4);
    }
}
