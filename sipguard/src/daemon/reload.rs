//! What `sipguard run` does on SIGHUP besides reopening its event log: read the policy file
//! given with `--policy` again and apply it to every interface it serves, through the same
//! journaled path as `sipguard apply` (so `sipguard history` lists it, and `undo` reverts it).
//! A file that fails its checks is reported with file:line and nothing is applied: the running
//! policy stays. And how it tells systemd (`Type=notify`) that it is ready or reloading.

use std::path::PathBuf;

use sd_notify::NotifyState;
use sipguard_common::abi::Mode;

use crate::{
    apply::apply,
    journal::Who,
    policy::Policy,
    state::{LiveState, Target},
};

/// The policy `sipguard run` re-applies on SIGHUP.
#[derive(Clone, Debug)]
pub struct PolicyReload {
    pub file: PathBuf,
    /// `--mode`: overrides the file's mode, as at start.
    pub mode: Option<Mode>,
}

/// Re-reads and applies the policy to every target; returns a one-line summary for systemd's
/// status, and whether everything was applied. Blocking (takes each interface's lock).
/// With provider lists, the policy applied carries their last good lists (from the cache) and
/// the lists' refresh follows the new file (`super::lists::reloaded`).
pub(crate) fn reload_policy(
    reload: &PolicyReload,
    targets: &[Target],
    lists: Option<&super::lists::SharedLists>,
) -> (String, bool) {
    let file = reload.file.display();
    let policy = match Policy::load(&reload.file) {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("sipguard: reload: {file} not applied, the running policy stays:\n{error}");
            return (
                format!("reload failed: {file} has errors; running policy kept"),
                false,
            );
        }
    };
    let policy = match lists {
        Some(lists) => super::lists::reloaded(lists, policy),
        None => policy,
    };
    let mut who = Who::this_process();
    who.command = format!("{} (SIGHUP)", who.command);
    let mut applied = Vec::new();
    let mut failed = Vec::new();
    for target in targets {
        let result = LiveState::lock(target)
            .map_err(anyhow::Error::from)
            .and_then(|mut live| {
                live.journaled("apply", &who, |live| apply(live, &policy, reload.mode))
                    .map_err(anyhow::Error::from)
            });
        match result {
            Ok(report) => {
                eprintln!(
                    "sipguard: reload: {} applied {file} (mode {}, policy serial {})",
                    target.label(),
                    report.mode,
                    report.serial
                );
                applied.push(target.label());
            }
            Err(error) => {
                eprintln!(
                    "sipguard: reload: {}: applying {file} failed, the running policy stays: {error:#}",
                    target.label()
                );
                failed.push(target.label());
            }
        }
    }
    if failed.is_empty() {
        (
            format!("policy {file} applied to {}", applied.join(", ")),
            true,
        )
    } else {
        (
            format!("reload of {file} failed on {}", failed.join(", ")),
            false,
        )
    }
}

/// Tells the service manager (if `NOTIFY_SOCKET` is set) about a state change; a failure to
/// tell it is logged, never fatal.
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        log::warn!("notifying the service manager: {error}");
    }
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub(crate) fn notify_reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}
