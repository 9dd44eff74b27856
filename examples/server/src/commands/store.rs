//! `sprinters store backup`: an online copy of the embedded store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::fail;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy the store in DIR to FILE while `serve` keeps running (SQLite's
    /// online backup). The copy is as encrypted as the store: it needs the
    /// same master key, which is not copied. FILE must not exist.
    Backup {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where the copy goes (created, mode 0600).
        #[arg(long)]
        to: PathBuf,
    },
}

pub(crate) fn run(command: StoreCommand) -> ExitCode {
    match command {
        StoreCommand::Backup { data_dir, to } => match sprinters_store::backup(&data_dir, &to) {
            Ok(report) => {
                println!(
                    "backed up {} to {} ({} bytes); to restore, put it in an empty data directory as {} beside the same master key",
                    data_dir.display(),
                    to.display(),
                    report.bytes,
                    sprinters_store::DATABASE_FILE
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}
