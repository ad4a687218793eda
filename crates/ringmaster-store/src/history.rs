//! Call history: one record per call, one row per leg, and an append-only timeline.

use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

use crate::directory::string_enum;
use crate::error::StoreError;

/// Which way a call went, seen from the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// Someone called the user.
    Inbound,
    /// The user called out from a device.
    Outbound,
}

/// How far a call got; the last status written wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// Devices are ringing.
    Ringing,
    /// A device answered; the bridge is not confirmed yet.
    Answered,
    /// Caller and device are connected.
    Bridged,
    /// Nobody answered (ring timeout or caller hung up while ringing).
    Missed,
    /// The caller was sent to voicemail.
    Voicemail,
    /// The call was answered and has ended.
    Ended,
    /// The call could not be connected (e.g. the bridge failed twice).
    Failed,
    /// The user was already on a call.
    Busy,
    /// A device declined the call for every device of the user (not a missed call).
    Declined,
}

string_enum!(CallDirection, "direction", { Inbound => "inbound", Outbound => "outbound" });
string_enum!(CallStatus, "status", {
    Ringing => "ringing",
    Answered => "answered",
    Bridged => "bridged",
    Missed => "missed",
    Voicemail => "voicemail",
    Ended => "ended",
    Failed => "failed",
    Busy => "busy",
    Declined => "declined",
});

/// The history row of one call, upserted by `call_session_id` (exactly one per call).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call.
    pub call_session_id: CallSessionId,
    /// The user the call belongs to; an upsert may not change it.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// Inbound or outbound.
    pub direction: CallDirection,
    /// Calling number or URI.
    pub from: String,
    /// Called number or URI.
    pub to: String,
    /// How far the call got.
    pub status: CallStatus,
    /// The device that answered.
    pub answered_device: Option<DeviceId>,
    /// When the call arrived (or was placed).
    pub started_at: Timestamp,
    /// When a device answered.
    pub answered_at: Option<Timestamp>,
    /// When the caller and the device were connected; billing counts from here.
    #[serde(default)]
    pub bridged_at: Option<Timestamp>,
    /// When the call ended.
    pub ended_at: Option<Timestamp>,
    /// Telnyx hangup cause or our own reason.
    pub hangup_cause: Option<String>,
    /// Voicemail or call recording.
    pub recording_url: Option<String>,
    /// Quality summary (MOS, jitter, ...) as reported.
    pub quality: Option<Value>,
}

impl CallRecord {
    /// Talk time in whole seconds, rounded up, from the bridge to the end; zero unless the
    /// call was bridged and ended (a device's answer alone bills nothing: the bridge may fail).
    pub fn billable_seconds(&self) -> u64 {
        match (self.bridged_at, self.ended_at) {
            (Some(bridged), Some(ended)) => {
                let ms = ended.as_millis().saturating_sub(bridged.as_millis());
                ms.div_ceil(1000)
            }
            _ => 0,
        }
    }

    /// Billed minutes: talk time rounded up to the next whole minute.
    pub fn billing_minutes(&self) -> u64 {
        self.billable_seconds().div_ceil(60)
    }
}

/// The ledger unit of a call billed by the minute (spec §5.2 `SIMPLE_CALL_MINUTE`).
pub const SIMPLE_CALL_MINUTE: &str = "simple_call_minute";

/// A call's billing record (spec §5.2 ledger): written once, when the call ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRecord {
    /// The call; one record per call.
    pub call_session_id: CallSessionId,
    /// The user billed.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// Ledger unit ([`SIMPLE_CALL_MINUTE`]).
    pub unit: String,
    /// Whole minutes billed (talk time from the bridge, rounded up).
    pub quantity: u64,
    /// The talk time in seconds behind `quantity`.
    pub billable_seconds: u64,
    /// When it was written.
    pub created_at: Timestamp,
}

impl BillingRecord {
    /// The record for a call's final history row.
    pub fn for_call(call: &CallRecord, at: Timestamp) -> Self {
        Self {
            call_session_id: call.call_session_id.clone(),
            user_id: call.user_id.clone(),
            tenant_id: call.tenant_id.clone(),
            unit: SIMPLE_CALL_MINUTE.to_owned(),
            quantity: call.billing_minutes(),
            billable_seconds: call.billable_seconds(),
            created_at: at,
        }
    }
}

/// One device leg of a call, upserted by `call_control_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRecord {
    /// Telnyx `call_control_id` of the leg.
    pub call_control_id: CallControlId,
    /// The call the leg belongs to; an upsert may not change it.
    pub call_session_id: CallSessionId,
    /// The device dialled (`None` for the caller's leg).
    pub device_id: Option<DeviceId>,
    /// The leg's state as the orchestrator names it (lowercase, `_` allowed).
    pub status: String,
    /// When the leg was dialled.
    pub started_at: Timestamp,
    /// When the leg answered.
    pub answered_at: Option<Timestamp>,
    /// When the leg ended.
    pub ended_at: Option<Timestamp>,
    /// Why the leg ended.
    pub hangup_cause: Option<String>,
}

/// Who reported a timeline entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimelineSource {
    /// The coordinator (webhooks, timers, commands).
    Backend,
    /// A device reporting its own transition.
    Device,
}

string_enum!(TimelineSource, "source", { Backend => "backend", Device => "device" });

/// One event in a call's append-only timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The call.
    pub call_session_id: CallSessionId,
    /// When it happened.
    pub at: Timestamp,
    /// Who reported it.
    pub source: TimelineSource,
    /// The device concerned, if any.
    pub device_id: Option<DeviceId>,
    /// What happened (`webhook.call.answered`, `device.transition`, ...).
    pub kind: String,
    /// State before, for transitions.
    pub from_state: Option<String>,
    /// State after, for transitions.
    pub to_state: Option<String>,
    /// Anything else worth keeping.
    pub detail: Value,
}

/// A call with its legs and timeline, as shown to its user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallDetail {
    /// The history record.
    pub call: CallRecord,
    /// Legs in the order they were dialled.
    pub legs: Vec<LegRecord>,
    /// Timeline in the order it was appended.
    pub timeline: Vec<TimelineEntry>,
    /// The billing record, once the call has ended.
    pub billing: Option<BillingRecord>,
}

/// One page of a newest-first listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass to the next call to continue; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Position in a user's history: the last record of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HistoryCursor {
    pub(crate) started_at: Timestamp,
    pub(crate) call_session_id: CallSessionId,
}

impl HistoryCursor {
    /// The cursor that continues after `record`.
    pub(crate) fn after(record: &CallRecord) -> Self {
        Self {
            started_at: record.started_at,
            call_session_id: record.call_session_id.clone(),
        }
    }

    /// Whether `record` sorts after this cursor in newest-first order.
    pub(crate) fn precedes(&self, record: &CallRecord) -> bool {
        (record.started_at, record.call_session_id.as_str())
            < (self.started_at, self.call_session_id.as_str())
    }
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.started_at.as_millis(),
            self.call_session_id
        )
    }
}

impl FromStr for HistoryCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::invalid("cursor", "not a cursor returned by a previous page");
        if s.len() > 2 * crate::limits::MAX_ID_LEN {
            return Err(bad());
        }
        let (ms, id) = s.split_once(':').ok_or_else(bad)?;
        let ms: u64 = ms.parse().map_err(|_| bad())?;
        if id.is_empty() || ms > crate::limits::MAX_TIMESTAMP {
            return Err(bad());
        }
        Ok(Self {
            started_at: Timestamp::from_millis(ms),
            call_session_id: CallSessionId::new(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bridged: Option<u64>, ended: Option<u64>) -> CallRecord {
        CallRecord {
            call_session_id: CallSessionId::new("s"),
            user_id: UserId::new("u"),
            tenant_id: TenantId::new("t"),
            direction: CallDirection::Inbound,
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            status: CallStatus::Ended,
            answered_device: None,
            started_at: Timestamp::from_millis(1_000),
            answered_at: bridged.map(|ms| Timestamp::from_millis(ms - 500)),
            bridged_at: bridged.map(Timestamp::from_millis),
            ended_at: ended.map(Timestamp::from_millis),
            hangup_cause: None,
            recording_url: None,
            quality: None,
        }
    }

    #[test]
    fn billing_rounds_up_to_the_second_and_the_minute() {
        let r = record(Some(10_000), Some(71_001));
        assert_eq!(r.billable_seconds(), 62);
        assert_eq!(r.billing_minutes(), 2);
        let r = record(Some(10_000), Some(10_400));
        assert_eq!(r.billable_seconds(), 1);
        assert_eq!(r.billing_minutes(), 1);
        let r = record(Some(10_000), Some(70_000));
        assert_eq!(r.billable_seconds(), 60);
        assert_eq!(r.billing_minutes(), 1);
    }

    #[test]
    fn a_call_answered_but_never_bridged_bills_nothing() {
        let mut r = record(None, Some(90_000));
        r.answered_at = Some(Timestamp::from_millis(10_000));
        assert_eq!(r.billable_seconds(), 0);
        let billing = BillingRecord::for_call(&r, Timestamp::from_millis(90_000));
        assert_eq!(
            (billing.quantity, billing.unit.as_str()),
            (0, SIMPLE_CALL_MINUTE)
        );
    }

    #[test]
    fn unanswered_or_ongoing_calls_bill_nothing() {
        assert_eq!(record(None, Some(90_000)).billing_minutes(), 0);
        assert_eq!(record(Some(10_000), None).billable_seconds(), 0);
        assert_eq!(record(Some(10_000), Some(10_000)).billing_minutes(), 0);
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = HistoryCursor {
            started_at: Timestamp::from_millis(42),
            call_session_id: CallSessionId::new("v3:abc:def"),
        };
        assert_eq!(c.to_string().parse::<HistoryCursor>().unwrap(), c);
        for bad in ["", "42", "x:abc", "42:", "-1:abc", &"9".repeat(600)] {
            assert!(matches!(
                bad.parse::<HistoryCursor>(),
                Err(StoreError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [
            CallStatus::Ringing,
            CallStatus::Answered,
            CallStatus::Bridged,
            CallStatus::Missed,
            CallStatus::Voicemail,
            CallStatus::Ended,
            CallStatus::Failed,
            CallStatus::Busy,
            CallStatus::Declined,
        ] {
            assert_eq!(s.as_str().parse::<CallStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("RINGING".parse::<CallStatus>().is_err());
    }
}
