//! The hub: which sockets are connected, which channels they are on, who is present, and the
//! publish API the server's dispatcher calls.

use crate::channel::{ChannelKind, ChannelName};
use crate::config::RealtimeConfig;
use crate::event::{Event, EventError};
use crate::fanout::{Fanout, FanoutError, FanoutSink, InProcessFanout, NodeId};
use crate::protocol::{self, ProtocolError};
use crate::signing;
use crate::socket_id::SocketId;
use axum::extract::ws::Utf8Bytes;
use ringmaster_core::DeviceId;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use tokio::sync::mpsc;

/// What the hub hands a connection's task: a frame to write, or an order to close.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A serialized frame, shared by every recipient.
    Frame(Utf8Bytes),
    /// Close the connection with this error.
    Close(ProtocolError),
}

/// A presence channel member as announced in `channel_data`.
#[derive(Clone, Debug, PartialEq)]
pub struct PresenceMember {
    /// The member's user id (always a string on the wire).
    pub user_id: String,
    /// Whatever the auth endpoint put in `user_info`.
    pub user_info: Value,
}

/// Why a subscribe was refused by the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubscribeError {
    /// The presence channel already holds the maximum number of users.
    #[error("presence channel is full")]
    PresenceFull,
    /// The socket is gone (closed or evicted) while subscribing.
    #[error("connection is closed")]
    Gone,
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The event itself is invalid; nothing was delivered.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Local sockets got the event but other nodes may not have.
    #[error("{error} (delivered to {delivered_locally} local sockets)")]
    Fanout {
        /// Local sockets that received it.
        delivered_locally: usize,
        /// The transport failure.
        error: FanoutError,
    },
}

#[derive(Default)]
struct ChannelState {
    /// Subscribed sockets and, on presence channels, the user each one joined as.
    subscribers: HashMap<SocketId, Option<String>>,
    /// Presence members: user id → (open subscriptions, user_info).
    members: HashMap<String, (usize, Value)>,
}

#[derive(Default)]
struct State {
    connections: HashMap<SocketId, mpsc::Sender<Outbound>>,
    channels: HashMap<String, ChannelState>,
    /// Open connections per client address (only for connections whose address is known).
    per_ip: HashMap<IpAddr, usize>,
    /// The device each socket obtained a channel auth for: revoking the device closes them.
    devices: HashMap<SocketId, DeviceId>,
}

impl State {
    /// Queues `frame` for every subscriber of `channel` but `except`; a full queue marks its
    /// socket for eviction instead of blocking the publisher.
    fn send_to_channel(
        &self,
        channel: &str,
        frame: &Utf8Bytes,
        except: Option<&SocketId>,
        evict: &mut Vec<SocketId>,
    ) -> usize {
        let Some(ch) = self.channels.get(channel) else {
            return 0;
        };
        let mut delivered = 0;
        for socket in ch.subscribers.keys() {
            if Some(socket) == except {
                continue;
            }
            if let Some(tx) = self.connections.get(socket) {
                match tx.try_send(Outbound::Frame(frame.clone())) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => evict.push(socket.clone()),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        delivered
    }

    /// Dropping the sender ends the connection task's queue; it then closes as a slow consumer.
    fn evict(&mut self, sockets: Vec<SocketId>) {
        for socket in sockets {
            if self.connections.remove(&socket).is_some() {
                tracing::info!(socket_id = %socket, "evicting slow consumer");
            }
        }
    }
}

struct HubInner {
    config: RealtimeConfig,
    node: NodeId,
    fanout: Arc<dyn Fanout>,
    state: RwLock<State>,
}

impl HubInner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl FanoutSink for HubInner {
    fn deliver_local(&self, event: &Event) -> usize {
        let mut evict = Vec::new();
        let delivered = {
            let state = self.read();
            event
                .channels()
                .iter()
                .map(|ch| {
                    let frame = Utf8Bytes::from(protocol::event_frame(
                        ch.as_str(),
                        event.name(),
                        event.data(),
                    ));
                    state.send_to_channel(ch.as_str(), &frame, event.except(), &mut evict)
                })
                .sum()
        };
        if !evict.is_empty() {
            self.write().evict(evict);
        }
        delivered
    }
}

/// The Pusher app's live state on this node. Cheap to clone; all clones share one hub.
#[derive(Clone)]
pub struct RealtimeHub {
    inner: Arc<HubInner>,
}

impl RealtimeHub {
    /// A hub that stands alone (single node).
    pub fn new(config: RealtimeConfig) -> Self {
        Self::with_fanout(config, InProcessFanout::new())
    }

    /// A hub that shares events with every other hub attached to `fanout`.
    pub fn with_fanout(config: RealtimeConfig, fanout: Arc<dyn Fanout>) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| {
            let sink: Weak<dyn FanoutSink> = weak.clone();
            let node = fanout.attach(sink);
            HubInner {
                config,
                node,
                fanout: fanout.clone(),
                state: RwLock::default(),
            }
        });
        Self { inner }
    }

    /// The app settings.
    pub fn config(&self) -> &RealtimeConfig {
        &self.inner.config
    }

    /// Publishes `event` with `data` (serialized to JSON text) on one channel, to this node's
    /// subscribers and through the fan-out to other nodes. Returns local deliveries.
    pub async fn publish(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &Value,
        except: Option<&SocketId>,
    ) -> Result<usize, PublishError> {
        let event = Event::new(
            vec![channel.clone()],
            event,
            data.to_string(),
            except.cloned(),
            self.inner.config.max_event_bytes,
        )?;
        self.publish_event(&event).await
    }

    /// Publishes a prepared event; returns how many local sockets received it.
    pub async fn publish_event(&self, event: &Event) -> Result<usize, PublishError> {
        let delivered_locally = self.inner.deliver_local(event);
        self.inner
            .fanout
            .forward(self.inner.node, event)
            .await
            .map_err(|error| PublishError::Fanout {
                delivered_locally,
                error,
            })?;
        Ok(delivered_locally)
    }

    /// The auth string a client needs to subscribe to `channel` from `socket_id`.
    pub fn channel_auth(
        &self,
        socket_id: &SocketId,
        channel: &ChannelName,
        channel_data: Option<&str>,
    ) -> String {
        let c = &self.inner.config;
        signing::channel_auth(
            &c.key,
            &c.secret,
            socket_id.as_str(),
            channel.as_str(),
            channel_data,
        )
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.inner.read().connections.len()
    }

    /// Sockets on this node subscribed to `channel`.
    pub fn subscription_count(&self, channel: &str) -> usize {
        self.inner
            .read()
            .channels
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }

    /// Present users of a presence channel on this node, sorted by user id.
    pub fn presence_members(&self, channel: &str) -> Vec<PresenceMember> {
        let state = self.inner.read();
        let mut members: Vec<_> = state
            .channels
            .get(channel)
            .map(|c| {
                c.members
                    .iter()
                    .map(|(id, (_, info))| PresenceMember {
                        user_id: id.clone(),
                        user_info: info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
    }

    /// Closes every connection with 4200 so clients reconnect (to another node when draining).
    /// Returns how many were told.
    pub fn close_all(&self) -> usize {
        let mut state = self.inner.write();
        let n = state.connections.len();
        for tx in state.connections.values() {
            let _ = tx.try_send(Outbound::Close(ProtocolError::ServerClosing));
        }
        state.connections.clear();
        n
    }

    /// Adds a connection from `peer` (when known); refused with 4100 when the node is full or
    /// the address holds its maximum number of connections.
    pub(crate) fn register(
        &self,
        peer: Option<IpAddr>,
    ) -> Result<(SocketId, mpsc::Receiver<Outbound>), ProtocolError> {
        let mut state = self.inner.write();
        let config = &self.inner.config;
        if state.connections.len() >= config.max_connections {
            return Err(ProtocolError::OverCapacity);
        }
        if let Some(ip) = peer {
            let open = state.per_ip.entry(ip).or_default();
            if *open >= config.max_connections_per_ip {
                return Err(ProtocolError::TooManyFromAddress);
            }
            *open += 1;
        }
        let (tx, rx) = mpsc::channel(config.send_queue.max(1));
        let socket_id = loop {
            let id = SocketId::random();
            if !state.connections.contains_key(&id) {
                break id;
            }
        };
        state.connections.insert(socket_id.clone(), tx);
        Ok((socket_id, rx))
    }

    /// Removes a connection registered from `peer` and its subscriptions, announcing departed
    /// presence members.
    pub(crate) fn unregister(
        &self,
        socket: &SocketId,
        peer: Option<IpAddr>,
        channels: &[ChannelName],
    ) {
        let mut state = self.inner.write();
        state.connections.remove(socket);
        state.devices.remove(socket);
        if let Some(ip) = peer {
            if let Some(open) = state.per_ip.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    state.per_ip.remove(&ip);
                }
            }
        }
        let mut evict = Vec::new();
        for channel in channels {
            Self::leave(&mut state, socket, channel.as_str(), &mut evict);
        }
        state.evict(evict);
    }

    /// Remembers that `socket` was given a channel auth as `device`, so that revoking the
    /// device closes it. Ignored for a socket that is not open on this node.
    pub fn bind_device(&self, socket: &SocketId, device: &DeviceId) {
        let mut state = self.inner.write();
        if state.connections.contains_key(socket) {
            state.devices.insert(socket.clone(), device.clone());
        }
    }

    /// Closes every socket on this node that authenticated as `device`, with 4009 (don't
    /// reconnect). Returns how many were closed.
    pub fn close_device(&self, device: &DeviceId) -> usize {
        let mut state = self.inner.write();
        let sockets: Vec<SocketId> = state
            .devices
            .iter()
            .filter(|(_, d)| *d == device)
            .map(|(s, _)| s.clone())
            .collect();
        for socket in &sockets {
            state.devices.remove(socket);
            if let Some(tx) = state.connections.remove(socket) {
                let _ = tx.try_send(Outbound::Close(ProtocolError::Revoked));
            }
        }
        sockets.len()
    }

    /// Adds `socket` to `channel`; for presence channels returns the member list to send in
    /// `subscription_succeeded` and announces a newly present user to the others.
    pub(crate) fn subscribe(
        &self,
        socket: &SocketId,
        channel: &ChannelName,
        member: Option<PresenceMember>,
    ) -> Result<Option<Value>, SubscribeError> {
        let mut state = self.inner.write();
        if !state.connections.contains_key(socket) {
            return Err(SubscribeError::Gone);
        }
        let max_members = self.inner.config.max_presence_members;
        let ch = state
            .channels
            .entry(channel.as_str().to_owned())
            .or_default();
        let mut announce = None;
        if let Some(member) = &member {
            if !ch.subscribers.contains_key(socket) {
                let full = ch.members.len() >= max_members;
                match ch.members.get_mut(&member.user_id) {
                    Some((count, _)) => *count += 1,
                    None if full => {
                        if ch.subscribers.is_empty() {
                            state.channels.remove(channel.as_str());
                        }
                        return Err(SubscribeError::PresenceFull);
                    }
                    None => {
                        ch.members
                            .insert(member.user_id.clone(), (1, member.user_info.clone()));
                        announce = Some(protocol::member_added(
                            channel.as_str(),
                            &member.user_id,
                            &member.user_info,
                        ));
                    }
                }
            }
        }
        ch.subscribers
            .entry(socket.clone())
            .or_insert_with(|| member.as_ref().map(|m| m.user_id.clone()));
        let presence = (channel.kind() == ChannelKind::Presence).then(|| {
            let mut ids: Vec<&String> = ch.members.keys().collect();
            ids.sort();
            let hash: Map<String, Value> = ch
                .members
                .iter()
                .map(|(id, (_, info))| (id.clone(), info.clone()))
                .collect();
            json!({ "ids": ids, "hash": hash, "count": ch.members.len() })
        });
        if let Some(frame) = announce {
            let mut evict = Vec::new();
            state.send_to_channel(
                channel.as_str(),
                &Utf8Bytes::from(frame),
                Some(socket),
                &mut evict,
            );
            state.evict(evict);
        }
        Ok(presence)
    }

    /// Removes `socket` from `channel`.
    pub(crate) fn unsubscribe(&self, socket: &SocketId, channel: &ChannelName) {
        let mut state = self.inner.write();
        let mut evict = Vec::new();
        Self::leave(&mut state, socket, channel.as_str(), &mut evict);
        state.evict(evict);
    }

    /// Relays a client event to the channel's other subscribers on every node.
    pub(crate) async fn relay_client_event(&self, event: Event, user_id: Option<&str>) -> usize {
        let Some(channel) = event.channels().first() else {
            return 0;
        };
        let frame = Utf8Bytes::from(protocol::client_event_frame(
            channel.as_str(),
            event.name(),
            event.data(),
            user_id,
        ));
        let mut evict = Vec::new();
        let delivered =
            self.inner
                .read()
                .send_to_channel(channel.as_str(), &frame, event.except(), &mut evict);
        if !evict.is_empty() {
            self.inner.write().evict(evict);
        }
        // Remote nodes render the frame themselves; presence `user_id` is a local nicety.
        if let Err(e) = self.inner.fanout.forward(self.inner.node, &event).await {
            tracing::warn!(error = %e, "client event not forwarded to other nodes");
        }
        delivered
    }

    fn leave(state: &mut State, socket: &SocketId, channel: &str, evict: &mut Vec<SocketId>) {
        let Some(ch) = state.channels.get_mut(channel) else {
            return;
        };
        let Some(user) = ch.subscribers.remove(socket) else {
            return;
        };
        let mut departed = None;
        if let Some(user) = user {
            if let Some((count, _)) = ch.members.get_mut(&user) {
                *count -= 1;
                if *count == 0 {
                    ch.members.remove(&user);
                    departed = Some(user);
                }
            }
        }
        if ch.subscribers.is_empty() {
            state.channels.remove(channel);
        } else if let Some(user) = departed {
            let frame = Utf8Bytes::from(protocol::member_removed(channel, &user));
            state.send_to_channel(channel, &frame, None, evict);
        }
    }
}
