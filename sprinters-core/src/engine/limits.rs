//! Per-account and per-repository concurrency limits. A job over a limit
//! waits for a slot; nothing is dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::config::Limits;
use crate::domain::{AccountId, JobKey, Repository};

/// Slots held by jobs with live instances.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    limits: Limits,
    state: Mutex<Held>,
    freed: Notify,
    waiting: AtomicUsize,
}

/// Counts a waiter for as long as it waits, however its future ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Held {
    jobs: HashMap<JobKey, (AccountId, Repository)>,
    per_account: HashMap<AccountId, usize>,
    per_repository: HashMap<Repository, usize>,
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

    /// Takes a slot if one is free (or `job` already holds one).
    pub(crate) fn try_acquire(
        &self,
        job: JobKey,
        account: &AccountId,
        repository: &Repository,
    ) -> bool {
        let mut held = self.lock();
        if held.jobs.contains_key(&job) {
            return true;
        }
        let account_full = self
            .limits
            .per_account
            .is_some_and(|max| held.per_account.get(account).copied().unwrap_or(0) >= max);
        let repository_full = self
            .limits
            .per_repository
            .is_some_and(|max| held.per_repository.get(repository).copied().unwrap_or(0) >= max);
        if account_full || repository_full {
            return false;
        }
        held.insert(job, account.clone(), repository.clone());
        true
    }

    /// Waits for a slot.
    pub(crate) async fn acquire(&self, job: JobKey, account: &AccountId, repository: &Repository) {
        if self.try_acquire(job, account, repository) {
            return;
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_acquire(job, account, repository) {
                return;
            }
            freed.await;
        }
    }

    /// Takes a slot regardless of the limits: for jobs found with live
    /// instances when the engine starts.
    pub(crate) fn restore(&self, job: JobKey, account: &AccountId, repository: &Repository) {
        let mut held = self.lock();
        if !held.jobs.contains_key(&job) {
            held.insert(job, account.clone(), repository.clone());
        }
    }

    /// Gives `job`'s slot back and wakes the waiters.
    pub(crate) fn release(&self, job: JobKey) {
        let released = {
            let mut held = self.lock();
            match held.jobs.remove(&job) {
                Some((account, repository)) => {
                    decrement(&mut held.per_account, &account);
                    decrement(&mut held.per_repository, &repository);
                    true
                }
                None => false,
            }
        };
        if released {
            self.freed.notify_waiters();
        }
    }

    /// Whether a launch waits for a slot: only then must slots held by
    /// jobs that ended elsewhere be looked for.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Whether any limit is set: without one, nobody ever waits.
    pub(crate) fn is_limited(&self) -> bool {
        self.limits.per_account.is_some() || self.limits.per_repository.is_some()
    }

    /// How many slots are held.
    pub(crate) fn held(&self) -> usize {
        self.lock().jobs.len()
    }

    /// The jobs holding a slot.
    pub(crate) fn holders(&self) -> Vec<JobKey> {
        let mut jobs: Vec<JobKey> = self.lock().jobs.keys().copied().collect();
        jobs.sort();
        jobs
    }
}

impl Held {
    fn insert(&mut self, job: JobKey, account: AccountId, repository: Repository) {
        *self.per_account.entry(account.clone()).or_default() += 1;
        *self.per_repository.entry(repository.clone()).or_default() += 1;
        self.jobs.insert(job, (account, repository));
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}
