//! The declarative policy: which ports are SIP, who may send to them, and how the filter acts.
//!
//! A policy is read from a TOML file that may reference plain list files ([`file`]), checked as a
//! whole (every problem is reported with file:line, and nothing is applied when one is found), then
//! compiled into the tables the XDP program reads ([`Tables`]).

mod file;
mod tables;

use std::{fmt, path::PathBuf};

use ipnet::IpNet;
use sipguard_common::abi::{FragmentPolicy, Mode};

pub use self::{
    file::{Diagnostic, PolicyError},
    tables::{Prefix, Tables, zeroed_policy},
};

/// UDP ports judged as SIP when a policy does not say otherwise.
pub const DEFAULT_UDP_PORTS: [u16; 1] = [5060];
/// TCP ports judged as SIP when a policy does not say otherwise (5061: SIP over TLS).
pub const DEFAULT_TCP_PORTS: [u16; 2] = [5060, 5061];

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
    pub at: Location,
}

/// Identity of the file(s) a policy was read from, kept in the kernel for `sipguard status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySource {
    pub path: PathBuf,
    /// FNV-1a over the policy file and every list file it read, in order.
    pub digest: u64,
}

/// A complete, checked policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `None`: keep the mode the filter runs in.
    pub mode: Option<Mode>,
    pub fragments: FragmentPolicy,
    /// Destination ports of the trunk zone (only allowlisted sources), sorted and unique.
    pub udp_ports: Vec<u16>,
    pub tcp_ports: Vec<u16>,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    pub source: Option<PolicySource>,
}

impl Policy {
    /// What `attach` starts with when given no policy: default ports, empty lists, monitor mode,
    /// so that a new user sees what would be dropped before anything is.
    pub fn starter() -> Self {
        Policy {
            mode: Some(Mode::Monitor),
            fragments: FragmentPolicy::default(),
            udp_ports: DEFAULT_UDP_PORTS.to_vec(),
            tcp_ports: DEFAULT_TCP_PORTS.to_vec(),
            allow: Vec::new(),
            deny: Vec::new(),
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
