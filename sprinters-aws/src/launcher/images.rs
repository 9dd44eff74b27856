//! Runner images: a label's image name resolved to an AMI of the region.

use std::collections::HashMap;

use aws_sdk_ec2::types::{ArchitectureValues, Filter, Image as Ec2Image};
use sprinters_core::domain::{Arch, Region};
use sprinters_core::labels::Image;
use sprinters_core::{Error, Result};

use super::Target;
use crate::error::map_sdk_error;

/// How images are found by name when no AMI is configured: the newest
/// available image of `owners` whose name matches `name_pattern`, in which
/// `{image}` stands for the label's image name (`ubuntu-24.04-arm`, ...).
///
/// What the first `*` after `{image}-` matches must begin with a digit (the
/// build's timestamp): image names are prefixes of each other, and
/// `ubuntu-24.04-*` alone would also take the newest `ubuntu-24.04-arm-…`
/// or `ubuntu-24.04-slim-…` image of the same architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLookup {
    /// Account ids, or `self` / `amazon`, as `DescribeImages` takes them.
    pub owners: Vec<String>,
    /// An EC2 name filter with `*` wildcards and the `{image}` placeholder.
    pub name_pattern: String,
}

impl Default for ImageLookup {
    /// Images the customer built or copied into their own account, named
    /// `sprinters-runner-<image>-<date>`.
    fn default() -> Self {
        Self {
            owners: vec!["self".to_owned()],
            name_pattern: "sprinters-runner-{image}-*".to_owned(),
        }
    }
}

/// Where AMIs come from: ids pinned per region and image, else a look-up
/// by name.
#[derive(Debug, Clone, Default)]
pub struct ImageCatalog {
    pinned: HashMap<(Region, Image), String>,
    lookup: ImageLookup,
}

impl ImageCatalog {
    /// No pinned AMIs; the default look-up.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `ami` for `image` in `region`.
    pub fn pin(mut self, region: Region, image: Image, ami: impl Into<String>) -> Result<Self> {
        let ami = ami.into();
        let valid = ami
            .strip_prefix("ami-")
            .is_some_and(|h| matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            return Err(Error::config(format!(
                "{ami:?} (for {image} in {region}) is not an AMI id; expected ami- and 8 or 17 hex digits"
            )));
        }
        self.pinned.insert((region, image), ami);
        Ok(self)
    }

    /// Finds unpinned images with `lookup`.
    pub fn lookup(mut self, lookup: ImageLookup) -> Self {
        self.lookup = lookup;
        self
    }
}

/// An image ready to launch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedImage {
    pub(crate) ami: String,
    /// Where the boot volume attaches (`/dev/sda1` on Ubuntu).
    pub(crate) root_device: String,
    /// The size of the image's boot volume, which the launch keeps.
    pub(crate) root_size_gib: Option<i32>,
}

impl ImageCatalog {
    /// Resolves `image` with EC2: the pinned AMI (checked to exist, with
    /// its root device) or the newest match of the look-up.
    pub(crate) async fn resolve(&self, target: &Target<'_>, image: Image) -> Result<ResolvedImage> {
        let arch = match image.arch() {
            Arch::X64 => ArchitectureValues::X8664,
            Arch::Arm64 => ArchitectureValues::Arm64,
        };
        let context = format!("finding the {image} image in {}", target.region);
        let request = target.client.describe_images();
        let pinned = self.pinned.get(&(target.region.clone(), image));
        let request = match pinned {
            Some(ami) => request.image_ids(ami),
            None => request
                .set_owners(Some(self.lookup.owners.clone()))
                .filters(filter(
                    "name",
                    &self.lookup.name_pattern.replace("{image}", image.name()),
                ))
                .filters(filter("state", "available")),
        };
        let output = request
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "ec2:DescribeImages", &context))?;
        let dated = dated_name(&self.lookup.name_pattern, image.name());
        let newest = output
            .images()
            .iter()
            .filter(|i| i.architecture() == Some(&arch))
            .filter(|i| pinned.is_some() || dated(i.name().unwrap_or_default()))
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        newest.and_then(resolved).ok_or_else(|| {
            let wanted = match pinned {
                Some(ami) => format!("AMI {ami} ({})", arch.as_str()),
                None => format!(
                    "an available {} image named {} owned by {}",
                    arch.as_str(),
                    self.lookup.name_pattern.replace("{image}", image.name()),
                    self.lookup.owners.join(", ")
                ),
            };
            Error::config(format!(
                "{context}: account {} has no {wanted} in {}",
                target.account, target.region
            ))
        })
    }
}

/// Whether a name the pattern matched is this image's own: where the
/// pattern has `{image}-*`, the part after `{image}-` begins with a digit.
fn dated_name(pattern: &str, image: &str) -> impl Fn(&str) -> bool {
    let prefix = pattern
        .split_once("{image}-*")
        .map(|(before, _)| format!("{}{image}-", before.replace("{image}", image)));
    move |name: &str| match &prefix {
        Some(prefix) => name
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.bytes().next())
            .is_some_and(|b| b.is_ascii_digit()),
        None => true,
    }
}

fn resolved(image: &Ec2Image) -> Option<ResolvedImage> {
    let root_device = image.root_device_name().unwrap_or("/dev/sda1").to_owned();
    let root_size_gib = image
        .block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root_device.as_str()))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_size());
    Some(ResolvedImage {
        ami: image.image_id()?.to_owned(),
        root_device,
        root_size_gib,
    })
}

pub(crate) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_amis_must_look_like_amis() {
        let region = Region::us_east_1();
        assert!(
            ImageCatalog::new()
                .pin(region.clone(), Image::DEFAULT, "ami-0123456789abcdef0")
                .is_ok()
        );
        let err = ImageCatalog::new()
            .pin(region, Image::DEFAULT, "ubuntu")
            .unwrap_err();
        assert!(err.message().contains("\"ubuntu\""), "{err}");
    }

    #[test]
    fn an_image_name_does_not_take_the_images_it_is_a_prefix_of() {
        let full = dated_name("sprinters-runner-{image}-*", "ubuntu-24.04");
        assert!(full("sprinters-runner-ubuntu-24.04-20261201093000"));
        assert!(!full("sprinters-runner-ubuntu-24.04-arm-20261201093000"));
        assert!(!full("sprinters-runner-ubuntu-24.04-slim-20261201093000"));
        assert!(!full("sprinters-runner-ubuntu-24.04-"));
        let arm = dated_name("sprinters-runner-{image}-*", "ubuntu-24.04-arm");
        assert!(arm("sprinters-runner-ubuntu-24.04-arm-20261201"));
        assert!(!arm("sprinters-runner-ubuntu-24.04-arm-minimal-20261201"));
        // A pattern of the platform's own shape is taken as it is.
        let own = dated_name("acme/{image}/*", "ubuntu-24.04");
        assert!(own("acme/ubuntu-24.04/v3"));
    }
}
