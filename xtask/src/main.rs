//! `cargo xtask <task>`: everything beyond a plain `cargo build`.

mod demo;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (scripts/setup).
    Setup,
    /// cargo fmt --check and clippy (host crates and the eBPF crate), warnings are errors.
    Lint,
    /// Every test suite: host unit tests, kernel test_run, veth namespaces, CLI (needs root).
    Test(test::Args),
    /// Build, attach sipguard in a two-namespace lab, send allowed and unwanted SIP, report.
    Demo(demo::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => util::setup(),
        Task::Lint => test::lint(),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
    }
}
