//! Builds the XDP program (`sipguard-ebpf`) for bpfel-unknown-none with the nightly toolchain and
//! hands its object file to this crate as `SIPGUARD_EBPF_OBJECT`.
//!
//! aya-build does the same but overwrites the eBPF rustflags; this keeps room for
//! `SIPGUARD_EBPF_RUSTFLAGS` (e.g. `-C target-cpu=v3`), used by benchmarks.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    if let Err(message) = build_ebpf() {
        eprintln!("{message}");
        std::process::exit(1);
    }
}

fn build_ebpf() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no manifest dir")?);
    let workspace = manifest_dir.parent().ok_or("no workspace dir")?;
    for watched in [
        "sipguard-ebpf",
        "sipguard-common/src",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=SIPGUARD_EBPF_RUSTFLAGS");

    // v3: 32-bit jumps and ALU, and the atomic compare-and-swap the budgets rely on (kernel 5.12+).
    let mut rustflags = vec![
        "-Cdebuginfo=2".to_string(),
        "-Clink-arg=--btf".to_string(),
        "-Ctarget-cpu=v3".to_string(),
    ];
    if let Ok(extra) = env::var("SIPGUARD_EBPF_RUSTFLAGS") {
        rustflags.extend(extra.split_whitespace().map(str::to_string));
    }
    let target_dir = out_dir.join("ebpf-target");
    let mut cargo = Command::new("rustup");
    cargo
        .current_dir(workspace)
        .args(["run", "nightly", "cargo", "build", "--quiet", "--release"])
        .args(["--package", "sipguard-ebpf", "--bins"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        // The outer (stable) cargo's settings must not leak into the nightly build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTUP_TOOLCHAIN");
    let output = cargo
        .output()
        .map_err(|e| format!("cannot run `rustup run nightly cargo` ({e}); run scripts/setup"))?;
    if !output.status.success() {
        return Err(format!(
            "building the XDP program failed (is scripts/setup done? it installs nightly rust-src \
             and bpf-linker):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    for (bin, env) in [
        ("sipguard", "SIPGUARD_EBPF_OBJECT"),
        ("sipguard-baselines", "SIPGUARD_BASELINES_OBJECT"),
    ] {
        let object = out_dir.join(format!("{bin}.bpf.o"));
        copy(
            &target_dir.join("bpfel-unknown-none/release").join(bin),
            &object,
        )?;
        println!("cargo:rustc-env={env}={}", object.display());
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}
