//! Pusher's HMAC-SHA256 signatures: channel auth strings and HTTP API request signing.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length")
}

fn sign_hex(secret: &str, message: &str) -> String {
    let mut m = mac(secret);
    m.update(message.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Constant-time check of a hex signature over `message`; malformed hex is a mismatch.
fn verify_hex(secret: &str, message: &str, signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(message.as_bytes());
    m.verify_slice(&sig).is_ok()
}

fn channel_string_to_sign(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The auth string a client sends to subscribe: `key:hex(HMAC-SHA256(secret,
/// "socket_id:channel[:channel_data]"))`.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let sig = sign_hex(
        secret,
        &channel_string_to_sign(socket_id, channel, channel_data),
    );
    format!("{key}:{sig}")
}

/// Checks a client's auth string against the exact `channel_data` bytes it sent, in constant time.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    auth: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> bool {
    let Some((auth_key, sig)) = auth.rsplit_once(':') else {
        return false;
    };
    // Evaluate both so the time taken does not reveal which half was wrong.
    let key_ok = auth_key == key;
    let sig_ok = verify_hex(
        secret,
        &channel_string_to_sign(socket_id, channel, channel_data),
        sig,
    );
    key_ok & sig_ok
}

/// Most query parameters an HTTP API request may carry (Pusher's SDKs send at most five).
pub const MAX_API_PARAMS: usize = 16;

/// Why an HTTP API request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    /// More than [`MAX_API_PARAMS`] query parameters.
    #[error("more than {MAX_API_PARAMS} query parameters")]
    TooManyParams,
    /// A required query parameter is absent.
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    /// A query parameter appears twice, which makes the signed string ambiguous.
    #[error("duplicate query parameter {0}")]
    Duplicate(String),
    /// `auth_key` is not this app's key.
    #[error("unknown auth_key")]
    WrongKey,
    /// `auth_version` other than 1.0.
    #[error("unsupported auth_version (expected 1.0)")]
    Version,
    /// `auth_timestamp` is not an integer or lies outside the allowed window.
    #[error("auth_timestamp outside the allowed window of {0} s")]
    Timestamp(u64),
    /// `body_md5` does not match the body received.
    #[error("body_md5 does not match the request body")]
    BodyMd5,
    /// `auth_signature` does not match.
    #[error("invalid auth_signature")]
    Signature,
}

/// The string Pusher signs for an HTTP API request: `METHOD\nPATH\nk=v&k=v` with keys
/// lowercased and sorted, `auth_signature` left out.
pub fn api_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{query}", method.to_ascii_uppercase())
}

/// `hex(md5(body))`, as carried in `body_md5`.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Builds the full signed query string for an HTTP API call (what the Pusher server SDKs send).
pub fn sign_api_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
) -> String {
    let mut params = vec![
        ("auth_key".to_owned(), key.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".to_owned(), body_md5(body)));
    }
    let to_sign = api_string_to_sign(method, path, &params);
    let query = to_sign.rsplit('\n').next().unwrap_or_default().to_owned();
    format!("{query}&auth_signature={}", sign_hex(secret, &to_sign))
}

/// What an HTTP API request must be checked against.
#[derive(Debug, Clone, Copy)]
pub struct ApiCredentials<'a> {
    /// The app key `auth_key` must equal.
    pub key: &'a str,
    /// The secret the signature is made with.
    pub secret: &'a str,
    /// Largest allowed distance between `auth_timestamp` and `now_unix`.
    pub window: Duration,
}

/// Verifies a signed HTTP API request: key, version, timestamp window, body digest, and the
/// signature (constant time). `params` are the decoded query pairs, `now_unix` the server clock.
pub fn verify_api_request(
    creds: ApiCredentials<'_>,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    now_unix: i64,
) -> Result<(), ApiAuthError> {
    // Cheap checks first, each linear in the query: its size, then the key, so that an
    // unsigned flood costs no hashing.
    if params.len() > MAX_API_PARAMS {
        return Err(ApiAuthError::TooManyParams);
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let key = get("auth_key").ok_or(ApiAuthError::Missing("auth_key"))?;
    if key != creds.key {
        return Err(ApiAuthError::WrongKey);
    }
    let mut seen = std::collections::HashSet::with_capacity(params.len());
    for (k, _) in params {
        let k = k.to_ascii_lowercase();
        if !seen.insert(k.clone()) {
            return Err(ApiAuthError::Duplicate(k));
        }
    }
    let timestamp = get("auth_timestamp").ok_or(ApiAuthError::Missing("auth_timestamp"))?;
    let version = get("auth_version").ok_or(ApiAuthError::Missing("auth_version"))?;
    let signature = get("auth_signature").ok_or(ApiAuthError::Missing("auth_signature"))?;
    if version != "1.0" {
        return Err(ApiAuthError::Version);
    }
    let window = creds.window.as_secs();
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| ApiAuthError::Timestamp(window))?;
    if now_unix.abs_diff(timestamp) > window {
        return Err(ApiAuthError::Timestamp(window));
    }
    match get("body_md5") {
        Some(md5) if md5.eq_ignore_ascii_case(&body_md5(body)) => {}
        Some(_) => return Err(ApiAuthError::BodyMd5),
        None if body.is_empty() => {}
        None => return Err(ApiAuthError::Missing("body_md5")),
    }
    if verify_hex(
        creds.secret,
        &api_string_to_sign(method, path, params),
        signature,
    ) {
        Ok(())
    } else {
        Err(ApiAuthError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_auth_matches_pusher_documentation_example() {
        // From Pusher's auth-signatures page: key 278d425bdf160c739803, secret
        // 7ad3773142a6692b25b8, socket 1234.1234, channel private-foobar.
        let auth = channel_auth(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "1234.1234",
            "private-foobar",
            None,
        );
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(verify_channel_auth(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            &auth,
            "1234.1234",
            "private-foobar",
            None
        ));
    }

    #[test]
    fn presence_auth_covers_channel_data() {
        let data = r#"{"user_id":"7","user_info":{"name":"alice"}}"#;
        let auth = channel_auth("k", "s", "1.2", "presence-room", Some(data));
        assert!(verify_channel_auth(
            "k",
            "s",
            &auth,
            "1.2",
            "presence-room",
            Some(data)
        ));
        let tampered = r#"{"user_id":"8","user_info":{"name":"alice"}}"#;
        assert!(!verify_channel_auth(
            "k",
            "s",
            &auth,
            "1.2",
            "presence-room",
            Some(tampered)
        ));
        assert!(!verify_channel_auth(
            "k",
            "s",
            &auth,
            "1.2",
            "presence-room",
            None
        ));
    }

    #[test]
    fn channel_auth_rejects_other_socket_channel_key_or_garbage() {
        let auth = channel_auth("k", "s", "1.2", "private-a", None);
        assert!(!verify_channel_auth(
            "k",
            "s",
            &auth,
            "1.3",
            "private-a",
            None
        ));
        assert!(!verify_channel_auth(
            "k",
            "s",
            &auth,
            "1.2",
            "private-b",
            None
        ));
        assert!(!verify_channel_auth(
            "other",
            "s",
            &auth,
            "1.2",
            "private-a",
            None
        ));
        assert!(!verify_channel_auth(
            "k",
            "t",
            &auth,
            "1.2",
            "private-a",
            None
        ));
        for junk in ["", "k", "k:", "k:zz", ":", "k:abcd"] {
            assert!(
                !verify_channel_auth("k", "s", junk, "1.2", "private-a", None),
                "{junk}"
            );
        }
    }

    fn parse_query(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn api_request_signature_round_trip_and_every_rejection() {
        let creds = ApiCredentials {
            key: "k",
            secret: "s",
            window: Duration::from_secs(600),
        };
        let body = br#"{"name":"e","channel":"c","data":"{}"}"#;
        let now = 1_800_000_000;
        let q = parse_query(&sign_api_request(
            "k",
            "s",
            "POST",
            "/apps/1/events",
            body,
            now,
        ));
        let check = |params: &[(String, String)], body: &[u8], now: i64| {
            verify_api_request(creds, "POST", "/apps/1/events", params, body, now)
        };
        assert_eq!(check(&q, body, now), Ok(()));
        assert_eq!(check(&q, body, now + 600), Ok(()));
        assert_eq!(check(&q, body, now - 600), Ok(()));
        assert_eq!(
            check(&q, body, now + 601),
            Err(ApiAuthError::Timestamp(600))
        );
        assert_eq!(
            check(&q, body, now - 601),
            Err(ApiAuthError::Timestamp(600))
        );
        assert_eq!(check(&q, b"{}", now), Err(ApiAuthError::BodyMd5));
        assert_eq!(
            verify_api_request(creds, "POST", "/apps/2/events", &q, body, now),
            Err(ApiAuthError::Signature)
        );
        let with = |name: &str, value: &str| {
            q.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if k == name {
                            value.to_owned()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check(&with("auth_key", "x"), body, now),
            Err(ApiAuthError::WrongKey)
        );
        assert_eq!(
            check(&with("auth_version", "2.0"), body, now),
            Err(ApiAuthError::Version)
        );
        assert_eq!(
            check(&with("auth_timestamp", "soon"), body, now),
            Err(ApiAuthError::Timestamp(600))
        );
        assert_eq!(
            check(&with("auth_signature", "00"), body, now),
            Err(ApiAuthError::Signature)
        );
        let without: Vec<_> = q.iter().filter(|(k, _)| k != "body_md5").cloned().collect();
        assert_eq!(
            check(&without, body, now),
            Err(ApiAuthError::Missing("body_md5"))
        );
        let mut dup = q.clone();
        dup.push(("auth_key".into(), "k".into()));
        assert_eq!(
            check(&dup, body, now),
            Err(ApiAuthError::Duplicate("auth_key".into()))
        );
        // The key is checked before duplicates: a foreign key never gets further.
        let mut foreign = with("auth_key", "x");
        foreign.push(("auth_version".into(), "1.0".into()));
        assert_eq!(check(&foreign, body, now), Err(ApiAuthError::WrongKey));
        // Seventeen parameters are refused before anything else, even correctly signed ones.
        let mut many = q.clone();
        many.extend((0..(MAX_API_PARAMS + 1 - q.len())).map(|i| (format!("x{i}"), "1".into())));
        assert_eq!(many.len(), MAX_API_PARAMS + 1);
        assert_eq!(check(&many, body, now), Err(ApiAuthError::TooManyParams));
        assert_eq!(
            check(&many[..MAX_API_PARAMS], body, now),
            Err(ApiAuthError::Signature)
        );
        // A parameter added after signing changes the signed string.
        let mut extra = q.clone();
        extra.push(("info".into(), "user_count".into()));
        assert_eq!(check(&extra, body, now), Err(ApiAuthError::Signature));
    }

    #[test]
    fn string_to_sign_sorts_and_skips_signature() {
        let params = vec![
            ("b".to_owned(), "2".to_owned()),
            ("auth_signature".to_owned(), "x".to_owned()),
            ("A".to_owned(), "1".to_owned()),
        ];
        assert_eq!(
            api_string_to_sign("post", "/p", &params),
            "POST\n/p\na=1&b=2"
        );
    }
}
