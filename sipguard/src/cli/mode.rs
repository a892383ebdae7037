//! `sipguard mode`

use anyhow::{Context as _, Result};
use sipguard_common::abi::Mode;

use super::{Global, attach::parse_mode};
use crate::{
    apply::set_mode,
    state::{Lock, State},
};

/// Show or switch between enforce (drop) and monitor (count what would be dropped, pass all).
///
/// The switch is immediate and keeps lists and counters. A later `apply` of a policy that sets
/// `mode` switches again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long)]
    iface: Option<String>,
    /// enforce or monitor; leave out to show the current mode.
    #[arg(value_parser = parse_mode)]
    mode: Option<Mode>,
}

pub fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let _lock = Lock::acquire(&target.dir()).with_context(|| target.label())?;
    let mut state = State::open(&target)?;
    match args.mode {
        Some(mode) => {
            set_mode(&mut state, mode)?;
            println!("{}: mode {}", target.label(), mode.name());
        }
        None => {
            let policy = state.policy(state.active_generation()?)?;
            println!("{}", Mode::from_u8(policy.header.mode).name());
        }
    }
    Ok(0)
}
