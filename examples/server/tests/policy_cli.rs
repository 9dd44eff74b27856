//! `sprinters policy ...` and `sprinters user-data`, run as a user runs them.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sprinters;

#[test]
fn policy_documents_print_as_json() {
    let iam = sprinters(&["policy", "iam"]);
    assert_eq!(iam.status.code(), Some(0));
    let iam: serde_json::Value = serde_json::from_slice(&iam.stdout).unwrap();
    assert_eq!(iam, sprinters_aws::policy::iam_policy());

    let cfn = sprinters(&["policy", "cloudformation"]);
    let cfn: serde_json::Value = serde_json::from_slice(&cfn.stdout).unwrap();
    assert_eq!(cfn["Resources"]["SprintersRole"]["Type"], "AWS::IAM::Role");

    let trust = sprinters(&[
        "policy",
        "trust",
        "--platform-account",
        "999988887777",
        "--external-id",
        "tenant-7",
    ]);
    assert_eq!(trust.status.code(), Some(0));
    let trust: serde_json::Value = serde_json::from_slice(&trust.stdout).unwrap();
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "tenant-7"
    );
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::999988887777:role/sprinters-control-plane",
        "the control plane's role by default"
    );
    let named = sprinters(&[
        "policy",
        "trust",
        "--platform-account",
        "999988887777",
        "--platform-role",
        "acme-runners",
        "--external-id",
        "tenant-7",
    ]);
    let named: serde_json::Value = serde_json::from_slice(&named.stdout).unwrap();
    assert_eq!(
        named["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::999988887777:role/acme-runners"
    );
}

#[test]
fn bad_arguments_get_one_clear_line_and_a_non_zero_exit() {
    let out = sprinters(&[
        "policy",
        "trust",
        "--platform-account",
        "12",
        "--external-id",
        "tenant-7",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: --platform-account: invalid AWS account id"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let out = sprinters(&[
        "policy",
        "trust",
        "--platform-account",
        "999988887777",
        "--external-id",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn user_data_reads_the_jit_config_from_a_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jit");
    std::fs::write(&file, "eyJydW5uZXIiOiJ4In0=\n").unwrap();
    let out = sprinters(&[
        "user-data",
        "--jit-config-file",
        file.to_str().unwrap(),
        "sprinters:aws:temp=zram",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.starts_with("#!/bin/sh") && script.contains("TEMP_KIND=zram"));
    assert!(script.contains("ACTIONS_RUNNER_INPUT_JITCONFIG='eyJydW5uZXIiOiJ4In0='"));

    std::fs::write(&file, "not base64; rm -rf /").unwrap();
    let out = sprinters(&["user-data", "--jit-config-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rm -rf"),
        "the config is never echoed"
    );
}
