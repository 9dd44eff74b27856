//! What the emulator cannot show: the exact `RunInstances` request, the
//! zone chosen by spot price, AWS's error codes (throttling, capacity,
//! permissions) and STS refusing a role. The real SDK clients run with
//! `aws-smithy-mocks` answering in place of AWS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ec2::operation::create_security_group::CreateSecurityGroupOutput;
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::operation::describe_spot_price_history::DescribeSpotPriceHistoryOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_ec2::operation::run_instances::{
    RunInstancesError, RunInstancesInput, RunInstancesOutput,
};
use aws_sdk_ec2::types::{
    ArchitectureValues, BlockDeviceMapping, EbsBlockDevice, HttpTokensState, Image, Instance,
    InstanceInterruptionBehavior, MarketType, Placement, ResourceType, SecurityGroup,
    ShutdownBehavior, SpotInstanceType, SpotPrice, Subnet, Vpc,
};
use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use base64::Engine as _;
use secrecy::SecretString;
use sprinters_aws::{AssumeRoleProvider, AwsClientConfig, CustomerRole, Ec2Launcher};
use sprinters_core::ErrorKind;
use sprinters_core::domain::{
    AccountId, JobId, JobKey, Owner, OwnerId, Region, Repository, RunAttempt, RunId, RunnerName,
};
use sprinters_core::labels::LabelParser;
use sprinters_core::ports::{
    CloudLauncher, CredentialProvider, Credentials, CredentialsRequest, LaunchRequest, ListOwned,
    Market,
};
use sprinters_core::time::{ManualClock, Timestamp};

const AMI: &str = "ami-0123456789abcdef0";
const PINNED: &str =
    "sprinters:aws:ubuntu-24.04:us-east-1/us-east-1a/subnet-0123456789abcdef0:sg-0123456789abcdef0";

fn mocked(rules: &[&Rule]) -> AwsClientConfig {
    let mut interceptor = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .with_rule(&pinned_group());
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    // One attempt: the SDK's own retry of throttling would otherwise sleep.
    AwsClientConfig::new()
        .max_attempts(1)
        .http_client(create_mock_http_client())
        .interceptor(SharedInterceptor::new(interceptor))
}

/// The group `PINNED` names, as the customer made it for runners: tagged
/// as ours, no ingress (the launcher checks both before it uses it).
fn pinned_group() -> Rule {
    mock!(aws_sdk_ec2::Client::describe_security_groups)
        .match_requests(|input| input.group_ids() == ["sg-0123456789abcdef0"])
        .then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .security_groups(
                    SecurityGroup::builder()
                        .group_id("sg-0123456789abcdef0")
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("sprinters:sprinters")
                                .value("true")
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
}

fn account() -> AccountId {
    AccountId::parse("123456789012").unwrap()
}

fn credentials() -> Credentials {
    Credentials {
        access_key_id: "AKIAEXAMPLE".to_owned(),
        secret_access_key: SecretString::from("secret".to_owned()),
        session_token: None,
        expires_at: None,
    }
}

fn request(label: &str, market: Market, token: &str) -> LaunchRequest {
    let job = JobKey::new(JobId::new(555), RunAttempt::FIRST);
    LaunchRequest::new(
        account(),
        credentials(),
        "ctrl".to_owned(),
        job,
        RunId::new(9),
        Repository::parse("octo-org/hello").unwrap(),
        RunnerName::for_launch(job, 1),
        LabelParser::new().parse_label(label).unwrap(),
        market,
        token.to_owned(),
        SecretString::from("SklUQ09ORklH".to_owned()),
        Duration::from_secs(3600),
    )
}

fn images() -> Rule {
    mock!(aws_sdk_ec2::Client::describe_images).then_output(|| {
        DescribeImagesOutput::builder()
            .images(
                Image::builder()
                    .image_id(AMI)
                    .name("sprinters-runner-ubuntu-24.04-20261101000000")
                    .architecture(ArchitectureValues::X8664)
                    .root_device_name("/dev/sda1")
                    .creation_date("2026-11-01T00:00:00.000Z")
                    .block_device_mappings(
                        BlockDeviceMapping::builder()
                            .device_name("/dev/sda1")
                            .ebs(EbsBlockDevice::builder().volume_size(20).build())
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

fn launched(zone: &'static str) -> impl Fn() -> RunInstancesOutput + Send + Sync {
    move || {
        RunInstancesOutput::builder()
            .instances(
                Instance::builder()
                    .instance_id("i-0123456789abcdef0")
                    .placement(Placement::builder().availability_zone(zone).build())
                    .build(),
            )
            .build()
    }
}

fn capture(into: &Arc<Mutex<Vec<RunInstancesInput>>>) -> Rule {
    let into = into.clone();
    mock!(aws_sdk_ec2::Client::run_instances)
        .match_requests(move |input| {
            into.lock().unwrap().push(input.clone());
            true
        })
        .then_output(launched("us-east-1a"))
}

#[tokio::test]
async fn run_instances_asks_for_exactly_the_locked_down_instance() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let launcher = Ec2Launcher::new(mocked(&[&images(), &capture(&seen)]));
    launcher
        .launch(request(PINNED, Market::OnDemand, "tok-on-demand"))
        .await
        .unwrap();
    let input = seen.lock().unwrap()[0].clone();

    assert_eq!(input.client_token(), Some("tok-on-demand"));
    assert_eq!(input.image_id(), Some(AMI));
    assert_eq!((input.min_count(), input.max_count()), (Some(1), Some(1)));
    assert_eq!(input.key_name(), None, "no key pair");
    assert_eq!(input.iam_instance_profile(), None, "no instance role");
    assert_eq!(input.subnet_id(), Some("subnet-0123456789abcdef0"));
    assert_eq!(input.security_group_ids(), ["sg-0123456789abcdef0"]);
    let metadata = input.metadata_options().unwrap();
    assert_eq!(metadata.http_tokens(), Some(&HttpTokensState::Required));
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    assert_eq!(
        input.instance_initiated_shutdown_behavior(),
        Some(&ShutdownBehavior::Terminate)
    );
    assert!(input.instance_market_options().is_none(), "on-demand");

    let devices = input.block_device_mappings();
    assert_eq!(devices.len(), 3);
    for d in devices {
        let ebs = d.ebs().unwrap();
        assert_eq!(ebs.encrypted(), Some(true), "{:?}", d.device_name());
        assert_eq!(
            ebs.delete_on_termination(),
            Some(true),
            "{:?}",
            d.device_name()
        );
    }
    let root = devices[0].ebs().unwrap();
    assert_eq!(devices[0].device_name(), Some("/dev/sda1"));
    assert_eq!(
        (root.volume_size(), root.iops(), root.throughput()),
        (Some(20), Some(3000), Some(150)),
        "the image's size, the label's default performance"
    );

    let kinds: Vec<_> = input
        .tag_specifications()
        .iter()
        .filter_map(|t| t.resource_type().cloned())
        .collect();
    assert_eq!(kinds, [ResourceType::Instance, ResourceType::Volume]);

    let script = base64::engine::general_purpose::STANDARD
        .decode(input.user_data().unwrap())
        .unwrap();
    let script = String::from_utf8(script).unwrap();
    assert_eq!(
        script.matches("SklUQ09ORklH").count(),
        1,
        "the JIT config, once"
    );
    assert!(
        !format!("{input:?}").contains("SklUQ09ORklH"),
        "the SDK's Debug of the request hides the user data"
    );
}

#[tokio::test]
async fn spot_launches_ask_for_one_time_spot_that_terminates() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let launcher = Ec2Launcher::new(mocked(&[&images(), &capture(&seen)]));
    let label = format!("{PINNED}:spot=true");
    let launched = launcher
        .launch(request(&label, Market::Spot, "tok-spot"))
        .await
        .unwrap();
    assert!(launched.spot);
    let input = seen.lock().unwrap()[0].clone();
    let market = input.instance_market_options().unwrap();
    assert_eq!(market.market_type(), Some(&MarketType::Spot));
    let spot = market.spot_options().unwrap();
    assert_eq!(spot.spot_instance_type(), Some(&SpotInstanceType::OneTime));
    assert_eq!(
        spot.instance_interruption_behavior(),
        Some(&InstanceInterruptionBehavior::Terminate)
    );
    assert_eq!(
        spot.max_price(),
        None,
        "capped at the on-demand price by EC2"
    );
}

#[tokio::test]
async fn a_retried_launch_in_this_process_makes_no_second_call() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let launcher = Ec2Launcher::new(mocked(&[&images(), &capture(&seen)]));
    let first = launcher
        .launch(request(PINNED, Market::OnDemand, "tok-1"))
        .await
        .unwrap();
    let again = launcher
        .launch(request(PINNED, Market::OnDemand, "tok-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "EC2 dedupes by token too, but is not asked"
    );
}

fn network_rules() -> Vec<Rule> {
    let subnet = |id: &str, zone: &str| {
        Subnet::builder()
            .subnet_id(id)
            .vpc_id("vpc-0123456789abcdef0")
            .availability_zone(zone)
            .build()
    };
    vec![
        mock!(aws_sdk_ec2::Client::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(Vpc::builder().vpc_id("vpc-0123456789abcdef0").build())
                .build()
        }),
        mock!(aws_sdk_ec2::Client::describe_subnets).then_output(move || {
            DescribeSubnetsOutput::builder()
                .subnets(subnet("subnet-0000000000000000a", "us-east-1a"))
                .subnets(subnet("subnet-0000000000000000b", "us-east-1b"))
                .subnets(subnet("subnet-0000000000000000c", "us-east-1c"))
                .build()
        }),
    ]
}

fn our_group(id: &'static str) -> impl Fn() -> DescribeSecurityGroupsOutput + Send + Sync {
    move || {
        DescribeSecurityGroupsOutput::builder()
            .security_groups(
                SecurityGroup::builder()
                    .group_id(id)
                    .group_name("sprinters-runners")
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("sprinters:sprinters")
                            .value("true")
                            .build(),
                    )
                    .build(),
            )
            .build()
    }
}

#[tokio::test]
async fn spot_without_a_zone_goes_to_the_cheapest_zone() {
    let price = |zone: &str, dollars: &str| {
        SpotPrice::builder()
            .availability_zone(zone)
            .spot_price(dollars)
            .timestamp(DateTime::from(SystemTime::now()))
            .build()
    };
    let prices = mock!(aws_sdk_ec2::Client::describe_spot_price_history).then_output(move || {
        DescribeSpotPriceHistoryOutput::builder()
            .spot_price_history(price("us-east-1a", "0.0500"))
            .spot_price_history(price("us-east-1b", "0.0210"))
            .spot_price_history(price("us-east-1c", "0.0300"))
            .spot_price_history(price("us-east-1d", "0.0010"))
            .build()
    });
    let groups = mock!(aws_sdk_ec2::Client::describe_security_groups)
        .then_output(our_group("sg-0000000000000000f"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let run = capture(&seen);
    let network = network_rules();
    let launcher = Ec2Launcher::new(mocked(&[
        &images(),
        &network[0],
        &network[1],
        &groups,
        &prices,
        &run,
    ]));
    let launched = launcher
        .launch(request(
            "sprinters:aws:ubuntu-24.04:spot=auto",
            Market::Spot,
            "tok",
        ))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].subnet_id(),
        Some("subnet-0000000000000000b"),
        "the cheapest zone that has a default subnet (1d has none)"
    );
    assert_eq!(launched.hourly_price_micros, Some(21_000));
    assert_eq!(prices.num_calls(), 1);

    // On-demand does not ask for prices.
    launcher
        .launch(request(
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
            "tok-od",
        ))
        .await
        .unwrap();
    assert_eq!(prices.num_calls(), 1);
    assert_eq!(
        groups.num_calls(),
        1,
        "the group is looked up once, then cached"
    );
}

#[tokio::test]
async fn a_security_group_deleted_since_it_was_cached_is_found_again() {
    let groups = mock!(aws_sdk_ec2::Client::describe_security_groups)
        .sequence()
        .output(our_group("sg-0000000000000000f"))
        .output(|| DescribeSecurityGroupsOutput::builder().build())
        .build();
    let create = mock!(aws_sdk_ec2::Client::create_security_group).then_output(|| {
        CreateSecurityGroupOutput::builder()
            .group_id("sg-000000000000000ff")
            .build()
    });
    let run = mock!(aws_sdk_ec2::Client::run_instances)
        .sequence()
        .error(|| {
            RunInstancesError::generic(
                ErrorMetadata::builder()
                    .code("InvalidGroup.NotFound")
                    .message("The security group 'sg-0000000000000000f' does not exist")
                    .build(),
            )
        })
        .output(launched("us-east-1a"))
        .build();
    let network = network_rules();
    let launcher = Ec2Launcher::new(mocked(&[
        &images(),
        &network[0],
        &network[1],
        &groups,
        &create,
        &run,
    ]));
    launcher
        .launch(request(
            "sprinters:aws:ubuntu-24.04",
            Market::OnDemand,
            "tok",
        ))
        .await
        .unwrap();
    assert_eq!(create.num_calls(), 1, "the missing group is created anew");
    assert_eq!(run.num_calls(), 2);
}

async fn launch_failing_with(code: &'static str, message: &'static str) -> sprinters_core::Error {
    let run = mock!(aws_sdk_ec2::Client::run_instances).then_error(move || {
        RunInstancesError::generic(ErrorMetadata::builder().code(code).message(message).build())
    });
    let launcher = Ec2Launcher::new(mocked(&[&images(), &run]));
    launcher
        .launch(request(PINNED, Market::Spot, "tok"))
        .await
        .unwrap_err()
}

/// A role deployed before `DescribeInstanceTypes` was granted: the
/// instance-store check of `temp=ephemeral` is skipped, and the launch
/// goes on as it did before the check existed.
#[tokio::test]
async fn an_older_role_without_describe_instance_types_still_launches_ephemeral() {
    let types = mock!(aws_sdk_ec2::Client::describe_instance_types).then_error(|| {
        aws_sdk_ec2::operation::describe_instance_types::DescribeInstanceTypesError::generic(
            ErrorMetadata::builder()
                .code("UnauthorizedOperation")
                .message("You are not authorized to perform this operation.")
                .build(),
        )
    });
    let run = mock!(aws_sdk_ec2::Client::run_instances).then_output(launched("us-east-1a"));
    let launcher = Ec2Launcher::new(mocked(&[&images(), &types, &run]));
    launcher
        .launch(request(
            &format!("{PINNED}:temp=ephemeral"),
            Market::OnDemand,
            "tok",
        ))
        .await
        .unwrap();
    assert_eq!(types.num_calls(), 1);
    assert_eq!(run.num_calls(), 1);
}

/// A quota is not a passing shortage: the job fails with what to ask AWS
/// for; a zone's shortage says nothing of the kind.
#[tokio::test]
async fn a_quota_error_says_which_quota_to_raise() {
    for code in [
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
    ] {
        let err = launch_failing_with(
            code,
            "You have requested more vCPU capacity than your current vCPU limit of 32 allows.",
        )
        .await;
        assert_eq!(*err.kind(), ErrorKind::CapacityUnavailable, "{err}");
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.message()
                .contains("ask AWS to raise it (Service Quotas"),
            "{err}"
        );
    }
    let err = launch_failing_with("InsufficientInstanceCapacity", "None in us-east-1a.").await;
    assert!(!err.message().contains("Service Quotas"), "{err}");
}

#[tokio::test]
async fn aws_error_codes_become_core_kinds() {
    for (code, kind) in [
        (
            "RequestLimitExceeded",
            ErrorKind::RateLimited { retry_after: None },
        ),
        (
            "InsufficientInstanceCapacity",
            ErrorKind::CapacityUnavailable,
        ),
        ("SpotMaxPriceTooLow", ErrorKind::CapacityUnavailable),
        (
            "MaxSpotInstanceCountExceeded",
            ErrorKind::CapacityUnavailable,
        ),
        ("InstanceLimitExceeded", ErrorKind::CapacityUnavailable),
        ("UnauthorizedOperation", ErrorKind::PermissionDenied),
        ("AuthFailure", ErrorKind::PermissionDenied),
        ("InvalidAMIID.NotFound", ErrorKind::Config),
        ("InvalidSubnetID.NotFound", ErrorKind::Config),
        ("InternalError", ErrorKind::Unavailable),
    ] {
        let err = launch_failing_with(code, "what AWS said.").await;
        assert_eq!(*err.kind(), kind, "{code}: {err}");
        assert!(err.message().contains(code), "{code} is named: {err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the SDK error is kept"
        );
    }
    assert!(
        launch_failing_with("RequestLimitExceeded", "")
            .await
            .is_retryable()
    );
    assert!(
        !launch_failing_with("UnauthorizedOperation", "")
            .await
            .is_retryable()
    );
}

#[tokio::test]
async fn a_missing_permission_names_the_action_and_not_the_encoded_blob() {
    let err = launch_failing_with(
        "UnauthorizedOperation",
        "You are not authorized to perform this operation. Encoded authorization failure message: QWxsb3dlZA",
    )
    .await;
    assert!(err.message().contains("ec2:RunInstances"), "{err}");
    assert!(err.message().contains("sprinters policy iam"), "{err}");
    assert!(!err.message().contains("QWxsb3dlZA"), "{err}");
}

#[tokio::test]
async fn a_throttled_listing_is_rate_limited() {
    let describe = mock!(aws_sdk_ec2::Client::describe_instances).then_error(|| {
        DescribeInstancesError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .build(),
        )
    });
    let launcher = Ec2Launcher::new(mocked(&[&describe]));
    let err = launcher
        .list_owned(ListOwned::new(
            account(),
            credentials(),
            Region::us_east_1(),
            "ctrl".into(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::RateLimited { .. }), "{err}");
    assert!(err.is_retryable());
}

fn role() -> CustomerRole {
    CustomerRole::new(
        &account(),
        "arn:aws:iam::123456789012:role/SprintersRole",
        SecretString::from("the-agreed-external-id".to_owned()),
    )
    .unwrap()
}

fn platform() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        "AKIAPLATFORM",
        "platform-secret",
        None,
        None,
        "test",
    ))
}

fn ask() -> CredentialsRequest {
    CredentialsRequest::new(
        account(),
        OwnerId::new(31337),
        Owner::parse("octo-org").unwrap(),
    )
}

#[tokio::test]
async fn a_refused_role_says_what_the_trust_policy_must_contain() {
    let refuse = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
        AssumeRoleError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("User: arn:aws:iam::999988887777:user/platform is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/SprintersRole")
                .build(),
        )
    });
    let provider = AssumeRoleProvider::builder(mocked(&[&refuse]))
        .platform_credentials(platform())
        .platform_account(AccountId::parse("999988887777").unwrap())
        .role(OwnerId::new(31337), account(), role())
        .build()
        .await;
    let err = provider.credentials(ask()).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::PermissionDenied);
    let m = err.message();
    assert!(
        m.contains("arn:aws:iam::123456789012:role/SprintersRole"),
        "{m}"
    );
    assert!(
        m.contains("sts:ExternalId") && m.contains("arn:aws:iam::999988887777:root"),
        "{m}"
    );
    assert!(
        !m.contains("the-agreed-external-id"),
        "the external id stays out: {m}"
    );
    assert!(!format!("{err:?}").contains("the-agreed-external-id"));
}

#[tokio::test]
async fn assumed_credentials_are_shared_and_refreshed_before_they_expire() {
    let sent = Arc::new(Mutex::new(Vec::<(
        Option<String>,
        Option<String>,
        Option<i32>,
    )>::new()));
    let log = sent.clone();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = counter.clone();
    let assume = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(move |input| {
            log.lock().unwrap().push((
                input.external_id().map(str::to_owned),
                input.role_session_name().map(str::to_owned),
                input.duration_seconds(),
            ));
            true
        })
        .then_compute_output(move |_| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            AssumeRoleOutput::builder()
                .credentials(
                    aws_sdk_sts::types::Credentials::builder()
                        .access_key_id(format!("ASIA{i}"))
                        .secret_access_key("s")
                        .session_token("t")
                        .expiration(DateTime::from(SystemTime::now() + Duration::from_secs(900)))
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let clock = Arc::new(ManualClock::new(Timestamp::from_system_time(
        SystemTime::now(),
    )));
    let provider = Arc::new(
        AssumeRoleProvider::builder(mocked(&[&assume]))
            .platform_credentials(platform())
            .role(OwnerId::new(31337), account(), role())
            .clock(clock.clone())
            .build()
            .await,
    );
    let calls = (0..8).map(|_| {
        let p = provider.clone();
        tokio::spawn(async move { p.credentials(ask()).await.unwrap().access_key_id })
    });
    let keys: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(keys.iter().all(|k| k == "ASIA0"), "{keys:?}");
    assert_eq!(assume.num_calls(), 1, "eight callers, one AssumeRole");
    let (external_id, session, duration) = sent.lock().unwrap()[0].clone();
    assert_eq!(external_id.as_deref(), Some("the-agreed-external-id"));
    assert_eq!(session.as_deref(), Some("sprinters-octo-org"));
    assert_eq!(duration, Some(900), "the shortest session STS allows");

    clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(
        provider.credentials(ask()).await.unwrap().access_key_id,
        "ASIA0"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        provider.credentials(ask()).await.unwrap().access_key_id,
        "ASIA1",
        "refreshed 5 minutes before expiry"
    );
}

fn assumed() -> Rule {
    mock!(aws_sdk_sts::Client::assume_role).then_output(|| {
        AssumeRoleOutput::builder()
            .credentials(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id("ASIAVERIFY")
                    .secret_access_key("s")
                    .session_token("t")
                    .expiration(DateTime::from(SystemTime::now() + Duration::from_secs(900)))
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

fn check() -> sprinters_aws::ConnectionCheck {
    sprinters_aws::ConnectionCheck::new(
        OwnerId::new(31337),
        Owner::parse("octo-org").unwrap(),
        account(),
        role(),
        LabelParser::new().parse_label(PINNED).unwrap(),
        "ctrl",
    )
}

/// Verification against AWS's documented answers: STS refusing the role
/// (`AccessDenied`), and EC2's dry run answering `UnauthorizedOperation`
/// without the permission, `DryRunOperation` with it
/// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html).
#[tokio::test]
async fn verifying_a_connection_says_what_is_missing() {
    // A role that cannot be assumed: nothing is asked of EC2.
    let refuse = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
        AssumeRoleError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform: sts:AssumeRole")
                .build(),
        )
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = mocked(&[&refuse, &images(), &capture(&seen)]);
    let launcher = Ec2Launcher::new(config.clone());
    let err = sprinters_aws::verify_connection(&config, Some(platform()), &launcher, check())
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::PermissionDenied);
    assert!(err.message().contains("trust policy"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "no launch was asked");

    // Assumed, but the role may not launch.
    let unauthorized = mock!(aws_sdk_ec2::Client::run_instances).then_error(|| {
        RunInstancesError::generic(
            ErrorMetadata::builder()
                .code("UnauthorizedOperation")
                .message("You are not authorized to perform this operation. Encoded authorization failure message: AbCdEf")
                .build(),
        )
    });
    let config = mocked(&[&assumed(), &images(), &unauthorized]);
    let launcher = Ec2Launcher::new(config.clone());
    let err = sprinters_aws::verify_connection(&config, Some(platform()), &launcher, check())
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("ec2:RunInstances"), "{err}");

    // Allowed: EC2 answers the dry run with DryRunOperation, and the
    // request was a dry run of the locked-down launch.
    let dry = Arc::new(Mutex::new(Vec::new()));
    let log = dry.clone();
    let would = mock!(aws_sdk_ec2::Client::run_instances)
        .match_requests(move |input: &RunInstancesInput| {
            log.lock().unwrap().push(input.clone());
            true
        })
        .then_error(|| {
            RunInstancesError::generic(
                ErrorMetadata::builder()
                    .code("DryRunOperation")
                    .message("Request would have succeeded, but DryRun flag is set.")
                    .build(),
            )
        });
    let config = mocked(&[&assumed(), &images(), &would]);
    let launcher = Ec2Launcher::new(config.clone());
    sprinters_aws::verify_connection(&config, Some(platform()), &launcher, check())
        .await
        .unwrap();
    let input = dry.lock().unwrap()[0].clone();
    assert_eq!(input.dry_run(), Some(true));
    assert_eq!(
        input.metadata_options().unwrap().http_tokens(),
        Some(&HttpTokensState::Required)
    );
}
