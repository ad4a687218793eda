//! The bodies of the fuzz targets, shared by the libFuzzer binaries (`fuzz_targets/`, nightly)
//! and by a corpus replay test that runs on stable (`cargo test --manifest-path fuzz/Cargo.toml
//! --lib`). Each takes any bytes and must never panic; the assertions are properties that must
//! hold for every input.

use ringmaster_realtime::protocol::{parse_client_message, ClientMessage};
use ringmaster_realtime::signing::{verify_api_request, ApiAuthError, ApiCredentials, MAX_API_PARAMS};
use ringmaster_realtime::{ChannelKind, ChannelName, SocketId};
use ringmaster_server::provider;
use ringmaster_telnyx::WebhookEvent;
use std::time::Duration;

/// A Telnyx webhook body: parsed, then routed to a session input as the server does.
pub fn webhook(data: &[u8]) {
    let Ok(event) = WebhookEvent::parse(data) else {
        return;
    };
    let Ok(routed) = provider::route(&event) else {
        return;
    };
    // Our own client_state decides the session; otherwise Telnyx's call_session_id does.
    if let Some(cs) = &routed.event.client_state {
        assert_eq!(routed.session, cs.session);
    }
    if routed.new_inbound.is_some() {
        assert!(routed.event.client_state.is_none());
    }
}

/// A frame a WebSocket client sends, and the query string of a publish API call.
pub fn pusher_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ClientMessage::Subscribe { channel, .. } | ClientMessage::Unsubscribe { channel }) =
        parse_client_message(text)
    {
        if let Ok(name) = ChannelName::parse(&channel) {
            let kind = name.kind();
            assert_eq!(
                kind == ChannelKind::Public,
                !channel.starts_with("private-") && !channel.starts_with("presence-")
            );
        }
    }
    let _ = SocketId::parse(text);
    // The same bytes as a publish API query: never a panic, and an oversized one is refused
    // before anything else is looked at.
    let params: Vec<(String, String)> = text
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let creds = ApiCredentials {
        key: "app-key",
        secret: "app-secret",
        window: Duration::from_secs(600),
    };
    let result = verify_api_request(creds, "POST", "/apps/1/events", &params, data, 1_800_000_000);
    if params.len() > MAX_API_PARAMS {
        assert_eq!(result, Err(ApiAuthError::TooManyParams));
    }
}

/// A device (or admin) API body: the first byte picks the request type, the rest is the body.
pub fn device_body(data: &[u8]) {
    use ringmaster_server::routes::{admin, voip};
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            let _ = serde_json::from_slice::<voip::PlaceCall>(body);
        }
        1 => {
            let _ = serde_json::from_slice::<voip::DeviceReport>(body);
        }
        2 => {
            let _ = serde_json::from_slice::<voip::PushTokenRequest>(body);
        }
        3 => {
            let _ = serde_json::from_slice::<admin::NewUser>(body);
            let _ = serde_json::from_slice::<admin::NewDevice>(body);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = serde_urlencoded::from_str::<voip::HistoryQuery>(text);
            }
        }
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) {
        for value in fields.values() {
            if let Some(s) = value.as_str() {
                if ringmaster_server::routes::is_e164(s) {
                    assert!(s.len() <= 16 && s.starts_with('+'));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Replays every seed through its target on stable, so the bodies keep compiling and
    //! passing without nightly.

    fn replay(dir: &str, target: fn(&[u8])) -> usize {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut n = 0;
        for entry in std::fs::read_dir(&path).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            target(&bytes);
            // Every prefix too: truncated bodies are the commonest malformation.
            for cut in (0..bytes.len()).step_by(7) {
                target(&bytes[..cut]);
            }
            n += 1;
        }
        n
    }

    #[test]
    fn webhook_seeds() {
        assert!(replay("seeds/webhook", super::webhook) > 0);
    }

    #[test]
    fn pusher_frame_seeds() {
        assert!(replay("seeds/pusher_frame", super::pusher_frame) > 0);
    }

    #[test]
    fn device_body_seeds() {
        assert!(replay("seeds/device_body", super::device_body) > 0);
    }

    #[test]
    fn an_oversized_publish_query_is_refused_first() {
        let query: String = (0..40).map(|i| format!("k{i}=v&")).collect();
        super::pusher_frame(query.as_bytes());
    }
}
