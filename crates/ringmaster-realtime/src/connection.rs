//! One task per WebSocket: reads client frames, answers them, keeps the liveness timer, and
//! writes out whatever publishers left in its [`Outbox`] when the kernel's buffer was full.
//! Publishers write event frames to the socket themselves; nothing else is spawned per
//! connection.

use crate::channel::{ChannelKind, ChannelName};
use crate::event::Event;
use crate::hub::{PresenceMember, RealtimeHub, SubscribeError};
use crate::outbox::{self, Order, Outbox, Wire};
use crate::protocol::{self, ClientMessage, ProtocolError};
use crate::signing;
use crate::socket_id::SocketId;
use crate::upgrade::Upgraded;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Pusher limits client events to 10 per second per connection.
const CLIENT_EVENTS_PER_SECOND: f64 = 10.0;
/// Pusher limits `user_info` to 1 KB.
const MAX_CHANNEL_DATA_BYTES: usize = 1024;
/// Bytes read from the socket at a time. Tungstenite allocates it up front for every socket
/// (its default is 128 KiB); client messages are a few hundred bytes, and a larger one is
/// simply read in several steps.
const WS_READ_BUFFER: usize = 512;

/// The connection ended; the caller stops reading.
struct Closed;

type Socket = WebSocketStream<Wire>;

struct Connection {
    hub: RealtimeHub,
    socket: Socket,
    outbox: Arc<Outbox>,
    socket_id: SocketId,
    /// This socket's subscriptions, with the presence user it joined as.
    channels: Vec<(ChannelName, Option<String>)>,
    client_event_tokens: f64,
    client_event_refill: Instant,
}

/// Gauge of open WebSocket connections (Prometheus name).
pub const WS_CONNECTIONS: &str = "ringmaster_websocket_connections";
/// Counter of WebSocket text frames by `direction` (`in`, `out`).
pub const WS_MESSAGES: &str = "ringmaster_websocket_messages_total";

/// Serves an upgraded socket. `refusal` is set when the URL was already known to be bad
/// (unknown app key, protocol version): the client then gets the error and a close.
pub(crate) async fn serve(
    hub: RealtimeHub,
    io: Upgraded,
    refusal: Option<ProtocolError>,
    peer: Option<IpAddr>,
) {
    let config = hub.config();
    let write_timeout = config.write_timeout;
    // The transport limit sits above the protocol limit so that a merely oversized message
    // still gets a clean Pusher error, while a huge frame is refused from its header alone.
    let hard_limit = config.max_message_bytes.saturating_mul(2);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        // Written through at once: frames of this task and of publishers share one queue.
        .write_buffer_size(0)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit));
    let outbox = Arc::new(Outbox::new(io, config.send_queue));
    let mut socket =
        WebSocketStream::from_raw_socket(Wire(outbox.clone()), Role::Server, Some(ws_config)).await;
    if let Some(error) = refusal {
        let _ = close_with(&mut socket, &outbox, error, write_timeout).await;
        return;
    }
    let socket_id = match hub.register(peer, outbox.clone()) {
        Ok(registered) => registered,
        Err(error) => {
            let _ = close_with(&mut socket, &outbox, error, write_timeout).await;
            return;
        }
    };
    let mut conn = Connection {
        hub: hub.clone(),
        socket,
        outbox,
        socket_id: socket_id.clone(),
        channels: Vec::new(),
        client_event_tokens: CLIENT_EVENTS_PER_SECOND,
        client_event_refill: Instant::now(),
    };
    metrics::gauge!(WS_CONNECTIONS).increment(1.0);
    let _ = conn.run().await;
    metrics::gauge!(WS_CONNECTIONS).decrement(1.0);
    let channels: Vec<ChannelName> = conn.channels.into_iter().map(|(c, _)| c).collect();
    hub.unregister(&socket_id, peer, &channels);
}

/// Waits until everything queued in `outbox` is written, for at most `timeout`.
async fn flush(outbox: &Outbox, timeout: Duration) -> Result<(), Closed> {
    if !outbox.has_queued() {
        return Ok(());
    }
    let drained = std::future::poll_fn(|cx| outbox.poll_drain(cx));
    match tokio::time::timeout(timeout, drained).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Closed),
    }
}

/// Writes one text frame of this connection's own and waits until it is out.
async fn send_text(outbox: &Outbox, text: &str, timeout: Duration) -> Result<(), Closed> {
    outbox.write_own(&outbox::text_frame(text));
    if outbox.order() == Some(Order::Broken) {
        return Err(Closed);
    }
    flush(outbox, timeout).await
}

/// Sends `pusher:error` and, for closing errors, a close frame with the same code.
async fn close_with(
    socket: &mut Socket,
    outbox: &Outbox,
    error: ProtocolError,
    timeout: Duration,
) -> Result<(), Closed> {
    let frame = protocol::error_frame(error.code(), error.message());
    send_text(outbox, &frame, timeout).await?;
    if error.closes() {
        let close = CloseFrame {
            code: CloseCode::from(error.code()),
            reason: error.message().into(),
        };
        match tokio::time::timeout(timeout, socket.send(Message::Close(Some(close)))).await {
            Ok(Ok(())) => {}
            _ => return Err(Closed),
        }
    }
    Ok(())
}

impl Connection {
    async fn send(&mut self, text: String) -> Result<(), Closed> {
        let timeout = self.hub.config().write_timeout;
        metrics::counter!(WS_MESSAGES, "direction" => "out").increment(1);
        send_text(&self.outbox, &text, timeout).await
    }

    async fn close(&mut self, error: ProtocolError) -> Result<(), Closed> {
        tracing::debug!(socket_id = %self.socket_id, code = error.code(), "closing: {}", error.message());
        if error == ProtocolError::SlowConsumer {
            tracing::info!(socket_id = %self.socket_id, "evicting slow consumer");
        }
        let timeout = self.hub.config().write_timeout;
        let _ = close_with(&mut self.socket, &self.outbox, error, timeout).await;
        Err(Closed)
    }

    async fn run(&mut self) -> Result<(), Closed> {
        // Borrowed from a handle rather than cloned: this future lives as long as the socket,
        // and a copy of the settings (three strings) would be paid per connection.
        let hub = self.hub.clone();
        let config = hub.config();
        self.send(protocol::connection_established(
            self.socket_id.as_str(),
            config.advertised_activity_timeout(),
        ))
        .await?;
        let mut last_seen = Instant::now();
        let mut pinged_at: Option<Instant> = None;
        let mut subscribe_by = Some(last_seen + config.subscribe_timeout);
        // One timer for the connection's life, moved only when its deadline changes: a fresh
        // one per loop turn would cost a timer-wheel insert and removal per delivered frame.
        let timer = sleep_until(last_seen + config.activity_timeout);
        tokio::pin!(timer);
        loop {
            if !self.channels.is_empty() {
                subscribe_by = None;
            }
            let liveness = match pinged_at {
                Some(at) => at + config.pong_timeout,
                None => last_seen + config.activity_timeout,
            };
            let deadline = subscribe_by.map_or(liveness, |by| by.min(liveness));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                inbound = self.socket.next() => {
                    // Any frame, control frames included, proves the client alive.
                    last_seen = Instant::now();
                    pinged_at = None;
                    match inbound {
                        None | Some(Ok(Message::Close(_))) => return Ok(()),
                        Some(Err(_)) => return self.close(ProtocolError::MessageTooLarge).await,
                        Some(Ok(Message::Text(text))) => {
                            metrics::counter!(WS_MESSAGES, "direction" => "in").increment(1);
                            if text.len() > config.max_message_bytes {
                                return self.close(ProtocolError::MessageTooLarge).await;
                            }
                            // Boxed: answering a message needs far more state than waiting
                            // does, and an idle socket should not carry it.
                            Box::pin(self.handle_text(text.as_str())).await?;
                        }
                        Some(Ok(Message::Binary(_))) => return self.close(ProtocolError::InvalidMessage).await,
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    }
                }
                () = self.outbox.woken() => match self.outbox.order() {
                    Some(Order::Close(error)) => return self.close(error).await,
                    Some(Order::Broken) => return Err(Closed),
                    None => flush(&self.outbox, config.write_timeout).await?,
                },
                () = &mut timer => {
                    if subscribe_by.is_some_and(|by| by <= Instant::now()) {
                        return self.close(ProtocolError::SubscribeTimeout).await;
                    }
                    if pinged_at.is_some() {
                        return self.close(ProtocolError::PongTimeout).await;
                    }
                    self.send(protocol::ping_frame()).await?;
                    pinged_at = Some(Instant::now());
                }
            }
        }
    }

    async fn handle_text(&mut self, text: &str) -> Result<(), Closed> {
        let message = match protocol::parse_client_message(text) {
            Ok(message) => message,
            Err(error) => return self.close(error).await,
        };
        match message {
            ClientMessage::Ping => self.send(protocol::pong_frame()).await,
            ClientMessage::Pong | ClientMessage::Other(_) => Ok(()),
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                self.subscribe(&channel, auth.as_deref(), channel_data.as_deref())
                    .await
            }
            ClientMessage::Unsubscribe { channel } => {
                if let Some(pos) = self
                    .channels
                    .iter()
                    .position(|(c, _)| c.as_str() == channel)
                {
                    let (channel, _) = self.channels.swap_remove(pos);
                    self.hub.unsubscribe(&self.socket_id, &channel);
                }
                Ok(())
            }
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(event, &channel, data).await,
        }
    }

    async fn subscribe(
        &mut self,
        raw: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Result<(), Closed> {
        let Ok(channel) = ChannelName::parse(raw) else {
            let shown: String = raw
                .chars()
                .take(crate::channel::MAX_CHANNEL_NAME_LEN)
                .collect();
            return self
                .send(protocol::subscription_error(
                    &shown,
                    "InvalidChannel",
                    "Invalid channel name",
                    400,
                ))
                .await;
        };
        let already = self.channels.iter().any(|(c, _)| *c == channel);
        if !already && self.channels.len() >= self.hub.config().max_channels_per_connection {
            let msg = "Too many channels on this connection";
            return self
                .send(protocol::subscription_error(
                    channel.as_str(),
                    "LimitReached",
                    msg,
                    400,
                ))
                .await;
        }
        let kind = channel.kind();
        let signed_data = (kind == ChannelKind::Presence)
            .then_some(channel_data)
            .flatten();
        if channel.requires_auth() {
            let config = self.hub.config();
            let authorized = (kind != ChannelKind::Presence || signed_data.is_some())
                && signing::verify_channel_auth(
                    &config.key,
                    &config.secret,
                    auth.unwrap_or_default(),
                    self.socket_id.as_str(),
                    channel.as_str(),
                    signed_data,
                );
            if !authorized {
                let msg = "The connection is unauthorized.";
                self.send(protocol::subscription_error(
                    channel.as_str(),
                    "AuthError",
                    msg,
                    401,
                ))
                .await?;
                return self.close(ProtocolError::Unauthorized).await;
            }
        }
        let member = match signed_data {
            Some(data) => match parse_channel_data(data) {
                Some(member) => Some(member),
                None => {
                    let msg = "channel_data must be JSON with a user_id and at most 1 KB";
                    return self
                        .send(protocol::subscription_error(
                            channel.as_str(),
                            "InvalidChannelData",
                            msg,
                            400,
                        ))
                        .await;
                }
            },
            None => None,
        };
        let user_id = member.as_ref().map(|m| m.user_id.clone());
        match self.hub.subscribe(&self.socket_id, &channel, member) {
            Ok(()) => {
                if !already {
                    self.channels.push((channel.clone(), user_id));
                }
                // The hub already wrote `subscription_succeeded`; wait until it is out.
                metrics::counter!(WS_MESSAGES, "direction" => "out").increment(1);
                flush(&self.outbox, self.hub.config().write_timeout).await
            }
            Err(SubscribeError::PresenceFull) => {
                let msg = "Presence channel is full";
                self.send(protocol::subscription_error(
                    channel.as_str(),
                    "LimitReached",
                    msg,
                    400,
                ))
                .await
            }
            Err(SubscribeError::Gone) => Err(Closed),
        }
    }

    async fn client_event(
        &mut self,
        event: String,
        channel: &str,
        data: Value,
    ) -> Result<(), Closed> {
        let hub = self.hub.clone();
        let config = hub.config();
        if !config.client_events {
            return self.reject_client_event("Client events are disabled").await;
        }
        let Some((channel, user_id)) = self
            .channels
            .iter()
            .find(|(c, _)| c.as_str() == channel && c.kind() != ChannelKind::Public)
            .cloned()
        else {
            return self
                .reject_client_event(
                    "Client events need a private or presence channel you are subscribed to",
                )
                .await;
        };
        let now = Instant::now();
        let refill =
            now.duration_since(self.client_event_refill).as_secs_f64() * CLIENT_EVENTS_PER_SECOND;
        self.client_event_tokens =
            (self.client_event_tokens + refill).min(CLIENT_EVENTS_PER_SECOND);
        self.client_event_refill = now;
        if self.client_event_tokens < 1.0 {
            return self
                .reject_client_event("Client event rate limit exceeded")
                .await;
        }
        self.client_event_tokens -= 1.0;
        let data = match data {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match Event::new(
            vec![channel],
            event,
            data,
            Some(self.socket_id.clone()),
            config.max_event_bytes,
        ) {
            Ok(event) => {
                self.hub.relay_client_event(event, user_id.as_deref()).await;
                Ok(())
            }
            Err(e) => self.reject_client_event(&e.to_string()).await,
        }
    }

    async fn reject_client_event(&mut self, message: &str) -> Result<(), Closed> {
        self.send(protocol::error_frame(
            ProtocolError::ClientEventRejected.code(),
            message,
        ))
        .await
    }
}

/// Reads presence `channel_data`: a JSON object with `user_id` (string or number) and an
/// optional `user_info`.
fn parse_channel_data(data: &str) -> Option<PresenceMember> {
    if data.len() > MAX_CHANNEL_DATA_BYTES {
        return None;
    }
    let value: Value = serde_json::from_str(data).ok()?;
    let user_id = match value.get("user_id")? {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let user_info = value.get("user_info").cloned().unwrap_or(Value::Null);
    Some(PresenceMember { user_id, user_info })
}
