//! Per-session settings, taken from the server config and the user's preferences at creation.

use serde::{Deserialize, Serialize};

/// Default ring time before the devices are given up.
pub const DEFAULT_RING_TIMEOUT_SECS: u32 = 30;
/// Default wait before the one retry of a failed bridge.
pub const DEFAULT_BRIDGE_RETRY_DELAY_MS: u64 = 500;
/// Default wait for the result of a pending answer or bridge before it counts as failed.
pub const DEFAULT_BRIDGE_TIMEOUT_MS: u64 = 10_000;
/// Most devices one call rings (each costs a dial against the provider's rate limit).
pub const MAX_DEVICES: usize = 32;

/// How a session behaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Seconds the devices ring (Telnyx accepts 5–600).
    pub ring_timeout_secs: u32,
    /// When the inbound caller is answered.
    pub caller_answer: CallerAnswer,
    /// Wait before retrying a failed bridge once.
    pub bridge_retry_delay_ms: u64,
    /// Longest wait, once a device answered, for the caller's answer or a bridge result; past
    /// it the attempt counts as a failed bridge (a lost result must not leave the call hanging).
    pub bridge_timeout_ms: u64,
    /// The user's voicemail; `None` means unanswered calls simply end.
    pub voicemail: Option<VoicemailConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ring_timeout_secs: DEFAULT_RING_TIMEOUT_SECS,
            caller_answer: CallerAnswer::default(),
            bridge_retry_delay_ms: DEFAULT_BRIDGE_RETRY_DELAY_MS,
            bridge_timeout_ms: DEFAULT_BRIDGE_TIMEOUT_MS,
            voicemail: None,
        }
    }
}

/// When the inbound caller's leg is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerAnswer {
    /// At once, before the devices ring (the caller is parked in an answered call).
    Immediately,
    /// Only when a device answers (or voicemail picks up); the caller hears ringback meanwhile
    /// and nothing is billed for unanswered calls.
    #[default]
    OnDeviceAnswer,
}

/// The user's voicemail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VoicemailConfig {
    /// Greeting spoken before recording.
    pub greeting: String,
    /// Telnyx voice for the greeting.
    pub voice: String,
    /// Language of the greeting.
    pub language: String,
    /// Longest message, in seconds.
    pub max_length_secs: u32,
    /// How long to wait for `call.recording.saved` once the caller has hung up.
    pub recording_wait_secs: u32,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        Self {
            greeting: "The person you are calling is not available. Please leave a message after the tone.".to_owned(),
            voice: "female".to_owned(),
            language: "en-US".to_owned(),
            max_length_secs: 120,
            recording_wait_secs: 30,
        }
    }
}

/// Time the greeting may take before the voicemail deadline counts the recording.
pub(crate) const GREETING_ALLOWANCE_SECS: u64 = 60;

impl SessionConfig {
    /// Checks every bound; a session is never created from an invalid config.
    pub fn validate(&self) -> Result<(), String> {
        if !(5..=600).contains(&self.ring_timeout_secs) {
            return Err(format!(
                "ring_timeout_secs must be 5..=600, got {}",
                self.ring_timeout_secs
            ));
        }
        if !(1..=10_000).contains(&self.bridge_retry_delay_ms) {
            return Err(format!(
                "bridge_retry_delay_ms must be 1..=10000, got {}",
                self.bridge_retry_delay_ms
            ));
        }
        if !(1..=600_000).contains(&self.bridge_timeout_ms) {
            return Err(format!(
                "bridge_timeout_ms must be 1..=600000, got {}",
                self.bridge_timeout_ms
            ));
        }
        if let Some(vm) = &self.voicemail {
            let len = vm.greeting.chars().count();
            if len == 0 || len > 3000 {
                return Err(format!(
                    "voicemail greeting must be 1..=3000 characters, got {len}"
                ));
            }
            if vm.voice.is_empty()
                || vm.voice.len() > 64
                || vm.language.is_empty()
                || vm.language.len() > 16
            {
                return Err("voicemail voice or language is empty or too long".to_owned());
            }
            if !(5..=3600).contains(&vm.max_length_secs) {
                return Err(format!(
                    "voicemail max_length_secs must be 5..=3600, got {}",
                    vm.max_length_secs
                ));
            }
            if !(1..=600).contains(&vm.recording_wait_secs) {
                return Err(format!(
                    "voicemail recording_wait_secs must be 1..=600, got {}",
                    vm.recording_wait_secs
                ));
            }
        }
        Ok(())
    }
}
