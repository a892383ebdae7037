use std::process::ExitCode;

use clap::Parser as _;
use sipguard::cli::Cli;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // Before any thread exists: setns only moves the calling thread.
    if let Some(netns) = &cli.netns
        && let Err(error) = sipguard::netns::enter(netns)
    {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    match cli.run() {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
