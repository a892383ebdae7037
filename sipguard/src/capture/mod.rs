//! Evidence capture: the controller's side of the kernel's capture slots (`SG_CAPCTL`).
//!
//! A [`Session`] owns one slot of one interface: it refuses a slot another process holds (a
//! `flock`, and the owner pid in the control for the message),
//! writes the filter with a lease ([`CAPTURE_LEASE_NS`]) that [`Session::renew`] extends (the
//! kernel stops copying when it runs out, so a killed capture costs nothing after a few
//! seconds), reads the slot's ring and counters, and turns the slot off when dropped.
//! [`record`] decodes what the kernel copied, [`pcapng`] writes it for tshark and Wireshark,
//! [`rolling`] keeps the last minutes of drops for `sipguard run`.

pub mod pcapng;
pub mod record;
pub mod rolling;

use std::{os::fd::AsRawFd as _, time::Duration};

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sipguard_common::{
    abi::{
        CAPTURE_LEASE_NS, CAPTURE_SNAP_MAX, CaptureControl, Reason, Zone, capture_flags,
        capture_slot, capture_stat, map_name,
    },
    budget::Gcra,
    capture::all_drop_reasons,
};

use crate::{pins::Target, time::boot_now_ns};

/// Default budget of a capture: packets per second (all CPUs).
pub const DEFAULT_PACKETS_PER_SECOND: u32 = 1000;
/// Default budget of a capture: bytes copied per second (all CPUs).
pub const DEFAULT_BYTES_PER_SECOND: u32 = 2_000_000;
/// How often a session renews its lease (well within [`CAPTURE_LEASE_NS`]).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("a capture is already running on {label} (pid {pid}); one at a time per interface")]
    Busy { label: String, pid: u32 },
    #[error("{label}: {detail}")]
    Map { label: String, detail: String },
    #[error("unknown drop reason {0:?} (see `sipguard stats`)")]
    UnknownReason(String),
    #[error("unknown zone {0:?} (trunk, access or unknown)")]
    UnknownZone(String),
}

/// What a capture copies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Drop reasons by name; empty: every drop reason.
    pub reasons: Vec<String>,
    /// Zones by name; empty: every zone.
    pub zones: Vec<String>,
    pub source: Option<IpNet>,
    /// SIP packets the filter passed, too.
    pub include_passed: bool,
    /// Only passed packets (no drops): not offered by the CLI, used by tests.
    #[serde(default)]
    pub passed_only: bool,
    /// Bytes of each packet, 0: [`CAPTURE_SNAP_MAX`].
    pub snaplen: u32,
}

/// The capture's own budget (all CPUs together; split evenly per CPU in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub packets_per_second: u32,
    pub bytes_per_second: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            packets_per_second: DEFAULT_PACKETS_PER_SECOND,
            bytes_per_second: DEFAULT_BYTES_PER_SECOND,
        }
    }
}

/// A reason's name to its enum; drop reasons only.
pub fn parse_reason(name: &str) -> Result<Reason, CaptureError> {
    Reason::ALL
        .iter()
        .copied()
        .find(|reason| reason.is_drop() && reason.name() == name)
        .ok_or_else(|| CaptureError::UnknownReason(name.to_string()))
}

pub fn parse_zone(name: &str) -> Result<Zone, CaptureError> {
    Zone::ALL
        .iter()
        .copied()
        .find(|zone| *zone != Zone::None && zone.name() == name)
        .ok_or_else(|| CaptureError::UnknownZone(name.to_string()))
}

impl Filter {
    /// The kernel's form of the filter (without expiry and owner).
    pub fn control(&self, budget: Budget, cpus: u64) -> Result<CaptureControl, CaptureError> {
        let mut reasons = 0u32;
        for name in &self.reasons {
            reasons |= 1 << (parse_reason(name)? as u32);
        }
        if self.reasons.is_empty() {
            reasons = all_drop_reasons();
        }
        let mut zones = 0u8;
        for name in &self.zones {
            zones |= 1 << (parse_zone(name)? as u8);
        }
        let snaplen = match self.snaplen {
            0 => CAPTURE_SNAP_MAX as u32,
            n => n.min(CAPTURE_SNAP_MAX as u32),
        };
        let mut control = CaptureControl {
            reasons,
            flags: if self.passed_only {
                capture_flags::INCLUDE_PASSED
            } else if self.include_passed {
                capture_flags::INCLUDE_PASSED | capture_flags::DROPS
            } else {
                capture_flags::DROPS
            },
            snaplen,
            zones,
            packets: per_cpu(budget.packets_per_second, cpus, 1),
            // A CPU's byte budget always holds one whole copy.
            bytes: per_cpu(budget.bytes_per_second, cpus, snaplen),
            ..CaptureControl::default()
        };
        if let Some(net) = self.source {
            let net = net.trunc();
            control.src_prefix_len = net.prefix_len();
            match net {
                IpNet::V4(v4) => {
                    control.src_family = 4;
                    control.src[..4].copy_from_slice(&v4.network().octets());
                }
                IpNet::V6(v6) => {
                    control.src_family = 6;
                    control.src = v6.network().octets();
                }
            }
        }
        Ok(control)
    }
}

/// One CPU's share of a budget of `rate` a second (the kernel's buckets are per CPU): the
/// rate divided evenly, bursts of a second's share but at least `min_burst`.
fn per_cpu(rate: u32, cpus: u64, min_burst: u32) -> Gcra {
    let rate = (u64::from(rate) / cpus.max(1)).max(1);
    Gcra::new(rate, rate.max(u64::from(min_burst)))
}

/// A slot's counters (since the kernel state was created), summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Packets copied into the ring.
    pub copied: u64,
    pub copied_bytes: u64,
    /// Matching packets not copied: over the capture's packet or byte budget.
    pub over_budget: u64,
    /// Matching packets not copied: the ring was full.
    pub ring_full: u64,
    /// Copied packets cut at the snap length.
    pub truncated: u64,
}

impl Stats {
    /// What happened since `earlier`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            copied: self.copied.saturating_sub(earlier.copied),
            copied_bytes: self.copied_bytes.saturating_sub(earlier.copied_bytes),
            over_budget: self.over_budget.saturating_sub(earlier.over_budget),
            ring_full: self.ring_full.saturating_sub(earlier.ring_full),
            truncated: self.truncated.saturating_sub(earlier.truncated),
        }
    }
}

fn map_error(target: &Target, what: &str) -> impl Fn(String) -> CaptureError {
    let label = target.label();
    let what = what.to_string();
    move |detail| CaptureError::Map {
        label: label.clone(),
        detail: format!("{what}: {detail}"),
    }
}

fn open_map(target: &Target, name: &str) -> Result<Map, CaptureError> {
    let pin = target.map_pin(name);
    let data = MapData::from_pin(&pin)
        .map_err(|e| e.to_string())
        .map_err(map_error(target, &format!("open {}", pin.display())))?;
    Map::from_map_data(data)
        .map_err(|e| e.to_string())
        .map_err(map_error(target, name))
}

fn control_map(target: &Target) -> Result<Array<MapData, CaptureControl>, CaptureError> {
    Array::try_from(open_map(target, map_name::CAPTURE_CONTROL)?)
        .map_err(|e| e.to_string())
        .map_err(map_error(target, map_name::CAPTURE_CONTROL))
}

/// A slot's counters.
pub fn stats(target: &Target, slot: u32) -> Result<Stats, CaptureError> {
    let map: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(open_map(target, map_name::CAPTURE_STATS)?)
            .map_err(|e| e.to_string())
            .map_err(map_error(target, map_name::CAPTURE_STATS))?;
    let read = |which: u32| -> Result<u64, CaptureError> {
        let values = map
            .get(&(slot * capture_stat::STRIDE + which), 0)
            .map_err(|e| e.to_string())
            .map_err(map_error(target, map_name::CAPTURE_STATS))?;
        Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
    };
    Ok(Stats {
        copied: read(capture_stat::COPIED)?,
        copied_bytes: read(capture_stat::COPIED_BYTES)?,
        over_budget: read(capture_stat::OVER_BUDGET)?,
        ring_full: read(capture_stat::RING_FULL)?,
        truncated: read(capture_stat::TRUNCATED)?,
    })
}

/// A slot's control as the kernel holds it.
pub fn control(target: &Target, slot: u32) -> Result<CaptureControl, CaptureError> {
    control_map(target)?
        .get(&slot, 0)
        .map_err(|e| e.to_string())
        .map_err(map_error(target, map_name::CAPTURE_CONTROL))
}

/// Whether a process is alive.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks.
    pid != 0
        && (unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Where capture locks live: regular files (bpffs holds none).
const LOCK_DIR: &str = "/run/sipguard";

/// An exclusive `flock` on the slot of one pinned state (named by a hash of its directory, so
/// that states under different pin roots never share one): two captures starting at once cannot
/// both claim a slot, and the kernel drops the lock with its process, however it ends.
fn lock_slot(target: &Target, slot: u32) -> Result<(std::fs::File, String), CaptureError> {
    use std::os::{fd::AsRawFd as _, unix::fs::DirBuilderExt as _};
    let fail = map_error(target, "capture lock");
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(LOCK_DIR);
    let digest = target
        .dir()
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let path = format!("{LOCK_DIR}/capture-{digest:016x}-{slot}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fail(format!("{path}: {e}")))?;
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(CaptureError::Busy {
            label: target.label(),
            pid: control(target, slot).map_or(0, |c| c.owner_pid),
        });
    }
    Ok((file, path))
}

/// A slot this process holds (see the module docs).
pub struct Session {
    /// Held for the session's life: released after `Drop` turned the slot off.
    _lock: std::fs::File,
    /// Removed on drop (one that a killed capture leaves is reused). Should a second capture
    /// lock the removed file in that instant, the owner pid in the control still refuses it.
    lock_path: String,
    target: Target,
    slot: u32,
    controls: Array<MapData, CaptureControl>,
    control: CaptureControl,
    ring: RingBuf<MapData>,
    started: Stats,
}

impl Session {
    /// Claims `slot` of `target` for `filter` and turns the kernel's copying on.
    pub fn start(
        target: &Target,
        slot: u32,
        filter: &Filter,
        budget: Budget,
    ) -> Result<Session, CaptureError> {
        let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u64;
        let mut control = filter.control(budget, cpus)?;
        let (lock, lock_path) = lock_slot(target, slot)?;
        let mut controls = control_map(target)?;
        let held = controls
            .get(&slot, 0)
            .map_err(|e| e.to_string())
            .map_err(map_error(target, map_name::CAPTURE_CONTROL))?;
        let me = std::process::id();
        if held.expires_ns > boot_now_ns() && held.owner_pid != me && alive(held.owner_pid) {
            return Err(CaptureError::Busy {
                label: target.label(),
                pid: held.owner_pid,
            });
        }
        let ring = RingBuf::try_from(open_map(
            target,
            map_name::CAPTURE_RINGS[slot as usize & 1],
        )?)
        .map_err(|e| e.to_string())
        .map_err(map_error(target, "capture ring"))?;
        let started = stats(target, slot)?;
        control.owner_pid = me;
        control.expires_ns = boot_now_ns() + CAPTURE_LEASE_NS;
        controls
            .set(slot, control, 0)
            .map_err(|e| e.to_string())
            .map_err(map_error(target, map_name::CAPTURE_CONTROL))?;
        let mut session = Session {
            _lock: lock,
            lock_path,
            target: target.clone(),
            slot,
            controls,
            control,
            ring,
            started,
        };
        // Records a previous capture left behind are not this capture's.
        while session.ring.next().is_some() {}
        Ok(session)
    }

    /// Extends the lease; call every [`RENEW_INTERVAL`].
    pub fn renew(&mut self) -> Result<(), CaptureError> {
        self.control.expires_ns = boot_now_ns() + CAPTURE_LEASE_NS;
        self.controls
            .set(self.slot, self.control, 0)
            .map_err(|e| e.to_string())
            .map_err(map_error(&self.target, map_name::CAPTURE_CONTROL))
    }

    /// The ring's records, as the kernel wrote them, oldest first.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            each(&item);
            n += 1;
        }
        n
    }

    /// Waits up to `timeout` for records.
    pub fn wait(&self, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut fd, 1, timeout.as_millis().min(60_000) as i32) };
    }

    /// The ring, for async draining.
    pub fn ring_mut(&mut self) -> &mut RingBuf<MapData> {
        &mut self.ring
    }

    /// What the slot counted since this session started.
    pub fn stats(&self) -> Result<Stats, CaptureError> {
        Ok(stats(&self.target, self.slot)?.since(&self.started))
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Turns the kernel's copying off (also done on drop).
    pub fn stop(&mut self) -> Result<(), CaptureError> {
        self.controls
            .set(self.slot, CaptureControl::default(), 0)
            .map_err(|e| e.to_string())
            .map_err(map_error(&self.target, map_name::CAPTURE_CONTROL))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Only if this process still holds it (another may have taken over after a stall).
        if let Ok(held) = self.controls.get(&self.slot, 0)
            && held.owner_pid == std::process::id()
            && let Err(error) = self.stop()
        {
            log::warn!("turning the capture off: {error}");
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// The slot names, for status and metrics.
pub const SLOT_NAMES: [(u32, &str); 2] = [
    (capture_slot::LIVE, "capture"),
    (capture_slot::ROLLING, "ring"),
];
