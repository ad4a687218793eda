//! The seam for cross-node fan-out. Every node delivers to its own sockets; a [`Fanout`] carries
//! events published on one node to the others. [`InProcessFanout`] links hubs in one process
//! (the embedded deployment, and tests of multi-node behaviour); [`crate::NatsFanout`] links
//! nodes through a NATS subject.

use crate::event::Event;
use crate::socket_id::SocketId;
use async_trait::async_trait;
use ringmaster_core::DeviceId;
use std::sync::{Arc, Mutex, Weak};

/// Identifies one hub among those sharing a fan-out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// Where a fan-out hands events that came from another node.
pub trait FanoutSink: Send + Sync {
    /// Delivers to this node's local subscribers; returns how many sockets got it.
    fn deliver_local(&self, event: &Event) -> usize;
    /// Applies a control message from another node to this node's sockets.
    fn control_local(&self, control: &Control);
}

/// What nodes tell each other about sockets besides events: a load balancer may send a
/// client's channel-auth request to another node than the one holding its socket, and an
/// admin may revoke a device through any node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// `socket` was given a channel auth as `device` (on the node that signed it).
    Bind {
        /// The socket the auth was for.
        socket: SocketId,
        /// The device that asked.
        device: DeviceId,
    },
    /// `device` was revoked: every node closes its sockets with 4009.
    CloseDevice(DeviceId),
}

/// A fan-out transport failed; the local delivery still happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fan-out to other nodes failed: {0}")]
pub struct FanoutError(pub String);

/// Carries events between the nodes of a cluster.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Registers a node; events forwarded by other nodes are handed to `sink` from then on.
    fn attach(&self, sink: Weak<dyn FanoutSink>) -> NodeId;
    /// Sends an event published on `origin` to every other attached node.
    async fn forward(&self, origin: NodeId, event: &Event) -> Result<(), FanoutError>;
    /// Sends a control message from `origin` to every other attached node.
    async fn control(&self, origin: NodeId, control: &Control) -> Result<(), FanoutError>;
}

/// Fan-out between hubs living in one process: forwarding is a direct call.
#[derive(Default)]
pub struct InProcessFanout {
    nodes: Mutex<Vec<(NodeId, Weak<dyn FanoutSink>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl InProcessFanout {
    /// A fan-out with no nodes attached yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

#[async_trait]
impl Fanout for InProcessFanout {
    fn attach(&self, sink: Weak<dyn FanoutSink>) -> NodeId {
        let id = NodeId(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, sink));
        id
    }

    async fn forward(&self, origin: NodeId, event: &Event) -> Result<(), FanoutError> {
        for sink in self.others(origin) {
            sink.deliver_local(event);
        }
        Ok(())
    }

    async fn control(&self, origin: NodeId, control: &Control) -> Result<(), FanoutError> {
        for sink in self.others(origin) {
            sink.control_local(control);
        }
        Ok(())
    }
}

impl InProcessFanout {
    /// The live hubs other than `origin`.
    fn others(&self, origin: NodeId) -> Vec<Arc<dyn FanoutSink>> {
        live_others(&self.nodes, origin)
    }
}

/// The hubs attached to a fan-out other than `origin`, dropping those that are gone.
pub(crate) fn live_others(
    nodes: &Mutex<Vec<(NodeId, Weak<dyn FanoutSink>)>>,
    origin: NodeId,
) -> Vec<Arc<dyn FanoutSink>> {
    let mut nodes = nodes.lock().unwrap_or_else(|e| e.into_inner());
    nodes.retain(|(_, sink)| sink.strong_count() > 0);
    nodes
        .iter()
        .filter(|(id, _)| *id != origin)
        .filter_map(|(_, sink)| sink.upgrade())
        .collect()
}
