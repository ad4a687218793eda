//! A read cache of the directory (users by number, devices by user) for a store that is the
//! only writer of its data (the embedded SQLite backend): the webhook hot path then costs no
//! directory round trip at steady state. Every admin write invalidates it.
//!
//! A generation counter keeps a read that raced an admin write from caching what it read
//! before the write: the read's result is kept only if no write happened meanwhile.

use crate::directory::{Device, User};
use ringmaster_core::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Entries kept per map before it is emptied (bounds memory under number scans).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct DirectoryCache {
    generation: AtomicU64,
    by_number: Mutex<HashMap<String, Option<User>>>,
    devices: Mutex<HashMap<UserId, Vec<Device>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

impl DirectoryCache {
    /// The generation to pass back with a value read from the database.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets everything; call after every directory write has committed.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        lock(&self.by_number).clear();
        lock(&self.devices).clear();
    }

    /// The cached owner of `number` (`Some(None)`: cached as unowned).
    pub(crate) fn user_by_number(&self, number: &str) -> Option<Option<User>> {
        lock(&self.by_number).get(number).cloned()
    }

    /// Caches what a read begun at `generation` found for `number`.
    pub(crate) fn put_user_by_number(&self, generation: u64, number: &str, user: Option<User>) {
        let mut map = lock(&self.by_number);
        if self.generation() == generation {
            bounded_insert(&mut map, number.to_owned(), user);
        }
    }

    /// The cached devices of a user.
    pub(crate) fn devices_of_user(&self, user: &UserId) -> Option<Vec<Device>> {
        lock(&self.devices).get(user).cloned()
    }

    /// Caches what a read begun at `generation` found for `user`.
    pub(crate) fn put_devices(&self, generation: u64, user: &UserId, devices: Vec<Device>) {
        let mut map = lock(&self.devices);
        if self.generation() == generation {
            bounded_insert(&mut map, user.clone(), devices);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmaster_core::{TenantId, Timestamp};

    fn user(id: &str) -> User {
        User {
            id: UserId::new(id),
            tenant_id: TenantId::new("t"),
            name: id.into(),
            numbers: vec!["+15550001".into()],
            call_waiting: false,
            voicemail_enabled: false,
            created_at: Timestamp::from_millis(1),
        }
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_cached() {
        let cache = DirectoryCache::default();
        let before = cache.generation();
        cache.invalidate();
        cache.put_user_by_number(before, "+15550001", Some(user("old")));
        assert_eq!(cache.user_by_number("+15550001"), None);

        let now = cache.generation();
        cache.put_user_by_number(now, "+15550001", None);
        assert_eq!(cache.user_by_number("+15550001"), Some(None));
        cache.invalidate();
        assert_eq!(cache.user_by_number("+15550001"), None);
    }
}
