//! Fleet mode: several SBC hosts share what they learn and what their operators decide
//! (automatic and manual bans, runtime allow and deny entries, the lockdown) through Redis.
//!
//! This module is the host's side of it, with no network: what of the kernel state is this
//! host's own to share ([`own_state`]), how an item another host shared is applied to the
//! kernel ([`apply_remote`]), and the record of which host each received entry came from
//! ([`Origins`]). The daemon (`daemon::fleet`) moves items between here and Redis.
//!
//! Received entries are marked in the kernel (ban flag [`ban_flags::FLEET`], list origin
//! [`Origin::Fleet`]), so a host never shares them again, also after a restart: no loops.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sipguard_common::{
    abi::{Ban, BanReason, Origin, SourceKey, ban_flags},
    budget::NANOS,
    verdict::Lockdown,
};

pub use crate::policy::fleet::{FleetSettings, check_name, check_redis_url, default_host_name};
use crate::{
    live::LiveError,
    pins::Target,
    policy::{Prefix, class_name, source_addr},
    report::lockdown_name,
    state::{List, LiveState, State, StateError},
    time::{boot_now_ns, boot_ns_to_unix, now_unix},
};

/// What one shared item is about: its Redis key below `sipguard:{fleet}:state:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A banned address (IPv4) or budget prefix (IPv6).
    Ban(IpNet),
    Allow(IpNet),
    Deny(IpNet),
    /// The fleet's lockdown (one for all hosts).
    Lockdown,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Ban(net) => write!(f, "ban:{net}"),
            Key::Allow(net) => write!(f, "allow:{net}"),
            Key::Deny(net) => write!(f, "deny:{net}"),
            Key::Lockdown => f.write_str("lockdown"),
        }
    }
}

impl std::str::FromStr for Key {
    type Err = String;

    fn from_str(text: &str) -> Result<Key, String> {
        if text == "lockdown" {
            return Ok(Key::Lockdown);
        }
        let (kind, net) = text
            .split_once(':')
            .ok_or_else(|| format!("'{text}' is no fleet key"))?;
        let net: IpNet = net
            .parse()
            .map_err(|_| format!("'{text}': '{net}' is no address or prefix"))?;
        match kind {
            "ban" => Ok(Key::Ban(net)),
            "allow" => Ok(Key::Allow(net)),
            "deny" => Ok(Key::Deny(net)),
            _ => Err(format!("'{text}' is no fleet key")),
        }
    }
}

/// What a shared item says, as JSON in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Value {
    Ban {
        /// [`BanReason::name`].
        reason: String,
        expires_unix: u64,
    },
    Allow {
        /// The budget class by name (applied only where the receiving policy has it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<String>,
    },
    Deny,
    Lockdown {
        /// [`lockdown_name`]: `off`, `allowlisted`, `allowlisted+verified`.
        level: String,
    },
}

/// A shared item as it travels: what, and which host shared it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub origin: String,
    #[serde(flatten)]
    pub value: Value,
}

/// The items of one host, by key.
pub type Items = BTreeMap<Key, Value>;

/// This host's own share of the kernel state of `state`: bans in force that its data plane or
/// its operator issued (not would-be bans, not received ones), its runtime allow and deny
/// entries, and its lockdown.
pub fn own_state(state: &State) -> Result<Items, StateError> {
    let mut items = own_bans(state)?;
    items.extend(own_entries(state)?);
    Ok(items)
}

/// The bans of [`own_state`].
pub fn own_bans(state: &State) -> Result<Items, StateError> {
    let mut items = Items::new();
    let now = boot_now_ns();
    for (key, ban) in state.bans()? {
        if ban.expires_at_ns <= now || ban.flags & (ban_flags::WOULD_BE | ban_flags::FLEET) != 0 {
            continue;
        }
        items.insert(
            Key::Ban(ban_net(&key)),
            Value::Ban {
                reason: BanReason::from_u8(ban.reason)
                    .map_or("unknown", BanReason::name)
                    .to_string(),
                expires_unix: boot_ns_to_unix(ban.expires_at_ns),
            },
        );
    }
    Ok(items)
}

/// The runtime entries and the lockdown of [`own_state`].
pub fn own_entries(state: &State) -> Result<Items, StateError> {
    let mut items = Items::new();
    let generation = state.active_generation()?;
    let policy = state.policy(generation)?;
    for list in [List::Allow, List::Deny] {
        for (prefix, value) in state.rules(generation, list)? {
            if value.origin != Origin::Runtime as u8 {
                continue;
            }
            let (key, value) = match list {
                List::Allow => (
                    Key::Allow(prefix.net()),
                    Value::Allow {
                        class: (value.class != 0).then(|| {
                            class_name(
                                &policy.classes[usize::from(value.class) % policy.classes.len()],
                            )
                        }),
                    },
                ),
                List::Deny => (Key::Deny(prefix.net()), Value::Deny),
            };
            items.insert(key, value);
        }
    }
    items.insert(
        Key::Lockdown,
        Value::Lockdown {
            level: lockdown_name(Lockdown::from_flags(policy.header.flags)).to_string(),
        },
    );
    Ok(items)
}

/// A ban key as a network: the address (IPv4) or the budget prefix (IPv6).
pub fn ban_net(key: &SourceKey) -> IpNet {
    match source_addr(key) {
        IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
        v6 => IpNet::new(v6, key.prefix_len).map_or(IpNet::from(v6), |net| net.trunc()),
    }
}

fn lockdown_named(name: &str) -> Option<Lockdown> {
    [
        Lockdown::Off,
        Lockdown::Allowlisted,
        Lockdown::AllowlistedAndVerified,
    ]
    .into_iter()
    .find(|level| lockdown_name(*level) == name)
}

/// What became of one received item on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel state changed.
    Applied,
    /// Already as the change says (the same change twice, a resync).
    Same,
    /// This host's own entry (or its policy's) is there and stays.
    Own,
    /// Nothing to do: a ban that has run out.
    Stale,
    /// Not applied, for this reason (reported, never silently dropped).
    Refused(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A ban of a source this host's policy allowlists.
    Allowlisted,
    /// The item does not fit this host (an IPv6 ban of another budget prefix, a bad value).
    Unusable,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::Allowlisted, Refusal::Unusable];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Allowlisted => "allowlisted",
            Refusal::Unusable => "unusable",
        }
    }
}

/// Applies what another host shared (`Some`) or withdrew (`None`) under `key`. Only entries
/// received from the fleet are ever replaced or removed: this host's own bans and entries, and
/// its policy's, stay as they are.
pub fn apply_remote(
    live: &mut LiveState,
    key: Key,
    value: Option<&Value>,
) -> Result<Outcome, LiveError> {
    Ok(apply_remote_batch(live, &[(key, value)])?[0])
}

/// [`apply_remote`] for many changes at once: the running policy is read once, and the
/// manual-ban mark refreshed once (a burst of bans costs a lookup and a write each).
pub fn apply_remote_batch(
    live: &mut LiveState,
    changes: &[(Key, Option<&Value>)],
) -> Result<Vec<Outcome>, LiveError> {
    let generation = live.active_generation()?;
    let ipv6_prefix = live.policy(generation)?.header.ipv6_budget_prefix;
    let mut batch = Batch {
        live,
        generation,
        ipv6_prefix,
        manual_bans_changed: false,
    };
    let mut outcomes = Vec::with_capacity(changes.len());
    for (key, value) in changes {
        outcomes.push(batch.apply(*key, *value)?);
    }
    if batch.manual_bans_changed {
        batch.live.refresh_manual_ban_flag()?;
    }
    Ok(outcomes)
}

struct Batch<'a> {
    live: &'a mut LiveState,
    generation: u32,
    ipv6_prefix: u8,
    manual_bans_changed: bool,
}

impl Batch<'_> {
    /// The ban key as the data plane makes it; `None` for an IPv4 range or an IPv6 prefix of
    /// another length (not bannable here).
    fn ban_key(&self, net: IpNet) -> Option<SourceKey> {
        crate::live::ban_key(&net, self.ipv6_prefix).ok()
    }

    fn apply(&mut self, key: Key, value: Option<&Value>) -> Result<Outcome, LiveError> {
        let live = &mut *self.live;
        match (key, value) {
            (
                Key::Ban(net),
                Some(Value::Ban {
                    reason,
                    expires_unix,
                }),
            ) => self.ban(net, reason, *expires_unix),
            (Key::Ban(net), None) => self.unban(net),
            (Key::Allow(net), Some(Value::Allow { class })) => {
                add_entry(live, List::Allow, net, class.as_deref())
            }
            (Key::Deny(net), Some(Value::Deny)) => add_entry(live, List::Deny, net, None),
            (Key::Allow(net), None) => remove_entry(live, List::Allow, net),
            (Key::Deny(net), None) => remove_entry(live, List::Deny, net),
            (Key::Lockdown, Some(Value::Lockdown { level })) => {
                let Some(wanted) = lockdown_named(level) else {
                    return Ok(Outcome::Refused(Refusal::Unusable));
                };
                let flags = live.policy(live.active_generation()?)?.header.flags;
                if Lockdown::from_flags(flags) == wanted {
                    return Ok(Outcome::Same);
                }
                live.set_lockdown(wanted)?;
                Ok(Outcome::Applied)
            }
            (Key::Lockdown, None) => Ok(Outcome::Same),
            _ => Ok(Outcome::Refused(Refusal::Unusable)),
        }
    }

    fn ban(&mut self, net: IpNet, reason: &str, expires_unix: u64) -> Result<Outcome, LiveError> {
        let now_unix = now_unix();
        if expires_unix <= now_unix {
            return Ok(Outcome::Stale);
        }
        let Some(reason) = BanReason::ALL.into_iter().find(|r| r.name() == reason) else {
            return Ok(Outcome::Refused(Refusal::Unusable));
        };
        let Some(key) = self.ban_key(net) else {
            return Ok(Outcome::Refused(Refusal::Unusable));
        };
        if self.live.allowlisted(self.generation, net.addr())? {
            return Ok(Outcome::Refused(Refusal::Allowlisted));
        }
        let now = boot_now_ns();
        let expires_at_ns = now + (expires_unix - now_unix).saturating_mul(NANOS);
        if let Some(existing) = self.live.ban_of(&key)?
            && existing.expires_at_ns > now
            && existing.flags & ban_flags::WOULD_BE == 0
        {
            // This host's own ban in force, or the same one received before, stays.
            if existing.flags & ban_flags::FLEET == 0 {
                return Ok(Outcome::Own);
            }
            if existing.expires_at_ns.abs_diff(expires_at_ns) < 2 * NANOS
                && existing.reason == reason as u8
            {
                return Ok(Outcome::Same);
            }
        }
        let ban = Ban {
            banned_at_ns: now,
            expires_at_ns,
            first_seen_ns: now,
            // Not seen here yet.
            last_seen_ns: 0,
            hits: 0,
            strikes: 0,
            reason: reason as u8,
            flags: ban_flags::FLEET,
            _reserved: [0; 2],
        };
        self.live.insert_ban(&key, &ban)?;
        self.manual_bans_changed |= reason == BanReason::Manual;
        Ok(Outcome::Applied)
    }

    fn unban(&mut self, net: IpNet) -> Result<Outcome, LiveError> {
        let Some(key) = self.ban_key(net) else {
            return Ok(Outcome::Same);
        };
        let received = self
            .live
            .ban_of(&key)?
            .is_some_and(|ban| ban.flags & ban_flags::FLEET != 0);
        if !received {
            return Ok(Outcome::Same);
        }
        self.live.remove_ban(&key)?;
        self.manual_bans_changed = true;
        Ok(Outcome::Applied)
    }
}

fn add_entry(
    live: &mut LiveState,
    list: List,
    net: IpNet,
    class: Option<&str>,
) -> Result<Outcome, LiveError> {
    let prefix = Prefix::from(net);
    let generation = live.active_generation()?;
    if let Some(existing) = live.rules(generation, list)?.get(&prefix) {
        // Received before, or the policy's or an operator's here: it stays as it is.
        return Ok(if existing.origin == Origin::Fleet as u8 {
            Outcome::Same
        } else {
            Outcome::Own
        });
    }
    // A class this policy lacks: the entry still admits, without a budget.
    let class = class.filter(|name| live.class_id(name).is_ok());
    live.add_entries_from(list, &[prefix], class, Origin::Fleet)?;
    Ok(Outcome::Applied)
}

fn remove_entry(live: &mut LiveState, list: List, net: IpNet) -> Result<Outcome, LiveError> {
    let prefix = Prefix::from(net);
    let generation = live.active_generation()?;
    let received = live
        .rules(generation, list)?
        .get(&prefix)
        .is_some_and(|value| value.origin == Origin::Fleet as u8);
    if !received {
        return Ok(Outcome::Same);
    }
    live.remove_entries(list, &[prefix])?;
    Ok(Outcome::Applied)
}

/// Which host each received entry of one interface came from: kept by `sipguard run` beside
/// the interface's journal, read by `bans list` and `allow|deny list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origins {
    /// Key (as [`Key`]'s text) to host.
    pub hosts: BTreeMap<String, String>,
    /// The lockdown level the fleet and this host last agreed on: a different level here is
    /// this host's change, also one made while `sipguard run` was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockdown: Option<String>,
}

impl Origins {
    pub fn path(target: &Target) -> PathBuf {
        crate::journal::dir_of(target).join("fleet-origins.json")
    }

    /// The record of `target`; empty when there is none (no fleet, or never received).
    pub fn load(target: &Target) -> Origins {
        Self::load_from(&Self::path(target))
    }

    fn load_from(path: &Path) -> Origins {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written whole to a temporary file and renamed: a reader sees the old or the new one.
    pub fn save(&self, target: &Target) -> std::io::Result<()> {
        let path = Self::path(target);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temporary, &path)
    }

    /// The host `key` came from, if it was received.
    pub fn host_of(&self, key: Key) -> Option<&str> {
        self.hosts.get(&key.to_string()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records_read_back() {
        for text in [
            "ban:198.18.50.66/32",
            "ban:2001:db8::/64",
            "allow:198.18.1.0/24",
            "deny:203.0.113.0/24",
            "lockdown",
        ] {
            let key: Key = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
        }
        for bad in ["ban", "ban:nothing", "stuff:198.18.0.1/32", ""] {
            assert!(bad.parse::<Key>().is_err(), "{bad}");
        }
        let record = Record {
            origin: "sbc-a".into(),
            value: Value::Ban {
                reason: "scanner".into(),
                expires_unix: 1_800_000_000,
            },
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"origin":"sbc-a","kind":"ban","reason":"scanner","expires_unix":1800000000}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        let allow = r#"{"origin":"b","kind":"allow"}"#;
        assert_eq!(
            serde_json::from_str::<Record>(allow).unwrap().value,
            Value::Allow { class: None }
        );
        assert!(serde_json::from_str::<Record>(r#"{"origin":"b","kind":"bogus"}"#).is_err());
    }

    #[test]
    fn settings_are_checked() {
        assert!(check_redis_url("redis://198.18.100.2:6379/0").is_ok());
        assert!(check_redis_url("rediss://redis.example.net:6380").is_ok());
        for bad in ["http://x", "198.18.100.2:6379", "redis://"] {
            assert!(check_redis_url(bad).is_err(), "{bad}");
        }
        assert!(check_name("sbc-a.eu_1").is_ok());
        for bad in ["", "a b", "sbc:a", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
