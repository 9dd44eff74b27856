//! Events as the engine sees them, independent of any wire format: the
//! GitHub adapter turns webhooks into these, keeping only what the engine
//! needs.

use serde::{Deserialize, Serialize};

use crate::domain::{
    DeliveryId, InstallationId, JobKey, Owner, OwnerId, Repository, RunId, RunnerName,
};
use crate::time::Timestamp;

/// One delivery from an event source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The source's id for it (`X-GitHub-Delivery`), for de-duplication.
    pub id: DeliveryId,
    /// When the source took it in.
    pub received_at: Timestamp,
    /// What happened.
    pub event: Event,
}

/// What a delivery says happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A `workflow_job` event.
    WorkflowJob(WorkflowJobEvent),
    /// An `installation` or `installation_repositories` event.
    Installation(InstallationEvent),
    /// GitHub's `ping` when a webhook is set up.
    Ping,
    /// Any other event or action: valid, and of no interest to the engine.
    Other {
        /// The event name (`X-GitHub-Event`).
        event: String,
        /// Its action, if it had one.
        action: Option<String>,
    },
}

/// The action of a `workflow_job` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowJobAction {
    /// The job waits for a runner.
    Queued,
    /// The job waits for an environment's approval.
    Waiting,
    /// A runner picked the job up.
    InProgress,
    /// The job finished (or was cancelled).
    Completed,
}

/// A job's conclusion as GitHub reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Conclusion {
    /// Succeeded.
    Success,
    /// Failed.
    Failure,
    /// Cancelled.
    Cancelled,
    /// Skipped.
    Skipped,
    /// Timed out.
    TimedOut,
    /// Needs an action.
    ActionRequired,
    /// Neutral.
    Neutral,
    /// Stale.
    Stale,
}

impl Conclusion {
    /// Parses GitHub's spelling (`success`, `timed_out`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Conclusion::Success,
            "failure" => Conclusion::Failure,
            "cancelled" => Conclusion::Cancelled,
            "skipped" => Conclusion::Skipped,
            "timed_out" => Conclusion::TimedOut,
            "action_required" => Conclusion::ActionRequired,
            "neutral" => Conclusion::Neutral,
            "stale" => Conclusion::Stale,
            _ => return None,
        })
    }

    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
            Conclusion::TimedOut => "timed_out",
            Conclusion::ActionRequired => "action_required",
            Conclusion::Neutral => "neutral",
            Conclusion::Stale => "stale",
        }
    }
}

/// A `workflow_job` event, reduced to what the engine needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowJobEvent {
    /// What happened.
    pub action: WorkflowJobAction,
    /// The job and run attempt.
    pub job: JobKey,
    /// The run.
    pub run_id: RunId,
    /// The repository (its owner's login is a display name only).
    pub repository: Repository,
    /// The repository owner's account id (`repository.owner.id`): the
    /// tenant the event claims, checked against the installation.
    pub owner_id: OwnerId,
    /// The App installation that delivered it.
    pub installation_id: InstallationId,
    /// The job's `runs-on` labels, in order.
    pub labels: Vec<String>,
    /// The job's name.
    pub name: Option<String>,
    /// The runner that picked it up (`in_progress`, `completed`).
    pub runner_name: Option<RunnerName>,
    /// That runner's id.
    pub runner_id: Option<u64>,
    /// The conclusion (`completed`).
    pub conclusion: Option<Conclusion>,
    /// When it happened according to GitHub (`started_at`/`completed_at`).
    pub at: Option<Timestamp>,
    /// Whether the repository is private (`repository.private`; internal
    /// repositories are). `None` when not reported: the policy then treats
    /// it as public.
    #[serde(default)]
    pub repository_private: Option<bool>,
}

/// What happened to an App installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InstallationAction {
    /// The App was installed.
    Created,
    /// The App was uninstalled.
    Deleted,
    /// The installation was suspended.
    Suspend,
    /// The installation was unsuspended.
    Unsuspend,
    /// Repositories were added to or removed from it.
    RepositoriesChanged,
}

/// An `installation` or `installation_repositories` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallationEvent {
    /// What happened.
    pub action: InstallationAction,
    /// The installation.
    pub installation_id: InstallationId,
    /// The login of the user or organization it is installed on (a
    /// display name).
    pub owner: Owner,
    /// That user or organization's account id (`installation.account.id`).
    pub owner_id: OwnerId,
    /// Repositories taken out of the installation
    /// (`installation_repositories.removed`).
    pub repositories_removed: Vec<Repository>,
    /// Repositories added to it (`installation_repositories.added`).
    pub repositories_added: Vec<Repository>,
}
