//! `sipguard lockdown`

use anyhow::Result;
use sipguard_common::verdict::Lockdown;

use super::Global;
use crate::{
    journal::Who,
    report::lockdown_name,
    state::{LiveState, State},
};

/// Show, or switch, the lockdown: every zone admits only allowlisted sources.
///
/// For the first minutes of an incident. `on` switches at once (one byte of the running policy):
/// sources on no allowlist are dropped in the access zone too (reason `lockdown`, no state
/// created), verified sources (the SBC accepted their REGISTER) still get in unless
/// `--no-verified`. `off` brings back exactly the policy in force before; runtime entries
/// (`allow|deny add`), bans and budgets made meanwhile are kept. A lockdown holds across
/// `apply` until `off`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// on or off; leave out to show the current state.
    #[arg(value_parser = ["on", "off"])]
    state: Option<String>,
    /// With `on`: verified sources are locked out too.
    #[arg(long, requires = "state")]
    no_verified: bool,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let lockdown = match (args.state.as_deref(), args.no_verified) {
        (None, _) => {
            let state = State::open(&target)?;
            let policy = state.policy(state.active_generation()?)?;
            println!(
                "{}",
                lockdown_name(Lockdown::from_flags(policy.header.flags))
            );
            return Ok(0);
        }
        (Some("off"), true) => {
            anyhow::bail!("--no-verified goes with `lockdown on`");
        }
        (Some("off"), false) => Lockdown::Off,
        (_, true) => Lockdown::Allowlisted,
        (_, false) => Lockdown::AllowlistedAndVerified,
    };
    LiveState::lock(&target)?.journaled("lockdown", &Who::this_process(), |live| {
        live.set_lockdown(lockdown)
    })?;
    match lockdown {
        Lockdown::Off => println!(
            "{}: lockdown off: the policy admits as before",
            target.label()
        ),
        Lockdown::Allowlisted => println!(
            "{}: lockdown on: only allowlisted sources are admitted",
            target.label()
        ),
        Lockdown::AllowlistedAndVerified => println!(
            "{}: lockdown on: only allowlisted and verified sources are admitted",
            target.label()
        ),
    }
    Ok(0)
}
