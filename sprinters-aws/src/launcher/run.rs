//! One `RunInstances` call, as ../PRODUCT.md describes the instance: no
//! key pair, no ingress, IMDSv2 with one hop, encrypted throwaway volumes,
//! terminate on shutdown, tagged, with an idempotency token.

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceMetadataTagsState, InstanceType as Ec2InstanceType, MarketType, ShutdownBehavior,
    SpotInstanceType, SpotMarketOptions, VolumeType,
};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sprinters_core::domain::{SecurityGroupId, SubnetId};
use sprinters_core::labels::{RunnerSpec, TempKind};
use sprinters_core::ports::{LaunchRequest, Market};

use super::tags::launch_tags;
use crate::user_data::{SWAP_DEVICE, TEMP_DEVICE};

/// Where and from what an instance is launched, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) ami: String,
    pub(crate) root_device: String,
    pub(crate) root_size_gib: Option<i32>,
    pub(crate) subnet: SubnetId,
    /// Unknown when the label pins both subnet and security group.
    pub(crate) vpc: Option<String>,
    pub(crate) security_group: SecurityGroupId,
}

/// The `RunInstances` call of `request`.
pub(crate) fn run_instances(
    client: &aws_sdk_ec2::Client,
    request: &LaunchRequest,
    placement: &Placement,
    boot_script: &SecretString,
) -> RunInstancesFluentBuilder {
    let spec = &request.spec;
    let user_data = base64::engine::general_purpose::STANDARD.encode(boot_script.expose_secret());
    let mut call = client
        .run_instances()
        .image_id(&placement.ami)
        .instance_type(Ec2InstanceType::from(spec.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .client_token(&request.idempotency_token)
        .subnet_id(placement.subnet.as_str())
        .security_group_ids(placement.security_group.as_str())
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .http_tokens(HttpTokensState::Required)
                // Containers on the instance cannot reach the metadata
                // service: one hop only.
                .http_put_response_hop_limit(1)
                .instance_metadata_tags(InstanceMetadataTagsState::Disabled)
                .build(),
        )
        .set_block_device_mappings(Some(block_devices(
            spec,
            &placement.root_device,
            placement.root_size_gib,
        )))
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .user_data(user_data)
        .set_tag_specifications(Some(launch_tags(request)));
    if request.market == Market::Spot {
        call = call.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .build(),
                )
                .build(),
        );
    }
    call
}

/// The boot volume (gp3 at the label's iops and throughput), the temp
/// volume when it is gp3, and the swap volume: all encrypted, all deleted
/// with the instance. Instance-store and zram temp need no EBS volume.
pub(crate) fn block_devices(
    spec: &RunnerSpec,
    root_device: &str,
    root_size_gib: Option<i32>,
) -> Vec<BlockDeviceMapping> {
    let ebs = |size: Option<i32>, iops: Option<u32>, throughput: Option<u32>| {
        EbsBlockDevice::builder()
            .volume_type(VolumeType::Gp3)
            .set_volume_size(size)
            .set_iops(iops.map(clamp))
            .set_throughput(throughput.map(clamp))
            .encrypted(true)
            .delete_on_termination(true)
            .build()
    };
    let mut devices = vec![
        BlockDeviceMapping::builder()
            .device_name(root_device)
            .ebs(ebs(
                root_volume_size(spec, root_size_gib),
                Some(spec.root.iops),
                Some(spec.root.throughput_mibps),
            ))
            .build(),
    ];
    if spec.temp.kind == TempKind::Gp3 {
        devices.push(
            BlockDeviceMapping::builder()
                .device_name(TEMP_DEVICE)
                .ebs(ebs(
                    spec.temp.size_gib.map(clamp),
                    spec.temp.iops,
                    spec.temp.throughput_mibps,
                ))
                .build(),
        );
    }
    if spec.swap_gib > 0 {
        devices.push(
            BlockDeviceMapping::builder()
                .device_name(SWAP_DEVICE)
                .ebs(ebs(Some(clamp(spec.swap_gib)), None, None))
                .build(),
        );
    }
    devices
}

/// The boot volume's size: the image's, or the size the label's IOPS need
/// if larger (EC2 refuses more than 500 IOPS per GiB). Left to the image's
/// snapshot when its size is unknown and the IOPS need no more.
fn root_volume_size(spec: &RunnerSpec, image_gib: Option<i32>) -> Option<i32> {
    let needed = clamp(spec.root.size_gib());
    match image_gib {
        Some(image) => Some(image.max(needed)),
        None => (spec.root.iops > 3000).then_some(needed),
    }
}

fn clamp(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use sprinters_core::labels::LabelParser;

    use super::*;

    fn spec(label: &str) -> RunnerSpec {
        LabelParser::new().parse_label(label).unwrap()
    }

    #[test]
    fn every_volume_is_encrypted_gp3_and_deleted_on_termination() {
        let devices = block_devices(
            &spec("sprinters:aws:ubuntu-24.04:root=gp3/6000/500:temp=gp3/100/4000/250"),
            "/dev/sda1",
            Some(8),
        );
        let names: Vec<_> = devices.iter().filter_map(|d| d.device_name()).collect();
        assert_eq!(names, ["/dev/sda1", TEMP_DEVICE, SWAP_DEVICE]);
        for d in &devices {
            let ebs = d.ebs().unwrap();
            assert_eq!(ebs.encrypted(), Some(true));
            assert_eq!(ebs.delete_on_termination(), Some(true));
            assert_eq!(ebs.volume_type(), Some(&VolumeType::Gp3));
        }
        let root = devices[0].ebs().unwrap();
        assert_eq!(
            (root.volume_size(), root.iops(), root.throughput()),
            (Some(12), Some(6000), Some(500)),
            "6,000 iops need 12 GiB: more than the image's 8"
        );
        let temp = devices[1].ebs().unwrap();
        assert_eq!(
            (temp.volume_size(), temp.iops(), temp.throughput()),
            (Some(100), Some(4000), Some(250))
        );
        assert_eq!(devices[2].ebs().unwrap().volume_size(), Some(4));
    }

    #[test]
    fn the_boot_volume_is_the_images_size_or_what_its_iops_need() {
        let size = |label: &str, image| {
            block_devices(&spec(label), "/dev/sda1", image)[0]
                .ebs()
                .unwrap()
                .volume_size()
        };
        assert_eq!(size("sprinters:aws", Some(8)), Some(8));
        assert_eq!(size("sprinters:aws:root=gp3/4000", Some(30)), Some(30));
        assert_eq!(size("sprinters:aws:root=gp3/max", Some(8)), Some(32));
        assert_eq!(size("sprinters:aws:root=gp3/max", None), Some(32));
        assert_eq!(size("sprinters:aws", None), None, "the snapshot's own");
    }

    #[test]
    fn instance_store_and_zram_temp_need_no_temp_volume() {
        for label in [
            "sprinters:aws:ubuntu-24.04-arm:m7gd.large:temp=ephemeral",
            "sprinters:aws:ubuntu-24.04:temp=zram",
        ] {
            let devices = block_devices(&spec(label), "/dev/sda1", Some(8));
            let names: Vec<_> = devices.iter().filter_map(|d| d.device_name()).collect();
            assert_eq!(names, ["/dev/sda1", SWAP_DEVICE], "{label}");
        }
    }
}
