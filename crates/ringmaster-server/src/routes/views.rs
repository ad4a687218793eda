//! The typed bodies the HTTP API answers with; the OpenAPI document is generated from them.

use ringmaster_store::{ActiveCall, CallRecord, Device, User};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The error object every 4xx/5xx answer carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `code` is stable and machine-readable; some errors add fields (e.g. `active_call`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// A device as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    /// SIP URI the device registers with.
    pub sip_uri: String,
    /// `fcm` or `apns` once the device registered a push token.
    pub push_provider: Option<String>,
    /// Whether the device's token was revoked.
    pub revoked: bool,
    /// Milliseconds since the epoch.
    pub created_at: u64,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        Self {
            id: d.id.to_string(),
            user_id: d.user_id.to_string(),
            platform: d.platform.as_str().to_owned(),
            sip_uri: d.sip_uri.clone(),
            push_provider: d.push_provider.map(|p| p.as_str().to_owned()),
            revoked: d.revoked,
            created_at: d.created_at.as_millis(),
        }
    }
}

/// A newly registered device with its bearer token (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct NewDeviceView {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceView,
    /// Device bearer token for the device API and channel auth.
    pub token: String,
    /// When the token expires (ms since the epoch); `null` when tokens do not expire.
    pub token_expires_at: Option<u64>,
}

/// A user as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// E.164 numbers that ring this user.
    pub numbers: Vec<String>,
    /// A second call may ring while the user is on one.
    pub call_waiting: bool,
    /// Unanswered calls go to voicemail.
    pub voicemail: bool,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// The user's devices (on create and get).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceView>>,
}

impl UserView {
    /// The user, with its devices when given.
    pub fn new(user: &User, devices: Option<&[Device]>) -> Self {
        Self {
            id: user.id.to_string(),
            tenant_id: user.tenant_id.to_string(),
            name: user.name.clone(),
            numbers: user.numbers.clone(),
            call_waiting: user.call_waiting,
            voicemail: user.voicemail_enabled,
            created_at: user.created_at.as_millis(),
            devices: devices.map(|ds| ds.iter().map(DeviceView::from).collect()),
        }
    }
}

/// Where the built-in emulator listens.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxView {
    /// The emulator's control API root.
    pub emulator_url: String,
    /// The emulator's Telnyx API root.
    pub telnyx_api_url: String,
}

/// The call as one device should see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallStatusView {
    /// The call.
    pub call_session_id: String,
    /// This device's view (`ringing`, `answered_here`, `answered_elsewhere`, `ended`, ...).
    pub status: String,
    /// The device the status is about (e.g. the one that answered).
    pub device_id: Option<String>,
    /// Why the device stopped ringing, if it did.
    pub reason: Option<String>,
    /// Status version; higher is newer.
    pub version: u64,
    /// The call's coarse status.
    pub call_status: String,
}

/// A call a device of the user has answered and that has not ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveCallView {
    /// The call.
    pub call_session_id: String,
    /// The device the user talks on.
    pub device_id: Option<String>,
    /// That device's platform (`ios`, `android`, `web`).
    pub platform: Option<String>,
    /// Its canonical state (`ACTIVE`, `ON_HOLD`, `REMOTE_HOLD`, `RECONNECTING`, ...).
    pub state: String,
    /// When it entered that state (milliseconds since the epoch).
    pub since: u64,
    /// When the device answered (milliseconds since the epoch).
    pub started_at: u64,
}

impl From<&ActiveCall> for ActiveCallView {
    fn from(a: &ActiveCall) -> Self {
        Self {
            call_session_id: a.call_session_id.to_string(),
            device_id: a.device_id.as_ref().map(ToString::to_string),
            platform: a.platform.clone(),
            state: a.state.as_str().to_owned(),
            since: a.since.as_millis(),
            started_at: a.started_at.as_millis(),
        }
    }
}

/// `GET /api/voip/my-active-call`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyActiveCall {
    /// The oldest active call, if any.
    pub active_call: Option<ActiveCallView>,
    /// Every active call (several with call waiting).
    pub active_calls: Vec<ActiveCallView>,
}

/// A call just placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacedCall {
    /// The new call.
    pub call_session_id: String,
    /// Its coarse status.
    pub status: String,
    /// Status version.
    pub version: u64,
    /// True when nothing was dialled because this is the ringing call from the number asked
    /// for (glare): the device answers its ringing leg of it.
    pub answer_ringing: bool,
}

/// The answer to a device report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAck {
    /// `accepted`, or `duplicate` for a `seq` not above the device's last accepted one.
    pub status: String,
    /// The call's version after the report.
    pub version: u64,
}

/// A history record with its billing figures and quality summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    /// The stored record.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub record: CallRecord,
    /// Seconds from answer to end.
    pub billable_seconds: u64,
    /// Whole minutes billed (at least one for a talked call).
    pub billing_minutes: u64,
    /// Audio quality summary of the hangup's stats, if Telnyx sent any.
    #[schema(value_type = Option<Object>)]
    pub quality_summary: Option<Value>,
}

/// A page of call history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Calls, newest first.
    pub items: Vec<CallView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// One call with its legs and timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallDetailView {
    /// The call.
    pub call: CallView,
    /// Its legs.
    #[schema(value_type = Vec<Object>)]
    pub legs: Value,
    /// Its timeline, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Value,
    /// The call's billing record, written once when it ended (`null` before).
    #[schema(value_type = Option<Object>)]
    pub billing: Value,
}

/// A device's push registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushTokenView {
    /// The device.
    pub device_id: String,
    /// `fcm` or `apns`, when registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_provider: Option<String>,
    /// Whether a token is now registered.
    pub registered: bool,
}

/// The answer to a Telnyx webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `processed`, `duplicate` or `ignored`.
    pub status: String,
    /// Why it was ignored.
    pub reason: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// `ok`.
    pub store: String,
    /// Push delivery.
    pub push: Configured,
    /// WebSocket delivery.
    pub websocket: Configured,
    /// Whether the built-in emulator plays Telnyx.
    pub sandbox: bool,
    /// The dial rate limit's queue.
    pub dials: DialQueue,
    /// This node's id (`RINGMASTER_NODE_ID`): which node of a cluster answered.
    pub node_id: String,
}

/// Whether a notification channel is configured.
#[derive(Debug, Serialize, ToSchema)]
pub struct Configured {
    /// Configured.
    pub configured: bool,
}

/// Dials waiting for the rate limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct DialQueue {
    /// Queued dials.
    pub queued: u64,
}
