//! What the SBC's answers left in the kernel, by client address (`SG_AUTH`, `SG_VERIFIED`,
//! `SG_BANS`), and a Kamailio run for the tests that need a real SBC.

use std::{
    fs,
    net::IpAddr,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use sipguard::state::State;
use sipguard_common::{
    abi::{AuthState, BanReason, SourceKey, VerifiedSource},
    source::source_key,
};

use crate::{lab::wait_until, netns::NetNs};

/// The key the kernel keeps a client under (IPv6 per /64, the policies' budget prefix here).
pub fn client_key(addr: IpAddr) -> SourceKey {
    let (family, bytes) = match addr {
        IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (4, bytes)
        }
        IpAddr::V6(v6) => (6, v6.octets()),
    };
    source_key(family, &bytes, 64)
}

/// The client's auth-failure state.
pub fn auth_of(state: &State, addr: IpAddr) -> Option<AuthState> {
    let key = client_key(addr);
    state
        .auth_states()
        .expect("read SG_AUTH")
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, auth)| auth)
}

/// Its failures in the current window (0 without state).
pub fn failures_of(state: &State, addr: IpAddr) -> u32 {
    auth_of(state, addr).map_or(0, |auth| auth.failures())
}

/// Its verification, expired or not.
pub fn verified_of(state: &State, addr: IpAddr) -> Option<VerifiedSource> {
    let key = client_key(addr);
    state
        .verified_sources()
        .expect("read SG_VERIFIED")
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, entry)| entry)
}

/// Why it is banned, if it is.
pub fn ban_reason_of(state: &State, addr: IpAddr) -> Option<BanReason> {
    let key = client_key(addr);
    state
        .bans()
        .expect("read SG_BANS")
        .into_iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, ban)| BanReason::from_u8(ban.reason))
}

/// Kamailio with `cfg` in `ns`, run from `dir` (its log: `kamailio.log`); stopped on drop.
pub struct Kamailio {
    child: Child,
}

impl Kamailio {
    /// Starts it and waits until `ready` (at most 15 s).
    pub fn start(ns: &NetNs, dir: &Path, cfg: &str, ready: impl FnMut() -> bool) -> Kamailio {
        fs::write(dir.join("kamailio.cfg"), cfg).unwrap();
        fs::create_dir_all(dir.join("run")).unwrap();
        let log = fs::File::create(dir.join("kamailio.log")).unwrap();
        let child = ns
            .command("kamailio")
            .args(["-f", "kamailio.cfg", "-DD", "-E", "-m", "64"])
            .args(["-P", "run/kamailio.pid", "-Y", "run"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio (installed by scripts/setup)");
        let kamailio = Kamailio { child };
        assert!(
            wait_until(Duration::from_secs(15), ready),
            "Kamailio did not start: {}",
            fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default()
        );
        kamailio
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
