//! `sipguard strike`

use std::net::IpAddr;

use anyhow::Result;

use super::{Global, print_json};
use crate::{journal::Who, live::MAX_STRIKES, state::LiveState, time::boot_now_ns};

/// Report auth failures of a client, as if the egress program had seen the SBC's answers.
///
/// For what the egress program cannot read (SIP over TLS, an SBC elsewhere): the SBC, or a log
/// watcher, reports each failed authentication. The failures count in the client's window of
/// `[auth_failures]`; reaching the threshold bans it for the policy's ttl (reason
/// auth_failures; a would-be ban in monitor mode). Allowlisted addresses are never banned.
/// The daemon takes the same reports on `POST /api/strike`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface (optional when only one is filtered).
    #[arg(long, value_parser = super::iface_name)]
    iface: Option<String>,
    /// The client: an IPv4 or IPv6 address (IPv6 counts per the policy's budget prefix).
    #[arg(value_parser = parse_address)]
    address: IpAddr,
    /// What the client did.
    #[arg(long, value_enum, default_value_t = StrikeReason::AuthFailures)]
    reason: StrikeReason,
    /// Failures to count at once (1 to 1000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_STRIKES)))]
    count: u32,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// Why a client is struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StrikeReason {
    /// Failed authentication (a challenge without success, a refusal).
    #[value(name = "auth_failures")]
    AuthFailures,
}

/// An IP address, with a message that says so.
fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an IP address (198.18.3.12, 2001:db8::7)"))
}

pub(super) fn run(global: &Global, args: Args) -> Result<u8> {
    let target = global.target(args.iface.as_deref())?;
    let StrikeReason::AuthFailures = args.reason;
    let outcome = LiveState::lock(&target)?.journaled("strike", &Who::this_process(), |live| {
        live.strike(args.address, args.count, boot_now_ns())
    })?;
    if args.json {
        print_json(&outcome)?;
    } else {
        println!("{}", outcome.describe());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn addresses_and_counts_are_checked_before_anything_is_opened() {
        assert!(parse_address("198.18.3.12").is_ok());
        assert!(parse_address("2001:db8::7").is_ok());
        let error = parse_address("not-an-ip").unwrap_err();
        assert!(error.contains("not an IP address"), "{error}");
        for args in [
            &["sipguard", "strike", "not-an-ip"][..],
            &["sipguard", "strike", "198.18.3.12", "--count", "0"],
            &["sipguard", "strike", "198.18.3.12", "--count", "1001"],
            &["sipguard", "strike", "198.18.3.12", "--reason", "scanner"],
            &["sipguard", "strike", "198.18.3.0/24"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
        let cli = Cli::try_parse_from([
            "sipguard",
            "strike",
            "198.18.3.12",
            "--reason",
            "auth_failures",
            "--count",
            "1000",
        ])
        .unwrap();
        let crate::cli::Command::Strike(args) = cli.command else {
            panic!("not strike");
        };
        assert_eq!(
            (args.count, args.reason),
            (1000, StrikeReason::AuthFailures)
        );
    }
}
