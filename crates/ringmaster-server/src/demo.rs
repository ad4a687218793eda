//! The sandbox's demo user: created at start-up (idempotently) with an iOS, an Android and a
//! web device, so `ringmaster serve` can print a sign-in link a new user just opens.

use crate::app::AppState;
use crate::routes::admin::DEFAULT_TENANT;
use crate::tokens::token_hash;
use anyhow::Context as _;
use ringmaster_core::{DeviceId, TenantId, UserId};
use ringmaster_store::{Device, DevicePlatform, User};

/// The demo user's id.
pub const DEMO_USER: &str = "usr_demo";
/// The demo user's number (a sandbox call to it rings the three devices).
pub const DEMO_NUMBER: &str = "+15550100100";

/// The demo user's devices: id, platform and SIP URI.
const DEMO_DEVICES: [(&str, DevicePlatform, &str); 3] = [
    (
        "dev_demo_ios",
        DevicePlatform::Ios,
        "sip:demo-ios@sandbox.ringmaster.local",
    ),
    (
        "dev_demo_android",
        DevicePlatform::Android,
        "sip:demo-android@sandbox.ringmaster.local",
    ),
    (
        "dev_demo_web",
        DevicePlatform::Web,
        "sip:demo-web@sandbox.ringmaster.local",
    ),
];

/// What the banner prints about the demo user.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The demo user's number.
    pub number: String,
    /// The web device's token (the sign-in link carries it).
    pub web_token: String,
}

/// Creates the demo user and its devices unless they exist, and returns the web device's
/// token. Device tokens are derived from the device id and the token secret, so the same
/// link works after a restart as long as the secret is kept (`secrets.toml`).
pub async fn ensure(app: &AppState) -> anyhow::Result<Demo> {
    let store = &app.store;
    let user_id = UserId::new(DEMO_USER);
    let now = app.engine.now();
    if store.get_user(&user_id).await?.is_none() {
        store
            .create_user(User {
                id: user_id.clone(),
                tenant_id: TenantId::new(DEFAULT_TENANT),
                name: "Demo user".to_owned(),
                numbers: vec![DEMO_NUMBER.to_owned()],
                call_waiting: false,
                voicemail_enabled: false,
                created_at: now,
            })
            .await
            .with_context(|| format!("creating the demo user (is {DEMO_NUMBER} taken?)"))?;
    }
    let mut web_token = None;
    for (id, platform, sip_uri) in DEMO_DEVICES {
        let id = DeviceId::new(id);
        let token = app.tokens.issue_stable(&id);
        match store.get_device(&id).await? {
            Some(existing) if existing.token_hash != token_hash(&token) => anyhow::bail!(
                "the demo device {id} was registered with another token secret; its link \
                 would not work (set the old RINGMASTER_TOKEN_SECRET or use a fresh database)"
            ),
            Some(_) => {}
            None => {
                store
                    .create_device(Device {
                        id: id.clone(),
                        user_id: user_id.clone(),
                        platform,
                        sip_uri: sip_uri.to_owned(),
                        token_hash: token_hash(&token),
                        push_token: None,
                        push_provider: None,
                        revoked: false,
                        created_at: now,
                    })
                    .await
                    .with_context(|| format!("registering the demo device {id}"))?;
            }
        }
        if platform == DevicePlatform::Web {
            web_token = Some(token);
        }
    }
    Ok(Demo {
        number: DEMO_NUMBER.to_owned(),
        web_token: web_token.context("the demo has a web device")?,
    })
}
