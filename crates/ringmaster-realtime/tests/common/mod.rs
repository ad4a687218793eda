//! Test harness: a hub served on 127.0.0.1:0 and a raw WebSocket client.
#![allow(dead_code)]

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use ringmaster_core::{DeviceId, TenantId, UserId};
use ringmaster_realtime::{
    router, Authenticator, ChannelName, Principal, RealtimeConfig, RealtimeHub, SocketId,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP_ID: &str = "app-id";
pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";
/// Upper bound on any single wait, so a broken server fails a test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Tokens: alice (user 42) has two devices, bob is user 7.
pub struct TestAuth;

#[async_trait]
impl Authenticator for TestAuth {
    async fn authenticate(&self, bearer: &str) -> Option<Principal> {
        let (user, device, name) = match bearer {
            "tok-alice" => ("42", "alice-phone", "alice"),
            "tok-alice-web" => ("42", "alice-web", "alice"),
            "tok-bob" => ("7", "bob-phone", "bob"),
            _ => return None,
        };
        Some(Principal {
            user_id: UserId::new(user),
            tenant_id: TenantId::new("t1"),
            device_id: DeviceId::new(device),
            user_info: json!({ "name": name }),
        })
    }
}

pub fn config() -> RealtimeConfig {
    RealtimeConfig::new(APP_ID, KEY, SECRET)
}

pub struct Server {
    pub hub: RealtimeHub,
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(config: RealtimeConfig) -> Self {
        Self::start_hub(RealtimeHub::new(config)).await
    }

    pub async fn start_hub(hub: RealtimeHub) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(hub.clone(), Arc::new(TestAuth));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { hub, addr }
    }

    /// Like [`Server::start`], with each request carrying the client address (as the
    /// coordinator's listener does), so per-address limits apply.
    pub async fn start_with_peer_addr(config: RealtimeConfig) -> Self {
        let hub = RealtimeHub::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(hub.clone(), Arc::new(TestAuth))
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { hub, addr }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn connect_path(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        Client {
            ws,
            socket_id: None,
        }
    }

    /// Connects the way pusher-js does and reads the handshake.
    pub async fn connect(&self) -> Client {
        let mut client = self
            .connect_path(&format!(
                "/app/{KEY}?protocol=7&client=js&version=8.6.0&flash=false"
            ))
            .await;
        let frame = client.recv().await;
        assert_eq!(frame["event"], "pusher:connection_established", "{frame}");
        let data: Value =
            serde_json::from_str(frame["data"].as_str().expect("data is a string")).unwrap();
        client.socket_id =
            Some(SocketId::parse(data["socket_id"].as_str().unwrap()).expect("socket id shape"));
        client
    }

    /// Publishes a marker event on `channel`; used to prove that nothing arrived before it.
    pub async fn marker(&self, channel: &str, n: u32) {
        let channel = ChannelName::parse(channel).unwrap();
        self.hub
            .publish(&channel, "marker", &json!({ "n": n }), None)
            .await
            .unwrap();
    }

    pub fn auth(&self, client: &Client, channel: &str, channel_data: Option<&str>) -> String {
        self.hub.channel_auth(
            client.id(),
            &ChannelName::parse(channel).unwrap(),
            channel_data,
        )
    }

    /// Subscribes with a valid signature and checks `subscription_succeeded`; returns its data.
    pub async fn subscribe(
        &self,
        client: &mut Client,
        channel: &str,
        channel_data: Option<&str>,
    ) -> Value {
        let auth = if channel.starts_with("private-") || channel.starts_with("presence-") {
            self.auth(client, channel, channel_data)
        } else {
            String::new()
        };
        let mut data = json!({ "channel": channel, "auth": auth });
        if let Some(cd) = channel_data {
            data["channel_data"] = Value::String(cd.to_owned());
        }
        client
            .send(json!({ "event": "pusher:subscribe", "data": data }))
            .await;
        let frame = client.recv().await;
        assert_eq!(
            frame["event"], "pusher_internal:subscription_succeeded",
            "{frame}"
        );
        assert_eq!(frame["channel"], channel);
        serde_json::from_str(frame["data"].as_str().unwrap()).unwrap()
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: Option<SocketId>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Close(u16, String),
    Dropped,
}

impl Client {
    pub fn id(&self) -> &SocketId {
        self.socket_id.as_ref().expect("connected")
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        // The server may already have closed; the test checks what it answered.
        let _ = self.ws.send(message).await;
    }

    /// The next text frame as JSON; panics on close or after [`WAIT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
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

    /// Reads until the next event named `name`, returning it.
    pub async fn recv_event(&mut self, name: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["event"], name, "{frame}");
        frame
    }

    /// Reads to the end of the connection: the close code, or `Dropped` without a close frame.
    /// Text frames on the way are returned too.
    pub async fn until_closed(&mut self) -> (Vec<Value>, Ended) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Text(text))) => {
                    frames.push(serde_json::from_str(text.as_str()).unwrap())
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (
                        frames,
                        Ended::Close(u16::from(frame.code), frame.reason.as_str().to_owned()),
                    )
                }
                Some(Ok(Message::Close(None))) => {
                    return (
                        frames,
                        Ended::Close(u16::from(CloseCode::Status), String::new()),
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (frames, Ended::Dropped),
            }
        }
    }

    /// Expects `pusher:error` with `code` followed by a close with the same code.
    pub async fn expect_error_close(&mut self, code: u16) -> String {
        let (frames, ended) = self.until_closed().await;
        let error = frames
            .iter()
            .find(|f| f["event"] == "pusher:error")
            .unwrap_or_else(|| panic!("no pusher:error in {frames:?}"));
        assert_eq!(error["data"]["code"], code, "{error}");
        match ended {
            Ended::Close(c, _) => assert_eq!(c, code),
            Ended::Dropped => panic!("connection dropped without close frame"),
        }
        error["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Waits (bounded) until `f` holds; for state that changes when a server task gets to run.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "condition never became true");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
