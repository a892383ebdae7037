//! Running commands from the workspace root.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where cargo puts what it builds: `$CARGO_TARGET_DIR` (relative to the workspace root), or
/// `target/`.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace_root().join("target"),
        |dir| workspace_root().join(dir),
    )
}

/// Runs a command in the workspace root, echoing it; fails on a non-zero exit.
pub(crate) fn cmd(program: &str, args: &[&str]) -> Result<()> {
    run_with(Command::new(program).args(args))
}

pub(crate) fn run_with(command: &mut Command) -> Result<()> {
    command.current_dir(workspace_root());
    eprintln!("+ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("run {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn require_root(task: &str) -> Result<()> {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`cargo xtask {task}` needs root (BPF, XDP, network namespaces)");
    }
    Ok(())
}

/// scripts/setup: idempotent, quiet when everything is present.
pub(crate) fn setup() -> Result<()> {
    require_root("setup")?;
    cmd("scripts/setup", &[])
}
