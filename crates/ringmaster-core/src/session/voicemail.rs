//! Voicemail after an unanswered inbound call: answer, greet, record, attach the recording.

use super::config::GREETING_ALLOWANCE_SECS;
use super::effect::{Action, Effect, LegState};
use super::input::CommandError;
use super::leg::Release;
use super::{Outcome, Phase, Session, ANCHOR};
use crate::dismissal::DismissReason;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    /// Waiting for the caller's leg to be answered.
    Answering,
    /// Speaking the greeting.
    Greeting,
    /// Recording the message.
    Recording,
    /// The caller is gone; waiting for `call.recording.saved`.
    AwaitingRecording,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VoicemailState {
    pub stage: Stage,
    /// Ends the stage: hang up a caller who stays too long, or stop waiting for the recording.
    pub deadline: Timestamp,
    pub speak_command: Option<String>,
    pub record_command: Option<String>,
}

impl Session {
    /// Ringing ended without an answer: voicemail if the user has one, else release the caller
    /// with `how` and close with `outcome`.
    pub(super) fn unanswered(
        &mut self,
        how: Release,
        outcome: Outcome,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        let Some(vm) = self.config.voicemail.clone() else {
            self.release(ANCHOR, how, fx);
            self.finalize(outcome, now, fx);
            return;
        };
        if self.legs[ANCHOR].is_out() {
            self.finalize(outcome, now, fx);
            return;
        }
        self.phase = Phase::Voicemail;
        self.bump();
        let allowance = GREETING_ALLOWANCE_SECS + u64::from(vm.max_length_secs);
        self.voicemail = Some(VoicemailState {
            stage: Stage::Answering,
            deadline: now + Duration::from_secs(allowance),
            speak_command: None,
            record_command: None,
        });
        self.timeline("voicemail", None, None, now, fx);
        if self.legs[ANCHOR].state == LegState::Answered {
            self.speak(fx);
        } else {
            self.answer_anchor(fx);
        }
        self.history(false, fx);
    }

    fn stage(&self) -> Option<Stage> {
        if self.phase != Phase::Voicemail {
            return None;
        }
        self.voicemail.as_ref().map(|v| v.stage)
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(v) = self.voicemail.as_mut() {
            v.stage = stage;
        }
    }

    fn speak(&mut self, fx: &mut Vec<Effect>) {
        let (Some(vm), Some(ccid)) = (
            self.config.voicemail.clone(),
            self.legs[ANCHOR].ccid.clone(),
        ) else {
            return;
        };
        let action = Action::Speak {
            ccid,
            text: vm.greeting,
            voice: vm.voice,
            language: vm.language,
        };
        let id = self.command(action, fx);
        self.set_stage(Stage::Greeting);
        if let Some(v) = self.voicemail.as_mut() {
            v.speak_command = Some(id);
        }
    }

    fn record(&mut self, fx: &mut Vec<Effect>) {
        let (Some(vm), Some(ccid)) = (
            self.config.voicemail.clone(),
            self.legs[ANCHOR].ccid.clone(),
        ) else {
            return;
        };
        let action = Action::RecordStart {
            ccid,
            max_length_secs: vm.max_length_secs,
            play_beep: true,
        };
        let id = self.command(action, fx);
        self.set_stage(Stage::Recording);
        if let Some(v) = self.voicemail.as_mut() {
            v.record_command = Some(id);
        }
    }

    pub(super) fn voicemail_anchor_answered(&mut self, fx: &mut Vec<Effect>) {
        if self.stage() == Some(Stage::Answering) {
            self.speak(fx);
        }
    }

    pub(super) fn voicemail_speak_ended(&mut self, fx: &mut Vec<Effect>) {
        if self.stage() == Some(Stage::Greeting) {
            self.record(fx);
        }
    }

    pub(super) fn voicemail_command_result(
        &mut self,
        command_id: &str,
        result: Result<(), CommandError>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        let (Some(stage), Some(vm), Err(err)) = (self.stage(), self.voicemail.as_ref(), result)
        else {
            return;
        };
        let is = |c: &Option<String>| c.as_deref() == Some(command_id);
        if stage == Stage::Greeting && is(&vm.speak_command) {
            // A message without a greeting beats no message.
            self.timeline("greeting_failed", None, Some(err.message), now, fx);
            self.record(fx);
        } else if stage == Stage::Recording && is(&vm.record_command) {
            self.timeline("recording_failed", None, Some(err.message), now, fx);
            self.finalize_voicemail(now, fx);
        }
    }

    pub(super) fn voicemail_caller_hangup(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        match self.stage() {
            Some(Stage::Recording) if self.recording_url.is_none() => self.await_recording(now),
            Some(Stage::AwaitingRecording) => {}
            Some(_) => self.finalize_voicemail(now, fx),
            None => {}
        }
    }

    fn await_recording(&mut self, now: Timestamp) {
        let wait = self
            .config
            .voicemail
            .as_ref()
            .map_or(0, |vm| u64::from(vm.recording_wait_secs));
        if let Some(v) = self.voicemail.as_mut() {
            v.stage = Stage::AwaitingRecording;
            v.deadline = now + Duration::from_secs(wait);
        }
    }

    pub(super) fn voicemail_recording_saved(
        &mut self,
        url: String,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.stage().is_none() || self.recording_url.is_some() {
            return;
        }
        self.recording_url = Some(url);
        self.timeline("recording_saved", None, None, now, fx);
        self.finalize_voicemail(now, fx);
    }

    pub(super) fn voicemail_recording_failed(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        if matches!(
            self.stage(),
            Some(Stage::Recording | Stage::AwaitingRecording)
        ) {
            self.timeline("recording_failed", None, None, now, fx);
            self.finalize_voicemail(now, fx);
        }
    }

    pub(super) fn voicemail_deadline(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.timeline("voicemail_deadline", None, None, now, fx);
        match self.stage() {
            Some(Stage::Recording) => {
                self.release(ANCHOR, Release::Hangup, fx);
                self.await_recording(now);
            }
            Some(_) => self.finalize_voicemail(now, fx),
            None => {}
        }
    }

    /// Closes a voicemail: with a recording it is a voicemail, else it is what ringing was.
    pub(super) fn finalize_voicemail(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        let outcome = if self.recording_url.is_some() {
            Outcome::Voicemail
        } else {
            match self.ring_outcome {
                Some(DismissReason::DeclinedElsewhere { .. }) => Outcome::Declined,
                Some(DismissReason::Busy) => Outcome::Busy,
                _ => Outcome::Missed,
            }
        };
        self.finalize(outcome, now, fx);
    }
}
