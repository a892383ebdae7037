//! `sipguard mode`

use anyhow::Result;
use sipguard_common::abi::Mode;

use super::{Global, attach::parse_mode};
use crate::journal::Who;
use crate::state::{LiveState, State};

/// Show or switch between enforce (drop) and monitor (count what would be dropped, pass all).
///
/// The switch is immediate and keeps lists, counters, budgets and manual bans. Automatic bans
/// that monitor mode recorded (would-be bans) are discarded when enforcing starts: they were
/// never decisions. A later `apply` of a policy that sets `mode` switches again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// enforce or monitor; leave out to show the current mode.
    #[arg(value_parser = parse_mode)]
    mode: Option<Mode>,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    match args.mode {
        Some(mode) => {
            let discarded =
                LiveState::lock(&target)?
                    .journaled("mode", &Who::this_process(), |live| live.set_mode(mode))?;
            println!("{}: mode {}", target.label(), mode.name());
            if discarded > 0 {
                println!("discarded {discarded} would-be bans of monitor mode (never enforced)");
            }
        }
        None => {
            let state = State::open(&target)?;
            let policy = state.policy(state.active_generation()?)?;
            println!("{}", Mode::from_u8(policy.header.mode).name());
        }
    }
    Ok(0)
}
