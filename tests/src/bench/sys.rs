//! Thread-level system helpers: visiting a network namespace, CPU affinity, external commands.

use std::{fs::File, os::fd::AsRawFd as _, process::Command};

use anyhow::{Context as _, Result, bail};
use sipguard_tests::netns::NetNs;

/// Puts the calling thread back into its own network namespace when dropped (also on panic).
struct Return(File);

impl Drop for Return {
    fn drop(&mut self) {
        // SAFETY: valid namespace fd.
        unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Runs `f` on the calling thread inside `ns`, then returns the thread to where it was.
///
/// The bpffs and everything else stay as they are (unlike `ip netns exec`); objects `f` makes
/// (sockets, XDP links) stay in `ns`, and BPF_PROG_TEST_RUN resolves `ingress_ifindex` there.
pub(super) fn in_netns<T>(ns: &NetNs, f: impl FnOnce() -> T) -> Result<T> {
    let home = File::open("/proc/thread-self/ns/net").context("open own netns")?;
    let target = File::open(format!("/run/netns/{}", ns.name()))
        .with_context(|| format!("open netns {}", ns.name()))?;
    // SAFETY: valid namespace fd.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {}: {}", ns.name(), std::io::Error::last_os_error());
    }
    let _back = Return(home);
    Ok(f())
}

pub(super) use sipguard_tests::lab::Pinned;

/// Runs a command and returns its stdout; fails with its stderr.
pub(super) fn output(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .with_context(|| format!("run {shown} (is scripts/setup done?)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The id of the XDP program attached to `iface` in `ns` (from `ip link`).
pub(super) fn attached_prog_id(ns: &NetNs, iface: &str) -> Result<u32> {
    let text = ns.ip(&["link", "show", "dev", iface])?;
    let id = text
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok());
    id.with_context(|| format!("no XDP program on {iface} in {}: {text}", ns.name()))
}

pub(super) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM stop the benchmark at the next measurement, through the normal error path,
/// so that every namespace, pin and xdp-filter instance is removed (a test_run loop in progress
/// is cut short by the kernel when a signal is pending).
pub(crate) fn install_interrupt_handler() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

pub(super) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Deletes namespaces a killed earlier run left behind (`sg-b<role>-<pid>-<n>` of a dead pid).
pub(super) fn remove_stale_namespaces() {
    let Ok(list) = output(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for name in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let mut parts = name.split('-');
        let (Some("sg"), Some(role), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let sink = role
            .strip_prefix("bs")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let ours = role == "bgen" || role == "bxf" || role == "bfleet" || sink;
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if ours && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
