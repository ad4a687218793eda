//! How a handled session input becomes a [`Commit`]: the one mapping from the orchestrator's
//! session and effects to the store's rows, shared by the server's engine and the simulator so
//! both record the same thing.

use ringmaster_core::session::{
    Action, CallRecordUpdate, Channel, Direction, Effect, LegUpdate, RegistryUpdate, Session,
    SessionStatus, TimelineEntry as CoreTimelineEntry,
};
use ringmaster_core::Timestamp;
use serde_json::{json, Value};

use crate::history::{
    BillingRecord, CallDirection, CallRecord, CallStatus, LegRecord, TimelineEntry, TimelineSource,
};
use crate::registry::{ActiveCall, RegistryChange};
use crate::session::{Commit, Lane, OutboxEffect};

/// The commit that stores `session` as it is after an input, with the input's `effects`.
///
/// Outbox effects (`Effect::is_outbox`) are serialised in order; registry, history, leg and
/// timeline effects become the matching side-table rows. `timeline` holds the input's own
/// entries (webhook arrival, device report) and is written before the entries the session
/// emitted. Within one commit only the newest snapshot of a history or leg row, and the last
/// registry change of each call, is kept.
/// `expected_version` is `None` to create the session. Fails only if the session or an
/// effect cannot be serialised.
pub fn session_commit(
    session: &Session,
    expected_version: Option<u64>,
    effects: &[Effect],
    timeline: Vec<TimelineEntry>,
    dedupe_key: Option<String>,
    now: Timestamp,
) -> Result<Commit, serde_json::Error> {
    let mut commit = Commit::new(
        session.id().clone(),
        session.user().clone(),
        expected_version,
        serde_json::to_value(session)?,
        session.status().as_str(),
        now,
    );
    commit.next_deadline = session.next_deadline();
    commit.closed = session.is_closed();
    commit.dedupe_key = dedupe_key;
    commit.timeline = timeline;
    for effect in effects {
        if effect.is_outbox() {
            commit.effects.push(outbox_effect(effect)?);
            continue;
        }
        match effect {
            Effect::Registry(RegistryUpdate::Set(a)) => {
                commit.registry.push(RegistryChange::Set(ActiveCall {
                    user_id: a.user.clone(),
                    call_session_id: a.call_session_id.clone(),
                    device_id: Some(a.device.clone()),
                    started_at: a.started_at,
                    platform: Some(a.platform.clone()),
                    state: a.state,
                    since: a.since,
                }))
            }
            Effect::Registry(RegistryUpdate::Clear {
                user,
                call_session_id,
                ..
            }) => commit.registry.push(RegistryChange::Clear {
                user_id: user.clone(),
                call_session_id: call_session_id.clone(),
            }),
            Effect::History(update) => {
                let record = call_record(update);
                if update.is_final {
                    commit.billing.push(BillingRecord::for_call(&record, now));
                }
                commit.calls.push(record);
            }
            Effect::Leg(update) => {
                // A leg enters the table once Telnyx has given it an id.
                if let Some(leg) = leg_record(update, session.created_at()) {
                    commit.legs.push(leg);
                }
            }
            Effect::Timeline(entry) => commit.timeline.push(timeline_entry(entry)),
            Effect::Telnyx(_) | Effect::Notify(_) => {}
        }
    }
    for event in crate::host_event::call_events(expected_version.is_none(), effects, now) {
        commit.effects.push(OutboxEffect {
            effect: serde_json::to_value(event)?,
            lane: Lane::Host,
            order_key: None,
        });
    }
    dedupe_last(&mut commit.calls, |c| c.call_session_id.clone());
    dedupe_last(&mut commit.registry, |r| match r {
        RegistryChange::Set(a) => (a.user_id.clone(), a.call_session_id.clone()),
        RegistryChange::Clear {
            user_id,
            call_session_id,
        } => (user_id.clone(), call_session_id.clone()),
    });
    dedupe_last(&mut commit.legs, |l| l.call_control_id.clone());
    Ok(commit)
}

/// The lane an outbox effect is dispatched in.
pub fn lane_of(effect: &Effect) -> Lane {
    match effect {
        Effect::Telnyx(c) => match c.action {
            Action::Hangup { .. } | Action::Reject { .. } => Lane::Release,
            Action::Dial { .. } | Action::Answer { .. } | Action::Bridge { .. } => Lane::Setup,
            Action::Speak { .. } | Action::RecordStart { .. } => Lane::Other,
        },
        Effect::Notify(n) => match n.channel {
            Channel::WebSocket => Lane::Realtime,
            Channel::Push { .. } => Lane::Push,
        },
        _ => Lane::Other,
    }
}

/// An outbox effect as stored: serialised, with its lane and, for notifications, the target
/// whose notifications must keep their order (the user's channel, or one device's pushes).
pub fn outbox_effect(effect: &Effect) -> Result<OutboxEffect, serde_json::Error> {
    let order_key = match effect {
        Effect::Notify(n) => Some(match &n.channel {
            Channel::WebSocket => format!("ws:{}", n.user),
            Channel::Push { device, .. } => format!("push:{device}"),
        }),
        _ => None,
    };
    Ok(OutboxEffect {
        effect: serde_json::to_value(effect)?,
        lane: lane_of(effect),
        order_key,
    })
}

/// The history status of a session status. A call declined for everyone is `declined`
/// (neither missed nor talked).
pub fn call_status(status: SessionStatus) -> CallStatus {
    match status {
        SessionStatus::Ringing => CallStatus::Ringing,
        SessionStatus::Answered => CallStatus::Answered,
        SessionStatus::Bridged => CallStatus::Bridged,
        SessionStatus::Ended => CallStatus::Ended,
        SessionStatus::Declined => CallStatus::Declined,
        SessionStatus::Missed => CallStatus::Missed,
        SessionStatus::Voicemail => CallStatus::Voicemail,
        SessionStatus::Failed => CallStatus::Failed,
        SessionStatus::Busy => CallStatus::Busy,
    }
}

pub(crate) fn call_record(u: &CallRecordUpdate) -> CallRecord {
    let hangup_cause = match (&u.dismiss_reason, u.hangup_cause) {
        // The dismissal says more than the SIP cause for calls nobody took.
        (Some(reason), _) if u.answered_at.is_none() => Some(reason.code().to_owned()),
        (_, Some(cause)) => Some(cause.as_str().to_owned()),
        (Some(reason), None) => Some(reason.code().to_owned()),
        (None, None) => u.failure.as_ref().map(|_| "failed".to_owned()),
    };
    CallRecord {
        call_session_id: u.call_session_id.clone(),
        user_id: u.user.clone(),
        tenant_id: u.tenant.clone(),
        direction: match u.direction {
            Direction::Inbound => CallDirection::Inbound,
            Direction::Outbound => CallDirection::Outbound,
        },
        from: u.from.clone(),
        to: u.to.clone(),
        status: call_status(u.status),
        answered_device: u.answered_device.clone(),
        started_at: u.started_at,
        answered_at: u.answered_at,
        bridged_at: u.bridged_at,
        ended_at: u.ended_at,
        hangup_cause,
        recording_url: u.recording_url.clone(),
        quality: u.quality.clone(),
    }
}

fn leg_record(u: &LegUpdate, started_at: Timestamp) -> Option<LegRecord> {
    Some(LegRecord {
        call_control_id: u.call_control_id.clone()?,
        call_session_id: u.call_session_id.clone(),
        device_id: u.device.clone(),
        status: serde_json::to_value(u.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned()),
        started_at,
        answered_at: u.answered_at,
        ended_at: u.ended_at,
        hangup_cause: u.hangup_cause.map(|c| c.as_str().to_owned()),
    })
}

fn timeline_entry(t: &CoreTimelineEntry) -> TimelineEntry {
    let change = t.change.as_ref();
    let report = change.and_then(|c| c.report.as_ref());
    let detail = match (report, &t.detail) {
        (Some(r), _) => json!({
            "seq": r.seq,
            "trigger": r.trigger,
            "reported_at": r.reported_at,
            "platform": r.platform,
            "channel": r.channel,
        }),
        (None, Some(d)) => json!({ "detail": d }),
        (None, None) => Value::Null,
    };
    TimelineEntry {
        call_session_id: t.call_session_id.clone(),
        at: t.at,
        source: if report.is_some() {
            TimelineSource::Device
        } else {
            TimelineSource::Backend
        },
        device_id: t.device.clone(),
        kind: t.event.clone(),
        from_state: change.map(|c| c.from.as_str().to_owned()),
        to_state: change.map(|c| c.to.as_str().to_owned()),
        detail,
    }
}

/// Keeps the last item of each key, in their original order.
fn dedupe_last<T, K: PartialEq>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let keys: Vec<K> = items.iter().map(&key).collect();
    let mut i = 0;
    items.retain(|_| {
        let keep = !keys[i + 1..].contains(&keys[i]);
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmaster_core::session::{
        Action, HangupCause, HangupSource, Input, NewInbound, ProviderEvent, ProviderEventKind,
        RingTarget, SessionConfig,
    };
    use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, UserId};

    #[test]
    fn dedupe_last_keeps_the_newest_of_each_key_in_order() {
        let mut v = vec![(1, "a"), (2, "b"), (1, "c"), (3, "d"), (2, "e")];
        dedupe_last(&mut v, |x| x.0);
        assert_eq!(v, vec![(1, "c"), (3, "d"), (2, "e")]);
    }

    /// A started inbound session ringing two devices whose dials succeeded, with every effect
    /// so far.
    fn ringing_call() -> (Session, Vec<Effect>) {
        let device = |id: &str| RingTarget {
            device_id: DeviceId::new(id),
            sip_uri: format!("sip:{id}@sip.telnyx.com"),
            platform: "android".to_owned(),
        };
        let mut session = Session::new_inbound(
            NewInbound {
                id: CallSessionId::new("s1"),
                tenant: TenantId::new("t1"),
                user: UserId::new("u1"),
                caller_leg: CallControlId::new("caller"),
                from: "+15550001111".to_owned(),
                to: "+15550002222".to_owned(),
                devices: vec![device("d1"), device("d2")],
                busy: false,
                config: SessionConfig::default(),
            },
            Timestamp::from_millis(1_000),
        )
        .unwrap();
        let mut effects = session
            .handle(Input::Start, Timestamp::from_millis(1_000))
            .unwrap();
        let dials: Vec<(String, DeviceId)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Telnyx(c) => match &c.action {
                    Action::Dial {
                        device: Some(d), ..
                    } => Some((c.command_id.clone(), d.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for (command_id, d) in dials {
            let input = Input::DialResult {
                command_id,
                result: Ok(CallControlId::new(format!("leg-{d}"))),
            };
            effects.extend(
                session
                    .handle(input, Timestamp::from_millis(1_100))
                    .unwrap(),
            );
        }
        (session, effects)
    }

    fn commit_of(session: &Session, effects: &[Effect]) -> Commit {
        session_commit(
            session,
            Some(1),
            effects,
            Vec::new(),
            None,
            Timestamp::from_millis(9_000),
        )
        .unwrap()
    }

    #[test]
    fn a_new_call_is_created_ringing_with_its_timer_outbox_and_caller_leg() {
        let (session, effects) = ringing_call();
        let arrival = TimelineEntry {
            call_session_id: CallSessionId::new("s1"),
            at: Timestamp::from_millis(1_000),
            source: TimelineSource::Backend,
            device_id: None,
            kind: "webhook.call.initiated".to_owned(),
            from_state: None,
            to_state: None,
            detail: Value::Null,
        };
        let commit = session_commit(
            &session,
            None,
            &effects,
            vec![arrival],
            Some("wh-1".to_owned()),
            Timestamp::from_millis(1_100),
        )
        .unwrap();
        assert_eq!(commit.session_id.as_str(), "s1");
        assert_eq!(commit.user_id.as_str(), "u1");
        assert_eq!(commit.expected_version, None);
        assert_eq!(commit.state_label, "ringing");
        assert_eq!(commit.dedupe_key.as_deref(), Some("wh-1"));
        assert_eq!(commit.next_deadline, session.next_deadline());
        assert!(commit.next_deadline.is_some(), "the ring timer is set");
        let outbox = effects.iter().filter(|e| e.is_outbox()).count();
        // The session's outbox effects, then the host app's `call.ringing`.
        assert_eq!(commit.effects.len(), outbox + 1);
        assert!(commit.effects[..outbox]
            .iter()
            .all(|e| e.effect["type"] == "telnyx" || e.effect["type"] == "notify"));
        // Dials go in the setup lane; each notification target keeps its own order.
        for e in &commit.effects[..outbox] {
            match e.effect["type"].as_str() {
                Some("telnyx") => assert_eq!(e.lane, Lane::Setup, "{}", e.effect),
                _ => {
                    assert!(
                        matches!(e.lane, Lane::Realtime | Lane::Push),
                        "{}",
                        e.effect
                    );
                    let key = e.order_key.as_deref().unwrap_or_default();
                    assert!(
                        key.starts_with("ws:u1") || key.starts_with("push:"),
                        "{key}"
                    );
                }
            }
        }
        assert_eq!(commit.effects[outbox].effect["type"], "host_event");
        assert_eq!(commit.effects[outbox].effect["event_type"], "call.ringing");
        assert_eq!(
            commit.effects[outbox].effect["data"]["call_session_id"],
            "s1"
        );
        // The caller's and both devices' legs, one row each though each was updated twice.
        let mut legs: Vec<&str> = commit
            .legs
            .iter()
            .map(|l| l.call_control_id.as_str())
            .collect();
        legs.sort_unstable();
        assert_eq!(legs, vec!["caller", "leg-d1", "leg-d2"]);
        assert_eq!(commit.calls.len(), 1);
        assert_eq!(commit.calls[0].status, CallStatus::Ringing);
        // The input's own entry comes before the session's.
        assert_eq!(commit.timeline[0].kind, "webhook.call.initiated");
        assert!(commit.timeline.iter().any(|t| t.kind == "dial"));
        assert!(commit.registry.is_empty());
    }

    #[test]
    fn an_answered_call_enters_the_registry_and_leaves_it_when_it_ends() {
        let (mut session, _) = ringing_call();
        let answered = Input::Provider(ProviderEvent::new(
            "leg-d1",
            None,
            ProviderEventKind::Answered,
        ));
        let mut effects = session
            .handle(answered, Timestamp::from_millis(2_000))
            .unwrap();
        let answer = effects.iter().find_map(|e| match e {
            Effect::Telnyx(c) if matches!(c.action, Action::Answer { .. }) => {
                Some(c.command_id.clone())
            }
            _ => None,
        });
        let answered_caller = Input::CommandResult {
            command_id: answer.expect("the caller is answered on pickup"),
            result: Ok(()),
        };
        effects.extend(
            session
                .handle(answered_caller, Timestamp::from_millis(2_100))
                .unwrap(),
        );
        let bridged = Input::Provider(ProviderEvent::new(
            "caller",
            None,
            ProviderEventKind::Bridged,
        ));
        effects.extend(
            session
                .handle(bridged, Timestamp::from_millis(2_200))
                .unwrap(),
        );
        let commit = commit_of(&session, &effects);
        let answered: Vec<&Value> = commit
            .effects
            .iter()
            .map(|e| &e.effect)
            .filter(|e| e["event_type"] == "call.answered")
            .collect();
        assert_eq!(answered.len(), 1, "one call.answered for the pickup");
        assert_eq!(answered[0]["data"]["device_id"], "d1");
        assert_eq!(commit.state_label, "bridged");
        assert_eq!(
            commit.registry,
            vec![RegistryChange::Set(ActiveCall {
                user_id: UserId::new("u1"),
                call_session_id: CallSessionId::new("s1"),
                device_id: Some(DeviceId::new("d1")),
                started_at: Timestamp::from_millis(2_000),
                platform: Some("android".to_owned()),
                state: ringmaster_core::CallState::Active,
                since: Timestamp::from_millis(2_200),
            })]
        );
        let hangup = Input::Provider(ProviderEvent::new(
            "caller",
            None,
            ProviderEventKind::Hangup {
                cause: HangupCause::NormalClearing,
                source: HangupSource::Caller,
                quality: None,
            },
        ));
        let effects = session
            .handle(hangup, Timestamp::from_millis(61_000))
            .unwrap();
        let commit = commit_of(&session, &effects);
        let host: Vec<&Value> = commit
            .effects
            .iter()
            .map(|e| &e.effect)
            .filter(|e| e["type"] == "host_event")
            .collect();
        assert_eq!(host.len(), 1, "{host:?}");
        assert_eq!(host[0]["event_type"], "call.ended");
        let data = &host[0]["data"];
        assert_eq!(data["device_id"], "d1");
        assert_eq!(data["billable_seconds"], 59);
        assert_eq!(data["duration_secs"], 59);
        assert_eq!(data["hangup_cause"], "normal_clearing");
        assert_eq!(commit.state_label, "ended");
        assert_eq!(
            commit.registry,
            vec![RegistryChange::Clear {
                user_id: UserId::new("u1"),
                call_session_id: CallSessionId::new("s1"),
            }]
        );
        let call = &commit.calls[0];
        assert_eq!(call.status, CallStatus::Ended);
        assert_eq!(call.hangup_cause.as_deref(), Some("normal_clearing"));
        assert_eq!(call.answered_device, Some(DeviceId::new("d1")));
        assert_eq!(call.billing_minutes(), 1);
        assert_eq!(commit.next_deadline, None);
    }

    #[test]
    fn a_call_declined_for_everyone_is_stored_as_declined_and_bills_nothing() {
        let (mut session, _) = ringing_call();
        let input = Input::DeviceDecline {
            device: DeviceId::new("d1"),
        };
        let effects = session
            .handle(input, Timestamp::from_millis(5_000))
            .unwrap();
        let commit = commit_of(&session, &effects);
        let host: Vec<&Value> = commit
            .effects
            .iter()
            .map(|e| &e.effect)
            .filter(|e| e["type"] == "host_event")
            .collect();
        assert_eq!(host.len(), 1);
        assert_eq!(host[0]["event_type"], "call.declined");
        assert_eq!(host[0]["event_id"], "evt_s1_call_declined");
        assert_eq!(commit.state_label, "declined");
        assert_eq!(commit.calls.len(), 1);
        let call = &commit.calls[0];
        assert_eq!(call.status, CallStatus::Declined);
        assert_eq!(call.hangup_cause.as_deref(), Some("declined_elsewhere"));
        assert_eq!(call.answered_at, None);
        assert_eq!(call.billing_minutes(), 0);
    }

    #[test]
    fn a_device_rejecting_its_leg_keeps_the_cause_on_its_leg_row() {
        let (mut session, _) = ringing_call();
        let input = Input::Provider(ProviderEvent::new(
            "leg-d1",
            None,
            ProviderEventKind::Hangup {
                cause: HangupCause::CallRejected,
                source: HangupSource::Callee,
                quality: None,
            },
        ));
        let effects = session
            .handle(input, Timestamp::from_millis(5_000))
            .unwrap();
        let commit = commit_of(&session, &effects);
        assert_eq!(commit.state_label, "ringing");
        assert!(commit.effects.is_empty(), "nothing to send or dismiss");
        assert_eq!(commit.legs.len(), 1);
        let leg = &commit.legs[0];
        assert_eq!(leg.call_control_id.as_str(), "leg-d1");
        assert_eq!(leg.status, "ended");
        assert_eq!(leg.hangup_cause.as_deref(), Some("call_rejected"));
        assert_eq!(leg.ended_at, Some(Timestamp::from_millis(5_000)));
        assert_eq!(leg.started_at, Timestamp::from_millis(1_000));
    }

    #[test]
    fn declined_calls_are_neither_missed_nor_ended_in_history() {
        assert_eq!(call_status(SessionStatus::Declined), CallStatus::Declined);
        assert_eq!(call_status(SessionStatus::Ended), CallStatus::Ended);
        assert_eq!(call_status(SessionStatus::Missed), CallStatus::Missed);
    }
}
