//! `sipguard attack-mode`

use anyhow::Result;

use super::Global;
use crate::{
    journal::Who,
    report::gate_name,
    state::{LiveState, State},
};

/// Show, or force, the attack mode: the access gate shut to unverified sources.
///
/// While the gate is shut, a source in the access zone that is neither allowlisted nor
/// verified (no 200 OK to its REGISTER seen) may send only what a registration needs
/// (`[access] unverified_methods`, REGISTER by default; TCP segments without a SIP start
/// line too); anything else is dropped as `unverified` before it spends any budget. Verified
/// phones and allowlisted peers are not touched. `on` shuts it at once (one bit of the
/// running policy, held across `apply`), `off` opens it again unless the policy keeps it shut
/// (`unverified = "always"`). Both stand until `auto`: with `[access] unverified =
/// "under-attack"`, `sipguard run` shuts the gate while it detects an attack (the new-source
/// budget saturated for `--attack-saturated-for`, or more access-zone drops a second than
/// `--attack-drops-per-second`) and opens it after `--attack-quiet-for`. Journaled like every
/// change.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// on or off (the operator's decision, which `sipguard run` keeps), or auto (its
    /// detector decides); leave out to show the gate's state.
    #[arg(value_parser = ["on", "off", "auto"])]
    state: Option<String>,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let Some(state) = args.state.as_deref() else {
        let state = State::open(&target)?;
        let policy = state.policy(state.active_generation()?)?;
        println!("{}", gate_name(policy.feedback.gate));
        return Ok(0);
    };
    let mut live = LiveState::lock(&target)?;
    live.journaled("attack-mode", &Who::this_process(), |live| match state {
        "auto" => live.release_attack_mode(),
        on => live.set_attack_mode(on == "on", true),
    })?;
    let policy = live.policy(live.active_generation()?)?;
    println!(
        "{}: access gate {}",
        target.label(),
        gate_name(policy.feedback.gate)
    );
    Ok(0)
}
