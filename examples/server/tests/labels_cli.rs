//! `sprinters labels parse`, run as a user runs it.

// Test helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sprinters;

#[test]
fn a_valid_job_prints_the_resolved_spec_with_exactly_the_documented_keys() {
    let out = sprinters(&[
        "labels",
        "parse",
        "sprinters:aws/123456789012:eu-central-1/b/subnet-0123abcd:ubuntu-24.04-arm:c7g.xlarge:spot=auto:sg-0123abcd:root=gp3/4000/max:temp=gp3/64:events=false",
        "1234-1-build",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected_keys = [
        "provider",
        "account",
        "region",
        "availability_zone",
        "subnet",
        "image",
        "arch",
        "instance_type",
        "spot",
        "security_group",
        "root",
        "temp",
        "swap_gib",
        "events",
        "labels",
    ];
    let object = json.as_object().unwrap();
    assert_eq!(
        object.len(),
        expected_keys.len(),
        "exactly these keys: {object:?}"
    );
    // In the documented order, as printed.
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let positions: Vec<usize> = expected_keys
        .iter()
        .map(|k| {
            text.find(&format!("\n  \"{k}\":"))
                .unwrap_or_else(|| panic!("no top-level `{k}`"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order:\n{text}"
    );
    assert_eq!(
        json,
        serde_json::json!({
            "provider": "aws",
            "account": "123456789012",
            "region": "eu-central-1",
            "availability_zone": "eu-central-1b",
            "subnet": "subnet-0123abcd",
            "image": "ubuntu-24.04-arm",
            "arch": "arm64",
            "instance_type": "c7g.xlarge",
            "spot": "auto",
            "security_group": "sg-0123abcd",
            "root": {"volume_type": "gp3", "size_gib": 8, "iops": 4000, "throughput_mibps": 1000},
            "temp": {"kind": "gp3", "size_gib": 64, "iops": 3000, "throughput_mibps": 125},
            "swap_gib": 4,
            "events": false,
            "labels": [
                "sprinters:aws/123456789012:eu-central-1/b/subnet-0123abcd:ubuntu-24.04-arm:c7g.xlarge:spot=auto:sg-0123abcd:root=gp3/4000/max:temp=gp3/64:events=false",
                "1234-1-build"
            ]
        })
    );
}

#[test]
fn defaults_and_nulls() {
    let out = sprinters(&["labels", "parse", "sprinters:aws:ubuntu-latest:temp=zram"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["image"], "ubuntu-24.04");
    assert_eq!(json["arch"], "x64");
    assert_eq!(json["instance_type"], "t3.large");
    assert_eq!(json["spot"], "false");
    assert_eq!(json["account"], serde_json::Value::Null);
    assert_eq!(json["availability_zone"], serde_json::Value::Null);
    assert_eq!(
        json["temp"],
        serde_json::json!({"kind": "zram", "size_gib": null, "iops": null, "throughput_mibps": null})
    );
}

#[test]
fn an_invalid_label_exits_2_with_the_error_on_stderr() {
    let out = sprinters(&["labels", "parse", "sprinters:aws:spot=maybe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: invalid label `sprinters:aws:spot=maybe`: spot=maybe: expected one of false, true, auto, rerun"
    );
}

#[test]
fn a_job_with_no_label_of_ours_exits_3() {
    let out = sprinters(&["labels", "parse", "ubuntu-latest", "self-hosted"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
}

#[test]
fn the_prefix_is_configurable() {
    let out = sprinters(&["labels", "parse", "--prefix", "acme", "acme:aws"]);
    assert_eq!(out.status.code(), Some(0));
    let out = sprinters(&["labels", "parse", "--prefix", "acme", "sprinters:aws"]);
    assert_eq!(out.status.code(), Some(3));
}
