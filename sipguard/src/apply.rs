//! Bringing a policy into the kernel without a gap.
//!
//! The data plane reads one of two policy generations, chosen by `SG_ACTIVE`. `apply` fills the
//! generation not in use until it equals the new policy, then flips `SG_ACTIVE` with a single
//! 4-byte store. Every packet is judged entirely by the old or entirely by the new policy, so a
//! source allowed (or denied) by both is never dropped (or admitted) in between. A failure before
//! the flip leaves the running policy untouched.

use std::{collections::BTreeMap, time::Duration};

use sipguard_common::abi::{Mode, Origin, PolicyHeader, RuleValue, SOURCE_PATH_LEN};

use crate::{
    policy::{Policy, Prefix, Tables},
    state::{List, State, StateError, now_unix},
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
    pub udp_ports: Vec<u16>,
    pub tcp_ports: Vec<u16>,
    pub allow: ListChange,
    pub deny: ListChange,
}

/// Makes the kernel run `policy` (with `mode` overriding the policy's mode when given).
pub fn apply(
    state: &mut State,
    policy: &Policy,
    mode: Option<Mode>,
) -> Result<ApplyReport, StateError> {
    let active = state.active_generation()?;
    let next = active ^ 1;
    let current = state.policy(active)?;
    let running_mode = Mode::from_u8(current.header.mode);
    let old_allow = state.rules(active, List::Allow)?;
    let old_deny = state.rules(active, List::Deny)?;
    let runtime = |rules: &BTreeMap<Prefix, RuleValue>| -> BTreeMap<Prefix, RuleValue> {
        rules
            .iter()
            .filter(|(_, v)| v.origin == Origin::Runtime as u8)
            .map(|(p, v)| (*p, *v))
            .collect()
    };
    let now = now_unix();
    let mut tables = Tables::compile(
        policy,
        running_mode,
        &runtime(&old_allow),
        &runtime(&old_deny),
        now as u32,
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
    state.set_policy(next, &tables.policy_value(header))?;
    state.activate(next)?;

    Ok(ApplyReport {
        generation: next,
        serial: header.serial,
        mode: tables.mode.name(),
        fragments: tables.fragments.name(),
        udp_ports: policy.udp_ports.clone(),
        tcp_ports: policy.tcp_ports.clone(),
        allow: ListChange::between(&old_allow, &tables.allow),
        deny: ListChange::between(&old_deny, &tables.deny),
    })
}

/// Switches enforce/monitor on the running policy. Only the mode byte of the active generation
/// changes, so a concurrent packet sees either the old or the new mode.
pub fn set_mode(state: &mut State, mode: Mode) -> Result<(), StateError> {
    let active = state.active_generation()?;
    let mut value = state.policy(active)?;
    value.header.mode = mode as u8;
    value.header.serial += 1;
    state.set_policy(active, &value)
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
