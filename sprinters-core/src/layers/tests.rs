#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use super::*;
use crate::domain::{AccountId, Owner, OwnerId};
use crate::memory::{MemoryEventSource, MemoryJobStore};
use crate::observe::{EngineObserver, PortCall};
use crate::ports::{
    CredentialProvider, Credentials, CredentialsRequest, DynCredentialProvider, DynJobStore,
    JobStore, MockJobStore,
};
use crate::vault::{CredentialVault, MemoryVault};
use crate::{Error, ErrorKind};

fn request() -> CredentialsRequest {
    CredentialsRequest::new(
        AccountId::parse("123456789012").unwrap(),
        OwnerId::new(1),
        Owner::parse("octo-org").unwrap(),
    )
}

fn credentials() -> Credentials {
    Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: SecretString::from("secret"),
        session_token: None,
        expires_at: None,
    }
}

/// Never answers; says when its call is dropped.
#[derive(Debug, Default)]
struct Silent {
    dropped: Arc<AtomicBool>,
}

struct OnDrop(Arc<AtomicBool>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl CredentialProvider for Silent {
    async fn credentials(&self, _: CredentialsRequest) -> crate::Result<Credentials> {
        let _guard = OnDrop(self.dropped.clone());
        std::future::pending().await
    }
}

/// Answers after 10 ms, counting how many calls are inside at once.
#[derive(Debug, Default)]
struct Slow {
    inside: AtomicUsize,
    most: AtomicUsize,
}

#[async_trait]
impl CredentialProvider for Slow {
    async fn credentials(&self, _: CredentialsRequest) -> crate::Result<Credentials> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(credentials())
    }
}

#[tokio::test]
async fn layered_and_boxed_ports_pass_their_conformance_suites() {
    let boxed: Box<dyn JobStore> = Box::new(MemoryJobStore::default());
    let store: DynJobStore = Arc::new(boxed)
        .layer(TimeoutLayer::new(Duration::from_secs(60)))
        .layer(ConcurrencyLimitLayer::new(4))
        .layer(TraceLayer);
    crate::testing::job_store(&*store).await;

    let vault: Arc<dyn CredentialVault> = Arc::new(MemoryVault::default()).layer(TraceLayer);
    crate::testing::credential_vault(&*vault).await;

    let clock = Arc::new(crate::time::ManualClock::default());
    let source = Arc::new(MemoryEventSource::new(clock.clone()));
    let layered = source.clone().layer(TraceLayer);
    let harness = crate::testing::MemoryEventSourceHarness { source, clock };
    crate::testing::event_source(&*layered, &harness).await;
}

#[tokio::test]
async fn what_is_not_a_call_is_forwarded_as_it_is() {
    let mut mock = MockJobStore::new();
    mock.expect_is_shared().return_const(false);
    let store: DynJobStore = Arc::new(mock).layer(TraceLayer);
    assert!(!store.is_shared(), "a layer keeps the store's own answer");
    let arc: Arc<dyn JobStore> = Arc::new(store.clone());
    assert!(!arc.is_shared(), "so does Arc<T>");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_answers_fails_as_retryable_and_is_dropped() {
    let silent = Arc::new(Silent::default());
    let dropped = silent.dropped.clone();
    let provider: DynCredentialProvider = silent.layer(TimeoutLayer::new(Duration::from_secs(30)));
    let err = provider.credentials(request()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Unavailable);
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("credentials credentials did not answer within 30s"),
        "the error names the call and the bound: {err}"
    );
    assert!(dropped.load(Ordering::SeqCst), "the call was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_lets_that_many_calls_in_at_once() {
    let slow = Arc::new(Slow::default());
    let provider: DynCredentialProvider = slow.clone().layer(ConcurrencyLimitLayer::new(3));
    let calls = (0..8).map(|_| provider.credentials(request()));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(slow.most.load(Ordering::SeqCst), 3);

    // Without the limit, all eight are inside at once: the check can fail.
    let unlimited = Arc::new(Slow::default());
    let calls = (0..8).map(|_| unlimited.credentials(request()));
    futures::future::join_all(calls).await;
    assert_eq!(unlimited.most.load(Ordering::SeqCst), 8);
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(Api, &'static str, Option<String>)>>);

impl EngineObserver for Recorder {
    fn port_call(&self, call: &PortCall<'_>) {
        let kind = call.error.map(|e| e.kind().as_str().to_owned());
        self.0
            .lock()
            .unwrap()
            .push((call.api, call.operation, kind));
    }
}

#[tokio::test]
async fn the_observe_layer_tells_each_call_and_its_error() {
    let recorder = Arc::new(Recorder::default());
    let store: DynJobStore =
        Arc::new(MemoryJobStore::default()).layer(ObserveLayer::new(recorder.clone()));
    let key = crate::domain::JobKey::new(
        crate::domain::JobId::new(1),
        crate::domain::RunAttempt::new(1).unwrap(),
    );
    assert!(store.get_job(key).await.unwrap().is_none());
    let record = crate::testing::sample_record(1, "octo-org/app", 0);
    let create = crate::ports::PutJob::create(record);
    store.put_job(create.clone()).await.unwrap();
    let err = store.put_job(create).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Conflict);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            (Api::Store, "get_job", None),
            (Api::Store, "put_job", None),
            (Api::Store, "put_job", Some("conflict".to_owned())),
        ]
    );
}

/// Collects the `port` spans' fields.
#[derive(Debug, Default, Clone)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!(" {}={}", field.name(), value));
            }
        }
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test]
async fn the_trace_layer_runs_each_call_in_a_span_naming_it() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let _default = tracing::subscriber::set_default(subscriber);
    let failing = Arc::new(Silent::default());
    let provider: DynCredentialProvider = failing
        .layer(TimeoutLayer::new(Duration::from_millis(1)))
        .layer(TraceLayer);
    let err: Error = provider.credentials(request()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Unavailable);
    assert_eq!(
        *spans.0.lock().unwrap(),
        vec!["port api=credentials operation=credentials".to_owned()]
    );
}
