//! Compaction: rewrites the live records into fresh segments and drops the
//! rest (old versions, tombstones, purged history, shredded accounts),
//! re-sealing records whose data key was rotated.

use std::collections::HashSet;

use sprinters_core::Result;

use crate::frame;
use crate::log::{Loc, SEGMENT_BYTES, segment_name};
use crate::store::{FileJobStore, lock};

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Records kept.
    pub records: usize,
    /// Of those, re-sealed under their account's current data key.
    pub resealed: usize,
    /// Segments written.
    pub segments: usize,
}

impl FileJobStore {
    /// Compacts the store. Writers wait while it runs; readers of moved
    /// records look them up again. Crash-safe: the new segments become
    /// live in one atomic manifest switch.
    pub fn compact(&self) -> Result<CompactionReport> {
        let mut index = lock(&self.inner.index);
        let mut ring = lock(&self.inner.keyring);
        let log = &self.inner.log;
        // Everything appended is in its segment before the copy starts.
        log.flush_all()?;
        let mut report = CompactionReport::default();
        let mut used_keys = HashSet::new();
        let mut segments = Vec::new();
        let mut segment = log.next_segment();
        let mut buf: Vec<u8> = Vec::new();

        // Copies one frame into the new segments, re-sealing it if its key
        // is retired; returns its new place and key.
        let mut copy = |loc: Loc,
                        buf: &mut Vec<u8>,
                        segment: &mut u32,
                        segments: &mut Vec<u32>|
         -> Result<(Loc, u32)> {
            let bytes = log.read(loc)?;
            let f = frame::decode_one(&bytes, &segment_name(loc.segment), loc.offset)?;
            let (frame_bytes, key_id) = if ring.is_active(f.key_id) {
                (bytes.clone(), f.key_id)
            } else {
                let plaintext =
                    ring.open(f.key_id, f.nonce, f.aad, f.ciphertext)
                        .map_err(|_| {
                            sprinters_core::Error::integrity(format!(
                                "segment {} offset {}: record fails authentication",
                                segment_name(loc.segment),
                                loc.offset
                            ))
                        })?;
                let plaintext = zeroize::Zeroizing::new(plaintext);
                let scope = ring.scope_of_key(f.key_id).unwrap_or_default().to_owned();
                report.resealed += 1;
                ring.seal_frame(f.kind, &scope, f.record_id, f.version, &plaintext)?
            };
            if !buf.is_empty() && buf.len() as u64 + frame_bytes.len() as u64 > SEGMENT_BYTES {
                log.write_segment(*segment, buf)?;
                segments.push(*segment);
                *segment += 1;
                buf.clear();
            }
            let new = Loc {
                segment: *segment,
                offset: buf.len() as u64,
                len: frame_bytes.len() as u32,
            };
            buf.extend_from_slice(&frame_bytes);
            report.records += 1;
            Ok((new, key_id))
        };

        let jobs: Vec<_> = index.jobs.iter().map(|(k, e)| (*k, *e)).collect();
        let mut moved_jobs = Vec::with_capacity(jobs.len());
        for (key, entry) in jobs {
            let (loc, key_id) = copy(entry.loc, &mut buf, &mut segment, &mut segments)?;
            used_keys.insert(key_id);
            moved_jobs.push((key, loc, key_id));
        }
        let deliveries: Vec<_> = index.deliveries.iter().map(|(id, v)| (*id, *v)).collect();
        let mut moved_deliveries = Vec::with_capacity(deliveries.len());
        for (id, (at, loc, _)) in deliveries {
            let (loc, key_id) = copy(loc, &mut buf, &mut segment, &mut segments)?;
            used_keys.insert(key_id);
            moved_deliveries.push((id, at, loc, key_id));
        }
        let leases: Vec<_> = index
            .leases
            .iter()
            .map(|(n, e)| (n.clone(), e.loc))
            .collect();
        let mut moved_leases = Vec::new();
        for (name, loc) in leases {
            let (loc, key_id) = copy(loc, &mut buf, &mut segment, &mut segments)?;
            used_keys.insert(key_id);
            moved_leases.push((name, loc));
        }
        let vault: Vec<_> = index.vault.iter().map(|(a, e)| (a.clone(), *e)).collect();
        let mut moved_vault = Vec::new();
        for (account, entry) in vault {
            let (loc, key_id) = copy(entry.loc, &mut buf, &mut segment, &mut segments)?;
            used_keys.insert(key_id);
            moved_vault.push((account, loc, key_id));
        }
        let tenants: Vec<_> = index.tenants.iter().map(|(o, (e, _))| (*o, *e)).collect();
        let mut moved_tenants = Vec::new();
        for (owner_id, entry) in tenants {
            let (loc, key_id) = copy(entry.loc, &mut buf, &mut segment, &mut segments)?;
            used_keys.insert(key_id);
            moved_tenants.push((owner_id, loc, key_id));
        }
        log.write_segment(segment, &buf)?;
        segments.push(segment);
        log.replace_all(segments.clone())?;

        for (key, loc, key_id) in moved_jobs {
            if let Some(e) = index.jobs.get_mut(&key) {
                e.loc = loc;
                e.key_id = key_id;
            }
        }
        for (id, at, loc, key_id) in moved_deliveries {
            index.deliveries.insert(id, (at, loc, key_id));
        }
        for (name, loc) in moved_leases {
            if let Some(e) = index.leases.get_mut(&name) {
                e.loc = loc;
            }
        }
        for (account, loc, key_id) in moved_vault {
            if let Some(e) = index.vault.get_mut(&account) {
                e.loc = loc;
                e.key_id = key_id;
            }
        }
        for (owner_id, loc, key_id) in moved_tenants {
            if let Some((e, _)) = index.tenants.get_mut(&owner_id) {
                e.loc = loc;
                e.key_id = key_id;
            }
        }
        // Retired keys no record uses any more, and destroyed ones, go.
        ring.forget_unused(&used_keys)?;
        report.segments = segments.len();
        tracing::info!(?report, "store compacted");
        Ok(report)
    }
}
