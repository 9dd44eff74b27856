//! Runner images: Ubuntu releases in full, slim and minimal variants.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::Arch;

/// An Ubuntu release that runner images are built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UbuntuRelease {
    /// Ubuntu 24.04 LTS, what `ubuntu-latest` means.
    Noble2404,
    /// Ubuntu 22.04 LTS.
    Jammy2204,
}

/// How much software an image carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageVariant {
    /// GitHub's full runner image.
    Full,
    /// The common tools only (x64 only).
    Slim,
    /// The runner and little else.
    Minimal,
}

/// A runner image, canonically named like `ubuntu-24.04-arm-minimal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Image {
    release: UbuntuRelease,
    arch: Arch,
    variant: ImageVariant,
}

/// Every image the grammar accepts, by canonical name.
pub const IMAGE_NAMES: &[&str] = &[
    "ubuntu-24.04",
    "ubuntu-24.04-slim",
    "ubuntu-24.04-minimal",
    "ubuntu-22.04",
    "ubuntu-22.04-slim",
    "ubuntu-22.04-minimal",
    "ubuntu-24.04-arm",
    "ubuntu-24.04-arm-minimal",
    "ubuntu-22.04-arm",
    "ubuntu-22.04-arm-minimal",
];

impl Image {
    /// `ubuntu-24.04` on x64, the default.
    pub const DEFAULT: Image = Image {
        release: UbuntuRelease::Noble2404,
        arch: Arch::X64,
        variant: ImageVariant::Full,
    };

    /// Parses a canonical name or `ubuntu-latest` (also `-slim`, `-minimal`).
    pub fn parse(s: &str) -> Option<Image> {
        let rest = s.strip_prefix("ubuntu-")?;
        let (release, rest) = if let Some(r) = rest.strip_prefix("latest") {
            (UbuntuRelease::Noble2404, r)
        } else if let Some(r) = rest.strip_prefix("24.04") {
            (UbuntuRelease::Noble2404, r)
        } else if let Some(r) = rest.strip_prefix("22.04") {
            (UbuntuRelease::Jammy2204, r)
        } else {
            return None;
        };
        let latest = s.starts_with("ubuntu-latest");
        let (arch, variant) = match rest {
            "" => (Arch::X64, ImageVariant::Full),
            "-slim" => (Arch::X64, ImageVariant::Slim),
            "-minimal" => (Arch::X64, ImageVariant::Minimal),
            "-arm" if !latest => (Arch::Arm64, ImageVariant::Full),
            "-arm-minimal" if !latest => (Arch::Arm64, ImageVariant::Minimal),
            _ => return None,
        };
        Some(Image {
            release,
            arch,
            variant,
        })
    }

    /// The architecture the image is built for.
    pub fn arch(self) -> Arch {
        self.arch
    }

    /// The Ubuntu release.
    pub fn release(self) -> UbuntuRelease {
        self.release
    }

    /// Full, slim or minimal.
    pub fn variant(self) -> ImageVariant {
        self.variant
    }

    /// The canonical name, e.g. `ubuntu-24.04-arm-minimal`.
    pub fn name(self) -> &'static str {
        use ImageVariant::*;
        use UbuntuRelease::*;
        match (self.release, self.arch, self.variant) {
            (Noble2404, Arch::X64, Full) => "ubuntu-24.04",
            (Noble2404, Arch::X64, Slim) => "ubuntu-24.04-slim",
            (Noble2404, Arch::X64, Minimal) => "ubuntu-24.04-minimal",
            (Jammy2204, Arch::X64, Full) => "ubuntu-22.04",
            (Jammy2204, Arch::X64, Slim) => "ubuntu-22.04-slim",
            (Jammy2204, Arch::X64, Minimal) => "ubuntu-22.04-minimal",
            (Noble2404, Arch::Arm64, Full) => "ubuntu-24.04-arm",
            (Noble2404, Arch::Arm64, _) => "ubuntu-24.04-arm-minimal",
            (Jammy2204, Arch::Arm64, Full) => "ubuntu-22.04-arm",
            (Jammy2204, Arch::Arm64, _) => "ubuntu-22.04-arm-minimal",
        }
    }
}

impl Default for Image {
    fn default() -> Self {
        Image::DEFAULT
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Image {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Image::parse(&s).ok_or_else(|| format!("unknown image `{s}`"))
    }
}

impl From<Image> for String {
    fn from(i: Image) -> String {
        i.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_name_round_trips() {
        for name in IMAGE_NAMES {
            let image = Image::parse(name).unwrap();
            assert_eq!(image.name(), *name);
        }
    }

    #[test]
    fn latest_is_noble_and_arm_has_no_slim() {
        assert_eq!(
            Image::parse("ubuntu-latest").unwrap().name(),
            "ubuntu-24.04"
        );
        assert_eq!(
            Image::parse("ubuntu-latest-slim").unwrap().name(),
            "ubuntu-24.04-slim"
        );
        assert_eq!(
            Image::parse("ubuntu-24.04-arm").unwrap().arch(),
            Arch::Arm64
        );
        for bad in [
            "ubuntu-24.04-arm-slim",
            "ubuntu-20.04",
            "ubuntu-latest-arm",
            "debian-12",
            "ubuntu-24.04-",
        ] {
            assert!(Image::parse(bad).is_none(), "{bad}");
        }
    }
}
