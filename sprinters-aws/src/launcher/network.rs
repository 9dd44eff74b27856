//! Where an instance goes: the default VPC and its subnets, a subnet the
//! label pins, and our security group with no ingress.

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use sprinters_core::domain::{AvailabilityZone, SecurityGroupId, SubnetId};
use sprinters_core::{Error, Result};

use super::Target;
use super::images::filter;
use crate::error::map_sdk_error;
use crate::policy::{OWNED_TAG_KEY, OWNED_TAG_VALUE};

/// The name of the security group Sprinters creates in each VPC.
pub const SECURITY_GROUP_NAME: &str = "sprinters-runners";

/// A subnet and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubnetInfo {
    pub(crate) id: SubnetId,
    pub(crate) vpc: String,
    pub(crate) zone: AvailabilityZone,
}

/// The default VPC of a region and its default subnets (one per zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultNetwork {
    pub(crate) vpc: Option<String>,
    pub(crate) subnets: Vec<SubnetInfo>,
}

impl DefaultNetwork {
    /// Reads the default VPC and its default-for-zone subnets.
    pub(crate) async fn load(target: &Target<'_>) -> Result<Self> {
        let context = format!("finding the default VPC of {}", target.region);
        let vpcs = target
            .client
            .describe_vpcs()
            .filters(filter("is-default", "true"))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "ec2:DescribeVpcs", &context))?;
        let Some(vpc) = vpcs.vpcs().iter().find_map(|v| v.vpc_id()) else {
            return Ok(Self {
                vpc: None,
                subnets: Vec::new(),
            });
        };
        let output = target
            .client
            .describe_subnets()
            .filters(filter("vpc-id", vpc))
            .filters(filter("default-for-az", "true"))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, "ec2:DescribeSubnets", &context))?;
        let mut subnets: Vec<SubnetInfo> = output
            .subnets()
            .iter()
            .filter_map(|s| subnet_info(s.subnet_id(), s.vpc_id(), s.availability_zone()))
            .collect();
        subnets.sort_by(|a, b| a.zone.cmp(&b.zone));
        Ok(Self {
            vpc: Some(vpc.to_owned()),
            subnets,
        })
    }

    /// A random default subnet, of `zone` when given.
    pub(crate) fn pick(
        &self,
        zone: Option<&AvailabilityZone>,
        target: &Target<'_>,
    ) -> Result<SubnetInfo> {
        if self.vpc.is_none() {
            return Err(Error::config(format!(
                "account {} has no default VPC in {}; pin a subnet in the label (subnet-...)",
                target.account, target.region
            )));
        }
        let candidates: Vec<&SubnetInfo> = self
            .subnets
            .iter()
            .filter(|s| zone.is_none_or(|z| &s.zone == z))
            .collect();
        if candidates.is_empty() {
            let place = zone.map_or_else(|| target.region.to_string(), |z| z.to_string());
            return Err(Error::config(format!(
                "account {} has no default subnet in {place}; pin a subnet in the label (subnet-...)",
                target.account
            )));
        }
        Ok(candidates[fastrand::usize(..candidates.len())].clone())
    }

    /// The zones that have a default subnet.
    pub(crate) fn zones(&self) -> Vec<AvailabilityZone> {
        self.subnets.iter().map(|s| s.zone.clone()).collect()
    }
}

/// A subnet the label names: its VPC and zone.
pub(crate) async fn describe_subnet(target: &Target<'_>, subnet: &SubnetId) -> Result<SubnetInfo> {
    let context = format!("finding subnet {subnet} in {}", target.region);
    let output = target
        .client
        .describe_subnets()
        .subnet_ids(subnet.as_str())
        .send()
        .await
        .map_err(|e| map_sdk_error(e, "ec2:DescribeSubnets", &context))?;
    output
        .subnets()
        .iter()
        .find_map(|s| subnet_info(s.subnet_id(), s.vpc_id(), s.availability_zone()))
        .ok_or_else(|| {
            Error::config(format!(
                "{context}: account {} has no subnet {subnet} there",
                target.account
            ))
        })
}

fn subnet_info(id: Option<&str>, vpc: Option<&str>, zone: Option<&str>) -> Option<SubnetInfo> {
    Some(SubnetInfo {
        id: SubnetId::parse(id?).ok()?,
        vpc: vpc?.to_owned(),
        zone: AvailabilityZone::parse(zone?).ok()?,
    })
}

/// Our security group in `vpc`: found by name, or created (tagged, with no
/// ingress rule; EC2 adds the allow-all egress rule the runner needs to
/// reach GitHub). One that has gained an ingress rule is refused, not used.
pub(crate) async fn security_group(target: &Target<'_>, vpc: &str) -> Result<SecurityGroupId> {
    if let Some(found) = find_security_group(target, vpc).await? {
        return Ok(found);
    }
    let context = format!("creating security group {SECURITY_GROUP_NAME} in {vpc}");
    let created = target
        .client
        .create_security_group()
        .group_name(SECURITY_GROUP_NAME)
        .description("Sprinters runners: no inbound traffic")
        .vpc_id(vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(
                    Tag::builder()
                        .key(OWNED_TAG_KEY)
                        .value(OWNED_TAG_VALUE)
                        .build(),
                )
                .tags(
                    Tag::builder()
                        .key("Name")
                        .value(SECURITY_GROUP_NAME)
                        .build(),
                )
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(output) => {
            let id = output.group_id().unwrap_or_default();
            SecurityGroupId::parse(id)
                .map_err(|_| Error::unavailable(format!("{context}: EC2 returned group id {id:?}")))
        }
        // Another replica created it first: use theirs.
        Err(e) if e.code() == Some("InvalidGroup.Duplicate") => {
            find_security_group(target, vpc).await?.ok_or_else(|| {
                Error::unavailable(format!("{context}: created elsewhere but not found"))
            })
        }
        Err(e) => Err(map_sdk_error(e, "ec2:CreateSecurityGroup", &context)),
    }
}

/// Checks a security group a label names: it must exist, carry our tag
/// (`sprinters:sprinters = true`: the customer marked it for runners), and
/// allow no ingress at all. Refused otherwise, as a configuration error the
/// job's record shows. Returns the group's VPC, which must be the subnet's.
pub(crate) async fn check_named_group(
    target: &Target<'_>,
    group: &SecurityGroupId,
) -> Result<Option<String>> {
    let context = format!("checking security group {group}");
    let output = target
        .client
        .describe_security_groups()
        .group_ids(group.as_str())
        .send()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(e) if e.code() == Some("InvalidGroup.NotFound") => {
            return Err(Error::config(format!(
                "security group {group} does not exist in account {} ({})",
                target.account, target.region
            )));
        }
        Err(e) => return Err(map_sdk_error(e, "ec2:DescribeSecurityGroups", &context)),
    };
    let Some(found) = output
        .security_groups()
        .iter()
        .find(|g| g.group_id() == Some(group.as_str()))
    else {
        return Err(Error::config(format!(
            "security group {group} does not exist in account {} ({})",
            target.account, target.region
        )));
    };
    let tagged = found
        .tags()
        .iter()
        .any(|t| t.key() == Some(OWNED_TAG_KEY) && t.value() == Some(OWNED_TAG_VALUE));
    if !tagged {
        return Err(Error::config(format!(
            "security group {group} is not tagged {OWNED_TAG_KEY} = {OWNED_TAG_VALUE}; a label may name only a group its account marked for runners"
        )));
    }
    if !found.ip_permissions().is_empty() {
        return Err(Error::config(format!(
            "security group {group} has ingress rules; Sprinters runners accept no inbound traffic: remove the rules and retry"
        )));
    }
    Ok(found.vpc_id().map(str::to_owned))
}

async fn find_security_group(target: &Target<'_>, vpc: &str) -> Result<Option<SecurityGroupId>> {
    let context = format!("finding security group {SECURITY_GROUP_NAME} in {vpc}");
    let output = target
        .client
        .describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .filters(filter("group-name", SECURITY_GROUP_NAME))
        .send()
        .await
        .map_err(|e| map_sdk_error(e, "ec2:DescribeSecurityGroups", &context))?;
    let Some(group) = output.security_groups().first() else {
        return Ok(None);
    };
    let id = group.group_id().unwrap_or_default();
    // The role launches only into groups tagged as ours (IAM condition):
    // one made by hand under our name would be refused at launch with a
    // less helpful message.
    let ours = group
        .tags()
        .iter()
        .any(|t| t.key() == Some(OWNED_TAG_KEY) && t.value() == Some(OWNED_TAG_VALUE));
    if !ours {
        return Err(Error::config(format!(
            "security group {id} ({SECURITY_GROUP_NAME}) in {vpc} of account {} is not tagged {OWNED_TAG_KEY} = {OWNED_TAG_VALUE}; \
             the role launches only into groups so tagged: tag it, or delete it and Sprinters makes its own",
            target.account
        )));
    }
    if !group.ip_permissions().is_empty() {
        return Err(Error::config(format!(
            "security group {id} ({SECURITY_GROUP_NAME}) in {vpc} of account {} has ingress rules; \
             Sprinters runners accept no inbound traffic: remove the rules (or the group) and retry",
            target.account
        )));
    }
    SecurityGroupId::parse(id)
        .map(Some)
        .map_err(|_| Error::unavailable(format!("{context}: EC2 returned group id {id:?}")))
}
