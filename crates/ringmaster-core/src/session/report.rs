//! Device reports and the published per-device state: every `call_state_changed`, the backend's
//! own (ringing, bridged, ended) and the devices' reports, is built here so that its
//! `previous_state` and `version` come from one place.

use super::effect::{
    ActiveCall, Channel, Effect, Notification, NotifyEvent, RegistryUpdate, ReportMeta,
    StateChange, TimelineEntry,
};
use super::error::SessionError;
use super::input::Input;
use super::leg::RingTarget;
use super::{check_address, Phase, Session, ANCHOR};
use crate::ids::DeviceId;
use crate::state::{CallState, Direction, Platform};
use crate::table::{row_for, rows_between};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What the session knows of one device's state on this call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceView {
    pub device: DeviceId,
    /// The last state published for the device (by the backend or by its own report).
    pub shown: CallState,
    /// The last state the device itself reported, with that report's `seq`.
    pub reported: Option<(u64, CallState)>,
}

impl Session {
    fn view(&self, device: &DeviceId) -> Option<&DeviceView> {
        self.views.iter().find(|v| &v.device == device)
    }

    fn view_mut(&mut self, device: &DeviceId) -> &mut DeviceView {
        let at = match self.views.iter().position(|v| &v.device == device) {
            Some(at) => at,
            None => {
                self.views.push(DeviceView {
                    device: device.clone(),
                    shown: CallState::Idle,
                    reported: None,
                });
                self.views.len() - 1
            }
        };
        &mut self.views[at]
    }

    /// The last state published for `device` (`IDLE` before anything was).
    pub(super) fn shown_state(&self, device: &DeviceId) -> CallState {
        self.view(device).map_or(CallState::Idle, |v| v.shown)
    }

    fn platform_of(&self, device: &DeviceId) -> Option<String> {
        self.legs
            .iter()
            .filter_map(|l| l.target())
            .find(|t| &t.device_id == device)
            .map(|t| t.platform.clone())
    }

    /// Publishes `device`'s move to `to` as `call_state_changed` with a fresh version, and
    /// records it in the timeline. `report` is set when the device reported it itself.
    pub(super) fn publish_state(
        &mut self,
        device: &DeviceId,
        to: CallState,
        report: Option<ReportMeta>,
        exclude_socket: Option<String>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        let from = self.shown_state(device);
        self.view_mut(device).shown = to;
        self.bump();
        let event = if report.is_some() {
            "device.transition"
        } else {
            "state"
        };
        fx.push(Effect::Timeline(TimelineEntry {
            call_session_id: self.id.clone(),
            at: now,
            event: event.to_owned(),
            device: Some(device.clone()),
            detail: None,
            change: Some(StateChange { from, to, report }),
        }));
        fx.push(Effect::Notify(Notification {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            call_session_id: self.id.clone(),
            channel: Channel::WebSocket,
            event: NotifyEvent::CallStateChanged {
                device: Some(device.clone()),
                platform: self.platform_of(device),
                state: to,
                previous_state: from,
                version: self.version,
            },
            exclude_socket,
        }));
        let on_call = self
            .registry_target()
            .is_some_and(|t| &t.device_id == device);
        if self.registry_set && on_call && !to.is_terminal() {
            self.set_registry(to, now, fx);
        }
    }

    /// The device the user is on this call with: the inbound winner, or the calling device.
    fn registry_target(&self) -> Option<&RingTarget> {
        match self.direction {
            Direction::Inbound => self.winner.and_then(|w| self.legs[w].target()),
            Direction::Outbound => self.legs[ANCHOR].target(),
        }
    }

    /// Writes (or rewrites) the user's active-call entry for this call's device in `state`.
    pub(super) fn set_registry(&mut self, state: CallState, now: Timestamp, fx: &mut Vec<Effect>) {
        let Some(t) = self.registry_target().cloned() else {
            return;
        };
        let remote = match self.direction {
            Direction::Inbound => self.from.clone(),
            Direction::Outbound => self.to.clone(),
        };
        fx.push(Effect::Registry(RegistryUpdate::Set(ActiveCall {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            call_session_id: self.id.clone(),
            device: t.device_id,
            platform: t.platform,
            direction: self.direction,
            remote,
            started_at: self.registered_at.unwrap_or(now),
            state,
            since: now,
        })));
        self.registered_at.get_or_insert(now);
        self.registry_set = true;
    }

    /// Leg `i` rings (its `call.initiated` came): the backend's view of the device moves on.
    /// Inbound, the device rings; outbound, the calling device connects, then the destination
    /// rings. Nothing is published when the device already said as much itself.
    pub(super) fn leg_ringing(&mut self, i: usize, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase != Phase::Ringing || self.legs[i].is_out() {
            return;
        }
        let (device, to) = match (self.direction, self.legs[i].target(), i) {
            (Direction::Inbound, Some(t), _) => (t.device_id.clone(), CallState::RingingInbound),
            (Direction::Outbound, Some(t), ANCHOR) => {
                let to = if t.platform == Platform::Web.as_str() {
                    CallState::Requesting
                } else {
                    CallState::Connecting
                };
                (t.device_id.clone(), to)
            }
            (Direction::Outbound, None, _) => match self.legs[ANCHOR].device() {
                Some(d) => (d.clone(), CallState::RingingOutbound),
                None => return,
            },
            _ => return,
        };
        if self.shown_state(&device) != to {
            self.publish_state(&device, to, None, None, now, fx);
        }
    }

    /// Handles `Input::DeviceReport` (any other input is ignored).
    pub(super) fn on_device_report(
        &mut self,
        input: Input,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let Input::DeviceReport {
            device,
            seq,
            from,
            to,
            trigger,
            at,
            exclude_socket,
            channel,
        } = input
        else {
            return Ok(());
        };
        if let Some(socket) = &exclude_socket {
            check_address("socket id", socket)?;
        }
        let platform = self
            .platform_of(&device)
            .ok_or_else(|| SessionError::UnknownDevice {
                device: device.clone(),
            })?;
        let last = self.view(&device).and_then(|v| v.reported);
        if last.is_some_and(|(last_seq, _)| seq <= last_seq) {
            // A retry or an overtaken report: acknowledged, nothing changes.
            return Ok(());
        }
        if self.phase == Phase::Ended {
            return Err(SessionError::CallEnded);
        }
        if let Some(t) = &trigger {
            t.validate()?;
        }
        let parsed: Option<Platform> = platform.parse().ok();
        let direction = self.direction;
        let fits = |row: &crate::table::TransitionRow| {
            row.to == to
                && row.allows(direction)
                && parsed.is_some_and(|p| row.platforms.contains(&p))
        };
        let legal = match &trigger {
            Some(t) => row_for(from, t.kind()).is_some_and(fits),
            None => rows_between(from, to).any(fits),
        };
        if !legal {
            return Err(SessionError::IllegalTransition {
                from,
                to,
                via: trigger.map(|t| format!(" on {t}")).unwrap_or_default(),
                direction,
                platform,
            });
        }
        if let Some((_, state)) = last {
            if state != from {
                return Err(SessionError::StateMismatch { last: state, from });
            }
        }
        // The device's own account is the truth about its state: `previous_state` is what it
        // reported coming from, whatever the backend published last.
        self.view_mut(&device).shown = from;
        self.view_mut(&device).reported = Some((seq, to));
        let meta = ReportMeta {
            seq,
            trigger,
            reported_at: at,
            platform,
            channel,
        };
        self.publish_state(&device, to, Some(meta), exclude_socket, now, fx);
        self.native_reported(to, now, fx);
        Ok(())
    }
}
