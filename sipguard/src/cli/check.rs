//! `sipguard check`

use std::path::PathBuf;

use anyhow::Result;

use super::EXIT_INVALID_POLICY;
use crate::policy::{
    Policy,
    lint::{DEFAULT_STORM_PHONES, LintOptions, lint},
};

/// Exit status of `check --lint --strict` when the policy is valid but has warnings.
pub(super) const EXIT_LINT_WARNINGS: u8 = 4;

/// Check a policy file without touching any filter (for CI and config management).
///
/// Exits 0 when the policy is valid, 3 with file:line diagnostics when it is not. With --lint,
/// warnings (file:line: warning[code]: ...) go to stderr and the exit status stays 0 unless
/// --strict is given (then 4).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file.
    file: PathBuf,
    /// Also fetch the URLs and resolve the hostnames of allow entries (without the cache, and
    /// keeping nothing); exit 1 when one fails. Without it nothing is fetched.
    #[arg(long)]
    fetch: bool,
    /// Also warn about valid policies that probably do not do what was meant: nested allow and
    /// deny entries, broad allow prefixes, documentation ranges while enforcing, SIP ports in no
    /// zone, budgets too small for registrations and a re-registration storm.
    #[arg(long)]
    lint: bool,
    /// With --lint: exit 4 when there are warnings.
    #[arg(long, visible_alias = "deny-warnings", requires = "lint")]
    strict: bool,
    /// With --lint: phones that re-register at once after an outage (the new_sources check).
    #[arg(long, default_value_t = DEFAULT_STORM_PHONES, requires = "lint")]
    phones: u32,
}

pub(super) fn run(args: Args) -> Result<u8> {
    match Policy::load(&args.file) {
        Ok(policy) => {
            let count = |rules: &[crate::policy::Rule], v4: bool| {
                rules
                    .iter()
                    .filter(|r| r.net.addr().is_ipv4() == v4)
                    .count()
            };
            let access = policy.access.as_ref();
            let describe = |ports: Option<&crate::policy::Ports>| {
                ports.cloned().unwrap_or_default().describe()
            };
            println!(
                "{}: valid; mode {}, trunk {}, access {}, {} classes, \
                 allow {} IPv4 + {} IPv6, deny {} IPv4 + {} IPv6",
                args.file.display(),
                policy.mode.map_or("unchanged", |m| m.name()),
                describe(Some(&policy.trunk)),
                describe(access.map(|a| &a.ports)),
                policy.classes.len(),
                count(&policy.allow, true),
                count(&policy.allow, false),
                count(&policy.deny, true),
                count(&policy.deny, false),
            );
            if args.fetch && !policy.remote.is_empty() {
                let (_, lists) = crate::lists::resolve_once(&policy, None)?;
                super::print_list_status(&lists);
                if lists
                    .status()
                    .iter()
                    .any(|status| status.outcome != crate::lists::Outcome::Ok)
                {
                    return Ok(1);
                }
            }
            if !args.lint {
                return Ok(0);
            }
            // The file parsed a moment ago; if it cannot be read again, lint without lines.
            let text = std::fs::read_to_string(&args.file).unwrap_or_default();
            let options = LintOptions {
                phones: args.phones,
            };
            let warnings = lint(&policy, &text, &args.file, &options);
            for warning in &warnings {
                eprintln!("{warning}");
            }
            eprintln!(
                "{}: {} lint warning(s)",
                args.file.display(),
                warnings.len()
            );
            Ok(if args.strict && !warnings.is_empty() {
                EXIT_LINT_WARNINGS
            } else {
                0
            })
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(EXIT_INVALID_POLICY)
        }
    }
}
