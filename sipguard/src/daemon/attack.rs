//! The attack detector's loop: once a second, each interface whose policy shuts the access
//! gate under attack (`[access] unverified = "under-attack"`) and whose operator has not
//! decided (`attack-mode on|off`) gets its access-zone rates fed to [`AttackDetector`]; a
//! switch is made through the journal (`attack-mode (auto)`), logged, and shows in `status`
//! and `sipguard_access_gate_shut`.

use std::{collections::HashMap, time::Duration};

use anyhow::Result;
use sipguard_common::abi::{Reason, Zone, access_gate, counter_index};

use crate::{
    attack::{AccessRates, AttackDetector, AttackSettings},
    journal::Who,
    state::{LiveState, State, Target},
    time::boot_now_ns,
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

pub(super) async fn watch(targets: Vec<Target>, settings: AttackSettings) -> Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut detectors: HashMap<String, (AttackDetector, Totals, u64)> = HashMap::new();
    loop {
        ticker.tick().await;
        for target in &targets {
            if let Err(error) = step(target, settings, &mut detectors) {
                log::warn!("{}: attack detector: {error:#}", target.label());
            }
        }
    }
}

fn step(
    target: &Target,
    settings: AttackSettings,
    detectors: &mut HashMap<String, (AttackDetector, Totals, u64)>,
) -> Result<()> {
    let state = State::open(target)?;
    let policy = state.policy(state.active_generation()?)?;
    let gate = policy.feedback.gate;
    let now_ms = boot_now_ns() / 1_000_000;
    let Some(now) = totals(&state) else {
        return Ok(());
    };
    let shut = gate & access_gate::UNDER_ATTACK != 0;
    let (detector, last, last_ms) = detectors
        .entry(target.label())
        .or_insert_with(|| (AttackDetector::new(settings, shut), now, now_ms));
    let seconds = (now_ms.saturating_sub(*last_ms) as f64 / 1000.0).max(0.001);
    let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
    let rates = AccessRates {
        new_sources_refused: rate(now.refused, last.refused),
        unverified: rate(now.unverified, last.unverified),
        drops: rate(now.drops, last.drops),
        new_sources_rate: f64::from(policy.header.new_sources_rate),
    };
    *last = now;
    *last_ms = now_ms;
    let automatic = gate & access_gate::ON_ATTACK != 0 && gate & access_gate::FORCED == 0;
    if !automatic {
        detector.resync(shut);
        return Ok(());
    }
    detector.resync(shut);
    let Some(on) = detector.observe(now_ms, rates) else {
        return Ok(());
    };
    let who = Who::daemon("attack detector".into());
    let mut live = LiveState::lock(target)?;
    live.journaled("attack-mode (auto)", &who, |live| {
        live.set_attack_mode(on, false)
    })?;
    if on {
        log::warn!(
            "{}: under attack ({:.0} new sources refused/s, {:.0} access drops/s): the access \
             gate is shut to unverified sources",
            target.label(),
            rates.new_sources_refused,
            rates.drops
        );
    } else {
        log::warn!(
            "{}: attack over ({} quiet): the access gate is open again",
            target.label(),
            crate::time::format_duration(settings.quiet_for.as_secs())
        );
    }
    Ok(())
}
