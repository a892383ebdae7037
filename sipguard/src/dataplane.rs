//! Loading, attaching, replacing and detaching the XDP program and its egress companion.
//!
//! The programs and their maps are pinned, so the filter keeps running without the controller. A
//! second `attach` loads the new programs on the same pinned maps (counters and lists survive) and
//! swaps them into the existing links with one `BPF_LINK_UPDATE` each: there is no instant
//! without a filter. The XDP entry and the TC egress entry (tcx, kernel 6.6+; it reads the SBC's
//! answers) are attached, upgraded and detached together.

use std::{ffi::CString, fs, path::Path};

use aya::maps::{MapData, ProgramArray};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, Program, ProgramError, ProgramFd, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
};
use sipguard_common::abi::{
    ABI_VERSION, META_MAGIC, Meta, Mode, PROGRAM_NAME, egress_tail, map_name, program, tail,
};

use crate::{
    apply::{ApplyReport, apply},
    compat::{check_compatible, embedded_map_specs, is_sipguard_dir},
    policy::Policy,
    state::{LiveState, Lock, State, StateError, Target},
    sys::{link_exists, pinned_link_info, pinned_tcx_link_info, prog_exists},
    time::now_unix,
};

/// How the program is hooked into the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native if the driver supports it, generic (skb) otherwise.
    Auto,
    /// In the driver, before any socket buffer exists: the fast path.
    Native,
    /// Generic XDP in the kernel stack: works everywhere, slower.
    Skb,
}

/// `Meta::xdp_mode` values.
const XDP_MODE_NATIVE: u8 = 1;
const XDP_MODE_SKB: u8 = 2;

pub fn xdp_mode_name(value: u8) -> &'static str {
    match value {
        XDP_MODE_NATIVE => "native",
        XDP_MODE_SKB => "skb",
        _ => "unknown",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no interface named {iface}{where_}", where_ = netns_suffix(.netns))]
    NoInterface {
        iface: String,
        netns: Option<String>,
    },
    #[error("cannot load the XDP program: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused the XDP program: {0}")]
    Program(#[source] ProgramError),
    #[error("cannot attach to {iface}: {detail}")]
    Attach { iface: String, detail: String },
    #[error(
        "{dir} holds no sipguard state (its SG_META is missing or foreign); sipguard leaves it \
         alone",
        dir = .dir.display()
    )]
    NotSipguardState { dir: std::path::PathBuf },
    #[error(
        "{iface} is filtered in {current} mode; `sipguard detach` first to switch to {requested}"
    )]
    ModeMismatch {
        iface: String,
        current: &'static str,
        requested: &'static str,
    },
}

fn netns_suffix(netns: &Option<String>) -> String {
    netns
        .as_ref()
        .map(|n| format!(" in network namespace {n}"))
        .unwrap_or_default()
}

/// What `attach` asks for.
pub struct AttachRequest<'a> {
    pub target: Target,
    pub xdp_mode: XdpModeChoice,
    /// Policy to apply; `None` keeps the pinned policy, or starts with [`Policy::starter`].
    pub policy: Option<&'a Policy>,
    /// Overrides the policy's mode.
    pub mode: Option<Mode>,
}

/// What `attach` did.
#[derive(Debug)]
pub struct AttachReport {
    /// The state was created now (false: existing pinned state was reused).
    pub created_state: bool,
    /// An existing link got the new program (false: a new link was made).
    pub replaced_program: bool,
    pub xdp_mode: &'static str,
    pub program_id: u32,
    /// The egress program's attachment: `Ok(true)` replaced in its link, `Ok(false)` a new
    /// link, `Err(why)` not attached (the XDP filter runs without it).
    pub egress: Result<bool, String>,
    pub applied: Option<ApplyReport>,
}

pub fn ifindex(iface: &str) -> Option<u32> {
    let name = CString::new(iface).ok()?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// An interface's pin directory, locked, with its compatibility checked.
struct Prepared {
    lock: Lock,
    /// Initialised state already exists.
    existing: bool,
}

fn prepare(target: &Target) -> Result<Prepared, DataplaneError> {
    crate::pins::prepare_dir(target).map_err(StateError::from)?;
    let lock = Lock::acquire(&target.dir()).map_err(StateError::from)?;
    let existing = check_compatible(target).map_err(StateError::from)?;
    Ok(Prepared { lock, existing })
}

/// The program loaded (verified) on an interface's pinned maps, with the policy in place, but
/// not attached: what `attach` hooks in, and what tests run with `BPF_PROG_TEST_RUN`.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub state: State,
    /// The state was created now (false: existing pinned state was reused).
    pub created_state: bool,
    pub applied: Option<ApplyReport>,
}

impl Loaded {
    pub fn program(&mut self) -> &mut Xdp {
        xdp_program(&mut self.ebpf)
    }

    /// The TC egress entry (loaded, not attached).
    pub fn egress(&mut self) -> &mut SchedClassifier {
        egress_program(&mut self.ebpf)
    }
}

fn egress_program(ebpf: &mut Ebpf) -> &mut SchedClassifier {
    ebpf.program_mut(program::EGRESS)
        .and_then(|program| program.try_into().ok())
        .expect("load() checked that the object holds the egress program")
}

/// [`Loaded`] while the interface is still locked.
struct Loading {
    ebpf: Ebpf,
    live: LiveState,
    created_state: bool,
    applied: Option<ApplyReport>,
}

fn xdp_program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .and_then(|program| program.try_into().ok())
        .expect("load() checked that the object holds the XDP program")
}

/// Loads the program on the pinned maps of `target` (creating them if needed) and brings the
/// policy in: `policy` when given, else the pinned one, else [`Policy::starter`].
pub fn load(
    target: &Target,
    policy: Option<&Policy>,
    mode: Option<Mode>,
) -> Result<Loaded, DataplaneError> {
    // The lock covers loading and the policy change only: the caller may keep the result.
    let loading = load_prepared(target, prepare(target)?, policy, mode)?;
    Ok(Loaded {
        ebpf: loading.ebpf,
        state: loading.live.into_state(),
        created_state: loading.created_state,
        applied: loading.applied,
    })
}

fn load_prepared(
    target: &Target,
    prepared: Prepared,
    policy: Option<&Policy>,
    mode: Option<Mode>,
) -> Result<Loading, DataplaneError> {
    let mut loader = EbpfLoader::new();
    let pins: Vec<(&str, std::path::PathBuf)> = embedded_map_specs()
        .iter()
        .map(|spec| (spec.name.as_str(), target.map_pin(&spec.name)))
        .collect();
    for (name, pin) in &pins {
        loader.map_pin_path(name, pin.as_path());
    }
    let mut ebpf = loader
        .load(crate::EBPF_OBJECT)
        .map_err(DataplaneError::Load)?;
    let existing = prepared.existing;
    let mut state = LiveState::with_lock(State::open_unchecked(target)?, prepared.lock);
    if existing {
        let now = crate::time::boot_now_ns();
        state.sweep_expired_bans(now)?;
        state.sweep_expired_verified(now)?;
    }

    if existing
        && let Some(entry) = crate::journal::record::recover(target).map_err(StateError::from)?
    {
        log::warn!(
            "{}: journal #{} ({}) was interrupted; journaled with the writes it made",
            target.label(),
            entry.id,
            entry.action
        );
    }
    let who = crate::journal::Who::this_process();
    let applied = match (policy, existing) {
        // A fresh state starts from its first policy: nothing before it to undo to.
        (Some(policy), false) => Some(apply(&mut state, policy, mode)?),
        (Some(policy), true) => {
            Some(state.journaled("apply (attach)", &who, |live| apply(live, policy, mode))?)
        }
        (None, false) => Some(apply(&mut state, &Policy::starter(), mode)?),
        (None, true) => {
            if let Some(mode) = mode {
                let discarded =
                    state.journaled("mode (attach)", &who, |live| live.set_mode(mode))?;
                if discarded > 0 {
                    log::info!("discarded {discarded} would-be bans of monitor mode");
                }
            }
            None
        }
    };
    if !existing {
        state.set_meta(&Meta {
            magic: META_MAGIC,
            abi_version: ABI_VERSION,
            created_at_unix: now_unix(),
            ..Meta::default()
        })?;
    }

    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| DataplaneError::Attach {
            iface: target.iface().to_string(),
            detail: format!("program {PROGRAM_NAME} missing from the embedded object"),
        })?
        .try_into()
        .map_err(DataplaneError::Program)?;
    program.load().map_err(DataplaneError::Program)?;
    link_stages(&mut ebpf)?;

    Ok(Loading {
        ebpf,
        live: state,
        created_state: !existing,
        applied,
    })
}

/// Loads the later stages and puts them in the entry's tail-call slots. The slot map is pinned,
/// so the entries outlive this process (the kernel clears program arrays only when no file
/// descriptor or pin refers to them); a new build's stages replace the old ones slot by slot.
fn link_stages(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    let xdp_stages = [
        (program::JUDGE, tail::JUDGE),
        (program::SIP, tail::SIP),
        (program::HEADERS, tail::HEADERS),
        (program::DESTINATION, tail::DESTINATION),
        (program::REPORT, tail::REPORT),
        (program::CAPTURE, tail::CAPTURE),
    ]
    .into_iter()
    .map(|(name, slot)| Ok((slot, load_stage(ebpf, name)?)))
    .collect::<Result<Vec<_>, DataplaneError>>()?;
    fill_tails(ebpf, map_name::TAILS, &xdp_stages)?;
    // The egress entry is loaded here too (attached by `attach`), its stages go in their own
    // program array: one holds programs of one type.
    load_stage(ebpf, program::EGRESS)?;
    let tc_stages = [
        (program::ANSWER, egress_tail::ANSWER),
        (program::FEEDBACK, egress_tail::FEEDBACK),
    ]
    .into_iter()
    .map(|(name, slot)| Ok((slot, load_stage(ebpf, name)?)))
    .collect::<Result<Vec<_>, DataplaneError>>()?;
    fill_tails(ebpf, map_name::EGRESS_TAILS, &tc_stages)
}

/// Loads (verifies) one program of the object, XDP or TC; its fd.
fn load_stage(ebpf: &mut Ebpf, name: &str) -> Result<ProgramFd, DataplaneError> {
    let missing = || DataplaneError::Attach {
        iface: String::new(),
        detail: format!("program {name} missing from the embedded object"),
    };
    let fd = match ebpf.program_mut(name).ok_or_else(missing)? {
        Program::Xdp(stage) => {
            stage.load().map_err(DataplaneError::Program)?;
            stage.fd().map_err(DataplaneError::Program)?.try_clone()
        }
        Program::SchedClassifier(stage) => {
            stage.load().map_err(DataplaneError::Program)?;
            stage.fd().map_err(DataplaneError::Program)?.try_clone()
        }
        _ => return Err(missing()),
    };
    fd.map_err(|e| DataplaneError::Program(ProgramError::IOError(e)))
}

/// Puts loaded stages in their slots of the program array `map`.
fn fill_tails(
    ebpf: &mut Ebpf,
    map: &str,
    stages: &[(u32, ProgramFd)],
) -> Result<(), DataplaneError> {
    let array = ebpf.map_mut(map).ok_or_else(|| DataplaneError::Attach {
        iface: String::new(),
        detail: format!("map {map} missing from the embedded object"),
    })?;
    let mut tails: ProgramArray<&mut MapData> =
        ProgramArray::try_from(array).map_err(|source| StateError::Map {
            what: format!("open {map}"),
            source,
        })?;
    for (slot, fd) in stages {
        tails.set(*slot, fd, 0).map_err(|source| StateError::Map {
            what: format!("set stage {slot} in {map}"),
            source,
        })?;
    }
    Ok(())
}

/// Loads the program on the pinned maps (creating them if needed), brings the policy in and
/// attaches, or atomically replaces the program of an existing link.
pub fn attach(request: &AttachRequest<'_>) -> Result<AttachReport, DataplaneError> {
    let target = &request.target;
    let Some(if_index) = ifindex(target.iface()) else {
        return Err(DataplaneError::NoInterface {
            iface: target.iface().to_string(),
            netns: target.netns().map(str::to_string),
        });
    };
    let prepared = prepare(target)?;
    if prepared.existing && target.link_pin().exists() {
        let current = State::open_unchecked(target)?.meta()?.xdp_mode;
        let requested = match request.xdp_mode {
            XdpModeChoice::Native => Some(XDP_MODE_NATIVE),
            XdpModeChoice::Skb => Some(XDP_MODE_SKB),
            XdpModeChoice::Auto => None,
        };
        if let Some(requested) = requested.filter(|r| *r != current && current != 0) {
            return Err(DataplaneError::ModeMismatch {
                iface: target.iface().to_string(),
                current: xdp_mode_name(current),
                requested: xdp_mode_name(requested),
            });
        }
    }
    let mut loaded = load_prepared(target, prepared, request.policy, request.mode)?;
    let mut meta = loaded.live.meta()?;
    let program = xdp_program(&mut loaded.ebpf);
    let (replaced_program, xdp_mode) = match replace_in_link(program, &target.link_pin(), if_index)?
    {
        true => (true, meta.xdp_mode),
        false => (false, attach_new_link(program, target, request.xdp_mode)?),
    };
    let program_id = pinned_link_info(&target.link_pin()).map_or(0, |info| info.prog_id);
    let egress = attach_egress(egress_program(&mut loaded.ebpf), target, if_index);
    if let Err(why) = &egress {
        log::warn!(
            "{}: the egress program is not attached ({why}); the XDP filter runs without \
             auth-failure bans and verified sources",
            target.iface()
        );
    }

    meta.attached_at_unix = now_unix();
    meta.xdp_mode = xdp_mode;
    meta.egress = u8::from(egress.is_ok());
    meta.ifname = [0; 16];
    for (slot, byte) in meta.ifname.iter_mut().zip(target.iface().bytes().take(15)) {
        *slot = byte;
    }
    loaded.live.set_meta(&meta)?;

    Ok(AttachReport {
        created_state: loaded.created_state,
        replaced_program,
        xdp_mode: xdp_mode_name(xdp_mode),
        program_id,
        egress,
        applied: loaded.applied.take(),
    })
}

/// Hooks the egress program into the interface's tcx egress, or swaps it into the pinned link:
/// `Ok(true)` replaced, `Ok(false)` a new link. Errors are explained, not fatal: the XDP filter
/// does not depend on it.
fn attach_egress(
    program: &mut SchedClassifier,
    target: &Target,
    if_index: u32,
) -> Result<bool, String> {
    let pin = target.egress_link_pin();
    if pin.exists() {
        match pinned_tcx_link_info(&pin) {
            Some(info) if info.ifindex == if_index => {
                let link = PinnedLink::from_pin(&pin)
                    .map(FdLink::from)
                    .map_err(|e| format!("open {}: {e}", pin.display()))?;
                let link = SchedClassifierLink::try_from(link)
                    .map_err(|e| format!("{}: not a tcx link ({e})", pin.display()))?;
                let id = program
                    .attach_to_link(link)
                    .map_err(|e| format!("replace the egress program: {e}"))?;
                drop(program.take_link(id).map_err(|e| e.to_string())?);
                return Ok(true);
            }
            _ => {
                log::warn!("removing stale egress link pin {}", pin.display());
                let _ = fs::remove_file(&pin);
            }
        }
    }
    let id = program
        .attach_with_options(
            target.iface(),
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| format!("tcx attach failed (kernel 6.6+ is needed): {e}"))?;
    let link = program.take_link(id).map_err(|e| e.to_string())?;
    let link = FdLink::try_from(link).map_err(|e| format!("not a BPF link: {e}"))?;
    link.pin(&pin)
        .map_err(|e| format!("pin {}: {e}", pin.display()))?;
    Ok(false)
}

/// Swaps `program` into the pinned link, if there is a live one for this interface.
fn replace_in_link(
    program: &mut Xdp,
    link_pin: &Path,
    if_index: u32,
) -> Result<bool, DataplaneError> {
    if !link_pin.exists() {
        return Ok(false);
    }
    let stale = |reason: &str| {
        log::warn!("removing stale link pin {} ({reason})", link_pin.display());
        let _ = fs::remove_file(link_pin);
        Ok(false)
    };
    // A link whose interface went away (or was recreated) is defunct: make a new one.
    match pinned_link_info(link_pin) {
        None => return stale("not an XDP link"),
        Some(info) if info.ifindex != if_index => return stale("its interface is gone"),
        Some(_) => {}
    }
    let fd_link = match PinnedLink::from_pin(link_pin) {
        Ok(pinned) => FdLink::from(pinned),
        Err(_) => return stale("not a link"),
    };
    let Ok(xdp_link) = XdpLink::try_from(fd_link) else {
        return stale("not an XDP link");
    };
    let link_id = program
        .attach_to_link(xdp_link)
        .map_err(DataplaneError::Program)?;
    // Drop our handle only: the pin keeps the link (and now the new program) in place.
    let link = program
        .take_link(link_id)
        .map_err(DataplaneError::Program)?;
    drop(link);
    Ok(true)
}

fn attach_new_link(
    program: &mut Xdp,
    target: &Target,
    choice: XdpModeChoice,
) -> Result<u8, DataplaneError> {
    let attempts: &[(XdpMode, u8)] = match choice {
        XdpModeChoice::Auto => &[
            (XdpMode::Driver, XDP_MODE_NATIVE),
            (XdpMode::Skb, XDP_MODE_SKB),
        ],
        XdpModeChoice::Native => &[(XdpMode::Driver, XDP_MODE_NATIVE)],
        XdpModeChoice::Skb => &[(XdpMode::Skb, XDP_MODE_SKB)],
    };
    let mut last_error = String::new();
    for (mode, mode_value) in attempts {
        match program.attach(target.iface(), *mode) {
            Ok(link_id) => {
                let link = program
                    .take_link(link_id)
                    .map_err(DataplaneError::Program)?;
                let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::Attach {
                    iface: target.iface().to_string(),
                    detail: format!("the kernel gave no BPF link ({e}); kernel 5.9+ is needed"),
                })?;
                fd_link
                    .pin(target.link_pin())
                    .map_err(|e| DataplaneError::Attach {
                        iface: target.iface().to_string(),
                        detail: format!("pin link: {e}"),
                    })?;
                if *mode_value == XDP_MODE_SKB && choice == XdpModeChoice::Auto {
                    log::warn!(
                        "{}: native XDP failed ({last_error}); running in generic (skb) mode",
                        target.iface()
                    );
                }
                return Ok(*mode_value);
            }
            Err(error) => last_error = explain_attach_error(&error),
        }
    }
    Err(DataplaneError::Attach {
        iface: target.iface().to_string(),
        detail: last_error,
    })
}

fn explain_attach_error(error: &ProgramError) -> String {
    let text = error.to_string();
    let busy = match error {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::EBUSY),
        _ => false,
    };
    if busy || text.contains("Device or resource busy") {
        format!(
            "{text}: another XDP program is attached (see `ip link show`); sipguard does not \
             replace programs it did not attach"
        )
    } else {
        text
    }
}

/// What `detach` did.
#[derive(Debug)]
pub struct DetachReport {
    pub unlinked: bool,
    pub removed_state: bool,
    /// Entries of the interface directory that sipguard did not create and left alone (the
    /// directory stays then).
    pub left_behind: Vec<String>,
}

/// A pin sipguard may remove: the link, a map of this build, or a map of another build
/// (`SG_*`) in a directory `SG_META` marks as sipguard's.
fn is_known_pin(name: &str) -> bool {
    name == crate::pins::LINK_PIN
        || name == crate::pins::EGRESS_LINK_PIN
        || name.starts_with("SG_")
        || embedded_map_specs().iter().any(|spec| spec.name == name)
}

fn remove_pin(path: &Path) -> Result<(), StateError> {
    fs::remove_file(path).map_err(|source| StateError::Io {
        what: format!("remove {}", path.display()),
        source,
    })
}

/// A pin, not a symlink or a directory someone put there.
fn is_pin_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file())
}

/// Detaches the program (by removing the link pin) and, unless `keep_state`, removes the maps.
/// Only a directory under the pin root that `SG_META` marks as sipguard's is touched, and in it
/// only the pins sipguard knows by name; symlinks are never followed.
pub fn detach(target: &Target, keep_state: bool) -> Result<DetachReport, DataplaneError> {
    let dir = target.dir();
    if !crate::pins::check_dir(target).map_err(StateError::from)? {
        return Err(StateError::NotAttached {
            label: target.label(),
            root: target.pin_root().to_path_buf(),
        }
        .into());
    }
    if !is_sipguard_dir(target) {
        return Err(DataplaneError::NotSipguardState { dir });
    }
    let lock = Lock::acquire(&dir).map_err(StateError::from)?;
    let link_pin = target.link_pin();
    let unlinked = is_pin_file(&link_pin);
    if unlinked {
        let link = pinned_link_info(&link_pin).map(|info| (info.id, info.prog_id));
        fs::remove_file(&link_pin).map_err(|source| StateError::Io {
            what: format!("remove {}", link_pin.display()),
            source,
        })?;
        wait_for_link_release(link);
    }
    // Then the egress program: without the XDP filter it has no purpose.
    let egress_pin = target.egress_link_pin();
    if is_pin_file(&egress_pin) {
        let link = pinned_tcx_link_info(&egress_pin).map(|info| (info.id, info.prog_id));
        fs::remove_file(&egress_pin).map_err(|source| StateError::Io {
            what: format!("remove {}", egress_pin.display()),
            source,
        })?;
        wait_for_link_release(link);
    }
    let mut left_behind = Vec::new();
    if !keep_state {
        let read_error = |source| StateError::Io {
            what: format!("read {}", dir.display()),
            source,
        };
        for entry in fs::read_dir(&dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name == map_name::META {
                continue;
            }
            if !is_known_pin(&name) || !is_pin_file(&path) {
                left_behind.push(name);
                continue;
            }
            remove_pin(&path)?;
        }
        drop(lock);
        // SG_META goes last, and only with the directory: while anything foreign remains, it
        // still marks the directory as sipguard's, so a later detach can finish the job.
        if left_behind.is_empty() {
            remove_pin(&target.map_pin(map_name::META))?;
            fs::remove_dir(&dir).map_err(|source| StateError::Io {
                what: format!("remove {}", dir.display()),
                source,
            })?;
        }
    }
    left_behind.sort();
    Ok(DetachReport {
        unlinked,
        removed_state: !keep_state && left_behind.is_empty(),
        left_behind,
    })
}

/// The kernel releases a link from a work queue, after its id is already gone: returns once
/// its program, which only the link held, is gone too (the hook is then empty), or after 5 s.
fn wait_for_link_release(link: Option<(u32, u32)>) {
    if let Some((link_id, prog_id)) = link {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while (link_exists(link_id) || prog_exists(prog_id)) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The link as the kernel sees it.
#[derive(Debug, Clone, Copy)]
pub struct LinkStatus {
    pub link_id: u32,
    pub program_id: u32,
    /// 0 when the interface is gone (the link is defunct).
    pub ifindex: u32,
}

pub fn link_status(target: &Target) -> Option<LinkStatus> {
    let info = pinned_link_info(&target.link_pin())?;
    Some(LinkStatus {
        link_id: info.id,
        program_id: info.prog_id,
        ifindex: info.ifindex,
    })
}

/// The egress program's tcx link as the kernel sees it.
pub fn egress_link_status(target: &Target) -> Option<LinkStatus> {
    let info = pinned_tcx_link_info(&target.egress_link_pin())?;
    Some(LinkStatus {
        link_id: info.id,
        program_id: info.prog_id,
        ifindex: info.ifindex,
    })
}
