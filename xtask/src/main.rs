//! `cargo xtask <task>`: everything beyond a plain `cargo build`.
#![warn(unused_crate_dependencies)]

mod bench;
mod demo;
mod package;
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
    /// The SIP lab (Kamailio, sipp, SIPVicious, a spoofed flood) without a filter, in monitor
    /// mode and enforcing, side by side. `--quick`: enforcing only; `--keep`: leave it running.
    Demo(demo::Args),
    /// Remove a lab left running by `demo --keep`.
    DemoDown,
    /// The Debian package: target/package/sipguard_<version>_<arch>.deb (release build).
    Package(package::Args),
    /// Per-packet cost and throughput against baselines, side by side: target/bench/report.md.
    Bench(bench::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => util::setup(),
        Task::Lint => test::lint(),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::DemoDown => demo::down(),
        Task::Bench(args) => bench::run(args),
        Task::Package(args) => package::run(args),
    }
}
