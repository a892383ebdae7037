//! Bringing a policy into the kernel without a gap, and live changes to the running one.
//!
//! The data plane reads one of two policy generations, chosen by `SG_ACTIVE`. `apply` fills the
//! generation not in use until it equals the new policy, then flips `SG_ACTIVE` with a single
//! 4-byte store. Every packet is judged entirely by the old or entirely by the new policy, so a
//! source allowed (or denied) by both is never dropped (or admitted) in between. A failure before
//! the flip leaves the running policy untouched. Budget state (per-source buckets) is not part of
//! a generation: it carries over, so a policy change never resets anyone's budget.

use std::{collections::BTreeMap, time::Duration};

use sipguard_common::{
    abi::{
        BanReason, CLASS_SLOTS, Mode, Origin, PolicyHeader, RuleValue, SOURCE_PATH_LEN, Zone,
        access_gate, policy_flags,
    },
    parse::Transport,
};

use crate::{
    live::{cpus, source_addr},
    policy::{Policy, Ports, Prefix, Tables, class_name, prefilter, sip_tables::SipIds},
    state::{List, LiveState, Prefilter, StateError},
    time::now_unix,
};

/// Changes to one list.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ListChange {
    pub added: usize,
    pub removed: usize,
    pub total: usize,
}

impl ListChange {
    fn between(old: &BTreeMap<Prefix, RuleValue>, new: &BTreeMap<Prefix, RuleValue>) -> Self {
        ListChange {
            added: new.keys().filter(|p| !old.contains_key(p)).count(),
            removed: old.keys().filter(|p| !new.contains_key(p)).count(),
            total: new.len(),
        }
    }
}

/// What an `apply` changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub generation: u32,
    pub serial: u64,
    pub mode: &'static str,
    pub fragments: &'static str,
    pub trunk: Ports,
    pub access: Ports,
    pub classes: Vec<String>,
    pub allow: ListChange,
    pub deny: ListChange,
    /// Automatic bans lifted because their source is allowlisted now.
    pub bans_lifted: usize,
    /// Would-be bans of monitor mode discarded because the policy enforces.
    pub would_be_bans_discarded: usize,
    /// Runtime allow entries whose class the new policy no longer has (now without budget).
    pub orphaned_classes: Vec<String>,
}

/// Makes the kernel run `policy` (with `mode` overriding the policy's mode when given).
pub fn apply(
    state: &mut LiveState,
    policy: &Policy,
    mode: Option<Mode>,
) -> Result<ApplyReport, StateError> {
    let active = state.active_generation()?;
    let next = active ^ 1;
    let current = state.policy(active)?;
    let running_mode = Mode::from_u8(current.header.mode);
    let old_allow = state.rules(active, List::Allow)?;
    let old_deny = state.rules(active, List::Deny)?;
    let is_runtime = |value: &RuleValue| Origin::kept_across_apply(value.origin);
    // Runtime allow entries name their class by name across the change of class ids.
    let runtime_allow: BTreeMap<Prefix, (RuleValue, Option<String>)> = old_allow
        .iter()
        .filter(|(_, value)| is_runtime(value))
        .map(|(prefix, value)| {
            let class = (value.class != 0)
                .then(|| class_name(&current.classes[usize::from(value.class) % CLASS_SLOTS]));
            (*prefix, (*value, class))
        })
        .collect();
    let runtime_deny: BTreeMap<Prefix, RuleValue> = old_deny
        .iter()
        .filter(|(_, value)| is_runtime(value))
        .map(|(prefix, value)| (*prefix, *value))
        .collect();
    let orphaned_classes: Vec<String> = runtime_allow
        .values()
        .filter_map(|(_, class)| class.clone())
        .filter(|class| !policy.classes.contains_key(class))
        .collect();
    let now = now_unix();
    let sip_ids = SipIds::of(
        &state.signatures(active)?,
        &state.destinations(active)?,
        &current.sip,
    );
    let mut tables = Tables::compile(
        policy,
        running_mode,
        &runtime_allow,
        &runtime_deny,
        now as u32,
        &sip_ids,
    );
    if let Some(mode) = mode {
        tables.mode = mode;
    }
    keep_first_seen(&mut tables.allow, &old_allow);
    keep_first_seen(&mut tables.deny, &old_deny);

    // Packets still judged by `next` from before the last flip must be done before we edit it.
    wait_for_inflight_packets();
    state.sync_rules(next, List::Allow, &tables.allow)?;
    state.sync_rules(next, List::Deny, &tables.deny)?;
    state.sync_sip(next, &tables.sip)?;
    for (list, rules) in [(List::Allow, &tables.allow), (List::Deny, &tables.deny)] {
        for bitmap in Prefilter::of(list) {
            let covered = rules.keys().filter(|prefix| bitmap.covers(prefix));
            state.sync_prefilter(next, *bitmap, &prefilter(covered))?;
        }
    }
    let mut header = PolicyHeader {
        serial: current.header.serial + 1,
        applied_at_unix: now,
        ..current.header
    };
    match &policy.source {
        Some(source) => {
            header.source_digest = source.digest;
            header.source_path = path_bytes(&source.path.to_string_lossy());
        }
        None => {
            header.source_digest = 0;
            header.source_path = [0; SOURCE_PATH_LEN];
        }
    }
    let mut value = tables.policy_value(header, cpus());
    if state.has_manual_bans()? {
        value.header.flags |= policy_flags::MANUAL_BANS;
    }
    // A lockdown holds until `lockdown off`, whatever policy comes meanwhile.
    value.header.flags |=
        current.header.flags & (policy_flags::LOCKDOWN | policy_flags::LOCKDOWN_VERIFIED);
    // So does an attack mode switched on, until it is switched off.
    value.feedback.gate |=
        current.feedback.gate & (access_gate::UNDER_ATTACK | access_gate::FORCED);
    state.set_policy(next, &value)?;
    state.activate(next)?;
    let bans_lifted = lift_auto_bans_of_allowed(state, &tables)?;
    let would_be_bans_discarded = state.discard_would_be_bans_if_enforcing(tables.mode)?;

    Ok(ApplyReport {
        generation: next,
        serial: header.serial,
        mode: tables.mode.name(),
        fragments: tables.fragments.name(),
        trunk: zone_ports(&tables, Zone::Trunk),
        access: zone_ports(&tables, Zone::Access),
        classes: tables
            .classes
            .iter()
            .skip(1)
            .map(|(name, _)| name.clone())
            .collect(),
        allow: ListChange::between(&old_allow, &tables.allow),
        deny: ListChange::between(&old_deny, &tables.deny),
        bans_lifted,
        would_be_bans_discarded,
        orphaned_classes,
    })
}

fn zone_ports(tables: &Tables, zone: Zone) -> Ports {
    Ports {
        udp: tables.ports(Transport::Udp, zone),
        tcp: tables.ports(Transport::Tcp, zone),
        sctp: tables.ports(Transport::Sctp, zone),
        count_methods: match zone {
            Zone::Trunk => tables.sip_flags & policy_flags::SIP_TRUNK != 0,
            Zone::Access => tables.sip_flags & policy_flags::SIP_ACCESS != 0,
            Zone::None | Zone::Unknown => false,
        },
    }
}

/// An automatic ban (rate or auth failures) of a source that the allowlist now covers would
/// outlive the operator's decision to trust it; lift it. Manual and scanner bans stay.
fn lift_auto_bans_of_allowed(state: &mut LiveState, tables: &Tables) -> Result<usize, StateError> {
    let mut lifted = 0;
    for (key, ban) in state.bans()? {
        let addr = source_addr(&key);
        let automatic = ban.reason == BanReason::RateExceeded as u8
            || ban.reason == BanReason::AuthFailures as u8;
        if automatic
            && tables.allow.keys().any(|prefix| prefix.contains(addr))
            && state.remove_ban(&key)?
        {
            lifted += 1;
        }
    }
    Ok(lifted)
}

/// An entry that stays keeps the time it was first added.
fn keep_first_seen(desired: &mut BTreeMap<Prefix, RuleValue>, old: &BTreeMap<Prefix, RuleValue>) {
    for (prefix, value) in desired.iter_mut() {
        if let Some(previous) = old.get(prefix)
            && previous.origin == value.origin
        {
            value.added_at_unix = previous.added_at_unix;
        }
    }
}

fn path_bytes(path: &str) -> [u8; SOURCE_PATH_LEN] {
    let mut bytes = [0u8; SOURCE_PATH_LEN];
    for (slot, byte) in bytes.iter_mut().zip(path.bytes().take(SOURCE_PATH_LEN - 1)) {
        *slot = byte;
    }
    bytes
}

/// Waits for one RCU grace period: XDP programs run inside RCU read-side sections, so after it
/// no packet is still being judged with a generation read before the last flip.
fn wait_for_inflight_packets() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        // nohz_full kernels refuse the global barrier; a packet takes microseconds.
        std::thread::sleep(Duration::from_millis(20));
    }
}
