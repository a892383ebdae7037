//! `sipguard check`

use std::path::PathBuf;

use anyhow::Result;

use super::EXIT_INVALID_POLICY;
use crate::policy::Policy;

/// Check a policy file without touching any filter (for CI and config management).
///
/// Exits 0 when the policy is valid, 3 with file:line diagnostics when it is not.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file.
    file: PathBuf,
    /// Also fetch the URLs and resolve the hostnames of allow entries (without the cache, and
    /// keeping nothing); exit 1 when one fails. Without it nothing is fetched.
    #[arg(long)]
    fetch: bool,
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
            Ok(0)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(EXIT_INVALID_POLICY)
        }
    }
}
