//! The policy as plain Rust data, deciding with the same shared logic as the kernel: the oracle
//! that kernel tests compare the real program against. Budgets run on a synthetic clock.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use sipguard::policy::{Policy, Prefix, Tables};
use sipguard_common::{
    abi::{
        Ban, FragKey, FragVerdict, FragmentPolicy, Mode, RuleValue, SourceKey, SourceState, Zone,
    },
    budget::Gcra,
    parse::{Family, Transport, parse},
    source::{ban_bites, fresh_state, strike},
    verdict::{Entry, NOT_ALLOWLISTED, PolicyView, Spend, decide, entry},
};

use crate::harness::{Verdict, XDP_DROP, XDP_PASS};

pub struct Model {
    tables: Tables,
    value: Box<sipguard_common::abi::Policy>,
    remembered: RefCell<HashMap<(Vec<u8>, u32), FragVerdict>>,
    now: Cell<u64>,
    sources: RefCell<HashMap<SourceKey, SourceState>>,
    peers: RefCell<HashMap<SourceKey, SourceState>>,
    pub bans: RefCell<HashMap<SourceKey, Ban>>,
    new_sources_tat: Cell<u64>,
}

impl Model {
    pub fn new(policy: &Policy) -> Model {
        let tables = Tables::compile(
            policy,
            Mode::Enforce,
            &BTreeMap::new(),
            &BTreeMap::new(),
            0,
            &sipguard::policy::sip_tables::SipIds::default(),
        );
        let value = tables.policy_value(sipguard::policy::zeroed_policy().header, 1);
        Model {
            tables,
            value,
            remembered: RefCell::new(HashMap::new()),
            now: Cell::new(1_000_000_000),
            sources: RefCell::new(HashMap::new()),
            peers: RefCell::new(HashMap::new()),
            bans: RefCell::new(HashMap::new()),
            new_sources_tat: Cell::new(0),
        }
    }

    /// Moves the synthetic clock forward.
    pub fn advance(&self, nanos: u64) {
        self.now.set(self.now.get() + nanos);
    }

    /// Entries in the per-source state of the access zone.
    pub fn tracked_sources(&self) -> usize {
        self.sources.borrow().len()
    }

    fn gcra(&self, class: u16) -> Gcra {
        self.value.classes[usize::from(class) % self.value.classes.len()].gcra
    }

    /// What the program should do with `frame`, given everything seen before.
    pub fn verdict(&self, frame: &[u8]) -> Verdict {
        let parsed = parse(frame);
        let decided = decide(&parsed, self);
        // Where the data plane's entry decides alone, it decides the same.
        if let Entry::Pass(early) | Entry::Drop(early) = entry(&parsed, self) {
            assert_eq!(early, decided, "the entry's verdict");
        }
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

    /// The longest matching entry, as an LPM trie answers.
    fn lookup(
        set: &BTreeMap<Prefix, RuleValue>,
        family: Family,
        addr: &[u8; 16],
    ) -> Option<RuleValue> {
        let ip = match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(*addr)),
        };
        set.iter()
            .filter(|(prefix, _)| prefix.contains(ip))
            .max_by_key(|(prefix, _)| prefix.net().prefix_len())
            .map(|(_, value)| *value)
    }
}

impl PolicyView for Model {
    fn zone(&self, transport: Transport, port: u16) -> Zone {
        Zone::from_u8(self.tables.zone_table(transport)[usize::from(port)])
    }

    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        Self::lookup(&self.tables.deny, family, addr).is_some()
    }

    fn allow_class(&self, family: Family, addr: &[u8; 16]) -> u32 {
        Self::lookup(&self.tables.allow, family, addr)
            .map_or(NOT_ALLOWLISTED, |rule| u32::from(rule.class))
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

    fn forget_fragment(&self, key: &FragKey) {
        self.remembered.borrow_mut().remove(&frag_key(key));
    }

    fn ipv6_budget_prefix(&self) -> u8 {
        self.tables.ipv6_prefix
    }

    fn manual_bans_in_force(&self) -> bool {
        self.bans
            .borrow()
            .values()
            .any(|ban| ban.reason == sipguard_common::abi::BanReason::Manual as u8)
    }

    fn is_banned(&self, source: &SourceKey) -> bool {
        let now = self.now.get();
        let mut bans = self.bans.borrow_mut();
        match bans.get_mut(source) {
            Some(ban) if ban_bites(ban, now, self.tables.mode) => {
                ban.hits += 1;
                ban.last_seen_ns = now;
                true
            }
            Some(_) => {
                bans.remove(source);
                false
            }
            None => false,
        }
    }

    fn spend_peer(&self, source: &SourceKey, class: u16) -> bool {
        let gcra = self.gcra(class);
        let now = self.now.get();
        let mut peers = self.peers.borrow_mut();
        match peers.get_mut(source) {
            Some(state) => match gcra.admit(state.tat_ns, now) {
                Some(next) => {
                    state.tat_ns = next;
                    true
                }
                None => false,
            },
            None => {
                peers.insert(*source, fresh_state(&gcra, class, now));
                true
            }
        }
    }

    fn spend_unknown(&self, source: &SourceKey) -> Spend {
        let header = &self.value.header;
        let gcra = self.gcra(header.access_class);
        if gcra.is_unlimited() {
            return Spend::Admitted;
        }
        let now = self.now.get();
        let mut sources = self.sources.borrow_mut();
        if let Some(state) = sources.get_mut(source) {
            if let Some(next) = gcra.admit(state.tat_ns, now) {
                state.tat_ns = next;
                return Spend::Admitted;
            }
            if let Some(ban) = strike(state, &header.ban, now, self.tables.mode) {
                self.bans.borrow_mut().insert(*source, ban);
            }
            return Spend::OverBudget;
        }
        match header.new_sources.admit(self.new_sources_tat.get(), now) {
            Some(next) => self.new_sources_tat.set(next),
            None => return Spend::NoNewSource,
        }
        sources.insert(*source, fresh_state(&gcra, header.access_class, now));
        Spend::Admitted
    }
}

fn frag_key(key: &FragKey) -> (Vec<u8>, u32) {
    let mut bytes = key.src.to_vec();
    bytes.extend_from_slice(&key.dst);
    bytes.push(key.family);
    (bytes, key.id)
}
