//! Server configuration: `serve` flags, `RINGMASTER_*` environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults.

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `ringmaster serve`; each also reads its `RINGMASTER_*` variable.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "RINGMASTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the HTTP API, webhooks and WebSocket listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "RINGMASTER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Database URL [default: sqlite://data/ringmaster.db].
    #[arg(long, env = "RINGMASTER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Bearer token for the admin API [default in sandbox mode: printed at start].
    #[arg(long, env = "RINGMASTER_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Telnyx API base URL [default: https://api.telnyx.com].
    #[arg(long, env = "RINGMASTER_TELNYX_API_URL")]
    pub telnyx_api_url: Option<String>,
    /// Telnyx API key; without one the built-in emulator runs (sandbox mode).
    #[arg(long, env = "RINGMASTER_TELNYX_API_KEY")]
    pub telnyx_api_key: Option<String>,
    /// Telnyx webhook public key (base64 Ed25519).
    #[arg(long, env = "RINGMASTER_TELNYX_PUBLIC_KEY")]
    pub telnyx_public_key: Option<String>,
    /// Telnyx Call Control connection id used for dials.
    #[arg(long, env = "RINGMASTER_TELNYX_CONNECTION_ID")]
    pub telnyx_connection_id: Option<String>,
    /// Seconds devices ring before the call goes to voicemail or is missed, 5..=600 [default: 30].
    #[arg(long, env = "RINGMASTER_RING_TIMEOUT_SECS")]
    pub ring_timeout_secs: Option<u32>,
    /// Pusher-protocol app id [default: ringmaster].
    #[arg(long, env = "RINGMASTER_PUSHER_APP_ID")]
    pub pusher_app_id: Option<String>,
    /// Pusher-protocol app key [default: ringmaster-key].
    #[arg(long, env = "RINGMASTER_PUSHER_KEY")]
    pub pusher_key: Option<String>,
    /// Pusher-protocol app secret [default in sandbox mode: printed at start].
    #[arg(long, env = "RINGMASTER_PUSHER_SECRET")]
    pub pusher_secret: Option<String>,
}

/// The same settings as read from the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    admin_token: Option<String>,
    telnyx_api_url: Option<String>,
    telnyx_api_key: Option<String>,
    telnyx_public_key: Option<String>,
    telnyx_connection_id: Option<String>,
    ring_timeout_secs: Option<u32>,
    pusher_app_id: Option<String>,
    pusher_key: Option<String>,
    pusher_secret: Option<String>,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Admin bearer token.
    pub admin_token: String,
    /// Telnyx settings; `None` means sandbox mode with the built-in emulator.
    pub telnyx: Option<TelnyxConfig>,
    /// Ring timeout in seconds.
    pub ring_timeout_secs: u32,
    /// Pusher-protocol app credentials.
    pub pusher: PusherConfig,
}

/// Real Telnyx account settings.
#[derive(Debug, Clone)]
pub struct TelnyxConfig {
    /// API base URL.
    pub api_url: String,
    /// API key.
    pub api_key: String,
    /// Webhook public key, base64.
    pub public_key: String,
    /// Call Control connection id.
    pub connection_id: String,
}

/// Pusher-protocol app credentials.
#[derive(Debug, Clone)]
pub struct PusherConfig {
    /// App id.
    pub app_id: String,
    /// App key.
    pub key: String,
    /// App secret.
    pub secret: String,
}

/// The default database when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/ringmaster.db";

impl Config {
    /// Resolves flags/env over the TOML file over defaults; `random_secret` fills secrets that
    /// sandbox mode may invent.
    pub fn resolve(args: ServeArgs, random_secret: impl Fn() -> String) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let ring_timeout_secs = args
            .ring_timeout_secs
            .or(file.ring_timeout_secs)
            .unwrap_or(30);
        // Telnyx accepts dial timeouts of 5..=600 s, and sessions use the same bounds.
        anyhow::ensure!(
            (5..=600).contains(&ring_timeout_secs),
            "ring timeout must be between 5 and 600 seconds, got {ring_timeout_secs}"
        );
        let api_key = args.telnyx_api_key.or(file.telnyx_api_key);
        let telnyx = match api_key {
            Some(api_key) if !api_key.is_empty() => Some(TelnyxConfig {
                api_url: args
                    .telnyx_api_url
                    .or(file.telnyx_api_url)
                    .unwrap_or_else(|| "https://api.telnyx.com".into()),
                api_key,
                public_key: args
                    .telnyx_public_key
                    .or(file.telnyx_public_key)
                    .context("RINGMASTER_TELNYX_PUBLIC_KEY is required with a Telnyx API key")?,
                connection_id: args
                    .telnyx_connection_id
                    .or(file.telnyx_connection_id)
                    .context("RINGMASTER_TELNYX_CONNECTION_ID is required with a Telnyx API key")?,
            }),
            _ => None,
        };
        if telnyx.is_some() {
            anyhow::ensure!(
                args.admin_token.is_some() || file.admin_token.is_some(),
                "RINGMASTER_ADMIN_TOKEN is required outside sandbox mode"
            );
        }
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default")),
            database_url: args
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            admin_token: args
                .admin_token
                .or(file.admin_token)
                .unwrap_or_else(&random_secret),
            telnyx,
            ring_timeout_secs,
            pusher: PusherConfig {
                app_id: args
                    .pusher_app_id
                    .or(file.pusher_app_id)
                    .unwrap_or_else(|| "ringmaster".into()),
                key: args
                    .pusher_key
                    .or(file.pusher_key)
                    .unwrap_or_else(|| "ringmaster-key".into()),
                secret: args
                    .pusher_secret
                    .or(file.pusher_secret)
                    .unwrap_or_else(&random_secret),
            },
        })
    }
}
