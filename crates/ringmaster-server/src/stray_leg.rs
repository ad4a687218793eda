//! Legs nobody tracks: a dial sent twice (re-dispatched after a crash or a timeout whose
//! request did reach Telnyx) creates a second leg whose `client_state` names our session and a
//! leg the session already knows under another `call_control_id`. The session refuses its
//! webhooks as an unknown leg; left alone, that leg would ring a device for a call nobody
//! tracks. It is hung up, once: the commit's dedupe key is per leg, so later webhooks of the
//! same leg find the hangup already queued.

use crate::engine::{Applied, EngineError, Step};
use crate::routes::webhooks::answer;
use axum::Json;
use ringmaster_core::session::{Action, Command, Effect};
use ringmaster_core::{CallControlId, CallSessionId};
use ringmaster_store::{TimelineEntry, TimelineSource};
use serde_json::{json, Value};

/// The dedupe key of the one hangup of a stray leg.
pub fn dedupe_key(ccid: &CallControlId) -> String {
    format!("stray-leg:{ccid}")
}

/// Queues a hangup of `ccid` on `session`'s outbox (with a timeline entry) unless one was
/// queued before, and returns the webhook's answer.
pub async fn hang_up(
    app: &crate::app::AppState,
    session: &CallSessionId,
    ccid: &CallControlId,
) -> Result<Json<Value>, EngineError> {
    let command = Command {
        call_session_id: session.clone(),
        command_id: format!("{session}:stray:{ccid}"),
        action: Action::Hangup { ccid: ccid.clone() },
    };
    let applied = app
        .engine
        .apply_with(session, Some(dedupe_key(ccid)), |s, now| {
            Ok(Step {
                effects: vec![Effect::Telnyx(command.clone())],
                timeline: vec![TimelineEntry {
                    call_session_id: s.id().clone(),
                    at: now,
                    source: TimelineSource::Backend,
                    device_id: None,
                    kind: "stray_leg_hangup".to_owned(),
                    from_state: None,
                    to_state: None,
                    detail: json!({ "call_control_id": ccid }),
                }],
            })
        })
        .await?;
    Ok(match applied {
        Applied::Committed(_) | Applied::Unchanged(_) => {
            tracing::warn!(call_session_id = %session, call_control_id = %ccid,
                "leg unknown to its session (a duplicated dial?); hanging it up");
            answer("processed", Some("unknown leg hung up".to_owned()))
        }
        Applied::Duplicate => answer("duplicate", Some("unknown leg already hung up".to_owned())),
        Applied::Refused(e) => answer("ignored", Some(format!("refused by the call: {e}"))),
    })
}
