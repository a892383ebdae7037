//! `cargo xtask bench [--quick]`: build, then run `sipguard-bench` (per-packet cost and
//! throughput of sipguard against baselines, side by side) with the release binaries.

use std::{path::PathBuf, process::Command};

use anyhow::Result;

use crate::util::{cmd, require_root, run_with, setup, target_dir, workspace_root};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Every part briefly (seconds): what the test suite runs so that the harness does not rot.
    #[arg(long)]
    quick: bool,
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
        ],
    )?;
    let out = args
        .out
        .unwrap_or_else(|| workspace_root().join("target/bench"));
    let mut bench = Command::new(target_dir().join("release/sipguard-bench"));
    bench.arg("--out").arg(out);
    if args.quick {
        bench.arg("--quick");
    }
    run_with(&mut bench)
}
