//! `sipguard dial`: how the INVITE destination firewall reads a number, and which rule decides.
//! It runs the data plane's own parser and the zone's dial plan, from a policy file or from the
//! generation in force on an interface.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use sipguard_common::abi::{Mode, Zone, sip_zone_flags};

use super::Global;
use crate::{
    policy::{
        Tables,
        sip_tables::{SipIds, judge_number},
    },
    state::State,
};

/// Show how a dialled number is normalised and which destination rule decides.
///
/// Examples:
///   sipguard dial --zone access '+44 (20) 7946-0000'
///   sipguard dial --zone access --policy /etc/sipguard/eth0.toml 0900123456
///   sipguard dial --zone trunk 'sip:011252612345678@sbc.example;user=phone'
#[derive(Debug, Parser)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The number as dialled (spaces are ignored), or a whole sip:, sips: or tel: URI.
    pub number: String,
    #[arg(long, value_enum, default_value = "access")]
    pub zone: DialZone,
    /// Judge with this policy file instead of the policy in force.
    #[arg(long)]
    pub policy: Option<std::path::PathBuf>,
    /// The interface whose policy is in force (needed when several are filtered).
    #[arg(long, value_parser = super::iface_name)]
    pub iface: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DialZone {
    Trunk,
    Access,
}

impl From<DialZone> for Zone {
    fn from(zone: DialZone) -> Zone {
        match zone {
            DialZone::Trunk => Zone::Trunk,
            DialZone::Access => Zone::Access,
        }
    }
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let zone = Zone::from(args.zone);
    let (rules, trie, budgets) = match &args.policy {
        Some(path) => {
            let policy = match super::load_policy(Some(path)) {
                Ok(Some(policy)) => policy,
                Ok(None) => unreachable!("a path was given"),
                Err(code) => return Ok(code),
            };
            let tables = Tables::compile(
                &policy,
                Mode::Enforce,
                &BTreeMap::new(),
                &BTreeMap::new(),
                0,
                &SipIds::default(),
            );
            (
                tables.sip.sip.zones[zone as usize - 1],
                tables.sip.destinations,
                policy.sip.destination_budgets.keys().cloned().collect(),
            )
        }
        None => {
            let state = State::open(&global.target(args.iface.as_deref())?)?;
            let generation = state.active_generation()?;
            let policy = state.policy(generation)?;
            (
                policy.sip.zones[zone as usize - 1],
                state.destinations(generation)?,
                Vec::new(),
            )
        }
    };
    if rules.flags & sip_zone_flags::DESTINATIONS == 0 {
        bail!(
            "the {} zone has no destination rules (no [{}.dialplan] or [[{}.destinations]])",
            zone.name(),
            zone.name(),
            zone.name()
        );
    }
    let verdict = judge_number(zone, &args.number, &rules, &trie, &budgets);
    if args.json {
        super::print_json(&verdict)?;
    } else {
        println!("zone        {}", verdict.zone);
        println!("uri         {}", verdict.uri);
        match &verdict.normalised {
            Some(number) => println!("normalised  +{number}"),
            None => println!("normalised  (no number: unparseable)"),
        }
        if let Some(country) = verdict.country {
            println!("country     {country}");
        }
        println!("rule        {}", verdict.rule);
        println!("action      {}", verdict.action);
    }
    Ok(0)
}
