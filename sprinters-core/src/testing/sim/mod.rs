//! Deterministic simulation: the real engine against a simulated GitHub,
//! EC2 and STS on a virtual clock, everything decided by one seed.
//!
//! The world ([`world`]) queues jobs, boots instances, hands jobs to idle
//! runners whose labels cover them (so runners take each other's jobs),
//! finishes and cancels jobs, reclaims spot instances and sends webhooks
//! that arrive late, twice, after a redelivery or never. The ports the
//! engine sees ([`chaos`]) fail calls with 5xx, rate limits and throttling,
//! and crash the control plane at an await point before or after a call
//! took effect; the control plane then restarts from its store. The
//! invariants ([`check`]) are checked at every step and at the end.
//!
//! One engine incarnation runs on its own single-threaded runtime, with no
//! timers and no I/O, so a seed replays exactly; a crash drops the runtime
//! with every task the engine had in flight.

mod chaos;
mod check;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chaos::{Chaos, Chaotic, ChaoticGithub};
use world::World;

use crate::domain::{AccountId, InstallationId, Owner, OwnerId};
use crate::engine::{Engine, EngineConfig, Tenants};
use crate::job::{JobRecord, JobState};
use crate::memory::{MemoryCredentials, MemoryJobStore, MemoryLauncher, MemoryRegistry};
use crate::ports::{CloudLauncher, CredentialProvider, JobStore, ListJobs};
use crate::time::{Clock, ManualClock};

/// How hard a simulation pushes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Jobs GitHub queues (re-runs come on top).
    pub jobs: usize,
    /// Per mille of GitHub, EC2 and STS calls that fail (transiently).
    pub fail_per_mille: u64,
    /// Per mille of calls around which the control plane crashes.
    pub crash_per_mille: u64,
    /// Jobs the first owner queues at once a second into the run, on top
    /// of `jobs`, held to a cap of [`FLOOD_CAP`] live instances (its
    /// policy's `max_instances`, set when this is not 0). Every step checks
    /// the cap against EC2. Odd seeds then run with a store that says no
    /// other replica writes it (the engine's own count decides a capped
    /// job's one-write path), even seeds with a shared one.
    pub flood: usize,
    /// GitHub's rate limit per installation, in calls a minute (GitHub's
    /// own is about 83: 5,000 an hour). Past it, GitHub answers 403 with
    /// `retry-after` until the minute ends. `None`: no limit.
    pub github_per_minute: Option<u64>,
}

/// The simulated GitHub's calls a minute per installation: below GitHub's
/// own (83), so that busy seeds meet it.
pub const GITHUB_PER_MINUTE: u64 = 15;

/// The first owner's `max_instances` when it floods.
pub const FLOOD_CAP: usize = 4;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            jobs: 200,
            fail_per_mille: 30,
            crash_per_mille: 2,
            flood: 0,
            github_per_minute: Some(GITHUB_PER_MINUTE),
        }
    }
}

/// What one passing simulation did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Jobs, re-runs included.
    pub jobs: usize,
    /// Instances launched.
    pub instances: usize,
    /// Control-plane crashes (and restarts).
    pub crashes: u64,
    /// Calls failed on purpose.
    pub failed_calls: u64,
    /// GitHub calls refused for the installation's rate limit.
    pub rate_limited: u64,
    /// Webhooks GitHub sent.
    pub webhooks: u64,
    /// Webhooks lost for good, redelivered after a failure, sent twice,
    /// delayed past later ones.
    pub lost: u64,
    /// See `lost`.
    pub redelivered: u64,
    /// See `lost`.
    pub duplicated: u64,
    /// See `lost`.
    pub delayed: u64,
    /// Jobs a runner launched for another job took.
    pub stolen: u64,
    /// Jobs of one owner that ran on a runner it named like another
    /// owner's.
    pub forged: u64,
    /// Spot instances reclaimed.
    pub reclaimed: u64,
    /// Jobs re-run after a reclaim.
    pub reruns: u64,
    /// Instances that never booted, or whose runner never registered.
    pub dead_on_arrival: u64,
    /// Jobs cancelled before and after pickup.
    pub cancelled: u64,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// From the arrival of each of the second owner's jobs to its first
    /// instance, for the jobs that got one: what a flood of the first
    /// owner's must not stretch.
    pub other_owner_launch_delays: Vec<Duration>,
}

/// A simulation that broke an invariant.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// Its seed: `SEED=<seed>` replays it.
    pub seed: u64,
    /// What went wrong, first seen first.
    pub problems: Vec<String>,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "simulation seed {} broke {} invariant(s); replay with SEED={}",
            self.seed,
            self.problems.len(),
            self.seed
        )?;
        for p in self.problems.iter().take(20) {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimFailure {}

/// The virtual step: the engine's tick.
const STEP: Duration = Duration::from_secs(5);

/// The configuration the simulated control plane runs with.
pub fn sim_engine_config() -> EngineConfig {
    let tenants = Tenants::new();
    for (login, owner_id, installation_id, account) in world::TENANTS {
        tenants.connect(
            OwnerId::new(owner_id),
            InstallationId::new(installation_id),
            Owner::parse(login).unwrap(),
            AccountId::parse(account).unwrap(),
        );
    }
    let mut config = EngineConfig::new("sim-controller", tenants);
    config.replica_id = "sim-replica".into();
    config.tick_interval = STEP;
    config
}

/// Runs one simulation from `seed`. Not from inside a Tokio runtime: each
/// incarnation of the control plane gets its own.
pub fn simulate(seed: u64, sim: &SimConfig) -> Result<SimReport, SimFailure> {
    let config = sim_engine_config();
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryJobStore::new());
    let ec2 = Arc::new(MemoryLauncher::new(clock.clone()));
    let github = Arc::new(MemoryRegistry::new());
    let sts = Arc::new(MemoryCredentials::new());
    let mut chaos = Chaos::new(seed, sim.fail_per_mille, sim.crash_per_mille);
    // With a flood, odd seeds run as if alone on the store: the engine's
    // own count is then checked, even ones the store's.
    chaos.exclusive_store = sim.flood > 0 && seed % 2 == 1;
    chaos.github_per_minute = sim.github_per_minute;
    let chaos = Arc::new(chaos);
    let mut world = World::new(seed, sim.jobs, sim.flood, clock.now(), config.max_lifetime);
    let start = clock.now();
    let horizon = world
        .last_arrival()
        .saturating_add(config.max_lifetime + Duration::from_secs(3 * 3600));
    let mut problems = Vec::new();

    let incarnation = || -> (tokio::runtime::Runtime, Engine) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let engine = Engine::builder()
            .registry(Arc::new(ChaoticGithub {
                chaos: chaos.clone(),
                inner: github.clone(),
                clock: clock.clone(),
            }))
            .credentials(Arc::new(Chaotic::<dyn CredentialProvider> {
                chaos: chaos.clone(),
                inner: sts.clone(),
            }))
            .launcher(Arc::new(Chaotic::<dyn CloudLauncher> {
                chaos: chaos.clone(),
                inner: ec2.clone(),
            }))
            .store(Arc::new(Chaotic::<dyn JobStore> {
                chaos: chaos.clone(),
                inner: store.clone(),
            }))
            .clock(clock.clone())
            .config(config.clone())
            .seed(seed)
            .build()
            .unwrap();
        (runtime, engine)
    };
    let (mut runtime, mut engine) = incarnation();
    if sim.flood > 0 {
        // Set through a replica without faults: the policy is there
        // before the first job, as an operator would have set it.
        let (login, owner_id, installation_id, _) = world::TENANTS[0];
        let operator = Engine::builder()
            .registry(github.clone())
            .credentials(sts.clone())
            .launcher(ec2.clone())
            .store(store.clone())
            .clock(clock.clone())
            .config(config.clone())
            .build()
            .unwrap();
        let policy = crate::policy::OwnerPolicy {
            max_instances: Some(FLOOD_CAP as u32),
            ..Default::default()
        };
        runtime
            .block_on(operator.set_owner_policy(
                OwnerId::new(owner_id),
                InstallationId::new(installation_id),
                Owner::parse(login).unwrap(),
                Some(policy),
            ))
            .unwrap();
    }
    let mut recovering = false;
    let mut next_reconcile = clock.now();
    loop {
        let now = clock.now();
        if recovering {
            recovering = runtime
                .block_on(until_crash(&chaos, engine.recover()))
                .is_none();
        }
        if !recovering {
            world.step(now, &github, &ec2);
            for pending in world.due(now) {
                let delivery = World::delivery(&pending, now);
                match runtime.block_on(until_crash(&chaos, engine.handle(delivery))) {
                    Some(Ok(_)) => {}
                    // Not taken in: GitHub shows it failed; it comes again.
                    _ => world.failed(now, pending),
                }
            }
            let work = async {
                if now >= next_reconcile {
                    let _ = engine.reconcile().await;
                }
                let _ = engine.process_due().await;
                engine.until_idle().await;
            };
            if runtime.block_on(until_crash(&chaos, work)).is_some() && now >= next_reconcile {
                next_reconcile = now.saturating_add(config.reconcile_interval);
            }
        }
        if chaos.crashed() {
            // The process dies: its runtime and every task with it.
            let (r, e) = incarnation();
            drop(std::mem::replace(&mut engine, e));
            drop(std::mem::replace(&mut runtime, r));
            chaos.restart();
            recovering = true;
            next_reconcile = clock.now();
            continue;
        }
        let mut seen = check::instances(&mut world, &config, now);
        if sim.flood > 0 {
            seen.extend(check::owner_cap(&ec2, world::ACCOUNT, FLOOD_CAP));
        }
        for problem in seen {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        if problems.len() > 50 {
            break;
        }
        let given_up = |key| {
            let record = runtime.block_on(store.get_job(key));
            record.is_ok_and(|r| {
                r.is_some_and(|r| matches!(r.value.state, JobState::Failed | JobState::Rejected))
            })
        };
        let settled = now > world.last_arrival() && world.quiet(&given_up) && {
            let active = runtime.block_on(store.list_jobs(ListJobs::active(1)));
            active.is_ok_and(|p| p.jobs.is_empty())
        };
        if settled || now > horizon {
            break;
        }
        // Straight to the world's next event, at least a tick, at most a
        // reconcile interval (the engine's own timers).
        let step = world
            .next_event(now)
            .map_or(config.reconcile_interval, |t| t.since(now))
            .clamp(STEP, config.reconcile_interval);
        clock.advance(step);
    }

    let records: BTreeMap<_, JobRecord> = runtime
        .block_on(all_records(&store))
        .into_iter()
        .map(|r| (r.key, r))
        .collect();
    problems.extend(check::history(&world, &records, &ec2));
    let ignored = chaos.ignored_waits.load(Ordering::Relaxed);
    if ignored > 0 {
        problems.push(format!(
            "{ignored} GitHub call(s) made while GitHub's retry-after, already told, ran"
        ));
    }
    if !problems.is_empty() {
        return Err(SimFailure { seed, problems });
    }
    let t = &world.tally;
    Ok(SimReport {
        seed,
        jobs: world.jobs.len(),
        instances: ec2.instances().len(),
        crashes: chaos.crashes.load(Ordering::Relaxed),
        failed_calls: chaos.failures.load(Ordering::Relaxed),
        rate_limited: chaos.rate_limited.load(Ordering::Relaxed),
        webhooks: t.webhooks,
        lost: t.lost,
        redelivered: t.redelivered,
        duplicated: t.duplicated,
        delayed: t.delayed,
        stolen: t.stolen,
        forged: t.forged,
        reclaimed: t.reclaimed,
        reruns: t.reruns,
        dead_on_arrival: t.never_booted + t.never_registered,
        cancelled: t.cancelled_queued + t.cancelled_running,
        virtual_time: clock.now().since(start),
        other_owner_launch_delays: check::launch_delays(&world, &ec2, world::TENANTS[1].0),
    })
}

/// Runs `work` until it finishes or the control plane crashes (`None`).
async fn until_crash<F: std::future::Future>(chaos: &Chaos, work: F) -> Option<F::Output> {
    let crashed = chaos.crash_signal.notified();
    tokio::pin!(crashed);
    crashed.as_mut().enable();
    if chaos.crashed() {
        return None;
    }
    tokio::select! {
        biased;
        _ = crashed => None,
        out = work => Some(out),
    }
}

async fn all_records(store: &MemoryJobStore) -> Vec<JobRecord> {
    let mut query = ListJobs::newest(1000);
    let mut all = Vec::new();
    loop {
        let page = store.list_jobs(query.clone()).await.unwrap();
        all.extend(page.jobs.into_iter().map(|v| v.value));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return all,
        }
    }
}
