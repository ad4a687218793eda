//! `client_state`: the base64 text Telnyx echoes in every webhook of a leg. Ringmaster puts its
//! own JSON in it so that any webhook, even one racing the dial response, finds its session.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ringmaster_core::{CallSessionId, DeviceId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest encoded `client_state` we decode; Telnyx documents no limit, ours is generous.
pub const MAX_CLIENT_STATE_LEN: usize = 4096;

/// Ringmaster's typed `client_state`: which session, device and leg a Telnyx leg belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientState {
    /// The call this leg belongs to.
    pub session: CallSessionId,
    /// The device this leg rings, if it is a device leg.
    #[serde(default)]
    pub device: Option<DeviceId>,
    /// Our label for the leg: `"caller"` or the device id.
    pub leg: String,
    /// `outbound` on the calling device's leg of a click-to-call (the device takes the leg as
    /// the user's own outbound call); absent on every other leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<ringmaster_core::Direction>,
}

/// Why a `client_state` could not be decoded into a [`ClientState`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientStateError {
    /// The encoded text is longer than [`MAX_CLIENT_STATE_LEN`].
    #[error("client_state is {len} bytes, more than the {MAX_CLIENT_STATE_LEN} allowed")]
    TooLong {
        /// Length of the encoded text.
        len: usize,
    },
    /// The text is not standard base64.
    #[error("client_state is not valid base64: {0}")]
    Base64(String),
    /// The decoded bytes are not our JSON (it may be another application's state).
    #[error("client_state is not a Ringmaster client state: {0}")]
    Json(String),
}

/// `client_state` as it travels on the wire: base64 text, possibly not ours.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncodedClientState(String);

impl EncodedClientState {
    /// Wraps base64 text received from or sent to Telnyx, without checking it.
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is valid standard base64 (Telnyx rejects commands otherwise).
    pub fn is_valid_base64(&self) -> bool {
        self.0.len() <= MAX_CLIENT_STATE_LEN && STANDARD.decode(self.0.as_bytes()).is_ok()
    }

    /// Decodes the text into Ringmaster's [`ClientState`].
    pub fn decode(&self) -> Result<ClientState, ClientStateError> {
        ClientState::decode(&self.0)
    }
}

impl fmt::Display for EncodedClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ClientState {
    /// A client state for the caller's (inbound) leg.
    pub fn caller(session: CallSessionId) -> Self {
        Self {
            session,
            device: None,
            leg: "caller".to_owned(),
            direction: None,
        }
    }

    /// A client state for a device leg; the leg label is the device id.
    pub fn device(session: CallSessionId, device: DeviceId) -> Self {
        let leg = device.as_str().to_owned();
        Self {
            session,
            device: Some(device),
            leg,
            direction: None,
        }
    }

    /// Encodes as base64 JSON, ready for a command's `client_state`.
    pub fn encode(&self) -> EncodedClientState {
        // Serialising a struct of strings cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        EncodedClientState(STANDARD.encode(json))
    }

    /// Decodes base64 JSON text produced by [`ClientState::encode`].
    pub fn decode(encoded: &str) -> Result<Self, ClientStateError> {
        if encoded.len() > MAX_CLIENT_STATE_LEN {
            return Err(ClientStateError::TooLong { len: encoded.len() });
        }
        let bytes = STANDARD
            .decode(encoded.trim().as_bytes())
            .map_err(|e| ClientStateError::Base64(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientStateError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_device_state() {
        let state = ClientState::device("sess-1".into(), "dev-7".into());
        let encoded = state.encode();
        assert!(encoded.is_valid_base64());
        assert_eq!(encoded.decode(), Ok(state));
    }

    #[test]
    fn caller_state_has_no_device() {
        let decoded = ClientState::caller("s".into()).encode().decode().unwrap();
        assert_eq!(decoded.device, None);
        assert_eq!(decoded.leg, "caller");
    }

    #[test]
    fn foreign_state_is_a_json_error() {
        // The docs example: base64 of "have a nice day =]".
        let err = ClientState::decode("aGF2ZSBhIG5pY2UgZGF5ID1d").unwrap_err();
        assert!(matches!(err, ClientStateError::Json(_)), "{err:?}");
    }

    #[test]
    fn bad_base64_and_oversize_are_distinct_errors() {
        assert!(matches!(
            ClientState::decode("not base64!"),
            Err(ClientStateError::Base64(_))
        ));
        let long = "A".repeat(MAX_CLIENT_STATE_LEN + 4);
        assert_eq!(
            ClientState::decode(&long),
            Err(ClientStateError::TooLong { len: long.len() })
        );
    }

    #[test]
    fn missing_session_is_rejected() {
        let encoded = STANDARD.encode(br#"{"leg":"caller"}"#);
        assert!(matches!(
            ClientState::decode(&encoded),
            Err(ClientStateError::Json(_))
        ));
    }
}
