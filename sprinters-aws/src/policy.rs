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

/// The IAM policy document of the customer's role, launching only from
/// the account's own images (the `sprinters-runner-*` images it built).
pub fn iam_policy() -> Value {
    iam_policy_with_image_owners(&[])
}

/// [`iam_policy`], also allowing images of `owners` (account ids, or
/// `amazon`), as `ec2:Owner` names them.
pub fn iam_policy_with_image_owners(owners: &[&str]) -> Value {
    let owned_request =
        json!({ "StringEquals": { format!("aws:RequestTag/{OWNED_TAG_KEY}"): OWNED_TAG_VALUE } });
    let mut image_owners = vec!["${aws:PrincipalAccount}".to_owned()];
    image_owners.extend(owners.iter().map(|o| (*o).to_owned()));
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
            // What the security page promises of every instance, enforced
            // by IAM whatever the caller sends: tagged as ours, IMDSv2
            // only, one metadata hop.
            {
                "Sid": "LaunchOnlyLockedDownTaggedInstances",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {
                    "StringEquals": {
                        format!("aws:RequestTag/{OWNED_TAG_KEY}"): OWNED_TAG_VALUE,
                        "ec2:MetadataHttpTokens": "required"
                    },
                    "NumericLessThanEquals": { "ec2:MetadataHttpPutResponseHopLimit": "1" }
                }
            },
            {
                "Sid": "LaunchOnlyEncryptedTaggedVolumes",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": "arn:aws:ec2:*:*:volume/*",
                "Condition": {
                    "StringEquals": { format!("aws:RequestTag/{OWNED_TAG_KEY}"): OWNED_TAG_VALUE },
                    "Bool": { "ec2:Encrypted": "true" }
                }
            },
            {
                "Sid": "LaunchOnlyFromAllowedImages",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": "arn:aws:ec2:*::image/*",
                "Condition": { "StringEquals": { "ec2:Owner": image_owners } }
            },
            {
                "Sid": "LaunchOnlyIntoOurSecurityGroups",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": "arn:aws:ec2:*:*:security-group/*",
                "Condition": { "StringEquals": { format!("aws:ResourceTag/{OWNED_TAG_KEY}"): OWNED_TAG_VALUE } }
            },
            {
                // The subnet, the instance's new interface, and the spot
                // request a spot launch makes.
                "Sid": "LaunchIntoSubnets",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": [
                    "arn:aws:ec2:*:*:subnet/*",
                    "arn:aws:ec2:*:*:network-interface/*",
                    "arn:aws:ec2:*:*:spot-instances-request/*"
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

/// The role the control plane runs as in the platform's account, unless
/// the platform names another: the one principal a customer's role trusts.
pub const PLATFORM_ROLE_NAME: &str = "sprinters-control-plane";

/// The trust policy: only the control plane's role `platform_role` in
/// `platform_account` (not every principal of that account), and only with
/// the agreed external id (against the confused-deputy problem).
pub fn trust_policy(
    platform_account: &AccountId,
    platform_role: &str,
    external_id: &str,
) -> Result<Value> {
    validate_external_id(external_id)?;
    // IAM role names: 1 to 64 of letters, digits and +=,.@_-.
    let valid_role = (1..=64).contains(&platform_role.len())
        && platform_role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if !valid_role {
        return Err(Error::config(
            "the platform role name must be 1 to 64 letters, digits or +=,.@_-",
        ));
    }
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{platform_account}:role/{platform_role}") },
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
            "RunnerImageOwners": {
                "Type": "CommaDelimitedList",
                "Description": "Accounts (ids, or amazon) whose images the role may launch besides this account's own: the platform's, if it publishes the runner images.",
                "Default": ""
            },
            "PlatformRoleName": {
                "Type": "String",
                "Description": "The role the platform's control plane runs as: the only principal this role trusts.",
                "Default": PLATFORM_ROLE_NAME,
                "AllowedPattern": "^[A-Za-z0-9+=,.@_-]{1,64}$"
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
                            "Principal": { "AWS": { "Fn::Sub": "arn:${AWS::Partition}:iam::${PlatformAccountId}:role/${PlatformRoleName}" } },
                            "Action": "sts:AssumeRole",
                            "Condition": { "StringEquals": { "sts:ExternalId": { "Ref": "ExternalId" } } }
                        }]
                    },
                    "Policies": [{
                        "PolicyName": "sprinters-runners",
                        "PolicyDocument": template_policy()
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

/// [`iam_policy`] with the image owners the stack's `RunnerImageOwners`
/// parameter adds.
fn template_policy() -> Value {
    let mut policy = iam_policy();
    if let Some(images) = policy["Statement"].as_array_mut().and_then(|s| {
        s.iter_mut()
            .find(|s| s["Sid"] == "LaunchOnlyFromAllowedImages")
    }) {
        images["Condition"]["StringEquals"]["ec2:Owner"] = json!({
            "Fn::Split": [",", { "Fn::Join": [",", [
                { "Ref": "AWS::AccountId" },
                { "Fn::Join": [",", { "Ref": "RunnerImageOwners" }] }
            ]] }]
        });
    }
    policy
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

    /// Each resource `RunInstances` touches, and the conditions IAM holds
    /// it to.
    #[test]
    fn every_launch_is_held_to_the_security_pages_promises_by_iam() {
        let policy = iam_policy_with_image_owners(&["amazon"]);
        let statements = policy["Statement"].as_array().unwrap();
        let on = |resource: &str| -> &Value {
            statements
                .iter()
                .find(|s| {
                    s["Action"] == "ec2:RunInstances"
                        && (s["Resource"] == resource
                            || s["Resource"]
                                .as_array()
                                .is_some_and(|r| r.iter().any(|x| x == resource)))
                })
                .unwrap_or_else(|| panic!("no statement for {resource}"))
        };
        let instance = &on("arn:aws:ec2:*:*:instance/*")["Condition"];
        assert_eq!(
            instance["StringEquals"],
            json!({"aws:RequestTag/sprinters:sprinters": "true", "ec2:MetadataHttpTokens": "required"})
        );
        assert_eq!(
            instance["NumericLessThanEquals"],
            json!({"ec2:MetadataHttpPutResponseHopLimit": "1"})
        );
        let volume = &on("arn:aws:ec2:*:*:volume/*")["Condition"];
        assert_eq!(volume["Bool"], json!({"ec2:Encrypted": "true"}));
        assert_eq!(
            volume["StringEquals"],
            json!({"aws:RequestTag/sprinters:sprinters": "true"})
        );
        assert_eq!(
            on("arn:aws:ec2:*::image/*")["Condition"],
            json!({"StringEquals": {"ec2:Owner": ["${aws:PrincipalAccount}", "amazon"]}})
        );
        assert_eq!(
            on("arn:aws:ec2:*:*:security-group/*")["Condition"],
            json!({"StringEquals": {"aws:ResourceTag/sprinters:sprinters": "true"}})
        );
        let rest = on("arn:aws:ec2:*:*:subnet/*");
        assert_eq!(
            rest["Resource"],
            json!([
                "arn:aws:ec2:*:*:subnet/*",
                "arn:aws:ec2:*:*:network-interface/*",
                "arn:aws:ec2:*:*:spot-instances-request/*"
            ])
        );
        assert!(rest.get("Condition").is_none());
        // Every RunInstances statement is one of those: nothing else.
        let launch = statements
            .iter()
            .filter(|s| s["Action"] == "ec2:RunInstances")
            .count();
        assert_eq!(launch, 5);
        assert_eq!(
            iam_policy()["Statement"][3]["Condition"],
            json!({"StringEquals": {"ec2:Owner": ["${aws:PrincipalAccount}"]}}),
            "by default only the account's own images"
        );
    }

    #[test]
    fn the_trust_policy_names_the_platform_and_requires_the_external_id() {
        let account = AccountId::parse("999988887777").unwrap();
        let trust_policy = |id: &str| trust_policy(&account, PLATFORM_ROLE_NAME, id);
        let trust = trust_policy("tenant-42:secret").unwrap();
        let statement = &trust["Statement"][0];
        assert_eq!(
            statement["Principal"]["AWS"], "arn:aws:iam::999988887777:role/sprinters-control-plane",
            "the control plane's role, not the whole account"
        );
        assert!(super::trust_policy(&account, "a/b", "tenant-42").is_err());
        let template = cloudformation_template();
        assert_eq!(
            template["Resources"]["SprintersRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
                [0]["Principal"]["AWS"]["Fn::Sub"],
            "arn:${AWS::Partition}:iam::${PlatformAccountId}:role/${PlatformRoleName}"
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            "tenant-42:secret"
        );
        assert!(trust_policy("x").is_err());
        assert!(trust_policy("has space").is_err());
        let err = trust_policy("has\"quote").unwrap_err();
        assert!(
            !err.to_string().contains("quote"),
            "the id is not echoed: {err}"
        );
    }

    #[test]
    fn the_template_embeds_the_same_policy() {
        let t = cloudformation_template();
        let mut embedded =
            t["Resources"]["SprintersRole"]["Properties"]["Policies"][0]["PolicyDocument"].clone();
        let owners = embedded["Statement"][3]["Condition"]["StringEquals"]["ec2:Owner"].take();
        assert_eq!(
            owners.to_string(),
            r#"{"Fn::Split":[",",{"Fn::Join":[",",[{"Ref":"AWS::AccountId"},{"Fn::Join":[",",{"Ref":"RunnerImageOwners"}]}]]}]}"#,
            "the account's own images, and the parameter's owners"
        );
        let mut plain = iam_policy();
        plain["Statement"][3]["Condition"]["StringEquals"]["ec2:Owner"] = Value::Null;
        assert_eq!(embedded, plain, "otherwise the same policy");
        assert_eq!(t["Parameters"]["ExternalId"]["NoEcho"], true);
    }
}
