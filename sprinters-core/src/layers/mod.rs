//! Layers: behaviour wrapped around any port without touching it, as
//! OpenDAL's layers and `tower`'s wrap a service.
//!
//! A [`Layer`] sees each call of a port as a [`Call`] (which port, which
//! operation) and the call's future; it may time it, bound it, limit it or
//! trace it. [`LayerExt::layer`] wraps a port in one, and the result is
//! the same port again, so layers stack:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sprinters_core::layers::{ConcurrencyLimitLayer, LayerExt, TimeoutLayer, TraceLayer};
//! use sprinters_core::memory::MemoryJobStore;
//! use sprinters_core::ports::DynJobStore;
//!
//! let store: DynJobStore = Arc::new(MemoryJobStore::default())
//!     .layer(TimeoutLayer::new(Duration::from_secs(5)))
//!     .layer(ConcurrencyLimitLayer::new(32))
//!     .layer(TraceLayer);
//! # let _ = store;
//! ```
//!
//! The stock layers:
//!
//! | layer | what it does to every call |
//! |---|---|
//! | [`ObserveLayer`] | tells an [`EngineObserver`](crate::observe::EngineObserver) its port, operation, duration and error (the engine's metrics) |
//! | [`TimeoutLayer`] | fails it as [`Unavailable`](crate::ErrorKind::Unavailable) (retryable) when it has not answered in time, dropping it |
//! | [`ConcurrencyLimitLayer`] | lets at most N calls through the wrapped port at once; the rest wait their turn |
//! | [`TraceLayer`] | runs it in a `tracing` span named `port` with `api` and `operation` fields |
//!
//! Every port (the five of [`crate::ports`] and the
//! [`CredentialVault`](crate::vault::CredentialVault)) is also implemented
//! for `Arc<T>` and `Box<T>` of an implementation, so a shared or boxed
//! adapter can be handed wherever a port is expected.
//!
//! # Writing a layer
//!
//! A layer is a [`Layer`]: one method that takes the call's future and
//! returns one that awaits it. This one counts failed calls per port:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use futures::future::BoxFuture;
//! use sprinters_core::Result;
//! use sprinters_core::layers::{Call, Layer};
//!
//! #[derive(Debug, Default)]
//! struct CountFailures(AtomicU64);
//!
//! impl Layer for CountFailures {
//!     fn wrap<'a, T: Send + 'a>(
//!         &'a self,
//!         _call: Call,
//!         inner: BoxFuture<'a, Result<T>>,
//!     ) -> BoxFuture<'a, Result<T>> {
//!         Box::pin(async move {
//!             let result = inner.await;
//!             if result.is_err() {
//!                 self.0.fetch_add(1, Ordering::Relaxed);
//!             }
//!             result
//!         })
//!     }
//! }
//! ```
//!
//! A layer's future may be dropped at any await (a timeout above it, a
//! client that hung up): it must hold nothing that a drop leaves half done.

mod ports;
mod stock;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use crate::observe::Api;
pub use stock::{ConcurrencyLimitLayer, ObserveLayer, TimeoutLayer, TraceLayer};

use crate::Result;

/// One call of a port, as a layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Call {
    /// The port.
    pub api: Api,
    /// The trait method, e.g. `put_job`.
    pub operation: &'static str,
}

impl Call {
    /// The call of `operation` on `api`.
    pub const fn new(api: Api, operation: &'static str) -> Self {
        Self { api, operation }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.api.as_str(), self.operation)
    }
}

/// Behaviour around every call of a port: see the [module](self).
pub trait Layer: Send + Sync + fmt::Debug + 'static {
    /// The future of `call`, wrapped. It must await `inner` at most once,
    /// and return what it returned or an error of its own.
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>>;
}

/// A shared layer: one instance around several ports (one call log, one
/// concurrency limit for all of them).
impl<L: Layer> Layer for Arc<L> {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        (**self).wrap(call, inner)
    }
}

/// A port `P` wrapped in the layer `L`: it implements `P`'s trait, each
/// call going through the layer, and forwards what is not a call
/// ([`JobStore::is_shared`](crate::ports::JobStore::is_shared)) as it is.
pub struct Layered<P: ?Sized, L> {
    inner: Arc<P>,
    layer: L,
}

impl<P: ?Sized, L> Layered<P, L> {
    /// `inner` wrapped in `layer`.
    pub fn new(inner: Arc<P>, layer: L) -> Self {
        Self { inner, layer }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &Arc<P> {
        &self.inner
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }
}

impl<P: ?Sized + fmt::Debug, L: fmt::Debug> fmt::Debug for Layered<P, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layered")
            .field("layer", &self.layer)
            .field("inner", &self.inner)
            .finish()
    }
}

/// `.layer(...)` on a shared port.
pub trait LayerExt<P: ?Sized> {
    /// This port wrapped in `layer`: the same port again, so calls stack
    /// (the last layer added sees a call first).
    fn layer<L: Layer>(self, layer: L) -> Arc<Layered<P, L>>;
}

impl<P: ?Sized> LayerExt<P> for Arc<P> {
    fn layer<L: Layer>(self, layer: L) -> Arc<Layered<P, L>> {
        Arc::new(Layered::new(self, layer))
    }
}

#[cfg(test)]
mod tests;
