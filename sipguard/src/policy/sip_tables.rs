//! The SIP rules compiled into what the SIP stages read: method budgets per class, each zone's
//! dial plan and verdicts, the signature trie and the destination trie.
//!
//! The destination trie holds the rules' prefixes and every E.164 country code of the zones
//! with destination rules, so that one longest-prefix lookup gives both the verdict and the
//! country. A country code's entry carries the verdict of the longest rule prefix covering it
//! (or the zone's default), so adding it never changes a verdict.
//!
//! Why an LPM trie over BCD nibbles: the kernel does the longest-prefix walk in one helper
//! call, a prefix is any number of digits (4 bits each, the key's prefix length counts them),
//! and the controller swaps a whole generation like the address lists. A hash per prefix
//! length would cost up to 16 lookups per INVITE.

use std::collections::BTreeMap;

use sipguard_common::{
    abi::{
        DEST_BUDGET_SLOTS, DEST_KEY_DIGITS, DestData, DestRule, METHOD_BUDGET_SLOTS,
        MethodBudgets as KernelMethodBudgets, RULE_NAME_LEN, SIGNATURE_BYTES, SignatureData,
        SignatureRule, SipPolicy, SipZone, Zone, dest_action, fold_case, policy_flags,
        signature_field, sip_zone_flags,
    },
    budget::Gcra,
    dial::{DialPlan, Dialled, DigitPrefix, Number, dialled},
    sip::destination_key,
};

use super::sip::{DestinationAction, Destinations, RequestBudget, SipRules};
use crate::countries;

/// A trie key: prefix length in bits and data.
pub type TrieKey<D> = (u32, D);

/// Ids of signatures and destination rules by name, kept across `apply` so that a counter's
/// label keeps its meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipIds {
    pub signatures: BTreeMap<String, u16>,
    pub rules: BTreeMap<String, u16>,
}

impl SipIds {
    /// The ids a generation's tries hold.
    pub fn of(
        signatures: &BTreeMap<TrieKey<SignatureData>, SignatureRule>,
        destinations: &BTreeMap<TrieKey<DestData>, DestRule>,
        sip: &SipPolicy,
    ) -> SipIds {
        let mut ids = SipIds::default();
        for rule in signatures.values() {
            ids.signatures.insert(rule_name(&rule.name), rule.id);
        }
        let zone_rules = sip
            .zones
            .iter()
            .flat_map(|zone| [zone.default, zone.unparseable]);
        for rule in destinations.values().copied().chain(zone_rules) {
            if rule.rule != 0 {
                ids.rules.insert(rule_name(&rule.name), rule.rule);
            }
        }
        ids
    }
}

/// The kernel form of a policy's SIP rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipTables {
    /// By class id, like `Tables::classes`.
    pub class_methods: Vec<KernelMethodBudgets>,
    pub sip: SipPolicy,
    pub signatures: BTreeMap<TrieKey<SignatureData>, SignatureRule>,
    pub destinations: BTreeMap<TrieKey<DestData>, DestRule>,
    /// `policy_flags::SIP_*` of the zones whose admitted packets need the SIP stage.
    pub flags: u8,
}

/// A per-source request budget as a GCRA.
pub fn request_gcra(budget: RequestBudget) -> Gcra {
    let per_ns = u64::try_from(budget.per.as_nanos()).unwrap_or(u64::MAX);
    let interval_ns = (per_ns / u64::from(budget.count.max(1))).max(1);
    Gcra {
        interval_ns,
        tau_ns: u64::from(budget.burst.max(1) - 1).saturating_mul(interval_ns),
    }
}

/// The text of a NUL-padded name.
pub fn rule_name(bytes: &[u8; RULE_NAME_LEN]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(RULE_NAME_LEN);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn name_bytes(name: &str) -> [u8; RULE_NAME_LEN] {
    let mut bytes = [0u8; RULE_NAME_LEN];
    for (slot, byte) in bytes.iter_mut().zip(name.bytes().take(RULE_NAME_LEN - 1)) {
        *slot = byte;
    }
    bytes
}

/// Ids for `names` (1-based, at most `slots - 1`): the id a name had before when it is still
/// free, else the lowest free one.
fn assign_ids(
    names: &[String],
    previous: &BTreeMap<String, u16>,
    slots: u32,
) -> BTreeMap<String, u16> {
    let mut ids = BTreeMap::new();
    let mut taken = vec![false; slots as usize];
    taken[0] = true;
    for name in names {
        if let Some(id) = previous.get(name)
            && (*id as usize) < taken.len()
            && !taken[*id as usize]
        {
            taken[*id as usize] = true;
            ids.insert(name.clone(), *id);
        }
    }
    for name in names {
        if ids.contains_key(name) {
            continue;
        }
        if let Some(id) = taken.iter().position(|t| !t) {
            taken[id] = true;
            ids.insert(name.clone(), id as u16);
        }
    }
    ids
}

/// The names of a zone's pseudo-rules: its default and its `unparseable` verdict.
pub fn zone_rule_names(zone: Zone) -> [String; 2] {
    [
        format!("{}-default", zone.name()),
        format!("{}-unparseable", zone.name()),
    ]
}

/// Where a zone's admitted packets may need the SIP stage.
#[derive(Clone, Copy, Debug)]
pub struct ZoneUse {
    pub zone: Zone,
    pub has_ports: bool,
    /// A class its sources are judged by has method budgets.
    pub method_budgets: bool,
}

/// Compiles the SIP rules. `classes` are the policy's classes by id; `zones` says which zones
/// have ports and sources with method budgets: a zone without SIP rules of its own and without
/// such sources keeps stage 1's fast paths.
pub fn compile_sip(
    rules: &SipRules,
    classes: &[String],
    zones: [ZoneUse; 2],
    previous: &SipIds,
) -> SipTables {
    let mut tables = SipTables {
        class_methods: classes
            .iter()
            .map(|class| {
                let mut slots = [Gcra::UNLIMITED; METHOD_BUDGET_SLOTS];
                if let Some(budgets) = rules.method_budgets.get(class) {
                    for (slot, budget) in slots.iter_mut().zip(budgets.slots()) {
                        if let Some(budget) = budget {
                            *slot = request_gcra(budget);
                        }
                    }
                }
                slots
            })
            .collect(),
        ..SipTables::default()
    };

    // Signatures.
    if let Some(scanners) = &rules.scanners {
        let names: Vec<String> = scanners.signatures.iter().map(|s| s.name.clone()).collect();
        let ids = assign_ids(
            &names,
            &previous.signatures,
            sipguard_common::abi::SIGNATURE_SLOTS,
        );
        for signature in &scanners.signatures {
            let Some(id) = ids.get(&signature.name) else {
                continue;
            };
            let value = SignatureRule {
                id: *id,
                _reserved: 0,
                name: name_bytes(&signature.name),
            };
            let mut fields = vec![signature_field::USER_AGENT];
            if signature.from {
                fields.push(signature_field::FROM_DISPLAY_NAME);
            }
            for field in fields {
                tables
                    .signatures
                    .insert(signature_key(field, &signature.prefix), value);
            }
        }
    }

    // Destination budgets and rule ids.
    let budget_names: Vec<&String> = rules.destination_budgets.keys().collect();
    for (slot, budget) in tables
        .sip
        .dest_budgets
        .iter_mut()
        .zip(rules.destination_budgets.values())
        .take(DEST_BUDGET_SLOTS)
    {
        *slot = request_gcra(*budget);
    }
    let mut rule_names = Vec::new();
    for (zone, destinations) in [(Zone::Trunk, &rules.trunk), (Zone::Access, &rules.access)] {
        if let Some(destinations) = destinations {
            rule_names.extend(zone_rule_names(zone));
            rule_names.extend(destinations.rules.iter().map(|rule| rule.name.clone()));
        }
    }
    let rule_ids = assign_ids(
        &rule_names,
        &previous.rules,
        sipguard_common::abi::RULE_SLOTS,
    );
    let kernel_rule = |name: &str, action: &DestinationAction| DestRule {
        action: match action {
            DestinationAction::Allow => dest_action::ALLOW,
            DestinationAction::Deny => dest_action::DENY,
            DestinationAction::Budget(_) => dest_action::BUDGET,
        },
        budget: match action {
            DestinationAction::Budget(budget) => budget_names
                .iter()
                .position(|name| *name == budget)
                .unwrap_or(0) as u8,
            _ => 0,
        },
        rule: rule_ids.get(name).copied().unwrap_or(0),
        country: 0,
        _reserved: 0,
        name: name_bytes(name),
    };

    for (
        index,
        ZoneUse {
            zone,
            has_ports,
            method_budgets,
        },
    ) in zones.into_iter().enumerate()
    {
        let destinations = match zone {
            Zone::Trunk => rules.trunk.as_ref(),
            _ => rules.access.as_ref(),
        };
        let zone_rules = &mut tables.sip.zones[index];
        let scanners = rules.scanners.as_ref().filter(|scanners| match zone {
            Zone::Trunk => scanners.trunk,
            _ => scanners.access,
        });
        if let Some(scanners) = scanners
            && !scanners.signatures.is_empty()
        {
            zone_rules.flags |= sip_zone_flags::SCANNERS;
            if scanners.allowlisted {
                zone_rules.flags |= sip_zone_flags::SCANNERS_ALLOWLISTED;
            }
            if scanners.ban {
                zone_rules.flags |= sip_zone_flags::SCANNER_BANS;
            }
        }
        if let Some(destinations) = destinations {
            zone_rules.flags |= sip_zone_flags::DESTINATIONS;
            compile_zone(
                zone,
                destinations,
                zone_rules,
                &kernel_rule,
                &mut tables.destinations,
            );
        }
        if has_ports && (zone_rules.flags != 0 || method_budgets) {
            tables.flags |= match zone {
                Zone::Trunk => policy_flags::SIP_TRUNK,
                _ => policy_flags::SIP_ACCESS,
            };
        }
    }
    tables
}

/// A zone's dial plan, verdicts and trie entries.
fn compile_zone(
    zone: Zone,
    destinations: &Destinations,
    zone_rules: &mut SipZone,
    kernel_rule: &impl Fn(&str, &DestinationAction) -> DestRule,
    trie: &mut BTreeMap<TrieKey<DestData>, DestRule>,
) {
    let plan = &destinations.dial_plan;
    let digits = |text: &str| DigitPrefix::from_str(text).unwrap_or_default();
    let pair = |list: &[String]| {
        [0, 1].map(|index| {
            list.get(index)
                .map_or_else(DigitPrefix::default, |p| digits(p))
        })
    };
    zone_rules.dial_plan = DialPlan {
        country_code: digits(&plan.country_code),
        national_prefix: digits(&plan.national_prefix),
        international_prefixes: pair(&plan.international_prefixes),
        tech_prefixes: pair(&plan.tech_prefixes),
        ..DialPlan::default()
    };
    let [default_name, unparseable_name] = zone_rule_names(zone);
    zone_rules.default = kernel_rule(&default_name, &destinations.default);
    zone_rules.unparseable = kernel_rule(&unparseable_name, &destinations.unparseable);

    // Rule prefixes (a later rule's duplicate is refused by the checks; last wins here).
    let mut by_prefix: BTreeMap<String, DestRule> = BTreeMap::new();
    for rule in &destinations.rules {
        let value = kernel_rule(&rule.name, &rule.action);
        for (prefix, _) in &rule.prefixes {
            by_prefix.insert(prefix.clone(), value);
        }
    }
    let mut prefixes: Vec<String> = by_prefix.keys().cloned().collect();
    prefixes.extend(countries::COUNTRIES.iter().map(|c| c.prefix.to_string()));
    prefixes.sort();
    prefixes.dedup();
    for prefix in prefixes {
        if prefix.is_empty() || prefix.len() > DEST_KEY_DIGITS {
            continue;
        }
        // The longest rule prefix covering this one decides; else the zone's default.
        let mut value = (1..=prefix.len())
            .rev()
            .find_map(|len| by_prefix.get(&prefix[..len]))
            .copied()
            .unwrap_or(zone_rules.default);
        value.country = countries::country_of(&prefix).map_or(0, |(slot, _)| slot as u16);
        let Some(number) = Number::from_digits(&prefix) else {
            continue;
        };
        let mut data = DestData::default();
        let bits = destination_key(zone as u8, &number, &mut data);
        trie.insert((bits, data), value);
    }
}

/// A signature's trie key for one field.
pub fn signature_key(field: u8, prefix: &str) -> TrieKey<SignatureData> {
    let mut data = SignatureData::default();
    data[0] = field;
    let bytes: Vec<u8> = prefix.bytes().take(SIGNATURE_BYTES).collect();
    for (slot, byte) in data[1..].iter_mut().zip(&bytes) {
        *slot = fold_case(*byte);
    }
    (8 * (1 + bytes.len() as u32), data)
}

/// What the destination firewall does with one number.
#[derive(Debug, serde::Serialize)]
pub struct DialVerdict {
    pub zone: &'static str,
    pub uri: String,
    /// E.164 digits; absent when the URI holds no number.
    pub normalised: Option<String>,
    pub country: Option<&'static str>,
    pub rule: String,
    /// `allow`, `deny`, or `budget NAME` (`budget #N` when only the slot is known).
    pub action: String,
}

/// Judges a number as the data plane would: the same parser, the same longest match.
pub fn judge_number(
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::{
        Location,
        sip::{DestinationRule, DialPlanSettings},
    };

    fn at() -> Location {
        Location {
            file: "p.toml".into(),
            line: 1,
        }
    }

    fn lookup(trie: &BTreeMap<TrieKey<DestData>, DestRule>, zone: Zone, digits: &str) -> DestRule {
        // The longest prefix in the trie, like the kernel's lookup.
        (1..=digits.len())
            .rev()
            .find_map(|len| {
                let number = Number::from_digits(&digits[..len])?;
                let mut data = DestData::default();
                let bits = destination_key(zone as u8, &number, &mut data);
                trie.get(&(bits, data)).copied()
            })
            .unwrap_or_default()
    }

    #[test]
    fn country_codes_inherit_the_covering_rule_and_rules_keep_their_country() {
        let rules = SipRules {
            access: Some(Destinations {
                dial_plan: DialPlanSettings::default(),
                default: DestinationAction::Allow,
                unparseable: DestinationAction::Deny,
                rules: vec![
                    DestinationRule {
                        name: "world".into(),
                        prefixes: vec![("8".into(), at())],
                        action: DestinationAction::Deny,
                    },
                    DestinationRule {
                        name: "uk-premium".into(),
                        prefixes: vec![("449".into(), at())],
                        action: DestinationAction::Deny,
                    },
                ],
            }),
            ..SipRules::default()
        };
        let used = |zone| ZoneUse {
            zone,
            has_ports: true,
            method_budgets: false,
        };
        let tables = compile_sip(
            &rules,
            &[String::new()],
            [used(Zone::Trunk), used(Zone::Access)],
            &SipIds::default(),
        );
        assert_eq!(tables.flags, policy_flags::SIP_ACCESS);
        let japan = lookup(&tables.destinations, Zone::Access, "81312345678");
        assert_eq!(
            japan.action,
            dest_action::DENY,
            "81 lies under the rule for 8"
        );
        assert_eq!(rule_name(&japan.name), "world");
        assert_eq!(countries::label(japan.country as usize), "JP");
        let premium = lookup(&tables.destinations, Zone::Access, "449012345");
        assert_eq!(rule_name(&premium.name), "uk-premium");
        assert_eq!(countries::label(premium.country as usize), "GB");
        let london = lookup(&tables.destinations, Zone::Access, "442079460000");
        assert_eq!(london.action, dest_action::ALLOW);
        assert_eq!(rule_name(&london.name), "access-default");
        assert_eq!(countries::label(london.country as usize), "GB");
        assert_eq!(
            lookup(&tables.destinations, Zone::Trunk, "442079460000"),
            DestRule::default(),
            "no trunk entries"
        );
    }

    #[test]
    fn ids_survive_a_reordering_and_new_names_take_free_slots() {
        let previous: BTreeMap<String, u16> = [("b".to_string(), 1), ("a".to_string(), 2)].into();
        let ids = assign_ids(&["a".into(), "c".into(), "b".into()], &previous, 8);
        assert_eq!(ids["a"], 2);
        assert_eq!(ids["b"], 1);
        assert_eq!(ids["c"], 3);
    }

    #[test]
    fn request_budgets_allow_rates_below_one_per_second() {
        let gcra = request_gcra(RequestBudget {
            count: 2,
            per: Duration::from_secs(60),
            burst: 3,
        });
        assert_eq!(gcra.interval_ns, 30_000_000_000);
        assert_eq!(gcra.tau_ns, 60_000_000_000);
    }

    #[test]
    fn signature_keys_fold_case_and_count_bits() {
        let (bits, data) = signature_key(signature_field::USER_AGENT, "SIPVicious");
        assert_eq!(bits, 8 * 11);
        assert_eq!(&data[..11], b"\x01sipvicious");
    }
}
