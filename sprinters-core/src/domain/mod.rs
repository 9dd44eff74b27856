//! Validated domain types: each is parsed once at the edge and is valid from
//! then on (parse, don't validate).

mod aws;
mod github;

pub use aws::{
    AccountId, Arch, AvailabilityZone, InstanceId, InstanceType, Region, SecurityGroupId, SubnetId,
};
pub use github::{
    DeliveryId, InstallationId, JobId, JobKey, Owner, OwnerId, Repository, RunAttempt, RunId,
    RunnerName,
};

/// Why a value was refused: which type and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {expected}")]
pub struct InvalidValue {
    /// The type that refused the value, e.g. `AWS account id`.
    pub what: &'static str,
    /// The value as given (never a secret: no domain type holds one).
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl From<InvalidValue> for crate::Error {
    fn from(e: InvalidValue) -> Self {
        crate::Error::config(e.to_string())
    }
}

/// Declares a string newtype whose only constructor is a validating parse.
macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal, $expected:literal, $valid:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates `s`.
            pub fn parse(s: &str) -> Result<Self, $crate::domain::InvalidValue> {
                let valid: fn(&str) -> bool = $valid;
                if valid(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err($crate::domain::InvalidValue {
                        what: $what,
                        value: s.chars().take(80).collect(),
                        expected: $expected,
                    })
                }
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
pub(crate) use string_newtype;

/// `prefix` followed by 8 or 17 lowercase hex digits, the shape of EC2 ids.
pub(crate) fn is_ec2_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
