//! `sipguard limits`

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use sipguard_common::abi::CLASS_SLOTS;

use super::{Global, print_json};
use crate::{
    journal::Who,
    live::NEW_SOURCES_LIMIT,
    policy::{Budget, class_name},
    state::{LiveState, State},
};

/// Show or change budgets (packets per second and burst) on the running filter.
///
/// A change acts on the next packet and resets no source's bucket. The policy file's
/// `[classes]` and `[access] new_sources` hold the same settings; the next `apply` reconciles
/// to the file.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List the budget classes and the new-source budget.
    Show {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a class (by name), or `new-sources`.
    Set {
        /// Interface (optional when only one is filtered).
        #[arg(long, value_parser = super::iface_name)]
        iface: Option<String>,
        /// Class name as in `limits show`, or `new-sources`.
        class: String,
        /// Packets per second (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Packets that may arrive back to back (default: the rate).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        burst: Option<u32>,
    },
}

#[derive(Serialize)]
struct Row {
    class: String,
    rate: u32,
    burst: u32,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    match args.action {
        Action::Show { iface, json } => {
            let target = global.target(iface.as_deref())?;
            let state = State::open(&target)?;
            let policy = state.policy(state.active_generation()?)?;
            let mut rows: Vec<Row> = (1..CLASS_SLOTS)
                .map(|slot| &policy.classes[slot])
                .filter(|limits| limits.name[0] != 0)
                .map(|limits| Row {
                    class: class_name(limits),
                    rate: limits.rate,
                    burst: limits.burst,
                })
                .collect();
            rows.push(Row {
                class: NEW_SOURCES_LIMIT.into(),
                rate: policy.header.new_sources_rate,
                burst: policy.header.new_sources_burst,
            });
            if json {
                print_json(&rows)?;
            } else {
                println!("{:<24} {:>10} {:>10}", "CLASS", "RATE/S", "BURST");
                for row in rows {
                    println!("{:<24} {:>10} {:>10}", row.class, row.rate, row.burst);
                }
            }
            Ok(0)
        }
        Action::Set {
            iface,
            class,
            rate,
            burst,
        } => {
            let target = global.target(iface.as_deref())?;
            let budget = Budget {
                rate,
                burst: burst.unwrap_or(rate),
            };
            LiveState::lock(&target)?.journaled("limits set", &Who::this_process(), |live| {
                live.set_limit(&class, budget)
            })?;
            println!(
                "{}: {class} now {}/s, burst {} (acts on the next packet)",
                target.label(),
                budget.rate,
                budget.burst
            );
            Ok(0)
        }
    }
}
