//! A layer of your own around the ports: a call log that keeps, for every
//! call the engine makes to GitHub, STS, EC2 and the store, what it was,
//! how long it took and whether it failed. Stacked with a stock layer (a
//! timeout) the same way.
//!
//! ```sh
//! cargo run -p sprinters-embedding --bin custom-layer
//! ```
#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sprinters_core::Result;
use sprinters_core::layers::{Call, Layer, LayerExt, TimeoutLayer};
use sprinters_embedding::{engine_over, memory_ports, queued_job};

/// Every call seen: what, how long, and its error kind if it failed.
#[derive(Debug, Default)]
struct CallLog {
    calls: Mutex<Vec<(Call, Duration, Option<&'static str>)>>,
}

impl Layer for CallLog {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        call: Call,
        inner: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = inner.await;
            let error = result.as_ref().err().map(|e| e.kind().as_str());
            // Never held across an await: the lock guards one push.
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.push((call, started.elapsed(), error));
            result
        })
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let log = Arc::new(CallLog::default());
    let timeout = TimeoutLayer::new(Duration::from_secs(10));
    let mut ports = memory_ports();
    // One log around every port; the timeout inside it, so the log sees
    // a call that timed out as failed.
    ports.registry = ports.registry.layer(timeout).layer(log.clone());
    ports.credentials = ports.credentials.layer(timeout).layer(log.clone());
    ports.launcher = ports.launcher.layer(timeout).layer(log.clone());
    ports.store = ports.store.layer(timeout).layer(log.clone());
    let engine = engine_over(ports)?.build()?;

    engine.handle(queued_job(1)?).await?;
    engine.drain().await;

    let calls = log.calls.lock().unwrap_or_else(|e| e.into_inner());
    for (call, took, error) in calls.iter() {
        let outcome = error.unwrap_or("ok");
        println!(
            "{:<32} {:>9.3} ms  {outcome}",
            call.to_string(),
            took.as_secs_f64() * 1e3
        );
    }
    let launches = calls
        .iter()
        .filter(|(c, _, _)| c.operation == "launch")
        .count();
    println!("{} calls, {launches} launch", calls.len());
    Ok(())
}
