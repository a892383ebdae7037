//! `cargo xtask bench [--quick] [--only packets|fleet]`: build, then run `sipguard-bench`
//! (per-packet cost and throughput of sipguard against baselines, ban propagation between two
//! fleet hosts against Redis's own round trip, side by side) with the release binaries.

use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::util::{cmd, require_root, run_with, setup, target_dir, workspace_root};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Every part briefly (seconds): what the test suite runs so that the harness does not rot.
    #[arg(long)]
    quick: bool,
    /// Only one part: `packets` (per-packet cost, throughput, programs) or `fleet` (ban
    /// propagation between two hosts through Redis).
    #[arg(long, value_name = "PART", value_parser = ["packets", "fleet"])]
    only: Option<String>,
    /// Where report.md and report.json go (default: target/bench).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    require_root("bench")?;
    setup()?;
    cmd(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "sipguard-tests",
            "--bin",
            "sipguard-bench",
            // The fleet part runs `sipguard run` twice.
            "-p",
            "sipguard",
            "--bin",
            "sipguard",
        ],
    )?;
    let out = args
        .out
        .unwrap_or_else(|| workspace_root().join("target/bench"));
    let release = target_dir().join("release");
    let mut bench = Command::new(release.join("sipguard-bench"));
    bench
        .arg("--out")
        .arg(out)
        .env("SIPGUARD_BIN", release.join("sipguard"));
    if args.quick {
        bench.arg("--quick");
    }
    if let Some(part) = &args.only {
        bench.args(["--only", part]);
    }
    run_with(&mut bench)
}
