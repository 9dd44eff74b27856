//! The engine's configuration.

use std::collections::HashMap;
use std::time::Duration;

use super::Tenants;
use crate::domain::InstanceType;

/// Concurrency limits: jobs over a limit wait their turn, never dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// At most this many jobs with live instances per AWS account.
    pub per_account: Option<usize>,
    /// At most this many per repository.
    pub per_repository: Option<usize>,
}

/// Capped exponential backoff with jitter, for transient launch errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// After this many failed attempts the job is Failed.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(120),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `failed + 1`: `base * 2^(failed-1)`, capped,
    /// with "equal jitter" (half fixed, half random) so that a burst of
    /// failures does not retry in lock-step. `retry_after` from the API wins
    /// when longer.
    pub fn delay(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let exp = failed.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exp).min(self.max);
        let half = ceiling / 2;
        let jitter =
            Duration::from_millis(rng.u64(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX)));
        (half + jitter).max(retry_after.unwrap_or_default())
    }
}

/// On-demand prices per hour, to estimate what a job cost.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    micros_per_hour: HashMap<String, u64>,
}

impl PriceTable {
    /// us-east-1 on-demand Linux prices of the default and common types.
    pub fn us_east_1() -> Self {
        let mut t = Self::default();
        for (ty, usd) in [
            ("t3.medium", 0.0416),
            ("t3.large", 0.0832),
            ("t3.xlarge", 0.1664),
            ("t4g.medium", 0.0336),
            ("t4g.large", 0.0672),
            ("t4g.xlarge", 0.1344),
            ("m7i.large", 0.1008),
            ("m7i.xlarge", 0.2016),
            ("m7i.2xlarge", 0.4032),
            ("m7i.24xlarge", 4.8384),
            ("c7g.large", 0.0725),
            ("c7g.xlarge", 0.145),
            ("c7g.2xlarge", 0.29),
            ("m8g.large", 0.0898),
            ("m8g.xlarge", 0.1795),
        ] {
            t.micros_per_hour
                .insert(ty.to_owned(), (usd * 1_000_000.0_f64).round() as u64);
        }
        t
    }

    /// Sets the hourly price of `instance_type` in millionths of a dollar.
    pub fn set(&mut self, instance_type: &InstanceType, micros_per_hour: u64) {
        self.micros_per_hour
            .insert(instance_type.as_str().to_owned(), micros_per_hour);
    }

    /// The hourly price, if known.
    pub fn hourly_micros(&self, instance_type: &InstanceType) -> Option<u64> {
        self.micros_per_hour.get(instance_type.as_str()).copied()
    }
}

/// How the engine behaves. [`EngineConfig::new`] gives production defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Tagged on every instance; the reconciler only touches instances
    /// carrying it. Shared by every replica of one deployment.
    pub controller_id: String,
    /// This replica's name in claims and leases; random by default.
    pub replica_id: String,
    /// The owners served and their accounts; shared with whoever changes
    /// them at run time.
    pub tenants: Tenants,
    /// Concurrency limits.
    pub limits: Limits,
    /// What a label may ask for unless its owner's policy says otherwise.
    pub policy: crate::policy::PlatformPolicy,
    /// How long a spare runner may idle before it is terminated.
    pub idle_grace: Duration,
    /// No instance lives longer than this.
    pub max_lifetime: Duration,
    /// A job waiting longer than this is checked with GitHub (lost webhooks).
    pub queued_timeout: Duration,
    /// An instance still pending this long after its launch never boots:
    /// it is terminated and its job launched again.
    pub boot_timeout: Duration,
    /// How long a launch claim lasts.
    pub claim_ttl: Duration,
    /// How long a `RunInstances` call cut short (its process killed, its
    /// client timed out) may still take effect at EC2: at most the AWS
    /// operation timeout. A resumed launch that finds no instance waits
    /// this long, once, and looks again before it replaces the earlier
    /// attempt's JIT runner; an instance landing meanwhile is adopted with
    /// its runner intact (replacing the runner would leave it running a
    /// config GitHub no longer knows).
    pub in_flight_window: Duration,
    /// Backoff for transient errors.
    pub retry: RetryPolicy,
    /// How often `run` reconciles.
    pub reconcile_interval: Duration,
    /// How long the reconciler's leadership lasts unless renewed. `run`
    /// renews it every third of this, so when the leading replica dies
    /// another takes over within this time.
    pub leader_ttl: Duration,
    /// How often `run` starts launches that are due (retries, recoveries).
    pub tick_interval: Duration,
    /// History older than this is purged.
    pub retention: Duration,
    /// How long a processed delivery's id is kept to recognise a duplicate:
    /// as long as GitHub can send it again. GitHub.com lists and redelivers
    /// the deliveries of the past 3 days, GitHub Enterprise Server those of
    /// the past 7 (docs.github.com, "Redelivering webhooks").
    pub delivery_window: Duration,
    /// GitHub calls a reconciliation pass may make per installation
    /// (checks of waiting and running jobs, listings of queued jobs); the
    /// rest wait for the next pass. Job checks go least recently asked
    /// first, and listings in a random order, so that none waits for ever.
    pub github_calls_per_pass: usize,
    /// Prices for cost estimates.
    pub prices: PriceTable,
    /// Spot prices are estimated as this fraction of on-demand.
    pub spot_price_ratio: f64,
    /// The GitHub runner group of JIT runners.
    pub runner_group_id: u64,
}

impl EngineConfig {
    /// Defaults for a deployment named `controller_id` serving `tenants`.
    pub fn new(controller_id: impl Into<String>, tenants: Tenants) -> Self {
        Self {
            controller_id: controller_id.into(),
            replica_id: format!("replica-{:016x}", fastrand::u64(..)),
            tenants,
            limits: Limits::default(),
            policy: crate::policy::PlatformPolicy::default(),
            idle_grace: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(6 * 3600 + 900),
            queued_timeout: Duration::from_secs(600),
            boot_timeout: Duration::from_secs(600),
            claim_ttl: Duration::from_secs(300),
            in_flight_window: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            reconcile_interval: Duration::from_secs(60),
            leader_ttl: Duration::from_secs(15),
            tick_interval: Duration::from_secs(1),
            retention: Duration::from_secs(90 * 24 * 3600),
            delivery_window: Duration::from_secs(7 * 24 * 3600),
            github_calls_per_pass: 30,
            prices: PriceTable::us_east_1(),
            spot_price_ratio: 0.35,
            runner_group_id: 1,
        }
    }

    /// Checks the settings that would make the engine misbehave.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::config(what.to_owned()));
        if self.controller_id.is_empty() || self.controller_id.len() > 64 {
            return bad("controller_id must be 1 to 64 characters");
        }
        if let Err(e) = self.policy.validate() {
            return Err(crate::Error::config(e));
        }
        if self.replica_id.is_empty() {
            return bad("replica_id must not be empty");
        }
        if self.retry.max_attempts == 0 || self.retry.base.is_zero() {
            return bad("retry.max_attempts and retry.base must be above zero");
        }
        if self.claim_ttl.is_zero()
            || self.boot_timeout.is_zero()
            || self.tick_interval.is_zero()
            || self.reconcile_interval.is_zero()
            || self.leader_ttl.is_zero()
        {
            return bad(
                "claim_ttl, boot_timeout, tick_interval, reconcile_interval and leader_ttl must be above zero",
            );
        }
        if self.delivery_window < Duration::from_secs(3 * 24 * 3600) {
            return bad(
                "delivery_window must be at least 3 days: GitHub redelivers deliveries of the past 3 days, and a redelivery of a forgotten id is processed again",
            );
        }
        if self.github_calls_per_pass == 0 {
            return bad("github_calls_per_pass must be at least 1");
        }
        if self.limits.per_account == Some(0) || self.limits.per_repository == Some(0) {
            return bad("a concurrency limit of 0 would queue every job forever; use at least 1");
        }
        if !(0.0..=1.0).contains(&self.spot_price_ratio) {
            return bad("spot_price_ratio must be between 0 and 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_half_of_it_random() {
        let policy = RetryPolicy {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_attempts: 10,
        };
        let mut rng = fastrand::Rng::with_seed(1);
        for (failed, ceiling) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (30, 60)] {
            for _ in 0..50 {
                let d = policy.delay(failed, None, &mut rng);
                let ceiling = Duration::from_secs(ceiling);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {failed}: {d:?}");
            }
        }
        let d = policy.delay(1, Some(Duration::from_secs(30)), &mut rng);
        assert_eq!(d, Duration::from_secs(30), "a longer Retry-After wins");
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let ok = EngineConfig::new("c", Tenants::new());
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.limits.per_account = Some(0);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("concurrency limit of 0")
        );
        let mut c = ok.clone();
        c.controller_id = String::new();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("controller_id")
        );
        let mut c = ok.clone();
        c.retry.max_attempts = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_attempts")
        );
        let mut c = ok;
        c.spot_price_ratio = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("spot_price_ratio")
        );
    }

    #[test]
    fn prices_estimate_known_types_only() {
        let prices = PriceTable::us_east_1();
        assert_eq!(
            prices.hourly_micros(&InstanceType::parse("t3.large").unwrap()),
            Some(83_200)
        );
        assert_eq!(
            prices.hourly_micros(&InstanceType::parse("x2iedn.metal").unwrap()),
            None
        );
    }
}
