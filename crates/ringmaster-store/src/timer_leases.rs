//! Session timer leases kept in process memory, for the backends that serve one process (the
//! memory store and SQLite; PostgreSQL keeps them in `sessions` columns). A lease names the
//! session version it was claimed at: every commit bumps the version, so a commit ends the
//! lease without the commit path touching this table, and the session's next deadline is
//! claimable at once.

use ringmaster_core::{CallSessionId, Timestamp};
use std::collections::HashMap;

/// Who holds each session's timer, at which version, and until when.
#[derive(Debug, Default)]
pub(crate) struct TimerLeases(HashMap<CallSessionId, TimerLease>);

#[derive(Debug)]
struct TimerLease {
    version: u64,
    owner: String,
    until: Timestamp,
}

impl TimerLeases {
    /// Drops leases expired at `now` and counts those another owner may still hold: how far
    /// past `limit` a claim must read so held sessions do not use up the limit.
    pub(crate) fn held_by_others(&mut self, owner: &str, now: Timestamp) -> usize {
        self.0.retain(|_, lease| lease.until > now);
        self.0.values().filter(|lease| lease.owner != owner).count()
    }

    /// Claims for `owner` until `until` the first `limit` of `due` (id, current version,
    /// deadline; earliest first) that no other owner holds at their current version.
    pub(crate) fn claim(
        &mut self,
        due: impl IntoIterator<Item = (CallSessionId, u64, Timestamp)>,
        limit: usize,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Vec<(CallSessionId, Timestamp)> {
        let mut claimed = Vec::new();
        for (id, version, deadline) in due {
            if claimed.len() >= limit {
                break;
            }
            let held = self.0.get(&id).is_some_and(|lease| {
                lease.owner != owner && lease.version == version && lease.until > now
            });
            if held {
                continue;
            }
            self.0.insert(
                id.clone(),
                TimerLease {
                    version,
                    owner: owner.to_owned(),
                    until,
                },
            );
            claimed.push((id, deadline));
        }
        claimed
    }
}
