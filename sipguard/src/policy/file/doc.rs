//! The shape of a policy file as serde reads it: unknown keys and wrong types are refused here,
//! values are checked by the readers of each section.

use std::collections::BTreeMap;

use serde::Deserialize;
use sipguard_common::abi::{FragmentPolicy, Mode};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyDoc {
    pub(super) mode: Option<ModeSetting>,
    pub(super) fragments: Option<FragmentSetting>,
    pub(super) ipv6_prefix: Option<Spanned<u8>>,
    pub(super) trunk: Option<PortsDoc>,
    pub(super) access: Option<AccessDoc>,
    pub(super) bans: Option<BansDoc>,
    pub(super) events: Option<EventsDoc>,
    pub(super) auth_failures: Option<AuthFailuresDoc>,
    pub(super) verified: Option<VerifiedDoc>,
    #[serde(default)]
    pub(super) classes: BTreeMap<String, Spanned<ClassDoc>>,
    #[serde(default)]
    pub(super) allow: Vec<ListDoc>,
    #[serde(default)]
    pub(super) deny: Vec<ListDoc>,
    pub(super) scanners: Option<ScannersDoc>,
    pub(super) lists: Option<RemoteListsDoc>,
    pub(super) fleet: Option<FleetDoc>,
    #[serde(default)]
    pub(super) destination_budgets: BTreeMap<String, Spanned<RequestBudgetDoc>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum ModeSetting {
    Enforce,
    Monitor,
}

impl From<ModeSetting> for Mode {
    fn from(setting: ModeSetting) -> Self {
        match setting {
            ModeSetting::Enforce => Mode::Enforce,
            ModeSetting::Monitor => Mode::Monitor,
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum FragmentSetting {
    Inherit,
    Source,
    Pass,
}

impl From<FragmentSetting> for FragmentPolicy {
    fn from(setting: FragmentSetting) -> Self {
        match setting {
            FragmentSetting::Inherit => FragmentPolicy::Inherit,
            FragmentSetting::Source => FragmentPolicy::Source,
            FragmentSetting::Pass => FragmentPolicy::Pass,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortsDoc {
    #[serde(default)]
    pub(super) udp: Vec<Spanned<u16>>,
    #[serde(default)]
    pub(super) tcp: Vec<Spanned<u16>>,
    #[serde(default)]
    pub(super) sctp: Vec<Spanned<u16>>,
    #[serde(default)]
    pub(super) count_methods: bool,
    pub(super) dialplan: Option<Spanned<DialPlanDoc>>,
    #[serde(default)]
    pub(super) destinations: Vec<Spanned<DestinationDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessDoc {
    #[serde(default)]
    pub(super) udp: Vec<Spanned<u16>>,
    #[serde(default)]
    pub(super) tcp: Vec<Spanned<u16>>,
    #[serde(default)]
    pub(super) sctp: Vec<Spanned<u16>>,
    #[serde(default)]
    pub(super) count_methods: bool,
    pub(super) class: Option<Spanned<String>>,
    pub(super) new_sources: Option<Spanned<BudgetDoc>>,
    /// `open`, `under-attack` or `always`: when unverified sources may send only what a
    /// registration needs.
    pub(super) unverified: Option<Spanned<String>>,
    /// What they may send then (`["REGISTER"]` by default).
    pub(super) unverified_methods: Option<Spanned<Vec<String>>>,
    pub(super) dialplan: Option<Spanned<DialPlanDoc>>,
    #[serde(default)]
    pub(super) destinations: Vec<Spanned<DestinationDoc>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetDoc {
    pub(super) rate: u32,
    pub(super) burst: Option<u32>,
}

/// A `[classes]` entry: a packet budget, and request budgets by method (which only classes
/// have: `new_sources` and `[events]` refuse `methods`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClassDoc {
    pub(super) rate: u32,
    pub(super) burst: Option<u32>,
    pub(super) methods: Option<MethodsDoc>,
}

impl ClassDoc {
    pub(super) fn budget(&self) -> BudgetDoc {
        BudgetDoc {
            rate: self.rate,
            burst: self.burst,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MethodsDoc {
    pub(super) register: Option<Spanned<RequestBudgetDoc>>,
    pub(super) invite: Option<Spanned<RequestBudgetDoc>>,
    pub(super) options: Option<Spanned<RequestBudgetDoc>>,
    pub(super) other: Option<Spanned<RequestBudgetDoc>>,
}

/// `rate` requests per `per` (default one second), `burst` back to back (default the rate).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestBudgetDoc {
    pub(super) rate: u32,
    pub(super) per: Option<Spanned<DurationDoc>>,
    pub(super) burst: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsDoc {
    pub(super) per_source: Option<Spanned<BudgetDoc>>,
    pub(super) total: Option<Spanned<BudgetDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BansDoc {
    pub(super) threshold: Option<u32>,
    pub(super) window: Option<Spanned<DurationDoc>>,
    pub(super) ttl: Option<Spanned<DurationDoc>>,
}

/// `[auth_failures]`: the SBC's 401/407/403 answers ban a client.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFailuresDoc {
    pub(super) threshold: Option<u32>,
    pub(super) window: Option<Spanned<DurationDoc>>,
    pub(super) ttl: Option<Spanned<DurationDoc>>,
    pub(super) grace: Option<Spanned<DurationDoc>>,
}

/// `[verified]`: a 200 OK to REGISTER verifies its client.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifiedDoc {
    pub(super) enabled: Option<bool>,
    pub(super) class: Option<Spanned<String>>,
    pub(super) max_lifetime: Option<Spanned<DurationDoc>>,
    pub(super) default_lifetime: Option<Spanned<DurationDoc>>,
}

/// Seconds, or text such as `90s`, `15m`, `2h`, `1d`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum DurationDoc {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListDoc {
    pub(super) name: Option<String>,
    pub(super) class: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) files: Vec<Spanned<String>>,
    /// Lists to fetch (allow entries only): plain text, or JSON with `json_path`.
    #[serde(default)]
    pub(super) urls: Vec<Spanned<String>>,
    /// Hostnames to resolve (A/AAAA; `_service._proto.name`: SRV targets).
    #[serde(default)]
    pub(super) hosts: Vec<Spanned<String>>,
    pub(super) json_path: Option<Spanned<String>>,
    pub(super) refresh: Option<Spanned<DurationDoc>>,
    pub(super) max_shrink: Option<Spanned<f64>>,
}

/// `[lists]`: defaults of the URLs and hostnames of `[[allow]]` entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetDoc {
    pub(super) redis: Spanned<String>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoteListsDoc {
    pub(super) refresh: Option<Spanned<DurationDoc>>,
    pub(super) max_shrink: Option<Spanned<f64>>,
    pub(super) timeout: Option<Spanned<DurationDoc>>,
    /// `198.18.3.53`, `198.18.3.53:5353`, `[2001:db8::53]:53`.
    pub(super) dns_server: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScannersDoc {
    #[serde(default = "yes")]
    pub(super) builtin: bool,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) ban: bool,
    #[serde(default)]
    pub(super) allowlisted: bool,
    pub(super) zones: Option<Vec<ZoneSetting>>,
    #[serde(default)]
    pub(super) signature: Vec<SignatureDoc>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ZoneSetting {
    Trunk,
    Access,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignatureDoc {
    pub(super) name: Spanned<String>,
    pub(super) prefix: Spanned<String>,
    #[serde(default)]
    pub(super) from: bool,
}

/// `[trunk.dialplan]`, `[access.dialplan]`: digit strings, so that leading zeros survive.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DialPlanDoc {
    pub(super) country_code: Option<Spanned<String>>,
    pub(super) national_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) international_prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) tech_prefixes: Vec<Spanned<String>>,
    pub(super) unparseable: Option<UnparseableSetting>,
    pub(super) default: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum UnparseableSetting {
    Allow,
    Deny,
}

/// `[[trunk.destinations]]`, `[[access.destinations]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DestinationDoc {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) countries: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) files: Vec<Spanned<String>>,
    pub(super) action: Spanned<String>,
}
