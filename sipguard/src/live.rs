//! Every change to the live state of an interface short of a whole policy (that is
//! [`crate::apply`]): runtime list entries, bans, budgets and the mode. They are methods of
//! [`LiveState`], which only the interface's lock gives, so the CLI, the daemon and what comes next
//! (journal, fleet sync) make the same changes the same way and never without the lock.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use serde::Serialize;
use sipguard_common::{
    abi::{
        BanReason, CLASS_SLOTS, Mode, Origin, RuleValue, SourceKey, Zone, access_gate, ban_flags,
        feedback_flags, policy_flags,
    },
    budget::{Gcra, NANOS},
    feedback::{auth_ban, count_failure},
    source::{manual_ban, source_key},
    verdict::Lockdown,
};

use crate::{
    policy::{Budget, Prefix, class_limits, class_name, deny_flags, mark_prefilter},
    state::{List, LiveState, Prefilter, State, StateError},
    time::{boot_now_ns, boot_ns_to_unix, now_unix},
};

pub use crate::policy::{source_addr, source_text};

/// The name `limits` shows and takes for the new-source budget of the access zone.
pub const NEW_SOURCES_LIMIT: &str = "new-sources";

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no class named '{name}' in the running policy (classes: {known})")]
    UnknownClass { name: String, known: String },
    #[error("deny entries have no budget class")]
    DenyWithClass,
    #[error("not in the {list} of {label}: {missing} (nothing was removed)")]
    NotListed {
        list: &'static str,
        label: String,
        missing: String,
    },
    #[error("{0}")]
    NotBannable(String),
    #[error("not banned: {missing} (nothing was lifted)")]
    NotBanned { missing: String },
    #[error(
        "auth-failure bans are off in the policy ([auth_failures] threshold = 0, or no access zone)"
    )]
    AuthFailuresOff,
    #[error(
        "verified sources are off in the policy ([verified] enabled = false, or no access zone): \
         with the gate shut no unknown phone could get past it"
    )]
    GateWithoutVerified,
    #[error(
        "the policy keeps the gate shut always ([access] unverified = \"always\"); change the \
         policy to open it"
    )]
    GateAlwaysShut,
}

/// Most strikes one call applies (`sipguard strike --count`, `POST /api/strike`).
pub const MAX_STRIKES: u32 = 1000;

/// What [`LiveState::strike`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StrikeOutcome {
    /// The source as banned: an IPv4 address or the IPv6 budget prefix.
    pub address: String,
    /// Failures in the current window after the strikes; when they made a ban, the failures
    /// that made it (the count then starts over, as in the data plane).
    pub failures: u32,
    /// Failures within the window that ban (`[auth_failures] threshold`).
    pub threshold: u32,
    /// The strikes completed the threshold: the source is banned (reason auth_failures), or,
    /// in monitor mode, would be (`would_be`).
    pub banned: bool,
    /// Monitor mode: the ban was recorded as a would-be ban, not enforced.
    pub would_be: bool,
    /// Length of an auth-failure ban (`[auth_failures] ttl`).
    pub ban_ttl_seconds: u64,
    /// Reason of the ban in force after the strikes: `auth_failures`, or the reason of a
    /// manual or longer ban that was kept.
    pub ban_reason: Option<&'static str>,
    /// The address is allowlisted: never banned automatically, nothing was counted.
    pub allowlisted: bool,
}

impl StrikeOutcome {
    /// One line for people, e.g. `198.18.3.12: 3/10 auth failures in the current window`.
    pub fn describe(&self) -> String {
        let address = &self.address;
        let reason = self.ban_reason.unwrap_or(BanReason::AuthFailures.name());
        let ttl = crate::time::format_duration(self.ban_ttl_seconds);
        if self.allowlisted {
            format!("{address}: allowlisted, never banned automatically (nothing counted)")
        } else if self.banned && self.would_be {
            format!("{address}: would be banned for {ttl} ({reason}; monitor mode)")
        } else if self.banned && reason != BanReason::AuthFailures.name() {
            format!(
                "{address}: {}/{} auth failures; the {reason} ban in force is kept",
                self.failures, self.threshold
            )
        } else if self.banned {
            format!("{address}: banned for {ttl} ({reason})")
        } else {
            format!(
                "{address}: {}/{} auth failures in the current window",
                self.failures, self.threshold
            )
        }
    }
}

impl State {
    /// The slot of the budget class `name` in the running policy.
    pub fn class_id(&self, name: &str) -> Result<u16, LiveError> {
        let policy = self.policy(self.active_generation()?)?;
        match (1..CLASS_SLOTS).find(|slot| class_name(&policy.classes[*slot]) == name) {
            Some(slot) => Ok(slot as u16),
            None => {
                let known: Vec<String> = (1..CLASS_SLOTS)
                    .map(|slot| class_name(&policy.classes[slot]))
                    .filter(|name| !name.is_empty())
                    .collect();
                Err(LiveError::UnknownClass {
                    name: name.to_string(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                })
            }
        }
    }

    /// The ban key of an address (IPv4) or of an address or budget prefix (IPv6), as the data
    /// plane computes it under the running policy.
    pub fn ban_key(&self, net: &IpNet) -> Result<SourceKey, LiveError> {
        let ipv6_prefix = self
            .policy(self.active_generation()?)?
            .header
            .ipv6_budget_prefix;
        ban_key(net, ipv6_prefix)
    }
}

/// [`LiveState::ban_key`] under an IPv6 budget prefix already read.
pub fn ban_key(net: &IpNet, ipv6_prefix: u8) -> Result<SourceKey, LiveError> {
    match net {
        IpNet::V4(v4) if v4.prefix_len() != 32 => Err(LiveError::NotBannable(format!(
            "{net}: IPv4 bans are per address; use `sipguard deny add {net}` for a range"
        ))),
        IpNet::V4(v4) => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&v4.addr().octets());
            Ok(source_key(4, &addr, ipv6_prefix))
        }
        IpNet::V6(v6) if v6.prefix_len() != 128 && v6.prefix_len() != ipv6_prefix => {
            Err(LiveError::NotBannable(format!(
                "{net}: IPv6 bans cover the budget prefix /{ipv6_prefix}; give an address in it \
                 or use `sipguard deny add {net}`"
            )))
        }
        IpNet::V6(v6) => Ok(source_key(6, &v6.addr().octets(), ipv6_prefix)),
    }
}

/// Which bans [`LiveState::clear_bans`] lifts.
#[derive(Clone, Copy, Debug, Default)]
pub struct BanFilter {
    /// Only bans issued at or after this Unix time.
    pub since_unix: Option<u64>,
    pub reason: Option<BanReason>,
}

impl LiveState {
    /// Adds runtime entries (kept across `apply` until deleted), effective on the next packet.
    /// Allow entries may name a budget class of the running policy.
    pub fn add_entries(
        &mut self,
        list: List,
        prefixes: &[Prefix],
        class: Option<&str>,
    ) -> Result<(), LiveError> {
        self.add_entries_from(list, prefixes, class, Origin::Runtime)
    }

    /// [`LiveState::add_entries`] with their origin: `Runtime` (an operator here) or `Fleet`
    /// (another host of the fleet).
    pub fn add_entries_from(
        &mut self,
        list: List,
        prefixes: &[Prefix],
        class: Option<&str>,
        origin: Origin,
    ) -> Result<(), LiveError> {
        let generation = self.active_generation()?;
        let class = match (class, list) {
            (None, _) => 0,
            (Some(_), List::Deny) => return Err(LiveError::DenyWithClass),
            (Some(name), List::Allow) => self.class_id(name)?,
        };
        self.route_method_budgets(generation, class)?;
        // Mark the prefilter first: a source whose /24 is clear is taken as not on the list.
        for bitmap in Prefilter::of(list) {
            let mut chunks = self.prefilter(generation, *bitmap)?;
            for prefix in prefixes.iter().filter(|prefix| bitmap.covers(prefix)) {
                mark_prefilter(&mut chunks, prefix);
            }
            self.sync_prefilter(generation, *bitmap, &chunks)?;
        }
        let value = RuleValue {
            class,
            origin: origin as u8,
            added_at_unix: now_unix() as u32,
            ..RuleValue::default()
        };
        for prefix in prefixes {
            self.insert_rule(generation, list, *prefix, value)?;
        }
        self.refresh_deny_flags(list, generation)?;
        self.bump_serial(generation)?;
        Ok(())
    }

    /// A change to a generation's lists is a change to its policy: the serial says whether
    /// anything touched the generation since (`undo` of an `apply` needs to know).
    fn bump_serial(&mut self, generation: u32) -> Result<(), StateError> {
        let mut value = self.policy(generation)?;
        value.header.serial += 1;
        self.set_policy(generation, &value)
    }

    /// Removes entries, all or none: if one is not on the list, nothing is removed. An entry of
    /// the policy file comes back with the next `apply`.
    pub fn remove_entries(&mut self, list: List, prefixes: &[Prefix]) -> Result<(), LiveError> {
        let generation = self.active_generation()?;
        let present = self.rules(generation, list)?;
        let missing: Vec<String> = prefixes
            .iter()
            .filter(|p| !present.contains_key(p))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(LiveError::NotListed {
                list: list.name(),
                label: self.target.label(),
                missing: missing.join(", "),
            });
        }
        for prefix in prefixes {
            self.remove_rule(generation, list, *prefix)?;
        }
        self.refresh_deny_flags(list, generation)?;
        self.bump_serial(generation)?;
        Ok(())
    }

    /// An allowlisted source of a class with method budgets must reach the SIP stage in both
    /// zones (`apply` decides this for the policy's own entries).
    fn route_method_budgets(&mut self, generation: u32, class: u16) -> Result<(), StateError> {
        let mut policy = self.policy(generation)?;
        let budgets = policy.class_methods[usize::from(class) % policy.class_methods.len()];
        if class == 0 || budgets.iter().all(Gcra::is_unlimited) {
            return Ok(());
        }
        let mut flags = policy.header.flags;
        for (zone, flag) in [
            (Zone::Trunk, policy_flags::SIP_TRUNK),
            (Zone::Access, policy_flags::SIP_ACCESS),
        ] {
            if !crate::policy::Ports::of(&policy, zone).is_empty() {
                flags |= flag;
            }
        }
        if flags != policy.header.flags {
            policy.header.flags = flags;
            self.set_policy(generation, &policy)?;
        }
        Ok(())
    }

    /// The data plane skips the denylist lookup of a family marked empty: keep the marks true.
    fn refresh_deny_flags(&mut self, list: List, generation: u32) -> Result<(), StateError> {
        if list != List::Deny {
            return Ok(());
        }
        let mut policy = self.policy(generation)?;
        let deny = policy_flags::DENY4 | policy_flags::DENY6;
        let flags =
            (policy.header.flags & !deny) | deny_flags(&self.rules(generation, List::Deny)?);
        if policy.header.flags != flags {
            policy.header.flags = flags;
            self.set_policy(generation, &policy)?;
        }
        Ok(())
    }

    /// Bans sources by hand (reason `manual`) for `ttl`; allowlisted ones too. Returns the keys.
    pub fn ban(&mut self, sources: &[IpNet], ttl: Duration) -> Result<Vec<SourceKey>, LiveError> {
        let keys = self.ban_keys(sources)?;
        let ban = manual_ban(
            boot_now_ns(),
            u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
        );
        for key in &keys {
            self.insert_ban(key, &ban)?;
        }
        Ok(keys)
    }

    /// Lifts the bans of `sources`, all or none: if one is not banned, nothing is lifted.
    pub fn lift_bans(&mut self, sources: &[IpNet]) -> Result<Vec<SourceKey>, LiveError> {
        let keys = self.ban_keys(sources)?;
        let present: Vec<SourceKey> = self.bans()?.into_iter().map(|(key, _)| key).collect();
        let missing: Vec<String> = keys
            .iter()
            .filter(|key| !present.contains(key))
            .map(source_text)
            .collect();
        if !missing.is_empty() {
            return Err(LiveError::NotBanned {
                missing: missing.join(", "),
            });
        }
        for key in &keys {
            self.remove_ban(key)?;
        }
        self.refresh_manual_ban_flag()?;
        Ok(keys)
    }

    /// Lifts every ban `filter` selects (undo after a bad change); returns how many.
    pub fn clear_bans(&mut self, filter: BanFilter) -> Result<usize, LiveError> {
        let mut lifted = 0;
        for (key, ban) in self.bans()? {
            let recent = filter
                .since_unix
                .is_none_or(|since| boot_ns_to_unix(ban.banned_at_ns) >= since);
            let kind = filter
                .reason
                .is_none_or(|reason| reason as u8 == ban.reason);
            if recent && kind && self.remove_ban(&key)? {
                lifted += 1;
            }
        }
        self.refresh_manual_ban_flag()?;
        Ok(lifted)
    }

    fn ban_keys(&self, sources: &[IpNet]) -> Result<Vec<SourceKey>, LiveError> {
        sources.iter().map(|net| self.ban_key(net)).collect()
    }

    /// Applies `count` auth failures of the client at `addr` at `now_ns` (boot time), as the
    /// egress program counts the SBC's challenges and refusals (`feedback::count_failure` on
    /// its `SG_AUTH` entry, keyed by the running policy's IPv6 budget prefix) and bans it with
    /// the running generation's `[auth_failures]` rule and mode when they complete the
    /// threshold. For what the egress program cannot read (TLS): the SBC reports failures.
    /// An allowlisted address is never banned automatically: nothing is counted. A manual ban,
    /// or one lasting longer, in force on the source is kept.
    pub fn strike(
        &mut self,
        addr: IpAddr,
        count: u32,
        now_ns: u64,
    ) -> Result<StrikeOutcome, LiveError> {
        let generation = self.active_generation()?;
        let policy = self.policy(generation)?;
        let feedback = policy.feedback;
        if feedback.flags & feedback_flags::AUTH_FAILURES == 0 || feedback.auth.threshold == 0 {
            return Err(LiveError::AuthFailuresOff);
        }
        let key = address_key(addr, policy.header.ipv6_budget_prefix);
        let mut outcome = StrikeOutcome {
            address: source_text(&key),
            failures: 0,
            threshold: feedback.auth.threshold,
            banned: false,
            would_be: false,
            ban_ttl_seconds: feedback.auth.ttl_ns / NANOS,
            ban_reason: None,
            allowlisted: false,
        };
        if self.allowlisted(generation, addr)? {
            outcome.allowlisted = true;
            return Ok(outcome);
        }
        let mut state = self.auth_state(&key).unwrap_or_default();
        let mut made = None;
        for _ in 0..count.min(MAX_STRIKES) {
            let (next, ban) = count_failure(state.failures_window, &feedback.auth, now_ns);
            state.failures_window = next;
            made = ban.or(made);
        }
        state.last_failure_ns = now_ns;
        self.set_auth_state(&key, &state)?;
        outcome.failures = made.unwrap_or(state.failures());
        let Some(failures) = made else {
            return Ok(outcome);
        };
        let mode = Mode::from_u8(policy.header.mode);
        let ban = auth_ban(&feedback.auth, now_ns, mode, failures);
        outcome.banned = true;
        outcome.would_be = ban.flags & ban_flags::WOULD_BE != 0;
        let kept = self.bans()?.into_iter().find_map(|(banned, existing)| {
            let in_force = banned == key
                && existing.expires_at_ns > now_ns
                && existing.flags & ban_flags::WOULD_BE == 0;
            let stronger = existing.reason == BanReason::Manual as u8
                || existing.expires_at_ns > ban.expires_at_ns;
            (in_force && stronger).then_some(existing)
        });
        match kept {
            Some(existing) => {
                outcome.would_be = false;
                outcome.ban_reason =
                    Some(BanReason::from_u8(existing.reason).map_or("unknown", BanReason::name));
            }
            None => {
                self.insert_ban(&key, &ban)?;
                outcome.ban_reason = Some(BanReason::AuthFailures.name());
            }
        }
        Ok(outcome)
    }

    /// Switches enforce/monitor on the running policy. Only the mode byte of the active
    /// generation changes, so a concurrent packet sees either the old or the new mode. Returns
    /// how many would-be bans of monitor mode were discarded (enforcing never applies them).
    pub fn set_mode(&mut self, mode: Mode) -> Result<usize, StateError> {
        let active = self.active_generation()?;
        let mut value = self.policy(active)?;
        value.header.mode = mode as u8;
        value.header.serial += 1;
        self.set_policy(active, &value)?;
        self.discard_would_be_bans_if_enforcing(mode)
    }

    /// Switches the lockdown: every zone admits only allowlisted sources (and verified ones,
    /// with `Lockdown::AllowlistedAndVerified`), or, `Off`, what the policy admits. Only the
    /// flags byte of the active generation changes (lists, runtime entries, budgets and bans
    /// stay), so a concurrent packet sees either the old or the new state, and `Off` restores
    /// exactly the policy in force before. `apply` keeps the lockdown as it is.
    pub fn set_lockdown(&mut self, lockdown: Lockdown) -> Result<(), StateError> {
        let active = self.active_generation()?;
        let mut value = self.policy(active)?;
        value.header.flags &= !(policy_flags::LOCKDOWN | policy_flags::LOCKDOWN_VERIFIED);
        value.header.flags |= match lockdown {
            Lockdown::Off => 0,
            Lockdown::Allowlisted => policy_flags::LOCKDOWN,
            Lockdown::AllowlistedAndVerified => {
                policy_flags::LOCKDOWN | policy_flags::LOCKDOWN_VERIFIED
            }
        };
        value.header.serial += 1;
        self.set_policy(active, &value)
    }

    /// Switches the attack mode: `true` shuts the access gate (sources neither allowlisted nor
    /// verified may send only what a registration needs, reason `unverified`), `false` opens
    /// it again unless the policy keeps it shut always. One bit of the running policy; it
    /// holds across `apply` until switched off. `forced`: the operator's decision, which the
    /// detector of `sipguard run` leaves alone until [`LiveState::release_attack_mode`].
    pub fn set_attack_mode(&mut self, on: bool, forced: bool) -> Result<(), LiveError> {
        let active = self.active_generation()?;
        let mut value = self.policy(active)?;
        if on && value.header.flags & policy_flags::VERIFIED == 0 {
            return Err(LiveError::GateWithoutVerified);
        }
        if !on && value.feedback.gate & access_gate::ALWAYS != 0 {
            return Err(LiveError::GateAlwaysShut);
        }
        if on {
            value.feedback.gate |= access_gate::UNDER_ATTACK;
        } else {
            value.feedback.gate &= !access_gate::UNDER_ATTACK;
        }
        if forced {
            value.feedback.gate |= access_gate::FORCED;
        }
        value.header.serial += 1;
        self.set_policy(active, &value)?;
        Ok(())
    }

    /// `attack-mode auto`: the detector of `sipguard run` decides again (from the state the
    /// gate is in now).
    pub fn release_attack_mode(&mut self) -> Result<(), LiveError> {
        let active = self.active_generation()?;
        let mut value = self.policy(active)?;
        value.feedback.gate &= !access_gate::FORCED;
        value.header.serial += 1;
        self.set_policy(active, &value)?;
        Ok(())
    }

    /// Bans monitor mode recorded are evidence of what enforcing would have done, not
    /// decisions: once the filter enforces they go (the data plane also ignores any it meets).
    pub(crate) fn discard_would_be_bans_if_enforcing(
        &mut self,
        mode: Mode,
    ) -> Result<usize, StateError> {
        match mode {
            Mode::Enforce => self.discard_would_be_bans(),
            Mode::Monitor => Ok(0),
        }
    }

    /// Changes a budget on the running filter in place: a class by name, or the access zone's
    /// new-source budget ([`NEW_SOURCES_LIMIT`]). The next packet uses it, and no source's bucket
    /// is reset (the GCRA state is an arrival time, valid under any rate).
    pub fn set_limit(&mut self, name: &str, budget: Budget) -> Result<(), LiveError> {
        let active = self.active_generation()?;
        let mut value = self.policy(active)?;
        if name == NEW_SOURCES_LIMIT {
            value.header.new_sources =
                Gcra::new(budget.rate.into(), budget.burst.into()).split(cpus());
            value.header.new_sources_rate = budget.rate;
            value.header.new_sources_burst = budget.burst;
        } else {
            let slot = usize::from(self.class_id(name)?);
            value.classes[slot] = class_limits(name, budget);
        }
        value.header.serial += 1;
        self.set_policy(active, &value)?;
        Ok(())
    }
}

/// CPUs that run the program: the new-source budget is split over their per-CPU buckets.
pub fn cpus() -> u64 {
    aya::util::online_cpus().map_or(1, |cpus| cpus.len().max(1) as u64)
}

/// The budget/ban key of an address under an IPv6 budget prefix (as the data plane keys it).
pub fn address_key(addr: IpAddr, ipv6_budget_prefix: u8) -> SourceKey {
    match addr {
        IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            source_key(4, &bytes, ipv6_budget_prefix)
        }
        IpAddr::V6(v6) => source_key(6, &v6.octets(), ipv6_budget_prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> StrikeOutcome {
        StrikeOutcome {
            address: "198.18.3.12".into(),
            failures: 3,
            threshold: 10,
            banned: false,
            would_be: false,
            ban_ttl_seconds: 3600,
            ban_reason: None,
            allowlisted: false,
        }
    }

    #[test]
    fn strike_outcomes_read_as_one_line() {
        assert_eq!(
            outcome().describe(),
            "198.18.3.12: 3/10 auth failures in the current window"
        );
        let banned = StrikeOutcome {
            failures: 10,
            banned: true,
            ban_reason: Some("auth_failures"),
            ..outcome()
        };
        assert_eq!(
            banned.describe(),
            "198.18.3.12: banned for 1h (auth_failures)"
        );
        let would_be = StrikeOutcome {
            would_be: true,
            ban_ttl_seconds: 90 * 60,
            ..banned.clone()
        };
        assert_eq!(
            would_be.describe(),
            "198.18.3.12: would be banned for 1h30m (auth_failures; monitor mode)"
        );
        let kept = StrikeOutcome {
            ban_reason: Some("manual"),
            ..banned.clone()
        };
        assert_eq!(
            kept.describe(),
            "198.18.3.12: 10/10 auth failures; the manual ban in force is kept"
        );
        let allowed = StrikeOutcome {
            allowlisted: true,
            ..outcome()
        };
        assert!(
            allowed.describe().contains("allowlisted"),
            "{}",
            allowed.describe()
        );
        let json = serde_json::to_value(&banned).unwrap();
        assert_eq!(json["address"], "198.18.3.12");
        assert_eq!(
            (json["failures"].as_u64(), json["threshold"].as_u64()),
            (Some(10), Some(10))
        );
        assert_eq!(json["banned"], true);
    }

    #[test]
    fn addresses_key_like_the_data_plane() {
        let v4 = address_key("198.18.3.12".parse().unwrap(), 64);
        assert_eq!((v4.family, v4.prefix_len), (4, 32));
        assert_eq!(source_text(&v4), "198.18.3.12");
        let v6 = address_key("2001:db8:1:2:3:4:5:6".parse().unwrap(), 64);
        assert_eq!(source_text(&v6), "2001:db8:1:2::/64");
    }
}
