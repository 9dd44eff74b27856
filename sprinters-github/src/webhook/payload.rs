//! GitHub's payloads, reduced to the fields the engine needs.

use serde::Deserialize;
use sprinters_core::domain::{
    InstallationId, JobId, JobKey, Owner, OwnerId, Repository, RunAttempt, RunId, RunnerName,
};
use sprinters_core::events::{
    Conclusion, Event, InstallationAction, InstallationEvent, WorkflowJobAction, WorkflowJobEvent,
};
use sprinters_core::time::Timestamp;

use super::WebhookError;

#[derive(Deserialize)]
struct Action {
    action: Option<String>,
}

#[derive(Deserialize)]
struct WorkflowJobPayload {
    workflow_job: Job,
    repository: Repo,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct Job {
    id: u64,
    run_id: u64,
    run_attempt: u32,
    #[serde(default)]
    labels: Vec<String>,
    name: Option<String>,
    runner_id: Option<u64>,
    runner_name: Option<String>,
    conclusion: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
}

#[derive(Deserialize)]
struct Repo {
    full_name: String,
    owner: Account,
    // True for private and internal repositories.
    #[serde(default)]
    private: Option<bool>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
    account: Option<Account>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
    // The tenant: logins change hands, account ids never do.
    id: u64,
}

#[derive(Deserialize)]
struct InstallationPayload {
    installation: Installation,
    #[serde(default)]
    repositories_added: Vec<RepoName>,
    #[serde(default)]
    repositories_removed: Vec<RepoName>,
}

#[derive(Deserialize)]
struct RepoName {
    full_name: String,
}

/// Parses the body of event `event` (the `X-GitHub-Event` header). Events
/// and actions the engine does not use are valid [`Event::Other`]s.
pub fn parse_event(event: &str, body: &[u8]) -> Result<Event, WebhookError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::MalformedJson(e.to_string()))?;
    if !value.is_object() {
        return Err(WebhookError::InvalidPayload(
            "expected a JSON object".to_owned(),
        ));
    }
    let action = Action::deserialize(&value).ok().and_then(|a| a.action);
    let other = || Event::Other {
        event: event.to_owned(),
        action: action.clone(),
    };
    Ok(match (event, action.as_deref()) {
        ("ping", _) => Event::Ping,
        ("workflow_job", Some(a)) => match workflow_job_action(a) {
            Some(action) => Event::WorkflowJob(workflow_job(action, value)?),
            None => other(),
        },
        ("installation", Some(a)) => match installation_action(a) {
            Some(action) => Event::Installation(installation(action, value)?),
            None => other(),
        },
        ("installation_repositories", Some(_)) => Event::Installation(installation(
            InstallationAction::RepositoriesChanged,
            value,
        )?),
        _ => other(),
    })
}

fn workflow_job_action(action: &str) -> Option<WorkflowJobAction> {
    Some(match action {
        "queued" => WorkflowJobAction::Queued,
        "waiting" => WorkflowJobAction::Waiting,
        "in_progress" => WorkflowJobAction::InProgress,
        "completed" => WorkflowJobAction::Completed,
        _ => return None,
    })
}

fn installation_action(action: &str) -> Option<InstallationAction> {
    Some(match action {
        "created" => InstallationAction::Created,
        "deleted" => InstallationAction::Deleted,
        "suspend" => InstallationAction::Suspend,
        "unsuspend" => InstallationAction::Unsuspend,
        _ => return None,
    })
}

fn invalid(what: impl std::fmt::Display) -> WebhookError {
    WebhookError::InvalidPayload(what.to_string())
}

fn workflow_job(
    action: WorkflowJobAction,
    value: serde_json::Value,
) -> Result<WorkflowJobEvent, WebhookError> {
    let p = WorkflowJobPayload::deserialize(value)
        .map_err(|e| invalid(format!("workflow_job: {e}")))?;
    let job = p.workflow_job;
    let installation = p.installation.ok_or_else(|| {
        invalid(
            "workflow_job without an installation: Sprinters reads the GitHub App's webhook, \
             not a repository or organization webhook",
        )
    })?;
    let attempt =
        RunAttempt::new(job.run_attempt).map_err(|e| invalid(format!("run_attempt: {e}")))?;
    let repository = Repository::parse(&p.repository.full_name)
        .map_err(|e| invalid(format!("repository: {e}")))?;
    let at = match action {
        WorkflowJobAction::Completed => job.completed_at.as_deref(),
        _ => job.started_at.as_deref(),
    }
    .and_then(timestamp);
    Ok(WorkflowJobEvent {
        action,
        job: JobKey::new(JobId::new(job.id), attempt),
        run_id: RunId::new(job.run_id),
        owner_id: OwnerId::new(p.repository.owner.id),
        repository,
        installation_id: InstallationId::new(installation.id),
        labels: job.labels,
        name: job.name,
        // Hosted runners have names like "GitHub Actions 5": not ours, and
        // nothing the engine needs.
        runner_name: job
            .runner_name
            .as_deref()
            .and_then(|n| RunnerName::parse(n).ok()),
        runner_id: job.runner_id.filter(|id| *id != 0),
        conclusion: job.conclusion.as_deref().and_then(Conclusion::parse),
        at,
        repository_private: p.repository.private,
    })
}

fn installation(
    action: InstallationAction,
    value: serde_json::Value,
) -> Result<InstallationEvent, WebhookError> {
    let p = InstallationPayload::deserialize(value)
        .map_err(|e| invalid(format!("installation: {e}")))?;
    let account = p
        .installation
        .account
        .ok_or_else(|| invalid("installation without an account"))?;
    let repositories = |names: Vec<RepoName>| {
        names
            .iter()
            .map(|r| {
                Repository::parse(&r.full_name)
                    .map_err(|e| invalid(format!("installation repository: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(InstallationEvent {
        action,
        installation_id: InstallationId::new(p.installation.id),
        owner: Owner::parse(&account.login)
            .map_err(|e| invalid(format!("installation account: {e}")))?,
        owner_id: OwnerId::new(account.id),
        repositories_removed: repositories(p.repositories_removed)?,
        repositories_added: repositories(p.repositories_added)?,
    })
}

fn timestamp(s: &str) -> Option<Timestamp> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .map(Timestamp::from_system_time)
}
