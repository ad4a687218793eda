//! Server configuration: `serve` flags, `RINGMASTER_*` environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults.

use crate::dial_limit::DEFAULT_DIALS_PER_SEC;
use crate::limits::{LimitArgs, Limits};
use crate::secrets::{Generated, Secret, SecretsHome};
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Days call quality analytics are kept when the configuration does not say.
pub const DEFAULT_QUALITY_RETENTION_DAYS: u32 = 90;

/// Flags of `ringmaster serve`; each also reads its `RINGMASTER_*` variable.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "RINGMASTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the HTTP API, webhooks and WebSocket listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "RINGMASTER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve `/metrics` on this address instead of the main listener.
    #[arg(long, env = "RINGMASTER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Disable an outbound webhook endpoint after it has failed for this many seconds
    /// [default: 86400].
    #[arg(long, env = "RINGMASTER_WEBHOOK_DISABLE_AFTER_SECS")]
    pub webhook_disable_after_secs: Option<u64>,
    /// Database URL [default: sqlite://data/ringmaster.db].
    #[arg(long, env = "RINGMASTER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Bearer token for the admin API [default in sandbox mode: generated once, kept in
    /// secrets.toml beside the database].
    #[arg(long, env = "RINGMASTER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Secret device tokens are signed with [default: generated once, kept in secrets.toml
    /// beside the database].
    #[arg(long, env = "RINGMASTER_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,
    /// Telnyx API base URL [default: https://api.telnyx.com].
    #[arg(long, env = "RINGMASTER_TELNYX_API_URL")]
    pub telnyx_api_url: Option<String>,
    /// Telnyx API key; without one the built-in emulator runs (sandbox mode).
    #[arg(long, env = "RINGMASTER_TELNYX_API_KEY", hide_env_values = true)]
    pub telnyx_api_key: Option<Secret>,
    /// Telnyx webhook public key (base64 Ed25519).
    #[arg(long, env = "RINGMASTER_TELNYX_PUBLIC_KEY")]
    pub telnyx_public_key: Option<String>,
    /// Telnyx Call Control connection id used for dials.
    #[arg(long, env = "RINGMASTER_TELNYX_CONNECTION_ID")]
    pub telnyx_connection_id: Option<String>,
    /// Dials per second allowed on the Telnyx account, over a 5 s window; more are queued
    /// [default: 30].
    #[arg(long, env = "RINGMASTER_TELNYX_DIALS_PER_SEC")]
    pub telnyx_dials_per_sec: Option<u32>,
    /// Seconds devices ring before the call goes to voicemail or is missed, 5..=600 [default: 30].
    #[arg(long, env = "RINGMASTER_RING_TIMEOUT_SECS")]
    pub ring_timeout_secs: Option<u32>,
    /// Days call history (records, legs, timeline) is kept; 0 keeps it forever [default: 0].
    #[arg(long, env = "RINGMASTER_HISTORY_RETENTION_DAYS")]
    pub history_retention_days: Option<u32>,
    /// Days call quality analytics are kept, 1-3650 [default: 90].
    #[arg(long, env = "RINGMASTER_QUALITY_RETENTION_DAYS")]
    pub quality_retention_days: Option<u32>,
    /// Pusher-protocol app id [default: ringmaster].
    #[arg(long, env = "RINGMASTER_PUSHER_APP_ID")]
    pub pusher_app_id: Option<String>,
    /// Pusher-protocol app key [default: ringmaster-key].
    #[arg(long, env = "RINGMASTER_PUSHER_KEY")]
    pub pusher_key: Option<String>,
    /// Pusher-protocol app secret [default: generated once, kept in secrets.toml beside the
    /// database].
    #[arg(long, env = "RINGMASTER_PUSHER_SECRET", hide_env_values = true)]
    pub pusher_secret: Option<Secret>,
    /// Google service-account JSON key file; enables FCM push for Android devices.
    #[arg(long, env = "RINGMASTER_FCM_SERVICE_ACCOUNT")]
    pub fcm_service_account: Option<PathBuf>,
    /// FCM API base URL [default: https://fcm.googleapis.com].
    #[arg(long, env = "RINGMASTER_FCM_BASE_URL")]
    pub fcm_base_url: Option<String>,
    /// APNs signing key file (.p8); with the key id, team id and bundle id it enables iOS push.
    #[arg(long, env = "RINGMASTER_APNS_KEY_FILE")]
    pub apns_key_file: Option<PathBuf>,
    /// Key id of the APNs signing key (10 characters).
    #[arg(long, env = "RINGMASTER_APNS_KEY_ID")]
    pub apns_key_id: Option<String>,
    /// Apple developer team id.
    #[arg(long, env = "RINGMASTER_APNS_TEAM_ID")]
    pub apns_team_id: Option<String>,
    /// The iOS app's bundle id (VoIP pushes go to `<bundle id>.voip`).
    #[arg(long, env = "RINGMASTER_APNS_BUNDLE_ID")]
    pub apns_bundle_id: Option<String>,
    /// APNs base URL [default: production, or the sandbox with --apns-sandbox].
    #[arg(long, env = "RINGMASTER_APNS_BASE_URL")]
    pub apns_base_url: Option<String>,
    /// Use Apple's development (sandbox) APNs endpoint.
    #[arg(long, env = "RINGMASTER_APNS_SANDBOX", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub apns_sandbox: Option<bool>,
    /// NATS server URL(s), comma separated, e.g. nats://127.0.0.1:4222; with it every
    /// realtime event reaches the WebSocket clients of every node, and presence channels list
    /// the members of every node.
    #[arg(long, env = "RINGMASTER_NATS_URL")]
    pub nats_url: Option<String>,
    /// This node's name in logs and `/readyz` [default: hostname-pid].
    #[arg(long, env = "RINGMASTER_NODE_ID")]
    pub node_id: Option<String>,
    /// Limits, timeouts and durability (flags and environment only).
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The same settings as read from the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    webhook_disable_after_secs: Option<u64>,
    database_url: Option<String>,
    admin_token: Option<Secret>,
    token_secret: Option<Secret>,
    telnyx_api_url: Option<String>,
    telnyx_api_key: Option<Secret>,
    telnyx_public_key: Option<String>,
    telnyx_connection_id: Option<String>,
    telnyx_dials_per_sec: Option<u32>,
    ring_timeout_secs: Option<u32>,
    history_retention_days: Option<u32>,
    quality_retention_days: Option<u32>,
    pusher_app_id: Option<String>,
    pusher_key: Option<String>,
    pusher_secret: Option<Secret>,
    fcm_service_account: Option<PathBuf>,
    fcm_base_url: Option<String>,
    apns_key_file: Option<PathBuf>,
    apns_key_id: Option<String>,
    apns_team_id: Option<String>,
    apns_bundle_id: Option<String>,
    apns_base_url: Option<String>,
    apns_sandbox: Option<bool>,
    nats_url: Option<String>,
    node_id: Option<String>,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Separate listen address of `/metrics`; `None` serves it on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds an outbound webhook endpoint may fail before it is disabled.
    pub webhook_disable_after_secs: Option<u64>,
    /// Database URL.
    pub database_url: String,
    /// Admin bearer token.
    pub admin_token: Secret,
    /// Device-token signing secret.
    pub token_secret: Secret,
    /// Where secrets this configuration leaves unset are kept; `None` when all are set.
    pub generated_secrets: Option<SecretsHome>,
    /// Dials per second allowed on the Telnyx account.
    pub dials_per_sec: u32,
    /// Telnyx settings; `None` means sandbox mode with the built-in emulator.
    pub telnyx: Option<TelnyxConfig>,
    /// Ring timeout in seconds.
    pub ring_timeout_secs: u32,
    /// Days call history is kept; 0 keeps it forever.
    pub history_retention_days: u32,
    /// Days call quality analytics are kept.
    pub quality_retention_days: u32,
    /// Pusher-protocol app credentials.
    pub pusher: PusherConfig,
    /// FCM push; `None` leaves Android push off.
    pub fcm: Option<FcmSettings>,
    /// APNs push; `None` leaves iOS push off.
    pub apns: Option<ApnsSettings>,
    /// NATS URL linking the nodes' WebSocket hubs; `None` keeps events on this node.
    pub nats_url: Option<String>,
    /// This node's name in logs and `/readyz`.
    pub node_id: String,
    /// Limits, timeouts and durability.
    pub limits: Limits,
}

/// FCM credentials and endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmSettings {
    /// Service-account JSON key file.
    pub service_account_file: PathBuf,
    /// API base URL; `None` is Google's.
    pub base_url: Option<String>,
}

/// APNs credentials and endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsSettings {
    /// The `.p8` signing key file.
    pub key_file: PathBuf,
    /// Key id of the signing key.
    pub key_id: String,
    /// Apple developer team id.
    pub team_id: String,
    /// The app's bundle id.
    pub bundle_id: String,
    /// API base URL (production, sandbox or a stand-in).
    pub base_url: String,
}

/// Real Telnyx account settings.
#[derive(Debug, Clone)]
pub struct TelnyxConfig {
    /// API base URL.
    pub api_url: String,
    /// API key.
    pub api_key: Secret,
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
    pub secret: Secret,
}

/// Shortest admin token accepted outside sandbox mode.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;

/// The default database when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/ringmaster.db";

impl Config {
    /// Resolves flags/env over the TOML file over defaults. Secrets left unset come from
    /// `generated`, called (once, with the database URL) only if one is missing; `ringmaster
    /// serve` passes [`crate::secrets::load_or_create`].
    pub fn resolve(
        args: ServeArgs,
        generated: impl FnOnce(&str) -> anyhow::Result<Generated>,
    ) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let limits = args.limits.resolve()?;
        let ring_timeout_secs = args
            .ring_timeout_secs
            .or(file.ring_timeout_secs)
            .unwrap_or(30);
        // Telnyx accepts dial timeouts of 5..=600 s, and sessions use the same bounds.
        anyhow::ensure!(
            (5..=600).contains(&ring_timeout_secs),
            "ring timeout must be between 5 and 600 seconds, got {ring_timeout_secs}"
        );
        let quality_retention_days = args
            .quality_retention_days
            .or(file.quality_retention_days)
            .unwrap_or(DEFAULT_QUALITY_RETENTION_DAYS);
        anyhow::ensure!(
            (1..=3650).contains(&quality_retention_days),
            "quality retention must be between 1 and 3650 days, got {quality_retention_days}"
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
            let given = args.admin_token.as_ref().or(file.admin_token.as_ref());
            let Some(given) = given else {
                anyhow::bail!("RINGMASTER_ADMIN_TOKEN is required outside sandbox mode");
            };
            // Counted in characters: what a person generating one would count.
            let chars = given.expose().chars().count();
            anyhow::ensure!(
                chars >= MIN_ADMIN_TOKEN_CHARS,
                "RINGMASTER_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters outside sandbox mode (got {chars}); generate one with `openssl rand -hex 16`"
            );
        }
        let dials_per_sec = args
            .telnyx_dials_per_sec
            .or(file.telnyx_dials_per_sec)
            .unwrap_or(DEFAULT_DIALS_PER_SEC);
        anyhow::ensure!(
            (1..=10_000).contains(&dials_per_sec),
            "RINGMASTER_TELNYX_DIALS_PER_SEC must be between 1 and 10000, got {dials_per_sec}"
        );
        let database_url = args
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let set = |v: Option<Secret>| v.filter(|s| !s.is_empty());
        let admin_token = set(args.admin_token.or(file.admin_token));
        let token_secret = set(args.token_secret.or(file.token_secret));
        let pusher_secret = set(args.pusher_secret.or(file.pusher_secret));
        if is_postgres(&database_url) {
            // Secrets generated here would differ on every node and every restart: node B
            // would refuse node A's device tokens and Pusher channel auths.
            for (value, name) in [
                (&token_secret, "RINGMASTER_TOKEN_SECRET"),
                (&pusher_secret, "RINGMASTER_PUSHER_SECRET"),
                (&admin_token, "RINGMASTER_ADMIN_TOKEN"),
            ] {
                anyhow::ensure!(
                    value.is_some(),
                    "{name} is required with a PostgreSQL database (every node must share it)"
                );
            }
        }
        let (admin_token, token_secret, pusher_secret, generated_secrets) =
            match (admin_token, token_secret, pusher_secret) {
                (Some(a), Some(t), Some(p)) => (a, t, p, None),
                (a, t, p) => {
                    let g = generated(&database_url)?;
                    (
                        a.unwrap_or(g.secrets.admin_token.into()),
                        t.unwrap_or(g.secrets.token_secret.into()),
                        p.unwrap_or(g.secrets.pusher_secret.into()),
                        Some(g.home),
                    )
                }
            };
        let not_empty = |p: &PathBuf| !p.as_os_str().is_empty();
        let fcm = match args
            .fcm_service_account
            .or(file.fcm_service_account)
            .filter(not_empty)
        {
            Some(service_account_file) => Some(FcmSettings {
                service_account_file,
                base_url: args.fcm_base_url.or(file.fcm_base_url),
            }),
            None => {
                anyhow::ensure!(
                    args.fcm_base_url.is_none() && file.fcm_base_url.is_none(),
                    "RINGMASTER_FCM_BASE_URL needs RINGMASTER_FCM_SERVICE_ACCOUNT"
                );
                None
            }
        };
        let apns = apns_settings(
            args.apns_key_file.or(file.apns_key_file).filter(not_empty),
            args.apns_key_id.or(file.apns_key_id),
            args.apns_team_id.or(file.apns_team_id),
            args.apns_bundle_id.or(file.apns_bundle_id),
            args.apns_base_url.or(file.apns_base_url),
            args.apns_sandbox.or(file.apns_sandbox).unwrap_or(false),
        )?;
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default")),
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            webhook_disable_after_secs: args
                .webhook_disable_after_secs
                .or(file.webhook_disable_after_secs),
            database_url,
            admin_token,
            token_secret,
            generated_secrets,
            dials_per_sec,
            telnyx,
            ring_timeout_secs,
            history_retention_days: args
                .history_retention_days
                .or(file.history_retention_days)
                .unwrap_or(0),
            quality_retention_days,
            pusher: PusherConfig {
                app_id: args
                    .pusher_app_id
                    .or(file.pusher_app_id)
                    .unwrap_or_else(|| "ringmaster".into()),
                key: args
                    .pusher_key
                    .or(file.pusher_key)
                    .unwrap_or_else(|| "ringmaster-key".into()),
                secret: pusher_secret,
            },
            fcm,
            apns,
            nats_url: args
                .nats_url
                .or(file.nats_url)
                .filter(|u| !u.trim().is_empty()),
            node_id: args
                .node_id
                .or(file.node_id)
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(crate::app::default_node_id),
            limits,
        })
    }
}

/// Whether `url` names a PostgreSQL database (cluster mode: nodes share it).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// APNs is on when its key file is given; then the key id, team id and bundle id must be too.
fn apns_settings(
    key_file: Option<PathBuf>,
    key_id: Option<String>,
    team_id: Option<String>,
    bundle_id: Option<String>,
    base_url: Option<String>,
    sandbox: bool,
) -> anyhow::Result<Option<ApnsSettings>> {
    let Some(key_file) = key_file else {
        anyhow::ensure!(
            key_id.is_none() && team_id.is_none() && bundle_id.is_none() && base_url.is_none(),
            "APNs settings need RINGMASTER_APNS_KEY_FILE (the .p8 signing key)"
        );
        return Ok(None);
    };
    let required = |value: Option<String>, name: &str| {
        value
            .filter(|v| !v.trim().is_empty())
            .with_context(|| format!("{name} is required with RINGMASTER_APNS_KEY_FILE"))
    };
    let default_url = if sandbox {
        ringmaster_push::apns::APNS_SANDBOX_URL
    } else {
        ringmaster_push::apns::APNS_PRODUCTION_URL
    };
    Ok(Some(ApnsSettings {
        key_file,
        key_id: required(key_id, "RINGMASTER_APNS_KEY_ID")?,
        team_id: required(team_id, "RINGMASTER_APNS_TEAM_ID")?,
        bundle_id: required(bundle_id, "RINGMASTER_APNS_BUNDLE_ID")?,
        base_url: base_url.unwrap_or_else(|| default_url.to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        Config::resolve(args, |_| Ok(Generated::in_memory(|| "random".to_owned())))
    }

    #[test]
    fn configured_secrets_need_nothing_generated() {
        let args = ServeArgs {
            admin_token: Some("admin".into()),
            token_secret: Some("tokens".into()),
            pusher_secret: Some("pusher".into()),
            ..ServeArgs::default()
        };
        let c = Config::resolve(args, |_| panic!("nothing to generate")).unwrap();
        assert_eq!(
            (c.admin_token.expose(), c.token_secret.expose()),
            ("admin", "tokens")
        );
        assert_eq!(c.generated_secrets, None);
    }

    #[test]
    fn a_missing_token_secret_is_generated_even_with_an_admin_token() {
        let args = ServeArgs {
            admin_token: Some("admin".into()),
            database_url: Some("sqlite://db/x.db".into()),
            ..ServeArgs::default()
        };
        let c = Config::resolve(args, |url| {
            assert_eq!(url, "sqlite://db/x.db");
            Ok(Generated::in_memory(|| "made".to_owned()))
        })
        .unwrap();
        assert_eq!(c.admin_token, "admin");
        assert_eq!(c.token_secret, "made");
        assert_ne!(
            c.token_secret, c.admin_token,
            "device tokens are not keyed by the admin token"
        );
        assert_eq!(c.generated_secrets, Some(SecretsHome::Memory));
    }

    #[test]
    fn the_dial_rate_comes_from_flags_or_toml_and_is_bounded() {
        assert_eq!(resolve(ServeArgs::default()).unwrap().dials_per_sec, 30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringmaster.toml");
        std::fs::write(&path, "telnyx_dials_per_sec = 12\ntoken_secret = \"t\"\n").unwrap();
        let c = resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!((c.dials_per_sec, c.token_secret.expose()), (12, "t"));
        let zero = ServeArgs {
            telnyx_dials_per_sec: Some(0),
            ..ServeArgs::default()
        };
        assert!(resolve(zero).is_err());
    }

    #[test]
    fn postgres_needs_every_shared_secret_and_names_the_missing_one() {
        let full = ServeArgs {
            database_url: Some("postgres://db/rm".into()),
            admin_token: Some("admin".into()),
            token_secret: Some("tokens".into()),
            pusher_secret: Some("pusher".into()),
            ..ServeArgs::default()
        };
        let c = Config::resolve(full.clone(), |_| panic!("nothing generated")).unwrap();
        assert_eq!(c.generated_secrets, None);
        for (missing, name) in [
            (
                ServeArgs {
                    token_secret: None,
                    ..full.clone()
                },
                "RINGMASTER_TOKEN_SECRET",
            ),
            (
                ServeArgs {
                    pusher_secret: Some("".into()),
                    ..full.clone()
                },
                "RINGMASTER_PUSHER_SECRET",
            ),
            (
                ServeArgs {
                    admin_token: None,
                    ..full.clone()
                },
                "RINGMASTER_ADMIN_TOKEN",
            ),
        ] {
            let err = resolve(missing).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn the_node_id_defaults_to_host_and_pid_and_nats_is_optional() {
        let c = resolve(ServeArgs::default()).unwrap();
        assert!(
            c.node_id.ends_with(&format!("-{}", std::process::id())),
            "{}",
            c.node_id
        );
        assert_eq!(c.nats_url, None);
        let c = resolve(ServeArgs {
            node_id: Some("node-a".into()),
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.node_id, "node-a");
        assert_eq!(c.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
    }

    #[test]
    fn push_is_off_without_credentials() {
        let c = resolve(ServeArgs::default()).unwrap();
        assert_eq!((c.fcm, c.apns), (None, None));
        assert_eq!(c.pusher.key, "ringmaster-key");
        assert_eq!(c.pusher.secret, "random");
    }

    #[test]
    fn apns_needs_every_part_and_picks_its_endpoint() {
        let mut args = ServeArgs {
            apns_key_file: Some("key.p8".into()),
            apns_key_id: Some("KEYID12345".into()),
            apns_team_id: Some("TEAM123456".into()),
            ..ServeArgs::default()
        };
        let err = resolve(args.clone()).unwrap_err().to_string();
        assert!(err.contains("RINGMASTER_APNS_BUNDLE_ID"), "{err}");
        args.apns_bundle_id = Some("com.example.app".into());
        let apns = resolve(args.clone()).unwrap().apns.unwrap();
        assert_eq!(apns.base_url, ringmaster_push::apns::APNS_PRODUCTION_URL);
        args.apns_sandbox = Some(true);
        let apns = resolve(args.clone()).unwrap().apns.unwrap();
        assert_eq!(apns.base_url, ringmaster_push::apns::APNS_SANDBOX_URL);
        args.apns_base_url = Some("http://127.0.0.1:9".into());
        assert_eq!(
            resolve(args).unwrap().apns.unwrap().base_url,
            "http://127.0.0.1:9"
        );
        let stray = ServeArgs {
            apns_team_id: Some("TEAM123456".into()),
            ..ServeArgs::default()
        };
        assert!(resolve(stray).is_err());
    }

    #[test]
    fn fcm_settings_come_from_the_toml_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringmaster.toml");
        std::fs::write(
            &path,
            "fcm_service_account = \"sa.json\"\nfcm_base_url = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        let c = resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            c.fcm,
            Some(FcmSettings {
                service_account_file: "sa.json".into(),
                base_url: Some("http://127.0.0.1:9".into()),
            })
        );
        let stray = ServeArgs {
            fcm_base_url: Some("http://127.0.0.1:9".into()),
            ..ServeArgs::default()
        };
        assert!(resolve(stray).is_err());
    }
}
