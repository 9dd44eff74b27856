//! A job as the history shows it: the fields of a console row, the same
//! for `sprinters jobs list --json` and `GET /api/jobs`.

use serde::Serialize;
use sprinters_core::job::JobRecord;
use sprinters_core::time::Timestamp;

/// One job of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// GitHub's job id.
    pub job_id: u64,
    /// The run attempt.
    pub run_attempt: u32,
    /// The workflow run.
    pub run_id: u64,
    /// `owner/name`.
    pub repository: String,
    /// The job's name.
    pub name: Option<String>,
    /// Its `runs-on` labels.
    pub labels: Vec<String>,
    /// The engine's state (`queued`, `running`, `cleaned`, `rejected`, ...).
    pub state: String,
    /// Why it was rejected or failed.
    pub message: Option<String>,
    /// GitHub's conclusion.
    pub conclusion: Option<String>,
    /// The AWS account.
    pub account: Option<String>,
    /// The instance it ran on (or the last one launched for it).
    pub instance_id: Option<String>,
    /// Its type.
    pub instance_type: Option<String>,
    /// Its zone.
    pub availability_zone: Option<String>,
    /// Whether it was spot capacity.
    pub spot: bool,
    /// When it was queued (RFC 3339).
    pub queued_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it finished.
    pub completed_at: Option<String>,
    /// Seconds from start to finish.
    pub duration_seconds: Option<u64>,
    /// Estimated cost in US dollars, where the price of the type is known.
    pub cost_usd: Option<f64>,
}

fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system_time()).to_string()
}

impl JobView {
    /// The view of `record`.
    pub fn of(record: &JobRecord) -> Self {
        // The instance that ran it, else the newest launched for it.
        let launch = record
            .ran_on
            .as_ref()
            .and_then(|r| record.launch_by_runner(r))
            .or_else(|| record.launches.last());
        let duration = match (record.started_at, record.completed_at) {
            (Some(s), Some(c)) => Some(c.since(s).as_secs()),
            _ => None,
        };
        Self {
            job_id: record.key.job_id.get(),
            run_attempt: record.key.run_attempt.get(),
            run_id: record.run_id.get(),
            repository: record.repository.to_string(),
            name: record.name.clone(),
            labels: record.labels.clone(),
            state: record.state.as_str().to_owned(),
            message: record.message.clone(),
            conclusion: record.conclusion.map(|c| c.as_str().to_owned()),
            account: record.account.as_ref().map(|a| a.to_string()),
            instance_id: launch
                .and_then(|l| l.instance_id.as_ref())
                .map(|i| i.to_string()),
            instance_type: launch.map(|l| l.instance_type.to_string()),
            availability_zone: launch
                .and_then(|l| l.availability_zone.as_ref())
                .map(|z| z.to_string()),
            spot: launch.is_some_and(|l| l.spot),
            queued_at: rfc3339(record.queued_at),
            started_at: record.started_at.map(rfc3339),
            completed_at: record.completed_at.map(rfc3339),
            duration_seconds: duration,
            cost_usd: record.cost_micros.map(|m| m as f64 / 1_000_000.0),
        }
    }
}
