//! `sprinters-demo` as a newcomer runs it: against the AWS emulator that
//! `scripts/test` starts, every job served, every instance gone, the label
//! error recorded; and without an emulator, a line that says what to run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use sprinters_core::ports::{JobStore, ListJobs};
use sprinters_store::{MasterKey, SqliteJobStore};

fn demo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sprinters-demo"))
        .args(args)
        .output()
        .expect("the demo binary runs")
}

fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts the AWS emulator")
    })
}

#[test]
fn the_demo_serves_every_job_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = demo(&[
        "--jobs",
        "15",
        "--aws-endpoint",
        &endpoint(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // 11 jobs run, 3 are cancelled before pickup (whose launch may or may
    // not have started by then), 1 is rejected.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("15 jobs: "))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    let count = |what: &str| -> usize {
        let before = summary.split(&format!(" {what}")).next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!((11..=14).contains(&count("launched")), "{summary}");
    assert_eq!(count("terminated"), count("launched"), "{summary}");
    assert_eq!(count("rejected"), 1, "{summary}");
    assert_eq!(count("cancelled before pickup"), 3, "{summary}");
    assert_eq!(count("orphans left"), 0, "{summary}");
    assert!(stdout.contains("webhook-to-launch p50 "), "{stdout}");
    assert!(stdout.contains("(PASSED)"), "{stdout}");
    assert!(
        stdout.contains("↳ invalid runs-on label `sprinters:aws:ubuntu-99.04`"),
        "the label error is shown with its message: {stdout}"
    );
    assert_eq!(stdout.matches("cleaned (success)").count(), 9, "{stdout}");
    assert_eq!(stdout.matches("cleaned (failure)").count(), 2, "{stdout}");
    assert!(stdout.contains("us-east-1b"), "the pinned zone: {stdout}");
    assert!(
        stderr.contains("jobs through their webhooks"),
        "progress: {stderr}"
    );

    // The history stays in the encrypted store, where `sprinters jobs
    // list --data-dir` reads it.
    assert!(
        stdout.contains(&format!(
            "sprinters jobs list --data-dir {}",
            data.display()
        )),
        "{stdout}"
    );
    let key = MasterKey::from_file(&data.join("master.key")).unwrap();
    let store = SqliteJobStore::open_with_key(&data, &key).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let page = runtime
        .block_on(store.list_jobs(ListJobs::newest(100)))
        .unwrap();
    let demo_jobs = page
        .jobs
        .iter()
        .filter(|v| v.value.repository.to_string() == "octo-org/demo")
        .count();
    assert_eq!(demo_jobs, 15);
}

#[test]
fn without_an_emulator_the_demo_says_what_to_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_sprinters-demo"))
        .env_remove("SPRINTERS_AWS_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("run scripts/demo"), "{stderr}");
    assert!(stderr.contains("moto_server -p 5000"), "{stderr}");

    let unreachable = demo(&["--aws-endpoint", "http://127.0.0.1:9"]);
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.starts_with("error: no AWS API emulator answers at http://127.0.0.1:9"),
        "{stderr}"
    );
}
