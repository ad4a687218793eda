//! `serve` settings for limits, timeouts and durability: flags and `RINGMASTER_*` variables
//! (not the TOML file), each with a documented default.

use crate::http_server::HttpLimits;
use crate::rate_limit::{ClassLimits, Rate, RateLimits};
use clap::Args;
use ringmaster_store::SqliteSync;
use std::time::Duration;

/// Limit flags of `ringmaster serve`, flattened into its arguments.
#[derive(Args, Debug, Default, Clone)]
pub struct LimitArgs {
    /// SQLite durability: `full` (every acknowledged commit survives a power loss) or
    /// `normal` (faster; survives a process crash only) [default: full].
    #[arg(long, env = "RINGMASTER_SQLITE_SYNC")]
    pub sqlite_sync: Option<String>,
    /// Seconds a connection may take to send a request's headers [default: 10].
    #[arg(long, env = "RINGMASTER_HTTP_HEADER_TIMEOUT_SECS")]
    pub http_header_timeout_secs: Option<u64>,
    /// Seconds a request may take to be answered (408 after) [default: 30].
    #[arg(long, env = "RINGMASTER_HTTP_REQUEST_TIMEOUT_SECS")]
    pub http_request_timeout_secs: Option<u64>,
    /// Seconds a request body may take to arrive [default: 15].
    #[arg(long, env = "RINGMASTER_HTTP_BODY_TIMEOUT_SECS")]
    pub http_body_timeout_secs: Option<u64>,
    /// HTTP connections served at once (WebSockets not counted) [default: 4096].
    #[arg(long, env = "RINGMASTER_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// WebSocket connections one client address may hold [default: 1000].
    #[arg(long, env = "RINGMASTER_WS_MAX_PER_IP")]
    pub ws_max_per_ip: Option<usize>,
    /// Seconds a WebSocket may stay connected without subscribing [default: 30].
    #[arg(long, env = "RINGMASTER_WS_SUBSCRIBE_TIMEOUT_SECS")]
    pub ws_subscribe_timeout_secs: Option<u64>,
    /// Lifetime of device tokens issued from now on, in seconds [default: no expiry].
    #[arg(long, env = "RINGMASTER_DEVICE_TOKEN_TTL_SECS")]
    pub device_token_ttl_secs: Option<u64>,
    /// Click-to-call per device per minute [default: 10].
    #[arg(long, env = "RINGMASTER_LIMIT_CALLS_PER_MIN")]
    pub limit_calls_per_min: Option<u32>,
    /// Click-to-call per user (all devices) per minute [default: 20].
    #[arg(long, env = "RINGMASTER_LIMIT_USER_CALLS_PER_MIN")]
    pub limit_user_calls_per_min: Option<u32>,
    /// Device reports per device per minute [default: 120].
    #[arg(long, env = "RINGMASTER_LIMIT_REPORTS_PER_MIN")]
    pub limit_reports_per_min: Option<u32>,
    /// Device reports per user per minute [default: 600].
    #[arg(long, env = "RINGMASTER_LIMIT_USER_REPORTS_PER_MIN")]
    pub limit_user_reports_per_min: Option<u32>,
    /// Quality-data posts per device per minute [default: 30].
    #[arg(long, env = "RINGMASTER_LIMIT_QUALITY_PER_MIN")]
    pub limit_quality_per_min: Option<u32>,
    /// Quality-data posts per user per minute [default: 120].
    #[arg(long, env = "RINGMASTER_LIMIT_USER_QUALITY_PER_MIN")]
    pub limit_user_quality_per_min: Option<u32>,
    /// Unfinished calls one user may have before click-to-call is refused [default: 5].
    #[arg(long, env = "RINGMASTER_MAX_UNFINISHED_CALLS")]
    pub max_unfinished_calls: Option<u32>,
    /// Timeline entries one call may hold before device reports are refused [default: 500].
    #[arg(long, env = "RINGMASTER_MAX_TIMELINE_ENTRIES")]
    pub max_timeline_entries: Option<u32>,
    /// Seconds a node's claim on an outbox row lasts; a dead node's rows go out this long
    /// after it claimed them, at least 20 [default: 30].
    #[arg(long, env = "RINGMASTER_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// Seconds without a heartbeat after which another node is taken for dead and its
    /// presence members removed; heartbeats go out every third of it (with NATS only)
    /// [default: 15].
    #[arg(long, env = "RINGMASTER_PRESENCE_TIMEOUT_SECS")]
    pub presence_timeout_secs: Option<u64>,
    /// Sessions this node remembers between inputs, so an input skips the store read, and
    /// whose inputs it runs one at a time; 0 turns both off [default: 4096].
    #[arg(long, env = "RINGMASTER_SESSION_CACHE")]
    pub session_cache: Option<usize>,
}

/// Resolved limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// SQLite durability.
    pub sqlite_sync: SqliteSync,
    /// HTTP listener limits.
    pub http: HttpLimits,
    /// WebSocket connections per client address.
    pub ws_max_per_ip: usize,
    /// Deadline to subscribe after connecting.
    pub ws_subscribe_timeout: Duration,
    /// Device token lifetime; `None` never expires.
    pub device_token_ttl: Option<Duration>,
    /// Device API limits.
    pub rates: RateLimits,
    /// How long a claimed outbox row stays this node's.
    pub lease: Duration,
    /// Silence after which another node's presence members are removed.
    pub presence_timeout: Duration,
    /// Sessions the engine remembers (0: no cache, no per-session turns).
    pub session_cache: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sqlite_sync: SqliteSync::default(),
            http: HttpLimits::default(),
            ws_max_per_ip: ringmaster_realtime::config::DEFAULT_MAX_CONNECTIONS_PER_IP,
            ws_subscribe_timeout: ringmaster_realtime::config::DEFAULT_SUBSCRIBE_TIMEOUT,
            device_token_ttl: None,
            rates: RateLimits::default(),
            lease: crate::dispatch::DEFAULT_LEASE,
            presence_timeout: ringmaster_realtime::DEFAULT_NODE_TIMEOUT,
            session_cache: crate::app::DEFAULT_SESSION_CACHE,
        }
    }
}

/// The most sessions `--session-cache` may keep (each is a decoded call, a few KiB).
const MAX_SESSION_CACHE: usize = 1_000_000;

/// The shortest outbox lease `serve` accepts.
const MIN_LEASE: Duration = Duration::from_secs(20);

fn secs(value: Option<u64>, default: Duration, name: &str) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(0) => anyhow::bail!("{name} must be at least 1 second"),
        Some(s) if s > 86_400 => anyhow::bail!("{name} must be at most 86400 seconds"),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

fn positive<T: PartialOrd + From<u8> + Copy>(
    value: Option<T>,
    default: T,
    name: &str,
) -> anyhow::Result<T> {
    let v = value.unwrap_or(default);
    anyhow::ensure!(v >= T::from(1), "{name} must be at least 1");
    Ok(v)
}

impl LimitArgs {
    /// The limits these flags give, over the defaults; out-of-range values are errors.
    pub fn resolve(&self) -> anyhow::Result<Limits> {
        let d = Limits::default();
        let sqlite_sync = match &self.sqlite_sync {
            Some(s) => s
                .parse()
                .map_err(|_| anyhow::anyhow!("RINGMASTER_SQLITE_SYNC must be full or normal"))?,
            None => d.sqlite_sync,
        };
        let http = HttpLimits {
            header_read_timeout: secs(
                self.http_header_timeout_secs,
                d.http.header_read_timeout,
                "RINGMASTER_HTTP_HEADER_TIMEOUT_SECS",
            )?,
            request_timeout: secs(
                self.http_request_timeout_secs,
                d.http.request_timeout,
                "RINGMASTER_HTTP_REQUEST_TIMEOUT_SECS",
            )?,
            body_read_timeout: secs(
                self.http_body_timeout_secs,
                d.http.body_read_timeout,
                "RINGMASTER_HTTP_BODY_TIMEOUT_SECS",
            )?,
            max_connections: positive(
                self.http_max_connections,
                d.http.max_connections,
                "RINGMASTER_HTTP_MAX_CONNECTIONS",
            )?,
        };
        let rate =
            |v: Option<u32>, default: Rate| Rate::per_minute(v.unwrap_or(default.per_minute));
        let r = d.rates;
        let rates = RateLimits {
            place_call: ClassLimits {
                device: rate(self.limit_calls_per_min, r.place_call.device),
                user: rate(self.limit_user_calls_per_min, r.place_call.user),
            },
            report: ClassLimits {
                device: rate(self.limit_reports_per_min, r.report.device),
                user: rate(self.limit_user_reports_per_min, r.report.user),
            },
            quality: ClassLimits {
                device: rate(self.limit_quality_per_min, r.quality.device),
                user: rate(self.limit_user_quality_per_min, r.quality.user),
            },
            max_unfinished_calls: positive(
                self.max_unfinished_calls,
                r.max_unfinished_calls,
                "RINGMASTER_MAX_UNFINISHED_CALLS",
            )?,
            max_timeline_entries: positive(
                self.max_timeline_entries,
                r.max_timeline_entries,
                "RINGMASTER_MAX_TIMELINE_ENTRIES",
            )?,
        };
        Ok(Limits {
            sqlite_sync,
            http,
            ws_max_per_ip: positive(
                self.ws_max_per_ip,
                d.ws_max_per_ip,
                "RINGMASTER_WS_MAX_PER_IP",
            )?,
            ws_subscribe_timeout: secs(
                self.ws_subscribe_timeout_secs,
                d.ws_subscribe_timeout,
                "RINGMASTER_WS_SUBSCRIBE_TIMEOUT_SECS",
            )?,
            device_token_ttl: self
                .device_token_ttl_secs
                .map(|s| {
                    anyhow::ensure!(
                        s >= 60,
                        "RINGMASTER_DEVICE_TOKEN_TTL_SECS must be at least 60"
                    );
                    Ok(Duration::from_secs(s))
                })
                .transpose()?,
            rates,
            lease: match secs(self.lease_secs, d.lease, "RINGMASTER_LEASE_SECS")? {
                // Shorter than one push attempt (two 10 s requests at worst) would let a
                // second node send what the first is still sending.
                lease if lease < MIN_LEASE => {
                    anyhow::bail!(
                        "RINGMASTER_LEASE_SECS must be at least {}",
                        MIN_LEASE.as_secs()
                    )
                }
                lease => lease,
            },
            presence_timeout: secs(
                self.presence_timeout_secs,
                d.presence_timeout,
                "RINGMASTER_PRESENCE_TIMEOUT_SECS",
            )?,
            session_cache: match self.session_cache {
                None => d.session_cache,
                Some(n) if n > MAX_SESSION_CACHE => {
                    anyhow::bail!("RINGMASTER_SESSION_CACHE must be at most {MAX_SESSION_CACHE}")
                }
                Some(n) => n,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_until_overridden_and_nonsense_is_refused() {
        assert_eq!(LimitArgs::default().resolve().unwrap(), Limits::default());
        let args = LimitArgs {
            sqlite_sync: Some("normal".into()),
            http_header_timeout_secs: Some(3),
            limit_calls_per_min: Some(2),
            device_token_ttl_secs: Some(3600),
            lease_secs: Some(45),
            presence_timeout_secs: Some(3),
            session_cache: Some(0),
            ..LimitArgs::default()
        };
        let l = args.resolve().unwrap();
        assert_eq!(l.sqlite_sync, SqliteSync::Normal);
        assert_eq!(l.http.header_read_timeout, Duration::from_secs(3));
        assert_eq!(l.rates.place_call.device, Rate::per_minute(2));
        assert_eq!(
            l.rates.place_call.user,
            RateLimits::default().place_call.user
        );
        assert_eq!(l.device_token_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(l.lease, Duration::from_secs(45));
        assert_eq!(l.presence_timeout, Duration::from_secs(3));
        assert_eq!(l.session_cache, 0);
        for bad in [
            LimitArgs {
                sqlite_sync: Some("off".into()),
                ..LimitArgs::default()
            },
            LimitArgs {
                http_request_timeout_secs: Some(0),
                ..LimitArgs::default()
            },
            LimitArgs {
                max_unfinished_calls: Some(0),
                ..LimitArgs::default()
            },
            LimitArgs {
                device_token_ttl_secs: Some(5),
                ..LimitArgs::default()
            },
            LimitArgs {
                lease_secs: Some(10),
                ..LimitArgs::default()
            },
            LimitArgs {
                presence_timeout_secs: Some(0),
                ..LimitArgs::default()
            },
            LimitArgs {
                session_cache: Some(MAX_SESSION_CACHE + 1),
                ..LimitArgs::default()
            },
        ] {
            assert!(bad.resolve().is_err(), "{bad:?}");
        }
    }
}
