//! `sipguard generate` (hidden): the man pages and shell completions, generated from this very
//! command line definition, so they never drift from `--help`. `cargo xtask package` runs it.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use super::Cli;

/// The manual section of every page: sipguard is a system administration command (root only).
pub const MAN_SECTION: &str = "8";

/// Generate man pages or shell completions (for packaging).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Write one man page per command into DIR: sipguard.8, sipguard-run.8, sipguard-bans-list.8...
    Man { dir: PathBuf },
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

pub(super) fn run(args: Args) -> Result<u8> {
    match args.what {
        What::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            for page in man_pages(&dir)? {
                println!("{}", page.display());
            }
        }
        What::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut visible_command(),
                "sipguard",
                &mut std::io::stdout(),
            );
        }
    }
    Ok(0)
}

/// The command line without its hidden subcommands (clap_complete would offer them).
fn visible_command() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("sipguard")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(
            full.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .cloned(),
        )
}

/// Writes a page for every visible command and subcommand; returns their paths.
pub fn man_pages(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    fn generate(
        command: clap::Command,
        dir: &std::path::Path,
        written: &mut Vec<PathBuf>,
    ) -> Result<()> {
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            generate(sub.clone(), dir, written)?;
        }
        let page = clap_mangen::Man::new(command)
            .section(MAN_SECTION)
            .source(format!("sipguard {}", env!("CARGO_PKG_VERSION")))
            .manual("System Administration");
        let path = page
            .generate_to(dir)
            .with_context(|| format!("write a man page into {}", dir.display()))?;
        written.push(path);
        Ok(())
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    generate(command, dir, &mut written)?;
    written.sort();
    Ok(written)
}
