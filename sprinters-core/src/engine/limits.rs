//! Concurrency caps: live instances per AWS account, per repository and
//! per owner, from the configuration's [`Limits`] and the owner's policy
//! (the smaller wins). A job over a cap waits for a slot; nothing is
//! dropped. Counted twice: here, so that a job over a cap waits in this
//! process without asking the store, and by the store as part of the launch
//! claim ([`ClaimJob::within`](crate::ports::ClaimJob::within)), which holds
//! every replica sharing it to one count.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::config::Limits;
use super::turns::Turns;
use crate::domain::{AccountId, JobKey, OwnerId, Repository};
use crate::job::{JobRecord, Launch};
use crate::ports::{SlotCap, Version};

/// The caps one launch is held to; `None` is no cap.
pub(crate) use crate::ports::SlotCaps as Caps;

/// Where a launch counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place<'a> {
    pub(crate) owner: OwnerId,
    pub(crate) account: &'a AccountId,
    pub(crate) repository: &'a Repository,
}

/// Slots held by jobs with live instances: one per live launch (a job
/// whose runner another job took launches again, and holds two).
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    limits: Limits,
    state: Mutex<Held>,
    /// Woken when a slot frees in an account, or of an owner: only the
    /// waiters it may let through look again (an owner's backlog is not
    /// woken by every other owner's release).
    wakers: Mutex<Wakers>,
    /// Times a waiter looked at its caps: for tests of who is woken.
    attempts: std::sync::atomic::AtomicU64,
    waiting: AtomicUsize,
}

/// Counts a waiter for as long as it waits, and keeps its place in its
/// account's turns, however its future ends.
struct Waiting<'a> {
    limiter: &'a Limiter,
    /// Where it waits, until it takes a slot (which leaves its turns in
    /// the same step).
    turn: Option<(AccountId, OwnerId, Repository)>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.limiter.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some((account, owner, repository)) = self.turn.take() {
            let others = self
                .limiter
                .lock()
                .turns
                .leave(&account, owner, &repository);
            if others {
                self.limiter.wake_accounts(&[account]);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Wakers {
    by_account: HashMap<AccountId, Arc<Notify>>,
    by_owner: HashMap<OwnerId, Arc<Notify>>,
}

#[derive(Debug, Default)]
struct Held {
    jobs: HashMap<JobKey, Holding>,
    per_account: HashMap<AccountId, usize>,
    per_repository: HashMap<Repository, usize>,
    per_owner: HashMap<OwnerId, usize>,
    /// Places the store found full, until the next tick: one claim per
    /// place and tick asks it, not every waiting job of a backlog.
    full: HashSet<Full>,
    /// Whose turn it is in accounts where several owners wait.
    turns: Turns,
}

/// A place whose cap the store's count found reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Full {
    Account(AccountId),
    Repository(OwnerId, Repository),
    Owner(OwnerId),
}

impl Full {
    fn of(place: &Place<'_>) -> [Full; 3] {
        [
            Full::Account(place.account.clone()),
            Full::Repository(place.owner, place.repository.clone()),
            Full::Owner(place.owner),
        ]
    }
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caps of the configuration, narrowed by `policy`'s.
    pub(crate) fn caps(&self, policy: Caps) -> Caps {
        let min = |a: Option<usize>, b: Option<usize>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Caps {
            per_account: min(self.limits.per_account, policy.per_account),
            per_repository: min(self.limits.per_repository, policy.per_repository),
            per_owner: policy.per_owner,
        }
    }

    /// Reserves the slot of `job`'s next launch if it is free under
    /// `caps` (or reserved already). A new launch needs one beyond the
    /// job's live launches (a job whose runner another job took holds that
    /// one and needs another); the next of a job with an untaken live
    /// launch is that one. `usage` is the job's as the caller last read
    /// it; a more recent one seen here wins.
    pub(crate) fn try_acquire(
        &self,
        job: JobKey,
        place: &Place<'_>,
        caps: Caps,
        usage: Usage,
    ) -> bool {
        self.try_take(job, place, caps, usage, false)
    }

    /// [`Self::try_acquire`] for a launch that waits in its account's
    /// turns (`waiting`): taking the slot also ends its wait there, in the
    /// same step, so no other owner yields to a launch that no longer
    /// waits.
    fn try_take(
        &self,
        job: JobKey,
        place: &Place<'_>,
        caps: Caps,
        usage: Usage,
        waiting: bool,
    ) -> bool {
        let mut held = self.lock();
        let changed = waiting
            && held
                .turns
                .refresh(place.account, place.owner, place.repository, caps);
        if changed {
            // Others may have yielded to this launch under its old caps.
            drop(held);
            self.wake_accounts(std::slice::from_ref(place.account));
            held = self.lock();
        }
        let (usage, reserved) = held
            .jobs
            .get(&job)
            .map_or((usage, 0), |h| (h.usage, h.reserved));
        if reserved > 0 {
            if waiting {
                held.turns
                    .leave(place.account, place.owner, place.repository);
            }
            return true;
        }
        if Full::of(place).iter().any(|f| held.full.contains(f)) {
            return false;
        }
        let want = usage.live + usize::from(!usage.untaken);
        let more = want.saturating_sub(usage.live);
        let full = |cap: Option<usize>, n: Option<&usize>| {
            cap.is_some_and(|max| n.copied().unwrap_or(0) + more > max)
        };
        if full(caps.per_account, held.per_account.get(place.account))
            || full(
                caps.per_repository,
                held.per_repository.get(place.repository),
            )
            || full(caps.per_owner, held.per_owner.get(&place.owner))
        {
            return false;
        }
        // Owners sharing the account take its slots in turn: each owner
        // before this one with a launch that could take a slot is owed
        // one, under its own account cap.
        if more > 0 {
            let h: &Held = &held;
            let taken = h.per_account.get(place.account).copied().unwrap_or(0);
            let owed =
                h.turns
                    .owed_to_others(place.account, place.owner, taken + more, |o, r, c| {
                        h.may_take(o, place.account, r, c)
                    });
            if owed {
                return false;
            }
        }
        held.set(job, Some(place), |h| {
            h.usage = usage;
            h.reserved = want;
        });
        let mut wake = Vec::new();
        if waiting
            && held
                .turns
                .leave(place.account, place.owner, place.repository)
        {
            wake.push(place.account.clone());
        }
        if more > 0 {
            held.turns.served(place.account, place.owner);
            // The account holds more: owners whose turn came before may
            // now be at their caps, and those yielding to them may go.
            if held.turns.contended(place.account) {
                wake.push(place.account.clone());
            }
            wake.extend(held.turns.contended_by(place.owner));
        }
        drop(held);
        self.wake_accounts(&wake);
        true
    }

    /// Waits for the slot of `job`'s next launch under `caps` (read again
    /// each time one frees in its account or of its owner).
    pub(crate) async fn acquire(
        &self,
        job: JobKey,
        place: &Place<'_>,
        caps: impl Fn() -> Caps,
        usage: Usage,
    ) {
        let first = caps();
        if self.try_acquire(job, place, first, usage) {
            return;
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .turns
            .wait(place.account, place.owner, place.repository, first);
        let mut waiting = Waiting {
            limiter: self,
            turn: Some((place.account.clone(), place.owner, place.repository.clone())),
        };
        let (account, owner) = {
            let mut w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            let account = Arc::clone(w.by_account.entry(place.account.clone()).or_default());
            let owner = Arc::clone(w.by_owner.entry(place.owner).or_default());
            (account, owner)
        };
        loop {
            let in_account = account.notified();
            let of_owner = owner.notified();
            tokio::pin!(in_account, of_owner);
            in_account.as_mut().enable();
            of_owner.as_mut().enable();
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.try_take(job, place, caps(), usage, true) {
                waiting.turn = None;
                return;
            }
            tokio::select! {
                _ = in_account => {}
                _ = of_owner => {}
            }
        }
    }

    /// How many times waiters looked at their caps.
    #[cfg(test)]
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// `job`'s launch task is over: its reservation is given back, and
    /// what its writes left counted stays.
    pub(crate) fn unreserve(&self, job: JobKey) {
        let freed = self.lock().set(job, None, |h| h.reserved = 0);
        self.wake_for(freed);
    }

    /// `record` was written or read here at `version`: its live launches
    /// are counted as it has them (one ended, here or on another replica;
    /// one began), unless a later version was seen already. A launch
    /// task's reservation stays until the task is over.
    pub(crate) fn seen(&self, record: &JobRecord, version: Version) {
        let usage = Usage::of(record);
        let place = record.account.as_ref().map(|account| Place {
            owner: record.owner_id,
            account,
            repository: &record.repository,
        });
        let place = place.as_ref().filter(|_| usage.live > 0);
        let mut held = self.lock();
        let before = held.per_owner.get(&record.owner_id).copied();
        let freed = held.set(record.key, place, |h| {
            if version >= h.version {
                h.version = version;
                h.usage = usage;
            }
        });
        // An owner holding more here may take less elsewhere: its turns
        // may pass to others.
        let grew = held.per_owner.get(&record.owner_id).copied() > before;
        let mut wake = Vec::new();
        if grew {
            wake = held.turns.contended_by(record.owner_id);
            if let Some(account) = record.account.as_ref().filter(|a| held.turns.contended(a)) {
                wake.push(account.clone());
            }
        }
        drop(held);
        self.wake_accounts(&wake);
        self.wake_for(freed);
    }

    /// The store found `cap` reached at `place`: no launch there asks it
    /// again before the next tick.
    pub(crate) fn full_until_tick(&self, cap: SlotCap, place: &Place<'_>) {
        let [account, repository, owner] = Full::of(place);
        let mut held = self.lock();
        let wake = match cap {
            SlotCap::Account => {
                held.full.insert(account);
                Vec::new()
            }
            // The owner can take nothing there until the tick: its turns
            // pass to the others.
            SlotCap::Repository => {
                held.full.insert(repository);
                held.turns.contended_by(place.owner)
            }
            _ => {
                held.full.insert(owner);
                held.turns.contended_by(place.owner)
            }
        };
        drop(held);
        self.wake_accounts(&wake);
    }

    /// A tick: every place found full asks the store again, its waiters
    /// woken.
    pub(crate) fn tick(&self) {
        let full = std::mem::take(&mut self.lock().full);
        if full.is_empty() {
            return;
        }
        let w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for place in full {
            let notify = match &place {
                Full::Account(account) => w.by_account.get(account),
                Full::Repository(owner, _) | Full::Owner(owner) => w.by_owner.get(owner),
            };
            if let Some(notify) = notify {
                notify.notify_waiters();
            }
        }
    }

    /// Gives every slot of `job` back: its record is gone, or its ticket
    /// was never written.
    pub(crate) fn release(&self, job: JobKey) {
        let freed = self.lock().set(job, None, |h| {
            h.reserved = 0;
            h.usage = Usage::default();
        });
        self.wake_for(freed);
    }

    /// Wakes the waiters a freed slot may let through: those in its
    /// account, and its owner's.
    fn wake_for(&self, freed: Option<(OwnerId, AccountId)>) {
        let Some((owner, account)) = freed else {
            return;
        };
        let w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for notify in [w.by_account.get(&account), w.by_owner.get(&owner)]
            .into_iter()
            .flatten()
        {
            notify.notify_waiters();
        }
    }

    /// Wakes the waiters in `accounts`.
    fn wake_accounts(&self, accounts: &[AccountId]) {
        if accounts.is_empty() {
            return;
        }
        let w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for account in accounts {
            if let Some(notify) = w.by_account.get(account) {
                notify.notify_waiters();
            }
        }
    }

    /// Wakes every waiter to look at its caps again (a policy changed).
    pub(crate) fn wake(&self) {
        let w = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for notify in w.by_account.values().chain(w.by_owner.values()) {
            notify.notify_waiters();
        }
    }

    /// How many launches wait for a slot here.
    #[cfg(feature = "testing")]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether a launch waits for a slot: only then must slots held by
    /// jobs that ended elsewhere be looked for.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Whether the configuration sets a limit (an owner's policy may set
    /// more).
    pub(crate) fn is_limited(&self) -> bool {
        self.limits.per_account.is_some() || self.limits.per_repository.is_some()
    }

    /// How many slots are held.
    pub(crate) fn held(&self) -> usize {
        self.lock().jobs.values().map(Holding::slots).sum()
    }

    /// The jobs holding a slot.
    pub(crate) fn holders(&self) -> Vec<JobKey> {
        let mut jobs: Vec<JobKey> = self.lock().jobs.keys().copied().collect();
        jobs.sort();
        jobs
    }
}

/// A job's launches as last written or read here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Its live launches.
    pub(crate) live: usize,
    /// Whether one of them is untaken (its runner waits for a job): the
    /// job's next launch is that one.
    pub(crate) untaken: bool,
}

impl Usage {
    pub(crate) fn of(record: &JobRecord) -> Self {
        Self {
            live: record.live_launches(),
            untaken: record.launches.iter().any(Launch::is_idle),
        }
    }
}

/// Where one job's slots count, and how many it holds.
#[derive(Debug)]
struct Holding {
    owner: OwnerId,
    account: AccountId,
    repository: Repository,
    usage: Usage,
    /// The version of the record `usage` is from.
    version: Version,
    /// What its launch task reserved (its live launches and the one it
    /// makes), until the task is over.
    reserved: usize,
}

impl Holding {
    fn slots(&self) -> usize {
        self.usage.live.max(self.reserved)
    }
}

impl Held {
    /// Whether a launch of `owner`'s `repository` could take a slot in
    /// `account` under `caps`, as counted here.
    fn may_take(
        &self,
        owner: OwnerId,
        account: &AccountId,
        repository: &Repository,
        caps: Caps,
    ) -> bool {
        let under = |cap: Option<usize>, n: Option<&usize>| {
            cap.is_none_or(|max| n.copied().unwrap_or(0) < max)
        };
        !self.full.contains(&Full::Owner(owner))
            && !self
                .full
                .contains(&Full::Repository(owner, repository.clone()))
            && under(caps.per_account, self.per_account.get(account))
            && under(caps.per_repository, self.per_repository.get(repository))
            && under(caps.per_owner, self.per_owner.get(&owner))
    }

    /// Applies `change` to `job`'s holding (a new one only with a place)
    /// and moves the counts by the difference: where slots were freed, if
    /// any.
    fn set(
        &mut self,
        job: JobKey,
        place: Option<&Place<'_>>,
        change: impl FnOnce(&mut Holding),
    ) -> Option<(OwnerId, AccountId)> {
        let holding = match (self.jobs.entry(job), place) {
            (std::collections::hash_map::Entry::Occupied(e), _) => e.into_mut(),
            (std::collections::hash_map::Entry::Vacant(e), Some(place)) => e.insert(Holding {
                owner: place.owner,
                account: place.account.clone(),
                repository: place.repository.clone(),
                usage: Usage::default(),
                version: 0,
                reserved: 0,
            }),
            (std::collections::hash_map::Entry::Vacant(_), None) => return None,
        };
        let before = holding.slots();
        change(holding);
        let after = holding.slots();
        let (owner, account, repository) = (
            holding.owner,
            holding.account.clone(),
            holding.repository.clone(),
        );
        if after == 0 {
            self.jobs.remove(&job);
        }
        if after >= before {
            let more = after - before;
            *self.per_account.entry(account).or_default() += more;
            *self.per_repository.entry(repository).or_default() += more;
            *self.per_owner.entry(owner).or_default() += more;
            return None;
        }
        let freed = before - after;
        decrement(&mut self.per_account, &account, freed);
        decrement(&mut self.per_repository, &repository, freed);
        decrement(&mut self.per_owner, &owner, freed);
        Some((owner, account))
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K, by: usize) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(by);
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobId, RunAttempt};

    const NEW: Usage = Usage {
        live: 0,
        untaken: false,
    };

    fn key(n: u64) -> JobKey {
        JobKey::new(JobId::new(n), RunAttempt::FIRST)
    }

    /// Owner A's twenty launches wait over its cap of one; owner B's
    /// releases, in another account, wake none of them; A's own release
    /// wakes each once, and one takes the slot.
    #[tokio::test]
    async fn a_release_wakes_only_the_waiters_it_may_let_through() {
        let limiter = Arc::new(Limiter::new(Limits::default()));
        let one = Caps::new(None, None, Some(1));
        let (a, b) = (OwnerId::new(1), OwnerId::new(2));
        let (x, y) = (
            AccountId::parse("111111111111").unwrap(),
            AccountId::parse("222222222222").unwrap(),
        );
        let repo = Repository::parse("octo/app").unwrap();
        let place = |owner, account| Place {
            owner,
            account,
            repository: &repo,
        };
        assert!(limiter.try_acquire(key(0), &place(a, &x), one, NEW));
        let mut waiters = Vec::new();
        for n in 1..=20 {
            let (limiter, x, repo) = (limiter.clone(), x.clone(), repo.clone());
            waiters.push(tokio::spawn(async move {
                let place = Place {
                    owner: a,
                    account: &x,
                    repository: &repo,
                };
                limiter.acquire(key(n), &place, || one, NEW).await;
            }));
        }
        let settle = || async {
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        };
        settle().await;
        assert_eq!(limiter.attempts(), 20, "each waiter looked once");
        for n in 100..110 {
            assert!(limiter.try_acquire(key(n), &place(b, &y), Caps::default(), NEW));
            limiter.release(key(n));
        }
        settle().await;
        assert_eq!(limiter.attempts(), 20, "B's releases woke none of A's");
        limiter.release(key(0));
        settle().await;
        assert_eq!(limiter.attempts(), 40, "A's release woke each once");
        assert_eq!(limiter.held(), 1, "one took the slot");
        assert_eq!(waiters.iter().filter(|w| w.is_finished()).count(), 1);
        for w in waiters {
            w.abort();
        }
    }

    /// Waiters of owners `a` (keys 1..) and `b` (keys 11..) in one account,
    /// each pushing its owner to `order` when it takes a slot.
    struct Shared {
        limiter: Arc<Limiter>,
        account: AccountId,
        repos: [Repository; 2],
        order: Arc<Mutex<Vec<u64>>>,
    }

    impl Shared {
        fn new() -> Self {
            Self {
                limiter: Arc::new(Limiter::new(Limits::default())),
                account: AccountId::parse("111111111111").unwrap(),
                repos: [
                    Repository::parse("octo-a/app").unwrap(),
                    Repository::parse("octo-b/app").unwrap(),
                ],
                order: Arc::default(),
            }
        }

        fn place(&self, owner: u64) -> Place<'_> {
            Place {
                owner: OwnerId::new(owner),
                account: &self.account,
                repository: &self.repos[usize::from(owner != 1)],
            }
        }

        fn wait(&self, owner: u64, job: u64, caps: Caps) -> tokio::task::JoinHandle<()> {
            let (limiter, order) = (self.limiter.clone(), self.order.clone());
            let (account, repo) = (self.account.clone(), self.place(owner).repository.clone());
            tokio::spawn(async move {
                let place = Place {
                    owner: OwnerId::new(owner),
                    account: &account,
                    repository: &repo,
                };
                limiter.acquire(key(job), &place, || caps, NEW).await;
                order.lock().unwrap().push(owner);
            })
        }

        fn taken(&self) -> Vec<u64> {
            self.order.lock().unwrap().clone()
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    /// Two owners share an account capped at one instance: owner 1 queued
    /// five launches before owner 2 queued three; as slots free one by one
    /// they go to the owners in turn, not to the first five.
    #[tokio::test]
    async fn owners_sharing_an_account_take_freed_slots_in_turn() {
        let shared = Shared::new();
        let one = Caps::new(Some(1), None, None);
        assert!(
            shared
                .limiter
                .try_acquire(key(0), &shared.place(1), one, NEW)
        );
        for n in 1..=5 {
            shared.wait(1, n, one);
            settle().await;
        }
        for n in 11..=13 {
            shared.wait(2, n, one);
            settle().await;
        }
        let mut holder = key(0);
        for _ in 0..8 {
            shared.limiter.release(holder);
            settle().await;
            holder = *shared
                .limiter
                .holders()
                .first()
                .expect("a freed slot is taken at once");
        }
        assert_eq!(shared.taken(), [1, 2, 1, 2, 1, 2, 1, 1]);
    }

    /// The owner whose turn it is, but whose own cap is reached, does not
    /// hold the account's freed slot: the other owner takes it.
    #[tokio::test]
    async fn a_turn_passes_over_an_owner_that_can_take_nothing() {
        let shared = Shared::new();
        let two = Caps::new(Some(2), None, None);
        let two_of_one = Caps::new(Some(2), None, Some(1));
        assert!(
            shared
                .limiter
                .try_acquire(key(10), &shared.place(2), two_of_one, NEW)
        );
        // Owner 1 takes the account's last slot while owner 2 waits (at its
        // own cap of one), so owner 2 is next, but can take nothing.
        let b = shared.wait(2, 11, two_of_one);
        settle().await;
        assert!(
            shared
                .limiter
                .try_acquire(key(0), &shared.place(1), two, NEW)
        );
        let a = shared.wait(1, 1, two);
        settle().await;
        shared.limiter.release(key(0));
        settle().await;
        assert_eq!(
            shared.taken(),
            [1],
            "the slot went to the owner that could take it"
        );
        assert!(a.is_finished() && !b.is_finished());
        b.abort();
    }

    /// A waiter whose turn it was goes away (its future dropped) after the
    /// other owner's waiter yielded to it: that waiter is woken again and
    /// takes the slot.
    #[tokio::test]
    async fn a_turn_passes_when_its_waiter_goes_away() {
        let shared = Shared::new();
        let one = Caps::new(Some(1), None, None);
        assert!(
            shared
                .limiter
                .try_acquire(key(0), &shared.place(1), one, NEW)
        );
        let owner_2 = shared.place(2);
        let mut b = Box::pin(shared.limiter.acquire(key(11), &owner_2, || one, NEW));
        tokio::select! {
            biased;
            _ = &mut b => panic!("the account is full"),
            _ = std::future::ready(()) => {}
        }
        // Owner 1 takes a slot while owner 2 waits: owner 2 is next.
        shared.limiter.release(key(0));
        assert!(
            shared
                .limiter
                .try_acquire(key(1), &shared.place(1), one, NEW)
        );
        let a = shared.wait(1, 2, one);
        shared.limiter.release(key(1));
        settle().await;
        assert!(!a.is_finished(), "owner 1 yields to owner 2");
        drop(b);
        settle().await;
        assert_eq!(shared.taken(), [1], "owner 1 took the slot owner 2 left");
    }

    /// Owners held to different account caps: one with a larger cap does
    /// not take the slot owed to one whose turn it is and whose smaller
    /// cap that slot would reach.
    #[tokio::test]
    async fn a_slot_owed_under_a_smaller_cap_is_not_taken_under_a_larger_one() {
        let limiter = Limiter::new(Limits::default());
        let account = AccountId::parse("111111111111").unwrap();
        let (repo_a, repo_b) = (
            Repository::parse("octo-a/app").unwrap(),
            Repository::parse("octo-b/app").unwrap(),
        );
        // B (owner 1) goes first in turn; A (owner 2) may hold 10, B 5.
        let a = Place {
            owner: OwnerId::new(2),
            account: &account,
            repository: &repo_a,
        };
        let b = Place {
            owner: OwnerId::new(1),
            account: &account,
            repository: &repo_b,
        };
        let (ten, five) = (
            Caps::new(Some(10), None, None),
            Caps::new(Some(5), None, None),
        );
        for n in 1..=5 {
            assert!(limiter.try_acquire(key(n), &a, ten, NEW));
        }
        let mut waiter = Box::pin(limiter.acquire(key(11), &b, || five, NEW));
        tokio::select! {
            biased;
            _ = &mut waiter => panic!("the account holds B's cap"),
            _ = std::future::ready(()) => {}
        }
        limiter.release(key(1));
        assert!(
            !limiter.try_acquire(key(6), &a, ten, NEW),
            "the slot is B's: it would reach B's cap of five"
        );
        waiter.await;
        assert!(
            limiter.try_acquire(key(6), &a, ten, NEW),
            "B is at its cap: A goes on under its own"
        );
    }

    /// A slot per instance: a job holding a live launch whose runner
    /// another job took needs a second slot to launch again, and gets it
    /// once that launch ends; a resumed launch needs none beyond its own.
    #[test]
    fn a_job_launching_again_needs_a_slot_beyond_its_live_launches() {
        let limiter = Limiter::new(Limits::default());
        let one = Caps::new(Some(1), None, None);
        let account = AccountId::parse("111111111111").unwrap();
        let repo = Repository::parse("octo/app").unwrap();
        let place = Place {
            owner: OwnerId::new(1),
            account: &account,
            repository: &repo,
        };
        let usage = |live, untaken| Usage { live, untaken };
        let set = |job, usage: Usage, version| {
            limiter.lock().set(job, Some(&place), |h| {
                h.usage = usage;
                h.version = version;
            });
        };
        let over = |job, usage| {
            set(job, usage, 0);
            limiter.unreserve(job);
        };
        assert!(limiter.try_acquire(key(1), &place, one, NEW));
        over(key(1), usage(1, true));
        assert_eq!(limiter.held(), 1);
        assert!(
            limiter.try_acquire(key(1), &place, one, NEW),
            "its runner waits"
        );
        over(key(1), usage(1, true));
        // Another job took the runner: the job's next launch is a new one.
        set(key(1), usage(1, false), 0);
        assert!(
            !limiter.try_acquire(key(1), &place, one, NEW),
            "a second instance"
        );
        assert!(!limiter.try_acquire(key(2), &place, one, NEW));
        set(key(1), usage(0, false), 0);
        assert_eq!(limiter.held(), 0, "its launch ended");
        assert!(limiter.try_acquire(key(1), &place, one, NEW));
        assert!(!limiter.try_acquire(key(2), &place, one, NEW));
        set(key(1), usage(0, false), 0);
        assert_eq!(
            limiter.held(),
            1,
            "a reservation stays until its task is over"
        );
        limiter.unreserve(key(1));
        assert!(limiter.try_acquire(key(2), &place, one, NEW));
    }

    /// A place the store found full is asked once per tick: until then no
    /// other launch there may take a local slot (and so claim); another
    /// account is not held back.
    #[test]
    fn a_place_found_full_waits_for_the_tick() {
        let limiter = Limiter::new(Limits::default());
        let (x, y) = (
            AccountId::parse("111111111111").unwrap(),
            AccountId::parse("222222222222").unwrap(),
        );
        let repo = Repository::parse("octo/app").unwrap();
        let place = |account| Place {
            owner: OwnerId::new(1),
            account,
            repository: &repo,
        };
        let three = Caps::new(Some(3), None, None);
        assert!(limiter.try_acquire(key(1), &place(&x), three, NEW));
        limiter.full_until_tick(crate::ports::SlotCap::Account, &place(&x));
        limiter.unreserve(key(1));
        assert!(!limiter.try_acquire(key(2), &place(&x), three, NEW));
        assert!(
            limiter.try_acquire(key(3), &place(&y), three, NEW),
            "another account"
        );
        limiter.tick();
        assert!(limiter.try_acquire(key(2), &place(&x), three, NEW));
    }
}
