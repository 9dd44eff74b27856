//! A child process writing a burst is killed with SIGKILL, several times:
//! after each kill the store reopens and holds every write the child had
//! acknowledged. Runs as its own program (no libtest harness) because the
//! same binary is the child.

// Test helpers fail the test by panicking; the child reports on stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use sprinters_core::domain::{JobId, JobKey, RunAttempt};
use sprinters_core::ports::{JobStore, PutJob};
use sprinters_core::testing::sample_record;
use sprinters_store::{MasterKey, SqliteJobStore};

const CHILD_DIR: &str = "SPRINTERS_KILL_TEST_DIR";
const CHILD_KEY: &str = "SPRINTERS_KILL_TEST_KEY";
const CHILD_ROUND: &str = "SPRINTERS_KILL_TEST_ROUND";
const WRITERS: u64 = 16;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(&dir);
        return;
    }
    parent();
    println!("test a_sigkill_mid_burst_loses_no_acknowledged_write ... ok");
    println!("1 passed, 0 failed");
}

/// Writes until killed, printing each job id once its write is acknowledged.
fn child(dir: &str) {
    let key = MasterKey::from_base64(&std::env::var(CHILD_KEY).unwrap()).unwrap();
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteJobStore::open_with_key(std::path::Path::new(dir), &key).unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, out) = (store.clone(), out.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        let id = round * 100_000_000 + w * 1_000_000 + n + 1;
                        store
                            .put_job(PutJob::create(sample_record(id, "octo/app", n)))
                            .await
                            .unwrap();
                        let mut out = out.lock().unwrap();
                        writeln!(out, "{id}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    });
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let mut acknowledged = Vec::new();
    let mut rng = fastrand_like(0x5eed);
    for round in 1..=5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DIR, dir.path())
            .env(CHILD_KEY, &key_text)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill at a different point of the burst each round.
        let kill_after = 50 + rng() % 400;
        let mut this_round = 0;
        for line in lines.by_ref() {
            acknowledged.push(line.unwrap().parse::<u64>().unwrap());
            this_round += 1;
            if this_round >= kill_after {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever it printed before dying was acknowledged too.
        for line in lines {
            match line {
                Ok(l) if !l.is_empty() => acknowledged.push(l.parse::<u64>().unwrap()),
                _ => break,
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = SqliteJobStore::open_with_key(dir.path(), &key).unwrap_or_else(|e| {
            panic!("round {round}: the store does not reopen after SIGKILL: {e}")
        });
        let records = rt.block_on(async {
            for id in &acknowledged {
                let key = JobKey::new(JobId::new(*id), RunAttempt::FIRST);
                assert!(
                    store.get_job(key).await.unwrap().is_some(),
                    "round {round}: acknowledged write {id} is missing ({} acknowledged)",
                    acknowledged.len(),
                );
            }
            store.job_count().await.unwrap()
        });
        println!(
            "round {round}: killed after {this_round} acknowledgements; {records} records, {} acknowledged kept",
            acknowledged.len(),
        );
        drop(store);
    }
}

/// A tiny deterministic generator (xorshift), so the kill points repeat.
fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
