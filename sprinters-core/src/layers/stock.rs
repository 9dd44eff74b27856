//! The stock layers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{Call, Layer};
use crate::observe::{EngineObserver, PortCall};
use crate::{Error, Result};

/// Tells an [`EngineObserver`] of every call: its port, operation, how
/// long it took and its error. The engine wraps each of its ports in one
/// when it is given an observer. A call dropped before it answered is not
/// told (it has no outcome).
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    observer: Arc<dyn EngineObserver>,
}

impl ObserveLayer {
    /// Calls told to `observer`.
    pub fn new(observer: Arc<dyn EngineObserver>) -> Self {
        Self { observer }
    }
}

impl Layer for ObserveLayer {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = inner.await;
            self.observer.port_call(&PortCall {
                api: call.api,
                operation: call.operation,
                elapsed: started.elapsed(),
                error: result.as_ref().err(),
            });
            result
        })
    }
}

/// Fails a call that has not answered within its bound as
/// [`Unavailable`](crate::ErrorKind::Unavailable), which the engine retries,
/// and drops it: nothing waits on a service that never answers. The ports
/// of the SDK's adapters in use (SQLite, PostgreSQL, GitHub, AWS) may be
/// dropped at any await without leaving state half done. Not for [`EventSource::poll`](crate::ports::EventSource::poll),
/// which waits for work by design: wrap a source's adapter calls inside it
/// instead.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Each call bounded by `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl Layer for TimeoutLayer {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, inner).await {
                Ok(result) => result,
                Err(_) => Err(Error::unavailable(format!(
                    "{call} did not answer within {}",
                    humantime::format_duration(self.timeout)
                ))),
            }
        })
    }
}

/// At most `max` calls through the wrapped port at once; the others wait
/// in turn (first come, first served). A waiting call that is dropped
/// gives up its place; one dropped while running gives its permit back.
///
/// The limit knows no tenant: one owner's burst waits ahead of another's.
/// Clones share one limit; one limit shared by ports that call each other
/// can deadlock, and a long poll holds its permit while it waits.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `max` calls at once (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

impl Layer for ConcurrencyLimitLayer {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let _permit = self.permits.acquire().await.map_err(|_| {
                // The semaphore is never closed; said rather than unwrapped.
                Error::unavailable(format!("{call}: the concurrency limit was closed"))
            })?;
            inner.await
        })
    }
}

/// Runs every call in a `tracing` span `port` with the fields `api` and
/// `operation`, and logs a failed call at debug level with its error's
/// kind. The SDK's adapters put no secret in an error (their tests check
/// it); an adapter of your own must keep to that before it is traced.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl Layer for TraceLayer {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let span =
            tracing::debug_span!("port", api = call.api.as_str(), operation = call.operation);
        Box::pin(
            async move {
                let result = inner.await;
                if let Err(e) = &result {
                    tracing::debug!(kind = e.kind().as_str(), error = %e, "port call failed");
                }
                result
            }
            .instrument(span),
        )
    }
}
