//! HTTP plumbing shared by the clients: the reqwest client and size-limited response bodies.

use crate::outcome::PushError;
use std::time::Duration;

/// Provider error bodies are small JSON; anything beyond this is cut off unread.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Builds a client. Plain `http://` URLs (local test servers) and `force_h2` use HTTP/2 with
/// prior knowledge; `https://` negotiates HTTP/2 by ALPN.
pub(crate) fn client(
    base_url: &str,
    timeout: Duration,
    force_h2: bool,
) -> Result<reqwest::Client, PushError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(600));
    if force_h2 || base_url.starts_with("http://") {
        builder = builder.http2_prior_knowledge();
    }
    builder
        .build()
        .map_err(|e| PushError::Client(e.to_string()))
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of a response body; the rest is dropped.
pub(crate) async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_RESPONSE_BYTES - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}

/// Trims a base URL's trailing slash so paths can be appended.
pub(crate) fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}
