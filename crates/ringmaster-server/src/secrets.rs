//! Secrets `ringmaster serve` invents when they are not configured (the sandbox admin token,
//! the Pusher app secret and the device-token signing secret). They are generated once and
//! kept in `secrets.toml` next to the SQLite database (mode 0600), so a restart on the same
//! database keeps device tokens, the admin token and WebSocket credentials valid. A database
//! without a directory of its own (`sqlite::memory:`, PostgreSQL) keeps them in memory only.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A secret value (token, key, password) that never shows in `Debug` output or logs: it
/// prints as `***`. Read it with [`Secret::expose`] where it is really needed.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its length in bytes (for strength checks).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl PartialEq<&str> for Secret {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Name of the secrets file beside the database.
pub const SECRETS_FILE: &str = "secrets.toml";
/// Largest secrets file read (it holds three short strings).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Secrets available for whatever the configuration leaves unset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedSecrets {
    /// Admin API bearer token.
    pub admin_token: String,
    /// Pusher-protocol app secret.
    pub pusher_secret: String,
    /// Device-token signing secret.
    pub token_secret: String,
}

/// Where generated secrets are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretsHome {
    /// In this file; they survive restarts.
    File(PathBuf),
    /// Only in this process; a restart invents new ones.
    Memory,
}

impl std::fmt::Display for SecretsHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretsHome::File(path) => write!(f, "{}", path.display()),
            SecretsHome::Memory => f.write_str("memory only (lost on restart)"),
        }
    }
}

/// Generated secrets and where they live.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The secrets.
    pub secrets: GeneratedSecrets,
    /// Where they are kept.
    pub home: SecretsHome,
}

impl Generated {
    /// Fresh secrets kept in memory only.
    pub fn in_memory(mut random: impl FnMut() -> String) -> Self {
        Self {
            secrets: GeneratedSecrets {
                admin_token: random(),
                pusher_secret: random(),
                token_secret: random(),
            },
            home: SecretsHome::Memory,
        }
    }
}

/// Where secrets for `database_url` belong: beside an SQLite database file, otherwise memory.
pub fn home_for(database_url: &str) -> SecretsHome {
    let Some(rest) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    else {
        return SecretsHome::Memory;
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") || query.contains("mode=memory") {
        return SecretsHome::Memory;
    }
    let dir = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    SecretsHome::File(dir.join(SECRETS_FILE))
}

/// The secrets for `database_url`: read from its secrets file, or generated with `random`
/// (and written there, 0600, when the database has a directory).
pub fn load_or_create(
    database_url: &str,
    random: impl FnMut() -> String,
) -> anyhow::Result<Generated> {
    match home_for(database_url) {
        SecretsHome::Memory => Ok(Generated::in_memory(random)),
        SecretsHome::File(path) => {
            let secrets = load_or_create_file(&path, random)?;
            Ok(Generated {
                secrets,
                home: SecretsHome::File(path),
            })
        }
    }
}

fn load_or_create_file(
    path: &Path,
    random: impl FnMut() -> String,
) -> anyhow::Result<GeneratedSecrets> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            anyhow::ensure!(
                meta.is_file() && meta.len() <= MAX_FILE_BYTES,
                "{} is not a secrets file",
                path.display()
            );
            warn_if_readable_by_others(path, &meta);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let secrets: GeneratedSecrets = toml::from_str(&text)
                .with_context(|| format!("parsing {} (delete it to start afresh; device tokens issued so far stop working)", path.display()))?;
            anyhow::ensure!(
                [
                    &secrets.admin_token,
                    &secrets.pusher_secret,
                    &secrets.token_secret
                ]
                .iter()
                .all(|s| !s.trim().is_empty()),
                "{} has an empty secret",
                path.display()
            );
            Ok(secrets)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secrets = Generated::in_memory(random).secrets;
            write_new(path, &secrets)?;
            Ok(secrets)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a new secrets file; fails rather than overwrite one that appeared meanwhile.
fn write_new(path: &Path, secrets: &GeneratedSecrets) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = format!(
        "# Generated by `ringmaster serve`; reused on every start with this database.\n\
         # Keep it private: it signs device tokens and holds the admin token.\n{}",
        toml::to_string(secrets).context("encoding secrets")?
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "secrets file is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &std::fs::Metadata) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("secret-{n}")
        }
    }

    #[test]
    fn secrets_live_beside_an_sqlite_file_and_nowhere_else() {
        assert_eq!(
            home_for("sqlite://data/ringmaster.db"),
            SecretsHome::File("data/secrets.toml".into())
        );
        assert_eq!(
            home_for("sqlite:///var/lib/rm/rm.db?mode=rwc"),
            SecretsHome::File("/var/lib/rm/secrets.toml".into())
        );
        assert_eq!(
            home_for("sqlite:rm.db"),
            SecretsHome::File("./secrets.toml".into())
        );
        assert_eq!(home_for("sqlite::memory:"), SecretsHome::Memory);
        assert_eq!(home_for("sqlite://:memory:"), SecretsHome::Memory);
        assert_eq!(home_for("sqlite://x.db?mode=memory"), SecretsHome::Memory);
        assert_eq!(home_for("postgres://db/ringmaster"), SecretsHome::Memory);
    }

    #[test]
    fn secrets_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/rm.db", dir.path().display());
        let first = load_or_create(&url, counter()).unwrap();
        let path = dir.path().join("sub").join(SECRETS_FILE);
        assert_eq!(first.home, SecretsHome::File(path.clone()));
        assert_eq!(first.secrets.token_secret, "secret-3");
        let again = load_or_create(&url, || "other".to_owned()).unwrap();
        assert_eq!(again.secrets, first.secrets);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_secrets_file_is_an_error_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRETS_FILE);
        std::fs::write(&path, "admin_token = \"a\"\n").unwrap();
        let url = format!("sqlite://{}/rm.db", dir.path().display());
        assert!(load_or_create(&url, counter()).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "admin_token = \"a\"\n"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::from("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2-hunter2-hunter2");
    }

    #[test]
    fn memory_databases_keep_secrets_in_memory() {
        let g = load_or_create("sqlite::memory:", counter()).unwrap();
        assert_eq!(g.home, SecretsHome::Memory);
        assert_eq!(g.secrets.admin_token, "secret-1");
    }
}
