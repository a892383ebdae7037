//! The SIP rules of a policy (method budgets, scanner signatures, the INVITE destination
//! firewall), as the policy file states them, checked.

use std::{collections::BTreeMap, time::Duration};

use sipguard_common::abi::{RULE_SLOTS, SIGNATURE_SLOTS};

use super::Location;

/// Scanner signatures in force at most, the shipped ones included (the kernel's ids 1..=63).
pub const MAX_SIGNATURES: usize = SIGNATURE_SLOTS as usize - 1;
/// Destination rules at most (the kernel's ids 1..=255), counting the default and the
/// `unparseable` verdict of each zone with destination rules, which take an id each.
pub const MAX_DESTINATION_RULES: usize = RULE_SLOTS as usize - 1;
/// Destination prefixes of all rules together at most. The kernel's trie
/// (`abi::MAX_DEST_PREFIXES`, 65,536) also holds the E.164 country codes of each zone.
pub const MAX_DESTINATION_PREFIXES: usize = 65_000;

/// Requests of one method per source: `count` per `per`, `burst` back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBudget {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

/// A class's budgets by method (`None`: not budgeted by method).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MethodBudgets {
    pub register: Option<RequestBudget>,
    pub invite: Option<RequestBudget>,
    pub options: Option<RequestBudget>,
    /// Every other request (ACK, BYE, SUBSCRIBE, MESSAGE, ...); responses never count.
    pub other: Option<RequestBudget>,
}

impl MethodBudgets {
    /// In the kernel's slot order (`abi::method_budget_slot`).
    pub fn slots(&self) -> [Option<RequestBudget>; 4] {
        [self.register, self.invite, self.options, self.other]
    }

    pub fn is_empty(&self) -> bool {
        self.slots().iter().all(Option::is_none)
    }
}

/// One scanner signature: a case-insensitive prefix of the User-Agent, and of the From display
/// name when `from` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The metric label (`sipguard_signature_matches_total{signature=...}`).
    pub name: String,
    /// As written; compared case-insensitively. 1..=31 bytes of printable ASCII.
    pub prefix: String,
    pub from: bool,
    /// `None` for the shipped ones.
    pub at: Option<Location>,
}

/// `[scanners]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanners {
    /// The signatures in force: the shipped ones (unless `builtin = false`, minus `exclude`),
    /// then the policy's own.
    pub signatures: Vec<Signature>,
    /// A match bans a source on no allowlist at once, for the `[bans]` TTL.
    pub ban: bool,
    /// Allowlisted sources are checked too (by default they are exempt).
    pub allowlisted: bool,
    /// Zones whose requests are checked (default: both).
    pub trunk: bool,
    pub access: bool,
}

/// What a destination rule, a zone's default or its `unparseable` setting does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestinationAction {
    Allow,
    Deny,
    /// Spend the named per-source `[destination_budgets]` budget.
    Budget(String),
}

/// A zone's numbering plan, as digit strings (each 1..=4 digits; empty: not set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DialPlanSettings {
    pub country_code: String,
    pub national_prefix: String,
    /// At most 2.
    pub international_prefixes: Vec<String>,
    /// At most 2 (e.g. "9" for an outside line).
    pub tech_prefixes: Vec<String>,
}

/// One `[[trunk|access.destinations]]` rule: its prefixes (E.164 digits, without '+'), from
/// `prefixes`, `countries` and `files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationRule {
    /// The metric label and the name in events; unique in the policy.
    pub name: String,
    /// E.164 digit prefixes with where each was written.
    pub prefixes: Vec<(String, Location)>,
    pub action: DestinationAction,
}

/// The INVITE destination firewall of one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destinations {
    pub dial_plan: DialPlanSettings,
    /// Numbers no rule covers.
    pub default: DestinationAction,
    /// INVITEs whose Request-URI holds no number: `Allow` or `Deny`.
    pub unparseable: DestinationAction,
    pub rules: Vec<DestinationRule>,
}

/// Every SIP rule of a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipRules {
    /// By class name (classes without method budgets are absent).
    pub method_budgets: BTreeMap<String, MethodBudgets>,
    pub scanners: Option<Scanners>,
    /// `[destination_budgets]`: at most `abi::DEST_BUDGET_SLOTS`, by name.
    pub destination_budgets: BTreeMap<String, RequestBudget>,
    pub trunk: Option<Destinations>,
    pub access: Option<Destinations>,
}

impl SipRules {
    pub fn is_empty(&self) -> bool {
        self.method_budgets.is_empty()
            && self.scanners.is_none()
            && self.trunk.is_none()
            && self.access.is_none()
    }
}

/// The scanner signatures sipguard ships: User-Agents of well-known SIP scanners and attack
/// tools (SIPVicious also names itself in the From display name). Matched as case-insensitive
/// prefixes. `(name, prefix, from)`.
pub const BUILTIN_SIGNATURES: [(&str, &str, bool); 13] = [
    ("friendly-scanner", "friendly-scanner", true),
    ("sipvicious", "sipvicious", true),
    ("sipcli", "sipcli", false),
    ("sip-scan", "sip-scan", false),
    ("iwar", "iWar", false),
    ("sipsak", "sipsak", false),
    ("vaxsipuseragent", "VaxSIPUserAgent", false),
    ("pplsip", "pplsip", false),
    ("sippts", "SIPPTS", false),
    ("sundayddr", "sundayddr", false),
    ("smap", "smap", false),
    ("sivus", "SIVuS", false),
    ("voiper", "VoIPER", false),
];
