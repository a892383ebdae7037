//! `sipguard top`

use std::{io::Write as _, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, RingBuf};
use sipguard_common::abi::map_name;

use super::{Global, client};
use crate::{
    daemon::{DEFAULT_LISTEN, TopView, top::TopSources},
    events::{Clock, EventRecord},
    state::{State, Target},
    time::{format_time, now_unix},
};

/// A live view of the worst sources and the drop rates by reason.
///
/// With `sipguard run` running, its aggregates are shown (top offenders since it started, kept in
/// fixed memory however many sources attack). Otherwise this command aggregates the ring
/// buffer's events itself for as long as it runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (for the direct mode; optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Print one screen and exit (no terminal control codes).
    #[arg(long)]
    once: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Sources shown.
    #[arg(long, default_value_t = 15)]
    limit: usize,
    /// Print the view as JSON (implies --once).
    #[arg(long)]
    json: bool,
    /// Where `sipguard run` listens.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    daemon: SocketAddr,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let once = args.once || args.json;
    let interval = Duration::from_secs_f64(args.interval.max(0.2));
    let path = format!("/api/top?limit={}", args.limit);
    if client::get(args.daemon, "/healthz", Duration::from_secs(2))?.is_some() {
        loop {
            let body = client::get(args.daemon, &path, Duration::from_secs(10))?
                .context("the daemon went away")?;
            let view: TopView = serde_json::from_str(&body)?;
            if args.json {
                println!("{body}");
                return Ok(0);
            }
            render(&view, &format!("daemon at {}", args.daemon), once);
            if once {
                return Ok(0);
            }
            std::thread::sleep(interval);
        }
    }
    let target = global.target(args.iface.as_deref())?;
    direct(&target, &args, once, interval)
}

/// Without a daemon: aggregate the ring buffer here, rates from counter differences.
fn direct(target: &Target, args: &Args, once: bool, interval: Duration) -> Result<u8> {
    let state = State::open(target)?;
    let pin = target.map_pin(map_name::EVENTS);
    let data = MapData::from_pin(&pin).with_context(|| format!("open {}", pin.display()))?;
    let mut ring = RingBuf::try_from(Map::from_map_data(data)?)?;
    let label = target.label();
    let clock = Clock::now();
    let mut top = TopSources::new(1024);
    let packets = |state: &State| -> Result<Vec<u64>> {
        Ok(state.counters()?.iter().map(|c| c.packets).collect())
    };
    let mut previous = packets(&state)?;
    loop {
        let started = std::time::Instant::now();
        if !once {
            std::thread::sleep(interval);
        }
        while let Some(item) = ring.next() {
            if let Some(event) = EventRecord::decode(&item, &label, &clock) {
                top.record(&event);
            }
        }
        let current = packets(&state)?;
        let rates = if once {
            Vec::new()
        } else {
            let seconds = started.elapsed().as_secs_f64();
            crate::report::rates(&label, &previous, &current, seconds)
        };
        previous = current;
        let view = TopView {
            sources: top.top(args.limit),
            drops_seen: top.total,
            sources_tracked: top.len(),
            rates,
        };
        if args.json {
            println!("{}", serde_json::to_string(&view)?);
            return Ok(0);
        }
        render(&view, "ring buffer (no daemon)", once);
        if once {
            return Ok(0);
        }
    }
}

fn render(view: &TopView, source: &str, once: bool) {
    let mut out = String::new();
    if !once {
        out.push_str("\x1b[2J\x1b[H");
    }
    out.push_str(&format!(
        "sipguard top  {}  from {source}  (Ctrl-C quits)\n\n",
        format_time(now_unix())
    ));
    out.push_str("DROP RATES (packets/s)\n");
    let drops: Vec<_> = view
        .rates
        .iter()
        .filter(|r| r.outcome != "passed")
        .collect();
    if drops.is_empty() {
        out.push_str("  none\n");
    }
    for rate in drops.iter().take(10) {
        out.push_str(&format!(
            "  {:<24} {:<8} {:<20} {:<11} {:>12.1}\n",
            rate.interface, rate.zone, rate.reason, rate.outcome, rate.packets_per_second
        ));
    }
    out.push_str(&format!(
        "\nTOP SOURCES ({} drops attributed, {} sources tracked)\n",
        view.drops_seen, view.sources_tracked
    ));
    out.push_str(&format!(
        "  {:<40} {:>16}  {:<40} {}\n",
        "SOURCE", "DROPS (+-ERROR)", "REASONS", "LAST"
    ));
    for offender in &view.sources {
        let reasons: Vec<String> = offender
            .reasons
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        let source = offender
            .source
            .map_or_else(|| "(no IP header)".to_string(), |s| s.to_string());
        // Space-Saving may overcount a source by `error` (counts inherited from evicted ones).
        let drops = if offender.error > 0 {
            format!("{} (+-{})", offender.drops, offender.error)
        } else {
            offender.drops.to_string()
        };
        out.push_str(&format!(
            "  {:<40} {:>16}  {:<40} {} {}:{}\n",
            format!("{source} ({})", offender.interface),
            drops,
            reasons.join(", "),
            offender.last_seen.get(11..19).unwrap_or(""),
            offender.last_method.as_deref().unwrap_or("-"),
            offender.last_dport
        ));
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}
