//! The [`CredentialVault`] conformance suite.

use secrecy::{ExposeSecret, SecretString};

use crate::domain::AccountId;
use crate::vault::{CredentialVault, StoredAccessKey};

fn key(id: &str, secret: &str) -> StoredAccessKey {
    StoredAccessKey {
        access_key_id: id.to_owned(),
        secret_access_key: SecretString::from(secret.to_owned()),
    }
}

/// Runs every check against an empty vault.
pub async fn credential_vault(vault: &dyn CredentialVault) {
    let a = AccountId::parse("111111111111").unwrap();
    let b = AccountId::parse("222222222222").unwrap();
    assert!(vault.access_key(a.clone()).await.unwrap().is_none());
    vault
        .put_access_key(b.clone(), key("AKIAB", "secret-b"))
        .await
        .unwrap();
    vault
        .put_access_key(a.clone(), key("AKIAA", "secret-a"))
        .await
        .unwrap();
    let got = vault.access_key(a.clone()).await.unwrap().expect("stored");
    assert_eq!(got.access_key_id, "AKIAA");
    assert_eq!(got.secret_access_key.expose_secret(), "secret-a");
    assert!(
        !format!("{got:?}").contains("secret-a"),
        "Debug hides the secret"
    );
    assert_eq!(vault.accounts().await.unwrap(), vec![a.clone(), b.clone()]);

    vault
        .put_access_key(a.clone(), key("AKIAA2", "secret-a2"))
        .await
        .unwrap();
    let got = vault.access_key(a.clone()).await.unwrap().unwrap();
    assert_eq!(
        (
            got.access_key_id.as_str(),
            got.secret_access_key.expose_secret()
        ),
        ("AKIAA2", "secret-a2"),
        "put replaces"
    );

    vault.delete_access_key(a.clone()).await.unwrap();
    vault.delete_access_key(a.clone()).await.unwrap();
    assert!(vault.access_key(a).await.unwrap().is_none());
    assert_eq!(vault.accounts().await.unwrap(), vec![b]);
}
