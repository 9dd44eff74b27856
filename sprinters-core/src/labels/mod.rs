//! The `runs-on` label grammar.
//!
//! A Sprinters label is colon-separated parts after a prefix (`sprinters`
//! unless configured): `sprinters:aws/123456789012:eu-central-1b:ubuntu-24.04-arm:c7g.xlarge:spot=auto`.
//! Parts come in any order, each at most once; every part has a default.
//!
//! ```
//! use sprinters_core::labels::{LabelParser, SpotMode};
//!
//! let parser = LabelParser::default();
//! let job = parser
//!     .parse_job(&["sprinters:aws:ubuntu-latest:spot=auto", "1234-1-build"])
//!     .unwrap()
//!     .expect("a sprinters label is present");
//! assert_eq!(job.spec.image.name(), "ubuntu-24.04");
//! assert_eq!(job.spec.instance_type.as_str(), "t3.large");
//! assert_eq!(job.spec.spot, SpotMode::Auto);
//! assert_eq!(job.labels, ["sprinters:aws:ubuntu-latest:spot=auto", "1234-1-build"]);
//!
//! let err = parser.parse_label("sprinters:aws:spot=maybe").unwrap_err();
//! assert_eq!(err.to_string(), "spot=maybe: expected one of false, true, auto, rerun");
//! ```

mod image;
mod parse;
mod spec;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use image::{IMAGE_NAMES, Image, ImageVariant, UbuntuRelease};
pub use spec::{Provider, RootVolume, RunnerSpec, SpotMode, TempKind, TempVolume, VolumeType};

use crate::domain::Region;

/// A label the grammar refused: the offending part and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    label: String,
    part: String,
    expected: String,
}

impl LabelError {
    pub(crate) fn new(label: &str, part: &str, expected: impl Into<String>) -> Self {
        Self {
            label: label.to_owned(),
            part: part.to_owned(),
            expected: expected.into(),
        }
    }

    /// The whole label that failed.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The part that is wrong, e.g. `spot=maybe`.
    pub fn part(&self) -> &str {
        &self.part
    }

    /// What would have been accepted instead.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.part, self.expected)
    }
}

impl std::error::Error for LabelError {}

impl From<LabelError> for crate::Error {
    fn from(e: LabelError) -> Self {
        crate::Error::invalid_label(format!("label `{}`: {e}", e.label))
    }
}

/// A job's labels once the one Sprinters label among them is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLabels {
    /// The resolved spec.
    pub spec: RunnerSpec,
    /// Where the Sprinters label is in `labels`.
    pub sprinters_label: usize,
    /// Every label of the job in order, pinning labels included: the
    /// runner registers with all of them.
    pub labels: Vec<String>,
}

impl JobLabels {
    /// The key of the job's label set, see [`LabelSetKey::of`].
    pub fn label_set(&self) -> LabelSetKey {
        LabelSetKey::of(&self.labels)
    }
}

/// Identifies a set of labels regardless of order and case: runners and jobs
/// with the same key can serve each other, which is how GitHub matches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelSetKey(u64);

impl LabelSetKey {
    /// The key of `labels`: a stable FNV-1a hash of the sorted, de-duplicated,
    /// lower-cased labels (stable across releases because it is stored).
    pub fn of<S: AsRef<str>>(labels: &[S]) -> Self {
        Self::hash(0xcbf2_9ce4_8422_2325, labels)
    }

    /// The key of `labels` within one registration scope: a JIT runner is
    /// registered on one repository of one owner, so only jobs of that
    /// repository can ever take it. Jobs of different scopes never share a
    /// key (the engine also compares the scope itself, since a 64-bit hash
    /// can collide).
    pub fn scoped<S: AsRef<str>>(
        owner: crate::domain::OwnerId,
        repository: &crate::domain::Repository,
        labels: &[S],
    ) -> Self {
        let scope = format!("{owner}/{}", repository.to_string().to_ascii_lowercase());
        let seed = Self::hash(0xcbf2_9ce4_8422_2325, &[scope]).0;
        Self::hash(seed, labels)
    }

    fn hash<S: AsRef<str>>(seed: u64, labels: &[S]) -> Self {
        let mut sorted: Vec<String> = labels
            .iter()
            .map(|l| l.as_ref().to_ascii_lowercase())
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut hash = seed;
        for label in &sorted {
            for b in label.bytes().chain(std::iter::once(0)) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        Self(hash)
    }

    /// The raw hash, for stores that index it.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Wraps a raw hash read back from a store.
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// Parses Sprinters labels. Configure the prefix a platform uses and the
/// region used when a label names none.
#[derive(Debug, Clone)]
pub struct LabelParser {
    prefix: String,
    default_region: Region,
}

impl Default for LabelParser {
    fn default() -> Self {
        Self {
            prefix: "sprinters".to_owned(),
            default_region: Region::us_east_1(),
        }
    }
}

impl LabelParser {
    /// A parser with the `sprinters` prefix and `us-east-1` as default region.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `prefix` instead of `sprinters`. It must be a single part: no
    /// colon, not empty.
    pub fn with_prefix(mut self, prefix: &str) -> crate::Result<Self> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(crate::Error::config(format!(
                "label prefix `{prefix}`: expected 1 to 32 letters, digits, '-', '_' or '.'"
            )));
        }
        self.prefix = prefix.to_ascii_lowercase();
        Ok(self)
    }

    /// Uses `region` when a label names no placement.
    pub fn with_default_region(mut self, region: Region) -> Self {
        self.default_region = region;
        self
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `label` is a Sprinters label (its first part is the prefix,
    /// compared without case as GitHub compares labels).
    pub fn is_ours(&self, label: &str) -> bool {
        let first = label.split(':').next().unwrap_or_default();
        first.eq_ignore_ascii_case(&self.prefix)
    }

    /// Resolves one job's labels: `Ok(None)` when none is ours, an error when
    /// the one that is ours is malformed or when there are two.
    pub fn parse_job<S: AsRef<str>>(&self, labels: &[S]) -> Result<Option<JobLabels>, LabelError> {
        let mut ours = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| self.is_ours(l.as_ref()));
        let Some((index, label)) = ours.next() else {
            return Ok(None);
        };
        if let Some((_, second)) = ours.next() {
            return Err(LabelError::new(
                label.as_ref(),
                second.as_ref(),
                format!(
                    "a job may carry only one {} label, found `{}` and `{}`",
                    self.prefix,
                    label.as_ref(),
                    second.as_ref()
                ),
            ));
        }
        let spec = self.parse_label(label.as_ref())?;
        Ok(Some(JobLabels {
            spec,
            sprinters_label: index,
            labels: labels.iter().map(|l| l.as_ref().to_owned()).collect(),
        }))
    }

    /// Parses one Sprinters label into a spec.
    pub fn parse_label(&self, label: &str) -> Result<RunnerSpec, LabelError> {
        parse::parse_label(self, label)
    }

    pub(crate) fn default_region(&self) -> &Region {
        &self.default_region
    }
}

#[cfg(test)]
mod tests;
