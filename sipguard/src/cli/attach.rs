//! `sipguard attach`

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use sipguard_common::abi::Mode;

use super::{Global, load_policy, print_json};
use crate::dataplane::{AttachRequest, XdpModeChoice, attach};

/// Attach the filter to an interface, or replace the running program in place.
///
/// The first attach creates the state (maps pinned under --pin-root/<iface>). Without --policy it
/// starts in monitor mode with empty lists and SIP on UDP 5060, TCP 5060/5061: nothing is dropped,
/// `sipguard stats` shows what would be. Attaching again (e.g. after an upgrade) keeps the pinned
/// policy and counters and swaps the program atomically, with no moment unfiltered.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Interface to filter (the SBC's SIP-facing NIC).
    #[arg(long, value_parser = super::iface_name)]
    iface: String,
    /// Policy file to apply (TOML; see `sipguard example`).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// enforce drops; monitor only counts what it would drop. Overrides the policy's mode.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// XDP hook: native (in the driver), skb (generic), or auto (native, else skb).
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    xdp_mode: XdpModeChoice,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn parse_mode(text: &str) -> Result<Mode, String> {
    match text {
        "enforce" => Ok(Mode::Enforce),
        "monitor" => Ok(Mode::Monitor),
        other => Err(format!("'{other}' is not a mode (enforce or monitor)")),
    }
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let policy = match load_policy(args.policy.as_deref()) {
        Ok(policy) => policy,
        Err(status) => return Ok(status),
    };
    let policy = match policy {
        Some(policy) => Some(global.with_lists(policy)?.0),
        None => None,
    };
    let target = global.target(Some(&args.iface))?;
    let report = attach(&AttachRequest {
        target: target.clone(),
        xdp_mode: args.xdp_mode,
        policy: policy.as_ref(),
        mode: args.mode,
    })
    .with_context(|| format!("attach to {}", target.label()))?;
    if args.json {
        print_json(&serde_json::json!({
            "interface": target.label(),
            "created_state": report.created_state,
            "replaced_program": report.replaced_program,
            "xdp_mode": report.xdp_mode,
            "program_id": report.program_id,
            "applied": report.applied,
            "egress": match &report.egress {
                Ok(replaced) => serde_json::json!({"attached": true, "replaced_program": replaced}),
                Err(why) => serde_json::json!({"attached": false, "error": why}),
            },
        }))?;
        return Ok(0);
    }
    let how = if report.replaced_program {
        "replaced the running program (no gap)"
    } else {
        "attached"
    };
    println!(
        "{}: {how} in {} XDP mode, program id {}; state in {}{}",
        target.label(),
        report.xdp_mode,
        report.program_id,
        target.dir().display(),
        if report.created_state {
            " (new)"
        } else {
            " (kept)"
        },
    );
    println!("{}: {}", target.label(), describe_egress(&report.egress));
    if let Some(applied) = &report.applied {
        super::apply::print_report(applied);
    }
    Ok(0)
}

/// The egress program's part of an attach.
fn describe_egress(egress: &Result<bool, String>) -> String {
    match egress {
        Ok(true) => "egress program replaced in its tcx link (reads the SBC's answers)".into(),
        Ok(false) => "egress program attached (tcx; reads the SBC's answers)".into(),
        Err(why) => format!(
            "egress program NOT attached ({why}): auth-failure bans and verified sources need \
             it; the XDP filter runs without"
        ),
    }
}
