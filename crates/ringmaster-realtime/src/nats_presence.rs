//! The NATS driver of cluster-wide presence: publishes this node's presence messages on
//! `ringmaster.presence.<app_id>`, hands the other nodes' (validated) ones to the hub, and ticks
//! the hub's [`crate::PresenceTable`] every heartbeat. Everything it decides lives in the table.

use crate::channel::{ChannelKind, ChannelName};
use crate::config::RealtimeConfig;
use crate::hub::RealtimeHub;
use crate::nats_fanout::{subscribe_confirmed, NatsFanoutConfig, NatsFanoutError};
use crate::presence::{Entry, Envelope, PresenceMessage, PresenceSettings, SNAPSHOT_CHUNK};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long the server may take to confirm the presence subscription at start.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(5);
use tokio::task::JoinHandle;

/// Prefix of the subject an app's presence messages travel on: `ringmaster.presence.<app_id>`.
pub const SUBJECT_PREFIX: &str = "ringmaster.presence";
/// Largest presence message accepted: a snapshot part of [`SNAPSHOT_CHUNK`] members of at
/// most [`MAX_USER_INFO_BYTES`] each fits with room to spare, and it stays under NATS's
/// default 1 MB payload limit.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;
/// Longest user id accepted from another node (a whole `channel_data` is at most 1 KB).
pub const MAX_USER_ID_BYTES: usize = 1024;
/// Largest `user_info` accepted from another node, as JSON text: `channel_data` is at most
/// 1 KB, and re-encoding may lengthen it a little.
pub const MAX_USER_INFO_BYTES: usize = 2 * 1024;

/// Settings of a [`NatsPresence`].
#[derive(Clone, Debug)]
pub struct NatsPresenceConfig {
    /// The subject presence messages are published and received on.
    pub subject: String,
    /// Heartbeat, node timeout and member limit.
    pub settings: PresenceSettings,
}

impl NatsPresenceConfig {
    /// Settings for the app in `config`: subject `ringmaster.presence.<app_id>`, nodes silent
    /// for `node_timeout` taken for dead, a heartbeat every third of it.
    pub fn for_app(
        config: &RealtimeConfig,
        node_timeout: Duration,
    ) -> Result<Self, NatsFanoutError> {
        // The same app id rules as the event subject's.
        NatsFanoutConfig::for_app("", config)?;
        Ok(Self {
            subject: format!("{SUBJECT_PREFIX}.{}", config.app_id),
            settings: PresenceSettings::with_timeout(config.max_presence_members, node_timeout),
        })
    }
}

/// Why a presence message received from NATS was dropped.
#[derive(Debug, thiserror::Error)]
pub enum PresenceDecodeError {
    /// The message is bigger than [`MAX_MESSAGE_BYTES`].
    #[error("message is {0} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("malformed presence message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A field breaks the limits.
    #[error("invalid presence message: {0}")]
    Invalid(&'static str),
}

/// Serializes `message` as sent by `node`.
pub fn encode(node: u64, message: PresenceMessage) -> Vec<u8> {
    // Strings, integers and JSON values always serialize.
    serde_json::to_vec(&Envelope { node, message }).unwrap_or_default()
}

/// Checks a received message against the limits and the channel grammar.
pub fn decode(payload: &[u8]) -> Result<Envelope, PresenceDecodeError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(PresenceDecodeError::TooLarge(payload.len()));
    }
    let envelope: Envelope = serde_json::from_slice(payload)?;
    match &envelope.message {
        PresenceMessage::Join(entry) => check_entry(entry)?,
        PresenceMessage::Leave { channel, user_id } => {
            check_channel(channel)?;
            check_user(user_id)?;
        }
        PresenceMessage::Snapshot { members, .. } => {
            if members.len() > SNAPSHOT_CHUNK {
                return Err(PresenceDecodeError::Invalid("snapshot part too long"));
            }
            members.iter().try_for_each(check_entry)?;
        }
        PresenceMessage::Heartbeat { .. } | PresenceMessage::Sync { .. } => {}
        PresenceMessage::Goodbye => {}
    }
    Ok(envelope)
}

fn check_channel(channel: &str) -> Result<(), PresenceDecodeError> {
    match ChannelName::parse(channel) {
        Ok(name) if name.kind() == ChannelKind::Presence => Ok(()),
        _ => Err(PresenceDecodeError::Invalid("not a presence channel name")),
    }
}

fn check_user(user_id: &str) -> Result<(), PresenceDecodeError> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_BYTES {
        return Err(PresenceDecodeError::Invalid("user id empty or too long"));
    }
    Ok(())
}

fn check_entry(entry: &Entry) -> Result<(), PresenceDecodeError> {
    check_channel(&entry.channel)?;
    check_user(&entry.user_id)?;
    if entry.user_info.to_string().len() > MAX_USER_INFO_BYTES {
        return Err(PresenceDecodeError::Invalid("user_info too large"));
    }
    Ok(())
}

/// Shares one hub's presence with the other nodes through NATS. Dropping it stops sharing
/// without a goodbye (the other nodes time this one out); [`NatsPresence::goodbye`] tells
/// them at once.
pub struct NatsPresence {
    client: async_nats::Client,
    subject: String,
    node: u64,
    dropped: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl NatsPresence {
    /// Subscribes to the presence subject, attaches `hub` and starts the heartbeat. Must be
    /// called inside a Tokio runtime.
    pub async fn start(
        client: async_nats::Client,
        hub: &RealtimeHub,
        config: NatsPresenceConfig,
    ) -> Result<Self, NatsFanoutError> {
        // Registered with the server before the first request for snapshots goes out, so no
        // answer is missed.
        let [subscriber] =
            subscribe_confirmed(&client, [config.subject.clone()], ROUND_TRIP_LIMIT).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        hub.attach_presence(tx, config.settings);
        let dropped = Arc::new(AtomicU64::new(0));
        let node = hub.node().0;
        let task = tokio::spawn(run(Driver {
            hub: hub.clone(),
            client: client.clone(),
            subject: config.subject.clone(),
            node,
            heartbeat: config.settings.heartbeat,
            dropped: dropped.clone(),
            subscriber,
            outgoing: rx,
        }));
        Ok(Self {
            client,
            subject: config.subject,
            node,
            dropped,
            task,
        })
    }

    /// The subject presence messages travel on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Messages from other nodes dropped as invalid or too large so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops sharing and tells the other nodes that this node's members are gone.
    pub async fn goodbye(self) {
        self.task.abort();
        let payload = encode(self.node, PresenceMessage::Goodbye);
        if let Err(e) = self
            .client
            .publish(self.subject.clone(), payload.into())
            .await
        {
            tracing::warn!(error = %e, "presence goodbye not sent");
        }
        let _ = self.client.flush().await;
    }
}

impl Drop for NatsPresence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the driver task owns.
struct Driver {
    hub: RealtimeHub,
    client: async_nats::Client,
    subject: String,
    node: u64,
    heartbeat: Duration,
    dropped: Arc<AtomicU64>,
    subscriber: async_nats::Subscriber,
    outgoing: mpsc::UnboundedReceiver<PresenceMessage>,
}

async fn run(mut d: Driver) {
    let mut ticker = tokio::time::interval(d.heartbeat.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = true;
    loop {
        tokio::select! {
            received = d.subscriber.next() => {
                let Some(message) = received else {
                    tracing::warn!("NATS presence subscription ended; presence is per node from now on");
                    return;
                };
                match decode(&message.payload) {
                    Ok(envelope) => d.hub.receive_presence(envelope, Instant::now()),
                    Err(error) => {
                        d.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            subject = %message.subject,
                            bytes = message.payload.len(),
                            %error,
                            "dropping invalid presence message"
                        );
                    }
                }
            }
            Some(message) = d.outgoing.recv() => {
                let payload = encode(d.node, message);
                // A lost message is repaired by the next heartbeat's digest.
                if let Err(e) = d.client.publish(d.subject.clone(), payload.into()).await {
                    tracing::warn!(error = %e, subject = %d.subject, "presence message not published");
                }
            }
            _ = ticker.tick() => {
                // Heartbeat digests repair a gap too, but after a reconnect asking at once is
                // quicker than waiting for every node's next heartbeat.
                let now_connected =
                    d.client.connection_state() == async_nats::connection::State::Connected;
                if now_connected && !connected {
                    tracing::info!("reconnected to NATS; asking the other nodes for their presence");
                    d.hub.presence_resync();
                }
                connected = now_connected;
                d.hub.presence_tick(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_round_trip() {
        let join = PresenceMessage::Join(Entry {
            channel: "presence-user.7".into(),
            user_id: "7".into(),
            user_info: json!({"name": "bob"}),
        });
        let decoded = decode(&encode(u64::MAX, join.clone())).unwrap();
        assert_eq!(decoded.node, u64::MAX);
        assert_eq!(decoded.message, join);
    }

    #[test]
    fn invalid_messages_are_rejected() {
        let entry = |channel: &str, user: &str, info: serde_json::Value| {
            json!({"node":1,"message":{"kind":"join","channel":channel,"user_id":user,"user_info":info}})
                .to_string()
        };
        let many: Vec<_> = (0..=SNAPSHOT_CHUNK)
            .map(|i| json!({"channel":"presence-a","user_id":i.to_string()}))
            .collect();
        let cases = [
            "not json".to_owned(),
            "{}".to_owned(),
            json!({"node":-1,"message":{"kind":"goodbye"}}).to_string(),
            json!({"node":1,"message":{"kind":"explode"}}).to_string(),
            entry("private-user.7", "7", json!(null)),
            entry("presence-bad channel", "7", json!(null)),
            entry("presence-a", "", json!(null)),
            entry("presence-a", &"u".repeat(MAX_USER_ID_BYTES + 1), json!(null)),
            entry("presence-a", "7", json!("x".repeat(MAX_USER_INFO_BYTES))),
            json!({"node":1,"message":{"kind":"leave","channel":"presence-a","user_id":""}})
                .to_string(),
            json!({"node":1,"message":{"kind":"snapshot","seq":1,"part":0,"last":true,"members":many}})
                .to_string(),
            " ".repeat(MAX_MESSAGE_BYTES + 1),
        ];
        for payload in cases {
            let shown: String = payload.chars().take(120).collect();
            assert!(decode(payload.as_bytes()).is_err(), "{shown}");
        }
    }

    #[test]
    fn subjects_are_per_app() {
        let config = NatsPresenceConfig::for_app(
            &RealtimeConfig::new("app-1", "k", "s"),
            Duration::from_secs(15),
        )
        .unwrap();
        assert_eq!(config.subject, "ringmaster.presence.app-1");
        assert_eq!(config.settings.heartbeat, Duration::from_secs(5));
        assert!(NatsPresenceConfig::for_app(
            &RealtimeConfig::new("a.b", "k", "s"),
            Duration::from_secs(15)
        )
        .is_err());
    }
}
