//! `sipguard-bench` (`cargo xtask bench`): per-packet cost and throughput of sipguard against
//! baselines measured side by side in the same run. See issues 6 and 11 and the report it writes.
//!
//! Parts, in order: load sipguard under every allowlist size (and once with the per-source maps
//! full), load the baselines and xdp-filter; per-packet rounds; throughput rounds through veth;
//! program sizes; ban propagation between two fleet hosts (`fleet`); report. `--only packets`
//! runs everything but the fleet part, `--only fleet` only that. Everything it creates (namespaces, veths, pins, xdp-filter's private
//! bpffs, nftables tables inside its namespaces) is named uniquely and removed on the way out,
//! also on error, panic or Ctrl-C.

mod capture;
mod egress;
mod fleet;
mod mix;
mod per_packet;
mod programs;
mod report;
mod scenarios;
mod stats;
mod sys;
mod throughput;
mod xdp_filter;

use std::{collections::BTreeMap, time::Instant};

use anyhow::Result;

pub(crate) use self::sys::install_interrupt_handler;
use self::{
    mix::{BANNED_V4, Mix, Net, denylist},
    per_packet::{BASELINES, Baselines, Config, SLOW_NS, Subject, Unit, Variant, XfInstance},
    report::{
        BaselineCell, BreakdownRow, FleetOnly, GrowthRow, Machine, Report, ScenarioInfo,
        SettingsOut, SipRow, SipguardCell, XfInfo, XfRatio,
    },
    scenarios::{Scenario, XfSetup},
    stats::Summary,
};
use sipguard_tests::netns::NetNs;

/// Allowlist sizes measured.
const SIZES: [(&str, usize); 4] = [
    ("100", 100),
    ("1k", 1_000),
    ("10k", 10_000),
    ("100k", 100_000),
];
/// Measured again with the per-source maps full, without the SIP rules (stage 1 alone), and
/// (diagnostics) without drop events, without the judge, without the later SIP stages.
const VARIANTS: [(&str, usize, Variant); 6] = [
    ("10k+full", 10_000, Variant::MapsFull),
    (STAGE1_ALONE, 10_000, Variant::NoSipRules),
    ("10k-noevents", 10_000, Variant::NoEvents),
    ("10k-entry", 10_000, Variant::EntryOnly),
    (METHOD_STAGE_ONLY, 10_000, Variant::MethodStageOnly),
    (NO_DESTINATION_STAGE, 10_000, Variant::NoDestinationStage),
];
/// The configuration the SIP stages are compared with: 10k prefixes, no SIP rules.
const STAGE1_ALONE: &str = "10k-stage1";
const METHOD_STAGE_ONLY: &str = "10k-methodonly";
const NO_DESTINATION_STAGE: &str = "10k-nodest";

pub(crate) struct Settings {
    pub quick: bool,
    pub only: Option<Part>,
    pub per_packet: per_packet::Settings,
    pub throughput: throughput::Settings,
    pub fleet: fleet::Settings,
}

/// What `--only` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Per-packet cost, throughput, programs: everything but the fleet.
    Packets,
    /// Ban propagation between two fleet hosts through Redis.
    Fleet,
}

impl Settings {
    /// About two to four minutes here.
    pub(crate) fn full() -> Settings {
        Settings {
            quick: false,
            only: None,
            per_packet: per_packet::Settings {
                rounds: 9,
                repeat: 300_000,
            },
            throughput: throughput::Settings {
                rounds: 5,
                packets: 5_000_000,
                seconds: 1.5,
                chunk: 250_000,
            },
            fleet: fleet::Settings {
                samples: 40,
                burst: 5_000,
                burst_rounds: 3,
                small: 500,
                burst_timeout: std::time::Duration::from_secs(120),
            },
        }
    }

    /// Every part, briefly: seconds.
    pub(crate) fn quick() -> Settings {
        Settings {
            quick: true,
            only: None,
            per_packet: per_packet::Settings {
                rounds: 3,
                repeat: 5_000,
            },
            throughput: throughput::Settings {
                rounds: 1,
                packets: 200_000,
                seconds: 0.2,
                chunk: 50_000,
            },
            fleet: fleet::Settings {
                samples: 10,
                burst: 500,
                burst_rounds: 1,
                small: 50,
                burst_timeout: std::time::Duration::from_secs(60),
            },
        }
    }

    fn runs(&self, part: Part) -> bool {
        self.only.is_none_or(|only| only == part)
    }
}

fn progress(started: Instant, message: &str) {
    eprintln!(
        "bench [{:5.1} s] {message}",
        started.elapsed().as_secs_f64()
    );
}

pub(crate) fn run(settings: &Settings) -> Result<Output> {
    let started = Instant::now();
    let started_unix = sipguard::time::now_unix();
    sys::remove_stale_namespaces();
    if !settings.runs(Part::Packets) {
        progress(started, "fleet: two hosts and Redis in a namespace");
        let fleet = fleet::measure(&settings.fleet, &|m| progress(started, m))?;
        return Ok(Output::Fleet(Box::new(FleetOnly {
            schema: report::SCHEMA,
            mode: if settings.quick { "quick" } else { "full" },
            only: "fleet",
            started_unix,
            seconds: started.elapsed().as_secs_f64(),
            machine: Machine {
                kernel: sys::kernel_release(),
                cpus: sys::cpus(),
            },
            fleet,
        })));
    }
    let dir = tempfile::Builder::new()
        .prefix("sipguard-bench")
        .tempdir()?;
    let scenarios = scenarios::all();

    progress(
        started,
        "loading sipguard with 100 to 100k allowlist prefixes",
    );
    let mixes: BTreeMap<usize, Mix> = SIZES
        .iter()
        .map(|(_, size)| (*size, Mix::generate(*size)))
        .collect();
    // Verifying sipguard takes a second or two per load: load the configurations side by side.
    let loads: Vec<(&str, usize, Variant)> = SIZES
        .iter()
        .map(|(name, size)| (*name, *size, Variant::Plain))
        .chain(VARIANTS)
        .collect();
    let configs = std::thread::scope(|scope| {
        let handles: Vec<_> = loads
            .iter()
            .map(|(name, size, variant)| {
                let (dir, mix) = (dir.path(), &mixes[size]);
                scope.spawn(move || Config::load(dir, name, mix, *variant))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("loading sipguard panicked"))?
            })
            .collect::<Result<Vec<Config>>>()
    });
    let mut configs = configs?;
    let baselines = Baselines::load()?;

    progress(started, "loading xdp-filter");
    let xf_ns = NetNs::new("bxf")?;
    let xdp_filters = load_xdp_filters(&xf_ns, &mixes)?;

    progress(
        started,
        &format!(
            "per-packet cost: {} rounds of {} runs per measurement",
            settings.per_packet.rounds, settings.per_packet.repeat
        ),
    );
    let units = per_packet::measure(
        &settings.per_packet,
        &scenarios,
        &mut configs,
        &baselines,
        &xdp_filters,
    )?;

    for config in &mut configs {
        config.info.events = config.filter.loaded.state.event_stats().ok();
    }

    progress(
        started,
        "the egress program: feedback off and on against a TC floor",
    );
    let egress = egress::measure(settings.per_packet.rounds, settings.per_packet.repeat)?;
    let verified_judge =
        egress::measure_judge(settings.per_packet.rounds, settings.per_packet.repeat)?;
    progress(
        started,
        "evidence capture: off, on but matching nothing, copying every packet",
    );
    let capture = capture::measure(settings.per_packet.rounds, settings.per_packet.repeat)?;

    progress(started, "throughput through veth");
    let (throughput, generator_programs) =
        throughput::run(&settings.throughput, dir.path(), &mixes[&10_000])?;

    let fleet = if settings.runs(Part::Fleet) {
        progress(
            started,
            "fleet: ban propagation between two hosts through Redis",
        );
        Some(fleet::measure(&settings.fleet, &|m| progress(started, m))?)
    } else {
        None
    };

    let mut program_rows = configs[0].programs()?;
    program_rows.extend(baselines.programs()?);
    program_rows.extend(generator_programs);
    let mut seen = std::collections::HashSet::new();
    for xf in &xdp_filters {
        let name = xf.filter.info.name_as_str().unwrap_or("?").to_string();
        if seen.insert(name) {
            program_rows.push(programs::ProgramRow::new(
                &xf.filter.info,
                &format!("xdp-filter ({})", xf.setup.name()),
            ));
        }
    }

    let per_packet = sipguard_cells(&scenarios, &configs, &units, &xdp_filters);
    let baseline_cells = baseline_cells(&scenarios, &units, &xdp_filters);
    let growth = growth(&scenarios, &configs, &units);
    let breakdown = breakdown(&scenarios, &configs, &units);
    let sip_stages = sip_stages(&scenarios, &configs, &units);
    let targets = report::targets(
        &per_packet,
        &baseline_cells,
        &growth,
        &throughput,
        &sip_stages,
    );
    let report = Report {
        schema: report::SCHEMA,
        mode: if settings.quick { "quick" } else { "full" },
        started_unix,
        seconds: started.elapsed().as_secs_f64(),
        machine: Machine {
            kernel: sys::kernel_release(),
            cpus: sys::cpus(),
        },
        settings: SettingsOut {
            rounds: settings.per_packet.rounds,
            repeat: settings.per_packet.repeat,
            throughput_rounds: settings.throughput.rounds,
            throughput_packets: settings.throughput.packets,
            throughput_seconds: settings.throughput.seconds,
        },
        prefix_mix: Mix::description(),
        configs: configs.iter().map(|c| c.info.clone()).collect(),
        scenarios: scenarios
            .iter()
            .map(|s| ScenarioInfo {
                name: s.name,
                title: s.title,
                frame_bytes: s.frame.len(),
                action: action_name(s.action),
                zone: s.zone.name(),
                reason: s.reason.name(),
                xdp_filter: s.xdp_filter,
                without_sip_rules: s
                    .without_sip
                    .map(|(action, reason)| format!("{} ({})", action_name(action), reason.name())),
                sip_path: s.sip.map(|path| path.describe()),
            })
            .collect(),
        per_packet,
        baselines: baseline_cells,
        xdp_filter_setups: xdp_filters
            .iter()
            .map(|x| XfInfo {
                setup: x.setup,
                config: x.config.clone(),
                label: x.label.clone(),
                program: x.filter.info.name_as_str().unwrap_or("?").to_string(),
            })
            .collect(),
        growth,
        breakdown,
        sip_stages,
        egress,
        verified_judge,
        capture,
        throughput,
        fleet,
        programs: program_rows,
        targets,
        notes: notes(),
    };
    Ok(Output::Full(Box::new(report)))
}

/// What a run writes: the whole report, or the fleet part alone (`--only fleet`).
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Output {
    Full(Box<Report>),
    Fleet(Box<FleetOnly>),
}

impl Output {
    pub(crate) fn markdown(&self) -> String {
        match self {
            Output::Full(report) => report.markdown(),
            Output::Fleet(fleet) => fleet.markdown(),
        }
    }

    pub(crate) fn summary(&self) -> String {
        match self {
            Output::Full(report) => report.summary(),
            Output::Fleet(fleet) => fleet.summary(),
        }
    }
}

/// xdp-filter with each allowlist it can hold (drop unmatched), and with the denylist and the
/// banned source (pass unmatched), each on its own veth in `ns`.
fn load_xdp_filters(ns: &NetNs, mixes: &BTreeMap<usize, Mix>) -> Result<Vec<XfInstance>> {
    let mut xdp_filters = Vec::new();
    for (i, (name, size)) in SIZES.iter().enumerate() {
        let (v4, v6) = mixes[size].addresses();
        if v4.len() > xdp_filter::MAX_ADDRESSES || v6.len() > xdp_filter::MAX_ADDRESSES {
            continue;
        }
        let iface = xf_veth(ns, i)?;
        xdp_filters.push(XfInstance {
            setup: XfSetup::DropUnmatched,
            config: Some(name.to_string()),
            label: format!(
                "drop unmatched (-p deny); the {name} allowlist as {} IPv4 + {} IPv6 source \
                 address rules",
                v4.len(),
                v6.len()
            ),
            filter: xdp_filter::XdpFilter::load(ns, &iface, XfSetup::DropUnmatched, &v4, &v6)?,
        });
    }
    let deny = denylist();
    let mut deny4: Vec<_> = deny
        .iter()
        .filter_map(|n| match n {
            Net::V4(a, _) => Some(*a),
            Net::V6(..) => None,
        })
        .collect();
    deny4.push(BANNED_V4);
    let deny6: Vec<_> = deny
        .iter()
        .filter_map(|n| match n {
            Net::V6(a, _) => Some(*a),
            Net::V4(..) => None,
        })
        .collect();
    let iface = xf_veth(ns, SIZES.len())?;
    xdp_filters.push(XfInstance {
        setup: XfSetup::PassUnmatched,
        config: None,
        label: format!(
            "pass unmatched (-p allow); the denylist and the banned source as {} IPv4 + {} \
             IPv6 source address rules",
            deny4.len(),
            deny6.len()
        ),
        filter: xdp_filter::XdpFilter::load(ns, &iface, XfSetup::PassUnmatched, &deny4, &deny6)?,
    });
    Ok(xdp_filters)
}

/// A veth pair inside the xdp-filter namespace (one interface per xdp-filter instance).
fn xf_veth(ns: &NetNs, index: usize) -> Result<String> {
    let (name, peer) = (format!("xf{index}"), format!("xfp{index}"));
    ns.ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer])?;
    ns.ip(&["link", "set", &name, "up"])?;
    ns.ip(&["link", "set", &peer, "up"])?;
    Ok(name)
}

fn action_name(action: u32) -> &'static str {
    if action == sipguard_tests::harness::XDP_PASS {
        "pass"
    } else {
        "drop"
    }
}

fn unit(units: &[Unit], subject: Subject, scenario: usize) -> Option<&Unit> {
    units
        .iter()
        .find(|u| u.subject == subject && u.scenario == scenario)
}

/// The xdp-filter instance a sipguard configuration is compared with on `setup`.
fn xf_for(xdp_filters: &[XfInstance], setup: XfSetup, config: &str) -> Option<usize> {
    let config = config.split(['+', '-']).next().unwrap_or(config);
    xdp_filters.iter().position(|x| {
        x.setup == setup
            && match setup {
                XfSetup::DropUnmatched => x.config.as_deref() == Some(config),
                XfSetup::PassUnmatched => true,
            }
    })
}

fn sipguard_cells(
    scenarios: &[Scenario],
    configs: &[Config],
    units: &[Unit],
    xdp_filters: &[XfInstance],
) -> Vec<SipguardCell> {
    let mut cells = Vec::new();
    for (s, scenario) in scenarios.iter().enumerate() {
        let baseline = |name: &'static str| unit(units, Subject::Baseline(name), s);
        let (Some(drop), Some(pass), Some(parse)) = (
            baseline("bench_drop"),
            baseline("bench_pass"),
            baseline("bench_parse"),
        ) else {
            continue;
        };
        for (c, config) in configs.iter().enumerate() {
            let Some(sg) = unit(units, Subject::Sipguard(c), s) else {
                continue;
            };
            let vs_xdp_filter = scenario.xdp_filter.and_then(|setup| {
                let x = xf_for(xdp_filters, setup, &config.info.name)?;
                let xf = unit(units, Subject::XdpFilter(x), s)?;
                Some(XfRatio {
                    setup,
                    against: xdp_filters[x].label.clone(),
                    ratio: Summary::ratio(&sg.samples, &xf.samples),
                })
            });
            cells.push(SipguardCell {
                scenario: scenario.name,
                config: config.info.name.clone(),
                prefixes: config.info.prefixes,
                variant: config.info.variant,
                diagnostic: config.info.diagnostic,
                ns: Summary::of(&sg.samples),
                // Without its judge a configuration passes what the judge would decide: its
                // runs are not checked.
                verdict_ok: config.info.variant.expect(scenario).is_none()
                    || (sg.runs_off == 0 && sg.runs_checked > 0),
                sip_stage_runs: sg.sip_stage_runs,
                runs_per_measurement: sg.repeat,
                runs_checked: sg.runs_checked,
                runs_off: sg.runs_off,
                runs_tolerated: sg.runs_tolerated,
                vs_bench_drop: Summary::ratio(&sg.samples, &drop.samples),
                vs_bench_pass: Summary::ratio(&sg.samples, &pass.samples),
                vs_bench_parse: Summary::ratio(&sg.samples, &parse.samples),
                vs_xdp_filter,
            });
        }
    }
    cells
}

fn baseline_cells(
    scenarios: &[Scenario],
    units: &[Unit],
    xdp_filters: &[XfInstance],
) -> Vec<BaselineCell> {
    let mut cells = Vec::new();
    for u in units {
        let scenario = scenarios[u.scenario].name;
        let cell = match u.subject {
            Subject::Sipguard(_) => continue,
            Subject::Baseline(name) => BaselineCell {
                baseline: name.to_string(),
                scenario,
                setup: None,
                config: None,
                label: None,
                ns: Summary::of(&u.samples),
                return_value: u.return_value,
                action_ok: true,
            },
            Subject::XdpFilter(x) => BaselineCell {
                baseline: "xdp_filter".to_string(),
                scenario,
                setup: Some(xdp_filters[x].setup),
                config: xdp_filters[x].config.clone(),
                label: Some(xdp_filters[x].label.clone()),
                ns: Summary::of(&u.samples),
                return_value: u.return_value,
                action_ok: u.action_ok,
            },
        };
        cells.push(cell);
    }
    debug_assert!(
        BASELINES
            .iter()
            .all(|b| cells.iter().any(|c| c.baseline == *b))
    );
    cells
}

/// Largest over smallest allowlist, per scenario, round by round.
fn growth(scenarios: &[Scenario], configs: &[Config], units: &[Unit]) -> Vec<GrowthRow> {
    let index = |name: &str| configs.iter().position(|c| c.info.name == name);
    let (Some(small), Some(large)) = (index(SIZES[0].0), index(SIZES[SIZES.len() - 1].0)) else {
        return Vec::new();
    };
    scenarios
        .iter()
        .enumerate()
        .filter_map(|(s, scenario)| {
            let a = unit(units, Subject::Sipguard(large), s)?;
            let b = unit(units, Subject::Sipguard(small), s)?;
            Some(GrowthRow {
                scenario: scenario.name,
                from: SIZES[0].0.to_string(),
                to: SIZES[SIZES.len() - 1].0.to_string(),
                ratio: Summary::ratio(&a.samples, &b.samples),
            })
        })
        .collect()
}

/// Where the time of one packet goes, from differences between paths measured in the same rounds
/// (10k prefixes): each step is what one path does more than another.
fn breakdown(scenarios: &[Scenario], configs: &[Config], units: &[Unit]) -> Vec<BreakdownRow> {
    let scenario = |name: &str| scenarios.iter().position(|s| s.name == name);
    let config = |name: &str| configs.iter().position(|c| c.info.name == name);
    let sipguard = |config_name: &str, scenario_name: &str| {
        let subject = Subject::Sipguard(config(config_name)?);
        unit(units, subject, scenario(scenario_name)?)
    };
    let baseline = |name: &'static str, scenario_name: &str| {
        unit(units, Subject::Baseline(name), scenario(scenario_name)?)
    };
    // SIP message bytes of a scenario's frame (untagged IPv4 without options, UDP).
    let message = |name: &str| {
        scenario(name).map_or(0, |s| scenarios[s].frame.len().saturating_sub(14 + 20 + 8))
    };
    let register_headers = format!(
        "headers stage, REGISTER ({} bytes): tail call, copy, header scan, signature lookup \
         (miss)",
        message("register_access")
    );
    let invite_headers = format!(
        "headers stage, INVITE ({} bytes, 1.2 KB of headers): tail call, copy, header scan to \
         the end, signature lookup (miss)",
        message("invite_national_full")
    );
    // Under the SIP rules an admitted trunk packet may reach the SIP stage too (SG_METHODS says).
    let judge = format!(
        "tail call to the judge, its policy lookup, list lookups (prefilters, host hash){}",
        if sipguard("10k", "allowlisted_no_budget").is_some_and(|u| u.sip_stage_runs > 0) {
            "; and the SIP stage (tail call, method count), which this trunk packet reaches \
             under the SIP rules"
        } else {
            ""
        }
    );
    let steps: [(&str, &str, Option<&Unit>, Option<&Unit>); 17] = [
        (
            "test_run loop, one per-CPU counter, a verdict",
            "bench_drop",
            baseline("bench_drop", "unknown_trunk_dropped"),
            None,
        ),
        (
            "parse Ethernet, IPv4, UDP",
            "bench_parse - bench_drop (unknown_trunk_dropped frame)",
            baseline("bench_parse", "unknown_trunk_dropped"),
            baseline("bench_drop", "unknown_trunk_dropped"),
        ),
        (
            "entry, not SIP: active policy, zone of the port, sipguard's counter",
            "non_sip_passed - bench_parse (same frame)",
            sipguard("10k", "non_sip_passed"),
            baseline("bench_parse", "non_sip_passed"),
        ),
        (
            "entry, trunk flood path: prefilters, counter, drop-event budget",
            "unknown_unlisted_dropped - non_sip_passed",
            sipguard("10k", "unknown_unlisted_dropped"),
            sipguard("10k", "non_sip_passed"),
        ),
        (
            "entry, a packet for the judge: the packet into the handoff slot",
            "allowlisted_no_budget @10k-entry - non_sip_passed",
            sipguard("10k-entry", "allowlisted_no_budget"),
            sipguard("10k", "non_sip_passed"),
        ),
        (
            &judge,
            "allowlisted_no_budget @10k - @10k-entry",
            sipguard("10k", "allowlisted_no_budget"),
            sipguard("10k-entry", "allowlisted_no_budget"),
        ),
        (
            "the same lookups with 100k instead of 100 prefixes",
            "allowlisted_no_budget @100k - @100",
            sipguard("100k", "allowlisted_no_budget"),
            sipguard("100", "allowlisted_no_budget"),
        ),
        (
            "peer budget: clock, SG_PEERS lookup, compare-and-swap",
            "allowlisted_under_budget - allowlisted_no_budget",
            sipguard("10k", "allowlisted_under_budget"),
            sipguard("10k", "allowlisted_no_budget"),
        ),
        (
            "drop event on a drop: tail call and ring buffer for the few within budget",
            "unknown_trunk_dropped @10k - @10k-noevents",
            sipguard("10k", "unknown_trunk_dropped"),
            sipguard("10k-noevents", "unknown_trunk_dropped"),
        ),
        (
            "ban lookup that hits, and its accounting",
            "banned @10k-noevents - unknown_access_admitted @10k-stage1 (admitted in stage 1, \
             no drop event either way)",
            sipguard("10k-noevents", "banned"),
            sipguard(STAGE1_ALONE, "unknown_access_admitted"),
        ),
        (
            "access zone: ban lookup that misses, SG_SOURCES budget",
            "unknown_access_admitted @10k-stage1 - allowlisted_no_budget @10k-stage1",
            sipguard(STAGE1_ALONE, "unknown_access_admitted"),
            sipguard(STAGE1_ALONE, "allowlisted_no_budget"),
        ),
        (
            "SIP stage, REGISTER: tail call, method count, REGISTER budget (SG_SIPSRC)",
            "register_access @10k-methodonly - @10k-stage1",
            sipguard(METHOD_STAGE_ONLY, "register_access"),
            sipguard(STAGE1_ALONE, "register_access"),
        ),
        (
            &register_headers,
            "register_access @10k - @10k-methodonly",
            sipguard("10k", "register_access"),
            sipguard(METHOD_STAGE_ONLY, "register_access"),
        ),
        (
            "SIP stage, INVITE: tail call, method count, INVITE budget",
            "invite_national_full @10k-methodonly - @10k-stage1",
            sipguard(METHOD_STAGE_ONLY, "invite_national_full"),
            sipguard(STAGE1_ALONE, "invite_national_full"),
        ),
        (
            &invite_headers,
            "invite_national_full @10k-nodest - @10k-methodonly",
            sipguard(NO_DESTINATION_STAGE, "invite_national_full"),
            sipguard(METHOD_STAGE_ONLY, "invite_national_full"),
        ),
        (
            "destination stage: tail call, Request-URI to E.164, destination trie lookup, \
             counters",
            "invite_national_full @10k - @10k-nodest",
            sipguard("10k", "invite_national_full"),
            sipguard(NO_DESTINATION_STAGE, "invite_national_full"),
        ),
        (
            "scanner OPTIONS: SIP stages, signature match, drop accounting (vs admitted by \
             stage 1 alone)",
            "scanner_options @10k - @10k-stage1",
            sipguard("10k", "scanner_options"),
            sipguard(STAGE1_ALONE, "scanner_options"),
        ),
    ];
    steps
        .into_iter()
        .filter_map(|(step, computed_as, a, b)| {
            let a = a?;
            let diffs: Vec<f64> = match b {
                Some(b) => a
                    .samples
                    .iter()
                    .zip(&b.samples)
                    .map(|(x, y)| x - y)
                    .collect(),
                None => a.samples.clone(),
            };
            Some(BreakdownRow {
                step: step.to_string(),
                computed_as: computed_as.to_string(),
                ns: Summary::of(&diffs),
            })
        })
        .collect()
}

/// Every scenario through stage 1 alone (the policy without SIP rules) and with the SIP rules,
/// 10k prefixes both, in the same rounds.
fn sip_stages(scenarios: &[Scenario], configs: &[Config], units: &[Unit]) -> Vec<SipRow> {
    let config = |name: &str| configs.iter().position(|c| c.info.name == name);
    let (Some(alone), Some(full)) = (config(STAGE1_ALONE), config("10k")) else {
        return Vec::new();
    };
    scenarios
        .iter()
        .enumerate()
        .filter_map(|(s, scenario)| {
            let a = unit(units, Subject::Sipguard(alone), s)?;
            let b = unit(units, Subject::Sipguard(full), s)?;
            let verdict = |sip_rules: bool| {
                let (action, reason) = scenario.expected(sip_rules);
                format!("{} ({})", action_name(action), reason.name())
            };
            Some(SipRow {
                scenario: scenario.name,
                stage1_alone: Summary::of(&a.samples),
                with_sip_rules: Summary::of(&b.samples),
                ratio: Summary::ratio(&b.samples, &a.samples),
                stage1_verdict: verdict(false),
                verdict: verdict(true),
                reaches_sip_stage: b.sip_stage_runs > 0,
                sip_path: scenario.sip.map(|path| path.describe()),
            })
        })
        .collect()
}

fn notes() -> Vec<String> {
    [
        "BPF_PROG_TEST_RUN reports the mean time per run in whole nanoseconds (rounded down); \
         every figure includes test_run's own loop, which bench_drop measures.",
        "xdp-filter matches exact addresses only: a subnet of the mix is one rule for its first \
         address (a hash lookup costs the same). It holds at most 10,000 addresses per family, \
         so it has no 100k configuration; the 10k+full row is compared with its 10k setup. It \
         has no budgets, zones, bans or header checks: allowlisted_over_budget, \
         unknown_access_admitted and malformed have no xdp-filter figure, and a ban is an \
         address rule there. It looks up destination and source address of every packet.",
        "10k+full: SG_SOURCES and SG_PEERS filled to capacity (fresh state of other \
         sources) before measuring; the access-zone scenario then inserts into a full LRU map.",
        "10k-noevents is a diagnostic, not a product configuration, and is kept out of the \
         targets: the drop-event program is removed from its tail-call slot (SG_TAILS), so the \
         drops within the event budgets end after a failed tail call. The budgets themselves \
         (per-source cache, global budget, tick clock) run in both; their cost is part of \
         every drop scenario.",
        "The throughput figures use the kernel's own clock (BPF_PROG_TEST_RUN's duration): on this \
         shared VM other tasks take the CPU for a large and varying share of wall-clock time, and \
         each test_run call has a set-up cost of its own; wall-clock rates are in the JSON and \
         in parentheses in the table.",
        "Nobody drains the drop-event ring buffer during the benchmark (as when no `sipguard \
         run` daemon runs): drops beyond the event budgets count as suppressed, and once the ring \
         is full events count as lost. Per packet, one source drops again and again, so nearly \
         every drop is suppressed by its per-source budget; the spoofed flood has a new source \
         every packet. The counts are in the configuration table and under the throughput table.",
        "Throughput: each batch of 64 frames is received by the sink on the generator's CPU \
         before the next is sent, so rates are what one CPU sustains for generator plus subject; \
         nftables runs in the kernel stack after the veth turned each frame into an skb (GRO on), \
         the XDP subjects see the frame before that.",
        "bench_gen rewrites the IPv4 source in place and patches the IPv4 and UDP checksums \
         (RFC 1624), so the kernel stack accepts the frames (nftables inet prerouting runs after \
         the IPv4 header checks).",
        "10k-stage1 is the 10k configuration's allowlist and policy without its SIP rules \
         (no method budgets, scanners, dial plan or destinations): stage 1 alone, as before the \
         SIP stages. Every frame is measured through it in the same rounds as through 10k; \
         the SIP-stage table and targets compare the two. Whether a packet reached the SIP \
         stage is read from SG_METHODS around every measured call; the SIP scenarios' paths \
         (method counted, signature hits, destination-rule hits) are checked on every run like \
         their verdicts.",
        "10k-methodonly and 10k-nodest are diagnostics, measured on the scenarios that reach \
         the SIP stages only: the headers stage (or the destination stage) is removed from its \
         tail-call slot, so the packet ends after the SIP stage (or the header scan) with a \
         failed tail call, counted. Their differences to 10k and 10k-stage1 are the SIP \
         stages' steps in the breakdown.",
        "No cycle or instruction profile per path: this VM exposes no hardware performance \
         counters and Debian's bpftool 7.1 is built without `prog profile`. Where the cost goes \
         is read from bench_parse (the same parser without lookups), the growth with the \
         allowlist size, and the verifier's instruction counts.",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .chain([format!(
        "A unit slower than {SLOW_NS} ns per run in the warm-up (the paths through the SIP \
         stages) runs fewer times per measurement (the setting times {SLOW_NS} ns over its \
         warm-up time, at least a tenth), so that no measurement takes longer than the \
         setting's runs of {SLOW_NS} ns; its rounds stay interleaved with everything else. \
         runs_per_measurement in the JSON says how many."
    )])
    .collect()
}
