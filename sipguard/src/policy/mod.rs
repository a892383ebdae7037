//! The declarative policy: which ports are SIP, who may send to them, and how the filter acts.
//!
//! A policy is read from a TOML file that may reference plain list files ([`file`]), checked as a
//! whole (every problem is reported with file:line, and nothing is applied when one is found), then
//! compiled into the tables the XDP program reads ([`Tables`]).

mod file;
pub mod fleet;
pub mod lint;
pub mod remote;
pub mod sip;
pub mod sip_tables;
mod tables;

use std::{collections::BTreeMap, fmt, net::IpAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;
use sipguard_common::abi::{FragmentPolicy, Mode, SourceKey, Zone};

pub use self::{
    file::{Diagnostic, PolicyError, parse_duration},
    remote::{RemoteKind, RemoteSettings, RemoteSource},
    sip::SipRules,
    tables::{
        Prefix, Tables, class_limits, class_name, deny_flags, kernel_tick_ns, mark_prefilter,
        ports_in, prefilter, zeroed_policy,
    },
};

/// UDP ports of the trunk zone when a policy names no zone.
pub const DEFAULT_UDP_PORTS: [u16; 1] = [5060];
/// TCP ports of the trunk zone when a policy names no zone (5061: SIP over TLS).
pub const DEFAULT_TCP_PORTS: [u16; 2] = [5060, 5061];
/// Budget of each unknown source in the access zone when the policy names no class.
pub const DEFAULT_ACCESS_CLASS: (&str, Budget) = (
    "access-default",
    Budget {
        rate: 10,
        burst: 30,
    },
);
/// Budget for creating state for sources never seen before (access zone), all CPUs together.
pub const DEFAULT_NEW_SOURCES: Budget = Budget {
    rate: 200,
    burst: 1000,
};
/// Drop events one source may cause, by default.
pub const DEFAULT_EVENTS_PER_SOURCE: Budget = Budget { rate: 1, burst: 5 };
/// Drop events in all (all CPUs together), by default.
pub const DEFAULT_EVENTS_TOTAL: Budget = Budget {
    rate: 2000,
    burst: 4000,
};
/// IPv6 sources share budgets and bans per prefix of this length by default.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Most classes a policy may define (slot 0 means "no budget").
pub const MAX_CLASSES: usize = sipguard_common::abi::CLASS_SLOTS - 1;

/// The example policy shipped in the binary (used by the demo and shown by `sipguard example`).
pub const EXAMPLE_POLICY: &str = include_str!("example.toml");

/// Where a rule was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One allow or deny entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub net: IpNet,
    /// The `name` of the `[[allow]]`/`[[deny]]` group it came from.
    pub group: String,
    /// Budget class of each source it covers (allowlist only); `None`: no budget.
    pub class: Option<String>,
    pub at: Location,
}

/// Packets per second, and how many may come back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub rate: u32,
    pub burst: u32,
}

/// A zone's SIP ports per transport, and whether its admitted requests are counted by method.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ports {
    /// Sorted, unique.
    pub udp: Vec<u16>,
    pub tcp: Vec<u16>,
    pub sctp: Vec<u16>,
    /// The zone's admitted requests go through the SIP stage, which counts them by method
    /// (`sipguard_sip_requests_total`).
    pub count_methods: bool,
}

impl Ports {
    /// The zone as a policy table of one generation holds it.
    pub fn of(policy: &sipguard_common::abi::Policy, zone: Zone) -> Ports {
        Ports {
            udp: ports_in(&policy.udp_zone, zone),
            tcp: ports_in(&policy.tcp_zone, zone),
            sctp: ports_in(&policy.sctp_zone, zone),
            count_methods: sipguard_common::verdict::zone_inspects(&policy.header, zone),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.udp.is_empty() && self.tcp.is_empty() && self.sctp.is_empty()
    }

    /// `udp 5060 / tcp 5060-5061`, SCTP only when it has ports, `; methods counted` when so.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "udp {} / tcp {}",
            format_ports(&self.udp),
            format_ports(&self.tcp)
        );
        if !self.sctp.is_empty() {
            text.push_str(&format!(" / sctp {}", format_ports(&self.sctp)));
        }
        if self.count_methods {
            text.push_str("; requests counted by method");
        }
        text
    }
}

/// Compact port list: `5060, 5070-5079`.
pub fn format_ports(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "none".to_string();
    }
    let mut parts = Vec::new();
    let mut start = ports[0];
    let mut end = ports[0];
    for port in &ports[1..] {
        if *port == end + 1 {
            end = *port;
        } else {
            parts.push(port_range(start, end));
            start = *port;
            end = *port;
        }
    }
    parts.push(port_range(start, end));
    parts.join(", ")
}

fn port_range(start: u16, end: u16) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start}-{end}")
    }
}

/// The access zone: sources on no list are admitted, each within a budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub ports: Ports,
    /// Class of each unknown source.
    pub class: String,
    /// Budget for creating state for new sources, all CPUs together.
    pub new_sources: Budget,
    /// When sources neither allowlisted nor verified may send only what a registration needs.
    pub gate: AccessGate,
    /// What they may send then: bit `1 << method` ([`sipguard_common::abi::SipMethod`]).
    pub unverified_methods: u16,
}

/// `[access] unverified`: when the access zone admits from unverified sources (no 200 OK to a
/// REGISTER seen for them) only what a registration needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessGate {
    /// Never: unknown sources are budgeted as before (the default).
    #[default]
    Open,
    /// While under attack: `sipguard attack-mode on` shuts it.
    UnderAttack,
    /// Always.
    Always,
}

impl AccessGate {
    pub const fn name(self) -> &'static str {
        match self {
            AccessGate::Open => "open",
            AccessGate::UnderAttack => "under-attack",
            AccessGate::Always => "always",
        }
    }
}

/// What unverified sources may send while the gate is shut, by default: REGISTER.
pub const DEFAULT_UNVERIFIED_METHODS: u16 = 1 << sipguard_common::abi::SipMethod::Register as u16;

/// When unknown sources that keep exceeding their budget are banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanSettings {
    /// Over-budget packets within `window` that trigger a ban; 0: never ban.
    pub threshold: u32,
    pub window: Duration,
    pub ttl: Duration,
}

impl Default for BanSettings {
    fn default() -> Self {
        BanSettings {
            threshold: 100,
            window: Duration::from_secs(10),
            ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// What the SBC's answers to access-zone clients do (`[auth_failures]`, `[verified]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// Auth failures within `window` that ban a client for `ttl`; 0: failures ban nobody.
    pub auth_threshold: u32,
    pub auth_window: Duration,
    pub auth_ttl: Duration,
    /// Challenges to a verified client within this long of the first do not count.
    pub auth_grace: Duration,
    /// A 200 OK to REGISTER verifies its client.
    pub verified: bool,
    /// Class of verified sources; `None`: the access zone's class.
    pub verified_class: Option<String>,
    /// Cap on a registration's lifetime as a verified source.
    pub verified_max_lifetime: Duration,
    /// Lifetime when the 200 OK names no Expires.
    pub verified_default_lifetime: Duration,
}

impl Default for Feedback {
    /// On: svcrack answered with a challenge per guess is banned after 10 failures (10 to 20
    /// guesses at most), a phone that mistypes its password once collects one or two.
    fn default() -> Self {
        Feedback {
            auth_threshold: 10,
            auth_window: Duration::from_secs(10 * 60),
            auth_ttl: Duration::from_secs(3600),
            auth_grace: Duration::from_secs(5),
            verified: true,
            verified_class: None,
            verified_max_lifetime: Duration::from_secs(3600),
            verified_default_lifetime: Duration::from_secs(3600),
        }
    }
}

/// How many drop events reach the controller: per source, and in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSettings {
    pub per_source: Budget,
    pub total: Budget,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            per_source: DEFAULT_EVENTS_PER_SOURCE,
            total: DEFAULT_EVENTS_TOTAL,
        }
    }
}

/// Identity of the file(s) a policy was read from, kept in the kernel for `sipguard status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySource {
    pub path: PathBuf,
    /// FNV-1a over the policy file and every list file it read, in order.
    pub digest: u64,
}

/// A complete, checked policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `None`: keep the mode the filter runs in.
    pub mode: Option<Mode>,
    pub fragments: FragmentPolicy,
    /// IPv6 sources share budgets and bans per prefix of this length.
    pub ipv6_prefix: u8,
    /// Ports where only allowlisted sources are admitted.
    pub trunk: Ports,
    pub access: Option<Access>,
    pub classes: BTreeMap<String, Budget>,
    pub bans: BanSettings,
    pub events: EventSettings,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// Method budgets, scanner signatures, destination rules.
    pub sip: SipRules,
    /// Auth failures and verified sources from the SBC's answers (access zone only).
    pub feedback: Feedback,
    /// Allowlist sources fetched or resolved by `crate::lists` (URLs and hostnames of
    /// `[[allow]]` entries); not in `allow` until they are.
    pub remote: Vec<RemoteSource>,
    /// `[lists]`: their refresh, shrink limit, deadline and DNS server.
    pub remote_settings: RemoteSettings,
    /// `[fleet]`: bans, runtime entries and lockdown shared through Redis by `sipguard run`.
    pub fleet: Option<fleet::FleetSettings>,
    pub source: Option<PolicySource>,
}

impl Policy {
    /// What `attach` starts with when given no policy: default trunk ports, empty lists, monitor
    /// mode, so that a new user sees what would be dropped before anything is.
    pub fn starter() -> Self {
        Policy {
            mode: Some(Mode::Monitor),
            fragments: FragmentPolicy::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            trunk: Ports {
                udp: DEFAULT_UDP_PORTS.to_vec(),
                tcp: DEFAULT_TCP_PORTS.to_vec(),
                sctp: Vec::new(),
                count_methods: false,
            },
            access: None,
            classes: BTreeMap::new(),
            bans: BanSettings::default(),
            events: EventSettings::default(),
            allow: Vec::new(),
            deny: Vec::new(),
            sip: SipRules::default(),
            feedback: Feedback::default(),
            remote: Vec::new(),
            remote_settings: RemoteSettings::default(),
            fleet: None,
            source: None,
        }
    }

    /// Reads and checks a policy file and the list files it references.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, PolicyError> {
        file::load(&path.into())
    }

    /// Parses policy text. `path` names it in messages and anchors relative list files.
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, PolicyError> {
        file::parse(text, &path.into())
    }

    /// The embedded example policy.
    pub fn example() -> Self {
        Self::parse(EXAMPLE_POLICY, "<embedded example policy>")
            .expect("the embedded example policy is valid (checked by a unit test)")
    }
}

/// Parses an address or CIDR as operators write it: `192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`.
/// A prefix with host bits set is refused, since it usually hides a typo.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = if text.contains('/') {
        text.parse::<IpNet>()
            .map_err(|_| format!("'{text}' is not an IPv4/IPv6 address or CIDR"))?
    } else {
        text.parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("'{text}' is not an IPv4/IPv6 address or CIDR"))?
    };
    if net.trunc() != net {
        return Err(format!(
            "'{text}' has host bits set (the network is {}); write the network or a single address",
            net.trunc()
        ));
    }
    Ok(net)
}

/// The address (network, for IPv6 prefixes) of a budget/ban key.
pub fn source_addr(key: &SourceKey) -> IpAddr {
    if key.family == 4 {
        IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]])
    } else {
        IpAddr::from(key.addr)
    }
}

/// A budget/ban key as people write it: `198.51.100.7`, `2001:db8:1::/64`.
pub fn source_text(key: &SourceKey) -> String {
    match source_addr(key) {
        addr @ IpAddr::V4(_) => addr.to_string(),
        addr => format!("{addr}/{}", key.prefix_len),
    }
}
