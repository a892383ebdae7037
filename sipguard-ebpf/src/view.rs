//! The policy of the active generation, as `sipguard_common::verdict` asks for it.

use aya_ebpf::maps::lpm_trie::Key;
use sipguard_common::{
    abi::{FragKey, FragVerdict, FragmentPolicy, Mode, Policy, Zone},
    parse::{Family, Transport},
    verdict::PolicyView,
};

use crate::maps::{
    ACTIVE, ALLOW4_0, ALLOW4_1, ALLOW6_0, ALLOW6_1, DENY4_0, DENY4_1, DENY6_0, DENY6_1, FRAGS,
    POLICY,
};

pub struct MapView {
    generation: u32,
    policy: &'static Policy,
}

impl MapView {
    #[inline(always)]
    pub fn active() -> Option<Self> {
        let generation = *ACTIVE.get(0)? & 1;
        let policy = POLICY.get(generation)?;
        Some(MapView { generation, policy })
    }

    #[inline(always)]
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.policy.header.mode)
    }
}

#[inline(always)]
fn v4(addr: &[u8; 16]) -> Key<[u8; 4]> {
    Key::new(32, [addr[0], addr[1], addr[2], addr[3]])
}

#[inline(always)]
fn v6(addr: &[u8; 16]) -> Key<[u8; 16]> {
    Key::new(128, *addr)
}

impl PolicyView for MapView {
    #[inline(always)]
    fn zone(&self, transport: Transport, port: u16) -> Zone {
        let table = match transport {
            Transport::Udp => &self.policy.udp_zone,
            Transport::Tcp => &self.policy.tcp_zone,
        };
        Zone::from_u8(table[port as usize])
    }

    #[inline(always)]
    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        match (family, self.generation) {
            (Family::V4, 0) => DENY4_0.get(v4(addr)).is_some(),
            (Family::V4, _) => DENY4_1.get(v4(addr)).is_some(),
            (Family::V6, 0) => DENY6_0.get(v6(addr)).is_some(),
            (Family::V6, _) => DENY6_1.get(v6(addr)).is_some(),
        }
    }

    #[inline(always)]
    fn is_allowed(&self, family: Family, addr: &[u8; 16]) -> bool {
        match (family, self.generation) {
            (Family::V4, 0) => ALLOW4_0.get(v4(addr)).is_some(),
            (Family::V4, _) => ALLOW4_1.get(v4(addr)).is_some(),
            (Family::V6, 0) => ALLOW6_0.get(v6(addr)).is_some(),
            (Family::V6, _) => ALLOW6_1.get(v6(addr)).is_some(),
        }
    }

    #[inline(always)]
    fn fragment_policy(&self) -> FragmentPolicy {
        FragmentPolicy::from_u8(self.policy.header.fragments)
    }

    #[inline(always)]
    fn recall_fragment(&self, key: &FragKey) -> Option<FragVerdict> {
        // SAFETY: the value is copied out at once; a concurrent update can at worst give the
        // verdict of the same datagram's first fragment.
        unsafe { FRAGS.get(key).copied() }
    }

    #[inline(always)]
    fn remember_fragment(&self, key: &FragKey, verdict: FragVerdict) {
        // A full LRU evicts the oldest datagram; nothing to do on error.
        let _ = FRAGS.insert(key, verdict, 0);
    }
}
