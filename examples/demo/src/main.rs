//! `sprinters-demo`: the whole product on one machine, against the AWS
//! API emulator (`scripts/demo` starts one and runs this).

// A command-line tool prints by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use sprinters_demo::{self as demo, DemoOptions, DemoReport, emulator_hint};

/// The whole product on this machine: serve, the GitHub stand-in and the
/// AWS API emulator, with jobs sent as signed webhooks.
#[derive(Debug, Parser)]
#[command(name = "sprinters-demo", version, about)]
struct DemoArgs {
    /// How many jobs to send (1 to 500); one of them has a label error.
    #[arg(long, default_value_t = 20)]
    jobs: usize,
    /// The AWS API emulator (default: $SPRINTERS_AWS_ENDPOINT).
    #[arg(long)]
    aws_endpoint: Option<String>,
    /// Where the encrypted store goes (default: a new temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = DemoArgs::parse();
    if !(1..=500).contains(&args.jobs) {
        return usage_error(format!("--jobs {}: expected 1 to 500", args.jobs));
    }
    let endpoint = args.aws_endpoint.or_else(|| {
        std::env::var(sprinters_aws::sdk::ENDPOINT_ENV)
            .ok()
            .filter(|e| !e.is_empty())
    });
    let Some(aws_endpoint) = endpoint else {
        return fail(format!(
            "the demo needs the AWS API emulator, and neither --aws-endpoint nor \
             SPRINTERS_AWS_ENDPOINT names one: {}",
            emulator_hint()
        ));
    };
    // The engine's own logs would drown the demo's: warnings only, unless
    // RUST_LOG asks for more.
    sprinters_server::logging::init("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let progress = Progress::new();
    let options = DemoOptions {
        jobs: args.jobs,
        aws_endpoint,
        data_dir: args.data_dir,
    };
    let report = runtime.block_on(demo::run(options, &|line| progress.show(line)));
    progress.done();
    runtime.shutdown_timeout(Duration::from_secs(1));
    match report {
        Ok(report) => {
            print_report(&report);
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                for problem in &report.problems {
                    eprintln!("error: {problem}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(e),
    }
}

/// Prints one line about what went wrong and fails (exit 1).
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Prints one line about a bad argument and fails (exit 2).
fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// One progress line, redrawn in place on a terminal.
struct Progress {
    terminal: bool,
    last: Mutex<String>,
}

impl Progress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last: Mutex::new(String::new()),
        }
    }

    fn show(&self, line: &str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last == line {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        *last = line.to_owned();
    }

    fn done(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    )
}

fn print_report(report: &DemoReport) {
    println!(
        "{:<10} {:<52} {:<20} {:<11} {:<11} {:<4} {:<20} {:>8}",
        "JOB", "LABELS", "INSTANCE", "TYPE", "AZ", "SPOT", "STATE", "DURATION"
    );
    for row in &report.rows {
        let mut labels = row.labels.join(" ");
        if labels.len() > 52 {
            labels.truncate(49);
            labels.push_str("...");
        }
        let state = match &row.conclusion {
            Some(c) if row.state == "cleaned" => format!("cleaned ({c})"),
            _ => row.state.clone(),
        };
        println!(
            "{:<10} {:<52} {:<20} {:<11} {:<11} {:<4} {:<20} {:>8}",
            row.job_id,
            labels,
            row.instance_id.as_deref().unwrap_or("-"),
            row.instance_type.as_deref().unwrap_or("-"),
            row.availability_zone.as_deref().unwrap_or("-"),
            if row.spot { "yes" } else { "no" },
            state,
            row.duration
                .map_or_else(|| "-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64())),
        );
        if let Some(message) = &row.message {
            println!("{:<10} ↳ {message}", "");
        }
    }
    println!();
    println!(
        "{} jobs: {} launched, {} terminated, {} rejected, {} cancelled before pickup, {} orphans left; \
         webhook-to-launch p50 {}, p99 {} ({})",
        report.jobs,
        report.launched,
        report.terminated,
        report.rejected,
        report.cancelled,
        report.orphans_left,
        millis(report.latency(50.0)),
        millis(report.latency(99.0)),
        if report.passed() { "PASSED" } else { "FAILED" },
    );
    println!(
        "The encrypted job history is in {0}: sprinters jobs list --data-dir {0}",
        report.data_dir.display()
    );
}
