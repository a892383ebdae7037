//! `sipguard sources`

use anyhow::Result;
use serde::Serialize;
use sipguard_common::{
    abi::{AuthState, CLASS_SLOTS, Policy, SourceKey, VerifiedSource},
    budget::NANOS,
};

use super::{Global, print_json};
use crate::{
    live::{source_addr, source_text},
    policy::class_name,
    state::State,
    time::{boot_now_ns, boot_ns_to_unix, format_duration, format_time},
};

/// Show what the SBC's answers taught the filter about access-zone clients.
///
/// --verified: sources the SBC accepted a REGISTER from (200 OK), until their registration
/// expires; their packets get the `[verified] class` budget. --auth-failures: clients the SBC
/// challenged without success or refused, with their failures in the current window
/// (`[auth_failures]`; reaching the threshold bans them).
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(false))]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Verified sources (registration not expired), newest first.
    #[arg(long, group = "which")]
    verified: bool,
    /// Clients with auth failures, most failures first.
    #[arg(long, group = "which")]
    auth_failures: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct VerifiedRow {
    address: String,
    class: String,
    verified_at_unix: u64,
    refreshed_at_unix: u64,
    expires_at_unix: u64,
    expires_in_seconds: u64,
    registrations: u32,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct AuthRow {
    address: String,
    /// Failures in the current window (0 once it passed).
    failures: u32,
    /// Start of the current window, Unix time (0: none).
    window_start_unix: u64,
    last_failure_unix: u64,
    /// A digest exchange (challenge without success yet) is open: `register`, `invite`.
    open_exchanges: Vec<&'static str>,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let state = State::open(&target)?;
    let policy = state.policy(state.active_generation()?)?;
    let now = boot_now_ns();
    if args.verified {
        let rows = verified_rows(state.verified_sources()?, &policy, now);
        if args.json {
            print_json(&rows)?;
        } else if rows.is_empty() {
            println!("{}: no verified sources", target.label());
        } else {
            println!(
                "{:<26} {:<16} {:<20} {:>10} {:>13}",
                "ADDRESS", "CLASS", "VERIFIED SINCE", "EXPIRES IN", "REGISTRATIONS"
            );
            for row in rows {
                println!(
                    "{:<26} {:<16} {:<20} {:>10} {:>13}",
                    row.address,
                    row.class,
                    format_time(row.verified_at_unix),
                    format_duration(row.expires_in_seconds),
                    row.registrations
                );
            }
        }
    } else {
        let rows = auth_rows(state.auth_states()?, &policy, now);
        if args.json {
            print_json(&rows)?;
        } else if rows.is_empty() {
            println!("{}: no clients with auth failures", target.label());
        } else {
            println!(
                "{:<26} {:>8} {:<20} {:<20} {:<16}",
                "ADDRESS", "FAILURES", "WINDOW START", "LAST FAILURE", "OPEN EXCHANGE"
            );
            for row in rows {
                println!(
                    "{:<26} {:>8} {:<20} {:<20} {:<16}",
                    row.address,
                    row.failures,
                    format_time(row.window_start_unix),
                    format_time(row.last_failure_unix),
                    if row.open_exchanges.is_empty() {
                        "-".to_string()
                    } else {
                        row.open_exchanges.join("+")
                    }
                );
            }
        }
    }
    Ok(0)
}

/// A source as people write it: an IPv4 or IPv6 address, an IPv6 budget prefix with its length.
fn address(key: &SourceKey) -> String {
    if key.family == 6 && key.prefix_len >= 128 {
        source_addr(key).to_string()
    } else {
        source_text(key)
    }
}

/// Unexpired verified sources, newest verification first.
fn verified_rows(
    mut entries: Vec<(SourceKey, VerifiedSource)>,
    policy: &Policy,
    now: u64,
) -> Vec<VerifiedRow> {
    entries.retain(|(_, entry)| entry.expires_at_ns > now);
    entries.sort_by_key(|(key, entry)| (std::cmp::Reverse(entry.verified_at_ns), *key));
    entries
        .iter()
        .map(|(key, entry)| VerifiedRow {
            address: address(key),
            class: class_name(&policy.classes[usize::from(entry.class) % CLASS_SLOTS]),
            verified_at_unix: boot_ns_to_unix(entry.verified_at_ns),
            refreshed_at_unix: boot_ns_to_unix(entry.refreshed_at_ns),
            expires_at_unix: boot_ns_to_unix(entry.expires_at_ns),
            expires_in_seconds: (entry.expires_at_ns - now).div_ceil(NANOS),
            registrations: entry.registrations,
        })
        .collect()
}

/// Clients that failed at least once, most failures in the current window first.
fn auth_rows(entries: Vec<(SourceKey, AuthState)>, policy: &Policy, now: u64) -> Vec<AuthRow> {
    let window_s = policy.feedback.auth.window_ns / NANOS;
    let now_s = now / NANOS;
    let mut rows: Vec<(u64, AuthRow)> = entries
        .into_iter()
        .filter(|(_, state)| state.last_failure_ns != 0)
        .map(|(key, state)| {
            // The window's start is stored as seconds since boot plus one (0: none), and a
            // failure after it ends starts a new one (`feedback::count_failure`).
            let start = state.failures_window >> 32;
            let current = start != 0 && now_s.saturating_sub(start - 1) <= window_s;
            let row = AuthRow {
                address: address(&key),
                failures: if current { state.failures() } else { 0 },
                window_start_unix: if current {
                    boot_ns_to_unix(((start - 1) * NANOS).max(1))
                } else {
                    0
                },
                last_failure_unix: boot_ns_to_unix(state.last_failure_ns),
                open_exchanges: ["register", "invite"]
                    .into_iter()
                    .zip(state.open_since_ns)
                    .filter(|(_, since)| *since != 0)
                    .map(|(name, _)| name)
                    .collect(),
            };
            (state.last_failure_ns, row)
        })
        .collect();
    rows.sort_by(|(a_last, a), (b_last, b)| {
        b.failures
            .cmp(&a.failures)
            .then(b_last.cmp(a_last))
            .then_with(|| a.address.cmp(&b.address))
    });
    rows.into_iter().map(|(_, row)| row).collect()
}

#[cfg(test)]
mod tests {
    use sipguard_common::{
        abi::ClassLimits, budget::BanRule, feedback::count_failure, source::source_key,
    };

    use super::*;
    use crate::policy::zeroed_policy;

    fn key(last: u8) -> SourceKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[198, 18, 3, last]);
        source_key(4, &addr, 64)
    }

    fn policy() -> Box<Policy> {
        let mut policy = zeroed_policy();
        let mut name = [0u8; 24];
        name[..6].copy_from_slice(b"access");
        policy.classes[2] = ClassLimits {
            name,
            ..ClassLimits::default()
        };
        policy.feedback.auth = BanRule {
            threshold: 10,
            window_ns: 600 * NANOS,
            ttl_ns: 3600 * NANOS,
            ..BanRule::default()
        };
        policy
    }

    #[test]
    fn verified_rows_leave_out_expired_entries_and_name_the_class() {
        let now = 1000 * NANOS;
        let entry = |verified_s: u64, expires_s: u64| VerifiedSource {
            verified_at_ns: verified_s * NANOS,
            refreshed_at_ns: verified_s * NANOS,
            expires_at_ns: expires_s * NANOS,
            registrations: 2,
            class: 2,
            ..VerifiedSource::default()
        };
        let rows = verified_rows(
            vec![
                (key(1), entry(100, 1600)),
                (key(2), entry(900, 1000)),
                (key(3), entry(950, 1030)),
            ],
            &policy(),
            now,
        );
        let view: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.address.as_str(), r.class.as_str(), r.expires_in_seconds))
            .collect();
        assert_eq!(
            view,
            [("198.18.3.3", "access", 30), ("198.18.3.1", "access", 600)]
        );
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(address(&source_key(6, &v6, 64)), "2001:db8::/64");
        assert_eq!(address(&source_key(6, &v6, 128)), "2001:db8::");
    }

    #[test]
    fn auth_rows_count_only_the_current_window() {
        let policy = policy();
        let rule = policy.feedback.auth;
        let failed = |times: &[u64]| {
            let mut state = AuthState::default();
            for t in times {
                state.failures_window = count_failure(state.failures_window, &rule, t * NANOS).0;
                state.last_failure_ns = t * NANOS;
            }
            state
        };
        let mut open = AuthState::default();
        open.open_since_ns[1] = 5 * NANOS;
        let rows = auth_rows(
            vec![
                (key(1), failed(&[100, 110, 120])),
                (key(2), failed(&[900, 950])),
                (key(3), open),
            ],
            &policy,
            1000 * NANOS,
        );
        let view: Vec<(&str, u32)> = rows
            .iter()
            .map(|r| (r.address.as_str(), r.failures))
            .collect();
        assert_eq!(
            view,
            [("198.18.3.2", 2), ("198.18.3.1", 0)],
            "window of 3 passed"
        );
        assert_eq!(rows[1].window_start_unix, 0);
        assert_ne!(rows[0].window_start_unix, 0);
        assert!(rows[0].open_exchanges.is_empty());
    }
}
