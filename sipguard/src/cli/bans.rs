//! `sipguard bans`

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use ipnet::IpNet;
use serde::Serialize;
use sipguard_common::abi::{Ban, BanReason, SourceKey, ban_flags};

use super::{Global, print_json};
use crate::{
    fleet::{Key as FleetKey, Origins, ban_net},
    journal::Who,
    live::{BanFilter, source_text},
    policy::{parse_duration, parse_net},
    state::{LiveState, State},
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
        /// Only bans for exceeding budgets (`rate-exceeded`), only `manual` bans, or only bans
        /// for auth failures (`auth-failures`).
        #[arg(long)]
        reason: Option<ReasonFilter>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReasonFilter {
    RateExceeded,
    Manual,
    AuthFailures,
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
    /// The fleet host this ban came from (absent: issued here).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
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
    let origins = Origins::load(&target);
    let rows: Vec<Row> = bans
        .iter()
        .map(|(key, ban)| Row {
            origin: (ban.flags & ban_flags::FLEET != 0).then(|| {
                origins
                    .host_of(FleetKey::Ban(ban_net(key)))
                    .unwrap_or("fleet")
                    .to_string()
            }),
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
        "{:<26} {:<24} {:<20} {:<20} {:<20} {:>10}  ORIGIN",
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
            "{:<26} {:<24} {:<20} {:<20} {:<20} {:>10}  {}",
            row.source,
            reason,
            format_time(row.banned_at_unix),
            format_time(row.expires_at_unix),
            format_time(row.last_seen_unix),
            row.hits,
            row.origin.as_deref().unwrap_or("local")
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

fn add(global: &Global, iface: Option<&str>, ttl: Duration, sources: &[IpNet]) -> Result<u8> {
    let target = global.target(iface)?;
    let keys = LiveState::lock(&target)?.journaled("bans add", &Who::this_process(), |live| {
        live.ban(sources, ttl)
    })?;
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
    let target = global.target(iface)?;
    let keys = LiveState::lock(&target)?.journaled("bans del", &Who::this_process(), |live| {
        live.lift_bans(sources)
    })?;
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
    let filter = BanFilter {
        since_unix,
        reason: reason.map(|r| match r {
            ReasonFilter::RateExceeded => BanReason::RateExceeded,
            ReasonFilter::Manual => BanReason::Manual,
            ReasonFilter::AuthFailures => BanReason::AuthFailures,
        }),
    };
    let lifted =
        LiveState::lock(&target)?.journaled("bans clear", &Who::this_process(), |live| {
            live.clear_bans(filter)
        })?;
    let scope = since_unix.map_or(String::new(), |s| {
        format!(" issued since {}", format_time(s))
    });
    println!("{}: lifted {lifted} bans{scope}", target.label());
    Ok(0)
}
