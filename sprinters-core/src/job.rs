//! The job record: what the store keeps about one (job, run attempt), and
//! the state machine it moves through.

use serde::{Deserialize, Serialize};

use crate::domain::{
    AccountId, AvailabilityZone, InstallationId, InstanceId, InstanceType, JobKey, OwnerId, Region,
    Repository, RunId, RunnerName,
};
use crate::events::Conclusion;
use crate::labels::{LabelSetKey, RunnerSpec};
use crate::time::Timestamp;

/// Where a job is. States only move forward (see [`JobState::rank`]).
///
/// ```text
/// Queued ──▶ Launching ──▶ Launched ──▶ Running ──▶ Completed ──▶ Cleaned
///    │            │            │           │
///    └▶ Rejected  └▶ Failed    └───────────┴──▶ Cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Ours and waiting for a runner.
    Queued,
    /// A launch is in flight under a claim.
    Launching,
    /// An instance is up (or booting) and its runner waits for the job.
    Launched,
    /// A runner picked the job up.
    Running,
    /// GitHub reported the job done.
    Completed,
    /// Done, and every instance of it is terminated.
    Cleaned,
    /// Cancelled (before or after pickup).
    Cancelled,
    /// Its label is invalid or names an account its owner has not connected.
    Rejected,
    /// Launching failed for good; `message` says why.
    Failed,
}

impl JobState {
    /// Progress order: a job never moves to a lower rank.
    pub fn rank(self) -> u8 {
        match self {
            JobState::Queued => 0,
            JobState::Launching => 1,
            JobState::Launched => 2,
            JobState::Running => 3,
            JobState::Completed | JobState::Cancelled | JobState::Rejected | JobState::Failed => 4,
            JobState::Cleaned => 5,
        }
    }

    /// Whether GitHub is done with the job (it may still have instances to end).
    pub fn is_finished(self) -> bool {
        self.rank() >= 4
    }

    /// Whether the job still waits for a runner to pick it up.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Launching | JobState::Launched
        )
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Launching => "launching",
            JobState::Launched => "launched",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Cleaned => "cleaned",
            JobState::Cancelled => "cancelled",
            JobState::Rejected => "rejected",
            JobState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an instance was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The job it ran completed.
    JobCompleted,
    /// Its job was cancelled or taken elsewhere, and no other job needed it.
    Spare,
    /// No live job knows it.
    Orphan,
    /// It outlived the maximum lifetime.
    MaxLifetime,
    /// EC2 reclaimed the spot capacity.
    SpotReclaimed,
    /// The launch failed or never produced an instance.
    LaunchFailed,
}

impl EndReason {
    /// The snake_case name, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::JobCompleted => "job_completed",
            EndReason::Spare => "spare",
            EndReason::Orphan => "orphan",
            EndReason::MaxLifetime => "max_lifetime",
            EndReason::SpotReclaimed => "spot_reclaimed",
            EndReason::LaunchFailed => "launch_failed",
        }
    }
}

/// One instance launched for a job. Its runner may end up serving another
/// job with the same labels ([`Launch::taken_by`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// 1 for the job's first launch, 2 for a replacement, ...
    pub number: u32,
    /// The runner's name, [`RunnerName::for_launch`].
    pub runner_name: RunnerName,
    /// GitHub's runner id, once registered.
    pub runner_id: Option<u64>,
    /// The instance, once `RunInstances` answered.
    pub instance_id: Option<InstanceId>,
    /// Where it runs.
    pub region: Region,
    /// The zone EC2 placed it in.
    pub availability_zone: Option<AvailabilityZone>,
    /// Its type.
    pub instance_type: InstanceType,
    /// Whether it is spot capacity.
    pub spot: bool,
    /// Whether this launch is the on-demand fallback after no spot capacity.
    pub spot_fallback: bool,
    /// Price per hour in millionths of a dollar, when known.
    pub hourly_price_micros: Option<u64>,
    /// When `RunInstances` answered.
    pub launched_at: Option<Timestamp>,
    /// The job that picked its runner up.
    pub taken_by: Option<JobKey>,
    /// When it was ended, and why.
    pub ended: Option<(Timestamp, EndReason)>,
}

impl Launch {
    /// Whether an instance may exist for this launch and has not been ended.
    pub fn is_live(&self) -> bool {
        self.ended.is_none()
    }

    /// Whether its runner is up (or coming up) with no job yet.
    pub fn is_idle(&self) -> bool {
        self.is_live() && self.taken_by.is_none()
    }
}

/// A claim on a job: only its owner may launch for it until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The replica holding it.
    pub owner: String,
    /// When it lapses if not renewed or released.
    pub expires_at: Timestamp,
}

/// What the store keeps about one (job, run attempt): only what the engine
/// and the history need. No payloads, no logs, no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job and attempt.
    pub key: JobKey,
    /// Its workflow run.
    pub run_id: RunId,
    /// Its repository.
    pub repository: Repository,
    /// Its owner's GitHub account id: the tenant it belongs to.
    pub owner_id: OwnerId,
    /// The GitHub App installation that reported it.
    pub installation_id: InstallationId,
    /// The job's name, for the console.
    pub name: Option<String>,
    /// All of its `runs-on` labels.
    pub labels: Vec<String>,
    /// The key of its label set: runners of the same set serve each other.
    pub label_set: LabelSetKey,
    /// The resolved spec (absent when the label was rejected).
    pub spec: Option<RunnerSpec>,
    /// The AWS account it launches in.
    pub account: Option<AccountId>,
    /// Where it is.
    pub state: JobState,
    /// Why it was rejected or failed, or what it waits for.
    pub message: Option<String>,
    /// Instances launched for it, oldest first.
    pub launches: Vec<Launch>,
    /// The runner that picked it up (maybe launched for another job), as
    /// GitHub names it: a display name, since anyone can name a runner.
    pub ran_on: Option<RunnerName>,
    /// The launch (job and launch number) whose runner picked it up, once
    /// checked to be ours: a launch of the same owner and repository with
    /// GitHub's runner id. Only this leads from a job to an instance.
    pub ran_on_launch: Option<(JobKey, u32)>,
    /// GitHub's conclusion.
    pub conclusion: Option<Conclusion>,
    /// When it was queued.
    pub queued_at: Timestamp,
    /// When a runner picked it up.
    pub started_at: Option<Timestamp>,
    /// When it finished.
    pub completed_at: Option<Timestamp>,
    /// How many launch attempts failed with a transient error.
    pub failed_attempts: u32,
    /// When the next launch attempt is due, after a transient error.
    pub next_attempt_at: Option<Timestamp>,
    /// The launch claim.
    pub lease: Option<Lease>,
    /// Estimated cost of the instance it ran on, in millionths of a dollar.
    pub cost_micros: Option<u64>,
    /// Whether GitHub accepted a re-run after a spot reclaim.
    pub rerun_requested: bool,
    /// A re-run after a spot reclaim that GitHub has not accepted yet: it
    /// refuses one while the job's workflow run is in progress, which is
    /// when a reclaim is seen. Asked again each reconciliation pass.
    #[serde(default)]
    pub rerun_pending: bool,
}

impl JobRecord {
    /// Whether the job needs the engine: unfinished, or an instance to end,
    /// or failed by the engine while GitHub has not concluded it (a runner
    /// of ours may still take it, and its webhooks may be lost: the
    /// reconciler asks GitHub until it is concluded).
    pub fn is_active(&self) -> bool {
        !self.state.is_finished()
            || self.launches.iter().any(Launch::is_live)
            || self.awaits_conclusion()
            || self.rerun_pending
    }

    /// Failed by the engine, and not yet concluded by GitHub.
    pub fn awaits_conclusion(&self) -> bool {
        self.state == JobState::Failed && self.conclusion.is_none()
    }

    /// When the engine's tick must next look at this job to start a launch
    /// for it: a waiting job without an idle instance of its own, once its
    /// back-off is over and its launch claim has lapsed. `None` for every
    /// other job. Stores index it, so that a tick reads what is due and
    /// never the rest of the history (nor the waiting jobs whose runner is
    /// up).
    pub fn due_at(&self) -> Option<Timestamp> {
        if !self.state.is_waiting()
            || self
                .launches
                .iter()
                .any(|l| l.is_idle() && l.instance_id.is_some())
        {
            return None;
        }
        let backoff = self.next_attempt_at.unwrap_or(Timestamp::from_millis(0));
        let claim = self
            .lease
            .as_ref()
            .map_or(Timestamp::from_millis(0), |l| l.expires_at);
        Some(backoff.max(claim))
    }

    /// How many runners of its launches another job of its scope may take:
    /// instances up with no job yet, of a job that no longer waits for one.
    /// Stores keep it in clear and index the jobs that have any, so that a
    /// new job's look for a spare runner reads those (rare) and never the
    /// label set's running jobs.
    pub fn spare_runners(&self) -> usize {
        if self.state.is_waiting() {
            return 0;
        }
        self.launches
            .iter()
            .filter(|l| l.is_idle() && l.instance_id.is_some())
            .count()
    }

    /// The login of its repository's owner when it was recorded (a display
    /// name: the tenant is [`JobRecord::owner_id`]).
    pub fn owner(&self) -> &crate::domain::Owner {
        self.repository.owner()
    }

    /// The launch whose runner is `name`.
    pub fn launch_by_runner(&self, name: &RunnerName) -> Option<&Launch> {
        self.launches.iter().find(|l| &l.runner_name == name)
    }

    /// How long it ran, once finished.
    pub fn duration(&self) -> Option<std::time::Duration> {
        Some(self.completed_at?.since(self.started_at?))
    }
}
