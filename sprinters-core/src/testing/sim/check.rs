//! The invariants, checked at every step (instances) and at the end (the
//! history against what GitHub and EC2 saw).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::world::{Kind, Runner, Status, World, tenant_of};
use crate::domain::{JobKey, RunnerName};
use crate::engine::EngineConfig;
use crate::events::Conclusion;
use crate::job::{JobRecord, JobState};
use crate::memory::MemoryLauncher;
use crate::time::Timestamp;

/// Slack on the time limits: the reconciler runs once an interval, a
/// failed termination is retried on the next pass, a crash costs a pass,
/// and the world moves in steps.
fn slack(config: &EngineConfig) -> Duration {
    config.reconcile_interval.saturating_mul(3) + Duration::from_secs(30)
}

/// Checks the instances at `now`; returns the violations seen.
pub(crate) fn instances(world: &mut World, config: &EngineConfig, now: Timestamp) -> Vec<String> {
    let mut problems = Vec::new();

    // At most one live instance meant for each (job, attempt): instances
    // of a job busy with another job (stolen) do not count.
    let mut meant_for: BTreeMap<JobKey, Vec<String>> = BTreeMap::new();
    // A JIT runner serves its own repository only.
    let covered: BTreeSet<(String, Vec<String>)> = world
        .jobs
        .values()
        .filter(|j| j.status == Status::Queued)
        .map(|j| (j.repository.to_string(), j.labels.clone()))
        .collect();
    // A spare may idle for the grace period once the engine knows its job
    // no longer waits; when the webhook saying so was lost, the engine
    // learns it by asking GitHub after `queued_timeout`. Each of the two
    // steps may take a pass more for a failed call or a crash.
    let limit = config.idle_grace
        + config.queued_timeout
        + slack(config)
        + config.reconcile_interval.saturating_mul(2);
    for (id, vm) in world.vms.iter_mut().filter(|(_, vm)| vm.alive) {
        // A runner busy with another job, or exited, is not this job's.
        if let Some(job) = vm.job
            && match vm.runner {
                Runner::Busy(other) => other == job,
                Runner::Offline | Runner::Idle => true,
                Runner::Exited => false,
            }
        {
            meant_for.entry(job).or_default().push(id.to_string());
        }
        if now.since(vm.launched_at) > config.max_lifetime + slack(config) {
            problems.push(format!(
                "instance {id} lived {:?}, past the maximum lifetime",
                now.since(vm.launched_at)
            ));
        }
        // Useless: an online idle runner that no queued job can use. A
        // runner that never comes online is bounded by the lifetime only:
        // nothing tells the engine it will not.
        let useful = match &vm.runner {
            Runner::Busy(_) | Runner::Offline => true,
            Runner::Exited => false,
            Runner::Idle => {
                let job = world.jobs.values().find(|j| Some(j.key) == vm.job);
                covered.iter().any(|(repository, labels)| {
                    job.is_some_and(|j| {
                        *repository == j.repository.to_string()
                            && labels.iter().all(|l| j.labels.contains(l))
                    })
                })
            }
        };
        if useful {
            vm.useless_since = None;
        } else {
            let since = *vm.useless_since.get_or_insert(now);
            if now.since(since) > limit {
                problems.push(format!(
                    "instance {id} (runner {:?}) served no job for {:?}",
                    vm.runner_name.as_ref().map(ToString::to_string),
                    now.since(since)
                ));
                vm.useless_since = Some(now);
            }
        }
    }
    for (job, ids) in meant_for.iter().filter(|(_, ids)| ids.len() > 1) {
        problems.push(format!(
            "job {job} had {} instances at once: {ids:?}",
            ids.len()
        ));
    }
    problems
}

/// An owner's cap on live instances, from EC2's side: its instances not
/// terminated in `account` (its own, shared with no other owner here).
pub(crate) fn owner_cap(ec2: &MemoryLauncher, account: &str, cap: usize) -> Vec<String> {
    let live = ec2
        .alive()
        .iter()
        .filter(|i| i.account.as_str() == account)
        .count();
    if live > cap {
        vec![format!(
            "account {account} had {live} live instances at once, over its owner's cap of {cap}"
        )]
    } else {
        Vec::new()
    }
}

/// From the arrival of each of `owner`'s jobs to its first instance, for
/// the jobs that got one, in arrival order.
pub(crate) fn launch_delays(world: &World, ec2: &MemoryLauncher, owner: &str) -> Vec<Duration> {
    let mut first: BTreeMap<JobKey, Timestamp> = BTreeMap::new();
    for i in ec2.instances() {
        if let (Some(job), Some(at)) = (i.info.job, i.info.launched_at) {
            let t = first.entry(job).or_insert(at);
            *t = (*t).min(at);
        }
    }
    let mut delays: Vec<(Timestamp, Duration)> = world
        .jobs
        .values()
        .filter(|j| tenant_of(&j.repository).0 == owner)
        .filter_map(|j| {
            first
                .get(&j.key)
                .map(|at| (j.arrives_at, at.since(j.arrives_at)))
        })
        .collect();
    delays.sort();
    delays.into_iter().map(|(_, d)| d).collect()
}

/// No owner's event ever changes another owner's records or instances:
/// every record is its repository owner's; a runner taken, or ran on,
/// belongs to a job of the same owner and repository; every instance runs
/// in the account of the owner whose job it was launched for.
fn tenants(
    records: &BTreeMap<JobKey, JobRecord>,
    all: &[crate::memory::SimInstance],
) -> Vec<String> {
    let mut problems = Vec::new();
    let same_scope = |a: &JobRecord, b: JobKey| {
        records
            .get(&b)
            .is_none_or(|b| b.owner_id == a.owner_id && b.repository == a.repository)
    };
    for r in records.values() {
        let (login, owner_id, _, _) = tenant_of(&r.repository);
        if r.owner_id.get() != owner_id {
            problems.push(format!(
                "job {} of {login} is recorded for owner {}",
                r.key, r.owner_id
            ));
        }
        for l in &r.launches {
            if let Some(taker) = l.taken_by.filter(|t| !same_scope(r, *t)) {
                problems.push(format!(
                    "launch {} of job {} ({}) was marked taken by job {taker} of another owner or repository",
                    l.number, r.key, r.repository
                ));
            }
        }
        if let Some((launched_for, _)) = r.ran_on_launch
            && !same_scope(r, launched_for)
        {
            problems.push(format!(
                "job {} ({}) is recorded as running on a launch of job {launched_for} of another owner or repository",
                r.key, r.repository
            ));
        }
    }
    for i in all {
        let Some(record) = i.info.job.and_then(|k| records.get(&k)) else {
            continue;
        };
        let (login, _, _, account) = tenant_of(&record.repository);
        if i.account.as_str() != account {
            problems.push(format!(
                "instance {} of {login}'s job {} runs in account {}, not {account}",
                i.info.instance_id, record.key, i.account
            ));
        }
    }
    problems
}

/// Checks the history against the world once the run is over.
pub(crate) fn history(
    world: &World,
    records: &BTreeMap<JobKey, JobRecord>,
    ec2: &MemoryLauncher,
) -> Vec<String> {
    let mut problems = Vec::new();
    // One instance per launch (job, attempt, launch number), ever: the
    // client token and the intent record must make a retry find it.
    let mut by_runner: BTreeMap<RunnerName, Vec<String>> = BTreeMap::new();
    let all = ec2.instances();
    for i in &all {
        if let Some(r) = &i.info.runner_name {
            by_runner
                .entry(r.clone())
                .or_default()
                .push(i.info.instance_id.to_string());
        }
    }
    let launched: BTreeSet<JobKey> = all.iter().filter_map(|i| i.info.job).collect();
    for (runner, ids) in by_runner.iter().filter(|(_, ids)| ids.len() > 1) {
        problems.push(format!(
            "runner {runner} was launched {} times: {ids:?}",
            ids.len()
        ));
    }
    problems.extend(tenants(records, &all));
    for i in ec2.alive() {
        problems.push(format!(
            "instance {} of job {:?} is still running",
            i.info.instance_id,
            i.info.job.map(|j| j.to_string())
        ));
    }
    for job in world.jobs.values() {
        let record = records.get(&job.key);
        if job.kind == Kind::NotOurs {
            if record.is_some_and(|r| !r.launches.is_empty()) {
                problems.push(format!("job {} is not ours but was launched for", job.key));
            }
            continue;
        }
        if job.status == Status::NotYet {
            continue;
        }
        let Some(r) = record else {
            // A job every webhook of which was lost for good (GitHub has
            // no failed delivery to redeliver) and that a spare runner took
            // before the reconciler saw it queued: nothing could know of
            // it. Nothing may have been launched for it, though.
            let unknowable = !world.heard_of.contains(&job.key) && !launched.contains(&job.key);
            if !unknowable {
                problems.push(format!(
                    "job {} ({:?}) was never recorded",
                    job.key, job.status
                ));
            }
            continue;
        };
        let key = job.key;
        if let Some(l) = r.launches.iter().find(|l| l.is_live()) {
            problems.push(format!(
                "job {key} ({:?}) still has live launch {} (instance {:?})",
                r.state,
                l.runner_name,
                l.instance_id.as_ref().map(ToString::to_string)
            ));
        }
        if !r.state.is_finished() {
            problems.push(format!(
                "job {key} is stuck in {:?} (GitHub: {:?})",
                r.state, job.status
            ));
            continue;
        }
        let has_message = r.message.as_deref().is_some_and(|m| !m.is_empty());
        match (job.kind, r.state) {
            (Kind::Mislabelled, JobState::Rejected) if has_message => continue,
            (Kind::Mislabelled, state) => {
                problems.push(format!(
                    "mislabelled job {key} ended {state:?} without a message"
                ));
                continue;
            }
            (_, JobState::Rejected) => {
                problems.push(format!("valid job {key} was rejected: {:?}", r.message));
                continue;
            }
            (_, JobState::Failed) if !has_message => {
                problems.push(format!("job {key} failed without a reason"));
            }
            _ => {}
        }
        match &job.status {
            Status::Completed {
                conclusion,
                runner: Some(runner),
            } => {
                if r.state == JobState::Failed {
                    problems.push(format!("job {key} ran on {runner} but is recorded Failed"));
                }
                if r.conclusion.is_some_and(|c| c != *conclusion) {
                    problems.push(format!(
                        "job {key} concluded {conclusion:?} on GitHub, {:?} in the store",
                        r.conclusion
                    ));
                }
                if r.ran_on.as_ref().is_some_and(|on| on != runner) {
                    problems.push(format!(
                        "job {key} ran on {runner}, the store says {:?}",
                        r.ran_on.as_ref().map(ToString::to_string)
                    ));
                }
            }
            Status::Completed {
                conclusion,
                runner: None,
            } => {
                let cancelled = r.state == JobState::Cancelled
                    || r.conclusion == Some(Conclusion::Cancelled)
                    || r.state == JobState::Failed;
                if *conclusion == Conclusion::Cancelled && !cancelled {
                    problems.push(format!(
                        "job {key} was cancelled on GitHub, recorded {:?}",
                        r.state
                    ));
                }
            }
            Status::Queued | Status::InProgress { .. } if r.state != JobState::Failed => {
                problems.push(format!(
                    "job {key} is {:?} on GitHub but {:?} in the store",
                    job.status, r.state
                ));
            }
            _ => {}
        }
        // Every instance the store names is one EC2 launched for this job.
        for l in &r.launches {
            let Some(id) = &l.instance_id else { continue };
            match ec2.instance(id) {
                Some(i)
                    if i.info.job == Some(key)
                        && i.info.runner_name.as_ref() == Some(&l.runner_name) => {}
                Some(_) => {
                    problems.push(format!("job {key} names instance {id} of another launch"))
                }
                None => problems.push(format!(
                    "job {key} names instance {id}, which EC2 never ran"
                )),
            }
        }
    }
    for key in records.keys() {
        if !world.jobs.contains_key(key) {
            problems.push(format!("the store has job {key}, which GitHub never had"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    //! The checker is not vacuous: what it looks for, it reports.

    use std::sync::Arc;

    use super::*;
    use crate::domain::{InstanceId, JobId, RunAttempt};
    use crate::testing::sample_record;
    use crate::testing::sim::sim_engine_config;
    use crate::testing::sim::world::{SimJob, Vm};
    use crate::time::{Clock, ManualClock};

    fn vm(job: JobKey, launched_at: Timestamp, runner: Runner) -> Vm {
        Vm {
            job: Some(job),
            runner_name: Some(RunnerName::for_launch(job, 1)),
            launched_at,
            boots_at: Some(launched_at),
            registers: true,
            reclaim_at: None,
            shutdown_at: None,
            runner,
            alive: true,
            useless_since: None,
        }
    }

    #[test]
    fn overlong_idle_and_doubled_instances_are_reported() {
        let config = sim_engine_config();
        let start = Timestamp::from_millis(0);
        let mut world = World::new(1, 0, 0, start, config.max_lifetime);
        let job = JobKey::new(JobId::new(7), RunAttempt::FIRST);
        for n in 1..=2 {
            let id = InstanceId::parse(&format!("i-{n:017x}")).unwrap();
            world.vms.insert(id, vm(job, start, Runner::Idle));
        }
        assert!(
            instances(&mut world, &config, start)
                .iter()
                .any(|p| p.contains("2 instances at once"))
        );
        let late = start.saturating_add(config.max_lifetime + Duration::from_secs(3600));
        let problems = instances(&mut world, &config, late);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("past the maximum lifetime")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("served no job")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_stuck_job_a_wrong_conclusion_and_a_leftover_instance_are_reported() {
        let clock = Arc::new(ManualClock::default());
        let ec2 = MemoryLauncher::new(clock.clone());
        let mut world = World::new(1, 2, 0, clock.now(), Duration::from_secs(3600));
        let keys: Vec<JobKey> = world.jobs.keys().copied().collect();
        let runner = RunnerName::for_launch(keys[0], 1);
        for key in &keys {
            let job: &mut SimJob = world.jobs.get_mut(key).unwrap();
            job.kind = Kind::Ours;
            job.status = Status::Completed {
                conclusion: Conclusion::Success,
                runner: Some(runner.clone()),
            };
        }
        let mut records = BTreeMap::new();
        let mut stuck = sample_record(keys[0].job_id.get(), "octo-org/app", 0);
        stuck.key = keys[0];
        stuck.state = JobState::Running;
        let mut wrong = sample_record(keys[1].job_id.get(), "octo-org/app", 0);
        wrong.key = keys[1];
        wrong.state = JobState::Cleaned;
        wrong.conclusion = Some(Conclusion::Failure);
        records.insert(stuck.key, stuck);
        records.insert(wrong.key, wrong);
        let mut orphan = crate::memory::SimInstance {
            info: crate::ports::InstanceInfo::new(
                InstanceId::parse("i-00000000000000099").unwrap(),
                crate::ports::InstanceState::Running,
            ),
            account: crate::domain::AccountId::parse(super::super::world::ACCOUNT).unwrap(),
            region: crate::domain::Region::us_east_1(),
            availability_zone: crate::domain::AvailabilityZone::parse("us-east-1a").unwrap(),
            instance_type: crate::domain::InstanceType::parse("t3.large").unwrap(),
            controller_id: "sim-controller".into(),
            idempotency_token: "t".into(),
        };
        orphan.info.job = Some(keys[0]);
        ec2.insert(orphan);

        let problems = history(&world, &records, &ec2);
        for expected in [
            "is stuck in Running",
            "concluded Success on GitHub",
            "is still running",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected}: {problems:?}"
            );
        }
    }
}
