//! Pusher protocol 7 frames: what clients may send, what the server answers, and the error and
//! close codes (4000–4099 don't reconnect, 4100–4199 back off, 4200–4299 reconnect now).

use serde::Deserialize;
use serde_json::{json, Value};

/// The only protocol version served.
pub const PROTOCOL_VERSION: u32 = 7;

/// A protocol error: the `pusher:error` code sent to the client and, when `closes`, the
/// WebSocket close code that follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// 4001: no app with the key in the URL. Don't reconnect.
    AppNotFound,
    /// 4006: `protocol` is not an integer.
    InvalidVersion,
    /// 4007: a protocol other than 7.
    UnsupportedProtocol,
    /// 4008: no `protocol` query parameter.
    NoProtocol,
    /// 4009: a private or presence subscribe whose auth string does not verify. Don't reconnect.
    Unauthorized,
    /// 4100: the node holds its maximum number of connections. Back off.
    OverCapacity,
    /// 4100: the client fell behind its send queue. Back off, then resubscribe.
    SlowConsumer,
    /// 4100: a frame that is not a JSON Pusher message. Back off: a broken client must not
    /// hammer the server, but must not be locked out of call dismissals for good either.
    InvalidMessage,
    /// 4100: a message above the size limit (or an invalid WebSocket frame).
    MessageTooLarge,
    /// 4100: this client address holds its maximum number of connections. Back off.
    TooManyFromAddress,
    /// 4100: no successful subscribe within the deadline after connecting. Back off.
    SubscribeTimeout,
    /// 4009: the device the connection authenticated as was revoked. Don't reconnect.
    Revoked,
    /// 4200: the server is shutting down or moving the client; reconnect at once.
    ServerClosing,
    /// 4201: no answer to the server's ping in time.
    PongTimeout,
    /// 4301: a `client-` event that is not allowed. The connection stays open.
    ClientEventRejected,
}

impl ProtocolError {
    /// The numeric code in `pusher:error` (and the close code, when the error closes).
    pub fn code(self) -> u16 {
        match self {
            Self::AppNotFound => 4001,
            Self::InvalidVersion => 4006,
            Self::UnsupportedProtocol => 4007,
            Self::NoProtocol => 4008,
            Self::Unauthorized | Self::Revoked => 4009,
            Self::OverCapacity
            | Self::TooManyFromAddress
            | Self::SubscribeTimeout
            | Self::SlowConsumer
            | Self::InvalidMessage
            | Self::MessageTooLarge => 4100,
            Self::ServerClosing => 4200,
            Self::PongTimeout => 4201,
            Self::ClientEventRejected => 4301,
        }
    }

    /// The human-readable message sent with the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::AppNotFound => "App key does not exist",
            Self::InvalidVersion => "Invalid protocol version format",
            Self::UnsupportedProtocol => "Unsupported protocol version (this server speaks 7)",
            Self::NoProtocol => "No protocol version supplied",
            Self::Unauthorized => "Connection is unauthorized",
            Self::OverCapacity => "Over capacity",
            Self::TooManyFromAddress => "Too many connections from this address",
            Self::SubscribeTimeout => "No subscription in time after connecting",
            Self::Revoked => "The device was revoked",
            Self::SlowConsumer => "Client is not reading its messages fast enough",
            Self::InvalidMessage => "Invalid message format",
            Self::MessageTooLarge => "Message too large or invalid WebSocket frame",
            Self::ServerClosing => "Server is closing the connection",
            Self::PongTimeout => "Pong reply not received in time",
            Self::ClientEventRejected => "Client event rejected",
        }
    }

    /// Whether the connection is closed after the error.
    pub fn closes(self) -> bool {
        self != Self::ClientEventRejected
    }
}

/// Checks the `protocol` query parameter of the connection URL.
pub fn check_protocol(param: Option<&str>) -> Result<(), ProtocolError> {
    let raw = param.ok_or(ProtocolError::NoProtocol)?;
    let version: u32 = raw.parse().map_err(|_| ProtocolError::InvalidVersion)?;
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedProtocol)
    }
}

/// A parsed client → server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `pusher:ping`: answer with `pusher:pong`.
    Ping,
    /// `pusher:pong`: the answer to the server's ping.
    Pong,
    /// `pusher:subscribe`.
    Subscribe {
        /// The raw channel name (validated later).
        channel: String,
        /// `key:signature` for private and presence channels.
        auth: Option<String>,
        /// Presence member JSON, exactly as the client sent it (the signature covers these bytes).
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The raw channel name.
        channel: String,
    },
    /// A `client-` event to relay to the channel's other subscribers.
    ClientEvent {
        /// The event name, starting with `client-`.
        event: String,
        /// The channel it is sent on.
        channel: String,
        /// The payload, relayed as is.
        data: Value,
    },
    /// Any other event name; ignored, so newer clients keep working.
    Other(String),
}

#[derive(Deserialize)]
struct RawFrame {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct UnsubscribeData {
    channel: String,
}

/// Some clients send `data` as a JSON-encoded string instead of an object; accept both.
fn object_data<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, ProtocolError> {
    let data = match data {
        Value::String(s) => serde_json::from_str(&s).map_err(|_| ProtocolError::InvalidMessage)?,
        other => other,
    };
    serde_json::from_value(data).map_err(|_| ProtocolError::InvalidMessage)
}

/// Parses one text frame; anything that is not a Pusher message is `InvalidMessage`.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let frame: RawFrame = serde_json::from_str(text).map_err(|_| ProtocolError::InvalidMessage)?;
    Ok(match frame.event.as_str() {
        "pusher:ping" => ClientMessage::Ping,
        "pusher:pong" => ClientMessage::Pong,
        "pusher:subscribe" => {
            let d: SubscribeData = object_data(frame.data)?;
            ClientMessage::Subscribe {
                channel: d.channel,
                auth: d.auth,
                channel_data: d.channel_data,
            }
        }
        "pusher:unsubscribe" => {
            let d: UnsubscribeData = object_data(frame.data)?;
            ClientMessage::Unsubscribe { channel: d.channel }
        }
        name if name.starts_with("client-") => ClientMessage::ClientEvent {
            channel: frame.channel.ok_or(ProtocolError::InvalidMessage)?,
            event: frame.event,
            data: frame.data,
        },
        _ => ClientMessage::Other(frame.event),
    })
}

/// `pusher:connection_established`, with `data` as a JSON string as Pusher sends it.
pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
    let data = json!({ "socket_id": socket_id, "activity_timeout": activity_timeout_secs });
    json!({ "event": "pusher:connection_established", "data": data.to_string() }).to_string()
}

/// `pusher:error` with a code and message.
pub fn error_frame(code: u16, message: &str) -> String {
    json!({ "event": "pusher:error", "data": { "code": code, "message": message } }).to_string()
}

/// `pusher:ping` (server → client).
pub fn ping_frame() -> String {
    r#"{"event":"pusher:ping","data":{}}"#.to_owned()
}

/// `pusher:pong` (answer to a client ping).
pub fn pong_frame() -> String {
    r#"{"event":"pusher:pong","data":{}}"#.to_owned()
}

/// A channel event; `data` is the JSON text of the payload and travels as a string.
pub fn event_frame(channel: &str, event: &str, data: &str) -> String {
    json!({ "event": event, "channel": channel, "data": data }).to_string()
}

/// A relayed `client-` event; presence channels carry the sender's `user_id`.
pub fn client_event_frame(channel: &str, event: &str, data: &str, user_id: Option<&str>) -> String {
    let mut frame = json!({ "event": event, "channel": channel, "data": data });
    if let Some(user_id) = user_id {
        frame["user_id"] = Value::String(user_id.to_owned());
    }
    frame.to_string()
}

/// `pusher_internal:subscription_succeeded`; presence channels carry the member list.
pub fn subscription_succeeded(channel: &str, presence: Option<Value>) -> String {
    let data = match presence {
        Some(p) => json!({ "presence": p }).to_string(),
        None => "{}".to_owned(),
    };
    json!({ "event": "pusher_internal:subscription_succeeded", "channel": channel, "data": data })
        .to_string()
}

/// `pusher:subscription_error`, which Echo's `.error()` binds to.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    json!({
        "event": "pusher:subscription_error",
        "channel": channel,
        "data": { "type": kind, "error": error, "status": status },
    })
    .to_string()
}

/// `pusher_internal:member_added`.
pub fn member_added(channel: &str, user_id: &str, user_info: &Value) -> String {
    let data = json!({ "user_id": user_id, "user_info": user_info }).to_string();
    json!({ "event": "pusher_internal:member_added", "channel": channel, "data": data }).to_string()
}

/// `pusher_internal:member_removed`.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let data = json!({ "user_id": user_id }).to_string();
    json!({ "event": "pusher_internal:member_removed", "channel": channel, "data": data })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_pusher_js_sends() {
        assert_eq!(
            parse_client_message(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse_client_message(
                r#"{"event":"pusher:subscribe","data":{"auth":"k:ab","channel_data":"{\"user_id\":\"7\"}","channel":"presence-r"}}"#
            ),
            Ok(ClientMessage::Subscribe {
                channel: "presence-r".into(),
                auth: Some("k:ab".into()),
                channel_data: Some(r#"{"user_id":"7"}"#.into()),
            })
        );
        assert_eq!(
            parse_client_message(
                r#"{"event":"pusher:subscribe","data":"{\"channel\":\"calls\"}"}"#
            ),
            Ok(ClientMessage::Subscribe {
                channel: "calls".into(),
                auth: None,
                channel_data: None
            })
        );
        assert_eq!(
            parse_client_message(r#"{"event":"pusher:unsubscribe","data":{"channel":"x"}}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "x".into()
            })
        );
        assert_eq!(
            parse_client_message(
                r#"{"event":"client-typing","channel":"private-a","data":{"a":1}}"#
            ),
            Ok(ClientMessage::ClientEvent {
                event: "client-typing".into(),
                channel: "private-a".into(),
                data: json!({"a":1}),
            })
        );
        assert_eq!(
            parse_client_message(r#"{"event":"pusher:signin","data":{}}"#),
            Ok(ClientMessage::Other("pusher:signin".into()))
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "not json",
            "[]",
            "42",
            r#"{"data":{}}"#,
            r#"{"event":5}"#,
            r#"{"event":"pusher:subscribe","data":{}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
            r#"{"event":"pusher:subscribe","data":"nope"}"#,
            r#"{"event":"client-x","data":{}}"#,
        ] {
            assert_eq!(
                parse_client_message(bad),
                Err(ProtocolError::InvalidMessage),
                "{bad}"
            );
        }
    }

    #[test]
    fn protocol_parameter() {
        assert_eq!(check_protocol(Some("7")), Ok(()));
        assert_eq!(
            check_protocol(Some("6")),
            Err(ProtocolError::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("seven")),
            Err(ProtocolError::InvalidVersion)
        );
        assert_eq!(check_protocol(None), Err(ProtocolError::NoProtocol));
    }

    #[test]
    fn handshake_data_is_a_json_string() {
        let frame: Value = serde_json::from_str(&connection_established("1.2", 30)).unwrap();
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, json!({"socket_id":"1.2","activity_timeout":30}));
    }

    #[test]
    fn close_code_ranges_follow_reconnect_semantics() {
        assert!((4000..4100).contains(&ProtocolError::Unauthorized.code()));
        assert!((4100..4200).contains(&ProtocolError::InvalidMessage.code()));
        assert!((4200..4300).contains(&ProtocolError::PongTimeout.code()));
        assert!(!ProtocolError::ClientEventRejected.closes());
    }
}
