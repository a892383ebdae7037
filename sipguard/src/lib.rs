//! sipguard's controller: policy files, pinned kernel state, attach/replace/detach of the XDP
//! program, and the CLI built on them.
//!
//! Minimum kernel: 5.12 (BPF links for XDP, bounded loops, LPM tries, BPF atomics); tested on 6.18.
#![warn(unused_crate_dependencies)]

// The binary's logger, declared with the package.
use env_logger as _;

pub mod apply;
pub mod attack;
pub mod capture;
pub mod cli;
pub mod compat;
pub mod countries;
pub mod daemon;
pub mod dataplane;
pub mod events;
pub mod fleet;
pub mod incident;
pub mod journal;
pub mod lists;
pub mod live;
pub mod netns;
pub mod pins;
pub mod policy;
pub mod report;
pub mod sip_stats;
pub mod state;
mod sys;
pub mod time;

/// The XDP program, built from `sipguard-ebpf` by this crate's build script.
pub const EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("SIPGUARD_EBPF_OBJECT"));

/// Baseline programs and the packet generator of `cargo xtask bench` (never attached by sipguard).
pub const BASELINES_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("SIPGUARD_BASELINES_OBJECT"));
