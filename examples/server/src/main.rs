//! `sprinters`: the control plane composed of the SDK's default adapters.
//!
//! Commands so far: `labels parse`, `policy iam|trust|cloudformation`,
//! `user-data`, `keys init|rotate|add-access-key`, `jobs list`,
//! `store backup`, `serve`, `accounts connect|verify|list|disconnect`.
//! The demo is a binary of its own (`examples/demo`), so that this one
//! links no stand-in.

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
    /// Print the AWS documents a customer applies in their account.
    Policy {
        #[command(subcommand)]
        command: commands::policy::PolicyCommand,
    },
    /// Print the boot script a launch would use (it contains the JIT config).
    UserData(commands::policy::UserDataArgs),
    /// The store's master key and stored AWS access keys.
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
    },
    /// The embedded store: an online backup.
    Store {
        #[command(subcommand)]
        command: commands::store::StoreCommand,
    },
    /// Run the control plane.
    Serve(commands::serve::ServeArgs),
    /// The job history.
    Jobs {
        #[command(subcommand)]
        command: commands::jobs::JobsCommand,
    },
    /// Owners' AWS accounts on a running control plane: connect, verify,
    /// list, disconnect.
    Accounts {
        #[command(subcommand)]
        command: commands::accounts::AccountsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Labels { command } => commands::labels::run(command),
        Command::Policy { command } => commands::policy::run(command),
        Command::UserData(args) => commands::policy::user_data(args),
        Command::Keys { command } => commands::keys::run(command),
        Command::Jobs { command } => commands::jobs::run(command),
        Command::Store { command } => commands::store::run(command),
        Command::Accounts { command } => commands::accounts::run(command),
        Command::Serve(args) => commands::serve::run(args),
    }
}
