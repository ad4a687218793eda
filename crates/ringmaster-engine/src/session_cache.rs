//! The engine's optional per-node memory of sessions (`Engine::with_session_cache`): the
//! decoded session and version this node last committed or loaded, so an input skips the
//! store read and the JSON decode, and a per-session turn so inputs of one session on one
//! node queue instead of racing each other's compare-and-set.
//!
//! Neither is needed for correctness: the commit's compare-and-set still validates the
//! version, so a stale entry (another node committed, the session was pruned) costs one
//! conflict and a reload.

use ringmaster_core::session::Session;
use ringmaster_core::CallSessionId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OwnedMutexGuard;

/// A capacity-bounded map of session id to (session, version), oldest insertion evicted
/// first. A plain FIFO is enough: a call's inputs arrive within seconds of each other, so an
/// entry is useful while it is young.
pub(crate) struct SessionCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<CallSessionId, (Arc<Session>, u64)>,
    /// Insertion order; may hold ids already removed (skipped when evicting).
    order: VecDeque<CallSessionId>,
}

impl SessionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding this lock leaves a consistent map (every update is one call).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered session and version.
    pub(crate) fn get(&self, id: &CallSessionId) -> Option<(Arc<Session>, u64)> {
        self.entries().map.get(id).cloned()
    }

    /// Remembers `session` at `version`, unless a newer version is already remembered (a
    /// slower task finishing after a faster one must not put an older copy back).
    pub(crate) fn put(&self, id: &CallSessionId, session: Arc<Session>, version: u64) {
        let mut entries = self.entries();
        match entries.map.get_mut(id) {
            Some(entry) if entry.1 >= version => {}
            Some(entry) => *entry = (session, version),
            None => {
                entries.map.insert(id.clone(), (session, version));
                entries.order.push_back(id.clone());
            }
        }
        while entries.map.len() > self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            entries.map.remove(&oldest);
        }
        // Removed ids linger in `order`; compact so it stays bounded too.
        if entries.order.len() > 2 * self.capacity + 64 {
            let Entries { map, order } = &mut *entries;
            let mut seen = std::collections::HashSet::with_capacity(map.len());
            order.retain(|id| map.contains_key(id) && seen.insert(id.clone()));
        }
    }

    /// Forgets `id` (a lost compare-and-set, a quarantine, an unknown outcome).
    pub(crate) fn forget(&self, id: &CallSessionId) {
        self.entries().map.remove(id);
    }

    /// How many sessions are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().map.len()
    }
}

/// One async lock per session with inputs in flight; an entry lives while someone holds or
/// waits for it.
#[derive(Default)]
pub(crate) struct Turns {
    locks: Mutex<HashMap<CallSessionId, Arc<tokio::sync::Mutex<()>>>>,
}

/// A session's turn; the next input of that session runs when it is dropped.
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    id: CallSessionId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits for `id`'s turn.
    pub(crate) async fn take(&self, id: &CallSessionId) -> Turn<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(id.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        Turn {
            turns: self,
            id: id.clone(),
            guard: Some(guard),
        }
    }

    /// How many sessions have a lock entry.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.turns.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Clones are only made under `locks`, so a count of 1 (the map's own) means nobody
        // holds or waits for this session any more.
        if locks
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmaster_core::session::{NewInbound, SessionConfig};
    use ringmaster_core::{CallControlId, TenantId, Timestamp, UserId};

    fn session(id: &str) -> Arc<Session> {
        let new = NewInbound {
            id: CallSessionId::new(id),
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            caller_leg: CallControlId::new(format!("caller-{id}")),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            devices: Vec::new(),
            busy: false,
            config: SessionConfig::default(),
        };
        Arc::new(Session::new_inbound(new, Timestamp::from_millis(0)).unwrap())
    }

    #[test]
    fn the_oldest_entry_goes_first_and_an_older_version_never_replaces_a_newer() {
        let cache = SessionCache::new(2);
        for id in ["a", "b", "c"] {
            cache.put(&CallSessionId::new(id), session(id), 1);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&CallSessionId::new("a")).is_none());
        let b = CallSessionId::new("b");
        cache.put(&b, session("b"), 3);
        cache.put(&b, session("b"), 2);
        assert_eq!(cache.get(&b).map(|(_, v)| v), Some(3));
        cache.forget(&b);
        assert!(cache.get(&b).is_none());
        // Forgotten and re-added ids keep the order bounded.
        for round in 0..1_000 {
            cache.put(&b, session("b"), round);
            cache.forget(&b);
        }
        assert!(cache.entries().order.len() <= 2 * 2 + 64);
    }

    #[tokio::test]
    async fn turns_are_removed_once_nobody_waits() {
        let turns = Turns::default();
        let id = CallSessionId::new("s");
        let first = turns.take(&id).await;
        let waiting = {
            let turns = &turns;
            let id = id.clone();
            async move { turns.take(&id).await }
        };
        tokio::pin!(waiting);
        // The second waiter cannot get in while the first holds the turn.
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(first);
        assert_eq!(turns.len(), 1, "the waiter still needs the entry");
        let second = waiting.await;
        drop(second);
        assert_eq!(turns.len(), 0);
    }
}
