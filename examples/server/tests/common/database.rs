//! The PostgreSQL server `scripts/test` starts, for the tests that need one.

/// A fresh database named `{prefix}_{random}` on the test server: its URL.
pub(crate) async fn fresh_database(prefix: &str) -> String {
    let server = std::env::var("SPRINTERS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL")
    });
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("{prefix}_{:016x}", fastrand::u64(..));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{}/{name}", server.rsplit_once('/').unwrap().0)
}

/// The test server's CA: its certificate is for 127.0.0.1, verified.
pub(crate) fn ca_file() -> String {
    std::env::var("SPRINTERS_TEST_POSTGRES_CA").unwrap_or_else(|_| {
        panic!("SPRINTERS_TEST_POSTGRES_CA is not set: run scripts/test, which starts PostgreSQL")
    })
}
