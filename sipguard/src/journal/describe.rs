//! One line for people per journaled write: which entry of which table, and what it became.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    ops::Range,
};

use sipguard_common::abi::{self, BanReason, Mode, SourceKey, map_name};

use super::{Change, Write};

/// E.g. `allowlist (generation 1) 198.51.100.0/24: added (runtime, class 2)`.
pub fn describe_write(write: &Write) -> String {
    let key = &write.key.0;
    let (before, after) = match &write.change {
        Change::Set { before, after } => (
            before.as_ref().map(|hex| hex.0.as_slice()),
            after.as_ref().map(|hex| hex.0.as_slice()),
        ),
        Change::Patch { .. } if write.map == map_name::POLICY => {
            return describe_policy(key, &write.change);
        }
        // Large values of other maps (prefilter chunks) are there before and after.
        Change::Patch { .. } => (Some(&[][..]), Some(&[][..])),
    };
    let change = match (before, after) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        _ => "changed",
    };
    let map = write.map.as_str();
    if let Some((list, generation)) = rule_list(map) {
        let prefix = rule_prefix(map, key);
        let detail = after
            .or(before)
            .and_then(read::<abi::RuleValue>)
            .map(|value| {
                let origin = match abi::Origin::name_of(value.origin) {
                    "policy" => "policy file",
                    other => other,
                };
                match value.class {
                    0 => format!(" ({origin})"),
                    class => format!(" ({origin}, class {class})"),
                }
            });
        return format!(
            "{list} (generation {generation}) {prefix}: {change}{}",
            detail.unwrap_or_default()
        );
    }
    match map {
        map_name::ACTIVE => format!(
            "running generation {} -> {}",
            before.and_then(read::<u32>).unwrap_or_default(),
            after.and_then(read::<u32>).unwrap_or_default()
        ),
        map_name::BANS => {
            let source = read::<SourceKey>(key)
                .map_or_else(|| "?".into(), |key| crate::policy::source_text(&key));
            let ban = after.or(before).and_then(read::<abi::Ban>);
            let reason = ban
                .and_then(|ban| BanReason::from_u8(ban.reason))
                .map_or("unknown", BanReason::name);
            let verb = match change {
                "added" => "banned",
                "removed" => "ban lifted",
                _ => "ban changed",
            };
            format!("{source}: {verb} ({reason})")
        }
        map_name::AUTH => {
            let source = read::<SourceKey>(key)
                .map_or_else(|| "?".into(), |key| crate::policy::source_text(&key));
            let failures = |value: Option<&[u8]>| {
                value
                    .and_then(read::<abi::AuthState>)
                    .map_or(0, |state| state.failures())
            };
            format!(
                "{source}: auth failures {} -> {}",
                failures(before),
                failures(after)
            )
        }
        map_name::PREFILTER => format!(
            "prefilter chunk {}: {change}",
            read::<u32>(key).unwrap_or_default()
        ),
        map_name::META => format!("interface metadata: {change}"),
        _ if map_name::SIGNATURES.contains(&map) => format!("scanner signature entry: {change}"),
        _ if map_name::DESTINATIONS.contains(&map) => format!("destination rule entry: {change}"),
        _ => format!("{map} entry {}: {change}", super::Hex(key.clone()).text()),
    }
}

impl super::Hex {
    fn text(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

fn rule_list(map: &str) -> Option<(&'static str, usize)> {
    let lists: [(&[&str; 2], &str); 6] = [
        (&map_name::ALLOW4, "allowlist"),
        (&map_name::ALLOW6, "allowlist"),
        (&map_name::ALLOW_HOSTS4, "allowlist"),
        (&map_name::ALLOW_HOSTS6, "allowlist"),
        (&map_name::DENY4, "denylist"),
        (&map_name::DENY6, "denylist"),
    ];
    lists.iter().find_map(|(names, list)| {
        names
            .iter()
            .position(|name| *name == map)
            .map(|generation| (*list, generation))
    })
}

fn rule_prefix(map: &str, key: &[u8]) -> String {
    match key.len() {
        4 => format!(
            "{}/32",
            Ipv4Addr::from(<[u8; 4]>::try_from(key).unwrap_or_default())
        ),
        16 => format!(
            "{}/128",
            Ipv6Addr::from(<[u8; 16]>::try_from(key).unwrap_or_default())
        ),
        8 => format!(
            "{}/{}",
            Ipv4Addr::from(<[u8; 4]>::try_from(&key[4..]).unwrap_or_default()),
            read::<u32>(&key[..4]).unwrap_or_default()
        ),
        20 => format!(
            "{}/{}",
            Ipv6Addr::from(<[u8; 16]>::try_from(&key[4..]).unwrap_or_default()),
            read::<u32>(&key[..4]).unwrap_or_default()
        ),
        _ => format!("{map} key {}", super::Hex(key.to_vec()).text()),
    }
}

/// The policy fields a patch of the policy value touched, with the mode and flags spelled out.
fn describe_policy(key: &[u8], change: &Change) -> String {
    let Change::Patch { ranges, .. } = change else {
        return String::new();
    };
    let header = std::mem::offset_of!(abi::Policy, header);
    let fields: [(&str, Range<usize>); 12] = [
        (
            "mode",
            span(header + std::mem::offset_of!(abi::PolicyHeader, mode), 1),
        ),
        (
            "flags",
            span(header + std::mem::offset_of!(abi::PolicyHeader, flags), 1),
        ),
        (
            "serial",
            span(header + std::mem::offset_of!(abi::PolicyHeader, serial), 8),
        ),
        (
            "applied at",
            span(
                header + std::mem::offset_of!(abi::PolicyHeader, applied_at_unix),
                8,
            ),
        ),
        ("header", span(header, size_of::<abi::PolicyHeader>())),
        (
            "budget classes",
            field_span(
                std::mem::offset_of!(abi::Policy, classes),
                std::mem::offset_of!(abi::Policy, udp_zone),
            ),
        ),
        (
            "UDP ports",
            field_span(
                std::mem::offset_of!(abi::Policy, udp_zone),
                std::mem::offset_of!(abi::Policy, tcp_zone),
            ),
        ),
        (
            "TCP ports",
            field_span(
                std::mem::offset_of!(abi::Policy, tcp_zone),
                std::mem::offset_of!(abi::Policy, sctp_zone),
            ),
        ),
        (
            "SCTP ports",
            field_span(
                std::mem::offset_of!(abi::Policy, sctp_zone),
                std::mem::offset_of!(abi::Policy, class_methods),
            ),
        ),
        (
            "method budgets",
            field_span(
                std::mem::offset_of!(abi::Policy, class_methods),
                std::mem::offset_of!(abi::Policy, sip),
            ),
        ),
        (
            "SIP rules",
            field_span(
                std::mem::offset_of!(abi::Policy, sip),
                std::mem::offset_of!(abi::Policy, feedback),
            ),
        ),
        (
            "SBC feedback",
            field_span(
                std::mem::offset_of!(abi::Policy, feedback),
                size_of::<abi::Policy>(),
            ),
        ),
    ];
    let mut touched: Vec<String> = Vec::new();
    for (name, range) in &fields {
        let hit = ranges.iter().find(|patch| {
            patch.offset < range.end && range.start < patch.offset + patch.after.0.len()
        });
        let Some(patch) = hit else { continue };
        // The header entry covers the fields not named above.
        if *name == "header" && !touched.is_empty() {
            continue;
        }
        let byte_at = |bytes: &[u8]| bytes.get(range.start.wrapping_sub(patch.offset)).copied();
        let text = match *name {
            "mode" => match (byte_at(&patch.before.0), byte_at(&patch.after.0)) {
                (Some(before), Some(after)) => format!(
                    "mode {} -> {}",
                    Mode::from_u8(before).name(),
                    Mode::from_u8(after).name()
                ),
                _ => "mode".into(),
            },
            "flags" => match (byte_at(&patch.before.0), byte_at(&patch.after.0)) {
                (Some(before), Some(after)) => format!("flags {before:#04x} -> {after:#04x}"),
                _ => "flags".into(),
            },
            other => other.to_string(),
        };
        touched.push(text);
    }
    // Every change bumps the serial: name it only when nothing else changed.
    if touched.len() > 1 {
        touched.retain(|field| field != "serial");
    }
    format!(
        "policy (generation {}): {}",
        read::<u32>(key).unwrap_or_default(),
        touched.join(", ")
    )
}

const fn span(offset: usize, len: usize) -> Range<usize> {
    offset..offset + len
}

const fn field_span(start: usize, end: usize) -> Range<usize> {
    start..end
}

fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>()).then(|| {
        // SAFETY: at least size_of::<T>() bytes; T is plain data (ABI types, integers).
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    })
}
