//! The agent's durable state: what a crash or reboot must not lose.

use crate::error::SnapshotError;
use ringmaster_core::{Call, CallSessionId, CallState, DeviceId, DismissReason};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Snapshot format written by this version.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Most calls a device keeps at once.
pub const MAX_CALLS: usize = 16;
/// Most finished calls remembered (to drop late pushes and late SIP for them).
pub const MAX_ENDED: usize = 64;
/// Longest id accepted (call session, device).
pub const MAX_ID_LEN: usize = 128;
/// Longest caller number accepted.
pub const MAX_NUMBER_LEN: usize = 256;
/// Longest transition history kept per call.
pub const MAX_HISTORY: usize = 256;
/// Largest serialised snapshot accepted.
pub const MAX_SNAPSHOT_BYTES: usize = 256 << 10;

/// Everything the platform stores for the agent (iOS UserDefaults, Android SharedPreferences,
/// web localStorage), replaced whole on every `Effect::Persist`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The device.
    pub device_id: DeviceId,
    /// The next report sequence number; it must survive restarts so the backend does not drop
    /// new reports as repeats.
    pub next_seq: u64,
    /// Calls in a state that must survive a crash (RINGING_INBOUND and connected states).
    pub calls: Vec<PersistedCall>,
    /// Recently finished calls, oldest first.
    pub ended: Vec<Tombstone>,
}

/// A call kept for crash recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedCall {
    /// The call.
    pub call_session_id: CallSessionId,
    /// Caller number, for the missed-call notification.
    pub from: Option<String>,
    /// The canonical call with its history (replayed and checked on load).
    pub call: Call,
}

/// A call that is over (or was dismissed before it rang here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    /// The call.
    pub call_session_id: CallSessionId,
    /// Its final state here; `None` if it never rang on this device.
    pub state: Option<CallState>,
    /// The backend's reason, when one was received.
    pub reason: Option<DismissReason>,
}

impl Snapshot {
    /// Parses a stored snapshot, refusing oversized or malformed data.
    pub fn from_json(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                bytes: bytes.len(),
                max: MAX_SNAPSHOT_BYTES,
            });
        }
        let snapshot: Snapshot =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    /// Serialises the snapshot.
    pub fn to_json(&self) -> Vec<u8> {
        // A snapshot holds only strings, numbers and enums: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks every bound and that only persistable calls are present.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        if self.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format(self.format));
        }
        check_id("device id", self.device_id.as_str())?;
        if self.calls.len() > MAX_CALLS {
            return Err(SnapshotError::Invalid(format!(
                "{} calls, at most {MAX_CALLS}",
                self.calls.len()
            )));
        }
        if self.ended.len() > MAX_ENDED {
            return Err(SnapshotError::Invalid(format!(
                "{} ended calls, at most {MAX_ENDED}",
                self.ended.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for pc in &self.calls {
            check_id("call_session_id", pc.call_session_id.as_str())?;
            if let Some(from) = &pc.from {
                check_number(from)?;
            }
            if !seen.insert(&pc.call_session_id) {
                return Err(SnapshotError::Invalid(format!(
                    "call {} listed twice",
                    pc.call_session_id
                )));
            }
            if !pc.call.must_persist() {
                return Err(SnapshotError::NotPersistable {
                    call_session_id: pc.call_session_id.clone(),
                    state: pc.call.state(),
                });
            }
            if pc.call.history().len() > MAX_HISTORY {
                return Err(SnapshotError::Invalid(format!(
                    "call {} has more than {MAX_HISTORY} transitions",
                    pc.call_session_id
                )));
            }
        }
        for t in &self.ended {
            check_id("call_session_id", t.call_session_id.as_str())?;
        }
        Ok(())
    }
}

pub(crate) fn check_id(what: &str, id: &str) -> Result<(), SnapshotError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(SnapshotError::Invalid(format!(
            "{what} must be 1..={MAX_ID_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_number(number: &str) -> Result<(), SnapshotError> {
    if number.len() > MAX_NUMBER_LEN || number.chars().any(char::is_control) {
        return Err(SnapshotError::Invalid(format!(
            "caller number must be at most {MAX_NUMBER_LEN} bytes without control characters"
        )));
    }
    Ok(())
}
