//! The policy as plain Rust data, deciding with the same shared logic as the kernel: the oracle
//! that kernel tests compare the real program against.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use sipguard::policy::{Policy, Prefix, Tables};
use sipguard_common::{
    abi::{FragKey, FragVerdict, FragmentPolicy, Mode, Zone},
    parse::{Family, Transport, parse},
    verdict::{PolicyView, decide},
};

use crate::harness::{Verdict, XDP_DROP, XDP_PASS};

pub struct Model {
    tables: Tables,
    remembered: RefCell<HashMap<(Vec<u8>, u32), FragVerdict>>,
}

impl Model {
    pub fn new(policy: &Policy) -> Model {
        Model {
            tables: Tables::compile(policy, Mode::Enforce, &BTreeMap::new(), &BTreeMap::new(), 0),
            remembered: RefCell::new(HashMap::new()),
        }
    }

    /// What the program should do with `frame`, given everything seen before.
    pub fn verdict(&self, frame: &[u8]) -> Verdict {
        let decided = decide(&parse(frame), self);
        let drop = decided.reason.is_drop();
        let monitored = drop && self.tables.mode == Mode::Monitor;
        Verdict {
            action: if drop && !monitored {
                XDP_DROP
            } else {
                XDP_PASS
            },
            zone: decided.zone,
            reason: decided.reason,
            monitored,
        }
    }

    fn matches(
        set: &BTreeMap<Prefix, sipguard_common::abi::RuleValue>,
        family: Family,
        addr: &[u8; 16],
    ) -> bool {
        let ip = match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(*addr)),
        };
        set.keys().any(|prefix| prefix.contains(ip))
    }
}

impl PolicyView for Model {
    fn zone(&self, transport: Transport, port: u16) -> Zone {
        let table = match transport {
            Transport::Udp => &self.tables.udp_zone,
            Transport::Tcp => &self.tables.tcp_zone,
        };
        Zone::from_u8(table[usize::from(port)])
    }

    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        Self::matches(&self.tables.deny, family, addr)
    }

    fn is_allowed(&self, family: Family, addr: &[u8; 16]) -> bool {
        Self::matches(&self.tables.allow, family, addr)
    }

    fn fragment_policy(&self) -> FragmentPolicy {
        self.tables.fragments
    }

    fn recall_fragment(&self, key: &FragKey) -> Option<FragVerdict> {
        self.remembered.borrow().get(&frag_key(key)).copied()
    }

    fn remember_fragment(&self, key: &FragKey, verdict: FragVerdict) {
        self.remembered.borrow_mut().insert(frag_key(key), verdict);
    }
}

fn frag_key(key: &FragKey) -> (Vec<u8>, u32) {
    let mut bytes = key.src.to_vec();
    bytes.extend_from_slice(&key.dst);
    bytes.push(key.family);
    (bytes, key.id)
}
