//! Device tokens: `rmd_<device id>.<hex HMAC-SHA256(secret, device id)>`, checked without a
//! database round trip; the store keeps a hash of the token too, so a device can be revoked.

use hmac::{Hmac, Mac};
use ringmaster_core::DeviceId;
use sha2::{Digest, Sha256};

const PREFIX: &str = "rmd_";
const MAX_TOKEN_LEN: usize = 512;

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

    fn mac(&self, device: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(device.as_bytes());
        mac
    }

    /// A token for `device`.
    pub fn issue(&self, device: &DeviceId) -> String {
        let tag = self.mac(device.as_str()).finalize().into_bytes();
        format!("{PREFIX}{}.{}", device.as_str(), hex::encode(tag))
    }

    /// The device a token names, if its signature is valid.
    pub fn verify(&self, token: &str) -> Option<DeviceId> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (device, tag) = token.strip_prefix(PREFIX)?.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.mac(device).verify_slice(&tag).ok()?;
        Some(DeviceId::new(device))
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
        assert_eq!(signer.verify(&token), Some(DeviceId::new("dev-1")));
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
