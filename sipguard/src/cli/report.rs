//! `sipguard report`

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use super::{Global, client, print_json};
use crate::{daemon::DEFAULT_LISTEN, events::EventRecord, incident::Report, time::parse_time};

/// An incident report for the ticket: what was dropped and why, the worst sources, bans
/// issued, destinations tried and the changes made, over a time window.
///
/// Counts over the window need a counter reading from its start: `sipguard run` keeps one a
/// minute (without, the counts since attach are given, and said to be). Sources and
/// destinations come from drop events: the event log given with `--events`, else the running
/// daemon's recent events.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Start of the window: a time (2026-11-26T04:00:00Z) or how long ago (1h, 30m).
    #[arg(long, default_value = "1h", value_parser = parse_time)]
    since: u64,
    /// The daemon's event log (`sipguard run --events FILE`), JSON lines.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Where `sipguard run` listens (for its recent events, when `--events` is not given).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    daemon: SocketAddr,
    /// How many of the worst sources to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let label = target.label();
    let (events, from) = match &args.events {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the event log {}", path.display()))?;
            let events = text
                .lines()
                .filter_map(|line| serde_json::from_str::<EventRecord>(line).ok())
                .collect();
            (events, format!("event log {}", path.display()))
        }
        None => {
            let path = "/api/events?after=0&limit=4096";
            match client::get(args.daemon, path, Duration::from_secs(5)) {
                Ok(Some(body)) => (
                    serde_json::from_str::<Vec<EventRecord>>(&body)
                        .context("the daemon's events")?,
                    format!("the last 4096 events of sipguard run on {}", args.daemon),
                ),
                _ => (
                    Vec::new(),
                    format!(
                        "none: no --events log given and no sipguard run on {}",
                        args.daemon
                    ),
                ),
            }
        }
    };
    let events: Vec<EventRecord> = events
        .into_iter()
        .filter(|event| event.interface == label)
        .collect();
    let report = Report::build(&target, args.since, &events, from, args.top)?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report.markdown());
    }
    Ok(0)
}
