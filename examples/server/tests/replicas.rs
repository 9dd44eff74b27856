//! Three `sprinters serve` replicas sharing one PostgreSQL database (started
//! by `scripts/test`), the AWS emulator and the GitHub stand-in. Jobs are
//! sent round-robin, every delivery also to a different replica at the same
//! moment (as a load balancer retrying would); the replica that leads the
//! reconciler is killed with SIGKILL half-way. Afterwards: another replica
//! leads within seconds, every job was launched exactly once (the job tag
//! on the instances), nothing is left running, no job is stuck.
//!
//! `SPRINTERS_REPLICA_JOBS` sizes it (1,000 by default).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sprinters_aws::AwsClientConfig;
use sprinters_core::domain::{AccountId, JobId, JobKey, Region, RunAttempt};
use sprinters_core::job::JobState;
use sprinters_core::ports::JobStore;
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_github::testing::{
    GithubStandIn, TEST_APP_PRIVATE_KEY_PEM, TEST_APP_PUBLIC_KEY_PEM, WorkflowJobWebhook,
};
use sprinters_store::{MasterKey, PostgresJobStore, StaticKeyProvider};

#[path = "common/database.rs"]
mod database;
mod serve_process;
use database::{ca_file, fresh_database};
use serve_process::{Server, deliver, endpoint, env_number, instances, key, live_instances};

const ACCOUNT: &str = "123456789012";
const SECRET: &str = "replica-test-webhook-secret";

/// The replica id holding the reconciler's leadership, if any.
async fn leader(db: &tokio_postgres::Client) -> Option<String> {
    db.query_opt(
        "SELECT holder FROM sprinters_leases WHERE name = 'sprinters/reconciler' \
         AND expires_at > (extract(epoch from now()) * 1000)::bigint",
        &[],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    n: usize,
    addr: SocketAddr,
    controller: &str,
    api: &str,
    ami: &str,
    db: &str,
    limits: &str,
) -> std::path::PathBuf {
    let data = dir.join(format!("replica-{n}"));
    sprinters_server::data_dir::create(&data).unwrap();
    let text = format!(
        r#"
[server]
listen = "{addr}"
data_dir = "{data}"
master_key_file = "{dir}/master.key"
controller_id = "{controller}"

[store]
url = "{db}"
max_connections = 8
ca_file = "{ca}"

[github]
app_id = 778
private_key_file = "{dir}/app.pem"
webhook_secret_file = "{dir}/webhook-secret"
api_url = "{api}"

[aws]
endpoint_url = "{aws}"
[aws.images."ubuntu-24.04"]
us-east-1 = "{ami}"

[[accounts]]
github_owner = "octo-org"
aws_account_id = "{ACCOUNT}"
credentials = "vault"

[limits]
idle_grace_seconds = 2
reconcile_interval_seconds = 3
claim_ttl_seconds = 10
leader_ttl_seconds = 3
{limits}
"#,
        data = data.display(),
        dir = dir.display(),
        aws = endpoint(),
        ca = ca_file(),
    );
    let path = dir.join(format!("replica-{n}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends `body` to replica `to` and, at the same moment, to the next live
/// one; a replica that is down is skipped as a load balancer would.
/// Panics on a refusal; returns once some replica took it in.
async fn deliver_twice(addrs: &[SocketAddr], alive: &[bool], to: usize, id: &str, body: &[u8]) {
    let live: Vec<usize> = (0..addrs.len())
        .map(|i| (to + i) % addrs.len())
        .filter(|i| alive[*i])
        .collect();
    let first = addrs[live[0]];
    let second = addrs[live[live.len().min(2) - 1]];
    for _ in 0..50 {
        let (a, b) = tokio::join!(
            deliver(first, SECRET, id, body),
            deliver(second, SECRET, id, body)
        );
        let a = a.unwrap_or_else(|e| panic!("{e}"));
        let b = b.unwrap_or_else(|e| panic!("{e}"));
        if a || b {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no replica took in delivery {id}");
}

/// Sends a batch at once, as GitHub does when many jobs change together.
async fn deliver_all(addrs: &[SocketAddr], alive: &[bool], batch: Vec<(usize, String, Vec<u8>)>) {
    for chunk in batch.chunks(40) {
        futures::future::join_all(
            chunk
                .iter()
                .map(|(to, id, body)| deliver_twice(addrs, alive, *to, id, body)),
        )
        .await;
    }
}

/// Three `serve` replicas on a fresh database, the emulator and the GitHub
/// stand-in, `limits` added to each one's `[limits]`.
struct Rig {
    dir: tempfile::TempDir,
    store: PostgresJobStore,
    db: tokio_postgres::Client,
    ec2: aws_sdk_ec2::Client,
    github: GithubStandIn,
    controller: String,
    servers: Vec<Server>,
    /// The first job id of this run (seeded: runs never share ids).
    first: u64,
}

impl Rig {
    async fn start(seed: u64, limits: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create_file(&dir.path().join("master.key")).unwrap();
        std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
        std::fs::write(dir.path().join("app.pem"), TEST_APP_PRIVATE_KEY_PEM).unwrap();
        let db_url = fresh_database("sprinters_replicas").await;
        let store = PostgresJobStore::builder(SecretString::from(db_url.clone()))
            .ca_file(ca_file())
            .connect(&StaticKeyProvider::new(master.clone()))
            .await
            .unwrap();
        let k = key();
        store
            .put_access_key(
                sprinters_core::domain::OwnerId::new(31337),
                AccountId::parse(ACCOUNT).unwrap(),
                StoredAccessKey {
                    access_key_id: k.access_key_id,
                    secret_access_key: k.secret_access_key,
                },
            )
            .await
            .unwrap();
        let (db, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);

        let ec2 = AwsClientConfig::new()
            .endpoint_url(endpoint())
            .unwrap()
            .ec2(&Region::us_east_1(), &key());
        let images = ec2
            .describe_images()
            .owners("099720109477")
            .send()
            .await
            .unwrap();
        let ami = images.images()[0].image_id().unwrap().to_owned();
        let github = GithubStandIn::start(778, TEST_APP_PUBLIC_KEY_PEM.as_bytes())
            .await
            .unwrap();
        github.install("octo-org", 31337, 4343);
        let controller = format!("replicas-{seed:016x}");
        let mut servers: Vec<Server> = (0..3)
            .map(|n| {
                let addr = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap();
                Server {
                    config: write_config(
                        dir.path(),
                        n,
                        addr,
                        &controller,
                        &github.uri(),
                        &ami,
                        &db_url,
                        limits,
                    ),
                    log: dir.path().join(format!("replica-{n}.log")),
                    addr,
                    child: None,
                    starts: 0,
                }
            })
            .collect();
        for s in &mut servers {
            s.start().await;
        }
        Rig {
            dir,
            store,
            db,
            ec2,
            github,
            controller,
            servers,
            first: 1 + (seed % 1000) * 1_000_000,
        }
    }
}

/// The `workflow_job` webhook of job `n` of a run starting at `first`.
fn webhook_for(first: u64, n: u64) -> WorkflowJobWebhook {
    WorkflowJobWebhook {
        job_id: first + n,
        run_id: 7_000_000 + first + n,
        run_attempt: 1,
        repository: "octo-org/replicas".to_owned(),
        installation_id: 4343,
        owner_id: 31337,
        labels: vec![
            "sprinters:aws:ubuntu-24.04".to_owned(),
            format!("{}-1-build", 7_000_000 + first + n),
        ],
        name: format!("job {n}"),
    }
}

/// Each of the `jobs` jobs from `first` has exactly one instance in
/// `seen` and is cleaned in `store`.
async fn each_launched_once_and_cleaned(
    store: &PostgresJobStore,
    seen: &std::collections::BTreeMap<u64, Vec<(String, String, bool)>>,
    first: u64,
    jobs: u64,
) {
    for n in 0..jobs {
        let launched = seen.get(&(first + n)).map_or(0, Vec::len);
        assert_eq!(
            launched,
            1,
            "job {} was launched {launched} times",
            first + n
        );
        let key = JobKey::new(JobId::new(first + n), RunAttempt::FIRST);
        let record = store.get_job(key).await.unwrap().unwrap();
        assert_eq!(record.value.state, JobState::Cleaned, "job {key} is stuck");
    }
}

/// The `in_progress` and `completed` webhooks of each job not started yet
/// whose instance is up and whose runner GitHub knows, as GitHub would send
/// them; those jobs are marked started. `round` spreads them over the
/// replicas.
fn run_to_completion(
    github: &GithubStandIn,
    seen: &std::collections::BTreeMap<u64, Vec<(String, String, bool)>>,
    first: u64,
    started: &mut [bool],
    round: &mut usize,
) -> Vec<(usize, String, Vec<u8>)> {
    let mut batch = Vec::new();
    for (n, started) in started.iter_mut().enumerate() {
        let job_id = first + n as u64;
        if *started {
            continue;
        }
        let Some((_, runner, _)) = seen.get(&job_id).and_then(|v| v.first()) else {
            continue;
        };
        let w = webhook_for(first, n as u64);
        // GitHub reports the id of the runner the engine registered.
        let Some(runner_id) = github.runner_id(&w.repository, runner) else {
            continue;
        };
        let runner = Some((runner_id, runner.as_str()));
        *round += 1;
        batch.push((
            *round % 3,
            format!("{job_id}-started"),
            w.body("in_progress", runner, None),
        ));
        batch.push((
            *round % 3,
            format!("{job_id}-done"),
            w.body("completed", runner, Some("success")),
        ));
        *started = true;
    }
    batch
}

/// Three replicas on one database, the account capped at three instances
/// at once; 24 jobs arrive together, spread over the replicas. Checked
/// against the emulator every half second throughout: never more than
/// three live instances (each replica alone would allow three); every job
/// launched once, as slots free, on whichever replica; none stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_never_run_more_instances_in_an_account_than_its_cap() {
    const CAP: usize = 3;
    const JOBS: u64 = 24;
    let seed = env_number("SEED", fastrand::u64(..));
    println!("SEED={seed} ({JOBS} jobs, 3 replicas, at most {CAP} instances)");
    let limits = format!("max_concurrent_per_account = {CAP}");
    let Rig {
        dir: _dir,
        store,
        ec2,
        github,
        controller,
        mut servers,
        first,
        ..
    } = Rig::start(seed, &limits).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let alive = [true; 3];
    let queued = (0..JOBS)
        .map(|n| {
            let body = webhook_for(first, n).body("queued", None, None);
            ((n % 3) as usize, format!("{}-queued", first + n), body)
        })
        .collect();
    deliver_all(&addrs, &alive, queued).await;

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut started = vec![false; JOBS as usize];
    let (mut most, mut round) = (0, 0);
    loop {
        let seen = live_instances(&ec2, &controller).await;
        let live: usize = seen.values().map(Vec::len).sum();
        assert!(
            live <= CAP,
            "{live} live instances in the account, over its cap of {CAP}"
        );
        most = most.max(live);
        if started.iter().all(|s| *s) && live == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {started:?}"
        );
        let batch = run_to_completion(&github, &seen, first, &mut started, &mut round);
        deliver_all(&addrs, &alive, batch).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for s in &mut servers {
        s.stop();
    }
    assert_eq!(most, CAP, "the cap was reached, so it held jobs back");
    let seen = instances(&ec2, &controller).await;
    each_launched_once_and_cleaned(&store, &seen, first, JOBS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_database_launch_every_job_once_through_a_sigkill() {
    let jobs = env_number("SPRINTERS_REPLICA_JOBS", 1000);
    let seed = env_number("SEED", fastrand::u64(..));
    println!("SEED={seed} ({jobs} jobs, 3 replicas)");

    let Rig {
        dir,
        store,
        db,
        ec2,
        github,
        controller,
        mut servers,
        first,
    } = Rig::start(seed, "").await;
    let mut alive = vec![true; 3];
    let webhook = |n: u64| webhook_for(first, n);

    let started_at = Instant::now();
    let deadline = started_at + Duration::from_secs(600 + jobs);
    let mut started = vec![false; jobs as usize];
    let mut next_job = 0u64;
    let mut round = 0usize;
    let mut failover = None;
    let mut round_logged = Instant::now();
    let mut polled = Instant::now();
    while started.iter().any(|s| !s) {
        assert!(Instant::now() < deadline, "the run did not finish");
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        // A steady stream: ten new jobs per round, sent together.
        let mut batch = Vec::new();
        while next_job < jobs && batch.len() < 10 {
            batch.push((
                next_job as usize % 3,
                format!("{}-queued", first + next_job),
                webhook(next_job).body("queued", None, None),
            ));
            next_job += 1;
        }
        deliver_all(&addrs, &alive, batch).await;
        // Half-way, the leader dies.
        if failover.is_none() && next_job >= jobs / 2 {
            let asked = Instant::now();
            let holder = loop {
                if let Some(h) = leader(&db).await {
                    break h;
                }
                assert!(
                    asked.elapsed() < Duration::from_secs(10),
                    "no replica leads"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // A replica's id ends with the one kept in its data directory.
            let id_of = |n: usize| {
                std::fs::read_to_string(dir.path().join(format!("replica-{n}/replica-id")))
                    .ok()
                    .map(|id| format!("-{}", id.trim()))
            };
            let victim = (0..servers.len())
                .find(|&n| {
                    servers[n].child.is_some()
                        && id_of(n).is_some_and(|suffix| holder.ends_with(&suffix))
                })
                .unwrap_or_else(|| panic!("the leader {holder} is none of the replicas"));
            servers[victim].kill();
            alive[victim] = false;
            let killed_at = Instant::now();
            let taken_over = loop {
                if let Some(h) = leader(&db).await
                    && h != holder
                {
                    break killed_at.elapsed();
                }
                assert!(
                    killed_at.elapsed() < Duration::from_secs(30),
                    "nobody took over"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            println!("replica {victim} (the leader) SIGKILLed; another led after {taken_over:?}");
            failover = Some(taken_over);
        }
        // GitHub hands each runner that came up its job. The emulator is
        // one Python process whose every listing walks all instances ever
        // launched: asked at most every 2 s, so that at 1,000 jobs the test
        // does not starve the replicas of it.
        let since = polled.elapsed();
        if since < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_secs(2) - since).await;
        }
        polled = Instant::now();
        let seen = live_instances(&ec2, &controller).await;
        let batch = run_to_completion(
            &github,
            &seen,
            first,
            &mut started[..next_job as usize],
            &mut round,
        );
        // Each job's `in_progress` before its `completed`, most of the
        // time; GitHub does not promise the order either.
        deliver_all(&addrs, &alive, batch).await;
        if next_job >= jobs {
            let waiting = started.iter().filter(|s| !**s).count();
            if round_logged.elapsed() > Duration::from_secs(10) {
                println!(
                    "{waiting} jobs not launched yet, {:.0} s",
                    started_at.elapsed().as_secs_f64()
                );
                round_logged = Instant::now();
            }
        }
    }
    let failover = failover.expect("the leader was killed");
    assert!(
        failover <= Duration::from_secs(10),
        "failover took {failover:?}"
    );

    // Settle: every instance ends (completions, and the reconciler).
    let settle_by = Instant::now() + Duration::from_secs(120);
    let live = loop {
        let live: usize = live_instances(&ec2, &controller)
            .await
            .values()
            .flatten()
            .count();
        if live == 0 || Instant::now() > settle_by {
            break live;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let seen = instances(&ec2, &controller).await;
    if live > 0 {
        for (job, found) in &seen {
            if found.iter().any(|(_, _, alive)| *alive) {
                println!("job {job} still has a live instance: {found:?}");
                for s in &servers {
                    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
                    for line in log.lines().filter(|l| l.contains(&job.to_string())) {
                        println!("  {}: {line}", s.log.display());
                    }
                }
            }
        }
    }
    for (s, alive) in servers.iter_mut().zip(&alive) {
        if *alive {
            s.stop();
        }
    }
    assert_eq!(live, 0, "instances left running");
    each_launched_once_and_cleaned(&store, &seen, first, jobs).await;
    println!(
        "{jobs} jobs over 3 replicas (every delivery twice), the leader SIGKILLed, another led after {failover:?}; every job launched once, 0 instances left, {:.0} s",
        started_at.elapsed().as_secs_f64()
    );
}
