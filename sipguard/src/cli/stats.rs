//! `sipguard stats`

use anyhow::Result;

use super::{Global, print_json};
use crate::{report::Stats, state::State};

/// Show packets and bytes by zone, reason and outcome since the state was created.
///
/// Outcome `would_drop` counts drop verdicts in monitor mode (the packets passed).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let state = State::open(&target)?;
    let stats = Stats::read(&state)?;
    if args.json {
        print_json(&stats)?;
        return Ok(0);
    }
    println!("{} ({} mode)", stats.interface, stats.mode);
    println!(
        "{:<8} {:<20} {:<11} {:>14} {:>16}",
        "ZONE", "REASON", "OUTCOME", "PACKETS", "BYTES"
    );
    for row in &stats.counters {
        println!(
            "{:<8} {:<20} {:<11} {:>14} {:>16}",
            row.zone,
            row.reason,
            row.outcome.name(),
            row.packets,
            row.bytes
        );
    }
    println!(
        "total: passed {} packets, dropped {}, would drop {}",
        stats.passed.packets, stats.dropped.packets, stats.would_drop.packets
    );
    println!(
        "drop events: {} emitted, {} suppressed by event budgets, {} lost (ring buffer full); \
         {} automatic bans issued, {} would-be bans recorded in monitor mode",
        stats.events.emitted,
        stats.events.suppressed,
        stats.events.lost,
        stats.events.bans_issued,
        stats.events.would_bans_issued
    );
    let failed: Vec<String> = stats
        .events
        .insert_failures
        .by_map()
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(map, count)| format!("{map} {count}"))
        .collect();
    if !failed.is_empty() {
        println!(
            "tables full: inserts refused: {} (see `sipguard status` for fill)",
            failed.join(", ")
        );
    }
    Ok(0)
}
