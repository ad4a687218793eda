//! A local HTTP/2 (h2c) stand-in for FCM (token endpoint and send API) and APNs on one port:
//! it records every request and answers from a replaceable rule. The keys are the push crate's
//! throw-away test keys (see crates/ringmaster-push/tests/data/README.md).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::Response;
use ringmaster_push::PushSender;
use ringmaster_server::config::{ApnsSettings, FcmSettings};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const FCM_PRIVATE_KEY: &str =
    include_str!("../../../ringmaster-push/tests/data/test-only-fcm-rsa.pem");
pub const APNS_PRIVATE_KEY: &str =
    include_str!("../../../ringmaster-push/tests/data/test-only-apns-p256.p8");
pub const BUNDLE: &str = "com.example.ringmaster";
pub const PROJECT: &str = "ringmaster-test";
/// An APNs device token (hex).
pub const IOS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// An FCM registration token.
pub const ANDROID_TOKEN: &str = "fcm-registration-token:APA91b-test_1";

/// One request as the stand-in saw it.
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
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn is_apns(&self) -> bool {
        self.path.starts_with("/3/device/")
    }

    pub fn is_fcm_send(&self) -> bool {
        self.path.ends_with("/messages:send")
    }

    /// The call event a push carries: APNs payload or FCM data `type`.
    pub fn push_type(&self) -> String {
        let body = self.json();
        let t = if self.is_apns() {
            &body["type"]
        } else {
            &body["message"]["data"]["type"]
        };
        t.as_str().unwrap_or_default().to_owned()
    }
}

/// Status, headers and body of an answer.
pub type Answer = (u16, Vec<(&'static str, String)>, String);
type Rule = Box<dyn Fn(&Recorded) -> Answer + Send + Sync>;

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    rule: Mutex<Rule>,
}

#[derive(Clone)]
pub struct PushMock {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

/// What real providers answer when all is well.
pub fn accept(r: &Recorded) -> Answer {
    if r.path == "/token" {
        let body = json!({"access_token": "test-access-token", "expires_in": 3600});
        (200, vec![], body.to_string())
    } else if r.is_apns() {
        (
            200,
            vec![("apns-id", "00000000-0000-0000-0000-000000000001".into())],
            String::new(),
        )
    } else {
        let body = json!({"name": format!("projects/{PROJECT}/messages/1")});
        (200, vec![], body.to_string())
    }
}

/// What providers answer for a token the app no longer holds: FCM `UNREGISTERED`, APNs 410.
pub fn reject_tokens(r: &Recorded) -> Answer {
    if r.is_apns() {
        let body = json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64});
        (410, vec![], body.to_string())
    } else if r.is_fcm_send() {
        let body = json!({"error": {"code": 404, "message": "Requested entity was not found.",
            "status": "NOT_FOUND", "details": [{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED"}]}});
        (404, vec![], body.to_string())
    } else {
        accept(r)
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let recorded = Recorded {
        path: parts.uri.path().to_owned(),
        version: parts.version,
        headers: parts.headers,
        body,
    };
    let (status, headers, body) = (inner.rule.lock().unwrap())(&recorded);
    inner.requests.lock().unwrap().push(recorded);
    let mut builder = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(body)).unwrap()
}

impl PushMock {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            rule: Mutex::new(Box::new(accept)),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn answer_with(&self, rule: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) {
        *self.inner.rule.lock().unwrap() = Box::new(rule);
    }

    /// Pushes sent so far (token requests left out).
    pub fn pushes(&self) -> Vec<Recorded> {
        self.inner
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.is_apns() || r.is_fcm_send())
            .cloned()
            .collect()
    }

    /// The FCM and APNs clients, configured the way `ringmaster serve` does it (from a
    /// service-account file and a .p8 key file written to `dir`), pointed at this stand-in.
    pub fn sender(&self, dir: &Path) -> Arc<PushSender> {
        let account = dir.join("service-account.json");
        let account_json = json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "test-key-id",
            "private_key": FCM_PRIVATE_KEY,
            "client_email": "ringmaster@ringmaster-test.iam.gserviceaccount.com",
            "token_uri": format!("{}/token", self.url()),
        });
        std::fs::write(&account, account_json.to_string()).unwrap();
        let key_file = dir.join("AuthKey_KEYID12345.p8");
        std::fs::write(&key_file, APNS_PRIVATE_KEY).unwrap();
        let fcm = FcmSettings {
            service_account_file: account,
            base_url: Some(self.url()),
        };
        let apns = ApnsSettings {
            key_file,
            key_id: "KEYID12345".into(),
            team_id: "TEAMID6789".into(),
            bundle_id: BUNDLE.into(),
            base_url: self.url(),
        };
        let sender = ringmaster_server::push::sender_from_config(Some(&fcm), Some(&apns))
            .unwrap()
            .expect("push configured");
        Arc::new(sender)
    }
}
