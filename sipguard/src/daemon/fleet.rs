//! Fleet mode (`sipguard run --fleet-redis`, or `[fleet]` in the policy): this host's bans,
//! runtime entries and lockdown go to Redis, and what the other hosts put there comes into
//! this host's kernel state, within a second.
//!
//! In Redis, below `sipguard:{<fleet>}:` (one hash slot per fleet):
//!
//! ```text
//!  state:<key>   one item's current value (JSON `Record`), bans with the TTL they have left
//!  changes       a stream of every change: op (set | del), key, record, origin
//! ```
//!
//! Every (re)connect resyncs: this host writes its own items again (a Redis restarted empty
//! heals; only what Redis lacked goes on the stream), reads every item, then follows the
//! stream from where it left off (stream ids only grow, also across a Redis restart).
//! Filtering never waits for Redis: the kernel state is only ever changed by this task, with
//! the same journaled operations as the CLI, and a Redis that is down, slow or wrong only
//! stops the sharing (`sipguard_fleet_connected 0`, reconnecting with backoff).

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicI64},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use redis::{
    AsyncCommands as _, AsyncConnectionConfig, IntoConnectionInfo as _, SetExpiry, SetOptions,
    aio::MultiplexedConnection,
    streams::{StreamRangeReply, StreamReadOptions, StreamReadReply},
};

use crate::{
    fleet::{
        FleetSettings, Items, Key, Origins, Outcome, Record, Refusal, Value, apply_remote_batch,
    },
    journal::Who,
    state::{LiveState, State, Target},
    time::now_unix,
};

/// How often this host's own state is compared with what it last shared, and the longest a
/// stream read waits: together the bound on how late a change travels. Redis rounds a blocking
/// read up to its timer tick (100 ms at its default `hz 10`): a cycle lasts 100-200 ms. A cycle
/// without a sign of change costs a policy read and a few counters per interface.
const POLL: Duration = Duration::from_millis(100);
/// Redis answers within this or the connection counts as broken.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The stream keeps about this many changes: a host away for longer resyncs from the items.
const STREAM_LENGTH: usize = 100_000;
/// Changes read from the stream at once.
const READ_BATCH: usize = 1_000;
/// Items written to Redis in one pipeline.
const WRITE_BATCH: usize = 500;
/// Changes kept for another try at most (the oldest go first).
const MAX_RETRY: usize = 100_000;

/// What `sipguard run` was given.
#[derive(Clone)]
pub struct FleetConfig {
    pub settings: FleetSettings,
    /// From `password_file`, read at start.
    password: Option<String>,
    /// From `ca_file`, read at start.
    ca_pem: Option<Vec<u8>>,
}

impl FleetConfig {
    /// Reads the password file, if any: a missing or unreadable file stops `sipguard run`.
    pub fn new(settings: FleetSettings) -> Result<FleetConfig> {
        let password = settings
            .password_file
            .as_ref()
            .map(|file| {
                std::fs::read_to_string(file)
                    .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
                    .with_context(|| format!("read the Redis password from {}", file.display()))
            })
            .transpose()?;
        let ca_pem = settings
            .ca_file
            .as_ref()
            .map(|file| {
                std::fs::read(file)
                    .with_context(|| format!("read the Redis CA from {}", file.display()))
            })
            .transpose()?;
        anyhow::ensure!(
            ca_pem.is_none() || settings.redis.starts_with("rediss://"),
            "a CA file for Redis needs a rediss:// (TLS) URL"
        );
        Ok(FleetConfig {
            settings,
            password,
            ca_pem,
        })
    }

    /// Whether Redis's client can use the URL (no connection is made).
    pub fn check(&self) -> Result<()> {
        self.client().map(drop)
    }

    fn client(&self) -> Result<redis::Client> {
        let mut info = self
            .settings
            .redis
            .as_str()
            .into_connection_info()
            .with_context(|| format!("Redis URL {}", redacted(&self.settings.redis)))?;
        if let Some(password) = &self.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Ok(match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )?,
            None => redis::Client::open(info)?,
        })
    }
}

/// The URL without its password, for logs.
pub fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
            let host = &url[at + 1..];
            let user = rest.split(['@', ':']).next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

type Labels = Vec<(String, String)>;

/// The fleet's metrics.
#[derive(Default)]
pub(super) struct FleetMetrics {
    connected: Family<Labels, Gauge>,
    published: Family<Labels, Counter>,
    applied: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    reconnects: Family<Labels, Counter>,
    apply_errors: Family<Labels, Counter>,
    /// When this host last heard from Redis (Unix seconds).
    last_contact: Family<Labels, Gauge<i64, AtomicI64>>,
    fleet: String,
}

impl FleetMetrics {
    fn fleet(&self) -> Labels {
        vec![("fleet".into(), self.fleet.clone())]
    }

    fn with(&self, name: &str, value: &str) -> Labels {
        let mut labels = self.fleet();
        labels.push((name.into(), value.into()));
        labels
    }

    fn set_connected(&self, up: bool) {
        self.connected
            .get_or_create(&self.fleet())
            .set(i64::from(up));
    }
}

/// Adds the fleet's metrics to the registry.
pub(super) fn register(registry: &mut Registry, config: &FleetConfig) -> Arc<FleetMetrics> {
    let metrics = Arc::new(FleetMetrics {
        fleet: config.settings.name.clone(),
        ..FleetMetrics::default()
    });
    metrics.set_connected(false);
    for refusal in Refusal::ALL {
        // Every refusal reason shows from the start, at 0.
        drop(
            metrics
                .refused
                .get_or_create(&metrics.with("reason", refusal.name())),
        );
    }
    drop(metrics.reconnects.get_or_create(&metrics.fleet()));
    drop(metrics.apply_errors.get_or_create(&metrics.fleet()));
    registry.register(
        "sipguard_fleet_connected",
        "1 while this host is connected to the fleet's Redis (filtering never depends on it)",
        metrics.connected.clone(),
    );
    registry.register(
        "sipguard_fleet_published",
        "Changes of this host's own bans, entries and lockdown shared with the fleet, by kind and op",
        metrics.published.clone(),
    );
    registry.register(
        "sipguard_fleet_applied",
        "Changes other hosts shared that changed this host's kernel state, by kind and op",
        metrics.applied.clone(),
    );
    registry.register(
        "sipguard_fleet_refused",
        "Changes other hosts shared that this host did not apply (allowlisted: a ban of a source this host's policy allowlists)",
        metrics.refused.clone(),
    );
    registry.register(
        "sipguard_fleet_reconnects",
        "Connections to the fleet's Redis lost or refused",
        metrics.reconnects.clone(),
    );
    registry.register(
        "sipguard_fleet_apply_errors",
        "Batches of other hosts' changes that failed to apply on an interface (tried again every cycle)",
        metrics.apply_errors.clone(),
    );
    registry.register(
        "sipguard_fleet_last_contact_timestamp_seconds",
        "When this host last had an answer from the fleet's Redis",
        metrics.last_contact.clone(),
    );
    metrics
}

/// The Redis keys of one fleet.
struct Keys {
    prefix: String,
    changes: String,
}

impl Keys {
    fn new(fleet: &str) -> Keys {
        let prefix = format!("sipguard:{{{fleet}}}:");
        Keys {
            changes: format!("{prefix}changes"),
            prefix,
        }
    }

    fn state(&self, key: Key) -> String {
        format!("{}state:{key}", self.prefix)
    }

    fn state_pattern(&self) -> String {
        format!("{}state:*", self.prefix)
    }

    fn parse_state(&self, redis_key: &str) -> Option<Key> {
        redis_key
            .strip_prefix(&self.prefix)?
            .strip_prefix("state:")?
            .parse()
            .ok()
    }
}

fn kind(key: Key) -> &'static str {
    match key {
        Key::Ban(_) => "ban",
        Key::Allow(_) => "allow",
        Key::Deny(_) => "deny",
        Key::Lockdown => "lockdown",
    }
}

/// One change read from the stream.
#[derive(Clone)]
struct Change {
    key: Key,
    /// `None`: withdrawn.
    record: Option<Record>,
    origin: String,
}

/// This host's side of the sharing, between sessions.
struct Engine {
    targets: Vec<Target>,
    host: String,
    /// This host's own items as last shared (bans, entries; not the lockdown).
    shared: Items,
    /// The lockdown level the fleet and this host last agreed on: a local change is one that
    /// differs from it.
    lockdown: String,
    /// Which host each received item came from (saved beside every interface's journal).
    origins: Origins,
    metrics: Arc<FleetMetrics>,
    /// The last stream entry read; kept across reconnects.
    last_id: Option<String>,
    /// This host's items as last read, and what said then that nothing had changed.
    own_cache: Option<OwnCache>,
    /// Changes that failed to apply on an interface, tried again every cycle.
    retry: Vec<Change>,
}

/// Reading every ban and list entry every cycle would cost a large policy a CPU's
/// share: each part is read again only when a sign of its change moved, and every [`RESCAN`]
/// anyway.
struct OwnCache {
    signs: Vec<Signs>,
    read_at: Instant,
    bans: Items,
    entries: Items,
}

/// The longest this host's own state goes unread (catches what no sign counts: bans lifted
/// by the data plane itself).
const RESCAN: Duration = Duration::from_secs(5);

/// What moves whenever this host's own shareable state may have.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Signs {
    /// The bans the data plane issued (ingress and egress), and the journal's length (every
    /// change made through sipguard, bans by hand included).
    bans: [u64; 3],
    /// The policy's generation and serial (entries, lockdown), and the journal's length.
    entries: [u64; 3],
}

fn signs(target: &Target, state: &State) -> Result<Signs> {
    let generation = state.active_generation()?;
    let serial = state.policy(generation)?.header.serial;
    let issued = state.event_stats()?.bans_issued;
    let answer_bans = state
        .answer_stats()?
        .get(sipguard_common::abi::answer_stat::BANS as usize)
        .copied()
        .unwrap_or(0);
    let journal = std::fs::metadata(crate::journal::dir_of(target).join("journal.jsonl"))
        .map_or(0, |meta| meta.len());
    Ok(Signs {
        bans: [issued, answer_bans, journal],
        entries: [u64::from(generation), serial, journal],
    })
}

pub(super) async fn run(
    targets: Vec<Target>,
    config: FleetConfig,
    metrics: Arc<FleetMetrics>,
) -> Result<()> {
    let client = config.client()?;
    let keys = Keys::new(&config.settings.name);
    let first = targets
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("no interface"))?;
    let lockdown = match local_lockdown(&first) {
        Ok(level) => level,
        Err(error) => return Err(error.context("read the lockdown")),
    };
    let origins = Origins::load(&first);
    // What the fleet and this host last agreed on, also across a restart of the daemon: a
    // lockdown switched while it was stopped is this host's change to share.
    let lockdown = origins.lockdown.clone().unwrap_or(lockdown);
    let mut engine = Engine {
        origins,
        targets,
        host: config.settings.host.clone(),
        shared: Items::new(),
        lockdown,
        metrics,
        last_id: None,
        own_cache: None,
        retry: Vec::new(),
    };
    let url = redacted(&config.settings.redis);
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    loop {
        let started = Instant::now();
        let error = match session(&client, &keys, &mut engine, &url).await {
            Ok(never) => match never {},
            Err(error) => error,
        };
        engine.metrics.set_connected(false);
        engine
            .metrics
            .reconnects
            .get_or_create(&engine.metrics.fleet())
            .inc();
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
            logged_down = false;
        }
        if !logged_down {
            log::warn!(
                "fleet {}: Redis at {url}: {error:#}; filtering goes on, reconnecting",
                config.settings.name
            );
            logged_down = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: resync, then share and follow until Redis fails.
async fn session(
    client: &redis::Client,
    keys: &Keys,
    engine: &mut Engine,
    url: &str,
) -> Result<std::convert::Infallible> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT + POLL));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // Where the stream is now, before reading the items: nothing is missed between the two.
    let newest: StreamRangeReply = con.xrevrange_count(&keys.changes, "+", "-", 1).await?;
    let newest = newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |id| id.id.clone());
    engine.resync(&mut con, keys).await?;
    let from = engine.last_id.get_or_insert(newest).clone();
    engine.metrics.set_connected(true);
    engine.contact();
    log::info!(
        "fleet: connected to Redis at {url} as {}, following changes after {from}",
        engine.host
    );
    loop {
        engine.share_changes(&mut con, keys).await?;
        if !engine.retry.is_empty() {
            let again = std::mem::take(&mut engine.retry);
            engine.apply(again);
        }
        let last = engine.last_id.clone().unwrap_or_else(|| "0-0".into());
        let options = StreamReadOptions::default()
            .block(POLL.as_millis() as usize)
            .count(READ_BATCH);
        let reply: Option<StreamReadReply> = con
            .xread_options(&[&keys.changes], &[&last], &options)
            .await?;
        engine.contact();
        let mut changes = Vec::new();
        for stream in reply.into_iter().flat_map(|reply| reply.keys) {
            for entry in stream.ids {
                engine.last_id = Some(entry.id.clone());
                match parse_change(&entry) {
                    Some(change) if change.origin != engine.host => changes.push(change),
                    Some(_) => {}
                    None => log::warn!("fleet: change {} is not readable; skipped", entry.id),
                }
            }
        }
        if !changes.is_empty() {
            engine.apply(changes);
        }
    }
}

fn parse_change(entry: &redis::streams::StreamId) -> Option<Change> {
    let op: String = entry.get("op")?;
    let key: String = entry.get("key")?;
    let origin: String = entry.get("origin")?;
    let key: Key = key.parse().ok()?;
    let record = match op.as_str() {
        "set" => Some(serde_json::from_str::<Record>(&entry.get::<String>("record")?).ok()?),
        "del" => None,
        _ => return None,
    };
    Some(Change {
        key,
        record,
        origin,
    })
}

fn local_lockdown(target: &Target) -> Result<String> {
    let state = State::open(target)?;
    Ok(lockdown_level(&crate::fleet::own_state(&state)?))
}

fn lockdown_level(items: &Items) -> String {
    match items.get(&Key::Lockdown) {
        Some(Value::Lockdown { level }) => level.clone(),
        _ => "off".to_string(),
    }
}

impl Engine {
    fn contact(&self) {
        self.metrics
            .last_contact
            .get_or_create(&self.metrics.fleet())
            .set(now_unix() as i64);
    }

    /// This host's own items on every interface (bans and entries), and the lockdown level of
    /// the first.
    fn own(&mut self) -> Result<(Items, String)> {
        tokio::task::block_in_place(|| {
            let states = self
                .targets
                .iter()
                .map(State::open)
                .collect::<Result<Vec<_>, _>>()?;
            let signs = self
                .targets
                .iter()
                .zip(&states)
                .map(|(target, state)| signs(target, state))
                .collect::<Result<Vec<_>>>()?;
            let fresh = self
                .own_cache
                .as_ref()
                .filter(|cache| cache.read_at.elapsed() < RESCAN);
            let unchanged = |part: fn(&Signs) -> [u64; 3]| {
                fresh.is_some_and(|cache| cache.signs.iter().map(part).eq(signs.iter().map(part)))
            };
            let bans_same = unchanged(|s| s.bans);
            let entries_same = unchanged(|s| s.entries);
            // A full read restarts the RESCAN clock; reading one part again does not.
            let read_at = match fresh {
                Some(cache) if bans_same || entries_same => cache.read_at,
                _ => Instant::now(),
            };
            let bans = match (&self.own_cache, bans_same) {
                (Some(cache), true) => cache.bans.clone(),
                _ => {
                    let mut bans = Items::new();
                    for state in &states {
                        bans.extend(crate::fleet::own_bans(state)?);
                    }
                    bans
                }
            };
            let entries = match (&self.own_cache, entries_same) {
                (Some(cache), true) => cache.entries.clone(),
                _ => {
                    let mut entries = Items::new();
                    for (index, state) in states.iter().enumerate() {
                        let mut own = crate::fleet::own_entries(state)?;
                        if index > 0 {
                            own.remove(&Key::Lockdown);
                        }
                        entries.extend(own);
                    }
                    entries
                }
            };
            let mut items = bans.clone();
            items.extend(entries.clone());
            let lockdown = lockdown_level(&items);
            items.remove(&Key::Lockdown);
            self.own_cache = Some(OwnCache {
                signs,
                read_at,
                bans,
                entries,
            });
            Ok((items, lockdown))
        })
    }

    /// After a (re)connect: this host's items into Redis again, then everyone else's here.
    async fn resync(&mut self, con: &mut MultiplexedConnection, keys: &Keys) -> Result<()> {
        let (own, local_lockdown) = self.own()?;
        // Every item in Redis, before this host writes its own.
        let mut redis_keys: Vec<String> = Vec::new();
        let mut iter: redis::AsyncIter<String> = con.scan_match(keys.state_pattern()).await?;
        while let Some(item) = iter.next_item().await {
            redis_keys.push(item?);
        }
        drop(iter);
        let mut changes = Vec::new();
        let mut fleet_lockdown = None;
        let mut withdrawn = Vec::new();
        for chunk in redis_keys.chunks(500) {
            let values: Vec<Option<String>> = con.mget(chunk).await?;
            for (redis_key, value) in chunk.iter().zip(values) {
                let (Some(key), Some(value)) = (keys.parse_state(redis_key), value) else {
                    continue;
                };
                let Ok(record) = serde_json::from_str::<Record>(&value) else {
                    log::warn!("fleet: {redis_key} is not readable; skipped");
                    continue;
                };
                if key == Key::Lockdown {
                    fleet_lockdown = Some(record);
                    continue;
                }
                if record.origin == self.host {
                    // Shared by this host before and gone here since (deleted while away, or
                    // while the daemon was stopped): withdrawn now.
                    if !own.contains_key(&key) {
                        withdrawn.push(key);
                    }
                    continue;
                }
                changes.push(Change {
                    key,
                    origin: record.origin.clone(),
                    record: Some(record),
                });
            }
        }
        let items: Vec<(Key, Value)> = own.iter().map(|(k, v)| (*k, v.clone())).collect();
        self.put(con, keys, &items, true).await?;
        for key in withdrawn {
            self.withdraw(con, keys, key).await?;
        }
        self.shared = own;
        // The lockdown: this host's change made while away is shared; otherwise the fleet's
        // stands; a Redis that lost it gets it back (without a change on the stream: the hosts
        // connected agree already), so that a host joining later locks down too.
        if local_lockdown != self.lockdown {
            self.share_lockdown(con, keys, local_lockdown).await?;
        } else if let Some(record) = fleet_lockdown {
            if record.origin != self.host {
                changes.push(Change {
                    key: Key::Lockdown,
                    origin: record.origin.clone(),
                    record: Some(record),
                });
            }
        } else if local_lockdown != "off" {
            let origin = self
                .origins
                .host_of(Key::Lockdown)
                .unwrap_or(&self.host)
                .to_string();
            let record = serde_json::to_string(&Record {
                origin,
                value: Value::Lockdown {
                    level: local_lockdown,
                },
            })?;
            let _: Option<String> = con
                .set_options(
                    keys.state(Key::Lockdown),
                    record,
                    SetOptions::default().conditional_set(redis::ExistenceCheck::NX),
                )
                .await?;
        }
        if !changes.is_empty() {
            self.apply(changes);
        }
        Ok(())
    }

    /// What changed in this host's own state since it last shared it.
    async fn share_changes(&mut self, con: &mut MultiplexedConnection, keys: &Keys) -> Result<()> {
        let (own, local_lockdown) = self.own()?;
        if local_lockdown != self.lockdown {
            self.share_lockdown(con, keys, local_lockdown).await?;
        }
        let now = now_unix();
        let gone: Vec<(Key, Value)> = self
            .shared
            .iter()
            .filter(|(key, _)| !own.contains_key(key))
            .map(|(key, value)| (*key, value.clone()))
            .collect();
        for (key, value) in gone {
            // A ban that ran out needs no word: its Redis item expires by itself.
            let expired =
                matches!(value, Value::Ban { expires_unix, .. } if expires_unix <= now + 1);
            if !expired {
                self.withdraw(con, keys, key).await?;
            }
            self.shared.remove(&key);
        }
        let changed: Vec<(Key, Value)> = own
            .iter()
            .filter(|(key, value)| self.shared.get(key) != Some(*value))
            .map(|(key, value)| (*key, value.clone()))
            .collect();
        self.put(con, keys, &changed, false).await?;
        self.shared.extend(changed);
        Ok(())
    }

    async fn share_lockdown(
        &mut self,
        con: &mut MultiplexedConnection,
        keys: &Keys,
        level: String,
    ) -> Result<()> {
        let value = Value::Lockdown {
            level: level.clone(),
        };
        self.put(con, keys, &[(Key::Lockdown, value)], false)
            .await?;
        self.lockdown = level;
        self.origins.hosts.remove(&Key::Lockdown.to_string());
        self.save_origins();
        Ok(())
    }

    /// Writes this host's items, on the stream too unless `only_if_new` and Redis had them
    /// already (a resync repeats nothing the others have). Pipelined: two round trips for a
    /// batch of [`WRITE_BATCH`] however many it holds.
    async fn put(
        &self,
        con: &mut MultiplexedConnection,
        keys: &Keys,
        items: &[(Key, Value)],
        only_if_new: bool,
    ) -> Result<()> {
        for batch in items.chunks(WRITE_BATCH) {
            let records = batch
                .iter()
                .map(|(_, value)| {
                    serde_json::to_string(&Record {
                        origin: self.host.clone(),
                        value: value.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut sets = redis::pipe();
            for ((key, value), record) in batch.iter().zip(&records) {
                let mut options = SetOptions::default().get(true);
                if let Value::Ban { expires_unix, .. } = value {
                    let left = expires_unix.saturating_sub(now_unix()).max(1);
                    options = options.with_expiration(SetExpiry::EX(left));
                }
                sets.set_options(keys.state(*key), record, options);
            }
            let before: Vec<Option<String>> = sets.query_async(con).await?;
            let mut adds = redis::pipe();
            let mut added = Vec::new();
            for (((key, _), record), before) in batch.iter().zip(&records).zip(&before) {
                if only_if_new && before.as_deref() == Some(record.as_str()) {
                    continue;
                }
                adds.xadd_maxlen(
                    &keys.changes,
                    redis::streams::StreamMaxlen::Approx(STREAM_LENGTH),
                    "*",
                    &[
                        ("op", "set"),
                        ("key", &key.to_string()),
                        ("record", record),
                        ("origin", &self.host),
                    ],
                )
                .ignore();
                added.push(*key);
            }
            if added.is_empty() {
                continue;
            }
            let () = adds.query_async(con).await?;
            for key in added {
                self.metrics
                    .published
                    .get_or_create(&self.op_labels(key, "set"))
                    .inc();
            }
        }
        Ok(())
    }

    /// Withdraws one of this host's items (deleted here before it ran out).
    async fn withdraw(&self, con: &mut MultiplexedConnection, keys: &Keys, key: Key) -> Result<()> {
        // Only this host's: another host may have shared the same item since.
        let current: Option<String> = con.get(keys.state(key)).await?;
        let ours = current
            .as_deref()
            .and_then(|text| serde_json::from_str::<Record>(text).ok())
            .is_some_and(|record| record.origin == self.host);
        if ours {
            let _: u64 = con.del(keys.state(key)).await?;
        }
        let _: String = con
            .xadd_maxlen(
                &keys.changes,
                redis::streams::StreamMaxlen::Approx(STREAM_LENGTH),
                "*",
                &[
                    ("op", "del"),
                    ("key", &key.to_string()),
                    ("origin", &self.host),
                ],
            )
            .await?;
        self.metrics
            .published
            .get_or_create(&self.op_labels(key, "del"))
            .inc();
        Ok(())
    }

    fn op_labels(&self, key: Key, op: &str) -> Labels {
        let mut labels = self.metrics.with("kind", kind(key));
        labels.push(("op".into(), op.into()));
        labels
    }

    /// Applies other hosts' changes to every interface, one journaled change per interface.
    fn apply(&mut self, changes: Vec<Change>) {
        // A withdrawal counts only from the host the item came from.
        let changes: Vec<Change> = changes
            .into_iter()
            .filter(|change| {
                change.record.is_some()
                    || self.origins.host_of(change.key) == Some(change.origin.as_str())
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        let mut hosts: Vec<&str> = changes.iter().map(|c| c.origin.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        let who = Who::daemon(format!("fleet: from {}", hosts.join(", ")));
        let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
        let mut failed = false;
        tokio::task::block_in_place(|| {
            for target in &self.targets {
                let result = || -> Result<Vec<Outcome>> {
                    let mut live = LiveState::lock(target)?;
                    let batch: Vec<(Key, Option<&Value>)> = changes
                        .iter()
                        .map(|change| (change.key, change.record.as_ref().map(|r| &r.value)))
                        .collect();
                    Ok(live.journaled("fleet", &who, |live| apply_remote_batch(live, &batch))?)
                };
                let result = result();
                match result {
                    Ok(here) => {
                        for (index, outcome) in here.into_iter().enumerate() {
                            // The strongest outcome over the interfaces.
                            let entry = outcomes.entry(index).or_insert(outcome);
                            if outcome == Outcome::Applied {
                                *entry = outcome;
                            }
                        }
                    }
                    Err(error) => {
                        log::warn!(
                            "fleet: {}: applying {} changes: {error}; trying again",
                            target.label(),
                            changes.len()
                        );
                        failed = true;
                    }
                }
            }
        });
        if failed {
            // Applying again is harmless (what took effect is `Same` then): the whole batch
            // waits for the next cycle, and nothing is recorded of it until it took effect
            // everywhere.
            self.metrics
                .apply_errors
                .get_or_create(&self.metrics.fleet())
                .inc();
            self.retry.extend(changes);
            let excess = self.retry.len().saturating_sub(MAX_RETRY);
            if excess > 0 {
                log::warn!(
                    "fleet: {excess} changes not applied are given up (more than {MAX_RETRY} waiting)"
                );
                self.retry.drain(..excess);
            }
            return;
        }
        let mut origins_changed = false;
        for (index, outcome) in outcomes {
            let change = &changes[index];
            let key_text = change.key.to_string();
            let op = if change.record.is_some() {
                "set"
            } else {
                "del"
            };
            match outcome {
                Outcome::Applied | Outcome::Same => {
                    if outcome == Outcome::Applied {
                        self.metrics
                            .applied
                            .get_or_create(&self.op_labels(change.key, op))
                            .inc();
                    }
                    if change.record.is_some() {
                        origins_changed |=
                            self.origins.hosts.insert(key_text, change.origin.clone())
                                != Some(change.origin.clone());
                    } else {
                        origins_changed |= self.origins.hosts.remove(&key_text).is_some();
                    }
                    if let (
                        Key::Lockdown,
                        Some(Record {
                            value: Value::Lockdown { level },
                            ..
                        }),
                    ) = (change.key, &change.record)
                    {
                        self.lockdown = level.clone();
                        self.origins.lockdown = Some(level.clone());
                        origins_changed = true;
                    }
                }
                Outcome::Own | Outcome::Stale => {}
                Outcome::Refused(refusal) => {
                    self.metrics
                        .refused
                        .get_or_create(&self.metrics.with("reason", refusal.name()))
                        .inc();
                    log::warn!(
                        "fleet: {key_text} from {} not applied: {}",
                        change.origin,
                        match refusal {
                            Refusal::Allowlisted => "this host's policy allowlists the source",
                            Refusal::Unusable => "it does not fit this host's policy",
                        }
                    );
                }
            }
        }
        if origins_changed {
            self.save_origins();
        }
    }

    fn save_origins(&self) {
        for target in &self.targets {
            if let Err(error) = self.origins.save(target) {
                log::warn!("fleet: {}: saving the origins: {error}", target.label());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redacted("redis://:s3cret@198.18.100.2:6379/0"),
            "redis://:***@198.18.100.2:6379/0"
        );
        assert_eq!(
            redacted("rediss://fleet:s3cret@redis.example.net:6380"),
            "rediss://fleet:***@redis.example.net:6380"
        );
        assert_eq!(
            redacted("redis://198.18.100.2:6379"),
            "redis://198.18.100.2:6379"
        );
    }

    #[test]
    fn keys_of_one_fleet_share_a_hash_slot() {
        let keys = Keys::new("lab");
        let key: Key = "ban:198.18.50.66/32".parse().unwrap();
        assert_eq!(keys.state(key), "sipguard:{lab}:state:ban:198.18.50.66/32");
        assert_eq!(keys.changes, "sipguard:{lab}:changes");
        assert_eq!(keys.parse_state(&keys.state(key)), Some(key));
        assert_eq!(keys.parse_state("sipguard:{other}:state:lockdown"), None);
    }
}
