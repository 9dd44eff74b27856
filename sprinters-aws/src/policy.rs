//! Least privilege as code: the IAM policy the customer's role grants, the
//! trust policy that lets the platform assume it, and a CloudFormation
//! template that creates both.
//!
//! The policy allows exactly [`LAUNCHER_ACTIONS`]: what the launcher calls,
//! nothing else. Terminating is limited to resources tagged
//! `sprinters:sprinters = true`, and tagging is allowed only as part of the
//! calls that create what we own.

use serde_json::{Value, json};
use sprinters_core::domain::AccountId;
use sprinters_core::{Error, Result};

/// The tag on everything Sprinters creates.
pub const OWNED_TAG_KEY: &str = "sprinters:sprinters";
/// Its value.
pub const OWNED_TAG_VALUE: &str = "true";

/// Every EC2 API action the launcher calls. A test of the launcher checks
/// that it calls nothing outside this list; the policy grants exactly it.
pub const LAUNCHER_ACTIONS: &[&str] = &[
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
];

/// The IAM policy document of the customer's role.
pub fn iam_policy() -> Value {
    let owned_request =
        json!({ "StringEquals": { format!("aws:RequestTag/{OWNED_TAG_KEY}"): OWNED_TAG_VALUE } });
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Look",
                "Effect": "Allow",
                // Describe calls support no resource-level permissions.
                "Action": [
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeInstances",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs"
                ],
                "Resource": "*"
            },
            {
                "Sid": "LaunchOnlyTaggedInstancesAndVolumes",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*"],
                "Condition": owned_request
            },
            {
                "Sid": "LaunchFromTheseResources",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": [
                    "arn:aws:ec2:*::image/*",
                    "arn:aws:ec2:*:*:subnet/*",
                    "arn:aws:ec2:*:*:network-interface/*",
                    "arn:aws:ec2:*:*:security-group/*"
                ]
            },
            {
                "Sid": "CreateOnlyTaggedSecurityGroups",
                "Effect": "Allow",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": "arn:aws:ec2:*:*:security-group/*",
                "Condition": owned_request
            },
            {
                "Sid": "CreateSecurityGroupsInVpcs",
                "Effect": "Allow",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": "arn:aws:ec2:*:*:vpc/*"
            },
            {
                "Sid": "TagOnlyWhileCreating",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": [
                    "arn:aws:ec2:*:*:instance/*",
                    "arn:aws:ec2:*:*:volume/*",
                    "arn:aws:ec2:*:*:security-group/*"
                ],
                "Condition": { "StringEquals": { "ec2:CreateAction": ["RunInstances", "CreateSecurityGroup"] } }
            },
            {
                "Sid": "TerminateOnlyWhatWeOwn",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": { "StringEquals": { format!("aws:ResourceTag/{OWNED_TAG_KEY}"): OWNED_TAG_VALUE } }
            }
        ]
    })
}

/// Checks an external id against IAM's rules: 2 to 1224 characters of
/// letters, digits and `+=,.@:/-_`.
pub fn validate_external_id(external_id: &str) -> Result<()> {
    let ok = (2..=1224).contains(&external_id.len())
        && external_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "the external id must be 2 to 1224 letters, digits or +=,.@:/-_",
        ))
    }
}

/// The trust policy: only `platform_account`, and only with the agreed
/// external id (against the confused-deputy problem).
pub fn trust_policy(platform_account: &AccountId, external_id: &str) -> Result<Value> {
    validate_external_id(external_id)?;
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{platform_account}:root") },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_id } }
        }]
    }))
}

/// A CloudFormation template (JSON) that creates the role and its policy in
/// the customer's account; the platform account and the external id are
/// parameters.
pub fn cloudformation_template() -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Sprinters: a role the Sprinters platform assumes (with your external id) to run GitHub Actions jobs on ephemeral EC2 instances in this account.",
        "Parameters": {
            "PlatformAccountId": {
                "Type": "String",
                "Description": "The AWS account of the Sprinters platform.",
                "AllowedPattern": "^[0-9]{12}$"
            },
            "ExternalId": {
                "Type": "String",
                "Description": "The external id agreed with the platform.",
                "NoEcho": true,
                "MinLength": 2,
                "MaxLength": 1224,
                "AllowedPattern": "^[A-Za-z0-9+=,.@:/_-]+$"
            }
        },
        "Resources": {
            "SprintersRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Description": "Assumed by the Sprinters platform to launch and end runner instances.",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Principal": { "AWS": { "Fn::Sub": "arn:${AWS::Partition}:iam::${PlatformAccountId}:root" } },
                            "Action": "sts:AssumeRole",
                            "Condition": { "StringEquals": { "sts:ExternalId": { "Ref": "ExternalId" } } }
                        }]
                    },
                    "Policies": [{
                        "PolicyName": "sprinters-runners",
                        "PolicyDocument": iam_policy()
                    }],
                    "Tags": [{ "Key": OWNED_TAG_KEY, "Value": OWNED_TAG_VALUE }]
                }
            }
        },
        "Outputs": {
            "RoleArn": {
                "Description": "Give this role ARN to the platform.",
                "Value": { "Fn::GetAtt": ["SprintersRole", "Arn"] }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(policy: &Value) -> Vec<String> {
        let mut all: Vec<String> = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            })
            .collect();
        all.sort();
        all.dedup();
        all
    }

    #[test]
    fn the_policy_grants_exactly_the_launcher_actions() {
        assert_eq!(actions(&iam_policy()), LAUNCHER_ACTIONS);
        let policy = iam_policy().to_string();
        assert!(
            !policy.contains("\"ec2:*\"") && !policy.contains("\"*:*\""),
            "no wildcard action"
        );
        for forbidden in [
            "ec2:CreateSnapshot",
            "ec2:GetConsoleOutput",
            "ec2-instance-connect",
            "ssm:",
            "ec2:CreateKeyPair",
            "ec2:AuthorizeSecurityGroupIngress",
        ] {
            assert!(!policy.contains(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn only_owned_resources_can_be_terminated_and_tags_only_come_with_creation() {
        let policy = iam_policy();
        for statement in policy["Statement"].as_array().unwrap() {
            match statement["Action"].as_str() {
                Some("ec2:TerminateInstances") => assert_eq!(
                    statement["Condition"]["StringEquals"]["aws:ResourceTag/sprinters:sprinters"],
                    "true"
                ),
                Some("ec2:CreateTags") => assert_eq!(
                    statement["Condition"]["StringEquals"]["ec2:CreateAction"],
                    json!(["RunInstances", "CreateSecurityGroup"])
                ),
                _ => {}
            }
        }
    }

    #[test]
    fn the_trust_policy_names_the_platform_and_requires_the_external_id() {
        let account = AccountId::parse("999988887777").unwrap();
        let trust = trust_policy(&account, "tenant-42:secret").unwrap();
        let statement = &trust["Statement"][0];
        assert_eq!(
            statement["Principal"]["AWS"],
            "arn:aws:iam::999988887777:root"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            "tenant-42:secret"
        );
        assert!(trust_policy(&account, "x").is_err());
        assert!(trust_policy(&account, "has space").is_err());
        let err = trust_policy(&account, "has\"quote").unwrap_err();
        assert!(
            !err.to_string().contains("quote"),
            "the id is not echoed: {err}"
        );
    }

    #[test]
    fn the_template_embeds_the_same_policy() {
        let t = cloudformation_template();
        assert_eq!(
            t["Resources"]["SprintersRole"]["Properties"]["Policies"][0]["PolicyDocument"],
            iam_policy()
        );
        assert_eq!(t["Parameters"]["ExternalId"]["NoEcho"], true);
    }
}
