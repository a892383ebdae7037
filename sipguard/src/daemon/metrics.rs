//! The Prometheus exposition: every value is read from the pinned kernel state at scrape time, so
//! counters continue across daemon restarts and never depend on the daemon having seen a packet.
//! No label carries an address: cardinality is bounded by interfaces x zones x reasons.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use sipguard_common::abi::{
    ABI_VERSION, BanReason, Mode, Origin, SipMethod, answer_stat, ban_flags,
};
use tokio::time::Instant;

use crate::{
    report::{Stats, Status},
    sip_stats::SipStats,
    state::{List, State, Target},
    time::boot_now_ns,
};

/// What the daemon itself counts, per interface label.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    /// Events written to the log.
    pub written: HashMap<String, AtomicU64>,
    /// Access-gate switches seen, by [`GateSwitch::index`].
    pub gate_switches: HashMap<String, [AtomicU64; GateSwitch::COUNT]>,
}

/// One access-gate switch, as `sipguard_access_gate_switches` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateSwitch {
    pub shut: bool,
    pub by: SwitchedBy,
}

/// Who switched the access gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchedBy {
    /// The daemon's attack detector.
    Detector,
    /// `sipguard attack-mode on|off|auto`.
    Operator,
    /// A policy applied (`unverified` changed).
    Policy,
}

impl SwitchedBy {
    const ALL: [SwitchedBy; 3] = [
        SwitchedBy::Detector,
        SwitchedBy::Operator,
        SwitchedBy::Policy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SwitchedBy::Detector => "detector",
            SwitchedBy::Operator => "operator",
            SwitchedBy::Policy => "policy",
        }
    }
}

impl GateSwitch {
    pub const COUNT: usize = 2 * SwitchedBy::ALL.len();

    pub fn index(self) -> usize {
        usize::from(self.shut) * SwitchedBy::ALL.len() + self.by as usize
    }

    fn all() -> impl Iterator<Item = GateSwitch> {
        [true, false]
            .into_iter()
            .flat_map(|shut| SwitchedBy::ALL.map(|by| GateSwitch { shut, by }))
    }
}

#[derive(Debug)]
struct SipguardCollector {
    targets: Vec<Target>,
    daemon: Arc<DaemonCounters>,
    /// Serialises scrapes: reading every map is not free.
    scrape: Mutex<()>,
}

/// A family of samples: labels and value.
type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &Samples,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*value as u64).encode(sample)?,
            _ => ConstGauge::new(*value as i64).encode(sample)?,
        }
    }
    Ok(())
}

#[derive(Default)]
struct Scrape {
    packets: Samples,
    bytes: Samples,
    events: Samples,
    written: Samples,
    gate_switches: Samples,
    capture: Samples,
    bans_issued: Samples,
    would_bans_issued: Samples,
    bans_active: Samples,
    would_bans_active: Samples,
    insert_failures: Samples,
    sip_requests: Samples,
    destination_invites: Samples,
    signature_matches: Samples,
    rule_invites: Samples,
    tail_call_failures: Samples,
    map_entries: Samples,
    map_capacity: Samples,
    sbc_answers: Samples,
    verified_sources: Samples,
    egress_attached: Samples,
    list_entries: Samples,
    attached: Samples,
    monitor: Samples,
    lockdown: Samples,
    access_gate: Samples,
    serial: Samples,
    applied: Samples,
    errors: Samples,
}

impl SipguardCollector {
    fn read(&self, target: &Target, scrape: &mut Scrape) -> Result<(), crate::state::StateError> {
        let state = State::open(target)?;
        let interface = target.label();
        let label = || ("interface", interface.clone());
        let stats = Stats::read(&state)?;
        for row in &stats.counters {
            let labels = vec![
                label(),
                ("zone", row.zone.to_string()),
                ("reason", row.reason.to_string()),
                ("outcome", row.outcome.name().to_string()),
            ];
            scrape.packets.push((labels.clone(), row.packets as f64));
            scrape.bytes.push((labels, row.bytes as f64));
        }
        for (slot, name) in crate::capture::SLOT_NAMES {
            if let Ok(stats) = crate::capture::stats(target, slot) {
                for (result, value) in [
                    ("copied", stats.copied),
                    ("over_budget", stats.over_budget),
                    ("ring_full", stats.ring_full),
                    ("truncated", stats.truncated),
                ] {
                    scrape.capture.push((
                        vec![label(), ("capture", name.into()), ("result", result.into())],
                        value as f64,
                    ));
                }
            }
        }
        let events = state.event_stats()?;
        for (result, value) in [
            ("emitted", events.emitted),
            ("suppressed", events.suppressed),
            ("lost", events.lost),
        ] {
            scrape
                .events
                .push((vec![label(), ("result", result.into())], value as f64));
        }
        scrape
            .bans_issued
            .push((vec![label()], events.bans_issued as f64));
        scrape
            .would_bans_issued
            .push((vec![label()], events.would_bans_issued as f64));
        scrape
            .tail_call_failures
            .push((vec![label()], events.tail_call_failures as f64));
        for (zone, method, count) in state.method_counts()? {
            let method = match method {
                SipMethod::Unknown => "other",
                SipMethod::Response => "response",
                method => method.token(),
            };
            scrape.sip_requests.push((
                vec![
                    label(),
                    ("zone", zone.name().into()),
                    ("method", method.into()),
                ],
                count as f64,
            ));
        }
        let sip = SipStats::read(&state)?;
        for (zone, verdict, country, count) in &sip.destinations {
            scrape.destination_invites.push((
                vec![
                    label(),
                    ("zone", (*zone).into()),
                    ("verdict", (*verdict).into()),
                    ("country", (*country).into()),
                ],
                *count as f64,
            ));
        }
        for (signature, count) in &sip.signatures {
            scrape.signature_matches.push((
                vec![label(), ("signature", signature.clone())],
                *count as f64,
            ));
        }
        for (rule, count) in &sip.rules {
            scrape
                .rule_invites
                .push((vec![label(), ("rule", rule.clone())], *count as f64));
        }
        for (map, failures) in events.insert_failures.by_map() {
            scrape
                .insert_failures
                .push((vec![label(), ("map", map.into())], failures as f64));
        }
        let written = self
            .daemon
            .written
            .get(&interface)
            .map_or(0, |w| w.load(Ordering::Relaxed));
        scrape.written.push((vec![label()], written as f64));
        if let Some(switches) = self.daemon.gate_switches.get(&interface) {
            for switch in GateSwitch::all() {
                scrape.gate_switches.push((
                    vec![
                        label(),
                        ("to", if switch.shut { "shut" } else { "open" }.to_string()),
                        ("by", switch.by.name().to_string()),
                    ],
                    switches[switch.index()].load(Ordering::Relaxed) as f64,
                ));
            }
        }

        let now = boot_now_ns();
        let mut active: HashMap<&str, u64> = HashMap::new();
        let mut would_be = 0u64;
        for (_, ban) in state.bans()? {
            if ban.expires_at_ns <= now {
                continue;
            }
            if ban.flags & ban_flags::WOULD_BE != 0 {
                would_be += 1;
            } else {
                *active
                    .entry(BanReason::from_u8(ban.reason).map_or("unknown", BanReason::name))
                    .or_default() += 1;
            }
        }
        for reason in BanReason::ALL {
            let count = active.get(reason.name()).copied().unwrap_or(0);
            scrape.bans_active.push((
                vec![label(), ("reason", reason.name().into())],
                count as f64,
            ));
        }
        scrape
            .would_bans_active
            .push((vec![label()], would_be as f64));
        for (kind, count) in answer_stat::NAMES.iter().zip(state.answer_stats()?) {
            scrape
                .sbc_answers
                .push((vec![label(), ("kind", (*kind).into())], count as f64));
        }
        let status = Status::read(&state)?;
        scrape
            .verified_sources
            .push((vec![label()], status.feedback.verified_sources as f64));
        scrape
            .egress_attached
            .push((vec![label()], f64::from(u8::from(status.egress.attached))));
        for fill in &status.tables {
            let labels = vec![label(), ("map", fill.name.to_string())];
            scrape
                .map_entries
                .push((labels.clone(), fill.entries as f64));
            scrape.map_capacity.push((labels, f64::from(fill.capacity)));
        }
        let generation = state.active_generation()?;
        for list in [List::Allow, List::Deny] {
            let mut counts: HashMap<(&str, &str), u64> = HashMap::new();
            for (prefix, value) in state.rules(generation, list)? {
                let family = match prefix {
                    crate::policy::Prefix::V4 { .. } => "ipv4",
                    crate::policy::Prefix::V6 { .. } => "ipv6",
                };
                let origin = Origin::name_of(value.origin);
                *counts.entry((family, origin)).or_default() += 1;
            }
            for family in ["ipv4", "ipv6"] {
                for origin in ["policy", "runtime", "fleet"] {
                    let count = counts.get(&(family, origin)).copied().unwrap_or(0);
                    scrape.list_entries.push((
                        vec![
                            label(),
                            ("list", list.name().into()),
                            ("family", family.into()),
                            ("origin", origin.into()),
                        ],
                        count as f64,
                    ));
                }
            }
        }
        scrape.attached.push((
            vec![label(), ("xdp_mode", status.xdp_mode.into())],
            f64::from(u8::from(status.attached)),
        ));
        scrape.monitor.push((
            vec![label()],
            f64::from(u8::from(status.mode == Mode::Monitor.name())),
        ));
        scrape.lockdown.push((
            vec![label(), ("admits", status.lockdown.to_string())],
            f64::from(u8::from(status.lockdown != "off")),
        ));
        scrape.access_gate.push((
            vec![label(), ("state", status.access_gate.to_string())],
            f64::from(u8::from(status.access_gate.starts_with("shut"))),
        ));
        scrape.serial.push((vec![label()], status.serial as f64));
        scrape
            .applied
            .push((vec![label()], status.applied_at_unix as f64));
        Ok(())
    }
}

impl Collector for SipguardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let _guard = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut scrape = Scrape::default();
        for target in &self.targets {
            if let Err(error) = self.read(target, &mut scrape) {
                log::warn!("scrape of {}: {error}", target.label());
                scrape
                    .errors
                    .push((vec![("interface", target.label())], 1.0));
                scrape.attached.push((
                    vec![
                        ("interface", target.label()),
                        ("xdp_mode", "unknown".into()),
                    ],
                    0.0,
                ));
            }
        }
        let e = &mut encoder;
        use MetricType::{Counter, Gauge};
        family(
            e,
            "sipguard_packets",
            "Packets judged, by zone, reason and outcome (passed, dropped, would_drop in monitor mode).",
            Counter,
            &scrape.packets,
        )?;
        family(
            e,
            "sipguard_bytes",
            "Bytes judged, by zone, reason and outcome.",
            Counter,
            &scrape.bytes,
        )?;
        family(
            e,
            "sipguard_events",
            "Drop events: emitted to the ring buffer, suppressed by the event budgets, or lost (ring buffer full). Each drop counts once.",
            Counter,
            &scrape.events,
        )?;
        family(
            e,
            "sipguard_capture_packets",
            "Packets evidence capture matched, by capture (capture: sipguard capture; ring: the rolling ring of sipguard run) and result: copied, over_budget (the capture's own budget), ring_full (not read in time); truncated counts copies cut at the snap length.",
            Counter,
            &scrape.capture,
        )?;
        family(
            e,
            "sipguard_events_written",
            "Drop events written to the event log by this daemon.",
            Counter,
            &scrape.written,
        )?;
        family(
            e,
            "sipguard_bans_issued",
            "Automatic bans issued by the data plane.",
            Counter,
            &scrape.bans_issued,
        )?;
        family(
            e,
            "sipguard_would_bans_issued",
            "Automatic bans monitor mode recorded instead of issuing (would-be bans).",
            Counter,
            &scrape.would_bans_issued,
        )?;
        family(
            e,
            "sipguard_bans_active",
            "Bans in force, by reason (would-be bans of monitor mode excluded).",
            Gauge,
            &scrape.bans_active,
        )?;
        family(
            e,
            "sipguard_would_bans_active",
            "Would-be bans of monitor mode not yet expired: listed, never enforced.",
            Gauge,
            &scrape.would_bans_active,
        )?;
        family(
            e,
            "sipguard_sip_requests",
            "Messages the SIP stage saw in zones that count methods (count_methods), by zone and method (other: no method readable).",
            Counter,
            &scrape.sip_requests,
        )?;
        family(
            e,
            "sipguard_destination_invites",
            "INVITEs the destination firewall judged, by zone, verdict (allowed, denied, rate_limited, unparseable) and destination country (ISO 3166; XX: non-geographic, ZZ: unknown).",
            Counter,
            &scrape.destination_invites,
        )?;
        family(
            e,
            "sipguard_destination_rule_invites",
            "INVITEs by the destination rule that decided (<zone>-default: no rule; <zone>-unparseable: no number).",
            Counter,
            &scrape.rule_invites,
        )?;
        family(
            e,
            "sipguard_signature_matches",
            "Requests whose User-Agent or From display name matched a scanner signature, by signature.",
            Counter,
            &scrape.signature_matches,
        )?;
        family(
            e,
            "sipguard_stage_failures",
            "Packets passed because a stage of the data plane was missing (never after a complete attach).",
            Counter,
            &scrape.tail_call_failures,
        )?;
        family(
            e,
            "sipguard_table_insert_failures",
            "Entries the data plane could not create because the table was full (a ban not issued, a source not tracked).",
            Counter,
            &scrape.insert_failures,
        )?;
        family(
            e,
            "sipguard_map_entries",
            "Entries in the bounded tables: per-source state, bans, verified sources, auth-failure state, fragments, and the lists of the active policy generation (expired bans and verified sources count until swept).",
            Gauge,
            &scrape.map_entries,
        )?;
        family(
            e,
            "sipguard_map_capacity",
            "Capacity of the bounded tables.",
            Gauge,
            &scrape.map_capacity,
        )?;
        family(
            e,
            "sipguard_list_entries",
            "Allowlist and denylist prefixes in force, by family and origin.",
            Gauge,
            &scrape.list_entries,
        )?;
        family(
            e,
            "sipguard_attached",
            "1 when the XDP program is attached through a live link.",
            Gauge,
            &scrape.attached,
        )?;
        family(
            e,
            "sipguard_egress_attached",
            "1 when the TC egress program (it reads the SBC's answers) is attached through a live tcx link.",
            Gauge,
            &scrape.egress_attached,
        )?;
        family(
            e,
            "sipguard_sbc_answers",
            "The SBC's answers to access-zone clients as the egress program counted them, by kind (challenges, refusals, successes; failures and bans they made; verifications; malformed, insert_failed_*, tail_call_failed: trouble).",
            Counter,
            &scrape.sbc_answers,
        )?;
        family(
            e,
            "sipguard_verified_sources",
            "Sources verified by a 200 OK to REGISTER whose registration has not expired.",
            Gauge,
            &scrape.verified_sources,
        )?;
        family(
            e,
            "sipguard_monitor_mode",
            "1 in monitor (dry-run) mode, 0 when enforcing.",
            Gauge,
            &scrape.monitor,
        )?;
        family(
            e,
            "sipguard_lockdown",
            "1 while a lockdown is on (`sipguard lockdown`); admits: off, allowlisted, allowlisted+verified.",
            Gauge,
            &scrape.lockdown,
        )?;
        family(
            e,
            "sipguard_access_gate_shut",
            "1 while the access gate is shut (`[access] unverified`, `sipguard attack-mode`): unverified sources may send only what a registration needs.",
            Gauge,
            &scrape.access_gate,
        )?;
        family(
            e,
            "sipguard_access_gate_switches",
            "Access-gate switches this daemon saw, to shut or open, by the attack detector, the operator (attack-mode) or a policy.",
            Counter,
            &scrape.gate_switches,
        )?;
        family(
            e,
            "sipguard_policy_serial",
            "Serial of the running policy (increases with every change).",
            Gauge,
            &scrape.serial,
        )?;
        family(
            e,
            "sipguard_policy_applied_timestamp_seconds",
            "When the running policy was applied, Unix time.",
            Gauge,
            &scrape.applied,
        )?;
        family(
            e,
            "sipguard_scrape_errors",
            "1 when the state of an interface could not be read.",
            Gauge,
            &scrape.errors,
        )?;
        let build = vec![(
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("abi", ABI_VERSION.to_string()),
            ],
            1.0,
        )];
        family(
            e,
            "sipguard_build_info",
            "Build of the running controller.",
            Gauge,
            &build,
        )?;
        Ok(())
    }
}

/// How long a rendering is served before the maps are read again.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

/// The two exposition formats of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFormat {
    /// OpenMetrics 1.0, what Prometheus asks for.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    Text,
}

impl MetricsFormat {
    /// The Content-Type of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
            MetricsFormat::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// One rendering of every metric, in both formats, and when it was taken.
struct Snapshot {
    taken: Instant,
    openmetrics: String,
    text: String,
}

impl Snapshot {
    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.taken) < SNAPSHOT_MAX_AGE
    }

    fn get(&self, format: MetricsFormat) -> String {
        match format {
            MetricsFormat::OpenMetrics => self.openmetrics.clone(),
            MetricsFormat::Text => self.text.clone(),
        }
    }
}

/// The registry for `/metrics`, and the last rendering of it: reading every kernel map takes
/// syscalls, so scrapes share one rendering per [`SNAPSHOT_MAX_AGE`].
pub struct Exporter {
    registry: Registry,
    /// Held while a refresh runs, so concurrent scrapes wait for that one refresh.
    snapshot: Arc<tokio::sync::Mutex<Option<Snapshot>>>,
}

impl Exporter {
    pub fn new(targets: Vec<Target>, daemon: Arc<DaemonCounters>) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SipguardCollector {
            targets,
            daemon,
            scrape: Mutex::new(()),
        }));
        Exporter::with_registry(registry)
    }

    fn with_registry(registry: Registry) -> Exporter {
        Exporter {
            registry,
            snapshot: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The registry, to add metrics before serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The metrics for a scrape: the last rendering if younger than [`SNAPSHOT_MAX_AGE`], else
    /// a new one, rendered on a blocking thread. Concurrent callers share one refresh; a refresh
    /// whose caller went away still completes and is kept for the next scrape.
    pub async fn scrape(
        self: &Arc<Self>,
        format: MetricsFormat,
    ) -> Result<String, tokio::task::JoinError> {
        let mut snapshot = self.snapshot.clone().lock_owned().await;
        if let Some(fresh) = snapshot.as_ref().filter(|s| s.is_fresh(Instant::now())) {
            return Ok(fresh.get(format));
        }
        let exporter = self.clone();
        let taken = Instant::now();
        tokio::task::spawn_blocking(move || {
            let openmetrics = exporter.render_openmetrics();
            let fresh = snapshot.insert(Snapshot {
                taken,
                text: openmetrics_to_text(&openmetrics),
                openmetrics,
            });
            fresh.get(format)
        })
        .await
    }

    /// OpenMetrics text, what prometheus-client writes (and Prometheus prefers).
    pub fn render_openmetrics(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            let _ = writeln!(text, "# encoding failed");
        }
        text
    }

    /// The classic Prometheus text format (0.0.4), for `curl`, promtool and older scrapers.
    pub fn render_text(&self) -> String {
        openmetrics_to_text(&self.render_openmetrics())
    }
}

/// OpenMetrics names a counter family without `_total` in `# HELP`/`# TYPE`; the 0.0.4 format
/// names it like its samples. Also drops the `# EOF` marker.
fn openmetrics_to_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its renderings; one gauge holds the count.
    #[derive(Debug, Default)]
    struct CountingCollector {
        renders: Arc<AtomicU64>,
    }

    impl Collector for CountingCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let render = self.renders.fetch_add(1, Ordering::SeqCst) + 1;
            let samples = vec![(vec![("k", "v".to_string())], render as f64)];
            family(
                &mut encoder,
                "t_renders",
                "Renders.",
                MetricType::Counter,
                &samples,
            )
        }
    }

    fn counting_exporter() -> (Arc<Exporter>, Arc<AtomicU64>) {
        let collector = CountingCollector::default();
        let renders = collector.renders.clone();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        (Arc::new(Exporter::with_registry(registry)), renders)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_scrapes_share_one_rendering_until_it_is_a_second_old() {
        let (exporter, renders) = counting_exporter();
        let scrapes: Vec<_> = (0..8)
            .map(|i| {
                let exporter = exporter.clone();
                let format = if i % 2 == 0 {
                    MetricsFormat::OpenMetrics
                } else {
                    MetricsFormat::Text
                };
                tokio::spawn(async move { exporter.scrape(format).await.unwrap() })
            })
            .collect();
        for scrape in scrapes {
            let text = scrape.await.unwrap();
            assert!(text.contains("t_renders_total{k=\"v\"} 1\n"), "{text}");
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1, "one refresh for all");
        // The clock is paused: only `advance` moves it.
        tokio::time::advance(SNAPSHOT_MAX_AGE - Duration::from_millis(1)).await;
        exporter.scrape(MetricsFormat::Text).await.unwrap();
        assert_eq!(renders.load(Ordering::SeqCst), 1, "still fresh");
        tokio::time::advance(Duration::from_millis(1)).await;
        let text = exporter.scrape(MetricsFormat::Text).await.unwrap();
        assert_eq!(renders.load(Ordering::SeqCst), 2, "refreshed once stale");
        assert!(
            text.contains("# TYPE t_renders_total counter\nt_renders_total{k=\"v\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "classic format");
        let open = exporter.scrape(MetricsFormat::OpenMetrics).await.unwrap();
        assert!(open.ends_with("# EOF\n"), "OpenMetrics format: {open}");
    }

    #[test]
    fn counter_families_are_renamed_for_the_classic_format() {
        let open = "# HELP a_packets Packets.\n# TYPE a_packets counter\na_packets_total{x=\"1\"} 5\n\
                    # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(open),
            "# HELP a_packets_total Packets.\n# TYPE a_packets_total counter\n\
             a_packets_total{x=\"1\"} 5\n# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"
        );
    }
}
