//! Turns between owners sharing an AWS account. The account's cap is the
//! one place two tenants compete for slots (repository and owner caps
//! belong to one owner). While launches of several owners wait there, a
//! freed slot goes to the owner served least recently among those with a
//! waiting launch that could take it (round-robin), not to whichever
//! waiter's task runs first: one owner's backlog cannot take every slot
//! that frees.
//!
//! Kept per repository, not per job, so that deciding whose turn it is
//! costs the number of waiting owners and repositories, never the length
//! of a backlog.

use std::collections::HashMap;

use super::limits::Caps;
use crate::domain::{AccountId, OwnerId, Repository};

/// Who waits in which account, and when each owner was last served there.
#[derive(Debug, Default)]
pub(super) struct Turns {
    accounts: HashMap<AccountId, Account>,
}

#[derive(Debug, Default)]
struct Account {
    waiting: HashMap<OwnerId, HashMap<Repository, Waiters>>,
    /// When each owner last took a slot here while others waited: a
    /// sequence number, lowest first. Forgotten when nobody waits.
    served: HashMap<OwnerId, u64>,
    next: u64,
}

/// The launches of one repository waiting in one account, and the caps
/// they are held to (the same for all of them: the owner's and the
/// repository's).
#[derive(Debug)]
struct Waiters {
    count: usize,
    caps: Caps,
}

impl Turns {
    /// A launch of `owner`'s `repository` waits in `account` under `caps`.
    pub(super) fn wait(
        &mut self,
        account: &AccountId,
        owner: OwnerId,
        repository: &Repository,
        caps: Caps,
    ) {
        let account = self.accounts.entry(account.clone()).or_default();
        let waiters = account
            .waiting
            .entry(owner)
            .or_default()
            .entry(repository.clone())
            .or_insert(Waiters { count: 0, caps });
        waiters.count += 1;
        waiters.caps = caps;
    }

    /// The caps a waiting launch read again (a policy may have changed):
    /// whether they changed while other owners wait there, who may have
    /// yielded to it under the old ones.
    pub(super) fn refresh(
        &mut self,
        account: &AccountId,
        owner: OwnerId,
        repository: &Repository,
        caps: Caps,
    ) -> bool {
        let Some(entry) = self.accounts.get_mut(account) else {
            return false;
        };
        let others = entry.waiting.len() > 1;
        match entry
            .waiting
            .get_mut(&owner)
            .and_then(|r| r.get_mut(repository))
        {
            Some(waiters) if waiters.caps != caps => {
                waiters.caps = caps;
                others
            }
            _ => false,
        }
    }

    /// A launch stopped waiting (it took a slot, or its task ended):
    /// whether launches of other owners still wait there, whose turn may
    /// have come.
    pub(super) fn leave(
        &mut self,
        account: &AccountId,
        owner: OwnerId,
        repository: &Repository,
    ) -> bool {
        let Some(entry) = self.accounts.get_mut(account) else {
            return false;
        };
        if let Some(repositories) = entry.waiting.get_mut(&owner) {
            if let Some(waiters) = repositories.get_mut(repository) {
                waiters.count = waiters.count.saturating_sub(1);
                if waiters.count == 0 {
                    repositories.remove(repository);
                }
            }
            if repositories.is_empty() {
                entry.waiting.remove(&owner);
            }
        }
        if entry.waiting.is_empty() {
            self.accounts.remove(account);
            return false;
        }
        entry.waiting.keys().any(|o| *o != owner)
    }

    /// `owner` took a slot in `account`: its turn goes to the back, if
    /// anyone waits there.
    pub(super) fn served(&mut self, account: &AccountId, owner: OwnerId) {
        if let Some(entry) = self.accounts.get_mut(account) {
            entry.next += 1;
            let next = entry.next;
            entry.served.insert(owner, next);
        }
    }

    /// Whether `owner` taking a slot in `account`, which would then hold
    /// `taken_after`, leaves too few for the owners before it in turn that
    /// have a waiting launch that `may_take` one: each is owed one, in
    /// turn order, under its own account cap.
    pub(super) fn owed_to_others(
        &self,
        account: &AccountId,
        owner: OwnerId,
        taken_after: usize,
        may_take: impl Fn(OwnerId, &Repository, Caps) -> bool,
    ) -> bool {
        let Some(entry) = self.accounts.get(account) else {
            return false;
        };
        let turn = |o: OwnerId| (entry.served.get(&o).copied().unwrap_or(0), o);
        let mine = turn(owner);
        let mut ahead: Vec<((u64, OwnerId), Option<usize>)> = entry
            .waiting
            .iter()
            .filter(|(o, _)| **o != owner && turn(**o) < mine)
            .filter_map(|(o, repositories)| {
                let ready = repositories
                    .iter()
                    .find(|(repository, w)| may_take(*o, repository, w.caps))?;
                Some((turn(*o), ready.1.caps.per_account))
            })
            .collect();
        ahead.sort_by_key(|(turn, _)| *turn);
        ahead
            .iter()
            .enumerate()
            .any(|(i, (_, cap))| cap.is_some_and(|cap| taken_after + i >= cap))
    }

    /// Whether launches of more than one owner wait in `account`: a slot
    /// taken there may change whose turn it is.
    pub(super) fn contended(&self, account: &AccountId) -> bool {
        self.accounts
            .get(account)
            .is_some_and(|a| a.waiting.len() > 1)
    }

    /// The accounts where `owner` waits beside other owners: when it can
    /// take less (it took a slot elsewhere, or a cap of its was found
    /// full), the turn it held there may pass to them.
    pub(super) fn contended_by(&self, owner: OwnerId) -> Vec<AccountId> {
        self.accounts
            .iter()
            .filter(|(_, a)| a.waiting.contains_key(&owner) && a.waiting.len() > 1)
            .map(|(account, _)| account.clone())
            .collect()
    }
}
