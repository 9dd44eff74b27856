//! gp3's rules on each EBS volume of a `RunInstances`, as EC2 applies them.
//! From the EBS user guide ("General Purpose SSD volumes",
//! docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html): 3,000 to
//! 80,000 IOPS, 125 to 2,000 MiB/s, 1 GiB to 64 TiB since gp3's limits were
//! raised in September 2025 (the `ModifyVolume` reference gives 2,000
//! MiB/s; older `EbsBlockDevice` text still says 16,000 IOPS, 1,000 MiB/s,
//! 16 TiB), and at most 500 IOPS per GiB and 0.25 MiB/s per IOPS beyond
//! the 3,000 IOPS and 125 MiB/s every gp3 volume has. A volume without a size has its
//! snapshot's: the stand-in's images have an 8 GiB root.

use super::{Fault, Params, fault};

/// The root snapshot size of every stand-in image, as `DescribeImages`
/// says.
pub(super) const IMAGE_ROOT_GIB: u64 = 8;

/// Refuses the first gp3 volume EC2 would refuse, naming it.
pub(super) fn check_volumes(params: &Params) -> Result<(), Fault> {
    for n in 1.. {
        let prefix = format!("BlockDeviceMapping.{n}");
        let Some(device) = params.get(&format!("{prefix}.DeviceName")) else {
            return Ok(());
        };
        let ebs = |key: &str| params.get(&format!("{prefix}.Ebs.{key}"));
        if ebs("VolumeType") != Some("gp3") {
            continue;
        }
        let number = |key: &str| -> Result<Option<u64>, Fault> {
            ebs(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| invalid(format!("Invalid value '{v}' for {key} of {device}")))
                })
                .transpose()
        };
        let size = number("VolumeSize")?.unwrap_or(IMAGE_ROOT_GIB);
        let iops = number("Iops")?.unwrap_or(3000);
        let throughput = number("Throughput")?.unwrap_or(125);
        if !(1..=65_536).contains(&size) {
            return Err(invalid(format!(
                "Volume of {size}GiB for {device} is outside gp3's 1-65536GiB"
            )));
        }
        if !(3000..=80_000).contains(&iops) {
            return Err(invalid(format!(
                "Iops of {iops} for {device} is outside gp3's 3000-80000"
            )));
        }
        if !(125..=2000).contains(&throughput) {
            return Err(invalid(format!(
                "Throughput of {throughput}MiB/s for {device} is outside gp3's 125-2000"
            )));
        }
        if iops > 3000 && iops > size * 500 {
            return Err(invalid(format!(
                "Iops to volume size ratio of {:.6} is too high; maximum is 500.000000 ({device})",
                iops as f64 / size as f64
            )));
        }
        if throughput > 125 && throughput * 4 > iops {
            return Err(invalid(format!(
                "Throughput (MiBps) to iops ratio of {:.6} is too high; maximum is 0.250000 MiBps per iops ({device})",
                throughput as f64 / iops as f64
            )));
        }
    }
    Ok(())
}

fn invalid(message: String) -> Fault {
    fault("InvalidParameterValue", &message)
}
