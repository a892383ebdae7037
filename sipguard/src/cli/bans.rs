//! `sipguard bans`

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use ipnet::IpNet;
use serde::Serialize;
use sipguard_common::abi::{Ban, BanReason, SourceKey, ban_flags};

use super::{Global, print_json};
use crate::{
    apply::source_addr,
    policy::{parse_duration, parse_net},
    state::{LockedState, State, Target},
    time::{boot_now_ns, boot_ns_to_unix, format_time, now_unix, parse_time},
};

/// List, add and lift temporary bans.
///
/// Unknown sources in the access zone that keep exceeding their budget are banned for the
/// policy's `[bans] ttl`; allowlisted peers never are (they are throttled). Bans expire by
/// themselves in the kernel. IPv6 bans cover the policy's budget prefix (/64 by default); use
/// `sipguard deny add` for wider ranges.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Bans in force, newest first.
    List {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ban sources by hand (reason `manual`); also allowlisted ones.
    Add {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// IPv4 addresses, IPv6 addresses or budget prefixes.
        #[arg(required = true, value_parser = parse_net)]
        sources: Vec<IpNet>,
    },
    /// Lift bans of these sources.
    Del {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        #[arg(required = true, value_parser = parse_net)]
        sources: Vec<IpNet>,
    },
    /// Lift every ban, or every ban issued since a time (undo after a bad change).
    Clear {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        /// `2026-11-26T04:00:00Z`, or how long ago, e.g. `30m`.
        #[arg(long, value_parser = parse_time)]
        since: Option<u64>,
        /// Only automatic (`rate_exceeded`) or only `manual` bans.
        #[arg(long)]
        reason: Option<ReasonFilter>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReasonFilter {
    RateExceeded,
    Manual,
}

#[derive(Serialize)]
struct Row {
    source: String,
    reason: &'static str,
    /// Issued in monitor mode: recorded, not enforced, discarded when enforcing starts.
    would_be: bool,
    banned_at_unix: u64,
    expires_at_unix: u64,
    first_seen_unix: u64,
    last_seen_unix: u64,
    hits: u64,
    strikes: u32,
}

pub fn run(global: &Global, args: Args) -> Result<u8> {
    match args.action {
        Action::List { iface, json } => list(global, iface.as_deref(), json),
        Action::Add {
            iface,
            ttl,
            sources,
        } => add(global, iface.as_deref(), ttl, &sources),
        Action::Del { iface, sources } => del(global, iface.as_deref(), &sources),
        Action::Clear {
            iface,
            since,
            reason,
        } => clear(global, iface.as_deref(), since, reason),
    }
}

fn source_text(key: &SourceKey) -> String {
    match source_addr(key) {
        addr @ std::net::IpAddr::V4(_) => addr.to_string(),
        addr => format!("{addr}/{}", key.prefix_len),
    }
}

fn list(global: &Global, iface: Option<&str>, json: bool) -> Result<u8> {
    let target = global.target(iface)?;
    let state = State::open(&target)?;
    let now = boot_now_ns();
    let mut bans: Vec<(SourceKey, Ban)> = state
        .bans()?
        .into_iter()
        .filter(|(_, ban)| ban.expires_at_ns > now)
        .collect();
    bans.sort_by_key(|(_, ban)| std::cmp::Reverse(ban.banned_at_ns));
    let rows: Vec<Row> = bans
        .iter()
        .map(|(key, ban)| Row {
            source: source_text(key),
            reason: BanReason::from_u8(ban.reason).map_or("unknown", BanReason::name),
            would_be: ban.flags & ban_flags::WOULD_BE != 0,
            banned_at_unix: boot_ns_to_unix(ban.banned_at_ns),
            expires_at_unix: boot_ns_to_unix(ban.expires_at_ns),
            first_seen_unix: boot_ns_to_unix(ban.first_seen_ns),
            last_seen_unix: boot_ns_to_unix(ban.last_seen_ns),
            hits: ban.hits,
            strikes: ban.strikes,
        })
        .collect();
    if json {
        print_json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        println!("{}: no bans in force", target.label());
        return Ok(0);
    }
    println!(
        "{:<26} {:<24} {:<20} {:<20} {:<20} {:>10}",
        "SOURCE", "REASON", "BANNED", "EXPIRES", "LAST SEEN", "HITS"
    );
    let mut would_be = 0;
    for row in rows {
        would_be += usize::from(row.would_be);
        let reason = if row.would_be {
            format!("{} (would-be)", row.reason)
        } else {
            row.reason.to_string()
        };
        println!(
            "{:<26} {:<24} {:<20} {:<20} {:<20} {:>10}",
            row.source,
            reason,
            format_time(row.banned_at_unix),
            format_time(row.expires_at_unix),
            format_time(row.last_seen_unix),
            row.hits
        );
    }
    if would_be > 0 {
        println!(
            "{would_be} would-be bans: issued in monitor mode, not enforced; switching to enforce \
             discards them"
        );
    }
    Ok(0)
}

/// The ban key of an address or prefix, as the data plane computes it.
fn ban_key(net: &IpNet, ipv6_prefix: u8) -> Result<SourceKey> {
    let mut key = SourceKey::default();
    match net {
        IpNet::V4(v4) => {
            if v4.prefix_len() != 32 {
                bail!(
                    "{net}: IPv4 bans are per address; use `sipguard deny add {net}` for a range"
                );
            }
            key.addr[..4].copy_from_slice(&v4.addr().octets());
            key.family = 4;
            key.prefix_len = 32;
        }
        IpNet::V6(v6) => {
            if v6.prefix_len() != 128 && v6.prefix_len() != ipv6_prefix {
                bail!(
                    "{net}: IPv6 bans cover the budget prefix /{ipv6_prefix}; give an address in \
                     it or use `sipguard deny add {net}`"
                );
            }
            let network = ipnet::Ipv6Net::new(v6.addr(), ipv6_prefix)?.trunc();
            key.addr = network.addr().octets();
            key.family = 6;
            key.prefix_len = ipv6_prefix;
        }
    }
    Ok(key)
}

/// The interface's state, locked, and the ban keys of `sources` under its IPv6 budget prefix.
fn open_for_keys(
    global: &Global,
    iface: Option<&str>,
    sources: &[IpNet],
) -> Result<(Target, LockedState, Vec<SourceKey>)> {
    let target = global.target(iface)?;
    let state = LockedState::open(&target)?;
    let prefix = state
        .policy(state.active_generation()?)?
        .header
        .ipv6_budget_prefix;
    let keys = sources
        .iter()
        .map(|net| ban_key(net, prefix))
        .collect::<Result<Vec<_>>>()?;
    Ok((target, state, keys))
}

fn add(global: &Global, iface: Option<&str>, ttl: Duration, sources: &[IpNet]) -> Result<u8> {
    let (target, mut state, keys) = open_for_keys(global, iface, sources)?;
    let now = boot_now_ns();
    for key in &keys {
        let ban = Ban {
            banned_at_ns: now,
            expires_at_ns: now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)),
            first_seen_ns: now,
            reason: BanReason::Manual as u8,
            ..Ban::default()
        };
        state.insert_ban(key, &ban)?;
    }
    let names: Vec<String> = keys.iter().map(source_text).collect();
    println!(
        "{}: banned {} until {}",
        target.label(),
        names.join(", "),
        format_time(now_unix() + ttl.as_secs())
    );
    Ok(0)
}

fn del(global: &Global, iface: Option<&str>, sources: &[IpNet]) -> Result<u8> {
    let (target, mut state, keys) = open_for_keys(global, iface, sources)?;
    let present: Vec<SourceKey> = state.bans()?.into_iter().map(|(key, _)| key).collect();
    let missing: Vec<String> = keys
        .iter()
        .filter(|key| !present.contains(key))
        .map(source_text)
        .collect();
    if !missing.is_empty() {
        bail!("not banned: {} (nothing was lifted)", missing.join(", "));
    }
    for key in &keys {
        state.remove_ban(key)?;
    }
    let names: Vec<String> = keys.iter().map(source_text).collect();
    println!(
        "{}: lifted the bans of {}",
        target.label(),
        names.join(", ")
    );
    Ok(0)
}

fn clear(
    global: &Global,
    iface: Option<&str>,
    since_unix: Option<u64>,
    reason: Option<ReasonFilter>,
) -> Result<u8> {
    let target = global.target(iface)?;
    let mut state = LockedState::open(&target)?;
    let wanted = reason.map(|r| match r {
        ReasonFilter::RateExceeded => BanReason::RateExceeded as u8,
        ReasonFilter::Manual => BanReason::Manual as u8,
    });
    let mut lifted = 0;
    for (key, ban) in state.bans()? {
        let recent = since_unix.is_none_or(|since| boot_ns_to_unix(ban.banned_at_ns) >= since);
        let kind = wanted.is_none_or(|reason| reason == ban.reason);
        if recent && kind && state.remove_ban(&key)? {
            lifted += 1;
        }
    }
    let scope = since_unix.map_or(String::new(), |s| {
        format!(" issued since {}", format_time(s))
    });
    println!("{}: lifted {lifted} bans{scope}", target.label());
    Ok(0)
}
