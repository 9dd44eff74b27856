//! The in-process EC2/STS stand-in answers the real SDK clients well
//! enough for the adapters: the launcher passes the core conformance suite
//! against it, roles are assumed through it, and its delay is honoured.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use secrecy::SecretString;
use sprinters_aws::testing::{AwsStandIn, STAND_IN_ACCOUNT};
use sprinters_aws::{AssumeRoleProvider, AwsClientConfig, CustomerRole, Ec2Launcher};
use sprinters_core::ErrorKind;
use sprinters_core::domain::{
    AccountId, JobId, JobKey, Owner, OwnerId, Repository, RunAttempt, RunId, RunnerName,
};
use sprinters_core::labels::LabelParser;
use sprinters_core::ports::{
    CloudLauncher, CredentialProvider, Credentials, CredentialsRequest, LaunchRequest, Market,
};
use sprinters_core::testing::{LauncherFixture, cloud_launcher};

async fn assumed(stand_in: &AwsStandIn) -> (AssumeRoleProvider, Credentials) {
    let account = AccountId::parse(STAND_IN_ACCOUNT).unwrap();
    let role = CustomerRole::new(
        &account,
        &format!("arn:aws:iam::{STAND_IN_ACCOUNT}:role/SprintersRole"),
        SecretString::from("agreed-external-id".to_owned()),
    )
    .unwrap();
    let provider = AssumeRoleProvider::builder(config(stand_in))
        .platform_credentials(SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("AKIAPLATFORM", "platform", None, None, "test"),
        ))
        .role(OwnerId::new(31337), account.clone(), role)
        .build()
        .await;
    let credentials = provider
        .credentials(CredentialsRequest::new(
            account,
            OwnerId::new(31337),
            Owner::parse("octo-org").unwrap(),
        ))
        .await
        .unwrap();
    (provider, credentials)
}

fn config(stand_in: &AwsStandIn) -> AwsClientConfig {
    AwsClientConfig::new().endpoint_url(stand_in.uri()).unwrap()
}

#[tokio::test]
async fn the_launcher_passes_the_conformance_suite_against_the_stand_in() {
    let stand_in = AwsStandIn::start().await.unwrap();
    let (_, credentials) = assumed(&stand_in).await;
    assert_eq!(
        stand_in.assumed_roles(),
        vec![(
            format!("arn:aws:iam::{STAND_IN_ACCOUNT}:role/SprintersRole"),
            "agreed-external-id".to_owned()
        )]
    );
    assert!(credentials.access_key_id.starts_with("ASIA"));
    let fixture = LauncherFixture {
        account: AccountId::parse(STAND_IN_ACCOUNT).unwrap(),
        credentials,
        controller_id: "stand-in-conformance".to_owned(),
        spec: LabelParser::new()
            .parse_label("sprinters:aws:ubuntu-24.04:spot=auto")
            .unwrap(),
    };
    cloud_launcher(&Ec2Launcher::new(config(&stand_in)), &fixture).await;
    let calls = stand_in.calls();
    for action in [
        "RunInstances",
        "DescribeInstances",
        "TerminateInstances",
        "DescribeImages",
    ] {
        assert!(calls.get(action).is_some_and(|n| *n > 0), "{calls:?}");
    }
}

#[tokio::test]
async fn spot_goes_to_the_cheapest_zone_at_its_price_and_our_group_is_made_once() {
    let stand_in = AwsStandIn::start().await.unwrap();
    let (_, credentials) = assumed(&stand_in).await;
    let launcher = Ec2Launcher::new(config(&stand_in));
    let spec = LabelParser::new()
        .parse_label("sprinters:aws:ubuntu-24.04:spot=true")
        .unwrap();
    for n in 1..=3 {
        let job = JobKey::new(JobId::new(n), RunAttempt::FIRST);
        let launched = launcher
            .launch(LaunchRequest::new(
                AccountId::parse(STAND_IN_ACCOUNT).unwrap(),
                credentials.clone(),
                "stand-in-spot".to_owned(),
                job,
                RunId::new(7),
                Repository::parse("octo-org/app").unwrap(),
                RunnerName::for_launch(job, 1),
                spec.clone(),
                Market::Spot,
                format!("spot-{n}"),
                SecretString::from("Y29uZmln".to_owned()),
                Duration::from_secs(3600),
            ))
            .await
            .unwrap();
        assert!(launched.spot);
        assert_eq!(
            launched.hourly_price_micros,
            Some(31_000),
            "the zone's spot price"
        );
    }
    let instances = stand_in.instances();
    assert_eq!(instances.len(), 3);
    for instance in &instances {
        assert!(instance.spot, "{instance:?}");
        assert_eq!(instance.zone, "us-east-1b", "the cheapest zone");
        assert_eq!(
            instance
                .tags
                .get("sprinters:controller")
                .map(String::as_str),
            Some("stand-in-spot")
        );
    }
    assert_eq!(
        stand_in.calls().get("CreateSecurityGroup"),
        Some(&1),
        "our group, created once"
    );
}

#[tokio::test(start_paused = true)]
async fn every_call_waits_the_delay() {
    let stand_in = AwsStandIn::start().await.unwrap();
    stand_in.set_delay(Duration::from_millis(20));
    let started = tokio::time::Instant::now();
    let (provider, _) = assumed(&stand_in).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(20) && took < Duration::from_millis(40),
        "one AssumeRole call: {took:?}"
    );
    // Cached: no second call, no second delay.
    let started = tokio::time::Instant::now();
    provider
        .credentials(CredentialsRequest::new(
            AccountId::parse(STAND_IN_ACCOUNT).unwrap(),
            OwnerId::new(31337),
            Owner::parse("octo-org").unwrap(),
        ))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(20));
    assert_eq!(stand_in.calls().get("AssumeRole"), Some(&1));
}

fn ec2_client(stand_in: &AwsStandIn) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .endpoint_url(stand_in.uri())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIASTANDIN",
            "stand-in",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

/// The stand-in refuses the gp3 volumes EC2 refuses: more than 500 IOPS
/// per GiB (an image's 8 GiB root at 16,000), more than 0.25 MiB/s per
/// IOPS, a size beyond 64 TiB. The launcher gives the boot volume the
/// size its IOPS need, so `root=gp3/max/max` launches.
#[tokio::test]
async fn gp3_volumes_ec2_refuses_are_refused_and_the_boot_volume_is_sized_for_its_iops() {
    use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, VolumeType};
    let stand_in = AwsStandIn::start().await.unwrap();
    let ec2 = ec2_client(&stand_in);
    for (size, iops, throughput, wanted) in [
        (
            None,
            16_000,
            125,
            "ratio of 2000.000000 is too high; maximum is 500",
        ),
        (
            Some(100),
            3000,
            1000,
            "0.333333 is too high; maximum is 0.250000",
        ),
        (Some(65_537), 3000, 125, "outside gp3's 1-65536GiB"),
        (Some(200), 80_001, 125, "outside gp3's 3000-80000"),
    ] {
        let root = EbsBlockDevice::builder()
            .volume_type(VolumeType::Gp3)
            .set_volume_size(size)
            .iops(iops)
            .throughput(throughput)
            .build();
        let error = ec2
            .run_instances()
            .image_id("ami-0123456789abcdef0")
            .min_count(1)
            .max_count(1)
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(root)
                    .build(),
            )
            .send()
            .await
            .expect_err("EC2 refuses it")
            .into_service_error();
        let meta = aws_sdk_ec2::error::ProvideErrorMetadata::meta(&error);
        assert_eq!(meta.code(), Some("InvalidParameterValue"));
        assert!(meta.message().unwrap().contains(wanted), "{meta:?}");
    }
    assert_eq!(stand_in.instances().len(), 0);

    let (_, credentials) = assumed(&stand_in).await;
    let fixture = LauncherFixture {
        account: AccountId::parse(STAND_IN_ACCOUNT).unwrap(),
        credentials,
        controller_id: "stand-in-gp3".to_owned(),
        spec: LabelParser::new()
            .parse_label("sprinters:aws:ubuntu-24.04:root=gp3/max/max:temp=gp3/32/max/max")
            .unwrap(),
    };
    cloud_launcher(&Ec2Launcher::new(config(&stand_in)), &fixture).await;
}

fn launch_request(credentials: &Credentials, n: u64, label: &str, market: Market) -> LaunchRequest {
    let job = JobKey::new(JobId::new(n), RunAttempt::FIRST);
    LaunchRequest::new(
        AccountId::parse(STAND_IN_ACCOUNT).unwrap(),
        credentials.clone(),
        "stand-in-capacity".to_owned(),
        job,
        RunId::new(7),
        Repository::parse("octo-org/app").unwrap(),
        RunnerName::for_launch(job, 1),
        LabelParser::new().parse_label(label).unwrap(),
        market,
        format!("capacity-{n}"),
        SecretString::from("Y29uZmln".to_owned()),
        Duration::from_secs(3600),
    )
}

/// A zone out of capacity is one zone's problem: the launcher tries the
/// region's other zones (for spot the next cheapest, at its price) before
/// it gives up, and gives up at once when the label pinned the zone.
#[tokio::test]
async fn a_zone_without_capacity_sends_the_launch_to_another_zone() {
    let stand_in = AwsStandIn::start().await.unwrap();
    let (_, credentials) = assumed(&stand_in).await;
    let launcher = Ec2Launcher::new(config(&stand_in));
    // Zone b is the cheapest for spot; it has none.
    stand_in.without_capacity("us-east-1b", true);
    let spot = launcher
        .launch(launch_request(
            &credentials,
            1,
            "sprinters:aws:ubuntu-24.04:spot=true",
            Market::Spot,
        ))
        .await
        .unwrap();
    assert!(spot.spot);
    let zone = spot
        .availability_zone
        .as_ref()
        .map(|z| z.as_str().to_owned());
    assert_ne!(zone.as_deref(), Some("us-east-1b"));
    assert!(
        spot.hourly_price_micros.is_some(),
        "the price of the zone it went to"
    );
    // Retried by another process (no cache): its first try, in zone b,
    // finds the token bound to the other zone's launch and is refused as a
    // conflict (which the engine resolves by finding that instance by its
    // tags); no second instance is started.
    let again = Ec2Launcher::new(config(&stand_in))
        .launch(launch_request(
            &credentials,
            1,
            "sprinters:aws:ubuntu-24.04:spot=true",
            Market::Spot,
        ))
        .await
        .expect_err("the token is bound to the first launch");
    assert_eq!(*again.kind(), ErrorKind::Conflict, "{again}");
    assert_eq!(stand_in.instances().len(), 1);

    // On-demand: two zones out, the third takes it.
    stand_in.without_capacity("us-east-1a", false);
    stand_in.without_capacity("us-east-1c", false);
    for n in 2..=4 {
        let launched = launcher
            .launch(launch_request(
                &credentials,
                n,
                "sprinters:aws:ubuntu-24.04",
                Market::OnDemand,
            ))
            .await
            .unwrap();
        assert_eq!(
            launched.availability_zone.unwrap().as_str(),
            "us-east-1b",
            "the zone with capacity"
        );
    }

    // A zone that does not offer the type is passed over like one out of
    // capacity.
    let other = AwsStandIn::start().await.unwrap();
    let (_, other_credentials) = assumed(&other).await;
    other.without_capacity("us-east-1a", false);
    other.without_types("us-east-1b");
    let launched = Ec2Launcher::new(config(&other))
        .launch(launch_request(
            &other_credentials,
            9,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .unwrap();
    assert_eq!(launched.availability_zone.unwrap().as_str(), "us-east-1c");

    // Every zone out: the job fails as no capacity, naming the shortage.
    stand_in.without_capacity("us-east-1b", false);
    let none = launcher
        .launch(launch_request(
            &credentials,
            5,
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
        ))
        .await
        .expect_err("no zone has capacity");
    assert_eq!(*none.kind(), ErrorKind::CapacityUnavailable, "{none}");
    assert!(
        none.to_string().contains("InsufficientInstanceCapacity"),
        "{none}"
    );

    // A pinned zone is the label's choice: no other is tried.
    let calls_before = stand_in.calls().get("RunInstances").copied().unwrap_or(0);
    let pinned = launcher
        .launch(launch_request(
            &credentials,
            6,
            "sprinters:aws:ubuntu-24.04:us-east-1/a",
            Market::OnDemand,
        ))
        .await
        .expect_err("zone a has none");
    assert_eq!(*pinned.kind(), ErrorKind::CapacityUnavailable);
    assert_eq!(
        stand_in.calls().get("RunInstances").copied().unwrap_or(0),
        calls_before + 1,
        "one call, in the pinned zone"
    );
}
