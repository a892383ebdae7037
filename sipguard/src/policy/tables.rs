//! A policy compiled into what the XDP program reads: port zones and prefix sets.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sipguard_common::abi::{self, FragmentPolicy, Mode, Origin, PORT_SLOTS, RuleValue, Zone};

use super::Policy;

/// A prefix as the kernel tries hold it: length and network-order address bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prefix {
    V4 { len: u8, addr: [u8; 4] },
    V6 { len: u8, addr: [u8; 16] },
}

impl From<IpNet> for Prefix {
    fn from(net: IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(net) => Prefix::V4 {
                len: net.prefix_len(),
                addr: net.network().octets(),
            },
            IpNet::V6(net) => Prefix::V6 {
                len: net.prefix_len(),
                addr: net.network().octets(),
            },
        }
    }
}

impl Prefix {
    pub fn net(&self) -> IpNet {
        match *self {
            Prefix::V4 { len, addr } => IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(addr), len).expect("kernel prefix lengths are <= 32"),
            ),
            Prefix::V6 { len, addr } => IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(addr), len).expect("kernel prefix lengths are <= 128"),
            ),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.net().contains(&addr)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.net().fmt(f)
    }
}

/// Everything one policy generation holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Tables {
    pub mode: Mode,
    pub fragments: FragmentPolicy,
    /// Zone of every UDP and TCP destination port (index = port).
    pub udp_zone: Vec<u8>,
    pub tcp_zone: Vec<u8>,
    pub allow: BTreeMap<Prefix, RuleValue>,
    pub deny: BTreeMap<Prefix, RuleValue>,
}

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tables")
            .field("mode", &self.mode)
            .field("fragments", &self.fragments)
            .field("allow", &self.allow.len())
            .field("deny", &self.deny.len())
            .finish_non_exhaustive()
    }
}

impl Tables {
    /// Compiles `policy`, running in `mode` unless the policy sets one, plus the runtime entries
    /// added by `sipguard allow|deny add` (a policy entry for the same prefix takes precedence).
    pub fn compile(
        policy: &Policy,
        running_mode: Mode,
        runtime_allow: &BTreeMap<Prefix, RuleValue>,
        runtime_deny: &BTreeMap<Prefix, RuleValue>,
        now_unix: u32,
    ) -> Tables {
        let mut udp_zone = vec![Zone::None as u8; PORT_SLOTS];
        let mut tcp_zone = vec![Zone::None as u8; PORT_SLOTS];
        for port in &policy.udp_ports {
            udp_zone[usize::from(*port)] = Zone::Trunk as u8;
        }
        for port in &policy.tcp_ports {
            tcp_zone[usize::from(*port)] = Zone::Trunk as u8;
        }
        let from_policy = |rules: &[super::Rule], runtime: &BTreeMap<Prefix, RuleValue>| {
            let mut set = runtime.clone();
            for rule in rules {
                set.insert(
                    Prefix::from(rule.net),
                    RuleValue {
                        class: 0,
                        origin: Origin::Policy as u8,
                        _reserved: 0,
                        added_at_unix: now_unix,
                    },
                );
            }
            set
        };
        Tables {
            mode: policy.mode.unwrap_or(running_mode),
            fragments: policy.fragments,
            udp_zone,
            tcp_zone,
            allow: from_policy(&policy.allow, runtime_allow),
            deny: from_policy(&policy.deny, runtime_deny),
        }
    }

    /// The generation's `SG_POLICY` entry.
    pub fn policy_value(&self, header: abi::PolicyHeader) -> Box<abi::Policy> {
        let mut value = zeroed_policy();
        value.header = header;
        value.header.mode = self.mode as u8;
        value.header.fragments = self.fragments as u8;
        value.udp_zone.copy_from_slice(&self.udp_zone);
        value.tcp_zone.copy_from_slice(&self.tcp_zone);
        value
    }

    /// SIP ports of a transport in a zone, as ranges for display.
    pub fn ports(&self, udp: bool, zone: Zone) -> Vec<u16> {
        let table = if udp { &self.udp_zone } else { &self.tcp_zone };
        (0..PORT_SLOTS)
            .filter(|port| table[*port] == zone as u8)
            .map(|port| port as u16)
            .collect()
    }
}

/// A zeroed `SG_POLICY` value on the heap (it is 128 KiB).
pub fn zeroed_policy() -> Box<abi::Policy> {
    // SAFETY: abi::Policy is plain integers; all-zero is a valid value.
    unsafe { Box::<abi::Policy>::new_zeroed().assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn prefixes_round_trip_through_kernel_form() {
        for text in [
            "198.51.100.0/24",
            "192.0.2.7/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::1/128",
        ] {
            let net: IpNet = text.parse().unwrap();
            assert_eq!(Prefix::from(net).net(), net);
            assert_eq!(Prefix::from(net).to_string(), text);
        }
        assert_eq!(
            Prefix::from("198.51.100.0/24".parse::<IpNet>().unwrap()),
            Prefix::V4 {
                len: 24,
                addr: [198, 51, 100, 0]
            }
        );
    }

    #[test]
    fn compile_marks_ports_and_merges_runtime_entries() {
        let policy = Policy::parse(
            "[ports]\nudp = [5060, 5080]\ntcp = [5061]\n[[allow]]\ncidrs = [\"198.51.100.0/24\"]\n",
            "p.toml",
        )
        .unwrap();
        let runtime_prefix = Prefix::from("192.0.2.9/32".parse::<IpNet>().unwrap());
        let shared = Prefix::from("198.51.100.0/24".parse::<IpNet>().unwrap());
        let runtime_value = RuleValue {
            origin: Origin::Runtime as u8,
            added_at_unix: 5,
            ..Default::default()
        };
        let runtime: BTreeMap<_, _> =
            [(runtime_prefix, runtime_value), (shared, runtime_value)].into();
        let tables = Tables::compile(&policy, Mode::Monitor, &runtime, &BTreeMap::new(), 100);
        assert_eq!(
            tables.mode,
            Mode::Monitor,
            "a policy without mode keeps the running mode"
        );
        assert_eq!(tables.ports(true, Zone::Trunk), [5060, 5080]);
        assert_eq!(tables.ports(false, Zone::Trunk), [5061]);
        assert_eq!(tables.allow.len(), 2);
        assert_eq!(tables.allow[&runtime_prefix], runtime_value);
        assert_eq!(
            tables.allow[&shared].origin,
            Origin::Policy as u8,
            "policy wins over runtime"
        );
        let value = tables.policy_value(zeroed_policy().header);
        assert_eq!(value.header.mode, Mode::Monitor as u8);
        assert_eq!(value.udp_zone[5080], Zone::Trunk as u8);
        assert_eq!(value.udp_zone[5061], Zone::None as u8);
        assert_eq!(value.tcp_zone[5061], Zone::Trunk as u8);
    }
}
