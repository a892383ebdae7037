//! The maps, all pinned by the controller under `<pin-root>/<iface>/<name>`.
//! See `sipguard_common::abi` for layouts; every map carries its sizing.

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray},
};
use sipguard_common::abi::{
    COUNTER_SLOTS, Counter, FragKey, FragVerdict, GENERATIONS, Ipv4Data, Ipv6Data, MAX_PREFIXES,
    MAX_TRACKED_FRAGMENTS, Meta, Policy, RuleValue,
};

/// Identity and ABI version of the pinned state. 1 x 48 bytes. Never read here: it lets the
/// controller refuse state it does not understand.
#[map(name = "SG_META")]
pub static META: Array<Meta> = Array::with_max_entries(1, 0);

/// The policy generation in force (0 or 1). 1 x 4 bytes. The controller fills the other
/// generation, then flips this index: a policy change is atomic.
#[map(name = "SG_ACTIVE")]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Settings and the zone of every UDP/TCP port, per generation. 2 x 131,328 bytes.
#[map(name = "SG_POLICY")]
pub static POLICY: Array<Policy> = Array::with_max_entries(GENERATIONS, 0);

// Allow/deny prefixes per family and generation. Up to MAX_PREFIXES (262,144) each, allocated on
// demand at about 100 bytes per prefix.
#[map(name = "SG_ALLOW4_0")]
pub static ALLOW4_0: LpmTrie<Ipv4Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_ALLOW4_1")]
pub static ALLOW4_1: LpmTrie<Ipv4Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_ALLOW6_0")]
pub static ALLOW6_0: LpmTrie<Ipv6Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_ALLOW6_1")]
pub static ALLOW6_1: LpmTrie<Ipv6Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY4_0")]
pub static DENY4_0: LpmTrie<Ipv4Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY4_1")]
pub static DENY4_1: LpmTrie<Ipv4Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY6_0")]
pub static DENY6_0: LpmTrie<Ipv6Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY6_1")]
pub static DENY6_1: LpmTrie<Ipv6Data, RuleValue> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

/// Verdicts of first fragments, inherited by the later ones. LRU: 16,384 x ~104 bytes ~ 1.7 MB.
#[map(name = "SG_FRAGS")]
pub static FRAGS: LruHashMap<FragKey, FragVerdict> =
    LruHashMap::with_max_entries(MAX_TRACKED_FRAGMENTS, 0);

/// Packets and bytes by zone, reason and monitored flag. 128 slots x 16 bytes per CPU.
#[map(name = "SG_COUNTERS")]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS as u32, 0);

#[inline(always)]
pub fn count(index: u32, bytes: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
