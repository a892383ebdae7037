//! `sipguard capture`

use std::{
    fs::OpenOptions,
    io::BufWriter,
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use sipguard_common::abi::capture_slot;

use super::Global;
use crate::{
    capture::{
        Budget, Filter, RENEW_INTERVAL, Session, Stats, pcapng::EvidenceWriter, record::Captured,
    },
    daemon::DEFAULT_LISTEN,
    policy::{parse_duration, parse_net},
    state::State,
    time::Clock,
};

/// Write the SIP packets the filter drops (and, with --include-passed, those it passes) to a
/// pcapng file, each with its verdict as the packet comment, for tshark and Wireshark.
///
/// The kernel copies packets only while a capture runs, only those that match, and within the
/// capture's own budget; what it could not copy is counted and shown at the end. One capture
/// at a time per interface. Ends after --count packets, after --duration, or on Ctrl-C.
///
///   sipguard capture -w evidence.pcapng --reason scanner --duration 60s
///   sipguard capture -w trunk.pcapng --zone trunk --src 203.0.113.0/24 --count 100
///   sipguard capture --from-ring -w last-minutes.pcapng --reason not_allowlisted
///   tshark -r evidence.pcapng -T fields -e frame.comment -e ip.src -e sip.Method
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Interface whose filter to capture from (the only one with state when left out).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// The pcapng file to write (created with mode 0600).
    #[arg(short = 'w', long = "write")]
    write: PathBuf,
    /// Drop reasons to capture (repeat, or comma-separated); all drop reasons by default.
    #[arg(long = "reason", value_delimiter = ',')]
    reasons: Vec<String>,
    /// Only packets from this source (address or CIDR, IPv4 or IPv6).
    #[arg(long, value_parser = parse_net)]
    src: Option<IpNet>,
    /// Zones to capture (trunk, access, unknown; repeat); all by default.
    #[arg(long = "zone", value_delimiter = ',')]
    zones: Vec<String>,
    /// Also the SIP packets the filter passes (outcome `passed`).
    #[arg(long)]
    include_passed: bool,
    /// Bytes of each packet to keep (at most 4096, the default).
    #[arg(long, default_value_t = 4096)]
    snaplen: u32,
    /// Stop after this long (e.g. 60s, 5m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// The capture's budget: packets copied per second (all CPUs).
    #[arg(long, default_value_t = crate::capture::DEFAULT_PACKETS_PER_SECOND)]
    max_pps: u32,
    /// The capture's budget: bytes copied per second (all CPUs).
    #[arg(long, default_value_t = crate::capture::DEFAULT_BYTES_PER_SECOND)]
    max_bytes_per_second: u32,
    /// Save the rolling ring of drops that `sipguard run --capture-ring-bytes` keeps, instead
    /// of capturing from now on.
    #[arg(long)]
    from_ring: bool,
    /// Address of the running `sipguard run` (with --from-ring).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn create(path: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let filter = Filter {
        reasons: args.reasons.clone(),
        zones: args.zones.clone(),
        source: args.src,
        include_passed: args.include_passed,
        passed_only: false,
        snaplen: args.snaplen,
    };
    // Names are checked before anything starts.
    filter.control(Budget::default(), 1)?;
    if args.from_ring {
        return from_ring(&args, &filter);
    }
    let target = global.target(args.iface.as_deref())?;
    let state = State::open(&target)?;
    let names = crate::sip_stats::names_by_id(&state).unwrap_or_default();
    let budget = Budget {
        packets_per_second: args.max_pps,
        bytes_per_second: args.max_bytes_per_second,
    };
    let file = create(&args.write)?;
    let mut writer = EvidenceWriter::new(BufWriter::new(file), Clock::now(), names)?;
    let mut session = Session::start(&target, capture_slot::LIVE, &filter, budget)?;
    // SAFETY: the handler only stores into an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    eprintln!(
        "sipguard: capturing on {} into {} (Ctrl-C to stop)",
        target.label(),
        args.write.display()
    );
    let label = target.label();
    let started = Instant::now();
    let mut renewed = Instant::now();
    let limit = args.count.unwrap_or(u64::MAX);
    let mut failure = None;
    while !STOP.load(Ordering::Relaxed) && writer.written() < limit {
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        session.wait(Duration::from_millis(200));
        session.drain(|bytes| {
            if writer.written() >= limit || failure.is_some() {
                return;
            }
            if let Some(packet) = Captured::decode(bytes)
                && let Err(error) = writer.write(&label, &packet)
            {
                failure = Some(error);
            }
        });
        if let Some(error) = failure.take() {
            return Err(error.context(format!("write {}", args.write.display())));
        }
        if renewed.elapsed() >= RENEW_INTERVAL {
            session.renew()?;
            renewed = Instant::now();
        }
    }
    session.stop()?;
    // What the kernel copied before the slot went off.
    session.drain(|bytes| {
        if writer.written() >= limit || failure.is_some() {
            return;
        }
        if let Some(packet) = Captured::decode(bytes)
            && let Err(error) = writer.write(&label, &packet)
        {
            failure = Some(error);
        }
    });
    if let Some(error) = failure.take() {
        return Err(error.context(format!("write {}", args.write.display())));
    }
    let stats = session.stats()?;
    let written = writer.written();
    use std::io::Write as _;
    writer
        .into_inner()
        .flush()
        .with_context(|| format!("write {}", args.write.display()))?;
    report(written, &args.write, &stats);
    Ok(0)
}

/// The end-of-capture summary on standard error.
fn report(written: u64, path: &Path, stats: &Stats) {
    eprintln!(
        "sipguard: {written} packets written to {}; kernel: {} copied ({} bytes), {} over the \
         capture budget, {} lost to a full ring, {} truncated at snaplen",
        path.display(),
        stats.copied,
        stats.copied_bytes,
        stats.over_budget,
        stats.ring_full,
        stats.truncated
    );
}

fn from_ring(args: &Args, filter: &Filter) -> Result<u8> {
    let mut query = vec![format!(
        "include_passed={}",
        if filter.include_passed { 1 } else { 0 }
    )];
    if let Some(iface) = &args.iface {
        query.push(format!("iface={iface}"));
    }
    if !filter.reasons.is_empty() {
        query.push(format!("reason={}", filter.reasons.join(",")));
    }
    if !filter.zones.is_empty() {
        query.push(format!("zone={}", filter.zones.join(",")));
    }
    if let Some(src) = filter.source {
        query.push(format!("src={src}"));
    }
    let path = format!("/api/capture/ring?{}", query.join("&"));
    let Some(body) =
        super::client::get_bytes(args.listen, &path, Duration::from_secs(30), 1 << 30)?
    else {
        bail!(
            "no sipguard run answers on {} (start it with --capture-ring-bytes)",
            args.listen
        );
    };
    std::fs::write(&args.write, &body)
        .with_context(|| format!("write {}", args.write.display()))?;
    eprintln!(
        "sipguard: the rolling ring saved to {} ({} bytes)",
        args.write.display(),
        body.len()
    );
    Ok(0)
}
