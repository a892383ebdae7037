//! `sipguard apply`

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::{EXIT_INVALID_POLICY, Global, print_json};
use crate::{
    apply::{ApplyReport, apply},
    journal::Who,
    policy::Policy,
    state::LiveState,
};

/// Make the running filter follow a policy file, atomically.
///
/// The whole file (and every list file it names) is checked first; any problem is reported with
/// file:line and nothing changes. Otherwise the new policy is built beside the running one and
/// switched in with one store: no packet is judged by a mix of both. Entries added with
/// `sipguard allow|deny add` are kept.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface whose filter to change (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// The policy file (TOML; see `sipguard example`).
    file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let policy = match Policy::load(&args.file) {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("{error}");
            return Ok(EXIT_INVALID_POLICY);
        }
    };
    // Provider lists are fetched and resolved here, once; a source that fails gives its cached
    // last good list (`sipguard run` keeps them refreshed).
    let (policy, _) = global.with_lists(policy)?;
    let target = global.target(args.iface.as_deref())?;
    let mut state = LiveState::lock(&target)?;
    let report = state
        .journaled("apply", &Who::this_process(), |live| {
            apply(live, &policy, None)
        })
        .with_context(|| format!("apply {} to {}", args.file.display(), target.label()))?;
    if args.json {
        print_json(&report)?;
    } else {
        println!("{}: applied {}", target.label(), args.file.display());
        print_report(&report);
    }
    Ok(0)
}

pub(super) fn print_report(report: &ApplyReport) {
    println!(
        "  mode {}, fragments {}; trunk {}; access {}",
        report.mode,
        report.fragments,
        report.trunk.describe(),
        report.access.describe(),
    );
    println!(
        "  allowlist {} entries (+{} -{}), denylist {} entries (+{} -{}), classes: {}; \
         policy serial {}",
        report.allow.total,
        report.allow.added,
        report.allow.removed,
        report.deny.total,
        report.deny.added,
        report.deny.removed,
        if report.classes.is_empty() {
            "none".to_string()
        } else {
            report.classes.join(", ")
        },
        report.serial
    );
    if report.bans_lifted > 0 {
        println!(
            "  lifted {} automatic bans of sources now allowlisted",
            report.bans_lifted
        );
    }
    if report.would_be_bans_discarded > 0 {
        println!(
            "  discarded {} would-be bans of monitor mode (enforcing never applies them)",
            report.would_be_bans_discarded
        );
    }
    for class in &report.orphaned_classes {
        eprintln!(
            "warning: runtime allow entries of class '{class}' have no budget now (the policy dropped the class)"
        );
    }
}
