//! `sipguard history`

use anyhow::Result;
use serde::Serialize;
use sipguard_common::abi::{BanReason, ban_flags, map_name};

use super::{Global, print_json};
use crate::{
    journal::{Entry, Journal, describe_write},
    live::source_text,
    state::State,
    time::{boot_ns_to_unix, format_time, parse_time},
};

/// What changed on the filter, when, and who changed it.
///
/// Every change made through sipguard (apply, mode, lockdown, allow/deny add/del, bans
/// add/del/clear, limits set, strikes from the CLI and the API, undo) is journaled with the
/// exact bytes before and after of every table entry it wrote; bans the data plane issued by
/// itself are listed beside them. `sipguard undo ID` reverts one change, `--since` many.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Only changes since this time (2026-11-26T04:00:00Z) or this long ago (1h, 30m).
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Every write of every change, one line each.
    #[arg(long, short)]
    verbose: bool,
    /// Print JSON: each change with every write's bytes before and after.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Change {
    #[serde(flatten)]
    entry: Entry,
    /// The `undo` that reverted this change, if one did.
    undone_by: Option<u64>,
    /// One line per write, for people.
    described: Vec<String>,
}

/// A ban the data plane issued by itself (it is in the ban table, not in the journal).
#[derive(Serialize)]
struct AutomaticBan {
    time: String,
    unix: u64,
    source: String,
    reason: &'static str,
    expires: String,
    /// Issued in monitor mode: recorded, not enforced.
    would_be: bool,
}

#[derive(Serialize)]
struct History {
    interface: String,
    journal: String,
    changes: Vec<Change>,
    automatic_bans: Vec<AutomaticBan>,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let history = history(&target, args.since)?;
    if args.json {
        print_json(&history)?;
        return Ok(0);
    }
    print_history(&history, args.verbose);
    Ok(0)
}

fn history(target: &crate::state::Target, since: Option<u64>) -> Result<History> {
    let journal = Journal::of(target);
    let entries = journal.entries()?;
    let undone_by = |id: u64| {
        entries
            .iter()
            .rev()
            .find(|entry| entry.undoes.contains(&id))
            .map(|entry| entry.id)
    };
    let recent = |unix: u64| since.is_none_or(|since| unix >= since);
    let changes = entries
        .iter()
        .filter(|entry| recent(entry.unix))
        .map(|entry| Change {
            undone_by: undone_by(entry.id),
            described: entry.writes.iter().map(describe_write).collect(),
            entry: entry.clone(),
        })
        .collect();
    // The journal can be read without the filter (after a detach); its bans need it.
    let bans = State::open(target)
        .and_then(|state| state.bans())
        .unwrap_or_default();
    let mut automatic_bans: Vec<AutomaticBan> = bans
        .into_iter()
        .filter(|(_, ban)| ban.reason != BanReason::Manual as u8)
        .map(|(key, ban)| {
            let unix = boot_ns_to_unix(ban.banned_at_ns);
            AutomaticBan {
                time: format_time(unix),
                unix,
                source: source_text(&key),
                reason: BanReason::from_u8(ban.reason).map_or("unknown", BanReason::name),
                expires: format_time(boot_ns_to_unix(ban.expires_at_ns)),
                would_be: ban.flags & ban_flags::WOULD_BE != 0,
            }
        })
        .filter(|ban| recent(ban.unix))
        .collect();
    automatic_bans.sort_by_key(|ban| ban.unix);
    Ok(History {
        interface: target.label(),
        journal: journal.path().display().to_string(),
        changes,
        automatic_bans,
    })
}

/// Writes a change's summary leaves out: bookkeeping every change makes.
fn noise(line: &str, write_map: &str) -> bool {
    write_map == map_name::PREFILTER || line.ends_with(": serial")
}

fn print_history(history: &History, verbose: bool) {
    enum Row<'a> {
        Change(&'a Change),
        Ban(&'a AutomaticBan),
    }
    let mut rows: Vec<(u64, Row)> = history
        .changes
        .iter()
        .map(|change| (change.entry.unix, Row::Change(change)))
        .chain(
            history
                .automatic_bans
                .iter()
                .map(|ban| (ban.unix, Row::Ban(ban))),
        )
        .collect();
    rows.sort_by_key(|(unix, _)| *unix);
    if rows.is_empty() {
        println!(
            "{}: no changes journaled ({})",
            history.interface, history.journal
        );
        return;
    }
    println!(
        "{:>5}  {:<20}  {:<16}  {:<14}  WHAT",
        "ID", "TIME", "WHO", "ACTION"
    );
    for (unix, row) in rows {
        match row {
            Row::Change(change) => {
                let entry = &change.entry;
                let lines: Vec<&String> = change
                    .described
                    .iter()
                    .zip(&entry.writes)
                    .filter(|(line, write)| verbose || !noise(line, &write.map))
                    .map(|(line, _)| line)
                    .collect();
                let mut what = match lines.as_slice() {
                    [] => format!("{} writes", entry.writes.len()),
                    [one] => (*one).clone(),
                    [first, rest @ ..] if !verbose => {
                        format!("{first} (+{} more)", rest.len())
                    }
                    _ => format!("{} writes", entry.writes.len()),
                };
                if !entry.undoes.is_empty() {
                    let ids: Vec<String> = entry.undoes.iter().map(|id| format!("#{id}")).collect();
                    what = format!("reverted {}: {what}", ids.join(", "));
                }
                let mut status = Vec::new();
                if let Some(by) = change.undone_by {
                    status.push(format!("undone by #{by}"));
                }
                match entry.outcome {
                    crate::journal::Outcome::Done => {}
                    crate::journal::Outcome::Failed => status.push("FAILED part-way".into()),
                    crate::journal::Outcome::Interrupted => {
                        status.push("INTERRUPTED part-way".into());
                    }
                }
                let status = if status.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", status.join("; "))
                };
                println!(
                    "{:>5}  {:<20}  {:<16}  {:<14}  {what}{status}",
                    format!("#{}", entry.id),
                    format_time(unix),
                    entry.who.user,
                    entry.action
                );
                if verbose {
                    println!("{:>5}  {}", "", entry.who.command);
                    for line in lines.iter().skip(1) {
                        println!("{:>5}  {:<20}  {:<16}  {:<14}  {line}", "", "", "", "");
                    }
                }
            }
            Row::Ban(ban) => println!(
                "{:>5}  {:<20}  {:<16}  {:<14}  {}: {}banned until {}",
                "-",
                ban.time,
                "data plane",
                ban.reason,
                ban.source,
                if ban.would_be { "would be " } else { "" },
                ban.expires
            ),
        }
    }
}
