//! Hostile input at the HTTP edge of a running control plane (the same one
//! the end-to-end benchmark drives: the SQLite store, the real SDK clients,
//! stand-ins for STS, EC2 and GitHub): bad and missing signatures, a replay,
//! oversized bodies, a client trickling its headers, thousands of open
//! connections, malformed and misshapen JSON, unknown events. Each answer
//! is checked, valid deliveries keep being answered meanwhile, and nothing
//! is stored or launched for any of the hostile requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use sprinters_benches::control_plane::ControlPlaneRig;
use sprinters_core::domain::DeliveryId;
use sprinters_core::ports::JobStore;
use sprinters_github::webhook::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request on its own connection: (status, body).
/// A named hostile request: its extra headers and the status it must get.
type Case = (&'static str, Vec<(&'static str, String)>, u16);

async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // A server may answer (413, 401) before reading all of a body.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

fn head(headers: &[(&str, String)], length: usize) -> String {
    let mut head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head + "\r\n"
}

fn signed(secret: &SecretString, event: &str, delivery: &str, body: &[u8]) -> String {
    head(
        &[
            ("X-GitHub-Event", event.to_owned()),
            ("X-GitHub-Delivery", delivery.to_owned()),
            ("X-Hub-Signature-256", sign(secret, body)),
        ],
        body.len(),
    )
}

/// A valid delivery the server must keep answering.
async fn probe(addr: SocketAddr, secret: &SecretString) {
    let body = br#"{"zen":"Anything added dilutes everything else.","hook_id":1}"#;
    let id = format!("probe-{:016x}", fastrand::u64(..));
    let (status, answer) = raw(addr, &signed(secret, "ping", &id, body), body).await;
    assert_eq!(status, 200, "a valid delivery is answered: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_change_nothing() {
    let rig = ControlPlaneRig::start_with(Duration::ZERO, "header_timeout_seconds = 2").await;
    let (addr, secret) = (rig.addr(), rig.secret().clone());
    let jobs_before = rig.store.job_count().await.unwrap();
    let launches_before = rig.aws.calls().get("RunInstances").copied().unwrap_or(0);
    let job = rig.new_job();
    let queued = job.body("queued", None, None);
    let wrong = SecretString::from("not-the-secret".to_owned());
    let mut refused_ids = Vec::new();
    let mut refuse = |id: &str| {
        refused_ids.push(id.to_owned());
        id.to_owned()
    };

    // Signatures: missing, another secret's, truncated, sha1 only.
    let cases: Vec<Case> = vec![
        ("missing signature", vec![], 401),
        (
            "another secret",
            vec![("X-Hub-Signature-256", sign(&wrong, &queued))],
            401,
        ),
        (
            "truncated signature",
            vec![(
                "X-Hub-Signature-256",
                sign(&secret, &queued)[..40].to_owned(),
            )],
            401,
        ),
        (
            "sha1 only",
            vec![(
                "X-Hub-Signature",
                "sha1=0123456789abcdef0123456789abcdef01234567".to_owned(),
            )],
            401,
        ),
    ];
    for (what, extra, expected) in cases {
        let id = refuse(&format!("hostile-{}", what.replace(' ', "-")));
        let mut headers = vec![
            ("X-GitHub-Event", "workflow_job".to_owned()),
            ("X-GitHub-Delivery", id),
        ];
        headers.extend(extra);
        let (status, body) = raw(addr, &head(&headers, queued.len()), &queued).await;
        assert_eq!(status, expected, "{what}: {body}");
    }
    // A tampered body under a valid signature of the original.
    let mut tampered = queued.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let id = refuse("hostile-tampered");
    let (status, _) = raw(
        addr,
        &head(
            &[
                ("X-GitHub-Event", "workflow_job".to_owned()),
                ("X-GitHub-Delivery", id),
                ("X-Hub-Signature-256", sign(&secret, &queued)),
            ],
            tampered.len(),
        ),
        &tampered,
    )
    .await;
    assert_eq!(status, 401, "tampered body");
    // Signed, but not a delivery: no event header, malformed JSON, the
    // wrong shape.
    let id = refuse("hostile-no-event");
    let (status, _) = raw(
        addr,
        &head(
            &[
                ("X-GitHub-Delivery", id),
                ("X-Hub-Signature-256", sign(&secret, &queued)),
            ],
            queued.len(),
        ),
        &queued,
    )
    .await;
    assert_eq!(status, 400, "no X-GitHub-Event");
    for (what, body) in [
        (
            "malformed",
            br#"{"action": "queued", "workflow_job": {"#.to_vec(),
        ),
        (
            "wrong shape",
            br#"{"action":"queued","workflow_job":"a string","repository":1}"#.to_vec(),
        ),
        ("an array", b"[1, 2, 3]".to_vec()),
    ] {
        let id = refuse(&format!("hostile-{}", what.replace(' ', "-")));
        let (status, answer) = raw(addr, &signed(&secret, "workflow_job", &id, &body), &body).await;
        assert_eq!(status, 400, "{what}: {answer}");
    }
    // Too large: refused by its Content-Length.
    let big = vec![b' '; 2 * 1024 * 1024];
    let id = refuse("hostile-too-large");
    let (status, _) = raw(addr, &signed(&secret, "workflow_job", &id, &big), &big).await;
    assert_eq!(status, 413, "a body over the limit");
    // Unknown events are valid deliveries the engine ignores.
    let push = br#"{"ref":"refs/heads/main","repository":{"full_name":"octo-org/bench"}}"#;
    let (status, _) = raw(addr, &signed(&secret, "push", "hostile-push", push), push).await;
    assert_eq!(status, 200, "an unknown event is ignored");
    probe(addr, &secret).await;

    // A replayed delivery: taken in once.
    let launched = rig.aws.expect_launch(job.job_id);
    let (first, _) = raw(
        addr,
        &signed(&secret, "workflow_job", "replayed", &queued),
        &queued,
    )
    .await;
    let (again, answer) = raw(
        addr,
        &signed(&secret, "workflow_job", "replayed", &queued),
        &queued,
    )
    .await;
    assert_eq!((first, again), (202, 200), "replay: {answer}");
    assert_eq!(answer, "duplicate");

    // A client that trickles its headers, a byte per valid delivery the
    // server answers meanwhile, is cut off by the header timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    for byte in b"POST /webhooks/github HTTP/1.1\r\nHost: loc".iter() {
        slow.write_all(&[*byte]).await.unwrap();
        probe(addr, &secret).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut answer))
        .await
        .expect("the slow client is cut off")
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 2"),
        "no success for a request never finished: {answer:?}"
    );

    // Thousands of connections at once, idle or half-sent: valid
    // deliveries are still answered.
    let mut held = Vec::new();
    for n in 0..3000 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if n % 2 == 0 {
            stream
                .write_all(b"POST /webhooks/github HTTP/1.1\r\n")
                .await
                .unwrap();
        }
        held.push(stream);
    }
    for _ in 0..20 {
        probe(addr, &secret).await;
    }
    drop(held);
    probe(addr, &secret).await;

    // Nothing of the hostile requests was kept; the replayed job was
    // stored and launched once.
    for id in &refused_ids {
        assert!(
            !rig.store
                .delivery_seen(DeliveryId::parse(id).unwrap())
                .await
                .unwrap(),
            "{id} left no trace"
        );
    }
    assert_eq!(
        rig.store.job_count().await.unwrap(),
        jobs_before + 1,
        "only the valid job"
    );
    tokio::time::timeout(Duration::from_secs(30), launched)
        .await
        .expect("the valid job is launched")
        .unwrap();
    assert_eq!(
        rig.aws.calls().get("RunInstances").copied().unwrap_or(0),
        launches_before + 1,
        "one launch, for the valid job"
    );
    rig.stop().await;
}
