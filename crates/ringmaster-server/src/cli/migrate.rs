//! `ringmaster migrate`: applies pending schema migrations and says which (idempotent).

use anyhow::Context as _;
use clap::Args;
use ringmaster_server::config::DEFAULT_DATABASE_URL;

/// Options of `ringmaster migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Database URL (postgres://… or sqlite:…) [default: sqlite://data/ringmaster.db].
    #[arg(long, env = "RINGMASTER_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Applies the pending migrations and prints one line per migration applied.
pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let url = args
        .database_url
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let applied = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(ringmaster_store::migrate(&url))
        .context("migrating the database")?;
    for m in &applied {
        println!("applied {:04} {}", m.version, m.description);
    }
    if applied.is_empty() {
        println!("schema is current: nothing to apply");
    } else {
        println!("{} migration(s) applied", applied.len());
    }
    Ok(())
}
