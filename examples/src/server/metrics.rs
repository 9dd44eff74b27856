//! Prometheus metrics in the text exposition format, without a registry
//! crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The control plane's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    webhooks: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    /// Counts a webhook request by event and outcome (HTTP status class).
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
            "workflow_job" | "installation" | "installation_repositories" | "ping" => event,
            _ => "other",
        };
        let mut map = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((event.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// The text exposition, with `jobs` (state → count) as a gauge and
    /// the store's sync count.
    pub fn render(&self, jobs: &BTreeMap<String, u64>, store_syncs: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP sprinters_webhooks_total Webhook requests by event and outcome."
        );
        let _ = writeln!(out, "# TYPE sprinters_webhooks_total counter");
        for ((event, outcome), n) in self
            .webhooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "sprinters_webhooks_total{{event=\"{event}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sprinters_jobs Jobs in the recent history by state."
        );
        let _ = writeln!(out, "# TYPE sprinters_jobs gauge");
        for (state, n) in jobs {
            let _ = writeln!(out, "sprinters_jobs{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sprinters_store_syncs_total Durable syncs of the store (group commits)."
        );
        let _ = writeln!(out, "# TYPE sprinters_store_syncs_total counter");
        let _ = writeln!(out, "sprinters_store_syncs_total {store_syncs}");
        out
    }
}
