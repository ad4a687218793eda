//! The hub: which sockets are connected, which channels they are on, who is present, and the
//! publish API the server's dispatcher calls.

use crate::channel::{ChannelKind, ChannelName};
use crate::config::RealtimeConfig;
use crate::event::{Event, EventError};
use crate::fanout::{Control, Fanout, FanoutError, FanoutSink, InProcessFanout, NodeId};
use crate::outbox::{self, Outbox, Published};
use crate::presence::{
    Announcement, Effects, Envelope, PresenceMessage, PresenceSettings, PresenceTable,
    DEFAULT_NODE_TIMEOUT,
};
use crate::protocol::{self, ProtocolError};
use crate::signing;
use crate::socket_id::SocketId;
use bytes::Bytes;
use ringmaster_core::DeviceId;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

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

/// A socket on a channel.
struct Subscriber {
    /// Where its frames go.
    outbox: Arc<Outbox>,
    /// On presence channels, the user it joined as.
    user: Option<String>,
}

#[derive(Default)]
struct ChannelState {
    /// Subscribed sockets; each entry carries the socket's outbox so that a fan-out needs no
    /// second lookup per recipient.
    subscribers: HashMap<SocketId, Subscriber>,
    /// This node's presence members: user id → open subscriptions. Who is present
    /// cluster-wide is the [`PresenceTable`]'s business.
    members: HashMap<String, usize>,
}

struct State {
    connections: HashMap<SocketId, Arc<Outbox>>,
    channels: HashMap<String, ChannelState>,
    /// Open connections per client address (only for connections whose address is known).
    per_ip: HashMap<IpAddr, usize>,
    /// The device each socket obtained a channel auth for: revoking the device closes them.
    devices: HashMap<SocketId, DeviceId>,
    /// Presence members of every node (only this node's without a presence link).
    presence: PresenceTable,
}

impl State {
    /// The outboxes of `channel`'s subscribers but `except`.
    fn recipients(&self, channel: &str, except: Option<&SocketId>) -> Vec<Arc<Outbox>> {
        self.channels.get(channel).map_or_else(Vec::new, |ch| {
            ch.subscribers
                .iter()
                .filter(|(socket, _)| Some(*socket) != except)
                .map(|(_, sub)| sub.outbox.clone())
                .collect()
        })
    }

    /// Announces membership changes to this node's subscribers (`except` the socket whose
    /// subscribe caused them) and hands the messages for other nodes to the presence link,
    /// while the caller holds the lock, so that they keep the order of the changes.
    fn apply(&self, effects: Effects, except: Option<&SocketId>, link: &PresenceLink) {
        for announcement in effects.announce {
            let (channel, frame) = match &announcement {
                Announcement::Added { channel, member } => (
                    channel,
                    protocol::member_added(channel, &member.user_id, &member.user_info),
                ),
                Announcement::Removed { channel, user_id } => {
                    (channel, protocol::member_removed(channel, user_id))
                }
            };
            self.send_to_channel(channel, &outbox::text_frame(&frame), except);
        }
        if effects.rejected > 0 {
            tracing::warn!(
                rejected = effects.rejected,
                "presence members from other nodes refused: channel full"
            );
        }
        if effects.send.is_empty() {
            return;
        }
        let link = link.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = link.as_ref() {
            for message in effects.send {
                // A closed link means the driver stopped; other nodes then time this one out.
                let _ = tx.send(message);
            }
        }
    }

    /// Writes `frame` to every subscriber of `channel` but `except`, while the caller holds
    /// the lock (presence announcements, which must not overtake a subscribe's answer).
    fn send_to_channel(&self, channel: &str, frame: &Bytes, except: Option<&SocketId>) -> usize {
        self.channels.get(channel).map_or(0, |ch| {
            let outboxes = ch
                .subscribers
                .iter()
                .filter(|(socket, _)| Some(*socket) != except)
                .map(|(_, sub)| &*sub.outbox);
            deliver(outboxes, frame)
        })
    }
}

/// Recipients below which one thread writes a fan-out alone: spreading a small one over
/// threads costs more than it saves.
const PARALLEL_FANOUT_MIN: usize = 512;

/// Writes `frame` to every recipient; a large fan-out is split over one thread per core. Nearly
/// all of a fan-out's time is the kernel's send path, one `write(2)` per socket, and on
/// loopback or a busy host that work parallelizes: how long the last socket waits is the
/// length of that burst.
fn deliver_all(recipients: &[Arc<Outbox>], frame: &Bytes) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let per_thread = recipients.len().div_ceil(cores).max(PARALLEL_FANOUT_MIN);
    if per_thread >= recipients.len() {
        return deliver(recipients.iter().map(|o| &**o), frame);
    }
    std::thread::scope(|scope| {
        let mut chunks = recipients.chunks(per_thread);
        let own = chunks.next().unwrap_or_default();
        let helpers: Vec<_> = chunks
            .map(|chunk| scope.spawn(move || deliver(chunk.iter().map(|o| &**o), frame)))
            .collect();
        let mut delivered = deliver(own.iter().map(|o| &**o), frame);
        for helper in helpers {
            delivered += helper.join().unwrap_or(0);
        }
        delivered
    })
}

/// Writes `frame` to each outbox; returns how many took it. A socket whose queue is full is
/// told to close as a slow consumer instead of holding up the others.
fn deliver<'a>(outboxes: impl IntoIterator<Item = &'a Outbox>, frame: &Bytes) -> usize {
    let mut delivered = 0;
    let mut evicted = 0;
    for outbox in outboxes {
        match outbox.publish(frame) {
            Published::Sent => delivered += 1,
            Published::Evicted => evicted += 1,
            Published::Gone => {}
        }
    }
    if evicted > 0 {
        tracing::info!(evicted, "evicting slow consumers");
    }
    delivered
}

/// Where presence messages for other nodes go: the presence driver's queue, once attached.
type PresenceLink = Mutex<Option<UnboundedSender<PresenceMessage>>>;

struct HubInner {
    config: RealtimeConfig,
    node: NodeId,
    fanout: Arc<dyn Fanout>,
    state: RwLock<State>,
    presence_link: PresenceLink,
}

impl HubInner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the binding if `socket` is open here; tells whether it was.
    fn bind_local(&self, socket: &SocketId, device: &DeviceId) -> bool {
        let mut state = self.write();
        let local = state.connections.contains_key(socket);
        if local {
            state.devices.insert(socket.clone(), device.clone());
        }
        local
    }

    /// Closes this node's sockets that authenticated as `device` with 4009.
    fn close_device_local(&self, device: &DeviceId) -> usize {
        let mut state = self.write();
        let sockets: Vec<SocketId> = state
            .devices
            .iter()
            .filter(|(_, d)| *d == device)
            .map(|(s, _)| s.clone())
            .collect();
        for socket in &sockets {
            state.devices.remove(socket);
            if let Some(outbox) = state.connections.remove(socket) {
                outbox.order_close(ProtocolError::Revoked);
            }
        }
        sockets.len()
    }
}

impl FanoutSink for HubInner {
    fn deliver_local(&self, event: &Event) -> usize {
        event
            .channels()
            .iter()
            .map(|ch| {
                // Encoded once; every recipient gets the same bytes. The write happens outside
                // the lock so that connects and subscribes are not held up by a large fan-out.
                let frame = outbox::text_frame(&protocol::event_frame(
                    ch.as_str(),
                    event.name(),
                    event.data(),
                ));
                let recipients = self.read().recipients(ch.as_str(), event.except());
                deliver_all(&recipients, &frame)
            })
            .sum()
    }

    fn control_local(&self, control: &Control) {
        match control {
            Control::Bind { socket, device } => {
                self.bind_local(socket, device);
            }
            Control::CloseDevice(device) => {
                let closed = self.close_device_local(device);
                if closed > 0 {
                    tracing::info!(device_id = %device, closed, "revoked device's sockets closed");
                }
            }
        }
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
            let settings =
                PresenceSettings::with_timeout(config.max_presence_members, DEFAULT_NODE_TIMEOUT);
            HubInner {
                config,
                node,
                fanout: fanout.clone(),
                state: RwLock::new(State {
                    connections: HashMap::new(),
                    channels: HashMap::new(),
                    per_ip: HashMap::new(),
                    devices: HashMap::new(),
                    presence: PresenceTable::new(node, settings),
                }),
                presence_link: Mutex::new(None),
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

    /// Present users of a presence channel on every node (this node's alone without a
    /// presence link), sorted by user id.
    pub fn presence_members(&self, channel: &str) -> Vec<PresenceMember> {
        self.inner.read().presence.members(channel)
    }

    /// This hub's id among the nodes.
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// Starts sharing presence with other nodes: from now on this node's membership changes
    /// go to `link`, in order, after a request for the others' snapshots and this node's own.
    pub fn attach_presence(
        &self,
        link: UnboundedSender<PresenceMessage>,
        settings: PresenceSettings,
    ) {
        self.inner.write().presence.set_settings(settings);
        *self
            .inner
            .presence_link
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(link);
        // A join between the two lines above goes out twice (alone and in the snapshot),
        // which the others ignore.
        self.presence_resync();
    }

    /// Asks the other nodes for their members and sends this node's, as on attaching; the
    /// driver calls it after reconnecting to NATS, when messages may have been missed.
    pub fn presence_resync(&self) {
        let mut state = self.inner.write();
        let mut effects = Effects {
            send: vec![PresenceMessage::Sync { to: None }],
            ..Effects::default()
        };
        effects.send.extend(state.presence.snapshot());
        state.apply(effects, None, &self.inner.presence_link);
    }

    /// Applies a presence message from another node, announcing what changed to this node's
    /// subscribers.
    pub fn receive_presence(&self, envelope: Envelope, now: Instant) {
        let mut state = self.inner.write();
        let effects = state.presence.receive(envelope, now);
        state.apply(effects, None, &self.inner.presence_link);
    }

    /// Drops the nodes that went silent and sends this node's heartbeat; the presence driver
    /// calls it every heartbeat interval.
    pub fn presence_tick(&self, now: Instant) {
        let mut state = self.inner.write();
        let effects = state.presence.tick(now);
        state.apply(effects, None, &self.inner.presence_link);
    }

    /// Closes every connection with 4200 so clients reconnect (to another node when draining).
    /// Returns how many were told.
    pub fn close_all(&self) -> usize {
        let mut state = self.inner.write();
        let n = state.connections.len();
        for outbox in state.connections.values() {
            outbox.order_close(ProtocolError::ServerClosing);
        }
        state.connections.clear();
        n
    }

    /// Adds a connection from `peer` (when known) writing to `outbox`; refused with 4100 when
    /// the node is full or the address holds its maximum number of connections.
    pub(crate) fn register(
        &self,
        peer: Option<IpAddr>,
        outbox: Arc<Outbox>,
    ) -> Result<SocketId, ProtocolError> {
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
        let socket_id = loop {
            let id = SocketId::random();
            if !state.connections.contains_key(&id) {
                break id;
            }
        };
        state.connections.insert(socket_id.clone(), outbox);
        Ok(socket_id)
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
        for channel in channels {
            self.leave(&mut state, socket, channel.as_str());
        }
    }

    /// Remembers that `socket` was given a channel auth as `device`, so that revoking the
    /// device closes it. A socket open on another node (the load balancer sent the auth
    /// request elsewhere) is bound there through the fan-out.
    pub async fn bind_device(&self, socket: &SocketId, device: &DeviceId) {
        if self.inner.bind_local(socket, device) {
            return;
        }
        let control = Control::Bind {
            socket: socket.clone(),
            device: device.clone(),
        };
        if let Err(e) = self.inner.fanout.control(self.inner.node, &control).await {
            tracing::warn!(error = %e, "socket binding not forwarded to other nodes");
        }
    }

    /// Closes every socket of `device` on every node with 4009 (don't reconnect). Returns
    /// how many were closed on this node.
    pub async fn revoke_device(&self, device: &DeviceId) -> usize {
        let closed = self.inner.close_device_local(device);
        let control = Control::CloseDevice(device.clone());
        if let Err(e) = self.inner.fanout.control(self.inner.node, &control).await {
            tracing::warn!(error = %e, "device revocation not forwarded to other nodes");
        }
        closed
    }

    /// Adds `socket` to `channel` and writes it `subscription_succeeded` (with the member list
    /// on presence channels) before releasing the lock, so that no event on the channel can
    /// overtake it; announces a newly present user to the others. The caller then flushes.
    pub(crate) fn subscribe(
        &self,
        socket: &SocketId,
        channel: &ChannelName,
        member: Option<PresenceMember>,
    ) -> Result<(), SubscribeError> {
        let mut state = self.inner.write();
        let Some(outbox) = state.connections.get(socket).cloned() else {
            return Err(SubscribeError::Gone);
        };
        let state = &mut *state;
        let ch = state
            .channels
            .entry(channel.as_str().to_owned())
            .or_default();
        let mut effects = Effects::default();
        if let Some(member) = &member {
            if !ch.subscribers.contains_key(socket) {
                match ch.members.get_mut(&member.user_id) {
                    Some(count) => *count += 1,
                    None if !state.presence.can_join(channel.as_str(), &member.user_id) => {
                        if ch.subscribers.is_empty() {
                            state.channels.remove(channel.as_str());
                        }
                        return Err(SubscribeError::PresenceFull);
                    }
                    None => {
                        ch.members.insert(member.user_id.clone(), 1);
                        effects = state.presence.join_local(channel.as_str(), member);
                    }
                }
            }
        }
        ch.subscribers
            .entry(socket.clone())
            .or_insert_with(|| Subscriber {
                outbox: outbox.clone(),
                user: member.as_ref().map(|m| m.user_id.clone()),
            });
        let presence = (channel.kind() == ChannelKind::Presence).then(|| {
            let members = state.presence.members(channel.as_str());
            let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
            let hash: Map<String, Value> = members
                .iter()
                .map(|m| (m.user_id.clone(), m.user_info.clone()))
                .collect();
            json!({ "ids": ids, "hash": hash, "count": members.len() })
        });
        outbox.write_own(&outbox::text_frame(&protocol::subscription_succeeded(
            channel.as_str(),
            presence,
        )));
        state.apply(effects, Some(socket), &self.inner.presence_link);
        Ok(())
    }

    /// Removes `socket` from `channel`.
    pub(crate) fn unsubscribe(&self, socket: &SocketId, channel: &ChannelName) {
        let mut state = self.inner.write();
        self.leave(&mut state, socket, channel.as_str());
    }

    /// Relays a client event to the channel's other subscribers on every node.
    pub(crate) async fn relay_client_event(&self, event: Event, user_id: Option<&str>) -> usize {
        let Some(channel) = event.channels().first() else {
            return 0;
        };
        let frame = outbox::text_frame(&protocol::client_event_frame(
            channel.as_str(),
            event.name(),
            event.data(),
            user_id,
        ));
        let recipients = self
            .inner
            .read()
            .recipients(channel.as_str(), event.except());
        let delivered = deliver_all(&recipients, &frame);
        // Remote nodes render the frame themselves; presence `user_id` is a local nicety.
        if let Err(e) = self.inner.fanout.forward(self.inner.node, &event).await {
            tracing::warn!(error = %e, "client event not forwarded to other nodes");
        }
        delivered
    }

    fn leave(&self, state: &mut State, socket: &SocketId, channel: &str) {
        let Some(ch) = state.channels.get_mut(channel) else {
            return;
        };
        let Some(Subscriber { user, .. }) = ch.subscribers.remove(socket) else {
            return;
        };
        let mut effects = Effects::default();
        if let Some(user) = user {
            if let Some(count) = ch.members.get_mut(&user) {
                *count -= 1;
                if *count == 0 {
                    ch.members.remove(&user);
                    effects = state.presence.leave_local(channel, &user);
                }
            }
        }
        if ch.subscribers.is_empty() {
            state.channels.remove(channel);
        }
        // With no subscriber left here the announcement reaches no one, but the other nodes
        // still hear of the leave.
        state.apply(effects, None, &self.inner.presence_link);
    }
}
