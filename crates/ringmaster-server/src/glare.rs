//! Glare: calls that cross (issue 14, point 5). The decisions are the session's
//! (`Input::CallBack`, `Input::Replaced`, `glare_loser`); this module only finds the calls
//! involved and routes those inputs to them.
//!
//! - A user's click-to-call to a number whose call to that user is ringing: that call is
//!   answered on the calling device instead, and nothing new is dialled ([`ringing_from`]).
//! - Two users of one deployment calling each other at once: after each outbound call is
//!   committed it looks for the other one; the higher `call_session_id` ends with reason
//!   `replaced` on every device, and so do the inbound calls it already rang ([`after_outbound`]).
//!   Each side looks after its own commit, so whichever commits second sees the first, on any
//!   node; both pick the same loser.

use crate::app::AppState;
use crate::engine::{Applied, EngineError};
use ringmaster_core::session::{glare_loser, Input, Session};
use ringmaster_core::{CallSessionId, UserId};
use ringmaster_store::{CallDirection, CallRecord, CallStatus, UNFINISHED_STATUSES};

/// History rows read, newest first, to find a user's calls that have not ended. Unfinished
/// calls are recent (ringing lasts at most the ring timeout) and few (click-to-call is capped
/// at `RINGMASTER_MAX_UNFINISHED_CALLS`).
const RECENT_CALLS: u32 = 50;

async fn unfinished(app: &AppState, user: &UserId) -> Result<Vec<CallRecord>, EngineError> {
    let page = app.store.list_calls(user, None, RECENT_CALLS).await?;
    Ok(page
        .items
        .into_iter()
        .filter(|c| UNFINISHED_STATUSES.contains(&c.status))
        .collect())
}

/// The user's inbound call from `number` that is ringing now, if any.
pub async fn ringing_from(
    app: &AppState,
    user: &UserId,
    number: &str,
) -> Result<Option<CallSessionId>, EngineError> {
    Ok(unfinished(app, user)
        .await?
        .into_iter()
        .find(|c| {
            c.direction == CallDirection::Inbound
                && c.status == CallStatus::Ringing
                && c.from == number
        })
        .map(|c| c.call_session_id))
}

/// Looks for the call crossing `session` (an outbound call just committed): one the user it
/// calls is placing, at the same time, to one of this user's numbers. When there is one the
/// loser is replaced.
pub async fn after_outbound(app: &AppState, session: &Session) -> Result<(), EngineError> {
    let Some(callee) = app.store.user_by_number(session.to()).await? else {
        return Ok(());
    };
    if &callee.tenant_id != session.tenant() || &callee.id == session.user() {
        return Ok(());
    }
    let Some(caller) = app.store.get_user(session.user()).await? else {
        return Ok(());
    };
    let rival = unfinished(app, &callee.id).await?.into_iter().find(|c| {
        c.direction == CallDirection::Outbound
            && c.status == CallStatus::Ringing
            && &c.call_session_id != session.id()
            && caller.numbers.contains(&c.to)
    });
    let Some(rival) = rival else {
        return Ok(());
    };
    let survivor = if glare_loser(session.id(), &rival.call_session_id) == session.id() {
        rival.call_session_id.clone()
    } else {
        session.id().clone()
    };
    let (loser_id, loser_user, loser_from) = if &survivor == session.id() {
        (rival.call_session_id, callee.id.clone(), rival.from)
    } else {
        (
            session.id().clone(),
            caller.id.clone(),
            session.from().to_owned(),
        )
    };
    tracing::info!(%survivor, loser = %loser_id, "glare: two users called each other");
    replace(app, &loser_id, &survivor).await?;
    // The loser may already ring the other user: those rings end the same way.
    let loser_callee = if loser_user == *session.user() {
        callee.id
    } else {
        session.user().clone()
    };
    for call in unfinished(app, &loser_callee).await? {
        if call.direction == CallDirection::Inbound
            && call.status == CallStatus::Ringing
            && call.from == loser_from
        {
            replace(app, &call.call_session_id, &survivor).await?;
        }
    }
    Ok(())
}

async fn replace(
    app: &AppState,
    loser: &CallSessionId,
    survivor: &CallSessionId,
) -> Result<(), EngineError> {
    let input = Input::Replaced {
        survivor: survivor.clone(),
    };
    match app.engine.apply(loser, input, None).await {
        Ok(Applied::Refused(why)) => {
            // Answered meanwhile: someone talks, the glare is over.
            tracing::info!(call_session_id = %loser, %why, "glare loser not replaced");
            Ok(())
        }
        Ok(_) | Err(EngineError::UnknownSession(_) | EngineError::Quarantined(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
