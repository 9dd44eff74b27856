//! `sprinters jobs list`: the job history from the store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use sprinters_core::domain::OwnerId;
use sprinters_core::ports::{JobStore, ListJobs};
use sprinters_server::view::JobView;

use super::keys::open_store;
use super::{fail, runtime, usage_error};

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// The jobs, newest first.
    List {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Only this GitHub owner's jobs, by its numeric account id (a
        /// login changes hands after a rename; the id never does).
        #[arg(long)]
        owner: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: JobsCommand) -> ExitCode {
    let JobsCommand::List {
        data_dir,
        owner,
        limit,
        json,
    } = command;
    let owner = match owner.as_deref().map(str::parse::<u64>).transpose() {
        Ok(owner) => owner.map(OwnerId::new),
        Err(_) => {
            return usage_error(
                "--owner: expected the owner's numeric GitHub account id (logins change hands)"
                    .to_owned(),
            );
        }
    };
    let store = match open_store(&data_dir) {
        Ok(store) => store,
        Err(e) => return fail(e),
    };
    let mut query = ListJobs::newest(limit.clamp(1, 10_000));
    query.owner_id = owner;
    let page = match runtime().and_then(|rt| {
        rt.block_on(store.list_jobs(query))
            .map_err(|e| e.to_string())
    }) {
        Ok(page) => page,
        Err(e) => return fail(e),
    };
    let views: Vec<JobView> = page.jobs.iter().map(|v| JobView::of(&v.value)).collect();
    if json {
        match serde_json::to_string_pretty(&views) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e.to_string()),
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<12} {:<3} {:<28} {:<10} {:<10} {:<20} {:<12} {:<12} {:>5} {:>8}",
        "JOB",
        "ATT",
        "REPOSITORY",
        "STATE",
        "RESULT",
        "INSTANCE",
        "TYPE",
        "ZONE",
        "SPOT",
        "SECONDS"
    );
    for v in &views {
        println!(
            "{:<12} {:<3} {:<28} {:<10} {:<10} {:<20} {:<12} {:<12} {:>5} {:>8}",
            v.job_id,
            v.run_attempt,
            v.repository,
            v.state,
            v.conclusion.as_deref().unwrap_or("-"),
            v.instance_id.as_deref().unwrap_or("-"),
            v.instance_type.as_deref().unwrap_or("-"),
            v.availability_zone.as_deref().unwrap_or("-"),
            if v.spot { "spot" } else { "-" },
            v.duration_seconds.map_or("-".to_owned(), |d| d.to_string()),
        );
        if let Some(message) = &v.message {
            println!("             {message}");
        }
    }
    ExitCode::SUCCESS
}
