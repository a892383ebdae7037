//! The `sipguard` command line: one module per subcommand.

mod apply;
mod attach;
mod attack_mode;
mod bans;
mod capture;
mod check;
pub mod client;
mod detach;
mod dial;
mod events;
pub mod generate;
mod history;
mod limits;
mod lists;
mod lockdown;
mod mode;
mod report;
mod run;
mod sources;
mod stats;
mod status;
mod strike;
mod top;
mod undo;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::state::{DEFAULT_PIN_ROOT, Target};

/// Exit status of a policy that fails its checks (usage errors exit with 2, other failures 1).
pub const EXIT_INVALID_POLICY: u8 = 3;

/// sipguard: a SIP edge filter in XDP. It drops SIP from sources that are not allowlisted before
/// the SBC sees them, and keeps doing so when this controller is not running.
///
/// Start in monitor mode to see what would be dropped, then enforce:
///
///   sipguard attach --iface eth0                       # monitor mode, default ports, empty lists
///   sipguard stats --iface eth0                        # what would be dropped, and why
///   sipguard apply --iface eth0 /etc/sipguard/policy.toml
///   sipguard mode --iface eth0 enforce
///
/// State lives in bpffs under --pin-root/<iface>; the filter survives restarts of this program.
#[derive(Debug, Parser)]
#[command(name = "sipguard", version, verbatim_doc_comment)]
pub struct Cli {
    /// Directory in bpffs holding one state directory per interface.
    #[arg(long, global = true, env = "SIPGUARD_PIN_ROOT", default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,

    /// Network namespace (as in `ip netns list`) the interface lives in.
    #[arg(long, global = true, env = "SIPGUARD_NETNS", value_parser = netns_name)]
    pub netns: Option<String>,

    /// Directory of the journals of changes (`sipguard history`, `undo`); one directory per
    /// interface in it.
    #[arg(long, global = true, env = "SIPGUARD_JOURNAL_DIR", default_value = crate::journal::DEFAULT_JOURNAL_DIR)]
    pub journal_dir: PathBuf,

    /// Directory of the last good provider lists (the URLs and hostnames of `[[allow]]`
    /// entries), used while a source is down, also after a restart.
    #[arg(long, global = true, env = "SIPGUARD_LISTS_DIR", default_value = crate::lists::DEFAULT_LISTS_DIR)]
    pub lists_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Attach(attach::Args),
    Run(run::Args),
    Detach(detach::Args),
    Apply(apply::Args),
    Check(check::Args),
    Dial(dial::Args),
    /// Show, add or remove allowlist entries on the running filter.
    Allow(lists::Args),
    /// Show, add or remove denylist entries on the running filter.
    Deny(lists::Args),
    Mode(mode::Args),
    Lockdown(lockdown::Args),
    AttackMode(attack_mode::Args),
    Limits(limits::Args),
    History(history::Args),
    Report(report::Args),
    Undo(undo::Args),
    Bans(bans::Args),
    Sources(sources::Args),
    Strike(strike::Args),
    Stats(stats::Args),
    Status(status::Args),
    Events(events::Args),
    Top(top::Args),
    Capture(capture::Args),
    /// Print the example policy (the one `cargo xtask demo` uses).
    Example,
    #[command(hide = true)]
    Generate(generate::Args),
}

impl Cli {
    /// Runs the command; returns the process exit status.
    pub fn run(self) -> Result<u8> {
        crate::journal::set_root(&self.journal_dir);
        let global = Global {
            pin_root: self.pin_root,
            netns: self.netns,
            lists_dir: self.lists_dir,
        };
        match self.command {
            Command::Attach(args) => attach::run(&global, args),
            Command::Run(args) => run::run(&global, args),
            Command::Detach(args) => detach::run(&global, args),
            Command::Apply(args) => apply::run(&global, args),
            Command::Check(args) => check::run(args),
            Command::Dial(args) => dial::run(&global, args),
            Command::Allow(args) => lists::run(&global, crate::state::List::Allow, args),
            Command::Deny(args) => lists::run(&global, crate::state::List::Deny, args),
            Command::Mode(args) => mode::run(&global, args),
            Command::Lockdown(args) => lockdown::run(&global, args),
            Command::AttackMode(args) => attack_mode::run(&global, args),
            Command::Limits(args) => limits::run(&global, args),
            Command::History(args) => history::run(&global, args),
            Command::Report(args) => report::run(&global, args),
            Command::Undo(args) => undo::run(&global, args),
            Command::Bans(args) => bans::run(&global, args),
            Command::Sources(args) => sources::run(&global, args),
            Command::Strike(args) => strike::run(&global, args),
            Command::Stats(args) => stats::run(&global, args),
            Command::Status(args) => status::run(&global, args),
            Command::Events(args) => events::run(&global, args),
            Command::Top(args) => top::run(&global, args),
            Command::Generate(args) => generate::run(args),
            Command::Capture(args) => capture::run(&global, args),
            Command::Example => {
                print!("{}", crate::policy::EXAMPLE_POLICY);
                Ok(0)
            }
        }
    }
}

/// Options every subcommand shares.
pub struct Global {
    pub pin_root: PathBuf,
    pub netns: Option<String>,
    pub lists_dir: PathBuf,
}

impl Global {
    /// `policy` with the provider lists of its URLs and hostnames, fetched and resolved now
    /// (a source that fails gives its cached last good list); one line per source on stderr.
    pub fn with_lists(
        &self,
        policy: crate::policy::Policy,
    ) -> Result<(crate::policy::Policy, crate::lists::Lists)> {
        let (effective, lists) = crate::lists::resolve_once(&policy, Some(&self.lists_dir))?;
        print_list_status(&lists);
        Ok((effective, lists))
    }

    /// The target for `--iface`, or the only interface with state when it is left out.
    pub fn target(&self, iface: Option<&str>) -> Result<Target> {
        if let Some(iface) = iface {
            return Ok(Target::new(iface, self.netns.as_deref(), &self.pin_root)?);
        }
        let targets: Vec<Target> = Target::list(&self.pin_root)
            .into_iter()
            .filter(|target| target.netns() == self.netns.as_deref())
            .collect();
        match targets.as_slice() {
            [only] => Ok(only.clone()),
            [] => bail!(
                "sipguard is not attached to any interface under {} (use --iface)",
                self.pin_root.display()
            ),
            many => bail!(
                "several interfaces are filtered ({}); pick one with --iface",
                many.iter()
                    .map(Target::label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// One line per provider list on stderr: outcome, entries, age, and why it failed.
pub(crate) fn print_list_status(lists: &crate::lists::Lists) {
    for status in lists.status() {
        let age = status.last_ok_unix.map_or_else(
            || "never fetched".to_string(),
            |at| format!("{}s old", crate::time::now_unix().saturating_sub(at)),
        );
        eprintln!(
            "list {} {}: {} ({} entries, {age}){}",
            status.list,
            status.source,
            status.outcome.name(),
            status.entries,
            status
                .detail
                .as_deref()
                .map(|detail| format!(": {detail}"))
                .unwrap_or_default()
        );
    }
}

/// Checks `--iface` against the kernel's rules for interface names.
pub fn iface_name(text: &str) -> Result<String, String> {
    crate::pins::check_iface_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// Checks `--netns` against the rules for `ip netns` names.
pub fn netns_name(text: &str) -> Result<String, String> {
    crate::pins::check_netns_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// Reads the policy file given on the command line; `Err(exit status)` after printing every
/// problem in it.
pub fn load_policy(path: Option<&std::path::Path>) -> Result<Option<crate::policy::Policy>, u8> {
    match path.map(crate::policy::Policy::load).transpose() {
        Ok(policy) => Ok(policy),
        Err(error) => {
            eprintln!("{error}");
            Err(EXIT_INVALID_POLICY)
        }
    }
}

/// Prints a value as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub use crate::policy::format_ports;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_render_as_ranges() {
        assert_eq!(format_ports(&[]), "none");
        assert_eq!(format_ports(&[5060]), "5060");
        assert_eq!(format_ports(&[5060, 5061, 5062, 5080]), "5060-5062, 5080");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
