//! Per-packet cost with BPF_PROG_TEST_RUN: sipguard under each allowlist size, the baselines and
//! xdp-filter, every one on every scenario frame it applies to, in interleaved rounds.
//!
//! Each measurement is one test_run call of `repeat` runs; the kernel reports the mean time per
//! run in whole nanoseconds, test_run's own loop included (the bare XDP_DROP baseline shows what
//! that costs). For sipguard, the counters are read around every call: all `repeat` runs must land
//! in the scenario's counter slot, so a budget that ran out or a changed decision shows up as a
//! wrong verdict, never as a silently different path.

use std::{net::Ipv4Addr, path::Path, time::Instant};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, Map, MapData, ProgramArray},
    programs::{ProgramInfo, TestRun as _, TestRunOptions, Xdp},
};
use serde::Serialize;
use sipguard::{
    policy::Policy,
    state::{EventStats, Target},
    time::boot_now_ns,
};
use sipguard_common::abi::{
    Ban, BanReason, MAX_PEERS, MAX_SOURCES, Reason, SourceKey, SourceState, counter_index,
    map_name, tail,
};
use sipguard_tests::harness::TestFilter;

use super::{
    mix::{BANNED_V4, Mix, MixCounts, write_policy},
    programs::ProgramRow,
    scenarios::{Scenario, SipPath, XfSetup},
    stats::round_order,
    sys::check_interrupted,
    xdp_filter::XdpFilter,
};

/// The programs every sipguard figure is divided by.
pub(super) const BASELINES: [&str; 3] = ["bench_drop", "bench_pass", "bench_parse"];

/// sipguard loaded with one allowlist.
pub(super) struct Config {
    pub info: ConfigInfo,
    pub filter: TestFilter,
}

/// How a configuration differs from sipguard as deployed with its allowlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Variant {
    Plain,
    /// SG_SOURCES and SG_PEERS filled to capacity before measuring.
    MapsFull,
    /// Diagnostic, not a product configuration: the drop-event program is taken out of its
    /// tail-call slot, so drop verdicts skip event reporting. The difference to `Plain` is what
    /// drop events cost.
    NoEvents,
    /// Diagnostic: the judge is taken out of its tail-call slot, so what the entry does not
    /// decide itself passes right after the entry (fail-open). Its cost on such a packet is the
    /// entry's; the difference to `Plain` is the tail call and the judge.
    EntryOnly,
    /// The same allowlist and policy without its SIP rules (method budgets, scanners, dial plan
    /// and destinations): stage 1 alone, as before the SIP stages.
    NoSipRules,
    /// Diagnostic, on the scenarios that reach the SIP stages only: the headers stage is taken
    /// out of its tail-call slot, so the SIP stage counts the method, spends its budget and
    /// passes (after a failed tail call).
    MethodStageOnly,
    /// Diagnostic, likewise: the destination stage is taken out of its slot, so an INVITE ends
    /// after the header scan (after a failed tail call).
    NoDestinationStage,
}

impl Variant {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Variant::Plain => "as deployed",
            Variant::MapsFull => "SG_SOURCES, SG_PEERS full",
            Variant::NoEvents => "diagnostic: drop-event program removed",
            Variant::EntryOnly => "diagnostic: judge removed (entry only)",
            Variant::NoSipRules => "policy without SIP rules (stage 1 alone)",
            Variant::MethodStageOnly => "diagnostic: headers stage removed (SIP method stage only)",
            Variant::NoDestinationStage => "diagnostic: destination stage removed",
        }
    }

    /// The policy has the SIP rules.
    pub(crate) fn sip_rules(self) -> bool {
        self != Variant::NoSipRules
    }

    /// A configuration kept out of the targets.
    pub(crate) fn diagnostic(self) -> bool {
        matches!(
            self,
            Variant::NoEvents
                | Variant::EntryOnly
                | Variant::MethodStageOnly
                | Variant::NoDestinationStage
        )
    }

    /// Whether this configuration is measured on `scenario` (the SIP-stage diagnostics only on
    /// the packets that reach the SIP stages).
    pub(super) fn measures(self, scenario: &Scenario) -> bool {
        match self {
            Variant::MethodStageOnly | Variant::NoDestinationStage => scenario.sip.is_some(),
            _ => true,
        }
    }

    /// The tail-call slot this variant empties.
    fn removed_stage(self) -> Option<u32> {
        match self {
            Variant::NoEvents => Some(tail::REPORT),
            Variant::EntryOnly => Some(tail::JUDGE),
            Variant::MethodStageOnly => Some(tail::HEADERS),
            Variant::NoDestinationStage => Some(tail::DESTINATION),
            Variant::Plain | Variant::MapsFull | Variant::NoSipRules => None,
        }
    }

    /// What sipguard must do with `scenario`'s packet in this configuration: `None` when it is
    /// not checked (without its judge a configuration passes what the judge would decide).
    pub(super) fn expect(self, scenario: &Scenario) -> Option<Expected> {
        let (action, reason) = match self {
            Variant::EntryOnly => return None,
            Variant::NoSipRules | Variant::MethodStageOnly => scenario.expected(false),
            _ => scenario.expected(true),
        };
        let sip = match self {
            Variant::NoSipRules => SipCheck::Never,
            Variant::MethodStageOnly => scenario.sip.map_or(SipCheck::Unchecked, |path| {
                SipCheck::Path(SipPath {
                    signature: false,
                    destination: false,
                    ..path
                })
            }),
            Variant::NoDestinationStage => scenario.sip.map_or(SipCheck::Unchecked, |path| {
                SipCheck::Path(SipPath {
                    destination: false,
                    ..path
                })
            }),
            _ => scenario.sip.map_or(SipCheck::Unchecked, SipCheck::Path),
        };
        Some(Expected {
            action,
            reason,
            sip,
        })
    }
}

/// The verdict and SIP-stage counts one run of a scenario must produce in a configuration.
pub(super) struct Expected {
    pub action: u32,
    pub reason: Reason,
    pub sip: SipCheck,
}

/// What the SIP stages' counters must show.
pub(super) enum SipCheck {
    /// Nothing reaches the SIP stage (SG_METHODS unchanged).
    Never,
    /// Exactly this path, once per run.
    Path(SipPath),
    /// Not checked (whether an admitted trunk packet reaches the SIP stage depends on the
    /// rules; the report shows it).
    Unchecked,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ConfigInfo {
    /// `100`, `1k`, `10k`, `100k`, `10k+full`, `10k-noevents`, `10k-stage1`, ...
    pub name: String,
    pub prefixes: usize,
    pub variant: Variant,
    /// Kept out of the targets (an experiment, not how sipguard runs).
    pub diagnostic: bool,
    /// The policy has the SIP rules (method budgets, scanners, destinations).
    pub sip_rules: bool,
    pub mix: MixCounts,
    /// Entries in SG_SOURCES and SG_PEERS after setup.
    pub sources_entries: usize,
    pub peers_entries: usize,
    /// Time to parse the policy and load it (program, maps, all prefixes).
    pub load_seconds: f64,
    /// Drop events after the measurements: emitted, suppressed by the event budgets, lost
    /// (ring buffer full).
    pub events: Option<EventStats>,
}

fn source_key(addr: Ipv4Addr) -> SourceKey {
    let mut key = SourceKey {
        family: 4,
        prefix_len: 32,
        ..SourceKey::default()
    };
    key.addr[..4].copy_from_slice(&addr.octets());
    key
}

impl Config {
    /// Writes the policy for `mix` under `dir`, loads sipguard with it, bans [`BANNED_V4`] by hand
    /// and sets up `variant`.
    pub(super) fn load(dir: &Path, name: &str, mix: &Mix, variant: Variant) -> Result<Config> {
        let path = write_policy(&dir.join(name), mix, variant.sip_rules())?;
        let start = Instant::now();
        let policy = Policy::load(&path).map_err(|e| anyhow!("{e}"))?;
        let mut filter = TestFilter::with_policy(&policy);
        let load_seconds = start.elapsed().as_secs_f64();
        let now = boot_now_ns();
        let ban = Ban {
            banned_at_ns: now,
            expires_at_ns: now + 24 * 3600 * 1_000_000_000,
            first_seen_ns: now,
            last_seen_ns: now,
            // Automatic: a manual ban would make every allowlisted packet look bans up too
            // (allowlisted sources are only ever banned by hand).
            reason: BanReason::RateExceeded as u8,
            ..Ban::default()
        };
        filter.live().insert_ban(&source_key(BANNED_V4), &ban)?;
        if variant == Variant::MapsFull {
            fill_per_source_maps(&filter.target)?;
        }
        if let Some(slot) = variant.removed_stage() {
            let map = filter
                .loaded
                .ebpf
                .map_mut(map_name::TAILS)
                .context("no SG_TAILS: this sipguard has no staged programs")?;
            ProgramArray::try_from(map)?.clear_index(&slot)?;
        }
        let (sources_entries, peers_entries) = filter.loaded.state.budget_entries();
        Ok(Config {
            info: ConfigInfo {
                name: name.to_string(),
                prefixes: mix.counts.total,
                variant,
                diagnostic: variant.diagnostic(),
                sip_rules: variant.sip_rules(),
                mix: mix.counts.clone(),
                sources_entries,
                peers_entries,
                load_seconds,
                events: None,
            },
            filter,
        })
    }

    pub(super) fn programs(&self) -> Result<Vec<ProgramRow>> {
        let mut rows = Vec::new();
        for (name, program) in self.filter.loaded.ebpf.programs() {
            if let Ok(info) = program.info() {
                rows.push(ProgramRow::new(&info, &format!("sipguard ({name})")));
            }
        }
        Ok(rows)
    }
}

/// Fills SG_SOURCES (unknown sources of the access zone) and SG_PEERS (allowlisted peers with a
/// budget) to capacity with fresh state, as after a flood of new sources with every slot in use.
/// Keys: 198.18.0.0/16 and 198.19.128.0/18, none of them a scenario source. (The per-source event
/// budgets live in a fixed-size per-CPU cache: nothing to fill.)
fn fill_per_source_maps(target: &Target) -> Result<()> {
    fn fill<V: aya::Pod>(
        target: &Target,
        name: &str,
        capacity: u32,
        base: Ipv4Addr,
        value: V,
    ) -> Result<()> {
        let pin = target.map_pin(name);
        let mut map: BpfHashMap<MapData, SourceKey, V> =
            Map::from_map_data(MapData::from_pin(&pin)?)?.try_into()?;
        for i in 0..capacity {
            let key = source_key(Ipv4Addr::from(u32::from(base) + i));
            map.insert(key, value, 0)
                .with_context(|| format!("fill {name}"))?;
        }
        Ok(())
    }
    let state = SourceState {
        first_seen_ns: boot_now_ns(),
        ..SourceState::default()
    };
    fill(
        target,
        map_name::SOURCES,
        MAX_SOURCES,
        Ipv4Addr::new(198, 18, 0, 0),
        state,
    )?;
    fill(
        target,
        map_name::PEERS,
        MAX_PEERS,
        Ipv4Addr::new(198, 19, 128, 0),
        state,
    )?;
    Ok(())
}

/// bench_drop, bench_pass and bench_parse from `sipguard::BASELINES_OBJECT`.
pub(super) struct Baselines {
    ebpf: Ebpf,
}

impl Baselines {
    pub(super) fn load() -> Result<Baselines> {
        let mut ebpf = EbpfLoader::new().load(sipguard::BASELINES_OBJECT)?;
        for name in BASELINES {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("{name} missing from the baselines object"))?
                .try_into()?;
            program.load()?;
        }
        Ok(Baselines { ebpf })
    }

    pub(super) fn program(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    pub(super) fn programs(&self) -> Result<Vec<ProgramRow>> {
        BASELINES
            .iter()
            .map(|name| {
                let info: ProgramInfo = self.program(name)?.info()?;
                Ok(ProgramRow::new(&info, &format!("baseline ({name})")))
            })
            .collect()
    }
}

/// One xdp-filter configuration.
pub(super) struct XfInstance {
    pub setup: XfSetup,
    /// The sipguard configuration whose allowlist it holds (drop-unmatched), or None.
    pub config: Option<String>,
    /// What it holds, for the report.
    pub label: String,
    pub filter: XdpFilter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subject {
    Sipguard(usize),
    Baseline(&'static str),
    XdpFilter(usize),
}

/// One subject on one scenario frame, measured once per round.
pub(super) struct Unit {
    pub subject: Subject,
    pub scenario: usize,
    /// ns per run, one per round.
    pub samples: Vec<f64>,
    /// Runs per measurement ([`runs_for`]).
    pub repeat: u32,
    /// Runs whose verdict was checked, and how many were not the expected one.
    pub runs_checked: u64,
    pub runs_off: u64,
    /// Runs with the scenario's tolerated reason (the throttled class refilling between rounds).
    pub runs_tolerated: u64,
    /// Of the measured runs, how many the SIP stage counted (SG_METHODS, any zone and method).
    pub sip_stage_runs: u64,
    pub return_value: u32,
    /// xdp-filter: the action matched the scenario's.
    pub action_ok: bool,
}

pub(crate) struct Settings {
    pub rounds: usize,
    pub repeat: u32,
}

/// A unit slower than this per run (the paths through the SIP stages) runs fewer times per
/// measurement, so that none takes longer than `repeat` runs of this.
pub(super) const SLOW_NS: f64 = 150.0;

/// Runs per measurement of a unit that took `warm_ns` per run in the warm-up: `repeat`, or
/// fewer for a slow one (at least a tenth).
fn runs_for(repeat: u32, warm_ns: f64) -> u32 {
    if warm_ns <= SLOW_NS {
        return repeat;
    }
    ((f64::from(repeat) * SLOW_NS / warm_ns) as u32).max(repeat / 10)
}

fn test_run(program: &Xdp, frame: &[u8], repeat: u32) -> Result<(f64, u32)> {
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    });
    if result.is_err() {
        // A signal cuts a test_run short (EINTR): say why.
        check_interrupted()?;
    }
    let result = result?;
    Ok((result.duration.as_nanos() as f64, result.return_value))
}

/// Measures every unit once per round; returns the units with their samples.
pub(super) fn measure(
    settings: &Settings,
    scenarios: &[Scenario],
    configs: &mut [Config],
    baselines: &Baselines,
    xdp_filters: &[XfInstance],
) -> Result<Vec<Unit>> {
    let mut units = Vec::new();
    for (s, scenario) in scenarios.iter().enumerate() {
        let mut subjects: Vec<Subject> = BASELINES.iter().map(|b| Subject::Baseline(b)).collect();
        subjects.extend(
            (0..configs.len())
                .filter(|c| configs[*c].info.variant.measures(scenario))
                .map(Subject::Sipguard),
        );
        subjects.extend(
            xdp_filters
                .iter()
                .enumerate()
                .filter(|(_, xf)| Some(xf.setup) == scenario.xdp_filter)
                .map(|(i, _)| Subject::XdpFilter(i)),
        );
        for subject in subjects {
            units.push(Unit {
                subject,
                scenario: s,
                samples: Vec::new(),
                repeat: settings.repeat,
                runs_checked: 0,
                runs_off: 0,
                runs_tolerated: 0,
                sip_stage_runs: 0,
                return_value: 0,
                action_ok: true,
            });
        }
    }
    // Warm up caches and buckets (the throttled class spends its burst here), unrecorded; and
    // size each unit's measurements.
    let warm = (settings.repeat / 10).clamp(100, 10_000);
    for unit in &mut units {
        let ns = run_unit(
            unit,
            scenarios,
            configs,
            baselines,
            xdp_filters,
            warm,
            false,
        )?;
        unit.repeat = runs_for(settings.repeat, ns);
    }
    for round in 0..settings.rounds {
        for index in round_order(units.len(), round, settings.rounds) {
            check_interrupted()?;
            let repeat = units[index].repeat;
            run_unit(
                &mut units[index],
                scenarios,
                configs,
                baselines,
                xdp_filters,
                repeat,
                true,
            )?;
        }
    }
    Ok(units)
}

fn run_unit(
    unit: &mut Unit,
    scenarios: &[Scenario],
    configs: &mut [Config],
    baselines: &Baselines,
    xdp_filters: &[XfInstance],
    repeat: u32,
    record: bool,
) -> Result<f64> {
    let scenario = &scenarios[unit.scenario];
    let (ns, return_value) = match unit.subject {
        Subject::Baseline(name) => test_run(baselines.program(name)?, &scenario.frame, repeat)?,
        Subject::XdpFilter(i) => {
            let (ns, rv) = test_run(&xdp_filters[i].filter.program, &scenario.frame, repeat)?;
            if record {
                unit.action_ok &= rv == scenario.action;
            }
            (ns, rv)
        }
        Subject::Sipguard(c) => {
            let expected = configs[c].info.variant.expect(scenario);
            let filter = &mut configs[c].filter;
            let sip_paths = matches!(
                expected,
                Some(Expected {
                    sip: SipCheck::Path(_),
                    ..
                })
            );
            let before = filter.counters();
            let sip_before = SipCounts::read(filter, sip_paths)?;
            let (ns, rv) = test_run(filter.loaded.program(), &scenario.frame, repeat)?;
            let after = filter.counters();
            let sip_after = SipCounts::read(filter, sip_paths)?;
            if record {
                unit.sip_stage_runs += sip_after.methods_total - sip_before.methods_total;
            }
            if record && let Some(expected) = expected {
                let slot = counter_index(scenario.zone, expected.reason, false) as usize;
                let mut hit = after[slot].packets - before[slot].packets;
                if let Some(reason) = scenario.tolerated {
                    let slot = counter_index(scenario.zone, reason, false) as usize;
                    let tolerated = after[slot].packets - before[slot].packets;
                    unit.runs_tolerated += tolerated;
                    hit += tolerated;
                }
                let all: u64 = after
                    .iter()
                    .zip(&before)
                    .map(|(a, b)| a.packets - b.packets)
                    .sum();
                let expected_action = rv == expected.action;
                unit.runs_checked += u64::from(repeat);
                let runs = u64::from(repeat);
                let sip_off = sip_before.runs_off(&sip_after, &expected.sip, scenario, runs);
                unit.runs_off += if expected_action {
                    runs.saturating_sub(hit)
                        .max(all.abs_diff(runs))
                        .max(sip_off)
                } else {
                    runs
                };
            }
            (ns, rv)
        }
    };
    if record {
        unit.samples.push(ns);
        unit.return_value = return_value;
    }
    Ok(ns)
}

/// The SIP stages' counters, summed over CPUs.
struct SipCounts {
    /// SG_METHODS: (zone, method, requests).
    methods: Vec<(
        sipguard_common::abi::Zone,
        sipguard_common::abi::SipMethod,
        u64,
    )>,
    methods_total: u64,
    /// SG_SIGHITS and SG_RULEHITS, summed over all ids (read only when a path is checked).
    signature_hits: u64,
    rule_hits: u64,
}

impl SipCounts {
    fn read(filter: &TestFilter, with_hits: bool) -> Result<SipCounts> {
        let state = &filter.loaded.state;
        let methods = state.method_counts().context("read SG_METHODS")?;
        let methods_total = methods.iter().map(|(_, _, n)| n).sum();
        let (signature_hits, rule_hits) = if with_hits {
            (
                state
                    .signature_hits()
                    .context("read SG_SIGHITS")?
                    .iter()
                    .sum(),
                state.rule_hits().context("read SG_RULEHITS")?.iter().sum(),
            )
        } else {
            (0, 0)
        };
        Ok(SipCounts {
            methods,
            methods_total,
            signature_hits,
            rule_hits,
        })
    }

    fn method(
        &self,
        zone: sipguard_common::abi::Zone,
        method: sipguard_common::abi::SipMethod,
    ) -> u64 {
        self.methods
            .iter()
            .find(|(z, m, _)| *z == zone && *m == method)
            .map_or(0, |(_, _, n)| *n)
    }

    /// Runs (of `runs`, from `self` to `after`) whose SIP-stage counts are not what `check`
    /// says they must be.
    fn runs_off(&self, after: &SipCounts, check: &SipCheck, scenario: &Scenario, runs: u64) -> u64 {
        let total = after.methods_total - self.methods_total;
        match check {
            SipCheck::Unchecked => 0,
            SipCheck::Never => total,
            SipCheck::Path(path) => {
                let expect = |yes: bool| if yes { runs } else { 0 };
                let counted = after.method(scenario.zone, path.method)
                    - self.method(scenario.zone, path.method);
                let signatures = after.signature_hits - self.signature_hits;
                let rules = after.rule_hits - self.rule_hits;
                [
                    counted.abs_diff(runs),
                    total.abs_diff(runs),
                    signatures.abs_diff(expect(path.signature)),
                    rules.abs_diff(expect(path.destination)),
                ]
                .into_iter()
                .max()
                .unwrap_or(0)
            }
        }
    }
}
