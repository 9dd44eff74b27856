use super::*;
use crate::labels::LabelParser;

fn owner() -> Owner {
    Owner::parse("octo-org").unwrap()
}

fn repo(name: &str) -> Repository {
    Repository::parse(&format!("octo-org/{name}")).unwrap()
}

fn account() -> AccountId {
    AccountId::parse("123456789012").unwrap()
}

fn spec(label: &str) -> RunnerSpec {
    LabelParser::default()
        .parse_label(&format!("sprinters:aws:{label}"))
        .unwrap()
}

fn policy(json: &str) -> EffectivePolicy {
    let owner: OwnerPolicy = serde_json::from_str(json).unwrap();
    owner.validate().unwrap();
    PlatformPolicy::default().for_owner(Some(&owner))
}

fn refused(p: &EffectivePolicy, label: &str) -> Option<String> {
    p.refuses(
        &owner(),
        &repo("app"),
        &spec(label),
        &account(),
        Visibility::Private,
    )
}

#[test]
fn patterns_match_whole_names() {
    let p = |s: &str| TypePattern::parse(s).unwrap();
    assert!(p("t3.*").matches("t3.large"));
    assert!(!p("t3.*").matches("t3a.large"));
    assert!(p("*.large").matches("c7i.large"));
    assert!(!p("*.large").matches("c7i.xlarge"));
    assert!(p("c7i.xlarge").matches("c7i.xlarge"));
    assert!(!p("c7i.xlarge").matches("c7i.2xlarge"));
    assert!(p("*").matches("p5.48xlarge"));
    assert!(p("m*i.*").matches("m7i.large"));
    assert!(TypePattern::parse("T3.*").is_err());
    assert!(TypePattern::parse("").is_err());
    assert!(TypePattern::parse("t3.[a-z]").is_err());
}

#[test]
fn a_key_left_out_takes_the_platform_default() {
    let platform = PlatformPolicy {
        max_vcpus: 8,
        max_temp_gib: 50,
        ..PlatformPolicy::default()
    };
    let owner: OwnerPolicy = serde_json::from_str(r#"{"max_vcpus": 4}"#).unwrap();
    let p = platform.for_owner(Some(&owner));
    assert_eq!(p.base.max_vcpus, 4);
    assert_eq!(p.base.max_temp_gib, 50);
    assert_eq!(p.base.public_repositories, PublicRepositories::Deny);
    assert_eq!(platform.for_owner(None).base, platform);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let e = serde_json::from_str::<OwnerPolicy>(r#"{"max_cpus": 4}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_cpus"), "{e}");
    let e = serde_json::from_str::<OwnerPolicy>(r#"{"public_repositories": "sometimes"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sometimes"), "{e}");
    let e = serde_json::from_str::<OwnerPolicy>(r#"{"instance_types": ["T3.*"]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("T3.*"), "{e}");
    let bad: OwnerPolicy =
        serde_json::from_str(r#"{"repositories": {"octo-org/app": {}}}"#).unwrap();
    assert!(bad.validate().unwrap_err().contains("octo-org/app"));
    let twice: OwnerPolicy =
        serde_json::from_str(r#"{"repositories": {"App": {}, "app": {}}}"#).unwrap();
    assert!(twice.validate().unwrap_err().contains("twice"));
}

#[test]
fn instance_types_outside_the_patterns_are_refused_with_the_allowed_ones() {
    let p = policy(r#"{"instance_types": ["t3.*", "c7i.*"]}"#);
    assert_eq!(refused(&p, "ubuntu-latest:t3.large"), None);
    assert_eq!(refused(&p, "ubuntu-latest:c7i.xlarge"), None);
    assert_eq!(
        refused(&p, "ubuntu-latest:p5.48xlarge").unwrap(),
        "instance type p5.48xlarge is not allowed for octo-org (allowed: t3.*, c7i.*)"
    );
}

#[test]
fn vcpus_over_the_ceiling_are_refused() {
    let p = policy(r#"{"max_vcpus": 8}"#);
    assert_eq!(refused(&p, "ubuntu-latest:c7i.2xlarge"), None);
    assert_eq!(
        refused(&p, "ubuntu-latest:c7i.4xlarge").unwrap(),
        "instance type c7i.4xlarge has 16 vCPUs, more than the 8 allowed for octo-org (max_vcpus)"
    );
    let metal = refused(&p, "ubuntu-latest:c7i.metal").unwrap();
    assert!(metal.contains("vCPU count cannot be told"), "{metal}");
}

#[test]
fn volumes_over_their_ceilings_are_refused() {
    let p =
        policy(r#"{"max_temp_gib": 20, "max_root_iops": 4000, "max_root_throughput_mibps": 200}"#);
    assert_eq!(refused(&p, "ubuntu-latest:temp=gp3/20"), None);
    assert_eq!(
        refused(&p, "ubuntu-latest:temp=gp3/21").unwrap(),
        "temp volume of 21 GiB is more than the 20 GiB allowed for octo-org (max_temp_gib)"
    );
    assert!(
        refused(&p, "ubuntu-latest:temp=zram/64")
            .unwrap()
            .contains("max_temp_gib")
    );
    assert!(
        refused(&p, "ubuntu-latest:root=gp3/5000/150")
            .unwrap()
            .contains("5000 IOPS")
    );
    assert!(
        refused(&p, "ubuntu-latest:root=gp3/3000/300")
            .unwrap()
            .contains("300 MiB/s")
    );
}

#[test]
fn only_listed_subnets_and_security_groups_may_be_named() {
    let p = policy("{}");
    assert_eq!(
        refused(&p, "us-east-1/us-east-1a/subnet-0123abcd:ubuntu-latest").unwrap(),
        "subnet subnet-0123abcd is not allowed for octo-org (allowed: none)"
    );
    assert_eq!(
        refused(&p, "ubuntu-latest:sg-0123abcd").unwrap(),
        "security group sg-0123abcd is not allowed for octo-org (allowed: none)"
    );
    let p = policy(r#"{"subnets": ["subnet-0123abcd"], "security_groups": ["sg-0123abcd"]}"#);
    assert_eq!(
        refused(&p, "us-east-1/us-east-1a/subnet-0123abcd:ubuntu-latest"),
        None
    );
    assert_eq!(refused(&p, "ubuntu-latest:sg-0123abcd"), None);
}

#[test]
fn a_repository_is_narrowed_never_widened() {
    let p = policy(
        r#"{"instance_types": ["t3.*", "c7i.*"], "max_vcpus": 4,
            "repositories": {"App": {"instance_types": ["t3.*", "p5.*"], "max_vcpus": 32,
                                     "accounts": ["210987654321"]}}}"#,
    );
    let other = AccountId::parse("210987654321").unwrap();
    let check = |name: &str, label: &str, account: &AccountId| {
        p.refuses(
            &owner(),
            &repo(name),
            &spec(label),
            account,
            Visibility::Private,
        )
    };
    assert_eq!(check("app", "ubuntu-latest:t3.large", &other), None);
    // The repository's own list refuses what the owner allows...
    assert_eq!(
        check("app", "ubuntu-latest:c7i.large", &other).unwrap(),
        "instance type c7i.large is not allowed for octo-org/app (allowed: t3.*, p5.*)"
    );
    // ...and cannot allow what the owner refuses.
    assert!(
        check("app", "ubuntu-latest:p5.48xlarge", &other)
            .unwrap()
            .contains("not allowed for octo-org (")
    );
    assert!(
        check("app", "ubuntu-latest:t3.2xlarge", &other)
            .unwrap()
            .contains("4 allowed for octo-org (max_vcpus)")
    );
    assert_eq!(
        check("app", "ubuntu-latest:t3.large", &account()).unwrap(),
        "AWS account 123456789012 is not allowed for octo-org/app (allowed: 210987654321)"
    );
    // Other repositories keep the owner's rules.
    assert_eq!(check("api", "ubuntu-latest:c7i.large", &account()), None);
}

#[test]
fn public_repositories_are_denied_unless_the_policy_allows_them() {
    let check = |p: &EffectivePolicy, v: Visibility| {
        p.refuses(
            &owner(),
            &repo("app"),
            &spec("ubuntu-latest"),
            &account(),
            v,
        )
    };
    let deny = policy("{}");
    assert_eq!(check(&deny, Visibility::Private), None);
    assert!(
        check(&deny, Visibility::Public)
            .unwrap()
            .contains("(public_repositories = deny)")
    );
    let no_forks = policy(r#"{"public_repositories": "no-forks"}"#);
    assert_eq!(check(&no_forks, Visibility::Public), None);
    assert!(
        check(&no_forks, Visibility::PublicFork)
            .unwrap()
            .contains("comes from a fork")
    );
    assert!(check(&no_forks, Visibility::PublicUnknownOrigin).is_some());
    assert!(
        check(&no_forks, Visibility::PublicPullRequestTarget)
            .unwrap()
            .contains("started by pull_request_target")
    );
    let allow = policy(r#"{"public_repositories": "allow"}"#);
    assert_eq!(check(&allow, Visibility::PublicFork), None);
    assert_eq!(check(&allow, Visibility::PublicPullRequestTarget), None);
}

#[test]
fn vcpus_follow_ec2_sizes() {
    let n = |t: &str| crate::domain::InstanceType::parse(t).unwrap().vcpus();
    assert_eq!(n("t3.micro"), Some(2));
    assert_eq!(n("t2.micro"), Some(1));
    assert_eq!(n("t4g.medium"), Some(2));
    assert_eq!(n("c7g.medium"), Some(1));
    assert_eq!(n("m7i.large"), Some(2));
    assert_eq!(n("m7i.xlarge"), Some(4));
    assert_eq!(n("c5.9xlarge"), Some(36));
    assert_eq!(n("p5.48xlarge"), Some(192));
    assert_eq!(n("c7i.metal-24xl"), Some(96));
    assert_eq!(n("c7g.metal"), None);
    assert_eq!(n("c1.xlarge"), Some(8), "the old exception");
    assert_eq!(n("m5.08xlarge"), None);
}
