//! Instance types: whether one has an instance store, which
//! `temp=ephemeral` formats as the job's temp volume. Without one the boot
//! script would find no disk and the job would fail on the instance, after
//! a JIT runner and an instance were spent on it; asked once per type and
//! region, before `RunInstances`.

use aws_sdk_ec2::types::InstanceType as Ec2InstanceType;
use sprinters_core::domain::InstanceType;
use sprinters_core::{Error, Result};

use super::Target;
use crate::error::map_sdk_error;

/// Whether `instance_type` has an instance store in `target`'s region
/// (`DescribeInstanceTypes`' `InstanceStorageSupported`).
pub(crate) async fn has_instance_store(
    target: &Target<'_>,
    instance_type: &InstanceType,
) -> Result<bool> {
    let context = format!(
        "looking up instance type {instance_type} in account {}, {}",
        target.account, target.region
    );
    let output = target
        .client
        .describe_instance_types()
        .instance_types(Ec2InstanceType::from(instance_type.as_str()))
        .send()
        .await
        .map_err(|e| map_sdk_error(e, "ec2:DescribeInstanceTypes", &context))?;
    let info = output.instance_types().first().ok_or_else(|| {
        Error::config(format!(
            "instance type {instance_type} is not offered in {}",
            target.region
        ))
    })?;
    Ok(info.instance_storage_supported() == Some(true))
}

/// The error for `temp=ephemeral` on a type without an instance store.
pub(crate) fn no_instance_store(instance_type: &InstanceType) -> Error {
    Error::config(format!(
        "temp=ephemeral needs an instance type with an instance store, and {instance_type} has none: \
         pick one with local NVMe disks (a `d` in its family, such as m6id.large or m7gd.large) or use temp=gp3"
    ))
}
