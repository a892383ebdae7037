//! Policy files: TOML plus plain list files, checked as a whole with file:line diagnostics.
//!
//! ```toml
//! mode = "enforce"          # or "monitor"; leave out to keep the running mode
//! fragments = "inherit"     # or "source", "pass"
//! ipv6_prefix = 64          # IPv6 sources share budgets and bans per /64
//!
//! [trunk]                   # only allowlisted sources; with no [trunk] and no [access]:
//! udp = [5060]              # UDP 5060 and TCP 5060, 5061
//! tcp = [5060, 5061]
//!
//! [access]                  # unknown sources admitted within a per-source budget
//! udp = [5070]
//! class = "phones"          # default: access-default, 10/s burst 30
//! new_sources = { rate = 200, burst = 1000 }
//!
//! [bans]                    # for unknown sources that keep exceeding their budget
//! threshold = 100           # over-budget packets within `window`
//! window = "10s"
//! ttl = "15m"
//!
//! [classes]
//! carrier-a = { rate = 2000, burst = 4000 }
//! phones = { rate = 10, burst = 30 }
//!
//! [[allow]]
//! name = "carrier-a"
//! class = "carrier-a"       # budget of each source; leave out for none
//! cidrs = ["198.51.100.0/24", "2001:db8:100::/48"]
//! files = ["carrier-a.txt"] # one address or CIDR per line, '#' comments; relative to this file
//!
//! [[deny]]
//! name = "scanners"
//! cidrs = ["203.0.113.0/24"]
//! ```
//!
//! The SIP rules (all optional; see [`sip`]):
//!
//! ```toml
//! [classes.phones.methods]  # requests per source by method: register, invite, options, other
//! invite = { rate = 2, per = "1s", burst = 6 }   # per: default 1s; burst: default the rate
//!
//! [scanners]                # User-Agent (and From display name) prefixes of SIP scanners
//! builtin = true            # the shipped signatures, less `exclude = ["sipsak"]`
//! ban = true                # a match bans the source at once
//! allowlisted = false       # allowlisted sources are exempt
//! zones = ["trunk", "access"]
//! [[scanners.signature]]
//! name = "acme-dialer"
//! prefix = "Acme Dialer"    # case-insensitive, up to 31 printable ASCII characters
//! from = false              # also the From display name
//!
//! [destination_budgets]     # per source, at most 4; rules spend them by name
//! international = { rate = 2, per = "1m", burst = 3 }
//!
//! [access.dialplan]         # or [trunk.dialplan]: the zone's numbering plan
//! country_code = "44"
//! national_prefix = "0"
//! international_prefixes = ["00"]  # at most 2
//! tech_prefixes = ["9"]     # at most 2, stripped first
//! unparseable = "deny"      # INVITEs to no number: "allow" (default) or "deny"
//! default = "international" # numbers no rule covers: "allow" (default), "deny" or a budget
//!
//! [[access.destinations]]   # or [[trunk.destinations]]; the longest prefix decides
//! name = "premium"
//! prefixes = ["+449", "881"]  # E.164 digits, '+' optional
//! countries = ["CU"]        # ISO codes: that country's numbers only
//! files = ["premium.txt"]   # one prefix per line, '#' comments; relative to this file
//! action = "deny"           # "allow", "deny" or a [destination_budgets] name
//! ```
//!
//! Each section is read by its own module, all on one [`ParseContext`]: [`classes`], [`zones`],
//! [`settings`], [`lists`] and [`sip`]; [`doc`] is the document as serde reads it and [`check`]
//! collects the diagnostics.

mod check;
mod classes;
mod doc;
mod lists;
mod settings;
mod sip;
mod zones;

use std::{collections::BTreeMap, fs, ops::Range, path::Path};

use sipguard_common::abi::{FragmentPolicy, Mode};

use self::{
    check::{Checker, line_of},
    doc::PolicyDoc,
    lists::ListKind,
    sip::ZoneDoc,
};
pub use self::{
    check::{Diagnostic, PolicyError},
    settings::parse_duration,
};
use super::{Budget, Policy, PolicySource};

/// FNV-1a, 64 bit: a cheap fingerprint for "which policy is running", not a security hash.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

pub(super) fn load(path: &Path) -> Result<Policy, PolicyError> {
    match fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(error) => Err(PolicyError::single(
            path,
            0,
            format!("cannot read policy file: {error}"),
        )),
    }
}

/// Checks the sections in a fixed order, which is the order their problems are reported in.
pub(super) fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
    let doc = read_document(text, path)?;
    let mut context = ParseContext::new(path, text);
    let method_budgets = context.read_classes(&doc.classes);
    let (trunk, access) = context.read_zones(doc.trunk.as_ref(), doc.access.as_ref());
    context.check_class_count();
    let ipv6_prefix = context.read_ipv6_prefix(doc.ipv6_prefix.as_ref());
    let bans = context.read_bans(doc.bans.as_ref());
    let events = context.read_events(doc.events.as_ref());
    let feedback = context.read_feedback(doc.auth_failures.as_ref(), doc.verified.as_ref());
    context.check_gate_has_verified(doc.access.as_ref(), access.as_ref(), &feedback);
    let remote_settings = context.read_remote_settings(doc.lists.as_ref());
    let fleet = context.read_fleet(doc.fleet.as_ref());
    let (allow, remote) = context.read_lists(ListKind::Allow, &doc.allow, &remote_settings);
    let (deny, _) = context.read_lists(ListKind::Deny, &doc.deny, &remote_settings);
    context.check_conflicts(&allow, &deny);
    context.check_capacity(ListKind::Allow, &allow);
    context.check_capacity(ListKind::Deny, &deny);
    let zone_docs = [
        ZoneDoc {
            name: "trunk",
            has_ports: !trunk.is_empty(),
            dialplan: doc.trunk.as_ref().and_then(|zone| zone.dialplan.as_ref()),
            destinations: doc.trunk.as_ref().map_or(&[], |zone| &zone.destinations),
        },
        ZoneDoc {
            name: "access",
            has_ports: access.as_ref().is_some_and(|zone| !zone.ports.is_empty()),
            dialplan: doc.access.as_ref().and_then(|zone| zone.dialplan.as_ref()),
            destinations: doc.access.as_ref().map_or(&[], |zone| &zone.destinations),
        },
    ];
    let sip = context.read_sip(
        method_budgets,
        doc.scanners.as_ref(),
        &doc.destination_budgets,
        zone_docs,
    );

    let ParseContext {
        checker,
        digest,
        classes,
        ..
    } = context;
    let policy = Policy {
        mode: doc.mode.map(Mode::from),
        fragments: doc
            .fragments
            .map_or(FragmentPolicy::Inherit, FragmentPolicy::from),
        ipv6_prefix,
        trunk,
        access,
        classes,
        bans,
        events,
        allow,
        deny,
        sip,
        feedback,
        remote,
        remote_settings,
        fleet,
        source: Some(PolicySource {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            digest: digest.0,
        }),
    };
    checker.finish(policy)
}

/// TOML syntax and the document's shape (unknown keys, wrong types) are checked by serde, which
/// stops at the first problem: nothing else can be checked without a document.
fn read_document(text: &str, path: &Path) -> Result<PolicyDoc, PolicyError> {
    toml::from_str(text).map_err(|error| {
        let line = error.span().map_or(0, |span| line_of(text, &span));
        PolicyError::single(path, line, error.message().trim().to_string())
    })
}

/// What the sections of one policy file share while they are checked.
struct ParseContext<'a> {
    /// The policy file, named in diagnostics about its own lines.
    path: &'a Path,
    /// Its text, to turn spans into line numbers.
    text: &'a str,
    /// List files are named relative to the policy file's directory.
    base_dir: &'a Path,
    /// Problems found in the policy file and in its list files.
    checker: Checker,
    /// Covers the policy text, then each list file in the order it is read.
    digest: Fnv,
    /// The classes of `[classes]`, plus the built-in access class when the access zone names none;
    /// the zones and the allowlists refer to them.
    classes: BTreeMap<String, Budget>,
}

impl<'a> ParseContext<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        let mut digest = Fnv::new();
        digest.feed(text.as_bytes());
        ParseContext {
            path,
            text,
            base_dir: path.parent().unwrap_or_else(|| Path::new(".")),
            checker: Checker::new(),
            digest,
            classes: BTreeMap::new(),
        }
    }

    /// Reports a problem at `line` of the policy file (0: the policy as a whole).
    fn report(&mut self, line: usize, message: impl Into<String>) {
        self.checker.report(self.path, line, message);
    }

    /// Reports a problem at the line where `span` starts in the policy file.
    fn report_at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.report(self.line_at(span), message);
    }

    /// The 1-based line of the policy file where `span` starts.
    fn line_at(&self, span: Range<usize>) -> usize {
        line_of(self.text, &span)
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, time::Duration};

    use sipguard_common::abi::{CLASS_NAME_LEN, MAX_PREFIXES};

    use super::{check::MAX_DIAGNOSTICS, *};
    use crate::policy::{
        BanSettings, EXAMPLE_POLICY, EventSettings, Location, MAX_CLASSES,
        sip::{BUILTIN_SIGNATURES, DestinationAction, RequestBudget},
    };

    fn parse_ok(text: &str) -> Policy {
        match parse(text, Path::new("/etc/sipguard/policy.toml")) {
            Ok(policy) => policy,
            Err(error) => panic!("{error}"),
        }
    }

    fn parse_err(text: &str) -> Vec<String> {
        match parse(text, Path::new("policy.toml")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(error) => error.diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn empty_file_gives_defaults_and_keeps_the_mode() {
        let policy = parse_ok("");
        assert_eq!(policy.mode, None);
        assert_eq!(policy.fragments, FragmentPolicy::Inherit);
        assert_eq!(policy.trunk.udp, vec![5060]);
        assert_eq!(policy.trunk.tcp, vec![5060, 5061]);
        assert_eq!(policy.access, None);
        assert_eq!(policy.ipv6_prefix, 64);
        assert_eq!(policy.bans, BanSettings::default());
        assert!(policy.allow.is_empty() && policy.deny.is_empty());
    }

    #[test]
    fn full_policy_is_read_with_locations() {
        let policy = parse_ok(
            r#"
mode = "enforce"
fragments = "source"

[trunk]
udp = [5060, 5080, 5060]
tcp = [5061]

[[allow]]
name = "carrier-a"
cidrs = ["198.51.100.0/24",
         "2001:db8:100::/48", "192.0.2.7"]

[[deny]]
cidrs = ["203.0.113.0/24"]
"#,
        );
        assert_eq!(policy.mode, Some(Mode::Enforce));
        assert_eq!(policy.fragments, FragmentPolicy::Source);
        assert_eq!(policy.trunk.udp, vec![5060, 5080]);
        assert_eq!(policy.trunk.tcp, vec![5061]);
        let allow: Vec<String> = policy.allow.iter().map(|r| r.net.to_string()).collect();
        assert_eq!(
            allow,
            ["198.51.100.0/24", "2001:db8:100::/48", "192.0.2.7/32"]
        );
        assert_eq!(policy.allow[0].group, "carrier-a");
        assert_eq!(policy.allow[0].at.line, 11);
        assert_eq!(policy.allow[1].at.line, 12);
        assert_eq!(policy.deny[0].group, "deny-1");
        assert_eq!(policy.deny[0].at.line, 15);
    }

    #[test]
    fn feedback_sections_are_read_and_compiled_for_the_access_zone_only() {
        let policy = parse_ok("[access]\nudp = [5070]\n");
        assert_eq!(policy.feedback, crate::policy::Feedback::default());
        let policy = parse_ok(
            r#"
[access]
udp = [5070]
class = "phones"
[classes]
phones = { rate = 10, burst = 30 }
registered = { rate = 1000, burst = 1000 }
[auth_failures]
threshold = 4
window = 600
ttl = "2h"
grace = "0s"
[verified]
class = "registered"
max_lifetime = "30m"
default_lifetime = "10m"
"#,
        );
        let feedback = &policy.feedback;
        assert_eq!(feedback.auth_threshold, 4);
        assert_eq!(feedback.auth_window, Duration::from_secs(600));
        assert_eq!(feedback.auth_ttl, Duration::from_secs(7200));
        assert_eq!(feedback.auth_grace, Duration::ZERO);
        assert_eq!(feedback.verified_class.as_deref(), Some("registered"));
        assert_eq!(feedback.verified_max_lifetime, Duration::from_secs(1800));
        let tables = crate::policy::Tables::compile(
            &policy,
            Mode::Enforce,
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
            &Default::default(),
        );
        let compiled = tables.feedback;
        use sipguard_common::abi::{feedback_flags, policy_flags};
        assert_eq!(
            compiled.flags,
            feedback_flags::AUTH_FAILURES | feedback_flags::VERIFIED
        );
        assert_eq!(compiled.auth.threshold, 4);
        assert_eq!(compiled.verified_default_ns, 600_000_000_000);
        let registered = tables
            .classes
            .iter()
            .position(|(name, _)| name == "registered")
            .unwrap();
        assert_eq!(usize::from(compiled.verified_class), registered);
        assert_ne!(tables.sip_flags & policy_flags::VERIFIED, 0);
        // Without an access zone, or turned off, nothing is on.
        for text in [
            "[trunk]\nudp = [5060]\n",
            "[access]\nudp = [5070]\n[auth_failures]\nthreshold = 0\n[verified]\nenabled = false\n",
        ] {
            let policy = parse_ok(text);
            let tables = crate::policy::Tables::compile(
                &policy,
                Mode::Enforce,
                &BTreeMap::new(),
                &BTreeMap::new(),
                0,
                &Default::default(),
            );
            assert_eq!(tables.feedback.flags, 0, "{text}");
            assert_eq!(tables.sip_flags & policy_flags::VERIFIED, 0, "{text}");
        }
    }

    #[test]
    fn bad_feedback_sections_are_reported_with_their_lines() {
        let problems = parse_err(
            r#"[access]
udp = [5070]
[auth_failures]
window = "0s"
ttl = "soon"
grace = "-1"
[verified]
class = "nobody"
max_lifetime = 0
"#,
        );
        let text = problems.join("\n");
        assert!(
            text.contains("policy.toml:4: auth_failures.window must be longer than 0"),
            "{text}"
        );
        assert!(
            text.contains("policy.toml:5: auth_failures.ttl: 'soon' is not a duration"),
            "{text}"
        );
        assert!(
            text.contains("policy.toml:6: auth_failures.grace"),
            "{text}"
        );
        assert!(
            text.contains("policy.toml:8:") && text.contains("nobody"),
            "{text}"
        );
        assert!(
            text.contains("policy.toml:9: verified.max_lifetime must be longer than 0"),
            "{text}"
        );
        let problems = parse_err("[auth_failures]\nthreshold = -1\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problems = parse_err("[verified]\nlifetime = \"1h\"\n");
        assert!(problems[0].contains("unknown field"), "{problems:?}");
    }

    #[test]
    fn a_zone_table_lists_exactly_its_ports() {
        let policy = parse_ok("[trunk]\ntcp = [5061]\n");
        assert!(policy.trunk.udp.is_empty());
        assert_eq!(policy.trunk.tcp, vec![5061]);
        // Naming only an access zone leaves no trunk port.
        let policy = parse_ok("[access]\nudp = [5060]\n");
        assert!(policy.trunk.udp.is_empty() && policy.trunk.tcp.is_empty());
        let access = policy.access.unwrap();
        assert_eq!(access.ports.udp, vec![5060]);
        assert_eq!(access.class, "access-default");
        assert_eq!(access.new_sources, crate::policy::DEFAULT_NEW_SOURCES);
        assert_eq!(
            policy.classes["access-default"],
            Budget {
                rate: 10,
                burst: 30
            }
        );
    }

    #[test]
    fn zones_classes_and_bans_are_read() {
        let policy = parse_ok(
            r#"
ipv6_prefix = 56
[trunk]
udp = [5060]
[access]
udp = [5070]
tcp = [5070]
class = "phones"
new_sources = { rate = 50 }
[bans]
threshold = 7
window = "30s"
ttl = 3600
[classes]
phones = { rate = 5, burst = 15 }
carrier = { rate = 1000 }
[[allow]]
name = "carrier"
class = "carrier"
cidrs = ["198.51.100.0/24"]
[[allow]]
cidrs = ["192.0.2.1"]
"#,
        );
        assert_eq!(policy.ipv6_prefix, 56);
        let access = policy.access.as_ref().unwrap();
        assert_eq!(access.class, "phones");
        assert_eq!(
            access.new_sources,
            Budget {
                rate: 50,
                burst: 50
            },
            "burst defaults to the rate"
        );
        assert_eq!(
            policy.classes["carrier"],
            Budget {
                rate: 1000,
                burst: 1000
            }
        );
        assert_eq!(
            policy.classes.len(),
            2,
            "no built-in class when the access zone names one"
        );
        assert_eq!(policy.bans.threshold, 7);
        assert_eq!(policy.bans.window, Duration::from_secs(30));
        assert_eq!(policy.bans.ttl, Duration::from_secs(3600));
        assert_eq!(policy.events, EventSettings::default());
        assert_eq!(policy.allow[0].class.as_deref(), Some("carrier"));
        assert_eq!(policy.allow[1].class, None);
    }

    #[test]
    fn zone_class_and_budget_mistakes_are_reported_with_lines() {
        let errors = parse_err("[trunk]\nudp = [5060]\n[access]\nudp = [5070, 5060]\n");
        assert_eq!(
            errors,
            ["policy.toml:4: udp port 5060 is in both the trunk and the access zone"]
        );
        let errors = parse_err("[access]\nudp = [5070]\nclass = \"ghosts\"\n");
        assert_eq!(
            errors,
            ["policy.toml:3: no class named 'ghosts' in [classes]"]
        );
        let errors = parse_err("[[allow]]\nclass = \"x\"\ncidrs = [\"192.0.2.1\"]\n");
        assert_eq!(errors, ["policy.toml:2: no class named 'x' in [classes]"]);
        let errors = parse_err("[classes]\nx = { rate = 1 }\n[[deny]]\nclass = \"x\"\n");
        assert_eq!(errors, ["policy.toml:4: a deny entry has no budget class"]);
        let errors = parse_err("[classes]\nslow = { rate = 0 }\n");
        assert!(
            errors[0].starts_with("policy.toml:2: class slow: rate must be at least 1"),
            "{errors:?}"
        );
        let errors = parse_err("[classes]\nodd = { rate = 5, burst = 0 }\n");
        assert_eq!(
            errors,
            ["policy.toml:2: class odd: burst must be at least 1 packet"]
        );
        let errors = parse_err("[classes]\n\"has space\" = { rate = 5 }\n");
        assert!(
            errors[0].starts_with("policy.toml:2: class name 'has space'"),
            "{errors:?}"
        );
        let errors = parse_err("[classes]\nx = { rate = 5, brust = 9 }\n");
        assert!(errors[0].contains("unknown field `brust`"), "{errors:?}");
        let errors = parse_err("ipv6_prefix = 0\n");
        assert_eq!(
            errors,
            ["policy.toml:1: ipv6_prefix must be between 1 and 128"]
        );
        let errors = parse_err("[bans]\nwindow = \"soon\"\nttl = 0\n");
        assert_eq!(
            errors,
            [
                "policy.toml:2: bans.window: 'soon' is not a duration (e.g. 30s, 15m, 2h, 1d)",
                "policy.toml:3: bans.ttl must be longer than 0"
            ]
        );
    }

    #[test]
    fn event_budgets_are_read_and_checked() {
        let policy =
            parse_ok("[events]\nper_source = { rate = 2, burst = 10 }\ntotal = { rate = 500 }\n");
        assert_eq!(policy.events.per_source, Budget { rate: 2, burst: 10 });
        assert_eq!(
            policy.events.total,
            Budget {
                rate: 500,
                burst: 500
            }
        );
        let errors = parse_err("[events]\ntotal = { rate = 0 }\n");
        assert!(
            errors[0].starts_with("policy.toml:2: events.total: rate must be at least 1"),
            "{errors:?}"
        );
    }

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn bad_cidrs_are_reported_with_their_lines() {
        let errors = parse_err(
            "[[allow]]\ncidrs = [\n  \"198.51.100.0/24\",\n  \"10.0.0.300\",\n  \"10.1.2.3/24\",\n]\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("policy.toml:4: '10.0.0.300' is not"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with(
                "policy.toml:5: '10.1.2.3/24' has host bits set (the network is 10.1.2.0/24)"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn sctp_ports_and_method_counting_are_read_per_zone() {
        let policy = parse_ok(
            "[trunk]\nudp = [5060]\nsctp = [5060, 5061]\ncount_methods = true\n\
             [access]\nsctp = [5070]\n",
        );
        assert_eq!(policy.trunk.sctp, vec![5060, 5061]);
        assert!(policy.trunk.count_methods);
        let access = policy.access.unwrap();
        assert_eq!(access.ports.sctp, vec![5070]);
        assert!(!access.ports.count_methods);
        let errors = parse_err("[trunk]\nsctp = [5060]\n[access]\nsctp = [5060]\n");
        assert_eq!(
            errors,
            ["policy.toml:4: sctp port 5060 is in both the trunk and the access zone"]
        );
        assert!(!parse_err("[trunk]\ncount_methods = \"yes\"\n").is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_lines() {
        let errors = parse_err("mode = \"enforce\"\n\n[trunk]\nudp = [5060]\ndccp = [5060]\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("policy.toml:5: unknown field `dccp`"),
            "{errors:?}"
        );

        let errors = parse_err("mode = \"block\"\n");
        assert!(
            errors[0].starts_with("policy.toml:1: unknown variant `block`"),
            "{errors:?}"
        );

        let errors = parse_err("[trunk]\nudp = [70000]\n");
        assert!(errors[0].starts_with("policy.toml:2:"), "{errors:?}");

        let errors = parse_err("[trunk]\nudp = [0]\n");
        assert_eq!(errors, ["policy.toml:2: udp port 0 is not a port"]);

        let errors = parse_err("[[allow]]\ncidrs = \"198.51.100.0/24\"\n");
        assert!(errors[0].starts_with("policy.toml:2:"), "{errors:?}");

        let errors = parse_err("allow = [\n");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn the_same_prefix_allowed_and_denied_is_a_conflict() {
        let errors =
            parse_err("[[allow]]\ncidrs = [\"192.0.2.7\"]\n[[deny]]\ncidrs = [\"192.0.2.7/32\"]\n");
        assert_eq!(
            errors,
            [
                "policy.toml:4: 192.0.2.7/32 is denied here and allowed at policy.toml:2; remove one of them"
            ]
        );
        // A host denied inside an allowed network is a normal exception, not a conflict.
        parse_ok("[[allow]]\ncidrs = [\"192.0.2.0/24\"]\n[[deny]]\ncidrs = [\"192.0.2.7\"]\n");
    }

    #[test]
    fn list_files_are_read_relative_to_the_policy_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("carrier.txt");
        let mut file = fs::File::create(&list).unwrap();
        writeln!(
            file,
            "# carrier A signalling ranges\n198.51.100.0/24\n\n  2001:db8:100::/48  # v6\n192.0.2.1"
        )
        .unwrap();
        let policy_path = dir.path().join("policy.toml");
        fs::write(
            &policy_path,
            "[[allow]]\nname = \"carrier-a\"\nfiles = [\"carrier.txt\"]\n",
        )
        .unwrap();
        let policy = load(&policy_path).unwrap();
        let nets: Vec<String> = policy.allow.iter().map(|r| r.net.to_string()).collect();
        assert_eq!(
            nets,
            ["198.51.100.0/24", "2001:db8:100::/48", "192.0.2.1/32"]
        );
        assert_eq!(
            policy.allow[1].at,
            Location {
                file: list.clone(),
                line: 4
            }
        );

        // The digest covers list files: editing one changes it.
        let before = policy.source.unwrap().digest;
        fs::write(&list, "198.51.100.0/24\n").unwrap();
        assert_ne!(load(&policy_path).unwrap().source.unwrap().digest, before);
    }

    #[test]
    fn list_file_errors_point_into_the_list_file_and_missing_files_at_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("bad.txt"),
            "198.51.100.0/24\nnot-an-address\n",
        )
        .unwrap();
        let policy_path = dir.path().join("policy.toml");
        fs::write(
            &policy_path,
            "[[deny]]\nfiles = [\"bad.txt\",\n  \"missing.txt\"]\n",
        )
        .unwrap();
        let errors: Vec<String> = load(&policy_path)
            .unwrap_err()
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].ends_with("bad.txt:2: 'not-an-address' is not an IPv4/IPv6 address or CIDR"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("policy.toml:3: cannot read list file"),
            "{errors:?}"
        );
        assert!(errors[1].contains("missing.txt"), "{errors:?}");
    }

    #[test]
    fn unreadable_policy_file_is_an_error() {
        let error = load(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("/nonexistent/policy.toml: cannot read policy file")
        );
    }

    #[test]
    fn many_problems_are_capped_and_counted() {
        let cidrs: Vec<String> = (0..60).map(|i| format!("\"bad{i}\"")).collect();
        let text = format!("[[allow]]\ncidrs = [{}]\n", cidrs.join(", "));
        let error = parse(&text, Path::new("p.toml")).unwrap_err();
        assert_eq!(error.diagnostics.len(), MAX_DIAGNOSTICS);
        assert_eq!(error.omitted, 10);
        assert!(error.to_string().ends_with("... and 10 more"));
    }

    #[test]
    fn embedded_example_is_valid() {
        let policy = parse(EXAMPLE_POLICY, Path::new("example.toml")).unwrap();
        assert_eq!(policy.mode, Some(Mode::Enforce));
        assert!(policy.access.is_some());
        assert_eq!(policy.allow[0].class.as_deref(), Some("carrier"));
        assert!(!policy.allow.is_empty());
        assert!(!policy.deny.is_empty());

        let sip = &policy.sip;
        let phones = sip.method_budgets["phones"];
        assert_eq!(
            phones.invite,
            Some(RequestBudget {
                count: 2,
                per: Duration::from_secs(1),
                burst: 6
            })
        );
        assert!(phones.register.is_some() && phones.options.is_some() && phones.other.is_none());
        let scanners = sip.scanners.as_ref().unwrap();
        assert!(scanners.ban && scanners.trunk && scanners.access);
        assert_eq!(scanners.signatures.len(), BUILTIN_SIGNATURES.len());
        assert_eq!(sip.trunk, None);
        let access = sip.access.as_ref().unwrap();
        assert_eq!(access.dial_plan.country_code, "44");
        assert_eq!(
            access.default,
            DestinationAction::Budget("international".into())
        );
        assert_eq!(access.unparseable, DestinationAction::Deny);
        let names: Vec<&str> = access.rules.iter().map(|rule| rule.name.as_str()).collect();
        assert_eq!(names, ["uk", "uk-premium", "satellite"]);
    }

    /// Pins the order in which sections report problems: the operator reads them top to bottom
    /// and tests of tools that wrap sipguard may compare the whole list.
    #[test]
    fn every_section_reports_its_problems_in_a_fixed_order() {
        let text = r#"ipv6_prefix = 200
[trunk]
udp = [0, 5060]
tcp = [0]
[access]
udp = [0, 5060]
tcp = [0]
class = "ghosts"
new_sources = { rate = 0 }
[bans]
window = 0
ttl = "soon"
[events]
per_source = { rate = 0 }
total = { rate = 1, burst = 0 }
[classes]
"b c" = { rate = 0 }
a = { rate = 1, burst = 0 }
[[allow]]
class = "nope"
cidrs = ["10.0.0.1/8", "192.0.2.1"]
files = ["no-such-dir/missing.txt"]
[[deny]]
class = "a"
cidrs = ["192.0.2.1", "bad"]
"#;
        let rate_zero =
            "rate must be at least 1 packet per second (leave the class out for no budget)";
        let expected = [
            "policy.toml:18: class a: burst must be at least 1 packet".to_string(),
            format!(
                "policy.toml:17: class name 'b c': use up to {} letters, digits, '-' or '_'",
                CLASS_NAME_LEN - 1
            ),
            format!("policy.toml:17: class b c: {rate_zero}"),
            "policy.toml:3: udp port 0 is not a port".to_string(),
            "policy.toml:4: tcp port 0 is not a port".to_string(),
            "policy.toml:6: udp port 0 is not a port".to_string(),
            "policy.toml:7: tcp port 0 is not a port".to_string(),
            "policy.toml:6: udp port 5060 is in both the trunk and the access zone".to_string(),
            "policy.toml:8: no class named 'ghosts' in [classes]".to_string(),
            format!("policy.toml:9: new_sources: {rate_zero}"),
            "policy.toml:1: ipv6_prefix must be between 1 and 128".to_string(),
            "policy.toml:11: bans.window must be longer than 0".to_string(),
            "policy.toml:12: bans.ttl: 'soon' is not a duration (e.g. 30s, 15m, 2h, 1d)"
                .to_string(),
            format!("policy.toml:14: events.per_source: {rate_zero}"),
            "policy.toml:15: events.total: burst must be at least 1 packet".to_string(),
            "policy.toml:20: no class named 'nope' in [classes]".to_string(),
            "policy.toml:21: '10.0.0.1/8' has host bits set (the network is 10.0.0.0/8); \
             write the network or a single address"
                .to_string(),
            "policy.toml:22: cannot read list file no-such-dir/missing.txt: \
             No such file or directory (os error 2)"
                .to_string(),
            "policy.toml:24: a deny entry has no budget class".to_string(),
            "policy.toml:25: 'bad' is not an IPv4/IPv6 address or CIDR".to_string(),
            "policy.toml:25: 192.0.2.1/32 is denied here and allowed at policy.toml:21; \
             remove one of them"
                .to_string(),
        ];
        assert_eq!(parse_err(text), expected);
    }

    #[test]
    fn too_many_classes_are_refused_counting_the_built_in_access_class() {
        let classes: String = (0..MAX_CLASSES)
            .map(|i| format!("c{i} = {{ rate = 1 }}\n"))
            .collect();
        parse_ok(&format!("[classes]\n{classes}"));
        let errors = parse_err(&format!("[access]\nudp = [5070]\n[classes]\n{classes}"));
        assert_eq!(
            errors,
            [format!(
                "policy.toml: {} classes; the filter holds at most {MAX_CLASSES}",
                MAX_CLASSES + 1
            )]
        );
    }

    #[test]
    fn lists_beyond_the_filter_capacity_are_refused_per_family_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let entries = MAX_PREFIXES as usize + 1;
        fs::write(dir.path().join("v4.txt"), "192.0.2.1\n".repeat(entries)).unwrap();
        fs::write(dir.path().join("v6.txt"), "2001:db8::1\n".repeat(entries)).unwrap();
        let policy_path = dir.path().join("policy.toml");
        fs::write(
            &policy_path,
            "[[allow]]\nfiles = [\"v4.txt\"]\n[[deny]]\nfiles = [\"v6.txt\"]\n",
        )
        .unwrap();
        let errors: Vec<String> = load(&policy_path)
            .unwrap_err()
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                format!(
                    "{}: {entries} IPv4 allow entries; the filter holds at most {MAX_PREFIXES}",
                    policy_path.display()
                ),
                format!(
                    "{}: {entries} IPv6 deny entries; the filter holds at most {MAX_PREFIXES}",
                    policy_path.display()
                ),
            ]
        );
    }

    /// `sipguard status` shows the digest, so the same files must keep giving the same value.
    #[test]
    fn the_digest_is_fnv1a_over_the_policy_then_each_list_file_in_order() {
        fn fnv1a(bytes: &[u8]) -> u64 {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        }
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "192.0.2.1\n").unwrap();
        fs::write(dir.path().join("b.txt"), "198.51.100.0/24\n").unwrap();
        let policy_text = "[[allow]]\nfiles = [\"b.txt\"]\n[[deny]]\nfiles = [\"a.txt\"]\n";
        let policy_path = dir.path().join("policy.toml");
        fs::write(&policy_path, policy_text).unwrap();
        let source = load(&policy_path).unwrap().source.unwrap();
        let expected = fnv1a(format!("{policy_text}198.51.100.0/24\n192.0.2.1\n").as_bytes());
        assert_eq!(source.digest, expected);
        assert_eq!(source.path, policy_path);
    }

    #[test]
    fn urls_and_hostnames_of_allow_entries_are_read_with_their_settings() {
        let policy = parse_ok(
            r#"
[lists]
refresh = "10m"
max_shrink = 0.25
timeout = 5
dns_server = "198.18.3.53"

[[allow]]
name = "carrier-b"
urls = ["http://198.18.3.80:8080/b.txt",
        "https://lists.carrier-b.example/ips.json"]
json_path = "prefixes[].ip_prefix, ipv6_prefixes[].ipv6_prefix"
hosts = ["sip.carrier-b.example", "_sip._udp.carrier-b.example"]
refresh = "1m"

[[allow]]
name = "carrier-c"
hosts = ["edge.carrier-c.example."]
"#,
        );
        let settings = &policy.remote_settings;
        assert_eq!(settings.refresh, Duration::from_secs(600));
        assert_eq!(settings.max_shrink, 0.25);
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.dns_server, Some("198.18.3.53:53".parse().unwrap()));
        let summary: Vec<(String, &str, &str, u64, usize)> = policy
            .remote
            .iter()
            .map(|s| {
                (
                    s.group.clone(),
                    s.kind_name(),
                    s.source(),
                    s.refresh.as_secs(),
                    s.at.line,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "carrier-b".into(),
                    "url",
                    "http://198.18.3.80:8080/b.txt",
                    60,
                    10
                ),
                (
                    "carrier-b".into(),
                    "url",
                    "https://lists.carrier-b.example/ips.json",
                    60,
                    11
                ),
                ("carrier-b".into(), "dns", "sip.carrier-b.example", 60, 13),
                (
                    "carrier-b".into(),
                    "srv",
                    "_sip._udp.carrier-b.example",
                    60,
                    13
                ),
                (
                    "carrier-c".into(),
                    "dns",
                    "edge.carrier-c.example.",
                    600,
                    18
                ),
            ]
        );
        assert!(policy.remote.iter().all(|s| s.max_shrink == 0.25));
        let crate::policy::RemoteKind::Url { json_path, .. } = &policy.remote[0].kind else {
            panic!("a URL");
        };
        assert!(json_path.is_some());
        assert!(policy.allow.is_empty(), "nothing fetched while parsing");
        // Without [lists]: 5 minutes, half, 10 s, /etc/resolv.conf.
        let policy = parse_ok("[[allow]]\nhosts = [\"sip.b.example\"]\n");
        assert_eq!(policy.remote[0].refresh, Duration::from_secs(300));
        assert_eq!(policy.remote[0].max_shrink, 0.5);
        assert_eq!(policy.remote[0].group, "allow-1");
        assert_eq!(policy.remote_settings.dns_server, None);
    }

    #[test]
    fn bad_urls_hostnames_and_list_settings_are_reported_with_their_lines() {
        let problems = parse_err(
            r#"[lists]
refresh = "0s"
max_shrink = 1.5
dns_server = "dns.example"
timeout = "soon"

[[allow]]
urls = ["ftp://198.18.3.80/b.txt", "http://198.18.3.80/ok.txt"]
hosts = ["198.18.5.2", "bad_name.example"]
json_path = "prefixes[0].ip"
max_shrink = -1

[[allow]]
json_path = "a"
refresh = "1m"

[[deny]]
cidrs = ["192.0.2.0/24"]
hosts = ["scanners.example"]
"#,
        );
        let expected = [
            "policy.toml:2: refresh must be at least 1s",
            "policy.toml:3: max_shrink is a share between 0",
            "policy.toml:5: 'soon' is not a duration",
            "policy.toml:4: dns_server 'dns.example' is not an address",
            "policy.toml:11: max_shrink is a share",
            "policy.toml:10: json_path 'prefixes[0].ip'",
            "policy.toml:8: 'ftp://198.18.3.80/b.txt' is not an http:// or https:// URL",
            "policy.toml:9: '198.18.5.2' is an address, not a hostname",
            "policy.toml:9: 'bad_name.example' is not a hostname",
            "policy.toml:14: json_path without urls",
            "policy.toml:15: refresh without urls or hosts",
            "policy.toml:19: urls, hosts and their settings are for allow entries",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, expected) in problems.iter().zip(expected) {
            assert!(problem.starts_with(expected), "{problem} vs {expected}");
        }
        // Unknown keys are still refused by the document's shape.
        let problems = parse_err("[[allow]]\nurl = \"http://x.example/\"\n");
        assert!(problems[0].starts_with("policy.toml:2:"), "{problems:?}");
    }
}
