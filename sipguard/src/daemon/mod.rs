//! `sipguard run`: the long-running side of the controller. It drains the drop events of every
//! filtered interface, writes them as JSON lines, keeps bounded aggregates (top offenders, rates
//! by reason) and serves `/metrics` and a small JSON API on one address (loopback by default).
//!
//! Filtering never depends on it: stopping, crashing or restarting the daemon only pauses the
//! event log; counters live in the kernel and continue.

mod attack;
pub mod capture_ring;
pub mod fleet;
mod http;
mod lists;
pub mod metrics;
mod reload;
pub mod top;

use std::{
    collections::{HashMap, VecDeque},
    fs::{File, OpenOptions},
    io::{BufWriter, Write as _},
    net::SocketAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, RingBuf};
use serde::{Deserialize, Serialize};
use sipguard_common::abi::map_name;
use tokio::{io::unix::AsyncFd, sync::Notify};

pub use self::http::{
    HANDLER_DEADLINE, HEADER_READ_TIMEOUT, MAX_CONNECTION_LIFETIME, MAX_CONNECTIONS,
    MAX_EVENTS_WAIT,
};
pub use self::lists::ProviderLists;
pub use self::reload::PolicyReload;
use self::{
    http::stats::HttpStats,
    metrics::{DaemonCounters, Exporter},
    top::{Offender, TopSources},
};
use crate::{
    events::{Clock, EventRecord, RuleNames},
    state::{LiveState, Lock, State, Target},
    time::boot_now_ns,
};

/// Mode of the files the daemon creates: the event log names source addresses.
const CREATED_FILE_MODE: u32 = 0o600;
/// Default address of `/metrics` and the JSON API: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9968";
/// Events kept in memory for `sipguard events`.
const RECENT_EVENTS: usize = 4096;
/// Sources tracked for `sipguard top` (Space-Saving counters).
const TOP_CAPACITY: usize = 1024;
/// Rates are computed over this many one-second samples.
const RATE_WINDOW: usize = 10;
/// How often expired bans (and expired verified sources) are removed from the kernel's tables.
pub const BAN_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often `sipguard run` keeps a reading of the counters for `sipguard report`.
pub const COUNTER_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);

pub struct DaemonConfig {
    pub targets: Vec<Target>,
    /// `None`: standard output.
    pub events_file: Option<PathBuf>,
    pub listen: SocketAddr,
    /// The policy's provider lists (URLs, hostnames), refreshed and applied on their interval.
    pub lists: Option<ProviderLists>,
    /// `--policy`: read again and applied on SIGHUP (`None`: SIGHUP only reopens the log).
    pub reload: Option<PolicyReload>,
    /// The rolling capture of drops (off when `None`).
    pub capture_ring: Option<capture_ring::RingConfig>,
    /// When the access gate shuts and opens by itself (`[access] unverified = "under-attack"`).
    pub attack: crate::attack::AttackSettings,
    /// Fleet mode: shared through Redis (off when `None`).
    pub fleet: Option<fleet::FleetConfig>,
}

/// Where event lines go. Reopened on SIGUSR1 (and SIGHUP), so logrotate can move the file.
pub(crate) enum Sink {
    Stdout,
    File { path: PathBuf, out: BufWriter<File> },
}

impl Sink {
    fn open(path: Option<&PathBuf>) -> Result<Sink> {
        Ok(match path {
            None => Sink::Stdout,
            Some(path) => Sink::File {
                path: path.clone(),
                out: BufWriter::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        // Only for a new file: an existing log keeps the mode it was given.
                        .mode(CREATED_FILE_MODE)
                        .open(path)
                        .with_context(|| format!("open event log {}", path.display()))?,
                ),
            },
        })
    }

    fn write(&mut self, line: &str) {
        let result = match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
            }
            Sink::File { out, .. } => writeln!(out, "{line}"),
        };
        if let Err(error) = result {
            log::warn!("event log: {error}");
        }
    }

    fn flush(&mut self) {
        let _ = match self {
            Sink::Stdout => std::io::stdout().flush(),
            Sink::File { out, .. } => out.flush(),
        };
    }

    fn reopen(&mut self) {
        if let Sink::File { path, .. } = self {
            match Sink::open(Some(&path.clone())) {
                Ok(fresh) => *self = fresh,
                Err(error) => log::warn!("{error:#}"),
            }
        }
    }
}

pub use crate::report::Rate;

/// What `/api/top` returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopView {
    pub sources: Vec<Offender>,
    /// Drops attributed to sources since the daemon started.
    pub drops_seen: u64,
    pub sources_tracked: usize,
    pub rates: Vec<Rate>,
}

pub(crate) struct Shared {
    top: Mutex<TopSources>,
    recent: Mutex<VecDeque<EventRecord>>,
    next_seq: AtomicU64,
    new_events: Notify,
    rates: Mutex<Vec<Rate>>,
    exporter: Arc<Exporter>,
    /// The interfaces served (`POST /api/strike` changes their state).
    targets: Vec<Target>,
    /// The rolling capture (`GET /api/capture/ring`), when on.
    rings: Option<capture_ring::Rings>,
}

impl Shared {
    fn new(exporter: Exporter, targets: Vec<Target>) -> Shared {
        Shared {
            targets,
            top: Mutex::new(TopSources::new(TOP_CAPACITY)),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            next_seq: AtomicU64::new(1),
            new_events: Notify::new(),
            rates: Mutex::new(Vec::new()),
            exporter: Arc::new(exporter),
            rings: None,
        }
    }

    pub(crate) fn top_view(&self, limit: usize) -> TopView {
        let top = self
            .top
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        TopView {
            sources: top.top(limit),
            drops_seen: top.total,
            sources_tracked: top.len(),
            rates: self
                .rates
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    /// Events after sequence number `after`, oldest first; with `after == 0`, the newest.
    pub(crate) fn events_after(&self, after: u64, limit: usize) -> Vec<EventRecord> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if after == 0 {
            let skip = recent.len().saturating_sub(limit);
            return recent.iter().skip(skip).cloned().collect();
        }
        recent
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Runs until SIGINT or SIGTERM.
pub fn serve(config: DaemonConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: DaemonConfig) -> Result<()> {
    let counters = Arc::new(DaemonCounters {
        written: config
            .targets
            .iter()
            .map(|t| (t.label(), AtomicU64::new(0)))
            .collect(),
        gate_switches: config
            .targets
            .iter()
            .map(|t| (t.label(), Default::default()))
            .collect(),
    });
    let http_stats = Arc::new(HttpStats::default());
    let mut exporter = Exporter::new(config.targets.clone(), counters.clone());
    http_stats.register(exporter.registry_mut());
    let list_status = lists::register(exporter.registry_mut(), config.lists.as_ref());
    let fleet_metrics = config
        .fleet
        .as_ref()
        .map(|fleet| fleet::register(exporter.registry_mut(), fleet));
    let provider = config
        .lists
        .map(|lists| Arc::new(tokio::sync::Mutex::new(lists)));
    let mut shared = Shared::new(exporter, config.targets.clone());
    if let Some(ring) = config.capture_ring {
        shared.rings = Some(capture_ring::Rings::start(&config.targets, ring)?);
        eprintln!(
            "sipguard: keeping a rolling capture of drops ({} bytes, {} s)",
            ring.max_bytes,
            ring.max_age.as_secs()
        );
    }
    let shared = Arc::new(shared);
    let sink = Arc::new(Mutex::new(Sink::open(config.events_file.as_ref())?));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    log::info!("serving /metrics and /api on http://{}", config.listen);
    eprintln!(
        "sipguard: draining events of {}; metrics on http://{}/metrics",
        config
            .targets
            .iter()
            .map(Target::label)
            .collect::<Vec<_>>()
            .join(", "),
        config.listen
    );

    let mut tasks = tokio::task::JoinSet::new();
    for target in &config.targets {
        let ring = open_ring(target)?;
        let written = counters.clone();
        tasks.spawn(drain(
            target.clone(),
            ring,
            shared.clone(),
            sink.clone(),
            written,
        ));
    }
    tasks.spawn(sample_rates(config.targets.clone(), shared.clone()));
    tasks.spawn(sweep_bans(config.targets.clone()));
    tasks.spawn(snapshot_counters(config.targets.clone()));
    tasks.spawn(attack::watch(
        config.targets.clone(),
        config.attack,
        attack::Reporting {
            shared: shared.clone(),
            sink: sink.clone(),
            counters: counters.clone(),
        },
    ));
    if let (Some(fleet), Some(metrics)) = (config.fleet.clone(), fleet_metrics) {
        eprintln!(
            "sipguard: fleet {} as {}, through Redis at {}",
            fleet.settings.name,
            fleet.settings.host,
            fleet::redacted(&fleet.settings.redis)
        );
        tasks.spawn(fleet::run(config.targets.clone(), fleet, metrics));
    }
    if let Some(provider) = &provider {
        tasks.spawn(lists::refresh(
            config.targets.clone(),
            provider.clone(),
            list_status,
        ));
    }
    tasks.spawn(http::serve(listener, shared.clone(), http_stats));

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut reopen = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Type=notify: everything is attached, the event drains run and the API listens.
    reload::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("filtering; serving events and metrics"),
    ]);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).reopen();
                if let Some(policy) = config.reload.clone() {
                    reload::notify_reloading();
                    let targets = config.targets.clone();
                    let provider = provider.clone();
                    let (status, _) = tokio::task::spawn_blocking(move || {
                        reload::reload_policy(&policy, &targets, provider.as_ref())
                    })
                    .await?;
                    reload::notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&status),
                    ]);
                }
            }
            // Only the event log (logrotate): SIGHUP would also apply the policy again.
            _ = reopen.recv() => {
                sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).reopen();
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(result) = tasks.join_next() => {
                // A task only ends on a fatal error.
                result??;
            }
        }
    }
    reload::notify(&[sd_notify::NotifyState::Stopping]);
    sink.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .flush();
    // Tasks hold the shared state; the rolling capture's slots must go off now, not whenever
    // the last holder drops it.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    match Arc::try_unwrap(shared) {
        Ok(mut shared) => {
            if let Some(rings) = shared.rings.as_mut() {
                rings.stop();
            }
        }
        Err(_) => log::warn!("the rolling capture stops with its lease (5 s)"),
    }
    eprintln!("sipguard: stopped; filtering continues in the kernel");
    Ok(())
}

fn open_ring(target: &Target) -> Result<AsyncFd<RingBuf<MapData>>> {
    let pin = target.map_pin(map_name::EVENTS);
    let data = MapData::from_pin(&pin).with_context(|| format!("open {}", pin.display()))?;
    let ring = RingBuf::try_from(Map::from_map_data(data)?)?;
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd owns the ring buffer.
    unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watch {}: {e}", pin.display()))
}

async fn drain(
    target: Target,
    mut ring: AsyncFd<RingBuf<MapData>>,
    shared: Arc<Shared>,
    sink: Arc<Mutex<Sink>>,
    counters: Arc<DaemonCounters>,
) -> Result<()> {
    let label = target.label();
    let mut names = RuleNames::new(target);
    let mut clock = Clock::now();
    let mut batches = 0u64;
    loop {
        let mut guard = ring.readable_mut().await?;
        let mut batch = Vec::new();
        while let Some(item) = guard.get_inner_mut().next() {
            if let Some(mut event) = EventRecord::decode(&item, &label, &clock) {
                names.name(&mut event);
                batch.push(event);
            }
        }
        guard.clear_ready();
        if batch.is_empty() {
            continue;
        }
        batches += 1;
        if batches.is_multiple_of(1000) {
            // Wall-clock adjustments (NTP) move the boot-to-Unix offset.
            clock = Clock::now();
        }
        let written = batch.len() as u64;
        publish(&shared, &sink, batch);
        if let Some(counter) = counters.written.get(&label) {
            counter.fetch_add(written, Ordering::Relaxed);
        }
    }
}

/// Numbers `events`, writes them to the log, keeps them for `/api/events` and wakes its long
/// polls; drops also count toward the top sources.
pub(crate) fn publish(shared: &Shared, sink: &Mutex<Sink>, events: Vec<EventRecord>) {
    {
        let mut sink = sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut top = shared
            .top
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut recent = shared
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for mut event in events {
            event.seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
            if let Ok(line) = serde_json::to_string(&event) {
                sink.write(&line);
            }
            if event.is_drop() {
                top.record(&event);
            }
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event);
        }
        sink.flush();
    }
    shared.new_events.notify_waiters();
}

/// Samples the kernel counters every second; rates are differences over the window.
/// Removes expired bans every [`BAN_SWEEP_INTERVAL`]: the data plane drops a ban only when its
/// source sends again, so one-off scanners would otherwise fill the table and block new bans.
/// Expired verified sources go too (only a new 200 OK would reuse their entry).
/// An interface whose lock a CLI command holds is skipped this round (that command sweeps).
async fn sweep_bans(targets: Vec<Target>) -> Result<()> {
    let mut ticker = tokio::time::interval(BAN_SWEEP_INTERVAL);
    loop {
        ticker.tick().await;
        let targets = targets.clone();
        let swept = tokio::task::spawn_blocking(move || {
            targets
                .iter()
                .map(|target| (target.label(), sweep_one(target)))
                .collect::<Vec<_>>()
        })
        .await?;
        for (label, result) in swept {
            match result {
                Ok((0, 0)) => {}
                Ok((bans, verified)) => log::debug!(
                    "{label}: swept {bans} expired bans and {verified} expired verified sources"
                ),
                Err(error) => log::warn!("{label}: sweeping expired bans: {error}"),
            }
        }
    }
}

/// Keeps a reading of every interface's counters a minute (one at start), for the windows of
/// `sipguard report`. A failure is logged and the next minute tries again.
async fn snapshot_counters(targets: Vec<Target>) -> Result<()> {
    let mut ticker = tokio::time::interval(COUNTER_SNAPSHOT_INTERVAL);
    loop {
        ticker.tick().await;
        let targets = targets.clone();
        let written = tokio::task::spawn_blocking(move || {
            targets
                .iter()
                .map(|target| (target.label(), crate::incident::record_snapshot(target)))
                .collect::<Vec<_>>()
        })
        .await?;
        for (label, result) in written {
            if let Err(error) = result {
                log::warn!("{label}: counter reading for reports: {error:#}");
            }
        }
    }
}

/// Expired bans and expired verified sources removed.
fn sweep_one(target: &Target) -> Result<(usize, usize), crate::state::StateError> {
    let Some(lock) = Lock::try_acquire(&target.dir())? else {
        return Ok((0, 0));
    };
    let mut live = LiveState::with_lock(State::open(target)?, lock);
    let now = boot_now_ns();
    Ok((
        live.sweep_expired_bans(now)?,
        live.sweep_expired_verified(now)?,
    ))
}

async fn sample_rates(targets: Vec<Target>, shared: Arc<Shared>) -> Result<()> {
    let mut history: HashMap<String, VecDeque<Vec<u64>>> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let mut rates = Vec::new();
        for target in &targets {
            let label = target.label();
            let Ok(counters) = State::open(target).and_then(|state| state.counters()) else {
                continue;
            };
            let packets: Vec<u64> = counters.iter().map(|c| c.packets).collect();
            let samples = history.entry(label.clone()).or_default();
            samples.push_back(packets);
            if samples.len() > RATE_WINDOW + 1 {
                samples.pop_front();
            }
            let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
                continue;
            };
            let seconds = (samples.len() - 1).max(1) as f64;
            rates.extend(crate::report::rates(&label, first, last, seconds));
        }
        rates.sort_by(|a, b| b.packets_per_second.total_cmp(&a.packets_per_second));
        *shared
            .rates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rates;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_event_log_is_private_and_an_existing_one_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.jsonl");
        Sink::open(Some(&new)).unwrap();
        assert_eq!(mode(&new), 0o600, "source addresses are not for every user");
        let existing = dir.path().join("existing.jsonl");
        std::fs::write(&existing, "").unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
        Sink::open(Some(&existing)).unwrap();
        assert_eq!(mode(&existing), 0o640);
    }
}
