//! The [`CredentialVault`] conformance suite.

use secrecy::{ExposeSecret, SecretString};

use crate::domain::{AccountId, OwnerId};
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
    let (me, rival) = (OwnerId::new(1001), OwnerId::new(1002));
    assert!(vault.access_key(me, a.clone()).await.unwrap().is_none());
    vault
        .put_access_key(me, b.clone(), key("AKIAB", "secret-b"))
        .await
        .unwrap();
    vault
        .put_access_key(me, a.clone(), key("AKIAA", "secret-a"))
        .await
        .unwrap();
    let got = vault
        .access_key(me, a.clone())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(got.access_key_id, "AKIAA");
    assert_eq!(got.secret_access_key.expose_secret(), "secret-a");
    assert!(
        !format!("{got:?}").contains("secret-a"),
        "Debug hides the secret"
    );
    assert_eq!(
        vault.accounts().await.unwrap(),
        vec![(me, a.clone()), (me, b.clone())]
    );

    // Another owner connecting the same account: its own key, and never
    // the first owner's.
    assert!(
        vault.access_key(rival, a.clone()).await.unwrap().is_none(),
        "a key belongs to one owner's connection"
    );
    vault
        .put_access_key(rival, a.clone(), key("AKIARIVAL", "secret-rival"))
        .await
        .unwrap();
    let mine = vault.access_key(me, a.clone()).await.unwrap().unwrap();
    assert_eq!(mine.access_key_id, "AKIAA", "untouched by the other owner");
    vault.delete_access_key(rival, a.clone()).await.unwrap();
    assert!(vault.access_key(me, a.clone()).await.unwrap().is_some());

    vault
        .put_access_key(me, a.clone(), key("AKIAA2", "secret-a2"))
        .await
        .unwrap();
    let got = vault.access_key(me, a.clone()).await.unwrap().unwrap();
    assert_eq!(
        (
            got.access_key_id.as_str(),
            got.secret_access_key.expose_secret()
        ),
        ("AKIAA2", "secret-a2"),
        "put replaces"
    );

    vault.delete_access_key(me, a.clone()).await.unwrap();
    vault.delete_access_key(me, a.clone()).await.unwrap();
    assert!(vault.access_key(me, a).await.unwrap().is_none());
    assert_eq!(vault.accounts().await.unwrap(), vec![(me, b)]);
}
