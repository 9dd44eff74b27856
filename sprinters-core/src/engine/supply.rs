//! Supply and demand per label set: which waiting jobs need a launch, and
//! starting those launches.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Inner;
use crate::Result;
use crate::domain::{JobKey, OwnerId};
use crate::job::{JobRecord, JobState, Launch};
use crate::labels::LabelSetKey;
use crate::ports::{ListJobs, Versioned};
use crate::time::Timestamp;

/// Enough for any real backlog of one label set; paging covers the rest.
const PAGE: usize = 1000;

/// How often a tick lists all the due work, not only what became due since
/// the last tick: a job due long ago that nothing here works on (its
/// launch task ended on a store error, a spare that covered it went away)
/// is taken up again within this.
pub(super) const FULL_DUE_LISTING: Duration = Duration::from_secs(10);

/// How far back of the last tick a tick lists: due times are set by the
/// clocks of other replicas, and a write may commit after a listing that
/// its due time precedes.
const DUE_MARGIN: Duration = Duration::from_secs(5);

/// What the ticks have listed of the due work.
#[derive(Debug, Default)]
pub(super) struct DueListing {
    /// Up to when the last pass listed.
    listed_to: Option<Timestamp>,
    /// When a pass last listed everything due.
    full_at: Option<Timestamp>,
}

impl DueListing {
    /// The query of a tick at `now`.
    fn query(&self, now: Timestamp) -> ListJobs {
        match (self.listed_to, self.full_at) {
            (Some(to), Some(full)) if now.since(full) < FULL_DUE_LISTING => {
                ListJobs::due_since(to.saturating_sub(DUE_MARGIN), now, PAGE)
            }
            _ => ListJobs::due(now, PAGE),
        }
    }

    /// A pass at `now` is done.
    fn listed(&mut self, now: Timestamp, full: bool) {
        self.listed_to = Some(now);
        if full {
            self.full_at = Some(now);
        }
    }
}

/// Where runners and jobs can meet: a JIT runner is registered on one
/// repository of one owner and serves that repository's jobs with its
/// labels only. The label-set key already hashes the scope in; the scope
/// itself is compared too, since a 64-bit hash of labels an attacker
/// writes can be made to collide.
pub(super) type Scope = (LabelSetKey, OwnerId, String);

/// The scope of `record`.
pub(super) fn scope(record: &JobRecord) -> Scope {
    (
        record.label_set,
        record.owner_id,
        record.repository.to_string().to_ascii_lowercase(),
    )
}

/// Whether a launch counts as a runner for some waiting job: an idle
/// instance, or a launch in flight under a live claim. `deciding` is the
/// job a launch is being decided for: its own unfinished launch does not
/// count, since that is the launch being decided.
pub(super) fn supplies(
    record: &JobRecord,
    launch: &Launch,
    now: Timestamp,
    deciding: Option<JobKey>,
) -> bool {
    if !launch.is_idle() {
        return false;
    }
    if launch.instance_id.is_some() {
        return true;
    }
    record.state == JobState::Launching
        && record.lease.as_ref().is_some_and(|l| l.expires_at > now)
        && deciding != Some(record.key)
}

/// The waiting jobs of one label set that need a launch of their own.
///
/// Idle runners of jobs that no longer wait (finished, or running on
/// another runner) are spares; they cover the oldest uncovered jobs, and
/// the newest uncovered jobs get launches.
pub(super) fn plan(
    active: &[Versioned<JobRecord>],
    now: Timestamp,
    deciding: Option<JobKey>,
) -> Vec<JobKey> {
    let supplies = |r: &JobRecord, l: &Launch| supplies(r, l, now, deciding);
    let mut waiting: Vec<&JobRecord> = active
        .iter()
        .map(|v| &v.value)
        .filter(|r| r.state.is_waiting())
        .collect();
    waiting.sort_by_key(|r| (r.queued_at, r.key));
    let own_supply = |r: &JobRecord| r.launches.iter().any(|l| supplies(r, l));
    let spares = active
        .iter()
        .map(|v| &v.value)
        .filter(|r| !r.state.is_waiting())
        .map(|r| r.launches.iter().filter(|l| supplies(r, l)).count())
        .sum::<usize>()
        // A waiting job with more than one idle launch lends the rest.
        + waiting
            .iter()
            .map(|r| r.launches.iter().filter(|l| supplies(r, l)).count().saturating_sub(1))
            .sum::<usize>();
    let uncovered: Vec<JobKey> = waiting
        .iter()
        .filter(|r| !own_supply(r))
        .map(|r| r.key)
        .collect();
    let needed = uncovered.len().saturating_sub(spares);
    uncovered[uncovered.len() - needed..].to_vec()
}

impl Inner {
    /// The active jobs of `of`'s scope (its label set, owner and
    /// repository).
    pub(super) async fn active_in(&self, of: &JobRecord) -> Result<Vec<Versioned<JobRecord>>> {
        let mut query = ListJobs::active(PAGE);
        query.label_set = Some(of.label_set);
        let within = scope(of);
        let mut active = self.list_all(query).await?;
        active.retain(|r| scope(&r.value) == within);
        Ok(active)
    }

    /// Every page of a query.
    pub(super) async fn list_all(&self, mut query: ListJobs) -> Result<Vec<Versioned<JobRecord>>> {
        let mut all = Vec::new();
        loop {
            let page = self.store.list_jobs(query.clone()).await?;
            all.extend(page.jobs);
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Starts launches for the jobs of `of`'s scope that lack a runner.
    pub(super) async fn rebalance(&self, of: &JobRecord) -> Result<()> {
        let active = self.active_in(of).await?;
        self.start_due(&active, self.clock.now());
        Ok(())
    }

    /// Starts every launch that is due. Reads from the store's index of
    /// due work what became due since the last tick looked (all of it
    /// every [`FULL_DUE_LISTING`]), then plans only their scopes: the cost
    /// grows with what is newly due, never with the history, with the jobs
    /// whose runners are up, or with a backlog waiting for slots.
    pub(super) async fn process_due(&self) -> Result<()> {
        let now = self.clock.now();
        self.limiter.tick();
        self.ticked.notify_waiters();
        self.release_slots_of_inactive().await?;
        let query = self
            .due_listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .query(now);
        let full = query.due_after.is_none();
        let due = self.list_all(query).await?;
        // A job whose launch task runs here (waiting for a slot, say) needs
        // nothing from the tick: its scope is not read for it.
        let scheduled = self
            .scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Ordered, so that a simulation replays a seed exactly.
        let mut scopes: BTreeMap<Scope, JobRecord> = BTreeMap::new();
        for record in due {
            if scheduled.contains(&record.value.key) {
                continue;
            }
            scopes.entry(scope(&record.value)).or_insert(record.value);
        }
        for of in scopes.values() {
            let active = self.active_in(of).await?;
            self.start_due(&active, now);
        }
        // Only once the pass is done: cut short, the next tick lists the
        // same again.
        self.due_listing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .listed(now, full);
        Ok(())
    }

    /// Another replica may end the instance of a job this one launched
    /// (it took the job's `completed` webhook, or it leads the reconciler):
    /// the slots this replica holds for it come down to its live launches
    /// (a launch task's reservation stays until the task is over). Looked
    /// for only while a launch waits for a slot: a slot nobody waits for
    /// costs nothing held, and this reads one record per holder.
    async fn release_slots_of_inactive(&self) -> Result<()> {
        let holders = self.limiter.holders();
        let scheduled = self
            .scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // A launch task just spawned may not have asked for its slot yet.
        let may_wait = self.limiter.has_waiters()
            || ((self.limiter.is_limited() || self.any_caps())
                && scheduled.iter().any(|k| !holders.contains(k)));
        if !may_wait {
            return Ok(());
        }
        for job in holders {
            let record = self.store.get_job(job).await?;
            // Under the lock a launch task is spawned under: a job with no
            // task here holds no reservation (one left by a task that
            // could not read its record is given back now).
            let scheduled = self.scheduled.lock().unwrap_or_else(|e| e.into_inner());
            let task_here = scheduled.contains(&job);
            match record {
                Some(r) => self.limiter.seen(&r.value, r.version),
                None if !task_here => self.limiter.release(job),
                None => {}
            }
            if !task_here {
                self.limiter.unreserve(job);
            }
        }
        Ok(())
    }

    fn start_due(&self, active: &[Versioned<JobRecord>], now: Timestamp) {
        for key in plan(active, now, None) {
            let Some(record) = active.iter().find(|r| r.value.key == key) else {
                continue;
            };
            let r = &record.value;
            let backoff_over = r.next_attempt_at.is_none_or(|t| t <= now);
            let claim_free = r.lease.as_ref().is_none_or(|l| l.expires_at <= now);
            if backoff_over && claim_free {
                self.schedule_launch(key);
            }
        }
    }

    /// Spawns the launch task of `key` unless one runs in this replica.
    pub(super) fn schedule_launch(&self, key: JobKey) {
        self.schedule_launch_from(key, None);
    }

    /// [`Inner::schedule_launch`] with the record just read or written, if
    /// any: the task then starts without reading it again (its claim reads
    /// the current one anyway).
    pub(super) fn schedule_launch_from(&self, key: JobKey, known: Option<JobRecord>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        {
            let mut scheduled = self.scheduled.lock().unwrap_or_else(|e| e.into_inner());
            if !scheduled.insert(key) {
                return;
            }
        }
        let Some(this) = self.me() else { return };
        self.tasks.spawn(async move {
            this.launch_job(key, known).await;
            this.scheduled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }

    /// After a restart: slots for the jobs with live instances, then
    /// whatever launches are due. Claims this replica left from before it
    /// stopped hold no launch any more: they are released first, so every
    /// rule that trusts a live claim (the plan, the sweep, ending a launch)
    /// sees them as lapsed and the launch resumes at once.
    pub(super) async fn recover(&self) -> Result<()> {
        self.sync_tenants().await?;
        for record in self.list_all(ListJobs::active(PAGE)).await? {
            // Its live instances count here, whatever the caps.
            self.limiter.seen(&record.value, record.version);
            let r = &record.value;
            let own_claim = |r: &JobRecord| {
                r.lease
                    .as_ref()
                    .is_some_and(|l| l.owner == self.config.replica_id)
            };
            if own_claim(r) {
                self.update_from(record.clone(), |r| own_claim(r) && r.lease.take().is_some())
                    .await?;
            }
        }
        self.process_due().await
    }
}
