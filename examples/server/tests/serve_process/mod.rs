//! What the tests that run `sprinters serve` as real processes share: the
//! process and its restarts, signed deliveries over plain TCP, and what the
//! AWS emulator holds.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sprinters_core::ports::Credentials;
use sprinters_github::webhook::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn endpoint() -> String {
    std::env::var("SPRINTERS_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts the AWS emulator")
    })
}

pub(crate) fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

pub(crate) fn key() -> Credentials {
    Credentials {
        access_key_id: "AKIAKILLTESTEXAMPLE1".to_owned(),
        secret_access_key: SecretString::from("kill-test-secret".to_owned()),
        session_token: None,
        expires_at: None,
    }
}

/// The `serve` process and how to start it again.
pub(crate) struct Server {
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) addr: SocketAddr,
    pub(crate) child: Option<Child>,
    pub(crate) starts: u32,
}

impl Server {
    pub(crate) async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sprinters"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("SERVE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
        // Ready once it answers; a start that fails is in the log.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await {
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer).await;
                if answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "serve exited ({status}) at start {}:\n{}",
                    self.starts,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again if it died; otherwise gives it a moment.
    pub(crate) async fn start_if_dead(&mut self) {
        let dead = match self.child.as_mut() {
            None => true,
            Some(child) => child.try_wait().unwrap().is_some(),
        };
        if dead {
            self.child = None;
            self.start().await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn kill(&mut self) {
        self.kill_now();
    }

    pub(crate) fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            let status = child.wait().unwrap();
            assert!(status.success(), "SIGTERM drains and exits 0: {status}");
        }
    }
}

/// A failed test must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Sends one signed delivery: `Ok(true)` when acknowledged, `Ok(false)`
/// when the server did not answer it (down, or killed while handling it),
/// `Err` with the answer when it refused it.
pub(crate) async fn deliver(
    addr: SocketAddr,
    secret: &str,
    id: &str,
    body: &[u8],
) -> Result<bool, String> {
    // A connection the server never answers (it died holding it) is a
    // failed delivery, sent again, not a test that hangs.
    match tokio::time::timeout(
        Duration::from_secs(60),
        deliver_once(addr, secret, id, body),
    )
    .await
    {
        Ok(answer) => answer,
        Err(_) => Ok(false),
    }
}

async fn deliver_once(
    addr: SocketAddr,
    secret: &str,
    id: &str,
    body: &[u8],
) -> Result<bool, String> {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return Ok(false);
    };
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-GitHub-Event: workflow_job\r\n\
         X-GitHub-Delivery: {id}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(&SecretString::from(secret.to_owned()), body),
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body).await.is_err() {
        return Ok(false);
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    match answer.split(' ').nth(1) {
        Some(status) if status.starts_with('2') => Ok(true),
        // 408: the server took too long (a slow emulator behind it);
        // GitHub counts that as a failed delivery and sends it again.
        Some(status) if status.starts_with('5') || status == "408" || status.is_empty() => {
            eprintln!("delivery {id} not taken in: {answer}");
            Ok(false)
        }
        Some(_) => Err(format!("delivery {id} was refused: {answer}")),
        None => Ok(false),
    }
}

/// This run's instances in the emulator: job → (instance id, runner, alive).
pub(crate) async fn instances(
    ec2: &aws_sdk_ec2::Client,
    controller: &str,
) -> BTreeMap<u64, Vec<(String, String, bool)>> {
    instances_in(ec2, controller, false).await
}

/// [`instances`], only those pending or running: a far smaller answer once
/// most have ended, which keeps a long run's polling cheap for the emulator.
pub(crate) async fn live_instances(
    ec2: &aws_sdk_ec2::Client,
    controller: &str,
) -> BTreeMap<u64, Vec<(String, String, bool)>> {
    instances_in(ec2, controller, true).await
}

async fn instances_in(
    ec2: &aws_sdk_ec2::Client,
    controller: &str,
    live_only: bool,
) -> BTreeMap<u64, Vec<(String, String, bool)>> {
    for _ in 0..10 {
        // The SDK has no read timeout by default: an answer the emulator
        // never sends is asked for again.
        let once = tokio::time::timeout(
            Duration::from_secs(60),
            instances_once(ec2, controller, live_only),
        );
        if let Ok(Some(seen)) = once.await {
            return seen;
        }
    }
    panic!("the emulator did not answer DescribeInstances ten times in a row");
}

async fn instances_once(
    ec2: &aws_sdk_ec2::Client,
    controller: &str,
    live_only: bool,
) -> Option<BTreeMap<u64, Vec<(String, String, bool)>>> {
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("tag:sprinters:controller")
        .values(controller)
        .build();
    let mut request = ec2.describe_instances().filters(filter);
    if live_only {
        request = request.filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        );
    }
    // Every page: the emulator, like EC2, answers 100 reservations at most.
    let mut pages = request.into_paginator().send();
    let mut reservations = Vec::new();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => reservations.extend(page.reservations().iter().cloned()),
            // The emulator is one Python process; under load it may time
            // out. Asking again later is what the caller does anyway.
            Err(e) => {
                println!("asking the emulator failed ({e}); asking again");
                return None;
            }
        }
    }
    let mut by_job: BTreeMap<u64, Vec<(String, String, bool)>> = BTreeMap::new();
    for instance in reservations.iter().flat_map(|r| r.instances()) {
        let tag = |k: &str| {
            instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_owned()
        };
        let alive = !matches!(
            instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
            Some("terminated" | "shutting-down")
        );
        by_job
            .entry(tag("sprinters:job").parse().unwrap())
            .or_default()
            .push((
                instance.instance_id().unwrap().to_owned(),
                tag("sprinters:runner"),
                alive,
            ));
    }
    Some(by_job)
}
