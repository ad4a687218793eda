//! Legs nobody tracks: a dial sent twice (re-dispatched after a crash or a timeout whose
//! request did reach Telnyx) creates a second leg whose `client_state` names our session and a
//! leg the session already knows under another `call_control_id`. The session refuses its
//! webhooks as an unknown leg; left alone, that leg would ring a device for a call nobody
//! tracks. It is hung up, once: the commit's dedupe key is per leg, so later webhooks of the
//! same leg find the hangup already queued.

use crate::engine::{Applied, EngineError};
use crate::routes::views::WebhookAnswer;
use crate::routes::webhooks::answer;
use axum::Json;
use ringmaster_core::session::Input;
use ringmaster_core::{CallControlId, CallSessionId};

/// The dedupe key of the one hangup of a stray leg.
pub fn dedupe_key(ccid: &CallControlId) -> String {
    format!("stray-leg:{ccid}")
}

/// Has the session hang up `ccid` (with a timeline entry) unless it did before, and returns
/// the webhook's answer.
pub async fn hang_up(
    app: &crate::app::AppState,
    session: &CallSessionId,
    ccid: &CallControlId,
) -> Result<Json<WebhookAnswer>, EngineError> {
    let input = Input::UnknownLeg { ccid: ccid.clone() };
    let applied = app
        .engine
        .apply(session, input, Some(dedupe_key(ccid)))
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
