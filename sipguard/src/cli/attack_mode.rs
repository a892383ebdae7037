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
/// (`unverified = "always"`). Journaled like every change.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// on or off; leave out to show the gate's state.
    #[arg(value_parser = ["on", "off"])]
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
    let on = state == "on";
    let mut live = LiveState::lock(&target)?;
    live.journaled("attack-mode", &Who::this_process(), |live| {
        live.set_attack_mode(on)
    })?;
    let policy = live.policy(live.active_generation()?)?;
    println!(
        "{}: access gate {}",
        target.label(),
        gate_name(policy.feedback.gate)
    );
    Ok(0)
}
