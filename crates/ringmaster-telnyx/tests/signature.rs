//! Signature verification against fixed vectors.
//!
//! The keys are the Telnyx SDK test keypairs in `fixtures/signature-sdk-test-keys.copied.json`.
//! Upstream publishes no fixed signatures, so the vectors below were computed once, independently
//! of this crate, with Python's `cryptography` 48.0.0 (OpenSSL 3.0.19):
//!
//! ```python
//! k = Ed25519PrivateKey.from_private_bytes(seed)   # php: first 32 bytes of TEST_SECRET_KEY
//! base64.b64encode(k.sign((ts + "|" + payload).encode()))
//! ```
//!
//! with `ts = "1767225600"` (2026-01-01T00:00:00Z). The "payload only" and "dot separator"
//! signatures sign `payload` and `ts + "." + payload` the same way.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ringmaster_telnyx::signature::KeyError;
use ringmaster_telnyx::{SignatureError, WebhookSigner, WebhookVerifier, TIMESTAMP_HEADER};
use serde_json::Value;

const TS: &str = "1767225600";
const NOW: u64 = 1_767_225_600;

const PHP_PUBLIC: &str = "+7E99DXiiQXvceNX4nHm3Lbm5mqPWad5RhDr2ufuCik=";
const JAVA_PUBLIC: &str = "jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=";

const HANGUP: &str = r#"{"data":{"event_type":"call.hangup","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2026-01-01T00:00:00.000000Z","payload":{"call_control_id":"v3:abc","call_leg_id":"leg-1","call_session_id":"sess-1","client_state":null,"hangup_cause":"normal_clearing","hangup_source":"caller","sip_hangup_cause":"200"},"record_type":"event"}}"#;

/// (public key, payload, signature of `TS|payload`).
const VALID: &[(&str, &str, &str)] = &[
    (
        PHP_PUBLIC,
        r#"{"data":{"event_type":"message.received","id":"test-123"}}"#,
        "JM0iZZNViUDkHVY6uZit1kyoMXiIVFI9s/HGbK9NEuXdVFuc11VvCg+hSRiy+uSjgmVgGw/KestU0iOd8RshCg==",
    ),
    (
        PHP_PUBLIC,
        r#"{"data":{"event_type":"message.received"}}"#,
        "VxEyhRnpowvZsFKThzSV/M4TtDXEhNIIB0bEuMmhu5n7Wgs+RaPnLnXmrKvHdaMXifFT9+4+j4nWWCumcK1YAw==",
    ),
    (
        PHP_PUBLIC,
        HANGUP,
        "ok9LAczf5Id0+5JcRuvDCXxVG/NhC+cUH4YrIqb2CbLCuFw073k8JEq/YBH0kwxSWAFSQRUbaKcAoqFa7e6+AQ==",
    ),
    (
        JAVA_PUBLIC,
        r#"{"event_type":"test","id":"abc123"}"#,
        "a8Tuvf5RkWy5VHe+u5tSsT8kHfU6J4UIznb4mD0f6Tcpt/E5hc/zvmWF3jey8l0+39INPxTqh1dMa0bqjrzsAg==",
    ),
    (
        JAVA_PUBLIC,
        HANGUP,
        "DZelNzBnC77xC7l/ZYSvZcd8c0C4x8g+zFlH3gN3diTqJXSmL6AiMK/JezD8xD7gmd0SdlE7e8YsiIfERokHBw==",
    ),
];

const JAVA_HANGUP_SIG: &str =
    "DZelNzBnC77xC7l/ZYSvZcd8c0C4x8g+zFlH3gN3diTqJXSmL6AiMK/JezD8xD7gmd0SdlE7e8YsiIfERokHBw==";
const JAVA_PAYLOAD_ONLY_SIG: &str =
    "XjMoSyWunz03SABinOZBHBS1WsRU2jn+1fPftfmKPnpDQLhSS2ytD9M0Z3F5Gpxl1BH3zs46d7H+gIDnC9D8CA==";
const JAVA_DOT_SEPARATOR_SIG: &str =
    "3RZBQ0y1HkwplHPersZAXUzl9zfTs3BfVe4RXQc7JuaWtdTOUV1PlPgaNgSZkvwnWx7uAdh2Juax6i3CwhG8DQ==";

fn keys() -> Value {
    serde_json::from_str(include_str!("fixtures/signature-sdk-test-keys.copied.json")).unwrap()
}

fn java() -> WebhookVerifier {
    WebhookVerifier::new(JAVA_PUBLIC).unwrap()
}

#[test]
fn fixture_public_keys_are_the_ones_in_the_vectors() {
    let keys = keys();
    assert_eq!(keys["telnyx-php"]["TEST_PUBLIC_KEY"], PHP_PUBLIC);
    assert_eq!(keys["telnyx-java"]["testPublicKeyB64"], JAVA_PUBLIC);
}

#[test]
fn every_valid_vector_verifies() {
    for (key, payload, sig) in VALID {
        let verifier = WebhookVerifier::new(key).unwrap();
        assert_eq!(
            verifier.verify(Some(sig), Some(TS), payload.as_bytes(), NOW),
            Ok(()),
            "{payload}"
        );
    }
}

#[test]
fn our_signer_reproduces_the_independent_vectors() {
    let keys = keys();
    let php = WebhookSigner::from_base64(keys["telnyx-php"]["TEST_SECRET_KEY"].as_str().unwrap())
        .unwrap();
    let java =
        WebhookSigner::from_base64(keys["telnyx-java"]["testPrivateKeyB64"].as_str().unwrap())
            .unwrap();
    assert_eq!(php.public_key_b64(), PHP_PUBLIC);
    assert_eq!(java.public_key_b64(), JAVA_PUBLIC);
    for (key, payload, sig) in VALID {
        let signer = if *key == PHP_PUBLIC { &php } else { &java };
        assert_eq!(signer.sign(TS, payload.as_bytes()), *sig);
    }
}

#[test]
fn broken_upstream_keypair_is_refused() {
    let keys = keys();
    let secret = keys["do_not_use"]["secret_key_b64"].as_str().unwrap();
    assert_eq!(
        WebhookSigner::from_base64(secret).unwrap_err(),
        KeyError::Mismatch
    );
}

#[test]
fn tampered_payload_fails() {
    let tampered = HANGUP.replace("normal_clearing", "user_busy");
    assert_eq!(
        java().verify(Some(JAVA_HANGUP_SIG), Some(TS), tampered.as_bytes(), NOW),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn timestamp_plus_one_fails() {
    assert_eq!(
        java().verify(
            Some(JAVA_HANGUP_SIG),
            Some("1767225601"),
            HANGUP.as_bytes(),
            NOW
        ),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn wrong_key_fails() {
    let php = WebhookVerifier::new(PHP_PUBLIC).unwrap();
    assert_eq!(
        php.verify(Some(JAVA_HANGUP_SIG), Some(TS), HANGUP.as_bytes(), NOW),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn zero_signature_fails() {
    let zero = STANDARD.encode([0u8; 64]);
    assert_eq!(
        java().verify(Some(&zero), Some(TS), HANGUP.as_bytes(), NOW),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn signature_over_payload_only_fails() {
    assert_eq!(
        java().verify(
            Some(JAVA_PAYLOAD_ONLY_SIG),
            Some(TS),
            HANGUP.as_bytes(),
            NOW
        ),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn dot_separator_signature_fails() {
    assert_eq!(
        java().verify(
            Some(JAVA_DOT_SEPARATOR_SIG),
            Some(TS),
            HANGUP.as_bytes(),
            NOW
        ),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn pretty_printed_body_fails_against_compact_signature() {
    let value: Value = serde_json::from_str(HANGUP).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    assert_ne!(pretty, HANGUP);
    assert_eq!(
        java().verify(Some(JAVA_HANGUP_SIG), Some(TS), pretty.as_bytes(), NOW),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn missing_headers_are_named() {
    assert_eq!(
        java().verify(None, Some(TS), HANGUP.as_bytes(), NOW),
        Err(SignatureError::MissingHeader("telnyx-signature-ed25519"))
    );
    assert_eq!(
        java().verify(Some(JAVA_HANGUP_SIG), None, HANGUP.as_bytes(), NOW),
        Err(SignatureError::MissingHeader(TIMESTAMP_HEADER))
    );
}

#[test]
fn bad_encodings_are_distinct_from_bad_signatures() {
    let short = STANDARD.encode([7u8; 63]);
    for sig in ["not base64 at all!", short.as_str(), ""] {
        assert_eq!(
            java().verify(Some(sig), Some(TS), HANGUP.as_bytes(), NOW),
            Err(SignatureError::BadSignatureEncoding),
            "{sig:?}"
        );
    }
    for ts in [
        "",
        "17672256OO",
        "+1767225600",
        "1767225600.0",
        " 1767225600",
    ] {
        assert_eq!(
            java().verify(Some(JAVA_HANGUP_SIG), Some(ts), HANGUP.as_bytes(), NOW),
            Err(SignatureError::BadTimestamp),
            "{ts:?}"
        );
    }
}

#[test]
fn tolerance_is_300_seconds_both_ways() {
    let v = java();
    let check = |now| v.verify(Some(JAVA_HANGUP_SIG), Some(TS), HANGUP.as_bytes(), now);
    assert_eq!(check(NOW + 300), Ok(()));
    assert_eq!(check(NOW - 300), Ok(()));
    assert_eq!(
        check(NOW + 301),
        Err(SignatureError::StaleTimestamp { skew_secs: -301 })
    );
    assert_eq!(
        check(NOW - 301),
        Err(SignatureError::StaleTimestamp { skew_secs: 301 })
    );
}

#[test]
fn stale_check_does_not_overflow_on_absurd_timestamps() {
    let signer = WebhookSigner::generate();
    let ts = u64::MAX.to_string();
    let sig = signer.sign(&ts, b"{}");
    assert!(matches!(
        signer.verifier().verify(Some(&sig), Some(&ts), b"{}", 0),
        Err(SignatureError::StaleTimestamp { .. })
    ));
    let huge = "9".repeat(40);
    assert_eq!(
        signer.verifier().verify(Some(&sig), Some(&huge), b"{}", 0),
        Err(SignatureError::BadTimestamp)
    );
}
