//! The SIP rules: `[scanners]`, `[destination_budgets]`, and per zone a `dialplan` and
//! `destinations` rules (`[access.dialplan]`, `[[access.destinations]]`). Method budgets belong
//! to classes and are read with them ([`super::classes`]).
//!
//! Destination prefixes are E.164 digits. A rule takes them from `prefixes`, from list files
//! (`files`, one prefix a line, read like the allow and deny files) and from `countries`
//! (ISO codes): a country is the numbers whose longest row in [`crate::countries::COUNTRIES`]
//! is that country's, so `countries = ["US"]` does not take Canada or the Caribbean in with the
//! "1" they share (see [`country_prefixes`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    ops::Range,
    path::Path,
    time::Duration,
};

use sipguard_common::abi::{DEST_BUDGET_SLOTS, SIGNATURE_BYTES, fold_case};
use toml::Spanned;

use super::{
    ParseContext,
    check::Checker,
    classes::is_valid_class_name,
    doc::{
        DestinationDoc, DialPlanDoc, RequestBudgetDoc, ScannersDoc, SignatureDoc,
        UnparseableSetting, ZoneSetting,
    },
    settings::read_duration,
};
use crate::{
    countries,
    policy::{
        Location,
        sip::{
            BUILTIN_SIGNATURES, DestinationAction, DestinationRule, Destinations, DialPlanSettings,
            MAX_DESTINATION_PREFIXES, MAX_DESTINATION_RULES, MAX_SIGNATURES, MethodBudgets,
            RequestBudget, Scanners, Signature, SipRules,
        },
    },
};

/// Digits of an E.164 number at most.
const E164_DIGITS: usize = 15;
/// Action words, which no destination budget may be named.
const ACTIONS: [&str; 2] = ["allow", "deny"];
/// Each zone's default and `unparseable` verdicts are counted under these names.
const ZONE_RULE_NAMES: [&str; 4] = [
    "trunk-default",
    "trunk-unparseable",
    "access-default",
    "access-unparseable",
];

/// The SIP parts of one zone's section.
pub(super) struct ZoneDoc<'d> {
    /// "trunk" or "access".
    pub(super) name: &'static str,
    pub(super) has_ports: bool,
    pub(super) dialplan: Option<&'d Spanned<DialPlanDoc>>,
    pub(super) destinations: &'d [Spanned<DestinationDoc>],
}

/// A prefix as read, before the checks across the rules of a zone.
struct PrefixEntry {
    /// As written (`+44`), for messages.
    text: String,
    digits: String,
    at: Location,
}

/// What the rules of one zone share while they are read.
#[derive(Default)]
struct ZoneState {
    /// Prefixes written in `prefixes` and `files`, by digits.
    written: HashMap<String, Location>,
    /// Countries named in `countries`, upper case.
    countries: HashMap<String, Location>,
}

impl ParseContext<'_> {
    /// Every SIP section but the method budgets, which come from `[classes]`.
    pub(super) fn read_sip(
        &mut self,
        method_budgets: BTreeMap<String, MethodBudgets>,
        scanners: Option<&ScannersDoc>,
        destination_budgets: &BTreeMap<String, Spanned<RequestBudgetDoc>>,
        zones: [ZoneDoc<'_>; 2],
    ) -> SipRules {
        let budgets = self.read_destination_budgets(destination_budgets);
        let scanners = scanners.map(|doc| self.read_scanners(doc));
        // Actions may name a budget that has a mistake of its own: that is reported once.
        let budget_names: BTreeSet<&str> = destination_budgets
            .keys()
            .map(String::as_str)
            .filter(|name| !ACTIONS.contains(name))
            .collect();
        let mut rule_names = HashMap::new();
        let [trunk, access] =
            zones.map(|zone| self.read_zone_destinations(&zone, &budget_names, &mut rule_names));
        self.check_destination_capacity([&trunk, &access]);
        SipRules {
            method_budgets,
            scanners,
            destination_budgets: budgets,
            trunk,
            access,
        }
    }

    /// `{ rate = N, per = "1m", burst = M }`: `per` defaults to a second, `burst` to the rate.
    pub(super) fn read_request_budget(
        &mut self,
        label: &str,
        budget: &Spanned<RequestBudgetDoc>,
    ) -> Option<RequestBudget> {
        let doc = budget.get_ref();
        let per = match &doc.per {
            None => Duration::from_secs(1),
            Some(per) => match read_duration(per.get_ref()) {
                Ok(duration) if duration.is_zero() => {
                    self.report_at(per.span(), format!("{label}: per must be longer than 0"));
                    return None;
                }
                Ok(duration) => duration,
                Err(message) => {
                    self.report_at(per.span(), format!("{label}: per: {message}"));
                    return None;
                }
            },
        };
        let message = if doc.rate == 0 {
            "rate must be at least 1 request (leave the budget out for none)".to_string()
        } else if doc.burst == Some(0) {
            "burst must be at least 1 request".to_string()
        } else if per.as_nanos() / u128::from(doc.rate) < 1_000 {
            format!(
                "{} requests per {per:?} is more than one a microsecond",
                doc.rate
            )
        } else {
            return Some(RequestBudget {
                count: doc.rate,
                per,
                burst: doc.burst.unwrap_or(doc.rate),
            });
        };
        self.report_at(budget.span(), format!("{label}: {message}"));
        None
    }

    /// `[destination_budgets]`: per-source budgets that destination rules spend by name.
    fn read_destination_budgets(
        &mut self,
        budgets: &BTreeMap<String, Spanned<RequestBudgetDoc>>,
    ) -> BTreeMap<String, RequestBudget> {
        let mut checked = BTreeMap::new();
        for (name, budget) in budgets {
            if ACTIONS.contains(&name.as_str()) {
                self.report_at(
                    budget.span(),
                    format!("destination budget name '{name}' is reserved for the action"),
                );
            } else if !is_valid_class_name(name) {
                self.report_at(
                    budget.span(),
                    format!("destination budget {}", bad_name(name)),
                );
            }
            if let Some(budget) =
                self.read_request_budget(&format!("destination_budgets.{name}"), budget)
            {
                checked.insert(name.clone(), budget);
            }
        }
        if budgets.len() > DEST_BUDGET_SLOTS {
            let message = format!(
                "{} destination budgets; the filter holds at most {DEST_BUDGET_SLOTS}",
                budgets.len()
            );
            self.report(0, message);
        }
        checked
    }

    /// `[scanners]`: the shipped signatures (less `exclude`), then the policy's own.
    fn read_scanners(&mut self, doc: &ScannersDoc) -> Scanners {
        for name in &doc.exclude {
            if !BUILTIN_SIGNATURES
                .iter()
                .any(|(builtin, ..)| builtin == name.get_ref())
            {
                self.report_at(
                    name.span(),
                    format!(
                        "scanners.exclude: no built-in signature named '{}'",
                        name.get_ref()
                    ),
                );
            }
        }
        let mut signatures: Vec<_> = BUILTIN_SIGNATURES
            .iter()
            .filter(|_| doc.builtin)
            .filter(|(name, ..)| {
                !doc.exclude
                    .iter()
                    .any(|excluded| excluded.get_ref() == name)
            })
            .map(|(name, prefix, from)| Signature {
                name: (*name).to_string(),
                prefix: (*prefix).to_string(),
                from: *from,
                at: None,
            })
            .collect();
        for signature in &doc.signature {
            if let Some(checked) = self.read_signature(signature, &signatures) {
                signatures.push(checked);
            }
        }
        if signatures.len() > MAX_SIGNATURES {
            let message = format!(
                "{} scanner signatures; the filter holds at most {MAX_SIGNATURES}",
                signatures.len()
            );
            self.report(0, message);
        }
        let zones = doc
            .zones
            .clone()
            .unwrap_or_else(|| vec![ZoneSetting::Trunk, ZoneSetting::Access]);
        Scanners {
            signatures,
            ban: doc.ban,
            allowlisted: doc.allowlisted,
            trunk: zones.contains(&ZoneSetting::Trunk),
            access: zones.contains(&ZoneSetting::Access),
        }
    }

    /// One `[[scanners.signature]]`; `in_force` are the signatures before it.
    fn read_signature(&mut self, doc: &SignatureDoc, in_force: &[Signature]) -> Option<Signature> {
        let (name, prefix) = (doc.name.get_ref(), doc.prefix.get_ref());
        let mut valid = true;
        if !is_valid_class_name(name) {
            self.report_at(doc.name.span(), format!("signature {}", bad_name(name)));
            valid = false;
        } else if let Some(other) = in_force.iter().find(|other| other.name == *name) {
            let also = match &other.at {
                Some(at) => format!("also at {at}"),
                None => format!("a built-in signature; leave it out with exclude = [\"{name}\"]"),
            };
            self.report_at(
                doc.name.span(),
                format!("duplicate signature name '{name}' ({also})"),
            );
            valid = false;
        }
        if !is_valid_signature_prefix(prefix) {
            self.report_at(
                doc.prefix.span(),
                format!(
                    "signature {name}: prefix {prefix:?} must be 1 to {SIGNATURE_BYTES} printable \
                     ASCII characters, not starting with a space"
                ),
            );
            valid = false;
        } else if let Some(other) = in_force
            .iter()
            .find(|other| folded(&other.prefix) == folded(prefix))
        {
            self.report_at(
                doc.prefix.span(),
                format!(
                    "signature {name}: prefix '{prefix}' is already signature {}'s (case does \
                     not matter)",
                    other.name
                ),
            );
            valid = false;
        }
        valid.then(|| Signature {
            name: name.clone(),
            prefix: prefix.clone(),
            from: doc.from,
            at: Some(self.location(doc.name.span())),
        })
    }

    /// A zone's dial plan and destination rules; `None` when it has neither.
    fn read_zone_destinations(
        &mut self,
        zone: &ZoneDoc<'_>,
        budgets: &BTreeSet<&str>,
        rule_names: &mut HashMap<String, Location>,
    ) -> Option<Destinations> {
        let first_span = zone
            .dialplan
            .map(Spanned::span)
            .or_else(|| zone.destinations.first().map(Spanned::span))?;
        if !zone.has_ports {
            self.report_at(
                first_span,
                format!(
                    "destination rules for the {} zone, which has no ports",
                    zone.name
                ),
            );
        }
        let mut destinations = Destinations {
            dial_plan: DialPlanSettings::default(),
            default: DestinationAction::Allow,
            unparseable: DestinationAction::Allow,
            rules: Vec::new(),
        };
        if let Some(dialplan) = zone.dialplan {
            self.read_dial_plan(zone.name, dialplan.get_ref(), budgets, &mut destinations);
        }
        let mut state = ZoneState::default();
        for rule in zone.destinations {
            let rule = rule.get_ref();
            self.check_rule_name(&rule.name, rule_names);
            if rule.prefixes.is_empty() && rule.countries.is_empty() && rule.files.is_empty() {
                self.report_at(
                    rule.name.span(),
                    format!(
                        "destination rule {}: no prefixes, countries or files",
                        rule.name.get_ref()
                    ),
                );
            }
            let action = self.read_action(&rule.action, budgets);
            let mut entries = Vec::new();
            for prefix in &rule.prefixes {
                let at = self.location(prefix.span());
                match parse_destination_prefix(prefix.get_ref()) {
                    Ok(digits) => entries.push(PrefixEntry {
                        text: prefix.get_ref().trim().to_string(),
                        digits,
                        at,
                    }),
                    Err(message) => self.checker.report(&at.file, at.line, message),
                }
            }
            self.read_prefix_files(&rule.files, &mut entries);
            let mut prefixes = Vec::with_capacity(entries.len());
            for entry in entries {
                match state.written.get(&entry.digits) {
                    Some(other) => {
                        let message = format!(
                            "duplicate destination prefix '{}' (also at {other})",
                            entry.text
                        );
                        self.checker.report(&entry.at.file, entry.at.line, message);
                    }
                    None => {
                        state.written.insert(entry.digits.clone(), entry.at.clone());
                        prefixes.push((entry.digits, entry.at));
                    }
                }
            }
            destinations.rules.push(DestinationRule {
                name: rule.name.get_ref().clone(),
                prefixes,
                action,
            });
        }
        // Countries last: a prefix written in the zone takes the numbers it covers from the
        // country that holds them, as a longer prefix would.
        for (rule, doc) in destinations.rules.iter_mut().zip(zone.destinations) {
            for country in &doc.get_ref().countries {
                self.read_country(country, &mut state, &mut rule.prefixes);
            }
        }
        Some(destinations)
    }

    /// `dialplan`: the numbering plan, the default verdict and the one for no number.
    fn read_dial_plan(
        &mut self,
        zone: &str,
        doc: &DialPlanDoc,
        budgets: &BTreeSet<&str>,
        destinations: &mut Destinations,
    ) {
        let label = format!("{zone}.dialplan");
        let plan = &mut destinations.dial_plan;
        plan.country_code = self.read_digits(&label, "country_code", doc.country_code.as_ref(), 3);
        plan.national_prefix =
            self.read_digits(&label, "national_prefix", doc.national_prefix.as_ref(), 4);
        plan.international_prefixes = self.read_digit_list(
            &label,
            "international_prefixes",
            &doc.international_prefixes,
        );
        plan.tech_prefixes = self.read_digit_list(&label, "tech_prefixes", &doc.tech_prefixes);
        if let Some(default) = &doc.default {
            destinations.default = self.read_action(default, budgets);
        }
        destinations.unparseable = match doc.unparseable {
            None | Some(UnparseableSetting::Allow) => DestinationAction::Allow,
            Some(UnparseableSetting::Deny) => DestinationAction::Deny,
        };
    }

    /// A digit string of 1 to `max` digits; empty when left out or wrong.
    fn read_digits(
        &mut self,
        label: &str,
        field: &str,
        value: Option<&Spanned<String>>,
        max: usize,
    ) -> String {
        let Some(value) = value else {
            return String::new();
        };
        let text = value.get_ref();
        if !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_digit()) {
            text.clone()
        } else {
            self.report_at(
                value.span(),
                format!("{label}.{field}: '{text}' is not 1 to {max} digits"),
            );
            String::new()
        }
    }

    /// At most two digit strings of 1 to 4 digits each (the kernel's dial plan has two slots).
    fn read_digit_list(
        &mut self,
        label: &str,
        field: &str,
        values: &[Spanned<String>],
    ) -> Vec<String> {
        if let Some(third) = values.get(2) {
            self.report_at(third.span(), format!("{label}.{field}: at most 2"));
        }
        values
            .iter()
            .take(2)
            .map(|value| self.read_digits(label, field, Some(value), 4))
            .filter(|digits| !digits.is_empty())
            .collect()
    }

    /// "allow", "deny" or the name of a `[destination_budgets]` entry.
    fn read_action(
        &mut self,
        action: &Spanned<String>,
        budgets: &BTreeSet<&str>,
    ) -> DestinationAction {
        match action.get_ref().as_str() {
            "allow" => DestinationAction::Allow,
            "deny" => DestinationAction::Deny,
            name if budgets.contains(name) => DestinationAction::Budget(name.to_string()),
            name => {
                self.report_at(
                    action.span(),
                    format!(
                        "action '{name}': use \"allow\", \"deny\" or a [destination_budgets] name"
                    ),
                );
                DestinationAction::Allow
            }
        }
    }

    /// Rule names label metrics and events: like class names, unique in the policy, and not
    /// the names the zones' default and `unparseable` verdicts are counted under.
    fn check_rule_name(&mut self, name: &Spanned<String>, seen: &mut HashMap<String, Location>) {
        let at = self.location(name.span());
        let text = name.get_ref();
        if !is_valid_class_name(text) {
            self.report_at(name.span(), format!("rule {}", bad_name(text)));
        } else if ZONE_RULE_NAMES.contains(&text.as_str()) {
            self.report_at(
                name.span(),
                format!("rule name '{text}' is reserved for a zone's own verdict"),
            );
        } else if let Some(other) = seen.get(text) {
            let message = format!("duplicate rule name '{text}' (also at {other})");
            self.report_at(name.span(), message);
        } else {
            seen.insert(text.clone(), at);
        }
    }

    /// A rule's `files`: like the allow and deny files, relative to the policy, digest fed.
    fn read_prefix_files(&mut self, files: &[Spanned<String>], entries: &mut Vec<PrefixEntry>) {
        for file in files {
            let list_path = self.base_dir.join(file.get_ref());
            match fs::read_to_string(&list_path) {
                Ok(list_text) => {
                    self.digest.feed(list_text.as_bytes());
                    read_prefix_file(&mut self.checker, &list_path, &list_text, entries);
                }
                Err(error) => self.report_at(
                    file.span(),
                    format!("cannot read list file {}: {error}", list_path.display()),
                ),
            }
        }
    }

    /// One ISO code of `countries`: its prefixes, less those written in the zone.
    fn read_country(
        &mut self,
        country: &Spanned<String>,
        state: &mut ZoneState,
        prefixes: &mut Vec<(String, Location)>,
    ) {
        let at = self.location(country.span());
        let iso = country.get_ref().trim().to_ascii_uppercase();
        let covered = country_prefixes(&iso);
        if covered.is_empty() {
            self.report(at.line, format!("unknown country '{}'", country.get_ref()));
            return;
        }
        if let Some(other) = state.countries.get(&iso) {
            let message = format!("duplicate country '{iso}' (also at {other})");
            self.report(at.line, message);
            return;
        }
        state.countries.insert(iso, at.clone());
        prefixes.extend(
            covered
                .into_iter()
                .filter(|digits| !state.written.contains_key(digits))
                .map(|digits| (digits, at.clone())),
        );
    }

    /// Rules (with the zones' own two verdicts) and prefixes must fit the kernel's tables.
    fn check_destination_capacity(&mut self, zones: [&Option<Destinations>; 2]) {
        let zones: Vec<&Destinations> = zones.into_iter().flatten().collect();
        let rules: usize = zones.iter().map(|zone| zone.rules.len() + 2).sum();
        if rules > MAX_DESTINATION_RULES {
            let message = format!(
                "{} destination rules and {} zone verdicts (default, unparseable); the filter \
                 holds at most {MAX_DESTINATION_RULES} together",
                rules - 2 * zones.len(),
                2 * zones.len()
            );
            self.report(0, message);
        }
        let prefixes: usize = zones
            .iter()
            .flat_map(|zone| &zone.rules)
            .map(|rule| rule.prefixes.len())
            .sum();
        if prefixes > MAX_DESTINATION_PREFIXES {
            let message = format!(
                "{prefixes} destination prefixes; the filter holds at most \
                 {MAX_DESTINATION_PREFIXES}"
            );
            self.report(0, message);
        }
    }

    /// Where `span` starts in the policy file.
    fn location(&self, span: Range<usize>) -> Location {
        Location {
            file: self.path.to_path_buf(),
            line: self.line_at(span),
        }
    }
}

/// One prefix a line; `#` starts a comment; blank lines are fine. Problems point into the file.
fn read_prefix_file(
    checker: &mut Checker,
    list_path: &Path,
    list_text: &str,
    entries: &mut Vec<PrefixEntry>,
) {
    for (index, raw) in list_text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match parse_destination_prefix(entry) {
            Ok(digits) => entries.push(PrefixEntry {
                text: entry.to_string(),
                digits,
                at: Location {
                    file: list_path.to_path_buf(),
                    line: index + 1,
                },
            }),
            Err(message) => checker.report(list_path, index + 1, message),
        }
    }
}

/// E.164 digits, with an optional leading '+': the digits.
fn parse_destination_prefix(text: &str) -> Result<String, String> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!(
            "non-digit prefix '{text}': write E.164 digits, with an optional leading '+'"
        ));
    }
    if digits.len() > E164_DIGITS {
        return Err(format!(
            "prefix '{text}' has {} digits; E.164 numbers have at most {E164_DIGITS}",
            digits.len()
        ));
    }
    Ok(digits.to_string())
}

/// The prefixes that hold exactly the numbers [`countries::country_of`] gives `iso` (an upper
/// case ISO code); empty for an unknown one.
///
/// Each row of the country, split around the rows of other countries inside it
/// ([`countries::exceptions_of`]): "1" of US becomes the prefixes under "1" that hold no row
/// of Canada or of a Caribbean or Pacific member ("10", "11", "1200", "121", ...: 455 of them),
/// "7" of RU becomes "70" to "75", "78" and "79". A rule on the country therefore leaves the
/// other countries' numbers to other rules or the zone's default, which is what `countries`
/// says. (The alternative, the country's rows plus exception entries that restore whatever
/// else would apply, needs the verdicts of other rules in the trie: the tables' business, and
/// not expressible in [`DestinationRule`].)
pub(super) fn country_prefixes(iso: &str) -> Vec<String> {
    let own = countries::prefixes_of(iso);
    let others: Vec<&str> = countries::exceptions_of(iso)
        .iter()
        .map(|country| country.prefix)
        .collect();
    let mut prefixes = Vec::new();
    for prefix in &own {
        // A row inside another row of the same country is covered by the outer one, unless the
        // outer one is split around it (then the split leaves it out, and it comes in here).
        split_around(prefix, &own, &others, &mut prefixes);
    }
    prefixes.sort();
    prefixes.dedup();
    let covered_by_shorter = |prefix: &String| {
        (1..prefix.len()).any(|len| {
            prefixes
                .binary_search_by(|p| p.as_str().cmp(&prefix[..len]))
                .is_ok()
        })
    };
    let redundant: Vec<bool> = prefixes.iter().map(covered_by_shorter).collect();
    prefixes
        .into_iter()
        .zip(redundant)
        .filter_map(|(prefix, redundant)| (!redundant).then_some(prefix))
        .collect()
}

/// Pushes `prefix` when no row of `others` lies under it, else each of its ten extensions that
/// is not a row itself (the country's own rows are split on their own).
fn split_around(prefix: &str, own: &[&str], others: &[&str], out: &mut Vec<String>) {
    let inside = |other: &&str| other.len() > prefix.len() && other.starts_with(prefix);
    if !others.iter().any(inside) {
        out.push(prefix.to_string());
        return;
    }
    for digit in '0'..='9' {
        let longer = format!("{prefix}{digit}");
        if others.contains(&longer.as_str()) || own.contains(&longer.as_str()) {
            continue;
        }
        split_around(&longer, own, others, out);
    }
}

/// Printable ASCII, not starting with a space, and no longer than the kernel compares.
fn is_valid_signature_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= SIGNATURE_BYTES
        && !prefix.starts_with(' ')
        && prefix.bytes().all(|byte| (0x20..=0x7e).contains(&byte))
}

/// The prefix as the kernel compares it.
fn folded(prefix: &str) -> Vec<u8> {
    prefix.bytes().map(fold_case).collect()
}

/// The message for a name that is not a class-like name.
fn bad_name(name: &str) -> String {
    format!(
        "name '{name}': use 1 to {} letters, digits, '-' or '_'",
        sipguard_common::abi::CLASS_NAME_LEN - 1
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{super::parse, *};
    use crate::policy::{Policy, sip::BUILTIN_SIGNATURES};

    fn parse_ok(text: &str) -> Policy {
        match parse(text, Path::new("policy.toml")) {
            Ok(policy) => policy,
            Err(error) => panic!("{error}"),
        }
    }

    fn parse_err(text: &str) -> Vec<String> {
        match parse(text, Path::new("policy.toml")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(error) => error.diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    fn at(line: usize) -> Location {
        Location {
            file: PathBuf::from("policy.toml"),
            line,
        }
    }

    fn budget(count: u32, per: u64, burst: u32) -> RequestBudget {
        RequestBudget {
            count,
            per: Duration::from_secs(per),
            burst,
        }
    }

    #[test]
    fn no_sip_sections_give_no_sip_rules() {
        assert_eq!(
            parse_ok("[classes]\nx = { rate = 1 }\n").sip,
            SipRules::default()
        );
    }

    #[test]
    fn a_full_sip_policy_is_read() {
        let policy = parse_ok(
            r#"[trunk]
udp = [5060]
[access]
udp = [5070]
class = "phones"
[classes]
phones = { rate = 20, burst = 60, methods = { register = { rate = 1, burst = 5 }, invite = { rate = 2, burst = 6 }, options = { rate = 1, per = "1s" }, other = { rate = 10, burst = 20 } } }
carrier = { rate = 1000 }

[scanners]
builtin = true
exclude = ["sipsak"]
ban = true
zones = ["access"]
[[scanners.signature]]
name = "acme-dialer"
prefix = "Acme Dialer"
from = true

[destination_budgets]
international = { rate = 2, per = "1m", burst = 3 }

[access.dialplan]
country_code = "1"
national_prefix = "1"
international_prefixes = ["011"]
tech_prefixes = ["9", "81"]
unparseable = "deny"
default = "allow"

[[access.destinations]]
name = "premium"
prefixes = ["+1900", "1976", "881"]
action = "deny"

[[access.destinations]]
name = "high-risk"
countries = ["CU", "so"]
action = "deny"

[[access.destinations]]
name = "international"
prefixes = ["2", "3", "4",
  "5"]
action = "international"

[[trunk.destinations]]
name = "trunk-premium"
prefixes = ["1900"]
action = "deny"
"#,
        );
        let sip = &policy.sip;
        assert_eq!(
            sip.method_budgets,
            BTreeMap::from([(
                "phones".to_string(),
                MethodBudgets {
                    register: Some(budget(1, 1, 5)),
                    invite: Some(budget(2, 1, 6)),
                    options: Some(budget(1, 1, 1)),
                    other: Some(budget(10, 1, 20)),
                }
            )])
        );
        let scanners = sip.scanners.as_ref().unwrap();
        assert_eq!(scanners.signatures.len(), BUILTIN_SIGNATURES.len());
        assert!(scanners.signatures.iter().all(|s| s.name != "sipsak"));
        assert_eq!(
            scanners.signatures.last(),
            Some(&Signature {
                name: "acme-dialer".into(),
                prefix: "Acme Dialer".into(),
                from: true,
                at: Some(at(16)),
            })
        );
        assert!(scanners.ban && !scanners.allowlisted);
        assert!(!scanners.trunk && scanners.access);
        assert_eq!(
            sip.destination_budgets,
            BTreeMap::from([("international".to_string(), budget(2, 60, 3))])
        );
        let access = sip.access.as_ref().unwrap();
        assert_eq!(
            access.dial_plan,
            DialPlanSettings {
                country_code: "1".into(),
                national_prefix: "1".into(),
                international_prefixes: vec!["011".into()],
                tech_prefixes: vec!["9".into(), "81".into()],
            }
        );
        assert_eq!(access.default, DestinationAction::Allow);
        assert_eq!(access.unparseable, DestinationAction::Deny);
        assert_eq!(access.rules.len(), 3);
        assert_eq!(
            access.rules[0],
            DestinationRule {
                name: "premium".into(),
                prefixes: vec![
                    ("1900".into(), at(33)),
                    ("1976".into(), at(33)),
                    ("881".into(), at(33))
                ],
                action: DestinationAction::Deny,
            }
        );
        assert_eq!(access.rules[1].name, "high-risk");
        assert_eq!(
            access.rules[1].prefixes,
            [("53".to_string(), at(38)), ("252".to_string(), at(38))],
            "in the order the countries are written"
        );
        assert_eq!(
            access.rules[2].action,
            DestinationAction::Budget("international".into())
        );
        let lines: Vec<usize> = access.rules[2].prefixes.iter().map(|p| p.1.line).collect();
        assert_eq!(lines, [43, 43, 43, 44]);
        assert_eq!(
            sip.trunk,
            Some(Destinations {
                dial_plan: DialPlanSettings::default(),
                default: DestinationAction::Allow,
                unparseable: DestinationAction::Allow,
                rules: vec![DestinationRule {
                    name: "trunk-premium".into(),
                    prefixes: vec![("1900".into(), at(49))],
                    action: DestinationAction::Deny,
                }],
            }),
            "a zone with rules and no dial plan: empty plan, allow by default"
        );
    }

    #[test]
    fn method_budgets_read_in_table_form_too() {
        let policy = parse_ok(
            "[classes.phones]\nrate = 10\n[classes.phones.methods.register]\nrate = 1\nburst = 5\n\
             [classes.phones.methods.invite]\nrate = 30\nper = \"1m\"\n",
        );
        assert_eq!(
            policy.sip.method_budgets["phones"],
            MethodBudgets {
                register: Some(budget(1, 1, 5)),
                invite: Some(budget(30, 60, 30)),
                options: None,
                other: None,
            }
        );
        assert!(policy.sip.scanners.is_none() && policy.sip.access.is_none());
    }

    #[test]
    fn method_budgets_only_on_classes_and_checked() {
        let errors = parse_err(
            "[access]\nudp = [5070]\nnew_sources = { rate = 5, methods = { invite = { rate = 1 } } }\n",
        );
        assert!(
            errors[0].starts_with("policy.toml:3: unknown field `methods`"),
            "{errors:?}"
        );
        let errors = parse_err("[events]\ntotal = { rate = 5, methods = {} }\n");
        assert!(errors[0].contains("unknown field `methods`"), "{errors:?}");
        let errors = parse_err("[classes]\nx = { rate = 5, methods = { bye = { rate = 1 } } }\n");
        assert!(
            errors[0].starts_with("policy.toml:2: unknown field `bye`"),
            "{errors:?}"
        );
        let errors = parse_err(
            "[classes.x]\nrate = 5\n[classes.x.methods]\nregister = { rate = 0 }\n\
             invite = { rate = 1, burst = 0 }\noptions = { rate = 1, per = 0 }\n\
             other = { rate = 2000000, per = \"1s\" }\n",
        );
        assert_eq!(
            errors,
            [
                "policy.toml:4: class x: methods.register: rate must be at least 1 request \
                 (leave the budget out for none)",
                "policy.toml:5: class x: methods.invite: burst must be at least 1 request",
                "policy.toml:6: class x: methods.options: per must be longer than 0",
                "policy.toml:7: class x: methods.other: 2000000 requests per 1s is more than \
                 one a microsecond",
            ]
        );
        // One a microsecond is fine.
        parse_ok("[classes]\nx = { rate = 5, methods = { other = { rate = 1000000 } } }\n");
        let errors = parse_err(
            "[classes]\nx = { rate = 5, methods = { other = { rate = 1, per = \"soon\" } } }\n",
        );
        assert_eq!(
            errors,
            [
                "policy.toml:2: class x: methods.other: per: 'soon' is not a duration (e.g. 30s, \
                 15m, 2h, 1d)"
            ]
        );
    }

    #[test]
    fn builtin_signatures_can_be_left_out_one_by_one_or_all() {
        let names = |text: &str| -> Vec<String> {
            parse_ok(text)
                .sip
                .scanners
                .unwrap()
                .signatures
                .into_iter()
                .map(|s| s.name)
                .collect()
        };
        let all = names("[scanners]\n");
        assert_eq!(all.len(), BUILTIN_SIGNATURES.len());
        assert_eq!(all[0], "friendly-scanner");
        let fewer = names("[scanners]\nexclude = [\"sipsak\", \"smap\"]\n");
        assert_eq!(fewer.len(), BUILTIN_SIGNATURES.len() - 2);
        assert!(!fewer.contains(&"sipsak".to_string()) && !fewer.contains(&"smap".to_string()));
        let own = names(
            "[scanners]\nbuiltin = false\n[[scanners.signature]]\nname = \"sipsak\"\n\
             prefix = \"my-sipsak\"\n",
        );
        assert_eq!(
            own,
            ["sipsak"],
            "a built-in name is free once built-ins are off"
        );
        let scanners = parse_ok("[scanners]\n").sip.scanners.unwrap();
        assert!(scanners.trunk && scanners.access && !scanners.ban && !scanners.allowlisted);
        assert!(scanners.signatures.iter().all(|s| s.at.is_none()));
    }

    #[test]
    fn signature_mistakes_are_reported_with_lines() {
        let errors = parse_err(
            r#"[scanners]
exclude = ["sipsak", "nosuch"]
zones = ["trunk"]
[[scanners.signature]]
name = "sipvicious"
prefix = "x"
[[scanners.signature]]
name = "loud"
prefix = "SIPVICIOUS"
[[scanners.signature]]
name = "bad name"
prefix = " leading space"
[[scanners.signature]]
name = "long"
prefix = "0123456789012345678901234567890123"
[[scanners.signature]]
name = "ok"
prefix = "fine"
[[scanners.signature]]
name = "ok"
prefix = "fine too"
[[scanners.signature]]
name = "tab"
prefix = "a	b"
"#,
        );
        assert_eq!(
            errors,
            [
                "policy.toml:2: scanners.exclude: no built-in signature named 'nosuch'",
                "policy.toml:5: duplicate signature name 'sipvicious' (a built-in signature; \
                 leave it out with exclude = [\"sipvicious\"])",
                "policy.toml:9: signature loud: prefix 'SIPVICIOUS' is already signature \
                 sipvicious's (case does not matter)",
                "policy.toml:11: signature name 'bad name': use 1 to 23 letters, digits, '-' \
                 or '_'",
                "policy.toml:12: signature bad name: prefix \" leading space\" must be 1 to 31 \
                 printable ASCII characters, not starting with a space",
                "policy.toml:15: signature long: prefix \"0123456789012345678901234567890123\" \
                 must be 1 to 31 printable ASCII characters, not starting with a space",
                "policy.toml:20: duplicate signature name 'ok' (also at policy.toml:17)",
                "policy.toml:24: signature tab: prefix \"a\\tb\" must be 1 to 31 printable \
                 ASCII characters, not starting with a space",
            ]
        );
        let errors = parse_err("[scanners]\nzones = [\"core\"]\n");
        assert!(
            errors[0].starts_with("policy.toml:2: unknown variant `core`"),
            "{errors:?}"
        );
    }

    #[test]
    fn too_many_signatures_are_refused() {
        let own = |count: usize| -> String {
            (0..count)
                .map(|i| format!("[[scanners.signature]]\nname = \"s{i}\"\nprefix = \"tool{i}\"\n"))
                .collect()
        };
        let room = MAX_SIGNATURES - BUILTIN_SIGNATURES.len();
        parse_ok(&format!("[scanners]\n{}", own(room)));
        let errors = parse_err(&format!("[scanners]\n{}", own(room + 1)));
        assert_eq!(
            errors,
            [format!(
                "policy.toml: {} scanner signatures; the filter holds at most {MAX_SIGNATURES}",
                MAX_SIGNATURES + 1
            )]
        );
    }

    #[test]
    fn destination_mistakes_are_reported_with_lines() {
        let errors = parse_err(
            r#"[access]
udp = [5070]
[destination_budgets]
deny = { rate = 1 }
"a b" = { rate = 1, per = "1m" }
[access.dialplan]
country_code = "0044"
national_prefix = ""
international_prefixes = ["00", "011", "0011"]
tech_prefixes = ["9x"]
default = "sometimes"
[[access.destinations]]
name = "uk"
prefixes = ["+44", "44-20", "", "+1234567890123456"]
countries = ["GB", "XY"]
action = "deny"
[[access.destinations]]
name = "uk"
prefixes = ["44"]
countries = ["gb"]
action = "cheap"
[[access.destinations]]
name = "access-default"
action = "allow"
"#,
        );
        assert_eq!(
            errors,
            [
                "policy.toml:5: destination budget name 'a b': use 1 to 23 letters, digits, \
                 '-' or '_'",
                "policy.toml:4: destination budget name 'deny' is reserved for the action",
                "policy.toml:7: access.dialplan.country_code: '0044' is not 1 to 3 digits",
                "policy.toml:8: access.dialplan.national_prefix: '' is not 1 to 4 digits",
                "policy.toml:9: access.dialplan.international_prefixes: at most 2",
                "policy.toml:10: access.dialplan.tech_prefixes: '9x' is not 1 to 4 digits",
                "policy.toml:11: action 'sometimes': use \"allow\", \"deny\" or a \
                 [destination_budgets] name",
                "policy.toml:14: non-digit prefix '44-20': write E.164 digits, with an \
                 optional leading '+'",
                "policy.toml:14: non-digit prefix '': write E.164 digits, with an optional \
                 leading '+'",
                "policy.toml:14: prefix '+1234567890123456' has 16 digits; E.164 numbers \
                 have at most 15",
                "policy.toml:18: duplicate rule name 'uk' (also at policy.toml:13)",
                "policy.toml:21: action 'cheap': use \"allow\", \"deny\" or a \
                 [destination_budgets] name",
                "policy.toml:19: duplicate destination prefix '44' (also at policy.toml:14)",
                "policy.toml:23: rule name 'access-default' is reserved for a zone's own \
                 verdict",
                "policy.toml:23: destination rule access-default: no prefixes, countries or \
                 files",
                "policy.toml:15: unknown country 'XY'",
                "policy.toml:20: duplicate country 'GB' (also at policy.toml:15)",
            ]
        );
    }

    #[test]
    fn the_same_prefix_twice_in_a_zone_is_refused_but_not_across_zones() {
        let errors = parse_err(
            "[trunk]\nudp = [5060]\n[access]\nudp = [5070]\n\
             [[access.destinations]]\nname = \"a\"\nprefixes = [\"44\", \"+44\"]\naction = \"deny\"\n\
             [[access.destinations]]\nname = \"b\"\nprefixes = [\n  \"4470\",\n  \"+44\",\n]\n\
             action = \"allow\"\n",
        );
        assert_eq!(
            errors,
            [
                "policy.toml:7: duplicate destination prefix '+44' (also at policy.toml:7)",
                "policy.toml:13: duplicate destination prefix '+44' (also at policy.toml:7)",
            ]
        );
        let policy = parse_ok(
            "[trunk]\nudp = [5060]\n[access]\nudp = [5070]\n\
             [[access.destinations]]\nname = \"a\"\nprefixes = [\"44\"]\naction = \"deny\"\n\
             [[trunk.destinations]]\nname = \"b\"\nprefixes = [\"44\"]\naction = \"deny\"\n",
        );
        assert!(policy.sip.trunk.is_some() && policy.sip.access.is_some());
    }

    #[test]
    fn rules_for_a_zone_without_ports_are_refused() {
        // The access zone's dial plan alone names the zone, without ports.
        let errors =
            parse_err("[trunk]\nudp = [5060]\n\n[access.dialplan]\ncountry_code = \"44\"\n");
        assert_eq!(
            errors,
            ["policy.toml:4: destination rules for the access zone, which has no ports"]
        );
        let errors = parse_err(
            "[access]\nudp = [5070]\n[[trunk.destinations]]\nname = \"x\"\nprefixes = [\"1\"]\n\
             action = \"deny\"\n[[trunk.destinations]]\nname = \"y\"\nprefixes = [\"2\"]\n\
             action = \"deny\"\n",
        );
        assert_eq!(
            errors,
            ["policy.toml:3: destination rules for the trunk zone, which has no ports"]
        );
        // Destinations without a dial plan, and a dial plan without destinations: both zones
        // get their rules.
        let policy = parse_ok(
            "[trunk]\nudp = [5060]\n[trunk.dialplan]\nunparseable = \"deny\"\n\
             [access]\nudp = [5070]\n",
        );
        let trunk = policy.sip.trunk.unwrap();
        assert_eq!(trunk.unparseable, DestinationAction::Deny);
        assert!(trunk.rules.is_empty());
        assert_eq!(policy.sip.access, None);
    }

    #[test]
    fn destination_budgets_are_checked_and_counted() {
        let budgets: String = (0..=DEST_BUDGET_SLOTS)
            .map(|i| format!("b{i} = {{ rate = 1 }}\n"))
            .collect();
        let errors = parse_err(&format!("[destination_budgets]\n{budgets}"));
        assert_eq!(
            errors,
            [format!(
                "policy.toml: {} destination budgets; the filter holds at most \
                 {DEST_BUDGET_SLOTS}",
                DEST_BUDGET_SLOTS + 1
            )]
        );
        let errors = parse_err(
            "[destination_budgets]\nslow = { rate = 0, per = \"1m\" }\n[access]\nudp = [5070]\n\
             [access.dialplan]\ndefault = \"slow\"\n",
        );
        assert_eq!(
            errors,
            [
                "policy.toml:2: destination_budgets.slow: rate must be at least 1 request \
                 (leave the budget out for none)"
            ],
            "a budget with a mistake is reported once, not again where it is used"
        );
        let policy = parse_ok(
            "[destination_budgets]\nworld = { rate = 10, per = 3600 }\n[access]\nudp = [5070]\n\
             [access.dialplan]\ndefault = \"world\"\n",
        );
        assert_eq!(
            policy.sip.destination_budgets["world"],
            budget(10, 3600, 10)
        );
        assert_eq!(
            policy.sip.access.unwrap().default,
            DestinationAction::Budget("world".into())
        );
    }

    #[test]
    fn destination_list_files_are_read_with_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("premium.txt");
        fs::write(
            &list,
            "# premium ranges\n+1900\n\n1976  # NANP premium\n881\n",
        )
        .unwrap();
        let policy_path = dir.path().join("policy.toml");
        let policy_text = "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"premium\"\n\
                           files = [\"premium.txt\"]\naction = \"deny\"\n";
        fs::write(&policy_path, policy_text).unwrap();
        let policy = Policy::load(&policy_path).unwrap();
        let rule = &policy.sip.access.as_ref().unwrap().rules[0];
        let read: Vec<(&str, usize)> = rule
            .prefixes
            .iter()
            .map(|(digits, at)| (digits.as_str(), at.line))
            .collect();
        assert_eq!(read, [("1900", 2), ("1976", 4), ("881", 5)]);
        assert_eq!(rule.prefixes[0].1.file, list);

        // The digest covers the prefix files too.
        let before = policy.source.unwrap().digest;
        fs::write(&list, "1900\n").unwrap();
        assert_ne!(
            Policy::load(&policy_path).unwrap().source.unwrap().digest,
            before
        );

        fs::write(&list, "1900\n19OO\n+44\n").unwrap();
        fs::write(
            &policy_path,
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"premium\"\n\
             prefixes = [\"44\"]\nfiles = [\"premium.txt\",\n  \"gone.txt\"]\naction = \"deny\"\n",
        )
        .unwrap();
        let errors: Vec<String> = Policy::load(&policy_path)
            .unwrap_err()
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        let policy_name = policy_path.display();
        assert_eq!(
            errors,
            [
                format!(
                    "{}:2: non-digit prefix '19OO': write E.164 digits, with an optional \
                     leading '+'",
                    list.display()
                ),
                format!(
                    "{policy_name}:7: cannot read list file {}: No such file or directory \
                     (os error 2)",
                    dir.path().join("gone.txt").display()
                ),
                format!(
                    "{}:3: duplicate destination prefix '+44' (also at {policy_name}:5)",
                    list.display()
                ),
            ]
        );
    }

    #[test]
    fn destination_rules_and_prefixes_must_fit_the_filter() {
        // Two zones with rules: four of the ids go to their default and unparseable verdicts.
        let rules = |count: usize, zone: &str| -> String {
            (0..count)
                .map(|i| {
                    format!(
                        "[[{zone}.destinations]]\nname = \"{zone}{i}\"\nprefixes = [\"{i}\"]\n\
                         action = \"deny\"\n"
                    )
                })
                .collect()
        };
        let zones = "[trunk]\nudp = [5060]\n[access]\nudp = [5070]\n";
        let half = (MAX_DESTINATION_RULES - 4) / 2;
        let rest = MAX_DESTINATION_RULES - 4 - half;
        parse_ok(&format!(
            "{zones}{}{}",
            rules(half, "trunk"),
            rules(rest, "access")
        ));
        let errors = parse_err(&format!(
            "{zones}{}{}",
            rules(half, "trunk"),
            rules(rest + 1, "access")
        ));
        assert_eq!(
            errors,
            [format!(
                "policy.toml: {} destination rules and 4 zone verdicts (default, unparseable); \
                 the filter holds at most {MAX_DESTINATION_RULES} together",
                MAX_DESTINATION_RULES - 3
            )]
        );

        let dir = tempfile::tempdir().unwrap();
        let prefixes: String = (0..=MAX_DESTINATION_PREFIXES)
            .map(|i| format!("{}\n", 1_000_000 + i))
            .collect();
        fs::write(dir.path().join("many.txt"), prefixes).unwrap();
        let policy_path = dir.path().join("policy.toml");
        fs::write(
            &policy_path,
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"many\"\n\
             files = [\"many.txt\"]\naction = \"deny\"\n",
        )
        .unwrap();
        let error = Policy::load(&policy_path).unwrap_err();
        assert_eq!(
            error.diagnostics[0].message,
            format!(
                "{} destination prefixes; the filter holds at most {MAX_DESTINATION_PREFIXES}",
                MAX_DESTINATION_PREFIXES + 1
            )
        );
    }

    #[test]
    fn a_country_holds_its_own_numbers_only() {
        let us = country_prefixes("US");
        assert!(us.len() > 100 && us.len() < 2000, "{}", us.len());
        for prefix in &us {
            assert_eq!(
                countries::country_of(prefix).map(|(_, c)| c.iso),
                Some("US"),
                "{prefix}"
            );
        }
        for (number, inside) in [
            ("12125550100", true),
            ("18005550100", true),
            ("19005550100", true),
            ("14165550100", false), // CA
            ("18765550100", false), // JM
            ("17875550100", false), // PR
        ] {
            assert_eq!(
                us.iter().any(|p| number.starts_with(p.as_str())),
                inside,
                "{number}"
            );
        }
        assert_eq!(
            country_prefixes("RU"),
            ["70", "71", "72", "73", "74", "75", "78", "79"]
        );
        assert_eq!(country_prefixes("KZ"), ["76", "77"]);
        assert_eq!(country_prefixes("GB"), ["44"]);
        let italy = country_prefixes("IT");
        assert!(!italy.contains(&"39".to_string()));
        assert!(italy.iter().all(|p| !"3906698".starts_with(p.as_str())));
        assert!(country_prefixes("XY").is_empty());

        // A prefix written in the zone keeps it; the country takes the rest.
        let policy = parse_ok(
            "[access]\nudp = [5070]\n[[access.destinations]]\nname = \"russia\"\n\
             countries = [\"RU\"]\naction = \"deny\"\n[[access.destinations]]\nname = \"moscow\"\n\
             prefixes = [\"74\"]\naction = \"allow\"\n",
        );
        let rules = policy.sip.access.unwrap().rules;
        let russia: Vec<&str> = rules[0].prefixes.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(russia, ["70", "71", "72", "73", "75", "78", "79"]);
        assert_eq!(rules[1].prefixes[0].0, "74");
    }
}
