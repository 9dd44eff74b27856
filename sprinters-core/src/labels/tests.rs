use proptest::prelude::*;

use super::*;
use crate::domain::{AccountId, Arch, AvailabilityZone, InstanceType, SecurityGroupId, SubnetId};

fn parse(label: &str) -> RunnerSpec {
    LabelParser::default()
        .parse_label(label)
        .unwrap_or_else(|e| panic!("{label}: {e}"))
}

fn error(label: &str) -> LabelError {
    LabelParser::default().parse_label(label).expect_err(label)
}

#[test]
fn smallest_label_takes_every_default() {
    let spec = parse("sprinters:aws:ubuntu-latest");
    assert_eq!(spec.provider, Provider::Aws);
    assert_eq!(spec.account, None);
    assert_eq!(spec.region.as_str(), "us-east-1");
    assert_eq!(spec.availability_zone, None);
    assert_eq!(spec.subnet, None);
    assert_eq!(spec.image.name(), "ubuntu-24.04");
    assert_eq!(spec.arch(), Arch::X64);
    assert_eq!(spec.instance_type.as_str(), "t3.large");
    assert_eq!(spec.spot, SpotMode::False);
    assert_eq!(spec.security_group, None);
    assert_eq!(
        spec.root,
        RootVolume {
            volume_type: VolumeType::Gp3,
            iops: 3000,
            throughput_mibps: 150
        }
    );
    assert_eq!(
        spec.temp,
        TempVolume {
            kind: TempKind::Gp3,
            size_gib: Some(14),
            iops: Some(3000),
            throughput_mibps: Some(125)
        }
    );
    assert_eq!(spec.swap_gib, 4);
    assert!(spec.events);
    // Provider and image are optional too.
    assert_eq!(parse("sprinters"), spec);
}

#[test]
fn product_examples_parse() {
    let spec = parse("sprinters:aws:eu-central-1:ubuntu-22.04:m7i.24xlarge:temp=gp3/64");
    assert_eq!(spec.region.as_str(), "eu-central-1");
    assert_eq!(spec.image.name(), "ubuntu-22.04");
    assert_eq!(spec.instance_type.as_str(), "m7i.24xlarge");
    assert_eq!(spec.temp.size_gib, Some(64));

    let spec = parse("sprinters:aws/123456789012:ubuntu-24.04-arm:c7g.xlarge:spot=auto");
    assert_eq!(
        spec.account,
        Some(AccountId::parse("123456789012").unwrap())
    );
    assert_eq!(spec.arch(), Arch::Arm64);
    assert_eq!(spec.spot, SpotMode::Auto);
}

#[test]
fn parts_come_in_any_order() {
    let a = parse(
        "sprinters:aws:eu-central-1b:ubuntu-24.04-arm:c7g.xlarge:spot=rerun:temp=zram:events=false",
    );
    let b = parse(
        "sprinters:events=false:temp=zram:spot=rerun:c7g.xlarge:ubuntu-24.04-arm:eu-central-1b:aws",
    );
    assert_eq!(a, b);
    assert_eq!(
        a.availability_zone,
        Some(AvailabilityZone::parse("eu-central-1b").unwrap())
    );
    assert_eq!(
        a.region.as_str(),
        "eu-central-1",
        "an AZ alone implies its region"
    );
    assert!(!a.events);
}

#[test]
fn arm_images_default_to_graviton_and_must_agree_with_the_type() {
    assert_eq!(
        parse("sprinters:ubuntu-24.04-arm").instance_type.as_str(),
        "t4g.large"
    );
    assert_eq!(
        parse("sprinters:ubuntu-22.04-arm-minimal")
            .instance_type
            .as_str(),
        "t4g.large"
    );
    let e = error("sprinters:aws:ubuntu-24.04-arm:m7i.large");
    assert_eq!(e.part(), "m7i.large");
    assert!(
        e.expected()
            .contains("arm64 (Graviton) type such as t4g.large"),
        "{e}"
    );
    let e = error("sprinters:aws:c7g.xlarge");
    assert_eq!(e.part(), "c7g.xlarge");
    assert!(e.expected().contains("ubuntu-24.04-arm"), "{e}");
    for t in ["t4g.large", "m8g.xlarge", "c7g.large"] {
        assert_eq!(
            parse(&format!("sprinters:ubuntu-24.04-arm:{t}"))
                .instance_type
                .as_str(),
            t
        );
    }
}

#[test]
fn placement_forms() {
    let s = parse("sprinters:eu-west-1");
    assert_eq!(
        (s.region.as_str(), s.availability_zone.is_none()),
        ("eu-west-1", true)
    );
    let s = parse("sprinters:eu-west-1/eu-west-1c");
    assert_eq!(s.availability_zone.unwrap().as_str(), "eu-west-1c");
    let s = parse("sprinters:eu-west-1/c");
    assert_eq!(s.availability_zone.unwrap().as_str(), "eu-west-1c");
    let s = parse("sprinters:eu-west-1/eu-west-1c/subnet-0123456789abcdef0");
    assert_eq!(
        s.subnet,
        Some(SubnetId::parse("subnet-0123456789abcdef0").unwrap())
    );
    let e = error("sprinters:eu-west-1/us-east-1a");
    assert_eq!(
        e.to_string(),
        "eu-west-1/us-east-1a: zone us-east-1a is not in region eu-west-1"
    );
    let e = error("sprinters:eu-west-1/eu-west-1c/vpc-1234");
    assert!(e.expected().contains("subnet id"), "{e}");
    assert!(
        error("sprinters:eu-west-1/a/subnet-01234567/x")
            .expected()
            .starts_with("expected <region>")
    );
}

#[test]
fn volumes_and_their_bounds() {
    let s = parse("sprinters:root=gp3/6000/500");
    assert_eq!((s.root.iops, s.root.throughput_mibps), (6000, 500));
    assert_eq!(s.root.size_gib(), 12, "500 iops per GiB");
    let s = parse("sprinters:root=gp3/max/max");
    assert_eq!((s.root.iops, s.root.throughput_mibps), (16000, 1000));
    assert_eq!(s.root.size_gib(), 32, "the size max iops needs");
    assert_eq!(parse("sprinters:root=gp3/6001").root.size_gib(), 13);
    assert_eq!(
        parse("sprinters").root.size_gib(),
        1,
        "the baseline needs none"
    );
    let s = parse("sprinters:root=gp3/3000/max");
    assert_eq!(
        s.root.throughput_mibps, 750,
        "max throughput follows the iops"
    );
    assert_eq!(
        error("sprinters:root=gp3/2999/150").to_string(),
        "root=gp3/2999/150: iops must be a number from 3000 to 16000, or max; got `2999`"
    );
    assert!(
        error("sprinters:root=gp3/3000/1001")
            .expected()
            .contains("125 to 1000")
    );
    assert!(
        error("sprinters:root=gp3/3000/1000")
            .expected()
            .contains("needs at least 4000 iops")
    );
    assert!(
        error("sprinters:root=io2/3000/150")
            .expected()
            .contains("root=gp3/")
    );

    assert_eq!(parse("sprinters:temp=64").temp.size_gib, Some(64));
    let t = parse("sprinters:temp=gp3/100/8000/400").temp;
    assert_eq!(
        (t.size_gib, t.iops, t.throughput_mibps),
        (Some(100), Some(8000), Some(400))
    );
    let t = parse("sprinters:temp=gp3/10/max/max").temp;
    assert_eq!(
        (t.iops, t.throughput_mibps),
        (Some(5000), Some(1000)),
        "max iops is 500 per GiB"
    );
    assert_eq!(
        parse("sprinters:temp=ephemeral").temp,
        TempVolume {
            kind: TempKind::Ephemeral,
            size_gib: None,
            iops: None,
            throughput_mibps: None
        }
    );
    assert_eq!(parse("sprinters:temp=zram/8").temp.size_gib, Some(8));
    assert_eq!(parse("sprinters:temp=zram").temp.size_gib, None);
    assert!(error("sprinters:temp=0").expected().contains("1 to 65536"));
    assert!(
        error("sprinters:temp=65537")
            .expected()
            .contains("1 to 65536")
    );
    assert!(
        error("sprinters:temp=gp3/10/16000/125")
            .expected()
            .contains("at least 32 GiB")
    );
    assert!(
        error("sprinters:temp=ephemeral/10")
            .expected()
            .contains("takes no size")
    );
    assert!(
        error("sprinters:temp=zram/8/3000/125")
            .expected()
            .contains("no iops")
    );
    assert!(
        error("sprinters:temp=nvme")
            .expected()
            .contains("gp3, ephemeral or zram")
    );
    assert!(
        error("sprinters:temp=gp3/10/3000")
            .expected()
            .contains("both iops and throughput")
    );
}

#[test]
fn errors_name_the_part_and_what_is_accepted() {
    let cases = [
        (
            "sprinters:aws:spot=maybe",
            "spot=maybe: expected one of false, true, auto, rerun",
        ),
        (
            "sprinters:events=yes",
            "events=yes: expected one of true, false",
        ),
        (
            "sprinters:aws/1234",
            "aws/1234: expected aws/<12-digit AWS account id>",
        ),
        (
            "sprinters:colour=red",
            "colour=red: unknown setting; expected one of spot=, root=, temp=, events=",
        ),
        (
            "sprinters:sg-xyz",
            "sg-xyz: expected a security group id: sg- and 8 or 17 hex digits",
        ),
        (
            "sprinters:m7i.huge",
            "m7i.huge: expected an EC2 instance type such as m7i.large or c7g.xlarge",
        ),
        (
            "sprinters:aws:aws",
            "aws: the provider is given twice; each part may appear at most once",
        ),
        (
            "sprinters:spot=true:spot=auto",
            "spot=auto: spot is given twice; each part may appear at most once",
        ),
        (
            "sprinters:aws::ubuntu-latest",
            ": an empty part (two colons in a row, or a trailing colon); remove it",
        ),
    ];
    for (label, message) in cases {
        assert_eq!(error(label).to_string(), message, "{label}");
    }
    let e = error("sprinters:gcp");
    assert_eq!(e.part(), "gcp");
    assert!(
        e.expected()
            .starts_with("unknown part; expected a provider"),
        "{e}"
    );
    let e = error("sprinters:ubuntu-20.04");
    assert!(e.expected().contains("ubuntu-24.04-arm-minimal"), "{e}");
    let core: crate::Error = e.into();
    assert_eq!(core.kind(), &crate::ErrorKind::InvalidLabel);
    assert!(
        core.to_string()
            .contains("label `sprinters:ubuntu-20.04`: ubuntu-20.04: unknown image"),
        "{core}"
    );
}

#[test]
fn jobs_with_several_labels() {
    let parser = LabelParser::default();
    assert_eq!(
        parser.parse_job(&["ubuntu-latest"]).unwrap(),
        None,
        "not ours"
    );
    assert_eq!(parser.parse_job::<&str>(&[]).unwrap(), None);
    let job = parser
        .parse_job(&["self-hosted", "Sprinters:AWS:Ubuntu-Latest", "991-1-build"])
        .unwrap()
        .unwrap();
    assert_eq!(job.sprinters_label, 1);
    assert_eq!(
        job.labels,
        ["self-hosted", "Sprinters:AWS:Ubuntu-Latest", "991-1-build"],
        "kept as given, in order"
    );
    assert_eq!(job.spec.image.name(), "ubuntu-24.04");
    let e = parser
        .parse_job(&["sprinters:aws", "x", "sprinters:aws:spot=true"])
        .unwrap_err();
    assert_eq!(e.part(), "sprinters:aws:spot=true");
    assert!(e.expected().contains("only one sprinters label"), "{e}");
    // A look-alike is not ours.
    assert_eq!(parser.parse_job(&["sprinters-fast"]).unwrap(), None);
}

#[test]
fn prefix_and_default_region_are_configurable() {
    let parser = LabelParser::new()
        .with_prefix("acme-ci")
        .unwrap()
        .with_default_region(crate::domain::Region::parse("eu-north-1").unwrap());
    assert!(parser.parse_job(&["sprinters:aws"]).unwrap().is_none());
    let job = parser.parse_job(&["acme-ci:aws"]).unwrap().unwrap();
    assert_eq!(job.spec.region.as_str(), "eu-north-1");
    assert_eq!(
        job.spec.to_label("acme-ci").split(':').next(),
        Some("acme-ci")
    );
    assert!(LabelParser::new().with_prefix("a:b").is_err());
    assert!(LabelParser::new().with_prefix("").is_err());
}

#[test]
fn label_set_keys_ignore_order_and_case() {
    let a = LabelSetKey::of(&["sprinters:aws", "Pin-1"]);
    let b = LabelSetKey::of(&["pin-1", "SPRINTERS:AWS", "pin-1"]);
    assert_eq!(a, b);
    assert_ne!(a, LabelSetKey::of(&["sprinters:aws", "pin-2"]));
    // Joined strings must not collide with split ones.
    assert_ne!(LabelSetKey::of(&["ab", "c"]), LabelSetKey::of(&["a", "bc"]));
}

#[test]
fn scoped_label_set_keys_differ_across_owners_and_repositories() {
    use crate::domain::{OwnerId, Repository};
    let repo = |s: &str| Repository::parse(s).unwrap();
    let labels = ["sprinters:aws", "Pin-1"];
    let a = LabelSetKey::scoped(OwnerId::new(1), &repo("acme/app"), &labels);
    assert_eq!(
        a,
        LabelSetKey::scoped(
            OwnerId::new(1),
            &repo("ACME/App"),
            &["pin-1", "SPRINTERS:AWS"]
        ),
        "order and case still do not matter"
    );
    assert_ne!(
        a,
        LabelSetKey::scoped(OwnerId::new(2), &repo("acme/app"), &labels)
    );
    assert_ne!(
        a,
        LabelSetKey::scoped(OwnerId::new(1), &repo("acme/web"), &labels)
    );
    assert_ne!(a, LabelSetKey::of(&labels));
}

fn arb_spec() -> impl Strategy<Value = RunnerSpec> {
    let images = prop::sample::select(super::IMAGE_NAMES.to_vec());
    let x64 = prop::sample::select(vec![
        "t3.large",
        "m7i.24xlarge",
        "c6in.xlarge",
        "m7i-flex.large",
        "r7iz.metal-16xl",
    ]);
    let arm = prop::sample::select(vec![
        "t4g.large",
        "c7g.xlarge",
        "m8g.metal-24xl",
        "c7gn.16xlarge",
    ]);
    let placement = prop_oneof![
        Just((None, None)),
        Just((Some("b"), None)),
        Just((Some("c"), Some("subnet-0123456789abcdef0"))),
    ];
    let temp = prop_oneof![
        (1u32..=65536, 3000u32..=16000, 125u32..=1000).prop_map(|(size, iops, tp)| {
            let iops = iops.min(size.saturating_mul(500)).max(3000);
            let tp = if tp > 125 {
                tp.min(iops / 4).max(125)
            } else {
                tp
            };
            TempVolume {
                kind: TempKind::Gp3,
                size_gib: Some(size),
                iops: Some(iops),
                throughput_mibps: Some(tp),
            }
        }),
        Just(TempVolume {
            kind: TempKind::Ephemeral,
            size_gib: None,
            iops: None,
            throughput_mibps: None
        }),
        prop::option::of(1u32..=1024).prop_map(|size| TempVolume {
            kind: TempKind::Zram,
            size_gib: size,
            iops: None,
            throughput_mibps: None
        }),
    ];
    (
        images,
        x64,
        arm,
        prop::option::of("[0-9]{12}"),
        prop::sample::select(vec![
            "us-east-1",
            "eu-central-1",
            "ap-southeast-2",
            "us-gov-west-1",
        ]),
        placement,
        prop::sample::select(vec![
            SpotMode::False,
            SpotMode::True,
            SpotMode::Auto,
            SpotMode::Rerun,
        ]),
        prop::option::of("[0-9a-f]{8}"),
        (3000u32..=16000, 125u32..=1000),
        temp,
        any::<bool>(),
    )
        .prop_map(
            |(
                image,
                x64,
                arm,
                account,
                region,
                (zone, subnet),
                spot,
                sg,
                (iops, tp),
                temp,
                events,
            )| {
                let image = Image::parse(image).unwrap();
                let t = if image.arch() == Arch::Arm64 {
                    arm
                } else {
                    x64
                };
                let tp = if tp > 125 {
                    tp.min(iops / 4).max(125)
                } else {
                    tp
                };
                RunnerSpec {
                    provider: Provider::Aws,
                    account: account.map(|a| AccountId::parse(&a).unwrap()),
                    region: crate::domain::Region::parse(region).unwrap(),
                    availability_zone: zone
                        .map(|z| AvailabilityZone::parse(&format!("{region}{z}")).unwrap()),
                    subnet: subnet.map(|s| SubnetId::parse(s).unwrap()),
                    image,
                    instance_type: InstanceType::parse(t).unwrap(),
                    spot,
                    security_group: sg.map(|s| SecurityGroupId::parse(&format!("sg-{s}")).unwrap()),
                    root: RootVolume {
                        volume_type: VolumeType::Gp3,
                        iops,
                        throughput_mibps: tp,
                    },
                    temp,
                    swap_gib: 4,
                    events,
                }
            },
        )
}

proptest! {
    #[test]
    fn rendering_a_spec_and_parsing_it_again_gives_the_same_spec(spec in arb_spec()) {
        let label = spec.to_label("sprinters");
        let parsed = LabelParser::default().parse_label(&label).map_err(|e| TestCaseError::fail(format!("{label}: {e}")))?;
        prop_assert_eq!(parsed, spec);
    }

    #[test]
    fn parts_in_any_order_parse_the_same(spec in arb_spec(), seed in any::<u64>()) {
        let label = spec.to_label("sprinters");
        let mut parts: Vec<&str> = label.split(':').skip(1).collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        rng.shuffle(&mut parts);
        let shuffled = format!("sprinters:{}", parts.join(":"));
        prop_assert_eq!(LabelParser::default().parse_label(&shuffled).unwrap(), spec);
    }

    #[test]
    fn arbitrary_input_never_panics(s in "sprinters(:[a-z0-9=/.\\-]{0,24}){0,8}") {
        let _ = LabelParser::default().parse_label(&s);
    }
}
