//! The live state of one filtered interface: maps and the XDP link pinned in bpffs under
//! `<pin-root>/<iface>[@<netns>]/`. It outlives the controller; every command opens it again.

use std::{
    collections::BTreeMap,
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{
    Array, HashMap, LpmTrie, Map, MapData, MapError, MapFd, MapInfo, PerCpuArray, lpm_trie::Key,
};
use sipguard_common::abi::{
    self, ABI_VERSION, Ban, COUNTER_SLOTS, Counter, FragKey, FragVerdict, GENERATIONS, Ipv4Data,
    Ipv6Data, META_MAGIC, Meta, PREFILTER_ALLOW, PREFILTER_ALLOW_NETS, PREFILTER_CHUNKS,
    PREFILTER_DENY, PrefilterChunk, RuleValue, SourceKey, SourceState, event_stat, map_name,
    prefilter_index,
};

use crate::policy::{Prefix, zeroed_policy};

/// Where pins go unless told otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sipguard";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Which interface (in which network namespace) and where its state is pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub iface: String,
    /// Named network namespace (`ip netns`) the interface lives in, if not the caller's.
    pub netns: Option<String>,
    pub pin_root: PathBuf,
}

impl Target {
    /// Name of the pin directory: `eth0`, or `eth0@sbc` for an interface in netns `sbc`.
    pub fn label(&self) -> String {
        match &self.netns {
            Some(netns) => format!("{}@{netns}", self.iface),
            None => self.iface.clone(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.pin_root.join(self.label())
    }

    pub fn map_pin(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn link_pin(&self) -> PathBuf {
        self.dir().join("link")
    }

    /// Labels of every interface with state under `pin_root`.
    pub fn list(pin_root: &Path) -> Vec<String> {
        let mut labels: Vec<String> = fs::read_dir(pin_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().join(map_name::META).exists())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        labels.sort();
        labels
    }

    /// The target named by a pin directory label.
    pub fn from_label(pin_root: &Path, label: &str) -> Target {
        let (iface, netns) = match label.split_once('@') {
            Some((iface, netns)) => (iface.to_string(), Some(netns.to_string())),
            None => (label.to_string(), None),
        };
        Target {
            iface,
            netns,
            pin_root: pin_root.to_path_buf(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sipguard has no state for {label} under {root} (attach it first)", root = .root.display())]
    NotAttached { label: String, root: PathBuf },
    #[error(
        "pinned state in {dir} was made by an incompatible sipguard build: {detail}; \
         `sipguard detach --iface {iface}` removes it (filtering stops), then attach again",
        dir = .dir.display()
    )]
    Incompatible {
        dir: PathBuf,
        iface: String,
        detail: String,
    },
    #[error(
        "{path} is not on a BPF filesystem; mount one with `mount -t bpf bpf {path}` or pick \
         another --pin-root",
        path = .path.display()
    )]
    NoBpffs { path: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
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

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StateError {
    let what = what.into();
    move |source| StateError::Io { what, source }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since boot, the clock of the data plane (`bpf_ktime_get_boot_ns`).
pub fn boot_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A data-plane timestamp as seconds since the Unix epoch (0 stays 0).
pub fn boot_ns_to_unix(boot_ns: u64) -> u64 {
    if boot_ns == 0 {
        return 0;
    }
    let now_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let offset = now_unix_ns.saturating_sub(boot_now_ns());
    boot_ns.saturating_add(offset) / 1_000_000_000
}

/// Makes sure `pin_root` is on a bpffs, mounting one at /sys/fs/bpf if that is where it belongs
/// and nothing is mounted there yet (what bpftool does too).
pub fn ensure_bpffs(pin_root: &Path) -> Result<(), StateError> {
    let sys_bpf = Path::new("/sys/fs/bpf");
    if pin_root.starts_with(sys_bpf) && !is_bpffs(sys_bpf) {
        let source = c"bpf";
        let target = c"/sys/fs/bpf";
        // SAFETY: valid NUL-terminated strings, no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(StateError::Io {
                what: "mount bpffs at /sys/fs/bpf".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    let mut probe = pin_root.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if !is_bpffs(&probe) {
        return Err(StateError::NoBpffs {
            path: pin_root.to_path_buf(),
        });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type as i64 == BPF_FS_MAGIC
}

/// Exclusive lock on an interface's pin directory, so that two controllers never interleave
/// their changes. Released on drop.
pub struct Lock {
    _dir: fs::File,
}

impl Lock {
    pub fn acquire(dir: &Path) -> Result<Lock, StateError> {
        let file = fs::File::open(dir).map_err(io_err(format!("open {}", dir.display())))?;
        // SAFETY: valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(StateError::Io {
                what: format!("lock {}", dir.display()),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Lock { _dir: file })
    }
}

/// Expected shape of one map, read from the XDP object this build embeds.
struct MapSpec {
    name: String,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn embedded_map_specs() -> Vec<MapSpec> {
    let object = aya_obj::Object::parse(crate::EBPF_OBJECT)
        .expect("the embedded XDP object parses (it was built with this controller)");
    object
        .maps
        .iter()
        .filter(|(name, _)| name.starts_with("SG_"))
        .map(|(name, map)| MapSpec {
            name: name.clone(),
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
        })
        .collect()
}

/// Refuses pinned maps this build would misread. `Ok(false)` means there is no state yet.
pub fn check_compatible(target: &Target) -> Result<bool, StateError> {
    let dir = target.dir();
    let incompatible = |detail: String| StateError::Incompatible {
        dir: dir.clone(),
        iface: target.iface.clone(),
        detail,
    };
    let meta_pin = target.map_pin(map_name::META);
    if !meta_pin.exists() {
        return Ok(false);
    }
    let mut pinned_any = false;
    for spec in embedded_map_specs() {
        let pin = target.map_pin(&spec.name);
        if !pin.exists() {
            continue;
        }
        pinned_any = true;
        let info = MapInfo::from_pin(&pin).map_err(map_err(format!("read {}", pin.display())))?;
        let map_type = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
        let found = (
            map_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        let expected = (
            spec.map_type,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
        );
        if found != expected {
            return Err(incompatible(format!(
                "map {} has (type, key size, value size, entries) {found:?}, this build expects \
                 {expected:?}",
                spec.name
            )));
        }
    }
    let meta = read_meta(&meta_pin)?;
    if meta.magic == 0 {
        // Created but never initialised (a controller died half-way): start over on top of it.
        return Ok(false);
    }
    if meta.magic != META_MAGIC || meta.abi_version != ABI_VERSION {
        return Err(incompatible(format!(
            "state ABI version {} (magic {:#x}), this build uses {ABI_VERSION}",
            meta.abi_version, meta.magic
        )));
    }
    Ok(pinned_any)
}

fn read_meta(pin: &Path) -> Result<Meta, StateError> {
    let array: Array<MapData, Meta> = open_pinned(pin)?;
    array
        .get(&0, 0)
        .map_err(map_err(format!("read {}", pin.display())))
}

fn open_pinned<T>(pin: &Path) -> Result<T, StateError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let data = MapData::from_pin(pin).map_err(map_err(format!("open {}", pin.display())))?;
    let map = Map::from_map_data(data).map_err(map_err(format!("open {}", pin.display())))?;
    T::try_from(map).map_err(map_err(format!("open {}", pin.display())))
}

/// Reads array entry `index` straight into `out`. `Array::get` returns by value, which for the
/// 130 KiB policy means several copies on the stack in unoptimized builds (enough to overflow a
/// 2 MiB thread).
fn lookup_into<V: aya::Pod>(map: &MapFd, index: u32, out: &mut V) -> Result<(), MapError> {
    // The BPF_MAP_*_ELEM layout of `union bpf_attr`.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    let attr = ElemAttr {
        map_fd: map.as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: &index as *const u32 as u64,
        value: out as *mut V as u64,
        flags: 0,
    };
    // SAFETY: key and value point at live memory of the map's key and value sizes (`V` is the
    // map's value type); the kernel writes at most size_of::<V>() bytes.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            &attr as *const ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if result < 0 {
        return Err(MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_lookup_elem",
            io_error: std::io::Error::last_os_error(),
        }));
    }
    Ok(())
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
    /// The same map, for reads straight into the heap ([`lookup_into`]); aya 0.14 does not expose a map's fd.
    policy_fd: MapFd,
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
    frags: HashMap<MapData, FragKey, FragVerdict>,
    prefilter: Array<MapData, PrefilterChunk>,
}

/// Event accounting summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventStats {
    pub emitted: u64,
    pub suppressed: u64,
    pub lost: u64,
    pub bans_issued: u64,
}

/// Entries and capacity of the bounded maps (for "map fill").
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MapFill {
    pub name: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

impl State {
    /// Opens the state of an interface after checking it is compatible.
    pub fn open(target: &Target) -> Result<State, StateError> {
        if !check_compatible(target)? {
            return Err(StateError::NotAttached {
                label: target.label(),
                root: target.pin_root.clone(),
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
            policy_fd: MapData::from_pin(pin(map_name::POLICY))
                .and_then(|map| map.info())
                .and_then(|info| info.fd())
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
            frags: open_pinned(&pin(map_name::FRAGS))?,
            prefilter: open_pinned(&pin(map_name::PREFILTER))?,
        })
    }

    pub fn meta(&self) -> Result<Meta, StateError> {
        self.meta.get(&0, 0).map_err(map_err("read SG_META"))
    }

    pub fn set_meta(&mut self, meta: &Meta) -> Result<(), StateError> {
        self.meta.set(0, meta, 0).map_err(map_err("write SG_META"))
    }

    /// The policy generation the data plane reads (0 or 1).
    pub fn active_generation(&self) -> Result<u32, StateError> {
        Ok(self.active.get(&0, 0).map_err(map_err("read SG_ACTIVE"))? & 1)
    }

    /// Makes `generation` the one the data plane reads: a single 4-byte store.
    pub fn activate(&mut self, generation: u32) -> Result<(), StateError> {
        debug_assert!(generation < GENERATIONS);
        self.active
            .set(0, generation, 0)
            .map_err(map_err("write SG_ACTIVE"))
    }

    pub fn policy(&self, generation: u32) -> Result<Box<abi::Policy>, StateError> {
        let mut value = zeroed_policy();
        lookup_into(&self.policy_fd, generation, &mut *value).map_err(map_err("read SG_POLICY"))?;
        Ok(value)
    }

    pub fn set_policy(&mut self, generation: u32, value: &abi::Policy) -> Result<(), StateError> {
        self.policy
            .set(generation, value, 0)
            .map_err(map_err("write SG_POLICY"))
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
        for entry in v4.iter() {
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
            for entry in self.allow_hosts4[g].iter() {
                let (addr, value) = entry.map_err(map_err(format!("read {}", list.name())))?;
                rules.insert(Prefix::V4 { len: 32, addr }, value);
            }
            for entry in self.allow_hosts6[g].iter() {
                let (addr, value) = entry.map_err(map_err(format!("read {}", list.name())))?;
                rules.insert(Prefix::V6 { len: 128, addr }, value);
            }
        }
        for entry in v6.iter() {
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

    /// Adds or replaces one entry.
    pub fn insert_rule(
        &mut self,
        generation: u32,
        list: List,
        prefix: Prefix,
        value: RuleValue,
    ) -> Result<(), StateError> {
        let g = generation as usize & 1;
        let what = || format!("add {prefix} to the {}", list.name());
        match (list, prefix) {
            (List::Allow, Prefix::V4 { len: 32, addr }) => {
                self.allow_hosts4[g].insert(addr, value, 0)
            }
            (List::Allow, Prefix::V4 { len, addr }) => {
                self.allow4[g].insert(&Key::new(len.into(), addr), value, 0)
            }
            (List::Allow, Prefix::V6 { len: 128, addr }) => {
                self.allow_hosts6[g].insert(addr, value, 0)
            }
            (List::Allow, Prefix::V6 { len, addr }) => {
                self.allow6[g].insert(&Key::new(len.into(), addr), value, 0)
            }
            (List::Deny, Prefix::V4 { len, addr }) => {
                self.deny4[g].insert(&Key::new(len.into(), addr), value, 0)
            }
            (List::Deny, Prefix::V6 { len, addr }) => {
                self.deny6[g].insert(&Key::new(len.into(), addr), value, 0)
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
        let result = match (list, prefix) {
            (List::Allow, Prefix::V4 { len: 32, addr }) => self.allow_hosts4[g].remove(&addr),
            (List::Allow, Prefix::V4 { len, addr }) => {
                self.allow4[g].remove(&Key::new(len.into(), addr))
            }
            (List::Allow, Prefix::V6 { len: 128, addr }) => self.allow_hosts6[g].remove(&addr),
            (List::Allow, Prefix::V6 { len, addr }) => {
                self.allow6[g].remove(&Key::new(len.into(), addr))
            }
            (List::Deny, Prefix::V4 { len, addr }) => {
                self.deny4[g].remove(&Key::new(len.into(), addr))
            }
            (List::Deny, Prefix::V6 { len, addr }) => {
                self.deny6[g].remove(&Key::new(len.into(), addr))
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

    /// Every ban, expired ones included (the data plane removes those lazily).
    pub fn bans(&self) -> Result<Vec<(SourceKey, Ban)>, StateError> {
        self.bans
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("read SG_BANS"))
    }

    pub fn insert_ban(&mut self, key: &SourceKey, ban: &Ban) -> Result<(), StateError> {
        self.bans
            .insert(key, ban, 0)
            .map_err(map_err("write SG_BANS"))
    }

    /// Removes a ban; `Ok(false)` when there was none.
    pub fn remove_ban(&mut self, key: &SourceKey) -> Result<bool, StateError> {
        removed(self.bans.remove(key), || "remove from SG_BANS".into())
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
        })
    }

    /// Fill of the maps that hold per-source or per-datagram state.
    pub fn map_fill(&self) -> Vec<MapFill> {
        vec![
            MapFill {
                name: map_name::SOURCES,
                entries: self.sources.keys().count(),
                capacity: abi::MAX_SOURCES,
            },
            MapFill {
                name: map_name::PEERS,
                entries: self.peers.keys().count(),
                capacity: abi::MAX_PEERS,
            },
            MapFill {
                name: map_name::BANS,
                entries: self.bans.keys().count(),
                capacity: abi::MAX_BANS,
            },
            MapFill {
                name: map_name::FRAGS,
                entries: self.frags.keys().count(),
                capacity: abi::MAX_TRACKED_FRAGMENTS,
            },
        ]
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
                self.prefilter
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
