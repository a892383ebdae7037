//! `sipguard-bench` (run by `cargo xtask bench`): per-packet cost and throughput of sipguard
//! against baselines measured side by side in the same run, written as Markdown and JSON.
//!
//! ```text
//! sipguard-bench [--quick] [--only packets|fleet] [--out DIR]
//!                                           # DIR/report.md, DIR/report.json (default target/bench)
//! ```
//!
//! Needs root (BPF, XDP, network namespaces), xdp-filter, nftables and ethtool (scripts/setup);
//! the fleet part needs redis-server and the `sipguard` binary (beside this one, or
//! `SIPGUARD_BIN`).

#[path = "../bench/mod.rs"]
mod bench;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Parser;

#[derive(Parser)]
#[command(name = "sipguard-bench")]
struct Cli {
    /// Every part briefly (seconds): the smoke mode of the test suite.
    #[arg(long)]
    quick: bool,
    /// Only this part: `packets` (per-packet cost, throughput, programs) or `fleet` (ban
    /// propagation between two hosts through Redis).
    #[arg(long, value_enum)]
    only: Option<bench::Part>,
    /// Where report.md and report.json go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn main() -> Result<()> {
    sipguard_tests::require_root();
    let cli = Cli::parse();
    bench::install_interrupt_handler();
    let mut settings = if cli.quick {
        bench::Settings::quick()
    } else {
        bench::Settings::full()
    };
    settings.only = cli.only;
    let report = bench::run(&settings)?;
    std::fs::create_dir_all(&cli.out).with_context(|| format!("create {}", cli.out.display()))?;
    let json = cli.out.join("report.json");
    let md = cli.out.join("report.md");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", json.display()))?;
    std::fs::write(&md, report.markdown()).with_context(|| format!("write {}", md.display()))?;
    print!("{}", report.summary());
    println!("report: {} and {}", md.display(), json.display());
    Ok(())
}
