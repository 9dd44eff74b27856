//! [`RunnerSpec`]: what a Sprinters label resolves to, every default filled in.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use super::Image;
use crate::domain::{
    AccountId, Arch, AvailabilityZone, InstanceType, Region, SecurityGroupId, SubnetId,
};

/// The cloud a runner is launched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Provider {
    /// Amazon EC2.
    Aws,
}

/// Whether and how to use spot capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpotMode {
    /// On-demand only.
    #[default]
    False,
    /// Spot only: fail when there is no spot capacity.
    True,
    /// Spot, falling back to on-demand when there is no spot capacity.
    Auto,
    /// Like `Auto`, and a job whose spot instance is reclaimed is re-run on
    /// on-demand.
    Rerun,
}

impl SpotMode {
    /// The label spelling: `false`, `true`, `auto` or `rerun`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpotMode::False => "false",
            SpotMode::True => "true",
            SpotMode::Auto => "auto",
            SpotMode::Rerun => "rerun",
        }
    }

    /// Whether the first launch asks for spot capacity.
    pub fn wants_spot(self) -> bool {
        self != SpotMode::False
    }

    /// Whether a lack of spot capacity falls back to on-demand.
    pub fn falls_back(self) -> bool {
        matches!(self, SpotMode::Auto | SpotMode::Rerun)
    }
}

/// The root (boot) volume: always gp3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RootVolume {
    /// Always `gp3`.
    pub volume_type: VolumeType,
    /// Provisioned IOPS, 3000..=16000.
    pub iops: u32,
    /// Provisioned throughput in MiB/s, 125..=1000.
    pub throughput_mibps: u32,
}

impl RootVolume {
    /// The smallest boot volume, in GiB, that may carry its IOPS: gp3
    /// allows at most 500 IOPS per GiB beyond the 3,000 every volume gets
    /// (docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html). The
    /// launcher makes the volume this size or the image's, whichever is
    /// larger. 1 for the baseline.
    pub fn size_gib(&self) -> u32 {
        if self.iops <= 3000 {
            1
        } else {
            self.iops.div_ceil(500)
        }
    }
}

impl Default for RootVolume {
    fn default() -> Self {
        Self {
            volume_type: VolumeType::Gp3,
            iops: 3000,
            throughput_mibps: 150,
        }
    }
}

/// An EBS volume type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// General purpose SSD, gp3.
    Gp3,
}

/// Where the job's writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TempKind {
    /// An encrypted gp3 EBS volume.
    Gp3,
    /// The instance's first instance-store NVMe disk.
    Ephemeral,
    /// A compressed RAM disk.
    Zram,
}

impl TempKind {
    /// The label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TempKind::Gp3 => "gp3",
            TempKind::Ephemeral => "ephemeral",
            TempKind::Zram => "zram",
        }
    }
}

/// The temp volume; sizes and performance apply to the kinds that have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TempVolume {
    /// gp3, ephemeral or zram.
    pub kind: TempKind,
    /// Size in GiB (gp3 always, zram when given, never ephemeral).
    pub size_gib: Option<u32>,
    /// Provisioned IOPS (gp3 only).
    pub iops: Option<u32>,
    /// Provisioned throughput in MiB/s (gp3 only).
    pub throughput_mibps: Option<u32>,
}

impl Default for TempVolume {
    fn default() -> Self {
        Self {
            kind: TempKind::Gp3,
            size_gib: Some(14),
            iops: Some(3000),
            throughput_mibps: Some(125),
        }
    }
}

/// A fully resolved runner: every part of the label with defaults applied.
///
/// Produced by [`LabelParser`](super::LabelParser), which checks the rules
/// across parts (arch of image and type, gp3 bounds); a spec read back from
/// the store is trusted as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunnerSpec {
    /// The cloud.
    pub provider: Provider,
    /// The AWS account; `None` means the owner's default account.
    pub account: Option<AccountId>,
    /// The region.
    pub region: Region,
    /// The zone, when the label pins one.
    pub availability_zone: Option<AvailabilityZone>,
    /// The subnet, when the label pins one (always with a zone).
    pub subnet: Option<SubnetId>,
    /// The runner image.
    pub image: Image,
    /// The instance type, of the image's architecture.
    pub instance_type: InstanceType,
    /// Spot or on-demand.
    pub spot: SpotMode,
    /// The label's security group; `None` means ours, with no ingress.
    pub security_group: Option<SecurityGroupId>,
    /// The boot volume.
    pub root: RootVolume,
    /// Where writes go.
    pub temp: TempVolume,
    /// Swap size in GiB, on its own encrypted volume.
    pub swap_gib: u32,
    /// Whether lifecycle events are reported.
    pub events: bool,
}

impl RunnerSpec {
    /// The architecture, which follows from the image.
    pub fn arch(&self) -> Arch {
        self.image.arch()
    }

    /// The label that parses back to this spec, every part spelled out.
    pub fn to_label(&self, prefix: &str) -> String {
        let mut s = String::with_capacity(128);
        s.push_str(prefix);
        s.push_str(":aws");
        if let Some(account) = &self.account {
            let _ = write!(s, "/{account}");
        }
        let _ = write!(s, ":{}", self.region);
        if let Some(az) = &self.availability_zone {
            let _ = write!(s, "/{az}");
            if let Some(subnet) = &self.subnet {
                let _ = write!(s, "/{subnet}");
            }
        }
        let _ = write!(
            s,
            ":{}:{}:spot={}",
            self.image,
            self.instance_type,
            self.spot.as_str()
        );
        if let Some(sg) = &self.security_group {
            let _ = write!(s, ":{sg}");
        }
        let _ = write!(
            s,
            ":root=gp3/{}/{}:temp={}",
            self.root.iops,
            self.root.throughput_mibps,
            self.temp.kind.as_str()
        );
        for n in [
            self.temp.size_gib,
            self.temp.iops,
            self.temp.throughput_mibps,
        ]
        .into_iter()
        .flatten()
        {
            let _ = write!(s, "/{n}");
        }
        let _ = write!(s, ":events={}", self.events);
        s
    }
}

impl fmt::Display for RunnerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_label("sprinters"))
    }
}
