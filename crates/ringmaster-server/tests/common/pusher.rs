//! A bare Pusher protocol 7 client over tokio-tungstenite, authenticating private channels
//! through the server's `/broadcasting/auth` with a device token, as pusher-js would.

use super::{PATIENCE, PUSHER_KEY};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct PusherClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    addr: SocketAddr,
    pub socket_id: String,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Close(u16),
    Dropped,
}

impl PusherClient {
    /// Connects to `/app/{key}` and reads `pusher:connection_established`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let url = format!("ws://{addr}/app/{PUSHER_KEY}?protocol=7&client=rust&version=1");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        let mut client = Self {
            ws,
            addr,
            socket_id: String::new(),
        };
        let frame = client.recv().await;
        assert_eq!(frame["event"], "pusher:connection_established", "{frame}");
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    /// Asks `/broadcasting/auth` (form-encoded, as laravel-echo does) to sign `channel`.
    pub async fn authorize(&self, token: &str, channel: &str) -> (StatusCode, Value) {
        self.authorize_at(self.addr, token, channel).await
    }

    /// Like [`Self::authorize`], through the node at `addr` (a load balancer may send the
    /// auth request to another node than the socket's).
    pub async fn authorize_at(
        &self,
        addr: SocketAddr,
        token: &str,
        channel: &str,
    ) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}/broadcasting/auth"))
            .bearer_auth(token)
            .form(&[
                ("socket_id", self.socket_id.as_str()),
                ("channel_name", channel),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends `pusher:subscribe` with `auth`.
    pub async fn send_subscribe(&mut self, channel: &str, auth: &str) {
        let frame =
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// Authorizes and subscribes to `channel`, expecting success.
    pub async fn subscribe(&mut self, token: &str, channel: &str) {
        self.subscribe_via(self.addr, token, channel).await
    }

    /// Like [`Self::subscribe`], with the auth request sent to the node at `auth_addr`.
    pub async fn subscribe_via(&mut self, auth_addr: SocketAddr, token: &str, channel: &str) {
        let (status, body) = self.authorize_at(auth_addr, token, channel).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let auth = body["auth"].as_str().unwrap().to_owned();
        self.send_subscribe(channel, &auth).await;
        let frame = self.recv().await;
        assert_eq!(
            frame["event"], "pusher_internal:subscription_succeeded",
            "{frame}"
        );
        assert_eq!(frame["channel"], channel);
    }

    /// Authorizes and subscribes to presence `channel` with the `channel_data` the server
    /// signed; returns the `presence` data of `subscription_succeeded`.
    pub async fn subscribe_presence(&mut self, token: &str, channel: &str) -> Value {
        let (status, body) = self.authorize(token, channel).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let frame = json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": body["auth"], "channel_data": body["channel_data"]}});
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        let frame = self.recv().await;
        assert_eq!(
            frame["event"], "pusher_internal:subscription_succeeded",
            "{frame}"
        );
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        data["presence"].clone()
    }

    /// The next text frame as JSON (pings are answered by the library and skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).expect("server sent JSON")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next event frame, its `data` decoded from the JSON string it travels as.
    pub async fn next_event(&mut self) -> (String, String, Value) {
        let frame = self.recv().await;
        let event = frame["event"].as_str().unwrap().to_owned();
        let channel = frame["channel"].as_str().unwrap_or_default().to_owned();
        let data = frame["data"]
            .as_str()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_else(|| frame["data"].clone());
        (event, channel, data)
    }

    /// Reads to the end of the connection; returns the text frames on the way and how it ended.
    pub async fn until_closed(&mut self) -> (Vec<Value>, Ended) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("connection stayed open");
            match next {
                Some(Ok(Message::Text(text))) => {
                    frames.push(serde_json::from_str(text.as_str()).unwrap())
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frames, Ended::Close(frame.code.into()))
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return (frames, Ended::Dropped)
                }
                Some(Ok(_)) => {}
            }
        }
    }
}
