//! Local HTTP/2 (h2c) servers that record requests and answer from a script, and a manual clock.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::Response;
use ringmaster_push::clock::{Clock, Sleep};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub const FCM_PRIVATE_KEY: &str = include_str!("../data/test-only-fcm-rsa.pem");
pub const FCM_PUBLIC_KEY: &str = include_str!("../data/test-only-fcm-rsa.pub.pem");
pub const APNS_PRIVATE_KEY: &str = include_str!("../data/test-only-apns-p256.p8");
pub const APNS_PUBLIC_KEY: &str = include_str!("../data/test-only-apns-p256.pub.pem");

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Answers a request once its queue is empty, given the count of requests to that path.
type Fallback = Box<dyn Fn(usize) -> Reply + Send>;

#[derive(Default)]
struct Script {
    /// Answers per path prefix, consumed in order; `fallback` when a queue is empty.
    queues: Vec<(String, VecDeque<Reply>, Fallback)>,
    requests: Vec<Recorded>,
}

#[derive(Clone)]
pub struct MockServer {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

async fn handle(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let path = parts.uri.path().to_owned();
    let reply = {
        let mut s = script.lock().unwrap();
        s.requests.push(Recorded {
            path: path.clone(),
            version: parts.version,
            headers: parts.headers,
            body,
        });
        let served = s.requests.iter().filter(|r| r.path == path).count();
        let entry = s
            .queues
            .iter_mut()
            .find(|(prefix, _, _)| path.starts_with(prefix.as_str()));
        match entry {
            Some((_, queue, fallback)) => queue.pop_front().unwrap_or_else(|| fallback(served)),
            None => Reply::new(404, r#"{"reason":"no route in mock"}"#),
        }
    };
    let mut builder = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in reply.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(reply.body)).unwrap()
}

impl MockServer {
    pub async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, script }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Routes paths starting with `prefix`: first the queued replies, then `fallback(n)` where
    /// `n` counts requests to that exact path so far (1-based).
    pub fn route(
        &self,
        prefix: &str,
        replies: Vec<Reply>,
        fallback: impl Fn(usize) -> Reply + Send + 'static,
    ) {
        self.script.lock().unwrap().queues.push((
            prefix.to_owned(),
            replies.into(),
            Box::new(fallback),
        ));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }
}

/// A clock that only moves when told to, or when the client sleeps (which returns at once).
pub struct ManualClock {
    now: Mutex<SystemTime>,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            sleeps: Mutex::new(Vec::new()),
        })
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap() += by;
    }

    pub fn unix(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleeps.lock().unwrap().push(duration);
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

/// A policy whose waits are tiny and easy to recognise.
pub fn tiny_policy() -> ringmaster_push::RetryPolicy {
    ringmaster_push::RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_wait: Duration::from_secs(30),
    }
}
