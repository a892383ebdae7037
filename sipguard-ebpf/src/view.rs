//! The policy of the active generation and the budget state, as `sipguard_common::verdict` asks
//! for them.

use core::{
    cell::Cell,
    intrinsics::{AtomicOrdering, atomic_cxchg, atomic_or, atomic_xadd},
};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_ktime_get_boot_ns},
    maps::lpm_trie::Key,
};
use sipguard_common::{
    abi::{
        Ban, CLASS_SLOTS, ClassLimits, DEFAULT_TICK_NS, DEST_BUDGET_SLOTS, DestData, DestRule,
        FeedbackPolicy, FragKey, FragVerdict, FragmentPolicy, METHOD_BUDGET_SLOTS, Mode,
        PREFILTER_ALLOW, PREFILTER_ALLOW_NETS, PREFILTER_DENY, Policy, PolicyHeader, SignatureData,
        SignatureRule, SipSourceState, SipZone, SourceKey, Zone, access_gate, ban_flags,
        event_stat, policy_flags, prefilter_index, prefilter_position, verified_filter_position,
    },
    budget::Gcra,
    parse::{Family, Transport},
    source::{ban_bites, fresh_state, scanner_ban, strike},
    verdict::{
        Lockdown, NOT_ALLOWLISTED, PolicyView, Spend, VerifiedSpend, source_tag, zone_inspects,
    },
};

use crate::maps::{
    ACTIVE, ALLOW_HOSTS4_0, ALLOW_HOSTS4_1, ALLOW_HOSTS6_0, ALLOW_HOSTS6_1, ALLOW4_0, ALLOW4_1,
    ALLOW6_0, ALLOW6_1, BANS, CLOCK, DENY4_0, DENY4_1, DENY6_0, DENY6_1, DESTINATIONS_0,
    DESTINATIONS_1, FRAGS, NEW_SOURCES, PEERS, POLICY, PREFILTER, SIGNATURES_0, SIGNATURES_1,
    SIP_SOURCES, SOURCES, VERIFIED, VERIFIED_FILTER, event_stat,
};

pub(crate) struct MapView {
    generation: u32,
    policy: &'static Policy,
    /// Boot-time ns on the tick clock, read once per packet when first needed.
    now: Cell<u64>,
    /// Whether the shut access gate admits this packet from an unverified source (the judge
    /// reads its method only while the gate is shut).
    gate_admits: Cell<bool>,
}

impl MapView {
    /// The view of the generation in force now (the entry's).
    #[inline(always)]
    pub(crate) fn active() -> Option<Self> {
        Self::at(*ACTIVE.get(0)?)
    }

    /// The view of the generation the entry judged this packet by (later stages), so an
    /// `apply` between two stages never splits one packet's decision between two policies.
    #[inline(always)]
    pub(crate) fn at(generation: u32) -> Option<Self> {
        let generation = generation & 1;
        let policy = POLICY.get(generation)?;
        Some(MapView {
            generation,
            policy,
            now: Cell::new(0),
            gate_admits: Cell::new(true),
        })
    }

    /// The access gate is shut: unverified sources may send only what a registration needs.
    #[inline(always)]
    pub(crate) fn gate_shut(&self) -> bool {
        self.policy.feedback.gate & access_gate::SHUT != 0
    }

    /// Methods unverified sources may send while the gate is shut.
    #[inline(always)]
    pub(crate) fn unverified_methods(&self) -> u16 {
        self.policy.feedback.unverified_methods
    }

    #[inline(always)]
    pub(crate) fn set_gate_admits(&self, admits: bool) {
        self.gate_admits.set(admits);
    }

    #[inline(always)]
    pub(crate) fn generation(&self) -> u8 {
        self.generation as u8
    }

    #[inline(always)]
    pub(crate) fn mode(&self) -> Mode {
        Mode::from_u8(self.policy.header.mode)
    }

    #[inline(always)]
    pub(crate) fn header(&self) -> &PolicyHeader {
        &self.policy.header
    }

    /// What the egress program does with the SBC's answers.
    #[inline(always)]
    pub(crate) fn feedback(&self) -> &FeedbackPolicy {
        &self.policy.feedback
    }

    #[inline(always)]
    pub(crate) fn ipv6_budget(&self) -> u8 {
        self.policy.header.ipv6_budget_prefix
    }

    /// Nanoseconds per step of [`MapView::now`]; budgets admit on it with
    /// [`Gcra::admit_on_tick`].
    #[inline(always)]
    pub(crate) fn tick_ns(&self) -> u64 {
        match self.policy.header.tick_ns {
            0 => u64::from(DEFAULT_TICK_NS),
            tick => u64::from(tick),
        }
    }

    #[inline(always)]
    fn tick_clock(&self) -> u64 {
        // SAFETY: helper without arguments.
        let ticks = unsafe { bpf_jiffies64() }.wrapping_mul(self.tick_ns());
        let Some(offset) = CLOCK.get_ptr_mut(0) else {
            // SAFETY: as above.
            return unsafe { bpf_ktime_get_boot_ns() };
        };
        // SAFETY: `offset` is an aligned u64 in a map value valid for this run; it is written
        // once, by compare-and-swap, and whoever loses uses the winner's value.
        unsafe {
            let mut anchor = core::ptr::read_volatile(offset);
            if anchor == 0 {
                // `| 1`: never 0 again; one nanosecond does not matter.
                let mine = bpf_ktime_get_boot_ns().wrapping_sub(ticks) | 1;
                let (seen, won) =
                    atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                        offset, 0, mine,
                    );
                anchor = if won { mine } else { seen };
            }
            ticks.wrapping_add(anchor)
        }
    }

    /// The prefilter bit of `addr`'s /24 in `bitmap` (always set for IPv6: no prefilter).
    #[inline(always)]
    fn prefiltered(&self, bitmap: u32, family: Family, addr: &[u8; 16]) -> bool {
        if family == Family::V6 {
            return true;
        }
        let (chunk, word, bit) = prefilter_position([addr[0], addr[1], addr[2], addr[3]]);
        match PREFILTER.get(prefilter_index(self.generation, bitmap, chunk)) {
            Some(bits) => bits[word] & (1 << bit) != 0,
            None => true,
        }
    }

    /// Boot time in ns, advancing once per kernel tick (4 ms at HZ=250). Budgets keep their
    /// long-run rate exactly on such a clock; within a tick, admissions clump (at most rate x
    /// tick beyond the burst). Bans and strike windows are seconds. In exchange, no helper call:
    /// `bpf_jiffies64` is inlined, `bpf_ktime_get_boot_ns` costs 30-40 ns in this VM.
    #[inline(always)]
    pub(crate) fn now(&self) -> u64 {
        let mut now = self.now.get();
        if now == 0 {
            now = self.tick_clock();
            self.now.set(now);
        }
        now
    }

    #[inline(always)]
    fn class(&self, class: u16) -> &ClassLimits {
        &self.policy.classes[class as usize & (CLASS_SLOTS - 1)]
    }

    /// The SIP rules of the trunk or access zone.
    #[inline(always)]
    pub(crate) fn sip_zone(&self, zone: Zone) -> &SipZone {
        &self.policy.sip.zones[(zone as usize).wrapping_sub(1) & 1]
    }

    /// A class's budget for requests of one method slot.
    #[inline(always)]
    pub(crate) fn method_budget(&self, class: u16, slot: usize) -> &Gcra {
        &self.policy.class_methods[class as usize & (CLASS_SLOTS - 1)]
            [slot & (METHOD_BUDGET_SLOTS - 1)]
    }

    #[inline(always)]
    pub(crate) fn dest_budget(&self, index: u8) -> &Gcra {
        &self.policy.sip.dest_budgets[index as usize & (DEST_BUDGET_SLOTS - 1)]
    }

    /// The longest scanner signature the key starts with.
    #[inline(always)]
    pub(crate) fn signature(&self, key: &Key<SignatureData>) -> Option<u16> {
        let rule: Option<&SignatureRule> = match self.generation {
            0 => own_site::<13, _>(SIGNATURES_0.get(key)),
            _ => own_site::<14, _>(SIGNATURES_1.get(key)),
        };
        rule.map(|rule| rule.id)
    }

    /// The destination rule of the longest prefix of a number's key.
    #[inline(always)]
    pub(crate) fn destination(&self, key: &Key<DestData>) -> Option<DestRule> {
        match self.generation {
            0 => own_site::<15, _>(DESTINATIONS_0.get(key)).copied(),
            _ => own_site::<16, _>(DESTINATIONS_1.get(key)).copied(),
        }
    }

    /// Spends one request of a SIP budget (a method's or a destination's) of `source`, whose
    /// state it creates when missing. `slot` indexes [`SipSourceState`] as eight TATs: methods
    /// first, then destinations.
    #[inline(always)]
    pub(crate) fn spend_sip(&self, source: &SourceKey, slot: usize, gcra: &Gcra) -> bool {
        if gcra.is_unlimited() {
            return true;
        }
        let now = self.now();
        let slot = slot & (METHOD_BUDGET_SLOTS + DEST_BUDGET_SLOTS - 1);
        if let Some(state) = SIP_SOURCES.get_ptr_mut(source) {
            // SAFETY: map value valid for this run; eight consecutive aligned u64s.
            let tat = unsafe { (state as *mut u64).add(slot) };
            return spend(tat, now, self.tick_ns(), gcra);
        }
        let mut fresh = SipSourceState::default();
        // SAFETY: within the local value.
        unsafe { *(&raw mut fresh as *mut u64).add(slot) = gcra.first(now) };
        // Lost the race to another CPU (LRU: never full): the first request is admitted anyway.
        let _ = SIP_SOURCES.insert(source, fresh, u64::from(BPF_NOEXIST));
        true
    }

    /// An over-budget request of a source on no list in the access zone: a strike towards its
    /// ban, like an over-budget packet.
    #[inline(always)]
    pub(crate) fn strike_unknown(&self, source: &SourceKey) {
        let Some(state) = SOURCES.get_ptr_mut(source) else {
            return;
        };
        let header = &self.policy.header;
        // SAFETY: map value valid for this run; a lost strike race only delays a ban.
        if let Some(ban) = strike(unsafe { &mut *state }, &header.ban, self.now(), self.mode()) {
            self.store_ban(source, ban);
        }
    }

    /// Bans a source at once for a scanner signature.
    #[inline(always)]
    pub(crate) fn ban_scanner(&self, source: &SourceKey) {
        let ban = scanner_ban(&self.policy.header.ban, self.now(), self.mode());
        self.store_ban(source, ban);
    }

    #[inline(always)]
    pub(crate) fn store_ban(&self, source: &SourceKey, ban: Ban) {
        event_stat(match BANS.insert(source, ban, 0) {
            Err(_) => event_stat::INSERT_FAILED_BANS,
            Ok(()) if ban.flags & ban_flags::WOULD_BE != 0 => event_stat::WOULD_BANS_ISSUED,
            Ok(()) => event_stat::BANS_ISSUED,
        });
    }
}

/// False when `source` is certainly not verified (its `SG_VFILTER` bit is unset).
#[inline(always)]
fn maybe_verified(source: &SourceKey) -> bool {
    let (word, bit) = verified_filter_position(source_tag(source));
    match VERIFIED_FILTER.get(word) {
        Some(bits) => bits & (1 << bit) != 0,
        None => true,
    }
}

/// Marks `source` in `SG_VFILTER` (the egress program, when it verifies it).
#[inline(always)]
pub(crate) fn mark_verified(source: &SourceKey) {
    let (word, bit) = verified_filter_position(source_tag(source));
    if let Some(bits) = VERIFIED_FILTER.get_ptr_mut(word) {
        // SAFETY: an aligned u64 of an array value valid for this run; an atomic or, whose
        // result is unused (the bpfel target has no fetching atomics).
        unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(bits, 1 << bit) };
    }
}

/// Counts an insert that failed for want of room; losing the race to another CPU that created
/// the same entry (`-EEXIST` with `BPF_NOEXIST`) is not a failure.
#[inline(always)]
fn count_failed_insert(error: i32, slot: u32) {
    const EEXIST: i32 = 17;
    if error != -EEXIST {
        event_stat(slot);
    }
}

/// Compare-and-swap on a TAT.
#[inline(always)]
fn swap(tat: *mut u64, seen: u64, next: u64) -> bool {
    // SAFETY: `tat` points at an aligned u64 in a map value valid for this program run.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
            tat, seen, next,
        )
        .1
    }
}

/// Spends one packet from a shared GCRA state with compare-and-swap: exact across CPUs.
#[inline(always)]
fn spend(tat: *mut u64, now: u64, tick: u64, gcra: &Gcra) -> bool {
    for _ in 0..3 {
        // SAFETY: `tat` points into a map value that stays valid for this program run.
        let seen = unsafe { core::ptr::read_volatile(tat) };
        let Some(next) = gcra.admit_on_tick(seen, now, tick) else {
            return false;
        };
        if swap(tat, seen, next) {
            return true;
        }
    }
    // Three races lost to other CPUs admitting the same source this instant: it was within
    // budget at our last look, so admit (over-admission of at most a packet per CPU).
    true
}

/// Gives a map lookup a code path of its own: LLVM would otherwise merge the lookups of the
/// two generations' maps into one call instruction, which the verifier, seeing two maps there,
/// compiles into an indirect call through the map's ops (measured 12 ns more per packet).
#[inline(always)]
fn own_site<const SITE: u32, T>(found: T) -> T {
    // SAFETY: moves a constant into a scratch register; touches nothing else.
    unsafe {
        core::arch::asm!("{scratch} = {site}", scratch = out(reg) _, site = const SITE, options(nomem, nostack, preserves_flags));
    }
    found
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
            Transport::Sctp => &self.policy.sctp_zone,
        };
        Zone::from_u8(table[port as usize])
    }

    #[inline(always)]
    fn maybe_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.prefiltered(PREFILTER_DENY, family, addr)
    }

    #[inline(always)]
    fn maybe_allowed(&self, family: Family, addr: &[u8; 16]) -> bool {
        self.prefiltered(PREFILTER_ALLOW, family, addr)
    }

    #[inline(always)]
    fn is_denied(&self, family: Family, addr: &[u8; 16]) -> bool {
        let present = match family {
            Family::V4 => policy_flags::DENY4,
            Family::V6 => policy_flags::DENY6,
        };
        // An empty denylist costs no lookup.
        if self.policy.header.flags & present == 0 {
            return false;
        }
        match (family, self.generation) {
            (Family::V4, 0) => own_site::<1, _>(DENY4_0.get(v4(addr))).is_some(),
            (Family::V4, _) => own_site::<2, _>(DENY4_1.get(v4(addr))).is_some(),
            (Family::V6, 0) => own_site::<3, _>(DENY6_0.get(v6(addr))).is_some(),
            (Family::V6, _) => own_site::<4, _>(DENY6_1.get(v6(addr))).is_some(),
        }
    }

    #[inline(always)]
    fn allow_class(&self, family: Family, addr: &[u8; 16]) -> u32 {
        // Hosts first: a /32 or /128 is the longest match there is.
        if family == Family::V4 {
            let mut host = [0u8; 4];
            host.copy_from_slice(&addr[..4]);
            // SAFETY: the value is read at once; an update in between gives the old or new rule.
            let rule = unsafe {
                match self.generation {
                    0 => own_site::<9, _>(ALLOW_HOSTS4_0.get(host)),
                    _ => own_site::<10, _>(ALLOW_HOSTS4_1.get(host)),
                }
            };
            if let Some(rule) = rule {
                return u32::from(rule.class);
            }
            if !self.prefiltered(PREFILTER_ALLOW_NETS, family, addr) {
                return NOT_ALLOWLISTED;
            }
        } else {
            // SAFETY: as above.
            let rule = unsafe {
                match self.generation {
                    0 => own_site::<11, _>(ALLOW_HOSTS6_0.get(addr)),
                    _ => own_site::<12, _>(ALLOW_HOSTS6_1.get(addr)),
                }
            };
            if let Some(rule) = rule {
                return u32::from(rule.class);
            }
        }
        let rule = match (family, self.generation) {
            (Family::V4, 0) => own_site::<5, _>(ALLOW4_0.get(v4(addr))),
            (Family::V4, _) => own_site::<6, _>(ALLOW4_1.get(v4(addr))),
            (Family::V6, 0) => own_site::<7, _>(ALLOW6_0.get(v6(addr))),
            (Family::V6, _) => own_site::<8, _>(ALLOW6_1.get(v6(addr))),
        };
        match rule {
            Some(rule) => u32::from(rule.class),
            None => NOT_ALLOWLISTED,
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
        // A full LRU evicts the oldest datagram; an error is counted.
        if FRAGS.insert(key, verdict, 0).is_err() {
            event_stat(event_stat::INSERT_FAILED_FRAGS);
        }
    }

    #[inline(always)]
    fn forget_fragment(&self, key: &FragKey) {
        // Nothing to forget is the common case.
        let _ = FRAGS.remove(key);
    }

    #[inline(always)]
    fn ipv6_budget_prefix(&self) -> u8 {
        self.policy.header.ipv6_budget_prefix
    }

    #[inline(always)]
    fn manual_bans_in_force(&self) -> bool {
        self.policy.header.flags & policy_flags::MANUAL_BANS != 0
    }

    #[inline(always)]
    fn may_inspect(&self, zone: Zone) -> bool {
        zone_inspects(&self.policy.header, zone)
    }

    #[inline(always)]
    fn is_banned(&self, source: &SourceKey) -> bool {
        let Some(ban) = BANS.get_ptr_mut(source) else {
            return false;
        };
        let now = self.now();
        // SAFETY: map value valid for this run; hits is an aligned u64.
        unsafe {
            if !ban_bites(&*ban, now, self.mode()) {
                let _ = BANS.remove(source);
                return false;
            }
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*ban).hits, 1);
            (*ban).last_seen_ns = now;
        }
        true
    }

    #[inline(always)]
    fn spend_peer(&self, source: &SourceKey, class: u16) -> bool {
        let gcra = self.class(class).gcra;
        if gcra.is_unlimited() {
            return true;
        }
        let now = self.now();
        if let Some(state) = PEERS.get_ptr_mut(source) {
            // SAFETY: map value valid for this run.
            return spend(
                unsafe { &raw mut (*state).tat_ns },
                now,
                self.tick_ns(),
                &gcra,
            );
        }
        let fresh = fresh_state(&gcra, class, now);
        // Another CPU may have created it meanwhile; the first packet is admitted either way.
        if let Err(error) = PEERS.insert(source, fresh, u64::from(BPF_NOEXIST)) {
            count_failed_insert(error, event_stat::INSERT_FAILED_PEERS);
        }
        true
    }

    #[inline(always)]
    fn spend_verified(&self, source: &SourceKey) -> VerifiedSpend {
        if self.policy.header.flags & policy_flags::VERIFIED == 0 {
            return VerifiedSpend::NotVerified;
        }
        if !maybe_verified(source) {
            return VerifiedSpend::NotVerified;
        }
        let Some(entry) = VERIFIED.get_ptr_mut(source) else {
            return VerifiedSpend::NotVerified;
        };
        let now = self.now();
        // SAFETY: map value valid for this run; the TAT is an aligned u64 updated by CAS.
        unsafe {
            if now >= core::ptr::read_volatile(&raw const (*entry).expires_at_ns) {
                // Its registration lapsed: an unknown source again.
                let _ = VERIFIED.remove(source);
                return VerifiedSpend::NotVerified;
            }
            let gcra = self.class(self.policy.feedback.verified_class).gcra;
            if gcra.is_unlimited() || spend(&raw mut (*entry).tat_ns, now, self.tick_ns(), &gcra) {
                VerifiedSpend::Admitted
            } else {
                VerifiedSpend::OverBudget
            }
        }
    }

    #[inline(always)]
    fn lockdown(&self) -> Lockdown {
        Lockdown::from_flags(self.policy.header.flags)
    }

    #[inline(always)]
    fn unverified_may_send(&self) -> bool {
        !self.gate_shut() || self.gate_admits.get()
    }

    #[inline(always)]
    fn verified_class(&self) -> u16 {
        self.policy.feedback.verified_class & sipguard_common::abi::CLASS_ID_MASK
    }

    #[inline(always)]
    fn spend_unknown(&self, source: &SourceKey) -> Spend {
        let header = &self.policy.header;
        let gcra = self.class(header.access_class).gcra;
        if gcra.is_unlimited() {
            return Spend::Admitted;
        }
        let now = self.now();
        if let Some(state) = SOURCES.get_ptr_mut(source) {
            // SAFETY: map value valid for this run.
            if spend(
                unsafe { &raw mut (*state).tat_ns },
                now,
                self.tick_ns(),
                &gcra,
            ) {
                return Spend::Admitted;
            }
            // SAFETY: as above. Strike bookkeeping races only with the same source on another
            // CPU; a lost strike only delays a ban.
            if let Some(ban) = strike(unsafe { &mut *state }, &header.ban, now, self.mode()) {
                self.store_ban(source, ban);
            }
            return Spend::OverBudget;
        }
        // A source without state: creating it spends the new-source budget of this CPU.
        let Some(new_tat) = NEW_SOURCES.get_ptr_mut(0) else {
            return Spend::NoNewSource;
        };
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe {
            match header
                .new_sources
                .admit_on_tick(*new_tat, now, self.tick_ns())
            {
                Some(next) => *new_tat = next,
                None => return Spend::NoNewSource,
            }
        }
        let fresh = fresh_state(&gcra, header.access_class, now);
        if let Err(error) = SOURCES.insert(source, fresh, u64::from(BPF_NOEXIST)) {
            count_failed_insert(error, event_stat::INSERT_FAILED_SOURCES);
        }
        Spend::Admitted
    }
}
