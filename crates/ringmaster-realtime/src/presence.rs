//! Cluster-wide presence membership, sans I/O: which nodes hold a socket for each user of each
//! presence channel. A node feeds its own joins and leaves, the messages other nodes published
//! and the time in; the table answers with the `member_added` / `member_removed` to announce to
//! this node's sockets and the messages to publish. A user is a member while any node holds a
//! socket for them, so each change is announced once per socket cluster-wide.
//!
//! Nodes repair what a lost message broke: each heartbeat carries a digest of the sender's
//! members, and a receiver whose view differs asks that node for a snapshot. A node whose
//! heartbeats stop for the timeout is dropped with its members.

use crate::fanout::NodeId;
use crate::hub::PresenceMember;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Default for [`PresenceSettings::node_timeout`].
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(15);
/// Members per snapshot message: keeps each one far below NATS's 1 MB payload limit even with
/// 1 KB of `user_info` per member.
pub const SNAPSHOT_CHUNK: usize = 200;
/// Nodes tracked at once; heartbeats from more are ignored, so a flood of forged node ids
/// cannot grow the table without bound.
pub const MAX_NODES: usize = 1024;
/// Members a snapshot may carry in all its parts; a larger one is dropped.
pub const MAX_SNAPSHOT_MEMBERS: usize = 1_000_000;

/// Timing and limits of a [`PresenceTable`].
#[derive(Clone, Copy, Debug)]
pub struct PresenceSettings {
    /// Distinct users one presence channel may hold, cluster-wide.
    pub max_members: usize,
    /// How often this node's heartbeat goes out.
    pub heartbeat: Duration,
    /// Silence after which another node is taken for dead and its members removed.
    pub node_timeout: Duration,
}

impl PresenceSettings {
    /// Settings for a `node_timeout`, with a heartbeat three times as often.
    pub fn with_timeout(max_members: usize, node_timeout: Duration) -> Self {
        Self {
            max_members,
            heartbeat: node_timeout / 3,
            node_timeout,
        }
    }
}

/// One member of one channel held by a node, as carried by joins and snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The presence channel.
    pub channel: String,
    /// The member's user id.
    pub user_id: String,
    /// Its `user_info` on that node.
    #[serde(default)]
    pub user_info: Value,
}

/// What nodes tell each other about presence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceMessage {
    /// The sender now holds a socket for this member.
    Join(Entry),
    /// The sender no longer holds a socket for this user on this channel.
    Leave {
        /// The presence channel.
        channel: String,
        /// The user who left.
        user_id: String,
    },
    /// The sender is alive; `members` and `digest` summarise what it holds.
    Heartbeat {
        /// How many (channel, user) entries the sender holds.
        members: u64,
        /// Order-independent hash of those entries.
        digest: u64,
    },
    /// Asks `to` (every node when absent) to publish a snapshot.
    Sync {
        /// The node asked, or every node.
        #[serde(default)]
        to: Option<u64>,
    },
    /// One part of the sender's full member list; the last part replaces what it held.
    Snapshot {
        /// Distinguishes one snapshot's parts from another's.
        seq: u64,
        /// Position of this part, from 0.
        part: u32,
        /// Whether this is the final part.
        last: bool,
        /// The members in this part.
        members: Vec<Entry>,
    },
    /// The sender is shutting down; its members are gone.
    Goodbye,
}

/// A presence message with the node that sent it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender.
    pub node: u64,
    /// What it says.
    pub message: PresenceMessage,
}

/// A change of cluster-wide membership to tell this node's subscribers of `channel`.
#[derive(Clone, Debug, PartialEq)]
pub enum Announcement {
    /// `pusher_internal:member_added`.
    Added {
        /// The presence channel.
        channel: String,
        /// Who became present.
        member: PresenceMember,
    },
    /// `pusher_internal:member_removed`.
    Removed {
        /// The presence channel.
        channel: String,
        /// Who is gone from every node.
        user_id: String,
    },
}

/// What the table asks of its driver after an input.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// To announce to this node's subscribers, in order.
    pub announce: Vec<Announcement>,
    /// To publish to the other nodes, in order.
    pub send: Vec<PresenceMessage>,
    /// Entries received that were not applied because their channel was full.
    pub rejected: usize,
}

/// Digest of a set of entries: their count and the wrapping sum of their hashes, so that it is
/// updated per entry and equal however the set was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Digest {
    members: u64,
    sum: u64,
}

impl Digest {
    fn add(&mut self, channel: &str, user: &str) {
        self.members += 1;
        self.sum = self.sum.wrapping_add(entry_hash(channel, user));
    }

    fn remove(&mut self, channel: &str, user: &str) {
        self.members = self.members.saturating_sub(1);
        self.sum = self.sum.wrapping_sub(entry_hash(channel, user));
    }
}

/// FNV-1a then a 64-bit finalizer: the same on every node and every build, which std's hasher
/// does not promise.
fn entry_hash(channel: &str, user: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in channel.bytes().chain([0xff]).chain(user.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// One user of one channel: the nodes holding a socket for them, with the `user_info` each
/// gave, and the `user_info` shown (the first node's, kept while any node holds the user).
struct Member {
    info: Value,
    nodes: BTreeMap<NodeId, Value>,
}

/// What this node knows of another.
struct Remote {
    last_heard: Instant,
    digest: Digest,
    /// When a snapshot was last asked of it, so a mismatch does not ask on every heartbeat.
    asked_at: Option<Instant>,
    /// A snapshot being received: its sequence, the next part expected and the parts so far.
    pending: Option<(u64, u32, Vec<Entry>)>,
}

impl Remote {
    fn new(now: Instant) -> Self {
        Self {
            last_heard: now,
            digest: Digest::default(),
            asked_at: None,
            pending: None,
        }
    }
}

/// Cluster-wide presence membership as one node sees it.
pub struct PresenceTable {
    local: NodeId,
    settings: PresenceSettings,
    channels: HashMap<String, HashMap<String, Member>>,
    remotes: HashMap<NodeId, Remote>,
    local_digest: Digest,
    snapshot_seq: u64,
}

impl PresenceTable {
    /// An empty table for node `local`.
    pub fn new(local: NodeId, settings: PresenceSettings) -> Self {
        Self {
            local,
            settings,
            channels: HashMap::new(),
            remotes: HashMap::new(),
            local_digest: Digest::default(),
            snapshot_seq: 0,
        }
    }

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Replaces the timing and limits.
    pub fn set_settings(&mut self, settings: PresenceSettings) {
        self.settings = settings;
    }

    /// The timing and limits.
    pub fn settings(&self) -> PresenceSettings {
        self.settings
    }

    /// Whether `user_id` may join `channel`: already present somewhere, or room for one more.
    pub fn can_join(&self, channel: &str, user_id: &str) -> bool {
        self.channels.get(channel).is_none_or(|users| {
            users.contains_key(user_id) || users.len() < self.settings.max_members
        })
    }

    /// The cluster-wide members of `channel`, sorted by user id.
    pub fn members(&self, channel: &str) -> Vec<PresenceMember> {
        let mut members: Vec<PresenceMember> = self
            .channels
            .get(channel)
            .map(|users| {
                users
                    .iter()
                    .map(|(id, m)| PresenceMember {
                        user_id: id.clone(),
                        user_info: m.info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
    }

    /// Nodes other than this one currently taken for alive.
    pub fn remote_nodes(&self) -> usize {
        self.remotes.len()
    }

    /// This node now holds a socket for `member` on `channel` (its first one). The caller
    /// checked [`Self::can_join`].
    pub fn join_local(&mut self, channel: &str, member: &PresenceMember) -> Effects {
        let mut effects = Effects::default();
        let entry = Entry {
            channel: channel.to_owned(),
            user_id: member.user_id.clone(),
            user_info: member.user_info.clone(),
        };
        if self.add(self.local, &entry, &mut effects, true) {
            effects.send.push(PresenceMessage::Join(entry));
        }
        effects
    }

    /// This node's last socket for `user_id` on `channel` is gone.
    pub fn leave_local(&mut self, channel: &str, user_id: &str) -> Effects {
        let mut effects = Effects::default();
        if self.remove(self.local, channel, user_id, &mut effects) {
            effects.send.push(PresenceMessage::Leave {
                channel: channel.to_owned(),
                user_id: user_id.to_owned(),
            });
        }
        effects
    }

    /// Applies a message another node published (this node's own echoes are ignored).
    pub fn receive(&mut self, envelope: Envelope, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let node = NodeId(envelope.node);
        if node == self.local {
            return effects;
        }
        if let PresenceMessage::Goodbye = envelope.message {
            self.drop_node(node, &mut effects);
            return effects;
        }
        if !self.remotes.contains_key(&node) {
            if self.remotes.len() >= MAX_NODES {
                tracing::warn!(node = node.0, "too many presence nodes; ignoring a new one");
                return effects;
            }
            self.remotes.insert(node, Remote::new(now));
        }
        if let Some(remote) = self.remotes.get_mut(&node) {
            remote.last_heard = now;
        }
        match envelope.message {
            PresenceMessage::Join(entry) => {
                self.add(node, &entry, &mut effects, false);
            }
            PresenceMessage::Leave { channel, user_id } => {
                self.remove(node, &channel, &user_id, &mut effects);
            }
            PresenceMessage::Heartbeat { members, digest } => {
                let heard = Digest {
                    members,
                    sum: digest,
                };
                let resend_after = self.settings.heartbeat * 2;
                if let Some(remote) = self.remotes.get_mut(&node) {
                    let asked_recently = remote
                        .asked_at
                        .is_some_and(|at| now.saturating_duration_since(at) < resend_after);
                    if remote.digest != heard && !asked_recently {
                        remote.asked_at = Some(now);
                        effects
                            .send
                            .push(PresenceMessage::Sync { to: Some(node.0) });
                    }
                }
            }
            PresenceMessage::Sync { to } => {
                if to.is_none_or(|to| to == self.local.0) {
                    effects.send.extend(self.snapshot());
                }
            }
            PresenceMessage::Snapshot {
                seq,
                part,
                last,
                members,
            } => self.snapshot_part(node, seq, part, last, members, &mut effects),
            PresenceMessage::Goodbye => {}
        }
        effects
    }

    /// Drops the nodes silent for longer than the timeout, with their members, and returns
    /// this node's heartbeat to publish.
    pub fn tick(&mut self, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let timeout = self.settings.node_timeout;
        let dead: Vec<NodeId> = self
            .remotes
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.last_heard) > timeout)
            .map(|(node, _)| *node)
            .collect();
        for node in dead {
            tracing::info!(
                node = node.0,
                "presence node timed out; removing its members"
            );
            self.drop_node(node, &mut effects);
        }
        effects.send.push(self.heartbeat());
        effects
    }

    /// This node's heartbeat message.
    pub fn heartbeat(&self) -> PresenceMessage {
        PresenceMessage::Heartbeat {
            members: self.local_digest.members,
            digest: self.local_digest.sum,
        }
    }

    /// This node's members as snapshot messages (at least one, the last marked).
    pub fn snapshot(&mut self) -> Vec<PresenceMessage> {
        self.snapshot_seq += 1;
        let mut entries: Vec<Entry> = Vec::new();
        for (channel, users) in &self.channels {
            for (user_id, member) in users {
                if let Some(info) = member.nodes.get(&self.local) {
                    entries.push(Entry {
                        channel: channel.clone(),
                        user_id: user_id.clone(),
                        user_info: info.clone(),
                    });
                }
            }
        }
        let chunks: Vec<Vec<Entry>> = if entries.is_empty() {
            vec![Vec::new()]
        } else {
            entries.chunks(SNAPSHOT_CHUNK).map(<[_]>::to_vec).collect()
        };
        let parts = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, members)| PresenceMessage::Snapshot {
                seq: self.snapshot_seq,
                part: u32::try_from(i).unwrap_or(u32::MAX),
                last: i + 1 == parts,
                members,
            })
            .collect()
    }

    fn snapshot_part(
        &mut self,
        node: NodeId,
        seq: u64,
        part: u32,
        last: bool,
        members: Vec<Entry>,
        effects: &mut Effects,
    ) {
        let Some(remote) = self.remotes.get_mut(&node) else {
            return;
        };
        let mut pending = match remote.pending.take() {
            Some((s, next, entries)) if s == seq && next == part => entries,
            // A part out of order means one was lost: that snapshot is abandoned, and the
            // next heartbeat's digest asks again.
            _ if part != 0 => return,
            _ => Vec::new(),
        };
        if pending.len() + members.len() > MAX_SNAPSHOT_MEMBERS {
            tracing::warn!(node = node.0, "presence snapshot too large; dropped");
            return;
        }
        pending.extend(members);
        if !last {
            remote.pending = Some((seq, part.saturating_add(1), pending));
            return;
        }
        remote.asked_at = None;
        self.replace_node(node, pending, effects);
    }

    /// Makes `node`'s entries exactly `entries`, announcing the differences.
    fn replace_node(&mut self, node: NodeId, entries: Vec<Entry>, effects: &mut Effects) {
        let wanted: HashMap<(&str, &str), &Entry> = entries
            .iter()
            .map(|e| ((e.channel.as_str(), e.user_id.as_str()), e))
            .collect();
        let stale: Vec<(String, String)> = self
            .channels
            .iter()
            .flat_map(|(channel, users)| {
                users
                    .iter()
                    .filter(|(_, m)| m.nodes.contains_key(&node))
                    .map(move |(user, _)| (channel.clone(), user.clone()))
            })
            .filter(|(c, u)| !wanted.contains_key(&(c.as_str(), u.as_str())))
            .collect();
        for (channel, user) in stale {
            self.remove(node, &channel, &user, effects);
        }
        for entry in &entries {
            self.add(node, entry, effects, false);
        }
    }

    fn drop_node(&mut self, node: NodeId, effects: &mut Effects) {
        self.replace_node(node, Vec::new(), effects);
        self.remotes.remove(&node);
    }

    /// Records that `node` holds `entry`; returns whether that is new for the node. Announces
    /// the user when no node held them. A remote entry for a new user of a full channel is
    /// refused (counted in `rejected`): two nodes admitting the last seat at once cannot grow
    /// a channel past its limit on the others.
    fn add(&mut self, node: NodeId, entry: &Entry, effects: &mut Effects, checked: bool) -> bool {
        let max = self.settings.max_members;
        let users = self.channels.entry(entry.channel.clone()).or_default();
        let announce = match users.get_mut(&entry.user_id) {
            Some(member) => {
                if member.nodes.contains_key(&node) {
                    return false;
                }
                member.nodes.insert(node, entry.user_info.clone());
                false
            }
            None => {
                if !checked && users.len() >= max {
                    effects.rejected += 1;
                    if users.is_empty() {
                        self.channels.remove(&entry.channel);
                    }
                    return false;
                }
                users.insert(
                    entry.user_id.clone(),
                    Member {
                        info: entry.user_info.clone(),
                        nodes: BTreeMap::from([(node, entry.user_info.clone())]),
                    },
                );
                true
            }
        };
        if let Some(d) = self.digest_of(node) {
            d.add(&entry.channel, &entry.user_id);
        }
        if announce {
            effects.announce.push(Announcement::Added {
                channel: entry.channel.clone(),
                member: PresenceMember {
                    user_id: entry.user_id.clone(),
                    user_info: entry.user_info.clone(),
                },
            });
        }
        true
    }

    /// Records that `node` no longer holds `user` on `channel`; returns whether it did.
    /// Announces the user's departure when no node holds them any more.
    fn remove(&mut self, node: NodeId, channel: &str, user: &str, effects: &mut Effects) -> bool {
        let Some(users) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(member) = users.get_mut(user) else {
            return false;
        };
        if member.nodes.remove(&node).is_none() {
            return false;
        }
        if member.nodes.is_empty() {
            users.remove(user);
            if users.is_empty() {
                self.channels.remove(channel);
            }
            effects.announce.push(Announcement::Removed {
                channel: channel.to_owned(),
                user_id: user.to_owned(),
            });
        }
        if let Some(d) = self.digest_of(node) {
            d.remove(channel, user);
        }
        true
    }

    fn digest_of(&mut self, node: NodeId) -> Option<&mut Digest> {
        if node == self.local {
            Some(&mut self.local_digest)
        } else {
            self.remotes.get_mut(&node).map(|r| &mut r.digest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CH: &str = "presence-user.42";
    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);
    const C: NodeId = NodeId(3);

    fn settings() -> PresenceSettings {
        PresenceSettings::with_timeout(100, Duration::from_secs(15))
    }

    fn member(user: &str) -> PresenceMember {
        PresenceMember {
            user_id: user.into(),
            user_info: json!({ "name": user }),
        }
    }

    fn entry(user: &str) -> Entry {
        Entry {
            channel: CH.into(),
            user_id: user.into(),
            user_info: json!({ "name": user }),
        }
    }

    fn from(node: NodeId, message: PresenceMessage) -> Envelope {
        Envelope {
            node: node.0,
            message,
        }
    }

    fn added(user: &str) -> Announcement {
        Announcement::Added {
            channel: CH.into(),
            member: member(user),
        }
    }

    fn removed(user: &str) -> Announcement {
        Announcement::Removed {
            channel: CH.into(),
            user_id: user.into(),
        }
    }

    fn ids(table: &PresenceTable) -> Vec<String> {
        table.members(CH).into_iter().map(|m| m.user_id).collect()
    }

    /// Delivers everything `node`'s effects would publish to `to`, returning `to`'s effects.
    fn relay(
        node: &PresenceTable,
        sent: Vec<PresenceMessage>,
        to: &mut PresenceTable,
        now: Instant,
    ) -> Effects {
        let mut all = Effects::default();
        for message in sent {
            let e = to.receive(from(node.local(), message), now);
            all.announce.extend(e.announce);
            all.send.extend(e.send);
            all.rejected += e.rejected;
        }
        all
    }

    #[test]
    fn a_user_joining_on_two_nodes_is_added_once_and_removed_when_the_last_node_drops_them() {
        let now = Instant::now();
        let mut b = PresenceTable::new(B, settings());
        // Joins on A, as B hears them.
        let e = b.receive(from(A, PresenceMessage::Join(entry("7"))), now);
        assert_eq!(e.announce, vec![added("7")]);
        let e = b.join_local(CH, &member("7"));
        assert_eq!(e.announce, vec![], "already present through A");
        assert_eq!(e.send, vec![PresenceMessage::Join(entry("7"))]);
        assert_eq!(ids(&b), ["7"]);

        let e = b.leave_local(CH, "7");
        assert_eq!(e.announce, vec![], "A still holds the user");
        assert_eq!(ids(&b), ["7"]);
        let leave = PresenceMessage::Leave {
            channel: CH.into(),
            user_id: "7".into(),
        };
        let e = b.receive(from(A, leave.clone()), now);
        assert_eq!(e.announce, vec![removed("7")]);
        assert!(ids(&b).is_empty());
        // A repeated leave changes nothing.
        assert_eq!(b.receive(from(A, leave), now).announce, vec![]);
    }

    #[test]
    fn a_local_join_and_leave_is_announced_and_published() {
        let mut a = PresenceTable::new(A, settings());
        let e = a.join_local(CH, &member("7"));
        assert_eq!(e.announce, vec![added("7")]);
        assert_eq!(e.send, vec![PresenceMessage::Join(entry("7"))]);
        let e = a.leave_local(CH, "7");
        assert_eq!(e.announce, vec![removed("7")]);
        assert_eq!(e.send.len(), 1);
        assert!(a.leave_local(CH, "7").send.is_empty());
    }

    #[test]
    fn a_silent_node_times_out_and_only_its_sole_members_are_removed() {
        let t0 = Instant::now();
        let mut b = PresenceTable::new(B, settings());
        b.join_local(CH, &member("7"));
        b.receive(from(A, PresenceMessage::Join(entry("7"))), t0);
        b.receive(from(A, PresenceMessage::Join(entry("8"))), t0);
        b.receive(
            from(
                C,
                PresenceMessage::Heartbeat {
                    members: 0,
                    digest: 0,
                },
            ),
            t0,
        );
        assert_eq!(b.remote_nodes(), 2);

        let e = b.tick(t0 + Duration::from_secs(10));
        assert_eq!(e.announce, vec![]);
        b.receive(
            from(
                C,
                PresenceMessage::Heartbeat {
                    members: 0,
                    digest: 0,
                },
            ),
            t0 + Duration::from_secs(10),
        );
        let e = b.tick(t0 + Duration::from_secs(16));
        assert_eq!(
            e.announce,
            vec![removed("8")],
            "7 is still held by B itself"
        );
        assert!(matches!(
            e.send.as_slice(),
            [PresenceMessage::Heartbeat { members: 1, .. }]
        ));
        assert_eq!(ids(&b), ["7"]);
        assert_eq!(b.remote_nodes(), 1, "C was heard from in time");
    }

    #[test]
    fn goodbye_removes_a_nodes_members_at_once() {
        let now = Instant::now();
        let mut b = PresenceTable::new(B, settings());
        b.receive(from(A, PresenceMessage::Join(entry("7"))), now);
        let e = b.receive(from(A, PresenceMessage::Goodbye), now);
        assert_eq!(e.announce, vec![removed("7")]);
        assert_eq!(b.remote_nodes(), 0);
    }

    #[test]
    fn a_snapshot_replaces_what_a_node_held_and_announces_the_difference() {
        let now = Instant::now();
        let mut a = PresenceTable::new(A, settings());
        a.join_local(CH, &member("7"));
        a.join_local(CH, &member("9"));
        let mut b = PresenceTable::new(B, settings());
        // B believes A holds 7 and 8 (it missed A's leave of 8 and join of 9).
        b.receive(from(A, PresenceMessage::Join(entry("7"))), now);
        b.receive(from(A, PresenceMessage::Join(entry("8"))), now);

        let snapshot = a.snapshot();
        let e = relay(&a, snapshot, &mut b, now);
        assert_eq!(e.announce, vec![removed("8"), added("9")]);
        assert_eq!(ids(&b), ["7", "9"]);
    }

    #[test]
    fn a_heartbeat_that_disagrees_asks_for_a_snapshot_which_repairs_the_view() {
        let t0 = Instant::now();
        let mut a = PresenceTable::new(A, settings());
        a.join_local(CH, &member("7"));
        let mut b = PresenceTable::new(B, settings());
        // B came up after A's join: A's heartbeat tells it something is missing.
        let heartbeat = a.tick(t0).send;
        let e = relay(&a, heartbeat.clone(), &mut b, t0);
        assert_eq!(e.send, vec![PresenceMessage::Sync { to: Some(A.0) }]);
        // Asked once per two heartbeats, not on every one.
        assert!(relay(&a, heartbeat, &mut b, t0 + Duration::from_secs(1))
            .send
            .is_empty());

        // A answers the request (and ignores requests to other nodes).
        let answer = a
            .receive(from(B, PresenceMessage::Sync { to: Some(A.0) }), t0)
            .send;
        assert!(a
            .receive(from(B, PresenceMessage::Sync { to: Some(C.0) }), t0)
            .send
            .is_empty());
        let e = relay(&a, answer, &mut b, t0);
        assert_eq!(e.announce, vec![added("7")]);
        // Now the digests agree and nothing more is asked.
        let heartbeat = a.tick(t0).send;
        assert!(relay(&a, heartbeat, &mut b, t0 + Duration::from_secs(20))
            .send
            .is_empty());
    }

    #[test]
    fn large_snapshots_come_in_parts_and_a_missing_part_abandons_the_snapshot() {
        let now = Instant::now();
        let mut a = PresenceTable::new(
            A,
            PresenceSettings::with_timeout(1000, DEFAULT_NODE_TIMEOUT),
        );
        for i in 0..(SNAPSHOT_CHUNK + 1) {
            a.join_local(CH, &member(&i.to_string()));
        }
        let parts = a.snapshot();
        assert_eq!(parts.len(), 2);
        let mut b = PresenceTable::new(
            B,
            PresenceSettings::with_timeout(1000, DEFAULT_NODE_TIMEOUT),
        );
        assert!(relay(&a, parts[1..].to_vec(), &mut b, now)
            .announce
            .is_empty());
        let e = relay(&a, parts, &mut b, now);
        assert_eq!(e.announce.len(), SNAPSHOT_CHUNK + 1);
        assert_eq!(b.members(CH).len(), SNAPSHOT_CHUNK + 1);
    }

    #[test]
    fn remote_members_beyond_the_channel_limit_are_refused() {
        let now = Instant::now();
        let mut b = PresenceTable::new(B, PresenceSettings::with_timeout(2, DEFAULT_NODE_TIMEOUT));
        b.join_local(CH, &member("1"));
        assert!(b.can_join(CH, "2"));
        b.receive(from(A, PresenceMessage::Join(entry("2"))), now);
        assert!(!b.can_join(CH, "3"));
        assert!(
            b.can_join(CH, "2"),
            "a present user may join on another node"
        );
        let e = b.receive(from(A, PresenceMessage::Join(entry("3"))), now);
        assert_eq!((e.announce, e.rejected), (vec![], 1));
        assert_eq!(ids(&b), ["1", "2"]);
    }

    #[test]
    fn own_echoes_are_ignored() {
        let now = Instant::now();
        let mut a = PresenceTable::new(A, settings());
        let e = a.receive(from(A, PresenceMessage::Join(entry("7"))), now);
        assert_eq!(e, Effects::default());
        assert!(ids(&a).is_empty());
        assert_eq!(a.remote_nodes(), 0);
    }

    #[test]
    fn digests_do_not_depend_on_order() {
        let mut one = Digest::default();
        one.add("a", "1");
        one.add("b", "2");
        let mut two = Digest::default();
        two.add("b", "2");
        two.add("a", "1");
        two.add("c", "3");
        two.remove("c", "3");
        assert_eq!(one, two);
        assert_ne!(entry_hash("ab", "c"), entry_hash("a", "bc"));
    }
}
