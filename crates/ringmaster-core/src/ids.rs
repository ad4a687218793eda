//! Newtype identifiers, so a device id can never be passed where a session id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw identifier.
            pub fn new(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            /// The raw identifier.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                Self(raw.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(raw: String) -> Self {
                Self(raw)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Telnyx `call_session_id`: the key of one call across all its legs.
    CallSessionId
);
string_id!(
    /// Telnyx `call_control_id`: one leg, used in command URLs. Opaque.
    CallControlId
);
string_id!(
    /// Telnyx `call_leg_id`: unique per leg.
    CallLegId
);
string_id!(
    /// A registered device (phone, tablet or browser) of a user.
    DeviceId
);
string_id!(
    /// A user who owns numbers and devices.
    UserId
);
string_id!(
    /// A tenant (organisation); every user belongs to exactly one.
    TenantId
);
string_id!(
    /// One outbox effect, `<call_session_id>:<seq>`. Realtime and push payloads carry it as
    /// `effect_id`: after a node dies mid-dispatch another sends the effect again, and a
    /// client drops what it has already seen.
    EffectId
);

impl EffectId {
    /// The id of outbox effect `seq` of the call `session`.
    pub fn of(session: &CallSessionId, seq: u64) -> Self {
        Self(format!("{session}:{seq}"))
    }
}
