//! [`DeliveryRecovery`]: webhooks GitHub failed to deliver, delivered
//! again.
//!
//! GitHub keeps a log of the App's webhook deliveries for a few days. A
//! control plane that was down, unreachable or answered 5xx missed those
//! events; GitHub does not retry them on its own. Every few minutes this
//! reads the log back to where the last pass started, and asks GitHub to
//! redeliver each delivery none of whose attempts succeeded. A pass reads
//! the whole window, page after page, and the next one starts only past
//! what was redelivered or found delivered: a pass that hit its cap of
//! redeliveries, or failed, leaves the rest to the next. Redelivered
//! events carry their original delivery id, so the engine's
//! de-duplication makes a redelivery of something already handled
//! harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use sprinters_core::Result;
use sprinters_core::time::{Clock, Timestamp};

use crate::app::GithubApp;

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Delivery attempts read from the log.
    pub scanned: usize,
    /// Deliveries with no successful attempt.
    pub failed: usize,
    /// Redeliveries GitHub accepted.
    pub redelivered: usize,
    /// Failed deliveries left for the next pass (over the cap, or after a
    /// redelivery that failed and will be retried).
    pub left: usize,
    /// Redeliveries GitHub refused for good (passed over, logged).
    pub skipped: usize,
    /// Where the next pass starts: this pass's start; or the first failed
    /// delivery it left; or, when the log was longer than one pass reads,
    /// where this pass started reading back to.
    pub resume_from: Timestamp,
}

#[derive(Deserialize)]
struct LoggedDelivery {
    id: u64,
    guid: String,
    delivered_at: Option<String>,
    status_code: Option<u16>,
}

/// Redelivers what GitHub failed to deliver.
#[derive(Debug)]
pub struct DeliveryRecovery {
    app: Arc<GithubApp>,
    clock: Arc<dyn Clock>,
    max_redeliveries: usize,
}

/// A pass stops reading the log after this many pages (100 deliveries
/// each) and fails rather than skip what it did not read.
const MAX_PAGES: usize = 1000;

impl DeliveryRecovery {
    /// Recovery for `app`, at most 50 redeliveries per pass (the oldest
    /// first; the rest in the next pass).
    pub fn new(app: Arc<GithubApp>, clock: Arc<dyn Clock>) -> Self {
        Self {
            app,
            clock,
            max_redeliveries: 50,
        }
    }

    /// Caps the redeliveries of one pass (GitHub limits them too).
    pub fn max_redeliveries(mut self, n: usize) -> Self {
        self.max_redeliveries = n;
        self
    }

    /// One pass over the deliveries made since `since`: every page back
    /// to it, then the failed deliveries redelivered, oldest first, up to
    /// the cap. A redelivery GitHub refuses for good (too old, gone) is
    /// logged and passed over; a retryable failure stops the pass there,
    /// and the next starts from that delivery. Reading the log failing
    /// fails the pass: the next starts from the same point.
    pub async fn recover_since(&self, since: Timestamp) -> Result<RecoveryReport> {
        let started = self.clock.now();
        let mut scanned = 0;
        // guid -> (succeeded, latest attempt id, first attempt's time)
        let mut by_guid: HashMap<String, (bool, u64, Timestamp)> = HashMap::new();
        let mut path = "/app/hook/deliveries?per_page=100".to_owned();
        let mut pages = 0;
        let mut read_all = true;
        loop {
            pages += 1;
            if pages > MAX_PAGES {
                // What was read (the newest) is redelivered; the checkpoint
                // stays where it was, short of what was not read.
                tracing::warn!(
                    pages = MAX_PAGES,
                    "the webhook delivery log is longer than one pass reads; the rest waits"
                );
                read_all = false;
                break;
            }
            let reply = self.app.as_app(Method::GET, &path, None).await?;
            let page: Vec<LoggedDelivery> = reply.json("the webhook delivery log")?;
            let mut reached_since = page.is_empty();
            for d in page {
                let at = d
                    .delivered_at
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .map(Timestamp::from_system_time);
                if at.is_some_and(|at| at < since) {
                    // Newest first: everything after this is older.
                    reached_since = true;
                    continue;
                }
                scanned += 1;
                let at = at.unwrap_or(started);
                let ok = d.status_code.is_some_and(|s| (200..300).contains(&s));
                let entry = by_guid.entry(d.guid).or_insert((false, d.id, at));
                entry.0 |= ok;
                entry.1 = entry.1.max(d.id);
                entry.2 = entry.2.min(at);
            }
            match next_page(&reply.headers) {
                Some(next) if !reached_since => path = next,
                _ => break,
            }
        }
        let mut failed: Vec<(Timestamp, u64)> = by_guid
            .values()
            .filter(|(ok, _, _)| !ok)
            .map(|(_, id, at)| (*at, *id))
            .collect();
        failed.sort_unstable();
        let mut report = RecoveryReport {
            scanned,
            failed: failed.len(),
            redelivered: 0,
            left: failed.len().saturating_sub(self.max_redeliveries),
            skipped: 0,
            resume_from: if read_all { started } else { since },
        };
        if let Some((first_left, _)) = failed.get(self.max_redeliveries) {
            report.resume_from = report.resume_from.min(*first_left);
        }
        for (at, id) in failed.into_iter().take(self.max_redeliveries) {
            let asked = self
                .app
                .as_app(
                    Method::POST,
                    &format!("/app/hook/deliveries/{id}/attempts"),
                    None,
                )
                .await;
            match asked {
                Ok(_) => report.redelivered += 1,
                Err(e) if e.is_retryable() => {
                    // Stopped here: this one and the rest in the next pass.
                    tracing::warn!(error = %e, "a redelivery failed; the next pass retries it");
                    report.left = report.failed - report.redelivered - report.skipped;
                    report.resume_from = report.resume_from.min(at);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, delivery = id, "GitHub refused a redelivery; passed over");
                    report.skipped += 1;
                }
            }
        }
        if report.failed > 0 {
            tracing::info!(
                failed = report.failed,
                redelivered = report.redelivered,
                left = report.left,
                "asked GitHub to redeliver failed webhooks"
            );
        }
        Ok(report)
    }

    /// Runs a pass every `every` until `shutdown` resolves. The first pass
    /// looks back `lookback`; each later one back to where the previous
    /// one left off ([`RecoveryReport::resume_from`]), with a minute of
    /// overlap. A failed pass is logged and
    /// retried at the next tick.
    pub async fn run(
        &self,
        every: Duration,
        lookback: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut since = self.clock.now().saturating_sub(lookback);
        let passes = async {
            loop {
                match self.recover_since(since).await {
                    Ok(report) => {
                        since = report.resume_from.saturating_sub(Duration::from_secs(60))
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook recovery pass failed"),
                }
                self.clock.sleep(every).await;
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = passes => {}
        }
    }
}

/// The `rel="next"` URL of a `Link` header, as a path and query.
fn next_page(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        if !rel.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let uri: http::Uri = url.parse().ok()?;
        uri.path_and_query().map(|p| p.as_str().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::LINK,
            http::HeaderValue::from_static(
                "<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967>; rel=\"next\", <https://api.github.com/app/hook/deliveries?per_page=100>; rel=\"first\"",
            ),
        );
        assert_eq!(
            next_page(&headers).as_deref(),
            Some("/app/hook/deliveries?per_page=100&cursor=v1_12077215967")
        );
        assert_eq!(next_page(&http::HeaderMap::new()), None);
    }
}
