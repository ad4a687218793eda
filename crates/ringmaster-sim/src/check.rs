//! The invariants, checked after every event and at the end of every run.

use crate::world::{World, DISMISS_MARGIN_MS, POLL_INTERVAL_MS};
use ringmaster_core::session::{DeviceStatus, SessionStatus};
use ringmaster_core::{CallState, DismissReason};
use ringmaster_device::Channel;
use ringmaster_store::Store;
use serde::Serialize;
use std::collections::BTreeMap;

/// An invariant that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Seed of the run (replay with `ringmaster simulate --runs 1 --seed S`).
    pub seed: u64,
    /// Which invariant.
    pub invariant: String,
    /// What was seen.
    pub detail: String,
    /// The end of the run's trace up to the violation.
    pub trace: Vec<String>,
}

/// What a run measured and found.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// When the backend's session stopped ringing (answer, cancel, timeout, decline).
    pub ring_ended_at: Option<u64>,
    /// Per channel: ms from the backend ending the ring (or the device starting to ring, if
    /// later) to the device's ringer stopping.
    pub latencies: BTreeMap<Channel, Vec<u64>>,
    /// Final history rows committed.
    pub final_history_rows: u32,
    /// Compare-and-set conflicts (another node committed first).
    pub cas_conflicts: u64,
    /// Inputs the session refused.
    pub refused_inputs: u64,
    /// Commits whose active-call entry the store refused (the session was told, as on the
    /// server).
    pub registry_busy: u64,
    /// One of those refusals named another call of the user.
    pub busy_with_other_call: bool,
    /// Coordinator node crashes.
    pub node_crashes: u64,
    /// Device reports the backend saw twice.
    pub duplicate_reports: u64,
    /// Telnyx requests answered 5xx or timed out (the `api_error` fault).
    pub api_errors: u64,
    /// Effect attempts the dispatcher recorded as failed, to be retried.
    pub dispatch_retries: u64,
    /// Commands the dispatcher gave up on, the failure reported to the session.
    pub commands_given_up: u64,
    /// Effects the dispatcher abandoned.
    pub effects_abandoned: u64,
    /// Outbox rows committed for the dispatcher (host events left out).
    pub outbox_rows: u64,
    /// Effects the dispatcher recorded as done.
    pub effects_done: u64,
    /// Violations found.
    pub violations: Vec<Violation>,
}

/// The most ms a device may ring after the backend ended ringing (or after it started ringing,
/// if later): one poll period, one poll round trip, and a margin.
pub fn ring_deadline_ms(world: &World) -> u64 {
    POLL_INTERVAL_MS + 2 * world.plan().latencies.http.max_ms + DISMISS_MARGIN_MS
}

impl World {
    /// Invariants that must hold after every event.
    pub(crate) fn check_step(&mut self) {
        let Some(end) = self.obs.ring_ended_at else {
            return;
        };
        let limit = ring_deadline_ms(self);
        let now = self.now();
        for dev in 0..self.devices.len() {
            let d = &self.devices[dev];
            let Some(started) = d.ring_started else {
                continue;
            };
            if d.ring_deadline_flagged {
                continue;
            }
            let since = end.max(started);
            if now > since + limit {
                self.devices[dev].ring_deadline_flagged = true;
                let late = now - since;
                self.violation(
                    "dismissed_in_time",
                    format!("dev{dev} still rings {late}ms after the backend ended ringing"),
                );
            }
        }
    }

    /// Invariants that must hold once the run is over.
    pub(crate) fn check_end(&mut self) {
        let Some(session) = self.session() else {
            return self.violation("session_created", "no session was committed".to_owned());
        };
        if !session.is_closed() {
            let status = session.status();
            self.violation(
                "call_ends",
                format!("session still {status} at the horizon"),
            );
        }
        let live = self.telnyx.live_legs();
        if !live.is_empty() {
            self.violation("call_ends", format!("legs still up at the end: {live:?}"));
        }
        let active: Vec<_> = crate::world::block(self.store.active_calls(&self.user))
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.call_session_id == self.session_id)
            .collect();
        if !active.is_empty() {
            self.violation(
                "registry_cleared",
                format!("active-call entry left: {active:?}"),
            );
        }
        // The store refusing an entry is the busy rule at work, not a fault; turning away the
        // user's only call as busy would be.
        if session.status() == SessionStatus::Busy && !self.obs.busy_with_other_call {
            let refusals = self.obs.registry_busy;
            self.violation(
                "busy_only_on_another_call",
                format!("a lone call ended busy ({refusals} registry refusals)"),
            );
        }
        if self.obs.final_history_rows != 1 {
            let n = self.obs.final_history_rows;
            self.violation("history_once", format!("{n} final history rows"));
        }
        let missed_call = session.answered_device().is_none()
            && session.dismiss_reason().is_some_and(|r| r.is_missed());
        if missed_call && session.status() != SessionStatus::Missed {
            let status = session.status();
            self.violation(
                "missed_everywhere",
                format!("backend records a missed call as {status}"),
            );
        }
        for dev in 0..self.devices.len() {
            self.check_device_end(dev, missed_call);
        }
    }

    /// A decline pressed here may lose only to something independent of this device: another
    /// device's answer or decline, the caller hanging up, or the ring timer running out.
    fn check_decline_respected(&mut self, dev: usize) {
        let Some(session) = self.session() else {
            return;
        };
        let me = &self.devices[dev].id;
        let timer_due =
            session.created_at().as_millis() + u64::from(self.plan().ring_timeout_secs) * 1_000;
        let respected = match session.dismiss_reason() {
            Some(DismissReason::DeclinedElsewhere { .. })
            | Some(DismissReason::CallerCancelled) => true,
            Some(DismissReason::Timeout) => self.obs.ring_ended_at.is_some_and(|t| t >= timer_due),
            _ => session.answered_device().is_some_and(|w| w != me),
        };
        if !respected {
            let status = session.status();
            let reason = session.dismiss_reason().cloned();
            self.violation(
                "decline_respected",
                format!("dev{dev} declined but the backend recorded {status} ({reason:?})"),
            );
        }
    }

    fn check_device_end(&mut self, dev: usize, missed_call: bool) {
        let id = self.session_id.clone();
        let Some(agent) = self.devices[dev].agent() else {
            return self.violation("device_settles", format!("dev{dev} app never came back"));
        };
        let state = agent.call_state(&id);
        let (ringing, polling) = (agent.is_ringing(&id), agent.is_polling(&id));
        if ringing {
            self.violation("device_settles", format!("dev{dev} still rings at the end"));
        }
        if polling {
            self.violation(
                "device_settles",
                format!("dev{dev} still waits for the outcome ({state:?})"),
            );
        }
        let Some(status) = self.status_for(dev) else {
            return self.violation("agreement", format!("no backend status for dev{dev}"));
        };
        let d = &self.devices[dev];
        let rang = d.ever_rang;
        // The user's own answer or decline ends the call here whatever the backend decided
        // (a decline racing the ring timeout is recorded missed on the backend).
        let declined_here = d.declined_locally();
        let answered_here = d.answered_locally() || declined_here;
        let expected = if answered_here {
            Some(CallState::Ended)
        } else {
            match status.status {
                DeviceStatus::Missed => Some(CallState::Missed),
                DeviceStatus::Ringing => None,
                _ => Some(CallState::Ended),
            }
        };
        // A device that never rang (its deliveries all came too late) has nothing to agree on.
        let agrees = match (state, expected) {
            (None, _) => !rang,
            (Some(s), Some(e)) => s == e,
            (Some(_), None) => false,
        };
        if !agrees {
            let s = status.status;
            self.violation(
                "agreement",
                format!("dev{dev} ends {state:?} but the backend says {s:?} (rang={rang}, answered_here={answered_here})"),
            );
        }
        if declined_here {
            self.check_decline_respected(dev);
        }
        if missed_call && rang && !answered_here {
            let shown = self.devices[dev].missed_shown;
            if state != Some(CallState::Missed) || shown != 1 {
                self.violation(
                    "missed_everywhere",
                    format!("dev{dev} rang for a missed call but ends {state:?} with {shown} missed-call notifications"),
                );
            }
        }
        // The backend's view of the device, from its reports, matches the device.
        let last = self
            .backend_reports
            .get(&dev)
            .and_then(|m| m.values().rev().find(|r| r.call_session_id == id))
            .map(|r| r.to);
        if state.is_some() && last != state {
            self.violation(
                "agreement",
                format!("dev{dev} ends {state:?} but its last report to the backend says {last:?}"),
            );
        }
    }
}
