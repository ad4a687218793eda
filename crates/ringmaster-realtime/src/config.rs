//! Settings of the one Pusher app this server hosts.

use std::time::Duration;

/// Default for [`RealtimeConfig::max_connections_per_ip`]: generous enough for an office
/// behind one NAT address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1000;
/// Default for [`RealtimeConfig::subscribe_timeout`].
pub const DEFAULT_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the Pusher app and the limits every connection lives under.
#[derive(Clone)]
pub struct RealtimeConfig {
    /// Pusher `app_id`, the `{app_id}` of the HTTP publish API.
    pub app_id: String,
    /// Pusher app key: the `{key}` of `/app/{key}` and the prefix of every auth string.
    pub key: String,
    /// Shared secret for channel auth signatures and HTTP API request signatures.
    pub secret: String,
    /// Inbound silence after which the server pings; advertised to clients in whole seconds.
    pub activity_timeout: Duration,
    /// How long a pinged connection may stay silent before it is closed with 4201.
    pub pong_timeout: Duration,
    /// Largest WebSocket message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Largest event `data` accepted for publishing, in bytes (Pusher allows 10 KB).
    pub max_event_bytes: usize,
    /// Frames that may wait for one connection beyond what its kernel send buffer took; the
    /// next one marks it a slow consumer, closed with 4100.
    pub send_queue: usize,
    /// How long one frame may take to write before the connection is dropped.
    pub write_timeout: Duration,
    /// Channels one connection may be subscribed to at once.
    pub max_channels_per_connection: usize,
    /// Connections this node accepts before refusing new ones with 4100 (back off).
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are refused with 4100.
    pub max_connections_per_ip: usize,
    /// How long a new connection may go without a successful subscribe before it is closed
    /// with 4100 (an unsubscribed socket only costs the server).
    pub subscribe_timeout: Duration,
    /// Distinct users one presence channel may hold (Pusher's limit is 100).
    pub max_presence_members: usize,
    /// Whether `client-` events are relayed; off by default because call events come from the backend.
    pub client_events: bool,
    /// Allowed distance between `auth_timestamp` and the server clock for HTTP API requests.
    pub timestamp_window: Duration,
}

impl std::fmt::Debug for RealtimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything but the secret, which must never reach a log line.
        f.debug_struct("RealtimeConfig")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"***")
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("subscribe_timeout", &self.subscribe_timeout)
            .finish_non_exhaustive()
    }
}

impl RealtimeConfig {
    /// Settings with the given credentials and the defaults for every limit.
    pub fn new(
        app_id: impl Into<String>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            app_id: app_id.into(),
            key: key.into(),
            secret: secret.into(),
            activity_timeout: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            max_message_bytes: 10 * 1024,
            max_event_bytes: 10 * 1024,
            send_queue: 64,
            write_timeout: Duration::from_secs(10),
            max_channels_per_connection: 100,
            max_connections: 100_000,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            subscribe_timeout: DEFAULT_SUBSCRIBE_TIMEOUT,
            max_presence_members: 100,
            client_events: false,
            timestamp_window: Duration::from_secs(600),
        }
    }

    /// The `activity_timeout` sent in the handshake: whole seconds, at least 1, because
    /// pusher-js refuses a handshake without a positive value.
    pub fn advertised_activity_timeout(&self) -> u64 {
        let secs =
            self.activity_timeout.as_secs() + u64::from(self.activity_timeout.subsec_nanos() > 0);
        secs.max(1)
    }
}
