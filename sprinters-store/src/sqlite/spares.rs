//! How many jobs of each label set have a spare runner up, kept in memory
//! beside the `spares` column. Nearly every new job's label set has none,
//! and its look for one ([`ListJobs::spares_only`]) then answers at once,
//! without a read on the blocking pool beside its first write.
//!
//! Only this process writes the file (the directory is locked), so the
//! counts can be exact. Where they are not, they err high: a count is
//! raised inside the write that adds a spare (before it commits, undone if
//! it rolls back) and lowered only after the write that removes one has
//! committed. A count too high costs one read; none is ever too low while
//! a committed row has a spare.
//!
//! [`ListJobs::spares_only`]: sprinters_core::ports::ListJobs::spares_only

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::Connection;
use sprinters_core::Result;

use super::sql_error;

/// The keyed hash of a label set, as in the `label_h` column.
pub(crate) type LabelHash = [u8; 16];

/// Jobs with a spare runner up, per label set.
#[derive(Debug, Default)]
pub(crate) struct SpareCounts(Mutex<HashMap<LabelHash, u64>>);

impl SpareCounts {
    /// The counts as the database holds them (read through the partial
    /// index of spares: as many rows as there are spares).
    pub(crate) fn load(conn: &Connection) -> Result<Self> {
        let counts = Self::default();
        counts.reload(conn)?;
        Ok(counts)
    }

    /// Replaces the counts with the database's (after rows went without a
    /// write of their own, as an account's shredded jobs do).
    pub(crate) fn reload(&self, conn: &Connection) -> Result<()> {
        let fresh: HashMap<LabelHash, u64> = conn
            .prepare(
                "SELECT label_h, count(*) FROM jobs INDEXED BY jobs_spares_by_labels \
                 WHERE spares > 0 AND active GROUP BY label_h",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u64>(1)?)))?
                    .map(|row| {
                        row.map(|(h, n)| {
                            let mut key = [0u8; 16];
                            if h.len() == key.len() {
                                key.copy_from_slice(&h);
                            }
                            (key, n)
                        })
                    })
                    .collect()
            })
            .map_err(|e| sql_error("counting spare runners", e))?;
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Whether no job of label set `h` has a spare runner up.
    pub(crate) fn none_for(&self, h: &LabelHash) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(h)
            .is_none_or(|n| *n == 0)
    }

    pub(crate) fn raise(&self, h: LabelHash) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(h)
            .or_default() += 1;
    }

    pub(crate) fn lower(&self, h: &LabelHash) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(h) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(h);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use sprinters_core::domain::AccountId;
    use sprinters_core::job::{JobRecord, JobState};
    use sprinters_core::ports::{JobStore, ListJobs, PutJob};
    use sprinters_core::testing::{live_launch, sample_record};
    use sprinters_core::{Error, Result};

    use super::super::SqliteJobStore;
    use crate::keys::MasterKey;

    /// A finished job of `account` whose runner is still up, idle.
    fn with_spare(id: u64, account: &str) -> JobRecord {
        let mut r = sample_record(id, "octo/spare", id);
        r.account = AccountId::parse(account).ok();
        r.state = JobState::Completed;
        let launch = live_launch(&r);
        r.launches.push(launch);
        r
    }

    async fn spares_of(store: &SqliteJobStore, record: &JobRecord) -> usize {
        let mut query = ListJobs::active(10);
        query.label_set = Some(record.label_set);
        query.spares_only = true;
        store.list_jobs(query).await.unwrap().jobs.len()
    }

    /// The counts follow every write that adds or removes a spare, a
    /// reopen and a shred; a write that fails leaves them as they were.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_counts_of_spares_follow_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        let spare = with_spare(1, "111111111111");
        let version = store.put_job(PutJob::create(spare.clone())).await.unwrap();
        assert_eq!(store.inner.spares.total(), 1);
        assert_eq!(spares_of(&store, &spare).await, 1);

        // Counted from the file on open.
        drop(store);
        let store = SqliteJobStore::open_with_key(dir.path(), &master).unwrap();
        assert_eq!(store.inner.spares.total(), 1, "loaded on open");
        assert_eq!(spares_of(&store, &spare).await, 1);

        // A write that fails after counting is undone with its count.
        let h = store.inner.keys.opaque(
            "labels",
            &crate::rows::label_set_bytes(&spare.label_set).unwrap(),
        );
        let failed = store
            .write(move |w| -> Result<()> {
                w.spare_raised(h);
                w.spare_lowered(h);
                Err(Error::integrity("failing after counting"))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            store.inner.spares.total(),
            1,
            "a failed write counts nothing"
        );

        // A job took the runner: no spare left.
        let mut taken = spare.clone();
        taken.launches[0].taken_by = Some(sample_record(2, "octo/spare", 2).key);
        store
            .put_job(PutJob::replace(taken, version))
            .await
            .unwrap();
        assert_eq!(store.inner.spares.total(), 0);
        assert_eq!(spares_of(&store, &spare).await, 0);

        // Rows shredded with their account are counted again.
        let other = with_spare(3, "222222222222");
        store.put_job(PutJob::create(other.clone())).await.unwrap();
        assert_eq!(store.inner.spares.total(), 1);
        store
            .delete_account(other.account.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(store.inner.spares.total(), 0, "recounted after a shred");
    }
}
