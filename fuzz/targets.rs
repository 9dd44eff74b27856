//! The body of every fuzz target, shared by the `cargo fuzz` targets and
//! the regression test that `scripts/test` runs on the saved inputs
//! (`examples/server/tests/fuzz_regressions.rs`). Each must return, whatever the
//! input: an error is fine, a panic, a hang or an abort is a finding.

use std::collections::BTreeMap;

use secrecy::SecretString;
use sprinters_core::labels::LabelParser;
use sprinters_core::time::Timestamp;
use sprinters_github::WebhookVerifier;
use sprinters_github::webhook::{
    DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, parse_event, sign,
};

/// A target's body: takes the fuzzer's bytes, must return.
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz run <name>` knows them.
pub const TARGETS: &[(&str, Target)] =
    &[("webhook", webhook), ("labels", labels), ("config", config)];

const EVENTS: &[&str] = &[
    "workflow_job",
    "installation",
    "installation_repositories",
    "ping",
    "push",
];

/// The verifier and the payload parser: the first byte picks the event,
/// the rest is the body, sent once correctly signed (so the parser is
/// reached) and once with the body's first 71 bytes as the signature.
pub fn webhook(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(*selector) % EVENTS.len()];
    let _ = parse_event(event, body);
    let secret = SecretString::from("fuzzing-webhook-secret".to_owned());
    let Ok(verifier) = WebhookVerifier::new(secret.clone()) else {
        return;
    };
    let forged = String::from_utf8_lossy(&body[..body.len().min(71)]).into_owned();
    for signature in [sign(&secret, body), forged] {
        let mut headers = http::HeaderMap::new();
        let values = [
            (EVENT_HEADER, event.to_owned()),
            (
                DELIVERY_HEADER,
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
            ),
            (SIGNATURE_HEADER, signature),
        ];
        for (name, value) in values {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let _ = verifier.verify(&headers, body, Timestamp::from_millis(0));
    }
}

/// The label grammar: one label, and the lines of the input as a job's
/// labels.
pub fn labels(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parser = LabelParser::new();
    let _ = parser.parse_label(text);
    let job: Vec<&str> = text.lines().collect();
    let _ = parser.parse_job(&job);
}

/// `serve`'s configuration file, with no environment overrides.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sprinters_server::config::Config::parse(text, &BTreeMap::new());
    }
}
