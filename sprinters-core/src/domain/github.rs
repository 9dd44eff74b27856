//! GitHub identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, string_newtype};

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps GitHub's numeric id.
            pub const fn new(id: u64) -> Self {
                Self(id)
            }
            /// The numeric id.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

numeric_id!(
    /// A workflow job id (`workflow_job.id`).
    JobId
);
numeric_id!(
    /// A workflow run id (`workflow_job.run_id`).
    RunId
);
numeric_id!(
    /// A GitHub App installation id.
    InstallationId
);
numeric_id!(
    /// A GitHub user or organization's account id (`repository.owner.id`,
    /// `installation.account.id`). Unlike the login, which GitHub lets
    /// anyone take after a rename, it never changes: it is the tenant.
    OwnerId
);

/// A workflow run attempt, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RunAttempt(u32);

impl RunAttempt {
    /// The first attempt.
    pub const FIRST: RunAttempt = RunAttempt(1);

    /// Validates that `n` is at least 1.
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        if n == 0 {
            return Err(InvalidValue {
                what: "run attempt",
                value: "0".into(),
                expected: "expected a number from 1",
            });
        }
        Ok(Self(n))
    }

    /// The attempt number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for RunAttempt {
    type Error = InvalidValue;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<RunAttempt> for u32 {
    fn from(a: RunAttempt) -> u32 {
        a.0
    }
}

impl fmt::Display for RunAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What identifies one launch-worthy job: the job and its run attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    /// The workflow job.
    pub job_id: JobId,
    /// Its run attempt.
    pub run_attempt: RunAttempt,
}

impl JobKey {
    /// The key of `job_id` at `run_attempt`.
    pub const fn new(job_id: JobId, run_attempt: RunAttempt) -> Self {
        Self {
            job_id,
            run_attempt,
        }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job_id, self.run_attempt)
    }
}

string_newtype!(
    /// A GitHub user or organization login.
    Owner,
    "owner",
    "expected 1 to 39 letters, digits or hyphens",
    |s| (1..=39).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
);

impl Owner {
    /// Logins are case-insensitive on GitHub; compare with this.
    pub fn eq_ignore_case(&self, other: &Owner) -> bool {
        self.as_str().eq_ignore_ascii_case(other.as_str())
    }
}

/// A repository, `owner/name`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository {
    owner: Owner,
    name: String,
}

impl Repository {
    /// Parses `owner/name`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue {
            what: "repository",
            value: s.chars().take(140).collect(),
            expected: "expected owner/name",
        };
        let (owner, name) = s.split_once('/').ok_or_else(invalid)?;
        let owner = Owner::parse(owner).map_err(|_| invalid())?;
        let name_ok = (1..=100).contains(&name.len())
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(invalid());
        }
        Ok(Self {
            owner,
            name: name.to_owned(),
        })
    }

    /// The owning user or organization.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The repository's name without its owner.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository({self})")
    }
}

impl std::str::FromStr for Repository {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Repository {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Repository> for String {
    fn from(r: Repository) -> String {
        r.to_string()
    }
}

string_newtype!(
    /// A self-hosted runner's name (1 to 64 of letters, digits, `-`, `_`, `.`).
    RunnerName,
    "runner name",
    "expected 1 to 64 letters, digits, '-', '_' or '.'",
    |s| (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
);

impl RunnerName {
    /// The name of the `launch`-th runner launched for `job`:
    /// `sprinters-<job id>-<attempt>-<launch>`. It encodes the job so that a
    /// runner seen in an `in_progress` event leads back to its launch
    /// without a look-up.
    pub fn for_launch(job: JobKey, launch: u32) -> Self {
        Self(format!(
            "sprinters-{}-{}-{}",
            job.job_id, job.run_attempt, launch
        ))
    }

    /// The job and launch number a [`RunnerName::for_launch`] name encodes;
    /// `None` for any other runner.
    pub fn launch_ref(&self) -> Option<(JobKey, u32)> {
        let rest = self.0.strip_prefix("sprinters-")?;
        let mut parts = rest.splitn(3, '-');
        let job = parts.next()?.parse().ok()?;
        let attempt = RunAttempt::new(parts.next()?.parse().ok()?).ok()?;
        let launch = parts.next()?.parse().ok()?;
        Some((JobKey::new(JobId::new(job), attempt), launch))
    }
}

string_newtype!(
    /// A webhook delivery id (`X-GitHub-Delivery`) or another source's
    /// message id.
    DeliveryId,
    "delivery id",
    "expected 1 to 128 printable ASCII characters",
    |s| (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_parses_owner_and_name() {
        let r = Repository::parse("octo-org/hello.world_2").unwrap();
        assert_eq!(r.owner().as_str(), "octo-org");
        assert_eq!(r.name(), "hello.world_2");
        assert_eq!(r.to_string(), "octo-org/hello.world_2");
        for bad in ["noslash", "/name", "owner/", "own er/x", "o/..", "a/b/c"] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"octo-org/hello.world_2\"");
        assert_eq!(serde_json::from_str::<Repository>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Repository>("\"bad\"").is_err());
    }

    #[test]
    fn run_attempt_starts_at_one() {
        assert!(RunAttempt::new(0).is_err());
        assert!(serde_json::from_str::<RunAttempt>("0").is_err());
        assert_eq!(serde_json::from_str::<RunAttempt>("2").unwrap().get(), 2);
    }

    #[test]
    fn runner_names_lead_back_to_their_launch() {
        let key = JobKey::new(JobId::new(42), RunAttempt::new(3).unwrap());
        let name = RunnerName::for_launch(key, 2);
        assert_eq!(name.as_str(), "sprinters-42-3-2");
        assert_eq!(name.launch_ref(), Some((key, 2)));
        assert_eq!(RunnerName::parse("my-laptop").unwrap().launch_ref(), None);
        assert_eq!(
            RunnerName::parse("sprinters-x-1-1").unwrap().launch_ref(),
            None
        );
        assert!(RunnerName::parse("has space").is_err());
    }
}
