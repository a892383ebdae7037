//! `sipguard check --lint`: a valid policy that probably does not do what its author meant.
//!
//! Each warning has a code (the README lists them with examples) and, where the policy can say,
//! the file and line of the entry it is about:
//!
//! - `shadowed-allow`: an allow entry inside a deny entry: the denylist is checked first, so the
//!   allow entry admits nobody;
//! - `deny-inside-allow`: a deny entry inside an allow entry: its sources are dropped (deny wins),
//!   which is a carve-out when meant;
//! - `redundant-allow`: an allow entry inside the nearest wider allow entry of the same class (or
//!   the same prefix twice): it changes nothing;
//! - `duplicate-allow`: the same prefix allowed twice with different classes: the later wins;
//! - `broad-allow`: an allow prefix wider than /16 (IPv4) or /32 (IPv6);
//! - `documentation-range`: in a policy with `mode = "enforce"`, a list entry inside a
//!   documentation range (RFC 5737, RFC 3849) or the benchmark range (RFC 2544), which no real
//!   peer uses;
//! - `sip-port-in-no-zone`: UDP 5060, TCP 5060 or TCP 5061 in no zone: such packets pass unjudged;
//! - `zone-without-ports`: an `[access]` section with no port;
//! - `register-burst`: a class the access zone budgets phones by (the access class, the verified
//!   class) lets fewer than 2 packets or REGISTERs through back to back: a digest registration
//!   sends two (the REGISTER and, after the 401, the one with credentials);
//! - `new-sources-storm`: the access zone's `new_sources` budget admits `--phones` phones that
//!   re-register at once (after an outage every one is a new source) only after more than
//!   [`STORM_WINDOW`], the time one SIP transaction over UDP retransmits (64 x T1, RFC 3261 timer
//!   F): the phones whose REGISTER is dropped for that long give up and back off.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sipguard_common::abi::Mode;
use toml::Spanned;

use super::{Budget, DEFAULT_ACCESS_CLASS, Location, Policy, Rule};

/// How long one phone keeps retransmitting an unanswered REGISTER over UDP (64 x T1).
pub const STORM_WINDOW: Duration = Duration::from_secs(32);
/// Phones assumed to re-register at once after an outage when `--phones` is not given.
pub const DEFAULT_STORM_PHONES: u32 = 1000;
/// Allow prefixes wider than these are reported (`broad-allow`).
pub const BROADEST_ALLOW_V4: u8 = 16;
pub const BROADEST_ALLOW_V6: u8 = 32;
/// Back-to-back REGISTERs (and packets) a phone needs to register with digest authentication.
pub const REGISTER_BURST: u32 = 2;

/// Ranges no real peer uses: `(range, what it is)`.
const RESERVED_RANGES: [(&str, &str); 5] = [
    ("192.0.2.0/24", "documentation range (RFC 5737)"),
    ("198.51.100.0/24", "documentation range (RFC 5737)"),
    ("203.0.113.0/24", "documentation range (RFC 5737)"),
    ("198.18.0.0/15", "benchmark range (RFC 2544)"),
    ("2001:db8::/32", "documentation range (RFC 3849)"),
];

/// The ports SIP runs on by convention: `(transport, port)`.
const SIP_PORTS: [(&str, u16); 3] = [("UDP", 5060), ("TCP", 5060), ("TCP", 5061)];

/// What the lint assumes about the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LintOptions {
    /// Phones that re-register at once after an outage (`new-sources-storm`).
    pub phones: u32,
}

impl Default for LintOptions {
    fn default() -> Self {
        LintOptions {
            phones: DEFAULT_STORM_PHONES,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Stable name of the lint (`redundant-allow`).
    pub code: &'static str,
    pub file: PathBuf,
    /// 1-based; 0 when no line can be named.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line != 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": warning[{}]: {}", self.code, self.message)
    }
}

/// Lints a policy that parsed. `text` is the policy file's text (for the lines of sections and
/// classes; list entries carry their own), `path` names it.
pub fn lint(policy: &Policy, text: &str, path: &Path, options: &LintOptions) -> Vec<Warning> {
    let spans = Spans::read(text);
    let mut lints = Lints {
        warnings: Vec::new(),
        path,
        text,
    };
    lints.lists(policy);
    lints.broad(policy);
    if policy.mode == Some(Mode::Enforce) {
        lints.reserved(policy);
    }
    lints.ports(policy, &spans);
    lints.budgets(policy, &spans, options);
    lints.warnings
}

struct Lints<'a> {
    warnings: Vec<Warning>,
    path: &'a Path,
    text: &'a str,
}

impl Lints<'_> {
    fn at(&mut self, code: &'static str, at: &Location, message: String) {
        self.warnings.push(Warning {
            code,
            file: at.file.clone(),
            line: at.line,
            message,
        });
    }

    fn in_policy(
        &mut self,
        code: &'static str,
        span: Option<std::ops::Range<usize>>,
        message: String,
    ) {
        let line = span.map_or(0, |span| line_of(self.text, span.start));
        self.warnings.push(Warning {
            code,
            file: self.path.to_path_buf(),
            line,
            message,
        });
    }

    /// Allow and deny entries against each other: for each entry, the nearest wider (or equal)
    /// entry of each list, found by truncating its prefix to every shorter length.
    fn lists(&mut self, policy: &Policy) {
        let allow = by_net(&policy.allow);
        let deny = by_net(&policy.deny);
        for (index, rule) in policy.allow.iter().enumerate() {
            if let Some(wider) = nearest(&deny, rule.net, false) {
                self.at(
                    "shadowed-allow",
                    &rule.at,
                    format!(
                        "allow {} ({}) is inside deny {} ({}, {}): the denylist is checked \
                         first, so this entry admits nobody",
                        rule.net, rule.group, wider.net, wider.group, wider.at
                    ),
                );
                continue;
            }
            // The same prefix allowed earlier: the later entry is the one the kernel keeps.
            let earlier = policy.allow[..index].iter().rfind(|r| r.net == rule.net);
            if let Some(earlier) = earlier {
                if earlier.class == rule.class {
                    self.at(
                        "redundant-allow",
                        &rule.at,
                        format!(
                            "allow {} ({}) is listed already at {} with the same class",
                            rule.net, rule.group, earlier.at
                        ),
                    );
                } else {
                    self.at(
                        "duplicate-allow",
                        &rule.at,
                        format!(
                            "allow {} ({}, class {}) is listed at {} with class {}: this later \
                             entry wins",
                            rule.net,
                            rule.group,
                            class_text(&rule.class),
                            earlier.at,
                            class_text(&earlier.class)
                        ),
                    );
                }
                continue;
            }
            if let Some(wider) = nearest(&allow, rule.net, true)
                && wider.class == rule.class
            {
                self.at(
                    "redundant-allow",
                    &rule.at,
                    format!(
                        "allow {} ({}) is inside allow {} ({}, {}) with the same class {}: it \
                         changes nothing",
                        rule.net,
                        rule.group,
                        wider.net,
                        wider.group,
                        wider.at,
                        class_text(&rule.class)
                    ),
                );
            }
        }
        for rule in &policy.deny {
            if let Some(wider) = nearest(&allow, rule.net, true) {
                self.at(
                    "deny-inside-allow",
                    &rule.at,
                    format!(
                        "deny {} ({}) is inside allow {} ({}, {}): the deny entry wins, its \
                         sources are dropped",
                        rule.net, rule.group, wider.net, wider.group, wider.at
                    ),
                );
            }
        }
    }

    fn broad(&mut self, policy: &Policy) {
        for rule in &policy.allow {
            let broadest = match rule.net {
                IpNet::V4(_) => BROADEST_ALLOW_V4,
                IpNet::V6(_) => BROADEST_ALLOW_V6,
            };
            if rule.net.prefix_len() < broadest {
                self.at(
                    "broad-allow",
                    &rule.at,
                    format!(
                        "allow {} ({}) is wider than /{broadest}: {} addresses no carrier \
                         publishes as signalling sources",
                        rule.net,
                        rule.group,
                        addresses(rule.net)
                    ),
                );
            }
        }
    }

    fn reserved(&mut self, policy: &Policy) {
        let ranges: Vec<(IpNet, &str)> = RESERVED_RANGES
            .iter()
            .map(|(net, what)| (net.parse().expect("a valid range"), *what))
            .collect();
        for (list, rules) in [("allow", &policy.allow), ("deny", &policy.deny)] {
            for rule in rules {
                if let Some((range, what)) =
                    ranges.iter().find(|(range, _)| range.contains(&rule.net))
                {
                    self.at(
                        "documentation-range",
                        &rule.at,
                        format!(
                            "{list} {} ({}) is in the {what} {range}, which no real peer uses, \
                             and the policy enforces: an example left in?",
                            rule.net, rule.group
                        ),
                    );
                }
            }
        }
    }

    fn ports(&mut self, policy: &Policy, spans: &Spans) {
        let access = policy.access.as_ref().map(|a| &a.ports);
        for (transport, port) in SIP_PORTS {
            let in_zone = |ports: &super::Ports| match transport {
                "UDP" => ports.udp.contains(&port),
                _ => ports.tcp.contains(&port),
            };
            if !in_zone(&policy.trunk) && !access.is_some_and(in_zone) {
                let span = spans.trunk.clone().or_else(|| spans.access.clone());
                self.in_policy(
                    "sip-port-in-no-zone",
                    span,
                    format!(
                        "{transport} {port} (SIP) is in no zone: packets to it pass unjudged \
                         (add it to [trunk] or [access], or ignore this if the SBC does not \
                         listen there)"
                    ),
                );
            }
        }
        if access.is_some_and(super::Ports::is_empty) {
            self.in_policy(
                "zone-without-ports",
                spans.access.clone(),
                "[access] has no port: it admits nobody and budgets nothing".to_string(),
            );
        }
    }

    fn budgets(&mut self, policy: &Policy, spans: &Spans, options: &LintOptions) {
        let Some(access) = &policy.access else {
            return;
        };
        if access.ports.is_empty() {
            return;
        }
        let mut classes = vec![("access", access.class.clone())];
        if policy.feedback.verified {
            let verified = policy
                .feedback
                .verified_class
                .clone()
                .unwrap_or_else(|| access.class.clone());
            if verified != access.class {
                classes.push(("verified", verified));
            }
        }
        for (role, name) in classes {
            let budget = policy
                .classes
                .get(&name)
                .copied()
                .or_else(|| (name == DEFAULT_ACCESS_CLASS.0).then_some(DEFAULT_ACCESS_CLASS.1));
            if let Some(budget) = budget
                && budget.burst < REGISTER_BURST
            {
                self.in_policy(
                    "register-burst",
                    spans.class(&name),
                    format!(
                        "class {name} (the {role} class) has burst {}: a digest registration \
                         sends {REGISTER_BURST} REGISTERs back to back (the second after the \
                         401), so every phone's registration waits for its refill",
                        budget.burst
                    ),
                );
            }
            let register = policy
                .sip
                .method_budgets
                .get(&name)
                .and_then(|methods| methods.register);
            if let Some(register) = register
                && register.burst < REGISTER_BURST
            {
                self.in_policy(
                    "register-burst",
                    spans.register(&name),
                    format!(
                        "class {name} (the {role} class) has a REGISTER burst of {}: a digest \
                         registration sends {REGISTER_BURST} REGISTERs back to back (the second \
                         after the 401), so every phone's registration waits for its refill",
                        register.burst
                    ),
                );
            }
        }
        let Budget { rate, burst } = access.new_sources;
        let phones = u64::from(options.phones);
        let waiting = phones.saturating_sub(u64::from(burst));
        // Whole seconds the last phone waits: ceil(waiting / rate).
        let seconds = if rate == 0 {
            u64::MAX
        } else {
            waiting.div_ceil(u64::from(rate))
        };
        if waiting > 0 && seconds > STORM_WINDOW.as_secs() {
            let needed = waiting.div_ceil(STORM_WINDOW.as_secs());
            self.in_policy(
                "new-sources-storm",
                spans.new_sources.clone().or_else(|| spans.access.clone()),
                format!(
                    "new_sources (rate {rate}/s, burst {burst}) admits {phones} phones \
                     re-registering at once after an outage in {}, more than the {} s a phone \
                     retransmits one REGISTER: raise the rate to at least {needed}/s or the \
                     burst to {} (or give --phones the real number)",
                    if rate == 0 {
                        "never".to_string()
                    } else {
                        format!("{seconds} s")
                    },
                    STORM_WINDOW.as_secs(),
                    phones.saturating_sub(u64::from(rate) * STORM_WINDOW.as_secs())
                ),
            );
        }
    }
}

fn class_text(class: &Option<String>) -> &str {
    class.as_deref().unwrap_or("(none)")
}

fn addresses(net: IpNet) -> String {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if host_bits < 64 {
        format!("{}", 1u64 << host_bits)
    } else {
        format!("2^{host_bits}")
    }
}

/// The first entry of each prefix (the later ones are reported as duplicates by the caller).
fn by_net(rules: &[Rule]) -> HashMap<IpNet, &Rule> {
    let mut map = HashMap::new();
    for rule in rules {
        map.entry(rule.net).or_insert(rule);
    }
    map
}

/// The longest entry of `list` that contains `net` (strictly wider when `strict`).
fn nearest<'a>(list: &HashMap<IpNet, &'a Rule>, net: IpNet, strict: bool) -> Option<&'a Rule> {
    let longest = if strict {
        net.prefix_len().checked_sub(1)?
    } else {
        net.prefix_len()
    };
    (0..=longest).rev().find_map(|len| {
        let wider = match net {
            IpNet::V4(v4) => IpNet::V4(Ipv4Net::new(v4.addr(), len).ok()?.trunc()),
            IpNet::V6(v6) => IpNet::V6(Ipv6Net::new(v6.addr(), len).ok()?.trunc()),
        };
        list.get(&wider).copied()
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count() + 1)
}

/// Where the sections the lints talk about are in the policy file (a second, lenient read of
/// it: unknown keys are ignored, and a policy this cannot read gives no lines).
#[derive(Debug, Default, serde::Deserialize)]
struct Spans {
    #[serde(default, deserialize_with = "span_of")]
    trunk: Option<std::ops::Range<usize>>,
    #[serde(default, rename = "access")]
    access_doc: Option<Spanned<AccessSpans>>,
    #[serde(skip)]
    access: Option<std::ops::Range<usize>>,
    #[serde(skip)]
    new_sources: Option<std::ops::Range<usize>>,
    #[serde(default)]
    classes: BTreeMap<String, Spanned<ClassSpans>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AccessSpans {
    #[serde(default, deserialize_with = "span_of")]
    new_sources: Option<std::ops::Range<usize>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ClassSpans {
    #[serde(default)]
    methods: Option<MethodSpans>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct MethodSpans {
    #[serde(default, deserialize_with = "span_of")]
    register: Option<std::ops::Range<usize>>,
}

fn span_of<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::ops::Range<usize>>, D::Error> {
    let value: Spanned<toml::Value> = serde::Deserialize::deserialize(deserializer)?;
    Ok(Some(value.span()))
}

impl Spans {
    fn read(text: &str) -> Spans {
        let mut spans: Spans = toml::from_str(text).unwrap_or_default();
        if let Some(access) = &spans.access_doc {
            spans.access = Some(access.span());
            spans.new_sources = access.get_ref().new_sources.clone();
        }
        spans
    }

    fn class(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.classes.get(name).map(Spanned::span)
    }

    fn register(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let class = self.classes.get(name)?;
        class
            .get_ref()
            .methods
            .as_ref()
            .and_then(|methods| methods.register.clone())
            .or_else(|| Some(class.span()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes and lines of the warnings for a policy text (which must be valid).
    fn lint_text(text: &str, options: LintOptions) -> Vec<Warning> {
        let path = Path::new("p.toml");
        let policy = Policy::parse(text, path).unwrap_or_else(|e| panic!("{e}"));
        lint(&policy, text, path, &options)
    }

    fn codes(text: &str) -> Vec<(&'static str, usize)> {
        lint_text(text, LintOptions::default())
            .iter()
            .map(|w| (w.code, w.line))
            .collect()
    }

    /// Trunk and access on the usual ports, so that only the lint under test speaks.
    const ZONES: &str = "[trunk]\nudp = [5060]\ntcp = [5060, 5061]\n";

    #[test]
    fn a_clean_policy_has_no_warnings() {
        let text = format!(
            "mode = \"enforce\"\n{ZONES}[access]\nudp = [5070]\nclass = \"phones\"\n\
             [classes]\nphones = {{ rate = 10, burst = 30 }}\ncarrier = {{ rate = 100 }}\n\
             [[allow]]\nclass = \"carrier\"\ncidrs = [\"10.1.0.0/24\", \"10.2.0.0/24\"]\n\
             [[deny]]\ncidrs = [\"10.3.0.0/16\"]\n"
        );
        assert_eq!(codes(&text), []);
    }

    #[test]
    fn allow_entries_inside_allow_entries_of_the_same_class_are_redundant() {
        let text = format!(
            "{ZONES}[classes]\na = {{ rate = 10 }}\nb = {{ rate = 20 }}\n\
             [[allow]]\nname = \"wide\"\nclass = \"a\"\ncidrs = [\"10.1.0.0/16\"]\n\
             [[allow]]\nname = \"inner\"\nclass = \"a\"\ncidrs = [\n  \"10.1.2.0/24\",\n  \"10.1.3.4\",\n]\n\
             [[allow]]\nname = \"carve\"\nclass = \"b\"\ncidrs = [\"10.1.4.0/24\"]\n\
             [[allow]]\nname = \"back\"\nclass = \"a\"\ncidrs = [\"10.1.4.8/29\"]\n"
        );
        let warnings = lint_text(&text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| (w.code, w.line)).collect();
        // 10.1.4.8/29 sits in the class-b carve-out, which decides for it: not redundant.
        assert_eq!(
            found,
            [("redundant-allow", 15), ("redundant-allow", 16)],
            "{warnings:#?}"
        );
        assert_eq!(
            warnings[0].to_string(),
            "p.toml:15: warning[redundant-allow]: allow 10.1.2.0/24 (inner) is inside allow \
             10.1.0.0/16 (wide, p.toml:10) with the same class a: it changes nothing"
        );
    }

    #[test]
    fn the_same_prefix_twice_is_redundant_or_a_class_conflict() {
        let text = format!(
            "{ZONES}[classes]\na = {{ rate = 10 }}\nb = {{ rate = 20 }}\n\
             [[allow]]\nclass = \"a\"\ncidrs = [\"10.1.0.0/24\", \"10.2.0.0/24\"]\n\
             [[allow]]\nclass = \"a\"\ncidrs = [\"10.1.0.0/24\"]\n\
             [[allow]]\nclass = \"b\"\ncidrs = [\"10.2.0.0/24\"]\n"
        );
        let warnings = lint_text(&text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| (w.code, w.line)).collect();
        assert_eq!(
            found,
            [("redundant-allow", 12), ("duplicate-allow", 15)],
            "{warnings:#?}"
        );
        assert!(
            warnings[1].message.contains("this later entry wins"),
            "{warnings:#?}"
        );
    }

    #[test]
    fn allow_and_deny_nested_say_that_deny_wins() {
        let text = format!(
            "{ZONES}[[allow]]\nname = \"carrier\"\ncidrs = [\"10.1.0.0/16\", \"10.9.1.0/24\"]\n\
             [[deny]]\nname = \"bad\"\ncidrs = [\"10.1.66.0/24\", \"10.9.0.0/16\"]\n"
        );
        let warnings = lint_text(&text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| (w.code, w.line)).collect();
        assert_eq!(
            found,
            [("shadowed-allow", 6), ("deny-inside-allow", 9)],
            "{warnings:#?}"
        );
        assert!(warnings[0].message.contains("admits nobody"));
        assert!(
            warnings[0].message.contains("10.9.0.0/16 (bad, p.toml:9)"),
            "{warnings:#?}"
        );
        assert!(warnings[1].message.contains("the deny entry wins"));
    }

    #[test]
    fn allow_prefixes_wider_than_16_or_32_are_broad() {
        let text = format!(
            "{ZONES}[[allow]]\ncidrs = [\"10.0.0.0/8\", \"172.16.0.0/16\", \"2a00::/16\", \
             \"2a01:1::/32\"]\n"
        );
        let warnings = lint_text(&text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| w.code).collect();
        assert_eq!(found, ["broad-allow", "broad-allow"], "{warnings:#?}");
        assert!(warnings[0].message.contains("10.0.0.0/8"));
        assert!(warnings[0].message.contains("16777216 addresses"));
        assert!(warnings[1].message.contains("2a00::/16"));
        assert!(warnings[1].message.contains("2^112 addresses"));
    }

    #[test]
    fn documentation_and_benchmark_ranges_only_matter_when_enforcing() {
        let lists = "[[allow]]\ncidrs = [\"192.0.2.0/25\", \"198.51.100.7\", \"203.0.113.0/24\", \
                     \"198.19.0.0/16\", \"2001:db8:1::/48\", \"192.0.3.0/24\"]\n\
                     [[deny]]\ncidrs = [\"2001:db8:66::/48\"]\n";
        let enforcing = format!("mode = \"enforce\"\n{ZONES}{lists}");
        let warnings = lint_text(&enforcing, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| w.code).collect();
        assert_eq!(found, ["documentation-range"; 6], "{warnings:#?}");
        assert!(
            warnings[3]
                .message
                .contains("benchmark range (RFC 2544) 198.18.0.0/15")
        );
        assert!(warnings[4].message.contains("RFC 3849"));
        assert!(warnings[5].message.starts_with("deny 2001:db8:66::/48"));
        for mode in ["mode = \"monitor\"\n", ""] {
            assert_eq!(codes(&format!("{mode}{ZONES}{lists}")), []);
        }
    }

    #[test]
    fn sip_ports_in_no_zone_and_an_access_zone_without_ports() {
        let text = "[trunk]\nudp = [5060]\n[access]\nudp = [5070]\n";
        let warnings = lint_text(text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| (w.code, w.line)).collect();
        assert_eq!(
            found,
            [("sip-port-in-no-zone", 1), ("sip-port-in-no-zone", 1)],
            "{warnings:#?}"
        );
        assert!(
            warnings[0]
                .message
                .starts_with("TCP 5060 (SIP) is in no zone")
        );
        assert!(warnings[1].message.starts_with("TCP 5061"));
        // In the access zone counts too.
        assert_eq!(
            codes("[trunk]\nudp = [5060]\n[access]\ntcp = [5060, 5061]\n"),
            []
        );
        // The default ports, with no zone at all.
        assert_eq!(codes("mode = \"monitor\"\n"), []);
        let empty =
            format!("{ZONES}[access]\nclass = \"phones\"\n[classes]\nphones = {{ rate = 10 }}\n");
        assert_eq!(codes(&empty), [("zone-without-ports", 4)]);
    }

    #[test]
    fn registration_needs_a_burst_of_two_in_the_classes_phones_get() {
        let text = format!(
            "{ZONES}[access]\nudp = [5070]\nclass = \"phones\"\n\
             [verified]\nclass = \"registered\"\n\
             [classes]\nphones = {{ rate = 5, burst = 1 }}\n\
             [classes.registered]\nrate = 100\n\
             [classes.registered.methods]\nregister = {{ rate = 1, burst = 1 }}\n"
        );
        let warnings = lint_text(&text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| (w.code, w.line)).collect();
        assert_eq!(
            found,
            [("register-burst", 10), ("register-burst", 14)],
            "{warnings:#?}"
        );
        assert!(
            warnings[0]
                .message
                .contains("class phones (the access class) has burst 1")
        );
        assert!(
            warnings[1]
                .message
                .contains("class registered (the verified class) has a REGISTER burst of 1")
        );
        // A class on an allowlist only is not a phone's.
        let carrier = format!(
            "{ZONES}[classes]\ncarrier = {{ rate = 1, burst = 1 }}\n[[allow]]\nclass = \"carrier\"\ncidrs = [\"10.0.0.0/24\"]\n"
        );
        assert_eq!(codes(&carrier), []);
    }

    #[test]
    fn new_sources_must_admit_a_registration_storm_within_one_transaction() {
        let text =
            format!("{ZONES}[access]\nudp = [5070]\nnew_sources = {{ rate = 20, burst = 100 }}\n");
        // 1000 phones: 900 wait for 20/s = 45 s > 32 s.
        let warnings = lint_text(&text, LintOptions::default());
        let found: Vec<_> = warnings.iter().map(|w| (w.code, w.line)).collect();
        assert_eq!(found, [("new-sources-storm", 6)], "{warnings:#?}");
        assert!(
            warnings[0]
                .message
                .contains("admits 1000 phones re-registering at once after an outage in 45 s"),
            "{warnings:#?}"
        );
        assert!(
            warnings[0]
                .message
                .contains("at least 29/s or the burst to 360")
        );
        // 740 phones: 640 / 20 = 32 s, just within.
        assert_eq!(lint_text(&text, LintOptions { phones: 740 }), []);
        assert_eq!(lint_text(&text, LintOptions { phones: 741 }).len(), 1);
        // The default budget (200/s, burst 1000) takes 7400 phones.
        let default = format!("{ZONES}[access]\nudp = [5070]\n");
        assert_eq!(lint_text(&default, LintOptions { phones: 7400 }), []);
        assert_eq!(lint_text(&default, LintOptions { phones: 7401 }).len(), 1);
    }

    #[test]
    fn the_example_policy_warns_only_about_its_lab_ranges() {
        let path = Path::new("example.toml");
        let policy = Policy::parse(super::super::EXAMPLE_POLICY, path).unwrap();
        let warnings = lint(
            &policy,
            super::super::EXAMPLE_POLICY,
            path,
            &LintOptions::default(),
        );
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(
            warnings
                .iter()
                .all(|w| w.code == "documentation-range" && w.line > 0),
            "{warnings:#?}"
        );
    }
}
