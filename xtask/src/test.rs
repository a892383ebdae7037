//! `cargo xtask test` and `cargo xtask lint`.

use std::process::Command;

use anyhow::Result;

use crate::util::{cmd, require_root, run_with, setup, target_dir};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Skip fmt/clippy.
    #[arg(long)]
    no_lint: bool,
    /// Only run test names containing this (passed to the test harness).
    filter: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    require_root("test")?;
    setup()?;
    if !args.no_lint {
        lint()?;
    }
    // The CLI tests run the binary; build it first so they find it next to them.
    cmd("cargo", &["build", "--all-targets"])?;
    let bin = target_dir().join("debug/sipguard");
    // The package test unpacks the real .deb (release build, like `cargo xtask package`).
    let deb = crate::package::build(true)?;
    let mut filter: Vec<&str> = Vec::new();
    if let Some(f) = &args.filter {
        filter.push(f);
    }
    // Host unit tests: parser, decisions, policy files, ABI layout.
    let mut host = vec!["test", "-p", "sipguard-common", "-p", "sipguard", "--"];
    host.extend(&filter);
    cmd("cargo", &host)?;
    // Kernel and network tests (root): test_run on crafted frames, veth namespaces, the CLI.
    let mut kernel = vec!["test", "-p", "sipguard-tests", "--"];
    kernel.extend(&filter);
    // Commands the tests run journal their changes here, not in /var/lib/sipguard.
    let journals = target_dir().join("test-journals");
    let _ = std::fs::remove_dir_all(&journals);
    run_with(
        Command::new("cargo")
            .args(&kernel)
            .env("SIPGUARD_BIN", &bin)
            .env("SIPGUARD_DEB", &deb)
            .env("SIPGUARD_JOURNAL_DIR", &journals)
            .env("RUST_BACKTRACE", "1"),
    )?;
    let _ = std::fs::remove_dir_all(&journals);
    eprintln!("all test suites passed");
    Ok(())
}

pub(crate) fn lint() -> Result<()> {
    cmd("cargo", &["fmt", "--all", "--", "--check"])?;
    // The controller's modules form a hierarchy: no two depend on each other.
    cmd("scripts/module-cycles", &["sipguard/src"])?;
    cmd(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--exclude",
            "sipguard-ebpf",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The eBPF crate only builds for the BPF target, with nightly.
    run_with(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "-p", "sipguard-ebpf"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--target-dir", "target/ebpf-clippy", "--", "-D", "warnings"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env_remove("RUSTC"),
    )
}
