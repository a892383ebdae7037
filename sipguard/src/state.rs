//! The live state of one filtered interface: maps and the XDP link pinned in bpffs under
//! `<pin-root>/<iface>[@<netns>]/`. It outlives the controller; every command opens it again.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key};
use sipguard_common::abi::{
    self, AuthState, Ban, COUNTER_SLOTS, COUNTRY_SLOTS, Counter, DestData, DestRule, FragKey,
    FragVerdict, GENERATIONS, Ipv4Data, Ipv6Data, Meta, PREFILTER_ALLOW, PREFILTER_ALLOW_NETS,
    PREFILTER_CHUNKS, PREFILTER_DENY, PrefilterChunk, RULE_SLOTS, RuleValue, SIGNATURE_SLOTS,
    SIP_ZONES, SignatureData, SignatureRule, SipMethod, SourceKey, SourceState, VerifiedSource,
    Zone, answer_stat, dest_verdict, event_stat, map_name, method_index, prefilter_index,
};

use crate::policy::{
    Prefix,
    sip_tables::{SipTables, TrieKey},
    zeroed_policy,
};

pub use crate::pins::{DEFAULT_PIN_ROOT, Lock, Target, ensure_bpffs};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sipguard has no state for {label} under {root} (attach it first)", root = .root.display())]
    NotAttached { label: String, root: PathBuf },
    #[error(transparent)]
    Compat(#[from] crate::compat::CompatError),
    #[error(transparent)]
    Pins(#[from] crate::pins::PinError),
    #[error(transparent)]
    Name(#[from] crate::pins::NameError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("{what}: {source}")]
    Map {
        what: String,
        #[source]
        source: MapError,
    },
}

fn map_err(what: impl Into<String>) -> impl FnOnce(MapError) -> StateError {
    let what = what.into();
    move |source| StateError::Map { what, source }
}

use crate::{
    journal::{Recorder, Who, raw::bytes_of},
    sys::lookup_into,
    time::boot_now_ns,
};

fn open_pinned<T>(pin: &Path) -> Result<T, StateError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let data = MapData::from_pin(pin).map_err(map_err(format!("open {}", pin.display())))?;
    let map = Map::from_map_data(data).map_err(map_err(format!("open {}", pin.display())))?;
    T::try_from(map).map_err(map_err(format!("open {}", pin.display())))
}

/// A map deletion: `Ok(false)` when the key was not there.
fn removed(
    result: Result<(), MapError>,
    what: impl FnOnce() -> String,
) -> Result<bool, StateError> {
    match result {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(false)
        }
        Err(source) => Err(StateError::Map {
            what: what(),
            source,
        }),
    }
}

/// The state of one interface, locked for a change: every write to live state goes through it,
/// and only a [`Lock`] gives one. Taking it sweeps expired bans, so every change (CLI, daemon,
/// later the fleet sync) also keeps the ban table clean. Reads go through [`State`] (`Deref`).
pub struct LiveState {
    state: State,
    _lock: Lock,
    /// While a journaled change runs ([`LiveState::journaled`]): notes every write first.
    recorder: Option<Recorder>,
    last_entry: Option<u64>,
}

impl LiveState {
    /// Waits for the interface's lock, opens its state and sweeps expired bans.
    pub fn lock(target: &Target) -> Result<LiveState, StateError> {
        if !crate::pins::check_dir(target)? {
            return Err(StateError::NotAttached {
                label: target.label(),
                root: target.pin_root().to_path_buf(),
            });
        }
        let lock = Lock::acquire(&target.dir())?;
        let mut live = LiveState::with_lock(State::open(target)?, lock);
        // A change a dead controller left half made is journaled before anything else.
        if let Some(entry) = crate::journal::record::recover(target)? {
            log::warn!(
                "{}: journal #{} ({}) was interrupted; journaled with the {} writes it made",
                target.label(),
                entry.id,
                entry.action,
                entry.writes.len()
            );
        }
        let now = boot_now_ns();
        live.sweep_expired_bans(now)?;
        live.sweep_expired_verified(now)?;
        Ok(live)
    }

    /// State the caller opened under `lock` (the loader, which creates the maps).
    pub(crate) fn with_lock(state: State, lock: Lock) -> LiveState {
        LiveState {
            state,
            _lock: lock,
            recorder: None,
            last_entry: None,
        }
    }

    /// Runs `change` as one journal entry: `action` (`allow add`...) by `who`. Every write it
    /// makes is journaled with the value it replaced; a change that fails part-way is
    /// journaled as failed with the writes it made. A change that writes nothing leaves no
    /// entry.
    pub fn journaled<T, E>(
        &mut self,
        action: &str,
        who: &Who,
        change: impl FnOnce(&mut LiveState) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StateError> + std::fmt::Display,
    {
        let generation = self.active_generation()?;
        let recorder = Recorder::begin(&self.target, action, who.clone(), generation)
            .map_err(StateError::from)?;
        self.recorder = Some(recorder);
        let result = change(self);
        let recorder = self.recorder.take().expect("recording since the start");
        let finished = recorder.finish(result.as_ref().err().map(ToString::to_string));
        match (result, finished) {
            (Ok(value), Ok(entry)) => {
                self.last_entry = entry.map(|entry| entry.id);
                Ok(value)
            }
            (Err(error), _) => Err(error),
            (Ok(_), Err(error)) => Err(StateError::from(error).into()),
        }
    }

    /// The journal entry of the last change [`LiveState::journaled`] made (none if it wrote
    /// nothing).
    pub fn last_entry(&self) -> Option<u64> {
        self.last_entry
    }

    /// The recorder of the journaled change running now (`undo` writes through it).
    pub fn recorder(&mut self) -> Option<&mut Recorder> {
        self.recorder.as_mut()
    }

    /// Journals a write about to be made, while a journaled change runs.
    fn note(&mut self, map: &str, key: &[u8], after: Option<&[u8]>) -> Result<(), StateError> {
        if let Some(recorder) = &mut self.recorder {
            recorder.note(map, key, after)?;
        }
        Ok(())
    }

    /// Gives up the lock, keeping the read handle.
    pub fn into_state(self) -> State {
        self.state
    }

    pub fn set_meta(&mut self, meta: &Meta) -> Result<(), StateError> {
        self.note(map_name::META, &0u32.to_ne_bytes(), Some(bytes_of(meta)))?;
        self.state
            .meta
            .set(0, meta, 0)
            .map_err(map_err("write SG_META"))
    }

    /// Makes `generation` the one the data plane reads: a single 4-byte store.
    pub fn activate(&mut self, generation: u32) -> Result<(), StateError> {
        debug_assert!(generation < GENERATIONS);
        self.note(
            map_name::ACTIVE,
            &0u32.to_ne_bytes(),
            Some(&generation.to_ne_bytes()),
        )?;
        self.state
            .active
            .set(0, generation, 0)
            .map_err(map_err("write SG_ACTIVE"))
    }

    pub fn set_policy(&mut self, generation: u32, value: &abi::Policy) -> Result<(), StateError> {
        self.note(
            map_name::POLICY,
            &generation.to_ne_bytes(),
            Some(bytes_of(value)),
        )?;
        self.set_policy_unjournaled(generation, value)
    }

    /// For state derived from other state (the manual-ban flag follows the ban table), which
    /// `undo` recomputes instead of restoring.
    fn set_policy_unjournaled(
        &mut self,
        generation: u32,
        value: &abi::Policy,
    ) -> Result<(), StateError> {
        self.state
            .policy
            .set(generation, value, 0)
            .map_err(map_err("write SG_POLICY"))
    }

    /// Adds or replaces one entry.
    pub fn insert_rule(
        &mut self,
        generation: u32,
        list: List,
        prefix: Prefix,
        value: RuleValue,
    ) -> Result<(), StateError> {
        let g = generation as usize & 1;
        let (map, key) = rule_entry(list, prefix, g);
        self.note(map, &key, Some(bytes_of(&value)))?;
        let what = || format!("add {prefix} to the {}", list.name());
        match (list, prefix) {
            (List::Allow, Prefix::V4 { len: 32, addr }) => {
                self.state.allow_hosts4[g].insert(addr, value, 0)
            }
            (List::Allow, Prefix::V4 { len, addr }) => {
                self.state.allow4[g].insert(&Key::new(len.into(), addr), value, 0)
            }
            (List::Allow, Prefix::V6 { len: 128, addr }) => {
                self.state.allow_hosts6[g].insert(addr, value, 0)
            }
            (List::Allow, Prefix::V6 { len, addr }) => {
                self.state.allow6[g].insert(&Key::new(len.into(), addr), value, 0)
            }
            (List::Deny, Prefix::V4 { len, addr }) => {
                self.state.deny4[g].insert(&Key::new(len.into(), addr), value, 0)
            }
            (List::Deny, Prefix::V6 { len, addr }) => {
                self.state.deny6[g].insert(&Key::new(len.into(), addr), value, 0)
            }
        }
        .map_err(map_err(what()))
    }

    /// Removes one entry; `Ok(false)` when it was not there.
    pub fn remove_rule(
        &mut self,
        generation: u32,
        list: List,
        prefix: Prefix,
    ) -> Result<bool, StateError> {
        let g = generation as usize & 1;
        let (map, key) = rule_entry(list, prefix, g);
        self.note(map, &key, None)?;
        let result = match (list, prefix) {
            (List::Allow, Prefix::V4 { len: 32, addr }) => self.state.allow_hosts4[g].remove(&addr),
            (List::Allow, Prefix::V4 { len, addr }) => {
                self.state.allow4[g].remove(&Key::new(len.into(), addr))
            }
            (List::Allow, Prefix::V6 { len: 128, addr }) => {
                self.state.allow_hosts6[g].remove(&addr)
            }
            (List::Allow, Prefix::V6 { len, addr }) => {
                self.state.allow6[g].remove(&Key::new(len.into(), addr))
            }
            (List::Deny, Prefix::V4 { len, addr }) => {
                self.state.deny4[g].remove(&Key::new(len.into(), addr))
            }
            (List::Deny, Prefix::V6 { len, addr }) => {
                self.state.deny6[g].remove(&Key::new(len.into(), addr))
            }
        };
        removed(result, || {
            format!("remove {prefix} from the {}", list.name())
        })
    }

    /// Makes a list of one generation equal to `desired`, touching only what differs.
    pub fn sync_rules(
        &mut self,
        generation: u32,
        list: List,
        desired: &BTreeMap<Prefix, RuleValue>,
    ) -> Result<(), StateError> {
        let current = self.rules(generation, list)?;
        for prefix in current.keys().filter(|p| !desired.contains_key(p)) {
            self.remove_rule(generation, list, *prefix)?;
        }
        for (prefix, value) in desired {
            if current.get(prefix) != Some(value) {
                self.insert_rule(generation, list, *prefix, *value)?;
            }
        }
        Ok(())
    }

    /// Makes a generation's signature and destination tries equal to the compiled ones.
    pub fn sync_sip(&mut self, generation: u32, tables: &SipTables) -> Result<(), StateError> {
        let g = generation as usize & 1;
        let current = self.signatures(generation)?;
        for key in current
            .keys()
            .filter(|key| !tables.signatures.contains_key(key))
        {
            self.note(map_name::SIGNATURES[g], &trie_key(key.0, &key.1), None)?;
            self.state.signatures[g]
                .remove(&Key::new(key.0, key.1))
                .map_err(map_err("remove from SG_SIGS"))?;
        }
        for (key, value) in &tables.signatures {
            if current.get(key) != Some(value) {
                let raw = trie_key(key.0, &key.1);
                self.note(map_name::SIGNATURES[g], &raw, Some(bytes_of(value)))?;
                self.state.signatures[g]
                    .insert(&Key::new(key.0, key.1), value, 0)
                    .map_err(map_err("insert into SG_SIGS"))?;
            }
        }
        let current = self.destinations(generation)?;
        for key in current
            .keys()
            .filter(|key| !tables.destinations.contains_key(key))
        {
            self.note(map_name::DESTINATIONS[g], &trie_key(key.0, &key.1), None)?;
            self.state.destinations[g]
                .remove(&Key::new(key.0, key.1))
                .map_err(map_err("remove from SG_DEST"))?;
        }
        for (key, value) in &tables.destinations {
            if current.get(key) != Some(value) {
                let raw = trie_key(key.0, &key.1);
                self.note(map_name::DESTINATIONS[g], &raw, Some(bytes_of(value)))?;
                self.state.destinations[g]
                    .insert(&Key::new(key.0, key.1), value, 0)
                    .map_err(map_err("insert into SG_DEST"))?;
            }
        }
        Ok(())
    }

    /// Removes the bans that expired by `now_ns` (boot time). The data plane removes a ban only
    /// when its source sends again, so without this a table of one-off scanners fills up and
    /// refuses new bans. Each entry is read again just before its removal, so a ban the data
    /// plane re-issued for the same source meanwhile stays.
    pub fn sweep_expired_bans(&mut self, now_ns: u64) -> Result<usize, StateError> {
        self.remove_bans_where(|ban| ban.expires_at_ns <= now_ns)
    }

    /// Removes the verified sources whose registration expired by `now_ns` (boot time). The
    /// data plane no longer treats them as verified, but only a new 200 OK would reuse their
    /// entry: without this the table of a busy access zone fills up and refuses new
    /// verifications. Each entry is read again just before its removal, so one the SBC
    /// refreshed meanwhile stays.
    pub fn sweep_expired_verified(&mut self, now_ns: u64) -> Result<usize, StateError> {
        let keys: Vec<SourceKey> = self
            .verified
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("read SG_VERIFIED"))?;
        let mut swept = 0;
        for key in keys {
            let expired = self
                .state
                .verified
                .get(&key, 0)
                .is_ok_and(|entry| entry.expires_at_ns <= now_ns);
            if expired
                && removed(self.state.verified.remove(&key), || {
                    "remove from SG_VERIFIED".into()
                })?
            {
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Writes a source's auth-failure state (`SG_AUTH`).
    pub fn set_auth_state(&mut self, key: &SourceKey, value: &AuthState) -> Result<(), StateError> {
        self.note(map_name::AUTH, bytes_of(key), Some(bytes_of(value)))?;
        self.state
            .auth
            .insert(key, value, 0)
            .map_err(map_err("write SG_AUTH"))
    }

    /// Removes every would-be ban (issued in monitor mode): they must never bite when enforcing.
    pub fn discard_would_be_bans(&mut self) -> Result<usize, StateError> {
        self.remove_bans_where(|ban| ban.flags & abi::ban_flags::WOULD_BE != 0)
    }

    fn remove_bans_where(&mut self, doomed: impl Fn(&Ban) -> bool) -> Result<usize, StateError> {
        let keys: Vec<SourceKey> = self
            .bans
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("read SG_BANS"))?;
        let mut removed = 0;
        for key in keys {
            let still_doomed = self.state.bans.get(&key, 0).is_ok_and(|ban| doomed(&ban));
            if still_doomed && self.remove_ban(&key)? {
                removed += 1;
            }
        }
        if removed > 0 {
            self.refresh_manual_ban_flag()?;
        }
        Ok(removed)
    }

    /// Stores a ban. A manual one raises `policy_flags::MANUAL_BANS` first, so that allowlisted
    /// sources, which only manual bans apply to, are looked up from the first packet on.
    pub fn insert_ban(&mut self, key: &SourceKey, ban: &Ban) -> Result<(), StateError> {
        if ban.reason == abi::BanReason::Manual as u8 {
            self.set_manual_ban_flag(true)?;
        }
        self.note(map_name::BANS, bytes_of(key), Some(bytes_of(ban)))?;
        self.state
            .bans
            .insert(key, ban, 0)
            .map_err(map_err("write SG_BANS"))
    }

    /// Whether the ban table holds a manual ban (expired ones count until swept).
    pub fn has_manual_bans(&self) -> Result<bool, StateError> {
        Ok(self
            .bans()?
            .iter()
            .any(|(_, ban)| ban.reason == abi::BanReason::Manual as u8))
    }

    /// Makes `policy_flags::MANUAL_BANS` of the running policy match the ban table (after bans
    /// were lifted or swept).
    pub fn refresh_manual_ban_flag(&mut self) -> Result<(), StateError> {
        let any = self.has_manual_bans()?;
        self.set_manual_ban_flag(any)
    }

    fn set_manual_ban_flag(&mut self, on: bool) -> Result<(), StateError> {
        let active = self.active_generation()?;
        let mut value = self.policy(active)?;
        let flags = if on {
            value.header.flags | abi::policy_flags::MANUAL_BANS
        } else {
            value.header.flags & !abi::policy_flags::MANUAL_BANS
        };
        if flags != value.header.flags {
            value.header.flags = flags;
            self.set_policy_unjournaled(active, &value)?;
        }
        Ok(())
    }

    /// Removes a ban; `Ok(false)` when there was none.
    pub fn remove_ban(&mut self, key: &SourceKey) -> Result<bool, StateError> {
        self.note(map_name::BANS, bytes_of(key), None)?;
        removed(self.state.bans.remove(key), || "remove from SG_BANS".into())
    }

    /// Writes the chunks of a generation's prefilter bitmap that differ from `desired`.
    pub fn sync_prefilter(
        &mut self,
        generation: u32,
        bitmap: Prefilter,
        desired: &[Box<PrefilterChunk>],
    ) -> Result<(), StateError> {
        let current = self.prefilter(generation, bitmap)?;
        for (chunk, (now, wanted)) in (0u32..).zip(current.iter().zip(desired)) {
            if now != wanted {
                let index = prefilter_index(generation, bitmap.index(), chunk);
                self.note(
                    map_name::PREFILTER,
                    &index.to_ne_bytes(),
                    Some(bytes_of(wanted.as_ref())),
                )?;
                self.state
                    .prefilter
                    .set(
                        prefilter_index(generation, bitmap.index(), chunk),
                        wanted.as_ref(),
                        0,
                    )
                    .map_err(map_err("write SG_PREFILTER"))?;
            }
        }
        Ok(())
    }
}

/// The map and raw key of an allow/deny entry of generation `g`.
fn rule_entry(list: List, prefix: Prefix, g: usize) -> (&'static str, Vec<u8>) {
    match (list, prefix) {
        (List::Allow, Prefix::V4 { len: 32, addr }) => (map_name::ALLOW_HOSTS4[g], addr.to_vec()),
        (List::Allow, Prefix::V4 { len, addr }) => {
            (map_name::ALLOW4[g], trie_key(len.into(), &addr))
        }
        (List::Allow, Prefix::V6 { len: 128, addr }) => (map_name::ALLOW_HOSTS6[g], addr.to_vec()),
        (List::Allow, Prefix::V6 { len, addr }) => {
            (map_name::ALLOW6[g], trie_key(len.into(), &addr))
        }
        (List::Deny, Prefix::V4 { len, addr }) => (map_name::DENY4[g], trie_key(len.into(), &addr)),
        (List::Deny, Prefix::V6 { len, addr }) => (map_name::DENY6[g], trie_key(len.into(), &addr)),
    }
}

/// An LPM trie key as the kernel stores it: the prefix length, then the data.
fn trie_key<K: aya::Pod>(prefix_len: u32, data: &K) -> Vec<u8> {
    let mut key = prefix_len.to_ne_bytes().to_vec();
    key.extend_from_slice(bytes_of(data));
    key
}

impl std::ops::Deref for LiveState {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

/// The allow or deny list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    Allow,
    Deny,
}

impl List {
    pub const fn name(self) -> &'static str {
        match self {
            List::Allow => "allowlist",
            List::Deny => "denylist",
        }
    }

    /// The subcommand that edits it.
    pub const fn command(self) -> &'static str {
        match self {
            List::Allow => "allow",
            List::Deny => "deny",
        }
    }
}

/// The IPv4 prefilter bitmaps of `SG_PREFILTER` (`sipguard_common::abi::PREFILTER_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefilter {
    /// Every allowlist entry.
    Allow,
    /// Allowlist networks (not /32 hosts): where the trie must still be walked.
    AllowNets,
    /// Every denylist entry.
    Deny,
}

impl Prefilter {
    /// The bitmaps that must cover every entry of `list`.
    pub fn of(list: List) -> &'static [Prefilter] {
        match list {
            List::Allow => &[Prefilter::Allow, Prefilter::AllowNets],
            List::Deny => &[Prefilter::Deny],
        }
    }

    /// Whether this bitmap marks `prefix`.
    pub fn covers(self, prefix: &Prefix) -> bool {
        self != Prefilter::AllowNets || !prefix.is_v4_host()
    }

    const fn index(self) -> u32 {
        match self {
            Prefilter::Allow => PREFILTER_ALLOW,
            Prefilter::AllowNets => PREFILTER_ALLOW_NETS,
            Prefilter::Deny => PREFILTER_DENY,
        }
    }
}

type Trie4 = LpmTrie<MapData, Ipv4Data, RuleValue>;
type Trie6 = LpmTrie<MapData, Ipv6Data, RuleValue>;

/// Typed handles on the pinned maps of one interface.
pub struct State {
    pub target: Target,
    meta: Array<MapData, Meta>,
    active: Array<MapData, u32>,
    policy: Array<MapData, abi::Policy>,
    /// The same map, for reads straight into the heap ([`lookup_into`]).
    policy_fd: MapData,
    allow4: [Trie4; 2],
    allow_hosts4: [HashMap<MapData, Ipv4Data, RuleValue>; 2],
    allow_hosts6: [HashMap<MapData, Ipv6Data, RuleValue>; 2],
    allow6: [Trie6; 2],
    deny4: [Trie4; 2],
    deny6: [Trie6; 2],
    counters: PerCpuArray<MapData, Counter>,
    sources: HashMap<MapData, SourceKey, SourceState>,
    peers: HashMap<MapData, SourceKey, SourceState>,
    bans: HashMap<MapData, SourceKey, Ban>,
    event_stats: PerCpuArray<MapData, u64>,
    methods: PerCpuArray<MapData, u64>,
    frags: HashMap<MapData, FragKey, FragVerdict>,
    prefilter: Array<MapData, PrefilterChunk>,
    signatures: [LpmTrie<MapData, SignatureData, SignatureRule>; 2],
    destinations: [LpmTrie<MapData, DestData, DestRule>; 2],
    signature_hits: PerCpuArray<MapData, u64>,
    rule_hits: PerCpuArray<MapData, u64>,
    destination_stats: PerCpuArray<MapData, u64>,
    verified: HashMap<MapData, SourceKey, VerifiedSource>,
    /// An LRU hash (aya's `HashMap` opens both kinds).
    auth: HashMap<MapData, SourceKey, AuthState>,
    answer_stats: PerCpuArray<MapData, u64>,
}

/// Event and table accounting summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventStats {
    pub emitted: u64,
    pub suppressed: u64,
    pub lost: u64,
    /// Automatic bans issued while enforcing.
    pub bans_issued: u64,
    /// Automatic bans monitor mode recorded instead of issuing.
    pub would_bans_issued: u64,
    /// Inserts the data plane could not make, by table.
    pub insert_failures: InsertFailures,
    /// Packets passed because a stage's tail call failed (its program missing).
    pub tail_call_failures: u64,
}

/// Entries the data plane wanted to create and could not (the table was full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InsertFailures {
    pub bans: u64,
    pub sources: u64,
    pub peers: u64,
    pub fragments: u64,
}

impl InsertFailures {
    /// (map name, failures) for every table.
    pub fn by_map(&self) -> [(&'static str, u64); 4] {
        [
            (map_name::BANS, self.bans),
            (map_name::SOURCES, self.sources),
            (map_name::PEERS, self.peers),
            (map_name::FRAGS, self.fragments),
        ]
    }
}

/// Entries and capacity of a bounded map (for "map fill"). The list maps are those of the
/// active generation, named without their generation suffix (`SG_ALLOW4`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MapFill {
    pub name: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

impl MapFill {
    /// Entries as a share of the capacity.
    pub fn ratio(&self) -> f64 {
        self.entries as f64 / f64::from(self.capacity.max(1))
    }
}

impl State {
    /// Opens the state of an interface after checking it is compatible.
    pub fn open(target: &Target) -> Result<State, StateError> {
        if !crate::compat::check_compatible(target)? {
            return Err(StateError::NotAttached {
                label: target.label(),
                root: target.pin_root().to_path_buf(),
            });
        }
        Self::open_unchecked(target)
    }

    /// Opens maps that the loader just created or checked.
    pub(crate) fn open_unchecked(target: &Target) -> Result<State, StateError> {
        let pin = |name: &str| target.map_pin(name);
        let pair4 = |names: [&str; 2]| -> Result<[Trie4; 2], StateError> {
            Ok([open_pinned(&pin(names[0]))?, open_pinned(&pin(names[1]))?])
        };
        let pair6 = |names: [&str; 2]| -> Result<[Trie6; 2], StateError> {
            Ok([open_pinned(&pin(names[0]))?, open_pinned(&pin(names[1]))?])
        };
        Ok(State {
            target: target.clone(),
            meta: open_pinned(&pin(map_name::META))?,
            active: open_pinned(&pin(map_name::ACTIVE))?,
            policy: open_pinned(&pin(map_name::POLICY))?,
            // The pinned map's own descriptor: a descriptor by map id would need CAP_SYS_ADMIN.
            policy_fd: MapData::from_pin(pin(map_name::POLICY))
                .map_err(map_err("open SG_POLICY"))?,
            allow4: pair4(map_name::ALLOW4)?,
            allow_hosts4: [
                open_pinned(&pin(map_name::ALLOW_HOSTS4[0]))?,
                open_pinned(&pin(map_name::ALLOW_HOSTS4[1]))?,
            ],
            allow_hosts6: [
                open_pinned(&pin(map_name::ALLOW_HOSTS6[0]))?,
                open_pinned(&pin(map_name::ALLOW_HOSTS6[1]))?,
            ],
            allow6: pair6(map_name::ALLOW6)?,
            deny4: pair4(map_name::DENY4)?,
            deny6: pair6(map_name::DENY6)?,
            counters: open_pinned(&pin(map_name::COUNTERS))?,
            sources: open_pinned(&pin(map_name::SOURCES))?,
            peers: open_pinned(&pin(map_name::PEERS))?,
            bans: open_pinned(&pin(map_name::BANS))?,
            event_stats: open_pinned(&pin(map_name::EVENT_STATS))?,
            methods: open_pinned(&pin(map_name::METHODS))?,
            frags: open_pinned(&pin(map_name::FRAGS))?,
            prefilter: open_pinned(&pin(map_name::PREFILTER))?,
            signatures: [
                open_pinned(&pin(map_name::SIGNATURES[0]))?,
                open_pinned(&pin(map_name::SIGNATURES[1]))?,
            ],
            destinations: [
                open_pinned(&pin(map_name::DESTINATIONS[0]))?,
                open_pinned(&pin(map_name::DESTINATIONS[1]))?,
            ],
            signature_hits: open_pinned(&pin(map_name::SIGNATURE_HITS))?,
            rule_hits: open_pinned(&pin(map_name::RULE_HITS))?,
            destination_stats: open_pinned(&pin(map_name::DESTINATION_STATS))?,
            verified: open_pinned(&pin(map_name::VERIFIED))?,
            auth: open_pinned(&pin(map_name::AUTH))?,
            answer_stats: open_pinned(&pin(map_name::ANSWER_STATS))?,
        })
    }

    /// The scanner signatures of a generation, by trie key.
    pub fn signatures(
        &self,
        generation: u32,
    ) -> Result<BTreeMap<TrieKey<SignatureData>, SignatureRule>, StateError> {
        let mut entries = BTreeMap::new();
        for entry in &self.signatures[generation as usize & 1] {
            let (key, value) = entry.map_err(map_err("read SG_SIGS"))?;
            entries.insert((key.prefix_len(), key.data()), value);
        }
        Ok(entries)
    }

    /// The destination prefixes of a generation, by trie key.
    pub fn destinations(
        &self,
        generation: u32,
    ) -> Result<BTreeMap<TrieKey<DestData>, DestRule>, StateError> {
        let mut entries = BTreeMap::new();
        for entry in &self.destinations[generation as usize & 1] {
            let (key, value) = entry.map_err(map_err("read SG_DEST"))?;
            entries.insert((key.prefix_len(), key.data()), value);
        }
        Ok(entries)
    }

    /// Per-CPU counters summed, one per slot.
    fn summed(
        map: &PerCpuArray<MapData, u64>,
        slots: u32,
        what: &str,
    ) -> Result<Vec<u64>, StateError> {
        (0..slots)
            .map(|slot| {
                map.get(&slot, 0)
                    .map(|values| values.iter().sum())
                    .map_err(map_err(format!("read {what}")))
            })
            .collect()
    }

    /// Matches per signature id.
    pub fn signature_hits(&self) -> Result<Vec<u64>, StateError> {
        Self::summed(
            &self.signature_hits,
            SIGNATURE_SLOTS,
            map_name::SIGNATURE_HITS,
        )
    }

    /// INVITEs per destination rule id.
    pub fn rule_hits(&self) -> Result<Vec<u64>, StateError> {
        Self::summed(&self.rule_hits, RULE_SLOTS, map_name::RULE_HITS)
    }

    /// INVITEs by zone, verdict and country (`abi::dest_stat_index`).
    pub fn destination_stats(&self) -> Result<Vec<u64>, StateError> {
        Self::summed(
            &self.destination_stats,
            SIP_ZONES * dest_verdict::SLOTS * COUNTRY_SLOTS,
            map_name::DESTINATION_STATS,
        )
    }

    /// The SBC's answers as the egress program counted them, by `abi::answer_stat` slot.
    pub fn answer_stats(&self) -> Result<Vec<u64>, StateError> {
        Self::summed(
            &self.answer_stats,
            answer_stat::SLOTS,
            map_name::ANSWER_STATS,
        )
    }

    /// Every verified source, expired ones (not yet swept) included.
    pub fn verified_sources(&self) -> Result<Vec<(SourceKey, VerifiedSource)>, StateError> {
        self.verified
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("read SG_VERIFIED"))
    }

    /// The verified entry of one source (expired or not).
    pub fn verified_source(&self, key: &SourceKey) -> Option<VerifiedSource> {
        self.verified.get(key, 0).ok()
    }

    /// Every source with auth-failure state (`SG_AUTH`, an LRU: the least recent go first).
    pub fn auth_states(&self) -> Result<Vec<(SourceKey, AuthState)>, StateError> {
        self.auth
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("read SG_AUTH"))
    }

    /// The auth-failure state of one source.
    pub fn auth_state(&self, key: &SourceKey) -> Option<AuthState> {
        self.auth.get(key, 0).ok()
    }

    /// Whether `addr` is on the allowlist of `generation`, looked up as the data plane does
    /// (hosts, then the longest matching prefix).
    pub fn allowlisted(&self, generation: u32, addr: std::net::IpAddr) -> Result<bool, StateError> {
        let g = generation as usize & 1;
        let found = |result: Result<RuleValue, MapError>| match result {
            Ok(_) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(source) => Err(StateError::Map {
                what: "read the allowlist".into(),
                source,
            }),
        };
        match addr {
            std::net::IpAddr::V4(v4) => {
                let octets = v4.octets();
                Ok(found(self.allow_hosts4[g].get(&octets, 0))?
                    || found(self.allow4[g].get(&Key::new(32, octets), 0))?)
            }
            std::net::IpAddr::V6(v6) => {
                let octets = v6.octets();
                Ok(found(self.allow_hosts6[g].get(&octets, 0))?
                    || found(self.allow6[g].get(&Key::new(128, octets), 0))?)
            }
        }
    }

    pub fn meta(&self) -> Result<Meta, StateError> {
        self.meta.get(&0, 0).map_err(map_err("read SG_META"))
    }

    /// The policy generation the data plane reads (0 or 1).
    pub fn active_generation(&self) -> Result<u32, StateError> {
        Ok(self.active.get(&0, 0).map_err(map_err("read SG_ACTIVE"))? & 1)
    }

    pub fn policy(&self, generation: u32) -> Result<Box<abi::Policy>, StateError> {
        let mut value = zeroed_policy();
        lookup_into(self.policy_fd.fd(), generation, &mut *value)
            .map_err(map_err("read SG_POLICY"))?;
        Ok(value)
    }

    /// Every entry of a list in one generation.
    pub fn rules(
        &self,
        generation: u32,
        list: List,
    ) -> Result<BTreeMap<Prefix, RuleValue>, StateError> {
        let g = generation as usize & 1;
        let (v4, v6) = match list {
            List::Allow => (&self.allow4[g], &self.allow6[g]),
            List::Deny => (&self.deny4[g], &self.deny6[g]),
        };
        let mut rules = BTreeMap::new();
        for entry in v4 {
            let (key, value) = entry.map_err(map_err(format!("read {}", list.name())))?;
            rules.insert(
                Prefix::V4 {
                    len: key.prefix_len() as u8,
                    addr: key.data(),
                },
                value,
            );
        }
        if list == List::Allow {
            for entry in &self.allow_hosts4[g] {
                let (addr, value) = entry.map_err(map_err(format!("read {}", list.name())))?;
                rules.insert(Prefix::V4 { len: 32, addr }, value);
            }
            for entry in &self.allow_hosts6[g] {
                let (addr, value) = entry.map_err(map_err(format!("read {}", list.name())))?;
                rules.insert(Prefix::V6 { len: 128, addr }, value);
            }
        }
        for entry in v6 {
            let (key, value) = entry.map_err(map_err(format!("read {}", list.name())))?;
            rules.insert(
                Prefix::V6 {
                    len: key.prefix_len() as u8,
                    addr: key.data(),
                },
                value,
            );
        }
        Ok(rules)
    }

    /// Counters summed over CPUs, indexed like `SG_COUNTERS`.
    pub fn counters(&self) -> Result<Vec<Counter>, StateError> {
        let mut totals = vec![Counter::default(); COUNTER_SLOTS];
        for (index, total) in totals.iter_mut().enumerate() {
            let per_cpu = self
                .counters
                .get(&(index as u32), 0)
                .map_err(map_err("read SG_COUNTERS"))?;
            for counter in per_cpu.iter() {
                total.packets += counter.packets;
                total.bytes += counter.bytes;
            }
        }
        Ok(totals)
    }

    /// Every ban, expired and would-be ones included.
    /// The ban of one source, if any (expired or not).
    pub fn ban_of(&self, key: &SourceKey) -> Result<Option<Ban>, StateError> {
        match self.bans.get(key, 0) {
            Ok(ban) => Ok(Some(ban)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(None)
            }
            Err(source) => Err(StateError::Map {
                what: "read SG_BANS".into(),
                source,
            }),
        }
    }

    pub fn bans(&self) -> Result<Vec<(SourceKey, Ban)>, StateError> {
        self.bans
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("read SG_BANS"))
    }

    /// Budget state of an unknown source in the access zone.
    pub fn source_state(&self, key: &SourceKey) -> Option<SourceState> {
        self.sources.get(key, 0).ok()
    }

    /// Budget state of an allowlisted source.
    pub fn peer_state(&self, key: &SourceKey) -> Option<SourceState> {
        self.peers.get(key, 0).ok()
    }

    /// Entries in the per-source maps: (unknown sources, allowlisted peers).
    pub fn budget_entries(&self) -> (usize, usize) {
        (self.sources.keys().count(), self.peers.keys().count())
    }

    pub fn event_stats(&self) -> Result<EventStats, StateError> {
        let sum = |slot: u32| -> Result<u64, StateError> {
            Ok(self
                .event_stats
                .get(&slot, 0)
                .map_err(map_err("read SG_EVSTATS"))?
                .iter()
                .sum())
        };
        Ok(EventStats {
            emitted: sum(event_stat::EMITTED)?,
            suppressed: sum(event_stat::SUPPRESSED)?,
            lost: sum(event_stat::LOST)?,
            bans_issued: sum(event_stat::BANS_ISSUED)?,
            would_bans_issued: sum(event_stat::WOULD_BANS_ISSUED)?,
            insert_failures: InsertFailures {
                bans: sum(event_stat::INSERT_FAILED_BANS)?,
                sources: sum(event_stat::INSERT_FAILED_SOURCES)?,
                peers: sum(event_stat::INSERT_FAILED_PEERS)?,
                fragments: sum(event_stat::INSERT_FAILED_FRAGS)?,
            },
            tail_call_failures: sum(event_stat::TAIL_CALL_FAILED)?,
        })
    }

    /// Requests the SIP stage counted, summed over CPUs: (zone, method, count), non-zero only.
    pub fn method_counts(&self) -> Result<Vec<(Zone, SipMethod, u64)>, StateError> {
        let mut counts = Vec::new();
        for zone in [Zone::Trunk, Zone::Access] {
            for method in SipMethod::ALL {
                let total: u64 = self
                    .methods
                    .get(&method_index(zone, method), 0)
                    .map_err(map_err("read SG_METHODS"))?
                    .iter()
                    .sum();
                if total > 0 {
                    counts.push((zone, method, total));
                }
            }
        }
        Ok(counts)
    }

    /// Fill of every bounded table: per-source state, bans, fragments, and the lists of the
    /// active generation. Counting walks the keys (one syscall each): callers bound how often.
    pub fn map_fill(&self) -> Result<Vec<MapFill>, StateError> {
        let g = self.active_generation()? as usize;
        let fill = |name, entries, capacity| MapFill {
            name,
            entries,
            capacity,
        };
        Ok(vec![
            fill(
                map_name::SOURCES,
                self.sources.keys().count(),
                abi::MAX_SOURCES,
            ),
            fill(map_name::PEERS, self.peers.keys().count(), abi::MAX_PEERS),
            fill(map_name::BANS, self.bans.keys().count(), abi::MAX_BANS),
            fill(
                map_name::VERIFIED,
                self.verified.keys().count(),
                abi::MAX_VERIFIED,
            ),
            fill(
                map_name::AUTH,
                self.auth.keys().count(),
                abi::MAX_AUTH_SOURCES,
            ),
            fill(
                map_name::FRAGS,
                self.frags.keys().count(),
                abi::MAX_TRACKED_FRAGMENTS,
            ),
            fill(
                "SG_ALLOW4",
                self.allow4[g].keys().count(),
                abi::MAX_PREFIXES,
            ),
            fill(
                "SG_AHOST4",
                self.allow_hosts4[g].keys().count(),
                abi::MAX_PREFIXES,
            ),
            fill(
                "SG_ALLOW6",
                self.allow6[g].keys().count(),
                abi::MAX_PREFIXES,
            ),
            fill(
                "SG_AHOST6",
                self.allow_hosts6[g].keys().count(),
                abi::MAX_PREFIXES,
            ),
            fill("SG_DENY4", self.deny4[g].keys().count(), abi::MAX_PREFIXES),
            fill("SG_DENY6", self.deny6[g].keys().count(), abi::MAX_PREFIXES),
        ])
    }

    /// One IPv4 prefilter bitmap of a generation, chunk by chunk.
    pub fn prefilter(
        &self,
        generation: u32,
        bitmap: Prefilter,
    ) -> Result<Vec<Box<PrefilterChunk>>, StateError> {
        (0..PREFILTER_CHUNKS)
            .map(|chunk| {
                self.prefilter
                    .get(&prefilter_index(generation, bitmap.index(), chunk), 0)
                    .map(Box::new)
                    .map_err(map_err("read SG_PREFILTER"))
            })
            .collect()
    }
}
