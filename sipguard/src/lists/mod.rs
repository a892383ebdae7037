//! Provider lists by URL and DNS: the URLs and hostnames of `[[allow]]` entries, fetched and
//! resolved into allowlist rules, with the last good list kept (in memory and in a cache file)
//! through every failure and a list that shrinks too much held back.
//!
//! [`Lists`] holds one [`Entry`] per source. A refresh ([`Lists::refresh_due`]) fetches (HTTP,
//! conditional on the last ETag / Last-Modified) or resolves (A/AAAA, SRV targets) each source
//! that is due and decides:
//!
//! - failure (HTTP error or status, timeout, a body that does not parse, NXDOMAIN, SERVFAIL, a
//!   name without addresses): the last good list stays; outcome `failed`;
//! - 304 Not Modified: the last good list is confirmed; outcome `ok`;
//! - a new list that lost more than `max_shrink` of the last good one's entries: held back (not
//!   applied, not cached); outcome `held_back`;
//! - otherwise the new list becomes the last good one, written to the cache; outcome `ok`.
//!
//! [`Lists::effective`] adds every source's last good list to a policy's allowlist, under the
//! entry's name and class; applying that policy is the caller's (`sipguard apply` and
//! `sipguard run`, both through `crate::apply` under a journaled change).

mod cache;
mod fetch;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use sipguard_common::abi::MAX_PREFIXES;

pub use self::cache::Cached;
use self::fetch::Fetched;
use crate::{
    policy::{Location, Policy, RemoteSettings, RemoteSource, Rule, remote::shrinks_too_much},
    time::now_unix,
};

/// Default directory of the cache files (one JSON file per source).
pub const DEFAULT_LISTS_DIR: &str = "/var/lib/sipguard/lists";

/// How the last refresh of a source ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not refreshed yet in this process (the cached list, if any, is in use).
    Pending,
    Ok,
    Failed,
    HeldBack,
}

impl Outcome {
    pub const REPORTED: [Outcome; 3] = [Outcome::Ok, Outcome::Failed, Outcome::HeldBack];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::HeldBack => "held_back",
        }
    }
}

/// What metrics and messages show of one source.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ListStatus {
    /// The `[[allow]]` entry's name.
    pub list: String,
    /// The URL (without credentials or query) or the hostname.
    pub source: String,
    /// `url`, `dns` or `srv`.
    pub kind: &'static str,
    /// Entries of the list in use (the last good one).
    pub entries: usize,
    /// Unix time of the last successful refresh (also from the cache); `None`: never.
    pub last_ok_unix: Option<u64>,
    pub outcome: Outcome,
    /// Why the last refresh failed or was held back.
    pub detail: Option<String>,
    pub refresh: Duration,
    /// Refreshes per outcome since the start: ok, failed, held back.
    pub refreshes: [u64; 3],
}

/// One source and its last good list.
struct Entry {
    source: RemoteSource,
    good: Option<Cached>,
    status: ListStatus,
    next_due: Instant,
}

/// Every remote source of a policy.
pub struct Lists {
    /// The cache; `None`: neither read nor written (`sipguard check --fetch`).
    dir: Option<PathBuf>,
    settings: RemoteSettings,
    entries: Vec<Entry>,
}

impl Lists {
    /// The sources of `policy`, each with its cached list from `dir` (if any), all due now.
    pub fn new(policy: &Policy, dir: &Path) -> Lists {
        Lists::with_cache(policy, Some(dir))
    }

    /// The sources of `policy` without a cache: every fetch is a full one and nothing is kept.
    pub fn uncached(policy: &Policy) -> Lists {
        Lists::with_cache(policy, None)
    }

    /// The sources of `policy` (a policy file read again), with the same cache: each starts
    /// from its cached last good list and is due now.
    pub fn reloaded(&self, policy: &Policy) -> Lists {
        Lists::with_cache(policy, self.dir.as_deref())
    }

    fn with_cache(policy: &Policy, dir: Option<&Path>) -> Lists {
        let now = Instant::now();
        let entries = policy
            .remote
            .iter()
            .map(|source| {
                let good = dir.and_then(|dir| cache::load(dir, source));
                let status = ListStatus {
                    list: source.group.clone(),
                    source: display_source(source.source()),
                    kind: source.kind_name(),
                    entries: good.as_ref().map_or(0, |good| good.nets.len()),
                    last_ok_unix: good.as_ref().map(|good| good.fetched_unix),
                    outcome: Outcome::Pending,
                    detail: None,
                    refresh: source.refresh,
                    refreshes: [0; 3],
                };
                Entry {
                    source: source.clone(),
                    good,
                    status,
                    next_due: now,
                }
            })
            .collect();
        Lists {
            dir: dir.map(Path::to_path_buf),
            settings: policy.remote_settings.clone(),
            entries,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Refreshes every source now.
    pub async fn refresh_all(&mut self) -> bool {
        self.refresh((0..self.entries.len()).collect()).await
    }

    /// Refreshes the sources whose interval has passed; true when a list in use changed.
    pub async fn refresh_due(&mut self, now: Instant) -> bool {
        let due = (0..self.entries.len())
            .filter(|index| self.entries[*index].next_due <= now)
            .collect();
        self.refresh(due).await
    }

    /// Makes every source due one interval after `now` (after a refresh of all at start).
    pub fn postpone_all(&mut self, now: Instant) {
        for entry in &mut self.entries {
            entry.next_due = now + entry.source.refresh;
        }
    }

    /// Fetches and resolves the sources at `indices` all at once (a dead DNS server must not
    /// hold up the URLs), then concludes each.
    async fn refresh(&mut self, indices: Vec<usize>) -> bool {
        let mut tasks = tokio::task::JoinSet::new();
        for index in indices {
            let entry = &mut self.entries[index];
            entry.next_due = Instant::now() + entry.source.refresh;
            let source = entry.source.clone();
            let settings = self.settings.clone();
            let validators = entry
                .good
                .as_ref()
                .map(|good| (good.etag.clone(), good.last_modified.clone()));
            tasks.spawn(async move { (index, fetch::fetch(&source, &settings, validators).await) });
        }
        let mut changed = false;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, result)) => changed |= self.conclude(index, result),
                Err(error) => log::warn!("list refresh task: {error}"),
            }
        }
        changed
    }

    /// Records a refresh's result for the source at `index`; true when its list in use changed.
    fn conclude(&mut self, index: usize, result: Result<Fetched, String>) -> bool {
        let entry = &mut self.entries[index];
        let label = format!("{} {}", entry.status.list, entry.status.source);
        let (outcome, changed) = decide(entry, result, now_unix());
        entry.status.outcome = outcome;
        if let Some(slot) = Outcome::REPORTED.iter().position(|o| *o == outcome) {
            entry.status.refreshes[slot] += 1;
        }
        match outcome {
            Outcome::Ok if changed => {
                log::info!("list {label}: {} entries", entry.status.entries);
            }
            Outcome::Failed | Outcome::HeldBack => log::warn!(
                "list {label}: {}; the last good list ({} entries) stays",
                entry.status.detail.as_deref().unwrap_or(""),
                entry.status.entries
            ),
            _ => {}
        }
        if let (true, Some(dir), Some(good)) = (outcome == Outcome::Ok, &self.dir, &entry.good)
            && let Err(error) = cache::store(dir, &entry.source, good)
        {
            log::warn!("list {label}: cannot write its cache: {error}");
        }
        changed
    }

    /// Every source's state.
    pub fn status(&self) -> Vec<ListStatus> {
        self.entries
            .iter()
            .map(|entry| entry.status.clone())
            .collect()
    }

    /// `policy` with every source's last good list added to its allowlist. A prefix the policy
    /// denies is left out (and logged): a list does not override the denylist.
    pub fn effective(&self, policy: &Policy) -> Policy {
        let mut effective = policy.clone();
        let denied: BTreeSet<IpNet> = policy.deny.iter().map(|rule| rule.net).collect();
        let mut seen: BTreeSet<(IpNet, &str)> = BTreeSet::new();
        for entry in &self.entries {
            let Some(good) = &entry.good else { continue };
            for net in &good.nets {
                if denied.contains(net) {
                    log::warn!(
                        "list {} {}: {net} is denied by the policy; left out",
                        entry.status.list,
                        entry.status.source
                    );
                    continue;
                }
                if !seen.insert((*net, entry.source.group.as_str())) {
                    continue;
                }
                effective.allow.push(Rule {
                    net: *net,
                    group: entry.source.group.clone(),
                    class: entry.source.class.clone(),
                    at: Location {
                        file: PathBuf::from(entry.source.source()),
                        line: 0,
                    },
                });
            }
        }
        effective
    }
}

/// Applies a fetch's result to an entry: the outcome, and whether the list in use changed.
fn decide(entry: &mut Entry, result: Result<Fetched, String>, now: u64) -> (Outcome, bool) {
    entry.status.detail = None;
    let fail = |entry: &mut Entry, detail: String| {
        entry.status.detail = Some(detail);
        (Outcome::Failed, false)
    };
    match result {
        Err(detail) => fail(entry, detail),
        Ok(Fetched::NotModified) => match &mut entry.good {
            Some(good) => {
                good.fetched_unix = now;
                entry.status.last_ok_unix = Some(now);
                (Outcome::Ok, false)
            }
            None => fail(entry, "304 Not Modified without a list".to_string()),
        },
        Ok(Fetched::Fresh {
            nets,
            etag,
            last_modified,
        }) => {
            let per_family = nets.iter().filter(|net| net.addr().is_ipv4()).count();
            if per_family > MAX_PREFIXES as usize || nets.len() - per_family > MAX_PREFIXES as usize
            {
                return fail(
                    entry,
                    format!(
                        "{} entries, more than the filter holds ({MAX_PREFIXES} per family)",
                        nets.len()
                    ),
                );
            }
            let old = entry.good.as_ref().map_or(0, |good| good.nets.len());
            if shrinks_too_much(old, nets.len(), entry.source.max_shrink) {
                entry.status.detail = Some(format!(
                    "held back: {} entries instead of {old} (max_shrink {})",
                    nets.len(),
                    entry.source.max_shrink
                ));
                return (Outcome::HeldBack, false);
            }
            let nets: Vec<IpNet> = nets.into_iter().collect();
            let changed = entry.good.as_ref().is_none_or(|good| good.nets != nets);
            entry.status.entries = nets.len();
            entry.status.last_ok_unix = Some(now);
            entry.good = Some(Cached {
                list: entry.source.group.clone(),
                source: entry.source.source().to_string(),
                nets,
                fetched_unix: now,
                etag,
                last_modified,
            });
            (Outcome::Ok, changed)
        }
    }
}

/// A URL as metrics and logs show it: without user information and query (either may hold a
/// credential).
pub fn display_source(source: &str) -> String {
    let Some((scheme, rest)) = source.split_once("://") else {
        return source.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}{path}")
}

/// For `sipguard apply` and the start of `sipguard run`: fetches and resolves every source of
/// `policy` once (falling back to the cache in `dir`; `None`: no cache) and returns the policy
/// to apply.
pub fn resolve_once(policy: &Policy, dir: Option<&Path>) -> anyhow::Result<(Policy, Lists)> {
    let mut lists = Lists::with_cache(policy, dir);
    if !lists.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(lists.refresh_all());
    }
    Ok((lists.effective(policy), lists))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, text: &str) -> Policy {
        Policy::parse(text, dir.join("policy.toml")).unwrap()
    }

    fn fresh(items: &[&str]) -> Result<Fetched, String> {
        Ok(Fetched::Fresh {
            nets: items
                .iter()
                .map(|item| crate::policy::parse_net(item).unwrap())
                .collect(),
            etag: Some("\"v1\"".into()),
            last_modified: None,
        })
    }

    #[test]
    fn failures_keep_the_last_good_list_and_a_big_shrink_is_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(
            dir.path(),
            "[[allow]]\nname = \"b\"\nurls = [\"http://198.18.3.80/l.txt\"]\nmax_shrink = 0.5\n",
        );
        let mut lists = Lists::new(&policy, dir.path());
        let ten: Vec<String> = (0..10).map(|i| format!("198.18.6.{i}")).collect();
        let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
        let entry = &mut lists.entries[0];
        assert_eq!(decide(entry, fresh(&ten), 100), (Outcome::Ok, true));
        assert_eq!(decide(entry, fresh(&ten), 110), (Outcome::Ok, false));
        assert_eq!(
            decide(entry, Err("HTTP 500".into()), 120),
            (Outcome::Failed, false)
        );
        assert_eq!(entry.status.last_ok_unix, Some(110), "age grows on failure");
        assert_eq!(entry.good.as_ref().unwrap().nets.len(), 10);
        assert_eq!(
            decide(entry, fresh(&ten[..1]), 130),
            (Outcome::HeldBack, false)
        );
        assert_eq!(entry.good.as_ref().unwrap().nets.len(), 10);
        assert_eq!(entry.status.entries, 10);
        assert_eq!(
            decide(entry, Ok(Fetched::NotModified), 140),
            (Outcome::Ok, false)
        );
        assert_eq!(entry.status.last_ok_unix, Some(140));
        assert_eq!(decide(entry, fresh(&ten[..6]), 150), (Outcome::Ok, true));
        let effective = lists.effective(&policy);
        assert_eq!(effective.allow.len(), 6);
        assert!(effective.allow.iter().all(|rule| rule.group == "b"));
    }

    #[test]
    fn a_304_without_a_list_is_a_failure_and_denied_prefixes_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(
            dir.path(),
            "[[allow]]\nname = \"b\"\nhosts = [\"sip.b.example\"]\n\
             [[deny]]\ncidrs = [\"198.18.6.1\"]\n",
        );
        let mut lists = Lists::new(&policy, dir.path());
        let entry = &mut lists.entries[0];
        assert_eq!(
            decide(entry, Ok(Fetched::NotModified), 1),
            (Outcome::Failed, false)
        );
        decide(entry, fresh(&["198.18.6.1", "198.18.6.2"]), 2);
        let allowed: Vec<String> = lists
            .effective(&policy)
            .allow
            .iter()
            .map(|rule| rule.net.to_string())
            .collect();
        assert_eq!(allowed, ["198.18.6.2/32"]);
    }

    #[test]
    fn sources_are_shown_without_credentials() {
        assert_eq!(
            display_source("https://user:secret@lists.example/sip.txt?token=abc"),
            "https://lists.example/sip.txt"
        );
        assert_eq!(display_source("sip.carrier.example"), "sip.carrier.example");
    }
}
