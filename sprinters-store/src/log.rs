//! The append-only log: numbered segment files listed in a manifest, and
//! group commit, so that many concurrent writers share one `fdatasync`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sprinters_core::{Error, Result};
use tokio::sync::watch;

use crate::fsio;
use crate::latency::{SyncLatency, SyncTimer};

/// Segments roll over at this size.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
const MANIFEST: &str = "manifest.json";

/// Where a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    segments: Vec<u32>,
}

#[derive(Debug)]
struct Files {
    segments: BTreeMap<u32, Arc<File>>,
    active: u32,
    /// Bytes of the active segment in its file.
    file_len: u64,
    /// Frames being written by the syncer: (offset, bytes).
    in_flight: Option<(u64, Arc<Vec<u8>>)>,
    /// Frames appended after those, not yet handed to the file.
    pending: Vec<u8>,
    /// How many frames `pending` holds.
    pending_frames: usize,
    /// Bytes appended since open: the sequence group commit waits on.
    written: u64,
}

impl Files {
    /// Where the next frame goes in the active segment.
    fn end(&self) -> u64 {
        self.file_len
            + self.in_flight.as_ref().map_or(0, |(_, b)| b.len() as u64)
            + self.pending.len() as u64
    }
}

/// The segments of one store directory.
#[derive(Debug)]
pub(crate) struct Log {
    dir: PathBuf,
    files: Mutex<Files>,
    synced: watch::Sender<u64>,
    syncing: AtomicBool,
    poisoned: AtomicBool,
    syncs: AtomicU64,
    sync_timer: SyncTimer,
    /// Frames in the last batch: the writers it woke will likely write again.
    last_batch: std::sync::atomic::AtomicUsize,
}

/// A segment's name in messages and on disk.
pub(crate) fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

fn io(what: String, e: std::io::Error) -> Error {
    Error::unavailable(format!("{what}: {e}")).with_source(e)
}

impl Log {
    /// The segments listed in the manifest, in order.
    /// Files not in the manifest are left-overs of an interrupted
    /// compaction and are removed.
    pub(crate) fn open(dir: &Path) -> Result<(Log, Vec<u32>)> {
        let dir = dir.join("segments");
        std::fs::create_dir_all(&dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        let manifest_path = dir.join(MANIFEST);
        let mut manifest: Manifest = match std::fs::read(&manifest_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::integrity(format!("{} is damaged: {e}", manifest_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(io(format!("reading {}", manifest_path.display()), e)),
        };
        for entry in
            std::fs::read_dir(&dir).map_err(|e| io(format!("listing {}", dir.display()), e))?
        {
            let entry = entry.map_err(|e| io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let listed = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| manifest.segments.contains(&n));
            if name != MANIFEST && !listed {
                tracing::warn!(file = %name, "removing a segment left over by an interrupted compaction");
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if manifest.segments.is_empty() {
            manifest.segments.push(1);
            create_segment(&dir, 1)?;
            write_manifest(&dir, &manifest.segments)?;
        }
        let segments = open_segments(&dir, &manifest.segments)?;
        let active = *manifest.segments.last().unwrap_or(&1);
        let active_len = segments
            .get(&active)
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        let log = Log {
            dir,
            files: Mutex::new(Files {
                segments,
                active,
                file_len: active_len,
                in_flight: None,
                pending: Vec::new(),
                pending_frames: 0,
                written: 0,
            }),
            synced: watch::channel(0).0,
            syncing: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            sync_timer: SyncTimer::default(),
            last_batch: std::sync::atomic::AtomicUsize::new(0),
        };
        Ok((log, manifest.segments))
    }

    /// The whole of segment `n`, for the scan on open (one segment in
    /// memory at a time).
    pub(crate) fn read_segment(&self, n: u32) -> Result<Vec<u8>> {
        let path = self.dir.join(format!("{}.seg", segment_name(n)));
        std::fs::read(&path).map_err(|e| io(format!("reading {}", path.display()), e))
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::unavailable(
                "the store stopped after a failed write or sync; reopen it to recover",
            ));
        }
        Ok(())
    }

    /// Cuts the active segment back to `len` bytes (a torn tail found on open).
    pub(crate) fn truncate_active(&self, len: u64) -> Result<()> {
        let mut files = self.files();
        let active = files.active;
        if let Some(file) = files.segments.get(&active) {
            file.set_len(len)
                .and_then(|_| file.sync_all())
                .map_err(|e| io(format!("truncating segment {}", segment_name(active)), e))?;
        }
        files.file_len = len;
        Ok(())
    }

    /// Appends a frame (in memory: the syncer writes it). Returns where it
    /// is and the sequence to pass to [`Log::durable`].
    pub(crate) fn append(&self, frame: &[u8]) -> Result<(Loc, u64)> {
        self.check_poisoned()?;
        let mut files = self.files();
        // Segments roll when nothing is in flight, so frames always reach a
        // segment in order (the limit is soft by one batch).
        if files.in_flight.is_none()
            && files.end() > 0
            && files.end() + frame.len() as u64 > SEGMENT_BYTES
        {
            self.roll(&mut files)?;
        }
        let loc = Loc {
            segment: files.active,
            offset: files.end(),
            len: frame.len() as u32,
        };
        files.pending.extend_from_slice(frame);
        files.pending_frames += 1;
        files.written += frame.len() as u64;
        Ok((loc, files.written))
    }

    /// Writes what is pending to the active segment, synchronously.
    fn flush_pending(&self, files: &mut Files) -> Result<()> {
        if files.pending.is_empty() {
            return Ok(());
        }
        let file = files
            .segments
            .get(&files.active)
            .cloned()
            .ok_or_else(|| Error::integrity("the active segment is missing"))?;
        if let Err(e) = file.write_all_at(&files.pending, files.file_len) {
            self.poisoned.store(true, Ordering::Release);
            return Err(io(
                format!("writing segment {}", segment_name(files.active)),
                e,
            ));
        }
        files.file_len += files.pending.len() as u64;
        files.pending.clear();
        files.pending_frames = 0;
        Ok(())
    }

    fn roll(&self, files: &mut Files) -> Result<()> {
        self.flush_pending(files)?;
        let old = files.active;
        if let Some(file) = files.segments.get(&old) {
            file.sync_data()
                .map_err(|e| io(format!("syncing segment {}", segment_name(old)), e))?;
        }
        let next = old + 1;
        let file = create_segment(&self.dir, next)?;
        let mut listed: Vec<u32> = files.segments.keys().copied().collect();
        listed.push(next);
        write_manifest(&self.dir, &listed)?;
        files.segments.insert(next, Arc::new(file));
        files.active = next;
        files.file_len = 0;
        Ok(())
    }

    /// Writes and syncs everything appended, waiting out a sync in flight:
    /// for compaction, which holds every writer off meanwhile.
    pub(crate) fn flush_all(&self) -> Result<()> {
        loop {
            let mut files = self.files();
            if files.in_flight.is_none() {
                self.flush_pending(&mut files)?;
                let active = files.active;
                if let Some(file) = files.segments.get(&active) {
                    file.sync_data()
                        .map_err(|e| io(format!("syncing segment {}", segment_name(active)), e))?;
                }
                let written = files.written;
                drop(files);
                self.synced.send_modify(|s| *s = (*s).max(written));
                return Ok(());
            }
            drop(files);
            std::thread::yield_now();
        }
    }

    /// Waits until everything up to `seq` is on stable storage. Concurrent
    /// callers share one `fdatasync` (group commit): whoever finds no sync
    /// running starts one covering everything written so far; the others
    /// wait for it.
    pub(crate) async fn durable(&self, seq: u64) -> Result<()> {
        let mut synced = self.synced.subscribe();
        loop {
            self.check_poisoned()?;
            if *synced.borrow_and_update() >= seq {
                return Ok(());
            }
            if !self.syncing.swap(true, Ordering::AcqRel) {
                // The writers the last sync woke are likely writing again:
                // give them a few scheduler turns (no timer) to join this
                // batch, then take it whole: one write, one fdatasync.
                let expected = self.last_batch.load(Ordering::Relaxed);
                for _ in 0..32 {
                    if self.files().pending_frames >= expected {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let batch = {
                    let mut files = self.files();
                    let file = files.segments.get(&files.active).cloned();
                    // The next batch starts with this one's capacity: regrowing
                    // from empty costs a realloc and a copy per doubling.
                    let capacity = files.pending.capacity();
                    let bytes = Arc::new(std::mem::replace(
                        &mut files.pending,
                        Vec::with_capacity(capacity),
                    ));
                    self.last_batch
                        .store(files.pending_frames, Ordering::Relaxed);
                    files.pending_frames = 0;
                    let offset = files.file_len;
                    files.in_flight = Some((offset, bytes.clone()));
                    (file, files.active, offset, bytes, files.written)
                };
                let (file, segment, offset, bytes, target) = batch;
                self.syncs.fetch_add(1, Ordering::Relaxed);
                let started = std::time::Instant::now();
                let result = match file {
                    Some(file) => {
                        let bytes = bytes.clone();
                        tokio::task::spawn_blocking(move || {
                            file.write_all_at(&bytes, offset)?;
                            file.sync_data()
                        })
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
                    }
                    None => Ok(()),
                };
                self.sync_timer.record(started.elapsed());
                {
                    let mut files = self.files();
                    if files.active == segment && files.file_len == offset {
                        files.file_len += bytes.len() as u64;
                    }
                    files.in_flight = None;
                }
                if let Err(e) = &result {
                    // After a failed write or fsync the page cache cannot be
                    // trusted (the PostgreSQL lesson): refuse everything
                    // until the store is reopened.
                    tracing::error!(error = %e, "writing or syncing a segment failed; the store stops");
                    self.poisoned.store(true, Ordering::Release);
                }
                self.syncing.store(false, Ordering::Release);
                self.synced
                    .send_modify(|s| *s = (*s).max(if result.is_ok() { target } else { *s }));
                if let Err(e) = result {
                    return Err(io("writing the active segment".into(), e));
                }
                continue;
            }
            if synced.changed().await.is_err() {
                return Err(Error::unavailable("the store closed"));
            }
        }
    }

    /// How many `fdatasync` calls group commit has made.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// How long group commit's syncs took.
    pub(crate) fn sync_latency(&self) -> SyncLatency {
        self.sync_timer.snapshot()
    }

    /// Reads the frame at `loc`, from the file or, if not written yet,
    /// from memory.
    pub(crate) fn read(&self, loc: Loc) -> Result<Vec<u8>> {
        let file = {
            let files = self.files();
            if loc.segment == files.active {
                let slice = |base: u64, bytes: &[u8]| -> Option<Vec<u8>> {
                    let start = loc.offset.checked_sub(base)? as usize;
                    bytes
                        .get(start..start + loc.len as usize)
                        .map(<[u8]>::to_vec)
                };
                if let Some((offset, bytes)) = &files.in_flight
                    && let Some(frame) = slice(*offset, bytes)
                {
                    return Ok(frame);
                }
                let pending_at = files.end() - files.pending.len() as u64;
                if let Some(frame) = slice(pending_at, &files.pending) {
                    return Ok(frame);
                }
            }
            files.segments.get(&loc.segment).cloned()
        };
        let file = file.ok_or_else(|| {
            Error::not_found(format!("segment {} is gone", segment_name(loc.segment)))
        })?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            io(
                format!(
                    "reading segment {} offset {}",
                    segment_name(loc.segment),
                    loc.offset
                ),
                e,
            )
        })?;
        Ok(buf)
    }

    /// Bytes in every segment, appended but unwritten frames included.
    pub(crate) fn total_bytes(&self) -> u64 {
        let files = self.files();
        let older: u64 = files
            .segments
            .iter()
            .filter(|(n, _)| **n != files.active)
            .filter_map(|(_, f)| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        older + files.end()
    }

    /// The number the next new segment gets.
    pub(crate) fn next_segment(&self) -> u32 {
        self.files().active + 1
    }

    /// Replaces every segment with `fresh` (already written and synced, in
    /// order): the manifest switches in one atomic step, then the old files
    /// go.
    pub(crate) fn replace_all(&self, fresh: Vec<u32>) -> Result<()> {
        let mut files = self.files();
        write_manifest(&self.dir, &fresh)?;
        let old: Vec<u32> = files.segments.keys().copied().collect();
        let segments = open_segments(&self.dir, &fresh)?;
        let active = *fresh.last().unwrap_or(&1);
        let active_len = segments
            .get(&active)
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        files.segments = segments;
        files.active = active;
        files.file_len = active_len;
        files.pending.clear();
        files.pending_frames = 0;
        for n in old.into_iter().filter(|n| !fresh.contains(n)) {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.seg", segment_name(n))));
        }
        fsio::sync_dir(&self.dir)
    }

    /// Writes a new segment file `n` with `bytes`, durably, outside the
    /// manifest (compaction adds it with [`Log::replace_all`]).
    pub(crate) fn write_segment(&self, n: u32, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(format!("{}.seg", segment_name(n)));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(format!("creating {}", path.display()), e))?;
        file.write_all(bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| io(format!("writing {}", path.display()), e))?;
        fsio::sync_dir(&self.dir)
    }
}

/// Opens the listed segments for reading and writing.
fn open_segments(dir: &Path, listed: &[u32]) -> Result<BTreeMap<u32, Arc<File>>> {
    let mut segments = BTreeMap::new();
    for n in listed {
        let path = dir.join(format!("{}.seg", segment_name(*n)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(format!("opening {}", path.display()), e))?;
        segments.insert(*n, Arc::new(file));
    }
    Ok(segments)
}

fn create_segment(dir: &Path, n: u32) -> Result<File> {
    let path = dir.join(format!("{}.seg", segment_name(n)));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io(format!("creating {}", path.display()), e))?;
    fsio::sync_dir(dir)?;
    Ok(file)
}

fn write_manifest(dir: &Path, segments: &[u32]) -> Result<()> {
    let bytes = serde_json::to_vec(&Manifest {
        segments: segments.to_vec(),
    })
    .map_err(|e| Error::integrity(format!("encoding the manifest: {e}")))?;
    fsio::replace_atomically(&dir.join(MANIFEST), &bytes)
}
