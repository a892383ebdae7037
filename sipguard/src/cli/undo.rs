//! `sipguard undo`

use anyhow::Result;

use super::{Global, print_json};
use crate::{
    journal::{Journal, Who, undo},
    state::LiveState,
    time::parse_time,
};

/// Revert journaled changes: write back exactly what they replaced.
///
/// `undo ID` reverts one change of `sipguard history`; `undo --since 30m` reverts every change
/// since then, newest first. Either all of it is reverted or nothing: if a later change (or
/// the data plane) changed what a change wrote, the undo is refused and names it. The undo is
/// journaled itself, so it can be undone in turn.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// The change to revert (its ID in `sipguard history`).
    #[arg(required_unless_present = "since", conflicts_with = "since")]
    id: Option<u64>,
    /// Revert every change since this time (2026-11-26T04:00:00Z) or this long ago (30m).
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Undone {
    interface: String,
    /// The changes reverted, newest first.
    reverted: Vec<u64>,
    /// Entries written back (none: everything was already as before).
    writes: usize,
    /// The journal entry of this undo.
    journal_id: Option<u64>,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let mut live = LiveState::lock(&target)?;
    let entries = Journal::of(&target).entries()?;
    let chosen = undo::select(&entries, args.id, args.since)?;
    let ids: Vec<u64> = chosen.iter().map(|entry| entry.id).collect();
    let writes = live.journaled("undo", &Who::this_process(), |live| -> Result<usize> {
        let recorder = live.recorder().expect("a journaled change records");
        recorder.set_undoes(ids.clone());
        let writes = undo::undo(recorder, &chosen, &entries)?;
        // Derived from the ban table, not restored: see `set_policy_unjournaled`.
        live.refresh_manual_ban_flag()?;
        Ok(writes)
    })?;
    let undone = Undone {
        interface: target.label(),
        reverted: ids,
        writes,
        journal_id: live.last_entry(),
    };
    if args.json {
        print_json(&undone)?;
        return Ok(0);
    }
    let list: Vec<String> = undone.reverted.iter().map(|id| format!("#{id}")).collect();
    match undone.journal_id {
        Some(id) => println!(
            "{}: reverted {} ({} entries written back; journaled as #{id})",
            undone.interface,
            list.join(", "),
            undone.writes
        ),
        None => println!(
            "{}: {} already reverted: nothing to write back",
            undone.interface,
            list.join(", ")
        ),
    }
    Ok(0)
}
