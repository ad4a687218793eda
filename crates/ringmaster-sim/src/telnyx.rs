//! The simulated Telnyx network: legs, Call Control commands (idempotent by `command_id`),
//! webhooks (duplicated, delayed, reordered) and SIP to and from the devices' SDKs.

use crate::world::{Ev, World};
use rand::Rng;
use ringmaster_core::sdk::EndCause;
use ringmaster_core::session::{
    Action, ClientStateRef, Command, CommandError, HangupCause, HangupSource, Input, ProviderEvent,
    ProviderEventKind,
};
use ringmaster_core::{CallControlId, Direction};
use ringmaster_device::{Input as DevInput, SdkState};
use ringmaster_engine::executor::command_input;
use ringmaster_engine::CommandAttempt;
use std::collections::{BTreeMap, BTreeSet};

/// `call_control_id` of the inbound caller's leg.
pub const CALLER_LEG: &str = "v3:caller-leg";

/// A SIP message from a device's SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipUp {
    /// 200 OK to the INVITE.
    Answer,
    /// 486/603 to the INVITE.
    Reject,
    /// BYE (or CANCEL) of the device's side.
    Bye,
}

/// State of one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegState {
    /// Ringing (device legs) or parked unanswered (the caller).
    Ringing,
    /// Answered.
    Answered,
    /// Hung up.
    Ended,
}

/// One leg.
#[derive(Clone, Debug)]
pub struct Leg {
    /// The device it rings; `None` for the caller.
    pub device: Option<usize>,
    /// Its state.
    pub state: LegState,
    /// Echoed in every webhook.
    pub client_state: Option<ClientStateRef>,
    /// The device's app epoch when the leg was created (SIP dies with the app).
    pub epoch: u32,
}

#[derive(Clone, Debug)]
enum Reply {
    Dial(Result<CallControlId, CommandError>),
    Done(Result<(), CommandError>),
}

/// The network's state.
#[derive(Clone, Debug, Default)]
pub struct Telnyx {
    /// Every leg by `call_control_id`.
    pub legs: BTreeMap<CallControlId, Leg>,
    executed: BTreeMap<String, Reply>,
    next_leg: u32,
    next_webhook: u64,
    /// Bridges executed: (command leg, other leg).
    pub bridges: Vec<(CallControlId, CallControlId)>,
    /// Devices whose leg was bridged to the caller.
    pub bridged_devices: BTreeSet<usize>,
    /// Commands received, repeats included.
    pub commands_received: u64,
    /// Commands executed (a repeated `command_id` is answered, not executed).
    pub commands_executed: u64,
}

impl Telnyx {
    pub(crate) fn add_caller(&mut self) {
        self.legs.insert(
            CallControlId::new(CALLER_LEG),
            Leg {
                device: None,
                state: LegState::Ringing,
                client_state: None,
                epoch: 0,
            },
        );
    }

    /// Whether the leg exists and is not hung up.
    pub fn is_alive(&self, ccid: &CallControlId) -> bool {
        self.legs
            .get(ccid)
            .is_some_and(|l| l.state != LegState::Ended)
    }

    /// Answered legs of a device.
    pub(crate) fn answered_legs_of(&self, dev: usize) -> Vec<CallControlId> {
        self.legs
            .iter()
            .filter(|(_, l)| l.device == Some(dev) && l.state == LegState::Answered)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Legs not hung up.
    pub fn live_legs(&self) -> Vec<CallControlId> {
        self.legs
            .iter()
            .filter(|(_, l)| l.state != LegState::Ended)
            .map(|(c, _)| c.clone())
            .collect()
    }
}

fn already_ended() -> CommandError {
    CommandError::call_ended("Call has already ended")
}

impl World {
    fn webhook(&mut self, ccid: &CallControlId, kind: ProviderEventKind) {
        self.telnyx.next_webhook += 1;
        let id = format!("wh-{}", self.telnyx.next_webhook);
        let cs = self
            .telnyx
            .legs
            .get(ccid)
            .and_then(|l| l.client_state.clone());
        let event = ProviderEvent::new(ccid.clone(), cs, kind);
        let mut delay = self.sample(|l| l.webhook);
        let p = self.plan.message_faults.webhook_delay;
        if self.chance(p) {
            delay += self.sample(|l| l.webhook_extra);
        }
        self.send_to_coordinator(delay, Input::Provider(event.clone()), Some(id.clone()));
        let p = self.plan.message_faults.webhook_dup;
        if self.chance(p) {
            let again = self.sample(|l| l.webhook) + self.sample(|l| l.webhook_extra);
            self.send_to_coordinator(again, Input::Provider(event), Some(id));
        }
    }

    /// Answers the request sent under `ticket`, after the API latency: the command's final
    /// `reply`, or (`None`) a 5xx/timeout, which the dispatcher retries or gives up as it
    /// would the real client's (the same give-up input the server's executor builds).
    fn reply(&mut self, ticket: u64, command: &Command, reply: Option<Reply>, error: &str) {
        let delay = self.sample(|l| l.api);
        let attempt = match reply {
            Some(Reply::Dial(result)) => {
                CommandAttempt::Answered(command_input(command, result.map(Some)))
            }
            Some(Reply::Done(result)) => {
                CommandAttempt::Answered(command_input(command, result.map(|()| None)))
            }
            None => CommandAttempt::Transient {
                message: error.to_owned(),
                retry_after: None,
                given_up: command_input(
                    command,
                    Err(CommandError {
                        code: None,
                        message: error.to_owned(),
                    }),
                ),
            },
        };
        self.at(
            delay,
            Ev::Reply {
                ticket,
                attempt: Box::new(attempt),
            },
        );
    }

    /// SIP from Telnyx to the device on a leg: the SDK reports DONE with `cause`.
    fn sip_down_done(&mut self, ccid: &CallControlId, was: LegState, cause: EndCause) {
        let Some(leg) = self.telnyx.legs.get(ccid) else {
            return;
        };
        let Some(dev) = leg.device else { return };
        let epoch = leg.epoch;
        if self.devices[dev].leg.as_ref().map(|(c, _)| c) != Some(ccid) {
            // The SDK never saw this leg's INVITE: there is no call for a CANCEL to end.
            return;
        }
        if was == LegState::Ringing && self.devices[dev].plan.faults.sip_lost {
            self.log(|| format!("CANCEL of {ccid} to dev{dev} lost (stale SDK socket)"));
            return;
        }
        let input = DevInput::Sdk {
            call_session_id: self.session_id.clone(),
            direction: Direction::Inbound,
            state: SdkState::done(self.devices[dev].platform),
            cause: cause.example(),
        };
        let delay = self.sample(|l| l.sip_down);
        self.send_to_device(delay, dev, input, Some(epoch));
    }

    fn end_leg(
        &mut self,
        ccid: &CallControlId,
        cause: HangupCause,
        source: HangupSource,
        tell_device: Option<EndCause>,
    ) {
        let Some(leg) = self.telnyx.legs.get_mut(ccid) else {
            return;
        };
        if leg.state == LegState::Ended {
            return;
        }
        let was = leg.state;
        leg.state = LegState::Ended;
        self.log(|| format!("telnyx: leg {ccid} hung up ({})", cause.as_str()));
        self.webhook(
            ccid,
            ProviderEventKind::Hangup {
                cause,
                source,
                quality: None,
            },
        );
        if let Some(end) = tell_device {
            self.sip_down_done(ccid, was, end);
        }
    }

    /// A request reaches Telnyx. Under the `api_error` fault it fails: half the time before
    /// Telnyx executed it (503), half the time after (504, the answer lost), so a retry with
    /// the same `command_id` must not execute it twice.
    pub(crate) fn telnyx_command(&mut self, cmd: Command, ticket: u64) {
        const UNAVAILABLE: &str = "telnyx: 503 Service Unavailable";
        const TIMED_OUT: &str = "telnyx: 504 Gateway Timeout";
        self.telnyx.commands_received += 1;
        let p = self.plan.message_faults.api_error;
        let failed = self.chance(p).then(|| self.rng.gen_bool(0.5));
        if failed.is_some() {
            self.obs.api_errors += 1;
        }
        let id = cmd.command_id.clone();
        if failed == Some(false) {
            self.log(|| format!("telnyx: {id} answered 503, not executed"));
            self.reply(ticket, &cmd, None, UNAVAILABLE);
            return;
        }
        if let Some(reply) = self.telnyx.executed.get(&cmd.command_id).cloned() {
            self.log(|| format!("telnyx: repeated command {id} answered, not executed"));
            let reply = failed.is_none().then_some(reply);
            self.reply(ticket, &cmd, reply, TIMED_OUT);
            return;
        }
        self.telnyx.commands_executed += 1;
        let reply = match &cmd.action {
            Action::Dial {
                client_state,
                device,
                timeout_secs,
                ..
            } => {
                self.telnyx.next_leg += 1;
                let ccid = CallControlId::new(format!("v3:leg-{}", self.telnyx.next_leg));
                let dev = device
                    .as_ref()
                    .and_then(|d| self.devices.iter().position(|x| x.id == *d));
                let epoch = dev.map_or(0, |d| self.devices[d].epoch);
                self.telnyx.legs.insert(
                    ccid.clone(),
                    Leg {
                        device: dev,
                        state: LegState::Ringing,
                        client_state: Some(client_state.clone()),
                        epoch,
                    },
                );
                self.log(|| format!("telnyx: dial {ccid} to dev{}", dev.map_or(-1, |d| d as i64)));
                self.webhook(&ccid, ProviderEventKind::Initiated);
                if let Some(dev) = dev {
                    let delay = self.sample(|l| l.sip_down);
                    self.at(
                        delay,
                        Ev::Invite {
                            dev,
                            ccid: ccid.clone(),
                            epoch,
                        },
                    );
                }
                self.at(
                    u64::from(*timeout_secs) * 1_000,
                    Ev::DialTimeout(ccid.clone()),
                );
                Reply::Dial(Ok(ccid))
            }
            Action::Answer { ccid, client_state } => match self.telnyx.legs.get_mut(ccid) {
                Some(leg) if leg.state == LegState::Ringing => {
                    leg.state = LegState::Answered;
                    leg.client_state = Some(client_state.clone());
                    self.log(|| format!("telnyx: caller {ccid} answered"));
                    self.webhook(ccid, ProviderEventKind::Answered);
                    Reply::Done(Ok(()))
                }
                Some(leg) if leg.state == LegState::Answered => Reply::Done(Ok(())),
                _ => Reply::Done(Err(already_ended())),
            },
            Action::Bridge { ccid, to_ccid } => {
                let answered = |c: &CallControlId| {
                    self.telnyx
                        .legs
                        .get(c)
                        .is_some_and(|l| l.state == LegState::Answered)
                };
                if answered(ccid) && answered(to_ccid) {
                    self.on_bridge(ccid, to_ccid);
                    Reply::Done(Ok(()))
                } else {
                    Reply::Done(Err(CommandError::new(
                        "90034",
                        "Call is not answered or has ended",
                    )))
                }
            }
            Action::Hangup { ccid } => {
                if self.telnyx.is_alive(ccid) {
                    self.end_leg(
                        ccid,
                        HangupCause::NormalClearing,
                        HangupSource::Unknown,
                        Some(EndCause::NormalClearing),
                    );
                    Reply::Done(Ok(()))
                } else {
                    Reply::Done(Err(already_ended()))
                }
            }
            Action::Reject { ccid, .. } => match self.telnyx.legs.get(ccid).map(|l| l.state) {
                Some(LegState::Ringing) => {
                    self.end_leg(
                        ccid,
                        HangupCause::CallRejected,
                        HangupSource::Callee,
                        Some(EndCause::Rejected),
                    );
                    Reply::Done(Ok(()))
                }
                _ => Reply::Done(Err(already_ended())),
            },
            Action::Speak { .. } | Action::RecordStart { .. } => Reply::Done(Ok(())),
        };
        self.telnyx
            .executed
            .insert(cmd.command_id.clone(), reply.clone());
        if failed.is_some() {
            self.log(|| format!("telnyx: {id} executed, answer lost (504)"));
        }
        let reply = failed.is_none().then_some(reply);
        self.reply(ticket, &cmd, reply, TIMED_OUT);
    }

    fn on_bridge(&mut self, a: &CallControlId, b: &CallControlId) {
        self.telnyx.bridges.push((a.clone(), b.clone()));
        let devices: Vec<usize> = [a, b]
            .iter()
            .filter_map(|c| self.telnyx.legs.get(*c).and_then(|l| l.device))
            .collect();
        for dev in &devices {
            self.telnyx.bridged_devices.insert(*dev);
        }
        self.log(|| format!("telnyx: BRIDGE {a} <-> {b} (devices {devices:?})"));
        if self.telnyx.bridged_devices.len() > 1 {
            let all = self.telnyx.bridged_devices.clone();
            self.violation(
                "one_bridge",
                format!("devices {all:?} were all bridged to the caller"),
            );
        }
        // The winner must be on record before the bridge command could be sent.
        let winner = self.session().and_then(|s| s.answered_device().cloned());
        for dev in devices {
            if winner.as_ref() != Some(&self.devices[dev].id) {
                let id = self.devices[dev].id.clone();
                self.violation(
                    "winner_recorded",
                    format!("{id} was bridged but the session's winner is {winner:?}"),
                );
            }
        }
        self.webhook(a, ProviderEventKind::Bridged);
        self.webhook(b, ProviderEventKind::Bridged);
    }

    pub(crate) fn telnyx_dial_timeout(&mut self, ccid: &CallControlId) {
        if self
            .telnyx
            .legs
            .get(ccid)
            .is_some_and(|l| l.state == LegState::Ringing)
        {
            self.end_leg(
                ccid,
                HangupCause::Timeout,
                HangupSource::Unknown,
                Some(EndCause::NoAnswer),
            );
        }
    }

    pub(crate) fn telnyx_sip_up(&mut self, ccid: &CallControlId, msg: SipUp) {
        let state = self.telnyx.legs.get(ccid).map(|l| l.state);
        match (msg, state) {
            (SipUp::Answer, Some(LegState::Ringing)) => {
                if let Some(leg) = self.telnyx.legs.get_mut(ccid) {
                    leg.state = LegState::Answered;
                }
                self.log(|| format!("telnyx: device leg {ccid} answered"));
                self.webhook(ccid, ProviderEventKind::Answered);
            }
            (SipUp::Answer, Some(LegState::Ended)) => {
                // 200 OK to a cancelled INVITE: the device gets 481 and its SDK ends the call.
                self.sip_down_done(ccid, LegState::Ringing, EndCause::NormalClearing);
            }
            (SipUp::Reject, Some(LegState::Ringing)) => {
                self.end_leg(ccid, HangupCause::CallRejected, HangupSource::Callee, None)
            }
            (SipUp::Bye, Some(LegState::Ringing | LegState::Answered)) => self.end_leg(
                ccid,
                HangupCause::NormalClearing,
                HangupSource::Callee,
                None,
            ),
            _ => {}
        }
    }

    pub(crate) fn telnyx_caller_hangup(&mut self) {
        let ccid = CallControlId::new(CALLER_LEG);
        let cause = match self.telnyx.legs.get(&ccid).map(|l| l.state) {
            Some(LegState::Ringing) => HangupCause::OriginatorCancel,
            Some(LegState::Answered) => HangupCause::NormalClearing,
            _ => return,
        };
        self.log(|| "caller hangs up".to_owned());
        self.end_leg(&ccid, cause, HangupSource::Caller, None);
    }

    pub(crate) fn telnyx_leg_lost(&mut self, ccid: &CallControlId) {
        if self.telnyx.is_alive(ccid) {
            self.log(|| format!("telnyx: media of {ccid} lost (app killed)"));
            self.end_leg(
                ccid,
                HangupCause::NormalClearing,
                HangupSource::Callee,
                None,
            );
        }
    }
}
