//! Latency distributions and the fault mix a batch of random runs draws from.

use rand::Rng;
use serde::Serialize;
use std::fmt;
use thiserror::Error;

/// A latency range in milliseconds, skewed towards `min` (most deliveries are fast, a few are
/// slow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Fastest delivery.
    pub min_ms: u64,
    /// Slowest delivery.
    pub max_ms: u64,
}

impl Latency {
    /// A range from `min_ms` to `max_ms`.
    pub const fn new(min_ms: u64, max_ms: u64) -> Self {
        Self { min_ms, max_ms }
    }

    /// One draw: `min + (max - min) * u²`, `u` uniform in [0, 1).
    pub fn sample(self, rng: &mut impl Rng) -> u64 {
        let span = self.max_ms.saturating_sub(self.min_ms) as f64;
        let u: f64 = rng.gen();
        self.min_ms + (span * u * u) as u64
    }
}

/// The latencies of every hop the simulation models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Latencies {
    /// Coordinator → Telnyx REST request (one way).
    pub api: Latency,
    /// Telnyx → coordinator webhook.
    pub webhook: Latency,
    /// Telnyx → device SDK (INVITE, CANCEL, BYE): spec §4.2 says ~200–500 ms for BYE.
    pub sip_down: Latency,
    /// Device SDK → Telnyx (200 OK, 486, BYE).
    pub sip_up: Latency,
    /// Coordinator → device over the WebSocket (spec: ~50–200 ms).
    pub websocket: Latency,
    /// FCM/APNs push when the device is awake (spec: 100 ms–30 s; mostly fast).
    pub push: Latency,
    /// Push delay when the device dozes (spec: up to 15 min).
    pub doze: Latency,
    /// Device ↔ coordinator HTTP (poll, report, decline), one way.
    pub http: Latency,
    /// A coordinator node's time between loading a session and committing it.
    pub processing: Latency,
    /// Extra delay of a delayed webhook.
    pub webhook_extra: Latency,
    /// How long a killed app stays dead.
    pub app_down: Latency,
    /// How long a crashed coordinator node stays down.
    pub node_down: Latency,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            api: Latency::new(15, 120),
            webhook: Latency::new(20, 300),
            sip_down: Latency::new(100, 500),
            sip_up: Latency::new(30, 200),
            websocket: Latency::new(20, 200),
            push: Latency::new(100, 2_000),
            doze: Latency::new(30_000, 15 * 60_000),
            http: Latency::new(30, 300),
            processing: Latency::new(1, 15),
            webhook_extra: Latency::new(500, 5_000),
            app_down: Latency::new(1_000, 20_000),
            node_down: Latency::new(500, 10_000),
        }
    }
}

/// Probabilities of each fault. Per-device faults are drawn once per device and run; message
/// faults once per message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultMix {
    /// The device's SDK socket is stale: every CANCEL/BYE of its ringing legs is lost.
    pub sip_lost: f64,
    /// A push is dropped.
    pub push_drop: f64,
    /// The device dozes: its pushes arrive 30 s–15 min late.
    pub doze: f64,
    /// The device's WebSocket is disconnected.
    pub ws_down: f64,
    /// A mobile app is in the background: its WebSocket listener is unregistered.
    pub backgrounded: f64,
    /// A webhook is delivered twice.
    pub webhook_dup: f64,
    /// A webhook is held back 0.5–5 s (so webhooks are reordered).
    pub webhook_delay: f64,
    /// The device's app is killed once during the call and restarted later.
    pub app_kill: f64,
    /// A coordinator node crashes once, between a commit and its dispatch.
    pub node_crash: f64,
    /// When a node crashes, it had already sent some effects (they are sent again).
    pub crash_after_send: f64,
    /// A device report is delivered twice.
    pub report_dup: f64,
    /// A Telnyx API request is answered 5xx or times out (half of them after Telnyx executed
    /// it), so the dispatcher retries it with the same `command_id`, or gives up.
    pub api_error: f64,
}

impl FaultMix {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            sip_lost: 0.0,
            push_drop: 0.0,
            doze: 0.0,
            ws_down: 0.0,
            backgrounded: 0.0,
            webhook_dup: 0.0,
            webhook_delay: 0.0,
            app_kill: 0.0,
            node_crash: 0.0,
            crash_after_send: 0.0,
            report_dup: 0.0,
            api_error: 0.0,
        }
    }

    /// Everyday production trouble: every fault happens now and then.
    pub fn default_mix() -> Self {
        Self {
            sip_lost: 0.15,
            push_drop: 0.1,
            doze: 0.15,
            ws_down: 0.15,
            backgrounded: 0.3,
            webhook_dup: 0.1,
            webhook_delay: 0.1,
            app_kill: 0.05,
            node_crash: 0.1,
            crash_after_send: 0.5,
            report_dup: 0.05,
            api_error: 0.02,
        }
    }

    /// A bad day: most channels fail for most devices.
    pub fn harsh() -> Self {
        Self {
            sip_lost: 0.5,
            push_drop: 0.4,
            doze: 0.4,
            ws_down: 0.5,
            backgrounded: 0.6,
            webhook_dup: 0.3,
            webhook_delay: 0.3,
            app_kill: 0.2,
            node_crash: 0.4,
            crash_after_send: 0.5,
            report_dup: 0.2,
            api_error: 0.1,
        }
    }

    /// SIP, WebSocket and push all fail for every device: only polling is left (spec T12).
    pub fn poll_only() -> Self {
        Self {
            sip_lost: 1.0,
            push_drop: 1.0,
            ws_down: 1.0,
            ..Self::none()
        }
    }

    /// Parses `NAME[,key=p...]`: a named mix (`none`, `default`, `harsh`, `poll-only`) then
    /// overrides, or overrides alone on top of `none`. Example: `harsh,node_crash=1`.
    pub fn parse(text: &str) -> Result<Self, FaultMixError> {
        if text.len() > 1024 {
            return Err(FaultMixError::TooLong);
        }
        let mut parts = text.split(',').map(str::trim).filter(|p| !p.is_empty());
        let mut mix = Self::none();
        let mut first = true;
        for part in parts.by_ref() {
            if first && !part.contains('=') {
                mix = match part {
                    "none" => Self::none(),
                    "default" => Self::default_mix(),
                    "harsh" => Self::harsh(),
                    "poll-only" | "poll_only" => Self::poll_only(),
                    other => return Err(FaultMixError::UnknownMix(truncate(other))),
                };
                first = false;
                continue;
            }
            first = false;
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| FaultMixError::Syntax(truncate(part)))?;
            let p: f64 = value
                .trim()
                .parse()
                .map_err(|_| FaultMixError::Syntax(truncate(part)))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(FaultMixError::OutOfRange(truncate(part)));
            }
            let slot = match key.trim() {
                "sip_lost" => &mut mix.sip_lost,
                "push_drop" => &mut mix.push_drop,
                "doze" => &mut mix.doze,
                "ws_down" => &mut mix.ws_down,
                "backgrounded" => &mut mix.backgrounded,
                "webhook_dup" => &mut mix.webhook_dup,
                "webhook_delay" => &mut mix.webhook_delay,
                "app_kill" => &mut mix.app_kill,
                "node_crash" => &mut mix.node_crash,
                "crash_after_send" => &mut mix.crash_after_send,
                "report_dup" => &mut mix.report_dup,
                "api_error" => &mut mix.api_error,
                other => return Err(FaultMixError::UnknownFault(truncate(other))),
            };
            *slot = p;
        }
        Ok(mix)
    }
}

impl fmt::Display for FaultMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sip_lost={},push_drop={},doze={},ws_down={},backgrounded={},webhook_dup={},webhook_delay={},app_kill={},node_crash={},crash_after_send={},report_dup={},api_error={}",
            self.sip_lost,
            self.push_drop,
            self.doze,
            self.ws_down,
            self.backgrounded,
            self.webhook_dup,
            self.webhook_delay,
            self.app_kill,
            self.node_crash,
            self.crash_after_send,
            self.report_dup,
            self.api_error
        )
    }
}

/// A fault mix that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FaultMixError {
    /// Not `none`, `default`, `harsh` or `poll-only`.
    #[error("unknown fault mix {0:?} (expected none, default, harsh or poll-only)")]
    UnknownMix(String),
    /// Not a fault this simulator knows.
    #[error("unknown fault {0:?}")]
    UnknownFault(String),
    /// Not `key=probability`.
    #[error("expected key=probability, got {0:?}")]
    Syntax(String),
    /// A probability outside 0..=1.
    #[error("probability out of 0..=1 in {0:?}")]
    OutOfRange(String),
    /// Longer than 1024 bytes.
    #[error("fault mix is longer than 1024 bytes")]
    TooLong,
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
