//! `sprinters labels parse LABEL...`: resolve one job's `runs-on` labels.

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;
use sprinters_core::labels::{LabelParser, RunnerSpec, TempKind};

/// Exit code of a job whose Sprinters label is invalid.
const INVALID: u8 = 2;
/// Exit code of a job none of whose labels is ours.
const NOT_OURS: u8 = 3;

#[derive(Debug, Subcommand)]
pub(crate) enum LabelsCommand {
    /// Print the spec a job's labels resolve to, as one JSON object.
    ///
    /// Exits 0 when the job is ours and valid, 2 when it is ours and
    /// invalid (the error on stderr), 3 when no label is ours.
    Parse {
        /// The job's `runs-on` labels, in order.
        #[arg(required = true)]
        labels: Vec<String>,
        /// The label prefix of this deployment.
        #[arg(long, default_value = "sprinters")]
        prefix: String,
    },
}

pub(crate) fn run(command: LabelsCommand) -> ExitCode {
    match command {
        LabelsCommand::Parse { labels, prefix } => parse(&labels, &prefix),
    }
}

fn parse(labels: &[String], prefix: &str) -> ExitCode {
    let parser = match LabelParser::new().with_prefix(prefix) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}", e.message());
            return ExitCode::from(INVALID);
        }
    };
    match parser.parse_job(labels) {
        Ok(Some(job)) => {
            let out = SpecJson::new(&job.spec, &job.labels);
            match serde_json::to_string_pretty(&out) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(None) => {
            eprintln!("no label is a {prefix} label: the job is not ours");
            ExitCode::from(NOT_OURS)
        }
        Err(e) => {
            eprintln!("error: invalid label `{}`: {e}", e.label());
            ExitCode::from(INVALID)
        }
    }
}

/// The documented JSON shape, keys in this order.
#[derive(Serialize)]
struct SpecJson<'a> {
    provider: &'static str,
    account: Option<&'a str>,
    region: &'a str,
    availability_zone: Option<&'a str>,
    subnet: Option<&'a str>,
    image: &'static str,
    arch: &'static str,
    instance_type: &'a str,
    spot: &'static str,
    security_group: Option<&'a str>,
    root: RootJson,
    temp: TempJson,
    swap_gib: u32,
    events: bool,
    labels: &'a [String],
}

#[derive(Serialize)]
struct RootJson {
    volume_type: &'static str,
    /// The smallest boot volume its IOPS allow; the launcher uses this or
    /// the image's size, whichever is larger.
    size_gib: u32,
    iops: u32,
    throughput_mibps: u32,
}

#[derive(Serialize)]
struct TempJson {
    kind: &'static str,
    size_gib: Option<u32>,
    iops: Option<u32>,
    throughput_mibps: Option<u32>,
}

impl<'a> SpecJson<'a> {
    fn new(spec: &'a RunnerSpec, labels: &'a [String]) -> Self {
        Self {
            provider: "aws",
            account: spec.account.as_ref().map(|a| a.as_str()),
            region: spec.region.as_str(),
            availability_zone: spec.availability_zone.as_ref().map(|a| a.as_str()),
            subnet: spec.subnet.as_ref().map(|s| s.as_str()),
            image: spec.image.name(),
            arch: spec.arch().as_str(),
            instance_type: spec.instance_type.as_str(),
            spot: spec.spot.as_str(),
            security_group: spec.security_group.as_ref().map(|s| s.as_str()),
            root: RootJson {
                volume_type: "gp3",
                size_gib: spec.root.size_gib(),
                iops: spec.root.iops,
                throughput_mibps: spec.root.throughput_mibps,
            },
            temp: TempJson {
                kind: match spec.temp.kind {
                    TempKind::Gp3 => "gp3",
                    TempKind::Ephemeral => "ephemeral",
                    TempKind::Zram => "zram",
                },
                size_gib: spec.temp.size_gib,
                iops: spec.temp.iops,
                throughput_mibps: spec.temp.throughput_mibps,
            },
            swap_gib: spec.swap_gib,
            events: spec.events,
            labels,
        }
    }
}
