//! `cargo xtask demo`: build, then run the SIP lab with the release binaries.

use std::process::Command;

use anyhow::Result;

use crate::util::{cmd, require_root, run_with, setup, target_dir};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Extra arguments for `sipguard-lab demo` (`--quick`, `--keep`, `--json FILE`, `--gate`: then
    /// the access gate under the spoofed flood, open and shut side by side).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    require_root("demo")?;
    setup()?;
    cmd(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "sipguard",
            "-p",
            "sipguard-tests",
            "--bins",
        ],
    )?;
    let release = target_dir().join("release");
    run_with(
        Command::new(release.join("sipguard-lab"))
            .arg("demo")
            .args(&args.rest)
            .env("SIPGUARD_BIN", release.join("sipguard")),
    )
}

/// `cargo xtask demo-down`
pub(crate) fn down() -> Result<()> {
    require_root("demo-down")?;
    let release = target_dir().join("release");
    run_with(Command::new(release.join("sipguard-lab")).arg("down"))
}
