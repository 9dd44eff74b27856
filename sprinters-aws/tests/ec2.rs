//! The EC2 launcher against the AWS API emulator (moto), through real
//! `aws-sdk-ec2` and `aws-sdk-sts` clients: the core conformance suite, and
//! what a launched instance looks like from EC2's side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::types::{HttpTokensState, InstanceAttributeName, IpPermission, IpRange, Tag};
use base64::Engine as _;
use secrecy::SecretString;
use sprinters_aws::launcher::{
    ATTEMPT_TAG, CONTROLLER_TAG, JOB_TAG, REPOSITORY_TAG, RUN_TAG, RUNNER_TAG, SECURITY_GROUP_NAME,
    SPOT_TAG,
};
use sprinters_aws::policy::{LAUNCHER_ACTIONS, OWNED_TAG_KEY};
use sprinters_aws::{Ec2Launcher, ImageCatalog};
use sprinters_core::ErrorKind;
use sprinters_core::domain::{
    AccountId, JobId, JobKey, Region, Repository, RunAttempt, RunId, RunnerName, SubnetId,
};
use sprinters_core::labels::{Image, LabelParser, RunnerSpec};
use sprinters_core::ports::{
    CloudLauncher, Credentials, LaunchRequest, Launched, Market, TerminateRequest,
};
use sprinters_core::testing::{LauncherFixture, cloud_launcher};

use common::*;

/// An account with its role assumed and a runner image published.
struct Customer {
    account: AccountId,
    credentials: Credentials,
    region: Region,
    ec2: aws_sdk_ec2::Client,
    /// The runner image `customer` published (`ubuntu-24.04`).
    ami: String,
}

async fn customer() -> Customer {
    let account = fresh_account();
    let credentials = customer_credentials(&account).await;
    let region = Region::us_east_1();
    let ec2 = ec2(&credentials, &region);
    let ami = publish_image(&ec2, "ubuntu-24.04").await;
    Customer {
        account,
        credentials,
        region,
        ec2,
        ami,
    }
}

fn spec(label: &str) -> RunnerSpec {
    LabelParser::new().parse_label(label).unwrap()
}

fn request(c: &Customer, controller: &str, job: u64, label: &str, market: Market) -> LaunchRequest {
    let job = JobKey::new(JobId::new(job), RunAttempt::FIRST);
    LaunchRequest::new(
        c.account.clone(),
        c.credentials.clone(),
        controller.to_owned(),
        job,
        RunId::new(31337),
        Repository::parse("octo-org/hello").unwrap(),
        RunnerName::for_launch(job, 1),
        spec(label),
        market,
        format!("{controller}-{job}-{}", market.as_str()),
        SecretString::from("eyJqaXQiOiJjb25maWcifQ==".to_owned()),
        Duration::from_secs(3600),
    )
}

async fn describe(c: &Customer, launched: &Launched) -> aws_sdk_ec2::types::Instance {
    let out = c
        .ec2
        .describe_instances()
        .instance_ids(launched.instance_id.as_str())
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0].clone()
}

/// The volumes attached to `launched`'s instance.
async fn volumes_of(
    c: &Customer,
    launched: &Launched,
) -> aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput {
    c.ec2
        .describe_volumes()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("attachment.instance-id")
                .values(launched.instance_id.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_launcher_passes_the_core_conformance_suite() {
    let c = customer().await;
    let launcher = Ec2Launcher::new(config());
    let fixture = LauncherFixture {
        account: c.account.clone(),
        credentials: c.credentials.clone(),
        controller_id: unique("conformance"),
        spec: spec("sprinters:aws:ubuntu-24.04"),
    };
    cloud_launcher(&launcher, &fixture).await;
}

/// Image names are prefixes of each other: `ubuntu-24.04` must not launch
/// the newer `ubuntu-24.04-slim` image of the same architecture.
#[tokio::test]
async fn an_image_name_launches_its_own_image_not_a_newer_longer_namesake() {
    let c = customer().await;
    let slim = publish_image(&c.ec2, "ubuntu-24.04-slim").await;
    let launcher = Ec2Launcher::new(config());
    let req = request(
        &c,
        &unique("namesake"),
        4000,
        "sprinters:aws:ubuntu-24.04",
        Market::OnDemand,
    );
    let launched = launcher.launch(req).await.unwrap();
    let instance = describe(&c, &launched).await;
    assert_ne!(instance.image_id(), Some(slim.as_str()));
    assert_eq!(instance.image_id(), Some(c.ami.as_str()));
}

#[tokio::test]
async fn a_launched_instance_is_locked_down_and_tagged() {
    let c = customer().await;
    let launcher = Ec2Launcher::new(config());
    let controller = unique("locked");
    let req = request(
        &c,
        &controller,
        4001,
        "sprinters:aws:ubuntu-24.04:m7i.large",
        Market::OnDemand,
    );
    let launched = launcher.launch(req.clone()).await.unwrap();
    let instance = describe(&c, &launched).await;

    assert_eq!(instance.key_name(), None, "no key pair");
    let metadata = instance.metadata_options().unwrap();
    assert_eq!(
        metadata.http_tokens(),
        Some(&HttpTokensState::Required),
        "IMDSv2 only"
    );
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1), "one hop");
    assert_eq!(
        instance.client_token(),
        Some(req.idempotency_token.as_str()),
        "the idempotency token is EC2's client token"
    );
    assert_eq!(
        instance.instance_type().map(|t| t.as_str()),
        Some("m7i.large")
    );

    // The security group: ours, tagged, with no ingress rule at all.
    let groups: Vec<String> = instance
        .network_interfaces()
        .iter()
        .flat_map(|n| n.groups())
        .chain(instance.security_groups())
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    assert!(!groups.is_empty(), "the instance has a security group");
    let ours = c
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(SECURITY_GROUP_NAME)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group = &ours.security_groups()[0];
    assert!(
        groups.iter().all(|g| Some(g.as_str()) == group.group_id()),
        "the instance is in our group only: {groups:?}"
    );
    assert!(
        group.ip_permissions().is_empty(),
        "no ingress rule: {:?}",
        group.ip_permissions()
    );
    assert!(group.tags().iter().any(|t| t.key() == Some(OWNED_TAG_KEY)));

    // Instance-initiated shutdown terminates.
    let shutdown = c
        .ec2
        .describe_instance_attribute()
        .instance_id(launched.instance_id.as_str())
        .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value()),
        Some("terminate")
    );

    // The user data is the boot script.
    let user_data = c
        .ec2
        .describe_instance_attribute()
        .instance_id(launched.instance_id.as_str())
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let script = base64::engine::general_purpose::STANDARD
        .decode(user_data.user_data().and_then(|v| v.value()).unwrap())
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert!(script.starts_with("#!/bin/sh"), "{}", &script[..40]);

    // Tags on the instance.
    let tags = |tags: &[Tag]| -> BTreeSet<(String, String)> {
        tags.iter()
            .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
            .collect()
    };
    let expected: BTreeSet<(String, String)> = [
        (OWNED_TAG_KEY, "true"),
        (CONTROLLER_TAG, controller.as_str()),
        (JOB_TAG, "4001"),
        (ATTEMPT_TAG, "1"),
        (RUN_TAG, "31337"),
        (REPOSITORY_TAG, "octo-org/hello"),
        (RUNNER_TAG, "sprinters-4001-1-1"),
        (SPOT_TAG, "false"),
        ("Name", "sprinters-4001-1-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(tags(instance.tags()), expected);

    // Every volume: encrypted, gp3, deleted on termination, tagged; the
    // boot volume at the label's iops, a 14 GiB temp and a 4 GiB swap.
    let mappings = instance.block_device_mappings();
    assert_eq!(mappings.len(), 3, "boot, temp and swap: {mappings:?}");
    for m in mappings {
        assert_eq!(
            m.ebs().and_then(|e| e.delete_on_termination()),
            Some(true),
            "{:?} is deleted on termination",
            m.device_name()
        );
    }
    let volumes = volumes_of(&c, &launched).await;
    let mut sizes = BTreeSet::new();
    for v in volumes.volumes() {
        assert_eq!(
            v.encrypted(),
            Some(true),
            "{:?} is encrypted",
            v.volume_id()
        );
        assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
        assert_eq!(tags(v.tags()), expected, "the volume carries the tags");
        let device = v.attachments()[0].device().unwrap().to_owned();
        sizes.insert((device, v.size().unwrap()));
    }
    assert!(sizes.contains(&("/dev/sdf".to_owned(), 14)), "{sizes:?}");
    assert!(sizes.contains(&("/dev/sdg".to_owned(), 4)), "{sizes:?}");
    assert_eq!(volumes.volumes().len(), 3);
}

/// gp3 allows 500 IOPS per GiB: the emulator (scripts/moto_server.py)
/// refuses 16,000 IOPS on the image's 15 GiB root as EC2 does, and the
/// launcher gives `root=gp3/max` the 32 GiB boot volume its IOPS need.
#[tokio::test]
async fn root_gp3_max_gets_the_boot_volume_its_iops_need() {
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, VolumeType};
    let c = customer().await;
    let image = c
        .ec2
        .describe_images()
        .owners("self")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let refused = c
        .ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_type(VolumeType::Gp3)
                        .iops(16_000)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect_err("16,000 IOPS on 15 GiB")
        .into_service_error();
    let meta = aws_sdk_ec2::error::ProvideErrorMetadata::meta(&refused);
    assert_eq!(meta.code(), Some("InvalidParameterValue"), "{meta:?}");

    let launcher = Ec2Launcher::new(config());
    let req = request(
        &c,
        &unique("gp3max"),
        4201,
        "sprinters:aws:ubuntu-24.04:root=gp3/max/max",
        Market::OnDemand,
    );
    let launched = launcher.launch(req).await.unwrap();
    let volumes = volumes_of(&c, &launched).await;
    let root = volumes
        .volumes()
        .iter()
        .find(|v| v.attachments()[0].device() == Some("/dev/sda1"))
        .expect("the boot volume");
    // moto keeps a mapping's size, not its IOPS or throughput: those the
    // request carried are checked by `launcher::run`'s unit tests, and
    // the emulator refused the request had they not fit the size.
    assert_eq!(root.size(), Some(32));
}

/// `temp=ephemeral` on a type without an instance store is refused before
/// `RunInstances`, naming the type (the boot script would find no disk);
/// on a type with one it launches, with no temp volume.
#[tokio::test]
async fn temp_ephemeral_needs_a_type_with_an_instance_store() {
    let c = customer().await;
    let launcher = Ec2Launcher::new(config());
    let controller = unique("ephemeral");
    let refused = launcher
        .launch(request(
            &c,
            &controller,
            4301,
            "sprinters:aws:ubuntu-24.04:m7i.large:temp=ephemeral",
            Market::OnDemand,
        ))
        .await
        .expect_err("m7i.large has no instance store");
    assert_eq!(*refused.kind(), ErrorKind::Config, "{refused}");
    assert!(
        refused.to_string().contains("m7i.large has none"),
        "{refused}"
    );
    let listed = launcher
        .list_owned(sprinters_core::ports::ListOwned::new(
            c.account.clone(),
            c.credentials.clone(),
            c.region.clone(),
            controller.clone(),
        ))
        .await
        .unwrap();
    assert!(listed.instances.is_empty(), "nothing was started");

    let launched = launcher
        .launch(request(
            &c,
            &controller,
            4302,
            "sprinters:aws:ubuntu-24.04:m6id.large:temp=ephemeral",
            Market::OnDemand,
        ))
        .await
        .unwrap();
    let instance = describe(&c, &launched).await;
    let devices: Vec<_> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.device_name())
        .collect();
    assert_eq!(
        devices.len(),
        2,
        "boot and swap, no temp volume: {devices:?}"
    );
}

/// A group named as ours but not tagged as ours (made by hand) is not
/// used: the role launches only into tagged groups, and the error says so
/// instead of a refused `RunInstances`.
#[tokio::test]
async fn a_group_with_our_name_but_not_our_tag_is_refused_naming_the_tag() {
    let c = customer().await;
    let vpc = c.ec2.describe_vpcs().send().await.unwrap().vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    c.ec2
        .create_security_group()
        .group_name(SECURITY_GROUP_NAME)
        .description("made by hand")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    let err = Ec2Launcher::new(config())
        .launch(request(
            &c,
            &unique("untagged"),
            4401,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .expect_err("an untagged group");
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string()
            .contains("is not tagged sprinters:sprinters = true"),
        "{err}"
    );
}

#[tokio::test]
async fn spot_launches_are_spot_in_a_zone_with_a_price() {
    let c = customer().await;
    let launcher = Ec2Launcher::new(config());
    let controller = unique("spot");
    let req = request(
        &c,
        &controller,
        4101,
        "sprinters:aws:ubuntu-24.04:spot=auto",
        Market::Spot,
    );
    let launched = launcher.launch(req).await.unwrap();
    assert!(launched.spot);
    assert!(launched.availability_zone.is_some());
    let instance = describe(&c, &launched).await;
    assert_eq!(
        instance.instance_lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    assert_eq!(
        instance
            .tags()
            .iter()
            .find(|t| t.key() == Some(SPOT_TAG))
            .and_then(|t| t.value()),
        Some("auto")
    );
    let info = launcher
        .list_owned(sprinters_core::ports::ListOwned::new(
            c.account.clone(),
            c.credentials.clone(),
            c.region.clone(),
            controller,
        ))
        .await
        .unwrap();
    assert!(info.instances[0].spot, "listed as spot");
}

#[tokio::test]
async fn a_pinned_zone_and_subnet_are_honoured() {
    let c = customer().await;
    let launcher = Ec2Launcher::new(config());
    let controller = unique("pinned");
    let zone = "us-east-1c";
    let zoned = launcher
        .launch(request(
            &c,
            &controller,
            4201,
            &format!("sprinters:aws:ubuntu-24.04:us-east-1/{zone}"),
            Market::OnDemand,
        ))
        .await
        .unwrap();
    assert_eq!(
        zoned.availability_zone.as_ref().map(|z| z.as_str()),
        Some(zone)
    );

    let subnets = c.ec2.describe_subnets().send().await.unwrap();
    let subnet = subnets
        .subnets()
        .iter()
        .find(|s| s.availability_zone() == Some("us-east-1b"))
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_owned();
    let pinned = launcher
        .launch(request(
            &c,
            &controller,
            4202,
            &format!("sprinters:aws:ubuntu-24.04:us-east-1/us-east-1b/{subnet}"),
            Market::OnDemand,
        ))
        .await
        .unwrap();
    assert_eq!(
        describe(&c, &pinned).await.subnet_id(),
        Some(subnet.as_str())
    );
}

#[tokio::test]
async fn replicas_share_one_security_group_per_vpc() {
    let c = customer().await;
    let controller = unique("replicas");
    let (a, b) = (Ec2Launcher::new(config()), Ec2Launcher::new(config()));
    let (x, y) = tokio::join!(
        a.launch(request(
            &c,
            &controller,
            4301,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand
        )),
        b.launch(request(
            &c,
            &controller,
            4302,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand
        )),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let groups = c
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(SECURITY_GROUP_NAME)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        groups.security_groups().len(),
        1,
        "one group, not one per replica"
    );
    let group_of = |i: &aws_sdk_ec2::types::Instance| {
        i.network_interfaces()[0].groups()[0]
            .group_id()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        group_of(&describe(&c, &x).await),
        group_of(&describe(&c, &y).await)
    );
}

#[tokio::test]
async fn a_security_group_that_gained_ingress_is_refused() {
    let c = customer().await;
    let controller = unique("tampered");
    let first = Ec2Launcher::new(config());
    first
        .launch(request(
            &c,
            &controller,
            4401,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .unwrap();
    let groups = c
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(SECURITY_GROUP_NAME)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group = groups.security_groups()[0].group_id().unwrap().to_owned();
    c.ec2
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    // A launcher that has not cached the group finds it tampered with.
    let fresh = Ec2Launcher::new(config());
    let err = fresh
        .launch(request(
            &c,
            &controller,
            4402,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains(&group) && err.message().contains("ingress"),
        "{err}"
    );
}

/// A group of the customer's own in its default VPC, tagged as given.
async fn own_group(c: &Customer, name: &str, tagged: bool) -> String {
    let vpcs = c
        .ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("is-default")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_owned();
    let mut create = c
        .ec2
        .create_security_group()
        .group_name(name)
        .description("a customer's group")
        .vpc_id(vpc);
    if tagged {
        create = create.tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(Tag::builder().key(OWNED_TAG_KEY).value("true").build())
                .build(),
        );
    }
    create.send().await.unwrap().group_id().unwrap().to_owned()
}

/// A group a label names must carry our tag, allow no ingress, belong to
/// the launch's account and be in the VPC of the subnet the launch uses.
#[tokio::test]
async fn a_label_named_group_must_be_ours_closed_and_in_the_subnets_vpc() {
    let c = customer().await;
    let controller = unique("named-group");
    let label = |group: &str| format!("sprinters:aws:ubuntu-24.04:{group}");

    let untagged = own_group(&c, &unique("untagged"), false).await;
    let err = Ec2Launcher::new(config())
        .launch(request(
            &c,
            &controller,
            4501,
            &label(&untagged),
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains(&untagged) && err.message().contains("is not tagged"),
        "{err}"
    );

    let tagged = own_group(&c, &unique("tagged"), true).await;
    let launched = Ec2Launcher::new(config())
        .launch(request(
            &c,
            &controller,
            4502,
            &label(&tagged),
            Market::OnDemand,
        ))
        .await
        .unwrap();
    let instance = describe(&c, &launched).await;
    assert_eq!(
        instance.security_groups()[0].group_id(),
        Some(tagged.as_str())
    );

    c.ec2
        .authorize_security_group_ingress()
        .group_id(&tagged)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let err = Ec2Launcher::new(config())
        .launch(request(
            &c,
            &controller,
            4503,
            &label(&tagged),
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains(&tagged) && err.message().contains("ingress"),
        "{err}"
    );

    // Another account's group, tagged and closed, is not this account's.
    let other = customer().await;
    let theirs = own_group(&other, &unique("theirs"), true).await;
    let err = Ec2Launcher::new(config())
        .launch(request(
            &c,
            &controller,
            4504,
            &label(&theirs),
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("does not exist"), "{err}");

    // A fit group of another VPC than the subnet's: refused before
    // RunInstances, naming both (moto would launch it).
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let elsewhere = c
        .ec2
        .create_security_group()
        .group_name(unique("elsewhere"))
        .description("a customer's group in another VPC")
        .vpc_id(&vpc)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(Tag::builder().key(OWNED_TAG_KEY).value("true").build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let err = Ec2Launcher::new(config())
        .launch(request(
            &c,
            &controller,
            4505,
            &label(&elsewhere),
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.message().contains(&elsewhere) && err.message().contains(&vpc),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_images_and_subnets_are_config_errors_that_name_them() {
    let c = customer().await;
    let controller = unique("config");
    let launcher = Ec2Launcher::new(config());
    let err = launcher
        .launch(request(
            &c,
            &controller,
            4501,
            "sprinters:aws:ubuntu-22.04",
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains("sprinters-runner-ubuntu-22.04-*"),
        "{err}"
    );

    let pinned = Ec2Launcher::builder(config())
        .images(
            ImageCatalog::new()
                .pin(c.region.clone(), Image::DEFAULT, "ami-0123456789abcdef0")
                .unwrap(),
        )
        .build();
    let err = pinned
        .launch(request(
            &c,
            &controller,
            4502,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains("ami-0123456789abcdef0"), "{err}");

    let subnet = SubnetId::parse("subnet-0123456789abcdef0").unwrap();
    let err = launcher
        .launch(request(
            &c,
            &controller,
            4503,
            &format!("sprinters:aws:ubuntu-24.04:us-east-1/us-east-1a/{subnet}"),
            Market::OnDemand,
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Config, "{err}");
    assert!(err.message().contains(subnet.as_str()), "{err}");
}

/// Idempotency proven against the emulator, not the launcher's own cache:
/// a second launcher (another process, after a crash) retrying the same
/// request gets the first instance, and the same token with another JIT
/// config (what a resumed launch sends) is refused as EC2 refuses it
/// (IdempotentParameterMismatch), which the engine answers by adopting the
/// first instance.
#[tokio::test]
async fn a_launch_retried_by_another_process_gets_the_first_instance() {
    let c = customer().await;
    let controller = unique("token");
    // The subnet pinned, so that the retry's parameters are the first's
    // (an unpinned launch picks a subnet at random).
    let subnets = c.ec2.describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].subnet_id().unwrap().to_owned();
    let zone = subnets.subnets()[0].availability_zone().unwrap().to_owned();
    let req = request(
        &c,
        &controller,
        4301,
        &format!("sprinters:aws:ubuntu-24.04:us-east-1/{zone}/{subnet}"),
        Market::OnDemand,
    );
    let first = Ec2Launcher::new(config())
        .launch(req.clone())
        .await
        .unwrap();
    let again = Ec2Launcher::new(config())
        .launch(req.clone())
        .await
        .unwrap();
    assert_eq!(again.instance_id, first.instance_id, "no second instance");
    let tagged = c
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name(format!("tag:{CONTROLLER_TAG}"))
                .values(&controller)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let count: usize = tagged
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(count, 1, "one instance for the token");

    let mut other = req.clone();
    other.jit_config = SecretString::from("eyJvdGhlciI6ImNvbmZpZyJ9".to_owned());
    let err = Ec2Launcher::new(config()).launch(other).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.to_string().contains("IdempotentParameterMismatch"),
        "{err}"
    );
}

#[tokio::test]
async fn terminating_twice_and_unknown_instances_succeed() {
    let c = customer().await;
    let launcher = Ec2Launcher::new(config());
    let controller = unique("terminate");
    let launched = launcher
        .launch(request(
            &c,
            &controller,
            4601,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .unwrap();
    let terminate = || {
        TerminateRequest::new(
            c.account.clone(),
            c.credentials.clone(),
            c.region.clone(),
            launched.instance_id.clone(),
        )
    };
    assert!(launcher.terminate(terminate()).await.unwrap().was_running);
    assert!(!launcher.terminate(terminate()).await.unwrap().was_running);
}

#[tokio::test]
async fn the_launcher_calls_exactly_the_actions_the_policy_grants() {
    let c = customer().await;
    let log = OperationLog::default();
    let launcher = Ec2Launcher::new(config().interceptor(log.interceptor()));
    let controller = unique("actions");
    // Every path: default network, our group created, spot zone by price,
    // launch, list, describe, terminate.
    cloud_launcher(
        &launcher,
        &LauncherFixture {
            account: c.account.clone(),
            credentials: c.credentials.clone(),
            controller_id: controller.clone(),
            spec: spec("sprinters:aws:ubuntu-24.04"),
        },
    )
    .await;
    launcher
        .launch(request(
            &c,
            &controller,
            4701,
            "sprinters:aws:ubuntu-24.04:spot=true",
            Market::Spot,
        ))
        .await
        .unwrap();
    let subnet = c.ec2.describe_subnets().send().await.unwrap().subnets()[0]
        .subnet_id()
        .unwrap()
        .to_owned();
    let other_vpc_zone = launcher
        .launch(request(
            &c,
            &controller,
            4702,
            &format!("sprinters:aws:ubuntu-24.04:us-east-1/{}/{subnet}", {
                let s = c
                    .ec2
                    .describe_subnets()
                    .subnet_ids(&subnet)
                    .send()
                    .await
                    .unwrap();
                s.subnets()[0].availability_zone().unwrap().to_owned()
            }),
            Market::OnDemand,
        ))
        .await;
    other_vpc_zone.unwrap();
    launcher
        .launch(request(
            &c,
            &controller,
            4703,
            "sprinters:aws:ubuntu-24.04:m6id.large:temp=ephemeral",
            Market::OnDemand,
        ))
        .await
        .unwrap();

    let called: BTreeSet<String> = log.calls().into_iter().collect();
    // Tags are written only inside RunInstances and CreateSecurityGroup
    // (TagSpecifications), which IAM authorizes as ec2:CreateTags.
    let mut granted: BTreeSet<String> = LAUNCHER_ACTIONS.iter().map(|a| a.to_string()).collect();
    assert!(granted.remove("ec2:CreateTags"));
    assert_eq!(
        called, granted,
        "what the launcher calls is what the policy grants"
    );
}
