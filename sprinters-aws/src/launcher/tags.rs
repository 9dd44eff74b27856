//! The tags on what we launch, and an instance read back from EC2.

use std::time::SystemTime;

use aws_sdk_ec2::types::{
    Instance, InstanceLifecycleType, InstanceStateName, ResourceType, Tag, TagSpecification,
};
use sprinters_core::domain::{InstanceId, JobId, JobKey, RunAttempt, RunnerName};
use sprinters_core::ports::{InstanceInfo, InstanceState, LaunchRequest, StateReason};
use sprinters_core::time::Timestamp;

use crate::policy::{OWNED_TAG_KEY, OWNED_TAG_VALUE};

/// The control plane that launched it.
pub const CONTROLLER_TAG: &str = "sprinters:controller";
/// The GitHub job id.
pub const JOB_TAG: &str = "sprinters:job";
/// The job's run attempt.
pub const ATTEMPT_TAG: &str = "sprinters:attempt";
/// The workflow run id.
pub const RUN_TAG: &str = "sprinters:run";
/// `owner/repository`.
pub const REPOSITORY_TAG: &str = "sprinters:repository";
/// The JIT runner's name.
pub const RUNNER_TAG: &str = "sprinters:runner";
/// The label's spot mode (`false`, `true`, `auto`, `rerun`).
pub const SPOT_TAG: &str = "sprinters:spot";

/// The tags of a launch, on the instance and each of its volumes.
pub(crate) fn launch_tags(request: &LaunchRequest) -> Vec<TagSpecification> {
    let tags = [
        (OWNED_TAG_KEY, OWNED_TAG_VALUE.to_owned()),
        (CONTROLLER_TAG, request.controller_id.clone()),
        (JOB_TAG, request.job.job_id.to_string()),
        (ATTEMPT_TAG, request.job.run_attempt.to_string()),
        (RUN_TAG, request.run_id.to_string()),
        (REPOSITORY_TAG, request.repository.to_string()),
        (RUNNER_TAG, request.runner_name.to_string()),
        (SPOT_TAG, request.spec.spot.as_str().to_owned()),
        ("Name", request.runner_name.to_string()),
    ];
    [ResourceType::Instance, ResourceType::Volume]
        .into_iter()
        .map(|resource| {
            let mut spec = TagSpecification::builder().resource_type(resource);
            for (key, value) in &tags {
                spec = spec.tags(Tag::builder().key(*key).value(value).build());
            }
            spec.build()
        })
        .collect()
}

/// What we know of an instance from EC2's description; `None` for one
/// whose id EC2 should never have returned.
pub(crate) fn instance_info(instance: &Instance) -> Option<InstanceInfo> {
    let id = InstanceId::parse(instance.instance_id()?).ok()?;
    let state = match instance.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        // Terminated, and states EC2 may add later: not alive.
        _ => InstanceState::Terminated,
    };
    let tag = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    let job = match (tag(JOB_TAG), tag(ATTEMPT_TAG)) {
        (Some(job), Some(attempt)) => job
            .parse()
            .ok()
            .zip(attempt.parse().ok().and_then(|a| RunAttempt::new(a).ok())),
        _ => None,
    }
    .map(|(job, attempt)| JobKey::new(JobId::new(job), attempt));
    let mut info = InstanceInfo::new(id, state);
    info.job = job;
    info.runner_name = tag(RUNNER_TAG).and_then(|n| RunnerName::parse(n).ok());
    info.launched_at = instance
        .launch_time()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .map(Timestamp::from_system_time);
    info.spot = instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot);
    info.state_reason = instance
        .state_reason()
        .and_then(|r| r.code())
        .and_then(state_reason);
    Some(info)
}

/// EC2's state reason codes.
fn state_reason(code: &str) -> Option<StateReason> {
    Some(match code {
        "" => return None,
        "Server.SpotInstanceTermination" | "Server.SpotInstanceShutdown" => {
            StateReason::SpotReclaimed
        }
        "Client.InstanceInitiatedShutdown" => StateReason::InstanceInitiatedShutdown,
        "Client.UserInitiatedShutdown" | "Client.UserInitiatedHibernate" => {
            StateReason::UserInitiated
        }
        other => StateReason::Other(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{InstanceState as Ec2State, StateReason as Ec2Reason};

    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build()
    }

    #[test]
    fn an_instance_is_read_back_from_its_tags() {
        let instance = Instance::builder()
            .instance_id("i-0123456789abcdef0")
            .state(
                Ec2State::builder()
                    .name(InstanceStateName::Terminated)
                    .build(),
            )
            .state_reason(
                Ec2Reason::builder()
                    .code("Server.SpotInstanceTermination")
                    .build(),
            )
            .instance_lifecycle(InstanceLifecycleType::Spot)
            .tags(tag(JOB_TAG, "987654321"))
            .tags(tag(ATTEMPT_TAG, "2"))
            .tags(tag(RUNNER_TAG, "sprinters-987654321-2-1"))
            .build();
        let info = instance_info(&instance).unwrap();
        assert_eq!(info.state, InstanceState::Terminated);
        assert_eq!(info.state_reason, Some(StateReason::SpotReclaimed));
        assert!(info.spot);
        assert_eq!(
            info.job,
            Some(JobKey::new(
                JobId::new(987654321),
                RunAttempt::new(2).unwrap()
            ))
        );
        assert_eq!(
            info.runner_name.map(|n| n.to_string()).as_deref(),
            Some("sprinters-987654321-2-1")
        );
    }

    #[test]
    fn garbled_tags_are_no_job() {
        let instance = Instance::builder()
            .instance_id("i-0123456789abcdef0")
            .tags(tag(JOB_TAG, "not-a-number"))
            .tags(tag(ATTEMPT_TAG, "0"))
            .build();
        let info = instance_info(&instance).unwrap();
        assert_eq!(info.job, None);
        assert_eq!(info.state_reason, None);
        let bad = Instance::builder().instance_id("vol-123").build();
        assert!(instance_info(&bad).is_none());
    }
}
