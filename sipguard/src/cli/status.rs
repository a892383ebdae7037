//! `sipguard status`

use anyhow::Result;

use super::{Global, print_json};
use crate::{
    report::Status,
    state::{State, Target},
    time::{format_duration, format_time},
};

/// Show whether and how each interface is filtered: link, mode, policy, list sizes, totals.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface; all filtered interfaces (under --pin-root) when left out.
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let targets = match &args.iface {
        Some(iface) => vec![global.target(Some(iface))?],
        None => Target::list(&global.pin_root),
    };
    let mut statuses = Vec::new();
    for target in &targets {
        statuses.push(Status::read(&State::open(target)?)?);
    }
    if args.json {
        print_json(&statuses)?;
        return Ok(0);
    }
    if statuses.is_empty() {
        println!(
            "sipguard filters no interface (no state under {})",
            global.pin_root.display()
        );
    }
    for (status, target) in statuses.iter().zip(&targets) {
        print_status(status);
        print_capture(target);
    }
    Ok(0)
}

/// The capture slots: who holds them and what the kernel could and could not copy.
fn print_capture(target: &Target) {
    use crate::capture::{SLOT_NAMES, control, stats};
    for (slot, name) in SLOT_NAMES {
        let (Ok(control), Ok(stats)) = (control(target, slot), stats(target, slot)) else {
            continue;
        };
        let state = if control.expires_ns > crate::time::boot_now_ns() {
            format!("on (pid {})", control.owner_pid)
        } else {
            "off".to_string()
        };
        println!(
            "  {name:<11} {state}; copied {} ({} bytes), over budget {}, ring full {}, \
             truncated {}",
            stats.copied, stats.copied_bytes, stats.over_budget, stats.ring_full, stats.truncated
        );
    }
}

fn print_status(status: &Status) {
    let link = match &status.link {
        Some(link) if status.attached => format!(
            "attached ({} XDP, link {}, program {})",
            status.xdp_mode, link.link_id, link.program_id
        ),
        Some(_) => "NOT attached: the link's interface is gone".to_string(),
        None => "NOT attached (state kept)".to_string(),
    };
    println!("{}: {link}", status.interface);
    println!(
        "  mode        {} (fragments: {})",
        status.mode, status.fragments
    );
    if status.access_gate.starts_with("shut") {
        println!(
            "  GATE        {}: unverified access sources may send only what a registration \
             needs (`sipguard attack-mode`)",
            status.access_gate
        );
    }
    if status.lockdown != "off" {
        println!(
            "  LOCKDOWN    only {} sources are admitted (`sipguard lockdown off` ends it)",
            status.lockdown.replace('+', " and ")
        );
    }
    println!(
        "  policy      {} (digest {}), serial {}, applied {}",
        status
            .policy_file
            .as_deref()
            .unwrap_or("none (starter policy)"),
        status.policy_digest.as_deref().unwrap_or("-"),
        status.serial,
        format_time(status.applied_at_unix)
    );
    println!(
        "  trunk       {} (allowlisted sources only)",
        status.trunk.describe()
    );
    if let Some(class) = &status.access_class {
        println!(
            "  access      {} (unknown sources: class {class}; new sources {}/s, burst {})",
            status.access.describe(),
            status.new_sources.rate,
            status.new_sources.burst
        );
    }
    if !status.classes.is_empty() {
        let classes: Vec<String> = status
            .classes
            .iter()
            .map(|c| format!("{} {}/s burst {}", c.name, c.rate, c.burst))
            .collect();
        println!("  classes     {}", classes.join("; "));
    }
    for sip in &status.sip {
        let mut parts = Vec::new();
        if !sip.method_budget_classes.is_empty() {
            parts.push(format!(
                "method budgets ({})",
                sip.method_budget_classes.join(", ")
            ));
        }
        if sip.signatures > 0 {
            parts.push(format!(
                "{} scanner signatures{}{}",
                sip.signatures,
                if sip.scanner_bans { ", ban" } else { "" },
                if sip.scanners_check_allowlisted {
                    ", allowlisted too"
                } else {
                    ""
                }
            ));
        }
        if sip.destination_prefixes > 0 {
            parts.push(format!(
                "destination firewall ({} prefixes)",
                sip.destination_prefixes
            ));
        }
        if parts.is_empty() {
            parts.push("methods counted".to_string());
        }
        println!("  sip {:<7} {}", sip.zone, parts.join("; "));
    }
    let egress = match &status.egress.link {
        Some(link) if status.egress.attached => format!(
            "attached (tcx, link {}, program {})",
            link.link_id, link.program_id
        ),
        Some(_) => "NOT attached: the link's interface is gone".to_string(),
        None => "not attached (the SBC's answers are not read)".to_string(),
    };
    println!("  egress      {egress}");
    println!("  feedback    {}", describe_feedback(&status.feedback));
    println!(
        "  budgets     {} unknown sources and {} peers tracked; IPv6 per /{}",
        status.tracked_sources, status.tracked_peers, status.ipv6_budget_prefix
    );
    println!(
        "  bans        {} active; auto-ban after {} over-budget packets in {}s, for {}s",
        status.bans.active,
        status.bans.threshold,
        status.bans.window_seconds,
        status.bans.ttl_seconds
    );
    if status.bans.would_be > 0 {
        println!(
            "              {} would-be bans of monitor mode (not enforced; discarded at the switch \
             to enforce)",
            status.bans.would_be
        );
    }
    println!(
        "  allowlist   {} from policy, {} added at runtime",
        status.allowlist.policy, status.allowlist.runtime
    );
    println!(
        "  denylist    {} from policy, {} added at runtime",
        status.denylist.policy, status.denylist.runtime
    );
    println!(
        "  packets     {} passed, {} dropped, {} would drop",
        status.passed.packets, status.dropped.packets, status.would_drop.packets
    );
    let tables: Vec<String> = status
        .tables
        .iter()
        .filter(|fill| fill.entries > 0)
        .map(|fill| {
            format!(
                "{} {}/{} ({:.0}%)",
                fill.name,
                fill.entries,
                fill.capacity,
                fill.ratio() * 100.0
            )
        })
        .collect();
    if !tables.is_empty() {
        println!("  tables      {}", tables.join(", "));
    }
    println!("  state       {}", status.pin_dir);
}

/// `auth failures: ban after 10 in 10m for 1h (grace 5s); verified: class access, max 1h; 3
/// verified sources`
fn describe_feedback(feedback: &crate::report::FeedbackView) -> String {
    let auth = match &feedback.auth_failures {
        Some(auth) => format!(
            "auth failures: ban after {} in {} for {} (grace {})",
            auth.threshold,
            format_duration(auth.window_seconds),
            format_duration(auth.ttl_seconds),
            format_duration(auth.grace_seconds)
        ),
        None => "auth failures: off".to_string(),
    };
    let verified = match &feedback.verified {
        Some(verified) => format!(
            "verified: class {}, max lifetime {}",
            verified.class,
            format_duration(verified.max_lifetime_seconds)
        ),
        None => "verified: off".to_string(),
    };
    format!(
        "{auth}; {verified}; {} verified sources now",
        feedback.verified_sources
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AuthFailuresView, FeedbackView, VerifiedView};

    #[test]
    fn feedback_reads_as_one_line() {
        let on = FeedbackView {
            auth_failures: Some(AuthFailuresView {
                threshold: 10,
                window_seconds: 600,
                ttl_seconds: 3600,
                grace_seconds: 5,
            }),
            verified: Some(VerifiedView {
                class: "access".into(),
                max_lifetime_seconds: 3600,
                default_lifetime_seconds: 3600,
            }),
            verified_sources: 3,
        };
        assert_eq!(
            describe_feedback(&on),
            "auth failures: ban after 10 in 10m for 1h (grace 5s); verified: class access, \
             max lifetime 1h; 3 verified sources now"
        );
        let off = FeedbackView {
            auth_failures: None,
            verified: None,
            verified_sources: 0,
        };
        assert_eq!(
            describe_feedback(&off),
            "auth failures: off; verified: off; 0 verified sources now"
        );
    }
}
