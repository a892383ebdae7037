//! What the SIP stages counted: INVITEs by zone, verdict and destination country; matches per
//! scanner signature; INVITEs per destination rule. Ids are turned into names with the tries
//! of the generation in force.

use std::collections::BTreeMap;

use sipguard_common::abi::{COUNTRY_SLOTS, Zone, dest_stat_index, dest_verdict};

use crate::{
    countries,
    policy::sip_tables::SipIds,
    state::{State, StateError},
};

/// Non-zero counts only.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SipStats {
    /// (zone, verdict, country label, INVITEs).
    pub destinations: Vec<(&'static str, &'static str, &'static str, u64)>,
    /// (signature name, matches).
    pub signatures: Vec<(String, u64)>,
    /// (rule name, INVITEs).
    pub rules: Vec<(String, u64)>,
}

impl SipStats {
    pub fn read(state: &State) -> Result<SipStats, StateError> {
        let mut stats = SipStats::default();
        let counts = state.destination_stats()?;
        for zone in [Zone::Trunk, Zone::Access] {
            for (verdict, name) in dest_verdict::NAMES.iter().enumerate() {
                for country in 0..COUNTRY_SLOTS as u16 {
                    let count = counts
                        .get(dest_stat_index(zone, verdict as u32, country) as usize)
                        .copied()
                        .unwrap_or(0);
                    if count > 0 {
                        stats.destinations.push((
                            zone.name(),
                            name,
                            countries::label(usize::from(country)),
                            count,
                        ));
                    }
                }
            }
        }
        let signature_hits = state.signature_hits()?;
        let rule_hits = state.rule_hits()?;
        if signature_hits.iter().all(|n| *n == 0) && rule_hits.iter().all(|n| *n == 0) {
            return Ok(stats);
        }
        let (signatures, rules) = names_by_id(state)?;
        let named = |names: &NamesById, hits: &[u64]| -> Vec<(String, u64)> {
            hits.iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(id, count)| {
                    let name = names
                        .get(&(id as u16))
                        .map_or_else(|| format!("id-{id}"), Clone::clone);
                    (name, *count)
                })
                .collect()
        };
        stats.signatures = named(&signatures, &signature_hits);
        stats.rules = named(&rules, &rule_hits);
        Ok(stats)
    }
}

/// Names by id.
pub type NamesById = BTreeMap<u16, String>;

/// The names of the signature ids and of the rule ids in the generation in force (for events).
pub fn names_by_id(state: &State) -> Result<(NamesById, NamesById), StateError> {
    let generation = state.active_generation()?;
    let policy = state.policy(generation)?;
    let ids = SipIds::of(
        &state.signatures(generation)?,
        &state.destinations(generation)?,
        &policy.sip,
    );
    let invert =
        |by_name: BTreeMap<String, u16>| by_name.into_iter().map(|(n, id)| (id, n)).collect();
    Ok((invert(ids.signatures), invert(ids.rules)))
}
