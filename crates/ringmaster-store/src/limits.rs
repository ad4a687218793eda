//! Size limits and the validation every backend runs before touching its data, so that both
//! backends accept and refuse exactly the same inputs.

use ringmaster_core::Timestamp;
use serde_json::Value;

use crate::directory::{Device, User};
use crate::error::StoreError;
use crate::session::Commit;

/// Longest identifier (user, device, session, leg, tenant) in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest user name in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Most numbers one user may own.
pub const MAX_NUMBERS_PER_USER: usize = 32;
/// Longest SIP URI, recording URL or number field in bytes.
pub const MAX_URI_LEN: usize = 2048;
/// Longest stored token hash in bytes.
pub const MAX_TOKEN_HASH_LEN: usize = 256;
/// Longest push token in bytes (APNs tokens are 64 hex chars, FCM tokens about 160).
pub const MAX_PUSH_TOKEN_LEN: usize = 4096;
/// Longest label (state label, leg status, timeline kind/state, hangup cause) in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// Longest dedupe key in bytes.
pub const MAX_DEDUPE_KEY_LEN: usize = 256;
/// Largest serialised session document in bytes.
pub const MAX_DOC_BYTES: usize = 1 << 20;
/// Largest serialised effect, quality summary or timeline detail in bytes.
pub const MAX_JSON_BYTES: usize = 256 << 10;
/// Most effects, registry changes, calls, legs or timeline entries in one commit (each).
pub const MAX_ITEMS_PER_COMMIT: usize = 1024;
/// Longest dispatch error kept on an outbox entry; longer ones are truncated.
pub const MAX_ERROR_LEN: usize = 2048;
/// Largest history page.
pub const MAX_PAGE: u32 = 200;
/// Longest outbox ordering key (a prefix and a user or device id).
pub const MAX_ORDER_KEY_LEN: usize = 300;
/// Largest batch of pending effects or due sessions returned at once.
pub const MAX_BATCH: u32 = 1000;
/// Latest representable timestamp (SQL integers are signed 64-bit).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// A commit's JSON values, serialised once during validation.
pub(crate) struct EncodedCommit {
    pub(crate) doc: String,
    pub(crate) effects: Vec<String>,
    pub(crate) quality: Vec<Option<String>>,
    pub(crate) details: Vec<String>,
}

pub(crate) fn id(what: &'static str, raw: &str) -> Result<(), StoreError> {
    if raw.is_empty() {
        return Err(StoreError::invalid(what, "must not be empty"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(StoreError::invalid(
            what,
            format!("longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(StoreError::invalid(what, "contains control characters"));
    }
    Ok(())
}

pub(crate) fn text(what: &'static str, raw: &str, max: usize) -> Result<(), StoreError> {
    if raw.trim().is_empty() {
        return Err(StoreError::invalid(what, "must not be blank"));
    }
    if raw.len() > max {
        return Err(StoreError::invalid(
            what,
            format!("longer than {max} bytes"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(StoreError::invalid(what, "contains control characters"));
    }
    Ok(())
}

fn opt_text(what: &'static str, raw: Option<&str>, max: usize) -> Result<(), StoreError> {
    raw.map_or(Ok(()), |raw| text(what, raw, max))
}

/// Labels are machine names: printable ASCII without spaces.
pub(crate) fn label(what: &'static str, raw: &str) -> Result<(), StoreError> {
    if raw.is_empty() || raw.len() > MAX_LABEL_LEN {
        return Err(StoreError::invalid(
            what,
            format!("must be 1 to {MAX_LABEL_LEN} bytes"),
        ));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::invalid(
            what,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn opt_label(what: &'static str, raw: Option<&str>) -> Result<(), StoreError> {
    raw.map_or(Ok(()), |raw| label(what, raw))
}

pub(crate) fn timestamp(what: &'static str, ts: Timestamp) -> Result<(), StoreError> {
    if ts.as_millis() > MAX_TIMESTAMP {
        return Err(StoreError::invalid(what, "timestamp out of range"));
    }
    Ok(())
}

fn opt_timestamp(what: &'static str, ts: Option<Timestamp>) -> Result<(), StoreError> {
    ts.map_or(Ok(()), |ts| timestamp(what, ts))
}

/// An E.164 number: `+`, a non-zero digit, then 1 to 14 more digits.
pub(crate) fn e164(raw: &str) -> Result<(), StoreError> {
    let digits = raw.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "number",
            format!(
                "`{}` is not an E.164 number like +15551234567",
                raw.chars().take(32).collect::<String>()
            ),
        ))
    }
}

pub(crate) fn json(what: &'static str, value: &Value, max: usize) -> Result<String, StoreError> {
    let encoded = serde_json::to_string(value)
        .map_err(|e| StoreError::invalid(what, format!("not serialisable: {e}")))?;
    if encoded.len() > max {
        return Err(StoreError::invalid(
            what,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(encoded)
}

fn count(what: &'static str, n: usize) -> Result<(), StoreError> {
    if n > MAX_ITEMS_PER_COMMIT {
        return Err(StoreError::invalid(
            what,
            format!("more than {MAX_ITEMS_PER_COMMIT} in one commit"),
        ));
    }
    Ok(())
}

pub(crate) fn user(user: &User) -> Result<(), StoreError> {
    id("user id", user.id.as_str())?;
    id("tenant id", user.tenant_id.as_str())?;
    text("name", &user.name, MAX_NAME_LEN)?;
    timestamp("created_at", user.created_at)?;
    if user.numbers.len() > MAX_NUMBERS_PER_USER {
        return Err(StoreError::invalid(
            "numbers",
            format!("more than {MAX_NUMBERS_PER_USER}"),
        ));
    }
    for (i, number) in user.numbers.iter().enumerate() {
        e164(number)?;
        if user.numbers[..i].contains(number) {
            return Err(StoreError::invalid(
                "numbers",
                format!("{number} is listed twice"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn sip_uri(raw: &str) -> Result<(), StoreError> {
    text("sip_uri", raw, MAX_URI_LEN)?;
    let rest = raw
        .strip_prefix("sip:")
        .or_else(|| raw.strip_prefix("sips:"))
        .unwrap_or("");
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(StoreError::invalid(
            "sip_uri",
            "must look like sip:user@host or sips:user@host",
        ));
    }
    Ok(())
}

pub(crate) fn push_token(raw: &str) -> Result<(), StoreError> {
    text("push_token", raw, MAX_PUSH_TOKEN_LEN)?;
    if raw.contains(char::is_whitespace) {
        return Err(StoreError::invalid(
            "push_token",
            "must not contain whitespace",
        ));
    }
    Ok(())
}

pub(crate) fn device(device: &Device) -> Result<(), StoreError> {
    id("device id", device.id.as_str())?;
    id("user id", device.user_id.as_str())?;
    sip_uri(&device.sip_uri)?;
    text("token_hash", &device.token_hash, MAX_TOKEN_HASH_LEN)?;
    if let Some(token) = &device.push_token {
        push_token(token)?;
    }
    if device.push_token.is_some() != device.push_provider.is_some() {
        return Err(StoreError::invalid(
            "push_provider",
            "a push token and its provider go together",
        ));
    }
    timestamp("created_at", device.created_at)
}

pub(crate) fn limit(limit: u32) -> usize {
    limit.min(MAX_BATCH) as usize
}

pub(crate) fn page_limit(limit: u32) -> Result<usize, StoreError> {
    if limit == 0 {
        return Err(StoreError::invalid("limit", "must be at least 1"));
    }
    Ok(limit.min(MAX_PAGE) as usize)
}

/// A cross-call batch size: at least 1, at most [`MAX_BATCH`].
pub(crate) fn batch_limit(limit: u32) -> Result<usize, StoreError> {
    if limit == 0 {
        return Err(StoreError::invalid("limit", "must be at least 1"));
    }
    Ok(limit.min(MAX_BATCH) as usize)
}

/// Cuts a dispatch error to [`MAX_ERROR_LEN`] bytes on a character boundary.
pub(crate) fn truncate_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_LEN {
        return error.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

/// Checks the whole commit before any backend writes a byte of it.
pub(crate) fn commit(commit: &Commit) -> Result<EncodedCommit, StoreError> {
    id("session id", commit.session_id.as_str())?;
    id("user id", commit.user_id.as_str())?;
    label("state_label", &commit.state_label)?;
    opt_timestamp("next_deadline", commit.next_deadline)?;
    timestamp("at", commit.at)?;
    if let Some(v) = commit.expected_version {
        if v == 0 || v > MAX_TIMESTAMP {
            return Err(StoreError::invalid(
                "expected_version",
                "versions start at 1",
            ));
        }
    }
    if let Some(key) = &commit.dedupe_key {
        text("dedupe_key", key, MAX_DEDUPE_KEY_LEN)?;
    }
    if let Some(claim) = &commit.claim {
        text("lease owner", &claim.owner, MAX_ID_LEN)?;
        timestamp("claim until", claim.until)?;
    }
    count("effects", commit.effects.len())?;
    count("registry", commit.registry.len())?;
    count("calls", commit.calls.len())?;
    count("legs", commit.legs.len())?;
    count("timeline", commit.timeline.len())?;

    let doc = json("doc", &commit.doc, MAX_DOC_BYTES)?;
    let effects = commit
        .effects
        .iter()
        .map(|e| {
            if let Some(key) = &e.order_key {
                text("order_key", key, MAX_ORDER_KEY_LEN)?;
            }
            json("effect", &e.effect, MAX_JSON_BYTES)
        })
        .collect::<Result<Vec<_>, _>>()?;

    for change in &commit.registry {
        match change {
            crate::RegistryChange::Set(active) => {
                id("user id", active.user_id.as_str())?;
                id("call session id", active.call_session_id.as_str())?;
                if let Some(d) = &active.device_id {
                    id("device id", d.as_str())?;
                }
                timestamp("started_at", active.started_at)?;
                timestamp("since", active.since)?;
                if let Some(p) = &active.platform {
                    id("platform", p)?;
                }
            }
            crate::RegistryChange::Clear {
                user_id,
                call_session_id,
            } => {
                id("user id", user_id.as_str())?;
                id("call session id", call_session_id.as_str())?;
            }
        }
    }

    let mut quality = Vec::with_capacity(commit.calls.len());
    for call in &commit.calls {
        id("call session id", call.call_session_id.as_str())?;
        id("user id", call.user_id.as_str())?;
        id("tenant id", call.tenant_id.as_str())?;
        text("from", &call.from, MAX_URI_LEN)?;
        text("to", &call.to, MAX_URI_LEN)?;
        if let Some(d) = &call.answered_device {
            id("answered_device", d.as_str())?;
        }
        timestamp("started_at", call.started_at)?;
        opt_timestamp("answered_at", call.answered_at)?;
        opt_timestamp("ended_at", call.ended_at)?;
        opt_label("hangup_cause", call.hangup_cause.as_deref())?;
        opt_text("recording_url", call.recording_url.as_deref(), MAX_URI_LEN)?;
        quality.push(
            call.quality
                .as_ref()
                .map(|q| json("quality", q, MAX_JSON_BYTES))
                .transpose()?,
        );
    }

    for leg in &commit.legs {
        id("call control id", leg.call_control_id.as_str())?;
        id("call session id", leg.call_session_id.as_str())?;
        if let Some(d) = &leg.device_id {
            id("device id", d.as_str())?;
        }
        label("leg status", &leg.status)?;
        timestamp("started_at", leg.started_at)?;
        opt_timestamp("answered_at", leg.answered_at)?;
        opt_timestamp("ended_at", leg.ended_at)?;
        opt_label("hangup_cause", leg.hangup_cause.as_deref())?;
    }

    let mut details = Vec::with_capacity(commit.timeline.len());
    for entry in &commit.timeline {
        id("call session id", entry.call_session_id.as_str())?;
        timestamp("at", entry.at)?;
        if let Some(d) = &entry.device_id {
            id("device id", d.as_str())?;
        }
        label("kind", &entry.kind)?;
        opt_label("from_state", entry.from_state.as_deref())?;
        opt_label("to_state", entry.to_state.as_deref())?;
        details.push(json("detail", &entry.detail, MAX_JSON_BYTES)?);
    }

    Ok(EncodedCommit {
        doc,
        effects,
        quality,
        details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_real_numbers_only() {
        for ok in ["+15551234567", "+442071838750", "+12"] {
            assert!(e164(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "15551234567",
            "+05551234567",
            "+1555 123",
            "+1234567890123456",
            "+1",
            "+1-555",
        ] {
            assert!(e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = truncate_error(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_error("short"), "short");
    }

    #[test]
    fn sip_uris_need_a_scheme_and_a_target() {
        assert!(sip_uri("sip:alice@example.com").is_ok());
        assert!(sip_uri("sips:alice@example.com").is_ok());
        for bad in ["alice@example.com", "sip:", "http://x", "sip:a b"] {
            assert!(sip_uri(bad).is_err(), "{bad}");
        }
    }
}
