//! Who can be called: users, their numbers and their devices.

use ringmaster_core::{DeviceId, TenantId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// A user who owns phone numbers and devices. Tenants exist implicitly through their users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Chosen by the caller (the server generates it); the store never invents ids.
    pub id: UserId,
    /// The organisation the user belongs to.
    pub tenant_id: TenantId,
    /// Display name.
    pub name: String,
    /// E.164 numbers routed to this user, unique across all users, in the order given.
    pub numbers: Vec<String>,
    /// Whether the user may hold more than one active call.
    pub call_waiting: bool,
    /// Whether an unanswered call goes to voicemail (otherwise it simply ends).
    pub voicemail_enabled: bool,
    /// When the user was created.
    pub created_at: Timestamp,
}

/// The per-user switches that can change after creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSettings {
    /// See [`User::call_waiting`].
    pub call_waiting: bool,
    /// See [`User::voicemail_enabled`].
    pub voicemail_enabled: bool,
}

/// A registered phone, tablet or browser of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Chosen by the caller.
    pub id: DeviceId,
    /// The owner.
    pub user_id: UserId,
    /// What kind of client this is.
    pub platform: DevicePlatform,
    /// Where Telnyx dials this device (`sip:` or `sips:` URI).
    pub sip_uri: String,
    /// Hash of the device's bearer token; the server compares, the store only keeps it.
    pub token_hash: String,
    /// Current push token, if the device registered one.
    pub push_token: Option<String>,
    /// Which push service `push_token` belongs to.
    pub push_provider: Option<PushProvider>,
    /// A revoked device is never dialled and its token is refused.
    pub revoked: bool,
    /// When the device was registered.
    pub created_at: Timestamp,
}

/// The kind of client a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePlatform {
    /// iPhone / iPad app (CallKit, PushKit).
    Ios,
    /// Android app (ConnectionService, FCM).
    Android,
    /// Browser tab (WebRTC, WebSocket).
    Web,
}

/// The push service a device's token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushProvider {
    /// Firebase Cloud Messaging (HTTP v1).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

macro_rules! string_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stable lowercase name used in storage and JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(StoreError::invalid(
                        $what,
                        format!(
                            "`{}` is not one of {}",
                            s.chars().take(32).collect::<String>(),
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(DevicePlatform, "platform", { Ios => "ios", Android => "android", Web => "web" });
string_enum!(PushProvider, "push_provider", { Fcm => "fcm", Apns => "apns" });
