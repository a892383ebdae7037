//! The maps, all pinned by the controller under `<pin-root>/<iface>/<name>`.
//! See `sipguard_common::abi` for layouts. Every map's sizing is written here, and only here
//! (entries x (key + value + the kernel's per-element overhead, about 50-60 bytes for hashes)).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf, lpm_trie::Key,
    },
};
use sipguard_common::abi::{
    AuthState, Ban, COUNTER_SLOTS, COUNTRY_SLOTS, Counter, DestData, DestRule, EVENT_RING_BYTES,
    EventCache, FragKey, FragVerdict, GENERATIONS, Handoff, Ipv4Data, Ipv6Data, MAX_AUTH_SOURCES,
    MAX_BANS, MAX_DEST_PREFIXES, MAX_PEERS, MAX_PREFIXES, MAX_SIGNATURE_ENTRIES, MAX_SIP_SOURCES,
    MAX_SOURCES, MAX_TRACKED_FRAGMENTS, MAX_VERIFIED, METHOD_SLOTS, Meta, PREFILTER_BITMAPS,
    PREFILTER_CHUNKS, PacketMeta, Policy, PrefilterChunk, RULE_SLOTS, RuleValue, SIGNATURE_SLOTS,
    SIP_ZONES, SignatureData, SignatureRule, SipSourceState, SourceKey, SourceState,
    VERIFIED_FILTER_WORDS, VerifiedSource, answer_stat, dest_verdict, egress_tail, event_stat,
    tail,
};
use sipguard_common::abi::{
    CAPTURE_RING_BYTES, CaptureControl, CaptureRecord, capture_slot, capture_stat,
};
use sipguard_common::{
    answer::AnswerScan,
    sip::{MessageBuffer, Scan},
};

/// Identity and ABI version of the pinned state. 1 x 48 bytes. Never read here: it lets the
/// controller refuse state it does not understand.
#[map(name = "SG_META")]
pub(crate) static META: Array<Meta> = Array::with_max_entries(1, 0);

/// The policy generation in force (0 or 1). 1 x 4 bytes. The controller fills the other
/// generation, then flips this index: a policy change is atomic.
#[map(name = "SG_ACTIVE")]
pub(crate) static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Settings, classes, the zone of every UDP/TCP/SCTP port, method budgets and SIP rules, per
/// generation: 2 x (256 + 64 x 48 + 3 x 65,536 + 64 x 64 + 272) = 2 x 204,304 bytes.
#[map(name = "SG_POLICY")]
pub(crate) static POLICY: Array<Policy> = Array::with_max_entries(GENERATIONS, 0);

// Allow/deny prefixes per family and generation. Up to MAX_PREFIXES (262,144) each, allocated on
// demand at about 100 bytes per prefix.
#[map(name = "SG_ALLOW4_0")]
pub(crate) static ALLOW4_0: LpmTrie<Ipv4Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_ALLOW4_1")]
pub(crate) static ALLOW4_1: LpmTrie<Ipv4Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
/// IPv4 allowlist hosts (/32), by far the most entries of a carrier list: one hash lookup
/// instead of a trie walk. The tries hold the networks. Up to MAX_PREFIXES each, allocated on
/// demand (about 80 bytes per host).
#[map(name = "SG_AHOST4_0")]
pub(crate) static ALLOW_HOSTS4_0: HashMap<Ipv4Data, RuleValue> =
    HashMap::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
#[map(name = "SG_AHOST4_1")]
pub(crate) static ALLOW_HOSTS4_1: HashMap<Ipv4Data, RuleValue> =
    HashMap::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
/// IPv6 allowlist hosts (/128), likewise. About 90 bytes per host.
#[map(name = "SG_AHOST6_0")]
pub(crate) static ALLOW_HOSTS6_0: HashMap<Ipv6Data, RuleValue> =
    HashMap::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
#[map(name = "SG_AHOST6_1")]
pub(crate) static ALLOW_HOSTS6_1: HashMap<Ipv6Data, RuleValue> =
    HashMap::with_max_entries(MAX_PREFIXES, BPF_F_NO_PREALLOC);
#[map(name = "SG_ALLOW6_0")]
pub(crate) static ALLOW6_0: LpmTrie<Ipv6Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_ALLOW6_1")]
pub(crate) static ALLOW6_1: LpmTrie<Ipv6Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY4_0")]
pub(crate) static DENY4_0: LpmTrie<Ipv4Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY4_1")]
pub(crate) static DENY4_1: LpmTrie<Ipv4Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY6_0")]
pub(crate) static DENY6_0: LpmTrie<Ipv6Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);
#[map(name = "SG_DENY6_1")]
pub(crate) static DENY6_1: LpmTrie<Ipv6Data, RuleValue> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);

/// Verdicts of first fragments, inherited by the later ones. LRU: 16,384 x ~104 bytes ~ 1.7 MB.
#[map(name = "SG_FRAGS")]
pub(crate) static FRAGS: LruHashMap<FragKey, FragVerdict> =
    LruHashMap::with_max_entries(MAX_TRACKED_FRAGMENTS, 0);

/// Boot time minus jiffies x tick, taken once by the first packet (0: not yet), so that the tick
/// clock reads as boot time. One value for all CPUs: they read the same jiffies, so their clocks
/// agree (but for the instant a tick takes to reach every CPU). 1 x 8 bytes.
#[map(name = "SG_CLOCK")]
pub(crate) static CLOCK: Array<u64> = Array::with_max_entries(1, 0);

/// The IPv4 prefilters, one bit per /24 touched by a prefix of the bitmap's kind, per generation
/// and bitmap (`sipguard_common::abi::prefilter_index`). 2 x 3 x 64 chunks of 32 KiB = 12 MiB.
#[map(name = "SG_PREFILTER")]
pub(crate) static PREFILTER: Array<PrefilterChunk> =
    Array::with_max_entries(GENERATIONS * PREFILTER_BITMAPS * PREFILTER_CHUNKS, 0);

/// Budget state of unknown sources in the access zone. LRU: 65,536 x ~108 bytes ~ 7 MB. New
/// entries only within the global new-source budget, so a spoofed flood cannot churn it.
#[map(name = "SG_SOURCES")]
pub(crate) static SOURCES: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(MAX_SOURCES, 0);

/// Budget state of allowlisted sources whose class has a budget. Only allowlisted traffic
/// inserts here, so no other source can evict or drain a peer. LRU: 16,384 x ~108 bytes ~ 1.8 MB.
#[map(name = "SG_PEERS")]
pub(crate) static PEERS: LruHashMap<SourceKey, SourceState> =
    LruHashMap::with_max_entries(MAX_PEERS, 0);

/// Bans, automatic and manual; they expire by themselves. Allocated per ban: up to 65,536 x
/// ~120 bytes ~ 7.9 MB.
#[map(name = "SG_BANS")]
pub(crate) static BANS: HashMap<SourceKey, Ban> =
    HashMap::with_max_entries(MAX_BANS, BPF_F_NO_PREALLOC);

/// Per-CPU GCRA state (TAT) of the budget for creating new per-source state. 1 x 8 bytes per CPU.
#[map(name = "SG_NEWSRC")]
pub(crate) static NEW_SOURCES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Drop events for the controller. 1 MiB: about 10,900 events of 96 + 8 bytes.
#[map(name = "SG_EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);

/// Event budget per source, per CPU, direct-mapped: one array lookup decides whether a drop gets
/// an event. 256 x 16 bytes = 4 KiB per CPU.
#[map(name = "SG_EVCACHE")]
pub(crate) static EVENT_CACHE: PerCpuArray<EventCache> = PerCpuArray::with_max_entries(1, 0);

/// Event and table accounting per CPU (`event_stat::*`): emitted, suppressed, lost, bans and
/// would-be bans issued, failed inserts per table; and in slot SLOTS the per-CPU TAT of the
/// global event budget. 10 x 8 bytes per CPU.
#[map(name = "SG_EVSTATS")]
pub(crate) static EVENT_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(event_stat::SLOTS + 1, 0);

/// The later stages (`abi::tail`: reporter, judge, SIP stages, capture), set by the controller
/// at load. 6 slots.
#[map(name = "SG_TAILS")]
pub(crate) static TAILS: ProgramArray = ProgramArray::with_max_entries(tail::SLOTS, 0);

/// Requests the SIP stage saw, by zone and method (`abi::method_index`). 64 slots x 8 bytes per
/// CPU.
#[map(name = "SG_METHODS")]
pub(crate) static METHODS: PerCpuArray<u64> = PerCpuArray::with_max_entries(METHOD_SLOTS as u32, 0);

/// The SIP stage's scratch: its copy of the message (`abi::SIP_SCAN_BYTES` and slack for reads
/// at the end) and the header scan's state.
#[repr(C)]
pub(crate) struct SipScratch {
    pub(crate) bytes: MessageBuffer,
    /// Bytes of the message copied into `bytes`.
    pub(crate) len: usize,
    pub(crate) scan: Scan,
    /// Trie keys are built here, off the 512-byte stack.
    pub(crate) signature_key: Key<SignatureData>,
    pub(crate) destination_key: Key<DestData>,
}

/// 1 x 2,408 bytes per CPU.
#[map(name = "SG_SIPBUF")]
pub(crate) static SIP_BUFFER: PerCpuArray<SipScratch> = PerCpuArray::with_max_entries(1, 0);

// Scanner signatures per generation: both fields of up to 64 signatures, 128 entries of about
// 130 bytes, allocated on demand.
#[map(name = "SG_SIGS_0")]
pub(crate) static SIGNATURES_0: LpmTrie<SignatureData, SignatureRule> =
    LpmTrie::with_max_entries(MAX_SIGNATURE_ENTRIES, 0);
#[map(name = "SG_SIGS_1")]
pub(crate) static SIGNATURES_1: LpmTrie<SignatureData, SignatureRule> =
    LpmTrie::with_max_entries(MAX_SIGNATURE_ENTRIES, 0);

// Destination prefixes per generation (rules and country codes of both zones, as BCD nibbles):
// up to 131,072 entries of about 100 bytes, allocated on demand: 65,000 rule prefixes and the
// country codes of both zones (a few hundred in practice).
#[map(name = "SG_DEST_0")]
pub(crate) static DESTINATIONS_0: LpmTrie<DestData, DestRule> =
    LpmTrie::with_max_entries(MAX_DEST_PREFIXES, 0);
#[map(name = "SG_DEST_1")]
pub(crate) static DESTINATIONS_1: LpmTrie<DestData, DestRule> =
    LpmTrie::with_max_entries(MAX_DEST_PREFIXES, 0);

/// Method and destination budget state of sources the SIP stage budgets. Only admitted packets
/// reach it. LRU: 65,536 x ~140 bytes ~ 9 MB.
#[map(name = "SG_SIPSRC")]
pub(crate) static SIP_SOURCES: LruHashMap<SourceKey, SipSourceState> =
    LruHashMap::with_max_entries(MAX_SIP_SOURCES, 0);

/// Matches per scanner signature id. 64 x 8 bytes per CPU.
#[map(name = "SG_SIGHITS")]
pub(crate) static SIGNATURE_HITS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(SIGNATURE_SLOTS, 0);

/// INVITEs per destination rule id (0: a zone's default). 256 x 8 bytes per CPU.
#[map(name = "SG_RULEHITS")]
pub(crate) static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RULE_SLOTS, 0);

/// INVITEs by zone, verdict and destination country (`abi::dest_stat_index`). 2 x 4 x 256 x 8
/// bytes = 16 KiB per CPU.
#[map(name = "SG_DESTSTATS")]
pub(crate) static DESTINATION_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(SIP_ZONES * dest_verdict::SLOTS * COUNTRY_SLOTS, 0);

/// Verified sources: the SBC accepted their REGISTER. A hash, not LRU: only the egress
/// program's 200 OKs insert, so no flood of other sources can evict a phone. Allocated on
/// demand: up to 65,536 x ~110 bytes ~ 7 MB.
#[map(name = "SG_VERIFIED")]
pub(crate) static VERIFIED: HashMap<SourceKey, VerifiedSource> =
    HashMap::with_max_entries(MAX_VERIFIED, BPF_F_NO_PREALLOC);

/// Which sources may be verified (`abi::VERIFIED_FILTER_BITS`, a bit per source hash, set by
/// the egress program): spares unknown sources the `SG_VERIFIED` lookup. 16,384 x 8 bytes =
/// 128 KiB.
#[map(name = "SG_VFILTER")]
pub(crate) static VERIFIED_FILTER: Array<u64> = Array::with_max_entries(VERIFIED_FILTER_WORDS, 0);

/// Auth failures per client, from the SBC's 401/407/403 answers. LRU (only sources the SBC
/// challenged or refused get an entry): 65,536 x ~100 bytes ~ 6.5 MB.
#[map(name = "SG_AUTH")]
pub(crate) static AUTH: LruHashMap<SourceKey, AuthState> =
    LruHashMap::with_max_entries(MAX_AUTH_SOURCES, 0);

/// The egress program's counters (`abi::answer_stat`). 11 x 8 bytes per CPU.
#[map(name = "SG_ANSWERS")]
pub(crate) static ANSWER_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(answer_stat::SLOTS, 0);

/// The egress stages (`abi::egress_tail`), set by the controller at load. 1 slot.
#[map(name = "SG_TCTAILS")]
pub(crate) static EGRESS_TAILS: ProgramArray =
    ProgramArray::with_max_entries(egress_tail::SLOTS, 0);

/// What the egress entry hands to the answer stage, and the answer stage's copy of the
/// message and scan state.
#[repr(C)]
pub(crate) struct AnswerScratch {
    pub(crate) bytes: MessageBuffer,
    /// Bytes of the message copied into `bytes`.
    pub(crate) len: usize,
    pub(crate) scan: AnswerScan,
    /// The answer's packet: the client is its destination.
    pub(crate) packet: PacketMeta,
    pub(crate) status: u16,
    pub(crate) generation: u8,
}

/// 1 x ~2,450 bytes per CPU.
#[map(name = "SG_TCSCRATCH")]
pub(crate) static ANSWER_SCRATCH: PerCpuArray<AnswerScratch> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to a per-CPU counter slot.
#[inline(always)]
pub(crate) fn bump(map: &PerCpuArray<u64>, slot: u32) {
    if let Some(value) = map.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe { *value += 1 };
    }
}

/// What one stage hands to the next: the parsed packet and the verdict so far. 1 x 104 bytes
/// per CPU.
#[map(name = "SG_SCRATCH")]
pub(crate) static HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub(crate) fn event_stat(slot: u32) {
    if let Some(value) = EVENT_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe { *value += 1 };
    }
}

/// Packets and bytes by zone, reason and monitored flag. 192 slots x 16 bytes per CPU.
#[map(name = "SG_COUNTERS")]
pub(crate) static COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(COUNTER_SLOTS as u32, 0);

#[inline(always)]
pub(crate) fn count(index: u32, bytes: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no other writer while this program runs on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// The capture slots' filters and budgets (`abi::capture_slot`: `sipguard capture`, the rolling
/// ring of `sipguard run`). 2 x 80 bytes. Read (an inlined array lookup) only where a SIP
/// packet's verdict is final; the copying happens in the capture stage.
#[map(name = "SG_CAPCTL")]
pub(crate) static CAPTURE_CONTROL: Array<CaptureControl> =
    Array::with_max_entries(capture_slot::SLOTS, 0);

/// Capture counters and budget state per slot (`abi::capture_stat`). 16 x 8 bytes per CPU.
#[map(name = "SG_CAPSTATS")]
pub(crate) static CAPTURE_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(capture_stat::SLOTS, 0);

/// The capture stage builds a record here before it goes into a ring with its length.
/// 1 x 4,144 bytes per CPU.
#[map(name = "SG_CAPBUF")]
pub(crate) static CAPTURE_BUFFER: PerCpuArray<CaptureRecord> = PerCpuArray::with_max_entries(1, 0);

/// Copied packets of `sipguard capture`. 4 MiB: about 16,000 SIP packets of 200 bytes, or
/// 1,000 of the largest records: far more than the default budget fills between two reads.
#[map(name = "SG_CAPLIVE")]
pub(crate) static CAPTURE_LIVE: RingBuf = RingBuf::with_byte_size(CAPTURE_RING_BYTES, 0);

/// Copied drops for the rolling ring of `sipguard run` (drained into memory by the daemon).
/// 4 MiB, as above.
#[map(name = "SG_CAPROLL")]
pub(crate) static CAPTURE_ROLLING: RingBuf = RingBuf::with_byte_size(CAPTURE_RING_BYTES, 0);
