//! The `serve` configuration: the example file, environment overrides,
//! and errors that name the key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use sprinters_server::config::{AccountCredentials, Config};

/// Files the example refers to, in a temporary directory, as overrides.
struct Files {
    _dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let key = write("app.pem", "-----BEGIN RSA PRIVATE KEY-----\n...\n");
    let secret = write("webhook-secret", "the-webhook-secret\n");
    let env = [
        ("SPRINTERS_GITHUB_PRIVATE_KEY_FILE", key),
        ("SPRINTERS_GITHUB_WEBHOOK_SECRET_FILE", secret),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.display().to_string()))
    .collect();
    Files { _dir: dir, env }
}

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sprinters.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // Its token and external-id files are system paths; inline them.
    text.replace(
        "token_file = \"/etc/sprinters/api-token-admin\"",
        "token = \"admin-token-0123456789\"",
    )
    .replace(
        "token_file = \"/etc/sprinters/api-token-octo-org\"",
        "token = \"octo-org-token-0123456789\"",
    )
    .replace(
        "external_id_file = \"/etc/sprinters/external-id-octo-org\"",
        "external_id = \"agreed-external-id\"",
    )
}

#[test]
fn the_example_file_is_a_valid_configuration() {
    let f = files();
    let config = Config::parse(&example(), &f.env).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.github.app_id, 123456);
    assert_eq!(
        config.github.request_timeout,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(config.github.webhook_secrets.len(), 1);
    assert_eq!(
        config.github.webhook_secrets[0].expose_secret(),
        "the-webhook-secret"
    );
    assert_eq!(config.accounts.len(), 2);
    assert!(matches!(
        config.accounts[0].credentials,
        AccountCredentials::Role(_)
    ));
    assert!(matches!(
        config.accounts[1].credentials,
        AccountCredentials::Vault
    ));
    assert_eq!(config.aws.images.len(), 2);
    assert_eq!(config.server.api_tokens.len(), 2);
    assert!(
        config.server.api_tokens[0].owners.is_none(),
        "*: every owner"
    );
    assert_eq!(config.limits.max_lifetime_minutes, 375);
    assert_eq!(
        config.policy,
        sprinters_core::policy::PlatformPolicy::default(),
        "the example spells out the defaults"
    );
    let debug = format!("{config:?}");
    for secret in [
        "the-webhook-secret",
        "agreed-external-id",
        "admin-token-0123456789",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
    }
}

#[test]
fn environment_variables_override_keys() {
    let mut f = files();
    f.env
        .insert("SPRINTERS_SERVER_LISTEN".into(), "0.0.0.0:9443".into());
    f.env.insert("SPRINTERS_GITHUB_APP_ID".into(), "777".into());
    f.env
        .insert("SPRINTERS_LIMITS_IDLE_GRACE_SECONDS".into(), "60".into());
    f.env.insert(
        "SPRINTERS_AWS_ENDPOINT_URL".into(),
        "http://127.0.0.1:5000".into(),
    );
    let config = Config::parse(&example(), &f.env).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:9443");
    assert_eq!(config.github.app_id, 777);
    assert_eq!(config.limits.idle_grace_seconds, 60);
    assert_eq!(
        config.aws.endpoint_url.as_deref(),
        Some("http://127.0.0.1:5000")
    );
}

#[test]
fn errors_name_the_key() {
    let f = files();
    let check = |edit: &dyn Fn(String) -> String, key: &str| {
        let err = Config::parse(&edit(example()), &f.env).unwrap_err();
        assert_eq!(err.key, key, "{err}");
        assert!(err.to_string().starts_with(key), "{err}");
    };
    check(
        &|t| t.replace("listen = \"127.0.0.1:8080\"", "listen = \"everywhere\""),
        "server.listen",
    );
    check(
        &|t| t.replace("app_id = 123456", "app_id = \"twelve\""),
        "github.app_id",
    );
    check(
        &|t| {
            t.replace(
                "public_repositories = \"deny\"",
                "public_repositories = \"sometimes\"",
            )
        },
        "policy",
    );
    check(&|t| t.replace("max_vcpus = 64", "max_cpus = 64"), "policy");
    check(
        &|t| t.replace("instance_types = [\"*\"]", "instance_types = []"),
        "policy",
    );
    check(
        &|t| {
            t.replace(
                "waited on longer.\nrequest_timeout_seconds = 30",
                "waited on longer.\nrequest_timeout_seconds = 0",
            )
        },
        "github.request_timeout_seconds",
    );
    check(
        &|t| {
            t.replace(
                "default_region = \"us-east-1\"",
                "default_region = \"mars-1\"",
            )
        },
        "aws.default_region",
    );
    check(
        &|t| {
            t.replace(
                "as retryable after this long.\nrequest_timeout_seconds = 30",
                "as retryable after this long.\nrequest_timeout_seconds = 7200",
            )
        },
        "aws.request_timeout_seconds",
    );
    check(
        &|t| t.replace("ami-0fedcba9876543210", "ubuntu"),
        "aws.images.\"ubuntu-24.04\".eu-central-1",
    );
    check(
        &|t| {
            t.replace(
                "aws_account_id = \"123456789012\"",
                "aws_account_id = \"1234\"",
            )
        },
        "accounts[0].aws_account_id",
    );
    check(
        &|t| t.replace("credentials = \"vault\"", "credentials = \"magic\""),
        "accounts[1].credentials",
    );
    check(
        &|t| t.replace("owners = [\"octo-org\"]", "owners = []"),
        "server.api_tokens[1].owners",
    );
    check(
        &|t| t.replace("max_lifetime_minutes = 375", "max_lifetime_minutes = 0"),
        "limits.max_lifetime_minutes",
    );

    let unknown = Config::parse(
        &example().replace("[limits]", "[limits]\nmax_instances = 3"),
        &f.env,
    )
    .unwrap_err();
    assert!(unknown.to_string().contains("max_instances"), "{unknown}");
    let not_toml = Config::parse("[server", &f.env).unwrap_err();
    assert!(not_toml.to_string().contains("TOML"), "{not_toml}");

    let mut missing = f.env.clone();
    missing.insert(
        "SPRINTERS_GITHUB_PRIVATE_KEY_FILE".into(),
        "/nonexistent/app.pem".into(),
    );
    let err = Config::parse(&example(), &missing).unwrap_err();
    assert_eq!(err.key, "github.private_key_file");
    assert!(err.message.contains("/nonexistent/app.pem"), "{err}");
}

#[test]
fn the_store_is_the_embedded_store_unless_a_database_is_named() {
    use sprinters_server::config::StoreConfig;
    let mut f = files();
    let config = Config::parse(&example(), &f.env).unwrap();
    assert!(matches!(config.store, StoreConfig::Embedded));
    assert_eq!(config.limits.claim_ttl_seconds, 300);
    assert_eq!(config.limits.leader_ttl_seconds, 15);

    let url = "postgres://sprinters:hunter2@db.internal:5432/sprinters";
    let url_file = f._dir.path().join("database-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let with_store = |extra: &str| format!("{}\n[store]\n{extra}\n", example());
    let config = Config::parse(
        &with_store(&format!(
            "url_file = \"{}\"\nmax_connections = 4\nca_file = \"{}\"\nrequest_timeout_seconds = 5",
            url_file.display(),
            url_file.display()
        )),
        &f.env,
    )
    .unwrap();
    match &config.store {
        StoreConfig::Postgres {
            url: got,
            max_connections,
            ca_file,
            request_timeout,
        } => {
            assert_eq!(got.expose_secret(), url);
            assert_eq!(*max_connections, 4);
            assert_eq!(*request_timeout, std::time::Duration::from_secs(5));
            assert_eq!(ca_file.as_deref(), Some(url_file.as_path()));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "the URL's password never reaches Debug"
    );

    f.env.insert("SPRINTERS_STORE_URL".into(), url.into());
    let config = Config::parse(&example(), &f.env).unwrap();
    assert!(matches!(config.store, StoreConfig::Postgres { .. }));
    f.env.remove("SPRINTERS_STORE_URL");

    let err =
        Config::parse(&with_store("url = \"mysql://root:hunter2@db/x\""), &f.env).unwrap_err();
    assert_eq!(err.key, "store.url");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = Config::parse(&with_store("max_connections = 4"), &f.env).unwrap_err();
    assert_eq!(err.key, "store.max_connections");
    let err = Config::parse(&with_store("ca_file = \"/etc/ca.pem\""), &f.env).unwrap_err();
    assert_eq!(err.key, "store.ca_file", "a CA file without a database");
    let err = Config::parse(
        &with_store(&format!(
            "url = \"{url}\"\nca_file = \"/nonexistent/ca.pem\""
        )),
        &f.env,
    )
    .unwrap_err();
    assert_eq!(err.key, "store.ca_file");
    assert!(err.message.contains("/nonexistent/ca.pem"), "{err}");
    let err = Config::parse(
        &example().replace("leader_ttl_seconds = 15\n", "leader_ttl_seconds = 1\n"),
        &f.env,
    )
    .unwrap_err();
    assert_eq!(err.key, "limits.leader_ttl_seconds");
}

/// One owner's connection never lends its credentials to another: two
/// owners may connect one AWS account only with roles of their own, each
/// with its own external id (the vault and the environment hold one key
/// per account, so they cannot be shared at all).
#[test]
fn two_owners_connect_one_account_only_through_separate_connections() {
    let f = files();
    let base = example();
    let with = |extra: &str| format!("{base}\n{extra}");
    let same_id = with(
        r#"
[[accounts]]
github_owner = "rival-org"
aws_account_id = "123456789012"
role_arn = "arn:aws:iam::123456789012:role/Other"
external_id = "agreed-external-id"
"#,
    );
    let err = Config::parse(&same_id, &f.env).unwrap_err().to_string();
    assert!(err.contains("accounts[2]"), "{err}");
    assert!(err.contains("external id of its own"), "{err}");

    // Stored keys are per owner and account: each owner stores its own.
    let both_vault = with(
        r#"
[[accounts]]
github_owner = "rival-org"
aws_account_id = "210987654321"
credentials = "vault"
"#,
    );
    assert!(Config::parse(&both_vault, &f.env).is_ok());
    // The environment's credentials are the process's own: one owner.
    let ambient = with(
        r#"
[[accounts]]
github_owner = "rival-org"
aws_account_id = "123456789012"
credentials = "ambient"
"#,
    );
    let err = Config::parse(&ambient, &f.env).unwrap_err().to_string();
    assert!(err.contains("both connect 123456789012"), "{err}");

    let separate = with(
        r#"
[[accounts]]
github_owner = "rival-org"
github_owner_id = 5353
aws_account_id = "123456789012"
role_arn = "arn:aws:iam::123456789012:role/Other"
external_id = "the-rivals-own-external-id"
"#,
    );
    let config = Config::parse(&separate, &f.env).unwrap();
    assert_eq!(config.accounts.len(), 3);
    assert_eq!(
        config.accounts[2].github_owner_id.map(|o| o.get()),
        Some(5353)
    );

    let twice = with(
        r#"
[[accounts]]
github_owner = "OCTO-org"
aws_account_id = "123456789012"
credentials = "vault"
"#,
    );
    let err = Config::parse(&twice, &f.env).unwrap_err().to_string();
    assert!(err.contains("already connects"), "{err}");
}

#[test]
fn the_platform_account_and_template_url_are_checked() {
    let f = files();
    let text = example().replace(
        "default_region = \"us-east-1\"",
        "default_region = \"us-east-1\"\nplatform_account_id = \"99\"",
    );
    let err = Config::parse(&text, &f.env).unwrap_err().to_string();
    assert!(err.contains("aws.platform_account_id"), "{err}");
    let text = example().replace(
        "default_region = \"us-east-1\"",
        "default_region = \"us-east-1\"\ncloudformation_template_url = \"http://insecure\"",
    );
    let err = Config::parse(&text, &f.env).unwrap_err().to_string();
    assert!(err.contains("aws.cloudformation_template_url"), "{err}");
    let text = example().replace(
        "default_region = \"us-east-1\"",
        "default_region = \"us-east-1\"\nplatform_account_id = 999988887777",
    );
    let config = Config::parse(&text, &f.env).unwrap();
    assert_eq!(
        config
            .aws
            .platform_account_id
            .map(|a| a.as_str().to_owned()),
        Some("999988887777".to_owned())
    );
}
