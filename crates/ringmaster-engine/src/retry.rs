//! The dispatcher's retry rules, the one retry layer (issue 11): how many attempts each effect
//! gets, how long it waits between them, how many effects of a lane run at once, and when an
//! `incoming_call` is too old to send. Pure functions of the effect, its attempts and the time,
//! shared by the server's dispatcher and the simulator's.

use ringmaster_core::session::Action;
use ringmaster_core::Timestamp;
use ringmaster_store::{Lane, OutboxEntry};
use std::time::Duration;

/// Effects executed at the same time, per lane.
pub fn lane_concurrency(lane: Lane) -> usize {
    match lane {
        Lane::Release | Lane::Setup => 32,
        Lane::Realtime | Lane::Push => 64,
        Lane::Other => 8,
        // The webhook relay's lane: never dispatched here.
        Lane::Host => 0,
    }
}

/// Attempts before a dial, answer, speak or record command is given up and reported to its
/// session.
pub const SETUP_ATTEMPTS: u32 = 4;

/// Attempts the dispatcher gives a non-release command. A bridge gets one: the session itself
/// retries a failed bridge once (with a new command, after `bridge_retry_delay_ms`), and two
/// layers retrying the same thing is what the dispatcher exists to prevent.
pub fn attempts_for(action: &Action) -> u32 {
    match action {
        Action::Bridge { .. } => 1,
        _ => SETUP_ATTEMPTS,
    }
}

/// Whether a command that failed transiently is retried until Telnyx confirms it instead of
/// being given up. Only releases are worth it: a leg left up rings a device forever (or
/// bills), while a late dial or bridge is worse than a reported failure.
pub fn retried_until_confirmed(action: &Action) -> bool {
    matches!(action, Action::Hangup { .. } | Action::Reject { .. })
}

/// Attempts before a notification is given up.
pub const NOTIFY_ATTEMPTS: u32 = 8;
/// Wait before the first retry; doubles per attempt.
pub const RETRY_BASE: Duration = Duration::from_millis(250);
/// Longest backoff between two tries of a release (it is retried until confirmed).
pub const RELEASE_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest backoff between two tries of anything else.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Longest provider `Retry-After` honoured; a longer one is capped so the effect is still
/// retried (and eventually given up) instead of parked for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Ring timeout assumed for stale `incoming_call` detection until told otherwise.
pub const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a claimed outbox row stays one node's.
///
/// It must outlast one attempt, or another node could send the same effect while this one
/// still waits for the answer: a Telnyx command is one request under the client's 5 s
/// timeout plus recording its result, a push one request under the 10 s APNs/FCM timeout
/// (plus an FCM OAuth token fetch of the same bound), a WebSocket publish is local. 30 s covers
/// the worst of these with room to spare; a longer lease only delays a dead node's rows.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The backoff cap of an effect in `lane`.
pub fn backoff_cap(lane: Lane) -> Duration {
    if lane == Lane::Release {
        RELEASE_BACKOFF_CAP
    } else {
        BACKOFF_CAP
    }
}

/// The backoff before the next try of an effect that failed `attempts` times before this
/// failure: exponential from [`RETRY_BASE`] up to `cap`, with jitter over its upper half (so
/// effects that failed together spread out), and never less than the provider asked for
/// (`retry_after`, capped at [`MAX_RETRY_AFTER`]).
pub fn retry_wait(
    attempts: u32,
    retry_after: Option<Duration>,
    cap: Duration,
    rng: &mut impl rand::Rng,
) -> Duration {
    let backoff = RETRY_BASE.saturating_mul(1 << attempts.min(16)).min(cap);
    let half = backoff / 2;
    let jitter = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let backoff = half + Duration::from_millis(rng.gen_range(0..=jitter));
    retry_after.map_or(backoff, |ra| backoff.max(ra.min(MAX_RETRY_AFTER)))
}

/// Whether an `incoming_call` committed with `entry` is past `ring_timeout` at `at`: the
/// call has stopped ringing, so the notification would ring a device for nothing.
pub fn is_stale(entry: &OutboxEntry, ring_timeout: Duration, at: Timestamp) -> bool {
    entry.created_at + ring_timeout <= at
}
