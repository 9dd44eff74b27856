//! [`AwsClientConfig`]: what every EC2 and STS client of this crate shares.
//!
//! One place sets the endpoint (an emulator or a VPC endpoint), the
//! retries (the SDK's own standard retry: the engine does not stack a
//! second one on top), the timeouts and any interceptors. Clients are built
//! from it per account and region, with that account's credentials.

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ec2::config::{BehaviorVersion, Region as SdkRegion, SharedHttpClient};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use secrecy::ExposeSecret;
use sprinters_core::domain::Region;
use sprinters_core::ports::Credentials;
use sprinters_core::{Error, Result};

/// The environment variable [`AwsClientConfig::from_env`] reads the
/// endpoint from (for an emulator such as moto, or a private endpoint).
pub const ENDPOINT_ENV: &str = "SPRINTERS_AWS_ENDPOINT";

/// Settings shared by every AWS client: endpoint, retries, timeouts,
/// interceptors.
#[derive(Debug, Clone)]
pub struct AwsClientConfig {
    endpoint_url: Option<String>,
    max_attempts: u32,
    operation_timeout: Duration,
    connect_timeout: Duration,
    http_client: Option<SharedHttpClient>,
    interceptors: Vec<SharedInterceptor>,
}

impl Default for AwsClientConfig {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            max_attempts: 3,
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(3),
            http_client: None,
            interceptors: Vec::new(),
        }
    }
}

impl AwsClientConfig {
    /// AWS's own endpoints, 3 attempts (the SDK's standard retry with
    /// backoff and jitter), 30 s per operation, 3 s to connect.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, with the endpoint from `SPRINTERS_AWS_ENDPOINT` when it
    /// is set. A value that is not an `http(s)://` URL is a `Config` error.
    pub fn from_env() -> Result<Self> {
        match std::env::var(ENDPOINT_ENV) {
            Ok(url) if !url.is_empty() => Self::new().endpoint_url(url),
            _ => Ok(Self::new()),
        }
    }

    /// Sends every call to `url` instead of AWS (an emulator, a proxy).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(Error::config(format!(
                "AWS endpoint {url:?} is not a URL; expected http://host:port or https://host"
            )));
        }
        self.endpoint_url = Some(url);
        Ok(self)
    }

    /// The endpoint override, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// Attempts per call, first included (1 disables retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The most one call may take, retries included.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The HTTP client (connection pool) of every client built from this.
    pub fn http_client(mut self, client: SharedHttpClient) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Adds an interceptor to every client (metrics, tracing, tests).
    pub fn interceptor(mut self, interceptor: SharedInterceptor) -> Self {
        self.interceptors.push(interceptor);
        self
    }

    /// An EC2 client for `region` acting with `credentials`.
    pub fn ec2(&self, region: &Region, credentials: &Credentials) -> aws_sdk_ec2::Client {
        let mut builder = aws_sdk_ec2::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(SdkRegion::new(region.as_str().to_owned()))
            .credentials_provider(SharedCredentialsProvider::new(sdk_credentials(credentials)))
            .retry_config(self.retry())
            .timeout_config(self.timeouts());
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(http) = &self.http_client {
            builder = builder.http_client(http.clone());
        }
        for interceptor in &self.interceptors {
            builder.push_interceptor(interceptor.clone());
        }
        aws_sdk_ec2::Client::from_conf(builder.build())
    }

    /// An STS client for `region` acting with the platform's own
    /// credentials.
    pub fn sts(
        &self,
        region: &Region,
        credentials: SharedCredentialsProvider,
    ) -> aws_sdk_sts::Client {
        let mut builder = aws_sdk_sts::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new(region.as_str().to_owned()))
            .credentials_provider(credentials)
            .retry_config(self.retry())
            .timeout_config(self.timeouts());
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(http) = &self.http_client {
            builder = builder.http_client(http.clone());
        }
        for interceptor in &self.interceptors {
            builder.push_interceptor(interceptor.clone());
        }
        aws_sdk_sts::Client::from_conf(builder.build())
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig::standard().with_max_attempts(self.max_attempts)
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_timeout(self.operation_timeout)
            .connect_timeout(self.connect_timeout)
            .build()
    }
}

/// Our credentials as the SDK's. The SDK's type redacts its secrets in
/// `Debug` too.
pub(crate) fn sdk_credentials(credentials: &Credentials) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret().to_owned(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        credentials.expires_at.map(|t| t.to_system_time()),
        "sprinters",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_must_be_a_url() {
        let err = AwsClientConfig::new()
            .endpoint_url("localhost:5000")
            .unwrap_err();
        assert_eq!(*err.kind(), sprinters_core::ErrorKind::Config);
        assert!(err.message().contains("localhost:5000"), "{err}");
        let ok = AwsClientConfig::new()
            .endpoint_url("http://127.0.0.1:5000")
            .unwrap();
        assert_eq!(ok.endpoint(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn at_least_one_attempt() {
        let config = AwsClientConfig::new().max_attempts(0);
        assert_eq!(config.retry().max_attempts(), 1);
    }
}
