//! The console in a real browser: headless Chromium (installed by
//! `scripts/test`) loads the page against a seeded store and the test reads
//! what a person would see, including that a token for one owner never
//! shows another owner's jobs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use sprinters_core::domain::{
    AvailabilityZone, InstanceId, InstanceType, Owner, Region, RunnerName,
};
use sprinters_core::events::Conclusion;
use sprinters_core::job::{JobRecord, JobState, Launch};
use sprinters_core::ports::{JobStore, PutJob};
use sprinters_core::testing::{sample_owner_id, sample_record};
use sprinters_core::time::Timestamp;
use sprinters_server::config::ApiToken;
use sprinters_server::server::{Metrics, api_router};
use sprinters_store::{MasterKey, SqliteJobStore};

const CHROMIUM: &str = "/usr/bin/chromium";
const OCTO: &str = "octo-org-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn now_ms() -> u64 {
    Timestamp::from_system_time(SystemTime::now()).as_millis()
}

fn launched(
    mut record: JobRecord,
    instance: &str,
    spot: bool,
    minutes_ago: u64,
    seconds: u64,
) -> JobRecord {
    let started = now_ms() - minutes_ago * 60_000;
    record.launches.push(Launch {
        number: 1,
        runner_name: RunnerName::for_launch(record.key, 1),
        runner_id: Some(11),
        instance_id: Some(InstanceId::parse(instance).unwrap()),
        region: Region::us_east_1(),
        availability_zone: Some(AvailabilityZone::parse("us-east-1b").unwrap()),
        instance_type: InstanceType::parse("m7i.large").unwrap(),
        spot,
        spot_fallback: false,
        hourly_price_micros: Some(100_800),
        launched_at: Some(Timestamp::from_millis(started - 20_000)),
        taken_by: Some(record.key),
        ended: None,
    });
    record.ran_on = Some(RunnerName::for_launch(record.key, 1));
    record.started_at = Some(Timestamp::from_millis(started));
    record.completed_at = Some(Timestamp::from_millis(started + seconds * 1000));
    record
}

async fn seeded_store(dir: &Path) -> Arc<SqliteJobStore> {
    let key = MasterKey::create_file(&dir.join("master.key")).unwrap();
    let store = SqliteJobStore::open_with_key(dir, &key).unwrap();
    let base = now_ms() - 3_600_000;
    let mut ok = launched(
        sample_record(101, "octo-org/hello", base),
        "i-0123456789abcdef0",
        true,
        42,
        125,
    );
    ok.name = Some("build and test".into());
    ok.state = JobState::Cleaned;
    ok.conclusion = Some(Conclusion::Success);
    ok.cost_micros = Some(12_300);
    let mut failed = launched(
        sample_record(102, "octo-org/hello", base + 1),
        "i-0fedcba9876543210",
        false,
        30,
        61,
    );
    failed.name = Some("deploy".into());
    failed.state = JobState::Cleaned;
    failed.conclusion = Some(Conclusion::Failure);
    let mut rejected = sample_record(103, "octo-org/hello", base + 2);
    rejected.name = Some("typo job".into());
    rejected.state = JobState::Rejected;
    rejected.message = Some("invalid runs-on label `sprinters:aws:ubuntu-99.04`: image".into());
    let mut theirs = launched(
        sample_record(201, "acme-corp/secret-project", base + 3),
        "i-0aaaaaaaaaaaaaaa1",
        false,
        10,
        30,
    );
    theirs.name = Some("acme confidential build".into());
    theirs.state = JobState::Cleaned;
    theirs.conclusion = Some(Conclusion::Success);
    // Someone who took the login octo-org after a rename: another GitHub
    // account under the same login. The octo-org token sees none of it.
    let mut usurper = sample_record(301, "octo-org/hello", base + 4);
    usurper.owner_id = sprinters_core::domain::OwnerId::new(sample_owner_id("octo-org").get() + 1);
    usurper.name = Some("usurper build".into());
    for record in [ok, failed, rejected, theirs, usurper] {
        store.put_job(PutJob::create(record)).await.unwrap();
    }
    Arc::new(store)
}

async fn serve(store: Arc<SqliteJobStore>) -> std::net::SocketAddr {
    let tokens = vec![
        ApiToken {
            token: SecretString::from(OCTO.to_owned()),
            owners: Some(vec![Owner::parse("octo-org").unwrap()]),
        },
        ApiToken {
            token: SecretString::from(ADMIN.to_owned()),
            owners: None,
        },
    ];
    // Both owners bound to the ids their records carry.
    let tenants = sprinters_core::engine::Tenants::new();
    for (login, account) in [("octo-org", "123456789012"), ("acme-corp", "210987654321")] {
        tenants.connect(
            sample_owner_id(login),
            sprinters_core::domain::InstallationId::new(7),
            sprinters_core::domain::Owner::parse(login).unwrap(),
            sprinters_core::domain::AccountId::parse(account).unwrap(),
        );
    }
    let router = api_router(
        sprinters_server::server::PlaneStore::Embedded(store),
        tokens,
        Arc::new(Metrics::default()),
        tenants,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The DOM after the page ran, as Chromium renders it, without the page's
/// own script and style (what a person sees is the markup they produced).
async fn browse(url: String) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test installs Debian's chromium"
    );
    let profile = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("chromium answers within two minutes")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    visible(&String::from_utf8(output.stdout).unwrap())
}

fn visible(dom: &str) -> String {
    let mut out = dom.to_owned();
    for (open, close) in [("<script>", "</script>"), ("<style>", "</style>")] {
        if let Some(start) = out.find(open)
            && let Some(len) = out[start..].find(close)
        {
            out.replace_range(start..start + len + close.len(), "");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_token_its_owners_jobs_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(seeded_store(dir.path()).await).await;

    let dom = browse(format!("http://{addr}/#token={OCTO}")).await;
    for seen in [
        "build and test",
        "octo-org/hello",
        "i-0123456789abcdef0",
        "m7i.large",
        "us-east-1b",
        "42 min ago",
        "2m 5s",
        "$0.0123",
        "deploy",
        "typo job",
        "invalid runs-on label",
        "AWS 123456789012",
        "badge connected",
    ] {
        assert!(dom.contains(seen), "a person sees {seen:?}:\n{dom}");
    }
    assert!(
        !dom.contains("210987654321"),
        "another owner's account is shown:\n{dom}"
    );
    assert!(
        dom.contains("badge success")
            && dom.contains("badge failure")
            && dom.contains("badge rejected")
    );
    assert_eq!(dom.matches("badge spot").count(), 1, "one spot job");
    for hidden in ["acme", "secret-project", "confidential", "usurper build"] {
        assert!(
            !dom.contains(hidden),
            "another owner's {hidden:?} is shown:\n{dom}"
        );
    }
    assert!(
        !dom.contains(OCTO),
        "the token is not left in the page or the URL"
    );

    let admin = browse(format!("http://{addr}/?owner=acme-corp#token={ADMIN}")).await;
    assert!(admin.contains("acme confidential build"), "{admin}");
    assert!(!admin.contains("build and test"), "filtered to acme-corp");

    let stranger = browse(format!("http://{addr}/?owner=acme-corp#token={OCTO}")).await;
    assert!(!stranger.contains("confidential"), "{stranger}");
    assert!(stranger.contains("may not see acme-corp"), "{stranger}");

    let anonymous = browse(format!("http://{addr}/")).await;
    assert!(anonymous.contains("Enter an API token"), "{anonymous}");
    let bad = browse(format!("http://{addr}/#token=not-a-token-at-all")).await;
    assert!(bad.contains("That token is not valid"), "{bad}");
}

#[tokio::test]
async fn the_page_loads_nothing_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(seeded_store(dir.path()).await).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, page) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'sha256-"),
        "{head}"
    );
    assert!(head.contains("connect-src 'self'"), "{head}");
    for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}
