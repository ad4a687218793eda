//! Device tokens: `rmd_<device id>.<expiry>.<nonce>.<hex HMAC-SHA256(secret, "device.expiry.nonce")>`,
//! checked without a database round trip. `expiry` is Unix seconds (0: never) and the random
//! nonce makes every issued token different, so a re-issue replaces the old one. The store
//! keeps a hash of the current token too, so revocation and re-issue take effect at once.
//!
//! Tokens of the first format, `rmd_<device id>.<hex HMAC(secret, device id)>`, are still
//! accepted (without expiry) so that devices registered before stay signed in.

use hmac::{Hmac, Mac};
use rand::Rng as _;
use ringmaster_core::DeviceId;
use sha2::{Digest, Sha256};

const PREFIX: &str = "rmd_";
const MAX_TOKEN_LEN: usize = 512;

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The device it was issued to.
    pub device: DeviceId,
    /// When it stops being valid (Unix seconds); `None` never.
    pub expires_at: Option<u64>,
}

impl TokenClaims {
    /// Whether the token has expired at `now_unix` (seconds).
    pub fn expired(&self, now_unix: u64) -> bool {
        self.expires_at.is_some_and(|at| now_unix >= at)
    }
}

/// Issues and checks device tokens with the server's secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl TokenSigner {
    /// A signer keyed with `secret` (the admin token or a dedicated secret).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            secret: secret.as_ref().to_vec(),
        }
    }

    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(signed.as_bytes());
        mac
    }

    /// A token for `device` that never expires.
    pub fn issue(&self, device: &DeviceId) -> String {
        self.issue_until(device, None)
    }

    /// A token for `device` valid until `expires_at` (Unix seconds), or forever.
    pub fn issue_until(&self, device: &DeviceId, expires_at: Option<u64>) -> String {
        let nonce = hex::encode(rand::thread_rng().gen::<[u8; 8]>());
        let signed = format!("{}.{}.{nonce}", device.as_str(), expires_at.unwrap_or(0));
        let tag = self.mac(&signed).finalize().into_bytes();
        format!("{PREFIX}{signed}.{}", hex::encode(tag))
    }

    /// The same never-expiring token for `device` every time (for sandbox demo devices, whose
    /// sign-in link must survive a restart): its nonce is derived from the secret.
    pub fn issue_stable(&self, device: &DeviceId) -> String {
        let derived = self
            .mac(&format!("stable-nonce:{}", device.as_str()))
            .finalize()
            .into_bytes();
        let nonce = hex::encode(&derived[..8]);
        let signed = format!("{}.0.{nonce}", device.as_str());
        let tag = self.mac(&signed).finalize().into_bytes();
        format!("{PREFIX}{signed}.{}", hex::encode(tag))
    }

    /// What a token says, if its signature is valid (expiry is the caller's to check).
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (signed, tag) = token.strip_prefix(PREFIX)?.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.mac(signed).verify_slice(&tag).ok()?;
        let mut parts = signed.rsplitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(_nonce), Some(expiry), Some(device)) => {
                let expiry: u64 = expiry.parse().ok()?;
                Some(TokenClaims {
                    device: DeviceId::new(device),
                    expires_at: (expiry != 0).then_some(expiry),
                })
            }
            // The first format signed the bare device id.
            (Some(device), None, None) => Some(TokenClaims {
                device: DeviceId::new(device),
                expires_at: None,
            }),
            _ => None,
        }
    }
}

/// SHA-256 of a token, hex; what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_and_names_its_device() {
        let signer = TokenSigner::new("s3cret");
        let token = signer.issue(&DeviceId::new("dev-1"));
        let claims = signer.verify(&token).unwrap();
        assert_eq!(claims.device, DeviceId::new("dev-1"));
        assert_eq!(claims.expires_at, None);
        assert!(!claims.expired(u64::MAX));
        // Each issue is a new token.
        assert_ne!(token, signer.issue(&DeviceId::new("dev-1")));
    }

    #[test]
    fn expiry_is_signed_and_reported() {
        let signer = TokenSigner::new("s3cret");
        let token = signer.issue_until(&DeviceId::new("dev-1"), Some(1_000));
        let claims = signer.verify(&token).unwrap();
        assert_eq!(claims.expires_at, Some(1_000));
        assert!(!claims.expired(999));
        assert!(claims.expired(1_000));
        let stretched = token.replace(".1000.", ".9999.");
        assert_eq!(signer.verify(&stretched), None);
    }

    #[test]
    fn tokens_of_the_first_format_still_verify() {
        let signer = TokenSigner::new("s3cret");
        let tag = signer.mac("dev-1").finalize().into_bytes();
        let legacy = format!("rmd_dev-1.{}", hex::encode(tag));
        assert_eq!(
            signer.verify(&legacy).map(|c| c.device),
            Some(DeviceId::new("dev-1"))
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_rejected() {
        let signer = TokenSigner::new("s3cret");
        let token = signer.issue(&DeviceId::new("dev-1"));
        let forged = token.replace("dev-1", "dev-2");
        assert_eq!(signer.verify(&forged), None);
        assert_eq!(TokenSigner::new("other").verify(&token), None);
        assert_eq!(signer.verify("garbage"), None);
        assert_eq!(signer.verify(&"x".repeat(10_000)), None);
    }
}
