//! The `switchboard` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    switchboard::cli::run(switchboard::cli::Cli::parse()).await
}
