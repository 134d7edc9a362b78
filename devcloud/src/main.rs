//! `oboto-devcloud`: see `../shared/design/devcloud.md` for the command line contract.

use std::process::ExitCode;

use clap::Parser;
use oboto_devcloud::{config::Args, run};

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVCLOUD_LOG")
                .unwrap_or_else(|_| "oboto_devcloud=info,warn".into()),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oboto-devcloud: {e}");
            ExitCode::FAILURE
        }
    }
}
