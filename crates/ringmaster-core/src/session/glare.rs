//! Glare: calls that cross. A user calling back the number whose call to them is ringing
//! ([`Input::CallBack`](super::Input::CallBack)), and two users of one deployment calling each
//! other at once ([`Input::Replaced`](super::Input::Replaced)).

use super::effect::{Direction, Effect};
use super::error::SessionError;
use super::{Outcome, Phase, Session, ANCHOR};
use crate::dismissal::DismissReason;
use crate::ids::{CallSessionId, DeviceId};
use crate::state::CallState;
use crate::time::Timestamp;

impl Session {
    /// The user asked `device` to call the caller of this ringing call: the device answers its
    /// leg instead, so nothing is dialled. The answer itself comes as the leg's `call.answered`
    /// like any other; this only records why it is coming.
    pub(super) fn on_call_back(
        &mut self,
        device: &DeviceId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let i = self
            .device_leg(device)
            .ok_or_else(|| SessionError::UnknownDevice {
                device: device.clone(),
            })?;
        if self.direction != Direction::Inbound
            || self.phase != Phase::Ringing
            || self.legs[i].is_out()
        {
            return Err(SessionError::NotRinging {
                status: self.status(),
            });
        }
        let detail = Some(format!(
            "the user called {} back from this device; its ringing leg is answered instead",
            self.from
        ));
        self.timeline("call_back", Some(device), detail, now, fx);
        Ok(())
    }

    /// This call lost a glare to `survivor`: it ends, on every device, with reason `replaced`.
    pub(super) fn on_replaced(
        &mut self,
        survivor: &CallSessionId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if survivor == &self.id {
            return Err(SessionError::Invalid(
                "a call cannot be replaced by itself".to_owned(),
            ));
        }
        match self.phase {
            Phase::Ended => return Ok(()),
            Phase::Ringing => {}
            _ => {
                return Err(SessionError::NotRinging {
                    status: self.status(),
                })
            }
        }
        let detail = Some(format!("glare: {survivor} goes on"));
        self.timeline("replaced", None, detail, now, fx);
        self.ring_outcome = Some(DismissReason::Replaced);
        self.ring_deadline = None;
        match self.direction {
            Direction::Inbound => {
                for j in 1..self.legs.len() {
                    self.release(j, super::leg::Release::Hangup, fx);
                }
            }
            Direction::Outbound => {
                if let Some(d) = self.legs[ANCHOR].device().cloned() {
                    let shown = self.shown_state(&d);
                    if shown != CallState::Idle && !shown.is_terminal() {
                        self.publish_state(&d, CallState::Ended, None, None, now, fx);
                    }
                }
            }
        }
        self.dismiss(DismissReason::Replaced, fx);
        self.finalize(Outcome::Unanswered, now, fx);
        Ok(())
    }
}
