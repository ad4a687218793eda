//! The active-call registry: who is on a call right now (spec §9.2).

use ringmaster_core::{CallSessionId, CallState, DeviceId, Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// A user's call that a device has answered (in progress).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCall {
    /// The user on the call.
    pub user_id: UserId,
    /// The call.
    pub call_session_id: CallSessionId,
    /// The device that answered, if known.
    pub device_id: Option<DeviceId>,
    /// When the call became active (the device answered).
    pub started_at: Timestamp,
    /// The device's platform (`ios`, `android`, `web`), if known.
    #[serde(default)]
    pub platform: Option<String>,
    /// The device's canonical state on the call (`ACTIVE`, `ON_HOLD`, ...).
    pub state: CallState,
    /// Since when it is in that state.
    pub since: Timestamp,
}

/// A registry change applied inside a [`Commit`](crate::Commit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryChange {
    /// Marks the call active (replacing the entry of the same call). Refused with
    /// [`CommitOutcome::Busy`](crate::CommitOutcome::Busy) when the user already has another
    /// active call and has no call waiting.
    Set(ActiveCall),
    /// Removes the user's entry for this call only; a no-op if it is absent.
    Clear {
        /// The user.
        user_id: UserId,
        /// The call that ended.
        call_session_id: CallSessionId,
    },
}
