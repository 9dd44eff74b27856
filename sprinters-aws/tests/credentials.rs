//! The credential providers against the AWS API emulator: an assumed role
//! acts in the customer's account, stored keys come from the vault, the
//! ambient chain serves only its own account, and the chain routes each
//! account to whichever provider has it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use sprinters_aws::{
    AmbientProvider, AssumeRoleProvider, CredentialChain, CustomerRole, StoredKeyProvider,
};
use sprinters_core::ErrorKind;
use sprinters_core::domain::{AccountId, Owner, OwnerId, Region};
use sprinters_core::ports::{CredentialProvider, Credentials, CredentialsRequest};
use sprinters_core::testing::{CredentialsFixture, credential_provider};
use sprinters_core::time::Timestamp;
use sprinters_core::vault::{CredentialVault, MemoryVault, StoredAccessKey};

use common::*;

fn owner() -> Owner {
    Owner::parse("octo-org").unwrap()
}

async fn role_provider(accounts: &[&AccountId], log: Option<&OperationLog>) -> AssumeRoleProvider {
    let mut config = config();
    if let Some(log) = log {
        config = config.interceptor(log.interceptor());
    }
    let mut builder =
        AssumeRoleProvider::builder(config).platform_credentials(platform_credentials());
    for account in accounts {
        let role = CustomerRole::new(
            account,
            &format!("arn:aws:iam::{account}:role/SprintersRole"),
            SecretString::from("agreed-external-id".to_owned()),
        )
        .unwrap();
        builder = builder.role(OwnerId::new(31337), (*account).clone(), role);
    }
    builder.build().await
}

/// Who AWS (the emulator) says these credentials are.
async fn caller_account(credentials: &Credentials) -> String {
    let sts = config().sts(
        &Region::us_east_1(),
        aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.expose_secret().to_owned(),
                credentials
                    .session_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                None,
                "test",
            ),
        ),
    );
    let who = sts.get_caller_identity().send().await.unwrap();
    who.account().unwrap().to_owned()
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

#[tokio::test]
async fn an_assumed_role_passes_the_conformance_suite_and_acts_in_the_customer_account() {
    let account = fresh_account();
    let log = OperationLog::default();
    let provider = role_provider(&[&account], Some(&log)).await;
    credential_provider(
        &provider,
        &CredentialsFixture {
            account: account.clone(),
            owner_id: OwnerId::new(31337),
            owner: owner(),
            now: now(),
        },
    )
    .await;
    let credentials = provider
        .credentials(CredentialsRequest::new(
            account.clone(),
            OwnerId::new(31337),
            owner(),
        ))
        .await
        .unwrap();
    assert!(credentials.session_token.is_some(), "temporary credentials");
    assert!(credentials.expires_at.unwrap() > now());
    assert_eq!(caller_account(&credentials).await, account.as_str());
    assert_eq!(
        log.calls(),
        ["sts:AssumeRole"],
        "one AssumeRole for three asks: the rest came from the cache"
    );
}

#[tokio::test]
async fn an_account_without_a_role_is_not_found() {
    let provider = role_provider(&[], None).await;
    let err = provider
        .credentials(CredentialsRequest::new(
            fresh_account(),
            OwnerId::new(31337),
            owner(),
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("no role"), "{err}");
}

#[tokio::test]
async fn stored_keys_come_from_the_vault_and_are_not_kept() {
    let vault = Arc::new(MemoryVault::new());
    let account = fresh_account();
    vault
        .put_access_key(
            OwnerId::new(31337),
            account.clone(),
            StoredAccessKey {
                access_key_id: "AKIASTOREDEXAMPLE".to_owned(),
                secret_access_key: SecretString::from("stored-secret".to_owned()),
            },
        )
        .await
        .unwrap();
    let provider = StoredKeyProvider::new(vault.clone());
    credential_provider(
        &provider,
        &CredentialsFixture {
            account: account.clone(),
            owner_id: OwnerId::new(31337),
            owner: owner(),
            now: now(),
        },
    )
    .await;
    let got = provider
        .credentials(CredentialsRequest::new(
            account.clone(),
            OwnerId::new(31337),
            owner(),
        ))
        .await
        .unwrap();
    assert_eq!(got.secret_access_key.expose_secret(), "stored-secret");
    // The emulator accepts the key (AWS would check it).
    assert_eq!(caller_account(&got).await.len(), 12);

    // Another owner naming the same account gets nothing of this key.
    let theirs = provider
        .credentials(CredentialsRequest::new(
            account.clone(),
            OwnerId::new(4040),
            Owner::parse("rival-org").unwrap(),
        ))
        .await
        .unwrap_err();
    assert_eq!(*theirs.kind(), ErrorKind::NotFound, "{theirs}");

    vault
        .delete_access_key(OwnerId::new(31337), account.clone())
        .await
        .unwrap();
    let err = provider
        .credentials(CredentialsRequest::new(
            account.clone(),
            OwnerId::new(31337),
            owner(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        ErrorKind::NotFound,
        "a deleted key is gone at once"
    );
    assert!(
        err.message().contains("sprinters keys add-access-key"),
        "{err}"
    );
}

#[tokio::test]
async fn ambient_credentials_serve_their_own_account_only() {
    let account = fresh_account();
    let provider = AmbientProvider::from_provider(account.clone(), platform_credentials());
    credential_provider(
        &provider,
        &CredentialsFixture {
            account: account.clone(),
            owner_id: OwnerId::new(31337),
            owner: owner(),
            now: now(),
        },
    )
    .await;
    let err = provider
        .credentials(CredentialsRequest::new(
            fresh_account(),
            OwnerId::new(31337),
            owner(),
        ))
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains(account.as_str()), "{err}");
}

#[tokio::test]
async fn the_chain_serves_each_account_from_the_provider_that_has_it() {
    let with_role = fresh_account();
    let with_key = fresh_account();
    let vault = Arc::new(MemoryVault::new());
    vault
        .put_access_key(
            OwnerId::new(31337),
            with_key.clone(),
            StoredAccessKey {
                access_key_id: "AKIACHAINEXAMPLE".to_owned(),
                secret_access_key: SecretString::from("chain-secret".to_owned()),
            },
        )
        .await
        .unwrap();
    let chain = CredentialChain::new(vec![
        Arc::new(role_provider(&[&with_role], None).await),
        Arc::new(StoredKeyProvider::new(vault)),
    ]);
    let ask = |a: &AccountId| {
        chain.credentials(CredentialsRequest::new(
            a.clone(),
            OwnerId::new(31337),
            owner(),
        ))
    };
    let role = ask(&with_role).await.unwrap();
    assert_eq!(caller_account(&role).await, with_role.as_str());
    assert_eq!(
        ask(&with_key).await.unwrap().access_key_id,
        "AKIACHAINEXAMPLE"
    );
    let stranger = fresh_account();
    let err = ask(&stranger).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::NotFound);
    assert!(
        err.message().contains("no role") && err.message().contains("no access key"),
        "every provider's reason: {err}"
    );
}
