//! Request authentication: the admin bearer token, and device tokens for the device APIs.

use crate::app::AppState;
use crate::error::ApiError;
use crate::tokens::token_hash;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ringmaster_store::{Device, User};
use sha2::{Digest, Sha256};

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares secrets without an early exit on the first differing byte.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Proof that the request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if same_secret(token, &state.settings.admin_token) => Ok(Admin),
            Some(_) => Err(ApiError::unauthorized("invalid admin token")),
            None => Err(ApiError::unauthorized(
                "missing Authorization: Bearer <admin token>",
            )),
        }
    }
}

/// The device (and its user) a device token belongs to.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    /// The calling device.
    pub device: Device,
    /// Its owner.
    pub user: User,
}

impl DeviceAuth {
    /// Authenticates a device token: signature, then the stored hash (so revocation and
    /// re-issue take effect at once).
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::unauthorized("invalid device token");
        let claims = state.tokens.verify(token).ok_or_else(invalid)?;
        if claims.expired(state.engine.now().as_millis() / 1000) {
            return Err(ApiError::unauthorized(
                "device token expired; ask for a new one",
            ));
        }
        let device = state
            .store
            .get_device(&claims.device)
            .await?
            .ok_or_else(invalid)?;
        if device.revoked || !same_secret(&device.token_hash, &token_hash(token)) {
            return Err(invalid());
        }
        let user = state
            .store
            .get_user(&device.user_id)
            .await?
            .ok_or_else(invalid)?;
        Ok(Self { device, user })
    }
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <device token>")
        })?;
        Self::from_token(state, token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "bearer  xyz ".parse().unwrap());
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cres"));
        assert!(!same_secret("s3cret", ""));
    }
}
