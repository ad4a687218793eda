//! What happens in one run: the user's devices, what each user and the caller do and when,
//! and which faults strike. Random runs draw a plan from a seed; the T1–T15 scenarios write
//! theirs by hand.

use crate::faults::{FaultMix, Latencies};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ringmaster_core::session::CallerAnswer;
use ringmaster_core::Platform;
use serde::Serialize;

/// When the simulated call arrives (virtual ms since the epoch).
pub const CALL_AT: u64 = 1_000_000;

/// One run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Seed of the run's random number generator (latencies, message faults).
    pub seed: u64,
    /// The called user's devices.
    pub devices: Vec<DevicePlan>,
    /// Ring timeout in seconds.
    pub ring_timeout_secs: u32,
    /// When the caller's leg is answered.
    pub caller_answer: CallerAnswer,
    /// When the caller hangs up, in ms after the call arrives.
    pub caller_hangup_at: u64,
    /// Coordinator nodes behind the load balancer.
    pub nodes: usize,
    /// A node crash between commit and dispatch, if any.
    pub node_crash: Option<NodeCrash>,
    /// Message-level fault probabilities.
    pub message_faults: MessageFaults,
    /// Latency of every hop.
    pub latencies: Latencies,
    /// The devices' status poll period. The invariants assume the design's 3 s; a longer
    /// period is how tests show the checks catch slow dismissal.
    pub device_poll_ms: u64,
}

/// A coordinator node crash.
#[derive(Clone, Debug, Serialize)]
pub struct NodeCrash {
    /// The crash follows the n-th successful commit (1-based).
    pub after_commit: usize,
    /// Effects of that commit sent before the crash, not recorded (another node sends them
    /// again once the crashed node's lease runs out).
    pub sent_before_crash: usize,
}

/// Per-message fault probabilities.
#[derive(Clone, Debug, Serialize)]
pub struct MessageFaults {
    /// A push is dropped.
    pub push_drop: f64,
    /// A webhook is delivered twice.
    pub webhook_dup: f64,
    /// A webhook is delayed.
    pub webhook_delay: f64,
    /// A device report is delivered twice.
    pub report_dup: f64,
    /// A Telnyx API request fails (5xx or timeout).
    pub api_error: f64,
}

/// One device of the user and what happens to it.
#[derive(Clone, Debug, Serialize)]
pub struct DevicePlan {
    /// Its platform.
    pub platform: Platform,
    /// The user answers here at this time (ms after the call arrives) if it still rings then.
    pub answer_at: Option<u64>,
    /// The user declines here at this time if it still rings.
    pub decline_at: Option<u64>,
    /// The user silences it here at this time if it still rings.
    pub ignore_at: Option<u64>,
    /// Having answered, the user hangs up this long after answering.
    pub hangup_after: Option<u64>,
    /// Having answered, the user puts the call on hold this long after answering.
    pub hold_after: Option<u64>,
    /// Channel faults of this device.
    pub faults: DeviceFaults,
}

/// Which channels fail for one device.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceFaults {
    /// CANCEL/BYE of its ringing legs is lost (stale SDK socket).
    pub sip_lost: bool,
    /// WebSocket disconnected.
    pub ws_down: bool,
    /// Mobile app backgrounded: no WebSocket listener.
    pub backgrounded: bool,
    /// Pushes are held back by Doze.
    pub doze: bool,
    /// Every push to it is dropped.
    pub push_blocked: bool,
    /// The app is killed at this time (ms after the call arrives)...
    pub kill_at: Option<u64>,
    /// ...and restarted this long after.
    pub restart_after: u64,
}

impl DevicePlan {
    /// A device with no user action and no fault.
    pub fn idle(platform: Platform) -> Self {
        Self {
            platform,
            answer_at: None,
            decline_at: None,
            ignore_at: None,
            hangup_after: None,
            hold_after: None,
            faults: DeviceFaults::default(),
        }
    }
}

impl Plan {
    /// A plan with these devices, no faults, the caller hanging up after `caller_hangup_at` ms.
    pub fn quiet(seed: u64, devices: Vec<DevicePlan>, caller_hangup_at: u64) -> Self {
        Self {
            seed,
            devices,
            ring_timeout_secs: 30,
            caller_answer: CallerAnswer::OnDeviceAnswer,
            caller_hangup_at,
            nodes: 2,
            node_crash: None,
            message_faults: MessageFaults {
                push_drop: 0.0,
                webhook_dup: 0.0,
                webhook_delay: 0.0,
                report_dup: 0.0,
                api_error: 0.0,
            },
            latencies: Latencies::default(),
            device_poll_ms: crate::world::POLL_INTERVAL_MS,
        }
    }

    /// Draws a random run from `rng` under `mix`.
    pub fn random(seed: u64, mix: &FaultMix, rng: &mut ChaCha8Rng) -> Self {
        let n = rng.gen_range(1..=4);
        let mut devices: Vec<DevicePlan> = (0..n)
            .map(|_| {
                let platform = *Platform::ALL.choose(rng).unwrap_or(&Platform::Web);
                let mut d = DevicePlan::idle(platform);
                let roll: f64 = rng.gen();
                let at = rng.gen_range(300..36_000);
                if roll < 0.45 {
                    d.answer_at = Some(at);
                } else if roll < 0.50 {
                    d.decline_at = Some(at);
                } else if roll < 0.60 {
                    d.ignore_at = Some(at);
                }
                if rng.gen_bool(0.5) {
                    d.hangup_after = Some(rng.gen_range(500..20_000));
                }
                if rng.gen_bool(0.2) {
                    d.hold_after = Some(rng.gen_range(200..5_000));
                }
                let mobile = platform.is_mobile();
                d.faults = DeviceFaults {
                    sip_lost: rng.gen_bool(mix.sip_lost),
                    ws_down: rng.gen_bool(mix.ws_down),
                    backgrounded: mobile && rng.gen_bool(mix.backgrounded),
                    doze: mobile && rng.gen_bool(mix.doze),
                    push_blocked: mobile && mix.push_drop >= 1.0,
                    kill_at: rng.gen_bool(mix.app_kill).then(|| rng.gen_range(0..40_000)),
                    restart_after: rng.gen_range(1_000..20_000),
                };
                d
            })
            .collect();
        // Now and then two devices answer within 20 ms of each other (spec T15).
        if devices.len() >= 2 && rng.gen_bool(0.15) {
            let at = rng.gen_range(500..20_000);
            devices[0].answer_at = Some(at);
            devices[0].decline_at = None;
            devices[0].ignore_at = None;
            devices[1].answer_at = Some(at + rng.gen_range(0..=20));
            devices[1].decline_at = None;
            devices[1].ignore_at = None;
        }
        let node_crash = rng.gen_bool(mix.node_crash).then(|| NodeCrash {
            after_commit: rng.gen_range(1..=10),
            sent_before_crash: if rng.gen_bool(mix.crash_after_send) {
                rng.gen_range(1..=3)
            } else {
                0
            },
        });
        Self {
            seed,
            devices,
            ring_timeout_secs: 30,
            caller_answer: if rng.gen_bool(0.3) {
                CallerAnswer::Immediately
            } else {
                CallerAnswer::OnDeviceAnswer
            },
            caller_hangup_at: rng.gen_range(1_000..70_000),
            nodes: 2,
            node_crash,
            message_faults: MessageFaults {
                push_drop: mix.push_drop,
                webhook_dup: mix.webhook_dup,
                webhook_delay: mix.webhook_delay,
                report_dup: mix.report_dup,
                api_error: mix.api_error,
            },
            latencies: Latencies::default(),
            device_poll_ms: crate::world::POLL_INTERVAL_MS,
        }
    }
}
