//! `sipguard events`

use std::{net::SocketAddr, os::fd::AsRawFd as _, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, RingBuf};
use sipguard_common::abi::map_name;

use super::{Global, client};
use crate::{
    daemon::{DEFAULT_LISTEN, HANDLER_DEADLINE, MAX_EVENTS_WAIT},
    events::{Clock, EventRecord, RuleNames},
    state::{State, Target},
};

/// Show drop events: the newest, or follow them as they come.
///
/// With `sipguard run` running they come from it (nothing is consumed); otherwise this command
/// reads the kernel's ring buffer itself, which consumes the events it shows.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this interface.
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Keep printing new events until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// How many of the newest events to show first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Where `sipguard run` listens.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    daemon: SocketAddr,
    /// Only drops of this reason (repeatable), e.g. `destination_denied`, `scanner`.
    #[arg(long, value_parser = reason_name)]
    reason: Vec<String>,
}

fn reason_name(text: &str) -> Result<String, String> {
    match sipguard_common::abi::Reason::ALL
        .iter()
        .find(|reason| reason.name() == text)
    {
        Some(reason) => Ok(reason.name().to_string()),
        None => Err(format!(
            "unknown reason '{text}'; one of: {}",
            sipguard_common::abi::Reason::ALL
                .iter()
                .filter(|reason| reason.is_drop())
                .map(|reason| reason.name())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Client timeout of one long poll: past the daemon's handler deadline, so the daemon answers
/// (with events, none, or its 503) before we give up.
const FOLLOW_TIMEOUT: Duration = HANDLER_DEADLINE.saturating_add(Duration::from_secs(5));

fn print(event: &EventRecord, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
    } else {
        println!("{}", event.human());
    }
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let label = args
        .iface
        .as_deref()
        .map(|iface| global.target(Some(iface)).map(|t| t.label()))
        .transpose()?;
    let wanted = |event: &EventRecord| {
        label.as_ref().is_none_or(|l| *l == event.interface)
            && (args.reason.is_empty() || args.reason.contains(&event.reason))
    };
    let first = format!("/api/events?after=0&limit={}", args.limit);
    if let Some(body) = client::get(args.daemon, &first, Duration::from_secs(5))? {
        let mut events: Vec<EventRecord> = serde_json::from_str(&body)?;
        let mut last = events.last().map_or(0, |e| e.seq);
        loop {
            for event in events.iter().filter(|e| wanted(e)) {
                print(event, args.json);
            }
            if !args.follow {
                return Ok(0);
            }
            // The longest poll the daemon grants; our timeout leaves room for its own deadline.
            let path = format!(
                "/api/events?after={last}&limit=1000&wait={}",
                MAX_EVENTS_WAIT.as_secs()
            );
            let body =
                client::get(args.daemon, &path, FOLLOW_TIMEOUT)?.context("the daemon went away")?;
            events = serde_json::from_str(&body)?;
            last = events.last().map_or(last, |e| e.seq);
        }
    }
    eprintln!(
        "no `sipguard run` at {}; reading the ring buffer directly (this consumes the events)",
        args.daemon
    );
    let target = global.target(args.iface.as_deref())?;
    direct(&target, &args)
}

fn direct(target: &Target, args: &Args) -> Result<u8> {
    State::open(target)?;
    let pin = target.map_pin(map_name::EVENTS);
    let data = MapData::from_pin(&pin).with_context(|| format!("open {}", pin.display()))?;
    let mut ring = RingBuf::try_from(Map::from_map_data(data)?)?;
    let label = target.label();
    let clock = Clock::now();
    let mut names = RuleNames::new(target.clone());
    let mut shown = 0;
    loop {
        while let Some(item) = ring.next() {
            if let Some(mut event) = EventRecord::decode(&item, &label, &clock) {
                if !args.reason.is_empty() && !args.reason.contains(&event.reason) {
                    continue;
                }
                names.name(&mut event);
                print(&event, args.json);
                shown += 1;
                if !args.follow && shown >= args.limit {
                    return Ok(0);
                }
            }
        }
        if !args.follow {
            return Ok(0);
        }
        let mut poll = libc::pollfd {
            fd: ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, 500) };
    }
}
