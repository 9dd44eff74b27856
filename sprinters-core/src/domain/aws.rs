//! AWS identifiers.

use serde::{Deserialize, Serialize};

use super::{is_ec2_id, string_newtype};

string_newtype!(
    /// A 12-digit AWS account id.
    AccountId,
    "AWS account id",
    "expected 12 digits",
    |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
);

string_newtype!(
    /// An AWS region such as `us-east-1` or `us-gov-west-1`.
    Region,
    "region",
    "expected a region such as us-east-1",
    |s| region_len(s) == Some(s.len())
);

string_newtype!(
    /// An availability zone such as `eu-central-1b`, or a local zone such as
    /// `us-east-1-bos-1a`.
    AvailabilityZone,
    "availability zone",
    "expected an availability zone such as eu-central-1b",
    |s| az_region_len(s).is_some()
);

string_newtype!(
    /// A subnet id, `subnet-` and 8 or 17 hex digits.
    SubnetId,
    "subnet id",
    "expected subnet- followed by 8 or 17 hex digits",
    |s| is_ec2_id(s, "subnet-")
);

string_newtype!(
    /// A security group id, `sg-` and 8 or 17 hex digits.
    SecurityGroupId,
    "security group id",
    "expected sg- followed by 8 or 17 hex digits",
    |s| is_ec2_id(s, "sg-")
);

string_newtype!(
    /// An EC2 instance id, `i-` and 8 or 17 hex digits.
    InstanceId,
    "instance id",
    "expected i- followed by 8 or 17 hex digits",
    |s| is_ec2_id(s, "i-")
);

string_newtype!(
    /// An EC2 instance type such as `m7i.24xlarge` or `c7g.metal`.
    InstanceType,
    "instance type",
    "expected an EC2 instance type such as m7i.large",
    |s| parse_instance_type(s).is_some()
);

/// A CPU architecture of runner images and instance types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64 (Intel and AMD instance types).
    X64,
    /// 64-bit ARM (Graviton instance types).
    Arm64,
}

impl Arch {
    /// `x64` or `arm64`, as GitHub names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X64 => "x64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Region {
    /// `us-east-1`, the default region of the label grammar.
    pub fn us_east_1() -> Region {
        Region("us-east-1".to_owned())
    }
}

impl AvailabilityZone {
    /// The region this zone is in (`eu-central-1b` → `eu-central-1`).
    pub fn region(&self) -> Region {
        let len = az_region_len(self.as_str()).unwrap_or(0);
        Region(self.as_str()[..len].to_owned())
    }
}

impl InstanceType {
    /// The label grammar's default type of an architecture: `t3.large`
    /// for x64, `t4g.large` for arm64.
    pub fn default_for(arch: Arch) -> InstanceType {
        InstanceType(
            match arch {
                Arch::X64 => "t3.large",
                Arch::Arm64 => "t4g.large",
            }
            .to_owned(),
        )
    }

    /// The family, e.g. `m7i` of `m7i.24xlarge`.
    pub fn family(&self) -> &str {
        self.as_str().split('.').next().unwrap_or_default()
    }

    /// Its vCPUs, from its size as EC2 names them: `large` 2, `xlarge` 4,
    /// `Nxlarge` and `metal-Nxl` 4×N; `nano` to `medium` 2 on burstable
    /// families (`t3.micro`) and 1 elsewhere (`c7g.medium`, `t2.micro`). A
    /// bare `metal`, whose count varies by family, is `None`.
    /// (docs.aws.amazon.com/ec2/latest/instancetypes: every current family
    /// follows this, the exceptions are families retired long ago.)
    pub fn vcpus(&self) -> Option<u32> {
        let (family, size) = self.as_str().split_once('.')?;
        let burstable = family.starts_with('t');
        let times_four = |n: &str| -> Option<u32> {
            if n.is_empty() {
                return Some(4);
            }
            // EC2 names no size `0xlarge` or `08xlarge`.
            if n.starts_with('0') {
                return None;
            }
            n.parse::<u32>().ok().and_then(|n| n.checked_mul(4))
        };
        // The one family still named whose sizes count otherwise.
        if family == "c1" {
            return match size {
                "medium" => Some(2),
                "xlarge" => Some(8),
                _ => None,
            };
        }
        match size {
            "nano" | "micro" | "small" => Some(if family == "t2" { 1 } else { 2 }),
            "medium" => Some(if burstable { 2 } else { 1 }),
            "large" => Some(2),
            _ => {
                if let Some(n) = size.strip_suffix("xlarge") {
                    times_four(n)
                } else if let Some(n) = size
                    .strip_prefix("metal-")
                    .and_then(|s| s.strip_suffix("xl"))
                {
                    times_four(n)
                } else {
                    None
                }
            }
        }
    }

    /// The CPU architecture: Graviton families (a `g` among the attribute
    /// letters after the generation, as in `t4g`, `c7gn`, `im4gn`, `x2gd`,
    /// and `a1`) are arm64, the rest x64.
    pub fn arch(&self) -> Arch {
        let family = self.family();
        let family = family.split('-').next().unwrap_or(family);
        if family == "a1" {
            return Arch::Arm64;
        }
        let attrs = family.trim_start_matches(|c: char| c.is_ascii_lowercase());
        let attrs = attrs.trim_start_matches(|c: char| c.is_ascii_digit());
        if attrs.contains('g') {
            Arch::Arm64
        } else {
            Arch::X64
        }
    }
}

/// Length of the region at the start of `s`: `xx(-gov|-iso..)?-name-N`.
fn region_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() < 6 || !b[0].is_ascii_lowercase() || !b[1].is_ascii_lowercase() || b[2] != b'-' {
        return None;
    }
    // After the two-letter area: one or more `-word` parts, then `-digits`.
    let mut i = 2;
    let mut words = 0;
    loop {
        if b.get(i) != Some(&b'-') {
            return None;
        }
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j].is_ascii_lowercase() {
            j += 1;
        }
        if j > start {
            words += 1;
            i = j;
            continue;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        return (j > start && (1..=3).contains(&words)).then_some(j);
    }
}

/// For a valid zone name, the length of its region prefix.
fn az_region_len(s: &str) -> Option<usize> {
    let region = region_len(s)?;
    let rest = &s.as_bytes()[region..];
    match rest {
        // us-east-1a
        [l] if l.is_ascii_lowercase() => Some(region),
        // us-east-1-bos-1a (local zones)
        [b'-', tail @ ..] => {
            let letters = tail.iter().take_while(|c| c.is_ascii_lowercase()).count();
            let after = &tail[letters..];
            let (dash, after) = after.split_first()?;
            let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
            let last = &after[digits..];
            (letters > 0
                && *dash == b'-'
                && digits > 0
                && last.len() == 1
                && last[0].is_ascii_lowercase())
            .then_some(region)
        }
        _ => None,
    }
}

/// `family.size`: family letters+generation+attributes (optionally `-suffix`),
/// size `nano`..`metal`, `Nxlarge`, `metal-Nxl`.
fn parse_instance_type(s: &str) -> Option<()> {
    if s.len() > 32 {
        return None;
    }
    let (family, size) = s.split_once('.')?;
    let (base, suffix) = match family.split_once('-') {
        Some((b, sfx)) => (b, Some(sfx)),
        None => (family, None),
    };
    let letters = base.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = base[letters..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let attrs = &base[letters + digits..];
    if letters == 0 || digits == 0 || !attrs.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    if let Some(sfx) = suffix
        && (sfx.is_empty()
            || !sfx
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    {
        return None;
    }
    let size_ok = matches!(
        size,
        "nano" | "micro" | "small" | "medium" | "large" | "xlarge" | "metal"
    ) || size
        .strip_suffix("xlarge")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || size
            .strip_prefix("metal-")
            .and_then(|n| n.strip_suffix("xl"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    size_ok.then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_exactly_twelve_digits() {
        assert!(AccountId::parse("123456789012").is_ok());
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            let err = AccountId::parse(bad).unwrap_err();
            assert_eq!(err.expected, "expected 12 digits", "{bad}");
        }
    }

    #[test]
    fn regions_and_zones() {
        for r in [
            "us-east-1",
            "eu-central-1",
            "us-gov-west-1",
            "ap-southeast-3",
            "cn-north-1",
        ] {
            assert!(Region::parse(r).is_ok(), "{r}");
        }
        for r in ["us-east", "useast-1", "us-east-1a", "US-EAST-1", "u-east-1"] {
            assert!(Region::parse(r).is_err(), "{r}");
        }
        let az = AvailabilityZone::parse("eu-central-1b").unwrap();
        assert_eq!(az.region().as_str(), "eu-central-1");
        let lz = AvailabilityZone::parse("us-east-1-bos-1a").unwrap();
        assert_eq!(lz.region().as_str(), "us-east-1");
        for bad in ["eu-central-1", "eu-central-1bb", "eu-central-1-bos-1"] {
            assert!(AvailabilityZone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ec2_ids() {
        assert!(SubnetId::parse("subnet-0123abcd").is_ok());
        assert!(SubnetId::parse("subnet-0123456789abcdef0").is_ok());
        assert!(SubnetId::parse("subnet-0123ABCD").is_err());
        assert!(SecurityGroupId::parse("sg-12345678").is_ok());
        assert!(SecurityGroupId::parse("sg-1234567").is_err());
        assert!(InstanceId::parse("i-0123456789abcdef0").is_ok());
        assert!(InstanceId::parse("i-xyz").is_err());
    }

    #[test]
    fn instance_types_and_their_arch() {
        let arm = [
            "t4g.large",
            "c7g.xlarge",
            "m8g.metal-24xl",
            "c7gn.16xlarge",
            "im4gn.large",
            "is4gen.medium",
            "x2gd.metal",
            "a1.large",
            "g5g.xlarge",
            "r8gd.2xlarge",
            "hpc7g.4xlarge",
        ];
        for t in arm {
            assert_eq!(InstanceType::parse(t).unwrap().arch(), Arch::Arm64, "{t}");
        }
        let x64 = [
            "t3.large",
            "m7i.24xlarge",
            "g4dn.xlarge",
            "c6in.large",
            "x2iedn.metal",
            "m7i-flex.large",
            "u7i-12tb.224xlarge",
            "p5.48xlarge",
            "gr6.4xlarge",
            "c5n.metal",
        ];
        for t in x64 {
            assert_eq!(InstanceType::parse(t).unwrap().arch(), Arch::X64, "{t}");
        }
        for bad in [
            "t3",
            "large",
            "t3.huge",
            "T3.large",
            "3t.large",
            "t3.x1large",
            "m7i-.large",
        ] {
            assert!(InstanceType::parse(bad).is_err(), "{bad}");
        }
    }
}
