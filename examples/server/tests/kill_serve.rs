//! `sprinters serve` killed with SIGKILL, again and again, while jobs
//! arrive: the real binary with the SQLite store, the AWS emulator (moto,
//! started by `scripts/test`) and the GitHub stand-in in this process.
//! Jobs are sent as signed webhooks, one after the other; at random points
//! of that stream (seeded, `SEED=...` replays) the server is killed and
//! started again; a delivery it did not answer is sent again, as GitHub
//! redelivers. Afterwards, against the emulator and the store: every job
//! launched exactly once (the job tag on the instances), nothing left
//! running, and the store opens with every job it acknowledged, cleaned.
//!
//! `SPRINTERS_KILL_JOBS` and `SPRINTERS_KILLS` size it (scripts/soak runs
//! it larger).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sprinters_aws::AwsClientConfig;
use sprinters_core::domain::{AccountId, JobId, JobKey, Region, RunAttempt};
use sprinters_core::job::JobState;
use sprinters_core::ports::JobStore;
use sprinters_core::vault::{CredentialVault, StoredAccessKey};
use sprinters_github::testing::{
    GithubStandIn, TEST_APP_PRIVATE_KEY_PEM, TEST_APP_PUBLIC_KEY_PEM, WorkflowJobWebhook,
};
use sprinters_store::{MasterKey, SqliteJobStore};

mod serve_process;
use serve_process::{Server, deliver, endpoint, env_number, instances, key, live_instances};

const ACCOUNT: &str = "123456789012";
const SECRET: &str = "kill-test-webhook-secret";

fn write_config(dir: &Path, addr: SocketAddr, controller: &str, api: &str, ami: &str) -> PathBuf {
    let data = dir.join("data");
    std::fs::write(dir.join("webhook-secret"), SECRET).unwrap();
    std::fs::write(dir.join("app.pem"), TEST_APP_PRIVATE_KEY_PEM).unwrap();
    let text = format!(
        r#"
[server]
listen = "{addr}"
data_dir = "{data}"
controller_id = "{controller}"

[github]
app_id = 777
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
reconcile_interval_seconds = 1
"#,
        data = data.display(),
        dir = dir.display(),
        aws = endpoint(),
    );
    let path = dir.join("sprinters.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_serve_launches_every_job_exactly_once_and_leaves_nothing_running() {
    let jobs = env_number("SPRINTERS_KILL_JOBS", 240);
    let kills = env_number("SPRINTERS_KILLS", 20);
    let seed = env_number("SEED", fastrand::u64(..));
    println!("SEED={seed} ({jobs} jobs, {kills} kills)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sprinters_server::data_dir::create(&data).unwrap();
    let master = MasterKey::create_file(&data.join("master.key")).unwrap();
    {
        let store = SqliteJobStore::open_with_key(&data, &master).unwrap();
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
    }
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
    let github = GithubStandIn::start(777, TEST_APP_PUBLIC_KEY_PEM.as_bytes())
        .await
        .unwrap();
    github.install("octo-org", 31337, 4242);
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let controller = format!("kill-{seed:016x}");
    let mut server = Server {
        config: write_config(dir.path(), addr, &controller, &github.uri(), &ami),
        log: dir.path().join("serve.log"),
        addr,
        child: None,
        starts: 0,
    };
    server.start().await;

    let first = 1 + (seed % 1000) * 1_000_000;
    let webhook = |n: u64| WorkflowJobWebhook {
        job_id: first + n,
        run_id: 9_000_000 + first + n,
        run_attempt: 1,
        repository: "octo-org/kill".to_owned(),
        installation_id: 4242,
        owner_id: 31337,
        labels: vec![
            "sprinters:aws:ubuntu-24.04".to_owned(),
            format!("{}-1-build", 9_000_000 + first + n),
        ],
        name: format!("job {n}"),
    };
    // Kill points, counted in deliveries sent: one at a random place in
    // each of `kills` equal stretches of the run.
    let total_deliveries = jobs * 3;
    let stretch = (total_deliveries / kills.max(1)).max(1);
    let mut kill_at: VecDeque<u64> = (0..kills)
        .map(|i| i * stretch + rng.u64(1..=stretch))
        .collect();
    let mut pending: VecDeque<(String, Vec<u8>)> = VecDeque::new();
    let mut started = vec![false; jobs as usize];
    let mut next_job = 0;
    let mut sent = 0u64;
    let mut killed = 0;
    let mut acknowledged_queued = Vec::new();
    let run_started = Instant::now();
    // Generous: a hung run fails rather than blocking CI; a soak scales it.
    let deadline = Instant::now() + Duration::from_secs(300 + jobs * 2);
    while next_job < jobs || !pending.is_empty() || started.iter().any(|s| !s) {
        if Instant::now() >= deadline {
            // What each job that never started looks like in the store.
            server.kill();
            let store = SqliteJobStore::open_with_key(&data, &master).unwrap();
            let mut stuck = String::new();
            for n in (0..jobs).filter(|n| !started[*n as usize]) {
                let key = JobKey::new(JobId::new(first + n), RunAttempt::FIRST);
                let record = store.get_job(key).await.unwrap().map(|r| r.value);
                stuck.push_str(&format!("\n{key}: {record:?}"));
            }
            panic!(
                "the run did not finish; jobs not started:{stuck}\nserve's log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        if next_job < jobs && pending.len() < 8 {
            pending.push_back((
                format!("{}-queued", first + next_job),
                webhook(next_job).body("queued", None, None),
            ));
            next_job += 1;
        }
        if let Some((id, body)) = pending.front().cloned() {
            let delivered = deliver(addr, SECRET, &id, &body).await.unwrap_or_else(|e| {
                panic!(
                    "{e}\nserve's log:\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                )
            });
            if delivered {
                pending.pop_front();
                if id.ends_with("-queued") {
                    acknowledged_queued.push(id.clone());
                }
                sent += 1;
                if sent.is_multiple_of(100) {
                    println!(
                        "{sent}/{total_deliveries} deliveries, {killed} kills, {:.0} s",
                        run_started.elapsed().as_secs_f64()
                    );
                }
                if kill_at.front().is_some_and(|k| *k <= sent) {
                    kill_at.pop_front();
                    server.kill();
                    killed += 1;
                    server.start().await;
                }
            } else {
                // Down or killed mid-request: it comes back; so does GitHub.
                server.start_if_dead().await;
            }
            continue;
        }
        // Nothing to send: GitHub hands each launched runner its job.
        let seen = live_instances(&ec2, &controller).await;
        let mut progressed = false;
        for n in 0..jobs {
            let job_id = first + n;
            if started[n as usize] {
                continue;
            }
            if let Some((_, runner, _)) = seen.get(&job_id).and_then(|v| v.first()) {
                let w = webhook(n);
                // GitHub reports the id of the runner the engine registered.
                let Some(runner_id) = github.runner_id(&w.repository, runner) else {
                    continue;
                };
                let runner = Some((runner_id, runner.as_str()));
                pending.push_back((
                    format!("{job_id}-started"),
                    w.body("in_progress", runner, None),
                ));
                pending.push_back((
                    format!("{job_id}-done"),
                    w.body("completed", runner, Some("success")),
                ));
                started[n as usize] = true;
                progressed = true;
            }
        }
        if !progressed {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_eq!(killed as u64, kills, "every planned SIGKILL happened");

    // Settle: every instance ends (completions, and the reconciler).
    let mut settle_polls = 0u32;
    let live = loop {
        let seen = instances(&ec2, &controller).await;
        let live: usize = seen
            .values()
            .flatten()
            .filter(|(_, _, alive)| *alive)
            .count();
        if live == 0 || Instant::now() > deadline {
            break (live, seen);
        }
        if settle_polls.is_multiple_of(40) {
            println!("settling: {live} instances still running");
        }
        settle_polls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    server.stop();
    let (live, seen) = live;
    assert_eq!(live, 0, "instances left running");
    for n in 0..jobs {
        let launched = seen.get(&(first + n)).map_or(0, Vec::len);
        assert_eq!(
            launched,
            1,
            "job {} was launched {launched} times: {:?}",
            first + n,
            seen.get(&(first + n))
        );
    }

    let store = SqliteJobStore::open_with_key(&data, &master).unwrap();
    assert_eq!(acknowledged_queued.len() as u64, jobs);
    for n in 0..jobs {
        let key = JobKey::new(JobId::new(first + n), RunAttempt::FIRST);
        let record = store
            .get_job(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged job {key} is missing"));
        assert_eq!(record.value.state, JobState::Cleaned, "job {key}");
    }
    println!(
        "{jobs} jobs, {killed} SIGKILLs survived ({} starts); every job launched once; 0 instances left",
        server.starts
    );
}
