//! The simulated outside world: GitHub (jobs, runners, webhooks and their
//! delivery) and the instances EC2 runs, stepped on the virtual clock. The
//! engine sees it through the in-memory registry and launcher, which the
//! world keeps in step with what it decides.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::domain::{
    DeliveryId, InstallationId, InstanceId, JobId, JobKey, OwnerId, Repository, RunAttempt, RunId,
    RunnerName,
};
use crate::events::{Conclusion, Delivery, Event, WorkflowJobAction, WorkflowJobEvent};
use crate::memory::{MemoryLauncher, MemoryRegistry, SimInstance, SimRunner};
use crate::ports::{InstanceState, JobStatus, RemoteJobStatus, StateReason};
use crate::time::Timestamp;

/// What the engine should make of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A valid Sprinters label.
    Ours,
    /// A Sprinters label with an error: must end Rejected, with a message.
    Mislabelled,
    /// No Sprinters label: must be left alone.
    NotOurs,
}

/// Where GitHub has a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    NotYet,
    Queued,
    InProgress {
        runner: RunnerName,
        since: Timestamp,
    },
    Completed {
        conclusion: Conclusion,
        runner: Option<RunnerName>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct SimJob {
    pub(crate) key: JobKey,
    pub(crate) run_id: RunId,
    pub(crate) repository: Repository,
    pub(crate) labels: Vec<String>,
    pub(crate) kind: Kind,
    pub(crate) arrives_at: Timestamp,
    pub(crate) run_for: Duration,
    /// Cancelled while queued at this time, if still queued.
    pub(crate) cancel_queued_at: Option<Timestamp>,
    /// Cancelled this long after pickup, if still running.
    pub(crate) cancel_after: Option<Duration>,
    pub(crate) status: Status,
    /// GitHub's id of the runner that took it.
    pub(crate) runner_id: Option<u64>,
}

/// A runner process on an instance, as GitHub sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Runner {
    /// Not online yet (booting), or never will be.
    Offline,
    Idle,
    Busy(JobKey),
    /// Its job is over, or it was removed; the instance shuts itself down.
    Exited,
}

#[derive(Debug, Clone)]
pub(crate) struct Vm {
    pub(crate) job: Option<JobKey>,
    pub(crate) runner_name: Option<RunnerName>,
    pub(crate) launched_at: Timestamp,
    /// When it boots; `None`: never.
    pub(crate) boots_at: Option<Timestamp>,
    /// Whether its runner registers once booted.
    pub(crate) registers: bool,
    pub(crate) reclaim_at: Option<Timestamp>,
    pub(crate) shutdown_at: Option<Timestamp>,
    pub(crate) runner: Runner,
    pub(crate) alive: bool,
    /// Since when it serves no purpose (see `check`).
    pub(crate) useless_since: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) due: Timestamp,
    pub(crate) seq: u64,
    pub(crate) id: String,
    pub(crate) event: WorkflowJobEvent,
}

/// Counts for the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) webhooks: u64,
    pub(crate) lost: u64,
    pub(crate) redelivered: u64,
    pub(crate) duplicated: u64,
    pub(crate) delayed: u64,
    pub(crate) stolen: u64,
    pub(crate) forged: u64,
    pub(crate) reclaimed: u64,
    pub(crate) never_booted: u64,
    pub(crate) never_registered: u64,
    pub(crate) cancelled_queued: u64,
    pub(crate) cancelled_running: u64,
    pub(crate) reruns: u64,
}

pub(crate) const OWNER: &str = "octo-org";
pub(crate) const ACCOUNT: &str = "123456789012";
/// The tenants: login, GitHub account id, installation id, AWS account.
/// Two owners whose repositories share label sets (and a repository name),
/// so that any leak of a runner, a spare or a record across owners shows.
pub(crate) const TENANTS: [(&str, u64, u64, &str); 2] = [
    (OWNER, 4242, 7, ACCOUNT),
    ("rival-org", 5353, 8, "210987654321"),
];

/// The tenant of `repository`'s owner.
pub(crate) fn tenant_of(repository: &Repository) -> (&'static str, u64, u64, &'static str) {
    TENANTS
        .into_iter()
        .find(|t| repository.owner().as_str() == t.0)
        .unwrap_or(TENANTS[0])
}
/// Job ids of re-runs start here (first attempts count up from 1,000).
const RERUN_IDS: u64 = 1_000_000;
/// Job ids of a flood start here.
const FLOOD_IDS: u64 = 500_000;
const REPOSITORIES: [&str; 4] = [
    "octo-org/app",
    "octo-org/api",
    "octo-org/web",
    "rival-org/app",
];

#[derive(Debug)]
pub(crate) struct World {
    pub(crate) rng: fastrand::Rng,
    pub(crate) jobs: BTreeMap<JobKey, SimJob>,
    pub(crate) vms: BTreeMap<InstanceId, Vm>,
    pub(crate) deliveries: Vec<Pending>,
    seq: u64,
    reruns_seen: usize,
    /// Runs the engine cancelled, as far as the world has applied them.
    cancels_seen: usize,
    spot_out_until: Option<Timestamp>,
    max_lifetime: Duration,
    /// Jobs at least one webhook of which was not lost for good.
    pub(crate) heard_of: BTreeSet<JobKey>,
    pub(crate) tally: Tally,
}

fn secs(rng: &mut fastrand::Rng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_secs(rng.u64(range))
}

impl World {
    /// `jobs` jobs arriving over the first minutes of the run, and the
    /// first owner's `flood` all at once a second in.
    pub(crate) fn new(
        seed: u64,
        jobs: usize,
        flood: usize,
        start: Timestamp,
        max_lifetime: Duration,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x05EE_D0F0_BEC7);
        let mut all = BTreeMap::new();
        let mut at = start;
        for n in 0..jobs as u64 {
            // Bursts and lulls: most jobs close together, some after a pause.
            at = at.saturating_add(if rng.u8(..10) == 0 {
                secs(&mut rng, 30..400)
            } else {
                secs(&mut rng, 0..6)
            });
            let job_id = 1_000 + n;
            let run_id = RunId::new(50_000 + n / 3);
            let key = JobKey::new(JobId::new(job_id), RunAttempt::FIRST);
            let job = SimJob {
                key,
                run_id,
                repository: Repository::parse(REPOSITORIES[rng.usize(..REPOSITORIES.len())])
                    .unwrap_or_else(|_| {
                        unreachable!("the simulation's repository names are valid")
                    }),
                labels: Vec::new(),
                kind: Kind::Ours,
                arrives_at: at,
                run_for: secs(&mut rng, 20..900),
                cancel_queued_at: (rng.u8(..100) < 5)
                    .then(|| at.saturating_add(secs(&mut rng, 1..120))),
                cancel_after: (rng.u8(..100) < 4).then(|| secs(&mut rng, 5..300)),
                status: Status::NotYet,
                runner_id: None,
            };
            let job = Self::label(&mut rng, job);
            all.insert(key, job);
        }
        // Drawn from a generator of its own: the rest of the world is the
        // same with or without the flood.
        let mut flood_rng = fastrand::Rng::with_seed(seed ^ 0x0F10_0D00);
        for n in 0..flood as u64 {
            let key = JobKey::new(JobId::new(FLOOD_IDS + n), RunAttempt::FIRST);
            let job = SimJob {
                key,
                run_id: RunId::new(FLOOD_IDS + n / 3),
                repository: Repository::parse(REPOSITORIES[0]).unwrap_or_else(|_| {
                    unreachable!("the simulation's repository names are valid")
                }),
                labels: vec!["sprinters:aws:ubuntu-latest".into()],
                kind: Kind::Ours,
                arrives_at: start.saturating_add(Duration::from_secs(1)),
                run_for: secs(&mut flood_rng, 20..120),
                cancel_queued_at: None,
                cancel_after: None,
                status: Status::NotYet,
                runner_id: None,
            };
            all.insert(key, job);
        }
        Self {
            rng,
            jobs: all,
            vms: BTreeMap::new(),
            deliveries: Vec::new(),
            seq: 0,
            reruns_seen: 0,
            cancels_seen: 0,
            spot_out_until: None,
            max_lifetime,
            heard_of: BTreeSet::new(),
            tally: Tally::default(),
        }
    }

    fn label(rng: &mut fastrand::Rng, mut job: SimJob) -> SimJob {
        let pin = format!("{}-{}-build", job.run_id, job.key.run_attempt);
        let (labels, kind): (Vec<String>, Kind) = match rng.u8(..100) {
            0..=34 => (vec!["sprinters:aws:ubuntu-latest".into()], Kind::Ours),
            35..=49 => (
                vec!["sprinters:aws:ubuntu-24.04-arm:c7g.large".into()],
                Kind::Ours,
            ),
            50..=59 => (
                vec!["sprinters:aws:ubuntu-latest:spot=auto".into()],
                Kind::Ours,
            ),
            60..=69 => (
                vec!["sprinters:aws:ubuntu-latest:spot=rerun".into()],
                Kind::Ours,
            ),
            70..=74 => (
                vec!["sprinters:aws:ubuntu-latest:spot=true".into()],
                Kind::Ours,
            ),
            75..=86 => (vec!["sprinters:aws:ubuntu-latest".into(), pin], Kind::Ours),
            87..=89 => (
                vec!["sprinters:aws:ubuntu-latest:bogus=1".into()],
                Kind::Mislabelled,
            ),
            90..=91 => (
                vec!["sprinters:aws/999999999999:ubuntu-latest".into()],
                Kind::Mislabelled,
            ),
            _ => (vec!["ubuntu-latest".into()], Kind::NotOurs),
        };
        job.labels = labels;
        job.kind = kind;
        job
    }

    /// The last arrival.
    pub(crate) fn last_arrival(&self) -> Timestamp {
        self.jobs
            .values()
            .map(|j| j.arrives_at)
            .max()
            .unwrap_or_default()
    }

    fn event(
        job: &SimJob,
        action: WorkflowJobAction,
        runner: Option<(&RunnerName, u64)>,
        conclusion: Option<Conclusion>,
    ) -> WorkflowJobEvent {
        WorkflowJobEvent {
            action,
            job: job.key,
            run_id: job.run_id,
            repository: job.repository.clone(),
            owner_id: OwnerId::new(tenant_of(&job.repository).1),
            installation_id: InstallationId::new(tenant_of(&job.repository).2),
            labels: job.labels.clone(),
            name: Some(format!("build {}", job.key)),
            runner_name: runner.map(|(n, _)| n.clone()),
            runner_id: runner.map(|(_, id)| id),
            conclusion,
            at: None,
            repository_private: Some(true),
        }
    }

    /// GitHub sends a webhook: most arrive at once; some late (so out of
    /// order), twice, or fail and are redelivered by the recovery minutes
    /// later; a few are lost for good.
    fn send(&mut self, now: Timestamp, event: WorkflowJobEvent) {
        self.tally.webhooks += 1;
        self.seq += 1;
        let id = format!("{}-{:?}-{}", self.seq, event.action, event.job);
        let roll = self.rng.u8(..100);
        if roll > 1 {
            self.heard_of.insert(event.job);
        }
        let due = match roll {
            0..=1 => {
                self.tally.lost += 1;
                return;
            }
            2..=5 => {
                self.tally.redelivered += 1;
                now.saturating_add(secs(&mut self.rng, 300..900))
            }
            6..=15 => {
                self.tally.delayed += 1;
                now.saturating_add(secs(&mut self.rng, 20..300))
            }
            _ => now.saturating_add(secs(&mut self.rng, 0..3)),
        };
        if self.rng.u8(..100) < 5 {
            self.tally.duplicated += 1;
            let again = due.saturating_add(secs(&mut self.rng, 0..60));
            self.queue(again, id.clone(), event.clone());
        }
        self.queue(due, id, event);
    }

    fn queue(&mut self, due: Timestamp, id: String, event: WorkflowJobEvent) {
        self.seq += 1;
        self.deliveries.push(Pending {
            due,
            seq: self.seq,
            id,
            event,
        });
    }

    /// A delivery the control plane did not take in (an error, a crash):
    /// GitHub records it as failed and the recovery redelivers it.
    pub(crate) fn failed(&mut self, now: Timestamp, pending: Pending) {
        let due = now.saturating_add(secs(&mut self.rng, 300..900));
        self.queue(due, pending.id, pending.event);
    }

    /// The deliveries due by `now`, in the order they arrive.
    pub(crate) fn due(&mut self, now: Timestamp) -> Vec<Pending> {
        self.deliveries.sort_by_key(|p| (p.due, p.seq));
        let split = self.deliveries.partition_point(|p| p.due <= now);
        self.deliveries.drain(..split).collect()
    }

    pub(crate) fn delivery(pending: &Pending, now: Timestamp) -> Delivery {
        Delivery {
            id: DeliveryId::parse(&pending.id)
                .unwrap_or_else(|_| unreachable!("the simulation's delivery ids are valid")),
            received_at: now,
            event: Event::WorkflowJob(pending.event.clone()),
        }
    }

    fn tell(registry: &MemoryRegistry, job: &SimJob) {
        let status = match &job.status {
            Status::NotYet => return,
            Status::Queued => JobStatus::new(RemoteJobStatus::Queued, None, None),
            Status::InProgress { runner, .. } => {
                JobStatus::new(RemoteJobStatus::InProgress, None, Some(runner.clone()))
                    .with_runner_id(job.runner_id)
            }
            Status::Completed { conclusion, runner } => JobStatus::new(
                RemoteJobStatus::Completed,
                Some(*conclusion),
                runner.clone(),
            )
            .with_runner_id(runner.as_ref().and(job.runner_id)),
        };
        registry.set_job(
            job.repository.clone(),
            job.run_id,
            job.key,
            job.labels.clone(),
            status,
        );
    }

    fn set_status(&mut self, registry: &MemoryRegistry, key: JobKey, status: Status) {
        if let Some(job) = self.jobs.get_mut(&key) {
            job.status = status;
            Self::tell(registry, job);
        }
    }

    /// One step of the world at `now`.
    pub(crate) fn step(&mut self, now: Timestamp, registry: &MemoryRegistry, ec2: &MemoryLauncher) {
        // First what the engine did since the last step: GitHub cancelled
        // those runs at once, before any runner of theirs died or took a
        // job (seed 19530: a job of a cancelled run whose runner died
        // next concluded Failure here, Cancelled at GitHub).
        self.run_cancels(now, registry);
        self.arrivals(now, registry);
        self.spot_weather(now, ec2);
        let runners = registry.runners();
        self.instances(now, ec2, registry, &runners);
        self.assign(now, registry, &runners);
        self.progress(now, registry);
        self.reruns(now, registry);
    }

    fn arrivals(&mut self, now: Timestamp, registry: &MemoryRegistry) {
        let due: Vec<JobKey> = self
            .jobs
            .values()
            .filter(|j| match j.status {
                Status::NotYet => j.arrives_at <= now,
                Status::Queued => j.cancel_queued_at.is_some_and(|t| t <= now),
                _ => false,
            })
            .map(|j| j.key)
            .collect();
        for key in due {
            let Some(job) = self.jobs.get(&key).cloned() else {
                continue;
            };
            if job.status == Status::NotYet && job.arrives_at <= now {
                self.set_status(registry, key, Status::Queued);
                self.send(
                    now,
                    Self::event(&job, WorkflowJobAction::Queued, None, None),
                );
            }
            if job.status == Status::Queued && job.cancel_queued_at.is_some_and(|t| t <= now) {
                self.cancel_queued(now, registry, &job);
            }
        }
    }

    /// Spot capacity runs out now and then for a few minutes.
    fn spot_weather(&mut self, now: Timestamp, ec2: &MemoryLauncher) {
        match self.spot_out_until {
            Some(until) if until <= now => {
                self.spot_out_until = None;
                ec2.set_spot_capacity(true);
            }
            None if self.rng.u16(..1000) < 3 => {
                self.spot_out_until = Some(now.saturating_add(secs(&mut self.rng, 60..600)));
                ec2.set_spot_capacity(false);
            }
            _ => {}
        }
    }

    /// New instances get their fate; instances boot, register, are
    /// reclaimed, shut themselves down.
    fn instances(
        &mut self,
        now: Timestamp,
        ec2: &MemoryLauncher,
        registry: &MemoryRegistry,
        runners: &[SimRunner],
    ) {
        let registered: BTreeSet<&RunnerName> = runners.iter().map(|r| &r.name).collect();
        // Only new instances and live ones change: no copy of the rest.
        let mut current: Vec<SimInstance> = Vec::new();
        if ec2.instance_count() > self.vms.len() {
            current = ec2
                .instances()
                .into_iter()
                .filter(|i| !self.vms.contains_key(&i.info.instance_id))
                .collect();
        }
        current.extend(
            self.vms
                .iter()
                .filter(|(_, vm)| vm.alive)
                .filter_map(|(id, _)| ec2.instance(id)),
        );
        current.sort_by(|a, b| a.info.instance_id.cmp(&b.info.instance_id));
        for instance in current {
            let id = instance.info.instance_id.clone();
            if !self.vms.contains_key(&id) {
                let launched_at = instance.info.launched_at.unwrap_or(now);
                let boots_at = if self.rng.u16(..1000) < 5 {
                    self.tally.never_booted += 1;
                    None
                } else {
                    Some(launched_at.saturating_add(secs(&mut self.rng, 10..90)))
                };
                // The boot script's watchdog: shutdown at the lifetime.
                let watchdog = boots_at.map(|t| t.saturating_add(self.max_lifetime));
                let registers = self.rng.u16(..1000) >= 5;
                if !registers {
                    self.tally.never_registered += 1;
                }
                let reclaim_at = (instance.info.spot && self.rng.u8(..100) < 15)
                    .then(|| launched_at.saturating_add(secs(&mut self.rng, 30..900)));
                self.vms.insert(
                    id.clone(),
                    Vm {
                        job: instance.info.job,
                        runner_name: instance.info.runner_name.clone(),
                        launched_at,
                        boots_at,
                        registers,
                        reclaim_at,
                        shutdown_at: watchdog,
                        runner: Runner::Offline,
                        alive: true,
                        useless_since: None,
                    },
                );
            }
            let Some(vm) = self.vms.get_mut(&id) else {
                continue;
            };
            vm.alive = instance.info.state.is_alive();
            if !vm.alive {
                let runner = std::mem::replace(&mut vm.runner, Runner::Exited);
                if let Runner::Busy(job) = runner {
                    // The runner died mid-job: GitHub fails the job.
                    self.lose_runner(now, registry, job, Conclusion::Failure);
                }
                continue;
            }
            if vm.reclaim_at.is_some_and(|t| t <= now) {
                self.tally.reclaimed += 1;
                ec2.reclaim(&id);
                continue; // seen as dead on the next step
            }
            if vm.shutdown_at.is_some_and(|t| t <= now) {
                ec2.set_state(
                    &id,
                    InstanceState::Terminated,
                    Some(StateReason::InstanceInitiatedShutdown),
                );
                continue;
            }
            let in_registry = vm
                .runner_name
                .as_ref()
                .is_some_and(|n| registered.contains(n));
            match vm.runner {
                Runner::Offline if vm.boots_at.is_some_and(|t| t <= now) => {
                    if instance.info.state == InstanceState::Pending {
                        ec2.set_state(&id, InstanceState::Running, None);
                    }
                    if vm.registers && in_registry {
                        vm.runner = Runner::Idle;
                    }
                }
                // An idle runner removed from GitHub exits; so does the VM.
                Runner::Idle if !in_registry => {
                    vm.runner = Runner::Exited;
                    vm.shutdown_at = Some(now.saturating_add(Duration::from_secs(10)));
                }
                _ => {}
            }
        }
    }

    fn lose_runner(
        &mut self,
        now: Timestamp,
        registry: &MemoryRegistry,
        key: JobKey,
        conclusion: Conclusion,
    ) {
        let Some(job) = self.jobs.get(&key).cloned() else {
            return;
        };
        let Status::InProgress { runner, .. } = &job.status else {
            return;
        };
        let runner = runner.clone();
        let done = Status::Completed {
            conclusion,
            runner: Some(runner.clone()),
        };
        self.set_status(registry, key, done);
        let event = Self::event(
            &job,
            WorkflowJobAction::Completed,
            Some((&runner, job.runner_id.unwrap_or(0))),
            Some(conclusion),
        );
        self.send(now, event);
    }

    /// GitHub hands queued jobs to idle runners whose labels cover theirs,
    /// whichever runner was launched for which job.
    fn assign(&mut self, now: Timestamp, registry: &MemoryRegistry, runners: &[SimRunner]) {
        let mut queued: Vec<(Timestamp, JobKey)> = self
            .jobs
            .values()
            .filter(|j| j.status == Status::Queued)
            .map(|j| (j.arrives_at, j.key))
            .collect();
        queued.sort();
        for (_, key) in queued {
            let Some(job) = self.jobs.get(&key).cloned() else {
                continue;
            };
            let idle: Vec<(InstanceId, RunnerName, u64)> = self
                .vms
                .iter()
                .filter(|(_, vm)| vm.alive && vm.runner == Runner::Idle)
                .filter_map(|(id, vm)| {
                    let name = vm.runner_name.as_ref()?;
                    let r = runners
                        .iter()
                        .find(|r| &r.name == name && r.repository == job.repository)?;
                    job.labels
                        .iter()
                        .all(|l| r.labels.contains(l))
                        .then(|| (id.clone(), name.clone(), r.id))
                })
                .collect();
            if idle.is_empty() {
                if tenant_of(&job.repository).0 != OWNER && self.rng.u8(..100) < 3 {
                    self.forge_runner(now, registry, &job);
                }
                continue;
            }
            let (id, name, runner_id) = idle[self.rng.usize(..idle.len())].clone();
            if name.launch_ref().map(|(k, _)| k) != Some(key) {
                self.tally.stolen += 1;
            }
            if let Some(vm) = self.vms.get_mut(&id) {
                vm.runner = Runner::Busy(key);
            }
            if let Some(j) = self.jobs.get_mut(&key) {
                j.runner_id = Some(runner_id);
            }
            let running = Status::InProgress {
                runner: name.clone(),
                since: now,
            };
            self.set_status(registry, key, running);
            let event = Self::event(
                &job,
                WorkflowJobAction::InProgress,
                Some((&name, runner_id)),
                None,
            );
            self.send(now, event);
        }
    }

    /// A hostile tenant: the rival registers a self-hosted runner of its own
    /// under the name of one of the first owner's live runners, and its job
    /// runs there. Nothing of the first owner's may change for it.
    fn forge_runner(&mut self, now: Timestamp, registry: &MemoryRegistry, job: &SimJob) {
        let victims: Vec<RunnerName> = self
            .vms
            .values()
            .filter(|vm| vm.alive)
            .filter(|vm| {
                vm.job.is_some_and(|k| {
                    self.jobs
                        .get(&k)
                        .is_some_and(|j| tenant_of(&j.repository).0 == OWNER)
                })
            })
            .filter_map(|vm| vm.runner_name.clone())
            .collect();
        if victims.is_empty() {
            return;
        }
        let name = victims[self.rng.usize(..victims.len())].clone();
        self.tally.forged += 1;
        // The rival's own runner id: GitHub numbers runners globally.
        let runner_id = 9_000_000 + self.tally.forged;
        if let Some(j) = self.jobs.get_mut(&job.key) {
            j.runner_id = Some(runner_id);
        }
        let running = Status::InProgress {
            runner: name.clone(),
            since: now,
        };
        self.set_status(registry, job.key, running);
        let event = Self::event(
            job,
            WorkflowJobAction::InProgress,
            Some((&name, runner_id)),
            None,
        );
        self.send(now, event);
    }

    /// Jobs finish (or are cancelled); their runners exit and their
    /// instances shut themselves down.
    fn progress(&mut self, now: Timestamp, registry: &MemoryRegistry) {
        let running: Vec<SimJob> = self
            .jobs
            .values()
            .filter(|j| matches!(j.status, Status::InProgress { .. }))
            .cloned()
            .collect();
        for job in running {
            let Status::InProgress { since, .. } = &job.status else {
                continue;
            };
            let cancel_at = job.cancel_after.map(|d| since.saturating_add(d));
            let done_at = since.saturating_add(job.run_for);
            let conclusion = match cancel_at {
                Some(c) if c <= now && c < done_at => Conclusion::Cancelled,
                _ if done_at <= now => Conclusion::Success,
                _ => continue,
            };
            if conclusion == Conclusion::Cancelled {
                self.tally.cancelled_running += 1;
            }
            self.lose_runner(now, registry, job.key, conclusion);
            for vm in self.vms.values_mut() {
                if vm.runner == Runner::Busy(job.key) {
                    vm.runner = Runner::Exited;
                    vm.shutdown_at = Some(now.saturating_add(Duration::from_secs(10)));
                }
            }
        }
    }

    /// The engine cancelled runs (of jobs that can never run): as on
    /// GitHub, each job of the run that queued and has not completed ends
    /// cancelled, its runner free again.
    fn run_cancels(&mut self, now: Timestamp, registry: &MemoryRegistry) {
        let cancelled = registry.cancelled();
        let runs: Vec<RunId> = cancelled[self.cancels_seen.min(cancelled.len())..].to_vec();
        self.cancels_seen = cancelled.len();
        for run in runs {
            let jobs: Vec<SimJob> = self
                .jobs
                .values()
                .filter(|j| j.run_id == run)
                .filter(|j| matches!(j.status, Status::Queued | Status::InProgress { .. }))
                .cloned()
                .collect();
            for job in jobs {
                if matches!(job.status, Status::InProgress { .. }) {
                    self.tally.cancelled_running += 1;
                    self.lose_runner(now, registry, job.key, Conclusion::Cancelled);
                    for vm in self.vms.values_mut() {
                        if vm.runner == Runner::Busy(job.key) {
                            vm.runner = Runner::Exited;
                            vm.shutdown_at = Some(now.saturating_add(Duration::from_secs(10)));
                        }
                    }
                    continue;
                }
                self.cancel_queued(now, registry, &job);
            }
        }
    }

    /// A queued `job` ends cancelled, and its `completed` webhook is sent.
    fn cancel_queued(&mut self, now: Timestamp, registry: &MemoryRegistry, job: &SimJob) {
        self.tally.cancelled_queued += 1;
        let done = Status::Completed {
            conclusion: Conclusion::Cancelled,
            runner: None,
        };
        self.set_status(registry, job.key, done);
        let event = Self::event(
            job,
            WorkflowJobAction::Completed,
            None,
            Some(Conclusion::Cancelled),
        );
        self.send(now, event);
    }

    /// The engine asked GitHub to re-run a job: its next attempt queues.
    fn reruns(&mut self, now: Timestamp, registry: &MemoryRegistry) {
        let asked = registry.reruns();
        for job_id in asked.iter().skip(self.reruns_seen) {
            let last = self
                .jobs
                .values()
                .find(|j| j.key.job_id == *job_id)
                .cloned();
            let Some(last) = last else { continue };
            let Some(attempt) = RunAttempt::new(last.key.run_attempt.get() + 1).ok() else {
                continue;
            };
            self.tally.reruns += 1;
            // As on GitHub: the re-run is a new job of the run's next attempt.
            let key = JobKey::new(JobId::new(RERUN_IDS + self.tally.reruns), attempt);
            let mut next = SimJob {
                key,
                arrives_at: now,
                status: Status::NotYet,
                cancel_queued_at: None,
                cancel_after: None,
                ..last
            };
            // A pinning label names the attempt.
            next.labels = next
                .labels
                .iter()
                .map(|l| {
                    if l.ends_with("-build") {
                        format!("{}-{}-build", next.run_id, attempt)
                    } else {
                        l.clone()
                    }
                })
                .collect();
            self.jobs.insert(key, next);
        }
        self.reruns_seen = asked.len();
    }

    /// When the world next does something on its own: a webhook arrives,
    /// a job queues, finishes or is cancelled, an instance boots, is
    /// reclaimed or shuts down. The simulation steps straight there (in
    /// steps of at most a reconcile interval, so the engine's own timers
    /// still run).
    pub(crate) fn next_event(&self, now: Timestamp) -> Option<Timestamp> {
        let deliveries = self.deliveries.iter().map(|p| p.due);
        let jobs = self.jobs.values().filter_map(|j| match &j.status {
            Status::NotYet => Some(j.arrives_at),
            Status::Queued => j.cancel_queued_at,
            Status::InProgress { since, .. } => {
                let done = since.saturating_add(j.run_for);
                Some(
                    j.cancel_after
                        .map_or(done, |c| done.min(since.saturating_add(c))),
                )
            }
            Status::Completed { .. } => None,
        });
        let vms = self.vms.values().filter(|vm| vm.alive).filter_map(|vm| {
            let boot = vm.boots_at.filter(|_| vm.runner == Runner::Offline);
            [boot, vm.reclaim_at, vm.shutdown_at]
                .into_iter()
                .flatten()
                .min()
        });
        deliveries.chain(jobs).chain(vms).filter(|t| *t > now).min()
    }

    /// Whether GitHub has nothing left to do; `given_up`: whether the
    /// engine recorded a job Failed or Rejected (GitHub keeps such a job
    /// queued, with no runner coming).
    pub(crate) fn quiet(&self, given_up: &dyn Fn(JobKey) -> bool) -> bool {
        self.deliveries.is_empty()
            && self.vms.values().all(|vm| !vm.alive)
            && self.jobs.values().all(|j| match j.status {
                _ if j.kind == Kind::NotOurs => true,
                Status::Completed { .. } => true,
                Status::Queued => given_up(j.key),
                _ => false,
            })
    }
}
