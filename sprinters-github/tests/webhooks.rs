//! The webhook verifier and parser: GitHub's test vector, hostile
//! requests, our own fixtures and every real payload in
//! `../shared/fixtures/github-webhooks/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use sprinters_core::domain::{InstallationId, JobId, RunAttempt, RunId};
use sprinters_core::events::{
    Conclusion, Event, InstallationAction, WorkflowJobAction, WorkflowJobEvent,
};
use sprinters_core::time::Timestamp;
use sprinters_github::webhook::{
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, parse_event, sign,
};
use sprinters_github::{WebhookError, WebhookVerifier};

const SECRET: &str = "webhook-secret-for-tests";

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn verifier() -> WebhookVerifier {
    WebhookVerifier::new(secret(SECRET)).unwrap()
}

fn headers(event: &str, signature: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(EVENT_HEADER, HeaderValue::from_str(event).unwrap());
    h.insert(
        DELIVERY_HEADER,
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    if let Some(sig) = signature {
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
    }
    h
}

fn signed(event: &str, body: &[u8]) -> HeaderMap {
    headers(event, Some(&sign(&secret(SECRET), body)))
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webhooks")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_790_000_000_000)
}

#[test]
fn githubs_test_vector_verifies() {
    let v = WebhookVerifier::new(secret("It's a Secret to Everybody")).unwrap();
    let h = headers(
        "ping",
        Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
    );
    v.check_signature(&h, b"Hello, World!").unwrap();
}

#[test]
fn a_signed_delivery_is_parsed_with_its_id_and_time() {
    let body = fixture("workflow_job.queued.json");
    let delivery = verifier()
        .verify(&signed("workflow_job", &body), &body, now())
        .unwrap();
    assert_eq!(delivery.id.as_str(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(delivery.received_at, now());
    assert!(matches!(delivery.event, Event::WorkflowJob(_)));
}

#[test]
fn hostile_requests_get_distinct_errors() {
    let v = verifier().max_body_bytes(64 * 1024);
    let body = fixture("workflow_job.queued.json");
    let good = sign(&secret(SECRET), &body);

    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'7').unwrap();
    tampered[at] = b'8';
    assert_eq!(
        v.verify(&signed("workflow_job", &body), &tampered, now()),
        Err(WebhookError::BadSignature),
        "a tampered body"
    );
    let truncated = &good[..good.len() - 2];
    assert_eq!(
        v.verify(&headers("workflow_job", Some(truncated)), &body, now()),
        Err(WebhookError::BadSignature),
        "a truncated signature"
    );
    let other = sign(&secret("another-secret"), &body);
    assert_eq!(
        v.verify(&headers("workflow_job", Some(&other)), &body, now()),
        Err(WebhookError::BadSignature),
        "the wrong secret"
    );
    let mut sha1_only = headers("workflow_job", None);
    sha1_only.insert(
        "x-hub-signature",
        HeaderValue::from_static("sha1=0123456789abcdef0123456789abcdef01234567"),
    );
    let err = v.verify(&sha1_only, &body, now()).unwrap_err();
    assert_eq!(err, WebhookError::MissingSignature, "sha1 alone is refused");
    assert!(err.to_string().contains("sha1"), "{err}");
    assert_eq!(err.status(), 401);
    assert_eq!(
        v.verify(
            &headers("workflow_job", Some(&good.replace("sha256=", "sha1="))),
            &body,
            now()
        ),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        v.verify(&headers("workflow_job", Some("sha256=zz")), &body, now()),
        Err(WebhookError::BadSignature),
        "not hex"
    );

    let big = vec![b' '; 64 * 1024 + 1];
    let err = v
        .verify(&signed("workflow_job", &big), &big, now())
        .unwrap_err();
    assert_eq!(err, WebhookError::BodyTooLarge { limit: 64 * 1024 });
    assert_eq!(err.status(), 413);

    let mut no_event = signed("workflow_job", &body);
    no_event.remove(EVENT_HEADER);
    assert_eq!(
        v.verify(&no_event, &body, now()),
        Err(WebhookError::MissingHeader(EVENT_HEADER))
    );
    let mut no_id = signed("workflow_job", &body);
    no_id.remove(DELIVERY_HEADER);
    let err = v.verify(&no_id, &body, now()).unwrap_err();
    assert_eq!(err, WebhookError::MissingHeader(DELIVERY_HEADER));
    assert_eq!(err.status(), 400);

    let garbage = b"{\"action\": \"queued\", ";
    let err = v
        .verify(&signed("workflow_job", garbage), garbage, now())
        .unwrap_err();
    assert!(matches!(err, WebhookError::MalformedJson(_)), "{err}");
    assert_eq!(err.status(), 400);

    let wrong_shape = br#"{"action": "queued", "workflow_job": {"id": "not a number"}}"#;
    let err = v
        .verify(&signed("workflow_job", wrong_shape), wrong_shape, now())
        .unwrap_err();
    assert!(matches!(err, WebhookError::InvalidPayload(_)), "{err}");
    let array = b"[1, 2, 3]";
    assert!(matches!(
        v.verify(&signed("workflow_job", array), array, now()),
        Err(WebhookError::InvalidPayload(_))
    ));
}

#[test]
fn the_signature_is_checked_before_the_body_is_read() {
    // Malformed JSON with a bad signature is a signature error: nothing of
    // an unsigned body is parsed.
    let body = b"{ not json";
    assert_eq!(
        verifier().verify(&headers("workflow_job", Some("sha256=00")), body, now()),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn secrets_rotate_without_downtime() {
    let body = fixture("ping.json");
    let v = WebhookVerifier::new(secret("old-secret"))
        .unwrap()
        .with_secret(secret("new-secret"))
        .unwrap();
    for s in ["old-secret", "new-secret"] {
        let h = headers("ping", Some(&sign(&secret(s), &body)));
        assert!(v.verify(&h, &body, now()).is_ok(), "{s} is accepted");
    }
    let h = headers("ping", Some(&sign(&secret("retired-secret"), &body)));
    assert_eq!(v.verify(&h, &body, now()), Err(WebhookError::BadSignature));
}

fn job(event: &Event) -> &WorkflowJobEvent {
    match event {
        Event::WorkflowJob(job) => job,
        other => panic!("not a workflow_job: {other:?}"),
    }
}

#[test]
fn our_workflow_job_fixtures_parse_with_every_field() {
    let labels = vec![
        "sprinters:aws:ubuntu-24.04:m7i.large".to_owned(),
        "5555001-2-build".to_owned(),
    ];
    for (file, action) in [
        ("workflow_job.queued.json", WorkflowJobAction::Queued),
        ("workflow_job.waiting.json", WorkflowJobAction::Waiting),
        (
            "workflow_job.in_progress.json",
            WorkflowJobAction::InProgress,
        ),
        ("workflow_job.completed.json", WorkflowJobAction::Completed),
    ] {
        let event = parse_event("workflow_job", &fixture(file)).unwrap();
        let j = job(&event);
        assert_eq!(j.action, action, "{file}");
        assert_eq!(j.job.job_id, JobId::new(30433642));
        assert_eq!(j.job.run_attempt, RunAttempt::new(2).unwrap());
        assert_eq!(j.run_id, RunId::new(5555001));
        assert_eq!(j.repository.to_string(), "octo-org/hello");
        assert_eq!(j.installation_id, InstallationId::new(4242));
        assert_eq!(j.labels, labels);
        assert_eq!(j.name.as_deref(), Some("build"));
    }
    let running = parse_event("workflow_job", &fixture("workflow_job.in_progress.json")).unwrap();
    let running = job(&running);
    assert_eq!(
        running.runner_name.as_ref().map(|n| n.as_str()),
        Some("sprinters-30433642-2-1")
    );
    assert_eq!(running.runner_id, Some(77));
    assert_eq!(running.conclusion, None);
    assert_eq!(
        running.at,
        Some(Timestamp::from_system_time(
            humantime::parse_rfc3339("2026-11-20T10:00:05Z").unwrap()
        ))
    );
    let done = parse_event("workflow_job", &fixture("workflow_job.completed.json")).unwrap();
    let done = job(&done);
    assert_eq!(done.conclusion, Some(Conclusion::Success));
    assert_eq!(
        done.at,
        Some(Timestamp::from_system_time(
            humantime::parse_rfc3339("2026-11-20T10:07:30Z").unwrap()
        ))
    );
    let cancelled = parse_event(
        "workflow_job",
        &fixture("workflow_job.completed.cancelled.json"),
    )
    .unwrap();
    let cancelled = job(&cancelled);
    assert_eq!(cancelled.conclusion, Some(Conclusion::Cancelled));
    assert_eq!(cancelled.runner_name, None, "cancelled before any runner");
    assert_eq!(cancelled.runner_id, None);
}

#[test]
fn installation_events_parse() {
    for (file, event, action) in [
        (
            "installation.created.json",
            "installation",
            InstallationAction::Created,
        ),
        (
            "installation.deleted.json",
            "installation",
            InstallationAction::Deleted,
        ),
        (
            "installation.suspend.json",
            "installation",
            InstallationAction::Suspend,
        ),
        (
            "installation.unsuspend.json",
            "installation",
            InstallationAction::Unsuspend,
        ),
        (
            "installation_repositories.added.json",
            "installation_repositories",
            InstallationAction::RepositoriesChanged,
        ),
    ] {
        match parse_event(event, &fixture(file)).unwrap() {
            Event::Installation(i) => {
                assert_eq!(i.action, action, "{file}");
                assert_eq!(i.installation_id, InstallationId::new(4242));
                assert_eq!(i.owner.as_str(), "octo-org");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn ping_and_other_events_are_valid_and_ignored() {
    assert_eq!(
        parse_event("ping", &fixture("ping.json")).unwrap(),
        Event::Ping
    );
    assert_eq!(
        parse_event("push", &fixture("push.json")).unwrap(),
        Event::Other {
            event: "push".to_owned(),
            action: None
        }
    );
    assert_eq!(
        parse_event("workflow_run", &fixture("workflow_run.requested.json")).unwrap(),
        Event::Other {
            event: "workflow_run".to_owned(),
            action: Some("requested".to_owned())
        }
    );
    // A workflow_job action GitHub may add later is not an error.
    let future = br#"{"action": "paused", "workflow_job": {}}"#;
    assert!(matches!(
        parse_event("workflow_job", future).unwrap(),
        Event::Other { .. }
    ));
}

fn shared_fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/github-webhooks");
    assert!(
        dir.is_dir(),
        "{} is missing: CI runs with ../shared beside the repository",
        dir.display()
    );
    dir
}

fn shared(name: &str) -> Vec<u8> {
    std::fs::read(shared_fixtures().join(name)).unwrap()
}

#[test]
fn every_real_payload_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(shared_fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(event) = name
            .strip_suffix(".payload.json")
            .and_then(|n| n.split('.').next())
        else {
            continue;
        };
        let body = std::fs::read(&path).unwrap();
        let with_installation =
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["installation"].is_object();
        match parse_event(event, &body) {
            Ok(_) => {}
            // Repository and organization webhooks carry no installation:
            // Sprinters needs the App's webhook, and says so.
            Err(WebhookError::InvalidPayload(m))
                if event == "workflow_job" && !with_installation =>
            {
                assert!(m.contains("App's webhook"), "{name}: {m}")
            }
            Err(e) => panic!("{name}: {e}"),
        }
        seen += 1;
    }
    assert!(seen >= 15, "only {seen} fixtures");
}

#[test]
fn real_workflow_job_payloads_have_the_fields_the_engine_needs() {
    let queued = parse_event("workflow_job", &shared("workflow_job.queued.payload.json")).unwrap();
    let q = job(&queued);
    assert_eq!(q.action, WorkflowJobAction::Queued);
    assert_eq!(q.job.job_id, JobId::new(289782451));
    assert_eq!(q.job.run_attempt, RunAttempt::FIRST);
    assert_eq!(q.run_id, RunId::new(2202229078));
    assert_eq!(q.repository.to_string(), "Codertocat/Hello-World");
    assert_eq!(q.installation_id, InstallationId::new(3456996));
    assert_eq!(q.labels, ["ubuntu-latest"]);
    assert_eq!(q.name.as_deref(), Some("update"));
    assert_eq!(
        q.runner_name, None,
        "GitHub's hosted runner name is not ours"
    );
    assert_eq!(
        q.repository_private,
        Some(false),
        "Hello-World is public: the policy denies it by default"
    );

    for (file, action) in [
        (
            "workflow_job.waiting.payload.json",
            WorkflowJobAction::Waiting,
        ),
        (
            "workflow_job.in_progress.payload.json",
            WorkflowJobAction::InProgress,
        ),
        (
            "workflow_job.in_progress.with-queued-steps.payload.json",
            WorkflowJobAction::InProgress,
        ),
        (
            "workflow_job.queued.with-deployment.payload.json",
            WorkflowJobAction::Queued,
        ),
    ] {
        let body = shared(file);
        let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let event = parse_event("workflow_job", &body).unwrap();
        let j = job(&event);
        assert_eq!(j.action, action, "{file}");
        assert_eq!(
            Some(j.job.job_id.get()),
            raw["workflow_job"]["id"].as_u64(),
            "{file}"
        );
        assert_eq!(
            Some(j.run_id.get()),
            raw["workflow_job"]["run_id"].as_u64(),
            "{file}"
        );
        assert_eq!(
            Some(u64::from(j.job.run_attempt.get())),
            raw["workflow_job"]["run_attempt"].as_u64(),
            "{file}"
        );
        assert_eq!(
            Some(j.installation_id.get()),
            raw["installation"]["id"].as_u64(),
            "{file}"
        );
        assert_eq!(
            j.labels,
            serde_json::from_value::<Vec<String>>(raw["workflow_job"]["labels"].clone()).unwrap()
        );
    }
}

#[test]
fn real_installation_payloads_name_the_owner() {
    for (file, event, action) in [
        (
            "installation.created.payload.json",
            "installation",
            InstallationAction::Created,
        ),
        (
            "installation.deleted.payload.json",
            "installation",
            InstallationAction::Deleted,
        ),
        (
            "installation.suspend.payload.json",
            "installation",
            InstallationAction::Suspend,
        ),
        (
            "installation.unsuspend.payload.json",
            "installation",
            InstallationAction::Unsuspend,
        ),
        (
            "installation_repositories.added.payload.json",
            "installation_repositories",
            InstallationAction::RepositoriesChanged,
        ),
    ] {
        let body = shared(file);
        let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
        match parse_event(event, &body).unwrap() {
            Event::Installation(i) => {
                assert_eq!(i.action, action, "{file}");
                assert_eq!(
                    Some(i.installation_id.get()),
                    raw["installation"]["id"].as_u64()
                );
                assert_eq!(
                    Some(i.owner.as_str()),
                    raw["installation"]["account"]["login"].as_str(),
                    "{file}"
                );
            }
            other => panic!("{file}: {other:?}"),
        }
    }
    for file in [
        "ping.payload.json",
        "ping.with-app_id.payload.json",
        "ping.with-organization.payload.json",
    ] {
        assert_eq!(
            parse_event("ping", &shared(file)).unwrap(),
            Event::Ping,
            "{file}"
        );
    }
}

#[test]
fn the_stand_ins_webhook_bodies_parse_like_githubs() {
    use sprinters_github::testing::WorkflowJobWebhook;
    let webhook = WorkflowJobWebhook {
        job_id: 9001,
        run_id: 77,
        run_attempt: 2,
        repository: "octo-org/app".into(),
        installation_id: 4242,
        owner_id: 31337,
        labels: vec!["sprinters:aws:ubuntu-latest".into(), "77-2-build".into()],
        name: "build".into(),
    };
    let queued = parse_event("workflow_job", &webhook.body("queued", None, None)).unwrap();
    let queued = job(&queued);
    assert_eq!(queued.action, WorkflowJobAction::Queued);
    assert_eq!(queued.job.job_id, JobId::new(9001));
    assert_eq!(queued.job.run_attempt, RunAttempt::new(2).unwrap());
    assert_eq!(queued.labels, webhook.labels);
    assert_eq!(queued.installation_id, InstallationId::new(4242));
    let started = webhook.body("in_progress", Some((5, "sprinters-9001-2-1")), None);
    let started = parse_event("workflow_job", &started).unwrap();
    let started = job(&started);
    assert_eq!(started.action, WorkflowJobAction::InProgress);
    assert_eq!(
        started.runner_name.as_ref().map(|n| n.as_str()),
        Some("sprinters-9001-2-1")
    );
    let done = webhook.body(
        "completed",
        Some((5, "sprinters-9001-2-1")),
        Some("failure"),
    );
    let done = parse_event("workflow_job", &done).unwrap();
    assert_eq!(job(&done).conclusion, Some(Conclusion::Failure));
}
