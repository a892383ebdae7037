//! Support for sipguard's integration tests and the xtask lab: crafted frames, network namespaces
//! with veth pairs, temporary bpffs pin roots, a test_run harness on the real XDP program, and
//! the fleet lab (several SBC hosts sharing state through Redis).
#![warn(unused_crate_dependencies)]

// Used by the binaries (sipguard-bench: xdp-filter's program; temporary policy files; the fleet
// part's addresses and Redis connections) and the test targets of this package, which share its
// dependency list.
use aya_obj as _;
use ipnet as _;
use redis as _;
use tempfile as _;

pub mod answers;
pub mod fleet_lab;
pub mod frames;
pub mod harness;
pub mod lab;
pub mod list_server;
pub mod model;
pub mod netns;
pub mod pins;
pub mod sip_lab;

/// Kernel tests need root (CAP_BPF, CAP_NET_ADMIN); say so instead of failing obscurely.
pub fn require_root() {
    // SAFETY: no arguments.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test needs root (BPF and network namespaces): run `cargo xtask test`"
    );
}

/// The `sipguard` binary built beside the tests (`SIPGUARD_BIN` overrides).
pub fn sipguard_bin() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("SIPGUARD_BIN") {
        return path.into();
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/sipguard
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps");
    let bin = profile_dir.join("sipguard");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p sipguard) or set SIPGUARD_BIN",
        bin.display()
    );
    bin
}
