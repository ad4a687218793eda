//! The WebSocket opening handshake (RFC 6455 over HTTP/1.1, RFC 8441 over HTTP/2). It is done
//! here rather than by axum's `WebSocketUpgrade` because the hub needs the upgraded byte stream
//! itself: publishers write encoded frames to it directly (see [`crate::outbox`]), which axum's
//! `WebSocket` does not expose.

use crate::api_error::ApiError;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The byte stream of an upgraded connection.
pub(crate) type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// A valid handshake request, answered by [`Handshake::respond`].
pub(crate) struct Handshake {
    /// `Sec-WebSocket-Accept` (HTTP/1.1 only; HTTP/2 answers with a plain 200).
    accept: Option<HeaderValue>,
    on_upgrade: OnUpgrade,
}

fn refused(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_websocket_handshake",
        message,
    )
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl Handshake {
    /// Checks the request the way axum's `WebSocketUpgrade` does; a bad one is a 4xx.
    pub(crate) fn check(parts: &mut Parts) -> Result<Self, ApiError> {
        let accept = if parts.version <= Version::HTTP_11 {
            if parts.method != Method::GET {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "a WebSocket handshake over HTTP/1.1 is a GET",
                ));
            }
            if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
                return Err(refused("the Connection header must include `upgrade`"));
            }
            if !header_is(&parts.headers, header::UPGRADE, "websocket") {
                return Err(refused("the Upgrade header must be `websocket`"));
            }
            let key = parts
                .headers
                .get(header::SEC_WEBSOCKET_KEY)
                .ok_or_else(|| refused("Sec-WebSocket-Key is missing"))?;
            Some(
                HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                    .expect("base64 is a valid header value"),
            )
        } else {
            if parts.method != Method::CONNECT {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "a WebSocket handshake over HTTP/2 is a CONNECT",
                ));
            }
            let websocket = parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str() == "websocket");
            if !websocket {
                return Err(refused("the :protocol pseudo-header must be `websocket`"));
            }
            None
        };
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(refused("Sec-WebSocket-Version must be 13"));
        }
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
            ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "upgrade_required",
                "this connection cannot be upgraded",
            )
        })?;
        Ok(Self { accept, on_upgrade })
    }

    /// The handshake response; once it is out, `serve` runs with the upgraded stream.
    pub(crate) fn respond<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Upgraded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let Some(accept) = self.accept else {
            // HTTP/2 (RFC 8441): a 2xx with no body opens the stream.
            return Response::new(Body::empty());
        };
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}
