//! `sipguard run`'s side of provider lists: refreshes each URL and hostname of the policy on its
//! interval, applies the policy with the new lists through the same atomic, journaled path as
//! `sipguard apply` (journal action `lists refresh`), and exports each list's state.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    apply::apply,
    journal::Who,
    lists::{ListStatus, Lists, Outcome},
    policy::Policy,
    state::{LiveState, Target},
    time::now_unix,
};

/// The policy the daemon was started with and its provider lists (already fetched once).
pub struct ProviderLists {
    pub policy: Policy,
    pub lists: Lists,
}

type Status = Arc<Mutex<Vec<ListStatus>>>;

/// The refresh task's lists, which a reload (SIGHUP) replaces.
pub(crate) type SharedLists = Arc<tokio::sync::Mutex<ProviderLists>>;

/// For a reload (blocking): the lists now follow `policy`, each source starting from its cached
/// last good list and due at once; returns `policy` with those lists, to apply. A source the
/// file dropped is dropped from the allowlist with it.
pub(crate) fn reloaded(shared: &SharedLists, policy: Policy) -> Policy {
    let mut provider = shared.blocking_lock();
    provider.lists = provider.lists.reloaded(&policy);
    let effective = provider.lists.effective(&policy);
    provider.policy = policy;
    effective
}

/// Adds the lists' metrics to the registry; the returned handle is what they show.
pub(super) fn register(registry: &mut Registry, lists: Option<&ProviderLists>) -> Status {
    let status = Arc::new(Mutex::new(
        lists.map(|lists| lists.lists.status()).unwrap_or_default(),
    ));
    registry.register_collector(Box::new(ListsCollector {
        status: status.clone(),
    }));
    status
}

/// Refreshes what is due (checked every second), then applies the policy with the lists in use
/// to every interface when one of them changed. An apply that fails is tried again every second
/// until it succeeds; one skipped because another policy runs waits for the next change.
pub(super) async fn refresh(
    targets: Vec<Target>,
    shared: SharedLists,
    status: Status,
) -> Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // The lists were fetched once and applied by the attach at start; next refreshes are due
    // after their interval.
    shared.lock().await.lists.postpone_all(Instant::now());
    let mut retry: Vec<Target> = Vec::new();
    loop {
        ticker.tick().await;
        // Held while refreshing, never while applying: a reload waits for the refresh, and
        // an apply of lists a reload replaced meanwhile is refused by apply_lists (digest).
        let (changed, effective) = {
            let mut provider = shared.lock().await;
            let changed = provider.lists.refresh_due(Instant::now()).await;
            *status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = provider.lists.status();
            let effective =
                (changed || !retry.is_empty()).then(|| provider.lists.effective(&provider.policy));
            (changed, effective)
        };
        let Some(effective) = effective else {
            continue;
        };
        let due = if changed {
            targets.clone()
        } else {
            std::mem::take(&mut retry)
        };
        let applied = tokio::task::spawn_blocking(move || {
            due.into_iter()
                .map(|target| {
                    let result = apply_lists(&target, &effective);
                    (target, result)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        retry.clear();
        for (target, result) in applied {
            let label = target.label();
            match result {
                Ok(true) => log::info!("{label}: provider lists applied"),
                Ok(false) => log::warn!(
                    "{label}: provider lists not applied: the running policy is not the one \
                     this daemon was started with (or last reloaded)"
                ),
                Err(error) => {
                    log::warn!("{label}: applying provider lists (retried): {error:#}");
                    retry.push(target);
                }
            }
        }
    }
}

/// Applies `policy` (the daemon's policy with the lists in use) if the running policy is still
/// the daemon's (same file and digest): a policy applied by hand since is not overwritten.
/// The running mode is kept.
fn apply_lists(target: &Target, policy: &Policy) -> Result<bool> {
    let mut live = LiveState::lock(target)?;
    let active = live.active_generation()?;
    let running = live.policy(active)?;
    if policy
        .source
        .as_ref()
        .is_some_and(|source| source.digest != running.header.source_digest)
    {
        return Ok(false);
    }
    let mut policy = policy.clone();
    policy.mode = None;
    live.journaled("lists refresh", &Who::this_process(), |live| {
        apply(live, &policy, None)
    })?;
    Ok(true)
}

#[derive(Debug)]
struct ListsCollector {
    status: Status,
}

impl Collector for ListsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if status.is_empty() {
            return Ok(());
        }
        let now = now_unix();
        let labels = |s: &ListStatus| {
            vec![
                ("list", s.list.clone()),
                ("source", s.source.clone()),
                ("kind", s.kind.to_string()),
            ]
        };
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     samples: Vec<(Vec<(&str, String)>, i64)>|
         -> Result<(), std::fmt::Error> {
            if samples.is_empty() {
                return Ok(());
            }
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, value) in samples {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
            }
            Ok(())
        };
        gauge(
            &mut encoder,
            "sipguard_remote_list_entries",
            "Entries of the provider list in use (the last good one) per URL or hostname.",
            status
                .iter()
                .map(|s| (labels(s), s.entries as i64))
                .collect(),
        )?;
        gauge(
            &mut encoder,
            "sipguard_remote_list_age_seconds",
            "Seconds since the list was last fetched or resolved successfully (absent: never).",
            status
                .iter()
                .filter_map(|s| {
                    let at = s.last_ok_unix?;
                    Some((labels(s), now.saturating_sub(at) as i64))
                })
                .collect(),
        )?;
        gauge(
            &mut encoder,
            "sipguard_remote_list_refresh_interval_seconds",
            "The list's configured refresh interval.",
            status
                .iter()
                .map(|s| (labels(s), s.refresh.as_secs() as i64))
                .collect(),
        )?;
        gauge(
            &mut encoder,
            "sipguard_remote_list_outcome",
            "1 for the outcome of the list's last refresh (ok, failed, held_back), 0 for the others.",
            status
                .iter()
                .filter(|s| s.outcome != Outcome::Pending)
                .flat_map(|s| {
                    Outcome::REPORTED.iter().map(move |outcome| {
                        let mut labels = labels(s);
                        labels.push(("outcome", outcome.name().to_string()));
                        (labels, i64::from(*outcome == s.outcome))
                    })
                })
                .collect(),
        )?;
        let mut metric = encoder.encode_descriptor(
            "sipguard_remote_list_refreshes",
            "Refreshes of the list since the daemon started, by outcome.",
            None,
            MetricType::Counter,
        )?;
        for s in &status {
            for (slot, outcome) in Outcome::REPORTED.iter().enumerate() {
                let mut labels = labels(s);
                labels.push(("outcome", outcome.name().to_string()));
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstCounter::new(s.refreshes[slot]).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
