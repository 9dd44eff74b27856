//! The in-memory index, rebuilt on open: where each record is and the few
//! fields history queries filter on. Records themselves stay on disk, but
//! for the latest version of active jobs, which the engine reads again and
//! again while a job runs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sprinters_core::domain::{AccountId, JobKey};
use sprinters_core::job::{JobRecord, JobState};
use sprinters_core::labels::LabelSetKey;
use sprinters_core::ports::{JobCursor, ListJobs};
use sprinters_core::time::Timestamp;

use crate::log::Loc;

/// What the index keeps of one job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobEntry {
    pub(crate) loc: Loc,
    pub(crate) version: u64,
    pub(crate) key_id: u32,
    pub(crate) queued_at: Timestamp,
    pub(crate) owner: u32,
    /// 0 when the job has no account.
    pub(crate) account: u32,
    pub(crate) label_set: LabelSetKey,
    pub(crate) state: JobState,
    pub(crate) active: bool,
}

/// Strings seen often (owners, accounts), stored once.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.ids.len() as u32 + 1;
        self.ids.insert(s.to_owned(), id);
        id
    }
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// The fields of a record the index needs, sealed in front of the record
/// so that opening the store decodes no more than this.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Summary {
    pub(crate) key: JobKey,
    pub(crate) queued_at: Timestamp,
    pub(crate) owner: String,
    pub(crate) account: Option<AccountId>,
    pub(crate) label_set: LabelSetKey,
    pub(crate) state: JobState,
    pub(crate) active: bool,
}

impl Summary {
    pub(crate) fn of(record: &JobRecord) -> Self {
        Summary {
            key: record.key,
            queued_at: record.queued_at,
            owner: record.owner_id.to_string(),
            account: record.account.clone(),
            label_set: record.label_set,
            state: record.state,
            active: record.is_active(),
        }
    }
}

/// A lease as the index keeps it.
#[derive(Debug, Clone)]
pub(crate) struct LeaseEntry {
    pub(crate) holder: Option<(String, Timestamp)>,
    pub(crate) version: u64,
    pub(crate) loc: Loc,
}

/// A stored access key's place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VaultEntry {
    pub(crate) loc: Loc,
    pub(crate) version: u64,
    pub(crate) key_id: u32,
}

/// Everything the store knows without reading a segment.
#[derive(Debug, Default)]
pub(crate) struct Index {
    // A B-tree, not a hash map: it grows a node at a time, where a hash
    // map doubles (at a million jobs that alone is 150 bytes a job).
    pub(crate) jobs: BTreeMap<JobKey, JobEntry>,
    newest_first: BTreeSet<(Timestamp, JobKey)>,
    active_by_set: HashMap<LabelSetKey, HashSet<JobKey>>,
    pub(crate) owners: Interner,
    pub(crate) accounts: Interner,
    pub(crate) deliveries: HashMap<[u8; 16], (Timestamp, Loc, u32)>,
    pub(crate) delivery_purges: u64,
    pub(crate) leases: HashMap<String, LeaseEntry>,
    /// Stored access keys, by owner and account.
    pub(crate) vault: BTreeMap<(sprinters_core::domain::OwnerId, AccountId), VaultEntry>,
    /// Owners' records, by GitHub account id.
    /// Kept decoded too: they are few, and the engine lists them every tick.
    pub(crate) tenants: BTreeMap<
        sprinters_core::domain::OwnerId,
        (VaultEntry, sprinters_core::tenant::TenantRecord),
    >,
    /// The latest version of active jobs, decoded: reading it again costs a
    /// clone instead of a read, an AES-GCM open and a decode. Only jobs
    /// written since open, at most [`HOT_JOBS`].
    hot: HashMap<JobKey, (u64, JobRecord)>,
    /// The jobs holding a launch slot, counted by a claim within caps.
    pub(crate) slots: sprinters_core::ports::SlotBook,
}

/// The most active jobs whose records are kept decoded.
pub(crate) const HOT_JOBS: usize = 65_536;

impl Index {
    /// Records `summary` of a job written at `loc`.
    pub(crate) fn put_job(&mut self, summary: &Summary, loc: Loc, version: u64, key_id: u32) {
        let owner = self.owners.intern(&summary.owner);
        let account = summary
            .account
            .as_ref()
            .map_or(0, |a| self.accounts.intern(a.as_str()));
        self.remove_job(summary.key);
        let entry = JobEntry {
            loc,
            version,
            key_id,
            queued_at: summary.queued_at,
            owner,
            account,
            label_set: summary.label_set,
            state: summary.state,
            active: summary.active,
        };
        self.newest_first.insert((entry.queued_at, summary.key));
        if entry.active {
            self.active_by_set
                .entry(entry.label_set)
                .or_default()
                .insert(summary.key);
        }
        self.jobs.insert(summary.key, entry);
    }

    /// Keeps `record` (at `version`, just written) decoded while its job
    /// is active; forgets it once finished.
    pub(crate) fn keep_hot(&mut self, version: u64, record: &JobRecord) {
        if record.is_active() && (self.hot.len() < HOT_JOBS || self.hot.contains_key(&record.key)) {
            self.hot.insert(record.key, (version, record.clone()));
        } else {
            self.hot.remove(&record.key);
        }
    }

    /// The decoded record of `key` at `version`, if kept.
    pub(crate) fn hot(&self, key: JobKey, version: u64) -> Option<JobRecord> {
        match self.hot.get(&key) {
            Some((v, record)) if *v == version => Some(record.clone()),
            _ => None,
        }
    }

    /// Forgets a job.
    pub(crate) fn remove_job(&mut self, key: JobKey) -> Option<JobEntry> {
        self.hot.remove(&key);
        self.slots.remove(key);
        let old = self.jobs.remove(&key)?;
        self.newest_first.remove(&(old.queued_at, key));
        if let Some(set) = self.active_by_set.get_mut(&old.label_set) {
            set.remove(&key);
            if set.is_empty() {
                self.active_by_set.remove(&old.label_set);
            }
        }
        Some(old)
    }

    /// The jobs a query selects, newest first, at most `limit + 1` (the
    /// extra one tells whether there is a next page).
    pub(crate) fn select(&self, q: &ListJobs) -> Vec<(JobKey, JobEntry)> {
        // A filter on an owner or account never seen selects nothing.
        let owner = match &q.owner_id {
            Some(o) => match self.owners.get(&o.to_string()) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        let account = match &q.account {
            Some(a) => match self.accounts.get(a.as_str()) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        let matches = |key: &JobKey, e: &JobEntry| {
            owner.is_none_or(|o| o == e.owner)
                && account.is_none_or(|a| a == e.account)
                && q.label_set.is_none_or(|l| l == e.label_set)
                && q.states.as_ref().is_none_or(|s| s.contains(&e.state))
                && (!q.active_only || e.active)
                && q.queued_from.is_none_or(|t| e.queued_at >= t)
                && q.queued_until.is_none_or(|t| e.queued_at < t)
                && q.cursor
                    .is_none_or(|c: JobCursor| (e.queued_at, *key) < (c.queued_at, c.key))
        };
        let want = q.limit.saturating_add(1);
        match (q.active_only, q.label_set) {
            (true, Some(set)) => {
                let mut v: Vec<(JobKey, JobEntry)> = self
                    .active_by_set
                    .get(&set)
                    .into_iter()
                    .flatten()
                    .filter_map(|k| self.jobs.get(k).map(|e| (*k, *e)))
                    .filter(|(k, e)| matches(k, e))
                    .collect();
                v.sort_by_key(|(k, e)| std::cmp::Reverse((e.queued_at, *k)));
                v.truncate(want);
                v
            }
            _ => {
                let upper = q.cursor.map(|c| (c.queued_at, c.key));
                let range = match upper {
                    Some(u) => self.newest_first.range(..u),
                    None => self.newest_first.range(..),
                };
                range
                    .rev()
                    .filter_map(|(_, k)| self.jobs.get(k).map(|e| (*k, *e)))
                    .filter(|(k, e)| matches(k, e))
                    .take(want)
                    .collect()
            }
        }
    }

    /// Bytes of the frames still live: what compaction would keep.
    pub(crate) fn live_bytes(&self) -> u64 {
        let jobs: u64 = self.jobs.values().map(|e| u64::from(e.loc.len)).sum();
        let deliveries: u64 = self
            .deliveries
            .values()
            .map(|(_, l, _)| u64::from(l.len))
            .sum();
        let leases: u64 = self.leases.values().map(|e| u64::from(e.loc.len)).sum();
        let vault: u64 = self.vault.values().map(|e| u64::from(e.loc.len)).sum();
        let tenants: u64 = self
            .tenants
            .values()
            .map(|(e, _)| u64::from(e.loc.len))
            .sum();
        jobs + deliveries + leases + vault + tenants
    }

    /// Finished jobs queued before `before`: what retention removes.
    pub(crate) fn expired(&self, before: Timestamp) -> Vec<(JobKey, JobEntry)> {
        self.newest_first
            .range(
                ..(
                    before,
                    JobKey::new(
                        sprinters_core::domain::JobId::new(0),
                        sprinters_core::domain::RunAttempt::FIRST,
                    ),
                ),
            )
            .filter_map(|(_, k)| self.jobs.get(k).map(|e| (*k, *e)))
            .filter(|(_, e)| !e.active)
            .collect()
    }
}
