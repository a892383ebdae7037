//! The attack detector's loop: once a second, each interface whose policy shuts the access
//! gate under attack (`[access] unverified = "under-attack"`) and whose operator has not
//! decided (`attack-mode on|off`) gets its access-zone rates fed to [`AttackDetector`]; a
//! switch is made through the journal (`attack-mode (auto)`), logged, and shows in `status`
//! and `sipguard_access_gate_shut`. Every switch of the gate, by the detector, the operator or
//! a policy, also goes into the event stream and `sipguard_access_gate_switches`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use anyhow::Result;
use sipguard_common::abi::{Reason, Zone, access_gate, counter_index};

use super::{
    Shared, Sink,
    metrics::{DaemonCounters, GateSwitch, SwitchedBy},
    publish,
};
use crate::{
    attack::{AccessRates, AttackDetector, AttackSettings},
    events::EventRecord,
    journal::Who,
    report::gate_name,
    state::{LiveState, State, Target},
    time::{boot_now_ns, format_duration},
};

/// The access zone's counters that matter, cumulative.
#[derive(Clone, Copy, Default)]
struct Totals {
    refused: u64,
    unverified: u64,
    drops: u64,
}

fn totals(state: &State) -> Option<Totals> {
    let counters = state.counters().ok()?;
    let packets = |reason: Reason| -> u64 {
        [false, true]
            .iter()
            .map(|monitored| {
                counters
                    .get(counter_index(Zone::Access, reason, *monitored) as usize)
                    .map_or(0, |counter| counter.packets)
            })
            .sum()
    };
    Some(Totals {
        refused: packets(Reason::NewSourceLimited),
        unverified: packets(Reason::Unverified),
        drops: Reason::ALL
            .iter()
            .filter(|reason| reason.is_drop())
            .map(|reason| packets(*reason))
            .sum(),
    })
}

/// What the loop remembers of one interface.
struct Watched {
    detector: AttackDetector,
    last: Totals,
    last_ms: u64,
    /// The gate bits seen last round: a change the detector did not make is someone else's.
    gate: u16,
}

/// Where switches are reported.
pub(super) struct Reporting {
    pub shared: Arc<Shared>,
    pub sink: Arc<Mutex<Sink>>,
    pub counters: Arc<DaemonCounters>,
}

pub(super) async fn watch(
    targets: Vec<Target>,
    settings: AttackSettings,
    reporting: Reporting,
) -> Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut watched: HashMap<String, Watched> = HashMap::new();
    loop {
        ticker.tick().await;
        for target in &targets {
            match step(target, settings, &mut watched) {
                Ok(Some((switch, detail))) => report(target, switch, detail, &reporting),
                Ok(None) => {}
                Err(error) => log::warn!("{}: attack detector: {error:#}", target.label()),
            }
        }
    }
}

fn report(target: &Target, switch: GateSwitch, detail: String, reporting: &Reporting) {
    let label = target.label();
    log::warn!(
        "{label}: the access gate {}: {detail}",
        if switch.shut { "shut" } else { "opened" }
    );
    if let Some(counters) = reporting.counters.gate_switches.get(&label) {
        counters[switch.index()].fetch_add(1, Ordering::Relaxed);
    }
    let now = crate::time::Clock::now().unix_ns(boot_now_ns());
    publish(
        &reporting.shared,
        &reporting.sink,
        vec![EventRecord::gate_switch(&label, switch.shut, now, detail)],
    );
}

/// One round for one interface: the switch it saw or made, if any, with what to say of it.
fn step(
    target: &Target,
    settings: AttackSettings,
    watched: &mut HashMap<String, Watched>,
) -> Result<Option<(GateSwitch, String)>> {
    let state = State::open(target)?;
    let policy = state.policy(state.active_generation()?)?;
    let gate = policy.feedback.gate;
    let now_ms = boot_now_ns() / 1_000_000;
    let Some(now) = totals(&state) else {
        return Ok(None);
    };
    let under_attack = gate & access_gate::UNDER_ATTACK != 0;
    let entry = watched.entry(target.label()).or_insert_with(|| Watched {
        detector: AttackDetector::new(settings, under_attack),
        last: now,
        last_ms: now_ms,
        gate,
    });
    let seconds = (now_ms.saturating_sub(entry.last_ms) as f64 / 1000.0).max(0.001);
    let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
    let rates = AccessRates {
        new_sources_refused: rate(now.refused, entry.last.refused),
        unverified: rate(now.unverified, entry.last.unverified),
        drops: rate(now.drops, entry.last.drops),
        new_sources_rate: f64::from(policy.header.new_sources_rate),
    };
    entry.last = now;
    entry.last_ms = now_ms;
    let was = std::mem::replace(&mut entry.gate, gate);
    let shut = gate & access_gate::SHUT != 0;
    if shut != (was & access_gate::SHUT != 0) {
        // Someone else switched since the last round: the operator, or a policy applied.
        entry.detector.resync(under_attack);
        let by = if (gate | was) & access_gate::FORCED != 0 {
            SwitchedBy::Operator
        } else {
            SwitchedBy::Policy
        };
        let detail = format!("by the {}: {}", by.name(), gate_name(gate));
        return Ok(Some((GateSwitch { shut, by }, detail)));
    }
    let automatic = gate & access_gate::ON_ATTACK != 0 && gate & access_gate::FORCED == 0;
    entry.detector.resync(under_attack);
    if !automatic {
        return Ok(None);
    }
    let Some(on) = entry.detector.observe(now_ms, rates) else {
        return Ok(None);
    };
    let who = Who::daemon("attack detector".into());
    let mut live = LiveState::lock(target)?;
    live.journaled("attack-mode (auto)", &who, |live| {
        live.set_attack_mode(on, false)
    })?;
    entry.gate = live.policy(live.active_generation()?)?.feedback.gate;
    let detail = if on {
        format!(
            "by the detector: under attack ({:.0} new sources refused/s, {:.0} access drops/s), \
             unverified sources may only register",
            rates.new_sources_refused, rates.drops
        )
    } else {
        format!(
            "by the detector: attack over ({} quiet)",
            format_duration(settings.quiet_for.as_secs())
        )
    };
    Ok(Some((
        GateSwitch {
            shut: entry.gate & access_gate::SHUT != 0,
            by: SwitchedBy::Detector,
        },
        detail,
    )))
}
