//! Schemas of their own on a shared PostgreSQL server: tests and benchmarks each take one, so
//! runs side by side never see each other's rows.

use crate::error::StoreError;
use sqlx::{Connection, PgConnection};

/// Refuses a schema name that is not a plain lower-case identifier: it is spliced into SQL.
fn check(schema: &str) -> Result<(), StoreError> {
    let plain = schema
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain && schema.bytes().next().is_some_and(|b| !b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "schema",
            reason: format!("`{schema}` is not a lower-case identifier"),
        })
    }
}

/// The URL of `server` whose connections use `schema` (its `search_path`).
pub fn schema_url(server: &str, schema: &str) -> String {
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}options[search_path]={schema}")
}

/// Creates `schema` on the PostgreSQL server at `server`; returns [`schema_url`] for it.
pub async fn create_schema(server: &str, schema: &str) -> Result<String, StoreError> {
    check(schema)?;
    let mut conn = PgConnection::connect(server).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(schema_url(server, schema))
}

/// Drops `schema` and everything in it (nothing if it is gone).
pub async fn drop_schema(server: &str, schema: &str) -> Result<(), StoreError> {
    check(schema)?;
    let mut conn = PgConnection::connect(server).await?;
    // A connection left mid-transaction (a failed test, a node still running) must not hang
    // the drop for ever.
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_are_schemas() {
        assert!(check("rm_bench_42_2n").is_ok());
        for bad in ["", "1abc", "a;drop", "A", "a-b", "a b"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert_eq!(
            schema_url("postgres://h/db", "s"),
            "postgres://h/db?options[search_path]=s"
        );
        assert_eq!(
            schema_url("postgres://h/db?x=1", "s"),
            "postgres://h/db?x=1&options[search_path]=s"
        );
    }
}
