//! What reaches the logs: one span per job with its ids, and never a
//! secret. Its own test binary: tracing caches callsite interest per
//! process, so tests running beside it without a subscriber would hide
//! lines from this one.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use sprinters_core::domain::AccountId;
use sprinters_core::events::Conclusion;
use sprinters_core::testing::TestBed;

/// Collects everything logged while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_line_about_a_job_carries_its_ids_and_no_secret_is_ever_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bed = TestBed::new();
    let job = bed.job(31337);
    bed.send(job.queued()).await;
    bed.settle().await;
    let runner = TestBed::runner(&job, 1);
    bed.send(job.in_progress(&runner)).await;
    bed.send(job.completed(Conclusion::Success, Some(&runner)))
        .await;
    bed.settle().await;
    bed.credentials
        .deny(AccountId::parse("123456789012").unwrap());
    bed.send(bed.job(2).queued()).await;
    bed.settle().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in ["SECRET-JIT-CONFIG", "memory-secret", "memory-session-token"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    let debug = bed.launcher.last_request_debug().unwrap();
    for secret in ["SECRET-JIT-CONFIG", "memory-secret", "memory-session-token"] {
        assert!(
            !debug.contains(secret),
            "{secret} leaked into Debug: {debug}"
        );
    }
    assert!(debug.contains("[REDACTED]"));
    let record = format!("{:?}", bed.record(&job).await);
    assert!(
        !record.contains("SECRET"),
        "no secret in the record: {record}"
    );

    for event in [
        "job queued",
        "launching",
        "launched",
        "job started",
        "job finished",
        "instance ended",
    ] {
        let line = logs
            .lines()
            .find(|l| l.contains(event) && l.contains("31337"))
            .unwrap_or_else(|| panic!("no `{event}` line for the job:\n{logs}"));
        assert!(
            line.contains("job_id=31337")
                && line.contains("run_attempt=1")
                && line.contains("repository=octo-org/app"),
            "`{event}` lacks the job's ids: {line}"
        );
    }
}
