//! Webhook signatures: Ed25519 over `"{telnyx-timestamp}|{raw body}"`, base64 in
//! `telnyx-signature-ed25519`, with a 300 s tolerance both ways against an injected clock.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// Header carrying the base64 signature.
pub const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
/// Header carrying the Unix time (seconds) the webhook was signed at.
pub const TIMESTAMP_HEADER: &str = "telnyx-timestamp";
/// How far (either way) a webhook timestamp may be from our clock, as in every Telnyx SDK.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 300;

/// A key given to [`WebhookVerifier::new`] or [`WebhookSigner::from_base64`] is unusable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not standard base64.
    #[error("key is not valid base64")]
    Base64,
    /// Decoded to the wrong number of bytes.
    #[error("key is {0} bytes; expected {1}")]
    Length(usize, &'static str),
    /// The bytes are not a valid Ed25519 point (public keys only).
    #[error("key is not a valid Ed25519 public key")]
    InvalidPoint,
    /// A 64-byte secret whose second half is not the public key of its seed.
    #[error("secret key's public half does not match its seed")]
    Mismatch,
}

/// Why a webhook's signature was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The signature header is not base64 of 64 bytes.
    #[error("signature header is not base64 of a 64-byte Ed25519 signature")]
    BadSignatureEncoding,
    /// The timestamp header is not a decimal number of seconds.
    #[error("timestamp header is not a Unix time in seconds")]
    BadTimestamp,
    /// The timestamp is more than the tolerance away from now (replay or clock skew).
    #[error("timestamp is {skew_secs} s away from now (tolerance {TIMESTAMP_TOLERANCE_SECS} s)")]
    StaleTimestamp {
        /// Signed distance: positive when the webhook claims to be from the future.
        skew_secs: i64,
    },
    /// The signature does not verify over `timestamp|body` with the configured key.
    #[error("signature does not match")]
    BadSignature,
}

/// Checks Telnyx webhook signatures against the account's public key.
#[derive(Clone, Debug)]
pub struct WebhookVerifier {
    key: VerifyingKey,
    tolerance_secs: u64,
}

impl WebhookVerifier {
    /// A verifier for the base64 32-byte public key shown in the Telnyx portal.
    pub fn new(public_key_b64: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(public_key_b64.trim())
            .map_err(|_| KeyError::Base64)?;
        let raw: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len(), "32"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPoint)?;
        Ok(Self {
            key,
            tolerance_secs: TIMESTAMP_TOLERANCE_SECS,
        })
    }

    /// Verifies one webhook. `signature_b64` and `timestamp` are the header values (`None` when
    /// absent), `body` the raw bytes as received, `now_unix_secs` the caller's clock.
    pub fn verify(
        &self,
        signature_b64: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now_unix_secs: u64,
    ) -> Result<(), SignatureError> {
        let signature_b64 = signature_b64.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
        let timestamp = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
        let sig_bytes = STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| SignatureError::BadSignatureEncoding)?;
        let signature =
            Signature::from_slice(&sig_bytes).map_err(|_| SignatureError::BadSignatureEncoding)?;
        // Only digits: "+5" or " 5" would parse but would not be what was signed.
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SignatureError::BadTimestamp);
        }
        let signed_at: u64 = timestamp
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let skew = i128::from(signed_at) - i128::from(now_unix_secs);
        if skew.unsigned_abs() > u128::from(self.tolerance_secs) {
            let skew_secs =
                i64::try_from(skew).unwrap_or(if skew > 0 { i64::MAX } else { i64::MIN });
            return Err(SignatureError::StaleTimestamp { skew_secs });
        }
        let message = signed_message(timestamp, body);
        self.key
            .verify(&message, &signature)
            .map_err(|_| SignatureError::BadSignature)
    }

    /// Verifies using the two Telnyx headers from an HTTP request (names are case-insensitive).
    pub fn verify_headers(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        now_unix_secs: u64,
    ) -> Result<(), SignatureError> {
        let get = |name: &'static str| -> Result<Option<&str>, SignatureError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v.to_str().map(Some).map_err(|_| match name {
                    SIGNATURE_HEADER => SignatureError::BadSignatureEncoding,
                    _ => SignatureError::BadTimestamp,
                }),
            }
        };
        self.verify(
            get(SIGNATURE_HEADER)?,
            get(TIMESTAMP_HEADER)?,
            body,
            now_unix_secs,
        )
    }
}

/// `timestamp|body`, the bytes Telnyx signs.
pub fn signed_message(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'|');
    message.extend_from_slice(body);
    message
}

/// Signs webhooks the way Telnyx does; used by the emulator and by tests.
#[derive(Clone, Debug)]
pub struct WebhookSigner {
    key: SigningKey,
}

impl WebhookSigner {
    /// A fresh random keypair.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// From base64 of a 32-byte seed, or of a 64-byte libsodium secret (seed then public key).
    pub fn from_base64(secret_b64: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(secret_b64.trim())
            .map_err(|_| KeyError::Base64)?;
        match bytes.len() {
            32 => {
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&bytes);
                Ok(Self {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            64 => {
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&bytes[..32]);
                let key = SigningKey::from_bytes(&seed);
                if key.verifying_key().as_bytes()[..] != bytes[32..] {
                    return Err(KeyError::Mismatch);
                }
                Ok(Self { key })
            }
            n => Err(KeyError::Length(n, "32 or 64")),
        }
    }

    /// The public key, base64, as Telnyx shows it in the portal.
    pub fn public_key_b64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// The 32-byte seed, base64 (what `--signing-key-file` holds).
    pub fn seed_b64(&self) -> String {
        STANDARD.encode(self.key.to_bytes())
    }

    /// A verifier for this signer's public key.
    pub fn verifier(&self) -> WebhookVerifier {
        WebhookVerifier {
            key: self.key.verifying_key(),
            tolerance_secs: TIMESTAMP_TOLERANCE_SECS,
        }
    }

    /// The base64 signature of `timestamp|body`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        STANDARD.encode(self.key.sign(&signed_message(timestamp, body)).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_must_be_32_bytes_of_base64() {
        assert_eq!(WebhookVerifier::new("!!").unwrap_err(), KeyError::Base64);
        assert_eq!(
            WebhookVerifier::new(&STANDARD.encode([1u8; 31])).unwrap_err(),
            KeyError::Length(31, "32")
        );
    }

    #[test]
    fn generated_signer_round_trips_through_its_verifier() {
        let signer = WebhookSigner::generate();
        let sig = signer.sign("1700000000", b"{}");
        let verifier = WebhookVerifier::new(&signer.public_key_b64()).unwrap();
        assert_eq!(
            verifier.verify(Some(&sig), Some("1700000000"), b"{}", 1_700_000_000),
            Ok(())
        );
        let again = WebhookSigner::from_base64(&signer.seed_b64()).unwrap();
        assert_eq!(again.public_key_b64(), signer.public_key_b64());
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let signer = WebhookSigner::generate();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "Telnyx-Signature-Ed25519",
            signer.sign("10", b"x").parse().unwrap(),
        );
        headers.insert("Telnyx-Timestamp", "10".parse().unwrap());
        assert_eq!(signer.verifier().verify_headers(&headers, b"x", 10), Ok(()));
        headers.remove("telnyx-timestamp");
        assert_eq!(
            signer.verifier().verify_headers(&headers, b"x", 10),
            Err(SignatureError::MissingHeader(TIMESTAMP_HEADER))
        );
    }
}
