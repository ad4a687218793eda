//! Fan-out between nodes over NATS core pub/sub: every node publishes the events published on
//! it to one subject per Pusher app and delivers what the other nodes publish there.
//!
//! Delivery is at most once, like Pusher itself: a node that is disconnected from NATS misses
//! the events published meanwhile, and its clients recover through their reconnect logic.

use crate::channel::{ChannelName, InvalidChannelName};
use crate::config::RealtimeConfig;
use crate::event::{Event, EventError};
use crate::fanout::{live_others, Control, Fanout, FanoutError, FanoutSink, NodeId};
use crate::socket_id::{InvalidSocketId, SocketId};
use async_trait::async_trait;
use futures::StreamExt;
use ringmaster_core::DeviceId;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Prefix of the subject an app's events travel on: `ringmaster.realtime.<app_id>`.
pub const SUBJECT_PREFIX: &str = "ringmaster.realtime";
/// Longest app id accepted as a subject token.
const MAX_APP_ID_LEN: usize = 128;
/// Suffix of the subject control messages (socket bindings, revocations) travel on.
const CONTROL_SUFFIX: &str = "control";
/// Largest control message accepted: a socket id, a device id and the envelope.
const MAX_CONTROL_BYTES: usize = 1024;
/// Longest device id a control message may carry.
const MAX_DEVICE_ID_LEN: usize = 256;
/// Room for the envelope around `data`: up to 100 channel names, the event name, JSON escaping.
const ENVELOPE_OVERHEAD: usize = 64 * 1024;

/// Settings of a [`NatsFanout`].
#[derive(Clone, Debug)]
pub struct NatsFanoutConfig {
    /// NATS server URL(s), comma separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The subject this app's events are published and received on.
    pub subject: String,
    /// Largest event `data` accepted from other nodes (the hub's `max_event_bytes`).
    pub max_event_bytes: usize,
    /// Largest NATS message accepted from other nodes; larger ones are dropped unread.
    pub max_message_bytes: usize,
    /// How long the first connection attempt may take.
    pub connect_timeout: Duration,
}

impl NatsFanoutConfig {
    /// Settings for the app in `config`, on subject `ringmaster.realtime.<app_id>`.
    pub fn for_app(
        url: impl Into<String>,
        config: &RealtimeConfig,
    ) -> Result<Self, NatsFanoutError> {
        let app_id = config.app_id.as_str();
        let valid_token = !app_id.is_empty()
            && app_id.len() <= MAX_APP_ID_LEN
            && app_id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !valid_token {
            return Err(NatsFanoutError::InvalidAppId);
        }
        // Escaping can double `data` inside the JSON envelope.
        let max_message_bytes = config
            .max_event_bytes
            .saturating_mul(2)
            .saturating_add(ENVELOPE_OVERHEAD);
        Ok(Self {
            url: url.into(),
            subject: format!("{SUBJECT_PREFIX}.{app_id}"),
            max_event_bytes: config.max_event_bytes,
            max_message_bytes,
            connect_timeout: Duration::from_secs(5),
        })
    }
}

/// Why a [`NatsFanout`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsFanoutError {
    /// The app id cannot be used as a NATS subject token.
    #[error(
        "app id must be 1-{MAX_APP_ID_LEN} characters of A-Z a-z 0-9 - _ to name a NATS subject"
    )]
    InvalidAppId,
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// The subscription to the app's subject failed.
    #[error("cannot subscribe to NATS subject {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client reported.
        reason: String,
    },
}

/// Why a message received from NATS was dropped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message is bigger than `max_message_bytes`.
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Not a JSON envelope of the expected shape.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A channel name outside Pusher's grammar.
    #[error(transparent)]
    Channel(#[from] InvalidChannelName),
    /// An `except` that is not a socket id.
    #[error(transparent)]
    Except(#[from] InvalidSocketId),
    /// The event breaks the hub's limits.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A control message's device id is empty or too long.
    #[error("device id must be 1-{MAX_DEVICE_ID_LEN} bytes")]
    DeviceId,
}

/// The wire form of an event, as published by a node.
#[derive(Serialize)]
struct Outgoing<'a> {
    origin: u64,
    channels: Vec<&'a str>,
    name: &'a str,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    except: Option<&'a str>,
}

/// The wire form as received; validated into an [`Event`] before anything sees it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    origin: u64,
    channels: Vec<String>,
    name: String,
    data: String,
    #[serde(default)]
    except: Option<String>,
}

/// Serializes `event` as published by `origin`.
pub fn encode(origin: NodeId, event: &Event) -> Vec<u8> {
    let outgoing = Outgoing {
        origin: origin.0,
        channels: event.channels().iter().map(ChannelName::as_str).collect(),
        name: event.name(),
        data: event.data(),
        except: event.except().map(SocketId::as_str),
    };
    // A struct of strings and integers always serializes.
    serde_json::to_vec(&outgoing).unwrap_or_default()
}

/// Checks a received message against the limits and turns it into the origin and its event.
pub fn decode(
    payload: &[u8],
    max_message_bytes: usize,
    max_event_bytes: usize,
) -> Result<(NodeId, Event), DecodeError> {
    if payload.len() > max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            limit: max_message_bytes,
        });
    }
    let incoming: Incoming = serde_json::from_slice(payload)?;
    if incoming.channels.len() > crate::event::MAX_CHANNELS_PER_EVENT {
        return Err(EventError::Channels.into());
    }
    let channels = incoming
        .channels
        .iter()
        .map(|c| ChannelName::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let except = incoming
        .except
        .as_deref()
        .map(SocketId::parse)
        .transpose()?;
    let event = Event::new(
        channels,
        incoming.name,
        incoming.data,
        except,
        max_event_bytes,
    )?;
    Ok((NodeId(incoming.origin), event))
}

/// The wire form of a control message.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ControlWire {
    Bind {
        origin: u64,
        socket: String,
        device: String,
    },
    CloseDevice {
        origin: u64,
        device: String,
    },
}

/// Serializes a control message sent by `origin`.
pub fn encode_control(origin: NodeId, control: &Control) -> Vec<u8> {
    let origin = origin.0;
    let wire = match control {
        Control::Bind { socket, device } => ControlWire::Bind {
            origin,
            socket: socket.as_str().to_owned(),
            device: device.as_str().to_owned(),
        },
        Control::CloseDevice(device) => ControlWire::CloseDevice {
            origin,
            device: device.as_str().to_owned(),
        },
    };
    // An enum of strings and integers always serializes.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Checks a received control message and turns it into its origin and meaning.
pub fn decode_control(payload: &[u8]) -> Result<(NodeId, Control), DecodeError> {
    if payload.len() > MAX_CONTROL_BYTES {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            limit: MAX_CONTROL_BYTES,
        });
    }
    let device = |raw: String| {
        if raw.is_empty() || raw.len() > MAX_DEVICE_ID_LEN {
            Err(DecodeError::DeviceId)
        } else {
            Ok(DeviceId::new(raw))
        }
    };
    Ok(match serde_json::from_slice(payload)? {
        ControlWire::Bind {
            origin,
            socket,
            device: d,
        } => (
            NodeId(origin),
            Control::Bind {
                socket: SocketId::parse(&socket)?,
                device: device(d)?,
            },
        ),
        ControlWire::CloseDevice { origin, device: d } => {
            (NodeId(origin), Control::CloseDevice(device(d)?))
        }
    })
}

type Sinks = Arc<Mutex<Vec<(NodeId, Weak<dyn FanoutSink>)>>>;

/// Fan-out over a NATS server: one per node process, shared by the hubs attached to it.
pub struct NatsFanout {
    client: async_nats::Client,
    subject: String,
    max_message_bytes: usize,
    sinks: Sinks,
    receiver: JoinHandle<()>,
    control_receiver: JoinHandle<()>,
}

impl NatsFanout {
    /// Connects, subscribes to the app's subject and starts delivering other nodes' events.
    /// Must be called inside a Tokio runtime.
    pub async fn connect(config: NatsFanoutConfig) -> Result<Arc<Self>, NatsFanoutError> {
        let client = async_nats::ConnectOptions::new()
            .name("ringmaster-realtime")
            .connection_timeout(config.connect_timeout)
            .connect(config.url.as_str())
            .await
            .map_err(|e| NatsFanoutError::Connect {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        // No event published by another node after this point is missed.
        let [subscriber, control_subscriber] = subscribe_confirmed(
            &client,
            [config.subject.clone(), control_subject(&config.subject)],
            config.connect_timeout,
        )
        .await?;
        let sinks = Sinks::default();
        let (max_message, max_event) = (config.max_message_bytes, config.max_event_bytes);
        let receiver = tokio::spawn(receive(
            subscriber,
            sinks.clone(),
            "event",
            move |payload| decode(payload, max_message, max_event),
            |sink, event| {
                sink.deliver_local(event);
            },
        ));
        let control_receiver = tokio::spawn(receive(
            control_subscriber,
            sinks.clone(),
            "control",
            decode_control,
            |sink, control| sink.control_local(control),
        ));
        Ok(Arc::new(Self {
            client,
            subject: config.subject,
            max_message_bytes: config.max_message_bytes,
            sinks,
            receiver,
            control_receiver,
        }))
    }

    /// The subject events travel on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The NATS connection, for the presence driver to share.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }
}

impl Drop for NatsFanout {
    fn drop(&mut self) {
        self.receiver.abort();
        self.control_receiver.abort();
    }
}

/// Hands each valid message on `subscriber` to the attached hubs except its sender's, with
/// `apply`; an invalid one is logged and dropped. `what` names the stream in the logs.
async fn receive<T>(
    mut subscriber: async_nats::Subscriber,
    sinks: Sinks,
    what: &'static str,
    decode: impl Fn(&[u8]) -> Result<(NodeId, T), DecodeError>,
    apply: impl Fn(&dyn FanoutSink, &T),
) {
    while let Some(message) = subscriber.next().await {
        let (origin, decoded) = match decode(&message.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(
                    subject = %message.subject,
                    bytes = message.payload.len(),
                    %error,
                    "dropping invalid fan-out {what} message"
                );
                continue;
            }
        };
        for sink in live_others(&sinks, origin) {
            apply(sink.as_ref(), &decoded);
        }
    }
    tracing::warn!("NATS {what} subscription ended; nothing more arrives from other nodes");
}

#[async_trait]
impl Fanout for NatsFanout {
    fn attach(&self, sink: Weak<dyn FanoutSink>) -> NodeId {
        // Random ids keep nodes distinct across processes without coordination.
        let id = NodeId(rand::random());
        self.sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, sink));
        id
    }

    async fn forward(&self, origin: NodeId, event: &Event) -> Result<(), FanoutError> {
        let payload = encode(origin, event);
        if payload.len() > self.max_message_bytes {
            return Err(FanoutError(format!(
                "event is {} bytes on the wire; other nodes accept {}",
                payload.len(),
                self.max_message_bytes
            )));
        }
        self.client
            .publish(self.subject.clone(), payload.into())
            .await
            .map_err(|e| FanoutError(format!("NATS publish to {}: {e}", self.subject)))
    }

    async fn control(&self, origin: NodeId, control: &Control) -> Result<(), FanoutError> {
        let subject = control_subject(&self.subject);
        self.client
            .publish(subject.clone(), encode_control(origin, control).into())
            .await
            .map_err(|e| FanoutError(format!("NATS publish to {subject}: {e}")))
    }
}

/// Subscribes to `subjects` and returns once the server has registered every subscription.
pub(crate) async fn subscribe_confirmed<const N: usize>(
    client: &async_nats::Client,
    subjects: [String; N],
    limit: Duration,
) -> Result<[async_nats::Subscriber; N], NatsFanoutError> {
    let error = |subject: &str, reason: String| NatsFanoutError::Subscribe {
        subject: subject.to_owned(),
        reason,
    };
    let mut subscribers = Vec::with_capacity(N);
    for subject in &subjects {
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| error(subject, e.to_string()))?;
        subscribers.push(subscriber);
    }
    round_trip(client, limit)
        .await
        .map_err(|reason| error(&subjects.join(", "), reason))?;
    Ok(subscribers
        .try_into()
        .unwrap_or_else(|_| unreachable!("one subscriber per subject")))
}

/// Waits until the server has processed every command this client sent before: it handles a
/// connection's commands in order, so a message published to a fresh inbox this client
/// listens on comes back only after them. (`Client::flush` only waits for the client's write
/// buffer to reach the socket; another connection's publish could still be processed before
/// our subscription.)
async fn round_trip(client: &async_nats::Client, limit: Duration) -> Result<(), String> {
    let inbox = client.new_inbox();
    let mut probe = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(limit, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the connection closed during the round trip".to_owned()),
        Err(_) => Err(format!("no answer from the server within {limit:?}")),
    }
}

/// The subject control messages of the app whose events travel on `subject` use.
fn control_subject(subject: &str) -> String {
    format!("{subject}.{CONTROL_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tells whether an error is the one a case expects.
    type IsExpected = fn(&DecodeError) -> bool;

    const MSG: usize = 4096;
    const DATA: usize = 1024;

    fn event(except: Option<&str>) -> Event {
        Event::new(
            vec![
                ChannelName::parse("private-user.42").unwrap(),
                ChannelName::parse("calls").unwrap(),
            ],
            "call_ended",
            r#"{"reason":"answered \"elsewhere\""}"#,
            except.map(|s| SocketId::parse(s).unwrap()),
            DATA,
        )
        .unwrap()
    }

    #[test]
    fn an_encoded_event_decodes_to_the_same_event_and_origin() {
        for except in [None, Some("123.456")] {
            let original = event(except);
            let (origin, decoded) =
                decode(&encode(NodeId(u64::MAX), &original), MSG, DATA).unwrap();
            assert_eq!(origin, NodeId(u64::MAX));
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn invalid_messages_are_rejected() {
        let big = "x".repeat(DATA + 1);
        let cases: Vec<(String, IsExpected)> = vec![
            ("not json".into(), |e| {
                matches!(e, DecodeError::Malformed(_))
            }),
            ("{}".into(), |e| matches!(e, DecodeError::Malformed(_))),
            (
                r#"{"origin":-1,"channels":["a"],"name":"n","data":"1"}"#.into(),
                |e| matches!(e, DecodeError::Malformed(_)),
            ),
            (
                r#"{"origin":1,"channels":["a"],"name":"n","data":"1","extra":1}"#.into(),
                |e| matches!(e, DecodeError::Malformed(_)),
            ),
            (
                r#"{"origin":1,"channels":["bad channel"],"name":"n","data":"1"}"#.into(),
                |e| matches!(e, DecodeError::Channel(_)),
            ),
            (
                r#"{"origin":1,"channels":["a"],"name":"n","data":"1","except":"x"}"#.into(),
                |e| matches!(e, DecodeError::Except(_)),
            ),
            (
                r#"{"origin":1,"channels":[],"name":"n","data":"1"}"#.into(),
                |e| matches!(e, DecodeError::Event(EventError::Channels)),
            ),
            (
                r#"{"origin":1,"channels":["a"],"name":"bad\u0001","data":"1"}"#.into(),
                |e| matches!(e, DecodeError::Event(EventError::Name)),
            ),
            (
                format!(r#"{{"origin":1,"channels":["a"],"name":"n","data":"{big}"}}"#),
                |e| matches!(e, DecodeError::Event(EventError::TooLarge { .. })),
            ),
            (
                format!(
                    r#"{{"origin":1,"channels":["a"],"name":"n","data":"{}"}}"#,
                    "x".repeat(MSG)
                ),
                |e| matches!(e, DecodeError::TooLarge { .. }),
            ),
        ];
        for (payload, expected) in cases {
            let error = decode(payload.as_bytes(), MSG, DATA).expect_err(&payload);
            assert!(expected(&error), "{payload}: {error:?}");
        }
        let many: Vec<String> = (0..=crate::event::MAX_CHANNELS_PER_EVENT)
            .map(|i| format!("c{i}"))
            .collect();
        let payload = serde_json::json!({"origin":1,"channels":many,"name":"n","data":"1"});
        assert!(matches!(
            decode(payload.to_string().as_bytes(), 1 << 20, DATA),
            Err(DecodeError::Event(EventError::Channels))
        ));
    }

    #[test]
    fn subjects_are_per_app_and_app_ids_must_be_subject_tokens() {
        let config = NatsFanoutConfig::for_app(
            "nats://127.0.0.1:4222",
            &RealtimeConfig::new("app-1", "k", "s"),
        )
        .unwrap();
        assert_eq!(config.subject, "ringmaster.realtime.app-1");
        assert!(config.max_message_bytes > 2 * config.max_event_bytes);
        for bad in ["", "a.b", "a*", ">", "a b", &"x".repeat(MAX_APP_ID_LEN + 1)] {
            assert!(
                matches!(
                    NatsFanoutConfig::for_app("nats://x", &RealtimeConfig::new(bad, "k", "s")),
                    Err(NatsFanoutError::InvalidAppId)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn control_messages_round_trip_and_bad_ones_are_refused() {
        let socket = SocketId::parse("1234.5678").unwrap();
        for control in [
            Control::Bind {
                socket: socket.clone(),
                device: DeviceId::new("alice-phone"),
            },
            Control::CloseDevice(DeviceId::new("alice-phone")),
        ] {
            let wire = encode_control(NodeId(7), &control);
            assert_eq!(decode_control(&wire).unwrap(), (NodeId(7), control));
        }
        let cases: &[(&str, IsExpected)] = &[
            (r#"{"kind":"close_device","origin":1}"#, |e| {
                matches!(e, DecodeError::Malformed(_))
            }),
            (r#"{"kind":"close_device","origin":1,"device":""}"#, |e| {
                matches!(e, DecodeError::DeviceId)
            }),
            (
                r#"{"kind":"close_device","origin":1,"device":"d","extra":1}"#,
                |e| matches!(e, DecodeError::Malformed(_)),
            ),
            (r#"{"kind":"shutdown","origin":1}"#, |e| {
                matches!(e, DecodeError::Malformed(_))
            }),
            (
                r#"{"kind":"bind","origin":1,"socket":"nope","device":"d"}"#,
                |e| matches!(e, DecodeError::Except(_)),
            ),
        ];
        for (payload, expected) in cases {
            let error = decode_control(payload.as_bytes()).unwrap_err();
            assert!(expected(&error), "{payload}: {error}");
        }
        let long = format!(
            r#"{{"kind":"close_device","origin":1,"device":"{}"}}"#,
            "d".repeat(MAX_CONTROL_BYTES)
        );
        assert!(matches!(
            decode_control(long.as_bytes()),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
