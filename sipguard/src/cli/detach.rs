//! `sipguard detach`

use anyhow::{Context as _, Result};

use super::Global;
use crate::dataplane::detach;

/// Detach the filter from an interface and remove its pinned state.
///
/// SIP from every source reaches the SBC again. With --keep-state the maps (policy, counters)
/// stay pinned, so a later `attach` without --policy resumes with them. Only sipguard's own pins
/// are removed; anything else found in the directory is left (and named).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to stop filtering (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Keep the pinned maps (policy, lists, counters).
    #[arg(long)]
    keep_state: bool,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let report = detach(&target, args.keep_state)
        .with_context(|| format!("detach from {}", target.label()))?;
    let unlinked = if report.unlinked {
        "detached the program"
    } else {
        "no program was attached"
    };
    let state = if report.removed_state {
        "removed the pinned state"
    } else if args.keep_state {
        "kept the pinned state"
    } else {
        "removed sipguard's pins"
    };
    println!("{}: {unlinked}; {state}", target.label());
    if !report.left_behind.is_empty() {
        eprintln!(
            "warning: left {} in place: not created by sipguard ({})",
            target.dir().display(),
            report.left_behind.join(", ")
        );
    }
    Ok(0)
}
