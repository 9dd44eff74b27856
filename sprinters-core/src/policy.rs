//! What a workflow author may ask for.
//!
//! A `runs-on` label is written by whoever edits a workflow, on a public
//! repository any fork's pull request. So every part of it is checked
//! against a policy before any AWS call: the platform's defaults
//! ([`PlatformPolicy`], the TOML's `[policy]`), overridden key by key by
//! the owner's ([`OwnerPolicy`], kept in the owner's record in the store
//! and set through the admin API), and narrowed per repository
//! ([`RepositoryPolicy`]: its rules apply on top, never instead).
//!
//! ```
//! use sprinters_core::domain::{AccountId, Owner, Repository};
//! use sprinters_core::labels::LabelParser;
//! use sprinters_core::policy::{OwnerPolicy, PlatformPolicy, Visibility};
//!
//! let owner: OwnerPolicy =
//!     serde_json::from_str(r#"{"instance_types": ["t3.*", "c7i.*"], "max_vcpus": 16}"#).unwrap();
//! let policy = PlatformPolicy::default().for_owner(Some(&owner));
//! let spec = LabelParser::default()
//!     .parse_label("sprinters:aws:ubuntu-latest:p5.48xlarge")
//!     .unwrap();
//! let refused = policy.refuses(
//!     &Owner::parse("octo-org").unwrap(),
//!     &Repository::parse("octo-org/app").unwrap(),
//!     &spec,
//!     &AccountId::parse("123456789012").unwrap(),
//!     Visibility::Private,
//! );
//! assert_eq!(
//!     refused.unwrap(),
//!     "instance type p5.48xlarge is not allowed for octo-org (allowed: t3.*, c7i.*)"
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{AccountId, Owner, Repository, SecurityGroupId, SubnetId};
use crate::labels::{RunnerSpec, TempKind};

/// Whether jobs of public repositories get runners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PublicRepositories {
    /// None do: a self-hosted runner on a public repository runs any
    /// stranger's pull request (GitHub's own guidance, "Self-hosted runner
    /// security").
    #[default]
    Deny,
    /// Runs whose head repository is the repository itself do; runs from
    /// forks do not.
    NoForks,
    /// All do.
    Allow,
}

impl PublicRepositories {
    /// `deny`, `no-forks` or `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicRepositories::Deny => "deny",
            PublicRepositories::NoForks => "no-forks",
            PublicRepositories::Allow => "allow",
        }
    }
}

/// Whether a job's repository is public, and where its run came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Visibility {
    /// Private or internal: only the owner's members can run workflows.
    Private,
    /// Public, its run from the repository itself.
    Public,
    /// Public, its run from a fork (a stranger's pull request).
    PublicFork,
    /// Public, its run started by `pull_request_target`: it runs in the
    /// repository's own context for any pull request, a fork's included,
    /// and such workflows often check the pull request's code out.
    PublicPullRequestTarget,
    /// Public, where the run came from not asked yet: refused under
    /// `no-forks` until it is known.
    PublicUnknownOrigin,
}

/// An instance-type pattern: `*` stands for any run of characters
/// (`t3.*`, `c7i.*`, `*.large`, `m7i.xlarge`).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TypePattern(String);

impl TypePattern {
    /// Parses a pattern: lower-case letters, digits, `.`, `-` and `*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'*')
            });
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "instance type pattern `{}`: expected lower-case letters, digits, `.`, `-` and `*`, such as t3.* or c7i.*",
                s.chars().take(64).collect::<String>()
            ))
        }
    }

    /// Whether `instance_type` matches.
    pub fn matches(&self, instance_type: &str) -> bool {
        glob(self.0.as_bytes(), instance_type.as_bytes())
    }

    /// The pattern.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TypePattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<TypePattern> for String {
    fn from(p: TypePattern) -> String {
        p.0
    }
}

/// `*` matches any run of bytes; linear in the text for the one-star
/// patterns used here, and never worse than quadratic.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The platform's policy: what any owner gets unless its own says
/// otherwise (the TOML's `[policy]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PlatformPolicy {
    /// Instance types a label may name.
    pub instance_types: Vec<TypePattern>,
    /// vCPUs per instance at most.
    pub max_vcpus: u32,
    /// Root volume IOPS at most.
    pub max_root_iops: u32,
    /// Root volume throughput (MiB/s) at most.
    pub max_root_throughput_mibps: u32,
    /// Temp volume size (GiB) at most, gp3 or zram.
    pub max_temp_gib: u32,
    /// Subnets a label may name (none: only the default VPC's).
    pub subnets: Vec<SubnetId>,
    /// Security groups a label may name (none: only ours). A named group
    /// must also carry the tag `sprinters:sprinters = true` and allow no
    /// ingress, which the launcher checks at launch.
    pub security_groups: Vec<SecurityGroupId>,
    /// Public repositories.
    pub public_repositories: PublicRepositories,
    /// Live instances at once per owner (0: no cap).
    pub max_instances: u32,
    /// Live instances at once per AWS account (0: no cap).
    pub max_instances_per_account: u32,
    /// Live instances at once per repository (0: no cap).
    pub max_instances_per_repository: u32,
    /// An owner's queued jobs (waiting for an instance), counted in the
    /// store across replicas; beyond it a job is rejected (0: no cap).
    pub max_queued: u32,
}

impl Default for PlatformPolicy {
    fn default() -> Self {
        Self {
            instance_types: vec![TypePattern("*".to_owned())],
            max_vcpus: 64,
            // EBS's own gp3 maxima: the label grammar already keeps to them.
            max_root_iops: 16_000,
            max_root_throughput_mibps: 1_000,
            max_temp_gib: 500,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            public_repositories: PublicRepositories::Deny,
            max_instances: 0,
            max_instances_per_account: 0,
            max_instances_per_repository: 0,
            max_queued: 0,
        }
    }
}

/// One owner's policy (`PUT /api/owners/{owner}/policy`): every key left
/// out (or `null`) takes the platform's value. It is stored with postcard,
/// which has no field names: no field is ever skipped when serialized, and
/// a new field goes last, read from older records by the store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OwnerPolicy {
    /// See [`PlatformPolicy::instance_types`].
    pub instance_types: Option<Vec<TypePattern>>,
    /// See [`PlatformPolicy::max_vcpus`].
    pub max_vcpus: Option<u32>,
    /// See [`PlatformPolicy::max_root_iops`].
    pub max_root_iops: Option<u32>,
    /// See [`PlatformPolicy::max_root_throughput_mibps`].
    pub max_root_throughput_mibps: Option<u32>,
    /// See [`PlatformPolicy::max_temp_gib`].
    pub max_temp_gib: Option<u32>,
    /// See [`PlatformPolicy::subnets`].
    pub subnets: Option<Vec<SubnetId>>,
    /// See [`PlatformPolicy::security_groups`].
    pub security_groups: Option<Vec<SecurityGroupId>>,
    /// See [`PlatformPolicy::public_repositories`].
    pub public_repositories: Option<PublicRepositories>,
    /// See [`PlatformPolicy::max_instances`].
    pub max_instances: Option<u32>,
    /// See [`PlatformPolicy::max_instances_per_account`].
    pub max_instances_per_account: Option<u32>,
    /// See [`PlatformPolicy::max_instances_per_repository`].
    pub max_instances_per_repository: Option<u32>,
    /// See [`PlatformPolicy::max_queued`].
    pub max_queued: Option<u32>,
    /// Narrower rules for some repositories, by name (`app` for
    /// `octo-org/app`, case-insensitive).
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositoryPolicy>,
}

/// Rules for one repository, applied on top of its owner's: a job must
/// pass both.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RepositoryPolicy {
    /// The owner's AWS accounts this repository may launch in (left out:
    /// every account of the owner).
    pub accounts: Option<Vec<AccountId>>,
    /// Instance types, within the owner's.
    pub instance_types: Option<Vec<TypePattern>>,
    /// vCPUs per instance, within the owner's.
    pub max_vcpus: Option<u32>,
    /// Temp volume size, within the owner's.
    pub max_temp_gib: Option<u32>,
    /// Live instances at once for this repository.
    pub max_instances: Option<u32>,
}

impl OwnerPolicy {
    /// Checks what serde cannot: repository names, each once whatever its
    /// case (GitHub's names are case-insensitive).
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for name in self.repositories.keys() {
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(format!(
                    "repositories: `{name}` is given twice (names are case-insensitive)"
                ));
            }
            let valid = !name.is_empty()
                && name.len() <= 100
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return Err(format!(
                    "repositories: `{}` is not a repository name (give the name without its owner, such as `app`)",
                    name.chars().take(100).collect::<String>()
                ));
            }
        }
        Ok(())
    }

    /// The rules of `repository`, if it has its own.
    pub fn repository(&self, repository: &Repository) -> Option<&RepositoryPolicy> {
        rules_of(&self.repositories, repository)
    }
}

/// The rules named for `repository` (names are case-insensitive).
fn rules_of<'a>(
    rules: &'a BTreeMap<String, RepositoryPolicy>,
    repository: &Repository,
) -> Option<&'a RepositoryPolicy> {
    rules
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(repository.name()))
        .map(|(_, p)| p)
}

impl PlatformPolicy {
    /// Checks the values that would refuse every job by mistake.
    pub fn validate(&self) -> Result<(), String> {
        if self.instance_types.is_empty() {
            return Err("policy.instance_types: empty, so no job could run; use [\"*\"] to allow every type".to_owned());
        }
        Ok(())
    }

    /// The policy in force for an owner: its keys over these.
    pub fn for_owner(&self, owner: Option<&OwnerPolicy>) -> EffectivePolicy {
        let mut p = self.clone();
        let Some(o) = owner else {
            return EffectivePolicy {
                base: p,
                repositories: BTreeMap::new(),
            };
        };
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = &o.$field { p.$field = v.clone(); } )* };
        }
        take!(
            instance_types,
            max_vcpus,
            max_root_iops,
            max_root_throughput_mibps,
            max_temp_gib,
            subnets,
            security_groups,
            public_repositories,
            max_instances,
            max_instances_per_account,
            max_instances_per_repository,
            max_queued
        );
        EffectivePolicy {
            base: p,
            repositories: o.repositories.clone(),
        }
    }
}

/// The rules in force for one owner, with its repositories' narrowing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// The owner's rules, every key resolved.
    pub base: PlatformPolicy,
    /// Its repositories' own rules.
    pub repositories: BTreeMap<String, RepositoryPolicy>,
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl EffectivePolicy {
    /// The rules of `repository`, if it has its own.
    pub fn repository(&self, repository: &Repository) -> Option<&RepositoryPolicy> {
        rules_of(&self.repositories, repository)
    }

    /// Why a job of `repository` with `spec` in `account` may not run, in
    /// words that name the rule and the value; `None` when it may.
    pub fn refuses(
        &self,
        owner: &Owner,
        repository: &Repository,
        spec: &RunnerSpec,
        account: &AccountId,
        visibility: Visibility,
    ) -> Option<String> {
        let p = &self.base;
        match (p.public_repositories, visibility) {
            (_, Visibility::Private) | (PublicRepositories::Allow, _) => {}
            (PublicRepositories::NoForks, Visibility::Public) => {}
            (PublicRepositories::Deny, _) => {
                return Some(format!(
                    "{repository} is public, and {owner} does not run public repositories' jobs on self-hosted runners (public_repositories = deny)"
                ));
            }
            (PublicRepositories::NoForks, Visibility::PublicUnknownOrigin) => {
                return Some(format!(
                    "where this run of the public repository {repository} comes from is not known, and {owner} runs only its own branches' jobs (public_repositories = no-forks)"
                ));
            }
            (PublicRepositories::NoForks, Visibility::PublicFork) => {
                return Some(format!(
                    "this run of the public repository {repository} comes from a fork, and {owner} runs only its own branches' jobs (public_repositories = no-forks)"
                ));
            }
            (PublicRepositories::NoForks, Visibility::PublicPullRequestTarget) => {
                return Some(format!(
                    "this run of the public repository {repository} was started by pull_request_target, which runs for any pull request, a fork's included, and {owner} runs only its own branches' jobs (public_repositories = no-forks)"
                ));
            }
        }
        let instance_type = spec.instance_type.as_str();
        let vcpus = spec.instance_type.vcpus();
        let mut rules: Vec<(&str, &[TypePattern], u32, u32)> = vec![(
            owner.as_str(),
            &p.instance_types,
            p.max_vcpus,
            p.max_temp_gib,
        )];
        let repo_rules = self.repository(repository);
        let repo_label = repository.to_string();
        if let Some(r) = repo_rules {
            rules.push((
                &repo_label,
                r.instance_types.as_deref().unwrap_or(&p.instance_types),
                r.max_vcpus.unwrap_or(p.max_vcpus).min(p.max_vcpus),
                r.max_temp_gib.unwrap_or(p.max_temp_gib).min(p.max_temp_gib),
            ));
        }
        for (whom, types, max_vcpus, max_temp) in rules {
            if !types.iter().any(|t| t.matches(instance_type)) {
                return Some(format!(
                    "instance type {instance_type} is not allowed for {whom} (allowed: {})",
                    list(types)
                ));
            }
            match vcpus {
                Some(n) if n > max_vcpus => {
                    return Some(format!(
                        "instance type {instance_type} has {n} vCPUs, more than the {max_vcpus} allowed for {whom} (max_vcpus)"
                    ));
                }
                None => {
                    return Some(format!(
                        "instance type {instance_type}: its vCPU count cannot be told from its name, so it cannot be held to the {max_vcpus} allowed for {whom} (max_vcpus); name a sized type such as metal-24xl"
                    ));
                }
                _ => {}
            }
            if matches!(spec.temp.kind, TempKind::Gp3 | TempKind::Zram)
                && let Some(size) = spec.temp.size_gib
                && size > max_temp
            {
                return Some(format!(
                    "temp volume of {size} GiB is more than the {max_temp} GiB allowed for {whom} (max_temp_gib)"
                ));
            }
        }
        if spec.root.iops > p.max_root_iops {
            return Some(format!(
                "root volume of {} IOPS is more than the {} allowed for {owner} (max_root_iops)",
                spec.root.iops, p.max_root_iops
            ));
        }
        if spec.root.throughput_mibps > p.max_root_throughput_mibps {
            return Some(format!(
                "root volume of {} MiB/s is more than the {} allowed for {owner} (max_root_throughput_mibps)",
                spec.root.throughput_mibps, p.max_root_throughput_mibps
            ));
        }
        if let Some(subnet) = &spec.subnet
            && !p.subnets.contains(subnet)
        {
            return Some(format!(
                "subnet {subnet} is not allowed for {owner} (allowed: {})",
                list(&p.subnets)
            ));
        }
        if let Some(group) = &spec.security_group
            && !p.security_groups.contains(group)
        {
            return Some(format!(
                "security group {group} is not allowed for {owner} (allowed: {})",
                list(&p.security_groups)
            ));
        }
        if let Some(accounts) = repo_rules.and_then(|r| r.accounts.as_ref())
            && !accounts.contains(account)
        {
            return Some(format!(
                "AWS account {account} is not allowed for {repository} (allowed: {})",
                list(accounts)
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests;
