//! `sipguard allow ...` and `sipguard deny ...`

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use sipguard_common::abi::{CLASS_SLOTS, Origin};

use super::{Global, print_json};
use crate::{
    fleet::{Key as FleetKey, Origins},
    journal::Who,
    live::LiveError,
    policy::{Prefix, class_name, parse_net},
    state::{List, LiveState, State},
    time::format_time,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Add addresses or CIDRs at once. They stay across `apply` until deleted.
    Add(Entries),
    /// Remove addresses or CIDRs at once (exact prefixes, as `list` shows them). Removing an
    /// entry of the policy file lasts until the next `apply`: edit the file to make it stick.
    Del(Entries),
    /// Show the entries in force.
    List {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Entries {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Budget class of each source these allow entries cover (as in `sipguard limits show`);
    /// none: no budget.
    #[arg(long)]
    class: Option<String>,
    /// Addresses or CIDRs, e.g. 192.0.2.7 198.51.100.0/24 2001:db8::/48.
    #[arg(required = true, value_parser = parse_prefix)]
    entries: Vec<Prefix>,
}

fn parse_prefix(text: &str) -> Result<Prefix, String> {
    parse_net(text).map(Prefix::from)
}

#[derive(Serialize)]
struct Row {
    prefix: String,
    /// policy, runtime, or fleet:<host> (received from that host of the fleet).
    origin: String,
    /// Budget class (allowlist), if any.
    class: Option<String>,
    added_at_unix: u32,
}

pub(super) fn run(global: &Global, list: List, args: Args) -> Result<u8> {
    match args.action {
        Action::Add(entries) => change(global, list, entries, true),
        Action::Del(entries) => change(global, list, entries, false),
        Action::List { iface, json } => show(global, list, iface.as_deref(), json),
    }
}

fn change(global: &Global, list: List, entries: Entries, add: bool) -> Result<u8> {
    let target = global.target(entries.iface.as_deref())?;
    let mut live = LiveState::lock(&target)?;
    let action = format!("{} {}", list.command(), if add { "add" } else { "del" });
    let who = Who::this_process();
    if add {
        live.journaled(&action, &who, |live| {
            live.add_entries(list, &entries.entries, entries.class.as_deref())
        })?;
    } else {
        // A class given to `del` is checked like one given to `add`, then has nothing to do.
        match (&entries.class, list) {
            (None, _) => {}
            (Some(_), List::Deny) => return Err(LiveError::DenyWithClass.into()),
            (Some(name), List::Allow) => drop(live.class_id(name)?),
        }
        live.journaled(&action, &who, |live| {
            live.remove_entries(list, &entries.entries)
        })?;
    }
    let verb = if add { "added to" } else { "removed from" };
    println!(
        "{}: {} {verb} the {}",
        target.label(),
        entries
            .entries
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        list.name()
    );
    Ok(0)
}

fn show(global: &Global, list: List, iface: Option<&str>, json: bool) -> Result<u8> {
    let target = global.target(iface)?;
    let state = State::open(&target)?;
    let generation = state.active_generation()?;
    let policy = state.policy(generation)?;
    let rules = state.rules(generation, list)?;
    let origins = Origins::load(&target);
    let rows: Vec<Row> = rules
        .iter()
        .map(|(prefix, value)| Row {
            prefix: prefix.to_string(),
            origin: if value.origin == Origin::Fleet as u8 {
                let key = match list {
                    List::Allow => FleetKey::Allow(prefix.net()),
                    List::Deny => FleetKey::Deny(prefix.net()),
                };
                format!("fleet:{}", origins.host_of(key).unwrap_or("?"))
            } else {
                Origin::name_of(value.origin).to_string()
            },
            class: (value.class != 0)
                .then(|| class_name(&policy.classes[usize::from(value.class) % CLASS_SLOTS])),
            added_at_unix: value.added_at_unix,
        })
        .collect();
    if json {
        print_json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        println!("{}: the {} is empty", target.label(), list.name());
        return Ok(0);
    }
    println!("{:<44} {:<16} {:<16} ADDED", "PREFIX", "ORIGIN", "CLASS");
    for row in rows {
        println!(
            "{:<44} {:<16} {:<16} {}",
            row.prefix,
            row.origin,
            row.class.as_deref().unwrap_or("-"),
            format_time(u64::from(row.added_at_unix))
        );
    }
    Ok(0)
}
