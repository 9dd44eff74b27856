//! `sprinters`: the control plane composed of the SDK's default adapters.
//!
//! Commands so far: `sprinters labels parse LABEL...`.

// A command-line tool prints by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs every GitHub Actions job on its own ephemeral EC2 instance.
#[derive(Debug, Parser)]
#[command(name = "sprinters", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with `runs-on` labels.
    Labels {
        #[command(subcommand)]
        command: commands::labels::LabelsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Labels { command } => commands::labels::run(command),
    }
}
