//! AWS errors mapped to the core kinds at the boundary, source kept.
//!
//! The SDK has already retried what it retries (throttling, 5xx, timeouts)
//! by the time an error gets here; the kind decides what the engine does
//! next: back off, fall back to on-demand, or fail the job with a message a
//! person can act on.

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use sprinters_core::{Error, ErrorKind};

/// Error codes AWS uses for throttling.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Error codes that mean "no capacity for this launch right now": the
/// engine falls back to on-demand (spot=auto) or fails the job.
const CAPACITY: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
];

/// Capacity codes of one zone ("We currently do not have sufficient
/// capacity in the Availability Zone you requested", EC2's error codes
/// reference): another zone of the region may have it.
const ZONE_SHORTAGE: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacity",
];

/// Capacity codes of an account quota: no zone helps, and waiting does not
/// either; the customer must ask AWS for more.
const QUOTA: &[&str] = &[
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "MaxSpotInstanceCountExceeded",
];

/// Whether `code` is a shortage of one zone, which another may not share.
pub(crate) fn is_zone_shortage(code: &str) -> bool {
    ZONE_SHORTAGE.contains(&code)
}

/// Error codes of a permission the caller lacks.
const PERMISSION: &[&str] = &[
    "UnauthorizedOperation",
    "AuthFailure",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "OptInRequired",
    "Blocked",
];

/// Error codes of something wrong in what was asked for: a label or a
/// configuration that names what does not exist.
const CONFIG_PREFIXES: &[&str] = &[
    "InvalidAMIID",
    "InvalidInstanceID",
    "InvalidSubnetID",
    "InvalidSubnet",
    "InvalidGroup",
    "InvalidVpcID",
    "InvalidParameter",
    "InvalidBlockDeviceMapping",
    "InvalidInstanceType",
    "InvalidRoleArn",
    "MalformedPolicyDocument",
    "Unsupported",
    "VPCIdNotSpecified",
    "MissingParameter",
];

/// What an SDK error means: its kind, AWS's code and a one-line detail.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) code: String,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn of<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata,
    {
        let kind = match err {
            SdkError::ServiceError(_) => classify(err.code().unwrap_or("")),
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Config,
        };
        let detail = err
            .message()
            .map(first_sentence)
            .unwrap_or_else(|| describe_transport(err));
        Self {
            kind,
            code: err.code().unwrap_or("").to_owned(),
            detail,
        }
    }
}

/// Maps an SDK error of the call `action` (such as `ec2:RunInstances`),
/// with `context` saying what was being done (such as "launching m7i.large
/// in account 123456789012, us-east-1").
pub(crate) fn map_sdk_error<E, R>(err: SdkError<E, R>, action: &str, context: &str) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let Failure { kind, code, detail } = Failure::of(&err);
    let message = match &kind {
        ErrorKind::PermissionDenied => format!(
            "{context}: not allowed to call {action} ({code}: {detail}); \
             the role's policy must allow {action} (print it with `sprinters policy iam`)"
        ),
        ErrorKind::RateLimited { .. } => {
            format!("{context}: AWS throttled {action} ({code}); backing off")
        }
        _ if QUOTA.contains(&code.as_str()) => format!(
            "{context}: {action} failed ({code}): {detail}; an account quota, not a passing shortage: \
             ask AWS to raise it (Service Quotas, Amazon EC2: \"Running On-Demand Standard instances\" \
             or \"All Standard Spot Instance Requests\", in vCPUs, for this region)"
        ),
        _ if code.is_empty() => format!("{context}: {action} failed: {detail}"),
        _ => format!("{context}: {action} failed ({code}): {detail}"),
    };
    Error::new(kind, message).with_source(err)
}

/// The kind of an AWS error code.
pub(crate) fn classify(code: &str) -> ErrorKind {
    if THROTTLING.contains(&code) {
        ErrorKind::RateLimited { retry_after: None }
    } else if CAPACITY.contains(&code) {
        ErrorKind::CapacityUnavailable
    } else if PERMISSION.contains(&code) {
        ErrorKind::PermissionDenied
    } else if code.ends_with(".NotFound") && code.starts_with("InvalidInstanceID") {
        ErrorKind::NotFound
    } else if code == "IdempotentParameterMismatch" {
        // The same client token with other parameters: another launch
        // owns this token.
        ErrorKind::Conflict
    } else if CONFIG_PREFIXES.iter().any(|p| code.starts_with(p)) {
        ErrorKind::Config
    } else {
        // 5xx (InternalError, Unavailable, ServiceUnavailable) and codes
        // we do not know: worth another try later.
        ErrorKind::Unavailable
    }
}

/// AWS messages can carry an encoded authorization blob after the first
/// sentence; one sentence says what matters, and keeps the line short.
fn first_sentence(message: &str) -> String {
    let cut = message
        .find(" Encoded authorization failure message")
        .unwrap_or(message.len());
    let mut s: String = message[..cut].chars().take(300).collect();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

fn describe_transport<E, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach AWS".to_owned(),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        SdkError::ConstructionFailure(_) => "invalid request".to_owned(),
        _ => "failed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let rate = |c| matches!(classify(c), ErrorKind::RateLimited { .. });
        assert!(rate("RequestLimitExceeded") && rate("Throttling"));
        for code in [
            "InsufficientInstanceCapacity",
            "SpotMaxPriceTooLow",
            "MaxSpotInstanceCountExceeded",
            "InstanceLimitExceeded",
        ] {
            assert_eq!(classify(code), ErrorKind::CapacityUnavailable, "{code}");
        }
        for code in ["UnauthorizedOperation", "AuthFailure", "AccessDenied"] {
            assert_eq!(classify(code), ErrorKind::PermissionDenied, "{code}");
        }
        for code in [
            "InvalidAMIID.NotFound",
            "InvalidAMIID.Malformed",
            "InvalidSubnetID.NotFound",
            "InvalidGroup.NotFound",
            "InvalidParameterValue",
        ] {
            assert_eq!(classify(code), ErrorKind::Config, "{code}");
        }
        assert_eq!(classify("InvalidInstanceID.NotFound"), ErrorKind::NotFound);
        assert_eq!(classify("InvalidInstanceID.Malformed"), ErrorKind::Config);
        assert_eq!(classify("IdempotentParameterMismatch"), ErrorKind::Conflict);
        assert_eq!(classify("InternalError"), ErrorKind::Unavailable);
    }

    #[test]
    fn the_encoded_authorization_blob_is_cut() {
        let m = "You are not authorized to perform this operation. \
                 Encoded authorization failure message: AbCdEf123";
        assert_eq!(
            first_sentence(m),
            "You are not authorized to perform this operation"
        );
    }
}
