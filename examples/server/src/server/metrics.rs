//! Prometheus metrics in the text exposition format, without a registry
//! crate: the control plane's counters are few and fixed. Kept as the
//! engine works: a scrape reads no record.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sprinters_webhooks_total` | counter | `event`, `outcome` |
//! | `sprinters_jobs` | gauge | `state`: the active jobs, as the leading replica's last reconciliation pass counted them (the others leave it out) |
//! | `sprinters_job_state_changes_total` | counter | `state`: jobs this replica wrote into the state (sum over replicas) |
//! | `sprinters_webhook_to_launch_seconds` | histogram | |
//! | `sprinters_instances_terminated_total` | counter | `reason` |
//! | `sprinters_api_calls_total` | counter | `api` (`registry`, `credentials`, `launcher`, `store`, `events`), `operation` |
//! | `sprinters_api_call_seconds_total` | counter | `api`, `operation`: time spent in those calls |
//! | `sprinters_api_errors_total` | counter | `api`, `operation`, `kind` (not the store's `conflict` and `duplicate`: those are answers, a lost compare-and-swap, a delivery seen before) |
//! | `sprinters_store_syncs_total` | counter | |
//! | `sprinters_store_sync_seconds` | histogram | |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use sprinters_core::job::JobState;
use sprinters_core::observe::{EngineObserver, InstanceEnded, Launching, PortCall};
use sprinters_store::SyncLatency;

use super::PlaneStore;

/// Bucket bounds of the webhook-to-launch histogram, in seconds.
const LAUNCH_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The control plane's metrics; the engine's observer.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    webhooks: BTreeMap<(&'static str, &'static str), u64>,
    terminated: BTreeMap<&'static str, u64>,
    api_calls: BTreeMap<(&'static str, &'static str), u64>,
    api_seconds: BTreeMap<(&'static str, &'static str), Duration>,
    api_errors: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    // Per bucket (not cumulative), one more for +Inf; and the sum.
    launch_buckets: [u64; LAUNCH_BOUNDS.len() + 1],
    launch_sum: Duration,
    state_changes: BTreeMap<&'static str, u64>,
    // The leading replica's last count of active jobs by state.
    active: BTreeMap<&'static str, u64>,
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a webhook request by event and outcome (from its status).
    pub fn webhook(&self, event: &str, status: u16) {
        let outcome = match status {
            202 => "accepted",
            200..=299 => "ignored",
            401 => "bad_signature",
            413 => "too_large",
            400..=499 => "malformed",
            _ => "failed",
        };
        // Event names come from the request: keep the label set small.
        let event = match event {
            "workflow_job" => "workflow_job",
            "installation" => "installation",
            "installation_repositories" => "installation_repositories",
            "ping" => "ping",
            _ => "other",
        };
        *self
            .counters()
            .webhooks
            .entry((event, outcome))
            .or_default() += 1;
    }

    /// The text exposition, with the store's sync figures.
    pub fn render(&self, store: &PlaneStore) -> String {
        let c = self.counters();
        let mut out = String::new();
        family(
            &mut out,
            "sprinters_webhooks_total",
            "counter",
            "Webhook requests by event and outcome.",
        );
        for ((event, outcome), n) in &c.webhooks {
            let _ = writeln!(
                out,
                "sprinters_webhooks_total{{event=\"{event}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        family(
            &mut out,
            "sprinters_jobs",
            "gauge",
            "Active jobs by state, as the leading replica last counted them.",
        );
        for (state, n) in &c.active {
            let _ = writeln!(out, "sprinters_jobs{{state=\"{state}\"}} {n}");
        }
        family(
            &mut out,
            "sprinters_job_state_changes_total",
            "counter",
            "Jobs this replica wrote into each state.",
        );
        for (state, n) in &c.state_changes {
            let _ = writeln!(
                out,
                "sprinters_job_state_changes_total{{state=\"{state}\"}} {n}"
            );
        }
        family(
            &mut out,
            "sprinters_webhook_to_launch_seconds",
            "histogram",
            "From a job's queued webhook being taken in to RunInstances being called.",
        );
        let mut total = 0;
        for (i, n) in c.launch_buckets.iter().enumerate() {
            total += n;
            let le = LAUNCH_BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "sprinters_webhook_to_launch_seconds_bucket{{le=\"{le}\"}} {total}"
            );
        }
        let _ = writeln!(
            out,
            "sprinters_webhook_to_launch_seconds_sum {}",
            c.launch_sum.as_secs_f64()
        );
        let _ = writeln!(out, "sprinters_webhook_to_launch_seconds_count {total}");
        family(
            &mut out,
            "sprinters_instances_terminated_total",
            "counter",
            "Instances the control plane ended, by reason.",
        );
        for (reason, n) in &c.terminated {
            let _ = writeln!(
                out,
                "sprinters_instances_terminated_total{{reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "sprinters_api_calls_total",
            "counter",
            "Calls to GitHub (registry), credentials, EC2 (launcher), the store and the event source.",
        );
        for ((api, operation), n) in &c.api_calls {
            let _ = writeln!(
                out,
                "sprinters_api_calls_total{{api=\"{api}\",operation=\"{operation}\"}} {n}"
            );
        }
        family(
            &mut out,
            "sprinters_api_call_seconds_total",
            "counter",
            "Seconds spent in those calls, answered or failed.",
        );
        for ((api, operation), spent) in &c.api_seconds {
            let _ = writeln!(
                out,
                "sprinters_api_call_seconds_total{{api=\"{api}\",operation=\"{operation}\"}} {}",
                spent.as_secs_f64()
            );
        }
        family(
            &mut out,
            "sprinters_api_errors_total",
            "counter",
            "Failed API calls by API, operation and error kind.",
        );
        for ((api, operation, kind), n) in &c.api_errors {
            let _ = writeln!(
                out,
                "sprinters_api_errors_total{{api=\"{api}\",operation=\"{operation}\",kind=\"{kind}\"}} {n}"
            );
        }
        match store {
            PlaneStore::Embedded(embedded) => {
                store_syncs(&mut out, embedded.syncs(), &embedded.sync_latency())
            }
            PlaneStore::Postgres(db) => {
                family(
                    &mut out,
                    "sprinters_store_round_trips_total",
                    "counter",
                    "Statements sent to PostgreSQL by this replica.",
                );
                let _ = writeln!(
                    out,
                    "sprinters_store_round_trips_total {}",
                    db.round_trips()
                );
            }
        }
        out
    }
}

fn store_syncs(out: &mut String, store_syncs: u64, sync_latency: &SyncLatency) {
    family(
        out,
        "sprinters_store_syncs_total",
        "counter",
        "Transactions the embedded store committed (group commits: one for many writes).",
    );
    let _ = writeln!(out, "sprinters_store_syncs_total {store_syncs}");
    family(
        out,
        "sprinters_store_sync_seconds",
        "histogram",
        "One group commit, from its BEGIN to the synced COMMIT (its writes' SQL and sealing included).",
    );
    for (bound, n) in sync_latency.buckets() {
        let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.as_secs_f64().to_string());
        let _ = writeln!(
            out,
            "sprinters_store_sync_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "sprinters_store_sync_seconds_sum {}",
        sync_latency.sum().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "sprinters_store_sync_seconds_count {}",
        sync_latency.count()
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl EngineObserver for Metrics {
    fn launching(&self, event: &Launching) {
        // A job's first launch: replacements wait on a lost runner, not on
        // the control plane.
        if event.launch_number != 1 {
            return;
        }
        let seconds = event.since_queued.as_secs_f64();
        let bucket = LAUNCH_BOUNDS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LAUNCH_BOUNDS.len());
        let mut c = self.counters();
        c.launch_buckets[bucket] += 1;
        c.launch_sum += event.since_queued;
    }

    fn instance_ended(&self, event: &InstanceEnded) {
        *self
            .counters()
            .terminated
            .entry(event.reason.as_str())
            .or_default() += 1;
    }

    fn job_state_changed(&self, _from: Option<JobState>, to: JobState) {
        *self
            .counters()
            .state_changes
            .entry(to.as_str())
            .or_default() += 1;
    }

    fn active_jobs(&self, by_state: &BTreeMap<JobState, u64>) {
        self.counters().active = by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    }

    fn port_call(&self, call: &PortCall<'_>) {
        let mut c = self.counters();
        let api = call.api.as_str();
        *c.api_calls.entry((api, call.operation)).or_default() += 1;
        *c.api_seconds.entry((api, call.operation)).or_default() += call.elapsed;
        // A store's conflict (a lost compare-and-swap) and duplicate (a
        // delivery seen before) are answers, not failures.
        let answer = call.api == sprinters_core::observe::Api::Store
            && call.error.is_some_and(|e| {
                matches!(
                    e.kind(),
                    sprinters_core::ErrorKind::Conflict | sprinters_core::ErrorKind::Duplicate
                )
            });
        if let Some(error) = call.error.filter(|_| !answer) {
            *c.api_errors
                .entry((api, call.operation, error.kind().as_str()))
                .or_default() += 1;
        }
    }
}
