//! Launch slots: caps on live instances counted by the store as part of
//! taking the launch claim, so that every replica sharing the store is held
//! to the same count.
//!
//! A slot is an instance that may exist, or is about to: every live launch
//! of a job holds one, and so does its unexpired launch claim, for the
//! launch it is about to make, unless an untaken live launch is that one
//! (the claim comes before the launch's intent is written). Counted per
//! launch, not per job: a job whose runner another job took launches
//! again, and both instances count.

use std::collections::HashMap;
use std::fmt;

use crate::domain::{AccountId, JobKey, OwnerId};
use crate::job::{JobRecord, Launch};
use crate::ports::Versioned;
use crate::time::Timestamp;

/// The caps a claim is held to; `None` is no cap. Counted over the slots
/// held in the same AWS account (whatever their owner), the same
/// repository, and the same owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotCaps {
    /// Slots held in one AWS account.
    pub per_account: Option<usize>,
    /// Slots held in one repository.
    pub per_repository: Option<usize>,
    /// Slots held for one owner.
    pub per_owner: Option<usize>,
}

impl SlotCaps {
    /// The given caps.
    pub fn new(
        per_account: Option<usize>,
        per_repository: Option<usize>,
        per_owner: Option<usize>,
    ) -> Self {
        Self {
            per_account,
            per_repository,
            per_owner,
        }
    }

    /// Whether any cap is set.
    pub fn any(&self) -> bool {
        self.per_account.is_some() || self.per_repository.is_some() || self.per_owner.is_some()
    }

    /// The first cap that `counts` reach, in the order account, repository,
    /// owner.
    pub fn reached(&self, counts: SlotCounts) -> Option<CapReached> {
        [
            (SlotCap::Account, self.per_account, counts.account),
            (SlotCap::Repository, self.per_repository, counts.repository),
            (SlotCap::Owner, self.per_owner, counts.owner),
        ]
        .into_iter()
        .find_map(|(cap, limit, held)| {
            limit
                .filter(|limit| held >= *limit)
                .map(|limit| CapReached { cap, limit, held })
        })
    }
}

/// How many slots are held where a claimed job's next launch would count,
/// its own live launches included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounts {
    /// In its AWS account.
    pub account: usize,
    /// In its repository.
    pub repository: usize,
    /// For its owner.
    pub owner: usize,
}

/// Which cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotCap {
    /// [`SlotCaps::per_account`].
    Account,
    /// [`SlotCaps::per_repository`].
    Repository,
    /// [`SlotCaps::per_owner`].
    Owner,
}

/// A cap a claim would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapReached {
    /// Which cap.
    pub cap: SlotCap,
    /// Its value.
    pub limit: usize,
    /// How many slots are held there.
    pub held: usize,
}

impl CapReached {
    /// `held` slots are held where `cap` allows `limit`.
    pub fn new(cap: SlotCap, limit: usize, held: usize) -> Self {
        Self { cap, limit, held }
    }
}

impl fmt::Display for CapReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.cap {
            SlotCap::Account => "AWS account",
            SlotCap::Repository => "repository",
            SlotCap::Owner => "owner",
        };
        write!(
            f,
            "{} of at most {} live instances per {place} are held",
            self.held, self.limit
        )
    }
}

/// The outcome of [`JobStore::claim_job`](crate::ports::JobStore::claim_job).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// The record is the common case: boxing it would cost an allocation
// on every claim to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
pub enum Claim {
    /// The claim is taken: the record with it.
    Granted(Versioned<JobRecord>),
    /// Not taken: the job does not exist, or another replica holds an
    /// unexpired claim on it.
    Held,
    /// Not taken: a cap of [`ClaimJob::caps`](crate::ports::ClaimJob::caps)
    /// is reached. Nothing was written.
    Full(CapReached),
}

impl Claim {
    /// The record, when granted.
    pub fn granted(self) -> Option<Versioned<JobRecord>> {
        match self {
            Claim::Granted(record) => Some(record),
            Claim::Held | Claim::Full(_) => None,
        }
    }
}

impl JobRecord {
    /// Until when the job's next launch has its slot counted:
    /// [`Timestamp::MAX`] while it has an untaken live launch (that launch
    /// is the one), its claim's expiry while claimed (the claim is for a
    /// launch), `None` otherwise. Stores keep it in clear to count slots;
    /// a claim within caps is exempt from the count while it lasts.
    pub fn slot_until(&self) -> Option<Timestamp> {
        if self.launches.iter().any(Launch::is_idle) {
            return Some(Timestamp::MAX);
        }
        self.lease.as_ref().map(|l| l.expires_at)
    }

    /// The slots it holds for good beyond that one: every live launch
    /// whose runner a job took (this one or another: its instance runs
    /// until that job ends), and any second untaken one. Stores keep it in
    /// clear beside [`JobRecord::slot_until`].
    pub fn extra_slots(&self) -> usize {
        let live = self.live_launches();
        let untaken = self.launches.iter().filter(|l| l.is_idle()).count();
        live - untaken.min(1)
    }

    /// How many of its launches are live: instances that may exist.
    pub fn live_launches(&self) -> usize {
        self.launches.iter().filter(|l| l.is_live()).count()
    }

    /// Whether the slot of its next launch is counted at `now`: a claim
    /// of it within caps is not counted again.
    pub fn holds_slot(&self, now: Timestamp) -> bool {
        self.slot_until().is_some_and(|t| t > now)
    }

    /// The key a store counts its repository by: case-insensitive, as on
    /// GitHub.
    pub fn repository_slot_key(&self) -> String {
        self.repository.to_string().to_ascii_lowercase()
    }
}

/// The jobs that may hold a slot, for stores that count them in memory
/// (updated on every write, under the same lock as the claim).
#[derive(Debug, Default, Clone)]
pub struct SlotBook {
    holders: HashMap<JobKey, Holder>,
}

#[derive(Debug, Clone)]
struct Holder {
    owner: OwnerId,
    account: Option<AccountId>,
    repository: String,
    until: Option<Timestamp>,
    extra: usize,
}

impl SlotBook {
    /// Notes `record` as written. An inactive record holds no slot (as
    /// the database stores count: they skip inactive rows).
    pub fn record(&mut self, record: &JobRecord) {
        let until = record.slot_until();
        let extra = record.extra_slots();
        if record.is_active() && (until.is_some() || extra > 0) {
            self.holders.insert(
                record.key,
                Holder {
                    owner: record.owner_id,
                    account: record.account.clone(),
                    repository: record.repository_slot_key(),
                    until,
                    extra,
                },
            );
        } else {
            self.holders.remove(&record.key);
        }
    }

    /// Forgets `key` (a removed record).
    pub fn remove(&mut self, key: JobKey) {
        self.holders.remove(&key);
    }

    /// How many slots are held at `now` where `record`'s next launch
    /// would count, as this book has it: `record`'s own live launches
    /// included, and its own next slot too when it holds it.
    pub fn counts(&self, record: &JobRecord, now: Timestamp) -> SlotCounts {
        let repository = record.repository_slot_key();
        let mut counts = SlotCounts::default();
        for h in self.holders.values() {
            let held = h.extra + usize::from(h.until.is_some_and(|t| t > now));
            if record.account.is_some() && h.account == record.account {
                counts.account += held;
            }
            if h.owner == record.owner_id {
                counts.owner += held;
                if h.repository == repository {
                    counts.repository += held;
                }
            }
        }
        counts
    }

    /// The cap of `caps` that claiming `record` at `now` would exceed; none
    /// when the slot of its next launch is counted already (its own claim
    /// or untaken live launch).
    pub fn full(&self, record: &JobRecord, caps: SlotCaps, now: Timestamp) -> Option<CapReached> {
        if !caps.any() || record.holds_slot(now) {
            return None;
        }
        caps.reached(self.counts(record, now))
    }
}
