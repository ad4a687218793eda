//! `ringmaster bench lifecycle`: how long a call's dismissal takes once one device answers,
//! with many calls ringing, against one store commit measured in the same run.
//!
//! Full calls go through the built-in Telnyx emulator and the real coordinator (SQLite store in
//! a temporary directory), each to its own user with three devices (iOS, Android, web):
//! 1. `ringing`: M callers dial in (`call.initiated`); the coordinator dials the 3 devices and
//!    the run waits until all 3×M legs ring, then until the emulator has sent the coordinator
//!    every webhook of that phase (it sends one at a time, so thousands may still be queued);
//! 2. `commit`: one store commit at a time on the same store, with the calls ringing: the
//!    baseline;
//! 3. `answer`: the web device of every call answers, at a steady rate. For each call the
//!    latency runs from the moment the emulator posts the `call.answered` webhook to the
//!    moment the last dismissal effect is dispatched: the hangups of the two other legs (as
//!    the emulator receives them) and the `call_ended` notifications (the WebSocket one and
//!    a push to each other mobile device, as the notifier receives them);
//! 4. `hangup`: every caller hangs up and the run waits until all legs are over.
//!
//! Everything is bounded by one time limit; a phase cut short reports what it measured.
//!
//! With `--push hanging` or `--push unavailable` the push provider fails every push for the
//! whole run (each request hangs until the client's timeout, or is answered 503 with a
//! `Retry-After`), from the first `incoming_call` on, so by the first answer the push lane is
//! full or thousands of pushes are backing off. The run then also times answer → the call's
//! Telnyx commands (the bridge and the two hangups), which must not wait for pushes;
//! `--push-outage` runs all three providers back to back and reports how much later the Telnyx
//! commands went out with a failing provider than with a healthy one.

use super::ingest::{bar, device_uri, percentile, seed_user, start_coordinator, DEVICE_PLATFORMS};
use crate::notify::{Notifier, Notifiers, NotifyError};
use anyhow::Context as _;
use async_trait::async_trait;
use ringmaster_core::session::{Notification, NotifyEvent};
use ringmaster_core::{CallControlId, CallSessionId, EffectId, UserId};
use ringmaster_store::{Commit, DevicePlatform, SqliteStore, Store};
use ringmaster_telnyx::emulator::{CommandOutcome, LegState, LogEntry, Observed};
use ringmaster_telnyx::WebhookSigner;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The device that answers every call (the web one); the others are dismissed.
const WINNER: usize = 2;

/// How long a hanging push request is held before it fails: the push clients' request
/// timeout (`FcmConfig`/`ApnsConfig::request_timeout`).
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Retry-After` an unavailable push provider answers with.
const PUSH_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How the push provider (FCM/APNs) behaves for a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PushProvider {
    /// Every push is delivered at once.
    Healthy,
    /// Every push request hangs until the client's 10 s timeout, then fails.
    Hanging,
    /// Every push is answered 503 with `Retry-After: 30`.
    Unavailable,
}

impl PushProvider {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Hanging => "hanging",
            Self::Unavailable => "unavailable",
        }
    }
}

/// How much load one run applies.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LifecyclePlan {
    /// Calls ringing at once before the first answer.
    pub calls: usize,
    /// Answers per second.
    pub answer_rate: u32,
    /// Store commits timed for the baseline.
    pub commits: usize,
    /// Longest time the whole run may take; it stops early with what it measured.
    #[serde(serialize_with = "secs")]
    pub time_limit: Duration,
    /// How the push provider behaves.
    pub push: PushProvider,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl LifecyclePlan {
    /// A few seconds in total: a smoke test, figures not meaningful.
    pub fn quick() -> Self {
        Self {
            calls: 10,
            answer_rate: 50,
            commits: 50,
            time_limit: Duration::from_secs(60),
            push: PushProvider::Healthy,
        }
    }

    /// The recorded benchmark.
    pub fn full() -> Self {
        Self {
            calls: 1_000,
            answer_rate: 100,
            commits: 500,
            time_limit: Duration::from_secs(180),
            push: PushProvider::Healthy,
        }
    }
}

/// Latency figures of one measured quantity.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Samples taken.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            samples: samples.len(),
            p50_ms: percentile(&samples, 50.0),
            p99_ms: percentile(&samples, 99.0),
            max_ms: percentile(&samples, 100.0),
        }
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct LifecycleReport {
    /// The load applied.
    pub plan: LifecyclePlan,
    /// Calls whose three device legs all rang.
    pub ringing: usize,
    /// Seconds from the first caller to every device leg ringing.
    pub ringing_secs: f64,
    /// Seconds from then until the coordinator had been sent every webhook of the ringing
    /// phase; the baseline and the answers start after that.
    pub backlog_secs: f64,
    /// Calls whose `call.answered` webhook was sent.
    pub answered: usize,
    /// Calls with every dismissal effect dispatched.
    pub dismissed: usize,
    /// Calls whose legs were all over after the caller hung up.
    pub ended: usize,
    /// One store commit, with the calls ringing: the baseline.
    pub commit: Latency,
    /// `call.answered` sent → last dismissal effect dispatched (with a failing push provider:
    /// the hangups and the WebSocket notification, the pushes cannot arrive).
    pub dismissal: Latency,
    /// Dismissal p99 relative to the commit p99.
    pub p99_ratio: f64,
    /// `call.answered` sent → the call's Telnyx commands carried out (the bridge and the
    /// hangups of the two other legs).
    pub commands: Latency,
}

/// A timed moment the latencies are computed from.
enum Mark {
    /// The emulator is posting `call.answered` for this leg.
    Answered(String),
    /// The emulator carried out a hangup of this leg.
    HungUp(String),
    /// The emulator carried out a bridge on this leg.
    Bridged(String),
    /// The coordinator handed a `call_ended` notification for this call to its channel.
    Ended(CallSessionId),
}

/// Receives every notification the dispatcher delivers; times the `call_ended` ones. As the
/// push notifier it fails the way `provider` says.
struct Recorder {
    marks: mpsc::UnboundedSender<(Instant, Mark)>,
    provider: PushProvider,
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification, _effect: &EffectId) -> Result<(), NotifyError> {
        match self.provider {
            PushProvider::Healthy => {}
            PushProvider::Hanging => {
                tokio::time::sleep(PUSH_TIMEOUT).await;
                return Err(NotifyError::temporary("push request timed out"));
            }
            PushProvider::Unavailable => {
                return Err(NotifyError::Temporary {
                    message: "503 Service Unavailable".to_owned(),
                    retry_after: Some(PUSH_RETRY_AFTER),
                })
            }
        }
        if matches!(n.event, NotifyEvent::CallEnded { .. }) {
            // The run is over when the receiver is gone.
            let _ = self
                .marks
                .send((Instant::now(), Mark::Ended(n.call_session_id.clone())));
        }
        Ok(())
    }
}

/// One benchmark call, once its device legs ring.
struct Call {
    session: CallSessionId,
    caller: CallControlId,
    legs: [CallControlId; 3],
}

/// Every mark so far, in arrival order.
type Marks = Arc<Mutex<Vec<(Instant, Mark)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per-call latencies from the answer, for the calls whose effects are all in.
#[derive(Default)]
struct Progress {
    /// Calls whose answer was sent.
    answered: usize,
    /// Answer → last dismissal effect.
    dismissal: Vec<Duration>,
    /// Answer → last Telnyx command (bridge and hangups).
    commands: Vec<Duration>,
}

impl Progress {
    /// Whether every answered call has both measures in.
    fn complete(&self, calls: usize) -> bool {
        self.answered == calls && self.dismissal.len() >= calls && self.commands.len() >= calls
    }
}

/// Per call: answer sent → last dismissal effect, and answer sent → last Telnyx command. Only
/// the WebSocket `call_ended` is expected when `pushes_arrive` is false.
fn latencies(calls: &[Call], marks: &[(Instant, Mark)], pushes_arrive: bool) -> Progress {
    // Dismissal notifications expected per call: the WebSocket one, and a push to each other
    // mobile device.
    let pushes = DEVICE_PLATFORMS
        .iter()
        .enumerate()
        .filter(|(i, p)| *i != WINNER && **p != DevicePlatform::Web)
        .count();
    let notifications = 1 + if pushes_arrive { pushes } else { 0 };
    let mut answered: HashMap<&str, Instant> = HashMap::new();
    let mut hung_up: HashMap<&str, Instant> = HashMap::new();
    let mut bridged: HashMap<&str, Instant> = HashMap::new();
    let mut ended: HashMap<&CallSessionId, (usize, Instant)> = HashMap::new();
    for (at, mark) in marks {
        match mark {
            Mark::Answered(leg) => {
                answered.entry(leg).or_insert(*at);
            }
            Mark::HungUp(leg) => {
                hung_up.entry(leg).or_insert(*at);
            }
            Mark::Bridged(leg) => {
                bridged.entry(leg).or_insert(*at);
            }
            Mark::Ended(session) => {
                let e = ended.entry(session).or_insert((0, *at));
                e.0 += 1;
                e.1 = e.1.max(*at);
            }
        }
    }
    let mut progress = Progress::default();
    for call in calls {
        let Some(start) = answered.get(call.legs[WINNER].as_str()) else {
            continue;
        };
        progress.answered += 1;
        // The bridge is issued on either leg of the pair.
        let bridge = [&call.caller, &call.legs[WINNER]]
            .iter()
            .find_map(|leg| bridged.get(leg.as_str()).copied());
        let hangups: Option<Vec<Instant>> = call
            .legs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != WINNER)
            .map(|(_, leg)| hung_up.get(leg.as_str()).copied())
            .collect();
        let Some(hangups) = hangups else { continue };
        let last_hangup = hangups.into_iter().max().unwrap_or(*start);
        if let Some(bridge) = bridge {
            progress
                .commands
                .push(last_hangup.max(bridge).saturating_duration_since(*start));
        }
        if let Some((n, at)) = ended.get(&call.session) {
            if *n >= notifications {
                progress
                    .dismissal
                    .push(last_hangup.max(*at).saturating_duration_since(*start));
            }
        }
    }
    progress
}

/// Runs the lifecycle benchmark under `plan`.
pub async fn lifecycle(plan: LifecyclePlan) -> anyhow::Result<LifecycleReport> {
    let deadline = Instant::now() + plan.time_limit;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let url = format!("sqlite://{}/ringmaster.db", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await?);
    let users: Vec<(String, String)> = (0..plan.calls)
        .map(|i| (format!("bench-{i}"), format!("+1556{i:07}")))
        .collect();
    for (i, (user, number)) in users.iter().enumerate() {
        seed_user(store.as_ref(), user, number).await?;
        if i % 100 == 0 {
            bar("users", i, users.len());
        }
    }
    bar("users", users.len(), users.len());
    eprintln!();

    let (mark_tx, mut mark_rx) = mpsc::unbounded_channel();
    let notifiers = Notifiers {
        websocket: Some(Arc::new(Recorder {
            marks: mark_tx.clone(),
            provider: PushProvider::Healthy,
        })),
        push: Some(Arc::new(Recorder {
            marks: mark_tx.clone(),
            provider: plan.push,
        })),
    };
    let pushes_arrive = plan.push == PushProvider::Healthy;
    let signer = WebhookSigner::generate();
    let (server, emulator, _) = start_coordinator(store.clone(), &signer, notifiers, |s| {
        // Nothing may time out while the run lasts.
        s.ring_timeout_secs = 600;
    })
    .await?;
    let mut observed = emulator.observe();
    tokio::spawn(async move {
        while let Some(o) = observed.recv().await {
            let mark = match o {
                Observed::Sending {
                    at,
                    event_type,
                    call_control_id: Some(leg),
                } if event_type == "call.answered" => (at, Mark::Answered(leg)),
                Observed::Logged {
                    at,
                    entry: LogEntry::Command(c),
                } if c.outcome == CommandOutcome::Executed => {
                    match (c.action.as_str(), c.call_control_id) {
                        ("hangup", Some(leg)) => (at, Mark::HungUp(leg)),
                        ("bridge", Some(leg)) => (at, Mark::Bridged(leg)),
                        _ => continue,
                    }
                }
                _ => continue,
            };
            if mark_tx.send(mark).is_err() {
                break;
            }
        }
    });
    let marks: Marks = Arc::default();
    {
        let marks = marks.clone();
        tokio::spawn(async move {
            while let Some(mark) = mark_rx.recv().await {
                lock(&marks).push(mark);
            }
        });
    }

    // 1. Every caller dials in; wait for all device legs to ring.
    let started = Instant::now();
    let callers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, (_, number))| emulator.inbound_call(&format!("+1557{i:07}"), number))
        .collect();
    let by_uri: HashMap<String, (usize, usize)> = users
        .iter()
        .enumerate()
        .flat_map(|(i, (user, _))| (0..DEVICE_PLATFORMS.len()).map(move |d| (i, d, user)))
        .map(|(i, d, user)| (device_uri(user, d), (i, d)))
        .collect();
    let mut legs: Vec<[Option<CallControlId>; 3]> = vec![Default::default(); plan.calls];
    loop {
        let mut rang = 0;
        for snap in emulator.calls() {
            if let Some(&(i, d)) = by_uri.get(&snap.to) {
                if snap.state == LegState::Ringing && legs[i][d].is_none() {
                    legs[i][d] = Some(snap.call_control_id);
                }
            }
        }
        for l in &legs {
            rang += l.iter().filter(|c| c.is_some()).count();
        }
        bar("ringing", rang, plan.calls * 3);
        if rang == plan.calls * 3 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!();
    let ringing_secs = started.elapsed().as_secs_f64();
    // The emulator sends its webhooks one at a time: when the last leg rings, thousands of
    // them may still be on their way to the coordinator. Measured over that backlog, the
    // baseline and the answers would run at whatever rate the coordinator drains it, not at
    // the plan's rate.
    let backlog_started = Instant::now();
    let backlog = emulator.pending_webhooks();
    loop {
        let left = emulator.pending_webhooks();
        bar("webhooks", backlog.saturating_sub(left), backlog);
        if left == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!();
    let backlog_secs = backlog_started.elapsed().as_secs_f64();
    let calls: Vec<Call> = callers
        .into_iter()
        .zip(legs)
        .filter_map(|(caller, legs)| {
            let [Some(a), Some(b), Some(c)] = legs else {
                return None;
            };
            Some(Call {
                session: caller.call_session_id,
                caller: caller.call_control_id,
                legs: [a, b, c],
            })
        })
        .collect();

    // 2. The baseline: single commits on the same store, with the calls ringing.
    let mut commits = Vec::with_capacity(plan.commits);
    for i in 0..plan.commits {
        if Instant::now() >= deadline {
            break;
        }
        let mut commit = Commit::new(
            CallSessionId::new(format!("bench-commit-{i}")),
            UserId::new("bench-0"),
            None,
            serde_json::json!({ "bench": i }),
            "ended",
            crate::clock::system_now(),
        );
        commit.closed = true;
        commit.dedupe_key = Some(format!("bench-commit-{i}"));
        let sent = Instant::now();
        store.commit(commit).await?;
        commits.push(sent.elapsed());
        if i % 10 == 0 {
            bar("commit", i, plan.commits);
        }
    }
    bar("commit", commits.len(), plan.commits);
    eprintln!();

    // 3. One answer per call at a steady rate; then wait for every dismissal.
    let mut tick = tokio::time::interval(Duration::from_secs(1) / plan.answer_rate.max(1));
    for (i, call) in calls.iter().enumerate() {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        if let Err(e) = emulator.answer(&call.legs[WINNER]) {
            tracing::warn!(call_session_id = %call.session, error = %e, "answer refused");
        }
        // Progress counts answers sent: working out the latencies here would take a
        // runtime worker away from the calls being measured.
        if i % 10 == 0 {
            bar("answer", i, calls.len());
        }
    }
    let progress = loop {
        let done = latencies(&calls, &lock(&marks), pushes_arrive);
        bar("answer", done.dismissal.len(), calls.len());
        if done.complete(calls.len()) || Instant::now() >= deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!();

    // 4. Every caller hangs up; wait for every leg to be over.
    for call in &calls {
        // A leg already gone is fine: the call is over either way.
        let _ = emulator.hangup(&call.caller);
    }
    let ended = loop {
        let snaps: HashMap<CallControlId, LegState> = emulator
            .calls()
            .into_iter()
            .map(|s| (s.call_control_id, s.state))
            .collect();
        let ended = calls
            .iter()
            .filter(|c| {
                std::iter::once(&c.caller)
                    .chain(&c.legs)
                    .all(|leg| snaps.get(leg) == Some(&LegState::Ended))
            })
            .count();
        bar("hangup", ended, calls.len());
        if ended == calls.len() || Instant::now() >= deadline {
            break ended;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!();
    server.abort();
    drop(emulator);

    let commit = Latency::of(commits);
    let dismissal = Latency::of(progress.dismissal);
    Ok(LifecycleReport {
        plan,
        ringing: calls.len(),
        ringing_secs,
        backlog_secs,
        answered: progress.answered,
        dismissed: dismissal.samples,
        ended,
        p99_ratio: dismissal.p99_ms / commit.p99_ms.max(1e-9),
        commit,
        dismissal,
        commands: Latency::of(progress.commands),
    })
}

/// The report as a table.
pub fn table(r: &LifecycleReport) -> String {
    let mut out = format!(
        "{} calls ringing (all rang after {:.1} s, their webhooks all sent {:.1} s later), \
         {} answers/s, push provider {}\n\
         answered {}, dismissed {}, ended {}\n\
         {:<28} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
        r.plan.calls,
        r.ringing_secs,
        r.backlog_secs,
        r.plan.answer_rate,
        r.plan.push.as_str(),
        r.answered,
        r.dismissed,
        r.ended,
        "measure",
        "samples",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 ratio"
    );
    let dismissals = if r.plan.push == PushProvider::Healthy {
        "answer -> all dismissals"
    } else {
        "answer -> dismissals, no push"
    };
    let commands_ratio = r.commands.p99_ms / r.commit.p99_ms.max(1e-9);
    for (name, l, ratio) in [
        ("store commit (baseline)", &r.commit, 1.0),
        (dismissals, &r.dismissal, r.p99_ratio),
        ("answer -> Telnyx commands", &r.commands, commands_ratio),
    ] {
        out.push_str(&format!(
            "{:<29} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>8.2}x\n",
            name, l.samples, l.p50_ms, l.p99_ms, l.max_ms, ratio
        ));
    }
    out
}

/// The most a failing push provider may delay a Telnyx command (issue 11's goal).
pub const PUSH_OUTAGE_BUDGET_MS: f64 = 100.0;

/// One provider's run in a push-outage comparison.
#[derive(Clone, Debug, Serialize)]
pub struct OutageRun {
    /// The full lifecycle report.
    pub report: LifecycleReport,
    /// How much later the Telnyx commands' p99 was than with the healthy provider, ms.
    pub p99_excess_ms: f64,
    /// How much later the slowest Telnyx command was than the healthy run's slowest, ms.
    pub max_excess_ms: f64,
}

/// `--push-outage`: the same lifecycle with a healthy, a hanging and an unavailable push
/// provider, back to back.
#[derive(Clone, Debug, Serialize)]
pub struct OutageReport {
    /// The healthy run first, then each failing provider.
    pub runs: Vec<OutageRun>,
    /// The largest excess (p99 or max) over every failing provider, ms.
    pub worst_excess_ms: f64,
    /// The budget that excess is held to, ms.
    pub budget_ms: f64,
}

/// Runs `plan` once per push provider (healthy first) and compares how soon the Telnyx
/// commands went out.
pub async fn push_outage(plan: LifecyclePlan) -> anyhow::Result<OutageReport> {
    let mut reports = Vec::new();
    for push in [
        PushProvider::Healthy,
        PushProvider::Hanging,
        PushProvider::Unavailable,
    ] {
        eprintln!("push provider {}:", push.as_str());
        reports.push(lifecycle(LifecyclePlan { push, ..plan }).await?);
    }
    let healthy = reports[0].commands.clone();
    let runs: Vec<OutageRun> = reports
        .into_iter()
        .map(|report| OutageRun {
            p99_excess_ms: report.commands.p99_ms - healthy.p99_ms,
            max_excess_ms: report.commands.max_ms - healthy.max_ms,
            report,
        })
        .collect();
    let worst_excess_ms = runs
        .iter()
        .skip(1)
        .map(|r| r.p99_excess_ms.max(r.max_excess_ms))
        .fold(f64::NEG_INFINITY, f64::max);
    Ok(OutageReport {
        runs,
        worst_excess_ms,
        budget_ms: PUSH_OUTAGE_BUDGET_MS,
    })
}

/// The push-outage comparison as a table.
pub fn outage_table(r: &OutageReport) -> String {
    let mut out = format!(
        "answer -> Telnyx commands (bridge, hangups), {} calls ringing per run\n\
         {:<12} {:>8} {:>9} {:>9} {:>9} {:>13} {:>13}\n",
        r.runs.first().map_or(0, |run| run.report.plan.calls),
        "push",
        "samples",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 excess ms",
        "max excess ms"
    );
    for run in &r.runs {
        let c = &run.report.commands;
        out.push_str(&format!(
            "{:<12} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>13.2} {:>13.2}\n",
            run.report.plan.push.as_str(),
            c.samples,
            c.p50_ms,
            c.p99_ms,
            c.max_ms,
            run.p99_excess_ms,
            run.max_excess_ms
        ));
    }
    let verdict = if r.worst_excess_ms <= r.budget_ms {
        "within"
    } else {
        "over"
    };
    out.push_str(&format!(
        "worst delay from a failing push provider: {:.2} ms ({verdict} the {:.0} ms budget)\n",
        r.worst_excess_ms, r.budget_ms
    ));
    out
}
