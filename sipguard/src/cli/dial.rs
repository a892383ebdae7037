//! `sipguard dial`: how the INVITE destination firewall reads a number, and which rule decides.
//! It runs the data plane's own parser and the zone's dial plan, from a policy file or from the
//! generation in force on an interface.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use sipguard_common::{
    abi::{DestData, DestRule, Mode, SipZone, Zone, dest_action, sip_zone_flags},
    dial::{Dialled, dialled},
    sip::destination_key,
};

use super::Global;
use crate::{
    countries,
    policy::{
        Tables,
        sip_tables::{SipIds, TrieKey, rule_name},
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

/// What the destination firewall does with one number.
#[derive(Debug, serde::Serialize)]
pub(super) struct DialVerdict {
    pub zone: &'static str,
    pub uri: String,
    /// E.164 digits; absent when the URI holds no number.
    pub normalised: Option<String>,
    pub country: Option<&'static str>,
    pub rule: String,
    /// `allow`, `deny`, or `budget NAME` (`budget #N` when only the slot is known).
    pub action: String,
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
    let verdict = judge(zone, &args.number, &rules, &trie, &budgets);
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

/// Judges a number as the data plane would: the same parser, the same longest match.
pub(super) fn judge(
    zone: Zone,
    number: &str,
    rules: &SipZone,
    trie: &BTreeMap<TrieKey<DestData>, DestRule>,
    budgets: &[String],
) -> DialVerdict {
    let compact: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    let lower = compact.to_ascii_lowercase();
    let uri = if ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        compact
    } else {
        format!("tel:{compact}")
    };
    let bytes = uri.as_bytes();
    let (normalised, rule) = match dialled(&bytes, 0, &rules.dial_plan) {
        Dialled::Number(number) => {
            let mut data = DestData::default();
            let bits = destination_key(zone as u8, &number, &mut data);
            let rule = longest_match(trie, bits, &data).unwrap_or(rules.default);
            (
                Some(String::from_utf8_lossy(number.as_bytes()).into_owned()),
                rule,
            )
        }
        Dialled::Unparseable => (None, rules.unparseable),
    };
    DialVerdict {
        zone: zone.name(),
        uri,
        country: normalised
            .as_deref()
            .and_then(countries::country_of)
            .map(|(_, country)| country.iso),
        normalised,
        rule: rule_name(&rule.name),
        action: match rule.action {
            dest_action::DENY => "deny".to_string(),
            dest_action::BUDGET => match budgets.get(usize::from(rule.budget)) {
                Some(name) => format!("budget {name}"),
                None => format!("budget #{}", rule.budget),
            },
            _ => "allow".to_string(),
        },
    }
}

/// The trie entry of the longest prefix of a key, like the kernel's lookup.
fn longest_match(
    trie: &BTreeMap<TrieKey<DestData>, DestRule>,
    bits: u32,
    data: &DestData,
) -> Option<DestRule> {
    let digits = (bits - 8) / 4;
    (0..=digits).rev().find_map(|len| {
        let mut prefix = *data;
        for index in len as usize..(prefix.len() - 1) * 2 {
            let byte = &mut prefix[1 + index / 2];
            *byte &= if index % 2 == 0 { 0x0f } else { 0xf0 };
        }
        trie.get(&(8 + 4 * len, prefix)).copied()
    })
}
